//! The catalog, checked: the invariants a DBA should be able to trust, and the same value
//! rules in SQL as in Rust.

use pg_sandbox::postgres::SUPERUSER;
use tenantry::domain::rules;

use crate::helpers::*;

#[tokio::test]
async fn every_table_in_the_private_schema_has_forced_rls_a_policy_and_org_led_keys() {
    let app = spawn_app().await;
    let sql = app.owner_sql().await;
    let tables = sql
        .query(
            "select c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                    (select count(*) from pg_policy p where p.polrelid = c.oid),
                    (select a.attname::text from pg_index i
                       join pg_attribute a on a.attrelid = c.oid and a.attnum = i.indkey[0]
                      where i.indrelid = c.oid and i.indisprimary)
               from pg_class c
              where c.relnamespace = 'app'::regnamespace and c.relkind in ('r', 'p')
              order by 1",
            &[],
        )
        .await
        .unwrap();
    // The monthly partitions of activity_logs are tables too (they can be queried by
    // name): each must pass every check below on its own.
    let names: Vec<String> = tables
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| !name.starts_with("activity_logs_y"))
        .collect();
    assert_eq!(
        names,
        [
            "activity_logs",
            "idempotency_keys",
            "issue_terms",
            "issues",
            "organization_counters",
            "webhook_deliveries",
            "webhook_queue",
            "webhook_requests",
            "webhook_secrets",
            "webhooks"
        ]
    );
    assert!(tables.len() >= names.len() + 4, "this month's partition and three ahead");
    for row in &tables {
        let table: String = row.get(0);
        assert!(row.get::<_, bool>(1), "{table}: RLS enabled");
        assert!(row.get::<_, bool>(2), "{table}: RLS forced");
        assert!(row.get::<_, i64>(3) > 0, "{table}: has a policy");
        assert_eq!(
            row.get::<_, Option<String>>(4).as_deref(),
            Some("organization_id"),
            "{table}: primary key led by organization_id"
        );
    }

    // Every index and foreign key on those tables leads with organization_id too.
    let stray: Vec<String> = first_column(&sql, "select i.indexrelid::regclass::text from pg_index i
               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
              where i.indrelid in (select oid from pg_class where relnamespace = 'app'::regnamespace)
                and a.attname <> 'organization_id'
             union all
             select conname::text from pg_constraint
              where connamespace = 'app'::regnamespace and contype = 'f'
                and conkey[1] <> (select attnum from pg_attribute where attrelid = conrelid and attname = 'organization_id')",
            &[],).await;
    assert!(stray.is_empty(), "not led by organization_id: {stray:?}");
}

/// Keys Citus could not enforce with `organization_id` as the distribution column: a
/// unique index (primary keys and unique constraints included) or exclusion constraint
/// without it, a foreign key that does not match `organization_id` with
/// `organization_id` at the same position, and a table without a NOT NULL
/// `organization_id` at all.
const KEYS_WITHOUT_ORGANIZATION_ID: &str = "
    select format('unique index %s', i.indexrelid::regclass) from pg_index i
      join pg_class c on c.oid = i.indrelid
     where c.relnamespace = 'app'::regnamespace and i.indisunique
       and not exists (select from pg_attribute a where a.attrelid = i.indrelid
                          and a.attname = 'organization_id' and a.attnum = any (i.indkey))
    union all
    select format('foreign key %s on %s', conname, conrelid::regclass) from pg_constraint
     where connamespace = 'app'::regnamespace and contype = 'f'
       and coalesce(array_position(conkey, (select attnum from pg_attribute
                                             where attrelid = conrelid and attname = 'organization_id')), -1)
        <> coalesce(array_position(confkey, (select attnum from pg_attribute
                                              where attrelid = confrelid and attname = 'organization_id')), -2)
    union all
    select format('exclusion constraint %s on %s', conname, conrelid::regclass) from pg_constraint
     where connamespace = 'app'::regnamespace and contype = 'x'
       and not exists (select from pg_attribute a where a.attrelid = conrelid
                          and a.attname = 'organization_id' and a.attnum = any (conkey))
    union all
    select format('table %s without a NOT NULL organization_id', c.oid::regclass) from pg_class c
     where c.relnamespace = 'app'::regnamespace and c.relkind in ('r', 'p')
       and not exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id'
                          and a.attnotnull)
    order by 1";

