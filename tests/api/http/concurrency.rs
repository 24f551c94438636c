//! Optimistic concurrency and caches: entity tags made for one issue of one organization
//! at one version, If-None-Match (304) on GET, If-Match (412) on PATCH and DELETE, decided
//! in SQL so that concurrent writers holding the same tag cannot both win; and a strict
//! header syntax (a malformed tag is a 400, never a condition that silently cannot match).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;

pub fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// The tag the format promises, computed here from the database's key (not by the
/// service's code): `"<version>.<base64url of the first 16 bytes of HMAC-SHA256(key,
/// organization 0 id 0 version)>"`.
pub async fn expected_tag(app: &TestApp, org: &str, id: i64, version: i64) -> String {
    let key: Vec<u8> = app
        .owner_sql()
        .await
        .query_one("select key from secrets.keys where name = 'etag'", &[])
        .await
        .unwrap()
        .get(0);
    tag_with_key(&key, org, id, version)
}

pub fn tag_with_key(key: &[u8], org: &str, id: i64, version: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{org}\0{id}\0{version}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!("\"{version}.{}\"", URL_SAFE_NO_PAD.encode(&bytes[..16]))
}

async fn patch_if_match(app: &TestApp, if_match: &str, body: Value) -> reqwest::Response {
    app.request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
        .header("if-match", if_match)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_issue_response_carries_the_tag_of_its_organization_issue_and_version() {
    let app = spawn_app().await;
    let v1 = expected_tag(&app, "acme", 1, 1).await;
    let created = app.create(&member("acme"), json!({"title": "t", "description": "d"})).await;
    assert_eq!(etag(&created), v1);
    assert_eq!(etag(&app.get(&member("acme"), "/api/issues/1").await), v1);

    let changed = app.patch(&admin("acme"), 1, json!({"status": "DONE"})).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let v2 = expected_tag(&app, "acme", 1, 2).await;
    assert_eq!(etag(&changed), v2);
    // A no-op patch changes nothing, the version included.
    assert_eq!(etag(&app.patch(&admin("acme"), 1, json!({"status": "DONE"})).await), v2);
    assert_eq!(etag(&app.get(&member("acme"), "/api/issues/1").await), v2);

    // Another organization's issue 1 at version 1 has another tag.
    let other = app.create(&member("globex"), json!({"title": "t", "description": "d"})).await;
    assert_eq!(etag(&other), expected_tag(&app, "globex", 1, 1).await);
    assert_ne!(etag(&other), v1);

    // A restore answers with the restored issue's tag (a delete and a restore: version 4).
    assert_eq!(app.delete(&admin("acme"), 1).await.status(), StatusCode::NO_CONTENT);
    let restored = app.restore(&admin("acme"), 1).await;
    assert_eq!(restored.status(), StatusCode::OK);
    let version = restored.headers()["etag"].to_str().unwrap().to_owned();
    let current_version =
        count(&app, "select version from app.issues where organization_id = 'acme' and id = 1").await;
    assert_eq!(version, expected_tag(&app, "acme", 1, current_version).await);
    let current = app.get(&member("acme"), "/api/issues/1").await;
    assert_eq!(etag(&current), version, "the restore's tag is the issue's tag");
}

#[tokio::test]
async fn if_none_match_with_the_current_tag_is_304_without_a_body() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "cached").await;
    let tag = expected_tag(&app, "acme", 1, 1).await;
    let get = |value: String| {
        app.request(Method::GET, "/api/issues/1", Some(&member("acme"))).header("if-none-match", value).send()
    };
    for current in [tag.clone(), format!("W/{tag}"), format!("\"7\", {tag}"), "*".into()] {
        let response = get(current.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{current}");
        assert_eq!(etag(&response), tag);
        assert_eq!(response.headers()["cache-control"], "private, no-cache");
        assert_eq!(response.text().await.unwrap(), "");
    }
    // Well-formed tags that are not this issue's current one: the caller's own issue.
    let not_current = [
        "\"1\"".to_owned(),
        "\"0\"".into(),
        expected_tag(&app, "acme", 1, 2).await,
        expected_tag(&app, "acme", 2, 1).await,
        expected_tag(&app, "globex", 1, 1).await,
        tag.replacen("\"1.", "\"2.", 1),
    ];
    for stale in not_current {
        let response = get(stale.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{stale}");
        assert_eq!(response.json::<Value>().await.unwrap()["title"], "cached");
    }
    // Another organization's issue 1 is still a 404, whatever the client claims to have.
    let other = app
        .request(Method::GET, "/api/issues/1", Some(&member("globex")))
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_problem(other, StatusCode::NOT_FOUND).await;
}

/// The bug this guards against: organization A's copy of issue 1, revalidated with
/// organization B's identity, was "304, still current" because both tags were `"1"`.
#[tokio::test]
async fn another_organizations_tag_never_validates_a_copy_of_the_callers_issue() {
    let app = spawn_app().await;
    app.create_ok(&member("initech"), "initech's issue").await;
    app.create_ok(&member("hooli"), "hooli's issue").await;
    let initech = app.get(&member("initech"), "/api/issues/1").await;
    let initech_tag = etag(&initech);

    let revalidated = app
        .request(Method::GET, "/api/issues/1", Some(&member("hooli")))
        .header("if-none-match", &initech_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::OK);
    assert_ne!(etag(&revalidated), initech_tag);
    assert_eq!(revalidated.json::<Value>().await.unwrap()["title"], "hooli's issue");

    // Nor does it make hooli's writes go through: a 412, and nothing changes.
    let write = app
        .request(Method::PATCH, "/api/issues/1", Some(&admin("hooli")))
        .header("if-match", &initech_tag)
        .json(&json!({"title": "overwritten"}))
        .send()
        .await
        .unwrap();
    assert_eq!(etag(&write), expected_tag(&app, "hooli", 1, 1).await);
    assert_problem(write, StatusCode::PRECONDITION_FAILED).await;
    let delete = app
        .request(Method::DELETE, "/api/issues/1", Some(&admin("hooli")))
        .header("if-match", &initech_tag)
        .send()
        .await
        .unwrap();
    assert_problem(delete, StatusCode::PRECONDITION_FAILED).await;
    let hooli = app.get(&member("hooli"), "/api/issues/1").await;
    assert_eq!(etag(&hooli), expected_tag(&app, "hooli", 1, 1).await, "still version 1");
    assert_eq!(hooli.json::<Value>().await.unwrap()["title"], "hooli's issue");
    // An issue hooli does not have is still a 404, with any tag.
    let missing = app
        .request(Method::DELETE, "/api/issues/2", Some(&admin("hooli")))
        .header("if-match", &initech_tag)
        .send()
        .await
        .unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_patch_with_a_stale_tag_is_412_with_the_current_one_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "original").await;
    let v1 = expected_tag(&app, "acme", 1, 1).await;
    let v2 = expected_tag(&app, "acme", 1, 2).await;
    assert_eq!(patch_if_match(&app, &v1, json!({"title": "first"})).await.status(), StatusCode::OK);

    let stale = patch_if_match(&app, &v1, json!({"title": "second"})).await;
    assert_eq!(etag(&stale), v2, "the 412 names the current tag");
    let problem = assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert!(problem["detail"].as_str().unwrap().contains("ETag is its current tag"), "{problem}");
    // A weak tag never matches (strong comparison), nor a tag of another issue, or a
    // well-formed tag we never sent.
    let never = [format!("W/{v2}"), expected_tag(&app, "acme", 2, 2).await, "\"2\"".into(), "\"abc\"".into()];
    for never in never {
        let refused = patch_if_match(&app, &never, json!({"title": "second"})).await;
        assert_eq!(etag(&refused), v2, "{never}");
        let problem = assert_problem(refused, StatusCode::PRECONDITION_FAILED).await;
        assert!(!problem["detail"].as_str().unwrap().contains("version 0"), "{problem}");
    }
    // Even a patch that would change nothing is refused when stale.
    assert_problem(patch_if_match(&app, &v1, json!({})).await, StatusCode::PRECONDITION_FAILED).await;

    let current: Value = app.get(&member("acme"), "/api/issues/1").await.json().await.unwrap();
    assert_eq!(current["title"], "first");
    assert_eq!(count(&app, "select count(*) from app.activity_logs where action = 'updated'").await, 1);

    // The current tag, or *, is accepted.
    let fresh = patch_if_match(&app, &v2, json!({"title": "second"})).await;
    assert_eq!((fresh.status(), etag(&fresh)), (StatusCode::OK, expected_tag(&app, "acme", 1, 3).await));
    assert_eq!(patch_if_match(&app, "*", json!({"title": "third"})).await.status(), StatusCode::OK);
    // Several tags at once are not something one client copy can be based on.
    let list = format!("{v2}, {v2}");
    let problem = assert_problem(patch_if_match(&app, &list, json!({})).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["If-Match"]);
}

