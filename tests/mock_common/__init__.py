"""What the mock Entra ID (mock_entra) and the mock Graph (mock_graph) share: JWT/JWKS helpers
(jwts) and the loopback HTTP(S) server they run on (serving). Test infrastructure only."""
