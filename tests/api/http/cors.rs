//! CORS_ALLOWED_ORIGINS over real HTTP: unset means no CORS header at all; an allowed
//! origin's preflight is answered 204 with its route's methods before authentication and
//! rate limits; every response to an allowed origin can be read by its page (errors
//! included), a disallowed one is served as without CORS; `Vary` keeps the identity
//! headers and gains `Origin`. Hostile `Origin` values get normal answers, and a `*` is
//! refused at start where it would hand header authentication to every web page. Last, a
//! real browser: a page on an allowed origin creates, lists and patches through `fetch`,
//! one on another origin is blocked.

use fantoccini::{Client, Locator};
use futures::FutureExt;
use pg_sandbox::postgres::SUPERUSER;
use poem::listener::{Acceptor, Listener};
use reqwest::{Method, Response, StatusCode, header::HeaderValue};
use serde_json::{Value, json};
use tenantry::{
    App, StartupError,
    config::{AuthMode, Config, JwtConfig, RateLimitConfig},
};

use super::browser::{Driver, artifacts_dir, screenshot, wait_for};
use crate::helpers::*;

const FRONT_END: &str = "https://app.example.com";
const OTHER_ORIGIN: &str = "https://evil.example";
const ALLOW_HEADERS: &str = "x-organization-id, x-user-id, x-user-role, authorization, content-type, \
     if-match, if-none-match, idempotency-key, x-request-id, traceparent, tracestate, last-event-id";
const EXPOSE_HEADERS: &str = "ETag, Link, Location, Retry-After, RateLimit-Limit, RateLimit-Remaining, \
     RateLimit-Reset, Idempotent-Replayed, x-request-id, Server-Timing";
/// `Vary` of an `/api` response under CORS: the identity headers, then `Origin`.
const API_VARY: &str = "Authorization, x-organization-id, x-user-id, x-user-role, Origin";

async fn app_allowing(origins: &str) -> TestApp {
    let origins = origins.to_owned();
    spawn_app_with(Mode::ApiLogin, move |config| config.cors_allowed_origins = Some(origins)).await
}

/// A browser's preflight: OPTIONS with `Origin`, the method it wants and the headers it
/// would send. Not through `TestApp::request`: a preflight is no operation of the document.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.client
        .request(Method::OPTIONS, format!("{}{path}", app.address))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "content-type,x-organization-id,x-user-id,x-user-role")
        .send()
        .await
        .unwrap()
}

/// Every CORS header of a response, by name (one value each), sorted.
fn cors_headers(response: &Response) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            name.as_str().starts_with("access-control-") || name.as_str() == "timing-allow-origin"
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("(not text)").to_owned()))
        .collect();
    found.sort();
    found
}

