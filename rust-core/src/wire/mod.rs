//! Layer 0 (bottom): the wire types of `docs/CONTRACT.md`.
//!
//! Owns what crosses the Java <-> Rust boundary: the request (`contract`), the answer
//! envelopes and their builders (`answer`), the closed error-code set with each code's HTTP
//! status (`error_code`), and the secret wrappers that keep values out of `Debug` (`secret`).
//!
//! May use: nothing of ours (serde only). Every other layer may use it. Files of this layer
//! import each other through `super::<file>`, never through this `mod.rs`.

pub mod answer;
pub mod contract;
pub mod error_code;
pub mod secret;

pub use self::answer::{
    Action, Answer, ErrAnswer, InspectAnswer, OkAnswer, RedactedJson, RefreshFailure, TokenStatus, Upstream,
    err_answer, local_misconfiguration, refresh_due, with_upstream_ms,
};
pub use self::contract::{
    AssertionConfig, Binding, CONTRACT_VERSION, CORE_VERSION, IdpConfig, KeyringRequest, OboRequest, Op, Policy,
    Request, ResourceRequest, defaults, version_json,
};
pub use self::error_code::ErrorCode;
pub use self::secret::{SecretValue, TokenValue};
