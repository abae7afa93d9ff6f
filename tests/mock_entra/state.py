"""Mock Entra ID: the mutable state behind one mock (settings, counters, issued tokens,
tenants, users, clients) and the redirect URI rule."""

from __future__ import annotations

import copy
import threading
import time
import urllib.parse
import uuid

from mock_entra.common import (DEFAULT_CLIENTS, DEFAULT_CLIENT_ID, DEFAULT_CONFIG, DEFAULT_USER, DEFAULT_USERS, FAULTS,
                               GUID_RE, HOME_TENANT_DOMAINS, HOME_TENANT_ID)
from mock_entra.keys import KeySet


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------

class MockState:
    def __init__(self, clients: dict | None = None, users: dict | None = None, tenant_id: str = HOME_TENANT_ID,
                 domains: list | None = None):
        self.lock = threading.RLock()
        self.key = KeySet()
        self.home_tid = tenant_id
        self.domains = [d.lower() for d in (domains or HOME_TENANT_DOMAINS)]
        self.clients = copy.deepcopy(clients if clients is not None else DEFAULT_CLIENTS)
        self.users = {k.lower(): dict(v, upn=k) for k, v in copy.deepcopy(users or DEFAULT_USERS).items()}
        self.default_user = DEFAULT_USER if DEFAULT_USER in self.users else next(iter(self.users))
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.families: dict[str, dict] = {}
        self.revoked_before: dict[str, float] = {}      # user -> tokens issued before this are revoked
        self.issued = {"access_tokens": [], "id_tokens": [], "refresh_tokens": [], "authorization_codes": []}
        self.fault_remaining = 0
        self.hold_gate = threading.Event()
        self._reset_counters()

    def _reset_counters(self):
        self.stats = {
            "token_requests": 0,
            "by_grant": {},
            "by_outcome": {},
            "by_grant_outcome": {},
            "by_status": {},
            "authorize_requests": 0,
            "faults_served": 0,
            "families_revoked": 0,
            "reuse_detected": 0,
            "users_revoked": 0,
            "refresh_in_flight": 0,
            "max_concurrent_refreshes": 0,
            "held_now": 0,
            "held_total": 0,
        }
        self.recent_refreshes: list[dict] = []

    # -- config --------------------------------------------------------------------------------

    def set_config(self, settings: dict) -> dict:
        with self.lock:
            unknown = [k for k in settings if k not in DEFAULT_CONFIG and k != "clients" and k != "users"]
            if unknown:
                raise ValueError(f"unknown settings: {unknown}")
            eio = settings.get("expires_in_override")
            if "expires_in_override" in settings and not (eio is None or eio == "absent" or (
                    isinstance(eio, (int, float)) and not isinstance(eio, bool))):
                raise ValueError("expires_in_override must be null, \"absent\" or a number")
            if "refresh_mode" in settings and settings["refresh_mode"] not in ("entra", "strict"):
                raise ValueError("refresh_mode must be entra or strict")
            if "fault" in settings and settings["fault"] not in FAULTS:
                raise ValueError(f"unknown fault {settings['fault']!r}; known: {sorted(FAULTS)}")
            for k in ("access_token_lifetime_s", "id_token_lifetime_s", "refresh_token_lifetime_s", "code_lifetime_s",
                      "backdate_s", "ext_expires_extra_s", "fault_count", "retry_after_s", "refresh_delay_ms",
                      "recent_limit"):
                if k in settings and not isinstance(settings[k], int):
                    raise ValueError(f"{k} must be an integer")
            if "fault_grants" in settings and (not isinstance(settings["fault_grants"], list) or
                                               not all(isinstance(g, str) for g in settings["fault_grants"])):
                raise ValueError("fault_grants must be a list of grant type strings")
            for k in ("expires_in_as_string", "retry_after_on_503", "prompt_none_login_required", "issue_refresh_tokens"):
                if k in settings and not isinstance(settings[k], bool):
                    raise ValueError(f"{k} must be a boolean")
            if "fault" in settings and "fault_count" not in settings:
                settings = dict(settings, fault_count=-1)     # a fault without a count lasts until changed
            for k in ("slow_seconds", "hold_max_seconds"):
                if k in settings and not isinstance(settings[k], (int, float)):
                    raise ValueError(f"{k} must be a number")
            for k in ("clients", "users"):
                if k in settings:
                    getattr(self, "upsert_" + k)(settings[k])
            for k, v in settings.items():
                if k in DEFAULT_CONFIG:
                    self.config[k] = v
            if "fault" in settings or "fault_count" in settings:
                self.fault_remaining = self.config["fault_count"] if self.config["fault"] != "none" else 0
            return self.public_config()

    def upsert_clients(self, clients: dict):
        for cid, c in clients.items():
            base = copy.deepcopy(DEFAULT_CLIENTS[DEFAULT_CLIENT_ID])
            base.update({"name": cid, "secret": None})
            base.update(c)
            self.clients[cid] = base

    def upsert_users(self, users: dict):
        for upn, u in users.items():
            u = dict(u)
            u.setdefault("oid", str(uuid.uuid5(uuid.NAMESPACE_URL, "user:" + upn.lower())))
            u.setdefault("name", upn.split("@")[0].title())
            u.setdefault("email", upn)
            self.users[upn.lower()] = dict(u, upn=upn)

    def public_config(self) -> dict:
        with self.lock:
            cfg = dict(self.config)
            cfg["fault_remaining"] = self.fault_remaining
            cfg["tenant_id"] = self.home_tid
            cfg["tenant_domains"] = list(self.domains)
            cfg["clients"] = sorted(self.clients)
            cfg["users"] = sorted(u["upn"] for u in self.users.values())
            return cfg

    def take_fault(self, grant: str) -> str | None:
        with self.lock:
            fault = self.config["fault"]
            if fault == "none" or grant not in self.config["fault_grants"] or self.fault_remaining == 0:
                return None
            if self.fault_remaining > 0:
                self.fault_remaining -= 1
                if self.fault_remaining == 0:
                    self.config["fault"] = "none"
            self.stats["faults_served"] += 1
            return fault

    # -- stats ---------------------------------------------------------------------------------

    def count_request(self, grant: str):
        with self.lock:
            self.stats["token_requests"] += 1
            self.stats["by_grant"][grant] = self.stats["by_grant"].get(grant, 0) + 1

    def count_outcome(self, grant: str, outcome: str, status: int):
        with self.lock:
            self.stats["by_outcome"][outcome] = self.stats["by_outcome"].get(outcome, 0) + 1
            per = self.stats["by_grant_outcome"].setdefault(grant, {})
            per[outcome] = per.get(outcome, 0) + 1
            self.stats["by_status"][str(status)] = self.stats["by_status"].get(str(status), 0) + 1

    def record_refresh(self, entry: dict):
        with self.lock:
            self.recent_refreshes.append(entry)
            del self.recent_refreshes[:-max(1, self.config["recent_limit"])]

    def snapshot_stats(self) -> dict:
        with self.lock:
            out = copy.deepcopy(self.stats)
            out["recent_refreshes"] = copy.deepcopy(self.recent_refreshes)
            out["config"] = self.public_config()
            out["live_refresh_families"] = sum(1 for f in self.families.values() if not f["revoked"])
            return out

    def reset(self, opts: dict) -> dict:
        with self.lock:
            self._reset_counters()
            self.config["fault"] = "none"
            self.fault_remaining = 0
            if opts.get("config"):
                self.config = copy.deepcopy(DEFAULT_CONFIG)
            if opts.get("tokens"):
                self.codes.clear()
                self.refresh_tokens.clear()
                self.families.clear()
                self.revoked_before.clear()
                for v in self.issued.values():
                    v.clear()
            return {"reset": True, "config": bool(opts.get("config")), "tokens": bool(opts.get("tokens"))}

    def release_held(self) -> int:
        """Lets every request held by the `hold` fault continue; later holds wait for the next release."""
        with self.lock:
            gate, self.hold_gate = self.hold_gate, threading.Event()
            held = self.stats["held_now"]
        gate.set()
        return held

    def remember(self, kind: str, value: str):
        with self.lock:
            self.issued[kind].append(value)

    # -- tenants / users / clients -------------------------------------------------------------

    def resolve_tenant(self, segment: str) -> tuple[str | None, bool]:
        """(tid, multi_tenant_alias) for a tenant path segment; tid None when unknown."""
        s = segment.lower()
        if s in ("common", "organizations", "consumers"):
            return self.home_tid, True
        if s == self.home_tid or s in self.domains:
            return self.home_tid, False
        if GUID_RE.match(s):
            return s, False
        return None, False

    def user(self, login: str | None) -> dict | None:
        return self.users.get((login or self.default_user).lower())

    def user_by_oid(self, oid: str) -> dict | None:
        return next((u for u in self.users.values() if u["oid"] == oid), None)

    def user_revoked_since(self, upn: str, issued_at: float) -> bool:
        t = self.revoked_before.get(upn.lower())
        return t is not None and issued_at <= t

    def revoke_user(self, upn: str) -> int:
        with self.lock:
            self.revoked_before[upn.lower()] = time.time()
            self.stats["users_revoked"] += 1
            n = 0
            for fam in self.families.values():
                if fam["user"].lower() == upn.lower() and not fam["revoked"]:
                    fam["revoked"] = "user_revoked"
                    n += 1
            return n


def redirect_uri_allowed(client: dict, uri: str) -> bool:
    try:
        u = urllib.parse.urlsplit(uri)
        port = u.port
    except ValueError:
        return False
    if u.fragment:
        return False
    for pattern in client.get("redirect_uris", []):
        if pattern.endswith(":*"):
            p = urllib.parse.urlsplit(pattern[:-2])
            if u.scheme == p.scheme and u.hostname == p.hostname and not u.username and not u.password:
                return True
        elif pattern == uri:
            return True
    return False