/// The `Vary` field lines, as sent.
fn vary(response: &Response) -> Vec<String> {
    response.headers().get_all("vary").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// The CORS headers of any response to `origin` (allowed): no more, no less.
fn allowed_for(origin: &str) -> Vec<(String, String)> {
    vec![
        ("access-control-allow-origin".into(), origin.into()),
        ("access-control-expose-headers".into(), EXPOSE_HEADERS.into()),
        ("timing-allow-origin".into(), origin.into()),
    ]
}

/// What an allowed preflight for a route with `methods` carries.
fn preflight_headers(origin: &str, methods: &str) -> Vec<(String, String)> {
    let mut expected = allowed_for(origin);
    expected.extend([
        ("access-control-allow-headers".into(), ALLOW_HEADERS.into()),
        ("access-control-allow-methods".into(), methods.into()),
        ("access-control-max-age".into(), "7200".into()),
    ]);
    expected.sort();
    expected
}

#[tokio::test]
async fn without_cors_allowed_origins_no_response_carries_a_cors_header() {
    let app = spawn_app().await;
    let listed = app.request(Method::GET, "/api/issues", Some(&member("acme"))).header("origin", FRONT_END);
    let listed = listed.send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!((cors_headers(&listed), vary(&listed)), (vec![], vec![API_VARY.replace(", Origin", "")]));

    // A preflight gets what OPTIONS always got: 405, naming the methods there are.
    let refused = preflight(&app, "/api/issues", FRONT_END, "POST").await;
    assert_eq!(refused.headers()["allow"], "GET, HEAD, POST");
    assert!(cors_headers(&refused).is_empty(), "{:?}", cors_headers(&refused));
    assert_problem(refused, StatusCode::METHOD_NOT_ALLOWED).await;

    let health = app.client.get(format!("{}/healthz", app.address)).header("origin", FRONT_END).send().await;
    let health = health.unwrap();
    assert_eq!((cors_headers(&health), vary(&health)), (vec![], vec![]));
}

#[tokio::test]
async fn an_allowed_preflight_is_answered_204_with_its_routes_methods_before_authentication() {
    let app = app_allowing("https://app.example.com, http://localhost:3000").await;
    for (path, methods) in [
        ("/api/issues", "GET, HEAD, POST"),
        ("/api/issues/7", "DELETE, GET, HEAD, PATCH"),
        // No parameter is checked: the route is enough.
        ("/api/issues/not-a-number", "DELETE, GET, HEAD, PATCH"),
        ("/api/issues/7/restore", "POST"),
        ("/api/issues/7/activity", "GET, HEAD"),
        ("/api/activity", "GET, HEAD"),
        ("/api", "GET, HEAD"),
        ("/healthz", "GET, HEAD"),
        ("/openapi.json", "GET, HEAD"),
    ] {
        for origin in [FRONT_END, "http://localhost:3000"] {
            let answer = preflight(&app, path, origin, "GET").await;
            assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{path} from {origin}");
            assert_eq!(cors_headers(&answer), preflight_headers(origin, methods), "{path} from {origin}");
            let expected_vary = if path.starts_with("/api") { API_VARY } else { "Origin" };
            assert_eq!(vary(&answer), [expected_vary], "{path}");
            // Our usual headers, but no identity was read and no rate limit touched.
            assert!(answer.headers().contains_key("x-request-id"));
            assert!(!answer.headers().contains_key("ratelimit-remaining"));
            assert!(answer.bytes().await.unwrap().is_empty());
        }
    }
}

/// A method the route does not have: the same 204 with the route's methods, without the
/// one asked for, so the browser refuses the request itself and says why.
#[tokio::test]
async fn a_preflight_for_a_method_the_route_lacks_gets_the_routes_methods_without_it() {
    let app = app_allowing(FRONT_END).await;
    for (path, asked, methods) in [
        ("/api/issues/7", "PUT", "DELETE, GET, HEAD, PATCH"),
        ("/api/issues", "DELETE", "GET, HEAD, POST"),
        ("/api/issues/7/restore", "GET", "POST"),
        ("/api/issues", "not a method", "GET, HEAD, POST"),
    ] {
        let answer = preflight(&app, path, FRONT_END, asked).await;
        assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{asked} {path}");
        assert_eq!(cors_headers(&answer), preflight_headers(FRONT_END, methods), "{asked} {path}");
    }
}

/// OPTIONS without `Access-Control-Request-Method` is not a preflight: it gets the 405 it
/// always got, readable by the allowed page like any other answer.
#[tokio::test]
async fn options_without_access_control_request_method_is_not_a_preflight() {
    let app = app_allowing(FRONT_END).await;
    let answer = app.request(Method::OPTIONS, "/api/issues/7", None).header("origin", FRONT_END).send().await;
    let answer = answer.unwrap();
    assert_eq!(answer.headers()["allow"], "DELETE, GET, HEAD, PATCH");
    assert_eq!(cors_headers(&answer), allowed_for(FRONT_END));
    assert_eq!(vary(&answer), [API_VARY]);
    assert_problem(answer, StatusCode::METHOD_NOT_ALLOWED).await;
}

/// A path no route has gets no preflight answer: the 404 any method gets there.
#[tokio::test]
async fn a_preflight_for_a_path_without_a_route_is_not_answered() {
    let app = app_allowing(FRONT_END).await;
    for path in ["/api/nope", "/api/issues/", "/api/issues/7/nope", "/nope"] {
        let answer = preflight(&app, path, FRONT_END, "GET").await;
        let headers = cors_headers(&answer);
        assert!(
            !headers.iter().any(|(name, _)| name == "access-control-allow-methods"),
            "{path}: {headers:?}"
        );
        assert_problem(answer, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn every_response_to_an_allowed_origin_is_readable_by_its_page_and_varies_by_origin_too() {
    let limits = RateLimitConfig { org_per_second: 0, org_burst: 0, user_per_second: 1, user_burst: 2 };
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.cors_allowed_origins = Some(FRONT_END.into());
        config.rate_limits = limits;
    })
    .await;
    // Each step as a user of its own: one rate-limit bucket each.
    let user = |name: &str, role| Actor { org: "acme".into(), user: name.into(), role };
    let from_front_end = |method, path: &str, actor: Option<&Actor>| {
        app.request(method, path, actor).header("origin", FRONT_END)
    };
    let created = from_front_end(Method::POST, "/api/issues", Some(&user("ann", "ADMIN")))
        .json(&json!({"title": "From the front end", "description": "d"}))
        .send()
        .await
        .unwrap();
    let listed =
        from_front_end(Method::GET, "/api/issues", Some(&user("bob", "MEMBER"))).send().await.unwrap();
    let missing =
        from_front_end(Method::GET, "/api/issues/99", Some(&user("cy", "MEMBER"))).send().await.unwrap();
    let anonymous = from_front_end(Method::GET, "/api/issues", None).send().await.unwrap();
    let invalid = from_front_end(Method::POST, "/api/issues", Some(&user("di", "ADMIN")))
        .json(&json!({"title": ""}))
        .send()
        .await
        .unwrap();
    let mut limited = None;
    for _ in 0..3 {
        limited = Some(
            from_front_end(Method::GET, "/api/issues", Some(&user("ed", "MEMBER"))).send().await.unwrap(),
        );
    }
    let limited = limited.unwrap();
    for (what, response, status) in [
        ("create", &created, StatusCode::CREATED),
        ("list", &listed, StatusCode::OK),
        ("missing", &missing, StatusCode::NOT_FOUND),
        ("no identity", &anonymous, StatusCode::UNAUTHORIZED),
        ("invalid body", &invalid, StatusCode::BAD_REQUEST),
        ("over the limit", &limited, StatusCode::TOO_MANY_REQUESTS),
    ] {
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(cors_headers(response), allowed_for(FRONT_END), "{what}");
        // Appended in the same field line: the identity headers are all still there.
        assert_eq!(vary(response), [API_VARY], "{what}");
    }
    assert!(limited.headers().contains_key("retry-after"));
    // Outside the document (so not through `TestApp::request`).
    for path in ["/healthz", "/nope"] {
        let answer =
            app.client.get(format!("{}{path}", app.address)).header("origin", FRONT_END).send().await;
        let answer = answer.unwrap();
        assert_eq!((cors_headers(&answer), vary(&answer)), (allowed_for(FRONT_END), vec!["Origin".into()]));
    }
}

/// Another origin gets its normal answer, without a CORS header (its browser keeps it
/// from the page), and with `Vary: Origin`: a cache must not give it to the front end.
#[tokio::test]
async fn a_disallowed_origin_is_served_normally_without_cors_headers() {
    let app = app_allowing(FRONT_END).await;
    app.create_ok(&admin("acme"), "kept").await;
    for origin in [Some(OTHER_ORIGIN), None] {
        let mut request = app.request(Method::GET, "/api/issues", Some(&member("acme")));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let listed = request.send().await.unwrap();
        assert_eq!(listed.status(), StatusCode::OK);
        assert_eq!((cors_headers(&listed), vary(&listed)), (vec![], vec![API_VARY.into()]), "{origin:?}");
        assert_eq!(listed.json::<Vec<Value>>().await.unwrap().len(), 1);
    }
    // Its preflight gets what OPTIONS gets without CORS: 405 with Allow.
    let refused = preflight(&app, "/api/issues", OTHER_ORIGIN, "POST").await;
    assert_eq!((cors_headers(&refused), vary(&refused)), (vec![], vec![API_VARY.into()]));
    assert_eq!(refused.headers()["allow"], "GET, HEAD, POST");
    assert_problem(refused, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn hostile_origin_values_get_normal_answers_never_a_5xx() {
    let app = app_allowing(FRONT_END).await;
    let long = |n: usize| format!("https://{}.example", "a".repeat(n));
    let bytes = |text: &str| HeaderValue::from_bytes(text.as_bytes()).unwrap();
    let cases: Vec<(&str, Vec<HeaderValue>, Option<&str>)> = vec![
        ("null", vec![bytes("null")], None),
        ("8 KiB", vec![bytes(&long(8 * 1024))], None),
        ("60 KiB", vec![bytes(&long(60 * 1024))], None),
        ("not ASCII", vec![bytes("https://äpp.example.com")], None),
        ("a trailing slash", vec![bytes("https://app.example.com/")], None),
        ("the default port", vec![bytes("https://app.example.com:443")], None),
        ("another scheme", vec![bytes("http://app.example.com")], None),
        ("a longer host", vec![bytes("https://app.example.com.evil.example")], None),
        ("empty", vec![bytes("")], None),
        ("twice the same", vec![bytes(FRONT_END), bytes(FRONT_END)], None),
        ("two origins", vec![bytes(FRONT_END), bytes(OTHER_ORIGIN)], None),
        // Scheme and host are case-insensitive: allowed, and answered as sent.
        ("upper case", vec![bytes("HTTPS://APP.EXAMPLE.COM")], Some("HTTPS://APP.EXAMPLE.COM")),
    ];
    for (what, origins, allowed) in cases {
        let mut list = app.request(Method::GET, "/api/issues", Some(&member("acme")));
        let mut options = app
            .client
            .request(Method::OPTIONS, format!("{}/api/issues", app.address))
            .header("access-control-request-method", "POST");
        for origin in &origins {
            list = list.header("origin", origin.clone());
            options = options.header("origin", origin.clone());
        }
        let listed = list.send().await.unwrap();
        assert_eq!(listed.status(), StatusCode::OK, "{what}");
        assert_eq!(vary(&listed), [API_VARY], "{what}");
        let answer = options.send().await.unwrap();
        match allowed {
            Some(origin) => {
                assert_eq!(cors_headers(&listed), allowed_for(origin), "{what}");
                assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{what}");
                assert_eq!(cors_headers(&answer), preflight_headers(origin, "GET, HEAD, POST"), "{what}");
            }
            None => {
                assert_eq!(cors_headers(&listed), [], "{what}");
                assert_eq!(cors_headers(&answer), [], "{what}");
                assert_problem(answer, StatusCode::METHOD_NOT_ALLOWED).await;
            }
        }
    }
}

/// Preflights carry no identity and use up no one's allowance (answered before rate
/// limits, even when identity headers come along), and count under their route.
#[tokio::test]
async fn preflights_skip_rate_limits_and_are_counted_under_their_route() {
    let limits = RateLimitConfig { org_per_second: 1, org_burst: 1, user_per_second: 1, user_burst: 1 };
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.cors_allowed_origins = Some(FRONT_END.into());
        config.rate_limits = limits;
    })
    .await;
    let ann = admin("acme");
    for _ in 0..10 {
        let answer = app
            .client
            .request(Method::OPTIONS, format!("{}/api/issues/1", app.address))
            .header("origin", FRONT_END)
            .header("access-control-request-method", "PATCH")
            .header("x-organization-id", &ann.org)
            .header("x-user-id", &ann.user)
            .header("x-user-role", ann.role)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    }
    // The whole burst of one is still there.
    let listed = app.request(Method::GET, "/api/issues", Some(&ann)).header("origin", FRONT_END).send().await;
    let listed = listed.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(listed.headers()["ratelimit-remaining"], "0");
    let refused = preflight(&app, "/api/issues", OTHER_ORIGIN, "POST").await;
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);

    let metrics =
        app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    for line in [
        "tenantry_http_requests_total{method=\"OPTIONS\",route=\"/api/issues/{id}\",status=\"204\"} 10",
        "tenantry_http_requests_total{method=\"OPTIONS\",route=\"/api/issues\",status=\"405\"} 1",
        "tenantry_http_requests_total{method=\"GET\",route=\"/api/issues\",status=\"200\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in:\n{metrics}");
    }
    assert!(!metrics.contains("route=\"other\""), "{metrics}");
    assert!(metrics.contains("tenantry_rate_limited_total{scope=\"user\"} 0"), "{metrics}");
}

