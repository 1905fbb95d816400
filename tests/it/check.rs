//! `handover-exporter check` (the real binary) against the simulator over loopback: every step
//! passes on a healthy world, and each misconfiguration or fault a first hour with a tenant meets
//! gives the expected warn or fail line with its hint and exit code 1.

use crate::support::sim_tenant::{run_cli, start, Overrides, SimTenant};
use handover_simulator::{ExtensionVersion, Faults, Scenario, SimulatorOptions};
use serde_json::Value;

/// A finite healthy world: every call ended and visible, so each step sees complete data.
fn finite(scenario: Scenario) -> SimulatorOptions {
    SimulatorOptions {
        seed: 14,
        scenario,
        calls: Some(150),
        backlog_hours: 1.0,
        ..SimulatorOptions::default()
    }
}

/// Runs `check --format json` with `extra` flags; returns the exit code and the report.
async fn check(tenant: &SimTenant, extra: &[&str]) -> (i32, Value) {
    let config = tenant.config.display().to_string();
    let mut args = vec![
        "check",
        "--config.file",
        config.as_str(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let output = run_cli(tenant.dir.path(), &args).await;
    let text = crate::support::sim_tenant::stdout(&output);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON report ({e}): {text}\nstderr: {}",
            crate::support::sim_tenant::stderr(&output)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// The step named `name` of a report.
fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

/// Asserts the step's status is one of `statuses` and its hint mentions `hint`.
fn assert_step(report: &Value, name: &str, statuses: &[&str], hint: &str) {
    let s = step(report, name);
    let status = s["status"].as_str().unwrap_or_default();
    assert!(statuses.contains(&status), "{name} is {status}: {s:#}");
    let text = s["hint"].as_str().unwrap_or_default();
    assert!(text.contains(hint), "{name}'s hint lacks {hint:?}: {s:#}");
}

/// Every step passes on a healthy streaming world (records a minute after the call), exit 0.
#[tokio::test]
async fn healthy_world_passes_every_step() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        seed: 14,
        scenario: Scenario::Healthy,
        rate_per_day: Some(40_000.0),
        backlog_hours: 1.0,
        ..SimulatorOptions::default()
    };
    let tenant = start(options, Overrides::default()).await;
    let (code, report) = check(&tenant, &["--lookback-hours", "2", "--watch-seconds", "20"]).await;
    let not_passed: Vec<&Value> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["status"] != "pass")
        .collect();
    assert!(not_passed.is_empty(), "not all pass: {not_passed:#?}");
    assert_eq!(report["status"], "pass");
    assert_eq!(code, 0);
    assert_eq!(report["steps"].as_array().map(Vec::len), Some(15));
    let extension = step(&report, "cognigy.extension")["detail"].to_string();
    assert!(extension.contains("v8-1.0.18"), "{extension}");
}

/// A wrong CXone access key secret fails the token step with a hint naming the access key; the
/// steps that need CXone are skipped; exit 1.
#[tokio::test]
async fn wrong_cxone_credentials_fail_the_token_step() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let overrides = Overrides {
        access_key_secret: Some("not-the-secret".into()),
        ..Overrides::default()
    };
    let tenant = start(finite(Scenario::Healthy), overrides).await;
    let (code, report) = check(&tenant, &["--watch-seconds", "0"]).await;
    assert_eq!(code, 1);
    assert_eq!(step(&report, "cxone.discovery")["status"], "pass");
    assert_step(&report, "cxone.token", &["fail"], "access_key_secret");
    assert_eq!(step(&report, "cxone.reporting")["status"], "skip");
    assert_eq!(step(&report, "correlation.bot_contacts")["status"], "skip");
    assert!(
        !report.to_string().contains("not-the-secret"),
        "the secret is echoed"
    );
}

/// A wrong Cognigy API key fails the OData and logs steps with a hint about the API key.
#[tokio::test]
async fn wrong_cognigy_api_key_fails_odata_and_logs() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let overrides = Overrides {
        api_key: Some("wrong-api-key".into()),
        ..Overrides::default()
    };
    let tenant = start(finite(Scenario::Healthy), overrides).await;
    let (code, report) = check(&tenant, &["--watch-seconds", "0"]).await;
    assert_eq!(code, 1);
    assert_eq!(step(&report, "cxone.token")["status"], "pass");
    assert_step(&report, "cognigy.odata", &["fail"], "API key");
    assert_step(&report, "cognigy.logs", &["fail"], "API key");
    assert!(!report.to_string().contains("wrong-api-key"));
}

