"""Mock Entra ID: scope parsing (which resource, which OIDC scopes) and token minting
(access, ID and refresh tokens with Entra's claims)."""

from __future__ import annotations

import secrets
import time
import uuid

from mock_entra.common import GRAPH_APP_ID, GRAPH_URI, OAuthError, OIDC_SCOPES, b64url, pairwise_sub, sp_oid
from mock_entra.state import MockState


# ---------------------------------------------------------------------------------------------
# Scopes and resources
# ---------------------------------------------------------------------------------------------

class ScopeRequest:
    """A parsed `scope` parameter: OIDC scopes plus the scopes of exactly one resource."""

    def __init__(self, oidc: list[str], resource: str | None, aud: str | None, names: list[str], qualified: bool,
                 prefix: str):
        self.oidc, self.resource, self.aud, self.names = oidc, resource, aud, names
        self.qualified, self.prefix = qualified, prefix

    @property
    def is_graph(self) -> bool:
        return self.resource in (None, "graph")

    @property
    def offline(self) -> bool:
        return "offline_access" in self.oidc

    @property
    def openid(self) -> bool:
        return "openid" in self.oidc


def parse_scope(state: MockState, scope: str, tenant_segment: str, require_resource_default: bool = False) -> ScopeRequest:
    items = scope.split()
    oidc, other = [], []
    for s in items:
        (oidc if s.lower() in OIDC_SCOPES else other).append(s.lower() if s.lower() in OIDC_SCOPES else s)
    resources: dict[str, tuple[str, str, bool, str]] = {}   # key -> (aud, resource-kind, qualified, prefix)
    names: dict[str, list[str]] = {}
    for s in other:
        if "/" in s:
            prefix, name = s.rsplit("/", 1)
            p = prefix.rstrip("/")
            pl = p.lower()
            if pl in (GRAPH_URI, "https://graph.microsoft.com/v1.0", GRAPH_APP_ID):
                key, aud, kind = "graph", (GRAPH_URI if pl.startswith("https://") else GRAPH_APP_ID), "graph"
            else:
                appid = pl[len("api://"):] if pl.startswith("api://") else pl
                cid = next((c for c in state.clients if c.lower() == appid or
                            pl in [x.lower() for x in state.clients[c].get("identifier_uris", [])]), None)
                if cid is None:
                    raise OAuthError(400, "invalid_resource", 500011,
                                     f"The resource principal named {p} was not found in the tenant named "
                                     f"{tenant_segment}. This can happen if the application has not been installed "
                                     f"by the administrator of the tenant or consented to by any user in the tenant. "
                                     f"You might have sent your authentication request to the wrong tenant.")
                key, aud, kind = "app:" + cid, cid, "app"
            resources.setdefault(key, (aud, kind, True, p))
            names.setdefault(key, []).append(name)
        else:
            resources.setdefault("graph", (GRAPH_APP_ID, "graph", False, GRAPH_URI))
            names.setdefault("graph", []).append(s)
    if len(resources) > 1:
        raise OAuthError(400, "invalid_scope", 28000,
                         f"Provided value for the input parameter scope is not valid because it contains more than "
                         f"one resource. Scope {scope} is not valid.")
    if not resources:
        if require_resource_default:
            raise OAuthError(400, "invalid_scope", 1002012,
                             f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                             f"scope value with /.default suffixed to the resource identifier (application ID URI).")
        return ScopeRequest(oidc, None, GRAPH_APP_ID, [], False, GRAPH_URI)
    key = next(iter(resources))
    aud, kind, qualified, prefix = resources[key]
    ns = names[key]
    if ".default" in ns and len(ns) > 1:
        raise OAuthError(400, "invalid_scope", 70011,
                         f"The provided request must include a 'scope' input parameter. The provided value for the "
                         f"input parameter 'scope' is not valid. The scope {scope} is not valid. static scope limit "
                         f"exceeded.")
    if require_resource_default and ns != [".default"]:
        raise OAuthError(400, "invalid_scope", 1002012,
                         f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                         f"scope value with /.default suffixed to the resource identifier (application ID URI).")
    if kind == "app":
        cid = key[len("app:"):]
        allowed = state.clients[cid].get("api_scopes", [])
        for n in ns:
            if n != ".default" and n not in allowed:
                raise OAuthError(400, "invalid_scope", 70011,
                                 f"The provided value for the input parameter 'scope' is not valid. The scope "
                                 f"{prefix}/{n} is not valid. The scope doesn't exist on the resource.")
    return ScopeRequest(oidc, kind, aud, ns, qualified, prefix)


# ---------------------------------------------------------------------------------------------
# Token minting
# ---------------------------------------------------------------------------------------------