/// Settings on a database of their own, so a start that wrongly succeeds is not the
/// private cluster's.
async fn config_with(origins: &str, mode: AuthMode, allow_header_auth_on_network: bool) -> Config {
    let database = fresh_database().await;
    Config {
        port: 0,
        database_url: Some(cluster().pg.url(SUPERUSER, &database)),
        api_database_url: Some(cluster().pg.url(tenantry::db::API_ROLE, &database)),
        cors_allowed_origins: Some(origins.into()),
        auth_mode: mode,
        allow_header_auth_on_network,
        jwt: JwtConfig {
            jwt_secret: Some("a test secret that is long enough for HS256".into()),
            jwt_audience: Some("tenantry-api".into()),
            ..Default::default()
        },
        ..Config::default()
    }
}

/// `*` lets every page read the API. With header authentication that is every page acting
/// as anyone: refused at start unless ALLOW_HEADER_AUTH_ON_NETWORK=1. Allowed, the headers
/// are the same for every origin (`*`), so nothing varies by it.
#[tokio::test]
async fn a_star_is_refused_with_header_authentication_unless_allowed_and_then_answers_every_origin() {
    let refused = App::build(&config_with("*", AuthMode::Headers, false).await).await.err().expect("refused");
    assert!(matches!(refused, StartupError::Cors(_)), "{refused}");
    assert!(refused.to_string().contains("ALLOW_HEADER_AUTH_ON_NETWORK=1"), "{refused}");
    App::build(&config_with("*", AuthMode::Jwt, false).await).await.expect("jwt needs no permission");

    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.cors_allowed_origins = Some(" * ".into());
        config.allow_header_auth_on_network = true;
    })
    .await;
    for origin in [Some("null"), Some(OTHER_ORIGIN), None] {
        let mut request = app.request(Method::GET, "/api/issues", Some(&member("acme")));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let listed = request.send().await.unwrap();
        assert_eq!(cors_headers(&listed), allowed_for("*"), "{origin:?}");
        assert_eq!(vary(&listed), [API_VARY.replace(", Origin", "")], "{origin:?}");
    }
    let answer = preflight(&app, "/api/issues/1", "null", "PATCH").await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(cors_headers(&answer), preflight_headers("*", "DELETE, GET, HEAD, PATCH"));
}

