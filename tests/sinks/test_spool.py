"""The InfluxDB spool (sinks/spool.py through Influx.write_lines) on a real InfluxDB."""
import gzip
import itertools
import logging
import subprocess
import sys

import pytest
from conftest import CLOCK, ROOT

from qmonit.core.errors import SinkError
from qmonit.core.influxql import quote_ident
from qmonit.dev.devservers import free_port
from qmonit.sinks.influx import Influx
from qmonit.sinks.spool import DEAD_LETTERS, Spool

_names = itertools.count()
NOW = int(CLOCK.timestamp())


def now_line(value, measurement="probe", key="v"):
    return f"{measurement},k={key} value={value}i {NOW}"


def values(client, measurement="probe"):
    series = client.query(f'SELECT "value" FROM "10m".{quote_ident(measurement)}')[0]
    return [row[1] for s in series for row in s["values"]]


@pytest.fixture
def spool_dir(tmp_path):
    return tmp_path / "spool"


@pytest.fixture
def db(influx_server, spool_dir):
    client = Influx(influx_server.url, f"qmonit_spool_{next(_names)}", spool_dir=spool_dir,
                    retry_base=0)
    client.ensure_database()
    yield client
    client.query(f"DROP DATABASE {quote_ident(client.database)}")


def down(db, spool_dir, **kw):
    """A client of the same database whose InfluxDB cannot be reached."""
    return Influx(f"http://127.0.0.1:{free_port()}", db.database, spool_dir=spool_dir, **kw)


def spooled(spool_dir):
    return sorted(spool_dir.glob("*.lp.gz"))


def test_unreachable_influxdb_spools_and_the_next_write_flushes_first(db, spool_dir):
    with pytest.raises(SinkError) as failure:
        down(db, spool_dir).write_lines("10m", [now_line(1), now_line(2, "other")])
    assert "127.0.0.1" in str(failure.value) and "kept in" in str(failure.value)
    assert failure.value.safe
    (path,) = spooled(spool_dir)
    text = gzip.decompress(path.read_bytes()).decode().splitlines()
    # The file says where its lines go.
    assert text[0].startswith("# qmonit-spool ") and db.database in text[0] and '"10m"' in text[0]
    assert text[1:] == [now_line(1), now_line(2, "other")]
    # Same series and second: the spooled value goes first, the new one overwrites it.
    db.write_lines("10m", [now_line(5)])
    assert values(db) == [5] and values(db, "other") == [2]
    assert spooled(spool_dir) == []


def test_a_successful_write_leaves_nothing_behind(db, spool_dir):
    db.write_lines("10m", [now_line(1)])
    assert values(db) == [1]
    assert [p.name for p in spool_dir.iterdir() if not p.name.startswith(".")] == []


def test_spool_keeps_order_over_several_failures(db, spool_dir):
    for value in (1, 2):
        with pytest.raises(SinkError):
            down(db, spool_dir).write_lines("10m", [now_line(value)])
    assert len(spooled(spool_dir)) == 2
    assert db.flush_spool() == 2
    assert values(db) == [2]


def test_the_spool_records_database_and_policy(db, spool_dir, influx_server):
    """A file spooled for another database and policy goes there, not to the replayer's."""
    other = Influx(influx_server.url, f"qmonit_spool_{next(_names)}", spool_dir=spool_dir)
    other.ensure_database()
    try:
        with pytest.raises(SinkError):
            down(other, spool_dir).write_lines("1h", [now_line(4)])
        db.write_lines("10m", [now_line(1)])
        assert values(db) == [1]
        series = other.query('SELECT "value" FROM "1h"."probe"')[0]
        assert [row[1] for s in series for row in s["values"]] == [4]
    finally:
        other.query(f"DROP DATABASE {quote_ident(other.database)}")


def test_a_refused_line_is_isolated_and_the_rest_written(db, spool_dir, caplog):
    """One bad line among 45,000 (three batches): 44,999 written, one dead letter."""
    db.write_lines("10m", [f'probe,k=x value=1i {NOW}'])
    lines = [f"probe,k=s{i} value={i}i {NOW}" for i in range(45000)]
    lines[30123] = f'probe,k=bad value="text" {NOW}'     # a field type conflict: 400
    caplog.set_level(logging.WARNING)
    assert db.write_lines("10m", lines) == 45000
    [series] = db.query('SELECT count("value") FROM "10m"."probe"')
    assert series[0]["values"][0][1] == 45000            # 44,999 + the first line
    assert db.dead_letters == 1
    dead = (spool_dir / DEAD_LETTERS).read_text()
    assert 'k=bad value="text"' in dead and "field type conflict" in dead
    assert "refused 1 line" in caplog.text
    assert spooled(spool_dir) == []


