"""Signs the demo user in at Keycloak through the `entra` IdP (no browser needed: the mock
Entra ID signs the user in without a form) and prints the user's Keycloak access token."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.keycloak import browser_login  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keycloak", default="http://localhost:8080")
    ap.add_argument("--user", default=None, help="login_hint for the mock, e.g. alice@contoso.onmicrosoft.com")
    args = ap.parse_args()
    login = browser_login(args.keycloak, "demo", "entra", "demo-app", "demo-app-secret",
                          login_hint=args.user, redirect_uri="http://127.0.0.1:8765/callback")
    print(login.access_token)


if __name__ == "__main__":
    main()
