//! The daemon: opens the store, builds the metrics, starts one poll loop per tenant and the HTTP
//! server, and shuts all of them down cleanly on a signal.
//!
//! Each tenant's loop runs on a `tokio::time::interval` whose cycles never overlap (the next tick
//! is awaited only after a cycle ends) and each cycle has a deadline, which the cycle itself
//! keeps: it stops cleanly with what it has (every page it read is already written). A cycle
//! that stopped at a page cap or its deadline after making progress is counted as
//! `catching_up` and the next one starts at once; one that fails, or reaches its deadline
//! without progress, is logged with a bounded kind and counted as a failure, and the loop
//! carries on; nothing here exits on a runtime error. The HTTP server is different: if its
//! task ends before shutdown (an error or a bug), [`run`] stops the loops and returns the
//! error, so the process exits 2 and its supervisor restarts it, rather than polling on with
//! nobody able to scrape. The cycle itself is in `pipeline`.

use crate::config::Config;
use crate::metrics::{CycleFailure, CycleOutcome, Metrics};
use crate::pipeline::{Poller, Timing};
use crate::readiness::Readiness;
use crate::server::{AppState, ServerLimits, WebConfig};
use crate::sharding::{Placement, TenantState};
use crate::sources::http::Budgets;
use crate::store::Store;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The git revision this binary was built from.
pub const REVISION: &str = env!("HANDOVER_REVISION");

/// Serving options that come from flags rather than the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub telemetry_path: String,
    pub web_config: Option<Arc<WebConfig>>,
    /// Timeouts and caps of the HTTP server.
    pub limits: ServerLimits,
    /// This process's shard (the config's tenants are already this shard's selection), checked
    /// against the owners the state file records ([`crate::sharding`]).
    pub placement: Placement,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            telemetry_path: "/metrics".into(),
            web_config: None,
            limits: ServerLimits::default(),
            placement: Placement::default(),
        }
    }
}

/// Runs the daemon on `listener` until `shutdown` completes. Returns an error, before that, when
/// the state file cannot be opened (or is another daemon's) or the HTTP server fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::server::validate_telemetry_path(&options.telemetry_path).map_err(anyhow::Error::msg)?;
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let mut config = config;
    let store = Store::open(&config.state_path)
        .map_err(|e| anyhow::anyhow!("state_path {}: {e}", config.state_path))?;
    // Tenants the state file says another shard owns are not polled (their state lives there).
    let placement = options.placement;
    let selected = config.tenants.len();
    let claims = claim_tenants(&mut config, &store, &placement)?;
    let tenants: Vec<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&tenants, REVISION));
    for claim in &claims {
        metrics.set_shard_tenant(&claim.tenant, placement.shard, placement.total, claim.state);
    }
    // Only configured tenants: a tenant removed from the config (or served by another shard)
    // must not keep exporting series from the state file.
    let totals: Vec<_> = store
        .totals()?
        .into_iter()
        .filter(|row| tenants.contains(&row.tenant))
        .collect();
    metrics.load_totals(&totals);
    let store = Arc::new(Mutex::new(store));
    let readiness = Arc::new(Readiness::new(&tenants, config.poll_interval));
    let timing = Timing::from_config(&config);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = Vec::new();
    // One request budget per API host, shared by every tenant on it.
    let budgets = Budgets::default();
    for tenant in &config.tenants {
        let poller = Poller::with_budgets(
            tenant,
            timing,
            store.clone(),
            metrics.clone(),
            readiness.clone(),
            &budgets,
        )
        .map_err(|e| anyhow::anyhow!("tenant {}: {e}", tenant.name))?;
        loops.push(tokio::spawn(poll_loop(
            poller,
            config.poll_interval,
            config.cycle_deadline,
            stop_rx.clone(),
        )));
    }

    let state = AppState {
        metrics,
        store,
        readiness,
        telemetry_path: options.telemetry_path,
        web_config: options.web_config,
        limits: options.limits,
    };
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(crate::server::serve(listener, state, async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    }));
    tracing::info!(
        tenants = tenants.len(),
        refused = selected - tenants.len(),
        shard = placement.shard,
        total_shards = placement.total,
        "handover-exporter started"
    );

    wait_and_stop(shutdown, server, stop_tx, loops, &address).await
}

