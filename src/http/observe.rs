//! What wraps every request: its id (`x-request-id`, taken or made, echoed), the request
//! deadline, metrics, the `RateLimit-*` headers, CORS (allowed preflights answered here,
//! before authentication; see [`super::cors`]), and the request's log lines: the one
//! line per request and, before it, the cause of a 500 or 503. Both carry the request id.
//!
//! Cheap on purpose: one `Arc` per request for the [`Admission`] the identity extractor
//! fills in, atomics for the metrics, no locks, and no tracing span (entered
//! and left on every poll, it cost more than the log line itself): the log lines are
//! written here, where the id is known.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime},
};

use futures::FutureExt;
use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
};
use poem_openapi::OperationId;

use super::{
    cors::{self, Cors, Verdict},
    error::{self, ApiError},
    extract::auth::{Admission, Gate},
    metrics::{self, Metrics},
    routes::RouteTable,
};
use crate::{db, telemetry, trace::RequestTrace};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATE_LIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// What lives as long as the server and every request may use.
pub struct Services {
    /// Authentication and rate limits, which the identity extractor applies.
    pub gate: Arc<Gate>,
    pub metrics: Metrics,
    pub routes: Arc<RouteTable>,
    /// CORS_ALLOWED_ORIGINS; `None`: no CORS headers at all.
    pub cors: Option<Cors>,
    /// A request without an answer by then gets 503.
    pub request_timeout: Option<Duration>,
    pub in_flight: AtomicU64,
}

/// The middleware: wraps the whole application.
pub struct Observe<E> {
    pub inner: E,
    pub services: Arc<Services>,
}

impl<E: Endpoint> Endpoint for Observe<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let services = &self.services;
        services.in_flight.fetch_add(1, Relaxed);
        let _in_flight = InFlight(&services.in_flight);

        let request_id = request_id(request.headers());
        let admission = Arc::new(Admission::default());
        request.extensions_mut().insert(admission.clone());
        request.extensions_mut().insert(services.gate.clone());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        // The caller's trace, when spans are exported (a malformed one is ignored).
        let parent = telemetry::enabled()
            .then(|| {
                let header = |name: &str| request.headers().get(name).map(HeaderValue::as_bytes);
                telemetry::remote_parent(header("traceparent"), header("tracestate"))
            })
            .flatten();
        let wall_start = telemetry::enabled().then(SystemTime::now);
        let conditional = request.headers().contains_key(header::IF_NONE_MATCH);
        let cors = services.cors.as_ref().map(|cors| (cors, cors.verdict(request.headers())));
        // An allowed preflight for a path with a route is answered here: before
        // authentication, rate limits and parameter checks (a browser sends it without
        // credentials). Any other OPTIONS goes on as it would without CORS.
        let preflight = match &cors {
            Some((_, Verdict::Allowed(_))) if cors::is_preflight(&method, request.headers()) => {
                methods_at(&services.routes, &path).map(|methods| cors::preflight_answer(&methods))
            }
            _ => None,
        };

        let trace = RequestTrace::new(request_id.to_str().unwrap_or("-"));
        // Told "client gone" if this future is dropped before it answers.
        let mut unanswered = Unanswered(Some(trace.clone()));
        let render = |err: poem::Error| {
            error::render(err, &|operation, index| {
                services.routes.path_parameter(operation, index).map(str::to_owned)
            })
        };
        let mut response = match preflight {
            Some(answer) => answer,
            None => {
                // A panic in a handler is a 500 for this request alone: the scoped
                // transaction never lets its connection back into the pool after one (see
                // db/scoped.rs).
                let call = AssertUnwindSafe(trace.clone().scope(self.inner.call(request))).catch_unwind();
                let outcome = match services.request_timeout {
                    Some(deadline) => tokio::time::timeout(deadline, call).await.map_err(|_| trace.clone()),
                    None => Ok(call.await),
                };
                match outcome {
                    Ok(Ok(Ok(response))) => response.into_response(),
                    Ok(Ok(Err(err))) => render(err),
                    Ok(Err(panic)) => {
                        let message = panic_message(&*panic);
                        render(ApiError::Internal(format!("a handler panicked: {message}").into()).into())
                    }
                    Err(trace) if trace.is_receiving_body() => {
                        trace.abandoned("request body too slow");
                        render(ApiError::RequestTimeout.into())
                    }
                    Err(trace) => {
                        trace.abandoned("timed out");
                        let late = db::Error::Unavailable("no answer within REQUEST_TIMEOUT_MS".into());
                        render(ApiError::Unavailable(late).into())
                    }
                }
            }
        };
        unanswered.0 = None;

        let headers = response.headers_mut();
        headers.insert(REQUEST_ID_HEADER, request_id.clone());
        if let Some(allowance) = admission.allowance.get() {
            headers.insert(RATE_LIMIT_LIMIT, allowance.limit.into());
            headers.insert(RATE_LIMIT_REMAINING, allowance.remaining.into());
            headers.insert(RATE_LIMIT_RESET, allowance.reset.into());
        }
        if path == "/api" || path.starts_with("/api/") {
            private_to_the_caller(&mut response);
        }
        // RFC 9110: a 405 says which methods the resource has.
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = methods_at(&services.routes, &path)
            && let Ok(allow) = HeaderValue::try_from(allow)
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        // After `Vary` got the identity headers: CORS appends `Origin` to them.
        if let Some((cors, verdict)) = &cors {
            cors.decorate(verdict, response.headers_mut());
        }
        // The database's share of the answer, for a browser's network panel.
        if let Some(database) = trace.database_time()
            && let Ok(timing) =
                HeaderValue::try_from(format!("db;dur={:.3}", database.as_secs_f64() * 1000.0))
        {
            response.headers_mut().append(SERVER_TIMING, timing);
        }
        if let Some(scope) = admission.refused_by.get() {
            services.metrics.count_rate_limited(scope);
        }

        let operation = response.data::<OperationId>().map(|id| id.0);
        if conditional && operation == Some(REVALIDATED_OPERATION) {
            services.metrics.count_revalidation(response.status() == StatusCode::NOT_MODIFIED);
        }
        // Without an operation (a time-out, a panic): the route its method and path match.
        let index = services.metrics.route(operation, &method, &path);
        let latency = started.elapsed();
        services.metrics.record(index, response.status().as_u16(), latency);
        let request_id = request_id.to_str().unwrap_or("-");
        // The path template, so the log shows `/api/issues/{id}` rather than every id.
        let route = services.metrics.template(index).unwrap_or(&path);
        match response.data::<error::Cause>() {
            Some(error::Cause::Unavailable(cause)) => {
                tracing::warn!(request_id, route, error = %cause, "database unavailable")
            }
            Some(error::Cause::Internal(cause)) => {
                tracing::error!(request_id, %method, route, error = %cause, "internal error")
            }
            None => {}
        }
        tracing::info!(
            request_id,
            %method,
            route,
            status = response.status().as_u16(),
            latency_ms = latency.as_secs_f64() * 1000.0,
            organization = admission.organization.get().map_or("-", String::as_str),
            "request"
        );
        if let Some(started) = wall_start {
            telemetry::export(telemetry::RequestSpan {
                parent,
                method: method.as_str(),
                route,
                status: response.status().as_u16(),
                organization: admission.organization.get().map(String::as_str),
                request_id,
                started,
                ended: started + latency,
                transactions: &trace.transactions(),
            });
        }
        Ok(response)
    }
}

