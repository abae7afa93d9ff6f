"""Runs the mock Entra ID (tests/mock_entra/server.py, unchanged) for the benchmark with
TCP_NODELAY on its connections.

Why: the mock answers with two writes (headers, then body). On a kept-alive connection, as
Keycloak's and the core's pooled HTTP clients use, Nagle's algorithm on the mock's side holds
the body until the client's delayed ACK (about 40 ms on Linux) arrives: every refresh would
take ~40 ms longer than the IdP's own time, for stock and ours alike, which is an artifact of
the mock, not of Entra ID (measured: 72 ms end to end for a 20 ms IdP delay without this).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mock_entra import server  # noqa: E402

server.Handler.disable_nagle_algorithm = True  # socketserver.StreamRequestHandler: TCP_NODELAY in setup()

if __name__ == "__main__":
    sys.exit(server.main())
