//! Paging through issues: Link headers, cursors that hold while the list changes, and
//! query strings that say exactly what they mean.

use std::{collections::HashSet, sync::Arc};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn pages_walk_every_issue_once_newest_first_and_the_last_page_has_no_link() {
    let app = spawn_app().await;
    for n in 1..=12 {
        app.create_ok(&member("acme"), &format!("issue {n}")).await;
    }

    let first = app.get(&member("acme"), "/api/issues?limit=5").await;
    assert_eq!(first.status(), StatusCode::OK);
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.starts_with("</api/issues?limit=5&cursor=") && link.ends_with(">; rel=\"next\""), "{link}");

    let pages = app.walk(&member("acme"), "/api/issues?limit=5").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
    assert_eq!(
        pages.concat().iter().map(|i| i["id"].as_i64().unwrap()).collect::<Vec<_>>(),
        (1..=12).rev().collect::<Vec<_>>()
    );

    // An exact multiple of the page size: the third page is the last, no empty fourth.
    let pages = app.walk(&admin("acme"), "/api/issues?limit=4").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 4]);
    // One page holds everything: no Link at all.
    let all = app.page(&member("acme"), "/api/issues?limit=12").await;
    assert_eq!((all.items.len(), all.next), (12, None));
}

#[tokio::test]
async fn a_page_holds_50_issues_unless_limit_says_otherwise_up_to_200() {
    let app = spawn_app().await;
    app.insert_issues("acme", 201).await;

    let page = app.page(&member("acme"), "/api/issues").await;
    assert_eq!(page.items.len(), 50);
    assert!(page.next.is_some());
    assert_eq!(app.page(&member("acme"), "/api/issues?limit=200").await.items.len(), 200);
    assert_eq!(app.page(&member("acme"), "/api/issues?limit=1").await.items.len(), 1);
    for bad in ["0", "201", "-1", "ten", "", "1.5"] {
        let problem = assert_problem(
            app.get(&member("acme"), &format!("/api/issues?limit={bad}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), ["limit"], "limit={bad}");
        assert_eq!(problem["errors"][0]["message"], "must be an integer from 1 to 200");
    }
}

#[tokio::test]
async fn the_next_link_keeps_every_filter_and_the_sort() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.create(&member("acme"), json!({"title": "t", "description": "d", "priority": "HIGH"})).await;
    }
    let page =
        app.page(&member("acme"), "/api/issues?priority=HIGH,LOW&sort=-priority&limit=1&status=OPEN").await;
    let next = page.next.unwrap();
    assert!(
        next.starts_with("/api/issues?priority=HIGH%2CLOW&sort=-priority&limit=1&status=OPEN&cursor="),
        "{next}"
    );
    // Following it twice more reaches the end.
    let rest = app.walk(&member("acme"), &next).await;
    assert_eq!(rest.concat().len(), 2);
}

#[tokio::test]
async fn pages_stay_consistent_while_issues_are_created_and_deleted_between_requests() {
    let app = spawn_app().await;
    app.insert_issues("acme", 30).await;
    let reader = member("acme");

    for sort in ["-createdAt", "createdAt", "-priority", "updatedAt"] {
        let before: Vec<i64> = ids(&app.walk(&reader, "/api/issues?limit=200").await.concat());
        let mut deleted = HashSet::new();
        let mut seen = Vec::new();
        let mut next = Some(format!("/api/issues?limit=7&sort={sort}"));
        let mut pages = 0;
        while let Some(path) = next {
            let page = app.page(&reader, &path).await;
            seen.extend(ids(&page.items));
            next = page.next;
            // Between two requests: a new issue, and deletes of one issue already seen
            // and one not yet seen (as far as the sort goes).
            app.create_ok(&member("acme"), "new while paging").await;
            let alive: Vec<i64> = before.iter().copied().filter(|id| !deleted.contains(id)).collect();
            for victim in [alive[pages], alive[alive.len() - 1 - pages]] {
                if deleted.insert(victim) {
                    assert_eq!(app.delete(&admin("acme"), victim).await.status(), StatusCode::NO_CONTENT);
                }
            }
            pages += 1;
        }

        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: no issue twice: {seen:?}");
        let missing: Vec<i64> =
            before.iter().copied().filter(|id| !deleted.contains(id) && !unique.contains(id)).collect();
        assert!(missing.is_empty(), "{sort}: every issue present throughout is seen; missing {missing:?}");
        // Put the organization back for the next sort.
        for id in deleted {
            assert_eq!(app.restore(&admin("acme"), id).await.status(), StatusCode::OK);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_walk_sees_every_issue_exactly_once_while_others_create_concurrently() {
    let app = Arc::new(spawn_app().await);
    app.insert_issues("acme", 120).await;
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            for n in 0..40 {
                app.create_ok(&member("acme"), &format!("concurrent {n}")).await;
            }
        })
    };
    let seen = ids(&app.walk(&member("acme"), "/api/issues?limit=9&sort=createdAt").await.concat());
    writer.await.unwrap();

    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    assert!((1..=120).all(|id| unique.contains(&id)), "every issue that existed before the walk");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "oldest first throughout");
}

