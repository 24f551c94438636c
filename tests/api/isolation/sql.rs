//! What PostgreSQL itself enforces, checked as the API role without any HTTP: what a DBA
//! or an attacker with the API role's credentials meets in psql.

use serde_json::json;

use crate::helpers::*;

const TENANT_TABLES: [&str; 5] = [
    "app.issues",
    "app.activity_logs",
    "app.organization_counters",
    "app.idempotency_keys",
    "app.issue_terms",
];

async fn seed_two_organizations(app: &TestApp) {
    for org in ["alpha", "alpha", "bravo"] {
        app.create_ok(&member(org), "seeded").await;
    }
    app.patch(&admin("alpha"), 1, json!({"status": "DONE"})).await;
}

#[tokio::test]
async fn with_no_tenant_set_the_api_role_sees_nothing_and_can_write_nothing() {
    let app = spawn_app().await;
    seed_two_organizations(&app).await;
    let sql = app.api_role_sql().await;

    for table in TENANT_TABLES {
        let count: i64 = sql.query_one(&format!("select count(*) from {table}"), &[]).await.unwrap().get(0);
        assert_eq!(count, 0, "{table} without a tenant");
    }
    let listed = sql.query("select * from api.list_issues()", &[]).await.unwrap();
    assert!(listed.is_empty());

    let err = sql.query("select * from api.create_issue('t', 'd')", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "TN401");
    let err = sql
        .execute("insert into app.issues (organization_id, id, title, description, created_by) values ('alpha', 99, 't', 'd', 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "row-level security refuses the row");
    // Set, then ended: the setting reads '' and still matches nothing.
    sql.batch_execute(&format!("begin; {}; commit;", set_tenant_sql("alpha", "x", "ADMIN"))).await.unwrap();
    let count: i64 = sql.query_one("select count(*) from app.issues", &[]).await.unwrap().get(0);
    assert_eq!(count, 0);
}

#[tokio::test]
async fn with_a_tenant_set_the_api_role_sees_only_that_tenant() {
    let app = spawn_app().await;
    seed_two_organizations(&app).await;
    let mut sql = app.api_role_sql().await;

    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("alpha", "reader", "MEMBER")).await.unwrap();
    let orgs: Vec<String> = first_column(
        &tx,
        "select organization_id from app.issues union all select organization_id from app.activity_logs",
        &[],
    )
    .await;
    assert_eq!(orgs.len(), 2 + 3, "alpha's 2 issues and 3 entries");
    assert!(orgs.iter().all(|o| o == "alpha"));
    // Asking for bravo explicitly does not help.
    let bravo: i64 = tx
        .query_one("select count(*) from app.issues where organization_id = 'bravo'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bravo, 0);
    let err = tx.query("select * from api.get_issue(99)", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "TN404");
}

#[tokio::test]
async fn a_member_calling_update_or_delete_in_sql_is_refused() {
    let app = spawn_app().await;
    seed_two_organizations(&app).await;
    let mut sql = app.api_role_sql().await;

    for call in
        ["select * from api.update_issue(1, '{\"title\": \"x\"}')", "select * from api.delete_issue(1)"]
    {
        let tx = sql.transaction().await.unwrap();
        tx.batch_execute(&set_tenant_sql("alpha", "m", "MEMBER")).await.unwrap();
        let err = tx.query(call, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "TN403", "{call}");
    }
    // Straight at the table, the policies say the same: no row qualifies.
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("alpha", "m", "MEMBER")).await.unwrap();
    assert_eq!(tx.execute("update app.issues set title = 'x'", &[]).await.unwrap(), 0);
    assert_eq!(tx.execute("delete from app.issues", &[]).await.unwrap(), 0);
    tx.commit().await.unwrap();

    // ... while an ADMIN can: the refusals above are about the role, not broken SQL.
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("alpha", "a", "ADMIN")).await.unwrap();
    let rows =
        tx.query("select title from api.update_issue(1, '{\"title\": \"by admin\"}')", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "by admin");
    tx.rollback().await.unwrap();

    let titles: Vec<String> = first_column(
        &app.owner_sql().await,
        "select title from app.issues order by organization_id, id",
        &[],
    )
    .await;
    assert_eq!(titles, ["seeded", "seeded", "seeded"]);
}

