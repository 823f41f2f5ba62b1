"""fetch_queues.py against HTTPS PanDA and CRIC that require a client certificate from a private
CA (a real TLS handshake with the simulator's HTTPS mode), an OIDC token, and the legacy call
that PanDA no longer offers."""
import datetime as dt
import subprocess

import pytest
import trustme
from conftest import recent_hour, stamp, write_config

import fetch_queues
from qmonit.core import schema, tls
from qmonit.core.errors import SinkError
from qmonit.dev.simulator import Simulator
from qmonit.sinks.influx import Influx

T = recent_hour()
TS = stamp(T + dt.timedelta(minutes=4))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A private CA, a server certificate for 127.0.0.1, and a client 'proxy' (key + chain)."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    client = ca.issue_cert("qmonit-robot@example.org")
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "proxy.pem"))
    # A directory of hashed CA certificates, as /etc/grid-security/certificates.
    certs = d / "certificates"
    certs.mkdir()
    ca.cert_pem.write_to_path(str(certs / "QMonitTestCA.pem"))
    subprocess.run(["openssl", "rehash", str(certs)], check=True, capture_output=True)
    assert any(p.name.endswith(".0") for p in certs.iterdir())
    # Another CA, which the servers do not trust
    other = trustme.CA()
    other.issue_cert("stranger").private_key_and_cert_chain_pem.write_to_path(
        str(d / "stranger.pem"))
    return d


@pytest.fixture(scope="module")
def https_sim(pki):
    sim = Simulator(seed=11, series=400, time=T, tls={
        "cert": str(pki / "server.pem"), "client_ca": str(pki / "ca.pem")})
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def https_config(tmp_path, influx_server, mariadb_server, https_sim, database_name,
                 monkeypatch):
    for name in ("X509_CERT_DIR", "X509_USER_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)

    def make(panda="", cric=""):
        path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                            database_name, https_sim.url, tmp_path / "data")
        text = path.read_text().replace("[panda]\n", f"[panda]\n{panda}") \
                               .replace("[cric]\n", f"[cric]\n{cric}")
        path.write_text(text)
        return path
    return make


def run(config, *args):
    return fetch_queues.main(["--config", str(config), "--timestamp", TS, *args])


def jobs_written(influx_server, database):
    influx = Influx(influx_server.url, database)
    [series] = influx.query(f'SELECT count("jobs") FROM {schema.JOBS.qualified}')
    return series[0]["values"][0][1] if series else 0


def expected_points(sim):
    return sum(len(s) for ls in sim.expected_stats(T, 10).values() for rs in ls.values()
               for s in rs.values())


def both(text):
    return text, text


@pytest.mark.parametrize("how", ["file", "directory"])
def test_ca_by_file_or_hashed_directory_and_a_client_certificate(
        how, pki, https_sim, https_config, influx_server, database_name, capsys):
    ca = pki / ("ca.pem" if how == "file" else "certificates")
    config = https_config(*both(f"ca_path = {ca}\ncert = {pki / 'proxy.pem'}\n"))
    assert run(config) == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""
    assert jobs_written(influx_server, database_name) == expected_points(https_sim)


def test_ca_and_proxy_from_the_x509_environment(pki, https_sim, https_config, influx_server,
                                                database_name, monkeypatch, capsys):
    config = https_config()
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "certificates"))
    monkeypatch.setenv("X509_USER_PROXY", str(pki / "proxy.pem"))
    # requests would let REQUESTS_CA_BUNDLE override the CA; QMonit's settings win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki / "stranger.pem"))
    assert run(config) == 0, capsys.readouterr().err
    assert jobs_written(influx_server, database_name) == expected_points(https_sim)


def test_without_a_ca_the_server_is_refused_with_a_clear_line(pki, https_sim, https_config,
                                                              capsys):
    config = https_config(*both(f"cert = {pki / 'proxy.pem'}\n"))
    assert run(config) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert https_sim.url in err
    assert "not trusted by the default CA bundle" in err
    assert "set [panda] ca_path (or X509_CERT_DIR)" in err


