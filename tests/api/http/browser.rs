//! Swagger UI as its users take it, in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver) against the running service. Say who you are once in
//! the page's identity form (three headers, one button), create an issue with "Try it
//! out", switch to another organization and see it has no such issue, reload and find the
//! identity still there, and watch a MEMBER's PATCH come back as a 403 problem.
//! Screenshots of each step go to `target/browser-artifacts/`.
//!
//! Without chromium and chromedriver the test is skipped with a message, unless
//! REQUIRE_BROWSER=1 (CI), where it fails instead.

use std::{
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use futures::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helpers::*;

/// How long one step may take before the test gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags that work for headless Chromium here, as root and without a network (the
/// background-networking flags stop it from calling home, which a closed network refuses).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
];

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Where screenshots go.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts")
}

/// A chromedriver of our own, killed when dropped, and a browser profile removed then
/// (also used by the CORS test in `cors.rs`).
pub(crate) struct Driver {
    process: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Driver {
    /// Starts chromedriver, or explains why not: `None` means "skip".
    pub(crate) async fn start() -> Option<(Driver, PathBuf)> {
        let required = std::env::var_os("REQUIRE_BROWSER").is_some_and(|v| v == "1");
        let chromium = find_program("CHROMIUM", &["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = find_program("CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            let message = "chromium and chromedriver are needed for the browser tests \
                           (Debian: apt-get install -y chromium chromium-driver; or set CHROMIUM and CHROMEDRIVER)";
            assert!(!required, "REQUIRE_BROWSER=1 but {message}");
            eprintln!("SKIPPED: {message}");
            return None;
        };
        // This run's artifacts only (cleared once: the browser tests run at the same time).
        static CLEARED: std::sync::Once = std::sync::Once::new();
        CLEARED.call_once(|| {
            let _ = std::fs::remove_dir_all(artifacts_dir());
            std::fs::create_dir_all(artifacts_dir()).unwrap();
        });
        // Each driver its own log and browser profile: a shared profile directory, cleared
        // by the next test to start, closed the other test's browser.
        static DRIVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = DRIVERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = artifacts_dir().join(format!("chromedriver-{n}.log"));
        let process = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let profile = crate::ops::startup::tempdir(&format!("chromium-profile-{n}"));
        let driver = Driver { process, url: format!("http://127.0.0.1:{port}"), profile };
        // Ready when its status endpoint says so.
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let status = client.get(format!("{}/status", driver.url)).send().await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                break;
            }
            assert!(
                started.elapsed() < STEP_TIMEOUT,
                "chromedriver did not become ready; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some((driver, chromium))
    }

    pub(crate) async fn session(&self, chromium: &Path) -> Client {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"))
    }
}

/// Polls `probe` until it yields a value (an explicit wait: no fixed sleeps).
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < STEP_TIMEOUT, "waited {STEP_TIMEOUT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A displayed element matching `css`, once there is one.
async fn visible(browser: &Client, css: &str) -> Element {
    wait_for(&format!("a visible {css}"), || async {
        for element in browser.find_all(Locator::Css(css)).await.ok()? {
            if element.is_displayed().await.unwrap_or(false) {
                return Some(element);
            }
        }
        None
    })
    .await
}

pub(crate) async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(artifacts_dir().join(format!("{name}.png")), png).unwrap();
}

/// What the identity form says once it acts as `user` (`role`) in `org`.
fn acting_as(org: &str, user: &str, role: &str) -> String {
    format!("Acting as {user} ({role}) in organization {org}")
}

/// The identity form's status line, once it says `expected`.
async fn identity_status(browser: &Client, expected: &str) -> String {
    wait_for(&format!("the identity form to say {expected:?}"), || async {
        let text = browser.find(Locator::Id("identity-status")).await.ok()?.text().await.ok()?;
        text.starts_with(expected).then_some(text)
    })
    .await
}

/// Says who you are in the page's identity form, as a person does: type the
/// organization and the user, pick the role, press its one button.
async fn act_as(browser: &Client, org: &str, user: &str, role: &str, screenshot_name: &str) {
    // Enabled once Swagger UI has loaded the document.
    let authorize = visible(browser, "#identity-authorize:enabled").await;
    for (id, value) in [("identity-organization", org), ("identity-user", user)] {
        let input = visible(browser, &format!("#{id}")).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    visible(browser, "#identity-role").await.select_by_value(role).await.unwrap();
    authorize.click().await.unwrap();
    identity_status(browser, &acting_as(org, user, role)).await;
    screenshot(browser, screenshot_name).await;
}

/// The identity the form's fields hold: (organization, user, role).
async fn identity_fields(browser: &Client) -> (String, String, String) {
    let mut values = Vec::new();
    for id in ["identity-organization", "identity-user", "identity-role"] {
        let field = browser.find(Locator::Id(id)).await.unwrap();
        values.push(field.prop("value").await.unwrap().unwrap_or_default());
    }
    let [org, user, role] = <[String; 3]>::try_from(values).unwrap();
    (org, user, role)
}

/// Opens an operation, presses "Try it out", fills parameters and body, executes, and
/// returns the status and body Swagger UI shows.
async fn try_it_out(
    browser: &Client,
    operation_id: &str,
    parameters: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let block = format!("#operations-Issues-{operation_id}");
    let opened = browser.find(Locator::Css(&format!("{block}.is-open"))).await.is_ok();
    if !opened {
        visible(browser, &format!("{block} .opblock-summary")).await.click().await.unwrap();
    }
    let try_button = visible(browser, &format!("{block} .try-out__btn")).await;
    if try_button.text().await.unwrap().trim() == "Try it out" {
        try_button.click().await.unwrap();
    }
    for (name, value) in parameters {
        let input = visible(browser, &format!("{block} tr[data-param-name=\"{name}\"] input")).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    if let Some(body) = body {
        let textarea = visible(browser, &format!("{block} textarea.body-param__text")).await;
        textarea.clear().await.unwrap();
        textarea.send_keys(&body.to_string()).await.unwrap();
    }
    // Clear an earlier response first, so the wait below sees this one.
    if let Ok(clear) = browser.find(Locator::Css(&format!("{block} .btn-clear"))).await {
        clear.click().await.unwrap();
    }
    visible(browser, &format!("{block} .execute")).await.click().await.unwrap();
    let live = format!("{block} .live-responses-table");
    let status = wait_for(&format!("a response in {operation_id}"), || async {
        let cell = browser.find(Locator::Css(&format!("{live} tbody .response-col_status"))).await.ok()?;
        cell.text().await.ok()?.split_whitespace().next()?.parse::<u16>().ok()
    })
    .await;
    let shown = visible(browser, &format!("{live} tbody .response-col_description pre.microlight")).await;
    // Bring the response into view for the screenshot that follows.
    let table = browser.find(Locator::Css(&live)).await.unwrap();
    browser
        .execute(
            "arguments[0].scrollIntoView({block: 'center'})",
            vec![serde_json::to_value(&table).unwrap()],
        )
        .await
        .unwrap();
    let text = shown.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

#[tokio::test]
async fn in_swagger_ui_one_form_sets_the_identity_for_every_call_and_a_reload_keeps_it() {
    let Some((driver, chromium)) = Driver::start().await else { return };
    let app = spawn_app().await;
    let browser = driver.session(&chromium).await;
    // Whatever happens, end the browser session (it owns Chromium's processes).
    let outcome = std::panic::AssertUnwindSafe(journey(&app, &browser)).catch_unwind().await;
    if outcome.is_err() {
        screenshot(&browser, "failure").await;
    }
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        eprintln!("screenshots and chromedriver logs: {}", artifacts_dir().display());
        std::panic::resume_unwind(panic);
    }
}

async fn journey(app: &TestApp, browser: &Client) {
    browser.goto(&format!("{}/docs", app.address)).await.unwrap();
    let first_operation = visible(browser, "#operations-Issues-createIssue").await;
    screenshot(browser, "01-docs").await;

    // The page: the product's name, a link to the document, the identity form first and
    // Swagger UI's own per-header Authorize button out of the way.
    assert_eq!(browser.title().await.unwrap(), "tenantry API");
    let link = visible(browser, "a[href=\"/openapi.json\"]").await;
    assert_eq!(link.text().await.unwrap(), "/openapi.json");
    let form = visible(browser, "#identity").await;
    assert!(
        form.rectangle().await.unwrap().1 < first_operation.rectangle().await.unwrap().1,
        "the form comes first"
    );
    for field in ["#identity-organization", "#identity-user"] {
        let field = visible(browser, field).await;
        assert_eq!(field.attr("type").await.unwrap(), None, "a plain text input, never masked");
    }
    assert!(
        !browser.find(Locator::Css(".auth-wrapper .authorize")).await.unwrap().is_displayed().await.unwrap()
    );
    identity_status(browser, "Nobody yet").await;

    // Authorize once: all three headers.
    act_as(browser, "acme", "ann", "ADMIN", "02-acme-ann-admin").await;
    let new_issue = json!({"title": "Filed from Swagger UI", "description": "Typed into Try it out.", "priority": "HIGH"});
    let (status, created) = try_it_out(browser, "createIssue", &[], Some(&new_issue)).await;
    screenshot(browser, "03-created").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["title"], "Filed from Swagger UI");
    assert_eq!(created["organizationId"], "acme");
    assert_eq!(created["createdBy"], "ann");
    let id = created["id"].as_i64().expect("an id").to_string();

    let (status, listed) = try_it_out(browser, "listIssues", &[], None).await;
    screenshot(browser, "04-listed").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed, json!([created]), "the list shows the new issue");

    // Another organization, in the same form: acme's issue is not there.
    act_as(browser, "globex", "gus", "ADMIN", "05-globex-gus-admin").await;
    let (status, problem) = try_it_out(browser, "getIssue", &[("id", &id)], None).await;
    screenshot(browser, "06-globex-get-404").await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["detail"], format!("issue {id} not found"));
    let (status, listed) = try_it_out(browser, "listIssues", &[], None).await;
    screenshot(browser, "07-globex-list-empty").await;
    assert_eq!((status, &listed), (200, &json!([])), "globex sees none of acme's issues");

