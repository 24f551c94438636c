//! The activity log partitioned by month (migration 6): partitions made ahead of time by
//! the service and by `tenantry maintain`, each partition secured like its parent, reads
//! bounded in time touching only their months, and retention dropping whole months.

use std::process::Command;
use std::str::FromStr;

use pg_sandbox::postgres::SUPERUSER;
use serde_json::{Value, json};
use tenantry::db::maintenance::{ActivityUpkeep, run_once};

use crate::helpers::*;
use crate::sql::explain::{ExplainingSession, nodes};

/// The partitions of app.activity_logs, oldest first.
async fn partitions(sql: &tokio_postgres::Client) -> Vec<String> {
    first_column(
        sql,
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
          where i.inhparent = 'app.activity_logs'::regclass order by 1",
        &[],
    )
    .await
}

/// The partition names of the months `from..=to` counted from the current month (UTC).
async fn month_names(sql: &tokio_postgres::Client, from: i32, to: i32) -> Vec<String> {
    first_column(sql, "select app.activity_partition_name(date_trunc('month', now() at time zone 'UTC') + make_interval(months => m))
           from generate_series($1::int, $2::int) m order by m",
        &[&from, &to],).await
}

fn owner_config(app: &TestApp) -> tokio_postgres::Config {
    tokio_postgres::Config::from_str(&cluster().pg.url(SUPERUSER, &app.database)).unwrap()
}