async fn cursor_of(app: &TestApp, actor: &Actor, path: &str) -> String {
    let next = app.page(actor, path).await.next.expect("a next page");
    next.rsplit_once("cursor=").unwrap().1.to_owned()
}

#[tokio::test]
async fn a_cursor_works_only_with_the_sort_and_filters_it_was_made_for() {
    let app = spawn_app().await;
    app.insert_issues("acme", 10).await;
    let reader = member("acme");
    let cursor = cursor_of(&app, &reader, "/api/issues?limit=2&status=OPEN").await;

    // Same query, another page size: fine.
    let page = app.page(&reader, &format!("/api/issues?limit=3&status=OPEN&cursor={cursor}")).await;
    assert_eq!(ids(&page.items), [8, 7, 6]);

    for (query, detail) in [
        ("status=DONE", "other filters"),
        ("status=OPEN&q=issue&sort=-createdAt", "other filters"),
        ("status=OPEN&q=issue", "sort -createdAt, not relevance"),
        ("", "other filters"),
        ("status=OPEN&sort=createdAt", "sort -createdAt, not createdAt"),
        ("status=OPEN&sort=-updatedAt", "sort -createdAt, not -updatedAt"),
    ] {
        let response = app.get(&reader, &format!("/api/issues?{query}&cursor={cursor}")).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["cursor"], "{query}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains(detail), "{query}: {problem}");
    }
    // The same filters written differently are the same filters.
    let multi = cursor_of(&app, &reader, "/api/issues?limit=2&status=OPEN,DONE").await;
    let page =
        app.page(&reader, &format!("/api/issues?status=DONE&status=OPEN&status=OPEN&cursor={multi}")).await;
    assert_eq!(ids(&page.items)[0], 8);

    // Not a cursor at all, or a cursor of another list.
    let feed_cursor = {
        app.create_ok(&reader, "one").await;
        app.create_ok(&reader, "two").await;
        cursor_of(&app, &reader, "/api/activity?limit=1").await
    };
    for bad in ["abc", "WzFd", "eyJhIjogMX0", "W10", &feed_cursor, &"A".repeat(1025), "a%2Bb", "a%3D"] {
        let response = app.get(&reader, &format!("/api/issues?cursor={bad}")).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["cursor"], "{bad}");
    }
}

#[tokio::test]
async fn a_cursor_from_another_organization_shows_nothing_of_it() {
    let app = spawn_app().await;
    app.insert_issues("alpha", 10).await;
    app.insert_issues("bravo", 10).await;
    let cursor = cursor_of(&app, &member("alpha"), "/api/issues?limit=3").await;

    // For bravo it is only a position in bravo's own list.
    let pages = app.walk(&member("bravo"), &format!("/api/issues?cursor={cursor}")).await.concat();
    assert!(!pages.is_empty());
    assert!(pages.iter().all(|issue| issue["organizationId"] == "bravo"), "{pages:?}");
}

