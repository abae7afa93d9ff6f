//! Pure (temporary skeleton of the move commit; documented in a later commit).
pub mod classify;
pub mod form;
pub mod freshness;
pub mod jwt;
pub mod seal;
pub mod stored;
