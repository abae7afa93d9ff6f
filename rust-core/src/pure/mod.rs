//! Layer 1: pure logic, no network and no process state.
//!
//! Owns: reading the stored token (`stored`, with the loosely typed field readers of `json`,
//! `form` and the JWT `exp` of `jwt`), the freshness decision (`freshness`), the refresh merge
//! with the keep-the-old-refresh-token rule and the app's view (`merge`), the per-resource /
//! on-behalf-of entries kept in the stored token (`entries`), what an HTTP answer means
//! (`response` as data, `classify` into the closed code set), and encryption at rest
//! (`keyring`: the keys; `seal`: sealing and opening one value).
//!
//! May use: `wire`. Never `upstream` or above.

pub mod classify;
pub mod entries;
pub mod form;
pub mod fresh_view;
pub mod freshness;
pub mod json;
pub mod jwt;
pub mod keyring;
pub mod merge;
pub mod response;
pub mod seal;
pub mod stored;
