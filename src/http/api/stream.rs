//! `GET /api/activity/stream`: the organization's activity as Server-Sent Events, as it
//! commits, resumable with `Last-Event-ID` (or `?after=`) with no gap and no duplicate.
//!
//! The handler does everything that can be refused before the response starts (identity,
//! parameters, the first read, which checks the position in SQL, and the stream limits),
//! so a refusal is an ordinary problem+json. Then the body: an opening block (`retry:` and
//! the `id:` the stream starts after), the entries read so far, and from then on what the
//! stream's feed hands it (`db::live`), a `: keep-alive` comment after STREAM_HEARTBEAT_MS
//! without a write. It ends when the client goes away (its place is freed at once), falls
//! more than STREAM_MAX_QUEUED events behind, when its bearer token expires, or when the
//! server shuts down. No pooled connection is held while it waits.
//!
//! The request's log line and latency are written when the response starts (its headers),
//! like every other request's; `tenantry_sse_streams` counts the open ones.

use std::{
    io,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use poem::{Body, IntoResponse, Request, Response, web::Data};
use poem_openapi::{
    OpenApi,
    param::{Header, Query},
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry},
    types::Type,
};
use tokio::time::Instant;

use super::activity::ApiTags;
use crate::{
    db::{
        self, Database,
        live::{Ending, LiveActivity, LiveEntry, Next, PAGE, Refused, Subscription},
        stream::{Filters, Position},
    },
    domain::{Action, ActivityEntry},
    http::{
        error::{ApiError, ErrorStatuses, Failure, UNAUTHORIZED},
        extract::{
            auth::{Caller, credentials_expire},
            json::ListItem,
            query::{CheckedQuery, QuerySpec, ValueList},
        },
    },
};

pub struct StreamApi;

/// The query parameters of `GET /api/activity/stream`.
pub struct StreamParameters;
impl QuerySpec for StreamParameters {
    const PARAMETERS: &'static [&'static str] = &["after", "issueId", "action"];
    const LISTS: &'static [&'static str] = &["action"];
}

