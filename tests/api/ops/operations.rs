//! What operators see: /healthz, /readyz, request ids, Prometheus metrics.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::db::migrate::latest_version;

use crate::helpers::*;

async fn plain_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(format!("{}{path}", app.address)).send().await.unwrap()
}

#[tokio::test]
async fn healthz_answers_without_identity_and_readyz_checks_the_database_and_migrations() {
    let app = spawn_app().await;
    let health = plain_get(&app, "/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let ready = plain_get(&app, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let expected = latest_version();
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready", "schemaVersion": expected, "expectedSchemaVersion": expected})
    );

    // A database that lacks this binary's newest migration is not ready.
    app.owner_sql()
        .await
        .execute("delete from refinery_schema_history where version = $1", &[&expected])
        .await
        .unwrap();
    let behind = plain_get(&app, "/readyz").await;
    assert_eq!(behind.headers()["retry-after"], "2");
    let problem = assert_problem(behind, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"].as_str().unwrap().contains(&format!("needs V{expected}")), "{problem}");
    assert_eq!(plain_get(&app, "/healthz").await.status(), StatusCode::OK, "alive all the same");
}

#[tokio::test]
async fn a_request_id_is_taken_from_the_client_or_made_and_always_echoed() {
    let app = spawn_app().await;
    let given = app
        .request(Method::GET, "/api/issues", Some(&member("acme")))
        .header("x-request-id", "trace-42.a:b")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-42.a:b");

    let mut made = Vec::new();
    for bad in [None, Some("has space"), Some(&*"x".repeat(129))] {
        let mut request = app.request(Method::GET, "/api/issues/1", Some(&member("acme")));
        if let Some(bad) = bad {
            request = request.header("x-request-id", bad);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "errors carry one too");
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        made.push(id);
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 3, "each request gets its own");
    // Outside the API and for unknown routes too.
    assert!(plain_get(&app, "/nowhere").await.headers().contains_key("x-request-id"));
}

/// Made ids are random: a prefix and a counter would let any caller count every other
/// tenant's requests between two of its own.
#[tokio::test]
async fn made_request_ids_tell_nothing_about_other_requests() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        let response = plain_get(&app, "/healthz").await;
        ids.push(response.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    // 32 random hex digits: 50 ids sharing no 8-digit prefix (a counter's share 16) and
    // no 8-digit suffix (a counter's differ in the last few).
    let distinct = |part: fn(&String) -> &str| {
        let mut parts: Vec<&str> = ids.iter().map(part).collect();
        parts.sort();
        parts.dedup();
        parts.len()
    };
    assert_eq!(distinct(|id| &id[..8]), ids.len(), "{ids:?}");
    assert_eq!(distinct(|id| &id[24..]), ids.len(), "{ids:?}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_time_them_and_show_the_pool() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "counted").await;
    for path in ["/api/issues/1", "/api/issues/1", "/api/issues/2", "/api/nope"] {
        app.get(&member("acme"), path).await;
    }
    let response = plain_get(&app, "/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    for line in [
        "tenantry_http_requests_total{method=\"POST\",route=\"/api/issues\",status=\"201\"} 1",
        "tenantry_http_requests_total{method=\"GET\",route=\"/api/issues/{id}\",status=\"200\"} 2",
        "tenantry_http_requests_total{method=\"GET\",route=\"/api/issues/{id}\",status=\"404\"} 1",
        // Unknown paths share one series: no label explosion.
        "tenantry_http_requests_total{method=\"\",route=\"other\",status=\"404\"} 1",
        "tenantry_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/issues/{id}\",le=\"+Inf\"} 3",
        "tenantry_http_request_duration_seconds_count{method=\"GET\",route=\"/api/issues/{id}\"} 3",
        "# TYPE tenantry_http_request_duration_seconds histogram",
        "tenantry_db_pool_max_connections 8",
        "tenantry_db_pool_waiting 0",
        // The scrape itself is in flight.
        "tenantry_http_requests_in_flight 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    let gauge = |state: &str| -> u64 {
        let prefix = format!("tenantry_db_pool_connections{{state=\"{state}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse().unwrap()
    };
    assert_eq!(gauge("in_use"), 0);
    assert!(gauge("idle") >= 1, "{text}");
    // Buckets are cumulative and end at the count.
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("tenantry_http_request_duration_seconds_bucket{method=\"POST\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]) && buckets.last() == Some(&1), "{buckets:?}");
}

/// A request answered by REQUEST_TIMEOUT_MS (no handler finished, so no operation is known)
/// is still counted under its method and route, not as `method="", route="other"`.
#[tokio::test]
async fn a_timed_out_request_keeps_its_method_and_route_in_the_metrics() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.request_timeout_ms = 300).await;
    app.create_ok(&member("acme"), "locked").await;
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let late = app.patch(&admin("acme"), 1, json!({"title": "late"})).await;
    assert_problem(late, StatusCode::SERVICE_UNAVAILABLE).await;
    blocker.rollback().await.unwrap();
    let metrics = plain_get(&app, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "tenantry_http_requests_total{method=\"PATCH\",route=\"/api/issues/{id}\",status=\"503\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("route=\"other\",status=\"503\""), "{metrics}");
}

/// `/` and `/api` point a newcomer to the docs and the document, without identity; every
/// unknown query parameter of a request is named in its one 400.
#[tokio::test]
async fn the_root_and_api_paths_point_to_the_docs_and_every_unknown_parameter_is_named() {
    let app = spawn_app().await;
    for path in ["/", "/api"] {
        let index = plain_get(&app, path).await;
        assert_eq!(index.status(), StatusCode::OK, "{path}");
        let body: Value = index.json().await.unwrap();
        assert_eq!((body["docs"].as_str(), body["openapi"].as_str()), (Some("/docs"), Some("/openapi.json")));
        for link in ["docs", "openapi", "health"] {
            let target = plain_get(&app, body[link].as_str().unwrap()).await;
            assert_eq!(target.status(), StatusCode::OK, "{path} -> {link}");
        }
    }
    for path in ["/", "/api"] {
        let head = app.client.head(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        let post = app.client.post(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED, "POST {path}");
        assert_eq!(post.headers()["allow"], "GET, HEAD", "POST {path}");
    }
    let metrics = plain_get(&app, "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("route=\"/\",status=\"200\""), "/ counts as its own route");
    assert!(metrics.contains("route=\"/api\",status=\"200\""));

    let refused = app.get(&member("acme"), "/api/issues?stauts=OPEN&limt=5&limit=1&limit=2").await;
    let problem = assert_problem(refused, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["stauts", "limt", "limit"]);
}
