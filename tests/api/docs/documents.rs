//! Every document runs as written (see `runner`): README.md, ARCHITECTURE.md and each of
//! docs/, one test per document, each on a server and database of its own. Plus what the
//! documents promise about the code: every setting in docs/configuration.md, the
//! `/readyz` example naming the newest migration, a README that fits on a screen or four.

use super::runner::run_document;

const README: &str = include_str!("../../../README.md");

macro_rules! document_runs_as_written {
    ($($test:ident: $path:literal,)*) => {$(
        #[tokio::test]
        async fn $test() {
            run_document($path, include_str!(concat!("../../../", $path))).await;
        }
    )*};
}

document_runs_as_written! {
    readme: "README.md",
    architecture: "ARCHITECTURE.md",
    api: "docs/api.md",
    dba: "docs/dba.md",
    configuration: "docs/configuration.md",
    operations: "docs/operations.md",
    scaling: "docs/scaling.md",
    citus: "docs/citus.md",
    performance: "docs/performance.md",
    testing: "docs/testing.md",
}

/// The README is the front door: what, why, two commands, a taste, links.
#[test]
fn the_readme_fits_in_160_lines() {
    let lines = README.lines().count();
    assert!(lines <= 160, "README.md has {lines} lines: move the detail to docs/");
}

#[test]
fn every_setting_is_in_the_configuration_table() {
    let config = include_str!("../../../src/config.rs");
    let settings: Vec<&str> =
        config.split("env = \"").skip(1).map(|rest| &rest[..rest.find('"').unwrap()]).collect();
    assert!(settings.len() > 20 && settings.contains(&"DATABASE_CONTEXT"), "{settings:?}");
    let table = include_str!("../../../docs/configuration.md");
    let missing: Vec<&&str> = settings.iter().filter(|name| !table.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "settings missing from docs/configuration.md: {missing:?}");
}

/// docs/operations.md's `/readyz` example names the newest migration.
#[test]
fn the_readyz_example_names_the_newest_migration() {
    let latest = tenantry::db::migrate::latest_version();
    let example = format!("\"schemaVersion\":{latest},\"expectedSchemaVersion\":{latest}");
    let operations = include_str!("../../../docs/operations.md");
    assert!(operations.contains(&example), "docs/operations.md's /readyz example should say {example}");
}

/// Links between the documents point at files that exist.
#[test]
fn relative_links_point_at_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let link = regex::Regex::new(r"\]\(([^)#:]+)(#[^)]*)?\)").unwrap();
    let mut broken = Vec::new();
    for path in [
        "README.md",
        "ARCHITECTURE.md",
        "docs/api.md",
        "docs/dba.md",
        "docs/configuration.md",
        "docs/operations.md",
        "docs/scaling.md",
        "docs/citus.md",
        "docs/performance.md",
        "docs/testing.md",
    ] {
        let text = std::fs::read_to_string(root.join(path)).unwrap();
        let dir = root.join(path).parent().unwrap().to_owned();
        for found in link.captures_iter(&text) {
            if !dir.join(&found[1]).exists() {
                broken.push(format!("{path}: {}", &found[1]));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:?}");
}
