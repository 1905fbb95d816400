//! Ground truth end to end: the simulator's world, diagnosed offline (`diagnose --replay` on a
//! `simulate --dump`) and live (`diagnose CONTACT_ID` over real loopback HTTP against a running
//! simulator, through the `drilldown` library and through the binary), must give exactly the
//! outcome, failure and reason the simulator built each call for. Also the live command's errors:
//! unknown contact, unreachable API, bad configuration, ambiguous tenant (exit 2, named).

use crate::support::start_simulator;
use chrono::{DateTime, Duration, Utc};
use handover_exporter::config::Rules;
use handover_exporter::drilldown::{self, DrilldownError, DrilldownVerdict};
use handover_exporter::engine::diagnosis::{Failure, Outcome, Reason, WaitingFor};
use handover_exporter::report::Format;
use handover_simulator::{
    self as simulator, rules_table, sim_rules, simulated_tenant, SimCredentials, SimulatorOptions,
    Truth,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

type Verdicts = BTreeMap<i64, (Outcome, Option<Failure>, Reason)>;

/// A finite world: every call ended, Cognigy records visible at once.
fn finite(seed: u64, calls: usize) -> SimulatorOptions {
    SimulatorOptions {
        seed,
        calls: Some(calls),
        rate_per_day: None,
        backlog_hours: 1.0,
        cognigy_lag_seconds: 0,
        ..SimulatorOptions::default()
    }
}

fn truth_verdicts(truth: &Truth) -> Verdicts {
    truth
        .contacts
        .iter()
        .map(|c| (c.contact_id, (c.outcome, c.failure, c.reason)))
        .collect()
}

/// The rules the simulator's worlds are built for.
fn rules() -> Rules {
    sim_rules()
}

fn binary(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
        .args(args)
        .env_remove("HANDOVER_CONFIG_FILE")
        .env_remove("HANDOVER_TENANT")
        .env_remove("HANDOVER_FORMAT")
        .env_remove("HANDOVER_REPLAY")
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary off the async runtime, so the in-process simulator keeps serving.
async fn binary_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        binary(&refs)
    })
    .await
    .expect("the binary task finishes")
}

/// (contact id -> outcome, failure, reason) of `--format json` output, one object per line.
fn json_verdicts(stdout: &str) -> Verdicts {
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            let outcome = Outcome::parse(v["outcome"].as_str().expect("outcome")).expect("known");
            let failure = v["failure"]
                .as_str()
                .map(|f| Failure::parse(f).expect("known"));
            let reason = Reason::parse(v["reason"].as_str().expect("reason")).expect("known");
            (
                v["contact_id"].as_i64().expect("contact_id"),
                (outcome, failure, reason),
            )
        })
        .collect()
}

fn differences(want: &Verdicts, got: &Verdicts) -> Vec<String> {
    let ids: BTreeSet<i64> = want.keys().chain(got.keys()).copied().collect();
    ids.into_iter()
        .filter(|id| want.get(id) != got.get(id))
        .map(|id| {
            format!(
                "{id}: truth {:?}, diagnosed {:?}",
                want.get(&id),
                got.get(&id)
            )
        })
        .collect()
}

