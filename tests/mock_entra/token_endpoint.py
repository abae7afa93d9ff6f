"""Mock Entra ID: the token endpoint of the HTTP handler: request parsing, the hold fault,
the grants (authorization_code, refresh_token, client_credentials, jwt-bearer OBO) and the answer."""

from __future__ import annotations

import hashlib
import json
import secrets
import select
import socket
import ssl
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

from mock_entra.common import (GRANT_CLIENT_CREDENTIALS, GRANT_CODE, GRANT_JWT_BEARER, GRANT_REFRESH, GRAPH_APP_ID,
                               GRAPH_URI, OAuthError, Reply, b64url, b64url_decode, iso, json_reply)
from mock_entra.tokens import Minter, parse_scope


class TokenEndpoint:
    """Mixed into server.Handler (self.st, self.base, self._error_reply, ... come from there)."""

    # -- token ---------------------------------------------------------------------------------

    def _token(self, tenant: str, tid: str, body: bytes) -> Reply | None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'grant_type'.")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                           keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        st = self.st
        st.count_request(grant or "(none)")
        started = time.time()
        client_id = form.get("client_id", "")
        outcome, status, extra = "internal_error", 500, ""
        family = None
        is_refresh = grant == GRANT_REFRESH
        if is_refresh:
            with st.lock:
                st.stats["refresh_in_flight"] += 1
                st.stats["max_concurrent_refreshes"] = max(st.stats["max_concurrent_refreshes"],
                                                          st.stats["refresh_in_flight"])
        reply: Reply | None = None
        try:
            try:
                if is_refresh and st.config["refresh_delay_ms"] > 0:
                    time.sleep(st.config["refresh_delay_ms"] / 1000.0)
                fault = st.take_fault(grant)
                if fault == "slow":
                    time.sleep(float(st.config["slow_seconds"]))
                    if self._client_gone():
                        outcome, status = "fault:slow:client_gone", 0
                        self.close_connection = True
                        return None
                    fault = None
                    extra = " fault=slow"
                elif fault == "hold":
                    # Accepted but not processed until released: a deterministic "request in
                    # flight" for crash tests. A client that hung up meanwhile gets nothing
                    # processed (its refresh token is not spent).
                    self._hold_until_released()
                    if self._client_gone():
                        outcome, status = "fault:hold:client_gone", 0
                        self.close_connection = True
                        return None
                    fault = None
                    extra = " fault=hold"
                hold_answer = fault == "hold_answer"
                if hold_answer:
                    fault = None
                if fault:
                    outcome = "fault:" + fault
                    reply = self._fault_reply(fault, client_id, tenant)
                    status = reply.status
                    if is_refresh:
                        family = self._family_of(form.get("refresh_token", ""))
                    return reply
                if is_refresh:
                    family = self._family_of(form.get("refresh_token", ""))
                client_id, auth_method, client_cfg = self._authenticate_client(tenant, form)
                if grant == GRANT_CODE:
                    reply = self._grant_code(tenant, tid, form, client_id, client_cfg, auth_method)
                elif grant == GRANT_REFRESH:
                    reply = self._grant_refresh(tenant, tid, form, client_id, client_cfg, auth_method)
                elif grant == GRANT_CLIENT_CREDENTIALS:
                    reply = self._grant_client_credentials(tenant, tid, form, client_id, client_cfg, auth_method)
                elif grant == GRANT_JWT_BEARER:
                    reply = self._grant_obo(tenant, tid, form, client_id, client_cfg, auth_method)
                elif not grant:
                    raise OAuthError(400, "invalid_request", 900144,
                                     "The request body must contain the following parameter: 'grant_type'.")
                else:
                    raise OAuthError(400, "unsupported_grant_type", 70003,
                                     f"The app requested an unsupported grant type '{grant}'.")
                outcome, status = "ok", reply.status
                if hold_answer:
                    # Processed (a refresh token is spent or rotated) but the answer is held
                    # until released: "the IdP answered, the client never got to commit". A
                    # client that hung up meanwhile gets nothing; the outcome stays what it was.
                    self._hold_until_released()
                    extra = " fault=hold_answer"
                    if self._client_gone():
                        extra += ":client_gone"
                        self.close_connection = True
                        reply = None
                return reply
            except OAuthError as e:
                outcome, status = f"{e.error}:{e.code}", e.status
                reply = self._error_reply(e)
                return reply
        finally:
            if is_refresh:
                with st.lock:
                    st.stats["refresh_in_flight"] -= 1
                st.record_refresh({"at": iso(started), "client_id": client_id or None, "family": family,
                                   "scope": form.get("scope"), "outcome": outcome, "status": status,
                                   "duration_ms": int((time.time() - started) * 1000)})
            st.count_outcome(grant or "(none)", outcome, status)
            self.log_line(f"token grant={grant or '-'} client={client_id or '-'} outcome={outcome} status={status}"
                          f"{' family=' + family if family else ''}{extra} "
                          f"ms={int((time.time() - started) * 1000)}")
            if reply is not None:
                self._send(reply)

    def _hold_until_released(self) -> None:
        st = self.st
        with st.lock:
            gate = st.hold_gate
            st.stats["held_now"] += 1
            st.stats["held_total"] += 1
        try:
            gate.wait(float(st.config["hold_max_seconds"]))
        finally:
            with st.lock:
                st.stats["held_now"] -= 1

    def _client_gone(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                # A client waiting for its answer sends nothing; what is readable is EOF or a
                # close_notify alert. (SSLSocket.recv takes no MSG_PEEK.)
                return True
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _family_of(self, rt: str) -> str | None:
        rec = self.st.refresh_tokens.get(rt)
        return rec["family"] if rec else None


    # -- grants --------------------------------------------------------------------------------

    def _token_response(self, access: str, scope: str, lifetime: int, id_token: str | None = None,
                        refresh: str | None = None, client_info: dict | None = None) -> Reply:
        as_str = self.st.config["expires_in_as_string"]
        ext = lifetime + int(self.st.config["ext_expires_extra_s"])
        body = {"token_type": "Bearer", "scope": scope,
                "expires_in": str(lifetime) if as_str else lifetime,
                "ext_expires_in": str(ext) if as_str else ext,
                "access_token": access}
        override = self.st.config.get("expires_in_override")
        if override == "absent":
            del body["expires_in"], body["ext_expires_in"]
        elif isinstance(override, (int, float)) and not isinstance(override, bool):
            body["expires_in"] = override
        if refresh:
            body["refresh_token"] = refresh
        if id_token:
            body["id_token"] = id_token
        if client_info:
            body["client_info"] = b64url(json.dumps(client_info).encode())
        return json_reply(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache",
                                      "x-ms-request-id": str(uuid.uuid4())})

    def _require(self, form: dict, name: str) -> str:
        v = form.get(name)
        if not v:
            raise OAuthError(400, "invalid_request", 900144,
                             f"The request body must contain the following parameter: '{name}'.")
        return v

    def _grant_code(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        code = self._require(form, "code")
        st = self.st
        with st.lock:
            rec = st.codes.get(code)
            if rec is None:
                raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
            if rec["redeemed"]:
                raise OAuthError(400, "invalid_grant", 54005,
                                 "OAuth2 Authorization code was already redeemed, please retry with a new valid code "
                                 "or use an existing refresh token.")
            if rec["client_id"] != client_id:
                raise OAuthError(400, "invalid_grant", 700005,
                                 "Provided Authorization Code is intended to use against other tenant or application, "
                                 "thus rejected.")
            if time.time() - rec["created"] > st.config["code_lifetime_s"]:
                raise OAuthError(400, "invalid_grant", 70008,
                                 "The provided authorization code or refresh token has expired due to inactivity. "
                                 "Send a new interactive authorization request for this user and resource.")
            redirect_uri = form.get("redirect_uri")
            if not redirect_uri:
                raise OAuthError(400, "invalid_request", 900144,
                                 "The request body must contain the following parameter: 'redirect_uri'.")
            if redirect_uri != rec["redirect_uri"]:
                raise OAuthError(400, "invalid_grant", 500112,
                                 f"The reply address '{redirect_uri}' does not match the reply address "
                                 f"'{rec['redirect_uri']}' provided when requesting Authorization code.")
            if rec["code_challenge"] is not None:
                verifier = form.get("code_verifier")
                if not verifier:
                    raise OAuthError(400, "invalid_grant", 50148,
                                     "The code_verifier does not match the code_challenge supplied in the "
                                     "authorization request for PKCE.")
                expect = (b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
                          if rec["code_challenge_method"] == "S256" else verifier)
                if not secrets.compare_digest(expect, rec["code_challenge"]):
                    raise OAuthError(400, "invalid_grant", 501481,
                                     "The Code_Verifier does not match the code_challenge supplied in the "
                                     "authorization request.")
            rec["redeemed"] = True
        user = st.user(rec["user"])
        sr = parse_scope(st, rec["scope"], tenant)
        access, scope_str, lifetime = Minter(st, self.base).access_token(
            tid=rec["tid"], client_id=client_id, user=user, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=sr.oidc)
        id_token = Minter(st, self.base).id_token(tid=rec["tid"], client_id=client_id, user=user, oidc=sr.oidc,
                                                 nonce=rec["nonce"]) if sr.openid else None
        refresh = None
        if sr.offline and st.config["issue_refresh_tokens"]:
            refresh = Minter(st, self.base).refresh_token(family=str(uuid.uuid4()), client_id=client_id, user=user,
                                                          tid=rec["tid"], oidc=sr.oidc, generation=1,
                                                          scope=rec["scope"])
        info = {"uid": user["oid"], "utid": rec["tid"]} if form.get("client_info") == "1" else None
        return self._token_response(access, scope_str, lifetime, id_token, refresh, info)

    def _grant_refresh(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        rt = self._require(form, "refresh_token")
        st = self.st
        now = time.time()
        with st.lock:
            rec = st.refresh_tokens.get(rt)
            if rec is None:
                raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
            fam = st.families[rec["family"]]
            if rec["client_id"] != client_id:
                raise OAuthError(400, "invalid_grant", 700007, "The grant was issued for a different client id.")
            if fam["revoked"] == "user_revoked" or st.user_revoked_since(rec["user"], rec["issued_at"]):
                raise OAuthError(400, "invalid_grant", 50173,
                                 f"The provided grant has expired due to it being revoked, a fresh auth token is "
                                 f"needed. The user might have changed or reset their password. The grant was issued "
                                 f"on '{iso(rec['issued_at'])}' and the TokensValidFrom date (before which tokens are "
                                 f"not valid) for this user is '{iso(st.revoked_before.get(rec['user'].lower(), now))}'.")
            if fam["revoked"]:
                raise OAuthError(400, "invalid_grant", 70000,
                                 "The provided value for the input parameter 'refresh_token' or 'assertion' is not "
                                 "valid. The refresh token's family was revoked after reuse of a redeemed one-time "
                                 "refresh token (mock strict mode).")
            if now - rec["last_used"] > st.config["refresh_token_lifetime_s"]:
                raise OAuthError(400, "invalid_grant", 700082,
                                 f"The refresh token has expired due to inactivity. The token was issued on "
                                 f"{iso(rec['issued_at'])} and was inactive for "
                                 f"{int(st.config['refresh_token_lifetime_s'])} seconds.")
            if st.config["refresh_mode"] == "strict" and rec["spent"]:
                fam["revoked"] = "reuse_detected"
                st.stats["families_revoked"] += 1
                st.stats["reuse_detected"] += 1
                raise OAuthError(400, "invalid_grant", 70000,
                                 "The provided value for the input parameter 'refresh_token' or 'assertion' is not "
                                 "valid. The refresh token was already redeemed; it is one-time in this mode (mock "
                                 "strict mode) and its whole token family is now revoked.")
            scope = form.get("scope")
            has_scope = bool(scope and scope.strip())
            # Without `scope`, the scopes of the family's original request apply.
            sr = parse_scope(st, scope if has_scope else fam["scope"], tenant)
            user = st.user(rec["user"])
            rec["last_used"] = now
            if st.config["refresh_mode"] == "strict":
                rec["spent"] = True
        minter = Minter(st, self.base)
        access, scope_str, lifetime = minter.access_token(
            tid=rec["tid"], client_id=client_id, user=user, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=rec["oidc"])
        oidc_now = [s for s in rec["oidc"] if s in sr.oidc] if has_scope else rec["oidc"]
        id_token = minter.id_token(tid=rec["tid"], client_id=client_id, user=user, oidc=oidc_now, nonce=None) \
            if "openid" in oidc_now else None
        new_rt = minter.refresh_token(family=rec["family"], client_id=client_id, user=user, tid=rec["tid"],
                                      oidc=rec["oidc"], generation=rec["generation"] + 1, scope=fam["scope"])
        info = {"uid": user["oid"], "utid": rec["tid"]} if form.get("client_info") == "1" else None
        return self._token_response(access, scope_str, lifetime, id_token, new_rt, info)

    def _grant_client_credentials(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        scope = self._require(form, "scope")
        sr = parse_scope(self.st, scope, tenant, require_resource_default=True)
        access, scope_str, lifetime = Minter(self.st, self.base).access_token(
            tid=tid, client_id=client_id, user=None, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=[])
        as_str = self.st.config["expires_in_as_string"]
        ext = lifetime + int(self.st.config["ext_expires_extra_s"])
        return json_reply(200, {"token_type": "Bearer", "expires_in": str(lifetime) if as_str else lifetime,
                                "ext_expires_in": str(ext) if as_str else ext, "access_token": access},
                          {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _grant_obo(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        if form.get("requested_token_use") != "on_behalf_of":
            raise OAuthError(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'requested_token_use'.")
        assertion = self._require(form, "assertion")
        scope = self._require(form, "scope")
        claims = self.st.key.verify(assertion)
        if claims is None:
            raise OAuthError(400, "invalid_grant", 50013,
                             "Assertion failed signature validation. [Reason - The key was not found., Thumbprint "
                             "of key used by client: 'unknown', Please visit the Azure Portal, Graph Explorer or "
                             "directly use MS Graph to see configured keys for app Id '00000000-0000-0000-0000-"
                             "000000000000'. Review the documentation at https://docs.microsoft.com/en-us/graph/"
                             "deployments to determine the corresponding service endpoint and https://docs."
                             "microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build "
                             "a query request URL, such as 'https://graph.microsoft.com/beta/applications/"
                             "00000000-0000-0000-0000-000000000000'].")
        aud = claims.get("aud")
        if aud in (GRAPH_APP_ID, GRAPH_URI):
            # Real Graph tokens carry a `nonce` header, so Entra cannot verify them as an assertion:
            # it answers AADSTS50013 signature validation, never the audience error.
            header = json.loads(b64url_decode(assertion.split(".")[0]))
            thumb = b64url_decode(header.get("x5t", "")).hex().upper()
            raise OAuthError(400, "invalid_grant", 50013,
                             f"Assertion failed signature validation. [Reason - Key was found, but use of the key "
                             f"to verify the signature failed., Thumbprint of key used by client: '{thumb}', Found "
                             f"key 'Start={datetime.now(timezone.utc) - timedelta(days=1):%m/%d/%Y %H:%M:%S}, "
                             f"End={datetime.now(timezone.utc) + timedelta(days=365):%m/%d/%Y %H:%M:%S}'].")
        expected = {client_id, f"api://{client_id}"} | set(client_cfg.get("identifier_uris", []))
        if aud not in expected:
            raise OAuthError(400, "invalid_grant", 500131,
                             f"Assertion audience does not match the Client app presenting the assertion. The "
                             f"audience in the assertion was '{aud}' and the expected audience is '{client_id}' or "
                             f"one of the Application Uris of this application with App ID '{client_id}'"
                             f"({client_cfg.get('name', client_id)}). The downstream client must request a token "
                             f"for the expected audience (the application that made the OBO request) and this "
                             f"application should use that token as the assertion.")
        now = time.time()
        if claims.get("exp", 0) < now:
            raise OAuthError(400, "invalid_grant", 500133,
                             f"Assertion is not within its valid time range. Ensure that the access token is not "
                             f"expired before using it for user assertion, or request a new token. Current time: "
                             f"{iso(now)}, expiry time of assertion {iso(claims.get('exp', 0))}.")
        user = self.st.user_by_oid(claims.get("oid", ""))
        if user is None:
            raise OAuthError(400, "invalid_grant", 50034, "The user account does not exist in the directory.")
        if self.st.user_revoked_since(user["upn"], claims.get("iat", 0) + self.st.config["backdate_s"]):
            raise OAuthError(400, "invalid_grant", 50173, "The provided grant has expired due to it being revoked, "
                                                          "a fresh auth token is needed.")
        sr = parse_scope(self.st, scope, tenant)
        minter = Minter(self.st, self.base)
        atid = claims.get("tid", tid)
        access, scope_str, lifetime = minter.access_token(
            tid=atid, client_id=client_id, user=user, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=sr.oidc)
        refresh = None
        if sr.offline and self.st.config["issue_refresh_tokens"]:
            refresh = minter.refresh_token(family=str(uuid.uuid4()), client_id=client_id, user=user, tid=atid,
                                           oidc=sr.oidc, generation=1, scope=scope)
        id_token = minter.id_token(tid=atid, client_id=client_id, user=user, oidc=sr.oidc, nonce=None) \
            if sr.openid else None
        return self._token_response(access, scope_str, lifetime, id_token, refresh)
