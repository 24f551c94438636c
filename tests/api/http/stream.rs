//! `GET /api/activity/stream`: live activity as Server-Sent Events, read over real HTTP
//! with the body streamed. Resumption with no gap and no duplicate (under concurrent
//! writers and readers that keep reconnecting), the invariant it rests on, filters,
//! refusals before the stream starts, limits, heartbeats, and every way a stream ends:
//! the client goes away, falls too far behind, its token expires, the server stops.
//! Tests wait for events (a block of the stream, a metric), never for a time.

use std::{collections::HashMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::db::live::RENEW_EVERY;

use crate::{helpers::*, http::conformance};

pub const PATH: &str = "/api/activity/stream";
/// The longest a test waits for something it expects to happen.
const WAIT: Duration = Duration::from_secs(20);

/// One block of an event stream (an event, the opening block, or a comment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    pub id: Option<i64>,
    pub event: Option<String>,
    pub data: Option<Value>,
    pub retry: Option<u64>,
    pub comments: Vec<String>,
}

/// A stream being read, a block at a time.
pub struct Stream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

/// The request for a stream as `actor`: `query` is appended to the path as is.
pub async fn stream_request(
    app: &TestApp,
    actor: Option<&Actor>,
    query: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.get(format!("{}{PATH}{query}", app.address));
    if let Some(actor) = actor {
        request = request
            .header("x-organization-id", &actor.org)
            .header("x-user-id", &actor.user)
            .header("x-user-role", actor.role);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

impl Stream {
    /// Opens a stream and checks its response against the document; `last_event_id`
    /// becomes the `Last-Event-ID` header.
    pub async fn open(app: &TestApp, actor: &Actor, query: &str, last_event_id: Option<i64>) -> Stream {
        let id = last_event_id.map(|id| id.to_string());
        let response = stream_request(app, Some(actor), query, id.as_deref()).await;
        Stream::of(response)
    }

    pub fn of(response: reqwest::Response) -> Stream {
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "a stream opens");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/event-stream");
        let path = response.url().path().to_owned();
        if let Err(problems) = conformance::check_response(&Method::GET, &path, status, &headers, b"") {
            panic!("the stream's response does not match the document:\n  {}", problems.join("\n  "));
        }
        Stream { response, buffer: Vec::new() }
    }

    /// The next block, or `None` when the server ended the stream.
    pub async fn next_block(&mut self) -> Option<Block> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.buffer.drain(..end + 2).collect()).unwrap();
                return Some(parse_block(&text));
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("waited 20 s for the stream to send something")
                .expect("the stream's body reads");
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => {
                    assert!(self.buffer.is_empty(), "the stream ended inside a block: {:?}", self.buffer);
                    return None;
                }
            }
        }
    }

    /// The opening block: a comment, `retry:` and the `id:` the stream starts after, no data.
    pub async fn opening(&mut self) -> i64 {
        let block = self.next_block().await.expect("an opening block");
        assert!(block.data.is_none() && block.event.is_none(), "no data in the opening block: {block:?}");
        assert!(block.retry.is_some(), "the opening block says when to reconnect: {block:?}");
        assert_eq!(block.comments.len(), 1, "{block:?}");
        block.id.expect("the opening block has an id")
    }

    /// The next event (skipping comments), or `None` when the stream ended; fails when
    /// none came for 20 s (heartbeats do not count: they would wait forever).
    pub async fn next_event(&mut self) -> Option<Block> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let block = tokio::time::timeout_at(deadline, self.next_block())
                .await
                .expect("waited 20 s for an event")?;
            if block.data.is_some() {
                return Some(block);
            }
        }
    }

    /// The next `n` events, failing if the stream ends first.
    pub async fn events(&mut self, n: usize) -> Vec<Block> {
        let mut events = Vec::new();
        while events.len() < n {
            events.push(self.next_event().await.expect("the stream goes on"));
        }
        events
    }

    /// Reads until the stream ends; returns the blocks.
    pub async fn rest(&mut self) -> Vec<Block> {
        let mut blocks = Vec::new();
        while let Some(block) = self.next_block().await {
            blocks.push(block);
        }
        blocks
    }
}

fn parse_block(text: &str) -> Block {
    let mut block = Block::default();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(comment) = line.strip_prefix(':') {
            block.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(": ").unwrap_or_else(|| panic!("a field line: {line:?}"));
        match field {
            "id" => block.id = Some(value.parse().unwrap()),
            "event" => block.event = Some(value.to_owned()),
            "retry" => block.retry = Some(value.parse().unwrap()),
            "data" => {
                assert!(block.data.is_none(), "one data line per event: {text:?}");
                let data: Value = serde_json::from_str(value).unwrap();
                if let Err(problems) = conformance::check_event_data(PATH, &data) {
                    panic!("an event's data does not match the document:\n  {}", problems.join("\n  "));
                }
                block.data = Some(data);
            }
            other => panic!("an unknown field {other:?} in {text:?}"),
        }
    }
    if let Some(data) = &block.data {
        assert_eq!(block.event.as_deref(), Some("activity"), "{text:?}");
        assert_eq!(block.id, data["id"].as_i64(), "id: is the entry's id");
    }
    block
}

/// A stream on a raw TCP connection, open once its opening block arrived; dropping it
/// closes the connection without a word, as a client that vanishes does (reqwest keeps a
/// dropped body's connection open until it next reads). The server notices at its next
/// writes (hyper does not watch a connection for its end while a response is under way):
/// with a short STREAM_HEARTBEAT_MS, soon.
pub async fn raw_stream(app: &TestApp, actor: &Actor) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.strip_prefix("http://").unwrap();
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nhost: {address}\r\nx-organization-id: {}\r\nx-user-id: {}\r\n\
         x-user-role: {}\r\n\r\n",
        actor.org, actor.user, actor.role
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&received);
        if let Some(head_end) = text.find("\r\n\r\n") {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            if text[head_end + 4..].contains("\n\n") {
                return socket;
            }
        }
        let mut buffer = [0u8; 4096];
        let n =
            tokio::time::timeout(WAIT, socket.read(&mut buffer)).await.expect("the opening block").unwrap();
        assert!(n > 0, "the stream ended before its opening block: {text}");
        received.extend_from_slice(&buffer[..n]);
    }
}

