//! Runs a document's commands as a reader would: every ```` ```sh ```` and ```` ```sql ````
//! block, top to bottom, in one shell (bash, then zsh) against one running service and
//! database, and compares what they print with the document.
//!
//! The rules a document follows (docs/testing.md says the same for writers):
//! - A ```` ```text ```` block right after a command block is that block's whole output;
//!   a trailing `# 404`-style comment on a command checks only its HTTP status (the last
//!   `curl` it ran). Comparison is exact but for `…`, which matches anything up to the end
//!   of its line (alone on a line: any number of lines), and `<name>`, which matches a
//!   token and must then be the same wherever `<name>` appears later in that run.
//! - A run of `sql` blocks with nothing but prose and outputs between them is one
//!   `tenantry psql` session, as a reader who keeps psql open would have.
//! - The first command of a document that runs anything is `tenantry reset --yes`, so
//!   the document can run twice in a row (it does: once in bash, once in zsh).
//! - A block tagged `sh no-run` is only parsed (`bash -n`, `zsh -n`); the sentence before
//!   it must say why, and benchmarks and external hosts are the only reasons accepted.
//!
//! What the test stands in for: `localhost:5000` is the test's server (the same binary and
//! settings `cargo run` serves), `localhost:5001` another free port, port 5433 a
//! PostgreSQL that takes TLS only with `ca.crt` (the CA that signed its certificate) in the
//! working directory, `tenantry` the binary `cargo test` built, and the lines `cargo run`
//! and `cargo test` are the suite itself (parsed, not run). The server runs as
//! `WEBHOOK_ALLOW_INSECURE_TARGETS=1 cargo run` would, which api.md asks for to try
//! webhooks with a receiver on localhost (it changes nothing else).

use std::{collections::HashMap, path::Path, process::Stdio};

use crate::helpers::*;

/// A fenced block: its info string, its lines, where it starts (1-based) and the prose
/// paragraph just before it.
#[derive(Debug)]
pub struct Block {
    pub info: String,
    pub body: String,
    pub line: usize,
    pub prose_before: String,
}

pub fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut ended = false;
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            // A paragraph ends at a blank line; it is the one before a block until the
            // next one starts.
            if line.trim().is_empty() {
                ended = true;
            } else {
                if ended {
                    paragraph.clear();
                    ended = false;
                }
                paragraph.push(line);
            }
            continue;
        };
        let body: Vec<&str> = lines.by_ref().map(|(_, l)| l).take_while(|l| !l.starts_with("```")).collect();
        blocks.push(Block {
            info: info.trim().to_owned(),
            body: body.join("\n") + "\n",
            line: number + 1,
            prose_before: paragraph.join(" "),
        });
        paragraph.clear();
    }
    blocks
}

/// Info strings a document may use; anything shell-like must be `sh` so it runs.
const KNOWN_INFO: &[&str] = &["sh", "sh no-run", "sql", "sql no-run", "text", "json", "ini", ""];
/// Why a block may be left unrun.
const NO_RUN_REASONS: &[&str] = &["benchmark", "external host"];
/// Lines that are the suite itself (see the module comment).
const THE_SUITE_ITSELF: &[&str] = &["cargo run", "cargo test", "WEBHOOK_ALLOW_INSECURE_TARGETS=1 cargo run"];

fn is_the_suite_itself(line: &str) -> bool {
    THE_SUITE_ITSELF.contains(&line.split(" #").next().unwrap_or_default().trim())
}

/// What a document's blocks must look like before anything runs; returns the no-run
/// blocks, to be listed.
pub fn check_shape(name: &str, blocks: &[Block], text: &str) -> Vec<String> {
    // A reason for the whole document may stand in its first paragraph.
    let opening = text.split("\n\n").nth(1).unwrap_or_default().to_lowercase().replace('\n', " ");
    let mut no_run = Vec::new();
    for block in blocks {
        let at = format!("{name}:{}", block.line);
        assert!(
            KNOWN_INFO.contains(&block.info.as_str()),
            "{at}: a ```{} block (use one of {KNOWN_INFO:?})",
            block.info
        );
        if block.info.ends_with("no-run") {
            let prose = format!("{} {opening}", block.prose_before.to_lowercase().replace('\n', " "));
            assert!(
                NO_RUN_REASONS.iter().any(|reason| prose.contains(reason)),
                "{at}: a no-run block needs its reason ({NO_RUN_REASONS:?}) in the sentence before it: {prose}"
            );
            no_run.push(format!("{at}: {}", block.prose_before));
        }
    }
    no_run
}

