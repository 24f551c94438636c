//! `sql/schema.sql` is the schema the migrations make, as `pg_dump --schema-only` writes it
//! from a freshly migrated database, grouped by kind so a DBA reads today's definitions
//! without replaying the migrations. `tools/dump-schema` rewrites it (this test, with
//! WRITE_SQL_SCHEMA=1); otherwise any difference fails here, as for `openapi/openapi.json`.

use std::{collections::BTreeMap, path::Path, process::Command};

use pg_sandbox::postgres::SUPERUSER;
use tenantry::db;

use crate::helpers::*;

/// The PostgreSQL major version whose pg_dump wrote the committed file: another major
/// version words the same schema differently.
const PG_DUMP_MAJOR: u32 = 15;

/// The sections of the file, in order, and the pg_dump entry types each holds. A COMMENT
/// stays with the entry it follows.
const SECTIONS: &[(&str, &[&str])] = &[
    ("Schemas", &["SCHEMA", "EXTENSION"]),
    ("Types", &["TYPE", "DOMAIN"]),
    (
        "Tables, views, indexes and triggers",
        &[
            "TABLE",
            "VIEW",
            "SEQUENCE",
            "SEQUENCE OWNED BY",
            "DEFAULT",
            "CONSTRAINT",
            "FK CONSTRAINT",
            "INDEX",
            "TABLE ATTACH",
            "INDEX ATTACH",
            "TRIGGER",
        ],
    ),
    ("Row-level security: policies", &["ROW SECURITY", "POLICY"]),
    ("Functions", &["FUNCTION", "PROCEDURE", "AGGREGATE"]),
    ("Grants", &["ACL", "DEFAULT ACL"]),
];

