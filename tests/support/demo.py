"""Sets up the demo realm on a running Keycloak (used by `make run`): realm `demo`, app client
`demo-app`, and the IdP `entra` (type entra-oidc) pointing at the mock Entra ID."""
from __future__ import annotations

import argparse

from support.keycloak import KeycloakAdmin

TENANT = "11111111-1111-1111-1111-111111111111"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keycloak", default="http://localhost:8080")
    ap.add_argument("--mock", default="http://127.0.0.1:8099")
    args = ap.parse_args()
    admin = KeycloakAdmin(args.keycloak)
    admin.delete_realm("demo")
    admin.create_realm("demo")
    admin.create_client("demo", "demo-app", "demo-app-secret", "http://127.0.0.1:8765/callback",
                        attributes={"external.token.enabled": "true", "external.token.idp": "entra"})
    r = admin.create_idp("demo", "entra", "entra-oidc", {
        "entraTenant": TENANT, "entraAuthorityHost": args.mock,
        "clientId": "00000000-0000-0000-0000-0000000000c1", "clientSecret": "mock-secret-c1",
        "syncMode": "IMPORT"}, displayName="Microsoft Entra ID (mock)")
    if r.status_code != 201:
        raise SystemExit(f"creating the IdP failed: {r.status_code} {r.text}")


if __name__ == "__main__":
    main()
