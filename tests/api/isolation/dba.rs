//! The `dba` views: every organization for the DBA role, nothing for anyone else, and
//! no way to write through them.

use crate::helpers::*;

const VIEWS: [&str; 4] = [
    "dba.issues_per_organization",
    "dba.activity_per_organization",
    "dba.recent_activity",
    "dba.largest_organizations",
];

async fn seeded() -> TestApp {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "acme 1").await;
    app.create_ok(&member("acme"), "acme 2").await;
    app.create_ok(&member("globex"), "globex 1").await;
    app
}

#[tokio::test]
async fn the_dba_role_sees_every_organization_through_the_views() {
    let app = seeded().await;
    let sql = app.owner_sql().await;
    sql.batch_execute("set role tenantry_dba").await.unwrap();
    let issues: Vec<(String, i64)> = sql
        .query("select organization_id, issues from dba.issues_per_organization", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(issues, [("acme".to_owned(), 2), ("globex".to_owned(), 1)]);
    let largest: Vec<(String, i64)> = sql
        .query("select organization_id, rank from dba.largest_organizations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(largest, [("acme".to_owned(), 1), ("globex".to_owned(), 2)]);
    let recent: Vec<(String, String)> = sql
        .query("select organization_id, what from dba.recent_activity", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(recent[0], ("globex".to_owned(), "globex 1".to_owned()), "newest first: {recent:?}");
    assert_eq!(recent.len(), 3);
    let entries: i64 = sql
        .query_one("select sum(entries)::bigint from dba.activity_per_organization", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(entries, 3);
}

#[tokio::test]
async fn the_api_role_and_other_logins_are_refused_the_dba_views() {
    let app = seeded().await;
    let api = app.api_role_sql().await;
    api.batch_execute(&set_tenant_sql("acme", "u", "ADMIN").replace(", true)", ", false)")).await.unwrap();
    let owner = app.owner_sql().await;
    // Roles are cluster-wide: an earlier run may have made it.
    let _ = owner.batch_execute("create role dba_outsider login").await;
    let outsider = connect(&cluster().pg.url("dba_outsider", &app.database)).await;
    for view in VIEWS {
        for (who, client) in [("tenantry_api", &api), ("a plain login", &outsider)] {
            let err = client.query(&format!("select * from {view}"), &[]).await.expect_err(who);
            assert_eq!(sqlstate(&err), "42501", "{who} reading {view}: {err}");
        }
    }
}

#[tokio::test]
async fn a_view_granted_by_mistake_still_shows_only_what_rls_allows() {
    let app = seeded().await;
    let owner = app.owner_sql().await;
    owner
        .batch_execute("grant usage on schema dba to tenantry_api; grant select on all tables in schema dba to tenantry_api")
        .await
        .unwrap();
    let api = app.api_role_sql().await;
    let count = "select count(*) from dba.issues_per_organization";
    let rows: i64 = api.query_one(count, &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "no tenant: nothing, although the owner is a superuser");
    api.batch_execute(&set_tenant_sql("acme", "u", "MEMBER").replace(", true)", ", false)")).await.unwrap();
    let orgs: Vec<String> =
        first_column(&api, "select organization_id from dba.issues_per_organization", &[]).await;
    assert_eq!(orgs, ["acme"], "its own organization only");
}

#[tokio::test]
async fn the_dba_views_run_as_invoker_and_cannot_be_written() {
    let app = seeded().await;
    let owner = app.owner_sql().await;
    let views: Vec<(String, bool)> = owner
        .query(
            "select c.oid::regclass::text, coalesce('security_invoker=true' = any(c.reloptions), false)
               from pg_class c where c.relnamespace = 'dba'::regnamespace order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(views.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(), {
        let mut sorted = VIEWS.to_vec();
        sorted.sort();
        sorted
    });
    for (view, invoker) in &views {
        assert!(invoker, "{view} is security_invoker");
        let privileges = "select has_table_privilege('tenantry_dba', $1::text::regclass, 'select'),
                                has_table_privilege('tenantry_dba', $1::text::regclass, 'insert, update, delete, truncate')";
        let row = owner.query_one(privileges, &[view]).await.unwrap();
        assert_eq!(
            (row.get::<_, bool>(0), row.get::<_, bool>(1)),
            (true, false),
            "{view}: read-only for the DBA"
        );
    }
    owner.batch_execute("set role tenantry_dba").await.unwrap();
    for statement in [
        "delete from dba.recent_activity",
        "update dba.issues_per_organization set issues = 0",
        "delete from app.issues",
        "update app.activity_logs set action = 'x'",
        "create view dba.mine as select 1",
    ] {
        let err = owner.batch_execute(statement).await.expect_err(statement);
        // Refused for want of privilege, or because a summary view cannot be written.
        assert!(["42501", "55000"].contains(&sqlstate(&err).as_str()), "{statement}: {err}");
    }
}

/// The ETag key lets whoever holds it forge tags: the owner reads it, no other role can.
#[tokio::test]
async fn the_services_keys_are_readable_by_the_owner_only() {
    let app = spawn_app().await;
    let api = app.api_role_sql().await;
    let err = api.query("select key from secrets.keys", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let owner = app.owner_sql().await;
    owner.batch_execute("set role tenantry_dba").await.unwrap();
    let err = owner.query("select key from secrets.keys", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    owner.batch_execute("reset role").await.unwrap();
    let key: Vec<u8> =
        owner.query_one("select key from secrets.keys where name = 'etag'", &[]).await.unwrap().get(0);
    assert_eq!(key.len(), 32);
}
