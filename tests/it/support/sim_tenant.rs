//! A simulator on loopback with a configuration file pointing at it (secrets in files next to
//! it), and a way to run the real binary against that file: what the `check`, `capture` and
//! setup-guide tests share. Nothing here judges results.

use handover_simulator::{self as simulator, SimHandle, SimulatorOptions};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Lines added to the generated configuration file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Written to the access key secret file instead of the simulator's.
    pub access_key_secret: Option<String>,
    /// Written to the Cognigy API key file instead of the simulator's.
    pub api_key: Option<String>,
    /// Extra lines of `[tenant.cognigy]`.
    pub cognigy: String,
    /// Extra lines after `[tenant.rules]` (may open `[tenant.rules.log_patterns]`).
    pub rules: String,
}

/// A running simulator, its configuration file and the temporary directory holding both.
pub struct SimTenant {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// Starts a simulator with `options` and writes `handover-exporter.toml` for it.
pub async fn start(options: SimulatorOptions, overrides: Overrides) -> SimTenant {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let sim = simulator::spawn(listener, options.clone())
        .await
        .expect("start simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = &options.credentials;
    let access_key_secret = overrides
        .access_key_secret
        .clone()
        .unwrap_or_else(|| creds.access_key_secret.clone());
    let api_key = overrides
        .api_key
        .clone()
        .unwrap_or_else(|| creds.api_key.clone());
    for (name, value) in [
        ("client_secret", creds.client_secret.as_str()),
        ("access_key_secret", access_key_secret.as_str()),
        ("api_key", api_key.as_str()),
    ] {
        std::fs::write(dir.path().join(name), value).expect("write secret file");
    }
    let rules = simulator::sim_rules();
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let config = format!(
        r#"state_path = "{state}"

[[tenant]]
name = "sim"

[tenant.cxone]
issuer = "{base}"
client_id = "{client_id}"
client_secret_file = "client_secret"
access_key_id = "{access_key_id}"
access_key_secret_file = "access_key_secret"

[tenant.cxone.http]
initial_backoff_ms = 50
max_backoff_seconds = 1

[tenant.cognigy]
api_base_url = "{base}"
odata_base_url = "{base}/odata/v2.4"
api_key_file = "api_key"
project_id = "{project}"
{cognigy}
[tenant.cognigy.http]
initial_backoff_ms = 50
max_backoff_seconds = 1

[tenant.rules]
bot_entry_points_of_contact = [{entry}]
handover_skills = [{skills}]
contact_id_field = "custom{field}"
{rules}"#,
        state = dir.path().join("state.db").display(),
        base = sim.base_url,
        client_id = creds.client_id,
        access_key_id = creds.access_key_id,
        project = creds.project_id,
        cognigy = overrides.cognigy,
        entry = list(&rules.bot_entry_points_of_contact),
        skills = list(&rules.handover_skills),
        field = rules.contact_id_field,
        rules = overrides.rules,
    );
    let path = dir.path().join("handover-exporter.toml");
    std::fs::write(&path, config).expect("write config");
    SimTenant {
        sim,
        dir,
        config: path,
    }
}

/// Runs the binary with `args` in `cwd` (off the async runtime, so the simulator keeps serving).
pub async fn run_cli(cwd: &Path, args: &[&str]) -> Output {
    let cwd = cwd.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
            .args(&args)
            .current_dir(&cwd)
            .env_remove("HANDOVER_CONFIG_FILE")
            .output()
            .expect("run handover-exporter")
    })
    .await
    .expect("join the binary's thread")
}

/// The binary's stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The binary's stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