def test_a_refused_line_in_a_spooled_file_does_not_cost_the_others(db, spool_dir):
    lines = [f"probe,k=s{i} value={i}i {NOW}" for i in range(30)]
    lines[7] = "probe,k=bad value= garbage"
    with pytest.raises(SinkError):
        down(db, spool_dir).write_lines("10m", lines)
    db.write_lines("10m", [now_line(9, "third")])
    [series] = db.query('SELECT count("value") FROM "10m"."probe"')
    assert series[0]["values"][0][1] == 29
    assert db.dead_letters == 1 and "garbage" in (spool_dir / DEAD_LETTERS).read_text()
    assert spooled(spool_dir) == []


def test_a_file_refused_for_another_reason_never_blocks_newer_data(db, spool_dir, caplog):
    """Retention policy missing: InfluxDB refuses the file (not 400) on every try."""
    caplog.set_level(logging.WARNING)
    spool = Spool(spool_dir)
    kept = spool.put(db.database, "nosuchrp", [now_line(1)])
    for value in range(2, 7):
        db.replay_budget = 120
        db.write_lines("10m", [now_line(value)])       # no error: newer data goes through
        assert values(db) == [value]
    assert not kept.exists()
    assert kept.with_name(kept.name + ".failed").exists()
    assert "refused it 5 times" in caplog.text
    assert spooled(spool_dir) == []


def test_retries_wait_with_backoff(db, spool_dir):
    slow = Influx(db.url, db.database, spool_dir=spool_dir, retry_base=3600)
    kept = Spool(spool_dir).put(db.database, "nosuchrp", [now_line(1)])
    slow.write_lines("10m", [now_line(2)])
    slow.replay_budget = 120
    slow.write_lines("10m", [now_line(3)])
    assert kept.exists()
    retries = (spool_dir / ".retries.json").read_text()
    assert '"attempts": 1' in retries                   # the second run did not try again


@pytest.mark.parametrize("content", [b"\xff\xfe not gzip", None])
def test_a_corrupt_file_is_set_aside(db, spool_dir, caplog, content):
    caplog.set_level(logging.WARNING)
    spool_dir.mkdir(parents=True)
    bad = spool_dir / "00000000000000000001-deadbeef.lp.gz"
    bad.write_bytes(content or gzip.compress(b"probe,k=v value=1i 1\n\xff\xfe\n"))
    legacy = spool_dir / "00000000000000000002-deadbeef.10m.lp"
    legacy.write_bytes(b"probe,k=v value=1i 1\n\xc3\x28\n")          # not UTF-8
    for value in (1, 2):
        db.write_lines("10m", [now_line(value)])
        assert values(db) == [value]
    assert not bad.exists() and bad.with_name(bad.name + ".corrupt").exists()
    assert legacy.with_name(legacy.name + ".corrupt").exists()
    assert "unreadable" in caplog.text


def test_old_plain_spool_files_are_replayed(db, spool_dir):
    spool_dir.mkdir(parents=True)
    (spool_dir / "00000000000000000001-deadbeef.10m.lp").write_text(now_line(3, "old") + "\n")
    db.write_lines("10m", [now_line(1)])
    assert values(db, "old") == [3]


def test_a_file_its_writer_still_holds_is_not_replayed(db, spool_dir):
    """The replay never posts nor removes a file whose writer is at work (the lost-slot race)."""
    spool = Spool(spool_dir)
    held = spool.put(db.database, "10m", [now_line(8, "held")], hold=True)
    db.write_lines("10m", [now_line(1)])
    assert held.path.exists() and values(db, "held") == []
    held.release()                        # the writer died: the next replay takes it
    db.write_lines("10m", [now_line(2)])
    assert values(db, "held") == [8] and not held.path.exists()


def test_only_one_process_replays_and_the_others_still_write(db, spool_dir):
    with pytest.raises(SinkError):
        down(db, spool_dir).write_lines("10m", [now_line(1, "old")])
    other = Spool(spool_dir)
    with other.replay_lock() as mine:
        assert mine
        db.write_lines("10m", [now_line(2)])             # its own points, no replay
        assert values(db) == [2] and values(db, "old") == []
        assert len(spooled(spool_dir)) == 1
    db.write_lines("10m", [now_line(3)])
    assert values(db, "old") == [1] and spooled(spool_dir) == []


