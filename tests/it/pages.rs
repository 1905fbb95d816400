//! The drill-down pages in a real browser: headless Chromium (Debian's `chromium`) loads the pages
//! of `demo` and of a daemon serving a prepared state file, and the test reads the DOM Chromium
//! built (`--dump-dom`, after any script would have run) and writes a screenshot of each page under
//! `target/pages/` for review. The pages need no JavaScript: a filter is a plain GET form, so
//! loading its URL is what submitting it does.
//!
//! Without `chromium` it prints `skipped: chromium not installed`, unless
//! `HANDOVER_REQUIRE_EXTERNAL=1`.

use crate::support::{externals_available, free_port, wait_for_http, ChildGuard, External};
use chrono::{TimeZone, Utc};
use handover_exporter::engine::diagnosis::{Diagnosis, Evidence, Fact, FactSource, Reason};
use handover_exporter::store::{CycleCommit, Store};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the screenshots go.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pages");
    std::fs::create_dir_all(&dir).expect("create target/pages");
    dir
}

/// Runs headless Chromium on `url` with `action` (`--dump-dom` or `--screenshot=FILE`) and
/// returns what it printed.
fn chromium(url: &str, action: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.path().display()),
            action,
            url,
        ])
        .output()
        .expect("start chromium");
    assert!(
        output.status.success(),
        "chromium {action} {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn dom(url: &str) -> String {
    chromium(url, "--dump-dom")
}

fn screenshot(url: &str, name: &str) {
    let path = screenshot_dir().join(name);
    chromium(url, &format!("--screenshot={}", path.display()));
    assert!(
        path.metadata().is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        path.display()
    );
}