/// Writes a config file for the simulator at `base` into `dir` (secrets in `*_file` files).
fn write_config(dir: &Path, base: &str, tenants: &[&str], max_retries: u32) -> String {
    let creds = SimCredentials::default();
    let secret = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value).expect("write secret");
        path.display().to_string()
    };
    let client_secret = secret("client_secret", &creds.client_secret);
    let access_secret = secret("access_key_secret", &creds.access_key_secret);
    let api_key = secret("cognigy_api_key", &creds.api_key);
    let rules =
        rules_table(simulator::SIM_COGNIGY_LAG_SECONDS).replace("[rules]", "[tenant.rules]");
    let mut text = String::from("state_path = \":memory:\"\n");
    for name in tenants {
        text.push_str(&format!(
            r#"
[[tenant]]
name = "{name}"
[tenant.cxone]
issuer = "{base}"
client_id = "{client_id}"
client_secret_file = "{client_secret}"
access_key_id = "{access_key_id}"
access_key_secret_file = "{access_secret}"
[tenant.cxone.http]
quota_requests = 200
quota_window_seconds = 1
max_retries = {max_retries}
initial_backoff_ms = 50
[tenant.cognigy]
api_base_url = "{base}"
odata_base_url = "{base}/odata/v2.4"
api_key_file = "{api_key}"
project_id = "{project}"
[tenant.cognigy.http]
quota_requests = 200
quota_window_seconds = 1
max_retries = {max_retries}
initial_backoff_ms = 50
{rules}"#,
            client_id = creds.client_id,
            access_key_id = creds.access_key_id,
            project = creds.project_id,
        ));
    }
    let path = dir.join("handover-exporter.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// `diagnose --replay` on a dump of a 200-call world gives every bot contact exactly its truth
/// (outcome, failure, reason), none missing, none extra, through the library and the binary.
#[test]
fn replay_of_a_dump_reproduces_the_truth_exactly() {
    let _one_at_a_time = crate::support::one_at_a_time_blocking();
    let dir = tempfile::tempdir().unwrap();
    let truth = simulator::dump(&finite(101, 200), dir.path()).expect("dump");
    let want = truth_verdicts(&truth);
    assert!(want.len() > 100, "a 200-call world has many bot contacts");
    let reasons: BTreeSet<Reason> = want.values().map(|v| v.2).collect();
    assert!(
        reasons.len() >= 10,
        "the world covers many reasons: {reasons:?}"
    );

    let data = handover_exporter::replay::read_dir(dir.path()).expect("replay directory");
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    let got: Verdicts = handover_exporter::replay::diagnose_data(&data)
        .into_iter()
        .map(|d| (d.contact_id, (d.outcome, d.failure, d.reason)))
        .collect();
    let diff = differences(&want, &got);
    assert!(
        diff.is_empty(),
        "replay disagrees with truth:\n{}",
        diff.join("\n")
    );

    let dir_arg = dir.path().display().to_string();
    let (code, stdout, stderr) = binary(&["diagnose", "--replay", &dir_arg, "--format", "json"]);
    assert_eq!(code, 1, "failures present: exit 1; stderr: {stderr}");
    let from_binary = json_verdicts(&stdout);
    assert_eq!(
        stdout.lines().count(),
        from_binary.len(),
        "one line per contact"
    );
    let diff = differences(&want, &from_binary);
    assert!(
        diff.is_empty(),
        "binary replay disagrees:\n{}",
        diff.join("\n")
    );
}

/// `simulate --dump DIR` (the binary) writes a replay whose `truth.json` the binary's own
/// `diagnose --replay --format json` reproduces exactly, for another seed and size.
#[test]
fn simulate_dump_binary_and_replay_binary_agree_with_truth_json() {
    let _one_at_a_time = crate::support::one_at_a_time_blocking();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("world");
    let out_arg = out.display().to_string();
    let (code, _, stderr) = binary(&[
        "simulate",
        "--dump",
        &out_arg,
        "--calls",
        "150",
        "--seed",
        "2024",
        "--cognigy-lag-seconds",
        "0",
    ]);
    assert_eq!(code, 0, "simulate --dump: {stderr}");
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("truth.json")).unwrap()).unwrap();
    let want: Verdicts = truth["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["contact_id"].as_i64().unwrap(),
                (
                    Outcome::parse(c["outcome"].as_str().unwrap()).unwrap(),
                    c["failure"].as_str().map(|f| Failure::parse(f).unwrap()),
                    Reason::parse(c["reason"].as_str().unwrap()).unwrap(),
                ),
            )
        })
        .collect();
    assert!(want.len() > 75);
    let (code, stdout, stderr) = binary(&["diagnose", "--replay", &out_arg, "--format", "json"]);
    assert!(code == 1, "exit {code}: {stderr}");
    let diff = differences(&want, &json_verdicts(&stdout));
    assert!(
        diff.is_empty(),
        "binary replay disagrees:\n{}",
        diff.join("\n")
    );
}

