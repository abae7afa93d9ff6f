"""Mock Entra ID: the RSA signing key set (sign, verify, JWKS, rotation); the JWT mechanics are
mock_common.jwts, shared with the mock Graph."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mock_common.jwts import b64url, b64url_decode, rsa_jwk_numbers, sign_rs256, verify_rs256


# ---------------------------------------------------------------------------------------------
# Signing key
# ---------------------------------------------------------------------------------------------

class SigningKey:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
                     .sign(self.key, hashes.SHA256()))
        der = self.cert.public_bytes(serialization.Encoding.DER)
        self.x5t = b64url(hashlib.sha1(der).digest())
        self.kid = self.x5t          # Entra's kid equals x5t for its signing keys
        self.x5c = base64.b64encode(der).decode("ascii")

    def jwk(self, issuer: str) -> dict:
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.x5t, **rsa_jwk_numbers(self.key.public_key()),
                "x5c": [self.x5c], "issuer": issuer}

    def sign(self, claims: dict, extra_header: dict | None = None) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5t": self.x5t, "kid": self.kid}
        if extra_header:
            header.update(extra_header)
        return sign_rs256(self.key, header, claims)

    def verify(self, jwt: str) -> dict | None:
        """Claims of a JWT this mock signed, or None."""
        try:
            h, p, s = jwt.split(".")
            header = json.loads(b64url_decode(h))
            if header.get("kid") != self.kid or header.get("alg") != "RS256":
                return None
            verify_rs256(self.key.public_key(), b64url_decode(s), f"{h}.{p}")
            return json.loads(b64url_decode(p))
        except (ValueError, InvalidSignature, json.JSONDecodeError):
            return None


class KeySet:
    """The tenant's signing keys: the first signs, all are published (rotation via /_mock/rotate_keys)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = [SigningKey()]

    def sign(self, claims: dict) -> str:
        with self.lock:
            current = self.keys[0]
        return current.sign(claims)

    def verify(self, jwt: str) -> dict | None:
        with self.lock:
            keys = list(self.keys)
        for k in keys:
            c = k.verify(jwt)
            if c is not None:
                return c
        return None

    def jwks(self, issuer: str) -> dict:
        with self.lock:
            return {"keys": [k.jwk(issuer) for k in self.keys]}

    def rotate(self, keep_old: bool = True) -> dict:
        new = SigningKey()
        with self.lock:
            self.keys = [new] + (self.keys[:1] if keep_old else [])
            return {"signing_kid": new.kid, "published_kids": [k.kid for k in self.keys]}
