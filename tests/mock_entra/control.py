"""Mock Entra ID: error injection (the fault answers) and the /_mock control API for tests."""

from __future__ import annotations

import copy
import json
import uuid

from mock_entra.common import GRAPH_APP_ID, OAuthError, Reply, app_not_found, json_reply


class FaultsAndControl:
    """Mixed into server.Handler (self.st, self.base, self._error_reply, ... come from there)."""

    # -- faults --------------------------------------------------------------------------------

    def _fault_reply(self, fault: str, client_id: str, tenant: str) -> Reply:
        cfg = self.st.config
        retry_after = str(int(cfg["retry_after_s"]))
        res = f"{GRAPH_APP_ID}"

        def oauth(status, error, code, msg, **kw) -> Reply:
            return self._error_reply(OAuthError(status, error, code, msg, **kw))

        if fault == "http500_html":
            page = (b"<!DOCTYPE html><html><head><title>500 - Internal server error.</title></head><body>"
                    b"<h1>Server Error</h1><h2>500 - Internal server error.</h2><p>There is a problem with the "
                    b"resource you are looking for, and it cannot be displayed.</p></body></html>")
            return Reply(500, page, "text/html")
        if fault == "http503":
            headers = {"Retry-After": retry_after} if cfg["retry_after_on_503"] else {}
            return Reply(503, b"<html><body><h1>Service Unavailable</h1></body></html>", "text/html", headers)
        if fault == "http429":
            return oauth(429, "temporarily_unavailable", 90055,
                         "TenantThrottlingError - There are too many incoming requests. This exception is thrown for "
                         "blocked tenants.", headers={"Retry-After": retry_after})
        if fault == "temporarily_unavailable":
            e = OAuthError(503, "temporarily_unavailable", 90033,
                           "A transient error has occurred. Please try again.",
                           headers={"Retry-After": retry_after} if cfg["retry_after_on_503"] else {})
            return self._error_reply(e)
        if fault == "invalid_json_200":
            return Reply(200, b'{"token_type": "Bearer", "access_token": eyJ0eXAi, "expires_in": 3599,}')
        if fault == "truncated_json_200":
            return Reply(200, b'{"token_type":"Bearer","scope":"openid profile email User.Read","expires_in":3599,'
                              b'"ext_expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QiLCJub25jZSI6')
        if fault == "truncated_body_200":
            body = b'{"token_type":"Bearer","scope":"User.Read","expires_in":3599,"access_tok'
            return Reply(200, body, declared_length=len(body) + 2048, close=True)
        if fault == "huge_body_200":
            pad = "A" * (2 * 1024 * 1024 + 512 * 1024)
            body = json.dumps({"token_type": "Bearer", "scope": "User.Read", "expires_in": 3599,
                               "ext_expires_in": 3599, "access_token": "not-a-real-token." + pad}).encode()
            return Reply(200, body)
        if fault == "missing_access_token_200":
            return json_reply(200, {"token_type": "Bearer", "scope": "openid profile email User.Read",
                                    "expires_in": 3599, "ext_expires_in": 3599})
        if fault == "empty_200":
            return Reply(200, b"")
        if fault == "html_200":
            page = (b"<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
                    b"<form method=\"post\"><input type=\"email\" name=\"loginfmt\"/></form></body></html>")
            return Reply(200, page, "text/html; charset=utf-8")
        if fault == "redirect_302":
            return Reply(302, b"", None, {"Location": f"{self.base}/_mock/redirected"})
        if fault == "connection_reset":
            return Reply(0, reset=True)
        if fault == "invalid_grant":
            return oauth(400, "invalid_grant", 70008,
                         "The provided authorization code or refresh token has expired due to inactivity. Send a new "
                         "interactive authorization request for this user and resource.")
        if fault == "user_revoked":
            return oauth(400, "invalid_grant", 50173,
                         "The provided grant has expired due to it being revoked, a fresh auth token is needed. The "
                         "user might have changed or reset their password.")
        if fault == "refresh_token_expired":
            return oauth(400, "invalid_grant", 700082,
                         "The refresh token has expired due to inactivity. The token was issued on "
                         "2025-01-01T00:00:00.0000000Z and was inactive for 90.00:00:00.")
        claims = json.dumps({"access_token": {"capolids": {"essential": True,
                                                            "values": [str(uuid.uuid5(uuid.NAMESPACE_URL, "ca"))]}}})
        if fault == "interaction_required":
            return oauth(400, "interaction_required", 50076,
                         f"Due to a configuration change made by your administrator, or because you moved to a new "
                         f"location, you must use multi-factor authentication to access '{res}'.",
                         suberror="basic_action", claims=claims)
        if fault == "mfa_required":
            return oauth(400, "invalid_grant", 50076,
                         f"Due to a configuration change made by your administrator, or because you moved to a new "
                         f"location, you must use multi-factor authentication to access '{res}'.",
                         suberror="basic_action", claims=claims)
        if fault == "consent_required":
            return oauth(400, "invalid_grant", 65001,
                         f"The user or administrator has not consented to use the application with ID '{client_id}' "
                         f"named '{self.st.clients.get(client_id, {}).get('name', client_id)}'. Send an interactive "
                         f"authorization request for this user and resource.", suberror="consent_required")
        if fault == "admin_consent_required":
            return oauth(400, "invalid_grant", 90094,
                         "The grant requires admin permission.", suberror="consent_required")
        if fault == "conditional_access_block":
            return oauth(400, "interaction_required", 53003,
                         "Access has been blocked by Conditional Access policies. The access policy does not allow "
                         "token issuance.", suberror="message_only")
        if fault == "invalid_client":
            return oauth(401, "invalid_client", 7000215,
                         f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
                         f"secret value, not the client secret ID, for a secret added to app '{client_id}'.")
        if fault == "unauthorized_client":
            return oauth(400, "unauthorized_client", 700016, app_not_found(client_id, tenant))
        if fault == "invalid_scope":
            return oauth(400, "invalid_scope", 70011,
                         "The provided value for the input parameter 'scope' is not valid. The scope "
                         "https://graph.microsoft.com/Nonexistent.Scope is not valid.")
        if fault == "tenant_not_found":
            return self._error_reply(self._tenant_not_found(tenant))
        raise AssertionError(f"fault {fault} not implemented")


    # -- control API ---------------------------------------------------------------------------

    def _control(self, method, path, query, body) -> Reply:
        st = self.st
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return json_reply(400, {"error": "body must be JSON"})
        if not isinstance(payload, dict):
            return json_reply(400, {"error": "body must be a JSON object"})
        if path == "/_mock/stats" and method == "GET":
            return json_reply(200, st.snapshot_stats())
        if path == "/_mock/reset" and method == "POST":
            return json_reply(200, st.reset(payload))
        if path == "/_mock/config":
            if method == "GET":
                return json_reply(200, st.public_config())
            try:
                return json_reply(200, st.set_config(payload))
            except ValueError as e:
                return json_reply(400, {"error": str(e)})
        if path == "/_mock/release" and method == "POST":
            n = st.release_held()
            self.log_line(f"control release held={n}")
            return json_reply(200, {"released": n})
        if path == "/_mock/revoke" and method == "POST":
            upn = payload.get("user")
            if not upn or st.user(upn) is None:
                return json_reply(400, {"error": f"unknown user {upn!r}"})
            n = st.revoke_user(upn)
            self.log_line(f"control revoke user={upn} families={n}")
            return json_reply(200, {"revoked_families": n, "user": upn})
        if path == "/_mock/users" and method == "GET":
            with st.lock:
                users = [{"upn": u["upn"], "oid": u["oid"], "name": u["name"], "given_name": u.get("given_name"),
                          "family_name": u.get("family_name"), "email": u.get("email", u["upn"])}
                         for u in st.users.values()]
            return json_reply(200, {"tenant_id": st.home_tid, "users": users})
        if path == "/_mock/issued" and method == "GET":
            with st.lock:
                return json_reply(200, copy.deepcopy(st.issued))
        if path == "/_mock/families" and method == "GET":
            with st.lock:
                fams = [{"family": fid, "user": f["user"], "client_id": f["client_id"], "revoked": f["revoked"],
                         "generations": f["generations"]} for fid, f in st.families.items()]
            return json_reply(200, {"families": fams})
        if path == "/_mock/rotate_keys" and method == "POST":
            out = st.key.rotate(keep_old=bool(payload.get("keep_old", True)))
            self.log_line(f"control rotate_keys signing_kid={out['signing_kid']} published={len(out['published_kids'])}")
            return json_reply(200, out)
        if path == "/_mock/redirected":
            return Reply(200, b"<html><body>redirected</body></html>", "text/html")
        if path == "/_mock/health":
            return json_reply(200, {"status": "UP"})
        return json_reply(404, {"error": "unknown control endpoint", "path": path})
