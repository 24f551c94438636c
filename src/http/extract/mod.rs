//! What a handler takes from a request, checked: who calls (identity headers or a JWT,
//! then the rate limits), JSON bodies, query strings, and `If-Match` / `If-None-Match`.

pub mod auth;
pub mod json;
pub mod jwt;
pub mod preconditions;
pub mod query;