#[tokio::test]
async fn activity_entries_cannot_be_changed_or_removed_by_the_api_role() {
    let app = spawn_app().await;
    seed_two_organizations(&app).await;
    let mut sql = app.api_role_sql().await;
    for statement in [
        "update app.activity_logs set action = 'created'",
        "delete from app.activity_logs",
        "truncate app.activity_logs",
    ] {
        let tx = sql.transaction().await.unwrap();
        tx.batch_execute(&set_tenant_sql("alpha", "a", "ADMIN")).await.unwrap();
        let err = tx.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}");
    }
    let count: i64 =
        app.owner_sql().await.query_one("select count(*) from app.activity_logs", &[]).await.unwrap().get(0);
    assert_eq!(count, 4);
}

#[tokio::test]
async fn the_dba_role_reads_every_tenant_and_writes_nothing() {
    let app = spawn_app().await;
    seed_two_organizations(&app).await;
    let owner = app.owner_sql().await;
    owner.batch_execute("set role tenantry_dba").await.unwrap();
    let orgs: i64 =
        owner.query_one("select count(distinct organization_id) from app.issues", &[]).await.unwrap().get(0);
    assert_eq!(orgs, 2);
    for statement in [
        "update app.issues set title = 'x'",
        "delete from app.activity_logs",
        "insert into app.issues (organization_id, id, title, description, created_by) values ('z', 1, 't', 'd', 'u')",
        "select * from api.list_issues()",
    ] {
        let err = owner.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}");
    }
}

#[tokio::test]
async fn the_api_role_cannot_reach_tenant_data_any_other_way() {
    let app = spawn_app().await;
    seed_two_organizations(&app).await;
    let sql = app.api_role_sql().await;
    for statement in [
        "alter table app.issues disable row level security",
        "alter table app.issues no force row level security",
        "drop policy issues_tenant_select on app.issues",
        "create policy sneaky on app.issues using (true)",
        "set role tenantry_dba",
        "set role postgres",
        "update app.issues set organization_id = 'alpha'",
    ] {
        let err = sql.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}");
    }
}

#[tokio::test]
async fn the_search_words_are_read_per_tenant_and_written_only_by_the_triggers() {
    let app = spawn_app().await;
    seed_two_organizations(&app).await;
    let mut sql = app.api_role_sql().await;

    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("alpha", "a", "ADMIN")).await.unwrap();
    let orgs: Vec<String> =
        first_column(&tx, "select distinct organization_id from app.issue_terms", &[]).await;
    assert_eq!(orgs, ["alpha"], "alpha's words only");
    tx.rollback().await.unwrap();

    // Only the triggers on app.issues write words; the API role cannot, for any tenant.
    for (statement, state) in [
        ("insert into app.issue_terms values ('bravo', 1, 'planted', 10)", "42501"),
        ("insert into app.issue_terms values ('alpha', 1, 'planted', 10)", "42501"),
        ("update app.issue_terms set weight = 99", "42501"),
        ("delete from app.issue_terms", "42501"),
        ("delete from app.issue_terms where organization_id = 'bravo'", "42501"),
    ] {
        let tx = sql.transaction().await.unwrap();
        tx.batch_execute(&set_tenant_sql("alpha", "a", "ADMIN")).await.unwrap();
        let err = tx.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), state, "{statement}");
    }
    let bravo: i64 = app
        .owner_sql()
        .await
        .query_one("select count(*) from app.issue_terms where organization_id = 'bravo'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(bravo > 0, "bravo's words are intact");
    let alpha: i64 = app
        .owner_sql()
        .await
        .query_one(
            "select count(*) from app.issue_terms where organization_id = 'alpha' and term = 'planted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(alpha, 0);
}
