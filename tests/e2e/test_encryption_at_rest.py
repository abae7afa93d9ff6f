"""Encryption at rest (issue 5, issue 11 item 10): with storage keys configured, the tokens of our IdP
types are stored as `ftk2.<kid>.<...>` AES-256-GCM values bound to realm, Keycloak user, IdP alias and
user at the IdP, from the login on; a value moved to another user's row is refused
(`storage_binding_mismatch`), a plain row is refused while encrypting (`storage_plaintext_row`) unless
plain rows are allowed (`allow-plaintext`); the dev-mode H2 files never
hold a token issued while the keys were on; plain (stock-format) rows are read and rewritten
encrypted; a rotated key ring still reads old rows; a wrong or missing key answers
`storage_key_error` and leaves the row untouched; the documented rollback (mode decrypt-only,
POST .../fresh-token-storage/decrypt) leaves every row in the stock format.

The tests run in order on one database and restart Keycloak between phases (each phase is a
different key configuration); the module leaves a fresh Keycloak without keys behind."""
from __future__ import annotations

import base64
import json
import os
import time
import uuid

import pytest
import requests

from support.at_rest import h2_federated_identities, h2_link_rows, h2_set_link, leaked_tokens, read_tree
from support.keycloak import KeycloakAdmin, broker_token_v1

from .conftest import (APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, ROOT, WORK, MockEntra, entra_idp_config, kc)
from .test_broker_token import claims, login

