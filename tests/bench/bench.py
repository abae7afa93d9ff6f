"""`make bench`: our `entra-oidc` IdP side by side with stock Keycloak's `oidc` IdP, on one
Keycloak started for the run, against the mock Entra ID on loopback.

Phases (see docs/bench/README.md for what each measures):
  1 fresh path    wrk, interleaved stock/ours rounds, ratio per round, t-based 95 % CI
  2 refresh path  wrk -c1, every call refreshes (mock lifetime 30 s < minValidityToken 3600 s)
  3 storm         N concurrent calls for one expired token; upstream refreshes and failures
  5 memory        RSS of this Keycloak after the load; then a second Keycloak without the
                  extension runs the same load (ours replaced by a second stock IdP)
Goal 4 (JMH) runs from tests/bench/run.sh; report.py writes docs/bench/README.md.

Every loop is bounded (fixed durations or request counts); every server started here is
stopped on exit. Keycloak runs from a private copy of the pinned distribution under
target/bench/ (its own H2 database), on ports 28080/29000; the mock on an ephemeral port.
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import http.client
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.keycloak import KeycloakAdmin, _authorize  # noqa: E402
import flame  # noqa: E402

KC_VERSION = os.environ.get("KC_VERSION", "26.7.3")
KC_PORT = int(os.environ.get("BENCH_KC_PORT", "28080"))
KC_MGMT_PORT = int(os.environ.get("BENCH_KC_MGMT_PORT", "29000"))
KC_BASE = f"http://127.0.0.1:{KC_PORT}"
TENANT = "11111111-1111-1111-1111-111111111111"
MOCK_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
MOCK_CLIENT_SECRET = "mock-secret-c1"
REALM = "bench"
APP, APP_SECRET = "bench-app", "bench-app-secret"
REDIRECT = "http://127.0.0.1:1/callback"
WORK = ROOT / "target" / "bench"
# The two files `make package` leaves; BENCH_DIST points elsewhere (e.g. a build under test).
DIST = Path(os.environ.get("BENCH_DIST", str(ROOT / "target" / "dist"))).resolve()

_cleanup: list = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------------

class Mock:
    """The mock Entra ID as a separate process (its own GIL), ephemeral port, log to a file."""

    def __init__(self, logfile: Path):
        self.logfile = logfile
        self.proc = None
        self.base = None

    def start(self) -> "Mock":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        self.out = open(self.logfile, "w")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "mock_server.py"), "--host", "127.0.0.1",
                                      "--port", str(port)], stdout=self.out, stderr=subprocess.STDOUT,
                                     cwd=str(ROOT / "tests"), start_new_session=True)
        _cleanup.append(self.stop)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(f"{self.base}/_mock/health", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"mock exited: {self.logfile.read_text()[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError("mock not ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def config(self, **kw) -> dict:
        r = requests.post(f"{self.base}/_mock/config", json=kw, timeout=10)
        r.raise_for_status()
        return r.json()

    def stats(self) -> dict:
        return requests.get(f"{self.base}/_mock/stats", timeout=10).json()

    def refreshes(self) -> int:
        return int((self.stats().get("by_grant") or {}).get("refresh_token", 0))

    def reset_counters(self) -> None:
        requests.post(f"{self.base}/_mock/reset", json={}, timeout=10).raise_for_status()


class Keycloak:
    """Keycloak from a private copy of the pinned distribution (same arguments as
    keycloak-dist/keycloak.sh), with or without our provider JAR + .so in providers/."""

    def __init__(self, name: str, with_extension: bool, log_level: str = "INFO"):
        self.home = WORK / f"kc-{name}"
        self.with_extension = with_extension
        self.log_level = log_level
        self.logfile = WORK / f"keycloak-{name}.log"
        self.proc = None

    def prepare(self) -> None:
        subprocess.run([str(ROOT / "keycloak-dist/fetch.sh")], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, KC_VERSION=KC_VERSION))
        src = ROOT / "keycloak-dist" / f"keycloak-{KC_VERSION}"
        if self.home.exists():
            shutil.rmtree(self.home)
        shutil.copytree(src, self.home, symlinks=True, ignore=shutil.ignore_patterns("data"))
        prov = self.home / "providers"
        for p in list(prov.glob("keycloak-fresh-token-*.jar")) + list(prov.glob("libfresh_token_core.*")):
            p.unlink()
        if self.with_extension:
            for p in DIST.iterdir():
                shutil.copy2(p, prov / p.name)

    def start(self) -> "Keycloak":
        self.prepare()
        env = dict(os.environ, KC_BOOTSTRAP_ADMIN_USERNAME="admin", KC_BOOTSTRAP_ADMIN_PASSWORD="admin",
                   # deep stacks for the JFR profile of the fresh path (no cost unless recording)
                   JAVA_OPTS_APPEND=(os.environ.get("JAVA_OPTS_APPEND", "") + " -XX:FlightRecorderOptions:stackdepth=512").strip())
        self.out = open(self.logfile, "w")
        self.proc = subprocess.Popen(
            [str(self.home / "bin/kc.sh"), "start-dev", "--http-host=127.0.0.1", f"--http-port={KC_PORT}",
             f"--http-management-port={KC_MGMT_PORT}", "--health-enabled=true", "--metrics-enabled=true",
             f"--log-level={self.log_level}"],  # V1 GET endpoint: the identity-brokering-api feature at its default (v1)
            stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        _cleanup.append(self.stop)
        log(f"Keycloak ({'with' if self.with_extension else 'WITHOUT'} the extension) starting, log {self.logfile}")
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if requests.get(f"{KC_BASE}/realms/master", timeout=3).ok:
                    log("Keycloak ready")
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"Keycloak exited: {self.logfile.read_text()[-3000:]}")
            time.sleep(2)
        raise RuntimeError("Keycloak not ready in 300 s")

    def java_pid(self) -> int:
        """The JVM: the process in our session whose command line runs java."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if os.getsid(int(d.name)) != self.proc.pid:
                    continue
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except (OSError, ProcessLookupError):
                continue
            if cmd and cmd[0].endswith(b"java"):
                pids.append(int(d.name))
        if not pids:
            raise RuntimeError("no java process found")
        return pids[0]

    def memory(self) -> dict:
        pid = self.java_pid()
        status = Path(f"/proc/{pid}/status").read_text()
        val = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1))  # noqa: E731
        so_rss = 0
        cur = None
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                cur = line.split()[-1] if len(line.split()) >= 6 else ""
            elif line.startswith("Rss:") and cur and cur.endswith("libfresh_token_core.so"):
                so_rss += int(line.split()[1])
        heap = subprocess.run(["jcmd", str(pid), "GC.heap_info"], capture_output=True, text=True, timeout=60).stdout
        return {"pid": pid, "vm_rss_kb": val("VmRSS"), "vm_hwm_kb": val("VmHWM"), "threads": val("Threads"),
                "so_rss_kb": so_rss, "heap_info": heap.strip()[-800:]}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            log("Keycloak stopped")
        self.proc = None


