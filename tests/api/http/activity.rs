//! Reading the activity log (an issue's history, the organization's feed) and restoring
//! deleted issues from it, over HTTP, in SQL and in psql.

use std::process::Command;

use pg_sandbox::postgres::SUPERUSER;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn actions(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["action"].as_str().unwrap()).collect()
}

/// The issue as an activity entry keeps it: the API's fields plus `version`.
fn snapshot(issue: &Value, version: i64) -> Value {
    let mut snapshot = issue.clone();
    snapshot["version"] = json!(version);
    snapshot
}

#[tokio::test]
async fn an_issues_history_lists_every_change_oldest_first_also_while_deleted() {
    let app = spawn_app().await;
    let reader = member("acme");
    let created = app
        .create(&reader, json!({"title": "Login fails", "description": "500", "assigneeId": "ann"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    app.create_ok(&reader, "another issue").await;
    let updated: Value = app
        .patch(&admin("acme"), 1, json!({"status": "DONE", "assigneeId": null}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.delete(&admin("acme"), 1).await.status(), StatusCode::NO_CONTENT);

    // Deleted, and its history is all there, for a MEMBER too.
    let history = app.walk(&reader, "/api/issues/1/activity").await.concat();
    assert_eq!(actions(&history), ["created", "updated", "deleted"]);
    assert_eq!(ids(&history), [1, 3, 4], "entry 2 is the other issue's");
    for entry in &history {
        let mut keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["action", "actorId", "changes", "createdAt", "id", "issueId"],
            "exactly the documented fields"
        );
        assert_eq!(entry["issueId"], 1);
        assert!(entry["createdAt"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(history[0]["actorId"], "member-of-acme");
    assert_eq!(history[0]["changes"], snapshot(&created, 1));
    assert_eq!(history[1]["actorId"], "admin-of-acme");
    assert_eq!(
        history[1]["changes"],
        json!({"status": {"from": "OPEN", "to": "DONE"}, "assigneeId": {"from": "ann", "to": null}})
    );
    assert_eq!(history[2]["changes"], snapshot(&updated, 2), "the deleted entry holds the final issue");

    // Restored and changed again: the history goes on under the same number.
    assert_eq!(app.restore(&admin("acme"), 1).await.status(), StatusCode::OK);
    app.patch(&admin("acme"), 1, json!({"priority": "HIGH"})).await;
    let history = app.walk(&reader, "/api/issues/1/activity").await.concat();
    assert_eq!(actions(&history), ["created", "updated", "deleted", "restored", "updated"]);
    assert!(ids(&history).windows(2).all(|w| w[0] < w[1]), "oldest first");
}

#[tokio::test]
async fn an_issues_history_pages_with_link_headers() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "busy").await;
    for n in 0..4 {
        app.patch(&admin("acme"), 1, json!({"title": format!("busy {n}")})).await;
    }
    let first = app.get(&member("acme"), "/api/issues/1/activity?limit=2").await;
    let link = next_link(&first).unwrap();
    assert!(link.starts_with("/api/issues/1/activity?limit=2&cursor="), "{link}");
    let pages = app.walk(&member("acme"), "/api/issues/1/activity?limit=2").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(ids(&pages.concat()), [1, 2, 3, 4, 5]);

    // A cursor of issue 1's history means nothing for issue 2's.
    app.create_ok(&member("acme"), "other").await;
    let cursor = link.rsplit_once("cursor=").unwrap().1;
    let problem = assert_problem(
        app.get(&member("acme"), &format!("/api/issues/2/activity?cursor={cursor}")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["cursor"]);
}

#[tokio::test]
async fn the_history_of_an_issue_the_organization_never_had_is_404() {
    let app = spawn_app().await;
    app.create_ok(&member("bravo"), "bravo's").await;
    let never =
        assert_problem(app.get(&member("alpha"), "/api/issues/2/activity").await, StatusCode::NOT_FOUND)
            .await;
    let foreign =
        assert_problem(app.get(&member("alpha"), "/api/issues/1/activity").await, StatusCode::NOT_FOUND)
            .await;
    assert_eq!(never["detail"], "issue 2 not found");
    assert_eq!(foreign["detail"], "issue 1 not found", "another organization's issue looks the same");
    assert_problem(app.get(&member("alpha"), "/api/issues/0/activity").await, StatusCode::BAD_REQUEST).await;
}

/// A few changes by two people on three issues of acme, and some in globex.
async fn busy_organization(app: &TestApp) {
    let (ann, bob) = (
        Actor { org: "acme".into(), user: "ann".into(), role: "ADMIN" },
        Actor { org: "acme".into(), user: "bob".into(), role: "MEMBER" },
    );
    app.create_ok(&ann, "one").await; // entry 1
    app.create_ok(&bob, "two").await; // 2
    app.patch(&ann, 1, json!({"status": "DONE"})).await; // 3
    app.create_ok(&bob, "three").await; // 4
    app.delete(&ann, 2).await; // 5
    app.patch(&ann, 3, json!({"priority": "LOW"})).await; // 6
    app.restore(&ann, 2).await; // 7
    for n in 0..3 {
        app.create_ok(&member("globex"), &format!("globex {n}")).await;
    }
    app.patch(&admin("globex"), 1, json!({"status": "DONE"})).await;
}

async fn feed(app: &TestApp, query: &str) -> Vec<i64> {
    let entries = app.walk(&member("acme"), &format!("/api/activity?{query}")).await.concat();
    ids(&entries)
}

#[tokio::test]
async fn the_feed_lists_the_organizations_changes_newest_first_a_page_at_a_time() {
    let app = spawn_app().await;
    busy_organization(&app).await;
    let entries = app.page(&member("acme"), "/api/activity").await.items;
    assert_eq!(ids(&entries), [7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(
        actions(&entries),
        ["restored", "updated", "deleted", "created", "updated", "created", "created"]
    );
    assert_eq!(
        entries.iter().map(|e| e["issueId"].as_i64().unwrap()).collect::<Vec<_>>(),
        [2, 3, 2, 3, 1, 2, 1]
    );
    assert_eq!(feed(&app, "limit=2").await, [7, 6, 5, 4, 3, 2, 1]);

    // Changes made while paging appear before the first page, never in between.
    let first = app.page(&member("acme"), "/api/activity?limit=3").await;
    app.create_ok(&member("acme"), "four").await;
    let rest = app.walk(&member("acme"), &first.next.unwrap()).await.concat();
    assert_eq!(ids(&rest), [4, 3, 2, 1]);
    assert_eq!(feed(&app, "limit=3").await, [8, 7, 6, 5, 4, 3, 2, 1]);
}

#[tokio::test]
async fn the_feed_filters_by_actor_action_issue_and_time_and_they_combine() {
    let app = spawn_app().await;
    busy_organization(&app).await;
    // Entry n was made on 2026-03-0n (a month partitioned on demand: the log only has
    // partitions from the month it was created in).
    app.owner_sql()
        .await
        .batch_execute(
            "select app.create_activity_partitions(0, '2026-03-01');
             update app.activity_logs set created_at = timestamptz '2026-03-01 00:00:00Z' + (id - 1) * interval '1 day'
              where organization_id = 'acme'",
        )
        .await
        .unwrap();
    for (query, expected) in [
        ("actorId=ann", vec![7, 6, 5, 3, 1]),
        ("actorId=bob", vec![4, 2]),
        ("actorId=nobody", vec![]),
        ("action=created", vec![4, 2, 1]),
        ("action=deleted,restored", vec![7, 5]),
        ("action=updated&action=deleted", vec![6, 5, 3]),
        ("issueId=2", vec![7, 5, 2]),
        ("issueId=99", vec![]),
        ("since=2026-03-05T00:00:00Z", vec![7, 6, 5]),
        ("until=2026-03-03T00:00:00Z", vec![2, 1]),
        ("since=2026-03-02T00:00:00Z&until=2026-03-04T00:00:00Z", vec![3, 2]),
        ("actorId=ann&action=updated", vec![6, 3]),
        ("issueId=2&actorId=ann&action=restored", vec![7]),
        ("issueId=3&since=2026-03-05T00:00:00Z&actorId=ann&action=updated", vec![6]),
        ("issueId=1&actorId=bob", vec![]),
    ] {
        assert_eq!(feed(&app, query).await, expected, "{query}");
        assert_eq!(feed(&app, &format!("{query}&limit=1")).await, expected, "{query}&limit=1");
    }
    // A feed cursor is bound to its filters.
    let next = app.page(&member("acme"), "/api/activity?actorId=ann&limit=1").await.next.unwrap();
    let cursor = next.rsplit_once("cursor=").unwrap().1;
    let problem = assert_problem(
        app.get(&member("acme"), &format!("/api/activity?actorId=bob&cursor={cursor}")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["cursor"]);
}

#[tokio::test]
async fn the_feed_and_histories_never_show_another_organizations_entries() {
    let app = spawn_app().await;
    busy_organization(&app).await;
    let globex = app.walk(&member("globex"), "/api/activity?limit=2").await.concat();
    assert_eq!(ids(&globex), [4, 3, 2, 1], "globex numbers its own entries");
    assert_eq!(actions(&globex), ["updated", "created", "created", "created"]);
    assert!(globex.iter().all(|e| e["actorId"].as_str().unwrap().ends_with("-of-globex")));
    // Filters that would match acme's entries find nothing in globex.
    assert!(app.page(&member("globex"), "/api/activity?actorId=ann").await.items.is_empty());
    assert!(app.page(&member("globex"), "/api/activity?action=deleted").await.items.is_empty());
    // Same issue number, each organization's own history.
    let history = app.walk(&member("globex"), "/api/issues/1/activity").await.concat();
    assert_eq!(actions(&history), ["created", "updated"]);
    assert!(history.iter().all(|e| e["actorId"].as_str().unwrap().ends_with("-of-globex")));
    assert_problem(app.get(&member("globex"), "/api/issues/9/activity").await, StatusCode::NOT_FOUND).await;
    assert!(app.page(&member("initech"), "/api/activity").await.items.is_empty());
}

#[tokio::test]
async fn an_admin_restores_a_deleted_issue_under_its_own_number_as_it_was() {
    let app = spawn_app().await;
    let body = json!({"title": "Keep me", "description": "d", "priority": "HIGH", "assigneeId": "ann"});
    app.create(&member("acme"), body).await;
    app.create_ok(&member("acme"), "second").await;
    let before_delete: Value =
        app.patch(&admin("acme"), 1, json!({"status": "IN_PROGRESS"})).await.json().await.unwrap();
    assert_eq!(app.delete(&admin("acme"), 1).await.status(), StatusCode::NO_CONTENT);

    let response = app.restore(&admin("acme"), 1).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let restored: Value = response.json().await.unwrap();
    for field in [
        "id",
        "title",
        "description",
        "status",
        "priority",
        "assigneeId",
        "organizationId",
        "createdBy",
        "createdAt",
    ] {
        assert_eq!(restored[field], before_delete[field], "{field} as it was");
    }
    assert_eq!(restored["createdBy"], "member-of-acme", "the creator, not the restorer");
    assert!(restored["updatedAt"].as_str() > before_delete["updatedAt"].as_str(), "updatedAt moves");
    assert_eq!(app.get(&member("acme"), "/api/issues/1").await.json::<Value>().await.unwrap(), restored);
    assert_eq!(ids(&app.page(&member("acme"), "/api/issues").await.items), [2, 1]);

    let history = app.walk(&member("acme"), "/api/issues/1/activity").await.concat();
    let last = history.last().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["actorId"].as_str()),
        (Some("restored"), Some("admin-of-acme"))
    );
    assert_eq!(last["changes"], snapshot(&restored, 3), "version 3: created, updated, restored");
    // Numbers are still never reused.
    assert_eq!(app.create_ok(&member("acme"), "third").await["id"], 3);
}

#[tokio::test]
async fn restoring_is_404_for_an_issue_never_had_and_409_for_one_not_deleted() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "live").await;
    let never = assert_problem(app.restore(&admin("acme"), 7).await, StatusCode::NOT_FOUND).await;
    assert_eq!(never["detail"], "issue 7 not found");
    let live = assert_problem(app.restore(&admin("acme"), 1).await, StatusCode::CONFLICT).await;
    assert_eq!(live["detail"], "issue 1 is not deleted");

    app.delete(&admin("acme"), 1).await;
    assert_eq!(app.restore(&admin("acme"), 1).await.status(), StatusCode::OK);
    assert_problem(app.restore(&admin("acme"), 1).await, StatusCode::CONFLICT).await;
    assert_problem(app.restore(&admin("acme"), 0).await, StatusCode::BAD_REQUEST).await;
    let history = app.walk(&member("acme"), "/api/issues/1/activity").await.concat();
    assert_eq!(actions(&history), ["created", "deleted", "restored"], "refusals record nothing");
}

#[tokio::test]
async fn a_member_may_not_restore_and_nothing_changes() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "gone").await;
    app.delete(&admin("acme"), 1).await;
    let problem = assert_problem(app.restore(&member("acme"), 1).await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["detail"], "only an ADMIN may do this");
    assert_problem(app.get(&member("acme"), "/api/issues/1").await, StatusCode::NOT_FOUND).await;
    assert_eq!(
        actions(&app.walk(&member("acme"), "/api/issues/1/activity").await.concat()),
        ["created", "deleted"]
    );
}

#[tokio::test]
async fn another_organizations_deleted_issue_cannot_be_restored() {
    let app = spawn_app().await;
    app.create_ok(&member("bravo"), "bravo's").await;
    app.delete(&admin("bravo"), 1).await;
    let problem = assert_problem(app.restore(&admin("alpha"), 1).await, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["detail"], "issue 1 not found");
    // alpha's own issue 1 is alpha's business: live, so 409, and bravo's stays deleted.
    app.create_ok(&member("alpha"), "alpha's").await;
    assert_problem(app.restore(&admin("alpha"), 1).await, StatusCode::CONFLICT).await;
    assert_problem(app.get(&member("bravo"), "/api/issues/1").await, StatusCode::NOT_FOUND).await;
    assert_eq!(app.restore(&admin("bravo"), 1).await.status(), StatusCode::OK);
    assert_eq!(
        app.get(&member("bravo"), "/api/issues/1").await.json::<Value>().await.unwrap()["title"],
        "bravo's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_restores_at_once_restore_once() {
    let app = std::sync::Arc::new(spawn_app().await);
    app.create_ok(&member("acme"), "contested").await;
    app.delete(&admin("acme"), 1).await;
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.restore(&admin("acme"), 1).await.status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT, StatusCode::CONFLICT, StatusCode::CONFLICT]);
    let history = app.walk(&member("acme"), "/api/issues/1/activity").await.concat();
    assert_eq!(actions(&history), ["created", "deleted", "restored"]);
}

#[tokio::test]
async fn the_restore_rules_hold_in_sql_too() {
    let app = spawn_app().await;
    app.create_ok(&member("alpha"), "gone").await;
    app.create_ok(&member("alpha"), "live").await;
    app.delete(&admin("alpha"), 1).await;
    let mut sql = app.api_role_sql().await;

    for (role, call, state) in [
        ("MEMBER", "select * from api.restore_issue(1)", "TN403"),
        ("ADMIN", "select * from api.restore_issue(9)", "TN404"),
        ("ADMIN", "select * from api.restore_issue(2)", "TN409"),
        // Straight at the table: an ADMIN may put back only the deleted issue, with its creator.
        (
            "ADMIN",
            "insert into app.issues (organization_id, id, title, description, created_by) values ('alpha', 1, 't', 'd', 'mallory')",
            "42501",
        ),
        (
            "ADMIN",
            "insert into app.issues (organization_id, id, title, description, created_by) values ('alpha', 9, 't', 'd', 'member-of-alpha')",
            "42501",
        ),
        (
            "MEMBER",
            "insert into app.issues (organization_id, id, title, description, created_by) values ('alpha', 1, 't', 'd', 'member-of-alpha')",
            "42501",
        ),
    ] {
        let tx = sql.transaction().await.unwrap();
        tx.batch_execute(&set_tenant_sql("alpha", "someone", role)).await.unwrap();
        let err = tx.batch_execute(call).await.unwrap_err();
        assert_eq!(sqlstate(&err), state, "{role}: {call}");
    }
    // And the allowed path, for contrast.
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("alpha", "someone", "ADMIN")).await.unwrap();
    let row = tx.query_one("select id, created_by from api.restore_issue(1)", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1)), (1, "member-of-alpha".to_owned()));
    tx.commit().await.unwrap();
}

