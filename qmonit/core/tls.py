"""TLS towards the HTTPS services: which CA to trust, which client certificate to present, and
one clear line when a handshake fails.

PanDA and CRIC are served with certificates of the CERN Grid CA, which is in no default bundle
(certifi). Their own clients trust X509_CERT_DIR (a directory of hashed CA certificates, such as
/etc/grid-security/certificates) and present the X509 proxy in X509_USER_PROXY; so does QMonit
for [panda] and [cric] when ca_path and cert are empty. Verification is never switched off here.
"""
import os
import re
from dataclasses import dataclass

from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import RequestException, SSLError

from .errors import ConfigError

GRID_CA_DIR = "/etc/grid-security/certificates"


class TLSFailure(SSLError):
    """A handshake that failed, with a message that says what to set (see http.describe)."""


@dataclass(frozen=True)
class TLS:
    section: str
    ca_path: str = ""           # a CA bundle file or a hashed directory; "": default bundle
    cert: str = ""              # PEM client certificate (an X509 proxy holds the key too)
    key: str = ""
    ca_from: str = ""           # where ca_path came from, for messages
    cert_from: str = ""
    grid: bool = False          # X509_CERT_DIR / X509_USER_PROXY are honoured

    @property
    def verify(self):
        """requests' verify: the CA file or directory, else True (the default bundle)."""
        return self.ca_path or True

    @property
    def client_cert(self):
        if not self.cert:
            return None
        return (self.cert, self.key) if self.key else self.cert

    def adapter(self, **kwargs):
        return TLSAdapter(self, **kwargs)

    def configure(self, session):
        """Make a requests session verify and present what this says, on https:// URLs."""
        session.verify = self.verify
        session.cert = self.client_cert
        session.mount("https://", self.adapter())
        return session

    def explain(self, error):
        """One line for a failed handshake: what went wrong and which key to set."""
        text = " ".join(str(error).split())
        detail = _detail(text)
        ca_keys = f"[{self.section}] ca_path" + (" (or X509_CERT_DIR)" if self.grid else "")
        cert_keys = f"[{self.section}] cert and key" + (" (or X509_USER_PROXY)" if self.grid
                                                        else "")
        lowered = text.lower()
        if "certificate verify failed" in lowered:
            if "hostname mismatch" in lowered or "doesn't match" in lowered \
                    or "not valid for" in lowered:
                return (f"TLS: the server's certificate is not for this host name ({detail}); "
                        "use the host name the certificate names in the URL")
            if "expired" in lowered:
                return f"TLS: the server's certificate has expired ({detail})"
            trusted = (f"the CA in {self.ca_path} (from {self.ca_from})" if self.ca_path
                       else "the default CA bundle")
            return (f"TLS: the server's certificate is not trusted by {trusted} ({detail}); "
                    f"set {ca_keys} to its CA: a bundle file, or a directory of hashed CA "
                    f"certificates such as {GRID_CA_DIR}")
        if "pem" in lowered or "no such file" in lowered or "key values mismatch" in lowered:
            return (f"TLS: cannot load the client certificate {self.cert or '?'} "
                    f"(from {self.cert_from or '?'}): {detail}; check {cert_keys}")
        if any(alert in lowered for alert in ("certificate required", "handshake failure",
                                              "bad certificate", "unknown ca",
                                              "certificate unknown", "certificate expired",
                                              "access denied", "certificate revoked",
                                              "eof occurred", "unexpected eof",
                                              "connection reset")):
            # A server that wants a client certificate sends an alert, or just hangs up.
            if not self.cert:
                return (f"TLS: the server ended the handshake ({detail}) and no client "
                        f"certificate is set; set {cert_keys}: an X509 proxy or a PEM "
                        "certificate")
            return (f"TLS: the server refused the client certificate {self.cert} (from "
                    f"{self.cert_from}) ({detail}); renew it (an expired proxy?) or set "
                    f"{cert_keys}")
        return f"TLS handshake failed ({detail}); check {ca_keys} and {cert_keys}"


class TLSAdapter(HTTPAdapter):
    """Uses the configured CA even where requests would take REQUESTS_CA_BUNDLE instead, and
    turns a failed handshake into a TLSFailure whose message says what to set."""

    def __init__(self, tls, **kwargs):
        self.tls = tls
        super().__init__(**kwargs)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        if verify is not False and self.tls.ca_path:
            verify = self.tls.ca_path
        cert = cert or self.tls.client_cert
        try:
            return super().send(request, stream=stream, timeout=timeout, verify=verify,
                                cert=cert, proxies=proxies)
        except SSLError as e:
            raise TLSFailure(self.tls.explain(e), request=request) from None
        except RequestsConnectionError as e:
            # A server that rejects the client certificate may just close the connection.
            if re.search(r"ssl|tls|certificate|alert", str(e), re.IGNORECASE):
                raise TLSFailure(self.tls.explain(e), request=request) from None
            raise
        except RequestException:
            raise           # time-outs and the like: not about TLS
        except OSError as e:
            # requests checks the cert and CA paths itself and raises a plain OSError.
            raise TLSFailure(self.tls.explain(e), request=request) from None


def _detail(text):
    """The OpenSSL reason inside a requests/urllib3 message, without the nested reprs."""
    m = re.search(r"\[SSL: [A-Z0-9_]+\] ([^(]*?)\s*\(_ssl\.c", text)
    if m:
        return m.group(1).strip()
    m = re.search(r"([A-Za-z][^(')\[\]]*?)\s*\(_ssl\.c", text)
    if m:
        return m.group(1).strip()
    m = re.search(r"certificate verify failed: ([^(')]*)", text)
    if m:
        return "certificate verify failed: " + m.group(1).strip()
    return text[-160:]


def settings(config, section, grid=False, environ=None):
    """The TLS settings of one section ([panda], [cric], [influxdb], ...).

    grid: X509_CERT_DIR and X509_USER_PROXY apply when ca_path and cert are empty. A path
    that does not exist is a ConfigError naming the section and key (exit 2)."""
    env = os.environ if environ is None else environ
    ca = config.get(section, "ca_path", "")
    ca_from = f"[{section}] ca_path"
    if not ca and grid and env.get("X509_CERT_DIR"):
        ca, ca_from = env["X509_CERT_DIR"], "X509_CERT_DIR"
    cert = config.get(section, "cert", "")
    cert_from = f"[{section}] cert"
    if not cert and grid and env.get("X509_USER_PROXY"):
        cert, cert_from = env["X509_USER_PROXY"], "X509_USER_PROXY"
    key = config.get(section, "key", "")
    for value, origin, key_name in ((ca, ca_from, "ca_path"), (cert, cert_from, "cert"),
                                    (key, f"[{section}] key", "key")):
        if value and not os.access(value, os.R_OK):
            reason = ("no such file or directory" if not os.path.exists(value)
                      else "not readable")
            if origin.startswith("["):
                raise ConfigError(config.path, f"{value}: {reason}", section, key_name)
            raise ConfigError(config.path, f"empty, and {origin}={value}: {reason}", section,
                              key_name)
    if key and not cert:
        raise ConfigError(config.path, "a key without a cert", section, "key")
    return TLS(section, ca, cert, key, ca_from, cert_from, grid)