/// `bash -n` and `zsh -n` on every `sh` and `sh no-run` block.
pub fn check_syntax(name: &str, blocks: &[Block]) {
    for block in blocks.iter().filter(|b| b.info.starts_with("sh")) {
        for shell in ["bash", "zsh"] {
            let checked = std::process::Command::new(shell)
                .args(["-n", "-c", &block.body])
                .output()
                .unwrap_or_else(|e| panic!("running {shell} (Debian: apt-get install -y {shell}): {e}"));
            assert!(
                checked.status.success(),
                "{name}:{}: {shell} -n: {}",
                block.line,
                String::from_utf8_lossy(&checked.stderr)
            );
        }
    }
}

/// One command block to run and what it should print.
struct Step<'a> {
    block: &'a Block,
    expected: Option<&'a str>,
}

const MARK: &str = "@@tenantry-docs";

/// A trailing `# 404`-style comment: the status the line's command must get.
fn expected_status(line: &str) -> Option<&str> {
    let comment = line.rfind(" # ")?;
    let status = line[comment + 3..].get(..3)?;
    let next = line[comment + 3..].chars().nth(3);
    (status.bytes().all(|b| b.is_ascii_digit())
        && status.starts_with(['1', '2', '3', '4', '5'])
        && next.is_none_or(|c| !c.is_ascii_alphanumeric()))
    .then_some(status)
}

/// The shell script for `steps`: markers between blocks, status checks after lines with
/// a status comment, runs of sql blocks through one `tenantry psql`.
fn script(steps: &[Step], sql_sessions: &[Vec<usize>]) -> String {
    // curl reports each status on stderr (after the transfer), where the output is.
    let mut script =
        format!("curl() {{ command curl -w '%{{stderr}}{MARK} status %{{http_code}}\\n' \"$@\"; }}\n");
    let mut i = 0;
    while i < steps.len() {
        if let Some(session) = sql_sessions.iter().find(|s| s[0] == i) {
            script.push_str(&format!("echo '{MARK} block {i}'\ntenantry psql 2>&1 <<'TENANTRY_DOCS_SQL'\n"));
            for &j in session {
                script.push_str(&format!("\\echo '{MARK} block {j}'\n{}", steps[j].block.body));
            }
            script.push_str("TENANTRY_DOCS_SQL\n");
            i = session.last().unwrap() + 1;
            continue;
        }
        script.push_str(&format!("echo '{MARK} block {i}'\n"));
        for line in steps[i].block.body.lines().filter(|line| !is_the_suite_itself(line)) {
            script.push_str(line);
            script.push('\n');
            if let Some(status) = expected_status(line) {
                script.push_str(&format!("echo '{MARK} expect {status}'\n"));
            }
        }
        i += 1;
    }
    script.push_str(&format!("echo '{MARK} end'\n"));
    script
}

/// What a reader sees: no carriage returns, no trailing blanks, no psql input positions,
/// no blank lines at either end.
fn normalize(text: &str) -> Vec<String> {
    let prefix = regex::Regex::new(r"^psql:<stdin>:\d+: ").unwrap();
    let lines: Vec<String> = text.lines().map(|l| prefix.replace(l.trim_end(), "").into_owned()).collect();
    let first = lines.iter().position(|l| !l.is_empty()).unwrap_or(lines.len());
    let last = lines.iter().rposition(|l| !l.is_empty()).map_or(first, |i| i + 1);
    lines[first..last].to_vec()
}

/// Matches `actual` against `expected` lines with `…` and `<name>` (see the module
/// comment), extending `bound` on success.
fn matches(expected: &[String], actual: &[String], bound: &mut HashMap<String, String>) -> bool {
    let Some((first, rest)) = expected.split_first() else { return actual.is_empty() };
    if first == "…" {
        return (0..=actual.len()).any(|skip| {
            let mut attempt = bound.clone();
            let found = matches(rest, &actual[skip..], &mut attempt);
            if found {
                *bound = attempt;
            }
            found
        });
    }
    let Some((line, actual_rest)) = actual.split_first() else { return false };
    let mut attempt = bound.clone();
    line_matches(first, line, &mut attempt) && matches(rest, actual_rest, &mut attempt) && {
        *bound = attempt;
        true
    }
}

