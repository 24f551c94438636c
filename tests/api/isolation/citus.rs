//! Ready for Citus, checked on plain PostgreSQL: the policies Citus accepts on
//! distributed tables (no sub-queries; `app.use_policies_without_subqueries()`, migration
//! 5) enforce the same rules. `TEST_CITUS_POLICIES=1` runs the whole suite with them (CI's
//! second pass, together with DATABASE_CONTEXT=set_local); the catalog check on keys is
//! in `schema.rs`.

use pg_sandbox::postgres::SUPERUSER;

use crate::helpers::*;

/// Policies of the app schema that hold a sub-query, which Citus refuses.
const POLICIES_WITH_SUBQUERIES: &str = "
    select format('%s on %s', p.polname, p.polrelid::regclass) from pg_policy p
      join pg_class c on c.oid = p.polrelid
     where c.relnamespace = 'app'::regnamespace
       and (coalesce(pg_get_expr(p.polqual, p.polrelid), '') ~* '\\mselect\\M'
            or coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') ~* '\\mselect\\M')
     order by 1";

async fn policies_with_subqueries(sql: &tokio_postgres::Client) -> Vec<String> {
    first_column(sql, POLICIES_WITH_SUBQUERIES, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_subqueries_the_policies_keep_every_tenant_apart() {
    let database = fresh_database().await;
    let owner = connect(&cluster().pg.url(SUPERUSER, &database)).await;
    let before = policies_with_subqueries(&owner).await;
    let rewritten: Vec<String> =
        first_column(&owner, "select * from app.use_policies_without_subqueries()", &[]).await;
    let (mut rewritten, mut before) = (rewritten, before);
    rewritten.sort();
    before.sort();
    assert_eq!(rewritten, before, "exactly the policies with sub-queries were rewritten");
    if !citus_policies() {
        assert!(rewritten.len() >= 5, "the tenant policies of every table: {rewritten:?}");
    }
    assert_eq!(policies_with_subqueries(&owner).await, Vec::<String>::new());
    let again: Vec<String> =
        first_column(&owner, "select * from app.use_policies_without_subqueries()", &[]).await;
    assert!(again.is_empty(), "running it again changes nothing: {again:?}");

    let app = spawn_app_on(&database, Mode::ApiLogin, |_| {}).await;
    crate::isolation::http::an_organization_cannot_read_list_update_or_delete_anothers_issue(&app).await;
    crate::isolation::http::twenty_organizations_creating_at_once_each_list_exactly_their_own(&app).await;

    // As the API role in SQL: no tenant, nothing; a tenant, only its rows; a MEMBER's
    // update matches no row (the admin policy).
    let mut sql = app.api_role_sql().await;
    for table in ["app.issues", "app.activity_logs", "app.organization_counters"] {
        let seen: i64 = sql.query_one(&format!("select count(*) from {table}"), &[]).await.unwrap().get(0);
        assert_eq!(seen, 0, "{table} without a tenant");
    }
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("org-3", "m", "MEMBER")).await.unwrap();
    let orgs: Vec<String> = first_column(&tx, "select distinct organization_id from app.issues", &[]).await;
    assert_eq!(orgs, ["org-3"]);
    let updated = tx.execute("update app.issues set title = 'member was here'", &[]).await.unwrap();
    assert_eq!(updated, 0, "a MEMBER updates nothing");
    let err = tx
        .execute(
            "insert into app.issues (organization_id, id, title, description, created_by) values ('org-4', 99, 't', 'd', 'm')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "another organization's row is refused");
    tx.rollback().await.unwrap();

    // The DBA role still reads everything and writes nothing, refused for the table.
    owner.batch_execute("set role tenantry_dba").await.unwrap();
    let everyone: i64 =
        owner.query_one("select count(distinct organization_id) from app.issues", &[]).await.unwrap().get(0);
    assert_eq!(everyone, 20 + 1, "org-0..org-19 and bravo");
    let err = owner.execute("delete from app.issues", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().message(), "permission denied for table issues");
}

#[tokio::test]
async fn a_policy_with_another_subquery_is_refused_not_half_rewritten() {
    let app = spawn_app().await;
    let mut owner = app.owner_sql().await;
    let tx = owner.transaction().await.unwrap();
    tx.batch_execute(
        "create policy sneaky on app.issues for select
           using (exists (select from app.organization_counters c where c.organization_id = issues.organization_id))",
    )
    .await
    .unwrap();
    let err = tx.query("select * from app.use_policies_without_subqueries()", &[]).await.unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("policy sneaky on app.issues"), "{err}");
    tx.rollback().await.unwrap();
}