/// A tag must be written as `ETag` sent it; anything else is a mistake the client should
/// hear about, not a condition that silently never holds.
#[tokio::test]
async fn a_malformed_entity_tag_is_a_400_that_says_how_to_write_one() {
    let app = spawn_app().await;
    let before = app.create_ok(&member("acme"), "guarded").await;
    let tag = expected_tag(&app, "acme", 1, 1).await;
    for malformed in ["1", "", " ", "\"1", "1.abc", "W/1", "\"a\" junk"] {
        for method in [Method::PATCH, Method::DELETE] {
            let response = app
                .request(method.clone(), "/api/issues/1", Some(&admin("acme")))
                .header("if-match", malformed)
                .json(&json!({"title": "unconditional"}))
                .send()
                .await
                .unwrap();
            let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
            assert_eq!(error_fields(&problem), ["If-Match"], "{method} {malformed:?}");
            let message = problem["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains("entity tag") && message.contains("quotes"), "{malformed:?}: {message}");
        }
    }
    for malformed in ["garbage", "", "1", &format!("{tag}, garbage"), &format!("garbage, {tag}"), "*, \"x\""]
    {
        let response = app
            .request(Method::GET, "/api/issues/1", Some(&member("acme")))
            .header("if-none-match", malformed)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["If-None-Match"], "{malformed:?}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("entity tag"));
    }
    assert_eq!(app.get(&admin("acme"), "/api/issues/1").await.json::<Value>().await.unwrap(), before);
}

#[tokio::test]
async fn a_delete_with_a_stale_tag_is_412_and_with_the_current_one_deletes() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "doomed").await;
    app.patch(&admin("acme"), 1, json!({"priority": "HIGH"})).await;
    let (v1, v2) = (expected_tag(&app, "acme", 1, 1).await, expected_tag(&app, "acme", 1, 2).await);
    let delete = |value: String| {
        app.request(Method::DELETE, "/api/issues/1", Some(&admin("acme"))).header("if-match", value).send()
    };
    let stale = delete(v1).await.unwrap();
    assert_eq!(etag(&stale), v2);
    assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.get(&member("acme"), "/api/issues/1").await.status(), StatusCode::OK);

    assert_eq!(delete(v2.clone()).await.unwrap().status(), StatusCode::NO_CONTENT);
    // Gone: a missing issue is a 404 whatever the precondition says.
    assert_problem(delete(v2.clone()).await.unwrap(), StatusCode::NOT_FOUND).await;
    assert_problem(patch_if_match(&app, &v2, json!({})).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn of_concurrent_patches_with_one_etag_exactly_one_wins() {
    const WRITERS: usize = 6;
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "contended").await;
    let tag = expected_tag(&app, "acme", 1, 1).await;
    let current = expected_tag(&app, "acme", 1, 2).await;

    // Hold the issue's row lock so every PATCH is inside PostgreSQL, queued behind it,
    // before any of them can decide.
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let request = app
                .request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
                .header("if-match", &tag)
                .json(&json!({"title": format!("writer {n}")}));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    wait_for_lock_waiters(&app.owner_sql().await, &app.database, WRITERS as i64).await;
    blocker.rollback().await.unwrap();

    let mut winners = Vec::new();
    for writer in writers {
        let response = writer.await.unwrap();
        match response.status() {
            StatusCode::OK => winners.push(response.json::<Value>().await.unwrap()["title"].clone()),
            StatusCode::PRECONDITION_FAILED => assert_eq!(etag(&response), current),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let current: Value = app.get(&member("acme"), "/api/issues/1").await.json().await.unwrap();
    assert_eq!(current["title"], winners[0]);
    assert_eq!(count(&app, "select count(*) from app.activity_logs where action = 'updated'").await, 1);
}

#[tokio::test]
async fn in_psql_the_version_check_is_optional_and_says_the_current_version() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "psql").await;
    let mut sql = app.api_role_sql().await;
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("acme", "dba", "ADMIN")).await.unwrap();
    // The two-argument call of migration 1 still works.
    let rows =
        tx.query("select version from api.update_issue(1, '{\"status\": \"DONE\"}')", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 2);
    let err =
        tx.query("select * from api.update_issue(1, '{\"status\": \"OPEN\"}', 1)", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "TN412");
    assert_eq!(err.as_db_error().unwrap().detail(), Some("current_version=2"));
    tx.rollback().await.unwrap();

    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("acme", "dba", "ADMIN")).await.unwrap();
    let err = tx.query("select * from api.delete_issue(1, 5)", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "TN412");
    tx.rollback().await.unwrap();
    assert_eq!(count(&app, "select count(*) from app.issues").await, 1);
}

/// poem-openapi reads an unreadable header value as absent; for If-Match that would be a
/// write without its condition.
#[tokio::test]
async fn an_if_match_that_is_not_ascii_is_refused_not_ignored() {
    let app = spawn_app().await;
    let before = app.create_ok(&member("acme"), "guarded").await;
    for method in [Method::PATCH, Method::DELETE] {
        let response = app
            .request(method.clone(), "/api/issues/1", Some(&admin("acme")))
            .header("if-match", reqwest::header::HeaderValue::from_bytes(b"\"1\xe9\"").unwrap())
            .json(&json!({"title": "unconditional"}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["If-Match"], "{method}");
    }
    let twice = app
        .request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
        .header("if-match", "\"1\"")
        .header("if-match", "\"7\"")
        .json(&json!({"title": "unconditional"}))
        .send()
        .await
        .unwrap();
    assert_problem(twice, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.get(&admin("acme"), "/api/issues/1").await.json::<Value>().await.unwrap(), before);
}
