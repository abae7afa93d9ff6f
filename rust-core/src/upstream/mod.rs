//! Upstream (temporary skeleton of the move commit; documented in a later commit).
pub mod assertion;
pub mod grant;
pub mod http;
pub mod retry;
