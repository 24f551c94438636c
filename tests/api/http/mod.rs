//! The HTTP contract: every endpoint, header and status, checked against the committed
//! OpenAPI document, CORS, and Swagger UI and a front end on another origin in a real
//! browser.

mod activity;
mod browser;
pub mod concurrency;
pub mod conformance;
mod cors;
mod filters;
mod idempotency;
mod instances;
mod issues;
mod jwt;
mod list_body;
mod openapi;
mod pagination;
mod rate_limits;
pub mod stream;
mod stream_browser;
mod timeouts;
mod validation;
pub mod webhooks;
