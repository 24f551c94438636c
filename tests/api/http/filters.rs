//! Filtering, sorting and searching the issue list: every filter alone and combined,
//! every sort order across pages, word-prefix search and its ranking.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn creator(name: &str) -> Actor {
    Actor { org: "acme".into(), user: name.into(), role: "MEMBER" }
}

/// Six issues with known fields and times: issue n is created on 2020-01-0n (2 and 3 at
/// the same instant) and last updated on 2020-02-(10-n), so updatedAt runs backwards.
async fn seed(app: &TestApp) {
    let issues = [
        ("m1", "Login page returns 500", "Submitting the login form fails", "OPEN", "HIGH", Some("ann")),
        ("m2", "Logout button missing", "No way to sign out", "IN_PROGRESS", "LOW", None),
        ("m1", "Dashboard slow", "Slow after login on mobile", "DONE", "MEDIUM", Some("bob")),
        ("m2", "Invoice PDF blank", "Since Monday the invoice is blank", "OPEN", "MEDIUM", Some("ann")),
        ("m1", "Typo on pricing page", "Recieve", "OPEN", "LOW", None),
        ("m3", "Login login login", "login everywhere", "DONE", "HIGH", None),
    ];
    for (by, title, description, status, priority, assignee) in issues {
        let response = app
            .create(
                &creator(by),
                json!({"title": title, "description": description, "status": status, "priority": priority, "assigneeId": assignee}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    app.owner_sql()
        .await
        .batch_execute(
            "update app.issues
                set created_at = timestamptz '2020-01-01 00:00:00Z' + (case when id = 3 then 2 else id end - 1) * interval '1 day',
                    updated_at = timestamptz '2020-02-10 00:00:00Z' - id * interval '1 day'
              where organization_id = 'acme'",
        )
        .await
        .unwrap();
    // Noise from another organization, matching every filter and word used below.
    for (title, status) in [("Login page", "OPEN"), ("Invoice login", "DONE")] {
        let body = json!({"title": title, "description": "login page invoice", "status": status, "assigneeId": "ann"});
        app.create(&Actor { org: "globex".into(), user: "m1".into(), role: "MEMBER" }, body).await;
    }
}

async fn listed(app: &TestApp, query: &str) -> Vec<i64> {
    let issues = app.walk(&member("acme"), &format!("/api/issues?{query}")).await.concat();
    assert!(issues.iter().all(|i| i["organizationId"] == "acme"), "{query}: only acme's issues");
    ids(&issues)
}

#[tokio::test]
async fn each_filter_narrows_the_list_and_filters_combine() {
    let app = spawn_app().await;
    seed(&app).await;
    for (query, expected) in [
        ("", vec![6, 5, 4, 3, 2, 1]),
        ("status=OPEN", vec![5, 4, 1]),
        ("status=OPEN,DONE", vec![6, 5, 4, 3, 1]),
        ("status=IN_PROGRESS&status=DONE", vec![6, 3, 2]),
        ("priority=LOW", vec![5, 2]),
        ("priority=HIGH,MEDIUM", vec![6, 4, 3, 1]),
        ("assigneeId=ann", vec![4, 1]),
        ("assigneeId=none", vec![6, 5, 2]),
        ("assigneeId=nobody", vec![]),
        ("createdBy=m1", vec![5, 3, 1]),
        ("createdAfter=2020-01-02T00:00:00Z", vec![6, 5, 4]),
        ("createdBefore=2020-01-02T00:00:00Z", vec![1]),
        ("createdAfter=2020-01-01T00:00:00Z&createdBefore=2020-01-04T00:00:00Z", vec![3, 2]),
        ("updatedAfter=2020-02-06T00:00:00Z", vec![3, 2, 1]),
        ("updatedAfter=2020-02-05T23:00:00%2B00:00", vec![4, 3, 2, 1]),
        ("status=OPEN&assigneeId=ann&priority=HIGH", vec![1]),
        ("status=OPEN&createdBy=m1&assigneeId=none", vec![5]),
        ("status=DONE&priority=HIGH&createdBy=m3&assigneeId=none&createdAfter=2020-01-05T00:00:00Z", vec![6]),
        ("status=DONE&createdBy=m2", vec![]),
    ] {
        assert_eq!(listed(&app, query).await, expected, "{query}");
        // Paging one at a time gives the same, in the same order.
        let one_by_one = listed(&app, &format!("{query}&limit=1")).await;
        assert_eq!(one_by_one, expected, "{query}&limit=1");
    }
}

#[tokio::test]
async fn every_sort_order_holds_across_pages_with_ties_broken_by_number() {
    let app = spawn_app().await;
    seed(&app).await;
    // Priorities: 1 HIGH, 2 LOW, 3 MEDIUM, 4 MEDIUM, 5 LOW, 6 HIGH; issues 2 and 3 share a
    // createdAt; updatedAt runs backwards.
    for (sort, expected) in [
        ("createdAt", vec![1, 2, 3, 4, 5, 6]),
        ("-createdAt", vec![6, 5, 4, 3, 2, 1]),
        ("updatedAt", vec![6, 5, 4, 3, 2, 1]),
        ("-updatedAt", vec![1, 2, 3, 4, 5, 6]),
        ("priority", vec![2, 5, 3, 4, 1, 6]),
        ("-priority", vec![6, 1, 4, 3, 5, 2]),
    ] {
        for limit in [1, 2, 4, 50] {
            assert_eq!(
                listed(&app, &format!("sort={sort}&limit={limit}")).await,
                expected,
                "sort={sort}&limit={limit}"
            );
        }
    }
    // A sort combines with filters.
    assert_eq!(listed(&app, "sort=-priority&status=OPEN&limit=1").await, [1, 4, 5]);
    assert_eq!(listed(&app, "sort=updatedAt&assigneeId=ann").await, [4, 1]);
}

#[tokio::test]
async fn a_change_moves_an_issue_in_the_updated_at_order() {
    let app = spawn_app().await;
    seed(&app).await;
    assert_eq!(app.patch(&admin("acme"), 3, json!({"status": "OPEN"})).await.status(), StatusCode::OK);
    assert_eq!(listed(&app, "sort=-updatedAt&limit=2").await, [3, 1, 2, 4, 5, 6]);
    assert_eq!(listed(&app, "updatedAfter=2020-03-01T00:00:00Z").await, [3]);
}

#[tokio::test]
async fn search_matches_word_prefixes_ignoring_case_and_ranks_title_words_first() {
    let app = spawn_app().await;
    seed(&app).await;
    for (q, expected) in [
        // 6: "login" three times in the title and once in the description; 1: once in
        // each; 3: once in the description. "logout" does not start with "logi".
        ("logi", vec![6, 1, 3]),
        ("LOGIN", vec![6, 1, 3]),
        ("log", vec![6, 1, 2, 3]),
        ("login%20page", vec![1]),
        ("page%20login", vec![1]),
        ("pag%20logi", vec![1]),
        ("invoice", vec![4]),
        ("recieve", vec![5]),
        ("rec", vec![5]),
        ("500", vec![1]),
        ("login%20invoice", vec![]),
        ("nothing", vec![]),
    ] {
        assert_eq!(listed(&app, &format!("q={q}")).await, expected, "q={q}");
        assert_eq!(listed(&app, &format!("q={q}&limit=1")).await, expected, "q={q}&limit=1");
    }
    // Search combines with filters and with an explicit sort.
    assert_eq!(listed(&app, "q=log&status=DONE").await, [6, 3]);
    assert_eq!(listed(&app, "q=log&sort=createdAt").await, [1, 2, 3, 6]);
    assert_eq!(listed(&app, "q=log&sort=relevance&limit=3").await, [6, 1, 2, 3]);
}

#[tokio::test]
async fn equally_relevant_issues_come_newest_first() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.create_ok(&member("acme"), "Same words here").await;
    }
    assert_eq!(listed(&app, "q=same%20word&limit=2").await, [5, 4, 3, 2, 1]);
}

#[tokio::test]
async fn a_description_is_searchable_by_its_first_1000_words_and_a_title_by_every_word() {
    let app = spawn_app().await;
    // Word n of the description is "wn" (w1 ... w1500); "tail" comes once more at the end
    // too, and "early" at word 1 and again at word 1501.
    let mut words: Vec<String> = (1..=1500).map(|n| format!("w{n}")).collect();
    words[0] = "early".into();
    words[999] = "last".into();
    words[1000] = "past".into();
    words.push("early".into());
    let description = words.join(" ");
    let title = format!("Long report {}", (1..=40).map(|n| format!("t{n}")).collect::<Vec<_>>().join(" "));
    let response = app.create(&member("acme"), json!({"title": title, "description": description})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Word 1000 is searchable, word 1001 is not, whatever comes after.
    assert_eq!(listed(&app, "q=last").await, [1], "word 1000 of the description");
    assert_eq!(listed(&app, "q=past").await, Vec::<i64>::new(), "word 1001 of the description");
    assert_eq!(listed(&app, "q=w1500").await, Vec::<i64>::new(), "word 1500 of the description");
    assert_eq!(listed(&app, "q=w999").await, [1]);
    assert_eq!(listed(&app, "q=early").await, [1]);
    // Every word of the title, and prefixes as usual.
    assert_eq!(listed(&app, "q=t40").await, [1]);
    assert_eq!(listed(&app, "q=w99").await, [1], "w99, w990 ... w999 are all within the first 1000");
    // A title word past the description's cap still finds the issue.
    let second = format!("{} needle", (1..=1200).map(|n| format!("x{n}")).collect::<Vec<_>>().join(" "));
    let response =
        app.create(&member("acme"), json!({"title": "needle in the title", "description": second})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(listed(&app, "q=needle").await, [2], "in the title; the description's is past the cap");
    assert_eq!(listed(&app, "q=x1200").await, Vec::<i64>::new());
}

#[tokio::test]
async fn search_follows_edits_deletes_and_restores() {
    let app = spawn_app().await;
    seed(&app).await;
    let editor = admin("acme");
    assert_eq!(
        app.patch(&editor, 4, json!({"title": "Invoice totals wrong"})).await.status(),
        StatusCode::OK
    );
    assert_eq!(listed(&app, "q=totals").await, [4]);
    assert_eq!(listed(&app, "q=pdf").await, Vec::<i64>::new(), "the old title's words are gone");
    assert_eq!(listed(&app, "q=monday").await, [4], "the description's words stay");

    // A change that leaves the text alone keeps the words.
    assert_eq!(app.patch(&editor, 4, json!({"status": "DONE"})).await.status(), StatusCode::OK);
    assert_eq!(listed(&app, "q=totals").await, [4]);

    assert_eq!(app.delete(&editor, 1).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(listed(&app, "q=logi").await, [6, 3]);
    assert_eq!(words_not_of_the_text(&app).await, 0, "a deleted issue's words are gone");
    assert_eq!(app.restore(&editor, 1).await.status(), StatusCode::OK);
    assert_eq!(listed(&app, "q=logi").await, [6, 1, 3]);

    // Both texts changed at once, a description cut to one word, then deleted again: after
    // each, the words are exactly those of the live issues' text.
    let both = json!({"title": "Ünïcode títle, ÜNÏCODE again", "description": "naïve café résumé naïve"});
    assert_eq!(app.patch(&editor, 1, both).await.status(), StatusCode::OK);
    assert_eq!(listed(&app, "q=tít").await, [1]);
    assert_eq!(app.patch(&editor, 2, json!({"description": "gone"})).await.status(), StatusCode::OK);
    assert_eq!(words_not_of_the_text(&app).await, 0);
    assert_eq!(app.delete(&editor, 1).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(words_not_of_the_text(&app).await, 0);
}

/// Rows of app.issue_terms that differ from app.search_terms of the live issues' text
/// (either way, weights included): the words table holds exactly what the text gives.
async fn words_not_of_the_text(app: &TestApp) -> i64 {
    count(
        app,
        "select count(*) from (
           (select organization_id, issue_id, term, weight from app.issue_terms
            except all
            select i.organization_id, i.id, s.term, s.weight
              from app.issues i cross join lateral app.search_terms(i.title, i.description) s)
           union all
           (select i.organization_id, i.id, s.term, s.weight
              from app.issues i cross join lateral app.search_terms(i.title, i.description) s
            except all
            select organization_id, issue_id, term, weight from app.issue_terms)) d",
    )
    .await
}

#[tokio::test]
async fn a_member_sees_the_same_lists_as_an_admin() {
    let app = spawn_app().await;
    seed(&app).await;
    let as_admin = ids(&app.walk(&admin("acme"), "/api/issues?q=log&status=DONE,OPEN").await.concat());
    assert_eq!(as_admin, listed(&app, "q=log&status=DONE,OPEN").await);
}
