//! End to end with a real Prometheus: the `demo` binary (simulator + daemon on loopback) is scraped
//! by a real `prometheus` every second with exemplar storage on, and the test asks Prometheus's
//! HTTP API whether every metric family arrived, whether the target is up, and whether failure
//! exemplars carry a `contact_id`. The same exposition is also read by the Python
//! `prometheus_client` strict OpenMetrics parser.
//!
//! This does not test diagnosis correctness (the simulator and pipeline tests do that); it tests
//! that what the exporter exposes is what a real Prometheus ingests. Without `prometheus` or the
//! Python module it prints `skipped: ... not installed`, unless `HANDOVER_REQUIRE_EXTERNAL=1`.

use crate::support::{externals_available, free_port, wait_for_http, ChildGuard, External};
use handover_exporter::metrics::FAMILIES;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest the test waits for Prometheus to hold everything it checks.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(90);
const JOB: &str = "handover-exporter";

/// A real Prometheus scrapes the demo: `up` is 1, every family in FAMILIES has data, failure
/// exemplars carry a `contact_id` that opens that failed contact, and the exposition passes the
/// strict Python OpenMetrics parser with snake_case label values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_ingests_every_family_and_failure_exemplars() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    if !externals_available(&[
        External::Program("prometheus"),
        External::PythonModule("prometheus_client.openmetrics.parser"),
    ]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut children = ChildGuard::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");

    let demo_port = free_port();
    let demo_log = dir.path().join("demo.log");
    children.spawn(
        "demo",
        Command::new(env!("CARGO_BIN_EXE_handover-exporter")).args([
            "demo",
            "--web.listen-address",
            &format!("127.0.0.1:{demo_port}"),
            "--seed",
            "11",
        ]),
        &demo_log,
    );
    let demo = format!("http://127.0.0.1:{demo_port}");
    wait_for_http(
        &http,
        &mut children,
        &format!("{demo}/metrics"),
        &[("demo", &demo_log)],
    )
    .await;

    let prometheus_port = free_port();
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, prometheus_config(demo_port)).expect("write prometheus.yml");
    let prometheus_log = dir.path().join("prometheus.log");
    let tsdb = dir.path().join("tsdb");
    children.spawn(
        "prometheus",
        Command::new("prometheus").args([
            &format!("--config.file={}", config_path.display()),
            &format!("--storage.tsdb.path={}", tsdb.display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
            "--enable-feature=exemplar-storage",
        ]),
        &prometheus_log,
    );
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");
    let logs: [(&str, &Path); 2] = [("demo", &demo_log), ("prometheus", &prometheus_log)];
    wait_for_http(
        &http,
        &mut children,
        &format!("{prometheus}/-/ready"),
        &logs,
    )
    .await;

    let started = Instant::now();
    let mut missing = vec!["not checked yet".to_owned()];
    while started.elapsed() < CONVERGENCE_TIMEOUT {
        children.assert_running(&logs);
        missing = missing_in_prometheus(&http, &prometheus).await;
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        missing.is_empty(),
        "after {CONVERGENCE_TIMEOUT:?} Prometheus still lacks: {missing:#?}\nprometheus log:\n{}",
        std::fs::read_to_string(&prometheus_log).unwrap_or_default()
    );

    let exemplars = failure_exemplars(&http, &prometheus).await;
    let exemplar = exemplars.first().expect("exemplars were found above");
    assert_exemplar_drills_down(&http, &demo, exemplar).await;

    let exposition = fetch_openmetrics(&http, &format!("{demo}/metrics")).await;
    let parsed = parse_with_python(&exposition);
    for (name, kind, _) in FAMILIES {
        let family = openmetrics_family_name(name, kind);
        assert!(
            parsed.iter().any(|p| p == family),
            "python parser did not return family {family}; it returned {parsed:?}"
        );
    }
    assert_snake_case_label_values(&exposition);
}

/// The prometheus.yml of the test: one job, the demo, scraped every second.
fn prometheus_config(demo_port: u16) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['127.0.0.1:{demo_port}']\n"
    )
}

/// Everything the test expects from Prometheus that is not there yet (empty: all there).
async fn missing_in_prometheus(http: &reqwest::Client, prometheus: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let up = query(http, prometheus, &format!("up{{job=\"{JOB}\"}}")).await;
    let up_values: Vec<&str> = up.iter().filter_map(|s| s["value"][1].as_str()).collect();
    if up_values != ["1"] {
        missing.push(format!("up{{job=\"{JOB}\"}} == 1 (got {up_values:?})"));
    }
    for (name, kind, _) in FAMILIES {
        let queries = match *kind {
            "histogram" => vec![format!("{name}_bucket"), format!("{name}_count")],
            _ => vec![(*name).to_owned()],
        };
        for q in queries {
            if query(http, prometheus, &q).await.is_empty() {
                missing.push(format!("series of {q}"));
            }
        }
    }
    if failure_exemplars(http, prometheus).await.is_empty() {
        missing.push("an exemplar with contact_id on handover_failures_total".to_owned());
    }
    missing
}

