//! When does this JWT say it expires? Reads the `exp` claim of an *unverified* JWT.
//!
//! The signature is not checked: the value is only used to decide when to refresh a token
//! we already hold, never to trust it. Never panics; anything unreadable gives `None`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::json::number_or_string;

/// Payloads larger than this are not decoded (a JWT in a header is far smaller).
const MAX_PAYLOAD_CHARS: usize = 64 * 1024;

const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `exp` claim (epoch seconds) of a compact JWS, when the token is one and has it.
pub fn exp(token: &str) -> Option<i64> {
    let mut parts = token.trim().split('.');
    let _header = parts.next()?;
    let payload = parts.next()?;
    let _signature = parts.next()?;
    if parts.next().is_some() || payload.is_empty() || payload.len() > MAX_PAYLOAD_CHARS {
        // Five parts is a JWE: its payload is encrypted and carries no readable `exp`.
        return None;
    }
    let bytes = URL_SAFE_LENIENT.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = number_or_string(claims.as_object()?.get("exp")?)?;
    (exp > 0).then_some(exp)
}

#[cfg(test)]
pub(crate) fn make_jwt(claims: &serde_json::Value) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        enc.encode(claims.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn exp_of_a_jwt_with_numeric_exp_is_returned() {
        assert_eq!(exp(&make_jwt(&json!({"sub":"u","exp":1764103600}))), Some(1764103600));
    }

    #[test]
    fn exp_given_as_string_is_returned() {
        assert_eq!(exp(&make_jwt(&json!({"exp":"1764103600"}))), Some(1764103600));
    }

    #[test]
    fn padded_payload_is_accepted() {
        let enc = base64::engine::general_purpose::URL_SAFE;
        let t = format!("e30.{}.sig", enc.encode(br#"{"exp":17}"#));
        assert_eq!(exp(&t), Some(17));
    }

    #[test]
    fn jwt_without_exp_gives_none() {
        assert_eq!(exp(&make_jwt(&json!({"sub":"u"}))), None);
    }

    #[test]
    fn opaque_token_gives_none() {
        assert_eq!(exp("EwBwA8l6BAAUbDba3x2OMJElkF7gJ4z"), None);
        assert_eq!(exp(""), None);
        assert_eq!(exp("a.b"), None);
        assert_eq!(exp("a.!!!.c"), None);
    }

    #[test]
    fn five_part_jwe_gives_none() {
        assert_eq!(exp("a.b.c.d.e"), None);
    }

    #[test]
    fn payload_that_is_not_an_object_gives_none() {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert_eq!(exp(&format!("e30.{}.s", enc.encode(b"[1,2]"))), None);
        assert_eq!(exp(&format!("e30.{}.s", enc.encode(b"not json"))), None);
    }

    proptest! {
        #[test]
        fn exp_never_panics_on_arbitrary_strings(s in ".*") {
            let _ = exp(&s);
        }

        #[test]
        fn exp_never_panics_on_dotted_base64ish_strings(s in "[A-Za-z0-9_=-]{0,40}\\.[A-Za-z0-9_=+/-]{0,80}\\.[A-Za-z0-9_-]{0,10}") {
            let _ = exp(&s);
        }
    }
}