    // A reload keeps who you are: the form says so, and the calls still go as globex.
    // Reloaded without the operation's deep link (#/Issues/listIssues): Swagger UI would
    // scroll to it in an animation that a click could race with.
    browser.execute("history.replaceState(null, '', location.pathname)", vec![]).await.unwrap();
    browser.refresh().await.unwrap();
    visible(browser, "#operations-Issues-listIssues").await;
    identity_status(browser, &acting_as("globex", "gus", "ADMIN")).await;
    assert_eq!(identity_fields(browser).await, ("globex".into(), "gus".into(), "ADMIN".into()));
    // The browser restores the scroll position: bring the form into the screenshot.
    browser.execute("document.getElementById('identity').scrollIntoView()", vec![]).await.unwrap();
    screenshot(browser, "08-reloaded").await;
    let globex_issue = json!({"title": "Filed after a reload", "description": "Still globex."});
    let (status, created_by_globex) = try_it_out(browser, "createIssue", &[], Some(&globex_issue)).await;
    assert_eq!(status, 201, "{created_by_globex}");
    assert_eq!(
        (&created_by_globex["organizationId"], &created_by_globex["createdBy"]),
        (&json!("globex"), &json!("gus"))
    );

    // A MEMBER of acme may read but not change.
    act_as(browser, "acme", "mo", "MEMBER", "09-acme-mo-member").await;
    let change = json!({"status": "DONE"});
    let (status, problem) = try_it_out(browser, "updateIssue", &[("id", &id)], Some(&change)).await;
    screenshot(browser, "10-member-patch-403").await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(
        problem,
        json!({"type": "about:blank", "title": "Forbidden", "status": 403, "detail": "only an ADMIN may do this"})
    );

