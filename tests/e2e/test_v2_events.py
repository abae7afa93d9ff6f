"""Events of the V2 broker endpoint (identity-brokering-api:v2; restarts the shared Keycloak
with the phase-2 features like test_v2). Keycloak records success() after our V2 answer
whatever its status; an error answer must still be one IDENTITY_PROVIDER_RETRIEVE_TOKEN_ERROR
event with our details, never a success event and never two events."""
from __future__ import annotations

import pytest

from support.keycloak import broker_token_v2
from support.ordering import RUNS_LAST_PHASE2

from .conftest import KC_BASE, PHASE2_FEATURES, MockEntra, ensure_features
from .test_broker_token import login
from .test_events_metrics import TYPES, _all_token_values, _assert_no_tokens, _enable_retrieve_events, _events

pytestmark = pytest.mark.runs_last(order=RUNS_LAST_PHASE2)  # restarts Keycloak with PHASE2_FEATURES (V1 off): support/ordering.py


@pytest.fixture(scope="module", autouse=True)
def v2_keycloak(keycloak):
    ensure_features(PHASE2_FEATURES)


def test_v2_success_and_error_are_one_event_each_with_our_details(admin, realm, mock_entra: MockEntra):
    _enable_retrieve_events(admin, realm)
    user = login(realm)
    admin.update_idp_config(realm, "entra", minValidityToken=4000)
    ok = broker_token_v2(KC_BASE, realm, "entra", user)
    assert ok.status_code == 200, ok.text
    mock_entra.config(fault="invalid_grant")
    failed = broker_token_v2(KC_BASE, realm, "entra", user)
    mock_entra.config(fault="none")
    assert failed.status_code == 400 and failed.json()["error"] == "reauth_required", failed.text

    events = _events(admin, realm)
    assert [e["type"] for e in events] == [TYPES[0], TYPES[1]], [(e["type"], e.get("details")) for e in events]
    ok_det, err_det = (dict(e.get("details") or {}) for e in events)
    assert ok_det.pop("fresh_token_upstream_ms").isdigit() and err_det.pop("fresh_token_upstream_ms").isdigit()
    # Keycloak's own V2 detail (the calling client authenticated with its secret).
    assert ok_det.pop("client_auth_method") == err_det.pop("client_auth_method") == "client-secret"
    assert ok_det == {"identity_provider": "entra", "fresh_token_endpoint": "broker_v2", "fresh_token_kind": "idp",
                      "fresh_token_outcome": "refreshed", "fresh_token_refreshed": "true"}
    assert events[1]["error"] == "identity_provider_error"
    assert err_det == {"identity_provider": "entra", "fresh_token_endpoint": "broker_v2", "fresh_token_kind": "idp",
                       "fresh_token_outcome": "error", "fresh_token_refreshed": "false",
                       "fresh_token_error": "reauth_required", "reason": "reauth_required",
                       "fresh_token_upstream_status": "400", "fresh_token_upstream_error": "invalid_grant",
                       "fresh_token_aadsts": "70008"}
    _assert_no_tokens(events, _all_token_values(mock_entra, user.access_token))