KC_HOME = ROOT / "keycloak-dist" / f"keycloak-{os.environ.get('KC_VERSION', '26.7.3')}"
ALICE = "alice@contoso.onmicrosoft.com"
BOB = "bob@contoso.onmicrosoft.com"
GRAPH = "https://graph.microsoft.com/User.Read"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
MIDDLE_TIER = "00000000-0000-0000-0000-0000000000a1"
STORED = ("access_tokens", "refresh_tokens")
# Explicit H2 credentials, so that the test can open the stopped database with H2's own shell.
DB_USER, DB_PASSWORD = "atrest", "atrest-db-pw"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _write(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def st(keycloak, mock_entra):
    d = WORK / "storage-keys"
    d.mkdir(parents=True, exist_ok=True)
    k1, k2 = _key(), _key()
    state = {
        "k1": _write(d / "k1.keys", f"# fresh-token storage keys: the first encrypts\nk1 {k1}\n"),
        "rotated": _write(d / "rotated.keys", f"k2 {k2}\nk1 {k1}\n"),
        "wrong": _write(d / "wrong.keys", f"k2 {_key()}\nk1 {_key()}\n"),
    }
    yield state
    kc("stop")
    kc("start")  # leave a fresh Keycloak without keys, as the session fixture expects


def _start(keys=None, mode=None, keep=True, allow_plaintext=False):
    kc("stop")
    kc("start", KC_KEEP_DATA="1" if keep else "0", KC_FRESH_TOKEN_KEY_FILE=str(keys or ""),
       KC_FRESH_TOKEN_KEY_MODE=mode or "", KC_FRESH_TOKEN_ALLOW_PLAINTEXT="true" if allow_plaintext else "",
       KC_DB_USERNAME=DB_USER, KC_DB_PASSWORD=DB_PASSWORD)
    return KeycloakAdmin(KC_BASE)


def _stop_and_read_rows(st) -> dict:
    kc("stop")
    rows = h2_federated_identities(KC_HOME, DB_USER, DB_PASSWORD)
    return {k: v for k, v in rows.items() if k[0] == "entra"}


def _status(admin, realm) -> dict:
    return admin.request("GET", f"/{realm}/fresh-token-storage").json()


def _get(realm, user, path="broker", **params):
    url = (f"{KC_BASE}/realms/{realm}/broker/entra/token" if path == "broker"
           else f"{KC_BASE}/realms/{realm}/fresh-token/entra/{path}")
    return requests.get(url, params=params, headers={"Authorization": f"Bearer {user.access_token}"}, timeout=60)


def _assert_fresh(r, mock: MockEntra):
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert token in mock.issued()["access_tokens"], "served a token the IdP issued"
    assert claims(token)["exp"] > time.time() + 60


def _since(mock: MockEntra, marker: dict) -> dict:
    issued = mock.issued()
    return {k: issued[k][marker[k]:] for k in STORED}


def test_1_without_keys_rows_are_plain_and_the_h2_scan_finds_their_tokens(st, mock_entra: MockEntra):
    admin = _start(keep=False)
    realm = "e2e-atrest-" + uuid.uuid4().hex[:6]
    admin.create_realm(realm)
    admin.create_client(realm, APP_CLIENT, APP_SECRET, REDIRECT_URI)
    cfg = entra_idp_config(mock_entra, loginHint="true", minValidityToken=3590, resourceScopes=GRAPH, oboClientId=MIDDLE_TIER,
                           oboClientSecret="mock-secret-a1", oboScopes=GRAPH_DEFAULT)
    assert admin.create_idp(realm, "entra", "entra-oidc", cfg).status_code == 201
    mock_entra.config(access_token_lifetime_s=3600, refresh_mode="entra", fault="none")
    assert _status(admin, realm)["node"]["storageEncryption"] == "off"
    bob = login(realm, hint=BOB)
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", bob), mock_entra)  # refreshes (min validity 3590 s)
    st.update(realm=realm, bob=bob)
    rows = _stop_and_read_rows(st)
    assert len(rows) == 1 and next(iter(rows.values())).startswith("{"), "a plain stock-format JSON row"
    st["bob_plain"] = next(iter(rows.values()))
    # The scan works: tokens stored plain are found in the H2 files.
    issued = mock_entra.issued()
    assert leaked_tokens(read_tree(KC_HOME / "data"), {k: issued[k] for k in STORED})
    st["marker"] = {k: len(issued[k]) for k in STORED}


def test_2_with_keys_no_token_issued_for_login_refresh_resource_or_obo_reaches_h2_in_clear(st, mock_entra: MockEntra):
    # Plain rows are allowed here (the migration window): the stock-format row is used.
    admin = _start(st["k1"], allow_plaintext=True)
    realm, bob = st["realm"], st["bob"]
    s = _status(admin, realm)
    assert s["node"]["storageEncryption"] == "on" and s["node"]["storageKeyIds"] == "k1"
    assert s["node"]["storageAllowPlaintext"] == "true"
    assert s["identityProviders"]["entra"]["plain"] == 1
    alice = login(realm, hint=ALICE)
    assert _status(admin, realm)["identityProviders"]["entra"]["encrypted"] == {"k1": 1}, "sealed at login"
    before = mock_entra.refresh_count()
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", alice), mock_entra)
    _assert_fresh(_get(realm, alice, scope=GRAPH), mock_entra)
    _assert_fresh(_get(realm, alice, "obo", scope=GRAPH_DEFAULT), mock_entra)
    # The stock-format row is read and rewritten encrypted on its next refresh.
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", bob), mock_entra)
    assert mock_entra.refresh_count() >= before + 3
    s = _status(admin, realm)["identityProviders"]["entra"]
    assert s["plain"] == 0 and s["encrypted"] == {"k1": 2}, s
    r = admin.request("POST", f"/{realm}/fresh-token-storage/encrypt").json()
    assert r["totals"] == {"unchanged": 2} and r["plainRemaining"] == 0, r
    since = _since(mock_entra, st["marker"])
    assert len(since["access_tokens"]) >= 5 and len(since["refresh_tokens"]) >= 4
    st["alice"] = alice
    rows = _stop_and_read_rows(st)
    assert len(rows) == 2 and all(v.startswith("ftk2.k1.") for v in rows.values()), rows
    assert leaked_tokens(read_tree(KC_HOME / "data"), since) == []


def test_3_rotation_reads_rows_of_the_old_key_and_encrypt_rewraps_them(st, mock_entra: MockEntra):
    admin = _start(st["rotated"])
    realm, alice, bob = st["realm"], st["alice"], st["bob"]
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", alice), mock_entra)  # k1 row read, k2 row written
    assert _status(admin, realm)["identityProviders"]["entra"]["encrypted"] == {"k2": 1, "k1": 1}
    refused = admin.request("POST", f"/{realm}/fresh-token-storage/decrypt", expect=(409,))
    assert refused.json()["error"] == "storage_mode_conflict"
    r = admin.request("POST", f"/{realm}/fresh-token-storage/encrypt").json()
    assert r["totals"] == {"unchanged": 1, "reencrypted": 1}, r
    assert _status(admin, realm)["identityProviders"]["entra"]["encrypted"] == {"k2": 2}
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", bob), mock_entra)
    rows = _stop_and_read_rows(st)
    assert all(v.startswith("ftk2.k2.") for v in rows.values()), rows
    assert leaked_tokens(read_tree(KC_HOME / "data"), _since(mock_entra, st["marker"])) == []
    st["rows"] = rows


def _assert_refused(r, code, words):
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["error"] == code, body
    assert words in body["error_description"], body


def test_3b_a_link_moved_to_another_user_and_a_plain_row_are_refused_and_left_untouched(st, mock_entra: MockEntra):
    """A database writer moves alice's link (user at the IdP and sealed token) onto bob's Keycloak user and
    writes a plain value into alice's row. Bob is refused with storage_binding_mismatch (not served alice's
    token), alice with storage_plaintext_row (plain rows not allowed); no refresh token is spent and the
    moved value stays as it is. POST encrypt then converts the plain row and reports what is left plain."""
    realm = st["realm"]
    links = {r["FEDERATED_USERNAME"].split("@")[0]: r for r in h2_link_rows(KC_HOME, DB_USER, DB_PASSWORD)
             if r["IDENTITY_PROVIDER"] == "entra"}
    a, b = links["alice"], links["bob"]
    h2_set_link(KC_HOME, DB_USER, DB_PASSWORD, "entra", b["USER_ID"], a["FEDERATED_USER_ID"], a["TOKEN"])
    h2_set_link(KC_HOME, DB_USER, DB_PASSWORD, "entra", a["USER_ID"], b["FEDERATED_USER_ID"], st["bob_plain"])
    admin = _start(st["rotated"])
    before = mock_entra.refresh_count()
    moved = broker_token_v1(KC_BASE, realm, "entra", st["bob"])
    _assert_refused(moved, "storage_binding_mismatch", "encrypted for another row")
    _assert_refused(_get(realm, st["bob"], scope=GRAPH), "storage_binding_mismatch", "another row")
    _assert_refused(broker_token_v1(KC_BASE, realm, "entra", st["alice"]), "storage_plaintext_row", "allow-plaintext")
    assert mock_entra.refresh_count() == before, "no refresh token was spent"
    assert _status(admin, realm)["identityProviders"]["entra"]["plain"] == 1, "the plain row was not rewritten"
    r = admin.request("POST", f"/{realm}/fresh-token-storage/encrypt").json()
    assert r["totals"] == {"encrypted": 1, "failed": 1} and r["plainRemaining"] == 0, r
    kc("stop")
    after = {r["USER_ID"]: r for r in h2_link_rows(KC_HOME, DB_USER, DB_PASSWORD)}
    assert after[b["USER_ID"]]["TOKEN"] == a["TOKEN"], "the moved value is left as it was"
    assert after[a["USER_ID"]]["TOKEN"].startswith("ftk2.k2.")
    # Put both links back for the next phases.
    for row in (a, b):
        h2_set_link(KC_HOME, DB_USER, DB_PASSWORD, "entra", row["USER_ID"], row["FEDERATED_USER_ID"], row["TOKEN"])


def _assert_storage_key_error(r, words):
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["error"] == "storage_key_error", body
    assert words in body["error_description"], body


def test_4_wrong_key_answers_storage_key_error_and_leaves_the_rows_untouched(st, mock_entra: MockEntra):
    admin = _start(st["wrong"])
    realm, alice = st["realm"], st["alice"]
    before = mock_entra.refresh_count()
    _assert_storage_key_error(broker_token_v1(KC_BASE, realm, "entra", alice), "could not be decrypted with storage key 'k2'")
    _assert_storage_key_error(_get(realm, alice, scope=GRAPH), "could not be decrypted")
    _assert_storage_key_error(_get(realm, alice, "obo", scope=GRAPH_DEFAULT), "could not be decrypted")
    assert mock_entra.refresh_count() == before, "no refresh token was spent"
    r = admin.request("POST", f"/{realm}/fresh-token-storage/encrypt").json()
    assert r["totals"] == {"failed": 2}, r
    assert _stop_and_read_rows(st) == st["rows"]


def test_5_missing_key_answers_storage_key_error_and_leaves_the_rows_untouched(st, mock_entra: MockEntra):
    _start(None)
    _assert_storage_key_error(broker_token_v1(KC_BASE, st["realm"], "entra", st["alice"]),
                              "no storage keys are configured")
    assert _stop_and_read_rows(st) == st["rows"]


def test_6_rollback_decrypt_only_and_decrypt_leave_every_row_in_the_stock_format(st, mock_entra: MockEntra):
    admin = _start(st["rotated"], mode="decrypt-only")
    realm, alice, bob = st["realm"], st["alice"], st["bob"]
    assert _status(admin, realm)["node"]["storageEncryption"] == "decrypt-only"
    r = admin.request("POST", f"/{realm}/fresh-token-storage/decrypt").json()
    assert r["totals"] == {"decrypted": 2}, r
    assert _status(admin, realm)["identityProviders"]["entra"] == {"type": "entra-oidc", "plain": 2, "encrypted": {}}
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", alice), mock_entra)  # refreshed, written plain
    rows = _stop_and_read_rows(st)
    for v in rows.values():
        row = json.loads(v)
        assert row["access_token"] and row["refresh_token"], "stock format: Keycloak's JSON token response"
    # Keys removed: the plain rows serve as before.
    _start(None)
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", bob), mock_entra)
    _assert_fresh(broker_token_v1(KC_BASE, realm, "entra", alice), mock_entra)
