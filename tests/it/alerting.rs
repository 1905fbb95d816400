//! End to end through real programs: `demo --scenario signal_outage` (simulator + daemon on
//! loopback) is scraped every second by a real `prometheus` holding the project's rules, which
//! sends to a real Alertmanager (Debian's `prometheus-alertmanager`) routing to a webhook receiver
//! this test runs. The expected failure alert must arrive with its labels and runbook link; with
//! `--scenario healthy` none may arrive. The rules are the shipped file with its evaluation
//! interval and `for:` durations shortened (minutes read as seconds) so the test takes a minute,
//! not an hour; the expressions are the shipped ones. Every PromQL expression of the rules and of
//! the dashboard is sent to that Prometheus and must parse, and after a few cycles every dashboard
//! panel's query must return data.
//!
//! Without `prometheus` or `prometheus-alertmanager` it prints `skipped: ... not installed`,
//! unless `HANDOVER_REQUIRE_EXTERNAL=1`.

use crate::support::{
    externals_available, free_port, repo_path, wait_for_http, ChildGuard, External,
};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RULES: &str = "deploy/prometheus/handover-exporter.rules.yml";
const DASHBOARD: &str = "dashboards/handover-exporter.json";
/// The longest the failing scenario may take to page. The demo streams 20 000 calls a day
/// (about 14 bot contacts a minute) and the backlog it diagnoses before Prometheus's first
/// scrape does not count in `increase()`, so the alert's "at least 20 contacts in 15 minutes"
/// alone needs about 90 s of scraped traffic, then `for:` (10 s here): 120 s left no margin.
const ALERT_TIMEOUT: Duration = Duration::from_secs(240);

/// The shipped rules with `interval: 1m` and every `for: Nm` read as seconds.
fn fast_rules() -> String {
    let text = std::fs::read_to_string(repo_path(RULES)).expect("rules file");
    let minutes = regex::Regex::new(r"(?m)^(\s+(?:for|interval): )(\d+)m$").expect("static regex");
    minutes.replace_all(&text, "${1}${2}s").into_owned()
}

/// Alerts received by the webhook, as Alertmanager posted them.
type Received = Arc<Mutex<Vec<Value>>>;

async fn receive(State(received): State<Received>, Json(body): Json<Value>) {
    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
    received.lock().expect("not poisoned").extend(alerts);
}

/// Everything one run starts: demo, Prometheus, Alertmanager, the webhook receiver.
struct Stack {
    _dir: tempfile::TempDir,
    _children: ChildGuard,
    prometheus: String,
    received: Received,
    http: reqwest::Client,
}

async fn start(scenario: &str) -> Stack {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut children = ChildGuard::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");

    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook");
    let webhook = listener.local_addr().expect("webhook address");
    let app = Router::new()
        .route("/alerts", post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let demo_port = free_port();
    let demo_log = dir.path().join("demo.log");
    children.spawn(
        "demo",
        Command::new(env!("CARGO_BIN_EXE_handover-exporter")).args([
            "demo",
            "--web.listen-address",
            &format!("127.0.0.1:{demo_port}"),
            "--scenario",
            scenario,
            "--seed",
            "13",
        ]),
        &demo_log,
    );

    let alertmanager_port = free_port();
    let alertmanager_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &alertmanager_config,
        format!(
            "route:\n  receiver: test\n  group_by: [alertname, tenant]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    \
             webhook_configs:\n      - url: http://{webhook}/alerts\n"
        ),
    )
    .expect("write alertmanager.yml");
    let alertmanager_log = dir.path().join("alertmanager.log");
    children.spawn(
        "alertmanager",
        Command::new("prometheus-alertmanager").args([
            &format!("--config.file={}", alertmanager_config.display()),
            &format!("--storage.path={}", dir.path().join("am").display()),
            &format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
            "--cluster.listen-address=",
        ]),
        &alertmanager_log,
    );

    let rules_path = dir.path().join("rules.yml");
    std::fs::write(&rules_path, fast_rules()).expect("write rules");
    let prometheus_port = free_port();
    let prometheus_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: \
             ['127.0.0.1:{alertmanager_port}']\nscrape_configs:\n  - job_name: handover-exporter\n    \
             static_configs:\n      - targets: ['127.0.0.1:{demo_port}']\n",
            rules = rules_path.display()
        ),
    )
    .expect("write prometheus.yml");
    let prometheus_log = dir.path().join("prometheus.log");
    children.spawn(
        "prometheus",
        Command::new("prometheus").args([
            &format!("--config.file={}", prometheus_config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ]),
        &prometheus_log,
    );
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");
    let logs: [(&str, &Path); 3] = [
        ("demo", &demo_log),
        ("alertmanager", &alertmanager_log),
        ("prometheus", &prometheus_log),
    ];
    for url in [
        format!("http://127.0.0.1:{demo_port}/metrics"),
        format!("http://127.0.0.1:{alertmanager_port}/-/ready"),
        format!("{prometheus}/-/ready"),
    ] {
        wait_for_http(&http, &mut children, &url, &logs).await;
    }
    Stack {
        _dir: dir,
        _children: children,
        prometheus,
        received,
        http,
    }
}

