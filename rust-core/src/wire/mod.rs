//! Wire types (temporary skeleton of the move commit; documented in a later commit).
pub mod contract;
pub mod secret;
