//! The list body is written by hand from the rows (`db::issues::IssueRows`, borrowed as
//! `IssueRef`s): it must be byte for byte what serde gives for the same rows as `Issue`s.

use serde_json::json;
use tenantry::{
    db,
    domain::{Role, TenantContext},
    http::extract::json::ListBody,
};

use crate::helpers::*;

#[tokio::test]
async fn the_list_written_from_rows_equals_the_issues_serialized_by_serde() {
    let app = spawn_app().await;
    app.create_ok(&member("alpha"), "plain").await;
    let tricky = json!({
        "title": "Quotes \" and \\ backslashes, tabs\tnot allowed here but ünïcödé and 🚀 are",
        "description": "line one\nline two\twith a tab, </script> and \u{2028}",
        "status": "IN_PROGRESS",
        "priority": "HIGH",
        "assigneeId": "dev-7",
    });
    let created = app.create(&member("alpha"), tricky).await;
    assert_eq!(created.status(), reqwest::StatusCode::BAD_REQUEST, "a tab in a title is refused");
    let tricky = json!({
        "title": "Quotes \" and \\ backslashes, ünïcödé and 🚀",
        "description": "line one\nline two\twith a tab, </script> and \u{2028}",
        "status": "IN_PROGRESS",
        "priority": "HIGH",
        "assigneeId": "dev-7",
    });
    assert_eq!(app.create(&member("alpha"), tricky).await.status(), reqwest::StatusCode::CREATED);
    app.patch(&admin("alpha"), 1, json!({"status": "DONE", "priority": "LOW"})).await;

    let ctx = TenantContext { org_id: "alpha".into(), user_id: "reader".into(), role: Role::Member };
    let rows = db::issues::list(&app.app_db, &ctx, &Default::default()).await.unwrap();
    assert_eq!(rows.len(), 2);
    let (body, _) = ListBody::<tenantry::domain::Issue>::page(rows.items(), None).unwrap();
    let from_rows = String::from_utf8(body.json().to_vec()).unwrap();
    // Every body ends with a line break (http::extract::json::PAGE_END).
    let from_issues = serde_json::to_string(&rows.to_issues().unwrap()).unwrap() + "\n";
    assert_eq!(from_rows, from_issues);

    // And it is what the endpoint sends.
    let served = app.get(&member("alpha"), "/api/issues").await.text().await.unwrap();
    assert_eq!(served, from_rows);
}
