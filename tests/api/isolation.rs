//! Organizations never see or touch each other's issues, whatever the request says.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn an_organization_cannot_read_list_update_or_delete_anothers_issue() {
    let app = spawn_app().await;
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

#[tokio::test]
async fn a_body_can_never_place_or_move_an_issue_into_another_organization() {
    let app = spawn_app().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_organizations_creating_at_once_each_list_exactly_their_own() {
    const ORGS: usize = 20;
    const EACH: usize = 5;
    let app = std::sync::Arc::new(spawn_app().await);
    let mut tasks = Vec::new();
    for org in 0..ORGS {
        for n in 0..EACH {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let actor = member(&format!("org-{org}"));
                app.create_ok(&actor, &format!("org-{org} issue {n}")).await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
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