/// The ids of some events.
pub fn event_ids(events: &[Block]) -> Vec<i64> {
    events.iter().map(|e| e.id.unwrap()).collect()
}

/// The organization's whole log as `GET /api/activity` shows it, oldest first.
pub async fn log_of(app: &TestApp, actor: &Actor) -> Vec<Value> {
    let mut entries: Vec<Value> =
        app.walk(actor, "/api/activity?limit=200").await.into_iter().flatten().collect();
    entries.reverse();
    entries
}

/// The value of one series of `/metrics` (its whole name with labels, as written).
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|line| line.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no series {series} in /metrics"));
    line[series.len() + 1..].parse().unwrap()
}

/// Waits until a series of `/metrics` reaches `value`.
pub async fn wait_for_metric(app: &TestApp, series: &str, value: f64) {
    wait_until(&format!("{series} = {value}"), || async { metric(app, series).await == value }).await;
}

/// Creates an issue and changes it `updates` times; returns its id.
async fn issue_with_updates(app: &TestApp, actor: &Actor, title: &str, updates: usize) -> i64 {
    let id = app.create_ok(actor, title).await["id"].as_i64().unwrap();
    for n in 0..updates {
        let status = ["IN_PROGRESS", "DONE", "OPEN"][n % 3];
        assert_eq!(app.patch(actor, id, json!({"status": status})).await.status(), StatusCode::OK);
    }
    id
}

#[tokio::test]
async fn each_change_is_an_event_with_the_entrys_id_and_exactly_the_feeds_json() {
    let app = spawn_app().await;
    let (ann, mo) = (admin("acme"), member("acme"));
    app.create_ok(&ann, "before the stream").await;

    // A MEMBER may read; without a position the stream starts after the last entry.
    let mut stream = Stream::open(&app, &mo, "", None).await;
    assert_eq!(stream.opening().await, 1, "opens after the organization's last entry");
    let id = app.create_ok(&ann, "while streaming").await["id"].as_i64().unwrap();
    assert_eq!(app.patch(&ann, id, json!({"priority": "HIGH"})).await.status(), StatusCode::OK);
    app.delete(&ann, id).await;
    let events = stream.events(3).await;
    assert_eq!(event_ids(&events), [2, 3, 4]);
    let log = log_of(&app, &mo).await;
    let data: Vec<&Value> = events.iter().map(|e| e.data.as_ref().unwrap()).collect();
    assert_eq!(data, log[1..].iter().collect::<Vec<_>>(), "data: exactly as GET /api/activity shows it");
    assert_eq!(
        data.iter().map(|d| d["action"].as_str().unwrap()).collect::<Vec<_>>(),
        ["created", "updated", "deleted"]
    );
}

#[tokio::test]
async fn the_response_is_private_uncached_and_opens_with_retry_and_the_id_it_starts_after() {
    let app = spawn_app().await;
    let response = stream_request(&app, Some(&member("acme")), "", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers()["vary"].to_str().unwrap().contains("x-organization-id"));
    let mut stream = Stream::of(response);
    let opening = stream.next_block().await.unwrap();
    assert_eq!(opening.id, Some(0), "an organization without activity starts after 0");
    assert_eq!(opening.retry, Some(2000), "STREAM_RETRY_MS");
    assert_eq!(opening.comments, ["tenantry live activity; the entries after 0 follow"]);
}

#[tokio::test]
async fn a_stream_resumes_after_last_event_id_or_after_and_the_header_wins() {
    let app = spawn_app().await;
    let ann = admin("acme");
    for n in 0..3 {
        app.create_ok(&ann, &format!("issue {n}")).await;
    }
    let mut by_header = Stream::open(&app, &ann, "", Some(1)).await;
    assert_eq!(by_header.opening().await, 1);
    assert_eq!(event_ids(&by_header.events(2).await), [2, 3]);

    let mut by_query = Stream::open(&app, &ann, "?after=2", None).await;
    assert_eq!(by_query.opening().await, 2);
    assert_eq!(event_ids(&by_query.events(1).await), [3]);

    // EventSource reconnects to its original URL with a newer Last-Event-ID.
    let mut both = Stream::open(&app, &ann, "?after=0", Some(2)).await;
    assert_eq!(both.opening().await, 2, "Last-Event-ID wins over after");
    assert_eq!(event_ids(&both.events(1).await), [3]);

    let mut from_the_start = Stream::open(&app, &ann, "?after=0", None).await;
    assert_eq!(from_the_start.opening().await, 0);
    assert_eq!(event_ids(&from_the_start.events(3).await), [1, 2, 3]);

    // Then each goes on live, nothing twice.
    app.create_ok(&ann, "live").await;
    for stream in [&mut by_header, &mut by_query, &mut both, &mut from_the_start] {
        assert_eq!(event_ids(&stream.events(1).await), [4]);
    }
}

#[tokio::test]
async fn a_position_past_the_organizations_last_entry_is_a_400_naming_the_parameter() {
    let app = spawn_app().await;
    let (acme, globex) = (admin("acme"), admin("globex"));
    app.create_ok(&acme, "one").await;
    for n in 0..3 {
        app.create_ok(&globex, &format!("globex {n}")).await;
    }
    // Another organization's larger log does not count.
    let response =
        app.request(Method::GET, PATH, Some(&acme)).header("Last-Event-ID", "3").send().await.unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["Last-Event-ID"]);
    assert_eq!(problem["detail"], "Last-Event-ID: 3 is past the organization's last activity entry, 1");
    let response = app.request(Method::GET, &format!("{PATH}?after=2"), Some(&acme)).send().await.unwrap();
    assert_eq!(error_fields(&assert_problem(response, StatusCode::BAD_REQUEST).await), ["after"]);
    // The last entry itself is fine: nothing to catch up.
    let mut stream = Stream::open(&app, &acme, "?after=1", None).await;
    assert_eq!(stream.opening().await, 1);
}