@pytest.mark.parametrize("cert, message", [
    ("", "no client certificate is set"),
    ("stranger.pem", "the server refused the client certificate"),
])
def test_a_missing_or_untrusted_client_certificate_is_named(cert, message, pki, https_sim,
                                                            https_config, capsys):
    keys = f"ca_path = {pki / 'ca.pem'}\n" + (f"cert = {pki / cert}\n" if cert else "")
    config = https_config(*both(keys))
    assert run(config) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and https_sim.url in err and message in err
    assert "[panda] cert and key (or X509_USER_PROXY)" in err


def test_a_ca_path_that_does_not_exist_exits_2(pki, https_config, monkeypatch, capsys):
    config = https_config(panda="ca_path = /no/such/ca.pem\n")
    assert run(config) == 2
    err = capsys.readouterr().err
    assert f"{config}: [panda] ca_path: /no/such/ca.pem: no such file" in err
    monkeypatch.setenv("X509_USER_PROXY", "/no/such/proxy")
    config = https_config()
    assert run(config) == 2
    assert "[panda] cert: empty, and X509_USER_PROXY=/no/such/proxy: no such file" in \
        capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_influxdb_over_https_verifies_against_ca_path(pki, https_sim):
    # The simulator is no InfluxDB, but the handshake is real: it fails or passes on TLS.
    untrusted = Influx(https_sim.url, "db", tls=tls.TLS("influxdb"))
    with pytest.raises(SinkError) as e:
        untrusted.query("SHOW DATABASES")
    assert "not trusted" in str(e.value) and "[influxdb] ca_path" in str(e.value)
    trusted = Influx(https_sim.url, "db", tls=tls.TLS(
        "influxdb", str(pki / "ca.pem"), str(pki / "proxy.pem"), "", "[influxdb] ca_path",
        "[influxdb] cert"))
    with pytest.raises(SinkError) as e:
        trusted.query("SHOW DATABASES")
    assert "TLS" not in str(e.value) and "not found: /query" in str(e.value)
    # verify_ssl = false is the one way to switch verification off
    unverified = Influx(https_sim.url, "db", verify_ssl=False, tls=tls.TLS(
        "influxdb", "", str(pki / "proxy.pem"), "", "", "[influxdb] cert"))
    with pytest.raises(SinkError, match="not found: /query"):
        unverified.query("SHOW DATABASES")


# --- PanDA's token and the legacy call -----------------------------------------------------

@pytest.fixture(scope="module")
def token_sim():
    sim = Simulator(seed=12, series=300, time=T, panda_token="s3cr3t-t0ken",
                    legacy_removed=True)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def token_config(tmp_path, influx_server, mariadb_server, token_sim, database_name):
    return write_config(tmp_path / "t.cfg", influx_server.url, mariadb_server.port,
                        database_name, token_sim.url, tmp_path / "data")


def test_an_oidc_token_is_sent_and_never_shown(token_config, token_sim, tmp_path, capsys):
    assert run(token_config) == 1
    err = capsys.readouterr().err
    assert "success is false: SSL secure connection is required" in err
    assert "[panda] token_file" in err and err.count("\n") == 1
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-t0ken\n")
    text = token_config.read_text().replace("[panda]\n", f"[panda]\ntoken_file = {token_file}\n")
    token_config.write_text(text)
    assert run(token_config, "--debug") == 0
    assert run(token_config, "--dry-run", "--debug") == 0
    out = capsys.readouterr()
    assert "jobs,panda_queue=" in out.out
    assert "s3cr3t" not in out.out + out.err
    # the vo goes into the Origin header: another one is refused
    token_config.write_text(text.replace("[panda]\n", "[panda]\nvo = cms\n"))
    assert run(token_config) == 1
    assert "s3cr3t" not in capsys.readouterr().err


def test_an_unreadable_token_file_exits_2(token_config, capsys):
    text = token_config.read_text().replace("[panda]\n", "[panda]\ntoken_file = /no/token\n")
    token_config.write_text(text)
    assert run(token_config) == 2
    assert "[panda] token_file: /no/token" in capsys.readouterr().err


