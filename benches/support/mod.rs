//! Shared pieces of the catch-up and steady-state benches: the simulator on its own runtime
//! thread (so it behaves like a remote server and is not scheduled by the daemon's runtime), with
//! a recording layer that logs every API request (path and query, the auth headers needed to
//! replay it, response bytes), and a process memory/CPU probe from `/proc`.
//!
//! It measures; it asserts nothing and changes no behaviour of the simulator or the daemon.

#![allow(dead_code)] // each bench uses a different subset

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use handover_simulator::{self as simulator, SimState, SimulatorOptions};
use std::sync::{Arc, Mutex};

/// One API request the simulator answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path_and_query: String,
    pub authorization: Option<HeaderValue>,
    pub api_key: Option<HeaderValue>,
    pub status: u16,
    pub bytes: u64,
}

/// Every API request seen so far (simulator control paths `/_sim/*` excluded).
#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<Vec<Recorded>>,
}

impl RequestLog {
    /// How many requests are recorded so far (a mark to slice from later).
    pub fn mark(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// The requests recorded since `mark`.
    pub fn since(&self, mark: usize) -> Vec<Recorded> {
        self.entries
            .lock()
            .map(|e| e[mark.min(e.len())..].to_vec())
            .unwrap_or_default()
    }
}

async fn record(State(log): State<Arc<RequestLog>>, request: Request, next: Next) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if path_and_query.starts_with("/_sim/") {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let authorization = request.headers().get("authorization").cloned();
    let api_key = request.headers().get("x-api-key").cloned();
    let response = next.run(request).await;
    // The simulator's bodies are whole strings, so the size is exact.
    let bytes = response.body().size_hint().exact().unwrap_or(0);
    if let Ok(mut entries) = log.entries.lock() {
        entries.push(Recorded {
            method,
            path_and_query,
            authorization,
            api_key,
            status: response.status().as_u16(),
            bytes,
        });
    }
    response
}

/// A simulator serving on loopback from its own runtime thread.
pub struct SimServer {
    pub base_url: String,
    pub state: Arc<SimState>,
    pub log: Arc<RequestLog>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimServer {
    /// Starts the simulator with `options` on 127.0.0.1, port chosen by the OS, `workers` threads.
    pub fn start(options: SimulatorOptions, workers: usize) -> anyhow::Result<SimServer> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let log = Arc::new(RequestLog::default());
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name("simulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = (|| -> anyhow::Result<_> {
                        let listener = tokio::net::TcpListener::from_std(std_listener)?;
                        let state = simulator::build_state(&listener, &options)?;
                        Ok((listener, state))
                    })();
                    let (listener, state) = match started {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let app = simulator::router(state.clone())
                        .layer(axum::middleware::from_fn_with_state(thread_log, record));
                    let _ = ready_tx.send(Ok(state));
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = shutdown_rx.await;
                        })
                        .await;
                });
            })?;
        let state = ready_rx.recv()??;
        Ok(SimServer {
            base_url: state.base_url.clone(),
            state,
            log,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux `clear_refs` value 5).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time (user + system) of one thread of this process, in seconds, from
/// `/proc/self/task/<tid>/stat`; `None` when unreadable.
pub fn thread_cpu_seconds(tid: i64) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    cpu_from_stat(&text)
}

/// CPU time (user + system) of the whole process in seconds.
pub fn process_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_from_stat(&text)
}

fn cpu_from_stat(text: &str) -> Option<f64> {
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux architecture this runs on.
    100.0
}

/// CPU time in seconds of the threads whose name starts with `prefix` (e.g. the daemon runtime).
pub fn named_threads_cpu_seconds(prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let tid: i64 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            comm.trim()
                .starts_with(prefix)
                .then(|| thread_cpu_seconds(tid))
                .flatten()
        })
        .sum()
}

/// A summary of the machine for the printed report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB RAM, load average {}",
        mem_kb as f64 / 1_048_576.0,
        load.join(" ")
    )
}

/// Megabytes from kB.
pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// An environment setting of a bench, or `default` when it is unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A simulator running as a child process (`handover-exporter simulate`), so that the bench
/// process's memory is the daemon's alone; killed (by its own pid) when dropped.
pub struct SimChild(pub std::process::Child);

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The simulator's request counts by path, from `/_sim/stats`.
pub struct SimStats(pub std::collections::BTreeMap<String, u64>);

impl SimStats {
    /// The counts now; `None` while the simulator does not answer.
    pub async fn fetch(client: &reqwest::Client, base: &str) -> Option<SimStats> {
        let stats: serde_json::Value = client
            .get(format!("{base}/_sim/stats"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let map = stats
            .get("requests")
            .and_then(|r| r.as_object())
            .or_else(|| stats.as_object())?;
        Some(SimStats(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect(),
        ))
    }

    /// Every request answered.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Requests to paths ending with `suffix`.
    pub fn ending_with(&self, suffix: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| v)
            .sum()
    }

    /// Requests to Cognigy (OData and the REST API), by path.
    pub fn cognigy_by_path(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("/odata/") || k.starts_with("/new/"))
            .map(|(k, v)| (k.as_str(), *v))
    }

    /// Requests to Cognigy.
    pub fn cognigy(&self) -> u64 {
        self.cognigy_by_path().map(|(_, v)| v).sum()
    }
}