#[tokio::test]
async fn refusals_are_problems_before_the_stream_starts() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.rate_limits.user_per_second = 1;
        config.rate_limits.user_burst = 1;
    })
    .await;
    let mo = member("acme");
    let response = app.request(Method::GET, PATH, None).send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    for (i, (query, field)) in [
        ("?after=-1", "after"),
        ("?after=x", "after"),
        ("?issueId=0", "issueId"),
        ("?action=closed", "action"),
        ("?cursor=abc", "cursor"),
        ("?after=1&after=2", "after"),
    ]
    .into_iter()
    .enumerate()
    {
        // An organization each: the user's burst is one request.
        let caller = member(&format!("org{i}"));
        let response =
            app.request(Method::GET, &format!("{PATH}{query}"), Some(&caller)).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), [field], "{query}");
    }
    let response = app
        .request(Method::GET, PATH, Some(&member("other")))
        .header("Last-Event-ID", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(&assert_problem(response, StatusCode::BAD_REQUEST).await), ["Last-Event-ID"]);
    // Rate limits as everywhere: this user's burst is one stream, and the next within the
    // second is refused (had the machine stalled for a second, a token refilled and the
    // next stream opens: keep it open and ask again).
    let mut open = Vec::new();
    let refused = loop {
        let response = stream_request(&app, Some(&mo), "", None).await;
        if response.status() != StatusCode::OK {
            break response;
        }
        open.push(response);
        assert!(open.len() <= 10, "never refused");
    };
    assert!(!open.is_empty(), "the burst's stream opened");
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn filters_pick_one_issues_entries_or_some_actions_when_catching_up_and_live() {
    let app = spawn_app().await;
    let ann = admin("acme");
    let first = issue_with_updates(&app, &ann, "first", 2).await; // entries 1-3
    let second = issue_with_updates(&app, &ann, "second", 1).await; // 4-5
    let mut of_second = Stream::open(&app, &ann, &format!("?after=0&issueId={second}"), None).await;
    let mut creations = Stream::open(&app, &ann, "?after=0&action=created,deleted", None).await;
    let mut updates_of_first =
        Stream::open(&app, &ann, &format!("?after=0&issueId={first}&action=updated"), None).await;
    for stream in [&mut of_second, &mut creations, &mut updates_of_first] {
        assert_eq!(stream.opening().await, 0);
    }
    assert_eq!(event_ids(&of_second.events(2).await), [4, 5]);
    assert_eq!(event_ids(&creations.events(2).await), [1, 4]);
    assert_eq!(event_ids(&updates_of_first.events(2).await), [2, 3]);

    // Live: entries 6 (update of first), 7 (delete of second), 8 (a third issue).
    assert_eq!(app.patch(&ann, first, json!({"status": "OPEN"})).await.status(), StatusCode::OK);
    app.delete(&ann, second).await;
    app.create_ok(&ann, "third").await;
    assert_eq!(event_ids(&of_second.events(1).await), [7]);
    assert_eq!(event_ids(&creations.events(2).await), [7, 8]);
    assert_eq!(event_ids(&updates_of_first.events(1).await), [6]);
    // A filtered stream resumes from the last event it sent.
    let mut resumed = Stream::open(&app, &ann, &format!("?issueId={first}"), Some(2)).await;
    resumed.opening().await;
    assert_eq!(event_ids(&resumed.events(2).await), [3, 6]);
}

#[tokio::test]
async fn streams_are_limited_per_organization_with_429_and_per_instance_with_503() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.streams.stream_max_per_org = 2;
        config.streams.stream_max = 3;
        config.streams.stream_heartbeat_ms = 50;
    })
    .await;
    let mut acme = Vec::new();
    for user in ["ann", "mo"] {
        let actor = Actor { org: "acme".into(), user: user.into(), role: "MEMBER" };
        acme.push(raw_stream(&app, &actor).await);
    }
    let response = app.request(Method::GET, PATH, Some(&member("acme"))).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "10");
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(problem["detail"].as_str().unwrap().contains("STREAM_MAX_PER_ORG"), "{problem}");
    let _globex = Stream::open(&app, &member("globex"), "", None).await;
    let response = app.request(Method::GET, PATH, Some(&member("initech"))).send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"].as_str().unwrap().contains("STREAM_MAX"), "{problem}");
    assert_eq!(metric(&app, "tenantry_sse_refused_total{limit=\"organization\"}").await, 1.0);
    assert_eq!(metric(&app, "tenantry_sse_refused_total{limit=\"instance\"}").await, 1.0);
    assert_eq!(metric(&app, "tenantry_sse_streams").await, 3.0);
    // One closes: its place is free again.
    drop(acme.pop());
    wait_for_metric(&app, "tenantry_sse_streams", 2.0).await;
    Stream::open(&app, &member("initech"), "", None).await.opening().await;
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_place_and_its_organizations_reader() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.streams.stream_max_per_org = 1;
        // A vanished client is noticed when writing to it fails: at the second heartbeat.
        config.streams.stream_heartbeat_ms = 50;
    })
    .await;
    let ann = admin("acme");
    let stream = raw_stream(&app, &ann).await;
    assert_eq!(metric(&app, "tenantry_sse_streams").await, 1.0);
    assert_eq!(metric(&app, "tenantry_sse_organizations").await, 1.0);
    drop(stream); // the connection closes, nothing said
    wait_for_metric(&app, "tenantry_sse_streams", 0.0).await;
    wait_for_metric(&app, "tenantry_sse_organizations", 0.0).await;
    assert_eq!(metric(&app, "tenantry_sse_ended_total{reason=\"client\"}").await, 1.0);
    // Its place is free, and a new stream misses nothing written meanwhile.
    app.create_ok(&ann, "while nobody listened").await;
    let mut again = Stream::open(&app, &ann, "", Some(0)).await;
    again.opening().await;
    assert_eq!(event_ids(&again.events(1).await), [1]);
}

