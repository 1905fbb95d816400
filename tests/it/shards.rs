//! Scale-out with the real binary: several shard processes (each with its own state file) against
//! one simulator serving many tenants, and the ownership recorded in the state files (a tenant
//! handed to another shard is refused until the daemon is told to take it over).
//!
//! The simulator serves one world, reachable under every tenant's configuration, so each
//! tenant's truth is the world's truth; a tenant counted by two shards would show twice in the
//! summed totals.

use crate::support::{free_port, ChildGuard};
use handover_exporter::daemon::tenant_shard;
use handover_exporter::store::Store;
use handover_simulator::{self as simulator, SimHandle, SimulatorOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tenant of a test configuration and where its APIs are.
struct TenantSpec {
    name: String,
    base_url: String,
}

/// The per-host budget of every shard's configuration: `requests` per `window_seconds`.
#[derive(Clone, Copy)]
struct Budget {
    requests: u32,
    window_seconds: u64,
}

/// A daemon configuration with `tenants` pointing at the simulator's credentials (written as
/// files into `dir`) and `budget` on both APIs.
fn write_config(
    dir: &Path,
    file: &str,
    state: &Path,
    options: &SimulatorOptions,
    tenants: &[TenantSpec],
    budget: Budget,
) -> PathBuf {
    let creds = &options.credentials;
    for (name, value) in [
        ("client_secret", &creds.client_secret),
        ("access_key_secret", &creds.access_key_secret),
        ("api_key", &creds.api_key),
    ] {
        // Written aside and renamed: a shard started from an earlier call reads these files
        // while a later call writes them again, and a plain write truncates first (a CI run
        // saw a shard refuse to start because `client_secret` was empty at that instant).
        let aside = dir.join(format!("{name}.new"));
        std::fs::write(&aside, value).expect("write secret");
        std::fs::rename(&aside, dir.join(name)).expect("rename secret");
    }
    let rules = simulator::sim_rules();
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let http = format!(
        "quota_requests = {}\nquota_window_seconds = {}\nmax_concurrency = 8\ntimeout_seconds = 5\n\
         initial_backoff_ms = 50\nmax_backoff_seconds = 1\n",
        budget.requests, budget.window_seconds
    );
    let mut text = format!(
        "state_path = \"{}\"\npoll_interval_seconds = 2\ncycle_deadline_seconds = 30\n\
         settle_seconds = 1\noverlap_seconds = 60\ninitial_lookback_hours = 3\n",
        state.display()
    );
    for tenant in tenants {
        text.push_str(&format!(
            r#"
[[tenant]]
name = "{name}"
[tenant.cxone]
issuer = "{base}"
client_id = "{client_id}"
client_secret_file = "{dir}/client_secret"
access_key_id = "{access_key_id}"
access_key_secret_file = "{dir}/access_key_secret"
[tenant.cxone.http]
{http}
[tenant.cognigy]
api_base_url = "{base}"
odata_base_url = "{base}/odata/v2.4"
api_key_file = "{dir}/api_key"
project_id = "{project}"
[tenant.cognigy.http]
{http}
[tenant.rules]
bot_entry_points_of_contact = [{entry}]
handover_skills = [{skills}]
contact_id_field = "custom{field}"
cognigy_lag_seconds = 3
handover_deadline_seconds = {deadline}
bot_turn_timeout_ms = {turn}
correlation_window_seconds = {window}
"#,
            name = tenant.name,
            base = tenant.base_url,
            dir = dir.display(),
            client_id = creds.client_id,
            access_key_id = creds.access_key_id,
            project = creds.project_id,
            entry = list(&rules.bot_entry_points_of_contact),
            skills = list(&rules.handover_skills),
            field = rules.contact_id_field,
            deadline = rules.handover_deadline_seconds,
            turn = rules.bot_turn_timeout_ms,
            window = rules.correlation_window_seconds,
        ));
    }
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write config");
    path
}

/// One running shard process.
struct Shard {
    port: u16,
    log: PathBuf,
}

fn start_shard(
    children: &mut ChildGuard,
    config: &Path,
    shard: u32,
    total: u32,
    extra: &[&str],
    log: PathBuf,
) -> Shard {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_handover-exporter"));
    command
        .args(["serve", "--config.file"])
        .arg(config)
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--shard",
            &shard.to_string(),
            "--total-shards",
            &total.to_string(),
        ])
        .args(extra);
    children.spawn(&format!("shard-{shard}"), &mut command, &log);
    Shard { port, log }
}

