#!/usr/bin/env python3
"""A private test CA and a `localhost` server certificate, for the mocks' HTTPS mode. Test
infrastructure only: it never ships.

    python3 tests/mock_entra/pki.py DIR          # prints the paths
    from mock_entra.pki import ensure_pki; p = ensure_pki(DIR); p.ca, p.cert, p.key

Writes into DIR (created if missing):
  ca.pem          the test CA certificate (what a client / Keycloak truststore trusts)
  ca-key.pem      the CA's private key (kept so the server certificate can be re-issued)
  server.pem      server certificate, SAN DNS:localhost + IP:127.0.0.1, signed by the CA
  server-key.pem  its private key (unencrypted PKCS#8)

Idempotent: existing files are kept while they are consistent (server certificate signed by
this CA, key matching) and valid for at least `min_remaining_days` more; otherwise what is
needed is regenerated. Concurrent callers serialize on DIR/.pki.lock. Only `cryptography`.
"""
from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE = "ca.pem", "ca-key.pem", "server.pem", "server-key.pem"
DNS_NAMES = ["localhost"]
IP_ADDRESSES = ["127.0.0.1"]


@dataclass(frozen=True)
class Pki:
    directory: str
    ca: str          # ca.pem
    ca_key: str      # ca-key.pem
    cert: str        # server.pem
    key: str         # server-key.pem
    generated: bool  # True when this call wrote anything


def _write(path: Path, data: bytes, private: bool):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load(path: Path):
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _valid_for(cert: x509.Certificate, days: float) -> bool:
    now = datetime.now(timezone.utc)
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now >= timedelta(days=days)


def _new_ca(validity_days: int):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mock Entra Test PKI"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Mock Entra Test CA")])
    now = datetime.now(timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _new_server(ca_cert: x509.Certificate, ca_key, validity_days: int):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(timezone.utc)
    not_after = min(now + timedelta(days=validity_days), ca_cert.not_valid_after_utc)
    san = x509.SubjectAlternativeName([x509.DNSName(d) for d in DNS_NAMES] +
                                      [x509.IPAddress(ipaddress.ip_address(a)) for a in IP_ADDRESSES])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(san, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _server_ok(cert_pem, key_pem, ca_cert, min_days) -> bool:
    if cert_pem is None or key_pem is None:
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                    cert.signature_hash_algorithm)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        return False
    if set(san.get_values_for_type(x509.DNSName)) != set(DNS_NAMES) or \
            {str(a) for a in san.get_values_for_type(x509.IPAddress)} != set(IP_ADDRESSES):
        return False
    return _valid_for(cert, min_days)


def ensure_pki(directory: str | os.PathLike, validity_days: int = 30, min_remaining_days: float = 1.0) -> Pki:
    """Creates (or keeps) the test CA and server certificate in `directory`; returns the paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {n: d / n for n in (CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE)}
    generated = False
    with open(d / ".pki.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ca_cert = ca_key = None
            ca_pem, ca_key_pem = _load(paths[CA_FILE]), _load(paths[CA_KEY_FILE])
            if ca_pem and ca_key_pem:
                try:
                    ca_cert = x509.load_pem_x509_certificate(ca_pem)
                    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
                    if (ca_key.public_key().public_numbers() != ca_cert.public_key().public_numbers() or
                            not _valid_for(ca_cert, min_remaining_days)):
                        ca_cert = ca_key = None
                except (ValueError, TypeError):
                    ca_cert = ca_key = None
            if ca_cert is None:
                ca_cert, ca_key = _new_ca(validity_days)
                _write(paths[CA_KEY_FILE], _key_pem(ca_key), private=True)
                _write(paths[CA_FILE], ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
                generated = True
            if generated or not _server_ok(_load(paths[CERT_FILE]), _load(paths[KEY_FILE]), ca_cert,
                                           min_remaining_days):
                cert, key = _new_server(ca_cert, ca_key, validity_days)
                _write(paths[KEY_FILE], _key_pem(key), private=True)
                _write(paths[CERT_FILE], cert.public_bytes(serialization.Encoding.PEM), private=False)
                generated = True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return Pki(str(d), str(paths[CA_FILE]), str(paths[CA_KEY_FILE]), str(paths[CERT_FILE]), str(paths[KEY_FILE]),
               generated)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Generate a private test CA and a localhost server certificate.")
    ap.add_argument("directory")
    ap.add_argument("--days", type=int, default=30, help="validity in days (default 30)")
    args = ap.parse_args(argv)
    p = ensure_pki(args.directory, validity_days=args.days)
    print(f"ca={p.ca} cert={p.cert} key={p.key} generated={str(p.generated).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
