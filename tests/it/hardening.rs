//! The hardened daemon through the real binary: a bad `--web.telemetry-path` fails
//! `--config.check` and start-up with exit 2, a second daemon on the same state file exits 2
//! naming the lock, `--config.check` checks the state file's directory and refuses another
//! program's file, and a flood of half-open connections against a daemon with few file
//! descriptors leaves `/metrics` answering. The sources point at a closed port: polling fails,
//! which does not matter here.

use crate::support::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_handover-exporter");

/// A daemon process killed when dropped (also when a test panics).
struct Daemon {
    child: Option<Child>,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until `/healthz` answers.
    fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not listen on {}", self.port);
    }
}

/// A valid configuration whose state file is `state` and whose sources are a closed port.
fn config(dir: &Path, state: &Path) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"state_path = {state:?}
poll_interval_seconds = 3600

[[tenant]]
name = "acme"

[tenant.cxone]
issuer = "http://127.0.0.1:9"
api_endpoint = "http://127.0.0.1:9"
client_id = "app"
client_secret_env = "HARDENING_SECRET"
access_key_id = "KEYID"
access_key_secret_env = "HARDENING_SECRET"
http = {{ max_retries = 0, timeout_seconds = 1 }}

[tenant.cognigy]
api_base_url = "http://127.0.0.1:9"
odata_base_url = "http://127.0.0.1:9/v2.4"
api_key_env = "HARDENING_SECRET"
project_id = "p"
http = {{ max_retries = 0, timeout_seconds = 1 }}
"#,
            state = state.display().to_string()
        ),
    )
    .expect("write the config");
    path
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("HARDENING_SECRET", "not-a-real-secret")
        .stdin(Stdio::null());
    command
}

fn serve(config: &Path, extra: &[&str]) -> Daemon {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--config.file",
        config.to_str().expect("UTF-8 path"),
        "--web.listen-address",
        &listen,
        "--log.level",
        "error",
    ];
    args.extend_from_slice(extra);
    let child = command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the daemon starts");
    Daemon {
        child: Some(child),
        port,
    }
}

/// Waits at most `within` for the daemon to exit; its output, or a panic if it kept running.
fn exits_within(mut daemon: Daemon, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    loop {
        let child = daemon.child.as_mut().expect("running");
        if child.try_wait().expect("try_wait").is_some() {
            let child = daemon.child.take().expect("running");
            return child.wait_with_output().expect("output");
        }
        assert!(
            Instant::now() < deadline,
            "the daemon was still running after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A telemetry path that shadows a route, is not absolute or is route syntax fails
/// `--config.check` and start-up with exit 2 and a message naming the flag.
#[test]
fn bad_telemetry_path_fails_config_check_and_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &dir.path().join("state.db"));
    let file = config.to_str().expect("UTF-8 path");
    for bad in ["/healthz", "metrics", "/", "/api/v1/x", "/:x", "/readyz"] {
        let out = command(&[
            "--config.check",
            "--config.file",
            file,
            "--web.telemetry-path",
            bad,
        ])
        .output()
        .expect("runs");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--config.check {bad}: {stderr}");
        assert!(stderr.contains("--web.telemetry-path"), "{bad}: {stderr}");

        let out = exits_within(
            serve(&config, &["--web.telemetry-path", bad]),
            Duration::from_secs(10),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "serve {bad}: {stderr}");
        assert!(stderr.contains("--web.telemetry-path"), "{bad}: {stderr}");
    }
}

/// A second daemon on the state file of a running one exits 2 naming the lock file and the
/// first daemon's pid; the first keeps serving.
#[test]
fn second_daemon_on_the_same_state_file_exits_2_naming_the_lock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.db");
    let config = config(dir.path(), &state);
    let first = serve(&config, &[]);
    first.wait_serving();
    let second = exits_within(serve(&config, &[]), Duration::from_secs(10));
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("state.db.lock"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", first.port)).is_ok(),
        "the first daemon stopped"
    );
}

/// `--config.check` refuses a state file whose directory does not exist and another program's
/// SQLite database, naming the path; a fresh path in a writable directory passes.
#[test]
fn config_check_checks_the_state_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let check = |state: &Path| {
        let config = config(dir.path(), state);
        command(&[
            "--config.check",
            "--config.file",
            config.to_str().expect("UTF-8"),
        ])
        .output()
        .expect("runs")
    };
    let fine = check(&dir.path().join("state.db"));
    assert_eq!(fine.status.code(), Some(0), "{}", text(&fine.stderr));

    let missing = check(&dir.path().join("no-such-dir").join("state.db"));
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("state_path"), "{stderr}");
    assert!(stderr.contains("no-such-dir"), "{stderr}");

    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).expect("sqlite");
    conn.execute_batch("CREATE TABLE invoices (id INTEGER)")
        .expect("create");
    drop(conn);
    let foreign = check(&other);
    let stderr = text(&foreign.stderr);
    assert_eq!(foreign.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("other.db"), "{stderr}");
    assert!(stderr.contains("another program"), "{stderr}");
}

/// With only 256 file descriptors, 300 half-open connections (more than the process could hold)
/// leave `/metrics` answering at once: the connection cap is half the descriptor limit and a new
/// connection closes the oldest idle one.
#[cfg(target_os = "linux")]
#[test]
fn half_open_flood_with_few_descriptors_leaves_metrics_answering() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &dir.path().join("state.db"));
    let port = free_port();
    let child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 256 && exec \"$0\" \"$@\"",
            BIN,
            "serve",
            "--config.file",
            config.to_str().expect("UTF-8"),
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.level",
            "error",
        ])
        .env("HARDENING_SECRET", "not-a-real-secret")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let daemon = Daemon {
        child: Some(child),
        port,
    };
    daemon.wait_serving();
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            flood.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "/metrics did not answer during the flood (after {:?}): {answer:?}",
        started.elapsed()
    );
    assert!(answer.ends_with("# EOF\n"), "{answer}");
    eprintln!(
        "/metrics answered in {:?} during 300 half-open connections with ulimit -n 256",
        started.elapsed()
    );
    drop(flood);
}
