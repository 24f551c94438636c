//! The README's serve command, for real: the binary with no DATABASE_URL starts its own
//! PostgreSQL, says how to psql into it, serves, stops it on SIGTERM, and finds its data
//! again on the next start.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::startup::tempdir;

struct Served {
    child: Child,
    address: String,
    psql_url: String,
    lines: mpsc::Receiver<String>,
}

fn serve(dir: &std::path::Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .env_remove("DATABASE_URL")
        .env_remove("API_DATABASE_URL")
        .env("PORT", "0")
        .env("LOCAL_PG_DIR", dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut address, mut psql_url) = (None, None);
    while address.is_none() {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the server starts and says so");
        if let Some(rest) = line.split("inspect it with: psql ").nth(1) {
            psql_url = Some(rest.split_whitespace().next().unwrap().to_owned());
        }
        if let Some(rest) = line.split("serving ").nth(1) {
            address = Some(rest.split("/api").next().unwrap().to_owned());
        }
    }
    Served { child, address: address.unwrap(), psql_url: psql_url.expect("a psql command"), lines }
}

impl Served {
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "a clean exit on SIGTERM: {status}");
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    }
}

fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql").args([url, "-qXAtc", sql]).output().expect("psql is installed");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_binary_runs_its_own_postgres_keeps_its_data_and_stops_it() {
    let dir = tempdir("binary");
    let client = reqwest::Client::new();
    let headers = |r: reqwest::RequestBuilder| {
        r.header("x-organization-id", "acme").header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };

    let first = serve(&dir);
    let created = headers(client.post(format!("{}/api/issues", first.address)))
        .json(&json!({"title": "Persisted", "description": "across restarts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    // The printed psql command works, and shows what RLS hides from the API role.
    assert_eq!(psql(&first.psql_url, "select title from app.issues"), "Persisted");
    assert_eq!(psql(&first.psql_url, "set role tenantry_api; select count(*) from app.issues"), "0");
    first.stop();
    let pid_file = dir.join("pgdata/postmaster.pid");
    assert!(!pid_file.exists(), "PostgreSQL stopped with the server");

    let second = serve(&dir);
    let listed: Vec<Value> = headers(client.get(format!("{}/api/issues", second.address)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["title"], "Persisted");
    second.stop();
    let _ = std::fs::remove_dir_all(dir);
}