    // What the browser did really happened, and the refused change did not.
    let stored: Value = app.get(&member("acme"), &format!("/api/issues/{id}")).await.json().await.unwrap();
    assert_eq!(stored, created);

    // Offline: everything the page loaded, and every call it made, came from the service.
    let loaded = browser
        .execute("return performance.getEntriesByType('resource').map(entry => entry.name)", vec![])
        .await
        .unwrap();
    let foreign: Vec<&Value> = loaded
        .as_array()
        .unwrap()
        .iter()
        .filter(|url| !url.as_str().unwrap().starts_with(&format!("{}/", app.address)))
        .collect();
    assert!(foreign.is_empty(), "requests to other hosts: {foreign:?}");
}

/// The bug a new user found in Swagger UI: authorized as one organization, GET issue 1;
/// authorized as another, GET issue 1 again, and the browser showed the first
/// organization's issue. Its cache (keyed by URL) revalidated the first copy with
/// `If-None-Match: "1"`, and the server, whose tag was the version alone, said 304.
#[tokio::test]
async fn switching_organization_in_swagger_ui_never_shows_the_previous_organizations_issue() {
    let Some((driver, chromium)) = Driver::start().await else { return };
    let app = spawn_app().await;
    let browser = driver.session(&chromium).await;
    let outcome = std::panic::AssertUnwindSafe(switching_journey(&app, &browser)).catch_unwind().await;
    if outcome.is_err() {
        screenshot(&browser, "switch-failure").await;
    }
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        eprintln!("screenshots and chromedriver logs: {}", artifacts_dir().display());
        std::panic::resume_unwind(panic);
    }
}

