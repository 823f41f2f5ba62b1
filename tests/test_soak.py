"""The short soak (issue 12): slots with random faults against the simulator, every slot
checked against Simulator.expected_stats. `make soak` runs the long one."""
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import soak  # noqa: E402


def test_short_soak_loses_and_duplicates_nothing(capsys):
    code = soak.main(["--slots", "70", "--series", "300", "--seed", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lost 0, duplicated 0; unexpected errors 0" in out
