"""Mock Entra ID: the sign-in side of the HTTP handler: discovery, authorize, userinfo."""

from __future__ import annotations

import html
import json
import secrets
import time
import urllib.parse
import uuid

from mock_entra.common import (GRAPH_APP_ID, GRAPH_URI, OAuthError, Reply, app_not_found, b64url, entra_timestamp,
                               json_reply)
from mock_entra.state import redirect_uri_allowed
from mock_entra.tokens import parse_scope


class SignInEndpoints:
    """Mixed into server.Handler (self.st, self.base, self._error_reply, ... come from there)."""

    def _tenant_not_found(self, tenant: str) -> OAuthError:
        return OAuthError(400, "invalid_tenant", 90002,
                          f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                          f"signing into the correct cloud. Check with your subscription administrator, this may "
                          f"happen if there are no active subscriptions for the tenant.")

    def _discovery(self, tenant: str, tid: str, multi: bool, v2: bool) -> dict:
        b, t = self.base, tenant
        issuer_tid = "{tenantid}" if multi else tid
        return {
            "token_endpoint": f"{b}/{t}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{b}/{t}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{b}/{issuer_tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{b}/oidc/userinfo",
            "authorization_endpoint": f"{b}/{t}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{b}/{t}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{b}/{t}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                                 "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": f"{b}/{t}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    # -- authorize -----------------------------------------------------------------------------

    def _authorize(self, tenant: str, tid: str | None, query: dict) -> Reply:
        q = {k: v[0] for k, v in query.items()}
        with self.st.lock:
            self.st.stats["authorize_requests"] += 1
        if tid is None:
            return self._html_error(400, 90002, self._tenant_not_found(tenant).message)
        client_id = q.get("client_id", "")
        if not client_id:
            return self._html_error(400, 900144, "The request body must contain the following parameter: 'client_id'.")
        client = self.st.clients.get(client_id)
        if client is None:
            return self._html_error(400, 700016, app_not_found(client_id, tenant))
        redirect_uri = q.get("redirect_uri")
        if not redirect_uri:
            return self._html_error(400, 500113, "No reply address is registered for the application.")
        if not redirect_uri_allowed(client, redirect_uri):
            return self._html_error(400, 50011,
                                    f"The redirect URI '{redirect_uri}' specified in the request does not match the "
                                    f"redirect URIs configured for the application '{client_id}'. Make sure the "
                                    f"redirect URI sent in the request matches one added to your application in the "
                                    f"Azure portal.")
        state = q.get("state")
        mode = q.get("response_mode", "query")

        def back(params: dict) -> Reply:
            if state is not None:
                params["state"] = state
            if mode == "form_post":
                inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                                 for k, v in params.items())
                page = (f'<html><head><title>Working...</title></head><body onload="document.forms[0].submit()">'
                        f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">{inputs}'
                        f'<noscript><input type="submit" value="Continue"/></noscript></form></body></html>')
                return Reply(200, page.encode(), "text/html; charset=utf-8")
            sep = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
            return Reply(302, b"", None, {"Location": redirect_uri + sep + urllib.parse.urlencode(params),
                                          "Cache-Control": "no-store, no-cache"})

        def err(error: str, code: int, msg: str) -> Reply:
            trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
            return back({"error": error, "error_description":
                         f"AADSTS{code}: {msg}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: "
                         f"{entra_timestamp()}", "error_uri": f"{self.base}/error?code={code}"})

        if mode not in ("query", "fragment", "form_post"):
            return err("invalid_request", 900352, f"The provided value '{mode}' for 'response_mode' is not valid.")
        response_type = q.get("response_type", "")
        if not response_type:
            return err("invalid_request", 900144, "The request body must contain the following parameter: "
                                                  "'response_type'.")
        if response_type != "code":
            return err("unsupported_response_type", 700054,
                       f"response_type '{response_type}' is not enabled for the application.")
        scope = q.get("scope", "")
        if not scope.strip():
            return err("invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        try:
            sr = parse_scope(self.st, scope, tenant)
        except OAuthError as e:
            return err(e.error, e.code, e.message)
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method") or ("plain" if challenge else None)
        if challenge is not None:
            if method not in ("plain", "S256"):
                return err("invalid_request", 50149, "Invalid Code_Challenge_method parameter.")
            if not 43 <= len(challenge) <= 128:
                return err("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        user = self.st.user(q.get("login_hint"))
        if user is None:
            return err("invalid_request", 50034,
                       f"The user account {q.get('login_hint')} does not exist in the {tenant} directory. To sign "
                       f"into this application, the account must be added to the directory.")
        if q.get("prompt") == "none" and self.st.config.get("prompt_none_login_required"):
            return err("login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
        if tenant.lower() in ("common", "organizations") and user.get("tid"):
            tid = user["tid"]  # multi-tenant sign-in: the user's home tenant issues the tokens
        elif user.get("tid") and user["tid"] != tid:
            return err("invalid_request", 50020, f"User account '{user['upn']}' from identity provider "
                       f"'https://sts.windows.net/{user['tid']}/' does not exist in tenant '{tenant}'.")
        code = "1.AQ" + b64url(secrets.token_bytes(300))
        session_state = str(uuid.uuid5(uuid.NAMESPACE_URL, "session:" + user["oid"]))
        with self.st.lock:
            self.st.codes[code] = {
                "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope, "nonce": q.get("nonce"),
                "code_challenge": challenge, "code_challenge_method": method, "user": user["upn"], "tid": tid,
                "created": time.time(), "redeemed": False,
            }
        self.st.remember("authorization_codes", code)
        self.log_line(f"authorize client={client_id} user={user['upn']} scope={scope!r} pkce={method or 'none'} "
                      f"-> 302 code")
        return back({"code": code, "session_state": session_state})


    # -- userinfo ------------------------------------------------------------------------------

    def _userinfo(self) -> Reply:
        auth = self.headers.get("Authorization") or ""
        claims = self.st.key.verify(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        if claims is None or claims.get("exp", 0) < time.time() or claims.get("aud") not in (GRAPH_APP_ID, GRAPH_URI):
            return Reply(401, json.dumps({"error": {"code": "InvalidAuthenticationToken",
                                                    "message": "Access token validation failure. Invalid audience."
                                                    if claims else "Access token is empty."}}).encode(),
                         headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
        user = self.st.user_by_oid(claims.get("oid", ""))
        if user is None:
            return json_reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "Unknown user."}})
        scp = claims.get("scp", "").split()
        out = {"sub": claims["sub"]}
        if "profile" in scp:
            out.update({"name": user["name"], "family_name": user.get("family_name", ""),
                        "given_name": user.get("given_name", ""),
                        "picture": "https://graph.microsoft.com/v1.0/me/photo/$value"})
        if "email" in scp:
            out["email"] = user.get("email", user["upn"])
        return json_reply(200, out)