/// Claims this shard's tenants in the state file, logs the refused and the taken-over ones,
/// and keeps in `config` only the tenants this shard polls.
fn claim_tenants(
    config: &mut Config,
    store: &Store,
    placement: &Placement,
) -> anyhow::Result<Vec<crate::sharding::Claim>> {
    let selected: Vec<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
    let claims = crate::sharding::claim_tenants(store, placement, &selected)
        .map_err(|e| anyhow::anyhow!("state_path {}: {e}", config.state_path))?;
    for claim in &claims {
        match (claim.state, claim.previous) {
            (TenantState::Refused, Some(owner)) => tracing::error!(
                tenant = %claim.tenant,
                kind = "owned_by_other_shard",
                shard = placement.shard,
                total_shards = placement.total,
                owner_shard = owner.shard,
                owner_total_shards = owner.total,
                "not polling this tenant: the state file says another shard owns it; hand its \
                 state over (shard-handover) or start with --shard.takeover"
            ),
            (TenantState::Polling, Some(owner)) if owner.shard != placement.shard => {
                tracing::warn!(
                    tenant = %claim.tenant,
                    shard = placement.shard,
                    owner_shard = owner.shard,
                    "took over a tenant the state file said another shard owned (--shard.takeover)"
                )
            }
            _ => {}
        }
    }
    config.tenants.retain(|t| {
        claims
            .iter()
            .any(|c| c.tenant == t.name && c.state == TenantState::Polling)
    });
    Ok(claims)
}

/// Runs until `shutdown` or until the HTTP server ends, then stops the poll loops: `Ok` on a
/// requested shutdown, an error (exit 2, so a supervisor restarts the daemon) when the server
/// ended by itself.
async fn wait_and_stop(
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_tx: watch::Sender<bool>,
    loops: Vec<tokio::task::JoinHandle<()>>,
    address: &str,
) -> anyhow::Result<()> {
    let shutdown = std::pin::pin!(shutdown);
    let server_ended = tokio::select! {
        () = shutdown => None,
        ended = &mut server => Some(ended),
    };
    match &server_ended {
        None => tracing::info!("shutting down"),
        Some(_) => tracing::error!("the HTTP server stopped; shutting down"),
    }
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    let why = match server_ended {
        None => {
            server.await??;
            tracing::info!("stopped");
            return Ok(());
        }
        Some(Ok(Ok(()))) => "it stopped unexpectedly".to_owned(),
        Some(Ok(Err(error))) => error.to_string(),
        Some(Err(join)) => format!("its task failed: {join}"),
    };
    Err(anyhow::anyhow!(
        "the HTTP server on {address} failed ({why}); exiting so that the supervisor restarts \
         the daemon"
    ))
}

/// One tenant's schedule: a cycle per tick, never two at once, each within `deadline`.
pub async fn poll_loop(
    poller: Poller,
    interval: Duration,
    deadline: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let poller = Arc::new(poller);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let started = Instant::now();
        // Each cycle is its own task, so a bug that panics on some input costs that cycle, not
        // the tenant's whole loop.
        let cycle = tokio::spawn({
            let poller = poller.clone();
            async move {
                poller
                    .run_cycle_until(chrono::Utc::now(), started + deadline)
                    .await
            }
        });
        let abort = cycle.abort_handle();
        // The cycle keeps its own deadline; this is only the backstop for one that cannot (a
        // store call that hangs).
        let backstop = deadline + (deadline / 2).max(Duration::from_secs(5));
        let outcome = tokio::select! {
            r = tokio::time::timeout(backstop, cycle) => r,
            _ = stop.wait_for(|s| *s) => {
                // Aborting is safe: every page and every decided batch is committed, with its
                // counters, in one blocking task that finishes on its own; only the page in
                // flight is lost.
                abort.abort();
                tracing::info!(tenant = poller.tenant(), "shutdown: abandoned the running cycle");
                return;
            }
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let failure = match outcome {
            Ok(Ok(Ok(r))) => {
                tracing::info!(
                    tenant = poller.tenant(),
                    contacts_read = r.contacts_read,
                    cognigy_records_read = r.cognigy_records_read,
                    pages = r.pages,
                    cases = r.cases,
                    diagnosed = r.diagnosed,
                    pending = r.pending,
                    cxone_ok = r.cxone_ok,
                    cognigy_ok = r.cognigy_ok,
                    cxone_ms = r.cxone_ms,
                    cognigy_ms = r.cognigy_ms,
                    more = r.more,
                    deadline = r.deadline,
                    duration_ms = elapsed_ms,
                    "cycle"
                );
                if r.more {
                    // A page cap or the deadline stopped it: continue without waiting a whole
                    // interval.
                    ticker.reset_immediately();
                }
                if r.deadline && !r.progressed() {
                    tracing::error!(
                        tenant = poller.tenant(),
                        kind = "deadline",
                        deadline_ms = deadline.as_millis() as u64,
                        "cycle reached its deadline without progress"
                    );
                    Some(CycleFailure::Deadline)
                } else {
                    let outcome = if r.more {
                        CycleOutcome::CatchingUp
                    } else {
                        CycleOutcome::Complete
                    };
                    poller.metrics().cycle_finished(poller.tenant(), outcome);
                    None
                }
            }
            Ok(Ok(Err(e))) => {
                tracing::error!(tenant = poller.tenant(), kind = e.kind(), error = %e, duration_ms = elapsed_ms, "cycle failed");
                Some(CycleFailure::Store)
            }
            Ok(Err(join)) => {
                tracing::error!(tenant = poller.tenant(), kind = "panic", error = %join, duration_ms = elapsed_ms, "cycle panicked; the next one starts afresh");
                Some(CycleFailure::Panic)
            }
            Err(_) => {
                abort.abort();
                tracing::error!(
                    tenant = poller.tenant(),
                    kind = "deadline",
                    deadline_ms = deadline.as_millis() as u64,
                    "cycle abandoned well past its deadline"
                );
                Some(CycleFailure::Deadline)
            }
        };
        if let Some(kind) = failure {
            poller.metrics().cycle_failed(poller.tenant(), kind);
        }
    }
}