/// Runs psql (the real client) as the API role with `alpha` as the tenant.
fn psql_as_api_role(app: &TestApp, statement: &str) -> std::process::Output {
    let pg = &cluster().pg;
    let script = format!("{}; {statement};", set_tenant_sql("alpha", "admin-of-alpha", "ADMIN"));
    Command::new(pg.bin_dir().join("psql"))
        .arg(pg.url(tenantry::db::API_ROLE, &app.database))
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", &script])
        .output()
        .expect("running psql")
}

#[tokio::test]
async fn activity_entries_cannot_be_changed_or_removed_even_in_psql_as_the_api_role() {
    let app = spawn_app().await;
    app.create_ok(&member("alpha"), "logged").await;
    app.patch(&admin("alpha"), 1, json!({"status": "DONE"})).await;

    // The API role reads its organization's entries in psql...
    let read = psql_as_api_role(&app, "select count(*) from app.activity_logs");
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    assert_eq!(String::from_utf8_lossy(&read.stdout).lines().last(), Some("2"));
    // ... and can change none of them, in any way.
    for statement in [
        "update app.activity_logs set action = 'created'",
        "update app.activity_logs set changes = '{}' where id = 2",
        "delete from app.activity_logs",
        "truncate app.activity_logs",
        "insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes) \
         values ('alpha', 2, 1, 'admin-of-alpha', 'created', '{}') on conflict on constraint activity_logs_pkey do update set action = 'created'",
        "alter table app.activity_logs disable row level security",
    ] {
        let output = psql_as_api_role(&app, statement);
        assert!(!output.status.success(), "{statement} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("permission denied") || stderr.contains("must be owner"),
            "{statement}: {stderr}"
        );
    }
    let superuser = connect(&cluster().pg.url(SUPERUSER, &app.database)).await;
    let entries: Vec<(String, Value)> = superuser
        .query("select action, changes from app.activity_logs order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1], ("updated".to_owned(), json!({"status": {"from": "OPEN", "to": "DONE"}})));
}

/// The ids of every page of `api.list_activity(page_size => size, oldest_first => true)`
/// as the API role in acme, following next_cursor to the end.
async fn oldest_first_in_sql(app: &TestApp, size: i32) -> Vec<i64> {
    let mut sql = app.api_role_sql().await;
    let (mut seen, mut after): (Vec<i64>, Option<String>) = (Vec::new(), None);
    loop {
        let tx = sql.transaction().await.unwrap();
        tx.batch_execute(&set_tenant_sql("acme", "reader", "MEMBER")).await.unwrap();
        let rows = tx
            .query(
                "select id, next_cursor from api.list_activity(page_size => $1, after => $2, oldest_first => true)",
                &[&size, &after],
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
        after = rows.last().and_then(|r| r.get(1));
        if after.is_none() {
            return seen;
        }
        assert!(seen.len() < 100, "the walk ends");
    }
}

#[tokio::test]
async fn an_entry_whose_transaction_began_before_a_month_boundary_is_read_once_in_id_order() {
    // Entries in four months: 1 three months back, 2 last month, 3-4 this month, 5-7 the
    // next. A feed page reads one month at a time (migration 21), so it relies on months
    // never running behind ids within an organization.
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "one").await; // entry 1
    for priority in ["LOW", "HIGH", "MEDIUM"] {
        app.patch(&admin("acme"), 1, json!({"priority": priority})).await; // 2, 3, 4
    }
    app.create_ok(&member("globex"), "theirs").await;
    let owner = app.owner_sql().await;
    owner
        .batch_execute(
            "select app.create_activity_partitions(0, app.utc_month(now(), -3));
             update app.activity_logs set created_at = app.utc_month(now(), -3) + interval '12 hours'
              where organization_id = 'acme' and id = 1;
             update app.activity_logs set created_at = app.utc_month(now(), 0) - interval '1 hour'
              where organization_id = 'acme' and id = 2;",
        )
        .await
        .unwrap();

    // A change whose transaction begins now, in this month...
    let mut api = app.api_role_sql().await;
    let late = api.transaction().await.unwrap();
    late.batch_execute(&set_tenant_sql("acme", "admin-of-acme", "ADMIN")).await.unwrap();
    let began: String = late.query_one("select app.json_time(now())", &[]).await.unwrap().get(0);
    // ... while another change, made just after the start of the next month (its time
    // set by hand: the clock cannot be moved), takes the counters row first ...
    app.patch(&admin("acme"), 1, json!({"status": "DONE"})).await; // 5
    owner
        .batch_execute(
            "update app.activity_logs set created_at = app.utc_month(now(), 1) + interval '1 second'
              where organization_id = 'acme' and id = 5;
             update app.organization_counters set last_activity_at = app.utc_month(now(), 1) + interval '1 second'
              where organization_id = 'acme';",
        )
        .await
        .unwrap();
    // ... so the change numbered after it is stamped with that time, in the next month.
    late.query("select id from api.update_issue(1, '{\"title\": \"late\"}', null)", &[]).await.unwrap(); // 6
    late.commit().await.unwrap();
    app.patch(&admin("acme"), 1, json!({"status": "OPEN"})).await; // 7

    let placed: Vec<(i64, String, String)> = owner
        .query(
            "select id, app.json_time(created_at), tableoid::regclass::text from app.activity_logs
              where organization_id = 'acme' order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let partitions: Vec<String> = placed.iter().map(|(_, _, p)| p.clone()).collect();
    let months: Vec<String> = first_column(
        &owner,
        "select format('app.%I', app.activity_partition_name(app.utc_month(now(), m) at time zone 'UTC'))
           from unnest(array[-3, -1, 0, 0, 1, 1, 1]) with ordinality u(m, n) order by n",
        &[],
    )
    .await;
    assert_eq!(partitions, months, "{placed:#?}");
    assert!(began < placed[4].1, "the sixth entry's transaction began before the fifth's time: {began}");
    assert_eq!(placed[5].1, placed[4].1, "and is stamped with it, not with its own start");

    let newest_first: Vec<i64> = (1..=7).rev().collect();
    let oldest_first: Vec<i64> = (1..=7).collect();
    for size in 1..=3 {
        // The feed without filters (a static statement), with a filter every entry passes
        // (the dynamic one), one issue's history (oldest first), and oldest first in SQL.
        assert_eq!(feed(&app, &format!("limit={size}")).await, newest_first, "limit={size}");
        assert_eq!(
            feed(&app, &format!("limit={size}&action=created,updated")).await,
            newest_first,
            "limit={size}, filtered"
        );
        let history = app.walk(&member("acme"), &format!("/api/issues/1/activity?limit={size}")).await;
        assert_eq!(ids(&history.concat()), oldest_first, "history, limit={size}");
        assert_eq!(oldest_first_in_sql(&app, size).await, oldest_first, "oldest first, page_size {size}");
    }
    // Bounded in time: since and until cut the walk where they say.
    let since = &placed[2].1;
    let until = &placed[4].1;
    assert_eq!(feed(&app, &format!("limit=1&since={since}&until={until}")).await, [4, 3]);
    assert_eq!(feed(&app, &format!("limit=2&until={until}")).await, [4, 3, 2, 1]);
    assert_eq!(feed(&app, &format!("limit=2&since={since}")).await, [7, 6, 5, 4, 3]);
}