/// The cells of the rows of the table with `id`, as text between `<td>` tags.
fn table_rows(dom: &str, id: &str) -> Vec<Vec<String>> {
    let Some(start) = dom.find(&format!("<table id=\"{id}\">")) else {
        return Vec::new();
    };
    let table = &dom[start..start + dom[start..].find("</table>").unwrap_or(dom.len() - start)];
    let cell = regex::Regex::new(r"(?s)<td[^>]*>(.*?)</td>").expect("static regex");
    let tag = regex::Regex::new(r"<[^>]+>").expect("static regex");
    table
        .split("<tr")
        .skip(1)
        .map(|row| {
            cell.captures_iter(row)
                .map(|c| tag.replace_all(&c[1], "").trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|cells| !cells.is_empty())
        .collect()
}

async fn json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// In Chromium against `demo`: the failures list shows the simulator's failures, a reason filter
/// narrows it to that reason, and a failed contact's page shows its deciding rule and a timeline
/// in time order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_failures_filters_and_a_contact_timeline() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    if !externals_available(&[External::Program("chromium")]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut children = ChildGuard::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let port = free_port();
    let log = dir.path().join("demo.log");
    children.spawn(
        "demo",
        Command::new(env!("CARGO_BIN_EXE_handover-exporter")).args([
            "demo",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--seed",
            "21",
        ]),
        &log,
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for_http(
        &http,
        &mut children,
        &format!("{base}/healthz"),
        &[("demo", &log)],
    )
    .await;
    let started = Instant::now();
    let failed = loop {
        let answer = json(&http, &format!("{base}/api/v1/diagnoses?outcome=failed")).await;
        let rows = answer["diagnoses"].as_array().cloned().unwrap_or_default();
        if rows.len() >= 5 {
            break rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "demo diagnosed no failures: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let list = dom(&format!("{base}/diagnoses?outcome=failed"));
    let rows = table_rows(&list, "diagnoses");
    assert!(rows.len() >= 5, "the failures list shows rows: {list}");
    assert!(rows.iter().all(|r| r[3] == "failed"), "{rows:?}");
    screenshot(&format!("{base}/diagnoses?outcome=failed"), "diagnoses.png");

    let reason = failed[0]["diagnosis"]["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    let narrowed = table_rows(
        &dom(&format!("{base}/diagnoses?reason={reason}")),
        "diagnoses",
    );
    assert!(!narrowed.is_empty(), "the {reason} filter shows rows");
    assert!(narrowed.iter().all(|r| r[5] == reason), "{narrowed:?}");
    assert!(narrowed.len() <= rows.len() + 50);

    let contact = failed[0]["diagnosis"]["contact_id"]
        .as_i64()
        .expect("contact id");
    let rule = failed[0]["diagnosis"]["rule"].as_u64().expect("rule");
    let page = dom(&format!("{base}/contacts/{contact}"));
    assert!(
        page.contains(&format!("Rule {rule} of the diagnosis table decided it")),
        "{page}"
    );
    assert!(page.contains("(decided the outcome)"), "{page}");
    let timeline = table_rows(&page, "timeline");
    assert!(
        timeline.len() >= 3,
        "a timeline of several entries: {timeline:?}"
    );
    let times: Vec<&str> = timeline
        .iter()
        .map(|r| r[0].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "timeline entries in time order");
    assert!(
        timeline.iter().any(|r| r[2] == "CXone contact")
            && timeline.iter().any(|r| r[2] == "Cognigy session"),
        "the timeline merges CXone and Cognigy: {timeline:?}"
    );
    screenshot(&format!("{base}/contacts/{contact}"), "contact.png");

    let missing = dom(&format!("{base}/contacts/1"));
    assert!(missing.contains("No diagnosis for contact 1"), "{missing}");
}

/// A log line holding a `<script>` element shows as text on the contact page and never runs:
/// the daemon serves a state file holding such a diagnosis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_in_a_log_line_shows_as_text() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    if !externals_available(&[External::Program("chromium")]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.db");
    let t0 = Utc.with_ymd_and_hms(2026, 3, 20, 9, 0, 0).unwrap();
    let hostile = "handoverToCXone: <script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";
    let log_fact = Fact {
        source: FactSource::CognigyLog,
        id: "log-1".into(),
        at: Some(t0 + chrono::Duration::seconds(30)),
        detail: hostile.to_owned().into(),
    };
    let reason = Reason::SignalUnavailable;
    let diagnosis = Diagnosis {
        contact_id: 4242,
        outcome: reason.outcome(),
        failure: reason.failure(),
        reason,
        rule: reason.rule(),
        summary: reason.explain().into(),
        evidence: Evidence {
            contact_ids: vec![4242],
            bot_entry: true,
            session_id: Some("<b>session</b>".into()),
            match_kind: None,
            carried_contact_id: None,
            contact_started_at: t0,
            contact_ended_at: t0 + chrono::Duration::seconds(90),
            escalated_at: None,
            queued_at: None,
            queue_skill_id: None,
            signal_to_queue_seconds: None,
            queue_wait_seconds: None,
            bot_turn_seconds: vec![],
            decided_by: vec![log_fact.clone()],
            timeline: vec![log_fact],
        },
    };
    {
        let mut store = Store::open(&state).expect("state file");
        let one = [diagnosis];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    diagnoses: &one,
                    ..CycleCommit::empty(t0 + chrono::Duration::minutes(5))
                },
            )
            .expect("commit");
    }
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not-a-real-secret").expect("secret file");
    let closed = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "state_path = \"{state}\"\n\n[[tenant]]\nname = \"acme\"\n\n[tenant.cxone]\n\
             issuer = \"http://127.0.0.1:{closed}\"\nclient_id = \"app\"\nclient_secret_file = \"{secret}\"\n\
             access_key_id = \"key\"\naccess_key_secret_file = \"{secret}\"\n\n[tenant.cognigy]\n\
             api_base_url = \"http://127.0.0.1:{closed}\"\nodata_base_url = \"http://127.0.0.1:{closed}/v2.4\"\n\
             api_key_file = \"{secret}\"\nproject_id = \"p\"\n",
            state = state.display(),
            secret = secret.display()
        ),
    )
    .expect("config");
    let mut children = ChildGuard::default();
    let port = free_port();
    let log = dir.path().join("serve.log");
    children.spawn(
        "serve",
        Command::new(env!("CARGO_BIN_EXE_handover-exporter")).args([
            "serve",
            "--config.file",
            config.to_str().expect("utf-8 path"),
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
        ]),
        &log,
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for_http(
        &http,
        &mut children,
        &format!("{base}/healthz"),
        &[("serve", &log)],
    )
    .await;
    let page = dom(&format!("{base}/contacts/4242"));
    assert!(
        !page.contains("<script") && !page.contains("<img") && !page.contains("<title>pwned"),
        "a script ran or a tag was inserted: {page}"
    );
    assert!(
        page.contains("&lt;script&gt;document.title="),
        "the log line shows as text: {page}"
    );
    assert!(page.contains("&lt;b&gt;session&lt;/b&gt;"), "{page}");
    assert!(
        page.contains("<title>Contact 4242 - handover-exporter</title>"),
        "{page}"
    );
    screenshot(&format!("{base}/contacts/4242"), "contact-escaped.png");
}
