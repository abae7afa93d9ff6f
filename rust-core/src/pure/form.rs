//! How `application/x-www-form-urlencoded` is written and read (WHATWG URL, RFC 6749 App. B).

/// Encodes one name or value: ALPHA / DIGIT / `*-._` stay, space becomes `+`, every other
/// byte of the UTF-8 encoding becomes `%XX`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0x0f) as usize] as char);
            }
        }
    }
    out
}

/// Builds a body from pairs, in order.
pub fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Decodes one name or value: `+` is a space, `%XX` a byte. `None` for a malformed escape
/// or bytes that are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a whole body into pairs, in order; empty segments are skipped, a segment
/// without `=` is a name with an empty value. `None` when any part is malformed.
pub fn decode_pairs(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for seg in s.split('&').filter(|seg| !seg.is_empty()) {
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode("aZ09*-._"), "aZ09*-._");
        assert_eq!(encode("a b"), "a+b");
        assert_eq!(encode("a+b/c=d&e:f~"), "a%2Bb%2Fc%3Dd%26e%3Af%7E");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn decode_reverses_plus_and_percent() {
        assert_eq!(decode("a+b%2Fc%3d").as_deref(), Some("a b/c="));
    }

    #[test]
    fn decode_rejects_malformed_escapes() {
        assert_eq!(decode("%"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%FF"), None);
    }

    #[test]
    fn decode_pairs_keeps_order_and_handles_missing_values() {
        let p = decode_pairs("b=2&&a=1&flag").unwrap();
        assert_eq!(p, vec![("b".into(), "2".into()), ("a".into(), "1".into()), ("flag".into(), String::new())]);
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(s in ".*") {
            prop_assert_eq!(decode(&encode(&s)), Some(s));
        }

        #[test]
        fn decode_pairs_never_panics(s in ".*") {
            let _ = decode_pairs(&s);
        }
    }
}
