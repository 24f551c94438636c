//! Rate limits per organization and per user: RateLimit-* headers on every API response,
//! 429 with Retry-After over the limit, and no organization's limit touching another's.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tenantry::config::RateLimitConfig;

use crate::helpers::*;

async fn limited_app(limits: RateLimitConfig) -> TestApp {
    spawn_app_with(Mode::ApiLogin, move |config| config.rate_limits = limits).await
}

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

/// The most tokens a bucket refilling `per_second` can have regained since `since`: a
/// count taken on a machine that stalled may be higher than the one expected by that much,
/// never lower.
fn refilled_since(since: Instant, per_second: u32) -> u64 {
    (since.elapsed().as_secs_f64() * f64::from(per_second)).floor() as u64
}

#[tokio::test]
async fn every_api_response_says_the_limit_what_remains_and_when_it_resets() {
    let app = limited_app(RateLimitConfig {
        org_per_second: 10,
        org_burst: 50,
        user_per_second: 1,
        user_burst: 20,
    })
    .await;
    let started = Instant::now();
    let first = app.get(&member("acme"), "/api/issues").await;
    // The user's bucket is the tighter one: 20, one taken.
    assert_eq!((header(&first, "ratelimit-limit"), header(&first, "ratelimit-remaining")), (20, 19));
    assert_eq!(header(&first, "ratelimit-reset"), 1);
    // Errors count and say so too.
    let missing = app.get(&member("acme"), "/api/issues/9").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let remaining = header(&missing, "ratelimit-remaining");
    assert!((18..=18 + refilled_since(started, 1)).contains(&remaining), "{remaining}");
    // Outside the API (and before authentication) there is no limit to report.
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert!(health.headers().get("ratelimit-limit").is_none());
    let anonymous = app.request(Method::GET, "/api/issues", None).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().get("ratelimit-limit").is_none());
}

#[tokio::test]
async fn an_organization_over_its_limit_gets_429_and_another_is_untouched() {
    let app =
        limited_app(RateLimitConfig { org_per_second: 1, org_burst: 5, user_per_second: 0, user_burst: 0 })
            .await;
    // acme's five users together use up acme's burst, concurrently.
    let started = Instant::now();
    let hammer: Vec<_> = (0..20)
        .map(|n| {
            let request = app.request(
                Method::GET,
                "/api/issues",
                Some(&Actor { org: "acme".into(), user: format!("u{}", n % 5), role: "MEMBER" }),
            );
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    // Meanwhile globex's requests go through with their own, full, bucket.
    let globex_started = Instant::now();
    for expected in [4, 3, 2] {
        let response = app.get(&member("globex"), "/api/issues").await;
        assert_eq!(response.status(), StatusCode::OK);
        let remaining = header(&response, "ratelimit-remaining");
        assert!(
            (expected..=expected + refilled_since(globex_started, 1)).contains(&remaining),
            "{remaining}"
        );
    }
    let mut statuses = Vec::new();
    for request in hammer {
        let response = request.await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!((1..=1).contains(&header(&response, "retry-after")), "a refill takes 1 s");
            assert_eq!(header(&response, "ratelimit-remaining"), 0);
            assert_eq!(header(&response, "ratelimit-limit"), 5);
            let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
            assert!(problem["detail"].as_str().unwrap().contains("organization"), "{problem}");
            statuses.push(429);
        } else {
            assert_eq!(response.status(), StatusCode::OK);
            statuses.push(200);
        }
    }
    // The burst, and at most what refilled while the test ran, got through.
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!((5..=5 + refilled_since(started, 1)).contains(&admitted), "{statuses:?}");

    // After Retry-After, acme is let in again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get(&member("acme"), "/api/issues").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_user_over_its_limit_does_not_stop_the_rest_of_the_organization() {
    let app = limited_app(RateLimitConfig {
        org_per_second: 100,
        org_burst: 100,
        user_per_second: 1,
        user_burst: 2,
    })
    .await;
    let noisy = member("acme");
    // Creates until one is refused: the burst's two get through (and one more for every
    // second the machine stalled), the next is refused.
    let started = Instant::now();
    let mut created = 0;
    let refused = loop {
        let response = app.create(&noisy, serde_json::json!({"title": "t", "description": "d"})).await;
        if response.status() != StatusCode::CREATED {
            break response;
        }
        created += 1;
        assert!(created <= 2 + refilled_since(started, 1), "never refused");
    };
    assert!(created >= 2, "the burst got through");
    assert_eq!(header(&refused, "retry-after"), 1);
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(problem["detail"].as_str().unwrap().contains("user"), "{problem}");
    // A refused request does nothing: not even a create.
    assert_eq!(count(&app, "select count(*) from app.issues").await, created as i64);

    assert_eq!(app.get(&admin("acme"), "/api/issues").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_rate_of_zero_turns_limits_off() {
    let app =
        limited_app(RateLimitConfig { org_per_second: 0, org_burst: 0, user_per_second: 0, user_burst: 0 })
            .await;
    for _ in 0..50 {
        let response = app.get(&member("acme"), "/api/issues").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit-limit").is_none());
    }
}