/// The first and the last contact of every reason in the truth (early calls see a window with
/// the whole world, late ones a narrow window), plus the first 12 `caller_time` matches.
fn sample(truth: &Truth) -> Vec<&simulator::truth::TruthContact> {
    let reasons: BTreeSet<Reason> = truth.contacts.iter().map(|c| c.reason).collect();
    let mut picked: Vec<&simulator::truth::TruthContact> = Vec::new();
    for reason in reasons {
        let of_reason = || truth.contacts.iter().filter(move |c| c.reason == reason);
        picked.extend(of_reason().next());
        picked.extend(of_reason().next_back());
    }
    picked.extend(
        truth
            .contacts
            .iter()
            .filter(|c| c.match_kind == simulator::MatchPath::CallerTime)
            .take(12),
    );
    picked.sort_by_key(|c| c.contact_id);
    picked.dedup_by_key(|c| c.contact_id);
    picked
}

fn ended_at(c: &simulator::truth::TruthContact) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&c.ended_at)
        .expect("truth timestamps are RFC 3339")
        .with_timezone(&Utc)
}

/// Live `drilldown::diagnose_contact` against the running simulator gives the truth's outcome,
/// failure, reason and match kind for a sample with every reason of the world (a contact with no
/// session is pending instead while the configured Cognigy lag has not passed since it ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_drilldown_matches_truth_for_every_reason() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let sim = start_simulator(finite(303, 200)).await;
    let now = Utc::now();
    let truth = sim.state.truth(now);
    let tenant = simulated_tenant("sim", &sim.base_url, &SimCredentials::default(), rules());
    let lag = Duration::seconds(tenant.rules.cognigy_lag_seconds as i64);
    let picked = sample(&truth);
    let reasons: BTreeSet<Reason> = truth.contacts.iter().map(|c| c.reason).collect();
    assert!(
        reasons.len() >= 10,
        "the world covers many reasons: {reasons:?}"
    );
    let mut problems = Vec::new();
    let mut diagnosed = 0;
    for c in &picked {
        let now = Utc::now();
        let d = drilldown::diagnose_contact(&tenant, c.contact_id, now)
            .await
            .unwrap_or_else(|e| panic!("contact {}: {e}", c.contact_id));
        assert_eq!(d.master_contact_id, c.contact_id);
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        let still_lagging = c.reason == Reason::NoBotSession && ended_at(c) + lag > now;
        match (&d.verdict, still_lagging) {
            (DrilldownVerdict::Diagnosed(got), false) => {
                diagnosed += 1;
                let match_kind = got.evidence.match_kind.map_or("none", |m| m.as_str());
                if (got.outcome, got.failure, got.reason, match_kind)
                    != (c.outcome, c.failure, c.reason, c.match_kind.as_str())
                {
                    problems.push(format!(
                        "{}: truth {:?}/{:?}/{:?}/{}, live {:?}/{:?}/{:?}/{match_kind}",
                        c.contact_id,
                        c.outcome,
                        c.failure,
                        c.reason,
                        c.match_kind.as_str(),
                        got.outcome,
                        got.failure,
                        got.reason
                    ));
                }
                assert!(
                    d.state_history.contains_key(&c.contact_id),
                    "state history of the master contact read"
                );
            }
            (DrilldownVerdict::Pending { waiting_for, .. }, true) => {
                assert_eq!(*waiting_for, WaitingFor::CognigyLag);
            }
            (other, lagging) => problems.push(format!(
                "{}: truth {:?} (lag pending: {lagging}), live {other:?}",
                c.contact_id, c.reason
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "live drill-down disagrees:\n{}",
        problems.join("\n")
    );
    assert!(
        diagnosed >= 10,
        "most of the sample is diagnosed, got {diagnosed}"
    );
    let covered: BTreeSet<Reason> = picked.iter().map(|c| c.reason).collect();
    assert_eq!(covered, reasons, "the sample has every reason of the truth");
}

/// Asking for a non-master contact of a group (the spawned backchannel or a post-handover leg)
/// diagnoses its master contact, with the same verdict as asking for the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_drilldown_of_a_group_member_diagnoses_its_master() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let sim = start_simulator(finite(404, 60)).await;
    let now = Utc::now();
    let truth = sim.state.truth(now);
    let (master, member) = {
        let world = sim.state.world_at(now);
        world
            .calls
            .iter()
            .filter(|call| {
                call.truth
                    .as_ref()
                    .is_some_and(|t| t.reason == Reason::AgentAnswered)
            })
            .find_map(|call| {
                let member = call
                    .contacts
                    .iter()
                    .find(|c| c.contact_id != call.master_contact_id)?;
                Some((call.master_contact_id, member.contact_id))
            })
            .expect("an answered call has more than one contact")
    };
    let tenant = simulated_tenant("sim", &sim.base_url, &SimCredentials::default(), rules());
    let d = drilldown::diagnose_contact(&tenant, member, Utc::now())
        .await
        .expect("drill-down");
    assert_eq!(d.contact_id, member);
    assert_eq!(d.master_contact_id, master);
    let want = truth
        .contacts
        .iter()
        .find(|c| c.contact_id == master)
        .expect("truth has the master");
    match &d.verdict {
        DrilldownVerdict::Diagnosed(got) => {
            assert_eq!((got.contact_id, got.reason), (master, want.reason));
            assert!(got.evidence.contact_ids.contains(&member));
        }
        other => panic!("expected a diagnosis, got {other:?}"),
    }
}

/// With a configured Cognigy lag longer than the time since the call ended, a contact without a
/// Cognigy session is reported pending (waiting for `cognigy_lag`, due at end plus lag), exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_contact_without_session_is_pending_until_the_lag_passed() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let sim = start_simulator(finite(303, 200)).await;
    let truth = sim.state.truth(Utc::now());
    let lost = truth
        .contacts
        .iter()
        .find(|c| c.reason == Reason::NoBotSession)
        .expect("the world has a call that never reached the bot");
    let mut rules = rules();
    rules.cognigy_lag_seconds = 6000;
    let tenant = simulated_tenant("sim", &sim.base_url, &SimCredentials::default(), rules);
    let d = drilldown::diagnose_contact(&tenant, lost.contact_id, Utc::now())
        .await
        .expect("drill-down");
    match d.verdict {
        DrilldownVerdict::Pending {
            waiting_for,
            due_at,
        } => {
            assert_eq!(waiting_for, WaitingFor::CognigyLag);
            assert_eq!(due_at, ended_at(lost) + Duration::seconds(6000));
        }
        ref other => panic!("expected pending, got {other:?}"),
    }
    assert_eq!(drilldown::exit_code(&d), 0);
    let text = drilldown::render(&d, Format::Text);
    assert!(
        text.contains("pending") && text.contains("cognigy_lag"),
        "{text}"
    );
}

