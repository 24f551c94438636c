//! The `dba` views: every organization for the DBA role, nothing for anyone else, and
//! no way to write through them.

use crate::helpers::*;

const VIEWS: [&str; 7] = [
    "dba.organizations",
    "dba.issues_per_organization",
    "dba.activity_per_organization",
    "dba.recent_activity",
    "dba.largest_organizations",
    "dba.functions",
    "dba.policies",
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
    api.batch_execute(&set_session_tenant_sql("acme", "u", "ADMIN")).await.unwrap();
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
    api.batch_execute(&set_session_tenant_sql("acme", "u", "MEMBER")).await.unwrap();
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

/// A person's login, a member of tenantry_dba only (as the docs tell a DBA to set up).
async fn dba_person(app: &TestApp) -> tokio_postgres::Client {
    let owner = app.owner_sql().await;
    owner
        .batch_execute(
            "do $$ begin
               if not exists (select from pg_roles where rolname = 'dba_person') then
                 create role dba_person login in role tenantry_dba;
               end if;
             end $$",
        )
        .await
        .unwrap();
    connect(&cluster().pg.url("dba_person", &app.database)).await
}

/// tenantry_dba sees every organization whatever app.org_id says; dba.as_tenant shows one
/// organization the way the API does, for the rest of the transaction, with no right to
/// write, and everything is back after the transaction.
#[tokio::test]
async fn as_tenant_shows_one_organization_as_the_api_does_and_cannot_write() {
    let app = seeded().await;
    let mut dba = dba_person(&app).await;
    async fn count(dba: &tokio_postgres::Client, sql: &str) -> i64 {
        dba.query_one(sql, &[]).await.unwrap().get(0)
    }
    dba.batch_execute("select set_config('app.org_id', 'acme', false)").await.unwrap();
    assert_eq!(
        count(&dba, "select count(*) from app.issues").await,
        3,
        "app.org_id alone changes nothing for tenantry_dba"
    );
    dba.batch_execute("reset app.org_id").await.unwrap();

    let tx = dba.transaction().await.unwrap();
    let said: String = tx.query_one("select dba.as_tenant('acme')", &[]).await.unwrap().get(0);
    assert!(said.contains("acme") && said.contains("tenantry_tenant_view"), "{said}");
    let seen: Vec<String> = tx
        .query("select title from app.issues order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, ["acme 1", "acme 2"]);
    let activity: i64 = tx.query_one("select count(*) from app.activity_logs", &[]).await.unwrap().get(0);
    assert_eq!(activity, 2);
    let write = tx
        .execute("insert into app.issues (organization_id, id, title, description, created_by) values ('acme', 99, 't', 'd', 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&write), "42501", "{write}");
    tx.rollback().await.unwrap();
    assert_eq!(count(&dba, "select count(*) from app.issues").await, 3, "back to every organization");

    for statement in ["update app.issues set title = 'x'", "delete from app.issues", "truncate app.issues"] {
        let tx = dba.transaction().await.unwrap();
        tx.query_one("select dba.as_tenant('acme')", &[]).await.unwrap();
        let err = tx.execute(statement, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
        tx.rollback().await.unwrap();
    }
    let bad = dba.query_one("select dba.as_tenant('no spaces allowed')", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&bad), "TN400");

    // The role writes nothing anywhere, and is not the API role.
    let owner = app.owner_sql().await;
    let rights: Vec<(String, bool, bool)> = owner
        .query(
            "select c.relname,
                    has_table_privilege('tenantry_tenant_view', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'),
                    pg_has_role('tenantry_tenant_view', 'tenantry_api', 'MEMBER')
             from pg_class c where c.relnamespace = 'app'::regnamespace and c.relkind in ('r', 'p')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(!rights.is_empty() && rights.iter().all(|(_, write, api)| !write && !api), "{rights:?}");
}

/// The views a DBA starts from: the organizations, one line per function, every policy in words.
#[tokio::test]
async fn the_dba_views_list_organizations_functions_and_policies_in_a_terminal_width() {
    let app = seeded().await;
    app.delete(&admin("acme"), 2).await;
    let dba = dba_person(&app).await;
    let organizations: Vec<(String, i64, i64, bool)> = dba
        .query(
            "select id, issues, activity_entries, last_activity_at is not null from dba.organizations",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(organizations, [("acme".to_owned(), 1, 3, true), ("globex".to_owned(), 1, 1, true)]);

    let functions: Vec<(String, Option<String>)> = dba
        .query("select function, summary from dba.functions where schema = 'api'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(functions.iter().any(|(f, _)| f.starts_with("api.list_issues(")), "{functions:?}");
    for (function, summary) in &functions {
        let summary = summary.as_deref().unwrap_or_default();
        assert!(!summary.is_empty() && !summary.contains('\n'), "{function}: {summary:?}");
    }
    let policies: Vec<(String, String, String, String)> = dba
        .query("select \"table\", policy, applies_to, meaning from dba.policies", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let tenant_select =
        policies.iter().find(|(t, p, ..)| t == "app.issues" && p == "issues_tenant_select").unwrap();
    assert_eq!(tenant_select.2, "every role");
    assert!(tenant_select.3.contains("app.org_id"), "{tenant_select:?}");
    let dba_read = policies.iter().find(|(_, p, ..)| p == "issues_dba_read").unwrap();
    assert_eq!(dba_read.2, "tenantry_dba");
    assert!(!policies.iter().any(|(t, ..)| t.contains("activity_logs_y")), "partitions left out");
}

/// Only the owner empties the database, and only tenantry_dba switches to the tenant view.
#[tokio::test]
async fn neither_the_api_role_nor_the_dba_role_can_reset_and_the_api_role_cannot_use_as_tenant() {
    let app = seeded().await;
    let api = app.api_role_sql().await;
    let dba = dba_person(&app).await;
    for (who, client) in [("tenantry_api", &api), ("tenantry_dba", &dba)] {
        let err = client.batch_execute("select app.reset_tenant_data()").await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{who}: {err}");
    }
    let err = api.batch_execute("select dba.as_tenant('acme')").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");
    let err = api.batch_execute("set role tenantry_tenant_view").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");
    assert_eq!(count(&app, "select count(*) from app.issues").await, 3, "nothing was deleted");
}