/// `tenantry_issue_revalidations_total` by answer: (changed, not_modified).
async fn revalidations(app: &TestApp) -> (u64, u64) {
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let value = |answer: &str| {
        let series = format!("tenantry_issue_revalidations_total{{answer=\"{answer}\"}} ");
        // Absent counts as 0 (so this test, run against an older server that lacks the
        // series, fails on what the browser shows rather than here).
        text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |count| count.parse().unwrap())
    };
    (value("changed"), value("not_modified"))
}

async fn switching_journey(app: &TestApp, browser: &Client) {
    app.create_ok(&member("initech"), "Initech: TPS report cover sheets").await;
    app.create_ok(&member("hooli"), "Hooli: Nucleus compression ratio").await;
    browser.goto(&format!("{}/docs", app.address)).await.unwrap();
    visible(browser, "#operations-Issues-getIssue").await;

    act_as(browser, "initech", "peter", "MEMBER", "switch-01-initech").await;
    let (status, issue) = try_it_out(browser, "getIssue", &[("id", "1")], None).await;
    assert_eq!((status, &issue["title"]), (200, &json!("Initech: TPS report cover sheets")));
    let (status, list) = try_it_out(browser, "listIssues", &[], None).await;
    assert_eq!((status, &list[0]["title"]), (200, &json!("Initech: TPS report cover sheets")));
    let before = revalidations(app).await;

    act_as(browser, "hooli", "gavin", "MEMBER", "switch-02-hooli").await;
    let (status, issue) = try_it_out(browser, "getIssue", &[("id", "1")], None).await;
    screenshot(browser, "switch-03-hooli-issue").await;
    assert_eq!((status, &issue["title"]), (200, &json!("Hooli: Nucleus compression ratio")), "{issue}");
    let after = revalidations(app).await;
    // The browser did revalidate its copy (the test cannot pass by the cache being off),
    // and the server told it the copy was not current for hooli.
    assert_eq!(after, (before.0 + 1, before.1), "one revalidation, answered with hooli's issue");

    let (status, list) = try_it_out(browser, "listIssues", &[], None).await;
    screenshot(browser, "switch-04-hooli-list").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["title"], "Hooli: Nucleus compression ratio");

    // Revalidating hooli's own copy still saves a body: 304, and the same issue shown.
    let (status, issue) = try_it_out(browser, "getIssue", &[("id", "1")], None).await;
    assert_eq!((status, &issue["title"]), (200, &json!("Hooli: Nucleus compression ratio")), "{issue}");
    assert_eq!(revalidations(app).await, (after.0, after.1 + 1), "a 304 the browser turned into its copy");
}
