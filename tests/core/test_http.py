import pytest
import requests

from qmonit.core import http
from qmonit.core.errors import SourceError


def test_fetch_ok_and_http_error(sim):
    session = http.session()
    text = http.fetch(session, sim.url + "/api/atlas/site/query/?json", 5)
    assert text.startswith("{")          # CRIC keys the site dump by name
    with pytest.raises(SourceError, match=r"HTTP 404"):
        http.fetch(session, sim.url + "/no/such/path", 5)


def test_connection_refused_is_short():
    from conftest import free_port_url
    url = free_port_url()
    with pytest.raises(SourceError) as e:
        http.fetch(http.session(), url, 2)
    assert str(e.value) == f"{url}: cannot connect (connection refused)"


def test_parse_json_python_literal_fallback():
    assert http.parse_json("u", "{'a': 1}", allow_python_literal=True) == {"a": 1}
    with pytest.raises(SourceError, match="invalid JSON"):
        http.parse_json("u", "{'a': 1}")
    with pytest.raises(SourceError, match=r"u: invalid JSON"):
        http.parse_json("u", '{"a": ', allow_python_literal=True)


def test_describe_timeout():
    assert http.describe(requests.ReadTimeout("x")) == "timed out"
