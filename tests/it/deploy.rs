//! Checks of the deployment artefacts in `deploy/` and `dashboards/`: the Prometheus rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`); every PromQL expression of
//! the rules and of the Grafana dashboard names only metrics the exporter exposes (FAMILIES) or
//! Prometheus built-ins, and the dashboard's expressions parse in promtool; every YAML file parses;
//! the Kubernetes StatefulSet never runs two copies of a shard and its shard configurations are
//! valid configurations with each tenant on exactly one shard.
//!
//! This does not start Grafana, Alertmanager, Docker or Kubernetes. Without `promtool` the promtool
//! tests print `skipped: promtool not installed`, unless `HANDOVER_REQUIRE_EXTERNAL=1`.

use crate::support::{externals_available, optional_program_available, repo_path, External};
use handover_exporter::metrics::FAMILIES;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;

const RULES: &str = "deploy/prometheus/handover-exporter.rules.yml";
const RULES_TEST: &str = "deploy/prometheus/handover-exporter.rules.test.yml";
const DASHBOARD: &str = "dashboards/handover-exporter.json";
const STATEFULSET: &str = "deploy/kubernetes/statefulset.yaml";
const CONFIGMAP: &str = "deploy/kubernetes/configmap.yaml";

/// Series Prometheus itself adds to every scrape target; expressions may use them.
const PROMETHEUS_BUILTINS: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    // The alerts Prometheus itself records (the dashboard's alert annotations read them).
    "ALERTS",
];

