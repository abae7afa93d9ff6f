"""Mock Microsoft Entra ID (Azure AD v2.0 endpoints) for tests. Never shipped."""