/// A client that stops reading: its socket fills, then its queue of STREAM_MAX_QUEUED
/// entries; past that it is fed nothing more (memory stays bounded), and once its
/// connection has taken nothing for IDLE_TIMEOUT_MS it is closed and its place freed. What
/// it did receive is a clean prefix, and it resumes from there.
#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_with_bounded_memory_and_resumes_where_it_was() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.streams.stream_max_queued = 4;
        config.streams.stream_heartbeat_ms = 100;
        // Long enough for a few writes on a loaded machine once the socket is full: with
        // 1 s, the connection was sometimes cut before the queue overflowed.
        config.idle_timeout_ms = 5000;
    })
    .await;
    let ann = admin("acme");
    let id = app.create_ok(&ann, "large").await["id"].as_i64().unwrap();
    let mut response = stream_request(&app, Some(&ann), "", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = "x".repeat(49_000);
    let mut writes = 0;
    while metric(&app, "tenantry_sse_behind_total").await == 0.0 {
        let description = format!("{writes} {text}");
        assert_eq!(app.patch(&ann, id, json!({"description": description})).await.status(), StatusCode::OK);
        writes += 1;
        assert!(writes < 2000, "the stream never fell behind");
        let cut = metric(&app, "tenantry_sse_streams").await == 0.0;
        assert!(
            !cut || metric(&app, "tenantry_sse_behind_total").await > 0.0,
            "cut off before it fell behind"
        );
        assert!(metric(&app, "tenantry_sse_queued").await <= 4.0, "a queue holds at most STREAM_MAX_QUEUED");
    }
    // Fed no more: further changes do not queue for it.
    app.patch(&ann, id, json!({"status": "DONE"})).await;
    assert!(metric(&app, "tenantry_sse_queued").await <= 4.0);
    wait_for_metric(&app, "tenantry_sse_streams", 0.0).await;

    // What reached the client is a prefix without a gap (the connection was cut, so the
    // last block may be cut too).
    let mut received = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(WAIT, response.chunk()).await {
        received.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&received).into_owned();
    let blocks: Vec<Block> =
        body.split_inclusive("\n\n").filter(|b| b.ends_with("\n\n")).map(parse_block).collect();
    assert_eq!(blocks[0].id, Some(1), "the opening block");
    let ids = event_ids(&blocks.into_iter().filter(|b| b.data.is_some()).collect::<Vec<_>>());
    assert!(ids.len() < writes, "it missed some: {} of {writes}", ids.len());
    assert_eq!(ids, (2..2 + ids.len() as i64).collect::<Vec<_>>(), "no gap");
    let last = ids.last().copied().unwrap_or(1);
    let mut resumed = Stream::open(&app, &ann, "", Some(last)).await;
    resumed.opening().await;
    let total = writes as i64 + 2; // the create, the writes, the status change
    let rest = resumed.events((total - last) as usize).await;
    assert_eq!(event_ids(&rest), (last + 1..=total).collect::<Vec<_>>());
}

/// Large entries reach a stream's byte bound long before its count: a client that stops
/// reading while 100 KB entries are written holds at most STREAM_MAX_QUEUED_BYTES.
#[tokio::test]
async fn a_client_that_never_reads_large_entries_is_cut_off_at_its_byte_budget() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.streams.stream_max_queued = 1000;
        config.streams.stream_max_queued_bytes = 300_000;
        config.streams.stream_heartbeat_ms = 100;
        config.idle_timeout_ms = 5000;
    })
    .await;
    let ann = admin("acme");
    let id = app.create_ok(&ann, "large").await["id"].as_i64().unwrap();
    let response = stream_request(&app, Some(&ann), "", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = "x".repeat(49_000);
    let mut writes = 0;
    while metric(&app, "tenantry_sse_behind_total").await == 0.0 {
        let description = format!("{writes} {text}");
        assert_eq!(app.patch(&ann, id, json!({"description": description})).await.status(), StatusCode::OK);
        writes += 1;
        assert!(writes < 2000, "the stream never fell behind");
        assert!(metric(&app, "tenantry_sse_queued_bytes").await <= 300_000.0, "past STREAM_MAX_QUEUED_BYTES");
        assert!(metric(&app, "tenantry_sse_queued").await <= 3.0, "100 KB entries: three fit at most");
    }
    drop(response);
}

#[tokio::test]
async fn an_idle_stream_sends_a_keep_alive_comment() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.streams.stream_heartbeat_ms = 50).await;
    let mut stream = Stream::open(&app, &member("acme"), "", None).await;
    stream.opening().await;
    let heartbeat = stream.next_block().await.unwrap();
    assert_eq!(heartbeat, Block { comments: vec!["keep-alive".into()], ..Block::default() });
    // And events still flow between heartbeats.
    app.create_ok(&admin("acme"), "after a heartbeat").await;
    assert_eq!(event_ids(&stream.events(1).await), [1]);
}

#[tokio::test]
async fn a_heartbeat_must_be_shorter_than_the_idle_timeout() {
    // Refused among the settings, before any database is touched.
    for (heartbeat_ms, idle_timeout_ms) in [(60_000, 60_000), (0, 60_000)] {
        let config = tenantry::config::Config {
            database_url: Some("postgresql://nobody@127.0.0.1:1/never".into()),
            port: 0,
            idle_timeout_ms,
            streams: tenantry::config::StreamConfig {
                stream_heartbeat_ms: heartbeat_ms,
                ..Default::default()
            },
            ..Default::default()
        };
        let Err(err) = tenantry::App::build(&config).await else { panic!("started with {heartbeat_ms}") };
        assert!(err.to_string().contains("STREAM_HEARTBEAT_MS"), "{err}");
    }
}

#[tokio::test]
async fn streams_end_at_once_when_the_server_shuts_down() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.shutdown_timeout_seconds = 60).await;
    let mut stream = Stream::open(&app, &member("acme"), "", None).await;
    stream.opening().await;
    let started = std::time::Instant::now();
    drop(app); // the shutdown signal
    let rest = stream.rest().await;
    assert_eq!(
        rest.last().map(|b| b.comments.clone()),
        Some(vec!["the server is shutting down: reconnect with Last-Event-ID".to_owned()])
    );
    assert!(started.elapsed() < Duration::from_secs(30), "ended at once, not at SHUTDOWN_TIMEOUT_SECONDS");
}

/// Notifications do not cross databases: a LISTEN_DATABASE_URL on another database of the
/// same server would leave every stream waiting for wake-ups that never come.
#[tokio::test]
async fn a_listen_database_url_on_another_database_is_refused_at_start() {
    let database = crate::helpers::fresh_database().await;
    let pg = &crate::helpers::cluster().pg;
    let config = tenantry::config::Config {
        database_url: Some(pg.url(pg_sandbox::postgres::SUPERUSER, &database)),
        api_database_url: Some(pg.url(tenantry::db::API_ROLE, &database)),
        port: 0,
        streams: tenantry::config::StreamConfig {
            listen_database_url: Some(pg.url(pg_sandbox::postgres::SUPERUSER, "postgres")),
            ..tenantry::config::Config::default().streams
        },
        ..tenantry::config::Config::default()
    };
    let refused = tenantry::App::build(&config).await.err().expect("the start is refused").to_string();
    assert!(refused.contains("LISTEN_DATABASE_URL names the database \"postgres\""), "{refused}");
}

