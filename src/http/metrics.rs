//! Prometheus metrics at `/metrics`, in the text exposition format, written by hand.
//!
//! Why not a crate: the label sets are known at start-up (the document's operations plus
//! a few fixed routes, times the HTTP status codes), so every series is a slot in a
//! fixed array of atomics: recording a request is three relaxed `fetch_add`s, with no
//! lock, no map lookup by label and no allocation, and a label can never explode in
//! cardinality (unknown paths count as `other`). The `prometheus` and `metrics` crates
//! keep label sets in locked maps and bring dependencies for a format that is 60 lines.

use std::{
    fmt::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use deadpool_postgres::Status;

use super::routes::RouteTable;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Routes that are not API operations, by exact path (all GET, and so HEAD).
pub const FIXED_ROUTES: [&str; 7] =
    ["/", "/api", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"];
/// Status codes 100-599, one slot each.
const STATUSES: usize = 500;

struct Route {
    method: String,
    path: String,
    /// Requests by status code - 100.
    statuses: Box<[AtomicU64]>,
    /// Requests per latency bucket (not cumulative; summed when written), then +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    micros: AtomicU64,
}

impl Route {
    fn new(method: &str, path: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            statuses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            micros: AtomicU64::new(0),
        }
    }
}

/// Which route a request counts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteIndex(usize);

pub struct Metrics {
    /// The API operations in document order, then [`FIXED_ROUTES`], then OPTIONS on each
    /// of their paths (CORS preflights, and OPTIONS that is not one), then `other`.
    routes: Vec<Route>,
    /// The paths of the OPTIONS routes, in their order: each distinct path template, then
    /// the fixed routes.
    options_paths: Vec<String>,
    /// The API operations (their order is that of the first routes).
    table: Arc<RouteTable>,
    rate_limited: [AtomicU64; 2],
    /// `GET /api/issues/{id}` with `If-None-Match`: answered 200, answered 304.
    revalidations: [AtomicU64; 2],
}

impl Metrics {
    pub fn new(table: Arc<RouteTable>) -> Metrics {
        let operations = table.operations();
        let mut routes: Vec<Route> =
            operations.iter().map(|op| Route::new(op.method.as_str(), &op.path)).collect();
        routes.extend(FIXED_ROUTES.iter().map(|path| Route::new("GET", path)));
        let mut options_paths: Vec<String> = Vec::new();
        for path in operations.iter().map(|op| op.path.as_str()).chain(FIXED_ROUTES) {
            if !options_paths.iter().any(|known| known == path) {
                options_paths.push(path.to_owned());
            }
        }
        routes.extend(options_paths.iter().map(|path| Route::new("OPTIONS", path)));
        routes.push(Route::new("", "other"));
        Metrics {
            routes,
            options_paths,
            table,
            rate_limited: [AtomicU64::new(0), AtomicU64::new(0)],
            revalidations: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The route of an API operation, or else of the operation whose method and path
    /// template match, or OPTIONS on a known path, or of a fixed path, or `other`.
    pub fn route(&self, operation_id: Option<&str>, method: &poem::http::Method, path: &str) -> RouteIndex {
        let operations = self.table.operations();
        let position = |id: &str| operations.iter().position(|op| op.id == id);
        if let Some(index) = operation_id.and_then(position) {
            return RouteIndex(index);
        }
        if method == poem::http::Method::OPTIONS {
            let template = self.table.template_of(path).unwrap_or(path);
            if let Some(index) = self.options_paths.iter().position(|known| known == template) {
                return RouteIndex(operations.len() + FIXED_ROUTES.len() + index);
            }
        }
        let matching = self.table.find(method, path).and_then(|op| position(op.id));
        if let Some(index) = matching {
            return RouteIndex(index);
        }
        match FIXED_ROUTES.iter().position(|fixed| *fixed == path) {
            Some(index) => RouteIndex(operations.len() + index),
            None => RouteIndex(self.routes.len() - 1),
        }
    }

    /// The path template of a route (`/api/issues/{id}`); `None` for `other`.
    pub fn template(&self, route: RouteIndex) -> Option<&str> {
        (route.0 + 1 < self.routes.len()).then(|| self.routes[route.0].path.as_str())
    }

    pub fn record(&self, route: RouteIndex, status: u16, latency: Duration) {
        let route = &self.routes[route.0];
        if let Some(slot) = usize::from(status).checked_sub(100).and_then(|i| route.statuses.get(i)) {
            slot.fetch_add(1, Relaxed);
        }
        let seconds = latency.as_secs_f64();
        let bucket = BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS.len());
        route.buckets[bucket].fetch_add(1, Relaxed);
        route.micros.fetch_add(latency.as_micros().try_into().unwrap_or(u64::MAX), Relaxed);
    }

    /// A cache revalidated its copy of an issue; `current`: the copy was current (304).
    pub fn count_revalidation(&self, current: bool) {
        self.revalidations[usize::from(current)].fetch_add(1, Relaxed);
    }

    pub fn count_rate_limited(&self, scope: &str) {
        self.rate_limited[usize::from(scope == "user")].fetch_add(1, Relaxed);
    }

    /// The exposition, with the pool's state read now.
    pub fn render(&self, status: Status, in_flight: u64) -> String {
        let mut out = String::with_capacity(8 * 1024);
        out.push_str(
            "# HELP tenantry_http_requests_total HTTP requests answered, by route and status.\n\
             # TYPE tenantry_http_requests_total counter\n",
        );
        for route in &self.routes {
            for (offset, count) in route.statuses.iter().enumerate() {
                let count = count.load(Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "tenantry_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {count}",
                        route.method,
                        route.path,
                        offset + 100
                    );
                }
            }
        }
        out.push_str(
            "# HELP tenantry_http_request_duration_seconds Time from request to response, by route.\n\
             # TYPE tenantry_http_request_duration_seconds histogram\n",
        );
        for route in &self.routes {
            let counts: Vec<u64> = route.buckets.iter().map(|b| b.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let labels = format!("method=\"{}\",route=\"{}\"", route.method, route.path);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "tenantry_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "tenantry_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            let sum = route.micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "tenantry_http_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "tenantry_http_request_duration_seconds_count{{{labels}}} {total}");
        }
        let _ = write!(
            out,
            "# HELP tenantry_http_requests_in_flight Requests being answered now.\n\
             # TYPE tenantry_http_requests_in_flight gauge\n\
             tenantry_http_requests_in_flight {in_flight}\n\
             # HELP tenantry_rate_limited_total Requests refused with 429, by the limit that refused them.\n\
             # TYPE tenantry_rate_limited_total counter\n\
             tenantry_rate_limited_total{{scope=\"organization\"}} {}\n\
             tenantry_rate_limited_total{{scope=\"user\"}} {}\n\
             # HELP tenantry_issue_revalidations_total GETs of an issue with If-None-Match, by answer.\n\
             # TYPE tenantry_issue_revalidations_total counter\n\
             tenantry_issue_revalidations_total{{answer=\"changed\"}} {}\n\
             tenantry_issue_revalidations_total{{answer=\"not_modified\"}} {}\n",
            self.rate_limited[0].load(Relaxed),
            self.rate_limited[1].load(Relaxed),
            self.revalidations[0].load(Relaxed),
            self.revalidations[1].load(Relaxed),
        );
        let in_use = status.size.saturating_sub(status.available);
        let _ = write!(
            out,
            "# HELP tenantry_db_pool_connections Request pool connections by state.\n\
             # TYPE tenantry_db_pool_connections gauge\n\
             tenantry_db_pool_connections{{state=\"in_use\"}} {in_use}\n\
             tenantry_db_pool_connections{{state=\"idle\"}} {}\n\
             # HELP tenantry_db_pool_waiting Requests waiting for a pooled connection.\n\
             # TYPE tenantry_db_pool_waiting gauge\n\
             tenantry_db_pool_waiting {}\n\
             # HELP tenantry_db_pool_max_connections The request pool's size.\n\
             # TYPE tenantry_db_pool_max_connections gauge\n\
             tenantry_db_pool_max_connections {}\n",
            status.available, status.waiting, status.max_size,
        );
        out
    }
}

/// The live activity streams' series (`db::live`): open streams and organizations, the
/// LISTEN connection, wake-ups and reads (one read per organization and wake-up, however
/// many streams it has), and why streams ended or were refused.
pub fn render_streams(out: &mut String, stats: &crate::db::live::LiveStats) {
    use crate::db::live::Ending;
    let _ = write!(
        out,
        "# HELP tenantry_sse_streams Live activity streams open now.\n\
         # TYPE tenantry_sse_streams gauge\n\
         tenantry_sse_streams {}\n\
         # HELP tenantry_sse_organizations Organizations with live activity streams open now (one reader each).\n\
         # TYPE tenantry_sse_organizations gauge\n\
         tenantry_sse_organizations {}\n\
         # HELP tenantry_sse_listening 1 while the LISTEN connection that wakes the streams is up (else they poll).\n\
         # TYPE tenantry_sse_listening gauge\n\
         tenantry_sse_listening {}\n\
         # HELP tenantry_sse_wakeups_total Notifications that woke an organization's reader.\n\
         # TYPE tenantry_sse_wakeups_total counter\n\
         tenantry_sse_wakeups_total {}\n\
         # HELP tenantry_sse_polls_total Times an organization's reader woke by the poll interval (no LISTEN connection).\n\
         # TYPE tenantry_sse_polls_total counter\n\
         tenantry_sse_polls_total {}\n\
         # HELP tenantry_sse_reads_total Reads of the activity log for streams: once per organization and wake-up (feed), or by one stream catching up.\n\
         # TYPE tenantry_sse_reads_total counter\n\
         tenantry_sse_reads_total{{kind=\"feed\"}} {}\n\
         tenantry_sse_reads_total{{kind=\"catch_up\"}} {}\n\
         # HELP tenantry_sse_events_total Events handed from the readers to streams.\n\
         # TYPE tenantry_sse_events_total counter\n\
         tenantry_sse_events_total {}\n\
         # HELP tenantry_sse_queued Events waiting in streams' queues for their clients (each at most STREAM_MAX_QUEUED).\n\
         # TYPE tenantry_sse_queued gauge\n\
         tenantry_sse_queued {}\n\
         # HELP tenantry_sse_queued_bytes Bytes of the events waiting in streams' queues (each at most STREAM_MAX_QUEUED_BYTES).\n\
         # TYPE tenantry_sse_queued_bytes gauge\n\
         tenantry_sse_queued_bytes {}\n\
         # HELP tenantry_sse_behind_total Streams whose client fell more than STREAM_MAX_QUEUED events (or STREAM_MAX_QUEUED_BYTES) behind (fed no more; they end).\n\
         # TYPE tenantry_sse_behind_total counter\n\
         tenantry_sse_behind_total {}\n\
         # HELP tenantry_sse_refused_total Streams refused at their limit, by limit.\n\
         # TYPE tenantry_sse_refused_total counter\n\
         tenantry_sse_refused_total{{limit=\"organization\"}} {}\n\
         tenantry_sse_refused_total{{limit=\"instance\"}} {}\n\
         # HELP tenantry_sse_ended_total Streams ended, by why.\n\
         # TYPE tenantry_sse_ended_total counter\n",
        stats.streams,
        stats.organizations,
        u8::from(stats.listening),
        stats.wakeups,
        stats.polls,
        stats.feed_reads,
        stats.catch_up_reads,
        stats.entries,
        stats.queued,
        stats.queued_bytes,
        stats.fell_behind,
        stats.refused[0],
        stats.refused[1],
    );
    for (ending, count) in Ending::ALL.iter().zip(stats.ended) {
        let _ = writeln!(out, "tenantry_sse_ended_total{{reason=\"{}\"}} {count}", ending.as_str());
    }
}

/// The webhook deliveries' series (`webhooks::dispatch`): attempts by outcome, deliveries
/// in flight, and how far behind the endpoints are (across every instance).
pub fn render_webhooks(out: &mut String, stats: &crate::webhooks::dispatch::StatsSnapshot) {
    use crate::webhooks::dispatch::Outcome;
    out.push_str(
        "# HELP tenantry_webhook_deliveries_total Webhook attempts this instance made, by outcome.\n\
         # TYPE tenantry_webhook_deliveries_total counter\n",
    );
    for (outcome, count) in Outcome::ALL.iter().zip(stats.outcomes) {
        let _ =
            writeln!(out, "tenantry_webhook_deliveries_total{{outcome=\"{}\"}} {count}", outcome.as_str());
    }
    let _ = write!(
        out,
        "# HELP tenantry_webhook_in_flight Webhook attempts this instance has under way.\n\
         # TYPE tenantry_webhook_in_flight gauge\n\
         tenantry_webhook_in_flight {}\n\
         # HELP tenantry_webhook_endpoints_behind Active webhook endpoints owed at least one event (all instances).\n\
         # TYPE tenantry_webhook_endpoints_behind gauge\n\
         tenantry_webhook_endpoints_behind {}\n\
         # HELP tenantry_webhook_oldest_undelivered_seconds Age of the oldest event an active endpoint is owed (0: none).\n\
         # TYPE tenantry_webhook_oldest_undelivered_seconds gauge\n\
         tenantry_webhook_oldest_undelivered_seconds {:.3}\n\
         # HELP tenantry_webhook_claim_errors_total Failed claims of due deliveries (the database unreachable).\n\
         # TYPE tenantry_webhook_claim_errors_total counter\n\
         tenantry_webhook_claim_errors_total {}\n",
        stats.in_flight, stats.owing, stats.oldest_seconds, stats.claim_errors,
    );
}