/// A call that never entered the bot (another point of contact, no session) is reported as not a
/// bot contact, in text and JSON, with exit 0; the simulator's truth does not list it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_non_bot_contact_is_reported_as_not_a_bot_contact() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let sim = start_simulator(finite(808, 80)).await;
    let now = Utc::now();
    let truth = sim.state.truth(now);
    let other = {
        let world = sim.state.world_at(now);
        world
            .calls
            .iter()
            .find(|call| call.truth.is_none())
            .map(|call| call.master_contact_id)
            .expect("the world has calls that never entered the bot")
    };
    assert!(truth.contacts.iter().all(|c| c.contact_id != other));
    let tenant = simulated_tenant("sim", &sim.base_url, &SimCredentials::default(), rules());
    let d = drilldown::diagnose_contact(&tenant, other, Utc::now())
        .await
        .expect("drill-down");
    assert_eq!(d.verdict, DrilldownVerdict::NotBotContact);
    assert_eq!(drilldown::exit_code(&d), 0);
    assert!(drilldown::render(&d, Format::Text).contains("not a bot contact"));
    let json: serde_json::Value =
        serde_json::from_str(drilldown::render(&d, Format::Json).trim()).expect("one JSON line");
    assert_eq!(json["status"], "not_a_bot_contact");
    assert_eq!(json["contact_id"], other);
}

