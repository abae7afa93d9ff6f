"""Fixtures for the two-node cluster tests (issue 5, "Cluster"): PostgreSQL + two Keycloak
nodes started by keycloak-dist/cluster.sh, admin clients per node, the mock Entra ID
(in-process, loopback), a realm wired to it, and helpers other suites reuse:

- `cluster`   session fixture: both nodes up (node 2 with the V2 broker API, see CLUSTER_MIXED_API),
              methods to kill/start/stop nodes, stop/start PostgreSQL, run SQL, dump the database;
- `admins`    KeycloakAdmin per node ([node 1, node 2]);
- `pg_dump`   a function returning the full `pg_dump` text of Keycloak's database (for scans such as
              "no token value the mock issued appears at rest").

Ports (override with the environment): nodes 18481/18482 (management 19481/19482), PostgreSQL
25432, JGroups 7900/7920, all on 127.0.0.1."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from mock_entra.server import start_server
from support.keycloak import KeycloakAdmin, browser_login
from support.mock_client import MockEntra

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "keycloak-dist" / "cluster.sh"
HTTP_PORTS = [int(p) for p in os.environ.get("CLUSTER_HTTP_PORTS", "18481 18482").split()]
MGMT_PORTS = [int(p) for p in os.environ.get("CLUSTER_MGMT_PORTS", "19481 19482").split()]
NODES = [f"http://127.0.0.1:{p}" for p in HTTP_PORTS]
# The one hostname both nodes use (node 1's URL): tokens carry it as issuer; browsers are sent there.
FRONT = os.environ.get("CLUSTER_HOSTNAME", NODES[0])
# Node 2 runs the V2 broker API (identity-brokering-api:v2), node 1 V1: Keycloak allows only one
# version per server, but nodes of one cluster may differ (a build option of each node).
MIXED_API = os.environ.get("CLUSTER_MIXED_API", "1") == "1"
V2_FEATURES = "identity-brokering-api:v2"
TENANT = "11111111-1111-1111-1111-111111111111"
MOCK_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
MOCK_CLIENT_SECRET = "mock-secret-c1"
MIDDLE_TIER = "00000000-0000-0000-0000-0000000000a1"
APP_CLIENT, APP_SECRET = "demo-app", "demo-app-secret"
REDIRECT_URI = "http://127.0.0.1:1/callback"
GRAPH = "https://graph.microsoft.com/User.Read"
API = f"api://{MIDDLE_TIER}/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        time.sleep(delay)


def _storage_key_file() -> Path | None:
    """The cluster's storage key file (encryption at rest; one random AES-256 key `k1`), made
    once per checkout under tests/.work; CLUSTER_NO_KEYS=1 runs the cluster without keys."""
    if os.environ.get("CLUSTER_NO_KEYS") == "1":
        return None
    path = ROOT / "tests" / ".work" / "cluster" / "storage-keys"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("k1 " + base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


KEY_FILE = _storage_key_file()


class Cluster:
    """Test-side handle on keycloak-dist/cluster.sh."""

    def __init__(self):
        self.nodes = NODES

    def env(self) -> dict:
        env = dict(os.environ)
        if KEY_FILE is not None:  # every cluster test runs with encryption at rest on
            env["KC_EXTRA_ARGS"] = (env.get("KC_EXTRA_ARGS", "") +
                                    f" --spi-admin-realm-restapi-extension--fresh-token-storage--key-file={KEY_FILE}").strip()
        env.setdefault("CLUSTER_HTTP_PORTS", " ".join(map(str, HTTP_PORTS)))
        env.setdefault("CLUSTER_MGMT_PORTS", " ".join(map(str, MGMT_PORTS)))
        if MIXED_API:
            env.setdefault("CLUSTER_FEATURES_2", V2_FEATURES)
        return env

    def sh(self, *args: str, check: bool = True, capture: bool = False, input: str | None = None,
           timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLUSTER_SH), *args], check=check, env=self.env(), text=True,
                              capture_output=capture, input=input, timeout=timeout)

    def url(self, n: int) -> str:
        return self.nodes[n - 1]

    def api_version(self, n: int) -> str:
        return "v2" if (MIXED_API and n == 2) else "v1"

    def alive(self, n: int) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{MGMT_PORTS[n - 1]}/health/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def start(self):
        self.sh("start")

    def stop(self):
        self.sh("stop", check=False)

    def kill(self, n: int):
        self.sh("kill-node", str(n))

    def start_node(self, n: int):
        self.sh("start-node", str(n))

    def start_node_async(self, n: int) -> subprocess.Popen:
        return subprocess.Popen([str(CLUSTER_SH), "start-node", str(n)], env=self.env())

    def stop_node(self, n: int):
        self.sh("stop-node", str(n))

    def ensure_up(self):
        for n in (1, 2):
            if not self.alive(n):
                self.start_node(n)

    def pg_stop(self):
        self.sh("pg-stop")

    def pg_start(self):
        self.sh("pg-start")

    def psql(self, sql: str) -> str:
        """Runs SQL on Keycloak's database; returns unaligned, tuples-only output."""
        return self.sh("psql", "-v", "ON_ERROR_STOP=1", "-tAc", sql, capture=True, timeout=60).stdout

    def psql_session(self) -> subprocess.Popen:
        """An interactive psql session (write SQL lines to .stdin), e.g. to hold row locks."""
        return subprocess.Popen([str(CLUSTER_SH), "psql", "-v", "ON_ERROR_STOP=1", "-q"], env=self.env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def pg_dump(self) -> str:
        """The full plain-text pg_dump of Keycloak's database (schema and data)."""
        return self.sh("pg-dump", capture=True, timeout=300).stdout

    def log(self, n: int) -> Path:
        return Path(self.sh("log", str(n), capture=True).stdout.strip())


@pytest.fixture(scope="session")
def cluster():
    c = Cluster()
    c.start()
    try:
        yield c
    finally:
        if os.environ.get("CLUSTER_KEEP") != "1":  # CLUSTER_KEEP=1 leaves it running (development)
            c.stop()


@pytest.fixture(scope="session")
def admins(cluster) -> list[KeycloakAdmin]:
    return [KeycloakAdmin(cluster.url(1)), KeycloakAdmin(cluster.url(2))]


@pytest.fixture(scope="session")
def pg_dump(cluster):
    """Returns a function giving the full pg_dump text of Keycloak's database."""
    return cluster.pg_dump


@pytest.fixture(scope="session")
def mock_factory():
    servers = []

    def make(**settings) -> MockEntra:
        s = start_server(host="127.0.0.1", port=0)
        servers.append(s)
        m = MockEntra(s)
        if settings:
            m.config(**settings)
        return m

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def mock_entra(mock_factory) -> MockEntra:
    return mock_factory()


def make_realm(admin: KeycloakAdmin, mock: MockEntra, **idp_overrides) -> str:
    """A realm with the app client (allowed on V1 and V2) and an `entra` IdP at `mock`:
    resource tokens for Graph and the middle tier's API, on-behalf-of through the middle tier."""
    name = "cl-" + uuid.uuid4().hex[:8]
    admin.create_realm(name, eventsEnabled=True)
    admin.create_client(name, APP_CLIENT, APP_SECRET, REDIRECT_URI,
                        attributes={"external.token.enabled": "true", "external.token.idp": "entra"})
    cfg = {"entraTenant": TENANT, "entraAuthorityHost": mock.base_url, "clientId": MOCK_CLIENT_ID,
           "clientSecret": MOCK_CLIENT_SECRET, "syncMode": "IMPORT", "minValidityToken": "1",
           "resourceScopes": f"{GRAPH}##{API}", "oboClientId": MIDDLE_TIER, "oboClientSecret": "mock-secret-a1",
           "oboScopes": GRAPH_DEFAULT}
    cfg.update({k: str(v) for k, v in idp_overrides.items()})
    r = admin.create_idp(name, "entra", "entra-oidc", cfg)
    assert r.status_code == 201, r.text
    return name


def login(realm: str, hint: str | None = None, alias: str = "entra"):
    """Signs a user in through the IdP at the cluster's front URL (node 1)."""
    return browser_login(FRONT, realm, alias, APP_CLIENT, APP_SECRET, login_hint=hint, redirect_uri=REDIRECT_URI)


def token_call(cluster: Cluster, n: int, realm: str, user, kind: str = "own", timeout: float = 90) -> requests.Response:
    """One token call on node n: kind `own` (the IdP's token), `graph`/`api` (a resource token via
    ?scope= or the V2 `scope` field) or `obo` (on-behalf-of). The broker endpoint is called with
    the node's API version (V1 GET on node 1, V2 POST on node 2 when CLUSTER_MIXED_API)."""
    base = cluster.url(n)
    auth = {"Authorization": f"Bearer {user.access_token}"}
    if kind == "obo":
        return requests.get(f"{base}/realms/{realm}/fresh-token/entra/obo", params={"scope": GRAPH_DEFAULT},
                            headers=auth, timeout=timeout)
    scope = {"own": None, "graph": GRAPH, "api": API}[kind]
    url = f"{base}/realms/{realm}/broker/entra/token"
    if cluster.api_version(n) == "v2":
        data = {"token": user.access_token}
        if scope:
            data["scope"] = scope
        return requests.post(url, data=data, auth=(user.client_id, user.client_secret), timeout=timeout)
    return requests.get(url, params={"scope": scope} if scope else None, headers=auth, timeout=timeout)
