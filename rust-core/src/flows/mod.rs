//! Flows (temporary skeleton of the move commit; documented in a later commit).
pub mod app;
pub mod inspect;
pub mod own_token;
pub mod resource;