pub struct StreamErrors;
impl ErrorStatuses for StreamErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        (
            400,
            "An unknown query parameter, a parameter sent twice, an invalid value, or a \
             `Last-Event-ID` (or `after`) past the organization's last activity entry.",
        ),
        UNAUTHORIZED,
        (
            429,
            "The organization or the user is over its rate limit, or the organization already has \
             as many streams open on this instance as it may (`STREAM_MAX_PER_ORG`); retry after \
             `Retry-After` seconds.",
        ),
        (
            503,
            "The database cannot be reached, or this instance serves as many streams as it may \
             (`STREAM_MAX`) or is shutting down; retry after `Retry-After` seconds.",
        ),
    ];
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Activity")]
impl StreamApi {
    /// Live activity (Server-Sent Events)
    ///
    /// The organization's activity as it commits, one Server-Sent Event per entry:
    /// `id:` the entry's id, `event: activity`, `data:` the entry's JSON exactly as `GET
    /// /api/activity` shows it. Any role may read. Resume with `Last-Event-ID` (what
    /// `EventSource` sends when it reconnects) or `?after=<id>`, the header winning: every
    /// later entry comes first, then the stream goes on live, with no gap and no
    /// duplicate (ids are per organization and in commit order). Without either, the
    /// stream starts with what commits after the request. It opens with a block holding
    /// `retry:` and only the `id:` it starts after, so a client that reconnects before any
    /// event misses nothing; a `: keep-alive` comment follows every `STREAM_HEARTBEAT_MS`
    /// (15 s) without an event. The server ends a stream when the client falls more than
    /// `STREAM_MAX_QUEUED` events behind (reconnect with `Last-Event-ID`), when its bearer
    /// token expires, and when it shuts down.
    #[oai(path = "/activity/stream", method = "get", operation_id = "streamActivity")]
    #[allow(clippy::too_many_arguments)] // one argument per documented parameter
    async fn stream(
        &self,
        caller: Caller,
        _query: CheckedQuery<StreamParameters>,
        request: &Request,
        db: Data<&Database>,
        live: Data<&Arc<LiveActivity>>,
        /// The id of the last event received: the stream sends every later entry first.
        /// Wins over `after`.
        #[oai(name = "Last-Event-ID", validator(minimum(value = "0")))]
        last_event_id: Header<Option<i64>>,
        /// Start after this entry id (0: from the first entry), as `Last-Event-ID` does, for
        /// clients that cannot send headers.
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Only the entries of this issue.
        #[oai(name = "issueId", validator(minimum(value = "1")))]
        issue_id: Query<Option<i64>>,
        /// Only these actions: repeat the parameter or separate values with commas.
        action: Query<Option<ValueList<Action>>>,
    ) -> Result<ActivityStream, Failure<StreamErrors>> {
        let ctx = caller.0;
        let (start, field) = match (last_event_id.0, after.0) {
            (Some(id), _) => (Some(id), "Last-Event-ID"),
            (None, after) => (after, "after"),
        };
        let filters =
            Filters { issue_id: issue_id.0, actions: action.0.map(|list| list.0).unwrap_or_default() };
        // The first read checks the position (an id past the last is refused in SQL) and
        // sends what the client missed, up to a page; the stream reads the rest itself.
        let from = start.map(|id| Position { id, at: None });
        let first = db::stream::read(&db, &ctx, from, &filters, PAGE, db.page_max_bytes())
            .await
            .map_err(|err| position_error(err, field))?;
        let opened_after = start.unwrap_or(first.through.id);
        let subscription = live.subscribe(&ctx, filters, first.through).map_err(refused)?;
        // Open once the organization's changes wake this instance (at once unless this is
        // its first stream here): whatever commits after the opening block is announced.
        subscription.registered().await;
        let settings = live.settings();
        let mut opening = format!(
            ": tenantry live activity; the entries after {opened_after} follow\nretry: {}\nid: {opened_after}\n\n",
            settings.retry.as_millis()
        )
        .into_bytes();
        for entry in &first.entries {
            write_event(&mut opening, entry);
        }
        let expires = credentials_expire(request).map(instant_of);
        let body = Streaming {
            subscription,
            first: Some(Bytes::from(opening)),
            heartbeat: settings.heartbeat,
            expires,
            last_write: Instant::now(),
            done: false,
        };
        Ok(ActivityStream(Body::from_bytes_stream(futures::stream::unfold(body, Streaming::step))))
    }
}

/// A refused position names the parameter the client used.
fn position_error(err: db::Error, field: &str) -> ApiError {
    match err {
        db::Error::InvalidInput { column: Some(column), message } if column == "after_id" => {
            ApiError::invalid(field, message.strip_prefix("after_id ").unwrap_or(&message))
        }
        other => other.into(),
    }
}

fn refused(refusal: Refused) -> ApiError {
    match refusal {
        Refused::Organization => ApiError::TooManyStreams(
            "the organization has as many activity streams open on this instance as it may \
             (STREAM_MAX_PER_ORG): close one, or retry later"
                .into(),
        ),
        Refused::Instance => ApiError::Overloaded(
            "this instance serves as many activity streams as it may (STREAM_MAX), or is shutting \
             down: retry later, or on another instance"
                .into(),
        ),
    }
}

/// A time in seconds since the epoch, on tokio's clock.
fn instant_of(epoch_seconds: u64) -> Instant {
    let at = UNIX_EPOCH + Duration::from_secs(epoch_seconds);
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left
}