/// Runs a command's future to its end on a multi-threaded runtime (what `serve`, `demo` and
/// `simulate` run on).
pub fn block_on(
    future: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(future)
}

/// Binds the web listener at a Prometheus-style listen address; the error names the flag.
pub async fn bind(flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let address = listen_address(flag);
    tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("--web.listen-address {address}: {e}"))
}

/// Resolves a Prometheus-style listen address (`:10042` means every interface).
pub fn listen_address(flag: &str) -> String {
    if flag.starts_with(':') {
        format!("0.0.0.0{flag}")
    } else {
        flag.to_owned()
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A shard that does not exist (`--shard` must be below `--total-shards`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--shard {shard} must be below --total-shards {total} (and --total-shards at least 1)")]
pub struct ShardError {
    pub shard: u32,
    pub total: u32,
}

/// Keeps the tenants whose stable hash falls on `shard` of `total` (DESIGN §9). The hash is
/// FNV-1a of the tenant name, so every replica agrees without coordination.
pub fn select_shard(mut config: Config, shard: u32, total: u32) -> Result<Config, ShardError> {
    if total == 0 || shard >= total {
        return Err(ShardError { shard, total });
    }
    config
        .tenants
        .retain(|t| tenant_shard(&t.name, total) == shard);
    Ok(config)
}

/// The shard a tenant belongs to.
pub fn tenant_shard(name: &str, total: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(total.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shard of a tenant is stable (a fixed FNV-1a value) and every tenant lands on exactly one shard.
    #[test]
    fn shards_partition_tenants() {
        assert_eq!(tenant_shard("acme", 1), 0);
        assert_eq!(tenant_shard("acme", 4), tenant_shard("acme", 4));
        let names = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];
        for total in 1..5 {
            let mut seen = 0;
            for shard in 0..total {
                seen += names
                    .iter()
                    .filter(|n| tenant_shard(n, total) == shard)
                    .count();
            }
            assert_eq!(seen, names.len());
        }
    }

    /// A shard outside `--total-shards` is refused with both numbers named.
    #[test]
    fn bad_shard_is_refused() {
        let config = Config {
            state_path: ":memory:".into(),
            poll_interval: Duration::from_secs(60),
            cycle_deadline: Duration::from_secs(60),
            overlap: Duration::from_secs(300),
            settle: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
            initial_lookback: Duration::from_secs(3600),
            tenants: vec![],
        };
        let err = select_shard(config, 3, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--shard 3 must be below --total-shards 3 (and --total-shards at least 1)"
        );
    }

    /// `:10042` listens on every interface; a full address is kept.
    #[test]
    fn listen_address_conventions() {
        assert_eq!(listen_address(":10042"), "0.0.0.0:10042");
        assert_eq!(listen_address("127.0.0.1:1"), "127.0.0.1:1");
    }

    /// A telemetry path the server cannot take makes `run` fail at once naming the flag, instead
    /// of polling on without a listener until a signal.
    #[tokio::test]
    async fn bad_telemetry_path_fails_run_at_once() {
        let config = Config {
            state_path: ":memory:".into(),
            poll_interval: Duration::from_secs(60),
            cycle_deadline: Duration::from_secs(60),
            overlap: Duration::from_secs(300),
            settle: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
            initial_lookback: Duration::from_secs(3600),
            tenants: vec![],
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = ServeOptions {
            telemetry_path: "/healthz".into(),
            ..ServeOptions::default()
        };
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            run(config, listener, options, std::future::pending()),
        )
        .await
        .expect("run kept going with a bad telemetry path");
        let error = result.unwrap_err().to_string();
        assert!(error.contains("--web.telemetry-path"), "{error}");
    }
}
