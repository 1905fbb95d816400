//! `handover-exporter capture` (the real binary) against the simulator: the captured directory
//! replays to the live diagnosis for a contact of every reason, holds no credential and no
//! unmasked caller number, and a window capture replays to the ground truth.

use crate::support::sim_tenant::{run_cli, start, Overrides, SimTenant};
use chrono::{Duration, Utc};
use handover_exporter::sources::cognigy::CognigyClient;
use handover_exporter::sources::cxone::CxoneClient;
use handover_exporter::sources::http::NoopObserver;
use handover_simulator::{self as simulator, Scenario, SimulatorOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A finite mixed world whose first calls cover every reason; every record is visible.
fn world() -> SimulatorOptions {
    SimulatorOptions {
        seed: 14,
        scenario: Scenario::Mixed,
        calls: Some(60),
        backlog_hours: 1.0,
        ..SimulatorOptions::default()
    }
}

/// The contacts' rules wait no longer than the world's one-minute lag for a session.
fn overrides() -> Overrides {
    Overrides {
        rules: "cognigy_lag_seconds = 60\n".into(),
        ..Overrides::default()
    }
}

async fn truth(tenant: &SimTenant) -> Vec<Value> {
    let truth: Value = reqwest::get(format!("{}/_sim/truth", tenant.sim.base_url))
        .await
        .expect("truth")
        .json()
        .await
        .expect("truth JSON");
    truth["contacts"].as_array().cloned().expect("contacts")
}

/// Every caller number the APIs serve (CXone `fromAddress`, Cognigy `userId`), digits only.
async fn caller_numbers(tenant: &SimTenant) -> Vec<String> {
    let config = simulator::simulated_tenant(
        "t",
        &tenant.sim.base_url,
        &tenant.sim.state.credentials,
        simulator::sim_rules(),
    );
    let since = Utc::now() - Duration::hours(6);
    let contacts = CxoneClient::new(&config.cxone, Arc::new(NoopObserver))
        .expect("client")
        .completed_contacts(since, 100)
        .await
        .expect("contacts");
    let sessions = CognigyClient::new(&config.cognigy, Arc::new(NoopObserver))
        .expect("client")
        .sessions_since(since, 100)
        .await
        .expect("sessions");
    let mut numbers: Vec<String> = contacts
        .contacts
        .iter()
        .map(|c| c.from_address.clone())
        .chain(sessions.records.iter().map(|s| s.user_id.clone()))
        .map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|n| n.len() >= 7)
        .collect();
    numbers.sort();
    numbers.dedup();
    assert!(numbers.len() > 40, "the world has callers: {numbers:?}");
    numbers
}

/// Every file under `dir` with its text.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let text = std::fs::read_to_string(&path).expect("read");
                out.push((path.display().to_string(), text));
            }
        }
    }
    out
}

/// Asserts that no file under `dir` holds a credential or an unmasked caller number.
fn assert_clean(dir: &Path, tenant: &SimTenant, numbers: &[String]) {
    let creds = &tenant.sim.state.credentials;
    let secrets = [
        creds.client_secret.as_str(),
        creds.access_key_secret.as_str(),
        creds.api_key.as_str(),
        creds.access_key_id.as_str(),
        creds.client_id.as_str(),
    ];
    let all = files(dir);
    assert!(all.len() > 5, "files written: {all:?}");
    for (path, text) in &all {
        for secret in secrets {
            assert!(!text.contains(secret), "{path} holds a credential");
        }
        // A number is a whole digit run (`+` or `00` before it, or not): the same digits inside
        // a longer run (a hex record id) are not that number.
        for run in text.split(|c: char| !c.is_ascii_digit()) {
            let run = run.strip_prefix("00").unwrap_or(run);
            assert!(
                !numbers.iter().any(|n| n == run),
                "{path} holds caller {run}"
            );
        }
    }
    let masked = all.iter().any(|(_, t)| t.contains("+999"));
    assert!(masked, "no masked number written");
}

