//! Which strings are secret, and how they print: never.
//!
//! Token values and client secrets travel in these newtypes. Their `Debug` and `Display`
//! print `[redacted]`, so a `{:?}` of any struct holding them (the request, a prepared
//! HTTP request) cannot leak a value into a log line, a `diag` entry or a panic message.
//! The value is reached only through [`expose`](TokenValue::expose), which makes every
//! use visible in review.

use serde::Deserialize;

macro_rules! redacted_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value itself; use only where it goes to the wire or into the stored token.
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// True for the empty string (Java sends `""` for "not configured").
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[redacted]")
            }
        }
    };
}

redacted_string!(
    /// A token value (access, refresh or id token) or a whole stored-token string.
    TokenValue
);

redacted_string!(
    /// A client secret, or an `Authorization` header value derived from one.
    SecretValue
);

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-value-1234";

    #[test]
    fn debug_and_display_of_token_value_never_show_the_value() {
        let t = TokenValue::new(SAMPLE);
        assert!(!format!("{t:?}").contains(SAMPLE));
        assert!(!format!("{t}").contains(SAMPLE));
        assert_eq!(format!("{t:?}"), "[redacted]");
        assert_eq!(format!("{t}"), "[redacted]");
    }

    #[test]
    fn debug_and_display_of_secret_value_never_show_the_value() {
        let s = SecretValue::new("client-secret-sample-xyz");
        assert!(!format!("{s:?}").contains("client-secret-sample-xyz"));
        assert!(!format!("{s:#?}").contains("client-secret-sample-xyz"));
        assert!(!format!("{s}").contains("client-secret-sample-xyz"));
    }

    #[test]
    fn expose_returns_the_value() {
        assert_eq!(TokenValue::new(SAMPLE).expose(), SAMPLE);
    }
}
