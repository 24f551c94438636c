//! The HTTP contract of the five issue endpoints, and the activity they record.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn creating_an_issue_returns_201_its_location_and_the_defaults() {
    let app = spawn_app().await;
    let response =
        app.create(&member("acme"), json!({"title": "Login fails", "description": "500 on submit"})).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["location"], "/api/issues/1");
    assert_eq!(response.headers()["content-type"], "application/json");
    let issue: Value = response.json().await.unwrap();
    assert_eq!(issue["id"], 1);
    assert_eq!(issue["title"], "Login fails");
    assert_eq!(issue["description"], "500 on submit");
    assert_eq!(issue["status"], "OPEN");
    assert_eq!(issue["priority"], "MEDIUM");
    assert_eq!(issue["assigneeId"], Value::Null);
    assert_eq!(issue["organizationId"], "acme");
    assert_eq!(issue["createdBy"], "member-of-acme");
    assert_eq!(issue["createdAt"], issue["updatedAt"]);
    let created_at = issue["createdAt"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339).is_ok());
    assert!(created_at.ends_with('Z') && created_at.len() == "2026-01-01T00:00:00.000000Z".len());
    let keys: Vec<&String> = issue.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 10, "exactly the documented fields: {keys:?}");
}

#[tokio::test]
async fn creating_an_issue_keeps_the_given_status_priority_and_assignee() {
    let app = spawn_app().await;
    let body = json!({"title": "t", "description": "d", "status": "IN_PROGRESS", "priority": "HIGH", "assigneeId": "bob@acme"});
    let issue: Value = app.create(&admin("acme"), body).await.json().await.unwrap();
    assert_eq!(issue["status"], "IN_PROGRESS");
    assert_eq!(issue["priority"], "HIGH");
    assert_eq!(issue["assigneeId"], "bob@acme");

    let fetched: Value = app.get(&member("acme"), "/api/issues/1").await.json().await.unwrap();
    assert_eq!(fetched, issue);
}

#[tokio::test]
async fn each_organization_numbers_its_issues_from_1_and_never_reuses_a_number() {
    let app = spawn_app().await;
    assert_eq!(app.create_ok(&member("a"), "a1").await["id"], 1);
    assert_eq!(app.create_ok(&member("a"), "a2").await["id"], 2);
    assert_eq!(app.create_ok(&member("b"), "b1").await["id"], 1);

    assert_eq!(app.delete(&admin("a"), 2).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.create_ok(&member("a"), "a3").await["id"], 3, "2 is not reused");
    assert_eq!(app.create_ok(&member("b"), "b2").await["id"], 2, "b's numbering is its own");
}

#[tokio::test]
async fn listing_returns_the_organizations_issues_newest_first() {
    let app = spawn_app().await;
    assert_eq!(app.list(&member("acme")).await, Vec::<Value>::new());
    for title in ["first", "second", "third"] {
        app.create_ok(&member("acme"), title).await;
    }
    let titles: Vec<Value> = app.list(&admin("acme")).await.into_iter().map(|i| i["title"].clone()).collect();
    assert_eq!(titles, vec![json!("third"), json!("second"), json!("first")]);
}

#[tokio::test]
async fn getting_a_missing_issue_is_404() {
    let app = spawn_app().await;
    let problem =
        assert_problem(app.get(&member("acme"), "/api/issues/42").await, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["detail"], "issue 42 not found");
}

