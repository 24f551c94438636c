//! DATABASE_CONTEXT=set_local: the tenant is set with `SET LOCAL` and quoted literals (what
//! Citus forwards to its workers). SET takes no bound parameters, so the quoting is what
//! keeps a value a value: these tests hand it values the HTTP layer would never let
//! through (ids are checked there) and prove they arrive as data, never as SQL. The rest
//! of the suite runs in this mode too with `DATABASE_CONTEXT=set_local cargo test`.

use pg_sandbox::postgres::SUPERUSER;
use tenantry::{
    db::{self, ContextMode, Sql, push_literal},
    domain::{Role, TenantContext},
};

use crate::helpers::*;

/// Values that would end the literal, the statement or the transaction if pasted in raw,
/// under either reading of backslashes.
const HOSTILE: [&str; 13] = [
    "acme'; set local role postgres; --",
    "acme\\'; reset role; select '",
    "acme\\\\'; reset role; --",
    "'",
    "\\",
    "''",
    "E'x'",
    "$$; reset role; $$",
    "; commit; reset role; begin;",
    "a\"b",
    "line\nbreak\ttab",
    "é 日本 🎉",
    "",
];

const SEEN_BY_THE_TRANSACTION: Sql = Sql {
    text: "select current_setting('app.org_id'), current_setting('app.user_id'), \
           current_setting('app.role'), current_user::text, current_setting('is_superuser'), \
           current_setting('statement_timeout'), \
           coalesce(current_setting('citus.propagate_set_commands', true), 'unset')",
    param_types: &[],
};

fn literal(value: &str) -> String {
    let mut out = String::new();
    push_literal(&mut out, value).unwrap();
    out
}

#[tokio::test]
async fn a_quoted_literal_means_exactly_its_value_whatever_standard_conforming_strings_says() {
    let app = spawn_app().await;
    let sql = app.owner_sql().await;
    for standard in ["on", "off"] {
        sql.batch_execute(&format!("set standard_conforming_strings = {standard}")).await.unwrap();
        for value in HOSTILE {
            let messages = sql.simple_query(&format!("select {}", literal(value))).await.unwrap();
            let rows: Vec<_> = messages
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                    _ => None,
                })
                .collect();
            assert_eq!(rows, [Some(value.to_owned())], "standard_conforming_strings={standard}: {value:?}");
        }
    }
    // The control: pasted between plain quotes, the first value runs a second statement.
    let raw = sql.simple_query(&format!("select '{}'", HOSTILE[0])).await.unwrap();
    let statements =
        raw.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_))).count();
    assert_eq!(statements, 2, "select, then the injected set");
}

/// Every hostile value as org and user, through the service's own transaction, in both
/// ways of becoming the API role; the login used by `Mode::SwitchRole` is a superuser,
/// so an injected `reset role` would show as `is_superuser = on`.
#[tokio::test]
async fn hostile_settings_arrive_as_values_and_never_change_the_role() {
    for mode in [Mode::ApiLogin, Mode::SwitchRole] {
        // Backslashes are escapes for every connection to this database.
        let database = fresh_database().await;
        connect(&cluster().pg.url(SUPERUSER, "postgres"))
            .await
            .batch_execute(&format!("alter database {database} set standard_conforming_strings = off"))
            .await
            .unwrap();
        let app = spawn_app_on(&database, mode, |config| config.context = ContextMode::SetLocal).await;
        for value in HOSTILE {
            let ctx =
                TenantContext { org_id: value.into(), user_id: format!("u{value}"), role: Role::Member };
            let rows = app.app_db.call(&ctx, &SEEN_BY_THE_TRANSACTION, &[]).await.unwrap();
            let seen: Vec<String> = (0..7).map(|i| rows[0].get(i)).collect();
            // Citus forwards the SET LOCALs only with propagate_set_commands = 'local'.
            assert_eq!(
                seen,
                [value, &format!("u{value}"), "MEMBER", db::API_ROLE, "off", "5s", "local"],
                "{mode:?}: {value:?}"
            );
        }
        let conn = app.app_db.pool().get().await.unwrap();
        let standard: String = conn.query_one("show standard_conforming_strings", &[]).await.unwrap().get(0);
        assert_eq!(standard, "off", "the connections really read backslashes as escapes");
    }
}

#[tokio::test]
async fn a_setting_holding_nul_is_refused_before_anything_is_sent() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.context = ContextMode::SetLocal;
        config.pool_size = 1;
    })
    .await;
    let ctx =
        TenantContext { org_id: "acme\0'; reset role; --".into(), user_id: "u".into(), role: Role::Admin };
    let refused = app.app_db.call(&ctx, &SEEN_BY_THE_TRANSACTION, &[]).await;
    assert!(matches!(refused, Err(db::Error::InvalidInput { .. })), "{refused:?}");
    // The one pooled connection is fine and carries nothing.
    let ctx = TenantContext { org_id: "acme".into(), user_id: "u".into(), role: Role::Admin };
    let rows = app.app_db.call(&ctx, &SEEN_BY_THE_TRANSACTION, &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "acme");
}

#[tokio::test]
async fn set_local_settings_end_with_the_transaction() {
    let app = spawn_app_with(Mode::SwitchRole, |config| {
        config.context = ContextMode::SetLocal;
        config.pool_size = 1;
    })
    .await;
    app.create_ok(&member("alpha"), "one").await;
    let conn = app.app_db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "select current_setting('app.org_id', true), current_setting('app.user_id', true), \
                    current_user::text, current_setting('citus.propagate_set_commands', true)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some(""));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(""));
    assert_eq!(row.get::<_, String>(2), "postgres", "the role switch ended with the transaction too");
    assert_ne!(row.get::<_, Option<String>>(3).as_deref(), Some("local"), "and Citus' forwarding");
}
