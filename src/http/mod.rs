//! The HTTP surface: routes, middleware, and the pieces they are made of.

pub mod activity;
pub mod auth;
pub mod error;
pub mod issues;
pub mod json;
pub mod openapi;
pub mod query;

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler, web::WithContentType,
};
use poem_openapi::OperationId;

use crate::{db::Database, domain::rules::is_valid_id};

/// The whole application: `/api/...`, `/openapi.json`, `/docs`.
pub fn routes(db: Database) -> impl Endpoint {
    let document = openapi::document();
    let swagger = openapi::swagger_ui_html();

    Route::new()
        .nest("/", openapi::service())
        .at("/openapi.json", get(serve_text.data(StaticBody(document.into(), "application/json"))))
        .at("/docs", get(serve_text.data(StaticBody(swagger.into(), "text/html; charset=utf-8"))))
        .data(db)
        .catch_all_error(|err| async move { error::render(err) })
        .around(|next, request| async move { Ok(log_request(&*next, request).await) })
}

#[derive(Clone)]
struct StaticBody(Arc<str>, &'static str);

#[handler]
fn serve_text(body: poem::web::Data<&StaticBody>) -> WithContentType<String> {
    body.0.0.to_string().with_content_type(body.0.1)
}

/// One log line per request: method, route, status, latency, organization.
async fn log_request<E: Endpoint>(next: &E, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let organization = request
        .headers()
        .get(auth::ORGANIZATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_id(v))
        .map(str::to_owned);
    let response = match next.call(request).await {
        Ok(response) => response.into_response(),
        Err(err) => error::render(err),
    };
    // The path template, so the log shows `/api/issues/{id}` rather than every id.
    let route = response.data::<OperationId>().and_then(|id| openapi::operation_path(id.0)).unwrap_or(&path);
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        organization = organization.as_deref().unwrap_or("-"),
        "request"
    );
    response
}