fn line_matches(expected: &str, actual: &str, bound: &mut HashMap<String, String>) -> bool {
    let token = regex::Regex::new(r"<([a-z][a-z0-9_-]*)>|…").unwrap();
    let mut pattern = String::from("^");
    let mut names = Vec::new();
    let mut last = 0;
    for found in token.captures_iter(expected) {
        let whole = found.get(0).unwrap();
        pattern.push_str(&regex::escape(&expected[last..whole.start()]));
        last = whole.end();
        match found.get(1) {
            None => pattern.push_str(".*"),
            Some(name) => match bound.get(name.as_str()) {
                Some(value) => pattern.push_str(&regex::escape(value)),
                None => {
                    pattern.push_str(r"(\S+?)");
                    names.push(name.as_str().to_owned());
                }
            },
        }
    }
    pattern.push_str(&regex::escape(&expected[last..]));
    pattern.push('$');
    let Some(captures) = regex::Regex::new(&pattern).unwrap().captures(actual) else { return false };
    for (i, name) in names.into_iter().enumerate() {
        let value = captures[i + 1].to_owned();
        if bound.get(&name).is_some_and(|v| *v != value) {
            return false;
        }
        bound.insert(name, value);
    }
    true
}

/// Runs the document `name` (its `text`) in bash, then again in zsh, against one service
/// and database; panics listing every difference.
pub async fn run_document(name: &str, text: &str) {
    for program in ["curl", "jq", "psql", "zsh"] {
        let found =
            std::process::Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the docs test runs `{program}`, which is missing (Debian: apt-get install -y curl jq postgresql-client zsh)"
        );
    }
    let blocks = blocks(text);
    let no_run = check_shape(name, &blocks, text);
    check_syntax(name, &blocks);
    if !no_run.is_empty() {
        eprintln!("{name}: not run, only parsed:\n  {}", no_run.join("\n  "));
    }

    let mut steps: Vec<Step> = Vec::new();
    let mut previous_was_command = false;
    for block in &blocks {
        match block.info.as_str() {
            "sh" | "sql" => {
                steps.push(Step { block, expected: None });
                previous_was_command = true;
                continue;
            }
            "text" if previous_was_command => steps.last_mut().unwrap().expected = Some(&block.body),
            _ => {}
        }
        previous_was_command = false;
    }
    if steps.is_empty() {
        return;
    }
    let first_run = steps.iter().find_map(|step| {
        let lines: Vec<&str> = step.block.body.lines().filter(|line| !is_the_suite_itself(line)).collect();
        (!lines.is_empty()).then(|| (step.block.info.as_str(), lines[0]))
    });
    assert!(
        first_run.is_none_or(|first| first == ("sh", "tenantry reset --yes")),
        "{name}: the first command is `tenantry reset --yes`, so the document can run twice"
    );
    for step in &steps {
        for line in step.block.body.lines().filter(|line| is_the_suite_itself(line)) {
            eprintln!("{name}:{}: `{line}` is the suite itself: not run", step.block.line);
        }
    }
    let mut sql_sessions: Vec<Vec<usize>> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if step.block.info != "sql" {
            continue;
        }
        match sql_sessions.last_mut() {
            Some(session) if *session.last().unwrap() + 1 == i => session.push(i),
            _ => sql_sessions.push(vec![i]),
        }
    }
    let script = script(&steps, &sql_sessions);

    let app =
        spawn_app_with(Mode::ApiLogin, |config| config.webhooks.webhook_allow_insecure_targets = true).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let spare_port =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let script = script
        .replace("localhost:5000", &format!("localhost:{port}"))
        .replace("localhost:5001", &format!("localhost:{spare_port}"))
        .replace("PORT=5001", &format!("PORT={spare_port}"));
    let dir = crate::ops::startup::tempdir(&format!("docs-{}", name.replace('/', "-")));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tenantry"), bin.join("tenantry")).unwrap();
    let owner_url = cluster().pg.url(pg_sandbox::postgres::SUPERUSER, &app.database);
    // A PostgreSQL that takes TLS only, its certificate (for `localhost`) signed by `ca.crt`
    // in the working directory: what docs/operations.md connects to as a managed server.
    let tls_cluster = if script.contains(":5433/") {
        let tls_dir = dir.join("tls");
        std::fs::create_dir_all(&tls_dir).unwrap();
        let pg =
            tokio::task::spawn_blocking(move || crate::ops::tls::start_tls_cluster(&tls_dir)).await.unwrap();
        std::fs::copy(dir.join("tls/ca.crt"), dir.join("ca.crt")).unwrap();
        Some(pg)
    } else {
        None
    };
    let script = match &tls_cluster {
        Some(pg) => script.replace(":5433/", &format!(":{}/", pg.port())),
        None => script,
    };

    let mut differences = Vec::new();
    for shell in ["bash", "zsh"] {
        let output = run_shell(shell, &script, &dir, &bin, &owner_url).await;
        if std::env::var_os("DOCS_BLESS").is_some() {
            bless(name, &steps, &output);
            return;
        }
        differences.extend(compare(name, shell, &steps, &output));
    }
    assert!(differences.is_empty(), "{name} does not run as written:\n\n{}", differences.join("\n\n"));
}