#[tokio::test]
async fn sql_schema_sql_is_the_schema_the_migrations_make() {
    let pg = &cluster().pg;
    let database = "schema_dump";
    let admin = connect(&pg.url(SUPERUSER, "postgres")).await;
    admin.batch_execute(&format!("create database {database}")).await.unwrap();
    let mut owner = connect(&pg.url(SUPERUSER, database)).await;
    db::migrate::run(&mut owner).await.expect("migrations apply");

    let pg_dump = pg.bin_dir().join("pg_dump");
    let version = run(Command::new(&pg_dump).arg("--version"));
    let major: u32 = version
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no version in {version:?}"));
    assert_eq!(
        major, PG_DUMP_MAJOR,
        "sql/schema.sql is written by pg_dump {PG_DUMP_MAJOR}; this machine's is {version:?}: \
         run the suite (and tools/dump-schema) with PostgreSQL {PG_DUMP_MAJOR}"
    );
    let dump = run(Command::new(&pg_dump)
        .args(["--schema-only", "--no-owner", "--restrict-key=tenantry", "--schema=app", "--schema=api"])
        .args(["--schema=dba", "--schema=secrets"])
        // The monthly partitions depend on the day the migrations ran.
        .args(["--exclude-table=app.activity_logs_*"])
        .args(["--host", "127.0.0.1", "--port", &pg.port().to_string()])
        .args(["--username", SUPERUSER, database]));
    let roles: Vec<String> = owner
        .query(
            "select format('-- %s: %s%s', r.rolname,
                      concat_ws(' ', case when r.rolcanlogin then 'LOGIN' else 'NOLOGIN' end,
                                case when r.rolinherit then 'INHERIT' else 'NOINHERIT' end,
                                case when r.rolbypassrls then 'BYPASSRLS' else 'NOBYPASSRLS' end),
                      coalesce(' (' || d.description || ')', ''))
             from pg_roles r left join pg_shdescription d on d.objoid = r.oid
             where r.rolname like 'tenantry%' order by r.rolname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let written = arrange(&dump, &roles);
    let objects = object_table(&owner).await;

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/schema.sql");
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (before, rest) = readme.split_once(OBJECTS_START).expect("sql/README.md has the objects markers");
    let (_, after) = rest.split_once(OBJECTS_END).expect("sql/README.md has the objects markers");
    let readme_written = format!("{before}{OBJECTS_START}\n{objects}{OBJECTS_END}{after}");
    if std::env::var_os("WRITE_SQL_SCHEMA").is_some_and(|v| v == "1") {
        std::fs::write(&path, &written).unwrap();
        std::fs::write(&readme_path, &readme_written).unwrap();
        eprintln!("wrote {} and the object table of {}", path.display(), readme_path.display());
        return;
    }
    assert!(
        readme == readme_written,
        "sql/README.md's object table is not what the migrations make; regenerate it with tools/dump-schema"
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != written {
        let first = committed.lines().zip(written.lines()).position(|(a, b)| a != b);
        let line = first.unwrap_or(committed.lines().count().min(written.lines().count()));
        panic!(
            "sql/schema.sql is not what the migrations make (first difference at line {}: {:?} \
             vs {:?}); regenerate it with tools/dump-schema",
            line + 1,
            committed.lines().nth(line),
            written.lines().nth(line),
        );
    }
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// pg_dump's text without session settings and version lines, its entries grouped into
/// [`SECTIONS`] (each keeping pg_dump's order within it).
fn arrange(dump: &str, roles: &[String]) -> String {
    let mut entries: Vec<(String, String)> = Vec::new(); // (type, text)
    let mut current: Option<(String, String)> = None;
    let mut lines = dump.lines().peekable();
    while let Some(line) = lines.next() {
        let skip = line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config('search_path'")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict")
            || line.starts_with("-- Dumped from")
            || line.starts_with("-- Dumped by")
            || line.contains("PostgreSQL database dump");
        if skip {
            continue;
        }
        // An entry starts with "--", "-- Name: ...; Type: T; Schema: ...", "--".
        if line == "--"
            && let Some(header) = lines.peek().and_then(|next| next.strip_prefix("-- Name: "))
        {
            let kind = header.split("; Type: ").nth(1).and_then(|rest| rest.split(';').next()).unwrap_or("");
            let header = format!("-- Name: {header}");
            lines.next();
            if lines.peek() == Some(&"--") {
                lines.next();
            }
            if let Some(entry) = current.take() {
                entries.push(entry);
            }
            current = Some((kind.to_owned(), format!("{header}\n")));
            continue;
        }
        if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    entries.extend(current);

    // COMMENT entries follow their object's.
    let mut grouped: Vec<(String, String)> = Vec::new();
    for (kind, text) in entries {
        match grouped.last_mut() {
            Some((_, previous)) if kind == "COMMENT" => previous.push_str(&text),
            _ => grouped.push((kind, text)),
        }
    }
    let mut sections: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (kind, text) in grouped {
        let section = SECTIONS
            .iter()
            .position(|(_, kinds)| kinds.contains(&kind.as_str()))
            .unwrap_or_else(|| panic!("pg_dump entry type {kind:?} has no section in SECTIONS:\n{text}"));
        sections.entry(section).or_default().push(text.trim_end().to_owned());
    }

    let mut out = String::from(
        "-- tenantry: the schema as the migrations in sql/migrations/ leave it, for reading.\n\
         -- Generated by tools/dump-schema (pg_dump --schema-only of a freshly migrated\n\
         -- database, grouped by kind) and checked equal to the migrations by the suite: change\n\
         -- the schema with a new migration, never here. The migrations build the database;\n\
         -- this file is not meant to be run (its sections are not in dependency order).\n\
         -- Which migration last defines each object: sql/README.md.\n\n\
         -- Roles (cluster-wide; created by migration 1, not dumped by pg_dump):\n",
    );
    for role in roles {
        out.push_str(role);
        out.push('\n');
    }
    for (section, texts) in sections {
        out.push_str(&format!("\n\n-- {}\n-- {}\n", "=".repeat(86), SECTIONS[section].0));
        out.push_str(&format!("-- {}\n", "=".repeat(86)));
        for text in texts {
            out.push('\n');
            out.push_str(&text);
            out.push('\n');
        }
    }
    // Runs of blank lines as one.
    let mut tidy = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        blank = if line.trim().is_empty() { blank + 1 } else { 0 };
        if blank <= 1 {
            tidy.push_str(line.trim_end());
            tidy.push('\n');
        }
    }
    tidy
}

const OBJECTS_START: &str = "<!-- objects: written by tools/dump-schema -->";
const OBJECTS_END: &str = "<!-- end of objects -->";

/// The migrations, in order: (version, file name, text lowercased with spaces collapsed).
fn migrations() -> Vec<(u32, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/migrations");
    let mut found: Vec<(u32, String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let version = name.trim_start_matches('V').split("__").next().unwrap().parse().unwrap();
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let text = text.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
            (version, name, text)
        })
        .collect();
    found.sort();
    found
}

/// A Markdown table: every table, view, type, function, policy and trigger of the
/// schemas, the last migration whose text creates or alters it, and its section of
/// schema.sql.
async fn object_table(owner: &tokio_postgres::Client) -> String {
    let rows = owner
        .query(
            "select kind, name, on_table from (
               select 'table' as kind, c.oid::regclass::text as name, null::text as on_table
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname in ('app', 'api', 'dba', 'secrets') and c.relkind in ('r', 'p') and not c.relispartition
               union all
               select 'view', c.oid::regclass::text, null
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname in ('app', 'api', 'dba', 'secrets') and c.relkind = 'v'
               union all
               select 'type', t.oid::regtype::text, null
                 from pg_type t join pg_namespace n on n.oid = t.typnamespace join pg_class c on c.oid = t.typrelid
                where n.nspname in ('app', 'api', 'dba', 'secrets') and c.relkind = 'c'
               union all
               select 'function', p.oid::regproc::text, null
                 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where n.nspname in ('app', 'api', 'dba', 'secrets')
               union all
               select 'policy', pol.polname, pol.polrelid::regclass::text
                 from pg_policy pol join pg_class c on c.oid = pol.polrelid where not c.relispartition
               union all
               select 'trigger', tg.tgname, tg.tgrelid::regclass::text
                 from pg_trigger tg join pg_class c on c.oid = tg.tgrelid
                where not tg.tgisinternal and not c.relispartition
             ) objects
             order by case kind when 'table' then 1 when 'view' then 2 when 'type' then 3
                                when 'policy' then 4 when 'trigger' then 5 else 6 end, name, on_table",
            &[],
        )
        .await
        .unwrap();
    let migrations = migrations();
    let mut table = String::from(
        "| object | kind | last defined or altered in | section of schema.sql |\n|---|---|---|---|\n",
    );
    for row in rows {
        let (kind, name, on_table): (String, String, Option<String>) = (row.get(0), row.get(1), row.get(2));
        let on = on_table.as_deref().unwrap_or("");
        let patterns: Vec<String> = match kind.as_str() {
            "table" => vec![
                format!("create table {name} ("),
                format!("create table {name}("),
                format!("alter table {name} "),
                format!("alter table only {name} "),
            ],
            "view" => vec![format!("create view {name} "), format!("create or replace view {name} ")],
            "type" => vec![format!("create type {name} ")],
            "function" => vec![
                format!("create function {name}("),
                format!("create or replace function {name}("),
                format!("alter function {name}("),
            ],
            "policy" => {
                vec![format!("create policy {name} on {on} "), format!("alter policy {name} on {on} ")]
            }
            "trigger" => vec![format!("create trigger {name} ")],
            _ => unreachable!(),
        };
        let last = migrations
            .iter()
            .rev()
            .find(|(_, _, text)| patterns.iter().any(|p| text.contains(p.as_str())))
            .map(|(_, file, _)| format!("[{file}](migrations/{file})"))
            .unwrap_or_else(|| panic!("no migration creates {kind} {name} {on}: {patterns:?}"));
        let section = match kind.as_str() {
            "table" | "view" | "trigger" => SECTIONS[2].0,
            "type" => SECTIONS[1].0,
            "policy" => SECTIONS[3].0,
            _ => SECTIONS[4].0,
        };
        let shown = if on.is_empty() { format!("`{name}`") } else { format!("`{name}` on `{on}`") };
        table.push_str(&format!("| {shown} | {kind} | {last} | {section} |\n"));
    }
    table
}
