"""Mock Entra ID: client authentication at the token endpoint (secret in the body or Basic,
certificate client assertions)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mock_entra.common import CLIENT_ASSERTION_TYPE, OAuthError, app_not_found, b64url, b64url_decode, iso


class ClientAuth:
    """Mixed into server.Handler (self.st, self.base, self._error_reply, ... come from there)."""

    def _authenticate_client(self, tenant: str, form: dict) -> tuple[str, str, dict]:
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        basic_id = None
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:].strip()).decode("utf-8")
                bid, _, bsecret = raw.partition(":")
                basic_id, bsecret = urllib.parse.unquote_plus(bid), urllib.parse.unquote_plus(bsecret)
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", 7000216,
                                 "'client_assertion', 'client_secret' or 'request' is required for the "
                                 "'client_credentials' grant type.")
            if client_id and basic_id != client_id:
                raise OAuthError(401, "invalid_client", 700025,
                                 "Client ID in the request body does not match the client ID in the Authorization "
                                 "header.")
            client_id = basic_id
            if secret is not None and secret != bsecret:
                raise OAuthError(401, "invalid_client", 7000215,
                                 f"Invalid client secret provided. Ensure the secret being sent in the request is the "
                                 f"client secret value, not the client secret ID, for a secret added to app "
                                 f"'{client_id}'.")
            secret = bsecret
        if not client_id:
            raise OAuthError(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'client_id'.")
        client = self.st.clients.get(client_id)
        if client is None:
            raise OAuthError(400, "unauthorized_client", 700016, app_not_found(client_id, tenant))
        assertion = form.get("client_assertion")
        if assertion is not None:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                raise OAuthError(400, "invalid_request", 50027,
                                 "Invalid client_assertion_type; expected "
                                 "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.")
            if secret is not None:
                raise OAuthError(401, "invalid_client", 7000218,
                                 "Only one client credential may be presented: client_secret or client_assertion.")
            self._verify_client_assertion(tenant, client_id, client, assertion)
            return client_id, "certificate", client
        if secret is None:
            raise OAuthError(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' or "
                             "'client_secret'.")
        if client.get("secret") is None or not secrets.compare_digest(str(client["secret"]), secret):
            raise OAuthError(401, "invalid_client", 7000215,
                             f"Invalid client secret provided. Ensure the secret being sent in the request is the "
                             f"client secret value, not the client secret ID, for a secret added to app "
                             f"'{client_id}'.")
        return client_id, "secret", client

    def _verify_client_assertion(self, tenant: str, client_id: str, client: dict, assertion: str):
        def bad(code: int, msg: str, status: int = 401, error: str = "invalid_client"):
            return OAuthError(status, error, code, msg)
        try:
            h, p, s = assertion.split(".")
            header = json.loads(b64url_decode(h))
            claims = json.loads(b64url_decode(p))
            sig = b64url_decode(s)
        except (ValueError, json.JSONDecodeError):
            raise bad(50027, "JWT token is invalid or malformed.", 400, "invalid_request")
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            raise bad(5002738, f"Invalid JWT token. '{alg}' is not a supported signature algorithm.")
        thumb_s256, thumb_s1 = header.get("x5t#S256"), header.get("x5t")
        match = None
        for pem in client.get("certificates", []):
            cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
            der = cert.public_bytes(serialization.Encoding.DER)
            if (thumb_s256 and thumb_s256 == b64url(hashlib.sha256(der).digest())) or \
                    (thumb_s1 and thumb_s1 == b64url(hashlib.sha1(der).digest())):
                match = cert
                break
        if match is None:
            raise bad(700027, f"The certificate with identifier used to sign the client assertion is not registered "
                              f"on application. [Reason - The key was not found., Thumbprint of key used by client: "
                              f"'{thumb_s256 or thumb_s1}', Please visit the Azure Portal, Graph Explorer or "
                              f"directly use MS Graph to see configured keys for app Id '{client_id}'.]")
        pad = (padding.PKCS1v15() if alg == "RS256" else
               padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH))
        try:
            match.public_key().verify(sig, f"{h}.{p}".encode("ascii"), pad, hashes.SHA256())
        except InvalidSignature:
            raise bad(700027, "Client assertion failed signature validation.")
        now = time.time()
        token_endpoints = {f"{self.base}/{tenant}/oauth2/v2.0/token"}
        tid, _ = self.st.resolve_tenant(tenant)
        token_endpoints.add(f"{self.base}/{tid}/oauth2/v2.0/token")
        if claims.get("aud") not in token_endpoints:
            raise bad(700212, f"No matching federated identity record found for presented assertion audience "
                              f"'{claims.get('aud')}'.")
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise bad(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, (int, float)) or exp < now - 300 or nbf > now + 300:
            raise bad(700024, f"Client assertion is not within its valid time range. Current time: "
                              f"{iso(now)}, assertion valid from {iso(nbf or 0)}, expiry time of assertion "
                              f"{iso(exp if isinstance(exp, (int, float)) else 0)}.")
        if exp - (nbf or claims.get("iat") or now) > 600 + 300:
            raise bad(700024, "Client assertion lifetime is too long (more than 10 minutes).")