/// Runs `script` in `shell` with the stand-ins in place; returns stdout and stderr as
/// one stream, read after the shell and everything it started in the foreground ended.
async fn run_shell(shell: &str, script: &str, dir: &Path, bin: &Path, owner_url: &str) -> String {
    let output_path = dir.join(format!("{shell}.out"));
    let output = std::fs::File::create(&output_path).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let shell_args: &[&str] = if shell == "zsh" { &["-f", "-c"] } else { &["--norc", "--noprofile", "-c"] };
    let mut child = tokio::process::Command::new(shell)
        .args(shell_args)
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("DATABASE_URL", owner_url)
        .env("PSQLRC", "/dev/null")
        .env("PGTZ", "UTC")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("running {shell} (Debian: apt-get install -y {shell}): {e}"));
    let group = child.id().unwrap();
    // The server answering curl runs on this test's runtime: wait asynchronously.
    child.wait().await.unwrap();
    // A background job the document forgot to stop must not outlive the test.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    std::fs::read_to_string(&output_path).unwrap()
}

/// For writers (`DOCS_BLESS=1 cargo test --test api docs::documents::NAME`): fills each
/// ```` ```text ```` block that says `TODO` with what its command printed, times, entity
/// tags, request ids and cursors written as `<name>`s. Read the result before committing.
fn bless(name: &str, steps: &[Step], output: &str) {
    let mut differences = Vec::new();
    let outputs = split(name, "bash", steps, output, &mut differences);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let mut text = std::fs::read_to_string(&path).unwrap();
    let mut names: HashMap<String, String> = HashMap::new();
    let patterns = [
        ("time", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"),
        ("etag", r#"\d+\.[A-Za-z0-9_-]{22}"#),
        ("cursor", r"cursor=[A-Za-z0-9_-]{20,}"),
        ("request", r"x-request-id: [0-9a-f]{32}"),
    ]
    .map(|(kind, pattern)| (kind, regex::Regex::new(pattern).unwrap()));
    // Headers whose values change between runs and say nothing to a reader.
    let changing = regex::Regex::new(r"(?m)^(date|ratelimit-remaining|server-timing): .*$").unwrap();
    for (i, step) in steps.iter().enumerate() {
        if step.expected != Some("TODO\n") {
            continue;
        }
        let mut printed = normalize(&outputs.get(&i).cloned().unwrap_or_default().join("\n")).join("\n");
        printed = changing.replace_all(&printed, "$1: …").into_owned();
        for (kind, pattern) in &patterns {
            printed = pattern
                .replace_all(&printed, |found: &regex::Captures| {
                    let value = found[0].to_owned();
                    let count = names.values().filter(|token| token.starts_with(&format!("<{kind}"))).count();
                    let token = names
                        .entry(value.clone())
                        .or_insert_with(|| format!("<{kind}{}>", count + 1))
                        .clone();
                    match *kind {
                        "cursor" => format!("cursor={token}"),
                        "request" => format!("x-request-id: {token}"),
                        _ => token,
                    }
                })
                .into_owned();
        }
        text = text.replacen("```text\nTODO\n```", &format!("```text\n{printed}\n```"), 1);
    }
    std::fs::write(&path, text).unwrap();
    eprintln!("{name}: blessed; problems seen: {differences:?}");
}

/// Splits `output` at the block markers: each block's lines, checking status comments
/// on the way.
fn split(
    name: &str,
    shell: &str,
    steps: &[Step],
    output: &str,
    differences: &mut Vec<String>,
) -> HashMap<usize, Vec<String>> {
    let mut outputs: HashMap<usize, Vec<String>> = HashMap::new();
    let mut current: Option<usize> = None;
    let mut last_status: Option<String> = None;
    let mut ended = false;
    for line in output.lines() {
        // A status follows curl's output on the same line when a body ends without a
        // line break: what comes before it is output.
        let (text, mark) = match line.find(MARK) {
            Some(at) => (&line[..at], Some(&line[at + MARK.len()..])),
            None => (line, None),
        };
        if let Some(i) = current
            && (mark.is_none() || !text.is_empty())
        {
            outputs.entry(i).or_default().push(text.to_owned());
        }
        let Some(mark) = mark else { continue };
        match mark.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["block", i] => {
                current = Some(i.parse().unwrap());
                outputs.entry(current.unwrap()).or_default();
                last_status = None;
            }
            ["status", status] => last_status = Some((*status).to_owned()),
            ["expect", status] => {
                let i = current.unwrap();
                if last_status.as_deref() != Some(status) {
                    differences.push(format!(
                        "{name}:{} ({shell}): a command expected to get {status} got {}",
                        steps[i].block.line,
                        last_status.as_deref().unwrap_or("no HTTP status")
                    ));
                }
                last_status = None;
            }
            ["end"] => ended = true,
            _ => panic!("unexpected marker {line}"),
        }
    }
    if !ended {
        differences.push(format!("{name} ({shell}): the script stopped early:\n{output}"));
    }
    outputs
}

/// Compares each block's output with the document.
fn compare(name: &str, shell: &str, steps: &[Step], output: &str) -> Vec<String> {
    let mut differences = Vec::new();
    let outputs = split(name, shell, steps, output, &mut differences);
    let mut bound = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let Some(actual) = outputs.get(&i) else {
            differences.push(format!("{name}:{} ({shell}): did not run", step.block.line));
            continue;
        };
        let mut actual = normalize(&actual.join("\n"));
        if step.block.info == "sql" && actual.first().is_some_and(|l| l.starts_with("psql postgres")) {
            actual.remove(0); // what `tenantry psql` says before psql starts
        }
        let Some(expected) = step.expected else { continue };
        if !matches(&normalize(expected), &actual, &mut bound) {
            differences.push(format!(
                "{name}:{} ({shell}):\n{}the document shows:\n{}\nit prints:\n{}",
                step.block.line,
                step.block.body,
                normalize(expected).join("\n"),
                actual.join("\n")
            ));
        }
    }
    differences
}

