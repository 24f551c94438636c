//! Traces that join the caller's: the binary, with OTEL_EXPORTER_OTLP_ENDPOINT pointing at
//! a small OTLP/HTTP receiver here (the JSON encoding, so the test reads it with serde),
//! exports a span per request carrying the caller's trace id and parent span id, and a
//! child span for its database transaction. A malformed traceparent starts a new trace;
//! the request is served as usual. Every response with a transaction says `Server-Timing`.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use poem::{EndpointExt, Route, Server, handler, listener::TcpListener, post, web::Data};
use serde_json::Value;

use crate::helpers::*;

/// The receiver: every export's JSON body goes to the channel.
#[handler]
fn receive(body: String, sink: Data<&tokio::sync::mpsc::UnboundedSender<Value>>) {
    let _ = sink.send(serde_json::from_str(&body).expect("OTLP/JSON"));
}

/// Every span of `exports`, flattened.
fn spans(exports: &[Value]) -> Vec<Value> {
    exports
        .iter()
        .flat_map(|export| export["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|resource| resource["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|scope| scope["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_join_the_callers_trace_and_show_the_database_transaction() {
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_port = receiver.local_addr().unwrap().port();
    drop(receiver);
    let (sink, mut exports) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let app = Route::new().at("/v1/traces", post(receive)).data(sink);
    tokio::spawn(Server::new(TcpListener::bind(format!("127.0.0.1:{receiver_port}"))).run(app));

    let database = fresh_database().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .env("PORT", "0")
        .env("DATABASE_URL", cluster().pg.url(pg_sandbox::postgres::SUPERUSER, &database))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{receiver_port}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = super::binary::stderr_lines(&mut child);
    let address = loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the server starts and says so");
        if let Some(rest) = line.split("serving ").nth(1) {
            break rest.split("/api").next().unwrap().to_owned();
        }
    };

    let client = reqwest::Client::new();
    let ann = admin("traced");
    let as_ann = |request: reqwest::RequestBuilder| {
        request
            .header("x-organization-id", &ann.org)
            .header("x-user-id", &ann.user)
            .header("x-user-role", ann.role)
    };
    let created = as_ann(client.post(format!("{address}/api/issues")))
        .json(&serde_json::json!({"title": "Traced", "description": "Follow me."}))
        .send()
        .await
        .unwrap();
    if created.status() != reqwest::StatusCode::CREATED {
        let _ = child.kill();
        let log: Vec<String> = lines.iter().collect();
        panic!("create: {}\n{}", created.status(), log.join("\n"));
    }
    let timing = created.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(regex::Regex::new(r"^db;dur=\d+\.\d{3}$").unwrap().is_match(&timing), "{timing}");

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traced = as_ann(client.get(format!("{address}/api/issues/1")))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .header("tracestate", "congo=t61rcWkgMzE")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), reqwest::StatusCode::OK);
    let malformed = as_ann(client.get(format!("{address}/api/issues/1")))
        .header("traceparent", "00-not-a-trace-01")
        .header("x-request-id", "malformed-parent")
        .send()
        .await
        .unwrap();
    assert_eq!(
        malformed.status(),
        reqwest::StatusCode::OK,
        "a malformed traceparent is ignored, never a 4xx"
    );

    // SIGTERM: the server ends, and sends what it has not sent yet on its way out.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let mut received = Vec::new();
    while let Ok(export) = exports.try_recv() {
        received.push(export);
    }
    let spans = spans(&received);

    let server = spans
        .iter()
        .find(|s| s["traceId"] == caller_trace && s["name"] == "GET /api/issues/{id}")
        .unwrap_or_else(|| panic!("no span in the caller's trace: {spans:#?}"));
    assert_eq!(server["parentSpanId"], caller_span, "the caller's span is the parent");
    assert_eq!(server["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(attribute(server, "http.route").unwrap()["stringValue"], "/api/issues/{id}");
    assert_eq!(attribute(server, "http.response.status_code").unwrap()["intValue"], "200");
    assert_eq!(attribute(server, "tenantry.organization_id").unwrap()["stringValue"], "traced");
    assert!(attribute(server, "tenantry.request_id").is_some());
    assert_eq!(server["traceState"], "congo=t61rcWkgMzE");
    let transaction = spans
        .iter()
        .find(|s| s["parentSpanId"] == server["spanId"])
        .unwrap_or_else(|| panic!("no child of the request's span: {spans:#?}"));
    assert_eq!(transaction["name"], "database transaction");
    assert_eq!(transaction["traceId"], caller_trace);

    let fresh = spans
        .iter()
        .find(|s| attribute(s, "tenantry.request_id").is_some_and(|v| v["stringValue"] == "malformed-parent"))
        .expect("the request with a malformed traceparent has a span");
    assert_ne!(fresh["traceId"], caller_trace);
    assert!(fresh["parentSpanId"].as_str().is_none_or(str::is_empty), "a new trace: no parent");
}