def test_concurrent_writers_lose_nothing(db, spool_dir, tmp_path):
    """Several processes write while a backlog is replayed: every point arrives."""
    for i in range(20):
        with pytest.raises(SinkError):
            down(db, spool_dir).write_lines("10m", [f"backlog,k=s{i} value={i}i {NOW}"])
    script = tmp_path / "writer.py"
    script.write_text(f"""import sys
sys.path.insert(0, {str(ROOT)!r})
from qmonit.sinks.influx import Influx
n = int(sys.argv[1])
db = Influx({db.url!r}, {db.database!r}, spool_dir={str(spool_dir)!r})
for j in range(5):
    db.write_lines("10m", [f"own,k=p{{n}}_{{j}} value={{j}}i {NOW}"])
""")
    procs = [subprocess.Popen([sys.executable, str(script), str(n)], stderr=subprocess.PIPE)
             for n in range(4)]
    errors = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    db.flush_spool()
    [series] = db.query('SELECT count("value") FROM "10m"."backlog"')
    assert series[0]["values"][0][1] == 20
    [series] = db.query('SELECT count("value") FROM "10m"."own"')
    assert series[0]["values"][0][1] == 20
    assert spooled(spool_dir) == []


def test_replay_is_bounded_in_time_and_says_what_is_left(db, spool_dir, caplog):
    for i in range(3):
        with pytest.raises(SinkError):
            down(db, spool_dir).write_lines("10m", [now_line(i, f"m{i}")])
    caplog.set_level(logging.WARNING)
    db.replay_budget = 1e-9
    db.write_lines("10m", [now_line(1)])
    assert len(spooled(spool_dir)) >= 2
    assert "still to replay" in caplog.text


def test_a_full_spool_is_loud_but_a_healthy_influxdb_still_gets_the_points(db, spool_dir):
    small = down(db, spool_dir, spool_max_bytes=400)
    with pytest.raises(SinkError):
        small.write_lines("10m", [now_line(1, "a")])
    with pytest.raises(SinkError, match=r"spool full.*NOT kept|NOT kept.*spool full"):
        small.write_lines("10m", [f"big,k=s{i} value={i}i {NOW}" for i in range(500)])
    full = Influx(db.url, db.database, spool_dir=spool_dir, spool_max_bytes=100)
    with pytest.raises(SinkError, match="spool_max_mb") as failure:
        full.write_lines("10m", [now_line(2)])
    assert failure.value.safe
    assert values(db) == [2] and values(db, "a") == [1]


def test_an_unwritable_spool_does_not_stop_a_healthy_influxdb(db, spool_dir):
    spool_dir.write_text("a file where the spool directory should be\n")
    assert db.write_lines("10m", [now_line(4)]) == 1
    assert values(db) == [4]
    with pytest.raises(SinkError, match=r"cannot connect.*NOT kept.*spool"):
        down(db, spool_dir).write_lines("10m", [now_line(5)])


def test_replayed_10m_hours_are_recorded_for_downsample(db, spool_dir):
    with pytest.raises(SinkError):
        down(db, spool_dir).write_lines("10m", [now_line(1)])
    db.write_lines("1h", [now_line(2)])
    spool = Spool(spool_dir)
    assert spool.late_hours() == [NOW - NOW % 3600]
    spool.forget_late_hours([NOW - NOW % 3600])
    assert spool.late_hours() == []


def test_a_full_spool_that_the_replay_drains_is_no_error(db, spool_dir):
    with pytest.raises(SinkError):
        down(db, spool_dir).write_lines("10m", [f"big,k=s{i} value={i}i {NOW}" for i in range(50)])
    used = Spool(spool_dir).size()
    healthy = Influx(db.url, db.database, spool_dir=spool_dir, spool_max_bytes=used + 100)
    assert healthy.write_lines("10m", [f"other,k=s{i} value={i}i {NOW}" for i in range(50)]) == 50
    assert spooled(spool_dir) == []


def test_dead_letters_count_as_errors_of_the_run(db):
    import datetime as dt

    from qmonit.jobs.runs import Run
    db.write_lines("10m", [f"probe,k=x value=1i {NOW}"])
    db.write_lines("10m", [f'probe,k=y value="text" {NOW}', now_line(3, "fine")])
    Run("fetch_queues", dt.datetime.fromtimestamp(NOW - NOW % 600, dt.UTC)).record(db, "ok")
    [series] = db.query('SELECT "errors" FROM "10m"."qmonit_runs"')
    assert series[0]["values"][0][1] == 1 and values(db, "fine") == [3]


def test_a_batch_refused_whole_is_dead_lettered_without_halving(db, spool_dir):
    db.write_lines("10m", [f"probe,k=x value=1i {NOW}"])
    bad = [f'probe,k=s{i} value="text" {NOW}' for i in range(3000)]
    assert db.write_lines("10m", bad + [now_line(2, "fine")]) == 3001
    assert db.dead_letters == 3000 and values(db, "fine") == [2]
    assert (spool_dir / DEAD_LETTERS).read_text().count('value="text"') == 3000