#[tokio::test]
async fn partitions_exist_ahead_made_by_the_service_at_start_and_by_tenantry_maintain() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.activity_partitions_ahead = 5).await;
    let owner = app.owner_sql().await;
    // Migration 6 made this month and three ahead; the service at start, two more.
    assert_eq!(partitions(&owner).await, month_names(&owner, 0, 5).await);

    // One round with more months: only the missing ones, then nothing to do.
    let done =
        run_once(&owner_config(&app), ActivityUpkeep { months_ahead: 7, retention_months: 0 }).await.unwrap();
    let expected: Vec<String> =
        month_names(&owner, 6, 7).await.iter().map(|n| format!("created {n}")).collect();
    assert_eq!(done, expected);
    let again =
        run_once(&owner_config(&app), ActivityUpkeep { months_ahead: 7, retention_months: 0 }).await.unwrap();
    assert!(again.is_empty(), "{again:?}");

    // `tenantry maintain` (for cron) does the same round from the command line.
    let output = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("maintain")
        .env("DATABASE_URL", cluster().pg.url(SUPERUSER, &app.database))
        .env("ACTIVITY_PARTITIONS_AHEAD", "8")
        .env_remove("ACTIVITY_RETENTION_MONTHS")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let name = month_names(&owner, 8, 8).await.remove(0);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("created {name}"));
    assert_eq!(partitions(&owner).await, month_names(&owner, 0, 8).await);

    // The API role may not make (or drop) partitions: it owns nothing.
    let api = app.api_role_sql().await;
    let err = api.query("select app.maintain_activity_partitions(12, 0)", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");

    // Entries keep landing in the current month's partition through the API.
    app.create_ok(&member("alpha"), "logged").await;
    let this_month = month_names(&owner, 0, 0).await.remove(0);
    let here: i64 = owner
        .query_one(&format!("select count(*) from app.{this_month} where organization_id = 'alpha'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(here, 1);
}

#[tokio::test]
async fn two_rounds_at_once_create_each_partition_once() {
    let app = spawn_app().await;
    let config = owner_config(&app);
    let upkeep = ActivityUpkeep { months_ahead: 20, retention_months: 0 };
    let (a, b) = tokio::join!(run_once(&config, upkeep), run_once(&config, upkeep));
    let (a, b) = (a.unwrap(), b.unwrap());
    // One took the advisory lock and made all seventeen; the other found it taken (or, if it
    // came second, nothing left to do). Never an error, never a partition twice.
    assert_eq!(a.len() + b.len(), 17, "{a:?} {b:?}");
    let owner = app.owner_sql().await;
    assert_eq!(partitions(&owner).await, month_names(&owner, 0, 20).await);
}

#[tokio::test]
async fn every_partition_is_as_secure_as_the_parent_when_queried_by_name() {
    let app = spawn_app().await;
    app.create_ok(&member("alpha"), "alpha's").await;
    app.create_ok(&member("bravo"), "bravo's").await;
    let owner = app.owner_sql().await;
    let this_month = month_names(&owner, 0, 0).await.remove(0);

    // The catalog: every partition has forced RLS, the parent's policies word for word,
    // and the parent's grants exactly.
    let differences: Vec<String> = first_column(&owner, "with parent as (select 'app.activity_logs'::regclass as oid),
                  children as (select inhrelid as oid from pg_inherits where inhparent = (select oid from parent)),
                  policies as (
                    select p.polrelid, p.polname, p.polcmd, p.polpermissive, p.polroles,
                           pg_get_expr(p.polqual, p.polrelid) as qual, pg_get_expr(p.polwithcheck, p.polrelid) as checked
                      from pg_policy p)
             select c.oid::regclass || ': RLS not forced' from pg_class c
              where c.oid in (select oid from children) and not (c.relrowsecurity and c.relforcerowsecurity)
             union all
             select ch.oid::regclass || ': policies differ' from children ch
              where exists (select polname, polcmd, polpermissive, polroles, qual, checked from policies
                             where polrelid = (select oid from parent)
                            except
                            select polname, polcmd, polpermissive, polroles, qual, checked from policies
                             where polrelid = ch.oid)
                 or exists (select polname, polcmd, polpermissive, polroles, qual, checked from policies
                             where polrelid = ch.oid
                            except
                            select polname, polcmd, polpermissive, polroles, qual, checked from policies
                             where polrelid = (select oid from parent))
             union all
             select c.oid::regclass || ': grants differ' from pg_class c
              where c.oid in (select oid from children)
                and (select array_agg(x::text order by x::text) from unnest(c.relacl) x)
                    is distinct from (select array_agg(x::text order by x::text)
                                        from pg_class p, unnest(p.relacl) x where p.oid = (select oid from parent))",
            &[],).await;
    assert_eq!(differences, Vec::<String>::new());

    // In psql-like SQL as the API role, the partition by name: no tenant, nothing...
    let mut api = app.api_role_sql().await;
    let partition = format!("app.{this_month}");
    let none: i64 = api.query_one(&format!("select count(*) from {partition}"), &[]).await.unwrap().get(0);
    assert_eq!(none, 0, "no tenant, no rows");
    let everyone: i64 =
        owner.query_one(&format!("select count(*) from {partition}"), &[]).await.unwrap().get(0);
    assert_eq!(everyone, 2, "the control: both organizations' entries are there");
    // ... a tenant, only its own entries ...
    let tx = api.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("alpha", "admin-of-alpha", "ADMIN")).await.unwrap();
    let seen: Vec<String> = first_column(&tx, &format!("select organization_id from {partition}"), &[]).await;
    assert_eq!(seen, ["alpha"]);
    tx.rollback().await.unwrap();
    // ... and no change to any entry, nor a forged one for another organization.
    for (statement, expected) in [
        (format!("update {partition} set action = 'deleted'"), "42501"),
        (format!("delete from {partition}"), "42501"),
        (format!("truncate {partition}"), "42501"),
        (
            format!(
                "insert into {partition} (organization_id, id, issue_id, actor_id, action, changes)
                 values ('bravo', 99, 1, 'admin-of-alpha', 'created', '{{}}')"
            ),
            "42501",
        ),
        (format!("alter table {partition} no force row level security"), "42501"),
        (format!("drop table {partition}"), "42501"),
    ] {
        let tx = api.transaction().await.unwrap();
        tx.batch_execute(&set_tenant_sql("alpha", "admin-of-alpha", "ADMIN")).await.unwrap();
        let err = tx.batch_execute(&statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), expected, "{statement}: {err}");
        tx.rollback().await.unwrap();
    }
    let untouched: Vec<(String, String)> = owner
        .query(&format!("select organization_id, action from {partition} order by 1"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        untouched,
        [("alpha".to_owned(), "created".to_owned()), ("bravo".to_owned(), "created".to_owned())]
    );
}

/// Three issues of `acme` whose entries are moved to the first day of months `offsets`
/// (counted from the current one), one month each, with partitions made for them.
async fn entries_in_past_months(app: &TestApp, offsets: [i32; 3]) {
    for title in ["one", "two", "three"] {
        app.create_ok(&member("acme"), title).await;
    }
    let owner = app.owner_sql().await;
    owner
        .query(
            "select app.create_activity_partitions(0, date_trunc('month', now()) + make_interval(months => $1))",
            &[&offsets[0]],
        )
        .await
        .unwrap();
    for (id, offset) in (1_i64..).zip(offsets) {
        owner
            .execute(
                "update app.activity_logs
                    set created_at = date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                                     + make_interval(months => $2, hours => 12)
                  where organization_id = 'acme' and id = $1",
                &[&id, &offset],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_feed_bounded_in_time_reads_only_the_months_it_asks_for() {
    let app = spawn_app().await;
    entries_in_past_months(&app, [-5, -4, -3]).await;
    let owner = app.owner_sql().await;
    let months = month_names(&owner, -5, -3).await;
    let bounds: Vec<String> = first_column(&owner, "select to_char(date_trunc('month', now() at time zone 'UTC') + make_interval(months => m), 'YYYY-MM-DD\"T\"00:00:00\"Z\"')
               from generate_series(-5, -2) m order by m",
            &[],).await;

    let session = ExplainingSession::open(&app, "acme").await;
    let scanned = |plan: &Value| -> Vec<String> {
        let mut relations: Vec<String> =
            nodes(plan).iter().filter_map(|n| n["Relation Name"].as_str().map(str::to_owned)).collect();
        relations.sort();
        relations.dedup();
        relations
    };
    // One month: that partition alone.
    let (rows, plan) = session
        .run(
            &format!("select * from api.list_activity(since => '{}', until => '{}')", bounds[1], bounds[2]),
            "from app.activity_logs",
        )
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(scanned(&plan), [months[1].clone()], "{plan:#}");
    // Two months: those two, one statement each, the newer first.
    let (rows, plans) = session
        .run_all(
            &format!("select * from api.list_activity(since => '{}', until => '{}')", bounds[0], bounds[2]),
            "from app.activity_logs",
        )
        .await;
    assert_eq!(rows.len(), 2);
    let read: Vec<Vec<String>> = plans.iter().map(scanned).collect();
    assert_eq!(read, [vec![months[1].clone()], vec![months[0].clone()]], "{plans:#?}");
    // The control: without bounds, every partition is read (five months back to three
    // ahead): the current month with those ahead, the two before it one at a time, then
    // the rest at once.
    let (rows, plans) = session.run_all("select * from api.list_activity()", "from app.activity_logs").await;
    assert_eq!(rows.len(), 3);
    let read: Vec<usize> = plans.iter().map(|plan| scanned(plan).len()).collect();
    assert_eq!(read, [4, 1, 1, 3], "{plans:#?}");

    // Over HTTP, the same bounds give the same entries.
    let page =
        app.page(&member("acme"), &format!("/api/activity?since={}&until={}", bounds[1], bounds[2])).await;
    assert_eq!(ids(&page.items), [2]);
}

#[tokio::test]
async fn retention_drops_whole_months_older_than_the_setting_and_nothing_newer() {
    let app = spawn_app().await;
    // Entries of issues 1, 2 and 3 ten, nine and one month ago.
    entries_in_past_months(&app, [-10, -9, -1]).await;
    let owner = app.owner_sql().await;
    assert_eq!(partitions(&owner).await, month_names(&owner, -10, 3).await);

    // Off by default: a round without retention drops nothing.
    let done =
        run_once(&owner_config(&app), ActivityUpkeep { months_ahead: 3, retention_months: 0 }).await.unwrap();
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(count(&app, "select count(*) from app.activity_logs").await, 3);

    // Six months: every month that ended more than six months ago goes, whole.
    let app =
        spawn_app_on(&app.database, Mode::ApiLogin, |config| config.activity_retention_months = 6).await;
    let expected: Vec<String> =
        month_names(&owner, -10, -7).await.iter().map(|n| format!("app.{n}")).collect();
    assert_eq!(partitions(&owner).await, month_names(&owner, -6, 3).await, "dropped {expected:?} at start");
    let left: Vec<i64> = first_column(&owner, "select issue_id from app.activity_logs order by 1", &[]).await;
    assert_eq!(left, [3], "the entries of the dropped months are gone, the last month's stay");

    // The service keeps working on what is left, and the issues themselves are untouched.
    let feed = app.page(&member("acme"), "/api/activity").await;
    assert_eq!(ids(&feed.items), [3]);
    assert_eq!(app.list(&member("acme")).await.len(), 3);
    let response = app.patch(&admin("acme"), 1, json!({"status": "DONE"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(ids(&app.page(&member("acme"), "/api/activity").await.items), [4, 3]);
}
