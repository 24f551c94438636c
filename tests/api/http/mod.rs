//! The HTTP contract: every endpoint, header and status, checked against the committed
//! OpenAPI document, and Swagger UI in a real browser.

mod activity;
mod browser;
pub mod concurrency;
pub mod conformance;
mod filters;
mod idempotency;
mod instances;
mod issues;
mod jwt;
mod list_body;
mod openapi;
mod pagination;
mod rate_limits;
mod timeouts;
mod validation;