/// `diagnosis` as text with every caller number, real (one of `numbers`) or masked (the +999
/// range), written as `<caller>`: the only difference a capture may make is the masking.
fn callers_hidden(diagnosis: &Value, numbers: &[String]) -> String {
    let text = diagnosis.to_string();
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let masked = run.starts_with("999") && (10..=15).contains(&run.len());
        if masked || numbers.contains(run) {
            out.push_str("<caller>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The `diagnose --format json` line of `contact` in a replay of `dir`.
async fn replayed(cwd: &Path, dir: &Path, contact: i64) -> Value {
    let dir_text = dir.display().to_string();
    let output = run_cli(
        cwd,
        &["diagnose", "--replay", &dir_text, "--format", "json"],
    )
    .await;
    let stderr = crate::support::sim_tenant::stderr(&output);
    assert!(!stderr.contains("error"), "replay problems: {stderr}");
    crate::support::sim_tenant::stdout(&output)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|d| d["contact_id"] == contact)
        .unwrap_or_else(|| panic!("contact {contact} not in the replay of {dir_text}"))
}

/// For one contact of every reason, `diagnose --replay` of its capture prints exactly the live
/// `diagnose CONTACT_ID` line, and the directory holds no credential or unmasked caller number.
#[tokio::test]
async fn capture_replays_to_the_live_diagnosis_for_every_reason() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let tenant = start(world(), overrides()).await;
    let numbers = caller_numbers(&tenant).await;
    let mut by_reason: BTreeMap<String, i64> = BTreeMap::new();
    for contact in truth(&tenant).await {
        let reason = contact["reason"].as_str().expect("reason").to_owned();
        let id = contact["contact_id"].as_i64().expect("id");
        by_reason.entry(reason).or_insert(id);
    }
    assert!(by_reason.len() >= 16, "every reason: {by_reason:?}");
    let cwd = tenant.dir.path();
    let config = tenant.config.display().to_string();
    for (reason, id) in &by_reason {
        let id_text = id.to_string();
        let live = run_cli(
            cwd,
            &[
                "diagnose",
                &id_text,
                "--config.file",
                &config,
                "--format",
                "json",
            ],
        )
        .await;
        let live: Value = serde_json::from_str(crate::support::sim_tenant::stdout(&live).trim())
            .unwrap_or_else(|e| panic!("{reason}: live diagnosis not JSON: {e}"));
        assert_eq!(live["reason"], reason.as_str(), "live diagnosis of {id}");
        let out = cwd.join(format!("capture-{id}"));
        let out_text = out.display().to_string();
        let capture = run_cli(
            cwd,
            &[
                "capture",
                "--contact",
                &id_text,
                "--out",
                &out_text,
                "--config.file",
                &config,
            ],
        )
        .await;
        assert_eq!(
            capture.status.code(),
            Some(0),
            "{reason}: {}",
            crate::support::sim_tenant::stderr(&capture)
        );
        let replay = replayed(cwd, &out, *id).await;
        assert_eq!(
            callers_hidden(&replay, &numbers),
            callers_hidden(&live, &numbers),
            "{reason}: replay differs from the live diagnosis"
        );
        assert_clean(&out, &tenant, &numbers);
    }
}

/// A window capture of the whole world replays to the ground truth's reason for every contact,
/// and holds no credential or unmasked caller number.
#[tokio::test]
async fn window_capture_replays_to_the_truth() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let tenant = start(world(), overrides()).await;
    let numbers = caller_numbers(&tenant).await;
    let truth = truth(&tenant).await;
    let cwd = tenant.dir.path();
    let config = tenant.config.display().to_string();
    let since = (Utc::now() - Duration::hours(3)).to_rfc3339();
    let out = cwd.join("window");
    let out_text = out.display().to_string();
    let capture = run_cli(
        cwd,
        &[
            "capture",
            "--since",
            &since,
            "--out",
            &out_text,
            "--config.file",
            &config,
        ],
    )
    .await;
    assert_eq!(
        capture.status.code(),
        Some(0),
        "{}",
        crate::support::sim_tenant::stderr(&capture)
    );
    for contact in &truth {
        let id = contact["contact_id"].as_i64().expect("id");
        let replay = replayed(cwd, &out, id).await;
        assert_eq!(replay["reason"], contact["reason"], "contact {id}");
    }
    assert_clean(&out, &tenant, &numbers);
}

/// A capture never writes into a directory that holds something, and an unknown contact is an
/// error naming it; both exit 2.
#[tokio::test]
async fn capture_refuses_a_used_directory_and_an_unknown_contact() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let tenant = start(world(), overrides()).await;
    let cwd = tenant.dir.path();
    let config = tenant.config.display().to_string();
    let used = cwd.join("used");
    std::fs::create_dir(&used).expect("mkdir");
    std::fs::write(used.join("keep.txt"), "x").expect("write");
    let used_text = used.display().to_string();
    let output = run_cli(
        cwd,
        &[
            "capture",
            "--contact",
            "710000000000",
            "--out",
            &used_text,
            "--config.file",
            &config,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(crate::support::sim_tenant::stderr(&output).contains("not empty"));
    let fresh = cwd.join("fresh").display().to_string();
    let output = run_cli(
        cwd,
        &[
            "capture",
            "--contact",
            "42",
            "--out",
            &fresh,
            "--config.file",
            &config,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(crate::support::sim_tenant::stderr(&output).contains("contact 42 not found"));
}