/// What one shard's /metrics says, per tenant.
#[derive(Debug, Default)]
struct Exposition {
    /// tenant -> outcome -> count (non-zero only).
    contacts: BTreeMap<String, BTreeMap<String, u64>>,
    /// tenant -> pending contacts.
    pending: BTreeMap<String, u64>,
    /// tenant -> state of `handover_shard_tenant`.
    shard_tenant: BTreeMap<String, String>,
}

fn label(series: &str, name: &str) -> String {
    series
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("")
        .to_owned()
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let sample = line.split(" # ").next().unwrap_or(line);
            let Some((series, value)) = sample.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let tenant = label(series, "tenant");
            if series.starts_with("handover_contacts_total{") {
                let outcomes = e.contacts.entry(tenant).or_default();
                if value > 0.0 {
                    outcomes.insert(label(series, "outcome"), value as u64);
                }
            } else if series.starts_with("handover_pending_contacts{") {
                e.pending.insert(tenant, value as u64);
            } else if series.starts_with("handover_shard_tenant{") && value == 1.0 {
                e.shard_tenant.insert(tenant, label(series, "state"));
            }
        }
        e
    }
}

async fn scrape(http: &reqwest::Client, shard: &Shard) -> Option<Exposition> {
    let response = http
        .get(format!("http://127.0.0.1:{}/metrics", shard.port))
        .send()
        .await
        .ok()?;
    Some(Exposition::parse(&response.text().await.ok()?))
}

