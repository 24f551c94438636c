//! The live stream in a real browser, read as docs/api.md tells a front end to: `fetch`
//! with the identity headers (which `EventSource` cannot send) and a `ReadableStream`,
//! resuming with `Last-Event-ID` when the stream ends. The function under test is the
//! document's own code block. Headless Chromium through chromedriver; skipped like the
//! other browser tests without them (REQUIRE_BROWSER=1 makes that a failure).

use std::{net::TcpListener, time::Duration};

use fantoccini::Client;
use futures::FutureExt;
use serde_json::{Value, json};

use super::browser::{Driver, artifacts_dir, screenshot, wait_for};
use crate::helpers::*;

const API_MD: &str = include_str!("../../../docs/api.md");

/// docs/api.md's `follow` function: the untagged code block after "In a browser", without
/// its last line (the example call).
fn follow_function() -> String {
    let section =
        &API_MD[API_MD.find("In a browser, `EventSource`").expect("docs/api.md's browser snippet")..];
    let start = section.find("```\n").unwrap() + 4;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let lines: Vec<&str> = block.lines().take_while(|line| !line.starts_with("follow(")).collect();
    assert!(lines.len() > 10 && lines[0].starts_with("async function follow"), "{block}");
    lines.join("\n")
}

/// The ids the page has seen in `window[name]`.
async fn seen(browser: &Client, name: &str) -> Vec<i64> {
    let value = browser.execute(&format!("return window.{name} || []"), vec![]).await.unwrap();
    value.as_array().unwrap().iter().map(|id| id.as_i64().unwrap()).collect()
}

async fn wait_for_ids(browser: &Client, name: &str, expected: &[i64]) {
    wait_for(&format!("window.{name} to be {expected:?}"), || async {
        let ids = seen(browser, name).await;
        assert!(expected.starts_with(&ids), "window.{name}: {ids:?}, expected a prefix of {expected:?}");
        (ids == expected).then_some(())
    })
    .await
}

/// A server on `database` at `port`, once the port is free again.
async fn app_at(database: &str, port: u16) -> TestApp {
    let started = std::time::Instant::now();
    loop {
        // Free when a listener can take it (the previous server has let go).
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return spawn_app_on(database, Mode::ApiLogin, |config| config.port = port).await;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "port {port} stayed taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn in_a_real_browser_fetch_reads_the_stream_and_resumes_after_the_server_ends_it() {
    let Some((driver, chromium)) = Driver::start().await else { return };
    let browser = driver.session(&chromium).await;
    let outcome = std::panic::AssertUnwindSafe(journey(&browser)).catch_unwind().await;
    if outcome.is_err() {
        screenshot(&browser, "stream-failure").await;
    }
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        eprintln!("screenshots and chromedriver logs: {}", artifacts_dir().display());
        std::panic::resume_unwind(panic);
    }
}

async fn journey(browser: &Client) {
    let database = fresh_database().await;
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let first = app_at(&database, port).await;
    let ann = admin("acme");
    // The page and the API share an origin (the stream needs no CORS here).
    browser.goto(&format!("{}/", first.address)).await.unwrap();
    let headers = json!({"x-organization-id": "acme", "x-user-id": "mo", "x-user-role": "MEMBER"});
    let script = format!(
        "{}\nwindow.live = []; window.failed = null;\n\
         follow(arguments[0], entry => window.live.push(entry.id)).catch(e => window.failed = String(e));\n\
         return true;",
        follow_function()
    );
    browser.execute(&script, vec![headers.clone()]).await.unwrap();
    // Open before the change: a stream without a position starts after the last entry.
    wait_for_an_open_stream(&first).await;
    first.create_ok(&ann, "seen live").await;
    wait_for_ids(browser, "live", &[1]).await;
    screenshot(browser, "stream-01-live").await;

    // The server stops: the stream ends; the page waits and comes back with
    // Last-Event-ID to the server that replaces it, and misses nothing written meanwhile.
    drop(first);
    let second = app_at(&database, port).await;
    second.create_ok(&ann, "written while the page was away").await;
    wait_for_ids(browser, "live", &[1, 2]).await;
    second.create_ok(&ann, "and live again").await;
    wait_for_ids(browser, "live", &[1, 2, 3]).await;
    assert_eq!(browser.execute("return window.failed", vec![]).await.unwrap(), Value::Null);

    // Resuming from a given id, as after a reload that kept it.
    let script = format!(
        "{}\nwindow.resumed = [];\nfollow(arguments[0], entry => window.resumed.push(entry.id), '1');\nreturn true;",
        follow_function()
    );
    browser.execute(&script, vec![headers]).await.unwrap();
    wait_for_ids(browser, "resumed", &[2, 3]).await;
    screenshot(browser, "stream-02-resumed").await;
}

/// Waits until the page's stream is open on `app` (its opening block was sent).
async fn wait_for_an_open_stream(app: &TestApp) {
    wait_until("the page's stream is open", || async {
        super::stream::metric(app, "tenantry_sse_streams").await >= 1.0
    })
    .await;
}
