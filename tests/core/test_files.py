import os

import pytest

from qmonit.core.errors import SinkError
from qmonit.core.files import State, atomic_write


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write(path, "one")
    atomic_write(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(path.parent) == ["f.json"]


def test_atomic_write_failure_is_a_sink_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SinkError, match="file"):
        atomic_write(tmp_path / "file" / "below", "y")


def test_state_round_trip_and_corrupt_file(tmp_path):
    state = State(tmp_path, "job")
    assert state.load() == {}
    state.save({"last_slot": 600})
    assert State(tmp_path, "job").load() == {"last_slot": 600}
    state.path.write_text("{not json")
    assert state.load() == {}
