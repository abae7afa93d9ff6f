//! Reading loosely typed JSON fields of IdP answers and stored tokens.

use serde_json::{Map, Value};

/// A number, or a string holding a number (`"3599"`, `" 3599 "`, `"3599.0"`), as i64.
/// Non-finite or out-of-range values give `None`.
pub fn number_or_string(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
        }
        _ => None,
    }
}

fn f64_to_i64(f: f64) -> Option<i64> {
    (f.is_finite() && f.abs() < 9.0e15).then(|| f.trunc() as i64)
}

/// A non-empty string field.
pub fn non_empty_str<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn number_or_string_accepts_numbers_numeric_strings_and_floats() {
        assert_eq!(number_or_string(&json!(3599)), Some(3599));
        assert_eq!(number_or_string(&json!("3599")), Some(3599));
        assert_eq!(number_or_string(&json!(" 42 ")), Some(42));
        assert_eq!(number_or_string(&json!(3599.9)), Some(3599));
        assert_eq!(number_or_string(&json!("1e3")), Some(1000));
        assert_eq!(number_or_string(&json!("abc")), None);
        assert_eq!(number_or_string(&json!("NaN")), None);
        assert_eq!(number_or_string(&json!(null)), None);
        assert_eq!(number_or_string(&json!(1e300)), None);
    }
}