#[tokio::test]
async fn without_a_listen_connection_streams_poll_and_miss_nothing() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = refused.local_addr().unwrap().port();
    drop(refused); // nothing listens there now
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.streams.listen_database_url = Some(format!("postgresql://nobody@127.0.0.1:{port}/nowhere"));
        config.streams.stream_poll_interval_ms = 20;
    })
    .await;
    let ann = admin("acme");
    let mut stream = Stream::open(&app, &ann, "", None).await;
    stream.opening().await;
    for n in 0..3 {
        app.create_ok(&ann, &format!("polled {n}")).await;
    }
    assert_eq!(event_ids(&stream.events(3).await), [1, 2, 3]);
    assert_eq!(metric(&app, "tenantry_sse_listening").await, 0.0);
    assert!(metric(&app, "tenantry_sse_polls_total").await > 0.0);
}

#[tokio::test]
async fn one_read_per_organization_and_wake_up_feeds_all_of_its_streams() {
    // No poll may add a read while the LISTEN connection is being opened.
    let app =
        spawn_app_with(Mode::ApiLogin, |config| config.streams.stream_poll_interval_ms = 3_600_000).await;
    let ann = admin("acme");
    let mut streams = Vec::new();
    for n in 0..5 {
        let actor = Actor { org: "acme".into(), user: format!("reader-{n}"), role: "MEMBER" };
        let mut stream = Stream::open(&app, &actor, "", None).await;
        stream.opening().await;
        streams.push(stream);
    }
    wait_for_metric(&app, "tenantry_sse_listening", 1.0).await;
    // Settled: the wake-up the LISTEN connection gives every feed when it starts is read.
    let reads = "tenantry_sse_reads_total{kind=\"feed\"}";
    wait_until("the feed read once after LISTEN started", || async { metric(&app, reads).await >= 1.0 })
        .await;
    let (reads_before, wakeups_before) =
        (metric(&app, reads).await, metric(&app, "tenantry_sse_wakeups_total").await);
    app.create_ok(&ann, "one change").await;
    for stream in &mut streams {
        assert_eq!(event_ids(&stream.events(1).await), [1]);
    }
    assert_eq!(metric(&app, "tenantry_sse_wakeups_total").await - wakeups_before, 1.0, "one notification");
    assert_eq!(metric(&app, reads).await - reads_before, 1.0, "one read for five streams");
    assert_eq!(metric(&app, "tenantry_sse_events_total").await, 5.0);
}

/// The invariant `Last-Event-ID` rests on: entries are numbered per organization under its
/// counters row lock, in commit order, so any snapshot of an organization's log holds
/// exactly the entries 1..k, k being its counter, and "after id N" has no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_snapshot_of_an_organizations_log_is_a_prefix_under_concurrent_writers() {
    let app = std::sync::Arc::new(spawn_app().await);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let app = app.clone();
            async move {
                let actor = admin(["red", "green", "blue"][n % 3]);
                for round in 0..12 {
                    let id = app.create_ok(&actor, &format!("w{n} r{round}")).await["id"].as_i64().unwrap();
                    assert_eq!(
                        app.patch(&actor, id, json!({"status": "DONE"})).await.status(),
                        StatusCode::OK
                    );
                }
            }
        })
        .collect();
    let snapshots = {
        let (sql, done) = (app.owner_sql().await, done.clone());
        tokio::spawn(async move {
            let mut taken = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let rows = sql
                    .query(
                        "select c.organization_id, c.last_activity_id,
                                (select count(*) from app.activity_logs a where a.organization_id = c.organization_id),
                                (select coalesce(min(id), 1) from app.activity_logs a where a.organization_id = c.organization_id),
                                (select coalesce(max(id), 0) from app.activity_logs a where a.organization_id = c.organization_id)
                           from app.organization_counters c",
                        &[],
                    )
                    .await
                    .unwrap();
                for row in rows {
                    let (org, k): (String, i64) = (row.get(0), row.get(1));
                    let (count, min, max): (i64, i64, i64) = (row.get(2), row.get(3), row.get(4));
                    assert_eq!((count, min, max), (k, 1, k), "{org}'s log in one snapshot: 1..{k}");
                }
                taken += 1;
                if finished {
                    return taken;
                }
            }
        })
    };
    futures::future::join_all(writers).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let taken = snapshots.await.unwrap();
    assert!(taken >= 2, "snapshots taken while writing: {taken}");
    // And times grow with ids (migration 12), which bounds every resumed read by time.
    let backwards: i64 = app
        .owner_sql()
        .await
        .query_one(
            "select count(*) from (select created_at < lag(created_at) over (partition by organization_id order by id) as back
                                     from app.activity_logs) t where back",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(backwards, 0, "an entry's time runs behind its predecessor's");
}

/// The issue's test: 8 writers across 3 organizations, and readers that disconnect every
/// few events and resume with the last id they got, by header or by `?after`. Each reader
/// ends with its organization's log exactly: every entry once, in order, none of another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_keep_reconnecting_get_every_entry_of_their_organization_exactly_once_in_order() {
    let app = std::sync::Arc::new(spawn_app().await);
    let orgs = ["red", "green", "blue"];
    let (finished, _) = tokio::sync::watch::channel(HashMap::<String, i64>::new());
    let finished = std::sync::Arc::new(finished);
    let mut readers = Vec::new();
    for (n, org) in orgs.iter().cycle().take(6).enumerate() {
        let (app, finished) = (app.clone(), finished.subscribe());
        let actor = Actor { org: (*org).into(), user: format!("reader-{n}"), role: "MEMBER" };
        readers.push(tokio::spawn(async move { read_with_reconnects(&app, &actor, n, finished).await }));
    }
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let app = app.clone();
            async move {
                let actor = admin(orgs[n % 3]);
                for round in 0..10 {
                    let id = app.create_ok(&actor, &format!("w{n} r{round}")).await["id"].as_i64().unwrap();
                    assert_eq!(
                        app.patch(&actor, id, json!({"status": "DONE"})).await.status(),
                        StatusCode::OK
                    );
                }
            }
        })
        .collect();
    futures::future::join_all(writers).await;
    let mut logs = HashMap::new();
    for org in orgs {
        logs.insert(org.to_owned(), log_of(&app, &member(org)).await);
    }
    finished.send_replace(logs.iter().map(|(org, log)| (org.clone(), log.len() as i64)).collect());
    for (n, reader) in readers.into_iter().enumerate() {
        let (org, received) = reader.await.unwrap();
        let log = &logs[&org];
        assert!(log.len() >= 2 * 10 * 2, "{org}: {} entries", log.len());
        let ids: Vec<i64> = received.iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert_eq!(
            ids,
            (1..=log.len() as i64).collect::<Vec<_>>(),
            "reader {n} of {org}: each id once, in order"
        );
        assert!(&received == log, "reader {n} of {org}: exactly its organization's entries");
    }
}

