//! Shared pieces of the integration tests: the repository's files and fixtures, starting the
//! simulator on a loopback port, and for tests that drive external programs (Prometheus,
//! promtool, Alertmanager, Chromium, the Python OpenMetrics parser) finding those programs,
//! skipping or failing when one is missing, picking free loopback ports, and a guard that kills
//! child processes even when a test panics.
//!
//! A missing program skips the test with `skipped: <what> not installed`, unless the environment
//! sets `HANDOVER_REQUIRE_EXTERNAL=1` (CI does, in `.ci/run`): then it fails. This module does not
//! install anything.

pub mod sim_tenant;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Something a test needs from outside the Rust toolchain.
#[derive(Debug, Clone, Copy)]
pub enum External<'a> {
    /// An executable on `PATH`, e.g. `prometheus`.
    Program(&'a str),
    /// A module `python3` can import, e.g. `prometheus_client.openmetrics.parser`.
    PythonModule(&'a str),
}

impl External<'_> {
    fn is_available(&self) -> bool {
        match self {
            External::Program(name) => program_on_path(name),
            External::PythonModule(module) => Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    fn describe(&self) -> String {
        match self {
            External::Program(name) => (*name).to_owned(),
            External::PythonModule(module) => format!("python3 module {module}"),
        }
    }
}

/// True when `HANDOVER_REQUIRE_EXTERNAL=1`: a missing external program is then a failure.
pub fn external_required() -> bool {
    std::env::var("HANDOVER_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Returns true when every requirement is present. Otherwise prints `skipped: X not installed`
/// and returns false, or panics when `HANDOVER_REQUIRE_EXTERNAL=1`.
pub fn externals_available(requirements: &[External]) -> bool {
    let missing: Vec<String> = requirements
        .iter()
        .filter(|r| !r.is_available())
        .map(External::describe)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("skipped: {} not installed", missing.join(", "));
    if external_required() {
        panic!("{message} (HANDOVER_REQUIRE_EXTERNAL=1 requires it)");
    }
    println!("{message}");
    false
}

/// For a tool CI does not install (e.g. `systemd-analyze` in a container): true when `name` is on
/// `PATH`, otherwise prints `skipped: NAME not installed` and returns false, whatever
/// `HANDOVER_REQUIRE_EXTERNAL` says.
pub fn optional_program_available(name: &str) -> bool {
    let found = program_on_path(name);
    if !found {
        println!("skipped: {name} not installed");
    }
    found
}

fn program_on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A loopback port that was free a moment ago (the listener is dropped before returning, so a
/// program started right after can bind it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// Child processes that are killed and reaped when the guard drops, also during a panic.
#[derive(Default)]
pub struct ChildGuard {
    children: Vec<(String, Child)>,
}

impl ChildGuard {
    /// Spawns `command` (stdout and stderr to `log_path`) and keeps it until the guard drops.
    pub fn spawn(&mut self, name: &str, command: &mut Command, log_path: &Path) -> u32 {
        let log = std::fs::File::create(log_path).expect("create child log");
        let err = log.try_clone().expect("clone child log handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        pid
    }

    /// Panics naming the first child that has already exited (with its log), so a test that waits
    /// for a dead program fails at once with the reason.
    pub fn assert_running(&mut self, logs: &[(&str, &Path)]) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = logs
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, p)| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                panic!("{name} exited early with {status}:\n{log}");
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // Already-exited children make kill fail; reaping is all that is left then.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The longest [`wait_for_http`] waits for a started program to answer.
pub const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `url` until it answers 2xx, failing when the children die or the time runs out.
pub async fn wait_for_http(
    http: &reqwest::Client,
    children: &mut ChildGuard,
    url: &str,
    logs: &[(&str, &Path)],
) {
    let started = std::time::Instant::now();
    loop {
        children.assert_running(logs);
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            started.elapsed() < STARTUP_TIMEOUT,
            "{url} did not answer within {STARTUP_TIMEOUT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A path inside the repository (the root package's directory).
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The bytes of `tests/fixtures/<relative>`; a missing fixture fails the test naming it.
pub fn fixture_bytes(relative: &str) -> Vec<u8> {
    let path = repo_path("tests/fixtures").join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The simulator on a free loopback port, serving until its handle is stopped or dropped.
pub async fn start_simulator(
    options: handover_simulator::SimulatorOptions,
) -> handover_simulator::SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    handover_simulator::spawn(listener, options)
        .await
        .expect("simulator starts")
}

/// The lock [`one_at_a_time`] holds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole test by the tests that run whole systems against the clock (a real
/// Prometheus and Alertmanager evaluating `for:` durations, Chromium, the daemon or several
/// shard processes against the simulator): one test binary runs its tests in parallel, and two
/// of these competing for a 2-core machine push alerts and cycles past their deadlines. The
/// light tests still run beside them.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// [`one_at_a_time`] for a test that is not async.
pub fn one_at_a_time_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.blocking_lock()
}