class Minter:
    def __init__(self, state: MockState, base_url: str):
        self.state, self.base = state, base_url

    def issuer(self, tid: str) -> str:
        return f"{self.base}/{tid}/v2.0"

    def _times(self, lifetime: int) -> tuple[int, int, int]:
        now = int(time.time())
        back = self.state.config["backdate_s"]
        return now - back, now - back, now + lifetime

    def access_token(self, *, tid: str, client_id: str, user: dict | None, sr: ScopeRequest,
                     client_cfg: dict, auth_method: str, consented_oidc: list[str]) -> tuple[str, str, int]:
        """(jwt, response scope string, lifetime)"""
        lifetime = int(self.state.config["access_token_lifetime_s"])
        iat, nbf, exp = self._times(lifetime)
        claims = {"aud": sr.aud, "iss": self.issuer(tid), "iat": iat, "nbf": nbf, "exp": exp}
        if user is None:
            roles = (client_cfg.get("graph_app_roles", []) if sr.is_graph else
                     self.state.clients.get(sr.aud, {}).get("app_roles", []))
            claims.update({"aio": b64url(secrets.token_bytes(24)), "azp": client_id,
                           "azpacr": "2" if auth_method == "certificate" else "1", "idtyp": "app",
                           "oid": sp_oid(client_id), "rh": "0.A" + b64url(secrets.token_bytes(24)) + ".",
                           "sub": sp_oid(client_id), "tid": tid, "uti": b64url(secrets.token_bytes(16)), "ver": "2.0"})
            if roles:
                claims["roles"] = list(roles)
            scope_str = f"{sr.prefix}/.default"
        else:
            if sr.is_graph:
                named = sr.names
                if named == [".default"] or not named:
                    named = [] if not named else list(client_cfg.get("graph_consented_scopes", []))
                scp_oidc = [s for s in ("openid", "profile", "email") if s in consented_oidc or s in sr.oidc]
                scp = scp_oidc + named
                shown = [s for s in ("openid", "profile", "email") if s in sr.oidc] + \
                        [f"{GRAPH_URI}/{n}" if sr.qualified else n for n in named]
            else:
                named = sr.names
                if named == [".default"]:
                    named = list(self.state.clients[sr.aud].get("api_scopes", []))
                scp = named
                shown = [f"{sr.prefix}/{n}" for n in named]
            claims.update({
                "aio": b64url(secrets.token_bytes(24)), "azp": client_id,
                "azpacr": "2" if auth_method == "certificate" else "1",
                "name": user["name"], "oid": user["oid"], "preferred_username": user["upn"],
                "rh": "0.A" + b64url(secrets.token_bytes(24)) + ".", "scp": " ".join(scp),
                "sub": pairwise_sub(user["oid"], client_id), "tid": tid,
                "uti": b64url(secrets.token_bytes(16)), "ver": "2.0",
            })
            scope_str = " ".join(shown)
        token = self.state.key.sign(claims)
        self.state.remember("access_tokens", token)
        return token, scope_str, lifetime

    def id_token(self, *, tid: str, client_id: str, user: dict, oidc: list[str], nonce: str | None) -> str:
        iat, nbf, exp = self._times(int(self.state.config["id_token_lifetime_s"]))
        claims = {"aud": client_id, "iss": self.issuer(tid), "iat": iat, "nbf": nbf, "exp": exp,
                  "aio": b64url(secrets.token_bytes(24))}
        if "email" in oidc:
            claims["email"] = user.get("email", user["upn"])
        if "profile" in oidc:
            claims["name"] = user["name"]
        if nonce:
            claims["nonce"] = nonce
        claims["oid"] = user["oid"]
        if "profile" in oidc:
            claims["preferred_username"] = user["upn"]
        claims.update({"rh": "0.A" + b64url(secrets.token_bytes(24)) + ".", "sid": user.get("sid_hint") or
                       str(uuid.uuid5(uuid.NAMESPACE_URL, "sid:" + user["oid"])),
                       "sub": pairwise_sub(user["oid"], client_id), "tid": tid,
                       "uti": b64url(secrets.token_bytes(16)), "ver": "2.0"})
        token = self.state.key.sign(claims)
        self.state.remember("id_tokens", token)
        return token

    def refresh_token(self, *, family: str, client_id: str, user: dict, tid: str, oidc: list[str],
                      generation: int, scope: str) -> str:
        value = "1.AR" + b64url(secrets.token_bytes(384))
        with self.state.lock:
            self.state.refresh_tokens[value] = {
                "family": family, "client_id": client_id, "user": user["upn"], "tid": tid, "oidc": list(oidc),
                "issued_at": time.time(), "last_used": time.time(), "spent": False, "generation": generation,
            }
            fam = self.state.families.setdefault(family, {"user": user["upn"], "client_id": client_id,
                                                          "revoked": False, "created": time.time(), "scope": scope,
                                                          "generations": 0})
            fam["generations"] = max(fam["generations"], generation)
        self.state.remember("refresh_tokens", value)
        return value
