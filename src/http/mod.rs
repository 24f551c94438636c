//! The HTTP surface, along the request path: [`connections`] accepts, [`observe`] wraps
//! every request (id, deadline, metrics, logs, [`cors`]), [`extract`] reads who calls and what they
//! send, [`api`] has the handlers, [`error`] turns every failure into a problem. The
//! route table ([`routes`]) is made once from the handlers and given to what needs it;
//! [`spec`] shapes the served OpenAPI document and is imported here only.

pub mod api;
pub mod connections;
pub mod cors;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod observe;
pub mod rate_limit;
pub mod routes;
mod spec;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, IntoResponse, Route, get, handler, web::WithContentType};

use crate::{config::AuthMode, db::Database};
use extract::preconditions::EntityTags;
pub use observe::Services;

/// The whole application: `/api/...`, `/openapi.json`, `/docs`, `/healthz`, `/readyz`,
/// `/metrics`, all inside [`observe::Observe`].
pub fn routes(db: Database, services: Arc<Services>, tags: EntityTags, mode: AuthMode) -> impl Endpoint {
    let document = spec::document_for(mode);
    let swagger = spec::swagger_ui_html(mode);
    let table = services.routes.clone();

    // `/api` itself is the index, answered before the operations see it (the nest owns
    // that path too).
    let operations = api::service().around(|operations, request| async move {
        if request.uri().path() == "/api" {
            return match *request.method() {
                poem::http::Method::GET | poem::http::Method::HEAD => Ok(api::ops::index_response()),
                _ => Err(error::ApiError::MethodNotAllowed(
                    "this method is not allowed on this resource".into(),
                )
                .into()),
            };
        }
        operations.call(request).await.map(IntoResponse::into_response)
    });
    let app = Route::new()
        .at("/", get(api::ops::index))
        .nest_no_strip("/api", operations)
        .at("/openapi.json", get(serve_text.data(StaticBody(document.into(), "application/json"))))
        .at("/docs", get(serve_text.data(StaticBody(swagger.into(), "text/html; charset=utf-8"))))
        .at("/healthz", get(api::ops::healthz))
        .at("/readyz", get(api::ops::readyz))
        .at("/metrics", get(api::ops::metrics))
        .data(db)
        .data(tags)
        .data(services.clone())
        .catch_all_error(move |err| {
            let table = table.clone();
            async move {
                error::render(err, &|operation, index| {
                    table.path_parameter(operation, index).map(str::to_owned)
                })
            }
        });
    observe::Observe { inner: app, services }
}

/// The OpenAPI document the binary serves in AUTH_MODE=headers (`tenantry openapi`, and
/// openapi/openapi.json).
pub fn openapi_document() -> String {
    spec::document()
}

#[derive(Clone)]
struct StaticBody(Arc<str>, &'static str);

#[handler]
fn serve_text(body: poem::web::Data<&StaticBody>) -> WithContentType<String> {
    body.0.0.to_string().with_content_type(body.0.1)
}
