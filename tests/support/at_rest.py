"""Checks for encryption at rest: which issued token values appear in raw database bytes (an H2
file, a pg_dump, ...), and the federated-identity rows of the dev-mode H2 database.

`leaked_tokens(blob, tokens)` is storage-agnostic: hand it the bytes and the token values the
mock issued (`/_mock/issued`); it answers which ones are present, named by kind and index,
never by value."""
from __future__ import annotations

import csv
import hashlib
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Mapping


def _needles(token: str) -> list[bytes]:
    """The token as UTF-8 and UTF-16 (both byte orders), and for a JWT its signature alone
    (a database could split or re-encode the header/payload; the signature is the unique part)."""
    forms = [token]
    parts = token.split(".")
    if len(parts) == 3 and len(parts[2]) >= 32:
        forms.append(parts[2])
    out: list[bytes] = []
    for f in forms:
        out += [f.encode("utf-8"), f.encode("utf-16-le"), f.encode("utf-16-be")]
    return out


def leaked_tokens(blob: bytes, tokens: Iterable[str] | Mapping[str, Iterable[str]]) -> list[str]:
    """Descriptions (`<kind>#<index> sha256:<prefix>`) of the tokens found in `blob`.
    `tokens` is a list of values or a mapping kind -> values (the shape of /_mock/issued)."""
    groups = tokens.items() if isinstance(tokens, Mapping) else [("token", tokens)]
    found = []
    for kind, values in groups:
        for i, t in enumerate(values):
            if t and any(n in blob for n in _needles(t)):
                found.append(f"{kind}#{i} sha256:{hashlib.sha256(t.encode()).hexdigest()[:12]}")
    return found


def read_tree(root: Path) -> bytes:
    """Every file under `root`, concatenated (the H2 files, transaction logs, temp files)."""
    chunks = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            chunks.append(p.read_bytes())
    return b"\n".join(chunks)


def h2_federated_identities(kc_home: Path, user: str, password: str) -> dict[tuple[str, str], str]:
    """(IdP alias, user id at the IdP) -> TOKEN, read from the stopped dev-mode H2 database with
    the H2 jar of the distribution itself (Keycloak started with --db-username/--db-password)."""
    jars = sorted((kc_home / "lib" / "lib" / "main").glob("com.h2database.h2-*.jar"))
    assert jars, f"no H2 jar under {kc_home}"
    db = kc_home / "data" / "h2" / "keycloakdb"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fi.csv"
        sql = (f"CALL CSVWRITE('{out}', 'SELECT IDENTITY_PROVIDER, FEDERATED_USER_ID, TOKEN FROM FEDERATED_IDENTITY', "
               "'charset=UTF-8')")
        subprocess.run(["java", "-cp", str(jars[-1]), "org.h2.tools.Shell",
                        "-url", f"jdbc:h2:file:{db};NON_KEYWORDS=VALUE", "-user", user, "-password", password,
                        "-sql", sql], check=True, capture_output=True, timeout=120)
        with out.open(newline="", encoding="utf-8") as f:
            return {(r["IDENTITY_PROVIDER"], r["FEDERATED_USER_ID"]): r["TOKEN"] or "" for r in csv.DictReader(f)}


def h2_auto_server_url(kc_home: Path) -> str:
    """The dev-mode H2 database opened in H2's auto-server mode: Keycloak (the first process)
    serves it over loopback TCP, so a test can run SQL against it while Keycloak runs."""
    return f"jdbc:h2:file:{kc_home / 'data' / 'h2' / 'keycloakdb'};NON_KEYWORDS=VALUE;AUTO_SERVER=TRUE"


def h2_sql(kc_home: Path, user: str, password: str, sql: str) -> str:
    """Runs `sql` against the running Keycloak's H2 database (started with h2_auto_server_url)
    with the H2 jar of the distribution itself; returns the shell's output."""
    jars = sorted((kc_home / "lib" / "lib" / "main").glob("com.h2database.h2-*.jar"))
    assert jars, f"no H2 jar under {kc_home}"
    out = subprocess.run(["java", "-cp", str(jars[-1]), "org.h2.tools.Shell", "-url", h2_auto_server_url(kc_home),
                          "-user", user, "-password", password, "-sql", sql],
                         check=True, capture_output=True, text=True, timeout=120)
    return out.stdout


def h2_live_token(kc_home: Path, user: str, password: str, kc_user_id: str, alias: str) -> str:
    """The TOKEN column of one federated-identity row, read while Keycloak runs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.csv"
        Path(tmp).chmod(0o777)  # written by the H2 server (the Keycloak process)
        sql = (f"CALL CSVWRITE('{out}', 'SELECT TOKEN FROM FEDERATED_IDENTITY WHERE USER_ID = ''{kc_user_id}'' "
               f"AND IDENTITY_PROVIDER = ''{alias}''', 'charset=UTF-8')")
        h2_sql(kc_home, user, password, sql)
        with out.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 1, rows
        return rows[0]["TOKEN"] or ""


def _h2(kc_home: Path, user: str, password: str, sql: str) -> None:
    jars = sorted((kc_home / "lib" / "lib" / "main").glob("com.h2database.h2-*.jar"))
    assert jars, f"no H2 jar under {kc_home}"
    db = kc_home / "data" / "h2" / "keycloakdb"
    subprocess.run(["java", "-cp", str(jars[-1]), "org.h2.tools.Shell",
                    "-url", f"jdbc:h2:file:{db};NON_KEYWORDS=VALUE", "-user", user, "-password", password,
                    "-sql", sql], check=True, capture_output=True, timeout=120)


def h2_link_rows(kc_home: Path, user: str, password: str) -> list[dict]:
    """Every FEDERATED_IDENTITY row (IDENTITY_PROVIDER, USER_ID, FEDERATED_USER_ID, FEDERATED_USERNAME,
    TOKEN) of the stopped dev-mode H2 database."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.csv"
        _h2(kc_home, user, password, f"CALL CSVWRITE('{out}', 'SELECT IDENTITY_PROVIDER, USER_ID, FEDERATED_USER_ID, "
            "FEDERATED_USERNAME, TOKEN FROM FEDERATED_IDENTITY', 'charset=UTF-8')")
        with out.open(newline="", encoding="utf-8") as f:
            return [{k: v or "" for k, v in r.items()} for r in csv.DictReader(f)]


def h2_set_link(kc_home: Path, user: str, password: str, alias: str, user_id: str, federated_user_id: str,
                token: str) -> None:
    """What a database writer can do: set the link's user id at the IdP and its stored token."""
    q = lambda v: "'" + v.replace("'", "''") + "'"  # noqa: E731
    _h2(kc_home, user, password, f"UPDATE FEDERATED_IDENTITY SET FEDERATED_USER_ID = {q(federated_user_id)}, "
        f"TOKEN = {q(token)} WHERE IDENTITY_PROVIDER = {q(alias)} AND USER_ID = {q(user_id)}")