#[tokio::test]
async fn unknown_and_repeated_single_parameters_are_refused_by_name() {
    let app = spawn_app().await;
    let id = app.create_ok(&member("acme"), "x").await["id"].as_i64().unwrap();
    let reader = member("acme");
    for (path, field) in [
        ("/api/issues?stauts=OPEN", "stauts"),
        ("/api/issues?limit=5&page=2", "page"),
        ("/api/issues?limit=5&limit=6", "limit"),
        ("/api/issues?q=a&q=b", "q"),
        ("/api/issues?sort=createdAt&sort=priority", "sort"),
        ("/api/issues?assigneeid=none", "assigneeid"),
        ("/api/activity?actor=x", "actor"),
        ("/api/activity?issueId=1&issueId=2", "issueId"),
        (&format!("/api/issues/{id}/activity?status=OPEN"), "status"),
    ] {
        let problem = assert_problem(app.get(&reader, path).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), [field], "{path}");
    }
    let restore = app
        .request(Method::POST, &format!("/api/issues/{id}/restore?force=true"), Some(&admin("acme")))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(restore, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["force"]);

    // Lists may repeat, and the known single parameters are fine once.
    let page =
        app.page(&reader, "/api/issues?status=OPEN&status=DONE&priority=LOW&priority=MEDIUM&limit=3").await;
    assert_eq!(page.items.len(), 1);
}