/// Reads `actor`'s organization's stream from the start, disconnecting after a few events
/// each time and resuming with the last id (by header, or `?after` every other time),
/// until it has the last entry `finished` names for the organization.
async fn read_with_reconnects(
    app: &TestApp,
    actor: &Actor,
    seed: usize,
    mut finished: tokio::sync::watch::Receiver<HashMap<String, i64>>,
) -> (String, Vec<Value>) {
    let mut received: Vec<Value> = Vec::new();
    let mut connection = 0;
    loop {
        let last = received.last().map_or(0, |e| e["id"].as_i64().unwrap());
        let done = |finished: &HashMap<String, i64>| finished.get(&actor.org).is_some_and(|end| last >= *end);
        // Seen from here on: `changed` below fires only for news.
        if done(&finished.borrow_and_update()) {
            return (actor.org.clone(), received);
        }
        connection += 1;
        let mut stream = if connection % 2 == 0 {
            Stream::open(app, actor, "", Some(last)).await
        } else {
            Stream::open(app, actor, &format!("?after={last}"), None).await
        };
        assert_eq!(stream.opening().await, last);
        let take = 1 + (seed + connection) % 4;
        for _ in 0..take {
            tokio::select! {
                event = stream.next_event() => {
                    received.push(event.expect("the stream goes on").data.unwrap());
                }
                _ = finished.changed() => break,
            }
        }
    }
}

/// AUTH_MODE=jwt: a stream lasts as long as its credentials. It ends cleanly (a comment
/// saying why, then the end of the body) at its token's `exp`, not before; the client
/// reconnects with a new token and `Last-Event-ID`.
#[tokio::test]
async fn with_jwt_a_stream_ends_cleanly_when_its_bearer_token_expires() {
    use tenantry::{
        config::{AuthMode, JwtConfig},
        domain::{Role, TenantContext},
        http::extract::jwt,
    };
    let settings = JwtConfig {
        jwt_secret: Some("a test secret that is long enough for HS256".into()),
        jwt_audience_optional: true,
        ..JwtConfig::default()
    };
    let jwt_settings = settings.clone();
    let app = spawn_app_with(Mode::ApiLogin, move |config| {
        config.auth_mode = AuthMode::Jwt;
        config.jwt = jwt_settings;
    })
    .await;
    let token = |user: &str, role, seconds| {
        let ctx = TenantContext { org_id: "acme".into(), user_id: user.into(), role };
        jwt::mint(&settings, None, &ctx, Duration::from_secs(seconds)).unwrap()
    };
    // Long enough for the stream to open and carry one entry on a loaded machine.
    let expires = jsonwebtoken::get_current_timestamp() + 5; // at most the token's exp
    let short = token("mo", Role::Member, 5);
    let response = app.client.get(format!("{}{PATH}", app.address)).bearer_auth(&short).send().await.unwrap();
    let mut stream = Stream::of(response);
    assert_eq!(stream.opening().await, 0);
    let created = app
        .client
        .post(format!("{}/api/issues", app.address))
        .bearer_auth(token("ann", Role::Admin, 600))
        .json(&json!({"title": "before the expiry", "description": "seen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(event_ids(&stream.events(1).await), [1]);
    let rest = stream.rest().await;
    assert!(jsonwebtoken::get_current_timestamp() >= expires, "not before exp");
    assert_eq!(
        rest.last().map(|b| b.comments.clone()),
        Some(vec!["the bearer token expired: reconnect with a new one and Last-Event-ID".to_owned()])
    );
    assert_eq!(metric(&app, "tenantry_sse_ended_total{reason=\"expired\"}").await, 1.0);
}

/// A stream is answered long before REQUEST_TIMEOUT_MS and then lives on: the time-out
/// bounds the wait for a response, not how long its body runs.
#[tokio::test]
async fn a_stream_outlives_request_timeout_ms() {
    // Long enough for the stream's opening (its registration and first read) on a loaded
    // machine, which the time-out still bounds; then the stream goes on well past it.
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.request_timeout_ms = 2000;
        config.streams.stream_heartbeat_ms = 200;
    })
    .await;
    let mut stream = Stream::open(&app, &member("acme"), "", None).await;
    stream.opening().await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        let heartbeat = stream.next_block().await.expect("the stream goes on");
        assert_eq!(heartbeat.comments, ["keep-alive"]);
    }
    app.create_ok(&admin("acme"), "after the request time-out").await;
    assert_eq!(event_ids(&stream.events(1).await), [1]);
}

/// Each stream is a connection: with MAX_CONNECTIONS taken by streams, a new connection
/// is accepted and closed at once, as for any other request.
#[tokio::test]
async fn streams_count_against_the_connection_cap() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.max_connections = 2).await;
    let _first = raw_stream(&app, &member("acme")).await;
    let _second = raw_stream(&app, &member("globex")).await;
    let refused = reqwest::Client::new().get(format!("{}/healthz", app.address)).send().await;
    assert!(refused.is_err(), "a third connection is closed at once: {refused:?}");
}

