"""The loopback HTTP(S) server both mocks run on: a threaded server with a large backlog and a
lazy TLS handshake, the handler base (HTTP/1.1, quiet access log, GET/POST/HEAD routed to
_route), the running-server handle and the command-line loopback guard. Test infrastructure only."""
from __future__ import annotations

import os
import ssl
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def log_line(who: str, text: str) -> None:
    sys.stderr.write(f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z {who} {text}\n")
    sys.stderr.flush()


class MockHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256      # the default backlog of 5 drops connections under test storms
    tls_context: ssl.SSLContext | None = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls_context is not None:
            # The TLS handshake happens lazily, on the handler thread's first read, so a slow or
            # rejecting client never blocks the accept loop.
            sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
            return      # e.g. a client that does not trust the test CA aborts the handshake
        super().handle_error(request, client_address)


class MockHandler(BaseHTTPRequestHandler):
    """Handler base: self.st is the mock's state (httpd.state), self.base its base URL; the
    subclass implements _route(method)."""
    protocol_version = "HTTP/1.1"
    sys_version = ""

    @property
    def st(self):
        return self.server.state  # type: ignore[attr-defined]

    @property
    def base(self) -> str:
        return self.server.base_url  # type: ignore[attr-defined]

    def log_message(self, fmt, *args):   # default access log would include query strings: keep quiet
        pass

    def _route(self, method: str):
        raise NotImplementedError

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_HEAD(self):
        self._route("GET")


def tls_server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def make_httpd(host: str, port: int, handler: type[BaseHTTPRequestHandler], state, tls_cert: str | None = None,
               tls_key: str | None = None) -> MockHTTPServer:
    """A bound server (port 0 = a free port) with .base_url and .state; HTTPS with tls_cert + tls_key."""
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key go together")
    httpd = MockHTTPServer((host, port), handler)
    if tls_cert:
        httpd.tls_context = tls_server_context(tls_cert, tls_key)
    h, p = httpd.server_address[0], httpd.server_address[1]
    shown = f"[{h}]" if ":" in h else h
    httpd.base_url = f"{'https' if tls_cert else 'http'}://{shown}:{p}"  # type: ignore[attr-defined]
    httpd.state = state  # type: ignore[attr-defined]
    return httpd


class RunningServer:
    """A mock serving on a background thread: .base_url, .state, .stop(); a context manager."""

    def __init__(self, httpd: MockHTTPServer, name: str):
        self.httpd = httpd
        self.host, self.port = httpd.server_address[0], httpd.server_address[1]
        self.base_url: str = httpd.base_url  # type: ignore[attr-defined]
        self.state = httpd.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def refuse_non_loopback(host: str) -> bool:
    """True (and says why on stderr) when a command line asks to bind beyond loopback without
    MOCK_ENTRA_ALLOW_NON_LOOPBACK."""
    if host not in LOOPBACK_HOSTS and not os.environ.get("MOCK_ENTRA_ALLOW_NON_LOOPBACK"):
        print(f"refusing to bind {host}: loopback only (set MOCK_ENTRA_ALLOW_NON_LOOPBACK=1 to override)",
              file=sys.stderr)
        return True
    return False


def serve_until_interrupted(httpd: MockHTTPServer) -> int:
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