/// The result vector of an instant query (empty on any error, so the caller polls again).
async fn query(http: &reqwest::Client, prometheus: &str, promql: &str) -> Vec<Value> {
    let body = get_json(
        http,
        &format!("{prometheus}/api/v1/query"),
        &[("query", promql.to_owned())],
    )
    .await;
    body.and_then(|b| b["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// A failure exemplar as Prometheus returns it: the contact and the series it was attached to.
#[derive(Debug)]
struct FailureExemplar {
    contact_id: String,
    failure: String,
    reason: String,
}

/// The failure exemplars with a `contact_id` that Prometheus stored over the last ten minutes.
async fn failure_exemplars(http: &reqwest::Client, prometheus: &str) -> Vec<FailureExemplar> {
    let now = chrono::Utc::now().timestamp();
    let body = get_json(
        http,
        &format!("{prometheus}/api/v1/query_exemplars"),
        &[
            ("query", "handover_failures_total".to_owned()),
            ("start", (now - 600).to_string()),
            ("end", (now + 60).to_string()),
        ],
    )
    .await;
    let Some(series) = body.and_then(|b| b["data"].as_array().cloned()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for s in &series {
        let label = |name: &str| {
            s["seriesLabels"][name]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        for exemplar in s["exemplars"].as_array().into_iter().flatten() {
            if let Some(contact_id) = exemplar["labels"]["contact_id"].as_str() {
                found.push(FailureExemplar {
                    contact_id: contact_id.to_owned(),
                    failure: label("failure"),
                    reason: label("reason"),
                });
            }
        }
    }
    found
}

/// The exemplar leads to the contact: the demo's `/api/v1/contacts/{contact_id}` holds a failed
/// diagnosis with the failure and reason of the series the exemplar was attached to.
async fn assert_exemplar_drills_down(
    http: &reqwest::Client,
    demo: &str,
    exemplar: &FailureExemplar,
) {
    let url = format!("{demo}/api/v1/contacts/{}", exemplar.contact_id);
    let response = http.get(&url).send().await.expect("GET contact");
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    let body: Value = response.json().await.expect("contact JSON");
    let diagnosis = &body["diagnosis"];
    assert_eq!(diagnosis["outcome"], "failed", "{url}: {body}");
    assert_eq!(
        diagnosis["failure"],
        exemplar.failure.as_str(),
        "{url}: {body}"
    );
    assert_eq!(
        diagnosis["reason"],
        exemplar.reason.as_str(),
        "{url}: {body}"
    );
}

async fn get_json(http: &reqwest::Client, url: &str, params: &[(&str, String)]) -> Option<Value> {
    let response = http.get(url).query(params).send().await.ok()?;
    let body: Value = response.json().await.ok()?;
    (body["status"] == "success").then_some(body)
}

/// The demo's exposition, asked for as OpenMetrics the way Prometheus asks.
async fn fetch_openmetrics(http: &reqwest::Client, url: &str) -> String {
    let response = http
        .get(url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75",
        )
        .send()
        .await
        .expect("GET /metrics");
    assert!(
        response.status().is_success(),
        "GET /metrics: {}",
        response.status()
    );
    response.text().await.expect("read /metrics body")
}

/// Parses `exposition` with prometheus_client's strict OpenMetrics parser, returning the family
/// names it found; panics with the parser's error when it rejects the text.
fn parse_with_python(exposition: &str) -> Vec<String> {
    const SCRIPT: &str = "import sys\n\
from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
for family in text_string_to_metric_families(sys.stdin.read()):\n    print(family.name)\n";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    child
        .stdin
        .take()
        .expect("python3 stdin")
        .write_all(exposition.as_bytes())
        .expect("write exposition to python3");
    let output = child.wait_with_output().expect("wait for python3");
    assert!(
        output.status.success(),
        "strict OpenMetrics parser rejected /metrics: {}\n{exposition}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The OpenMetrics family name of a FAMILIES entry (counters drop `_total`, infos drop `_info`).
fn openmetrics_family_name<'a>(name: &'a str, kind: &str) -> &'a str {
    match kind {
        "counter" => name.strip_suffix("_total").unwrap_or(name),
        "info" => name.strip_suffix("_info").unwrap_or(name),
        _ => name,
    }
}

/// Label values are snake_case words from the enums (or the tenant name), never Rust variant
/// names; the three named values of issue 4 are present.
fn assert_snake_case_label_values(exposition: &str) {
    for expected in [
        "failure=\"missing_context\"",
        "reason=\"no_bot_session\"",
        "outcome=\"handed_over\"",
    ] {
        assert!(exposition.contains(expected), "no {expected} in /metrics");
    }
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)""#).expect("label regex");
    let snake = regex::Regex::new(r"^[a-z0-9_]+$").expect("snake regex");
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        for capture in label.captures_iter(line) {
            let (name, value) = (&capture[1], &capture[2]);
            // Bucket bounds and build info are numbers and versions, and `host` is an API host
            // from the configuration (bounded by it, like tenant names): not enum values.
            if matches!(name, "le" | "version" | "revision" | "host") {
                continue;
            }
            assert!(
                snake.is_match(value),
                "label {name}=\"{value}\" is not snake_case in line: {line}"
            );
        }
    }
}