/// The truth's non-zero outcome totals.
fn truth_outcomes(sim: &SimHandle) -> BTreeMap<String, u64> {
    sim.state
        .truth(chrono::Utc::now())
        .totals
        .outcome
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The most requests that arrived within any `window` (a sliding window over arrival times).
fn max_in_window(arrivals: &[Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in arrivals.iter().enumerate() {
        while at.duration_since(arrivals[first]) >= window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

async fn spawn_simulator(seed: u64, calls: usize) -> (SimHandle, SimulatorOptions) {
    let options = SimulatorOptions {
        seed,
        calls: Some(calls),
        rate_per_day: None,
        backlog_hours: 1.0,
        cognigy_lag_seconds: 1,
        ..SimulatorOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim = simulator::spawn(listener, options.clone())
        .await
        .expect("simulator");
    (sim, options)
}

/// Three shard processes against one simulator holding 30 tenants (plus one tenant whose APIs
/// never answer): every tenant is polled by exactly one shard (the one its hash falls on, as its
/// state file records), each tenant's totals and their sum equal the truth, and the Cognigy
/// requests of all shards together stay within the budget of the one egress address. Budgets
/// are scaled down consistently: the host allows 90 requests per 10 s (the real Cognigy quota
/// is 1000 per 5 min) and each shard's `quota_requests` is its third, 30 per 10 s, as the
/// README says to set shards behind one address; the world is 12 calls, the poll interval 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_serve_thirty_tenants_once_within_one_host_budget() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    const SHARDS: u32 = 3;
    const HOST_BUDGET: u32 = 90;
    const WINDOW: u64 = 10;
    let (sim, options) = spawn_simulator(1616, 12).await;
    // A host that accepts connections and never answers: its tenant must not delay the others.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind silent host");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..30).map(|i| format!("tenant-{i:02}")).collect();
    let mut tenants: Vec<TenantSpec> = names
        .iter()
        .map(|name| TenantSpec {
            name: name.clone(),
            base_url: sim.base_url.clone(),
        })
        .collect();
    tenants.push(TenantSpec {
        name: "silent".into(),
        base_url: silent_url,
    });
    let budget = Budget {
        requests: HOST_BUDGET / SHARDS,
        window_seconds: WINDOW,
    };
    let mut children = ChildGuard::default();
    let mut shards = Vec::new();
    for shard in 0..SHARDS {
        let state = dir.path().join(format!("shard-{shard}.db"));
        let config = write_config(
            dir.path(),
            &format!("shard-{shard}.toml"),
            &state,
            &options,
            &tenants,
            budget,
        );
        let log = dir.path().join(format!("shard-{shard}.log"));
        shards.push(start_shard(&mut children, &config, shard, SHARDS, &[], log));
    }
    let truth = truth_outcomes(&sim);
    assert!(
        truth.values().sum::<u64>() >= 5,
        "the world has bot contacts"
    );

    let http = reqwest::Client::new();
    let started = Instant::now();
    let limit = Duration::from_secs(150);
    let expositions = loop {
        let logs: Vec<(String, PathBuf)> = (0..SHARDS)
            .map(|s| (format!("shard-{s}"), shards[s as usize].log.clone()))
            .collect();
        let logs: Vec<(&str, &Path)> = logs
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_path()))
            .collect();
        children.assert_running(&logs);
        let mut all = Vec::new();
        for shard in &shards {
            if let Some(e) = scrape(&http, shard).await {
                all.push(e);
            }
        }
        let done = all.len() == shards.len()
            && names.iter().all(|name| {
                all.iter().any(|e| {
                    e.contacts.get(name) == Some(&truth) && e.pending.get(name) == Some(&0)
                })
            });
        if done {
            break all;
        }
        if started.elapsed() >= limit {
            let kept = std::env::temp_dir().join("shards-test-logs");
            let _ = std::fs::create_dir_all(&kept);
            for shard in &shards {
                let _ = std::fs::copy(&shard.log, kept.join(shard.log.file_name().unwrap()));
            }
            panic!("not every tenant reached the truth {truth:?} within {limit:?}: {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let elapsed = started.elapsed();

    // Exactly one shard serves each tenant: the one its hash falls on.
    for name in names.iter().chain(std::iter::once(&"silent".to_owned())) {
        let serving: Vec<usize> = expositions
            .iter()
            .enumerate()
            .filter(|(_, e)| e.shard_tenant.get(name).map(String::as_str) == Some("polling"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            serving,
            vec![tenant_shard(name, SHARDS) as usize],
            "shards polling {name}"
        );
        let counting = expositions
            .iter()
            .filter(|e| e.contacts.contains_key(name))
            .count();
        assert_eq!(counting, 1, "shards exporting counters of {name}");
    }
    // The summed totals across shards equal the truth of 30 tenants.
    let mut summed: BTreeMap<String, u64> = BTreeMap::new();
    for e in &expositions {
        for (tenant, outcomes) in &e.contacts {
            if tenant == "silent" {
                assert!(outcomes.is_empty(), "the silent tenant counted contacts");
                continue;
            }
            for (outcome, n) in outcomes {
                *summed.entry(outcome.clone()).or_default() += n;
            }
        }
    }
    let expected: BTreeMap<String, u64> = truth
        .iter()
        .map(|(k, n)| (k.clone(), n * names.len() as u64))
        .collect();
    assert_eq!(summed, expected, "summed totals across shards");

    // The one egress address's Cognigy budget held, counted where the server counts.
    let arrivals = sim.state.cognigy_arrivals();
    let most = max_in_window(&arrivals, Duration::from_secs(WINDOW));
    println!(
        "{} tenants on {SHARDS} shards reached the truth in {elapsed:.1?}: {} Cognigy requests, at \
         most {most} in any {WINDOW} s (budget {HOST_BUDGET})",
        names.len(),
        arrivals.len()
    );
    assert!(
        arrivals.len() > HOST_BUDGET as usize,
        "the test must need more than one window of budget: {} requests",
        arrivals.len()
    );
    assert!(
        most <= HOST_BUDGET as usize,
        "{most} Cognigy requests arrived within {WINDOW} s (budget {HOST_BUDGET})"
    );

    // Each state file records its own tenants, owned by its shard of 3, and no other's.
    drop(children);
    for shard in 0..SHARDS {
        let store = Store::open(dir.path().join(format!("shard-{shard}.db"))).expect("state");
        for name in &names {
            let owner = handover_exporter::sharding::owner(&store, name).expect("owner");
            if tenant_shard(name, SHARDS) == shard {
                assert_eq!(
                    owner,
                    Some(handover_exporter::sharding::Owner {
                        shard,
                        total: SHARDS
                    }),
                    "{name} in shard {shard}'s state"
                );
            } else {
                assert_eq!(owner, None, "{name} in shard {shard}'s state");
            }
        }
    }
    drop(silent);
}

/// Waits until `shard` exports `expected` for `tenant` with nothing pending.
async fn wait_for_tenant(
    http: &reqwest::Client,
    children: &mut ChildGuard,
    shard: &Shard,
    tenant: &str,
    expected: &BTreeMap<String, u64>,
) -> Exposition {
    let started = Instant::now();
    loop {
        children.assert_running(&[]);
        if let Some(e) = scrape(http, shard).await {
            if e.contacts.get(tenant) == Some(expected) && e.pending.get(tenant) == Some(&0) {
                return e;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{tenant} did not reach {expected:?}: {e:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// When the shard count changes from 1 to 2 and a tenant's state is handed to its new shard,
/// the new shard continues its counts without counting anything twice; going back to one shard,
/// the old state file says shard 1 owns that tenant, so the daemon refuses it (logged, and
/// `state="refused"` on /metrics, no counters of it) until started with `--shard.takeover`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_owned_by_another_shard_is_refused_until_taken_over() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let (sim, options) = spawn_simulator(1617, 10).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // One tenant that moves to shard 1 of 2 and one that stays on shard 0.
    let candidates: Vec<String> = (0..20).map(|i| format!("bu-{i}")).collect();
    let moving = candidates
        .iter()
        .find(|n| tenant_shard(n, 2) == 1)
        .expect("a tenant on shard 1")
        .clone();
    let staying = candidates
        .iter()
        .find(|n| tenant_shard(n, 2) == 0)
        .expect("a tenant on shard 0")
        .clone();
    let tenants: Vec<TenantSpec> = [&moving, &staying]
        .iter()
        .map(|name| TenantSpec {
            name: (*name).clone(),
            base_url: sim.base_url.clone(),
        })
        .collect();
    // Budgets far above the real limits: this test is about ownership, not quotas.
    let budget = Budget {
        requests: 500,
        window_seconds: 1,
    };
    let old_state = dir.path().join("shard-0.db");
    let new_state = dir.path().join("shard-1.db");
    let config_0 = write_config(
        dir.path(),
        "shard-0.toml",
        &old_state,
        &options,
        &tenants,
        budget,
    );
    let config_1 = write_config(
        dir.path(),
        "shard-1.toml",
        &new_state,
        &options,
        &tenants,
        budget,
    );
    let truth = truth_outcomes(&sim);
    let http = reqwest::Client::new();

    // One shard polls both tenants.
    let mut children = ChildGuard::default();
    let single = start_shard(
        &mut children,
        &config_0,
        0,
        1,
        &[],
        dir.path().join("one.log"),
    );
    wait_for_tenant(&http, &mut children, &single, &moving, &truth).await;
    wait_for_tenant(&http, &mut children, &single, &staying, &truth).await;
    drop(children);

    // Two shards: the moving tenant's state goes to shard 1's file.
    let output = Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
        .args(["shard-handover", "--from"])
        .arg(&old_state)
        .arg("--to")
        .arg(&new_state)
        .args(["--tenant", &moving, "--shard", "1", "--total-shards", "2"])
        .output()
        .expect("run shard-handover");
    assert!(
        output.status.success(),
        "shard-handover failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut children = ChildGuard::default();
    let shard_1 = start_shard(
        &mut children,
        &config_1,
        1,
        2,
        &[],
        dir.path().join("two.log"),
    );
    // Counted once: the handed-over totals continue, nothing is read twice.
    wait_for_tenant(&http, &mut children, &shard_1, &moving, &truth).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = scrape(&http, &shard_1).await.expect("scrape shard 1");
    assert_eq!(
        after.contacts.get(&moving),
        Some(&truth),
        "after more cycles"
    );
    drop(children);

    // Back to one shard: the old file says shard 1 owns the moving tenant.
    let mut children = ChildGuard::default();
    let log = dir.path().join("refusing.log");
    let refusing = start_shard(&mut children, &config_0, 0, 1, &[], log.clone());
    let e = wait_for_tenant(&http, &mut children, &refusing, &staying, &truth).await;
    assert_eq!(
        e.shard_tenant.get(&moving).map(String::as_str),
        Some("refused")
    );
    assert!(
        !e.contacts.contains_key(&moving),
        "a refused tenant exports no counters"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("kind=owned_by_other_shard") && text.contains(&moving),
        "the refusal is logged: {text}"
    );
    drop(children);

    // Told to take it over, the daemon polls it again from the state it holds.
    let mut children = ChildGuard::default();
    let taking = start_shard(
        &mut children,
        &config_0,
        0,
        1,
        &["--shard.takeover"],
        dir.path().join("takeover.log"),
    );
    let e = wait_for_tenant(&http, &mut children, &taking, &moving, &truth).await;
    assert_eq!(
        e.shard_tenant.get(&moving).map(String::as_str),
        Some("polling")
    );
    drop(children);
    let store = Store::open(&old_state).expect("state");
    assert_eq!(
        handover_exporter::sharding::owner(&store, &moving).expect("owner"),
        Some(handover_exporter::sharding::Owner { shard: 0, total: 1 })
    );
}
