//! The plans of the queries inside the api functions, as the API role runs them: every
//! table access goes through an index led by organization_id, and no filter evaluates
//! current_setting() row by row (the policies' `(select app.current_org_id())` is an
//! InitPlan, computed once per statement). auto_explain logs the nested statements'
//! plans as notices to this very session.

use std::str::FromStr;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::helpers::*;

/// A superuser session that loaded auto_explain, explains every statement (nested ones
/// too) as a notice, has sequential scans priced out, and runs as the API role.
async fn explaining_session(app: &TestApp) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let url = cluster().pg.url(pg_sandbox::postgres::SUPERUSER, &app.database);
    let config = tokio_postgres::Config::from_str(&url).unwrap();
    let (client, mut connection) = config.connect(NoTls).await.unwrap();
    let (notices, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                let _ = notices.send(notice.message().to_owned());
            }
        }
    });
    client
        .batch_execute(
            "load 'auto_explain';
             set auto_explain.log_min_duration = 0;
             set auto_explain.log_nested_statements = on;
             set auto_explain.log_verbose = on;
             set auto_explain.log_level = notice;
             -- Price sequential scans out: a table without a usable index still shows one.
             set enable_seqscan = off;
             set role tenantry_api;",
        )
        .await
        .unwrap();
    (client, received)
}

/// Runs `call` as a request does (in a transaction with the tenant set) and returns the
/// plans explained meanwhile.
async fn plans_of(
    client: &tokio_postgres::Client,
    notices: &mut mpsc::UnboundedReceiver<String>,
    call: &str,
) -> Vec<String> {
    client
        .batch_execute(&format!("begin; {}; {call}; commit;", set_tenant_sql("alpha", "ann", "ADMIN")))
        .await
        .unwrap_or_else(|e| panic!("{call}: {e}"));
    // A round trip after the call: every notice it caused has arrived.
    client.batch_execute("select 1").await.unwrap();
    let mut plans = Vec::new();
    while let Ok(notice) = notices.try_recv() {
        plans.push(notice);
    }
    plans
}

#[tokio::test]
async fn every_query_of_the_api_functions_uses_an_index_led_by_organization_id() {
    let app = spawn_app().await;
    for org in ["alpha", "bravo", "charlie"] {
        for n in 0..20 {
            app.create_ok(&member(org), &format!("issue {n}")).await;
        }
    }
    app.owner_sql().await.batch_execute("analyze").await.unwrap();
    let (client, mut notices) = explaining_session(&app).await;

    let calls = [
        "select * from api.create_issue('planned', 'explained')",
        "select * from api.get_issue(3)",
        "select * from api.list_issues()",
        r#"select * from api.update_issue(3, '{"status": "DONE"}')"#,
        r#"select * from api.update_issue(3, '{"status": "DONE"}')"#, // a no-op
        "select * from api.delete_issue(3)",
    ];
    for call in calls {
        let plans = plans_of(&client, &mut notices, call).await;
        let all = plans.join("\n---\n");
        let table_accesses: Vec<&str> =
            all.lines().filter(|l| l.contains(" on app.") && l.contains("Scan")).map(str::trim).collect();
        assert!(!table_accesses.is_empty() || call.contains("create_issue"), "{call}: no table read?\n{all}");
        for access in &table_accesses {
            assert!(!access.contains("Seq Scan"), "{call}: {access}\n{all}");
        }
        let index_conditions: Vec<&str> =
            all.lines().filter(|l| l.trim_start().starts_with("Index Cond:")).map(str::trim).collect();
        assert_eq!(
            index_conditions.len(),
            table_accesses.len(),
            "{call}: an index scan without a condition?\n{all}"
        );
        for condition in index_conditions {
            assert!(condition.contains("organization_id ="), "{call}: {condition}\n{all}");
        }
        for filter in all.lines().filter(|l| l.trim_start().starts_with("Filter:")) {
            // Without sub-queries (Citus), the admin policies check app.role per row; the
            // rows are the one or few the index condition found.
            if citus_policies() && filter.contains("current_setting('app.role'") {
                continue;
            }
            assert!(!filter.contains("current_setting"), "{call}: evaluated per row: {filter}\n{all}");
        }
    }
}

#[tokio::test]
async fn the_explain_check_sees_a_per_row_current_setting_filter_when_there_is_one() {
    // The control for the test above: an ad-hoc query that compares with current_setting
    // on a non-indexed column is caught.
    let app = spawn_app().await;
    app.create_ok(&member("alpha"), "seeded").await;
    let (client, mut notices) = explaining_session(&app).await;
    let plans = plans_of(
        &client,
        &mut notices,
        "select count(*) from app.issues where created_by = current_setting('app.user_id', true)",
    )
    .await
    .join("\n");
    assert!(
        plans.lines().any(|l| l.trim_start().starts_with("Filter:") && l.contains("current_setting")),
        "{plans}"
    );
}

/// The partitions of the activity log a set of plans reads, by name.
fn partitions_read(plans: &[String]) -> std::collections::BTreeSet<String> {
    let partition = regex::Regex::new(r" on app\.(activity_logs_y\d{4}m\d{2})").unwrap();
    plans
        .iter()
        .flat_map(|plan| partition.captures_iter(plan).map(|c| c[1].to_owned()).collect::<Vec<_>>())
        .collect()
}

/// A live stream's reads (`api.activity_stream`) are bounded in time: entry times never
/// run behind their ids (migration 12), so "after entry N" reads from N's month on, and
/// never the months ahead that upkeep made. With N's time (what every read after the
/// first knows), nothing else is touched; a client's bare `Last-Event-ID` costs one
/// look-up of N in each month's index first.
#[tokio::test]
async fn a_streams_reads_touch_only_the_months_from_its_position_on() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.create_ok(&member("alpha"), &format!("issue {n}")).await;
    }
    let sql = app.owner_sql().await;
    let (this_month, all_months): (String, i64) = {
        let row = sql
            .query_one(
                "select app.activity_partition_name(date_trunc('month', now() at time zone 'utc')),
                        (select count(*) from pg_inherits where inhparent = 'app.activity_logs'::regclass)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(all_months >= 4, "this month's partition and three ahead: {all_months}");
    let at: String = sql
        .query_one(
            "select created_at::text from app.activity_logs where organization_id = 'alpha' and id = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (client, mut notices) = explaining_session(&app).await;

    let known = plans_of(
        &client,
        &mut notices,
        &format!("select * from api.activity_stream(after_id => 2, after_at => '{at}')"),
    )
    .await;
    assert_eq!(partitions_read(&known), [this_month.clone()].into(), "{}", known.join("\n---\n"));
    // A bare position: the look-up reads each month once, the read itself only its own.
    let bare = plans_of(&client, &mut notices, "select * from api.activity_stream(after_id => 2)").await;
    let scans: Vec<&String> = bare.iter().filter(|plan| plan.contains("a.id > $2")).collect();
    assert!(!scans.is_empty(), "{}", bare.join("\n---\n"));
    assert_eq!(partitions_read(&scans.into_iter().cloned().collect::<Vec<_>>()), [this_month].into());
}
