//! docs/setup.md is executable: its worked configuration passes `--config.check`, and every
//! command in its `sh` blocks runs (the real binary) against the simulator with the worked
//! configuration pointed at it.

use handover_simulator::{self as simulator, Scenario, SimulatorOptions};

const GUIDE: &str = include_str!("../../docs/setup.md");

/// The fenced blocks of `language` in the guide, in order.
fn blocks(language: &str) -> Vec<String> {
    let fence = format!("```{language}");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in GUIDE.lines() {
        match &mut current {
            None if line.trim() == fence => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

/// The guide's one TOML block, the worked configuration.
fn worked_config() -> String {
    let toml = blocks("toml");
    assert_eq!(toml.len(), 1, "one worked configuration: {toml:?}");
    toml[0].clone()
}

/// Every command of the guide's `sh` blocks.
fn commands() -> Vec<String> {
    blocks("sh")
        .iter()
        .flat_map(|b| {
            b.lines()
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Writes the secret files the worked configuration names into `dir`.
fn write_secrets(dir: &std::path::Path, creds: &simulator::SimCredentials) {
    std::fs::create_dir_all(dir.join("secrets")).expect("mkdir secrets");
    for (name, value) in [
        ("cxone-client-secret", &creds.client_secret),
        ("cxone-access-key-secret", &creds.access_key_secret),
        ("cognigy-api-key", &creds.api_key),
    ] {
        std::fs::write(dir.join("secrets").join(name), value).expect("write secret");
    }
}

/// The worked configuration, exactly as printed, passes `--config.check` once its secret files
/// exist.
#[tokio::test]
async fn worked_config_passes_config_check() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_secrets(dir.path(), &simulator::SimCredentials::default());
    std::fs::write(dir.path().join("handover-exporter.toml"), worked_config()).expect("write");
    let output = crate::support::sim_tenant::run_cli(
        dir.path(),
        &["--config.file", "handover-exporter.toml", "--config.check"],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::sim_tenant::stderr(&output)
    );
    assert!(crate::support::sim_tenant::stdout(&output).contains("configuration is valid"));
}

/// Every command of the guide runs against the simulator with the worked configuration pointed
/// at it (URLs and client ids replaced, nothing else): none is an error (exit 2), and each
/// prints what the guide says it prints.
#[tokio::test]
async fn every_command_of_the_guide_runs() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        seed: 14,
        scenario: Scenario::Mixed,
        calls: Some(60),
        backlog_hours: 1.0,
        ..SimulatorOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim = simulator::spawn(listener, options.clone())
        .await
        .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = &options.credentials;
    write_secrets(dir.path(), creds);
    let config = worked_config()
        .replace(
            "https://odata-app.cognigy.ai/v2.4",
            &format!("{}/odata/v2.4", sim.base_url),
        )
        .replace("https://api-app.cognigy.ai", &sim.base_url)
        .replace("https://cxone.niceincontact.com", &sim.base_url)
        .replace("your-application-client-id", &creds.client_id)
        .replace("your-access-key-id", &creds.access_key_id);
    assert_eq!(
        config.matches(sim.base_url.as_str()).count(),
        3,
        "the worked configuration names the three hosts: {config}"
    );
    std::fs::write(dir.path().join("handover-exporter.toml"), config).expect("write");
    let commands = commands();
    assert!(commands.len() >= 6, "{commands:?}");
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(
            words[0], "handover-exporter",
            "only our commands: {command}"
        );
        let args = &words[1..];
        // A shorter watch than the default minute keeps the test quick; the flag's env twin
        // leaves the command as printed.
        let output = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            let cwd = dir.path().to_path_buf();
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
                    .args(&args)
                    .current_dir(&cwd)
                    .env_remove("HANDOVER_CONFIG_FILE")
                    .env("HANDOVER_WATCH_SECONDS", "2")
                    .output()
                    .expect("run")
            }
        })
        .await
        .expect("join");
        let out = crate::support::sim_tenant::stdout(&output);
        let err = crate::support::sim_tenant::stderr(&output);
        let code = output.status.code();
        assert_ne!(code, Some(2), "{command}: {err}");
        match args {
            [.., "--config.check"] => assert!(out.contains("configuration is valid"), "{out}"),
            ["check", .., "json"] => {
                let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
                assert_eq!(report["steps"].as_array().map(Vec::len), Some(15));
            }
            ["check", ..] => {
                assert!(out.contains("PASS  cxone.token"), "{out}");
                assert!(out.contains("result: "), "{out}");
            }
            ["capture", ..] => {
                assert_eq!(code, Some(0), "{command}: {err}");
                assert!(out.contains("replay directory"), "{out}");
            }
            ["diagnose", "--replay", ..] => {
                assert!(out.contains("contact 710000000004"), "{out}");
                assert!(!err.contains("error"), "{err}");
            }
            ["diagnose", ..] => assert!(out.contains("contact 710000000004"), "{out}"),
            _ => panic!("a command the test does not know how to check: {command}"),
        }
    }
}

/// The README documents `check` and `capture` in its commands table, every flag it gives them is
/// one the binary accepts, and it links the setup guide.
#[tokio::test]
async fn readme_documents_check_and_capture() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let readme = include_str!("../../README.md");
    assert!(readme.contains("[docs/setup.md](docs/setup.md)"));
    for command in ["check", "capture"] {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `handover-exporter {command} ")))
            .unwrap_or_else(|| panic!("no commands-table row for {command}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let help = crate::support::sim_tenant::run_cli(dir.path(), &[command, "--help"]).await;
        let help = crate::support::sim_tenant::stdout(&help);
        // The flags of the command cell (the description may name other commands' flags).
        let cell = row.split(" | ").next().unwrap_or_default();
        let flags: Vec<&str> = cell
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .collect();
        assert!(flags.len() >= 3, "{cell}");
        for flag in flags {
            assert!(help.contains(flag), "{command} --help lacks {flag}: {help}");
        }
    }
}