#[tokio::test]
async fn every_key_and_foreign_key_includes_organization_id_so_citus_can_distribute_by_it() {
    let app = spawn_app().await;
    let mut sql = app.owner_sql().await;
    let stray: Vec<String> = first_column(&sql, KEYS_WITHOUT_ORGANIZATION_ID, &[]).await;
    assert!(stray.is_empty(), "Citus could not distribute these by organization_id: {stray:#?}");

    // The control: each kind of key the check must catch, in a transaction rolled back.
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(
        "create table app.control_parent (organization_id text not null, id bigint,
                                          primary key (organization_id, id), unique (id));
         create table app.control_child (organization_id text not null, parent_id bigint, other_org text,
           foreign key (other_org, parent_id) references app.control_parent (organization_id, id),
           foreign key (parent_id) references app.control_parent (id),
           exclude using btree (parent_id with =));
         create table app.control_global (name text primary key);",
    )
    .await
    .unwrap();
    let caught: Vec<String> = first_column(&tx, KEYS_WITHOUT_ORGANIZATION_ID, &[]).await;
    assert_eq!(
        caught,
        [
            "exclusion constraint control_child_parent_id_excl on app.control_child",
            "foreign key control_child_other_org_parent_id_fkey on app.control_child",
            "foreign key control_child_parent_id_fkey on app.control_child",
            "table app.control_global without a NOT NULL organization_id",
            "unique index app.control_global_pkey",
            "unique index app.control_parent_id_key",
        ],
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn the_api_role_is_not_privileged_and_owns_nothing() {
    let app = spawn_app().await;
    let sql = app.owner_sql().await;
    let row = sql
        .query_one(
            "select rolsuper, rolbypassrls, rolinherit,
                    (select count(*) from pg_class where relowner = r.oid)
                  + (select count(*) from pg_proc where proowner = r.oid)
                  + (select count(*) from pg_namespace where nspowner = r.oid)
                  + (select count(*) from pg_type where typowner = r.oid)
               from pg_roles r where rolname = 'tenantry_api'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "not a superuser");
    assert!(!row.get::<_, bool>(1), "no BYPASSRLS");
    assert!(!row.get::<_, bool>(2), "inherits nothing");
    assert_eq!(row.get::<_, i64>(3), 0, "owns nothing");
    // And the service's own start-up check agrees.
    assert_eq!(tenantry::db::verify_request_role(&app.app_db).await.unwrap(), "tenantry_api");
}

#[tokio::test]
async fn every_schema_table_column_index_trigger_policy_function_type_and_role_has_a_comment() {
    let app = spawn_app().await;
    let sql = app.owner_sql().await;
    let missing: Vec<String> = first_column(&sql, "select 'schema ' || nspname from pg_namespace
              where nspname in ('app', 'api', 'dba', 'secrets') and obj_description(oid, 'pg_namespace') is null
             union all
             select 'table ' || c.oid::regclass from pg_class c
              where c.relnamespace in ('app'::regnamespace, 'api'::regnamespace, 'dba'::regnamespace,
                                       'secrets'::regnamespace)
                and c.relkind in ('r', 'p', 'v')
                and obj_description(c.oid, 'pg_class') is null
             union all
             select 'column ' || c.oid::regclass || '.' || a.attname from pg_class c
               join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
              where (c.relnamespace in ('app'::regnamespace, 'secrets'::regnamespace) and c.relkind in ('r', 'p')
                     or c.relnamespace = 'dba'::regnamespace and c.relkind = 'v')
                and col_description(c.oid, a.attnum) is null
             union all
             select 'policy ' || polname || ' on ' || polrelid::regclass from pg_policy
              where obj_description(oid, 'pg_policy') is null
             union all
             select 'function ' || p.oid::regprocedure from pg_proc p
              where p.pronamespace in ('app'::regnamespace, 'api'::regnamespace)
                and obj_description(p.oid, 'pg_proc') is null
             union all
             select 'type ' || t.oid::regtype from pg_type t
              where t.typnamespace in ('app'::regnamespace, 'api'::regnamespace) and t.typtype = 'c'
                and obj_description(t.typrelid, 'pg_class') is null and obj_description(t.oid, 'pg_type') is null
             union all
             select 'index ' || i.indexrelid::regclass from pg_index i
               join pg_class c on c.oid = i.indexrelid
              where c.relnamespace = 'app'::regnamespace
                and not exists (select from pg_constraint k where k.conindid = i.indexrelid)
                and obj_description(i.indexrelid, 'pg_class') is null
             union all
             select 'trigger ' || tgname || ' on ' || tgrelid::regclass from pg_trigger
              where not tgisinternal
                and tgrelid in (select oid from pg_class where relnamespace = 'app'::regnamespace)
                and obj_description(oid, 'pg_trigger') is null
             union all
             select 'role ' || rolname from pg_roles
              where rolname in ('tenantry_api', 'tenantry_dba') and shobj_description(oid, 'pg_authid') is null",
            &[],).await;
    assert!(missing.is_empty(), "without a comment: {missing:#?}");
}

/// Samples around every rule's edges, including characters where Unicode classes differ.
pub fn samples() -> Vec<String> {
    let mut samples: Vec<String> = [
        "",
        " ",
        "x",
        "Fix login",
        "\u{3000}",
        "\u{a0}\u{2003}",
        "a\u{200b}b",
        "\u{feff}",
        "a\u{2028}b",
        "a\tb",
        "a\nb",
        "a\r\nb",
        "a\u{1}b",
        "a\u{1f}b",
        "a\u{7f}b",
        "a\u{85}b",
        "a\u{9f}b",
        "a\u{a0}b",
        "\t",
        "\n \n",
        "é",
        "日本語",
        "emoji 🎉",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [254, 255, 256, 49_999, 50_000, 50_001] {
        samples.push("é".repeat(n));
    }
    samples
}

#[tokio::test]
async fn sql_and_rust_accept_exactly_the_same_titles_descriptions_ids_and_idempotency_keys() {
    let app = spawn_app().await;
    let sql = app.owner_sql().await;
    let checks = sql
        .prepare(
            "select char_length($1) between 1 and 255 and not app.is_blank($1) and not app.has_control_chars($1, false),
                    char_length($1) between 1 and 50000 and not app.is_blank($1) and not app.has_control_chars($1, true),
                    app.is_valid_id($1), app.is_valid_idempotency_key($1)",
        )
        .await
        .unwrap();
    // The CHECK constraints really are those expressions.
    let definitions: Vec<String> = first_column(
        &sql,
        "select pg_get_constraintdef(oid) from pg_constraint
              where conname in ('issues_title_check', 'issues_description_check') order by conname desc",
        &[],
    )
    .await;
    assert!(
        definitions[0].contains("255") && definitions[0].contains("has_control_chars(title, false)"),
        "{definitions:?}"
    );
    assert!(
        definitions[1].contains("50000") && definitions[1].contains("has_control_chars(description, true)"),
        "{definitions:?}"
    );
    assert_eq!(rules::TITLE_MAX_CHARS, 255);
    assert_eq!(rules::DESCRIPTION_MAX_CHARS, 50_000);

    let mut ids = vec![
        "org-1".to_owned(),
        "a.b_c:d@e-F".into(),
        "x".repeat(64),
        "x".repeat(65),
        "a b".into(),
        "a/b".into(),
        "é".into(),
        "a\n".into(),
    ];
    ids.extend(samples());
    ids.extend(["x".repeat(255), "x".repeat(256), " ~".into(), "\u{7f}".into(), "\t".into(), "ü".into()]);
    for sample in samples().into_iter().chain(ids) {
        let row = sql.query_one(&checks, &[&sample]).await.unwrap();
        assert_eq!(row.get::<_, bool>(0), rules::title_problem(&sample).is_none(), "title {sample:?}");
        assert_eq!(
            row.get::<_, bool>(1),
            rules::description_problem(&sample).is_none(),
            "description {sample:?}"
        );
        assert_eq!(row.get::<_, bool>(2), rules::is_valid_id(&sample), "id {sample:?}");
        assert_eq!(
            row.get::<_, bool>(3),
            rules::is_valid_idempotency_key(&sample),
            "idempotency key {sample:?}"
        );
    }
}

/// Functions that run as their owner (often a superuser, who bypasses RLS), each with why
/// that cannot reach tenant data.
const DEFINERS: &[(&str, &str)] = &[
    ("api.schema_version()", "returns one number from refinery's history, no tenant data"),
    (
        "app.index_issue_terms()",
        "a trigger function: nobody can call it, it writes the words of the row it fires for",
    ),
];

#[tokio::test]
async fn the_only_functions_running_as_their_owner_are_the_listed_ones_with_a_pinned_search_path() {
    let app = spawn_app().await;
    let sql = app.owner_sql().await;
    let definers: Vec<(String, Vec<String>, bool)> = sql
        .query(
            "select p.oid::regprocedure::text, coalesce(p.proconfig, '{}'), p.prorettype = 'trigger'::regtype
               from pg_proc p
              where p.pronamespace in ('app'::regnamespace, 'api'::regnamespace) and p.prosecdef
              order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let names: Vec<&str> = definers.iter().map(|(name, ..)| name.as_str()).collect();
    let listed: Vec<&str> = DEFINERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, listed, "every security definer function is listed with its reason");
    for (name, config, is_trigger) in &definers {
        assert_eq!(config, &["search_path=pg_catalog, pg_temp"], "{name}: search_path pinned");
        if name.starts_with("app.index_issue_terms") {
            assert!(is_trigger, "{name}: a trigger function, which nobody can call directly");
        }
    }
}

#[tokio::test]
async fn upgrading_a_database_that_holds_issues_makes_them_searchable() {
    // Migration 1 alone, issues in it, then migration 2: its words come from the backfill.
    let name = "upgrade_with_issues";
    let admin = connect(&cluster().pg.url(SUPERUSER, "postgres")).await;
    admin.batch_execute(&format!("create database {name}")).await.unwrap();
    let owner = connect(&cluster().pg.url(SUPERUSER, name)).await;
    owner.batch_execute(include_str!("../../../sql/migrations/V1__core.sql")).await.unwrap();
    owner
        .batch_execute(
            "insert into app.issues (organization_id, id, title, description, created_by)
             values ('acme', 1, 'Login page returns 500', 'after the deploy', 'ann'),
                    ('acme', 2, 'Typo', 'on the pricing page', 'ann'),
                    ('globex', 1, 'Login slow', 'sometimes', 'gus')",
        )
        .await
        .unwrap();
    owner.batch_execute(include_str!("../../../sql/migrations/V2__lists_and_activity.sql")).await.unwrap();

    let words: i64 = owner.query_one("select count(*) from app.issue_terms", &[]).await.unwrap().get(0);
    assert_eq!(words, 7 + 5 + 3, "every distinct word of every issue");
    owner.batch_execute(&set_session_tenant_sql("acme", "ann", "MEMBER")).await.unwrap();
    owner.batch_execute("set role tenantry_api").await.unwrap();
    let found: Vec<i64> = first_column(&owner, "select id from api.list_issues(search => 'logi')", &[]).await;
    assert_eq!(found, [1]);
    let forced: Vec<bool> = first_column(&owner, "select relforcerowsecurity from pg_class where oid in ('app.issues'::regclass, 'app.issue_terms'::regclass)", &[]).await;
    assert_eq!(forced, [true, true], "row-level security is forced again after the backfill");
}

#[tokio::test]
async fn upgrading_a_database_that_holds_activity_partitions_it_and_keeps_every_entry() {
    // Migrations 1-5 with entries from an old month and this one, then migration 6.
    let name = "upgrade_with_activity";
    let admin = connect(&cluster().pg.url(SUPERUSER, "postgres")).await;
    admin.batch_execute(&format!("create database {name}")).await.unwrap();
    let owner = connect(&cluster().pg.url(SUPERUSER, name)).await;
    // Migration 3 reads refinery's history table (its layout), which refinery would have made.
    owner
        .batch_execute(
            "create table refinery_schema_history (version int4 primary key, name varchar(255),
                                                   applied_on varchar(255), checksum varchar(255))",
        )
        .await
        .unwrap();
    for migration in [
        include_str!("../../../sql/migrations/V1__core.sql"),
        include_str!("../../../sql/migrations/V2__lists_and_activity.sql"),
        include_str!("../../../sql/migrations/V3__production.sql"),
        include_str!("../../../sql/migrations/V4__dba_views.sql"),
        include_str!("../../../sql/migrations/V5__citus_ready.sql"),
    ] {
        owner.batch_execute(migration).await.unwrap();
    }
    owner
        .batch_execute(
            "insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
             values ('acme', 1, 1, 'ann', 'created', '{\"title\": \"old\"}', '2025-06-15 12:00:00Z'),
                    ('acme', 2, 1, 'ann', 'deleted', '{\"title\": \"old\"}', now()),
                    ('globex', 1, 1, 'gus', 'created', '{\"title\": \"theirs\"}', now())",
        )
        .await
        .unwrap();
    let entries = "select organization_id, id, action, changes::text, created_at::text from app.activity_logs order by 1, 2";
    let rows = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i64, String, String, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect()
    };
    let before = rows(owner.query(entries, &[]).await.unwrap());
    let policies =
        "select polname::text from pg_policy where polrelid = 'app.activity_logs'::regclass order by 1";
    let policies_before: Vec<String> = first_column(&owner, policies, &[]).await;

    owner.batch_execute(include_str!("../../../sql/migrations/V6__partitioned_activity.sql")).await.unwrap();

    assert_eq!(rows(owner.query(entries, &[]).await.unwrap()), before, "every entry, unchanged");
    let row = owner
        .query_one(
            "select relkind::text, relrowsecurity, relforcerowsecurity from pg_class where oid = 'app.activity_logs'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1), row.get::<_, bool>(2)),
        ("p".to_owned(), true, true),
        "partitioned, row-level security forced"
    );
    let policies_after: Vec<String> = first_column(&owner, policies, &[]).await;
    assert_eq!(policies_after, policies_before);
    let old_month: i64 =
        owner.query_one("select count(*) from app.activity_logs_y2025m06", &[]).await.unwrap().get(0);
    assert_eq!(old_month, 1, "the old entry is in its month's partition");
    // The dba views read the new table.
    let per_org: Vec<(String, i64)> = owner
        .query("select organization_id, entries from dba.activity_per_organization order by 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_org, [("acme".to_owned(), 2), ("globex".to_owned(), 1)]);
    // And the API role sees its own organization's entries only.
    owner.batch_execute(&set_session_tenant_sql("acme", "ann", "MEMBER")).await.unwrap();
    owner.batch_execute("set role tenantry_api").await.unwrap();
    let seen: i64 = owner.query_one("select count(*) from app.activity_logs", &[]).await.unwrap().get(0);
    assert_eq!(seen, 2);
}

#[tokio::test]
async fn upgrading_puts_no_entry_in_an_earlier_month_than_an_entry_before_it() {
    // Every migration before 21, then entries as migration 12 found them: stamped with
    // their transaction's start, so one that waited for the counters row could hold an
    // earlier time than its predecessor's, across a month boundary too; then migration 21.
    let name = "upgrade_with_entries_out_of_month_order";
    let admin = connect(&cluster().pg.url(SUPERUSER, "postgres")).await;
    admin.batch_execute(&format!("create database {name}")).await.unwrap();
    let owner = connect(&cluster().pg.url(SUPERUSER, name)).await;
    owner
        .batch_execute(
            "create table refinery_schema_history (version int4 primary key, name varchar(255),
                                                   applied_on varchar(255), checksum varchar(255))",
        )
        .await
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/migrations");
    let mut migrations: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            let file = path.file_name().unwrap().to_str().unwrap().to_owned();
            (file[1..file.find("__").unwrap()].parse().unwrap(), path)
        })
        .collect();
    migrations.sort();
    let (before, from_21): (Vec<_>, Vec<_>) = migrations.into_iter().partition(|(version, _)| *version < 21);
    assert_eq!(from_21[0].0, 21);
    for (_, path) in &before {
        owner.batch_execute(&std::fs::read_to_string(path).unwrap()).await.unwrap();
    }
    owner
        .batch_execute(
            "select app.create_activity_partitions(0, '2025-05-01Z');
             insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
             values ('acme', 1, 1, 'ann', 'created', '{}', '2025-05-31 23:59:58Z'),
                    ('acme', 2, 1, 'ann', 'updated', '{}', '2025-06-01 00:00:01Z'),
                    ('acme', 3, 1, 'bob', 'updated', '{}', '2025-05-31 23:59:59Z'),
                    ('acme', 4, 1, 'ann', 'updated', '{}', '2025-06-01 00:00:02Z'),
                    ('acme', 5, 1, 'ann', 'updated', '{}', '2025-06-10 12:00:01Z'),
                    ('acme', 6, 1, 'bob', 'updated', '{}', '2025-06-10 12:00:00Z'),
                    ('globex', 1, 1, 'gus', 'created', '{}', '2025-06-01 00:00:05Z'),
                    ('globex', 2, 1, 'gus', 'updated', '{}', '2025-05-31 23:00:00Z')",
        )
        .await
        .unwrap();

    owner.batch_execute(&std::fs::read_to_string(&from_21[0].1).unwrap()).await.unwrap();

    let times: Vec<(String, i64, String)> = owner
        .query(
            "select organization_id, id, app.json_time(created_at) from app.activity_logs order by 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        ("acme", 1, "2025-05-31T23:59:58.000000Z"),
        ("acme", 2, "2025-06-01T00:00:01.000000Z"),
        // Behind entry 2 across the boundary: given entry 2's time.
        ("acme", 3, "2025-06-01T00:00:01.000000Z"),
        ("acme", 4, "2025-06-01T00:00:02.000000Z"),
        ("acme", 5, "2025-06-10T12:00:01.000000Z"),
        // Behind entry 5 within its month: left as it was.
        ("acme", 6, "2025-06-10T12:00:00.000000Z"),
        ("globex", 1, "2025-06-01T00:00:05.000000Z"),
        ("globex", 2, "2025-06-01T00:00:05.000000Z"),
    ]
    .map(|(org, id, at)| (org.to_owned(), id, at.to_owned()));
    assert_eq!(times, expected);
    let forced: bool = owner
        .query_one("select relforcerowsecurity from pg_class where oid = 'app.activity_logs'::regclass", &[])
        .await
        .unwrap()
        .get(0);
    assert!(forced, "row-level security is forced again after the repair");

    // The feed, a page at a time, as the API role: every entry once, in id order.
    owner.batch_execute(&set_session_tenant_sql("acme", "ann", "MEMBER")).await.unwrap();
    owner.batch_execute("set role tenantry_api").await.unwrap();
    for oldest_first in [false, true] {
        for size in 1..=3 {
            let (mut seen, mut after): (Vec<i64>, Option<String>) = (Vec::new(), None);
            loop {
                let rows = owner
                    .query(
                        "select id, next_cursor from api.list_activity(page_size => $1, after => $2, oldest_first => $3)",
                        &[&size, &after, &oldest_first],
                    )
                    .await
                    .unwrap();
                seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
                after = rows.last().and_then(|r| r.get(1));
                if after.is_none() {
                    break;
                }
            }
            let mut expected: Vec<i64> = (1..=6).collect();
            if !oldest_first {
                expected.reverse();
            }
            assert_eq!(seen, expected, "oldest_first {oldest_first}, page_size {size}");
        }
    }
}
