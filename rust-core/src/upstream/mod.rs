//! Layer 2: talking to the IdP's token endpoint.
//!
//! Owns: the HTTP transport (pooled clients, timeouts, body cap, extra CA roots, proxies:
//! `http`), the retry loop (`retry`), one grant POSTed with the retry policy and each answer
//! classified (`exchange`), building the grant's form and client authentication (`grant`),
//! and signed client assertions for `private_key_jwt` (`assertion`).
//!
//! May use: `pure`, `wire`. Never `flows` or above.

pub mod assertion;
pub mod exchange;
pub mod grant;
pub mod http;
pub mod retry;