#[tokio::test]
async fn what_is_not_an_origin_is_refused_at_start_saying_why() {
    for (origins, reason) in [
        ("https://app.example.com/", "has a path"),
        ("https://app.example.com, https://app.example.com/app", "has a path"),
        ("app.example.com", "has no scheme://"),
        ("https://*.example.com", "wildcard"),
        ("null", "sandboxed"),
        ("https://bücher.example", "xn--"),
        ("https://app.example.com:99999", "port"),
        ("https://app.example.com, *", "stands alone"),
    ] {
        let refused = App::build(&config_with(origins, AuthMode::Jwt, false).await).await.err();
        let refused = refused.unwrap_or_else(|| panic!("{origins:?} was accepted"));
        let message = refused.to_string();
        assert!(message.starts_with("CORS_ALLOWED_ORIGINS: "), "{message}");
        assert!(message.contains(reason), "{origins:?}: {message}");
    }
}

/// A page for the browser: with the API's address from its query string, it creates two
/// issues as an ADMIN, lists one per page (reading `Link`), reads the first issue's
/// `ETag`, patches it with `If-Match`, tries the stale tag again, and writes what it saw
/// as JSON into `#result` (or the error `fetch` threw).
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>front end</title></head>
<body><h1>A front end on another origin</h1>
<script>
const api = new URLSearchParams(location.search).get('api');
const who = {'x-organization-id': 'acme', 'x-user-id': 'ann', 'x-user-role': 'ADMIN'};
const json = {'content-type': 'application/json'};
async function journey() {
  const seen = {};
  try {
    seen.created = [];
    for (const title of ['First from the page', 'Second from the page']) {
      const response = await fetch(`${api}/api/issues`, {
        method: 'POST', headers: {...who, ...json},
        body: JSON.stringify({title, description: 'sent by fetch'}),
      });
      const body = await response.json();
      seen.created.push({status: response.status, location: response.headers.get('location'),
                         etag: response.headers.get('etag'), id: body.id});
    }
    const page = await fetch(`${api}/api/issues?limit=1`, {headers: who});
    seen.list = {status: page.status, link: page.headers.get('link'),
                 ids: (await page.json()).map(issue => issue.id),
                 requestId: page.headers.get('x-request-id'),
                 rateLimitRemaining: page.headers.get('ratelimit-remaining')};
    const id = seen.created[0].id;
    const got = await fetch(`${api}/api/issues/${id}`, {headers: who});
    const etag = got.headers.get('etag');
    const change = {method: 'PATCH', headers: {...who, ...json, 'if-match': etag},
                    body: JSON.stringify({status: 'DONE'})};
    const patched = await fetch(`${api}/api/issues/${id}`, change);
    seen.patch = {etag, status: patched.status, newEtag: patched.headers.get('etag'),
                  issueStatus: (await patched.json()).status};
    const stale = await fetch(`${api}/api/issues/${id}`, change);
    seen.stale = {status: stale.status, title: (await stale.json()).title};
  } catch (error) {
    seen.error = `${error.name}: ${error.message}`;
  }
  const result = document.createElement('pre');
  result.id = 'result';
  result.textContent = JSON.stringify(seen);
  document.body.appendChild(result);
}
journey();
</script></body></html>"#;