/// PromQL words that look like metric names but are operators or modifiers.
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
];

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// Runs promtool with `args`, panicking with its output when it fails.
fn promtool(args: &[&str], current_dir: &Path) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(current_dir)
        .output()
        .expect("start promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The rules file passes `promtool check rules` (syntax, PromQL, templates).
#[test]
fn rules_pass_promtool_check() {
    if !externals_available(&[External::Program("promtool")]) {
        return;
    }
    promtool(&["check", "rules", RULES], &repo_path("."));
}

/// Each alert fires for the tenant or target that should page and not for its healthy twin
/// (`promtool test rules` on the rules' unit tests).
#[test]
fn rules_pass_promtool_unit_tests() {
    if !externals_available(&[External::Program("promtool")]) {
        return;
    }
    promtool(&["test", "rules", RULES_TEST], &repo_path("."));
}

/// The metric names an expression reads: identifiers outside strings, label matchers, ranges,
/// grouping clauses and Grafana variables that are not function calls or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let strip = |pattern: &str, text: &str| {
        regex::Regex::new(pattern)
            .expect("static regex")
            .replace_all(text, " ")
            .into_owned()
    };
    let mut text = strip(r#""(?:[^"\\]|\\.)*""#, expr);
    text = strip(r"\{[^}]*\}", &text);
    text = strip(r"\[[^\]]*\]", &text);
    text = strip(r"\$\{?\w+\}?", &text);
    text = strip(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
        &text,
    );
    // Durations after `offset` (`offset 1w`, `offset 1h30m`) before plain numbers.
    text = strip(r"\boffset\s+-?(?:\d+(?:ms|[smhdwy]))+", &text);
    text = strip(r"\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", &text);
    let identifier =
        regex::Regex::new(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?").expect("static regex");
    identifier
        .captures_iter(&text)
        .filter(|c| c.get(2).is_none())
        .map(|c| c[1].to_owned())
        .filter(|name| !PROMQL_KEYWORDS.contains(&name.to_lowercase().as_str()))
        .collect()
}

/// Every series name the exporter exposes, as Prometheus stores them, plus the built-ins.
fn exposed_series_names() -> HashSet<String> {
    let mut names: HashSet<String> = PROMETHEUS_BUILTINS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for (name, kind, _) in FAMILIES {
        match *kind {
            "histogram" => {
                for suffix in ["_bucket", "_count", "_sum", "_created"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            "counter" => {
                names.insert((*name).to_owned());
                let family = name.strip_suffix("_total").unwrap_or(name);
                names.insert(format!("{family}_created"));
            }
            _ => {
                names.insert((*name).to_owned());
            }
        }
    }
    names
}

/// Names in `exprs` that are neither exposed nor in `extra`, with the expression using each.
fn unknown_metric_names(exprs: &[String], extra: &HashSet<String>) -> Vec<(String, String)> {
    let known = exposed_series_names();
    exprs
        .iter()
        .flat_map(|expr| {
            metric_names(expr)
                .into_iter()
                .filter(|n| !known.contains(n) && !extra.contains(n))
                .map(|n| (n, expr.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every string under an `expr` key anywhere in the JSON document.
fn dashboard_exprs(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Json::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

fn load_dashboard() -> (Json, Vec<String>) {
    let dashboard: Json = serde_json::from_str(&read(DASHBOARD)).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    (dashboard, exprs)
}

/// The name extractor finds metric names and ignores functions, labels, ranges, grouping clauses,
/// numbers and Grafana variables, so the checks below can fail on a misspelt metric.
#[test]
fn metric_name_extraction_finds_only_metric_names() {
    let names = metric_names(
        r#"histogram_quantile(0.9, sum by (tenant, le) (rate(handover_x_bucket{tenant=~"$tenant", a="b c"}[$__rate_interval])))
           / on (tenant) group_left max(up{job="j"}) > bool 1e3 and time() - handover_y offset 5m"#,
    );
    let expected: BTreeSet<String> = ["handover_x_bucket", "up", "handover_y"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, expected, "`offset 5m` is no metric name");
    let unknown = unknown_metric_names(
        &["sum(rate(handover_contacts_totl[5m]))".to_owned()],
        &HashSet::new(),
    );
    assert_eq!(unknown.len(), 1, "a misspelt metric must be reported");
}

/// The dashboard is JSON with the panels the operators need, and every `expr` in it reads only
/// metrics in FAMILIES (or Prometheus built-ins).
#[test]
fn dashboard_exprs_use_only_exported_metrics() {
    let (dashboard, exprs) = load_dashboard();
    assert!(
        exprs.len() >= 10,
        "dashboard has only {} expressions",
        exprs.len()
    );
    let unknown = unknown_metric_names(&exprs, &HashSet::new());
    assert!(
        unknown.is_empty(),
        "dashboard reads unknown metrics: {unknown:#?}"
    );
    let used: HashSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for needed in [
        "handover_contacts_total",
        "handover_failures_total",
        "handover_signal_to_queue_seconds_bucket",
        "handover_queue_wait_seconds_bucket",
        "handover_bot_turn_seconds_bucket",
        "handover_pending_contacts",
        "handover_up",
        "handover_api_requests_total",
    ] {
        assert!(used.contains(needed), "no dashboard panel reads {needed}");
    }
    let panels = dashboard["panels"]
        .as_array()
        .expect("dashboard has panels");
    for panel in panels {
        assert!(
            panel["title"].as_str().is_some_and(|t| !t.is_empty()),
            "untitled panel {panel}"
        );
    }
}

/// Every dashboard expression is valid PromQL: with Grafana's variables filled in, promtool accepts
/// each as a recording rule.
#[test]
fn dashboard_exprs_parse_in_promtool() {
    if !externals_available(&[External::Program("promtool")]) {
        return;
    }
    let (_, exprs) = load_dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let concrete = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "6h")
            .replace("$tenant", ".*");
        let quoted = serde_json::to_string(&concrete).expect("a string encodes as JSON");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard.rules.yml");
    std::fs::write(&path, rules).expect("write rules");
    promtool(&["check", "rules", "dashboard.rules.yml"], dir.path());
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

const RUNBOOKS: &str = "docs/runbooks.md";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";

fn alert_rules() -> Vec<Rule> {
    let file: RuleFile = serde_norway::from_str(&read(RULES)).expect("rules file is YAML");
    file.groups
        .into_iter()
        .flat_map(|g| g.rules)
        .filter(|r| r.alert.is_some())
        .collect()
}

/// The anchors of a Markdown file's `## ` headings, GitHub style (lower case, spaces to `-`).
fn heading_anchors(markdown: &str) -> HashSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// Every alert is in the mixin style: a CamelCase `Handover` name, `severity` warning or critical,
/// a summary and a description, and a `runbook_url` whose anchor is a section of docs/runbooks.md.
#[test]
fn every_alert_has_severity_annotations_and_a_runbook_section() {
    let anchors = heading_anchors(&read(RUNBOOKS));
    let alerts = alert_rules();
    assert!(
        alerts.len() >= 11,
        "the alerts the runbooks describe are there"
    );
    for rule in &alerts {
        let name = rule.alert.as_deref().unwrap_or_default();
        assert!(
            name.starts_with("Handover") && !name.contains('_'),
            "{name}: CamelCase Handover..."
        );
        let severity = rule.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(rule.annotations.contains_key(key), "{name}: no {key}");
        }
        let url = &rule.annotations["runbook_url"];
        let anchor = url.rsplit_once('#').map(|(_, a)| a).unwrap_or_default();
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
        assert!(
            anchors.contains(anchor),
            "{name}: no section `## {name}` in {RUNBOOKS}"
        );
    }
}

/// Every alert has a unit test in which it fires and one in which it stays silent.
#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    let tests: Yaml = serde_norway::from_str(&read(RULES_TEST)).expect("rules test file is YAML");
    let mut firing: HashSet<String> = HashSet::new();
    let mut silent: HashSet<String> = HashSet::new();
    for test in tests["tests"].as_sequence().expect("tests") {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default().to_owned();
            match case["exp_alerts"].as_sequence() {
                Some(alerts) if !alerts.is_empty() => firing.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    for rule in alert_rules() {
        let name = rule.alert.unwrap_or_default();
        assert!(
            firing.contains(&name),
            "{name}: no unit test where it fires"
        );
        assert!(
            silent.contains(&name),
            "{name}: no unit test where it stays silent"
        );
    }
}

/// The Kubernetes PrometheusRule holds exactly the groups of the rules file.
#[test]
fn prometheus_rule_resource_holds_the_rules_file() {
    let rules: Yaml = serde_norway::from_str(&read(RULES)).expect("rules YAML");
    let resource: Yaml = serde_norway::from_str(&read(PROMETHEUS_RULE)).expect("resource YAML");
    assert_eq!(resource["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(
        resource["spec"]["groups"], rules["groups"],
        "regenerate {PROMETHEUS_RULE} from {RULES} (its header says how)"
    );
}

/// The example Alertmanager configuration passes `amtool check-config`, routes both severities,
/// and a down source inhibits the failure alerts of its tenant.
#[test]
fn alertmanager_example_checks_and_inhibits_by_tenant() {
    let text = read("deploy/alertmanager/alertmanager.yml");
    let config: Yaml = serde_norway::from_str(&text).expect("YAML");
    let routes = config["route"]["routes"].as_sequence().expect("routes");
    for severity in ["critical", "warning"] {
        assert!(
            routes
                .iter()
                .any(|r| r["matchers"][0].as_str() == Some(&format!("severity=\"{severity}\""))),
            "no route for severity {severity}"
        );
    }
    let inhibit = config["inhibit_rules"]
        .as_sequence()
        .expect("inhibit_rules");
    let by_source = inhibit
        .iter()
        .find(|r| r["source_matchers"][0].as_str() == Some("alertname=\"HandoverSourceDown\""))
        .expect("HandoverSourceDown inhibits");
    assert_eq!(by_source["equal"][0].as_str(), Some("tenant"));
    let targets = by_source["target_matchers"][0].as_str().unwrap_or_default();
    assert!(targets.contains("HandoverFailureRatioHigh"), "{targets}");
    if !externals_available(&[External::Program("amtool")]) {
        return;
    }
    let output = Command::new("amtool")
        .args(["check-config", "deploy/alertmanager/alertmanager.yml"])
        .current_dir(repo_path("."))
        .output()
        .expect("start amtool");
    assert!(
        output.status.success(),
        "amtool check-config failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every rule reads only metrics in FAMILIES, built-ins or the file's own recording rules, and the
/// alerts the runbooks describe exist.
#[test]
fn rules_use_only_exported_metrics() {
    let file: RuleFile = serde_norway::from_str(&read(RULES)).expect("rules file is YAML");
    let rules: Vec<&Rule> = file.groups.iter().flat_map(|g| &g.rules).collect();
    let recorded: HashSet<String> = rules.iter().filter_map(|r| r.record.clone()).collect();
    let exprs: Vec<String> = rules.iter().map(|r| r.expr.clone()).collect();
    let unknown = unknown_metric_names(&exprs, &recorded);
    assert!(
        unknown.is_empty(),
        "rules read unknown metrics: {unknown:#?}"
    );
    let alerts: HashSet<&str> = rules.iter().filter_map(|r| r.alert.as_deref()).collect();
    for alert in [
        "HandoverFailureRatioHigh",
        "HandoverTimeoutsSpiking",
        "HandoverMissingContextAppeared",
        "HandoverInvalidHandovers",
        "HandoverAbandonmentHigh",
        "HandoverSourceDown",
        "HandoverExporterStalled",
        "HandoverExporterLagging",
        "HandoverPendingBacklog",
        "HandoverExporterDown",
        "HandoverExporterAbsent",
    ] {
        assert!(alerts.contains(alert), "no alert {alert} in {RULES}");
    }
}

/// Every YAML file under deploy/ parses (all documents of multi-document files).
#[test]
fn deploy_yaml_files_parse() {
    let mut checked = 0;
    let mut dirs = vec![repo_path("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read deploy dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let is_yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
            if !is_yaml {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read yaml");
            for document in serde_norway::Deserializer::from_str(&text) {
                Yaml::deserialize(document)
                    .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "only {checked} YAML files found under deploy/"
    );
}

fn yaml_at<'a>(value: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(value, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("no {} in {value:?}", path.join(".")))
    })
}

/// The StatefulSet never runs two copies of a shard: ordered, one-at-a-time replacement without
/// surge, a per-shard ReadWriteOnce volume for the state file, probes on /healthz and /readyz.
#[test]
fn statefulset_never_runs_two_copies_of_a_shard() {
    let set: Yaml = serde_norway::from_str(&read(STATEFULSET)).expect("statefulset is YAML");
    assert_eq!(yaml_at(&set, &["kind"]).as_str(), Some("StatefulSet"));
    let spec = yaml_at(&set, &["spec"]);
    assert_eq!(
        yaml_at(spec, &["podManagementPolicy"]).as_str(),
        Some("OrderedReady")
    );
    assert_eq!(
        yaml_at(spec, &["updateStrategy", "type"]).as_str(),
        Some("RollingUpdate")
    );
    assert!(
        spec["updateStrategy"]["rollingUpdate"]
            .get("maxUnavailable")
            .is_none(),
        "maxUnavailable would replace several shards at once"
    );
    let claims = yaml_at(spec, &["volumeClaimTemplates"])
        .as_sequence()
        .expect("volumeClaimTemplates is a list");
    let state_claim = claims
        .iter()
        .find(|c| c["metadata"]["name"].as_str() == Some("state"))
        .expect("a volumeClaimTemplate named state");
    assert_eq!(
        state_claim["spec"]["accessModes"][0].as_str(),
        Some("ReadWriteOnce")
    );
    let container = &yaml_at(spec, &["template", "spec", "containers"])[0];
    let mounts = container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts");
    assert!(
        mounts.iter().any(|m| m["name"].as_str() == Some("state")
            && m["mountPath"].as_str() == Some("/var/lib/handover-exporter")),
        "the state volume is not mounted at /var/lib/handover-exporter"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
}

/// The StatefulSet runs M shards of one configuration: each pod passes `--shard` from its ordinal
/// (the pod-index label) and `--total-shards` equal to the replicas; the ConfigMap's
/// configuration is valid (secrets from the mounted Secret's files, state on the per-shard
/// volume), every tenant falls on exactly one shard and no shard is left without tenants.
#[test]
fn kubernetes_shards_take_their_ordinal_and_split_the_tenants() {
    let map: Yaml = serde_norway::from_str(&read(CONFIGMAP)).expect("configmap is YAML");
    let set: Yaml = serde_norway::from_str(&read(STATEFULSET)).expect("statefulset is YAML");
    let secret: Yaml =
        serde_norway::from_str(&read("deploy/kubernetes/secret.yaml")).expect("secret is YAML");
    let data = yaml_at(&map, &["data"])
        .as_mapping()
        .expect("data is a map");
    let replicas = yaml_at(&set, &["spec", "replicas"])
        .as_u64()
        .expect("replicas is a number");
    let container = &yaml_at(&set, &["spec", "template", "spec", "containers"])[0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(args.contains(&"--shard=$(SHARD_INDEX)"), "{args:?}");
    assert!(args.contains(&"--total-shards=$(TOTAL_SHARDS)"), "{args:?}");
    assert!(
        args.contains(&"--config.file=/etc/handover-exporter/handover-exporter.toml"),
        "{args:?}"
    );
    let env = container["env"].as_sequence().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in the container's env"))
    };
    assert_eq!(
        var("SHARD_INDEX")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']"),
        "the shard must be the pod's ordinal"
    );
    assert_eq!(
        var("TOTAL_SHARDS")["value"].as_str(),
        Some(replicas.to_string().as_str()),
        "TOTAL_SHARDS must equal the StatefulSet's replicas"
    );

    // The pod mounts the Secret at /run/secrets/handover-exporter; stand in a directory of the
    // Secret's keys so that the configuration's *_file paths resolve.
    let secrets_dir = tempfile::tempdir().expect("tempdir");
    for key in yaml_at(&secret, &["stringData"])
        .as_mapping()
        .expect("stringData is a map")
        .keys()
    {
        let key = key.as_str().expect("secret key is a string");
        std::fs::write(secrets_dir.path().join(key), "test-secret").expect("write secret");
    }
    let secrets_path = secrets_dir.path().display().to_string();
    assert_eq!(data.len(), 1, "one configuration for every shard");
    let key = "handover-exporter.toml";
    let text = data
        .get(key)
        .and_then(Yaml::as_str)
        .unwrap_or_else(|| panic!("no {key} in the ConfigMap"))
        .replace("/run/secrets/handover-exporter", &secrets_path);
    let config = handover_exporter::config::parse(&text, key, &|_| None)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    assert!(
        config.state_path.starts_with("/var/lib/handover-exporter/"),
        "{key}: state_path {} is not on the state volume",
        config.state_path
    );
    let total = replicas as u32;
    let mut served = Vec::new();
    for shard in 0..total {
        let selected = handover_exporter::daemon::select_shard(config.clone(), shard, total)
            .expect("a shard below the total");
        assert!(
            !selected.tenants.is_empty(),
            "shard {shard} of {total} has no tenant: lower replicas or add tenants"
        );
        served.extend(selected.tenants.into_iter().map(|t| t.name));
    }
    served.sort();
    let mut names: Vec<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
    names.sort();
    assert_eq!(served, names, "every tenant on exactly one shard");
    // Behind one egress address the shards share Cognigy's per-IP quota: each takes its share.
    for tenant in &config.tenants {
        assert!(
            u64::from(tenant.cognigy.http.quota_requests) * replicas <= 1000,
            "tenant {}: quota_requests {} on each of {replicas} shards exceeds the 1000 requests \
             per 5 minutes of one address",
            tenant.name,
            tenant.cognigy.http.quota_requests
        );
    }
}

/// The example Prometheus configuration passes `promtool check config`, including its rule file.
#[test]
fn prometheus_example_config_passes_promtool() {
    if !externals_available(&[External::Program("promtool")]) {
        return;
    }
    promtool(
        &["check", "config", "deploy/prometheus/prometheus.yml"],
        &repo_path("."),
    );
}

/// The systemd unit is hardened (dynamic user, state directory, read-only system) and
/// `systemd-analyze verify` accepts every key in it without a warning.
#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let unit = read("deploy/systemd/handover-exporter.service");
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=handover-exporter",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(setting), "the unit lacks {setting:?}");
    }
    if !optional_program_available("systemd-analyze") {
        return;
    }
    // verify checks that ExecStart exists: point it at the binary this test run built.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("handover-exporter.service");
    let local = unit.replace(
        "/usr/local/bin/handover-exporter",
        env!("CARGO_BIN_EXE_handover-exporter"),
    );
    std::fs::write(&path, local).expect("write unit");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("start systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let unit_warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("handover-exporter.service"))
        .collect();
    assert!(
        output.status.success() && unit_warnings.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
}

/// Every file compose.yml mounts or builds from exists in the repository.
#[test]
fn compose_refers_to_existing_files() {
    let compose: Yaml =
        serde_norway::from_str(&read("deploy/compose.yml")).expect("compose is YAML");
    let deploy = repo_path("deploy");
    let services = yaml_at(&compose, &["services"])
        .as_mapping()
        .expect("services is a map");
    let mut checked = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap_or("?");
        if let Some(build) = service.get("build") {
            let context = deploy.join(yaml_at(build, &["context"]).as_str().expect("context"));
            let dockerfile = context.join(
                yaml_at(build, &["dockerfile"])
                    .as_str()
                    .expect("dockerfile"),
            );
            assert!(dockerfile.is_file(), "{name}: no {}", dockerfile.display());
            checked += 1;
        }
        for volume in service
            .get("volumes")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let source = volume
                .as_str()
                .and_then(|v| v.split(':').next())
                .expect("short volume syntax");
            if source.starts_with('.') {
                let path = deploy.join(source);
                assert!(path.exists(), "{name} mounts missing {}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "only {checked} compose references checked");
}

/// The Dockerfile's dependency-caching stage creates a placeholder for every bench target
/// Cargo.toml declares (otherwise `cargo build` there fails on a missing file), and it copies
/// every directory the build reads.
#[test]
fn dockerfile_covers_cargo_targets() {
    let dockerfile = read("deploy/Dockerfile");
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml is TOML");
    for bench in manifest
        .get("bench")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = bench["name"].as_str().expect("bench name");
        assert!(
            dockerfile.contains(&format!("benches/{name}.rs")),
            "deploy/Dockerfile has no placeholder for bench {name}"
        );
    }
    for path in ["Cargo.toml", "Cargo.lock", "crates", "src", "benches"] {
        assert!(repo_path(path).exists(), "{path} is missing");
        assert!(
            dockerfile.contains(&format!("COPY {path}"))
                || dockerfile.contains(&format!(" {path} ")),
            "deploy/Dockerfile does not copy {path}"
        );
    }
}