/// The binary's live `diagnose CONTACT_ID --config.file FILE` (secrets from files) prints the
/// truth's verdict as JSON with exit 1 for a failure, and as text with the CXone state history
/// and exit 0 for a call an agent answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_live_diagnose_matches_truth_with_exit_codes() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let sim = start_simulator(finite(505, 120)).await;
    let truth = sim.state.truth(Utc::now());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url, &["sim"], 1);
    let failed = truth
        .contacts
        .iter()
        .find(|c| c.outcome == Outcome::Failed && c.reason != Reason::NoBotSession)
        .expect("a failed call");
    let (code, stdout, stderr) = binary_async(vec![
        "diagnose".into(),
        failed.contact_id.to_string(),
        "--config.file".into(),
        config.clone(),
        "--format".into(),
        "json".into(),
    ])
    .await;
    assert_eq!(code, 1, "a failure: exit 1; stderr: {stderr}");
    let got = json_verdicts(&stdout);
    assert_eq!(
        got.get(&failed.contact_id),
        Some(&(failed.outcome, failed.failure, failed.reason)),
        "{stdout}"
    );

    let answered = truth
        .contacts
        .iter()
        .find(|c| c.reason == Reason::AgentAnswered)
        .expect("an answered call");
    let (code, stdout, stderr) = binary_async(vec![
        "diagnose".into(),
        answered.contact_id.to_string(),
        "--config.file".into(),
        config,
        "--tenant".into(),
        "sim".into(),
    ])
    .await;
    assert_eq!(code, 0, "no failure: exit 0; stderr: {stderr}");
    assert!(
        stdout.contains(&format!(
            "contact {}: handed_over / agent_answered",
            answered.contact_id
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("state history:") && stdout.contains("InQueue"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("sim-api-key") && !stderr.contains("sim-api-key"),
        "no secret printed"
    );
}

/// An unknown contact id exits 2 with a message naming the id (library error and binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_contact_exits_2_naming_the_id() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let sim = start_simulator(finite(606, 20)).await;
    let tenant = simulated_tenant("sim", &sim.base_url, &SimCredentials::default(), rules());
    let err = drilldown::diagnose_contact(&tenant, 987_654_321, Utc::now())
        .await
        .expect_err("unknown contact");
    assert!(
        matches!(err, DrilldownError::ContactNotFound(987_654_321)),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url, &["sim"], 1);
    let (code, stdout, stderr) = binary_async(vec![
        "diagnose".into(),
        "987654321".into(),
        "--config.file".into(),
        config,
    ])
    .await;
    assert_eq!(code, 2, "stdout: {stdout}");
    assert!(stderr.contains("contact 987654321 not found"), "{stderr}");
}

/// APIs that cannot be reached exit 2 with a message naming the source (CXone first, as it is
/// read first), and the library error says which API and what it was reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_exits_2_naming_the_source() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let base = format!("http://127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &base, &["sim"], 0);
    let (code, _, stderr) = binary_async(vec![
        "diagnose".into(),
        "123456".into(),
        "--config.file".into(),
        config,
    ])
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CXone API failed"), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("sim-access-key-secret"), "{stderr}");

    // CXone reachable, Cognigy not: the error names Cognigy.
    let sim = start_simulator(finite(707, 20)).await;
    let truth = sim.state.truth(Utc::now());
    let mut tenant = simulated_tenant("sim", &sim.base_url, &SimCredentials::default(), rules());
    let dead = format!("http://127.0.0.1:{}", closed_port());
    tenant.cognigy.api_base_url = dead.clone();
    tenant.cognigy.odata_base_url = format!("{dead}/odata/v2.4");
    tenant.cognigy.http.max_retries = 0;
    let err = drilldown::diagnose_contact(&tenant, truth.contacts[0].contact_id, Utc::now())
        .await
        .expect_err("Cognigy is unreachable");
    let text = err.to_string();
    assert!(
        text.starts_with("Cognigy API failed while reading"),
        "{text}"
    );
    assert!(!text.contains("sim-api-key"), "{text}");
}

/// A missing configuration file, an unknown tenant and several tenants without `--tenant` each
/// exit 2 with a message naming the file or the tenants.
#[test]
fn configuration_problems_exit_2_naming_what_is_wrong() {
    let _one_at_a_time = crate::support::one_at_a_time_blocking();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml").display().to_string();
    let (code, _, stderr) = binary(&["diagnose", "1", "--config.file", &missing]);
    assert_eq!(code, 2);
    assert!(stderr.contains("nope.toml"), "{stderr}");

    let base = format!("http://127.0.0.1:{}", closed_port());
    let config = write_config(dir.path(), &base, &["alpha", "beta"], 0);
    let (code, _, stderr) = binary(&["diagnose", "1", "--config.file", &config]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("several tenants") && stderr.contains("alpha, beta"),
        "{stderr}"
    );
    let (code, _, stderr) = binary(&[
        "diagnose",
        "1",
        "--config.file",
        &config,
        "--tenant",
        "gamma",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("\"gamma\""), "{stderr}");
}