# ------------------------------------------------------------------------------------------
# Realm, IdPs, users
# ------------------------------------------------------------------------------------------

def stock_idp_config(mock: Mock) -> dict:
    d = requests.get(f"{mock.base}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=10).json()
    return {"authorizationUrl": d["authorization_endpoint"], "tokenUrl": d["token_endpoint"],
            "jwksUrl": d["jwks_uri"], "issuer": d["issuer"], "clientId": MOCK_CLIENT_ID,
            "clientSecret": MOCK_CLIENT_SECRET, "clientAuthMethod": "client_secret_post",
            "defaultScope": "openid profile email offline_access", "syncMode": "IMPORT",
            "validateSignature": "true", "useJwksUrl": "true", "loginHint": "true", "minValidityToken": "60"}


def ours_idp_config(mock: Mock) -> dict:
    return {"entraTenant": TENANT, "entraAuthorityHost": mock.base, "clientId": MOCK_CLIENT_ID,
            "clientSecret": MOCK_CLIENT_SECRET, "syncMode": "IMPORT", "loginHint": "true", "minValidityToken": "60"}


def setup_realm(admin: KeycloakAdmin, mock: Mock, ours_type: str) -> None:
    """ours_type: 'entra-oidc' normally; 'oidc' in the run without the extension, where the
    alias `entra` is a second stock IdP carrying the same load."""
    admin.create_realm(REALM, ssoSessionIdleTimeout=36000, ssoSessionMaxLifespan=36000, accessTokenLifespan=7200)
    admin.create_client(REALM, APP, APP_SECRET, REDIRECT)
    for alias, ptype, cfg in (("stock", "oidc", stock_idp_config(mock)),
                              ("entra", ours_type, ours_idp_config(mock) if ours_type == "entra-oidc" else stock_idp_config(mock))):
        r = admin.create_idp(REALM, alias, ptype, cfg, storeToken=True, addReadTokenRoleOnCreate=True)
        if r.status_code != 201:
            raise RuntimeError(f"create IdP {alias}: {r.status_code} {r.text[:300]}")


def add_mock_users(mock: Mock, names: list[str]) -> None:
    mock.config(users={f"{n}@contoso.onmicrosoft.com": {"name": n.title()} for n in names})


class LoopbackSession(requests.Session):
    """Sends Keycloak's `Secure` cookies over plain http on loopback, as browsers do for
    127.0.0.1 (http.cookiejar keeps Secure cookies for https only, and requests copies the
    jar into one with the default policy, so the flag is cleared after each answer)."""

    def send(self, request, **kwargs):
        r = super().send(request, **kwargs)
        for c in self.cookies:
            c.secure = False
        return r


def loopback_session() -> requests.Session:
    return LoopbackSession()


def login(alias: str, upn: str):
    return _authorize(loopback_session(), KC_BASE, REALM, APP, APP_SECRET, REDIRECT,
                      {"kc_idp_hint": alias, "login_hint": upn})


def login_linked(user: str):
    """Signs `user` in through the stock IdP, then links our IdP to the same Keycloak user
    (kc_action=idp_link, Keycloak 26.3+), so one Keycloak access token reads both."""
    upn = f"{user}@contoso.onmicrosoft.com"
    first = login("stock", upn)
    linked = _authorize(first.browser, KC_BASE, REALM, APP, APP_SECRET, REDIRECT,
                        {"kc_action": "idp_link:entra", "login_hint": upn})
    return linked


def broker_get(alias: str, token: str) -> requests.Response:
    return requests.get(f"{KC_BASE}/realms/{REALM}/broker/{alias}/token",
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)


def jwt_claims(tok: str) -> dict:
    p = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


# ------------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------------

def wrk(alias: str, tokens: list[str], threads: int, conns: int, seconds: int, tag: str) -> dict:
    tok_file = WORK / f"tokens-{tag}.txt"
    tok_file.write_text("\n".join(tokens) + "\n")
    out = WORK / f"wrk-{tag}.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_PATH=f"/realms/{REALM}/broker/{alias}/token", BENCH_TOKENS=str(tok_file),
               BENCH_OUT=str(out))
    subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
                    "-s", str(HERE / "wrk_broker.lua"), KC_BASE], check=True, env=env, stdout=subprocess.DEVNULL,
                   timeout=seconds + 60)
    r = json.loads(out.read_text())
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["non2xx_or_errors"] = sum(r["errors"].values())
    return r


