"""The test side of the mock Entra ID's /_mock control API (mock_entra/control.py), shared by
the e2e and cluster fixtures."""
from __future__ import annotations

import requests


class MockEntra:
    """Test-side client of one mock Entra ID's /_mock control API."""

    def __init__(self, server):
        self.server = server
        self.base_url = server.base_url

    def config(self, **settings):
        r = requests.post(f"{self.base_url}/_mock/config", json=settings, timeout=10)
        r.raise_for_status()
        return r.json()

    def reset(self):
        requests.post(f"{self.base_url}/_mock/reset", timeout=10).raise_for_status()

    def stats(self) -> dict:
        return requests.get(f"{self.base_url}/_mock/stats", timeout=10).json()

    def issued(self) -> dict:
        return requests.get(f"{self.base_url}/_mock/issued", timeout=10).json()

    def release(self) -> int:
        return requests.post(f"{self.base_url}/_mock/release", timeout=10).json()["released"]

    def grant_count(self, grant: str) -> int:
        """Token requests of that grant type the mock has counted (stats by_grant)."""
        return int(self.stats()["by_grant"].get(grant, 0))

    def refresh_count(self) -> int:
        return self.grant_count("refresh_token")

    refreshes = refresh_count

    def refresh_outcomes(self) -> dict:
        return self.stats()["by_grant_outcome"].get("refresh_token", {})