/// A flow that never sets the Analytics custom field warns on the contact id step, with the
/// flow change as the hint.
#[tokio::test]
async fn custom_field_never_set_warns_with_the_flow_change() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        faults: Faults {
            custom_field_unset: true,
            ..Faults::default()
        },
        ..finite(Scenario::Healthy)
    };
    let tenant = start(options, Overrides::default()).await;
    let (code, report) = check(&tenant, &["--watch-seconds", "0"]).await;
    assert_eq!(code, 1);
    assert_step(
        &report,
        "correlation.contact_id",
        &["warn"],
        "copy the CXone master contact id",
    );
    let detail = step(&report, "correlation.contact_id")["detail"].to_string();
    assert!(detail.contains("custom1 0 %"), "{detail}");
}

/// A logs API that refuses `filter` warns on the filter step (the lines are still read).
#[tokio::test]
async fn refused_logs_filter_warns() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        faults: Faults {
            logs_filter_refused: true,
            ..Faults::default()
        },
        ..finite(Scenario::Healthy)
    };
    let tenant = start(options, Overrides::default()).await;
    let (code, report) = check(&tenant, &["--watch-seconds", "0"]).await;
    assert_eq!(code, 1);
    assert_eq!(step(&report, "cognigy.logs")["status"], "pass");
    assert_step(&report, "cognigy.logs_filter", &["warn"], "logs_filter");
    assert_eq!(step(&report, "cognigy.extension")["status"], "pass");
}

/// Lines of the oldest extension version against patterns written for 1.0.10 and later: the
/// extension step names the version and points at the log-pattern configuration.
#[tokio::test]
async fn extension_lines_the_patterns_miss_are_reported() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        extension_version: ExtensionVersion::V1,
        ..finite(Scenario::Mixed)
    };
    let overrides = Overrides {
        rules: r#"
[tenant.rules.log_patterns]
node_ids = 'handoverToCXone: Contact ID: (?P<contact_id>[^;]*); Spawned Contact ID: (?P<spawned_contact_id>[^;]*); Action: (?P<action>[^;]*); Environment URL:'
signal_error = "handoverToCXone: Error signaling CXone with: '(?P<action>.*?)' for contactId: (?P<contact_id>[^\\s;]*)(?:; error: (?P<error>.*))?"
"#
        .into(),
        ..Overrides::default()
    };
    let tenant = start(options, overrides).await;
    let (code, report) = check(&tenant, &["--watch-seconds", "0"]).await;
    assert_eq!(code, 1);
    assert_step(
        &report,
        "cognigy.extension",
        &["warn", "fail"],
        "log_patterns",
    );
    let detail = step(&report, "cognigy.extension")["detail"].to_string();
    assert!(detail.contains("v1-2025-10-09"), "{detail}");
}

/// Session records written 15 minutes after the call, against a 10-minute late window: the
/// record-delay step warns and says how far to raise `late_window_seconds`.
#[tokio::test]
async fn records_later_than_the_window_warn() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        seed: 14,
        scenario: Scenario::Healthy,
        rate_per_day: Some(40_000.0),
        backlog_hours: 1.0,
        cognigy_delay: Some("1:900-1000".parse().expect("delay")),
        ..SimulatorOptions::default()
    };
    let overrides = Overrides {
        cognigy: "late_window_seconds = 600\n".into(),
        ..Overrides::default()
    };
    let tenant = start(options, overrides).await;
    let (code, report) = check(&tenant, &["--watch-seconds", "20"]).await;
    assert_eq!(code, 1);
    assert_step(
        &report,
        "cognigy.record_delay",
        &["warn"],
        "late_window_seconds",
    );
    let detail = step(&report, "cognigy.record_delay")["detail"].to_string();
    assert!(detail.contains("later than the window"), "{detail}");
}

/// The text report has one line per step, a hint line under each warning, and the result line.
#[tokio::test]
async fn text_report_has_a_line_per_step_and_hints() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        faults: Faults {
            logs_filter_refused: true,
            ..Faults::default()
        },
        ..finite(Scenario::Healthy)
    };
    let tenant = start(options, Overrides::default()).await;
    let config = tenant.config.display().to_string();
    let output = run_cli(
        tenant.dir.path(),
        &["check", "--config.file", &config, "--watch-seconds", "0"],
    )
    .await;
    let text = crate::support::sim_tenant::stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for name in ["cxone.token", "cognigy.logs_filter", "cognigy.quota"] {
        assert!(text.contains(name), "{name} missing: {text}");
    }
    assert!(text.contains("WARN  cognigy.logs_filter"), "{text}");
    assert!(text.contains("hint: "), "{text}");
    assert!(text.contains("result: warn"), "{text}");
}

/// A configuration error (unknown tenant) is exit 2 with the tenants named.
#[tokio::test]
async fn unknown_tenant_is_exit_2() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let tenant = start(finite(Scenario::Healthy), Overrides::default()).await;
    let config = tenant.config.display().to_string();
    let output = run_cli(
        tenant.dir.path(),
        &["check", "--config.file", &config, "--tenant", "nope"],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let err = crate::support::sim_tenant::stderr(&output);
    assert!(
        err.contains("no tenant named \"nope\"") && err.contains("sim"),
        "{err}"
    );
}