#[cfg(test)]
mod the_rules {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_name_matches_a_token_and_then_only_that_value() {
        let mut bound = HashMap::new();
        assert!(matches(
            &lines("etag: \"<tag>\"\nagain <tag>"),
            &lines("etag: \"3.abc\"\nagain 3.abc"),
            &mut bound
        ));
        assert_eq!(bound["tag"], "3.abc");
        assert!(!matches(&lines("later <tag>"), &lines("later 4.abc"), &mut bound), "bound across blocks");
        let mut fresh = HashMap::new();
        assert!(
            !matches(&lines("<a> and <a>"), &lines("x and y"), &mut fresh),
            "the same name twice in a line"
        );
        assert!(!matches(&lines("<a>"), &lines("two words"), &mut HashMap::new()), "a token has no blank");
    }

    #[test]
    fn an_ellipsis_matches_the_rest_of_a_line_or_any_lines() {
        let mut bound = HashMap::new();
        assert!(matches(&lines("{\"id\":1,…"), &lines("{\"id\":1,\"title\":\"x\"}"), &mut bound));
        assert!(!matches(&lines("{\"id\":1,…"), &lines("{\"id\":2,\"title\":\"x\"}"), &mut bound));
        assert!(matches(
            &lines("HTTP/1.1 200 OK\n…\nbody"),
            &lines("HTTP/1.1 200 OK\na: b\nc: d\nbody"),
            &mut bound
        ));
        assert!(!matches(&lines("one\ntwo"), &lines("one\ntwo\nthree"), &mut bound), "extra lines differ");
    }

    #[test]
    fn a_status_comment_is_three_digits_after_a_hash() {
        assert_eq!(expected_status("mo url   # 404: invisible"), Some("404"));
        assert_eq!(expected_status("ann -X DELETE url # 204"), Some("204"));
        assert_eq!(expected_status("mo url   # acme's issues"), None);
        assert_eq!(expected_status("mo url   # 2000 issues"), None);
        assert_eq!(expected_status("echo '#404'"), None);
    }

    #[test]
    fn outputs_split_at_markers_and_statuses_are_checked() {
        let body =
            Block { info: "sh".into(), body: "x # 404\n".into(), line: 1, prose_before: String::new() };
        let steps = [Step { block: &body, expected: None }];
        let good = format!("{MARK} block 0\nout{MARK} status 404\n{MARK} expect 404\n{MARK} end\n");
        assert_eq!(compare("d", "sh", &steps, &good), Vec::<String>::new());
        let bad = good.replace("status 404", "status 200");
        assert_eq!(compare("d", "sh", &steps, &bad).len(), 1, "a 200 where the document says 404");
        let stopped = format!("{MARK} block 0\nout\n");
        assert!(!compare("d", "sh", &steps, &stopped).is_empty(), "a script that stops early");
    }
}
