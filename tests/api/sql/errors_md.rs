//! `sql/ERRORS.md` lists every SQLSTATE the functions raise on purpose with its Rust error
//! and HTTP status: each is raised in PostgreSQL here and goes through the service's two
//! mappings, and the migrations raise no code the table lacks.

use std::{collections::BTreeSet, path::Path};

use poem::error::ResponseError;
use tenantry::{db, http::error::ApiError};

use crate::helpers::*;

#[tokio::test]
async fn every_sqlstate_of_errors_md_is_raised_by_the_migrations_and_mapped_as_the_table_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = std::fs::read_to_string(root.join("sql/ERRORS.md")).unwrap();
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|line| line.starts_with("| `TN"))
        .map(|line| line.trim_matches('|').split(" | ").map(|cell| cell.trim().to_owned()).collect())
        .collect();
    let listed: BTreeSet<String> = rows.iter().map(|row| row[0].trim_matches('`').to_owned()).collect();

    let code = regex::Regex::new(r"errcode\s*=\s*'(TN\d{3})'").unwrap();
    let mut raised = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("sql/migrations")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        raised.extend(code.captures_iter(&text).map(|c| c[1].to_owned()));
    }
    assert_eq!(listed, raised, "sql/ERRORS.md lists exactly the codes the migrations raise");

    let sql = connect(&cluster().pg.url(pg_sandbox::postgres::SUPERUSER, "postgres")).await;
    for row in &rows {
        let [sqlstate, _, _, rust, http] = &row[..] else { panic!("five columns: {row:?}") };
        let sqlstate = sqlstate.trim_matches('`');
        let raise = format!(
            "do $$ begin raise exception 'raised by the test' using errcode = '{sqlstate}', \
             detail = 'current_version=3'; end $$"
        );
        let err = sql.batch_execute(&raise).await.expect_err("raised");
        let mapped = db::Error::from(err);
        let variant = format!("{mapped:?}");
        let variant = variant.split(['(', ' ']).next().unwrap();
        assert_eq!(format!("`{variant}`"), *rust, "{sqlstate}: the Rust error");
        let status = ApiError::from(mapped).status().as_u16().to_string();
        assert!(http.starts_with(&status), "{sqlstate}: HTTP {status}, the table says {http:?}");
    }
}