/// The LISTEN session dies (a fail-over, a DBA's pg_terminate_backend): the instance
/// opens another, and every organization is read once more then, so what was written
/// while nobody listened arrives, without waiting for a poll.
#[tokio::test]
async fn a_listen_connection_that_drops_is_replaced_and_what_was_missed_arrives() {
    let app =
        spawn_app_with(Mode::ApiLogin, |config| config.streams.stream_poll_interval_ms = 3_600_000).await;
    let ann = admin("acme");
    let opened = std::time::Instant::now();
    let mut stream = Stream::open(&app, &member("acme"), "", None).await;
    stream.opening().await;
    wait_for_metric(&app, "tenantry_sse_listening", 1.0).await;
    let owner = app.owner_sql().await;
    let terminate = "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
                       where datname = $1 and application_name = 'tenantry listen') t";
    let terminated: i64 = owner.query_one(terminate, &[&app.database]).await.unwrap().get(0);
    assert_eq!(terminated, 1, "one LISTEN session");
    app.create_ok(&ann, "written around the outage").await;
    assert_eq!(event_ids(&stream.events(1).await), [1]);
    wait_for_metric(&app, "tenantry_sse_listening", 1.0).await;
    app.create_ok(&ann, "and heard again").await;
    assert_eq!(event_ids(&stream.events(1).await), [2]);
    // (Unless the machine stalled until the registration's renewal, which may poll.)
    if opened.elapsed() < RENEW_EVERY {
        assert_eq!(metric(&app, "tenantry_sse_polls_total").await, 0.0, "no poll was needed");
    }
}

/// An organization's registration lapses when its instance cannot renew it in time (the
/// database was away for longer than the registration lasts, the instance stalled): its
/// changes then notify no one. When the feed registers again it reads what it missed at
/// once, rather than leaving it for the organization's next change, which may never come.
#[tokio::test]
async fn what_was_written_while_a_registration_had_lapsed_arrives_when_it_is_renewed() {
    let app =
        spawn_app_with(Mode::ApiLogin, |config| config.streams.stream_poll_interval_ms = 3_600_000).await;
    let mut stream = Stream::open(&app, &member("acme"), "", None).await;
    stream.opening().await;
    wait_for_metric(&app, "tenantry_sse_listening", 1.0).await;
    // Settled: the read every feed makes when the LISTEN connection starts is done.
    let reads = "tenantry_sse_reads_total{kind=\"feed\"}";
    wait_until("the feed read once after LISTEN started", || async { metric(&app, reads).await >= 1.0 })
        .await;
    let owner = app.owner_sql().await;
    owner
        .execute(
            "update app.organization_counters set listened_until = now() - interval '1 second'
              where organization_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    app.create_ok(&admin("acme"), "written while nobody was registered").await;
    // The feed renews its registration every 15-25 s: wait for that, however long it takes.
    let renewed =
        "select listened_until > now() from app.organization_counters where organization_id = 'acme'";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !owner.query_one(renewed, &[]).await.unwrap().get::<_, bool>(0) {
        assert!(std::time::Instant::now() < deadline, "the registration was never renewed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(event_ids(&stream.events(1).await), [1]);
    assert_eq!(metric(&app, "tenantry_sse_polls_total").await, 0.0, "no poll brought it");
}

/// AUTH_MODE=jwt: a stream with more to send than its client takes in still ends at its
/// token's `exp`: neither catching up (read as the token's caller) nor a busy organization
/// keeps it going past it.
#[tokio::test]
async fn with_jwt_a_stream_that_still_has_entries_to_send_ends_at_its_tokens_expiry() {
    use tenantry::{
        config::{AuthMode, JwtConfig},
        domain::{Role, TenantContext},
        http::extract::jwt,
    };
    let settings = JwtConfig {
        jwt_secret: Some("a test secret that is long enough for HS256".into()),
        jwt_audience_optional: true,
        ..JwtConfig::default()
    };
    let jwt_settings = settings.clone();
    let app = spawn_app_with(Mode::ApiLogin, move |config| {
        config.auth_mode = AuthMode::Jwt;
        config.jwt = jwt_settings;
    })
    .await;
    // 3,000 entries of 10 kB each, in one transaction: 30 MB, far more than the sockets
    // between the server and this client hold.
    const ENTRIES: i64 = 3000;
    app.owner_sql()
        .await
        .batch_execute(&format!(
            "begin; set local role tenantry_api; {};
             select app.log_activity(1, 'updated',
                      jsonb_build_object('description', jsonb_build_object('from', '', 'to', repeat('x', 10000))))
               from generate_series(1, {ENTRIES});
             commit;",
            set_tenant_sql("acme", "ann", "ADMIN")
        ))
        .await
        .unwrap();
    let ctx = TenantContext { org_id: "acme".into(), user_id: "mo".into(), role: Role::Member };
    // Long enough for the stream to open on a loaded machine.
    let expires = jsonwebtoken::get_current_timestamp() + 4; // at most the token's exp
    let token = jwt::mint(&settings, None, &ctx, Duration::from_secs(4)).unwrap();
    let response =
        app.client.get(format!("{}{PATH}?after=0", app.address)).bearer_auth(&token).send().await.unwrap();
    let mut stream = Stream::of(response);
    assert_eq!(stream.opening().await, 0);
    // The client takes nothing more until its token has expired.
    while jsonwebtoken::get_current_timestamp() <= expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rest = stream.rest().await;
    assert_eq!(
        rest.last().map(|b| b.comments.clone()),
        Some(vec!["the bearer token expired: reconnect with a new one and Last-Event-ID".to_owned()])
    );
    let ids = event_ids(&rest.into_iter().filter(|b| b.data.is_some()).collect::<Vec<_>>());
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>(), "a prefix, no gap");
    assert!((ids.len() as i64) < ENTRIES, "it went on past exp: all {ENTRIES} entries were sent");
}

/// A TCP relay to the test cluster that a test can cut: every connection through it
/// closes and new ones are refused, as when the network to the database goes.
struct Relay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to_cluster() -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = cluster().pg.port();
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection through it ends.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Relay { port, task }
    }

    /// `url` (of the test cluster) through the relay.
    fn url(&self, url: &str) -> String {
        url.replace(&format!(":{}/", cluster().pg.port()), &format!(":{}/", self.port))
    }

    /// Closes every connection through the relay and refuses new ones.
    async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The LISTEN connection goes and cannot be had again: the streams poll from then on,
/// at once, not only once their organization's registration is next renewed (every
/// 15-25 s, the registration being the same: that it is unchanged when the entry
/// arrives shows the poll brought it).
#[tokio::test]
async fn when_the_listen_connection_goes_for_good_streams_poll_from_then_on() {
    let relay = Relay::to_cluster().await;
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.streams.listen_database_url = Some(relay.url(config.database_url.as_deref().unwrap()));
        config.streams.stream_poll_interval_ms = 50;
    })
    .await;
    let opened = std::time::Instant::now();
    let mut stream = Stream::open(&app, &member("acme"), "", None).await;
    stream.opening().await;
    wait_for_metric(&app, "tenantry_sse_listening", 1.0).await;
    let owner = app.owner_sql().await;
    let registration = "select listened_until from app.organization_counters where organization_id = 'acme'";
    let registered: std::time::SystemTime = owner.query_one(registration, &[]).await.unwrap().get(0);
    relay.cut().await;
    wait_for_metric(&app, "tenantry_sse_listening", 0.0).await;
    app.create_ok(&admin("acme"), "written with nobody listening").await;
    assert_eq!(event_ids(&stream.events(1).await), [1]);
    assert!(metric(&app, "tenantry_sse_polls_total").await > 0.0);
    let now: std::time::SystemTime = owner.query_one(registration, &[]).await.unwrap().get(0);
    if opened.elapsed() < RENEW_EVERY {
        assert_eq!(now, registered, "a poll brought it, not the registration's renewal");
    }
}