/// One event: `id`, `event: activity`, and the entry's JSON on one `data:` line (JSON
/// escapes every line break inside strings).
fn write_event(out: &mut Vec<u8>, entry: &ActivityEntry) {
    out.extend_from_slice(format!("id: {}\nevent: activity\ndata: ", entry.id).as_bytes());
    if entry.write_json(out).is_err() {
        // An entry is plain data (serde_json cannot fail on it); keep the stream well formed.
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// A shared entry's event, made once for every stream that sends it.
fn wire(entry: &LiveEntry) -> &Bytes {
    entry.wire.get_or_init(|| {
        let mut out = Vec::with_capacity(512);
        write_event(&mut out, &entry.entry);
        Bytes::from(out)
    })
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
const EXPIRED: &[u8] = b": the bearer token expired: reconnect with a new one and Last-Event-ID\n\n";
const SHUTTING_DOWN: &[u8] = b": the server is shutting down: reconnect with Last-Event-ID\n\n";
const FAILED: &[u8] = b": the stream failed: reconnect with Last-Event-ID\n\n";

/// The body of one stream, a chunk at a time.
struct Streaming {
    subscription: Subscription,
    first: Option<Bytes>,
    heartbeat: Duration,
    /// When the bearer token expires.
    expires: Option<Instant>,
    last_write: Instant,
    done: bool,
}

impl Streaming {
    /// Its bearer token has expired.
    fn expired(&self) -> bool {
        self.expires.is_some_and(|expires| Instant::now() >= expires)
    }

    async fn step(mut self) -> Option<(Result<Bytes, io::Error>, Streaming)> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            self.last_write = Instant::now();
            return Some((Ok(first), self));
        }
        loop {
            // Checked before each chunk, not only when the stream is idle: one still
            // catching up, or in a busy organization, always has entries to send.
            if self.expired() {
                self.subscription.ended(Ending::Expired);
                self.done = true;
                return Some((Ok(Bytes::from_static(EXPIRED)), self));
            }
            let beat = self.last_write + self.heartbeat;
            let until = self.expires.map_or(beat, |expires| expires.min(beat));
            let chunk = match self.subscription.next(until).await {
                Next::Entries(entries) => {
                    let mut out = Vec::with_capacity(entries.iter().map(|e| wire(e).len()).sum());
                    for entry in &entries {
                        out.extend_from_slice(wire(entry));
                    }
                    Bytes::from(out)
                }
                Next::Idle if Instant::now() >= beat && !self.expired() => Bytes::from_static(KEEP_ALIVE),
                Next::Idle => continue,
                // Whatever it had queued went out; nothing more can reach a client this far
                // behind. It resumes with Last-Event-ID.
                Next::Behind => return None,
                Next::Closed => {
                    self.done = true;
                    Bytes::from_static(SHUTTING_DOWN)
                }
                Next::Failed(err) => {
                    tracing::warn!(error = %err, "a live activity stream could not read; it ends");
                    self.done = true;
                    Bytes::from_static(FAILED)
                }
            };
            self.last_write = Instant::now();
            return Some((Ok(chunk), self));
        }
    }
}

/// 200: the event stream.
pub struct ActivityStream(Body);

impl IntoResponse for ActivityStream {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(EVENT_STREAM)
            // Proxies that buffer responses (nginx) would hold the events back.
            .header("X-Accel-Buffering", "no")
            .body(self.0)
    }
}

const EVENT_STREAM: &str = "text/event-stream";

impl poem_openapi::ApiResponse for ActivityStream {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The stream, `text/event-stream`, until the client or the server ends \
                    it. First a block with a comment, `retry:` and `id:` (the entry it starts \
                    after), no data; then one event per entry, oldest first: `id: <entry id>`, \
                    `event: activity`, `data: <the entry's JSON>` (an `ActivityEntry`, on one \
                    line), and a blank line; and a `: keep-alive` comment after each \
                    `STREAM_HEARTBEAT_MS` without an event. The schema describes the events' \
                    `data`, in order.",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: EVENT_STREAM,
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some("The `data` of each event, in order: one activity entry each."),
                        items: Some(Box::new(ActivityEntry::schema_ref())),
                        ..MetaSchema::new_with_format("array", "event-stream")
                    })),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        ActivityEntry::register(registry);
    }
}
