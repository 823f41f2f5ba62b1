"""Line-protocol escaping: property tests, and a round trip through the real InfluxDB."""
import requests
from conftest import split_unescaped
from hypothesis import given, settings
from hypothesis import strategies as st

from qmonit.core import lineprotocol as lp

NASTY = ["a b", "a,b", "a=b", 'q"uote', "s'ingle", "ünï ☃", "end\\", "\\start", "x\\,y", "t\\\"",
         "=", ",", " ", "ANALY_CERN, \"SLC\"=x", "日本語", "tab\there"]
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=20).filter(lambda s: s.strip() != "")


@given(names, names)
def test_escaped_tag_is_one_token(key, value):
    token = f"{lp.escape_key(key)}={lp.escape_key(value)}"
    assert split_unescaped(token, ",") == [token]
    assert split_unescaped(token, " ") == [token]
    assert len(split_unescaped(token, "=")) == 2


@given(st.integers(-2**63, 2**63 - 1))
def test_integers_carry_the_i_suffix(n):
    assert lp.format_value(n) == f"{n}i"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_through_repr(x):
    assert float(lp.format_value(x)) == x


def test_line_shape():
    assert lp.line("jobs", {"b": "2", "a": "x y"}, {"jobs": 3, "f": 1.5}, 60) == \
        "jobs,a=x\\ y,b=2 jobs=3i,f=1.5 60"
    assert lp.line("m", {"empty": ""}, {"x": 1, "none": None}, 0) == "m x=1i 0"


def test_nan_is_refused():
    import pytest
    with pytest.raises(ValueError):
        lp.format_value(float("nan"))


def _roundtrip(influx_server, values):
    db = "escape_roundtrip"
    requests.post(f"{influx_server.url}/query", params={"q": f'CREATE DATABASE "{db}"'})
    lines = [lp.line("m e,as", {"t a=g": v}, {"s": v, "n": i}, 1000 + i)
             for i, v in enumerate(values)]
    r = requests.post(f"{influx_server.url}/write", params={"db": db, "precision": "s"},
                      data="\n".join(lines).encode())
    assert r.status_code == 204, r.text
    reply = requests.get(f"{influx_server.url}/query", params={
        "db": db, "epoch": "s", "q": 'SELECT * FROM "m e,as" WHERE time >= 1000s'}).json()
    requests.post(f"{influx_server.url}/query", params={"q": f'DROP DATABASE "{db}"'})
    series = reply["results"][0]["series"][0]
    rows = [dict(zip(series["columns"], row)) for row in series["values"]]
    return {row["n"]: row for row in rows}


def test_nasty_names_round_trip(influx_server):
    rows = _roundtrip(influx_server, NASTY)
    for i, value in enumerate(NASTY):
        assert rows[i]["t a=g"] == lp.carried_name(value)
        assert rows[i]["s"] == value
    # Only backslashes InfluxDB 1.x cannot carry are replaced.
    assert [v for v in NASTY if lp.carried_name(v) != v] == ["end\\", "x\\,y"]


@settings(max_examples=20, deadline=None)
@given(st.lists(names, min_size=1, max_size=10, unique=True))
def test_any_names_round_trip(influx_server, values):
    rows = _roundtrip(influx_server, values)
    for i, value in enumerate(values):
        assert rows[i]["t a=g"] == lp.carried_name(value)
