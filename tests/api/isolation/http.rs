//! Organizations never see or touch each other's issues, whatever the request says: with
//! requests going straight to PostgreSQL, and through PgBouncer in transaction mode,
//! where consecutive transactions share server connections (`route_tests!` runs every
//! test here both ways).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// For each test body `fn(TestApp)`, a test `direct::name` and a test
/// `through_pgbouncer::name`.
macro_rules! route_tests {
    ($($name:ident),* $(,)?) => {
        mod direct {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let app = crate::helpers::spawn_app_via(crate::helpers::Route::Direct, stringify!($name));
                    super::$name(&app.await.unwrap()).await;
                }
            )*
        }
        mod through_pgbouncer {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let app = crate::helpers::spawn_app_via(crate::helpers::Route::PgBouncer, stringify!($name));
                    if let Some(app) = app.await {
                        super::$name(&app).await;
                        let through = crate::helpers::pgbouncer_transactions(&app).await;
                        assert!(through > 0, "no transaction went through PgBouncer");
                    }
                }
            )*
        }
    };
}

route_tests!(
    an_organization_cannot_read_list_update_or_delete_anothers_issue,
    a_body_can_never_place_or_move_an_issue_into_another_organization,
    twenty_organizations_creating_at_once_each_list_exactly_their_own,
);

pub async fn an_organization_cannot_read_list_update_or_delete_anothers_issue(app: &TestApp) {
    let theirs = app.create_ok(&member("bravo"), "Bravo's secret").await;
    let (a, b) = (admin("alpha"), admin("bravo"));

    let foreign = assert_problem(app.get(&a, "/api/issues/1").await, StatusCode::NOT_FOUND).await;
    assert!(app.list(&a).await.is_empty());
    let patched =
        assert_problem(app.patch(&a, 1, json!({"title": "Pwned"})).await, StatusCode::NOT_FOUND).await;
    let deleted = assert_problem(app.delete(&a, 1).await, StatusCode::NOT_FOUND).await;

    // Indistinguishable from an issue nobody has.
    app.create_ok(&member("alpha"), "alpha's own").await;
    app.delete(&a, 1).await;
    assert_eq!(foreign, assert_problem(app.get(&a, "/api/issues/1").await, StatusCode::NOT_FOUND).await);
    assert_eq!(
        patched,
        assert_problem(app.patch(&a, 1, json!({"title": "Pwned"})).await, StatusCode::NOT_FOUND).await
    );
    assert_eq!(deleted, assert_problem(app.delete(&a, 1).await, StatusCode::NOT_FOUND).await);

    // Bravo's issue is exactly as it was.
    assert_eq!(app.get(&b, "/api/issues/1").await.json::<Value>().await.unwrap(), theirs);
    assert_eq!(app.list(&b).await, vec![theirs]);
}

async fn a_body_can_never_place_or_move_an_issue_into_another_organization(app: &TestApp) {
    let created = app
        .create(&member("alpha"), json!({"title": "t", "description": "d", "organizationId": "bravo"}))
        .await;
    assert_problem(created, StatusCode::BAD_REQUEST).await;
    assert!(app.list(&member("alpha")).await.is_empty());
    assert!(app.list(&member("bravo")).await.is_empty());

    let mine = app.create_ok(&member("alpha"), "mine").await;
    assert_eq!(mine["organizationId"], "alpha");
    let moved = app.patch(&admin("alpha"), 1, json!({"organizationId": "bravo"})).await;
    assert_problem(moved, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.list(&member("alpha")).await, vec![mine]);
    assert!(app.list(&member("bravo")).await.is_empty());
}

pub async fn twenty_organizations_creating_at_once_each_list_exactly_their_own(app: &TestApp) {
    const ORGS: usize = 20;
    const EACH: usize = 5;
    let creates = (0..ORGS).flat_map(|org| (0..EACH).map(move |n| (org, n))).map(|(org, n)| async move {
        app.create_ok(&member(&format!("org-{org}")), &format!("org-{org} issue {n}")).await
    });
    futures::future::join_all(creates).await;
    for org in 0..ORGS {
        let name = format!("org-{org}");
        let issues = app.list(&member(&name)).await;
        assert_eq!(issues.len(), EACH, "{name}");
        let mut ids: Vec<i64> = issues.iter().map(|i| i["id"].as_i64().unwrap()).collect();
        ids.sort();
        assert_eq!(ids, (1..=EACH as i64).collect::<Vec<_>>(), "{name} numbers 1..{EACH} without gaps");
        for issue in &issues {
            assert_eq!(issue["organizationId"], json!(name));
            assert!(issue["title"].as_str().unwrap().starts_with(&format!("{name} ")));
        }
    }
}
