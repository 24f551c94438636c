//! Many API instances, one database: the service keeps no state of its own that matters
//! for correctness (numbers, versions and idempotency keys live in PostgreSQL), so two
//! instances answer as one. (Rate limits are per instance, as the README says.)

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// Two instances on one fresh database, requests going straight to PostgreSQL or both
/// through one PgBouncer (`None`: PgBouncer missing, test skipped).
async fn two_instances(route: Route) -> Option<[TestApp; 2]> {
    let database = fresh_database().await;
    let bouncer = match route {
        Route::Direct => None,
        Route::PgBouncer => Some(start_pgbouncer(&format!("instances-{database}"), 4)?),
    };
    let through = bouncer.as_ref().map(|b| b.url(tenantry::db::API_ROLE, &database));
    let spawn = || {
        spawn_app_on(&database, Mode::ApiLogin, |config| {
            if let Some(url) = &through {
                config.api_database_url = Some(url.clone());
                config.statements = statements_for_pgbouncer();
            }
        })
    };
    let (first, mut second) = (spawn().await, spawn().await);
    second.pgbouncer = bouncer;
    Some([first, second])
}

async fn creates_split_across_both_instances_number_each_organization_without_gaps(route: Route) {
    const ORGS: usize = 5;
    const EACH: usize = 40;
    let Some(apps) = two_instances(route).await else { return };
    // Every organization's creates alternate between the instances, all at once.
    let creates = (0..ORGS).flat_map(|org| (0..EACH).map(move |n| (org, n))).map(|(org, n)| {
        let app = &apps[n % 2];
        async move { app.create_ok(&member(&format!("org-{org}")), &format!("org-{org} #{n}")).await }
    });
    let created = join_all(creates).await;

    for org in 0..ORGS {
        let name = format!("org-{org}");
        let ids: BTreeSet<i64> = created
            .iter()
            .filter(|issue| issue["organizationId"] == json!(name))
            .map(|issue| issue["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, (1..=EACH as i64).collect(), "{name}: numbers 1..{EACH}, each once");
        // Both instances list the same issues.
        let [a, b] = [&apps[0], &apps[1]];
        let (listed_a, listed_b) = (a.list(&member(&name)).await, b.list(&member(&name)).await);
        assert_eq!(listed_a.len(), EACH, "{name}");
        assert_eq!(listed_a, listed_b, "{name}: both instances list the same");
        // And the activity log numbered the entries the same way.
        let entries = count(
            a,
            &format!(
                "select count(distinct id) from app.activity_logs
                  where organization_id = '{name}' and id between 1 and {EACH} and action = 'created'"
            ),
        )
        .await;
        assert_eq!(entries, EACH as i64, "{name}: activity entries 1..{EACH}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_split_across_two_instances_number_each_organization_without_gaps() {
    creates_split_across_both_instances_number_each_organization_without_gaps(Route::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_split_across_two_instances_behind_one_pgbouncer_number_without_gaps() {
    creates_split_across_both_instances_number_each_organization_without_gaps(Route::PgBouncer).await;
}

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, "/api/issues", Some(&member("acme")))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_sent_to_both_instances_at_once_creates_one_issue() {
    let Some([a, b]) = two_instances(Route::Direct).await else { return };
    const KEYS: usize = 20;
    let races = (0..KEYS).map(|k| {
        let (key, body) =
            (format!("key-{k}"), json!({"title": format!("keyed {k}"), "description": "raced"}));
        let (a, b) = (&a, &b);
        async move {
            let (first, second) =
                futures::join!(post_with_key(a, &key, &body), post_with_key(b, &key, &body));
            let mut answers = Vec::new();
            for response in [first, second] {
                assert_eq!(response.status(), StatusCode::CREATED, "{key}");
                let replayed = response.headers().get("idempotent-replayed").is_some();
                let location = response.headers()["location"].to_str().unwrap().to_owned();
                answers.push((replayed, location, response.json::<Value>().await.unwrap()));
            }
            answers
        }
    });
    for (k, answers) in join_all(races).await.into_iter().enumerate() {
        assert_eq!(
            answers.iter().filter(|(replayed, ..)| *replayed).count(),
            1,
            "key-{k}: one instance created, the other replayed"
        );
        assert_eq!(answers[0].1, answers[1].1, "key-{k}: the same Location");
        assert_eq!(answers[0].2, answers[1].2, "key-{k}: the same issue");
    }
    assert_eq!(count(&a, "select count(*) from app.issues").await, KEYS as i64);

    // Either instance refuses the key for another request.
    let reused = post_with_key(&b, "key-0", &json!({"title": "other", "description": "d"})).await;
    assert_problem(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
    let reused = post_with_key(&a, "key-1", &json!({"title": "other", "description": "d"})).await;
    assert_problem(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn a_change_through_one_instance_is_what_the_other_reads_and_guards_against() {
    let Some([a, b]) = two_instances(Route::Direct).await else { return };
    let created = a.create_ok(&member("acme"), "shared").await;
    let read = b.get(&member("acme"), "/api/issues/1").await;
    let etag = read.headers()["etag"].clone();
    assert_eq!(read.json::<Value>().await.unwrap(), created);

    // a changes it; b's copy is now stale, and b says so.
    assert_eq!(a.patch(&admin("acme"), 1, json!({"status": "DONE"})).await.status(), StatusCode::OK);
    let stale = b
        .request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
        .header("if-match", etag)
        .json(&json!({"status": "OPEN"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let current = b.get(&member("acme"), "/api/issues/1").await;
    assert_eq!(stale.headers()["etag"], current.headers()["etag"], "b names the version a made");
    // One tag, two instances: a's tag is current for b, b's for a.
    for (reader, writer) in [(&a, &b), (&b, &a)] {
        let tag = writer.get(&member("acme"), "/api/issues/1").await.headers()["etag"].clone();
        let revalidated = reader
            .request(Method::GET, "/api/issues/1", Some(&member("acme")))
            .header("if-none-match", tag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    }
    assert_eq!(
        b.get(&member("acme"), "/api/issues/1").await.json::<Value>().await.unwrap()["status"],
        "DONE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_an_empty_database_migrate_it_once() {
    let database = format!("empty_{}", std::process::id());
    let admin = connect(&cluster().pg.url(pg_sandbox::postgres::SUPERUSER, "postgres")).await;
    admin.batch_execute(&format!("create database {database}")).await.unwrap();
    let starts = (0..3).map(|_| {
        let config = tenantry::config::Config {
            port: 0,
            database_url: Some(cluster().pg.url(pg_sandbox::postgres::SUPERUSER, &database)),
            pool_size: 2,
            context: context_mode(),
            ..Default::default()
        };
        async move { tenantry::App::build(&config).await.map(drop) }
    });
    for started in join_all(starts).await {
        started.expect("every instance starts");
    }
    let owner = connect(&cluster().pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    let applied: Vec<(i32, i64)> = owner
        .query("select version, count(*) from refinery_schema_history group by version order by 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let files = std::fs::read_dir("sql/migrations").unwrap().count();
    assert_eq!(applied.len(), files, "{applied:?}");
    assert_eq!(applied.last().unwrap().0, tenantry::db::migrate::latest_version());
    assert!(applied.iter().all(|(_, times)| *times == 1), "each migration once: {applied:?}");
}

/// Tags are made with the database's key (migration 7), read at every start: a copy a
/// client validated yesterday is still current after a restart. ETAG_KEY replaces it.
#[tokio::test]
async fn a_tag_stays_valid_across_a_restart_and_etag_key_replaces_the_databases_key() {
    use base64::{Engine, engine::general_purpose::STANDARD};

    let database = fresh_database().await;
    let first = spawn_app_on(&database, Mode::ApiLogin, |_| {}).await;
    first.create_ok(&member("acme"), "kept").await;
    let tag = first.get(&member("acme"), "/api/issues/1").await.headers()["etag"].clone();
    drop(first);

    let revalidate = |app: &TestApp, tag| {
        app.request(Method::GET, "/api/issues/1", Some(&member("acme"))).header("if-none-match", tag).send()
    };
    let restarted = spawn_app_on(&database, Mode::ApiLogin, |_| {}).await;
    assert_eq!(revalidate(&restarted, tag.clone()).await.unwrap().status(), StatusCode::NOT_MODIFIED);

    let key = [7u8; 32];
    let keyed =
        spawn_app_on(&database, Mode::ApiLogin, |config| config.etag_key = Some(STANDARD.encode(key))).await;
    let fresh = revalidate(&keyed, tag).await.unwrap();
    assert_eq!(fresh.status(), StatusCode::OK, "another key: the old tag is not current");
    assert_eq!(fresh.headers()["etag"], crate::http::concurrency::tag_with_key(&key, "acme", 1, 1));

    for bad in ["", "short", &STANDARD.encode([1u8; 31]), &STANDARD.encode([1u8; 33])] {
        let config = tenantry::config::Config { etag_key: Some(bad.to_owned()), ..Default::default() };
        let err = tenantry::App::build(&config).await.err().expect("refused");
        assert!(matches!(err, tenantry::StartupError::EtagKey), "{bad:?}: {err}");
    }
}
