//! The HTTP surface: routes, middleware, and the pieces they are made of.

pub mod activity;
pub mod auth;
pub mod connections;
pub mod error;
pub mod examples;
pub mod issues;
pub mod json;
pub mod jwt;
pub mod metrics;
pub mod observe;
pub mod openapi;
mod ops;
pub mod preconditions;
pub mod query;
pub mod rate_limit;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, IntoResponse, Route, get, handler, web::WithContentType};

use crate::{config::AuthMode, db::Database};
pub use observe::Services;
use preconditions::EntityTags;

/// The whole application: `/api/...`, `/openapi.json`, `/docs`, `/healthz`, `/readyz`,
/// `/metrics`, all inside [`observe::Observe`].
pub fn routes(db: Database, services: Arc<Services>, tags: EntityTags, mode: AuthMode) -> impl Endpoint {
    let document = openapi::document_for(mode);
    let swagger = openapi::swagger_ui_html(mode);

    let app = Route::new()
        .nest("/", openapi::service())
        .at("/openapi.json", get(serve_text.data(StaticBody(document.into(), "application/json"))))
        .at("/docs", get(serve_text.data(StaticBody(swagger.into(), "text/html; charset=utf-8"))))
        .at("/healthz", get(ops::healthz))
        .at("/readyz", get(ops::readyz))
        .at("/metrics", get(ops::metrics))
        .data(db)
        .data(tags)
        .catch_all_error(|err| async move { error::render(err) });
    observe::Observe { inner: app, services }
}

#[derive(Clone)]
struct StaticBody(Arc<str>, &'static str);

#[handler]
fn serve_text(body: poem::web::Data<&StaticBody>) -> WithContentType<String> {
    body.0.0.to_string().with_content_type(body.0.1)
}