#[tokio::test]
async fn invalid_values_are_refused_naming_the_parameter() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "x").await;
    let reader = member("acme");
    for (query, field) in [
        ("status=open", "status"),
        ("status=OPEN,", "status"),
        ("status=", "status"),
        ("priority=URGENT", "priority"),
        ("assigneeId=not%20an%20id", "assigneeId"),
        ("assigneeId=", "assigneeId"),
        ("createdBy=%C3%A9", "createdBy"),
        ("createdAfter=yesterday", "createdAfter"),
        ("createdBefore=2026-01-01", "createdBefore"),
        ("updatedAfter=2026-01-01T00:00:00+01:00", "updatedAfter"),
        ("sort=title", "sort"),
        ("sort=-relevance", "sort"),
        ("sort=relevance", "sort"),
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("q=a%00b", "q"),
        ("q=!!!", "q"),
        ("q=a%20b%20c%20d%20e%20f%20g%20h%20i%20j%20k", "q"),
        (&format!("q={}", "x".repeat(201)), "q"),
        ("cursor=", "cursor"),
    ] {
        let problem =
            assert_problem(app.get(&reader, &format!("/api/issues?{query}")).await, StatusCode::BAD_REQUEST)
                .await;
        assert_eq!(error_fields(&problem), [field], "{query}: {problem}");
    }
    for (query, field) in [
        ("action=viewed", "action"),
        ("actorId=a%20b", "actorId"),
        ("issueId=0", "issueId"),
        ("issueId=x", "issueId"),
        ("since=now", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=500", "limit"),
    ] {
        let problem = assert_problem(
            app.get(&reader, &format!("/api/activity?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), [field], "{query}: {problem}");
    }
    // An offset written with %2B is a valid time.
    assert_eq!(
        app.get(&reader, "/api/issues?updatedAfter=2026-01-01T00:00:00%2B01:00").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_list_still_needs_the_identity_headers_first() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/api/issues?stauts=OPEN&limit=0", None).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(error_fields(&problem), ["x-organization-id", "x-user-id", "x-user-role"]);
    let feed = app.request(Method::GET, "/api/activity", None).send().await.unwrap();
    assert_problem(feed, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn an_organization_without_issues_gets_an_empty_array_and_no_link() {
    let app = spawn_app().await;
    app.insert_issues("alpha", 3).await;
    let page = app.page(&member("bravo"), "/api/issues?status=OPEN&q=issue").await;
    assert_eq!((page.items, page.next), (Vec::<Value>::new(), None));
}

#[tokio::test]
async fn a_forged_cursor_with_the_right_sort_and_filters_but_a_wrong_key_is_refused() {
    let app = spawn_app().await;
    app.insert_issues("acme", 5).await;
    let cursor = cursor_of(&app, &member("acme"), "/api/issues?limit=2").await;
    // Re-encode it with a number where the createdAt sort keeps a time.
    let forged = reencode_cursor(&app.owner_sql().await, &cursor, &json!(7)).await;
    assert_ne!(forged, cursor);
    let problem = assert_problem(
        app.get(&member("acme"), &format!("/api/issues?cursor={forged}")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["cursor"]);
}

/// `cursor` made again (app.encode_cursor) with the same sort, filters and id but another
/// sort key: what a client that re-encodes cursors can send.
async fn reencode_cursor(owner: &tokio_postgres::Client, cursor: &str, key: &Value) -> String {
    owner
        .query_one(
            "select app.encode_cursor(p->>1, p->>2, $2::text::jsonb, (p->>4)::bigint)
               from (select convert_from(decode(translate($1, '-_', '+/') || repeat('=', (4 - length($1) % 4) % 4),
                                                'base64'), 'UTF8')::jsonb as p) decoded",
            &[&cursor, &key.to_string()],
        )
        .await
        .unwrap()
        .get(0)
}

/// Walks a list from `path`, returning each page's raw body and items.
async fn walk_bodies(app: &TestApp, actor: &Actor, path: &str) -> Vec<(usize, Vec<Value>)> {
    let mut pages = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next {
        let response = app.get(actor, &path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        next = next_link(&response);
        let body = response.bytes().await.unwrap();
        let items: Vec<Value> = serde_json::from_slice(&body).unwrap();
        assert!(!items.is_empty(), "a page is never empty: {path}");
        pages.push((body.len(), items));
        assert!(pages.len() <= 500, "the walk ends");
    }
    pages
}

/// PAGE_MAX_BYTES: a page ends at the last whole item whose JSON fits (always at least
/// one), its Link continues from there, and walking the pages gives every item once, in
/// order, for the issue list, the feed and one issue's history. Descriptions full of
/// characters JSON escapes make the serialized size differ from what PostgreSQL stores.
#[tokio::test]
async fn pages_end_at_the_last_whole_item_within_page_max_bytes_and_continue_from_there() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.page_max_bytes = 0).await;
    let ann = admin("bulky");
    for n in 1..=12usize {
        let description = match n % 3 {
            0 => "\"quoted\" \\ and\nnew lines ".repeat(n * 12),
            1 => "ünïcödé 🚀 ".repeat(n * 30),
            _ => "word ".repeat(n * 60),
        };
        let created = app
            .create(
                &ann,
                json!({"title": format!("Bulky {n} \"{}\"", "é".repeat(n)), "description": description}),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        if n % 2 == 0 {
            let patched = app.patch(&ann, n as i64, json!({"description": "\\".repeat(n * 100)})).await;
            assert_eq!(patched.status(), StatusCode::OK);
        }
    }
    for n in [3, 7] {
        assert_eq!(app.delete(&ann, n).await.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(app.restore(&ann, 3).await.status(), StatusCode::OK);
    let paths = ["/api/issues?limit=200", "/api/activity?limit=200", "/api/issues/4/activity?limit=200"];
    let mut everything = Vec::new();
    for path in paths {
        let pages = walk_bodies(&app, &ann, path).await;
        assert_eq!(pages.len(), 1, "unbounded, one page: {path}");
        everything.push(pages.into_iter().next().unwrap());
    }
    let item_bytes = |item: &Value| serde_json::to_vec(item).unwrap().len();
    let largest = everything.iter().flat_map(|(_, items)| items.iter().map(item_bytes)).max().unwrap();
    let whole = everything.iter().map(|(bytes, _)| *bytes).max().unwrap();

    for max in [1, 2, largest - 1, largest, largest + 2, 3 * largest, whole - 1, whole, 1 << 20] {
        let bounded =
            spawn_app_on(&app.database, Mode::ApiLogin, |config| config.page_max_bytes = max as u32).await;
        for (path, (_, all)) in paths.iter().zip(&everything) {
            let pages = walk_bodies(&bounded, &ann, path).await;
            let walked: Vec<Value> = pages.iter().flat_map(|(_, items)| items.clone()).collect();
            assert_eq!(&walked, all, "every item once, in order: {path} within {max} bytes");
            let mut seen = 0;
            for (i, (bytes, items)) in pages.iter().enumerate() {
                assert!(*bytes <= max || items.len() == 1, "{path} page {i}: {bytes} bytes > {max}");
                seen += items.len();
                if i + 1 < pages.len() {
                    // As full as it may be: the next item would not have fitted.
                    let next = item_bytes(&all[seen]);
                    assert!(bytes + 1 + next > max, "{path} page {i} ended early: {bytes} + {next} <= {max}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_feed_cursor_reencoded_with_a_time_at_the_edge_of_postgresqls_range_is_refused() {
    let app = spawn_app().await;
    let writer = admin("acme");
    for title in ["one", "two", "three"] {
        app.create_ok(&writer, title).await;
    }
    let owner = app.owner_sql().await;
    for path in ["/api/activity?limit=1", "/api/issues/1/activity?limit=1"] {
        app.patch(&writer, 1, json!({"status": "DONE"})).await;
        let cursor = cursor_of(&app, &writer, path).await;
        // Times the API never issues; the feed's month walk would overflow on the first two.
        for time in ["294276-12-31T23:59:59Z", "4713-11-24T00:00:00Z BC", "infinity", "-infinity"] {
            let forged = reencode_cursor(&owner, &cursor, &json!(time)).await;
            let problem = assert_problem(
                app.get(&writer, &format!("{path}&cursor={forged}")).await,
                StatusCode::BAD_REQUEST,
            )
            .await;
            assert_eq!(error_fields(&problem), ["cursor"], "{path} at {time}: {problem}");
        }
    }
}

#[tokio::test]
async fn feed_time_bounds_outside_the_apis_range_are_refused_in_sql_naming_the_parameter() {
    // The HTTP API refuses these before the call; psql users reach api.list_activity
    // directly, where the month walk would overflow on the first two of each.
    let app = spawn_app().await;
    let writer = admin("acme");
    app.create_ok(&writer, "one").await;
    let sql = app.api_role_sql().await;
    sql.batch_execute(&set_session_tenant_sql("acme", "ann", "MEMBER")).await.unwrap();
    for parameter in ["since", "until"] {
        for oldest_first in [false, true] {
            let call = format!(
                "select count(*) from api.list_activity(page_size => 5, {parameter} => $1::text::timestamptz, oldest_first => {oldest_first})"
            );
            for time in [
                "294276-12-31 23:59:59+00",
                "4714-11-24 00:00:00+00 BC",
                "10000-01-01 00:00:00+00",
                "infinity",
                "-infinity",
            ] {
                let err = sql.query_one(&call, &[&time]).await.unwrap_err();
                let db = err.as_db_error().unwrap_or_else(|| panic!("{parameter} {time}: {err}"));
                assert_eq!(
                    (db.code().code(), db.column()),
                    ("TN400", Some(parameter)),
                    "{parameter} {time} oldest_first {oldest_first}: {db:?}"
                );
            }
            // The range's own ends are taken.
            for time in ["0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00"] {
                let rows: i64 = sql.query_one(&call, &[&time]).await.unwrap().get(0);
                let expected = i64::from((parameter == "until") == time.starts_with("9999"));
                assert_eq!(rows, expected, "{parameter} {time} oldest_first {oldest_first}");
            }
        }
    }
}