/// A stream opened just as the service starts shutting down: its organization's new feed
/// ends before it tries to register, and the handler, which waits for that try before
/// it answers, must not wait for it forever (the graceful shutdown would wait with it).
#[tokio::test]
async fn a_stream_opened_as_the_service_closes_does_not_wait_for_a_registration_that_never_comes() {
    use tenantry::{
        db::stream::{Filters, Position},
        domain::{Role, TenantContext},
    };
    let database = fresh_database().await;
    let pg = &cluster().pg;
    let config = tenantry::config::Config {
        port: 0,
        database_url: Some(pg.url(pg_sandbox::postgres::SUPERUSER, &database)),
        api_database_url: Some(pg.url(tenantry::db::API_ROLE, &database)),
        ..Default::default()
    };
    let app = tenantry::App::build(&config).await.unwrap();
    let live = app.live().clone();
    let ctx = TenantContext { org_id: "acme".into(), user_id: "mo".into(), role: Role::Member };
    // On this test's one thread, the feed's task first runs when the test waits: after
    // the service closed.
    let subscription = live.subscribe(&ctx, Filters::default(), Position { id: 0, at: None }).unwrap();
    live.close();
    tokio::time::timeout(WAIT, subscription.registered())
        .await
        .expect("the wait for the registration ends when the service closes");
}

/// Many streams of one organization, with and without filters, opened while 6 writers
/// change it (so each one's catch-up hands over to its feed while entries keep coming):
/// each receives exactly its share of the log after the point it started from, each
/// entry once, in order, whatever the moment of its handover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_while_writers_run_get_exactly_their_filtered_share_of_the_log() {
    let app = std::sync::Arc::new(spawn_app().await);
    let (red, blue) = (admin("red"), admin("blue"));
    let writers: Vec<_> = (0..6)
        .map(|n| {
            let app = app.clone();
            async move {
                let actor = admin(["red", "blue"][n % 2]);
                for round in 0..10 {
                    let id = app.create_ok(&actor, &format!("w{n} r{round}")).await["id"].as_i64().unwrap();
                    assert_eq!(
                        app.patch(&actor, id, json!({"status": "DONE"})).await.status(),
                        StatusCode::OK
                    );
                    if round % 3 == 0 {
                        app.delete(&actor, id).await;
                    }
                }
            }
        })
        .collect();
    // (query, Last-Event-ID), each opened once after the other while the writers write.
    let kinds: [(&str, Option<i64>); 6] = [
        ("", None),
        ("?action=updated", None),
        ("?after=0&action=created,deleted", None),
        ("?issueId=2", Some(0)),
        ("", Some(0)),
        ("?action=deleted", None),
    ];
    let opener = {
        let app = app.clone();
        async move {
            let mut opened = Vec::new();
            for round in 0..3 {
                for (query, last_event_id) in kinds {
                    let actor = if round % 2 == 0 { member("red") } else { member("blue") };
                    let mut stream = Stream::open(&app, &actor, query, last_event_id).await;
                    let start = stream.opening().await;
                    opened.push((actor, query, start, stream));
                }
            }
            opened
        }
    };
    let (_, mut opened) = tokio::join!(futures::future::join_all(writers), opener);
    let logs = HashMap::from([("red", log_of(&app, &red).await), ("blue", log_of(&app, &blue).await)]);
    let mid_way = opened
        .iter()
        .filter(|(actor, _, start, _)| (1..logs[actor.org.as_str()].len() as i64).contains(start));
    assert!(mid_way.count() >= 2, "streams started while the writers wrote");
    for (actor, query, start, stream) in &mut opened {
        let issue: Option<i64> = query.split_once("issueId=").map(|(_, id)| id.parse().unwrap());
        let actions: Vec<&str> =
            query.split_once("action=").map(|(_, list)| list.split(',').collect()).unwrap_or_default();
        let expected: Vec<&Value> = logs[actor.org.as_str()]
            .iter()
            .filter(|e| e["id"].as_i64().unwrap() > *start)
            .filter(|e| issue.is_none_or(|id| e["issueId"].as_i64() == Some(id)))
            .filter(|e| actions.is_empty() || actions.contains(&e["action"].as_str().unwrap()))
            .collect();
        let received = stream.events(expected.len()).await;
        let received: Vec<&Value> = received.iter().map(|e| e.data.as_ref().unwrap()).collect();
        assert!(received == expected, "{} {query} after {start}: {:?}", actor.org, event_ids_of(&received));
    }
    // And nothing more: one last change per organization is the next event of every
    // stream it matches.
    for actor in [&red, &blue] {
        app.create_ok(actor, "the last one").await;
    }
    for (actor, query, _, stream) in &mut opened {
        if query.contains("issueId") || query.contains("updated") || *query == "?action=deleted" {
            continue;
        }
        let last = logs[actor.org.as_str()].len() as i64 + 1;
        assert_eq!(event_ids(&stream.events(1).await), [last], "{} {query}", actor.org);
    }
}

fn event_ids_of(data: &[&Value]) -> Vec<i64> {
    data.iter().map(|d| d["id"].as_i64().unwrap()).collect()
}