def test_the_removed_legacy_call_says_to_use_v1(token_config, token_sim, capsys):
    text = token_config.read_text().replace("[panda]\n", "[panda]\napi = legacy\n")
    token_config.write_text(text)
    assert run(token_config) == 1
    err = capsys.readouterr().err
    assert "HTTP 403" in err and "no longer offers the legacy statistics call" in err
    assert "set [panda] api = v1" in err and err.count("\n") == 1


# --- MySQL over TLS (CERN database-on-demand offers it) ------------------------------------

@pytest.fixture(scope="module")
def tls_mariadb(pki, tmp_path_factory):
    from qmonit.dev import devservers
    server = devservers.start_mariadb(tmp_path_factory.mktemp("mariadb-tls"), extra_args=(
        f"--ssl-cert={pki / 'server.pem'}", f"--ssl-key={pki / 'server.pem'}",
        f"--ssl-ca={pki / 'ca.pem'}", "--require-secure-transport=ON"))
    yield server
    server.stop()


def mysql_config(tmp_path, port, keys):
    from qmonit.core.config import Config
    return Config.from_string(
        f"[credentials]\nusername = qmonit\npassword = qmonit\ndatabase = tls_test\n"
        f"[mysql]\nhost = 127.0.0.1\nport = {port}\ntimeout = 5\n{keys}", tmp_path / "m.cfg")


def test_mysql_over_tls_verifies_the_server(pki, tls_mariadb, tmp_path):
    from qmonit.sinks.mysqlstore import MySQLStore
    with MySQLStore.from_config(mysql_config(
            tmp_path, tls_mariadb.port, f"ssl_ca = {pki / 'ca.pem'}\n"
                                        f"ssl_cert = {pki / 'proxy.pem'}\n")) as store:
        [(cipher,)] = [row[1:] for row in store.select("SHOW SESSION STATUS LIKE 'Ssl_cipher'")]
        assert cipher                              # the connection is encrypted
    # A CA that did not sign the server's certificate: refused, naming what to set.
    with MySQLStore.from_config(mysql_config(
            tmp_path, tls_mariadb.port, f"ssl_ca = {pki / 'stranger.pem'}\n")) as store:
        with pytest.raises(SinkError) as e:
            store.select("SELECT 1")
    assert f"MySQL 127.0.0.1:{tls_mariadb.port}/tls_test" in str(e.value)
    assert "[mysql] ssl_ca" in str(e.value)


def test_mysql_tls_files_must_exist(tmp_path):
    from qmonit.core.errors import ConfigError
    from qmonit.sinks.mysqlstore import MySQLStore
    with pytest.raises(ConfigError, match=r"\[mysql\] ssl_ca: /no/ca.pem: no such file"):
        MySQLStore.from_config(mysql_config(tmp_path, 3306, "ssl_ca = /no/ca.pem\n"))


def test_a_hanging_https_server_is_a_time_out_not_a_tls_failure(pki, https_sim, https_config,
                                                                capsys):
    config = https_config(*both(f"ca_path = {pki / 'ca.pem'}\ncert = {pki / 'proxy.pem'}\n"))
    config.write_text(config.read_text().replace("timeout = 5", "timeout = 1"))
    https_sim.set_fault("panda", "hang", count=1)
    try:
        assert run(config) == 1
    finally:
        https_sim.clear_faults()
    err = capsys.readouterr().err
    assert "timed out" in err and "TLS" not in err and err.count("\n") == 1


def test_the_simulator_command_serves_https_with_client_certificates(pki):
    import sys

    import requests
    from conftest import ROOT
    proc = subprocess.Popen(
        [sys.executable, "-m", "qmonit.dev.simulator", "--series", "200", "--tls-cert",
         str(pki / "server.pem"), "--tls-client-ca", str(pki / "ca.pem")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("https://127.0.0.1:")
        r = requests.get(url + "/_sim/state", verify=str(pki / "ca.pem"),
                         cert=str(pki / "proxy.pem"), timeout=10)
        assert r.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/_sim/state", timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
