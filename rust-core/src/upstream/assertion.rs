//! Client authentication with a certificate (`private_key_jwt`, RFC 7523 / Entra
//! certificate credentials): a signed JWT assertion per request.
//!
//! Header `{"alg": "PS256" | "RS256", "typ": "JWT", "x5t#S256" | "x5t": <thumbprint>}`
//! (PS256 with `x5t#S256` = base64url(SHA-256(cert DER)), RS256 with `x5t` =
//! base64url(SHA-1(cert DER))); claims `aud` = token URL, `iss` = `sub` = client id,
//! `jti` = 128 random bits (base64url), `nbf` = `iat` = now, `exp` = now + lifetime
//! (at most 600 s). Key material never reaches `Debug`, `diag` or an error text.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::wire::AssertionConfig;

/// A parsed key and certificate, ready to sign assertions.
pub struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    /// base64url thumbprint for the header (`x5t#S256` for PS256, `x5t` for RS256).
    thumbprint: String,
    lifetime_s: i64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg).field("lifetime_s", &self.lifetime_s).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// The DER of the first `CERTIFICATE` block, checked to be an X.509 certificate.
pub fn cert_der(cert_pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::{PemObject as _, SectionKind};
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(cert_pem.as_bytes()) {
        match item {
            Ok((SectionKind::Certificate, der)) => {
                // Only the DER bytes matter (their hash is the x5t thumbprint the IdP looks the
                // certificate up by). X.509 v1 certificates, such as Keycloak's generated realm
                // certificates, are accepted by Entra, so no path-building parser is used here.
                return if is_der_sequence(&der) {
                    Ok(der)
                } else {
                    Err("the client certificate (cert_pem) is not a valid X.509 certificate".into())
                };
            }
            Ok(_) => {}
            Err(_) => return Err("the client certificate (cert_pem) is not valid PEM".into()),
        }
    }
    Err("the client certificate (cert_pem) holds no PEM certificate".into())
}

/// A DER SEQUENCE whose (definite) length covers exactly the input, as every X.509 certificate is.
fn is_der_sequence(der: &[u8]) -> bool {
    if der.len() < 2 || der[0] != 0x30 {
        return false;
    }
    let (len, header) = match der[1] {
        n if n < 0x80 => (n as usize, 2usize),
        0x81..=0x84 => {
            let k = (der[1] & 0x7f) as usize;
            if der.len() < 2 + k {
                return false;
            }
            (der[2..2 + k].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), 2 + k)
        }
        _ => return false,
    };
    header.checked_add(len) == Some(der.len()) && len > 64
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    /// Parses and checks key and certificate (one test signature), so a broken
    /// configuration is found before any network call. The error names the problem only.
    pub fn new(cfg: &AssertionConfig) -> Result<Signer, String> {
        use sha1::Digest as _;
        let alg = match cfg.alg.as_deref().map(str::trim).unwrap_or("") {
            "" | "PS256" => Algorithm::PS256,
            "RS256" => Algorithm::RS256,
            other => {
                let shown: String = other.chars().take(16).collect();
                return Err(format!("the assertion algorithm '{shown}' is not supported (use PS256 or RS256)"));
            }
        };
        let der = cert_der(&cfg.cert_pem)?;
        let thumbprint = match alg {
            Algorithm::RS256 => b64url(&sha1::Sha1::digest(&der)),
            _ => b64url(&sha2::Sha256::digest(&der)),
        };
        // jsonwebtoken's errors never quote the key, but ours say only what is wrong.
        let bad_key = || "the client key (key_pem) is not an RSA private key in PEM (PKCS#8 or PKCS#1)".to_string();
        let key = EncodingKey::from_rsa_pem(cfg.key_pem.expose().as_bytes()).map_err(|_| bad_key())?;
        jsonwebtoken::crypto::sign(b"probe", &key, alg).map_err(|_| bad_key())?;
        Ok(Signer { key, alg, thumbprint, lifetime_s: cfg.lifetime_s() })
    }

    /// A fresh assertion for `client_id` at `token_url`, valid from now.
    pub fn sign(&self, client_id: &str, token_url: &str) -> Result<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.sign_at(client_id, token_url, now)
    }

    pub fn sign_at(&self, client_id: &str, token_url: &str, now: i64) -> Result<String, String> {
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti).map_err(|_| "no randomness for the assertion jti".to_string())?;
        let mut header = Header::new(self.alg);
        header.typ = Some("JWT".into());
        match self.alg {
            Algorithm::RS256 => header.x5t = Some(self.thumbprint.clone()),
            _ => header.x5t_s256 = Some(self.thumbprint.clone()),
        }
        let claims = Claims {
            aud: token_url,
            iss: client_id,
            sub: client_id,
            jti: b64url(&jti),
            nbf: now,
            iat: now,
            exp: now.saturating_add(self.lifetime_s),
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| "the client assertion cannot be signed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SecretValue;
    use proptest::prelude::*;

    #[test]
    fn lifetime_defaults_and_is_capped() {
        let mut c =
            AssertionConfig { key_pem: SecretValue::default(), cert_pem: String::new(), alg: None, lifetime_s: None };
        assert_eq!(c.lifetime_s(), 300);
        c.lifetime_s = Some(0);
        assert_eq!(c.lifetime_s(), 300);
        c.lifetime_s = Some(5000);
        assert_eq!(c.lifetime_s(), 600);
        c.lifetime_s = Some(60);
        assert_eq!(c.lifetime_s(), 60);
    }

    #[test]
    fn garbage_key_cert_or_alg_is_refused_without_quoting_them() {
        let cfg = |key: &str, cert: &str, alg: Option<&str>| AssertionConfig {
            key_pem: SecretValue::new(key),
            cert_pem: cert.into(),
            alg: alg.map(Into::into),
            lifetime_s: None,
        };
        let cert = include_str!("../../tests/fixtures/client.cert.pem");
        let key = include_str!("../../tests/fixtures/client.key.pkcs8.pem");
        for (c, words) in [
            (cfg("KEY-SAMPLE-garbage", cert, None), "key_pem"),
            (cfg("-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n", cert, None), "key_pem"),
            (cfg(key, "nope", None), "cert_pem"),
            (cfg(key, "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n", None), "cert_pem"),
            (cfg(key, cert, Some("HS256")), "HS256"),
        ] {
            let e = Signer::new(&c).unwrap_err();
            assert!(e.contains(words), "{e}");
            assert!(!e.contains("KEY-SAMPLE") && !e.contains("QUJD"), "{e}");
        }
        let ok = Signer::new(&cfg(key, cert, None)).unwrap();
        assert!(!format!("{ok:?} {:?}", cfg(key, cert, None)).contains("PRIVATE"));
    }

    proptest! {
        #[test]
        fn signer_new_never_panics_on_garbage(key in ".{0,200}", cert in ".{0,200}", alg in proptest::option::of(".{0,8}")) {
            let framed_key = format!("-----BEGIN RSA PRIVATE KEY-----\n{key}\n-----END RSA PRIVATE KEY-----\n");
            let framed_cert = format!("-----BEGIN CERTIFICATE-----\n{cert}\n-----END CERTIFICATE-----\n");
            for (k, c) in [(key.clone(), cert.clone()), (framed_key, framed_cert)] {
                let _ = Signer::new(&AssertionConfig { key_pem: SecretValue::new(k), cert_pem: c, alg: alg.clone(), lifetime_s: None });
            }
        }
    }
}
