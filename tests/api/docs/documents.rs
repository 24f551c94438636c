//! The README's commands, run as a reader would run them, so the README cannot drift: the
//! curl seed and tour of "Try it" (with curl, against a running server), then every psql
//! command of "For DBAs" in one psql session, each output compared with the README's.

use std::{
    fs::File,
    io::Write,
    process::{Command, Stdio},
};

use crate::helpers::*;

const README: &str = include_str!("../../../README.md");

/// The text of a `## ` section, up to the next one.
fn section<'a>(heading: &str) -> &'a str {
    let start = README.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("README has no {heading}"));
    let rest = &README[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The fenced code blocks of a section, as (info string, body).
fn code_blocks(text: &str) -> Vec<(&str, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        blocks.push((info.trim(), body.join("\n") + "\n"));
    }
    blocks
}

fn require_program(name: &str) {
    let found = Command::new(name).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(
        found,
        "the README test runs `{name}`, which is not installed (Debian: apt-get install -y curl postgresql-client)"
    );
}

/// Runs `script` through one psql session, stdout and stderr interleaved as on a
/// terminal (psql flushes its output before each error).
fn psql(url: &str, script: &str) -> String {
    let dir = crate::ops::startup::tempdir("readme-psql");
    let output_path = dir.join("output");
    let output = File::create(&output_path).unwrap();
    let mut child = Command::new("psql")
        .args(["-X", "-P", "pager=off", url])
        .env("PGTZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("running psql");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "psql itself failed");
    std::fs::read_to_string(output_path).unwrap()
}

/// Output as the README shows it: no psql input-position prefix on errors, no trailing
/// blanks (psql pads headers; editors strip them), no blank lines at the ends.
fn normalize(text: &str) -> String {
    let prefix = regex::Regex::new(r"^psql:<stdin>:\d+: ").unwrap();
    let lines: Vec<String> = text.lines().map(|l| prefix.replace(l.trim_end(), "").into_owned()).collect();
    lines.join("\n").trim_matches('\n').to_owned()
}

/// Runs "Try it" (the seed and the tour) in `shell` against a fresh server; returns it.
async fn run_the_tour(shell: &str) -> TestApp {
    let app = spawn_app().await;
    let host_port = app.address.trim_start_matches("http://");
    let tour: Vec<String> = code_blocks(section("## Try it"))
        .into_iter()
        .filter(|(info, _)| *info == "sh")
        .map(|(_, body)| body.replace("localhost:5000", host_port))
        .collect();
    assert_eq!(tour.len(), 3, "the seed, the tour, and safe edits and retries");
    // Asynchronously: the server answering curl runs on this test's runtime.
    let ran = tokio::process::Command::new(shell)
        .args(["-e", "-u", "-o", "pipefail", "-c", &tour.concat()])
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {shell} (Debian: apt-get install -y {shell}): {e}"));
    assert!(
        ran.status.success(),
        "the curl tour failed in {shell}: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let titles: Vec<String> =
        app.list(&member("acme")).await.iter().map(|i| i["title"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        titles,
        ["Retry-safe", "Login page returns 500"],
        "{shell}: issue 2 deleted, the retried create made once"
    );
    app
}

#[tokio::test]
async fn the_readme_curl_tour_and_dba_walkthrough_run_as_written() {
    require_program("curl");
    require_program("psql");
    // zsh (the macOS default) does not split unquoted variables: the tour must not need it.
    require_program("zsh");
    run_the_tour("zsh").await;
    let app = run_the_tour("bash").await;

    // "For DBAs": connect as the README says, then every sql block in one session.
    let blocks = code_blocks(section("## For DBAs"));
    let connect = regex::Regex::new(r"^psql postgresql://postgres@127\.0\.0\.1:\d+/tenantry\n$").unwrap();
    assert!(
        blocks.iter().any(|(info, body)| *info == "sh" && connect.is_match(body)),
        "the README shows how to connect, as the server prints it"
    );
    let mut steps: Vec<(String, Option<String>)> = Vec::new();
    for (info, body) in blocks {
        match info {
            "sql" => steps.push((body, None)),
            "text" => {
                let last = steps.last_mut().expect("an output block follows a sql block");
                assert!(last.1.is_none(), "one output block per sql block");
                last.1 = Some(body);
            }
            _ => {}
        }
    }
    assert!(steps.len() >= 6, "the walkthrough has its steps: {}", steps.len());
    let marker = |i: usize| format!("@@ README step {i} @@");
    let script: String =
        steps.iter().enumerate().map(|(i, (sql, _))| format!("\\echo '{}'\n{sql}", marker(i))).collect();
    let url = cluster().pg.url(pg_sandbox::postgres::SUPERUSER, &app.database);
    let output = tokio::task::spawn_blocking(move || psql(&url, &script)).await.unwrap();

    let mut differences = Vec::new();
    for (i, (sql, expected)) in steps.iter().enumerate() {
        let start = output.find(&marker(i)).unwrap_or_else(|| panic!("step {i} did not run:\n{output}"));
        let after = &output[start + marker(i).len()..];
        let actual = normalize(&after[..after.find("@@ README step").unwrap_or(after.len())]);
        match expected {
            Some(expected) if normalize(expected) != actual => differences
                .push(format!("{sql}README shows:\n{}\npsql prints:\n{actual}\n", normalize(expected))),
            None if actual.contains("ERROR") => differences.push(format!("{sql}failed:\n{actual}\n")),
            _ => {}
        }
    }
    assert!(differences.is_empty(), "README.md's DBA walkthrough drifted:\n\n{}", differences.join("\n"));
}

#[test]
fn every_setting_is_in_the_readmes_configuration_table() {
    let config = include_str!("../../../src/config.rs");
    let settings: Vec<&str> =
        config.split("env = \"").skip(1).map(|rest| &rest[..rest.find('"').unwrap()]).collect();
    assert!(settings.len() > 20 && settings.contains(&"DATABASE_CONTEXT"), "{settings:?}");
    let table = section("## Configuration");
    let missing: Vec<&&str> = settings.iter().filter(|name| !table.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "settings missing from the README's Configuration table: {missing:?}");
}

/// The README's `/readyz` example names the newest migration.
#[test]
fn the_readyz_example_names_the_newest_migration() {
    let latest = tenantry::db::migrate::latest_version();
    let example = format!("\"schemaVersion\": {latest}, \"expectedSchemaVersion\": {latest}");
    assert!(README.contains(&example), "README.md's /readyz example should say {example}");
}
