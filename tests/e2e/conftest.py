"""End-to-end fixtures: the mock Entra ID (in-process, loopback) and a real Keycloak from the
pinned distribution with our JAR + .so in providers/, started by keycloak-dist/keycloak.sh."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from mock_entra.pki import ensure_pki
from mock_entra.server import start_server
from mock_graph.server import start_graph
from support.keycloak import KeycloakAdmin
from support.mock_client import MockEntra  # noqa: F401 - the e2e modules import it from here
from support.ordering import MARKER_HELP, check_runs_last, order_runs_last
from support.proxy import Proxy

ROOT = Path(__file__).resolve().parents[2]
KC_SCRIPT = ROOT / "keycloak-dist" / "keycloak.sh"
KC_PORT = int(os.environ.get("E2E_KC_PORT", "18080"))
KC_MGMT_PORT = int(os.environ.get("E2E_KC_MGMT_PORT", "19000"))
KC_BASE = f"http://127.0.0.1:{KC_PORT}"
# Which Keycloak the suite runs against (keycloak-dist/keycloak.sh KC_VERSION) and, optionally,
# which JDK runs it (KC_JAVA_HOME); `make test-compat` sets these.
KC_VERSION = os.environ.get("E2E_KC_VERSION") or os.environ.get("KC_VERSION") or "26.7.3"
KC_JAVA_HOME = os.environ.get("E2E_KC_JAVA_HOME", "")
V2_MIN_VERSION = (26, 6)


def kc_version() -> tuple[int, ...]:
    return tuple(int(x) for x in KC_VERSION.split(".")[:3] if x.isdigit())


def skip_unless_v2_available() -> None:
    """The V2 broker endpoint (POST /broker/{alias}/token, feature identity-brokering-api:v2)
    and the IdP hook it calls exist only from Keycloak 26.6."""
    if kc_version() < V2_MIN_VERSION:
        pytest.skip(f"needs the V2 broker token endpoint, which Keycloak has only from 26.6 (this run: Keycloak {KC_VERSION})")


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_HELP)


def pytest_collection_modifyitems(session, config, items):
    """The suite's order is explicit, not by file names: `runs_last` tests after all others
    (groups and reasons: support/ordering.py)."""
    order_runs_last(items)
    check_runs_last(items)


TENANT = "11111111-1111-1111-1111-111111111111"
MOCK_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
MOCK_CLIENT_SECRET = "mock-secret-c1"
APP_CLIENT = "demo-app"
APP_SECRET = "demo-app-secret"
REDIRECT_URI = "http://127.0.0.1:1/callback"
WORK = ROOT / "tests" / ".work"
VAULT = WORK / "vault"  # Keycloak's plain-file vault: one file per secret, named <realm>_<key>
# The operator's directory for certificate assertion key files (SPI option assertion-key-dir, set
# through keycloak.sh KC_FRESH_TOKEN_ASSERTION_KEY_DIR): the test PKI's folder.
ASSERTION_KEY_DIR = WORK / "pki"
# Keycloak's own outbound settings for the whole run (set by the `outbound` fixture): a private
# test CA in its truststore, and an outgoing proxy for the host name "localhost" only.
_kc_extra_args = {"value": ""}


def kc_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"KC_PORT": str(KC_PORT), "KC_MGMT_PORT": str(KC_MGMT_PORT), "KC_EXTRA_ARGS": _kc_extra_args["value"],
                "KC_VERSION": KC_VERSION, "KC_FRESH_TOKEN_ASSERTION_KEY_DIR": str(ASSERTION_KEY_DIR)})
    if KC_JAVA_HOME:
        env["KC_JAVA_HOME"] = KC_JAVA_HOME
    env.update({k: str(v) for k, v in extra.items()})
    return env


def kc(cmd: str, **extra) -> None:
    subprocess.run([str(KC_SCRIPT), cmd], check=True, env=kc_env(**extra))


def kc_log_path() -> Path:
    out = subprocess.run([str(KC_SCRIPT), "log"], check=True, env=kc_env(), capture_output=True, text=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="session")
def mock_entra():
    with start_server(host="127.0.0.1", port=0) as server:
        yield MockEntra(server)


# Feature set of the second phase: the V2 broker endpoint (V1 and V2 are versions of one
# Keycloak feature and cannot be on together) and legacy token exchange with fine-grained
# permissions (to prove that our IdPs refuse stock exchange of their stored tokens).
PHASE2_FEATURES = "identity-brokering-api:v2,token-exchange:v1,admin-fine-grained-authz:v1"
_current_features = {"value": ""}


def kc_restart(**extra) -> None:
    """Restart the shared Keycloak with other settings, keeping its database (realms, events)."""
    kc("stop")
    kc("start", KC_KEEP_DATA="1", **extra)
    _current_features["value"] = extra.get("KC_FEATURES", "")


def ensure_features(features: str) -> None:
    """Restart the shared Keycloak only if it runs with another feature set."""
    if "identity-brokering-api:v2" in features:
        skip_unless_v2_available()
    if _current_features["value"] != features:
        kc_restart(KC_FEATURES=features)


@pytest.fixture(scope="session")
def outbound():
    """The private CA (Keycloak trusts it through --truststore-paths) and the test proxy
    (Keycloak's proxy-mappings send requests for host 'localhost' through it)."""
    pki = ensure_pki(WORK / "pki")
    proxy = Proxy()
    VAULT.mkdir(parents=True, exist_ok=True)
    _kc_extra_args["value"] = (f"--truststore-paths={pki.ca} "
                               f"--spi-connections-http-client--default--proxy-mappings=localhost;{proxy.url} "
                               f"--vault=file --vault-dir={VAULT}")
    try:
        yield pki, proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def graph(mock_entra):
    """The mock Microsoft Graph, validating tokens of the mock Entra ID."""
    with start_graph(mock_entra.base_url) as server:
        yield server


@pytest.fixture(scope="session")
def keycloak(outbound):
    kc("clean-log")
    kc("start")
    try:
        yield KC_BASE
    finally:
        kc("stop")


@pytest.fixture(scope="session")
def admin(keycloak) -> KeycloakAdmin:
    return KeycloakAdmin(keycloak)


def entra_idp_config(mock: MockEntra, **overrides) -> dict:
    cfg = {"entraTenant": TENANT, "entraAuthorityHost": mock.base_url,
           "clientId": MOCK_CLIENT_ID, "clientSecret": MOCK_CLIENT_SECRET,
           "syncMode": "IMPORT"}
    cfg.update({k: str(v) for k, v in overrides.items()})
    return cfg


@pytest.fixture
def realm(admin, mock_entra):
    """A fresh realm with the app client and an `entra` IdP of type entra-oidc (defaults)."""
    name = "e2e-" + uuid.uuid4().hex[:8]
    admin.create_realm(name, eventsEnabled=True, adminEventsEnabled=True, adminEventsDetailsEnabled=True)
    admin.create_client(name, APP_CLIENT, APP_SECRET, REDIRECT_URI,
                        attributes={"external.token.enabled": "true", "external.token.idp": "entra"})
    r = admin.create_idp(name, "entra", "entra-oidc", entra_idp_config(mock_entra))
    assert r.status_code == 201, r.text
    mock_entra.config(access_token_lifetime_s=3600, refresh_mode="entra", fault="none", issue_refresh_tokens=True)
    # Realms are kept until the end of the run: the log-hygiene test reads their events.
    yield name
