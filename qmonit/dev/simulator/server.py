"""The simulator's HTTP server (PanDA, CRIC, MONIT and /_sim endpoints) and its command line."""
import json
import logging
import threading

from .world import (
    DDM_PATH,
    DEFAULT_TIME_WINDOW,
    FEDERATION_PATH,
    LEGACY_PATH,
    MONIT_PROXY_PREFIX,
    PANDAQUEUE_PATH,
    SITE_PATH,
    V1_PATH,
)

log = logging.getLogger(__name__)


# --- HTTP ----------------------------------------------------------------------------------

def _tls_context(tls):
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls["cert"], tls.get("key"))
    if tls.get("client_ca"):
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls["client_ca"])
    return context


def _make_server(sim, host, port):
    # http.server pulls in email/html/ssl; import it only when serving.
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    context = _tls_context(sim.tls) if sim.tls else None

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def __init__(self, *args):
            self.connections = set()
            self.connections_lock = threading.Lock()
            super().__init__(*args)

        def get_request(self):
            conn, address = super().get_request()
            if context is not None:
                # The handshake happens in the handler's thread, at its first read.
                conn = context.wrap_socket(conn, server_side=True,
                                           do_handshake_on_connect=False)
            return conn, address

        def handle_error(self, request, client_address):
            # A refused handshake (no or an untrusted client certificate) is the client's
            # business; log it instead of printing a traceback.
            log.debug("request from %s failed", client_address, exc_info=True)

        def close_connections(self):
            # Keep-alive handler threads would otherwise keep answering after stop().
            with self.connections_lock:
                connections = list(self.connections)
            for conn in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "QMonitSimulator/1.0"
        timeout = 120  # idle keep-alive connections

        def setup(self):
            super().setup()
            with self.server.connections_lock:
                self.server.connections.add(self.connection)

        def finish(self):
            try:
                super().finish()
            finally:
                with self.server.connections_lock:
                    self.server.connections.discard(self.connection)

        def log_message(self, fmt, *args):
            log.debug("%s %s", self.address_string(), fmt % args)

        def send(self, code, body, content_type="text/plain"):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            if path == "/_sim/state":
                return self.send(200, json.dumps(sim.state()), "application/json")
            if path not in (V1_PATH, LEGACY_PATH, PANDAQUEUE_PATH, SITE_PATH, DDM_PATH,
                            FEDERATION_PATH):
                return self.send(404, f"not found: {parts.path}\n")
            if path == LEGACY_PATH and sim.legacy_removed:
                return self.send(403, "method get_job_statistics_per_site_label_resource is "
                                      "forbidden\n")
            fault = sim._take_fault(path)
            if fault == "500":
                return self.send(500, "Internal Server Error (simulated)\n")
            if path in (V1_PATH, LEGACY_PATH) and sim.panda_token is not None and (
                    self.headers.get("Authorization") != f"Bearer {sim.panda_token}"
                    or self.headers.get("Origin") != "atlas"):
                body = {"success": False, "message": "SSL secure connection is required",
                        "data": {}}
                return self.send(200, json.dumps(body))
            if fault == "hang":
                # Hold the request without answering; stop() ends the wait.
                sim._stopping.wait(sim.hang_seconds)
                self.close_connection = True
                return
            as_json = "application/json" in self.headers.get("Accept", "")
            if fault == "success_false":
                body = {"success": False, "message": "simulated failure: database unavailable",
                        "data": {}}
                return self.send(200, json.dumps(body) if as_json else str(body))
            if path in (V1_PATH, LEGACY_PATH):
                query = parse_qs(parts.query, keep_blank_values=True)
                raw = query.get("time_window", [str(DEFAULT_TIME_WINDOW)])[0]
                try:
                    time_window = int(raw)
                    if time_window < 1:
                        raise ValueError
                except ValueError:
                    return self.send(400, f"bad time_window: {raw!r}\n")
                body = sim._stats_body(path, time_window, as_json)
                content_type = "text/plain"
            else:
                kind = {PANDAQUEUE_PATH: "pandaqueue", SITE_PATH: "site",
                        DDM_PATH: "ddmendpoint", FEDERATION_PATH: "federation"}[path]
                body = sim._cric_body(kind)
                content_type = "application/json"
            if fault == "truncated":
                body = body[:len(body) // 2]
            self.send(200, body, content_type)

        def do_POST(self):
            path = urlsplit(self.path).path.rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path.startswith(MONIT_PROXY_PREFIX):
                return self.monit(path, raw)
            if path.startswith("/benchmarks") and path.endswith("/_search"):
                return self.benchmarks(path, raw)
            if path != "/_sim/control":
                return self.send(404, f"not found: {self.path}\n")
            try:
                sim.control(json.loads(raw or b"{}"))
            except (ValueError, KeyError, TypeError) as exc:
                return self.send(400, json.dumps({"error": str(exc)}), "application/json")
            self.send(200, json.dumps(sim.state()), "application/json")

        def benchmarks(self, path, raw):
            """The ATLAS benchmark Elasticsearch, behind HTTP basic authentication."""
            if sim.es_auth is not None:
                import base64
                expected = base64.b64encode(":".join(sim.es_auth).encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    return self.send(401, json.dumps({"error": "unauthorized", "status": 401}),
                                     "application/json")
            fault = sim._take_fault(path)
            if fault == "500":
                return self.send(500, json.dumps({"error": "simulated", "status": 500}),
                                 "application/json")
            try:
                reply = sim.benchmark_search(json.loads(raw or b"{}"))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return self.send(400, json.dumps({"error": {"type": "parsing_exception",
                                                            "reason": str(exc)},
                                                  "status": 400}), "application/json")
            self.send(200, json.dumps(reply), "application/json")

        def monit(self, path, raw):
            """Grafana's datasource proxy in front of the Rucio accounting Elasticsearch."""
            datasource, _, rest = path[len(MONIT_PROXY_PREFIX):].partition("/")
            if not datasource.isdigit() or rest != "_msearch":
                return self.send(404, json.dumps({"message": "Not found"}), "application/json")
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token or (
                    sim.monit_token is not None and token != sim.monit_token):
                return self.send(401, json.dumps({"message": "Unauthorized"}),
                                 "application/json")
            fault = sim._take_fault(path)
            if fault == "500":
                return self.send(500, json.dumps({"message": "Internal Server Error "
                                                             "(simulated)"}), "application/json")
            if fault == "hang":
                sim._stopping.wait(sim.hang_seconds)
                self.close_connection = True
                return
            content_type = self.headers.get("Content-Type", "")
            if "json" not in content_type:
                return self.send(406, json.dumps({
                    "error": f"Content-Type header [{content_type}] is not supported",
                    "status": 406}), "application/json")
            status, reply = sim.msearch(raw, no_aggregations=fault == "no_aggregations")
            body = json.dumps(reply).encode()
            if fault == "truncated":
                body = body[:len(body) // 2]
            self.send(status, body, "application/json")

    server = Server((host, port), Handler)
    return server
