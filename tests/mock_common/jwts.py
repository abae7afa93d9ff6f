"""JWT and JWKS helpers shared by the mocks and their tests: base64url, splitting a compact JWS,
RS256 signing and verification, RSA keys to and from JWK numbers. Test infrastructure only."""
from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def compact_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def claims(jwt: str) -> dict:
    """The payload of a compact JWT, unverified."""
    return json.loads(b64url_decode(jwt.split(".")[1]))


def sign_rs256(key: rsa.RSAPrivateKey, header: dict, claims: dict) -> str:
    signing_input = b64url(compact_json(header)) + "." + b64url(compact_json(claims))
    sig = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(sig)


def verify_rs256(key: rsa.RSAPublicKey, signature: bytes, signing_input: str) -> None:
    """Raises cryptography's InvalidSignature (or UnicodeEncodeError for a non-ASCII input) if bad."""
    key.verify(signature, signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())


def rsa_jwk_numbers(key: rsa.RSAPublicKey) -> dict:
    """The "n" and "e" members of the key's JWK."""
    pub = key.public_numbers()
    n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
    e = pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")
    return {"n": b64url(n), "e": b64url(e)}


def rsa_public_key(jwk: dict) -> rsa.RSAPublicKey:
    """The RSA public key of a JWK's "n" and "e" members."""
    return rsa.RSAPublicNumbers(int.from_bytes(b64url_decode(jwk["e"]), "big"),
                                int.from_bytes(b64url_decode(jwk["n"]), "big")).public_key()


def verify_with_jwks(jwt: str, jwks: dict) -> dict:
    """Verifies an RS256 JWT against a JWKS document (asserts, for tests); returns the claims."""
    h, p, s = jwt.split(".")
    header = json.loads(b64url_decode(h))
    assert header["alg"] == "RS256"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    verify_rs256(rsa_public_key(key), b64url_decode(s), f"{h}.{p}")   # raises if bad
    return json.loads(b64url_decode(p))