#[tokio::test]
async fn an_admin_patch_changes_only_the_given_fields_and_moves_updated_at() {
    let app = spawn_app().await;
    let before = app.create_ok(&member("acme"), "Old title").await;

    let response = app.patch(&admin("acme"), 1, json!({"title": "New title", "status": "DONE"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["title"], "New title");
    assert_eq!(after["status"], "DONE");
    assert_eq!(after["description"], before["description"]);
    assert_eq!(after["priority"], before["priority"]);
    assert_eq!(after["createdAt"], before["createdAt"]);
    assert!(after["updatedAt"].as_str() > before["updatedAt"].as_str(), "updatedAt moves");
    assert_eq!(app.get(&member("acme"), "/api/issues/1").await.json::<Value>().await.unwrap(), after);
}

#[tokio::test]
async fn patching_assignee_to_null_unassigns_and_absent_leaves_it() {
    let app = spawn_app().await;
    app.create(&member("acme"), json!({"title": "t", "description": "d", "assigneeId": "bob"})).await;

    let kept: Value = app.patch(&admin("acme"), 1, json!({"priority": "LOW"})).await.json().await.unwrap();
    assert_eq!(kept["assigneeId"], "bob");
    let cleared: Value =
        app.patch(&admin("acme"), 1, json!({"assigneeId": null})).await.json().await.unwrap();
    assert_eq!(cleared["assigneeId"], Value::Null);
    let reassigned: Value =
        app.patch(&admin("acme"), 1, json!({"assigneeId": "carol"})).await.json().await.unwrap();
    assert_eq!(reassigned["assigneeId"], "carol");
}

#[tokio::test]
async fn an_empty_or_same_value_patch_changes_nothing_and_records_nothing() {
    let app = spawn_app().await;
    let before = app.create_ok(&member("acme"), "Same").await;

    for body in [json!({}), json!({"title": "Same", "status": "OPEN"})] {
        let response = app.patch(&admin("acme"), 1, body).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap(), before, "unchanged, updatedAt included");
    }
    let actions = activity(&app, "acme").await;
    assert_eq!(actions.len(), 1, "only the created entry: {actions:?}");
}

#[tokio::test]
async fn a_member_may_not_patch_or_delete_and_nothing_changes() {
    let app = spawn_app().await;
    let before = app.create_ok(&member("acme"), "Keep me").await;

    let problem = assert_problem(
        app.patch(&member("acme"), 1, json!({"title": "Hacked"})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(problem["detail"], "only an ADMIN may do this");
    assert_problem(app.delete(&member("acme"), 1).await, StatusCode::FORBIDDEN).await;
    // Refused before the body or the issue is looked at.
    assert_problem(app.patch(&member("acme"), 999, json!({"bogus": 1})).await, StatusCode::FORBIDDEN).await;

    assert_eq!(app.get(&member("acme"), "/api/issues/1").await.json::<Value>().await.unwrap(), before);
    assert_eq!(activity(&app, "acme").await.len(), 1);
}

#[tokio::test]
async fn an_admin_deletes_with_204_and_the_issue_is_gone() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "Doomed").await;

    let response = app.delete(&admin("acme"), 1).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.text().await.unwrap(), "");
    assert_problem(app.get(&admin("acme"), "/api/issues/1").await, StatusCode::NOT_FOUND).await;
    assert_problem(app.delete(&admin("acme"), 1).await, StatusCode::NOT_FOUND).await;
    assert_problem(app.patch(&admin("acme"), 1, json!({"title": "x"})).await, StatusCode::NOT_FOUND).await;
    assert!(app.list(&admin("acme")).await.is_empty());
}

/// The activity entries of an organization, oldest first, read as the owner.
async fn activity(app: &TestApp, org: &str) -> Vec<(i64, i64, String, String, Value)> {
    app.owner_sql()
        .await
        .query(
            "select id, issue_id, actor_id, action, changes from app.activity_logs \
             where organization_id = $1 order by id",
            &[&org],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn create_update_and_delete_each_record_who_did_what() {
    let app = spawn_app().await;
    let created = app.create_ok(&member("acme"), "Tracked").await;
    let updated: Value = app
        .patch(&admin("acme"), 1, json!({"status": "IN_PROGRESS", "assigneeId": "dana", "title": "Tracked"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.delete(&admin("acme"), 1).await.status(), StatusCode::NO_CONTENT);

    let entries = activity(&app, "acme").await;
    assert_eq!(entries.len(), 3);
    let (id, issue, actor, action, changes) = &entries[0];
    assert_eq!((*id, *issue, actor.as_str(), action.as_str()), (1, 1, "member-of-acme", "created"));
    let mut created_with_version = created.clone();
    created_with_version["version"] = json!(1);
    assert_eq!(changes, &created_with_version, "the created entry holds the new issue");

    let (_, _, actor, action, changes) = &entries[1];
    assert_eq!((actor.as_str(), action.as_str()), ("admin-of-acme", "updated"));
    assert_eq!(
        changes,
        &json!({"status": {"from": "OPEN", "to": "IN_PROGRESS"}, "assigneeId": {"from": null, "to": "dana"}}),
        "only the fields that changed"
    );

    let (_, _, actor, action, changes) = &entries[2];
    assert_eq!((actor.as_str(), action.as_str()), ("admin-of-acme", "deleted"));
    let mut final_issue = updated.clone();
    final_issue["version"] = json!(2);
    assert_eq!(changes, &final_issue, "the deleted entry holds the whole final issue");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_responses() {
    let app = spawn_app().await;
    let actor = admin("acme");
    assert_problem(app.get(&actor, "/api/nope").await, StatusCode::NOT_FOUND).await;
    let put = app.request(Method::PUT, "/api/issues/1", Some(&actor)).send().await.unwrap();
    assert_eq!(put.headers()["allow"], "DELETE, GET, HEAD, PATCH");
    assert_problem(put, StatusCode::METHOD_NOT_ALLOWED).await;
    let trace = app.request(Method::TRACE, "/api/issues", Some(&actor)).send().await.unwrap();
    assert_eq!(trace.headers()["allow"], "GET, HEAD, POST");
    assert_problem(trace, StatusCode::METHOD_NOT_ALLOWED).await;
}