/// The methods a path has (`Allow`, and a preflight's `Access-Control-Allow-Methods`):
/// its route's in the route table, GET and HEAD on a fixed route, `None` for no route.
fn methods_at(routes: &RouteTable, path: &str) -> Option<String> {
    routes
        .allowed_methods(path)
        .or_else(|| metrics::FIXED_ROUTES.contains(&path).then(|| "GET, HEAD".to_owned()))
}

/// Reports a request whose future was dropped before it answered: the client went away.
struct Unanswered(Option<Arc<RequestTrace>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(trace) = self.0.take() {
            trace.abandoned("client gone");
        }
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The one operation whose responses a cache may keep (and must revalidate): `GET
/// /api/issues/{id}`, with its tenant-keyed ETag.
const REVALIDATED_OPERATION: &str = "getIssue";
/// Every request header an `/api` response depends on, in both authentication modes.
const VARY_BY_CALLER: &str = "Authorization, x-organization-id, x-user-id, x-user-role";

/// Every `/api` response depends on who asks: no cache may hand it to anyone else.
/// Issues may be kept privately and revalidated (their ETags are per organization);
/// everything else, errors included, is never stored. `Vary` is appended to, never
/// replaced: another layer (CORS) may vary by more.
fn private_to_the_caller(response: &mut Response) {
    let revalidatable = response.data::<OperationId>().is_some_and(|id| id.0 == REVALIDATED_OPERATION)
        && matches!(response.status(), StatusCode::OK | StatusCode::NOT_MODIFIED);
    let headers = response.headers_mut();
    let cache_control = if revalidatable { "private, no-cache" } else { "no-store" };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    headers.append(header::VARY, HeaderValue::from_static(VARY_BY_CALLER));
}

/// The client's `x-request-id` when it is a sensible one (1-128 characters of
/// `A-Z a-z 0-9 - _ . : @ / + =`), else a new one: 128 random bits in hex. Random, not a
/// counter: a counter would let any caller count every other tenant's requests.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    let given = headers.get(REQUEST_ID_HEADER).filter(|value| {
        let bytes = value.as_bytes();
        (1..=128).contains(&bytes.len())
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:@/+=".contains(b))
    });
    if let Some(given) = given {
        return given.clone();
    }
    let mut bytes = [0u8; 16];
    // The OS's random source does not fail on Linux once booted; should it, the id is
    // still unique enough from the clock, and never a counter.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = (nanos.as_nanos() ^ u128::from(std::process::id()) << 96).to_le_bytes();
    }
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::try_from(id).expect("hex digits are a valid header value")
}