/// A second origin for the browser: a poem server of its own on a free port that answers
/// `GET /` with [`PAGE`]. Stops when dropped.
struct PageServer {
    origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_page() -> PageServer {
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let page = poem::Route::new().at("/", poem::get(poem::endpoint::make_sync(|_| poem::web::Html(PAGE))));
    let task = tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(page).await;
    });
    PageServer { origin: format!("http://127.0.0.1:{port}"), task }
}

/// What the page wrote into `#result`, once it has.
async fn page_result(browser: &Client) -> Value {
    let text = wait_for("the page's #result", || async {
        browser.find(Locator::Id("result")).await.ok()?.text().await.ok()
    })
    .await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn in_a_real_browser_a_page_on_an_allowed_origin_creates_lists_and_patches_and_another_is_blocked() {
    let Some((driver, chromium)) = Driver::start().await else { return };
    let (front_end, elsewhere) = (serve_page().await, serve_page().await);
    let app = app_allowing(&front_end.origin).await;
    let browser = driver.session(&chromium).await;
    let outcome = std::panic::AssertUnwindSafe(browser_journey(&app, &browser, &front_end, &elsewhere))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        screenshot(&browser, "cors-failure").await;
    }
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        eprintln!("screenshots and chromedriver logs: {}", artifacts_dir().display());
        std::panic::resume_unwind(panic);
    }
}

