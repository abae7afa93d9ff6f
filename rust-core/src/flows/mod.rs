//! Layer 3: the flows, one per kind of token the app can ask for, plus storage.
//!
//! Owns: the refresh flow written once (`refresh::obtain`: run the grant for a target and map
//! how it ended to fresh / serve-the-stored-still-valid / fail / retry-later), which every flow
//! below uses; the IdP's own token (`own_token`), a token per resource (`resource`), on-behalf-of /
//! token exchange (`obo`), app-only tokens with their process cache and single-flight (`app`),
//! the admin's status of a stored token (`inspect`), and the storage flow of encryption at rest
//! (`storage`: open before, seal after, the keyring and the seal / unseal conversions).
//!
//! May use: `upstream`, `pure`, `wire`. Never `dispatch` or `jni_bridge`. A helper two flows
//! share lives in a lower layer, not here. Arrows between flows: every token flow uses
//! `refresh`; `obo` builds on `resource::ensure` (the user's token for the middle tier is a
//! per-resource token). No cycle (`tests/layers.rs`).

pub mod app;
pub mod fresh;
pub mod inspect;
pub mod obo;
pub mod own_token;
pub mod refresh;
pub mod resource;
pub mod storage;
