"""No token value ever reaches Keycloak's log or stored events. Runs after the other suites (runs_last marker, support/ordering.py)
(our log category is at DEBUG for the whole run, see keycloak-dist/keycloak.sh) and scans for
every token and code the mock Entra ID issued during the run."""
from __future__ import annotations

import pytest

from support.ordering import RUNS_LAST_LOG_SCAN

from .conftest import kc_log_path

pytestmark = pytest.mark.runs_last(order=RUNS_LAST_LOG_SCAN)  # scans what every other test left in the log and events: support/ordering.py


def test_no_token_issued_by_the_mock_appears_in_keycloak_log_or_events(admin, mock_entra):
    issued = mock_entra.issued()
    values = [v for kind in ("access_tokens", "id_tokens", "refresh_tokens", "authorization_codes")
              for v in issued.get(kind, [])]
    assert len(values) > 20, "the suite should have made the mock issue tokens"
    log = kc_log_path().read_text(errors="replace")
    assert "fresh-token" in log, "our DEBUG lines are in the log"
    events = []
    for realm in admin.http.get(f"{admin.base}/admin/realms", headers=admin._auth(), timeout=60).json():
        name = realm["realm"]
        events.append(admin.request("GET", f"/{name}/events", params={"max": 10000}).text)
        events.append(admin.request("GET", f"/{name}/admin-events", params={"max": 10000}).text)
    haystack = log + "\n".join(events)
    leaked = [v[:12] + "..." for v in values if v in haystack]
    assert not leaked, f"{len(leaked)} issued values found in log/events, e.g. {leaked[:3]}"
    # Also no recognisable fragment: the JWT signature part of an access token is unique enough.
    sigs = [v.rsplit(".", 1)[-1] for v in issued.get("access_tokens", []) if v.count(".") == 2]
    assert not [s for s in sigs if s in haystack]
