//! Rust core of the fresh-token Keycloak extension.
//!
//! Java calls [`call`] (through [`jni_bridge`]) with one JSON request and gets one JSON
//! envelope back; `docs/CONTRACT.md` is the contract. Everything but `jni_bridge` is plain
//! Rust and testable without a JVM.
//!
//! Layers, each a folder whose `mod.rs` says what it owns and what it may use; arrows only
//! point down (checked by `tests/layers.rs`):
//!
//! ```text
//! jni_bridge   the JNI edge: three native methods, panics caught, no payload to Java
//!   dispatch   the one dispatcher: parse, check the contract version once, route each op
//!     flows    own token, per-resource, on-behalf-of, app-only, inspect, storage
//!       upstream   HTTP transport, retry, the grant at the token endpoint, client assertions
//!         pure     stored token, JWT, freshness, error classification, merge, sealing
//!           wire   the contract's request and answer types (imports nothing of ours)
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dispatch;
pub mod flows;
pub mod jni_bridge;
pub mod pure;
pub mod upstream;
pub mod wire;

pub use dispatch::{call, null_request_answer, version};