async fn browser_journey(app: &TestApp, browser: &Client, front_end: &PageServer, elsewhere: &PageServer) {
    browser.goto(&format!("{}/?api={}", front_end.origin, app.address)).await.unwrap();
    let seen = page_result(browser).await;
    screenshot(browser, "cors-01-allowed-origin").await;
    assert_eq!(seen.get("error"), None, "{seen}");
    let created = seen["created"].as_array().unwrap();
    for (n, issue) in created.iter().enumerate() {
        let id = n + 1;
        assert_eq!(issue["status"], 201, "{seen}");
        assert_eq!(issue["id"], id, "{seen}");
        // Location and ETag are exposed to the page.
        assert_eq!(issue["location"], format!("/api/issues/{id}"), "{seen}");
        assert!(issue["etag"].as_str().is_some_and(|tag| tag.starts_with('"')), "{seen}");
    }
    let list = &seen["list"];
    assert_eq!((&list["status"], list["ids"].as_array().map(Vec::len)), (&json!(200), Some(1)), "{seen}");
    let link = list["link"].as_str().unwrap_or_else(|| panic!("the page could not read Link: {seen}"));
    assert!(link.starts_with("</api/issues?") && link.ends_with(">; rel=\"next\""), "{link}");
    assert!(list["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{seen}");
    assert!(list["rateLimitRemaining"].as_str().is_some(), "{seen}");
    let patch = &seen["patch"];
    assert!(patch["etag"].as_str().is_some_and(|tag| tag.starts_with('"')), "{seen}");
    assert_eq!((&patch["status"], &patch["issueStatus"]), (&json!(200), &json!("DONE")), "{seen}");
    assert_ne!(patch["newEtag"], patch["etag"], "{seen}");
    // The stale tag's 412 problem is readable too.
    assert_eq!(seen["stale"], json!({"status": 412, "title": "Precondition Failed"}), "{seen}");

    // The same page from an origin that is not allowed: the browser refuses the
    // preflight's answer and `fetch` rejects; the POST never reaches the server.
    browser.goto(&format!("{}/?api={}", elsewhere.origin, app.address)).await.unwrap();
    let seen = page_result(browser).await;
    screenshot(browser, "cors-02-other-origin").await;
    assert_eq!(seen, json!({"created": [], "error": "TypeError: Failed to fetch"}));
    let stored = app.list(&admin("acme")).await;
    assert_eq!(stored.len(), 2, "only the allowed page created issues: {stored:?}");
    let first = stored.iter().find(|issue| issue["id"] == 1).unwrap();
    assert_eq!(first["status"], "DONE");
}