def t_ci(values: list[float], conf: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based CI of the mean."""
    n = len(values)
    m = statistics.fmean(values)
    if n < 2:
        return m, m, m
    # two-sided 97.5 % quantiles of Student's t for df 1..30
    t975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
            2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
            2.045, 2.042]
    t = t975[min(n - 1, 30) - 1] if n - 1 <= 30 else 1.96
    h = t * statistics.stdev(values) / math.sqrt(n)
    return m, m - h, m + h


def phase_fresh(tokens: list[str], rounds: int, seconds: int, threads: int, conns: int, kc: "Keycloak" = None) -> dict:
    log(f"phase 1 (fresh path): warm-up, then {rounds} interleaved rounds of {seconds} s per IdP, wrk -t{threads} -c{conns}")
    for alias in ("stock", "entra"):
        wrk(alias, tokens, threads, conns, max(5, seconds), f"fresh-warm-{alias}")
    runs = {"stock": [], "entra": []}
    for i in range(rounds):
        order = ("stock", "entra") if i % 2 == 0 else ("entra", "stock")  # ABBA: no side always goes first
        for alias in order:
            r = wrk(alias, tokens, threads, conns, seconds, f"fresh-{i}-{alias}")
            runs[alias].append(r)
            log(f"  round {i} {alias:5s}: {r['rps']:8.1f} req/s  p50 {r['latency_us']['p50'] / 1000:.2f} ms  "
                f"p99 {r['latency_us']['p99'] / 1000:.2f} ms  errors {r['non2xx_or_errors']}")
    thr = [e["rps"] / s["rps"] for s, e in zip(runs["stock"], runs["entra"])]
    p50 = [e["latency_us"]["p50"] / s["latency_us"]["p50"] for s, e in zip(runs["stock"], runs["entra"])]
    p99 = [e["latency_us"]["p99"] / s["latency_us"]["p99"] for s, e in zip(runs["stock"], runs["entra"])]
    profile = []
    if kc is not None and shutil.which("jfr"):
        for alias in ("entra", "stock"):
            try:
                profile.append(jfr_profile(kc, alias, tokens, threads, conns, seconds))
                p = profile[-1]
                log(f"  JFR {alias}: {p['request_samples']} samples on request threads, "
                    f"{100 * p['share_in_provider']:.1f} % in dev.freshtoken")
            except Exception as e:  # noqa: BLE001 - the profile is an extra
                log(f"  JFR profile of {alias} failed: {e!r}")
    return {"rounds": rounds, "seconds": seconds, "threads": threads, "connections": conns, "users": len(tokens),
            "runs": runs, "profile": profile, "ratio_throughput": t_ci(thr), "ratio_p50": t_ci(p50), "ratio_p99": t_ci(p99),
            "ratios_throughput": thr, "ratios_p50": p50, "ratios_p99": p99}


# The provider's steps on the fresh path, by the frame each runs in (inclusive: callees counted).
PROVIDER_STEPS = {
    "whole provider call": "dev.freshtoken.keycloak.idp.FreshTokenIdentityProvider.retrieveToken",
    "native call (JNI + core)": "dev.freshtoken.keycloak.nativecore.NativeCore.",
    "request build": "dev.freshtoken.keycloak.nativecore.CoreRequest.",
    "answer parse": "dev.freshtoken.keycloak.nativecore.CoreAnswer.parse",
    "answer to app body": "dev.freshtoken.keycloak.refresh.CoreMapping.respond",
    "telemetry (events, metrics)": "dev.freshtoken.keycloak.telemetry.",
    "config and access": "dev.freshtoken.keycloak.idp.FreshTokenConfig",
    "access rules": "dev.freshtoken.keycloak.refresh.Access.",
    "provider creation (factory)": "dev.freshtoken.keycloak.idp.EntraOidcIdentityProviderFactory.create",
    "storage keys / user lookup": "dev.freshtoken.keycloak.storage.",
}


def jfr_profile(kc: "Keycloak", alias: str, tokens: list[str], threads: int, conns: int, seconds: int) -> dict:
    """One extra fresh-path round under Java Flight Recorder (JDK built-in profiler): which
    share of the sampled stacks run in our provider, and where (top frames)."""
    pid = kc.java_pid()
    jfr_file = WORK / f"fresh-{alias}.jfr"
    jfr_file.unlink(missing_ok=True)
    subprocess.run(["jcmd", str(pid), "JFR.start", f"name=bench-{alias}", "settings=profile", f"filename={jfr_file}"],
                   check=True, capture_output=True, timeout=60)
    r = wrk(alias, tokens, threads, conns, seconds, f"fresh-profiled-{alias}")
    subprocess.run(["jcmd", str(pid), "JFR.stop", f"name=bench-{alias}"], check=True, capture_output=True, timeout=120)
    raw = subprocess.run(["jfr", "print", "--json", "--events", "jdk.ExecutionSample,jdk.NativeMethodSample", str(jfr_file)],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    events = json.loads(raw)["recording"]["events"]
    # Flame graph and collapsed stacks of the request threads (kept in the report directory).
    stacks = flame.collapse(events)
    out_dir = Path(os.environ.get("BENCH_FLAME_DIR", str(WORK)))
    out_dir.mkdir(parents=True, exist_ok=True)
    flame.write_collapsed(stacks, out_dir / f"flame-fresh-{alias}.collapsed")
    (out_dir / f"flame-fresh-{alias}.svg").write_text(
        flame.svg(stacks, f"fresh path, IdP '{alias}': CPU samples of Keycloak's request threads (JFR)"))
    steps = flame.inclusive(stacks, list(PROVIDER_STEPS.values()))
    total, ours, ours_top, top, ours_caller = 0, 0, {}, {}, {}
    for ev in events:
        frames = ((ev.get("values") or {}).get("stackTrace") or {}).get("frames") or []
        names = [f"{f['method']['type']['name']}.{f['method']['name']}" for f in frames]
        thread = ((ev.get("values") or {}).get("sampledThread") or {}).get("javaName") or ""
        if not thread.startswith("executor-thread"):
            continue  # only Keycloak's request threads
        total += 1
        t = names[0] if names else "?"
        top[t] = top.get(t, 0) + 1
        if any(n.startswith("dev.freshtoken") for n in names):
            ours += 1
            # the outermost of our frames that is still ours, and the top frame
            ours_top[t] = ours_top.get(t, 0) + 1
            mine = next(n for n in names if n.startswith("dev.freshtoken"))
            ours_caller[mine] = ours_caller.get(mine, 0) + 1
    jfr_file.unlink(missing_ok=True)
    best = lambda d: sorted(d.items(), key=lambda kv: -kv[1])[:12]  # noqa: E731
    return {"alias": alias, "rps": r["rps"], "request_samples": total, "samples_in_provider": ours,
            "share_in_provider": ours / total if total else 0.0, "top_frames": best(top),
            "steps": {name: steps[prefix] for name, prefix in PROVIDER_STEPS.items()},
            "top_frames_in_provider": best(ours_top), "innermost_provider_frames": best(ours_caller)}


def probe_idp_round_trip(mock: Mock, refresh_token: str, n: int) -> list[float]:
    """The mock's refresh round trip as a loopback HTTP client sees it (one kept-alive
    connection, as a pooled client; the delay included): n sequential refreshes, ms."""
    host, port = urllib.parse.urlparse(mock.base).hostname, urllib.parse.urlparse(mock.base).port
    body = urllib.parse.urlencode({"grant_type": "refresh_token", "client_id": MOCK_CLIENT_ID,
                                   "client_secret": MOCK_CLIENT_SECRET, "refresh_token": refresh_token})
    out = []
    c = http.client.HTTPConnection(host, port, timeout=10)
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("POST", f"/{TENANT}/oauth2/v2.0/token", body=body,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise RuntimeError(f"probe refresh failed: {r.status}")
    c.close()
    return out


def mock_durations(mock: Mock, last: int) -> list[int]:
    recent = mock.stats().get("recent_refreshes") or []
    return [x["duration_ms"] for x in recent[-last:] if x.get("outcome") == "ok"]


def phase_refresh(admin: KeycloakAdmin, mock: Mock, token: str, rounds: int, seconds: int, delay_ms: int) -> dict:
    # Keycloak's endpoint cost without a refresh, at the same concurrency (c=1): the base the
    # refresh-specific work adds to.
    base = {alias: wrk(alias, [token], 1, 1, 5, f"fresh-c1-{alias}") for alias in ("stock", "entra")}
    log("  fresh path at c=1: " + ", ".join(f"{a} p50 {r['latency_us']['p50'] / 1000:.2f} ms" for a, r in base.items()))
    log(f"phase 2 (refresh path): mock delay {delay_ms} ms, lifetime 30 s, minValidityToken 3600 s: every call refreshes")
    mock.config(access_token_lifetime_s=30, refresh_delay_ms=delay_ms, refresh_mode="entra", recent_limit=5000)
    for alias in ("stock", "entra"):
        admin.update_idp_config(REALM, alias, minValidityToken=3600)
    for alias in ("stock", "entra"):
        wrk(alias, [token], 1, 1, 5, f"refresh-warm-{alias}")
    runs = {"stock": [], "entra": []}
    mock_ms = {"stock": [], "entra": []}
    for i in range(rounds):
        order = ("stock", "entra") if i % 2 == 0 else ("entra", "stock")
        for alias in order:
            mock.reset_counters()
            r = wrk(alias, [token], 1, 1, seconds, f"refresh-{i}-{alias}")
            refreshes = mock.refreshes()
            r["upstream_refreshes"] = refreshes
            r["refreshes_per_call"] = refreshes / max(1, r["requests"])
            durs = mock_durations(mock, 5000)
            mock_ms[alias].extend(durs)
            runs[alias].append(r)
            log(f"  round {i} {alias:5s}: {r['requests']} calls, {refreshes} upstream refreshes, "
                f"p50 {r['latency_us']['p50'] / 1000:.2f} ms  p99 {r['latency_us']['p99'] / 1000:.2f} ms  "
                f"errors {r['non2xx_or_errors']}  mock p50 {statistics.median(durs) if durs else float('nan')} ms")
    # The IdP round trip from a plain loopback client, with the same delay.
    rts = [x for x in (requests.get(f"{mock.base}/_mock/issued", timeout=30).json().get("refresh_tokens") or [])]
    probe = probe_idp_round_trip(mock, rts[-1], 200) if rts else []
    for alias in ("stock", "entra"):
        admin.update_idp_config(REALM, alias, minValidityToken=60)
    mock.config(access_token_lifetime_s=3600, refresh_delay_ms=0)

    def pct(v, q):
        v = sorted(v)
        return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")

    res = {"rounds": rounds, "seconds": seconds, "delay_ms": delay_ms, "runs": runs, "fresh_c1": base,
           "mock_ms_p50": {a: pct(mock_ms[a], 0.5) for a in mock_ms},
           "probe_ms_p50": pct(probe, 0.5), "probe_ms_p99": pct(probe, 0.99), "probe_n": len(probe)}
    p50 = [e["latency_us"]["p50"] / s["latency_us"]["p50"] for s, e in zip(runs["stock"], runs["entra"])]
    p99 = [e["latency_us"]["p99"] / s["latency_us"]["p99"] for s, e in zip(runs["stock"], runs["entra"])]
    res["ratio_p50"], res["ratio_p99"], res["ratios_p50"], res["ratios_p99"] = t_ci(p50), t_ci(p99), p50, p99
    for alias in ("stock", "entra"):
        e2e = statistics.median([r["latency_us"]["p50"] / 1000 for r in runs[alias]])
        res[f"{alias}_e2e_p50_ms"] = e2e
        res[f"{alias}_e2e_p99_ms"] = statistics.median([r["latency_us"]["p99"] / 1000 for r in runs[alias]])
        res[f"{alias}_overhead_vs_mock_ms"] = e2e - res["mock_ms_p50"][alias]
        res[f"{alias}_overhead_vs_probe_ms"] = e2e - res["probe_ms_p50"]
        res[f"{alias}_fresh_c1_p50_ms"] = base[alias]["latency_us"]["p50"] / 1000
        res[f"{alias}_overhead_net_ms"] = e2e - res["probe_ms_p50"] - base[alias]["latency_us"]["p50"] / 1000
    return res


def storm_once(alias: str, token: str, n: int) -> list[tuple[int, str]]:
    barrier = threading.Barrier(n)
    out: list = [None] * n
    host = "127.0.0.1"

    def one(i):
        c = http.client.HTTPConnection(host, KC_PORT, timeout=60)
        c.connect()
        try:
            barrier.wait(timeout=30)
            c.request("GET", f"/realms/{REALM}/broker/{alias}/token", headers={"Authorization": f"Bearer {token}"})
            r = c.getresponse()
            out[i] = (r.status, r.read().decode("utf-8", "replace"))
        except Exception as e:  # noqa: BLE001 - a failed call is a result here
            out[i] = (0, repr(e))
        finally:
            c.close()

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    return out


def phase_storm(admin: KeycloakAdmin, mock: Mock, ns: list[int], delay_ms: int) -> list[dict]:
    log(f"phase 3 (storm): N = {ns}, modes entra (rotating) and strict (one-time), mock delay {delay_ms} ms")
    for alias in ("stock", "entra"):
        admin.update_idp_config(REALM, alias, minValidityToken=1)
    results = []
    for mode in ("entra", "strict"):
        names = [f"storm-{mode}-{n}-{alias}" for n in ns for alias in ("stock", "entra")]
        add_mock_users(mock, names)
        mock.config(access_token_lifetime_s=3, refresh_delay_ms=delay_ms, refresh_mode=mode)
        logins = {}
        for n in ns:
            for alias in ("stock", "entra"):
                name = f"storm-{mode}-{n}-{alias}"
                logins[(n, alias)] = login(alias, f"{name}@contoso.onmicrosoft.com")
        time.sleep(4.5)  # every stored access token has expired (3 s lifetime, 1 s min validity)
        mock.config(access_token_lifetime_s=3600)  # the refreshed token is good for an hour
        for n in ns:
            for alias in ("stock", "entra"):
                st0 = mock.stats()
                before, revoked0 = int(st0["by_grant"].get("refresh_token", 0)), st0.get("families_revoked", 0)
                answers = storm_once(alias, logins[(n, alias)].access_token, n)
                time.sleep(0.3)
                st1 = mock.stats()
                upstream = int(st1["by_grant"].get("refresh_token", 0)) - before
                now = time.time()
                failed, codes, tokens = 0, {}, set()
                for status, body in answers:
                    ok = False
                    if status == 200:
                        try:
                            at = json.loads(body)["access_token"]
                            ok = jwt_claims(at)["exp"] > now
                            tokens.add(at)
                        except (ValueError, KeyError, IndexError):
                            ok = False
                    if not ok:
                        failed += 1
                        key = str(status) if status != 200 else "200-expired"
                        codes[key] = codes.get(key, 0) + 1
                row = {"mode": mode, "n": n, "idp": alias, "upstream_refreshes": upstream, "failed": failed,
                       "distinct_tokens": len(tokens), "failure_statuses": codes,
                       "families_revoked": st1.get("families_revoked", 0) - revoked0}
                results.append(row)
                log(f"  {mode:6s} N={n:2d} {alias:5s}: upstream {upstream:2d}, failed {failed:2d} {codes or ''}")
    mock.config(refresh_delay_ms=0, refresh_mode="entra", access_token_lifetime_s=3600)
    for alias in ("stock", "entra"):
        admin.update_idp_config(REALM, alias, minValidityToken=60)
    return results


# ------------------------------------------------------------------------------------------
# One Keycloak run
# ------------------------------------------------------------------------------------------

def one_run(args, with_extension: bool) -> dict:
    name = "ext" if with_extension else "noext"
    mock = Mock(WORK / f"mock-{name}.log").start()
    kc = Keycloak(name, with_extension).start()
    out: dict = {"with_extension": with_extension}
    try:
        admin = KeycloakAdmin(KC_BASE)
        setup_realm(admin, mock, "entra-oidc" if with_extension else "oidc")
        users = [f"bench{i}" for i in range(args.users)]
        add_mock_users(mock, users)
        tokens = []
        for u in users:
            login = login_linked(u)
            tokens.append(login.access_token)
        for alias in ("stock", "entra"):
            r = broker_get(alias, tokens[0])
            if r.status_code != 200:
                raise RuntimeError(f"{alias}: {r.status_code} {r.text[:300]}")
            if with_extension:
                out.setdefault("answer_bytes", {})[alias] = len(r.content)
        log(f"{len(tokens)} users signed in through 'stock' and linked to 'entra'")
        out["fresh"] = phase_fresh(tokens, args.rounds, args.seconds, args.threads, args.connections,
                                   kc if (with_extension and args.jfr) else None)
        out["refresh"] = phase_refresh(admin, mock, tokens[0], args.refresh_rounds, args.refresh_seconds, args.delay_ms)
        out["storm"] = phase_storm(admin, mock, args.storm_n, args.delay_ms)
        time.sleep(2)
        out["memory"] = kc.memory()
        log(f"memory after the load: RSS {out['memory']['vm_rss_kb'] / 1024:.0f} MiB, "
            f".so mapped RSS {out['memory']['so_rss_kb']} kB, threads {out['memory']['threads']}")
    finally:
        kc.stop()
        mock.stop()
    return out


def machine_info() -> dict:
    cpu = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpu, re.M)
    mem = subprocess.run(["free", "-m"], capture_output=True, text=True).stdout
    ver = lambda cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.strip() or subprocess.run(  # noqa: E731
        cmd, capture_output=True, text=True).stderr.strip()
    return {"cpu": model.group(1) if model else "?", "cpus": os.cpu_count(), "free_m": mem.strip(),
            "kernel": platform.release(), "os": ver(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "java": ver(["java", "-version"]).splitlines()[0], "wrk": ver(["wrk", "--version"]).splitlines()[0][:60],
            "python": platform.python_version(), "keycloak": KC_VERSION,
            "so_bytes": (DIST / "libfresh_token_core.so").stat().st_size,
            "jar_bytes": (DIST / "keycloak-fresh-token-0.1.0.jar").stat().st_size,
            "dist": str(DIST), "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs/bench/results.json"))
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=8, help="fresh path: rounds per IdP")
    ap.add_argument("--seconds", type=int, default=10, help="fresh path: seconds per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--refresh-rounds", type=int, default=4)
    ap.add_argument("--refresh-seconds", type=int, default=10)
    ap.add_argument("--delay-ms", type=int, default=20, help="added IdP latency on every refresh")
    ap.add_argument("--storm-n", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    ap.add_argument("--jfr", action="store_true",
                    help="EXPERIMENTAL: one extra JFR-profiled fresh round per IdP (its sampling of "
                         "Keycloak's request threads does not yet find our frames; not used by make bench)")
    ap.add_argument("--skip-noext", action="store_true", help="skip the second Keycloak without the extension")
    ap.add_argument("--command", default="make bench")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)

    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.time()
    result = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": args.command,
              "params": {k: v for k, v in vars(args).items() if k not in ("out", "command")},
              "machine": machine_info()}
    try:
        result["ext"] = one_run(args, True)
        if not args.skip_noext:
            log("second Keycloak WITHOUT the extension, same load (alias 'entra' is a second stock oidc IdP)")
            result["noext"] = one_run(args, False)
    finally:
        for fn in reversed(_cleanup):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                log(f"cleanup: {e!r}")
    result["elapsed_s"] = round(time.time() - started)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    log(f"results: {args.out} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