impl Stack {
    /// An instant query's result vector; panics when Prometheus rejects the expression.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let response: Value = self
            .http
            .get(format!("{}/api/v1/query", self.prometheus))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("query Prometheus")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(
            response["status"].as_str(),
            Some("success"),
            "Prometheus rejected {expr}: {response}"
        );
        match &response["data"]["result"] {
            Value::Array(items) => items.clone(),
            scalar => vec![scalar.clone()],
        }
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().expect("not poisoned").clone()
    }
}

/// Every `expr` of the dashboard, with Grafana's variables filled in.
fn dashboard_exprs() -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path(DASHBOARD)).expect("dashboard"))
            .expect("dashboard JSON");
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$tenant", ".*")
        })
        .collect()
}

/// With the Signal API failing, the failure alert reaches the webhook through Prometheus and
/// Alertmanager with its tenant, severity and runbook link; every rule and dashboard expression
/// parses in that Prometheus, and every dashboard panel's query returns data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_alert_reaches_the_receiver_and_panels_have_data() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    if !externals_available(&[
        External::Program("prometheus"),
        External::Program("prometheus-alertmanager"),
    ]) {
        return;
    }
    let stack = start("signal_outage").await;
    let started = Instant::now();
    let alert = loop {
        let found = stack
            .received()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "HandoverFailureRatioHigh");
        if let Some(alert) = found {
            break alert;
        }
        assert!(
            started.elapsed() < ALERT_TIMEOUT,
            "no HandoverFailureRatioHigh within {ALERT_TIMEOUT:?}; received {:#?}; ALERTS {:#?}",
            stack.received(),
            stack.query("ALERTS").await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(alert["labels"]["tenant"], "demo", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(alert["status"], "firing", "{alert}");
    let runbook = alert["annotations"]["runbook_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        runbook.ends_with("runbooks#handoverfailureratiohigh"),
        "{alert}"
    );
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("tenant demo")),
        "{alert}"
    );

    let rules: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo_path(RULES)).expect("rules"))
            .expect("rules YAML");
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            stack.query(rule["expr"].as_str().expect("expr")).await;
        }
    }
    let mut empty = Vec::new();
    for expr in dashboard_exprs() {
        // Alerts are annotations, not a panel: they have data only while one fires.
        let result = stack.query(&expr).await;
        if result.is_empty() && !expr.starts_with("ALERTS") {
            empty.push(expr);
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
}

/// With healthy traffic no alert reaches the receiver while the daemon works through its backlog
/// and keeps polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_traffic_sends_no_alert() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    if !externals_available(&[
        External::Program("prometheus"),
        External::Program("prometheus-alertmanager"),
    ]) {
        return;
    }
    let stack = start("healthy").await;
    // Long enough for the backlog to be diagnosed and every shortened `for:` (at most 30 s) to
    // pass: what would fire has fired by then.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(45) {
        let diagnosed = stack.query("sum(handover_contacts_total)").await;
        let received = stack.received();
        assert!(received.is_empty(), "healthy traffic paged: {received:#?}");
        if started.elapsed() > Duration::from_secs(40) {
            assert!(
                diagnosed
                    .first()
                    .and_then(|s| s["value"][1].as_str())
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|n| n > 20.0),
                "the daemon diagnosed the healthy backlog: {diagnosed:?}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let firing = stack.query("ALERTS{alertstate=\"firing\"}").await;
    assert!(
        firing.is_empty(),
        "alerts firing on healthy traffic: {firing:#?}"
    );
}
