//! Outside the API and its authentication: `/` and `/api` (an index of what is here), and
//! for orchestrators and monitoring:
//! `/healthz` (the process answers), `/readyz` (the database answers the request role and
//! has this binary's migrations) and `/metrics` (Prometheus).

use std::sync::Arc;

use poem::{Response, handler, http::StatusCode, web::Data};
use serde_json::json;

use crate::{
    db::{self, Database, migrate::latest_version},
    http::{error::ApiError, observe::Services},
};

/// `/` and `/api`: where to go from here.
#[handler]
pub fn index() -> Response {
    index_response()
}

pub fn index_response() -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "name": "tenantry",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "api": "/api/issues",
            "health": "/healthz",
            "ready": "/readyz",
            "metrics": "/metrics",
        }),
    )
}

#[handler]
pub fn healthz() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

#[handler]
pub async fn readyz(db: Data<&Database>) -> poem::Result<Response> {
    let expected = latest_version();
    let health = db::health::check(&db).await.map_err(ApiError::from)?;
    let found = health.schema_version;
    if found < expected {
        return Err(ApiError::NotReady(format!(
            "the database has migrations up to V{found}; this server needs V{expected}"
        ))
        .into());
    }
    if health.read_only {
        return Err(ApiError::NotReady(
            "the database is read-only (a standby, or default_transaction_read_only): writes would fail"
                .into(),
        )
        .into());
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"status": "ready", "schemaVersion": found, "expectedSchemaVersion": expected}),
    ))
}

#[handler]
pub fn metrics(
    services: Data<&Arc<Services>>,
    db: Data<&Database>,
    live: Data<&Arc<db::live::LiveActivity>>,
    webhooks: Data<&Arc<crate::webhooks::dispatch::Stats>>,
) -> Response {
    let in_flight = services.in_flight.load(std::sync::atomic::Ordering::Relaxed);
    let mut body = services.metrics.render(db.pool_status(), in_flight);
    crate::http::metrics::render_streams(&mut body, &live.stats());
    crate::http::metrics::render_webhooks(&mut body, &webhooks.snapshot());
    Response::builder().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder().status(status).content_type("application/json").body(format!("{body}\n"))
}
