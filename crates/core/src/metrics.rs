//! Every metric family of DESIGN §6 in one struct, [`Metrics`], encoded as OpenMetrics text.
//!
//! Label values come only from the crate's label enums (encoded through their snake_case
//! `as_str()`) and from configured tenant names; every known label combination is created at 0
//! when [`Metrics::new`] runs. The diagnosis counters are seeded from the store's persistent
//! totals at start-up ([`Metrics::load_totals`]) and then incremented only for diagnoses the store
//! reported as newly recorded, so they continue across restarts and never double. This module
//! does not poll, store or serve anything; `/metrics` only encodes what is in memory here.

use crate::engine::diagnosis::{Diagnosis, Failure, Outcome, Reason};
use crate::labels::label_enum;
use crate::sources::http::{CodeClass, Endpoint, HostBudget, RequestObserver, RetryCause, Source};
use crate::store::TotalRow;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::CounterWithExemplar;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

label_enum!(
    /// Why a whole poll cycle failed (`kind` label of `handover_cycle_failures_total`); a single
    /// source failing is counted in `handover_poll_failures_total` instead.
    pub CycleFailure {
        /// The state store refused a read or the cycle's commit.
        Store => "store",
        /// The cycle reached its deadline without writing a page or deciding a contact (one that
        /// made progress counts as `catching_up` in `handover_cycles_total` instead), or ran so
        /// far past it that it was abandoned.
        Deadline => "deadline",
        /// The cycle panicked (a bug); the loop goes on with the next cycle.
        Panic => "panic",
    }
);

label_enum!(
    /// How a poll cycle that did not fail ended (`outcome` label of `handover_cycles_total`).
    pub CycleOutcome {
        /// Every stream read to the end of its data and every decidable contact was decided.
        Complete => "complete",
        /// The cycle stopped at a page cap or at its deadline after making progress; the next
        /// one continues at once from where it stopped.
        CatchingUp => "catching_up",
    }
);

label_enum!(
    /// How a diagnosed bot contact's Cognigy session was found (`match` label of
    /// `handover_correlations_total`): the exact ways, the fuzzy one, or no session at all.
    pub CorrelationMatch {
        CustomField => "custom_field",
        SipHeader => "sip_header",
        CallerTime => "caller_time",
        None => "none",
    }
);

impl CorrelationMatch {
    /// The label of a diagnosis' match kind (`None`: no session correlated).
    pub fn of(kind: Option<crate::engine::correlation::MatchKind>) -> CorrelationMatch {
        use crate::engine::correlation::MatchKind;
        match kind {
            Some(MatchKind::CustomField) => CorrelationMatch::CustomField,
            Some(MatchKind::SipHeader) => CorrelationMatch::SipHeader,
            Some(MatchKind::CallerTime) => CorrelationMatch::CallerTime,
            None => CorrelationMatch::None,
        }
    }
}

label_enum!(
    /// A Cognigy OData collection (`collection` label of the late-record metrics).
    pub OdataCollection {
        Sessions => "sessions",
        Conversations => "conversations",
        Analytics => "analytics",
    }
);

/// Every family: (name as in DESIGN §6, OpenMetrics type, comma-separated label names).
pub const FAMILIES: &[(&str, &str, &str)] = &[
    ("handover_contacts_total", "counter", "tenant,outcome"),
    (
        "handover_failures_total",
        "counter",
        "tenant,failure,reason",
    ),
    ("handover_escalations_total", "counter", "tenant"),
    ("handover_correlations_total", "counter", "tenant,match"),
    ("handover_signal_to_queue_seconds", "histogram", "tenant"),
    ("handover_queue_wait_seconds", "histogram", "tenant"),
    ("handover_bot_turn_seconds", "histogram", "tenant"),
    ("handover_pending_contacts", "gauge", "tenant"),
    (
        "handover_cognigy_record_delay_seconds",
        "histogram",
        "tenant,collection",
    ),
    (
        "handover_cognigy_late_records_total",
        "counter",
        "tenant,collection",
    ),
    ("handover_up", "gauge", "tenant,source"),
    (
        "handover_last_poll_success_timestamp_seconds",
        "gauge",
        "tenant,source",
    ),
    (
        "handover_watermark_timestamp_seconds",
        "gauge",
        "tenant,source",
    ),
    ("handover_polls_total", "counter", "tenant,source"),
    ("handover_poll_failures_total", "counter", "tenant,source"),
    ("handover_cycles_total", "counter", "tenant,outcome"),
    ("handover_cycle_failures_total", "counter", "tenant,kind"),
    (
        "handover_api_requests_total",
        "counter",
        "source,endpoint,code",
    ),
    (
        "handover_api_request_duration_seconds",
        "histogram",
        "source,endpoint",
    ),
    ("handover_api_retries_total", "counter", "source,cause"),
    ("handover_api_quota_requests", "gauge", "source,host"),
    ("handover_api_quota_used_ratio", "gauge", "source,host"),
    ("handover_build_info", "info", "version,revision"),
    (
        "handover_shard_tenant",
        "gauge",
        "tenant,shard,total_shards,state",
    ),
];

/// Seconds from the bot's escalation to queue entry: sub-second to minutes.
const SIGNAL_TO_QUEUE_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0];
/// Seconds a caller waits in the agent queue: seconds to half an hour.
const QUEUE_WAIT_BUCKETS: &[f64] = &[5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];
/// Seconds one bot turn takes: the default bot turn timeout is 10 s.
const BOT_TURN_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0];
/// Seconds from a Cognigy record's own time to when it was first read: the poll interval, the
/// end of its session, a session's 30-minute expiry, and beyond.
const RECORD_DELAY_BUCKETS: &[f64] = &[
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 2700.0, 3600.0, 7200.0,
];
/// Seconds one API request takes: the HTTP layer's timeouts are tens of seconds.
const API_DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tenant: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CorrelationLabels {
    tenant: String,
    /// `r#` because `match` is a keyword; the derive writes the label name without it.
    r#match: CorrelationMatch,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    tenant: String,
    failure: Failure,
    reason: Reason,
}

/// The exemplar of a failure: the contact to drill into.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContactExemplar {
    contact_id: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectionLabels {
    tenant: String,
    collection: OdataCollection,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabels {
    tenant: String,
    source: Source,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CycleLabels {
    tenant: String,
    outcome: CycleOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CycleFailureLabels {
    tenant: String,
    kind: CycleFailure,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    source: Source,
    endpoint: Endpoint,
    code: CodeClass,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    source: Source,
    endpoint: Endpoint,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    source: Source,
    cause: RetryCause,
}

/// One API host's budget; `host` comes from the configuration (`scheme://host[:port]` of a
/// configured URL), so its values are bounded by the config.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    source: Source,
    host: String,
}

/// One tenant of this shard's selection; `shard` and `total_shards` are the process's flags and
/// `tenant` a configured name, so the values are bounded by the configuration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardTenantLabels {
    tenant: String,
    shard: String,
    total_shards: String,
    state: crate::sharding::TenantState,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;
type TimestampGauge = Gauge<f64, AtomicU64>;

fn signal_to_queue_histogram() -> Histogram {
    Histogram::new(SIGNAL_TO_QUEUE_BUCKETS.iter().copied())
}
fn queue_wait_histogram() -> Histogram {
    Histogram::new(QUEUE_WAIT_BUCKETS.iter().copied())
}
fn bot_turn_histogram() -> Histogram {
    Histogram::new(BOT_TURN_BUCKETS.iter().copied())
}
fn record_delay_histogram() -> Histogram {
    Histogram::new(RECORD_DELAY_BUCKETS.iter().copied())
}
fn api_duration_histogram() -> Histogram {
    Histogram::new(API_DURATION_BUCKETS.iter().copied())
}

fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// The registry and every family of DESIGN §6.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    contacts: Family<OutcomeLabels, Counter>,
    failures: Family<FailureLabels, CounterWithExemplar<ContactExemplar>>,
    escalations: Family<TenantLabels, Counter>,
    signal_to_queue: HistogramFamily<TenantLabels>,
    queue_wait: HistogramFamily<TenantLabels>,
    bot_turn: HistogramFamily<TenantLabels>,
    pending: Family<TenantLabels, Gauge>,
    record_delay: HistogramFamily<CollectionLabels>,
    late_records: Family<CollectionLabels, Counter>,
    up: Family<PollLabels, Gauge>,
    last_poll_success: Family<PollLabels, TimestampGauge>,
    watermark: Family<PollLabels, TimestampGauge>,
    polls: Family<PollLabels, Counter>,
    poll_failures: Family<PollLabels, Counter>,
    cycles: Family<CycleLabels, Counter>,
    correlations: Family<CorrelationLabels, Counter>,
    cycle_failures: Family<CycleFailureLabels, Counter>,
    api_requests: Family<RequestLabels, Counter>,
    api_duration: HistogramFamily<EndpointLabels>,
    api_retries: Family<RetryLabels, Counter>,
    quota_requests: Family<QuotaLabels, Gauge>,
    quota_used: Family<QuotaLabels, Gauge<f64, AtomicU64>>,
    shard_tenants: Family<ShardTenantLabels, Gauge>,
    /// The budgets whose use `encode` reads into `quota_used`.
    budgets: std::sync::Mutex<Vec<std::sync::Arc<HostBudget>>>,
}

impl Metrics {
    /// Registers every family and creates every known label combination at 0 for `tenants`.
    pub fn new(tenants: &[String], revision: &str) -> Metrics {
        let m = Metrics::unregistered();
        let mut registry = Registry::with_prefix("handover");
        m.register(&mut registry, revision);
        for tenant in tenants {
            m.create_tenant_series(tenant);
        }
        m.create_api_series();
        Metrics { registry, ..m }
    }

    /// Every family, empty, with an empty registry.
    fn unregistered() -> Metrics {
        Metrics {
            registry: Registry::default(),
            contacts: Family::default(),
            failures: Family::default(),
            escalations: Family::default(),
            signal_to_queue: Family::new_with_constructor(signal_to_queue_histogram),
            queue_wait: Family::new_with_constructor(queue_wait_histogram),
            bot_turn: Family::new_with_constructor(bot_turn_histogram),
            pending: Family::default(),
            record_delay: Family::new_with_constructor(record_delay_histogram),
            late_records: Family::default(),
            up: Family::default(),
            last_poll_success: Family::default(),
            watermark: Family::default(),
            polls: Family::default(),
            poll_failures: Family::default(),
            cycles: Family::default(),
            correlations: Family::default(),
            cycle_failures: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(api_duration_histogram),
            api_retries: Family::default(),
            quota_requests: Family::default(),
            quota_used: Family::default(),
            shard_tenants: Family::default(),
            budgets: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Registers every family (with its help text) and the build info in `registry`: first
    /// the families about contacts and Cognigy records, then [`Metrics::register_sources`].
    fn register(&self, registry: &mut Registry, revision: &str) {
        registry.register(
            "contacts",
            "Bot contacts diagnosed, by outcome",
            self.contacts.clone(),
        );
        registry.register(
            "failures",
            "Failed handovers by failure class and reason; exemplar: the contact id",
            self.failures.clone(),
        );
        registry.register(
            "escalations",
            "Bot contacts that escalated to an agent",
            self.escalations.clone(),
        );
        registry.register(
            "correlations",
            "Diagnosed bot contacts by how their Cognigy session was found (custom_field and \
             sip_header are exact, caller_time is fuzzy, none: no session)",
            self.correlations.clone(),
        );
        registry.register(
            "signal_to_queue_seconds",
            "Seconds from the bot's escalation to the contact entering the agent queue",
            self.signal_to_queue.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Seconds a handed-over caller waited in the agent queue",
            self.queue_wait.clone(),
        );
        registry.register(
            "bot_turn_seconds",
            "Seconds the bot spent on one caller input (Cognigy executionTime)",
            self.bot_turn.clone(),
        );
        registry.register(
            "pending_contacts",
            "Contacts read but not yet diagnosed (waiting for data)",
            self.pending.clone(),
        );
        registry.register(
            "cognigy_record_delay_seconds",
            "Seconds from a Cognigy OData record's own time to when it was first read",
            self.record_delay.clone(),
        );
        registry.register(
            "cognigy_late_records",
            "Cognigy OData records first read later than late_window_seconds after their own time",
            self.late_records.clone(),
        );
        self.register_sources(registry, revision);
    }

    /// Registers the families about polling, the APIs, shards and the build.
    fn register_sources(&self, registry: &mut Registry, revision: &str) {
        registry.register(
            "up",
            "Whether the last poll of the source succeeded (1) or not (0)",
            self.up.clone(),
        );
        registry.register(
            "last_poll_success_timestamp_seconds",
            "Unix time of the last successful poll of the source",
            self.last_poll_success.clone(),
        );
        registry.register(
            "watermark_timestamp_seconds",
            "Unix time up to which the source has been read",
            self.watermark.clone(),
        );
        registry.register("polls", "Poll cycles of the source", self.polls.clone());
        registry.register(
            "poll_failures",
            "Poll cycles of the source that failed",
            self.poll_failures.clone(),
        );
        registry.register(
            "cycles",
            "Poll cycles that did not fail, by how they ended",
            self.cycles.clone(),
        );
        registry.register(
            "cycle_failures",
            "Poll cycles that failed as a whole, by kind",
            self.cycle_failures.clone(),
        );
        registry.register(
            "api_requests",
            "HTTP attempts by endpoint and result class",
            self.api_requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Seconds one HTTP attempt took",
            self.api_duration.clone(),
        );
        registry.register(
            "api_retries",
            "HTTP attempts retried, by cause",
            self.api_retries.clone(),
        );
        registry.register(
            "api_quota_requests",
            "Requests the API host's budget allows per window (shared by every tenant on the host)",
            self.quota_requests.clone(),
        );
        registry.register(
            "api_quota_used_ratio",
            "Share of the API host's request budget used over the last window",
            self.quota_used.clone(),
        );
        registry.register(
            "shard_tenant",
            "1 for each tenant of this shard's selection: state polling, or refused when the state \
             file says another shard owns it",
            self.shard_tenants.clone(),
        );
        registry.register(
            "build",
            "Version and revision of this build",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                revision: revision.to_owned(),
            }),
        );
    }

    /// Creates every series of one tenant at 0, so that rates and alerts see them from start-up.
    fn create_tenant_series(&self, tenant: &str) {
        let t = TenantLabels {
            tenant: tenant.to_owned(),
        };
        for outcome in Outcome::ALL {
            let _ = self.contacts.get_or_create(&OutcomeLabels {
                tenant: tenant.to_owned(),
                outcome: *outcome,
            });
        }
        for reason in Reason::ALL {
            if let Some(failure) = reason.failure() {
                let _ = self.failures.get_or_create(&FailureLabels {
                    tenant: tenant.to_owned(),
                    failure,
                    reason: *reason,
                });
            }
        }
        let _ = self.escalations.get_or_create(&t);
        for kind in CorrelationMatch::ALL {
            let _ = self.correlations.get_or_create(&CorrelationLabels {
                tenant: tenant.to_owned(),
                r#match: *kind,
            });
        }
        let _ = self.signal_to_queue.get_or_create(&t);
        let _ = self.queue_wait.get_or_create(&t);
        let _ = self.bot_turn.get_or_create(&t);
        let _ = self.pending.get_or_create(&t);
        for collection in OdataCollection::ALL {
            let c = CollectionLabels {
                tenant: tenant.to_owned(),
                collection: *collection,
            };
            let _ = self.record_delay.get_or_create(&c);
            let _ = self.late_records.get_or_create(&c);
        }
        for source in Source::ALL {
            let p = PollLabels {
                tenant: tenant.to_owned(),
                source: *source,
            };
            let _ = self.up.get_or_create(&p);
            let _ = self.last_poll_success.get_or_create(&p);
            let _ = self.watermark.get_or_create(&p);
            let _ = self.polls.get_or_create(&p);
            let _ = self.poll_failures.get_or_create(&p);
        }
        for outcome in CycleOutcome::ALL {
            let _ = self.cycles.get_or_create(&CycleLabels {
                tenant: tenant.to_owned(),
                outcome: *outcome,
            });
        }
        for kind in CycleFailure::ALL {
            let _ = self.cycle_failures.get_or_create(&CycleFailureLabels {
                tenant: tenant.to_owned(),
                kind: *kind,
            });
        }
    }

    /// Creates every endpoint, result class and retry cause series at 0.
    fn create_api_series(&self) {
        for endpoint in Endpoint::ALL {
            let source = endpoint.source();
            for code in CodeClass::ALL {
                let _ = self.api_requests.get_or_create(&RequestLabels {
                    source,
                    endpoint: *endpoint,
                    code: *code,
                });
            }
            let _ = self.api_duration.get_or_create(&EndpointLabels {
                source,
                endpoint: *endpoint,
            });
        }
        for source in Source::ALL {
            for cause in RetryCause::ALL {
                let _ = self.api_retries.get_or_create(&RetryLabels {
                    source: *source,
                    cause: *cause,
                });
            }
        }
    }

    /// Counts one newly recorded diagnosis (call only for those the store returned as new).
    pub fn record_diagnosis(&self, tenant: &str, diagnosis: &Diagnosis) {
        let tenant = tenant.to_owned();
        self.contacts
            .get_or_create(&OutcomeLabels {
                tenant: tenant.clone(),
                outcome: diagnosis.outcome,
            })
            .inc();
        if let Some(failure) = diagnosis.failure {
            self.failures
                .get_or_create(&FailureLabels {
                    tenant: tenant.clone(),
                    failure,
                    reason: diagnosis.reason,
                })
                .inc_by(
                    1,
                    Some(ContactExemplar {
                        contact_id: diagnosis.contact_id,
                    }),
                    None,
                );
        }
        self.correlations
            .get_or_create(&CorrelationLabels {
                tenant: tenant.clone(),
                r#match: CorrelationMatch::of(diagnosis.evidence.match_kind),
            })
            .inc();
        let t = TenantLabels { tenant };
        let evidence = &diagnosis.evidence;
        if evidence.escalated_at.is_some() {
            self.escalations.get_or_create(&t).inc();
        }
        if let Some(seconds) = evidence.signal_to_queue_seconds {
            self.signal_to_queue.get_or_create(&t).observe(seconds);
        }
        if let Some(seconds) = evidence.queue_wait_seconds {
            self.queue_wait.get_or_create(&t).observe(seconds);
        }
        for seconds in &evidence.bot_turn_seconds {
            self.bot_turn.get_or_create(&t).observe(*seconds);
        }
    }

    /// Adds the store's persistent totals to the outcome and failure counters; call once at
    /// start-up, before any [`Metrics::record_diagnosis`].
    pub fn load_totals(&self, rows: &[TotalRow]) {
        for row in rows {
            self.contacts
                .get_or_create(&OutcomeLabels {
                    tenant: row.tenant.clone(),
                    outcome: row.outcome,
                })
                .inc_by(row.count);
            if let Some(failure) = row.failure {
                self.failures
                    .get_or_create(&FailureLabels {
                        tenant: row.tenant.clone(),
                        failure,
                        reason: row.reason,
                    })
                    .inc_by(row.count, None, None);
            }
        }
    }

    /// Sets the number of pending contacts of a tenant.
    pub fn set_pending(&self, tenant: &str, count: u64) {
        let value = i64::try_from(count).unwrap_or(i64::MAX);
        self.pending
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .set(value);
    }

    /// Records a successful poll of a source at `at`: counts it, sets `up` to 1 and the
    /// last-success timestamp.
    pub fn poll_succeeded(&self, tenant: &str, source: Source, at: DateTime<Utc>) {
        let p = PollLabels {
            tenant: tenant.to_owned(),
            source,
        };
        self.polls.get_or_create(&p).inc();
        self.up.get_or_create(&p).set(1);
        self.last_poll_success
            .get_or_create(&p)
            .set(unix_seconds(at));
    }

    /// Sets `up` of a source directly (1 when `up`, else 0).
    pub fn set_up(&self, tenant: &str, source: Source, up: bool) {
        self.up
            .get_or_create(&PollLabels {
                tenant: tenant.to_owned(),
                source,
            })
            .set(i64::from(up));
    }

    /// Records a failed poll of a source: counts it and sets `up` to 0.
    pub fn poll_failed(&self, tenant: &str, source: Source) {
        let p = PollLabels {
            tenant: tenant.to_owned(),
            source,
        };
        self.polls.get_or_create(&p).inc();
        self.poll_failures.get_or_create(&p).inc();
        self.up.get_or_create(&p).set(0);
    }

    /// Observes how late one Cognigy record was first read (`seconds` after its own time); it
    /// counts as late when that is past the late-record window.
    pub fn record_delay(
        &self,
        tenant: &str,
        collection: OdataCollection,
        seconds: f64,
        late: bool,
    ) {
        let labels = CollectionLabels {
            tenant: tenant.to_owned(),
            collection,
        };
        self.record_delay.get_or_create(&labels).observe(seconds);
        if late {
            self.late_records.get_or_create(&labels).inc();
        }
    }

    /// Counts a poll cycle that ended without failing.
    pub fn cycle_finished(&self, tenant: &str, outcome: CycleOutcome) {
        self.cycles
            .get_or_create(&CycleLabels {
                tenant: tenant.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts a poll cycle that failed as a whole.
    pub fn cycle_failed(&self, tenant: &str, kind: CycleFailure) {
        self.cycle_failures
            .get_or_create(&CycleFailureLabels {
                tenant: tenant.to_owned(),
                kind,
            })
            .inc();
    }

    /// Sets how far a source has been read.
    pub fn set_watermark(&self, tenant: &str, source: Source, at: DateTime<Utc>) {
        self.watermark
            .get_or_create(&PollLabels {
                tenant: tenant.to_owned(),
                source,
            })
            .set(unix_seconds(at));
    }

    /// The OpenMetrics text exposition of every family (ends with `# EOF`).
    /// Says that `tenant` is in the selection of shard `shard` of `total`, in `state`.
    pub fn set_shard_tenant(
        &self,
        tenant: &str,
        shard: u32,
        total: u32,
        state: crate::sharding::TenantState,
    ) {
        self.shard_tenants
            .get_or_create(&ShardTenantLabels {
                tenant: tenant.to_owned(),
                shard: shard.to_string(),
                total_shards: total.to_string(),
                state,
            })
            .set(1);
    }

    /// Exports the budget of one API host (once per budget; later calls for it change nothing).
    pub fn watch_budget(&self, budget: std::sync::Arc<HostBudget>) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if budgets.iter().any(|b| std::sync::Arc::ptr_eq(b, &budget)) {
            return;
        }
        let labels = QuotaLabels {
            source: budget.source(),
            host: budget.host().to_owned(),
        };
        self.quota_requests
            .get_or_create(&labels)
            .set(i64::from(budget.requests()));
        let _ = self.quota_used.get_or_create(&labels);
        budgets.push(budget);
    }

    pub fn encode(&self) -> String {
        let budgets = self
            .budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for budget in budgets {
            let labels = QuotaLabels {
                source: budget.source(),
                host: budget.host().to_owned(),
            };
            self.quota_used
                .get_or_create(&labels)
                .set(budget.used_ratio());
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing to a String cannot fail; an encoder error means an invalid label value.
            tracing::error!(%error, "encoding metrics failed");
            let _ = writeln!(text, "# encoding failed\n# EOF");
        }
        text
    }
}

impl RequestObserver for Metrics {
    fn observe_request(&self, endpoint: Endpoint, code: CodeClass, elapsed: Duration) {
        let source = endpoint.source();
        self.api_requests
            .get_or_create(&RequestLabels {
                source,
                endpoint,
                code,
            })
            .inc();
        self.api_duration
            .get_or_create(&EndpointLabels { source, endpoint })
            .observe(elapsed.as_secs_f64());
    }

    fn observe_retry(&self, source: Source, cause: RetryCause) {
        self.api_retries
            .get_or_create(&RetryLabels { source, cause })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diagnosis::Evidence;
    use chrono::TimeZone;

    fn tenants() -> Vec<String> {
        vec!["acme".to_owned()]
    }

    fn diagnosis(id: i64, reason: Reason) -> Diagnosis {
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        Diagnosis {
            contact_id: id,
            outcome: reason.outcome(),
            failure: reason.failure(),
            reason,
            rule: reason.rule(),
            summary: "".into(),
            evidence: Evidence {
                contact_ids: vec![id],
                bot_entry: true,
                session_id: None,
                match_kind: None,
                carried_contact_id: None,
                contact_started_at: start,
                contact_ended_at: start,
                escalated_at: Some(start),
                queued_at: None,
                queue_skill_id: None,
                signal_to_queue_seconds: Some(3.0),
                queue_wait_seconds: Some(42.0),
                bot_turn_seconds: vec![0.3, 12.0],
                decided_by: vec![],
                timeline: vec![],
            },
        }
    }

    /// The sample lines of `text` whose name starts with `prefix` (then `{` or a space), sorted,
    /// because a family's series come out in hash order.
    fn lines(text: &str, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> = text
            .lines()
            .filter(|l| {
                l.strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .map(str::to_owned)
            .collect();
        out.sort();
        out
    }

    fn expected(block: &str) -> Vec<String> {
        let mut out: Vec<String> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        out.sort();
        out
    }

    /// After one failed diagnosis the outcome and failure counters read exactly so, with the
    /// contact id as the failure's exemplar.
    #[test]
    fn failed_diagnosis_exposition() {
        let m = Metrics::new(&tenants(), "abc123");
        m.record_diagnosis("acme", &diagnosis(1001, Reason::SignalRejected));
        let text = m.encode();
        assert!(
            text.contains("# TYPE handover_contacts counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE handover_failures counter\n"),
            "{text}"
        );
        assert_eq!(
            lines(&text, "handover_contacts_total"),
            expected(
                r#"
                handover_contacts_total{tenant="acme",outcome="contained"} 0
                handover_contacts_total{tenant="acme",outcome="handed_over"} 0
                handover_contacts_total{tenant="acme",outcome="abandoned"} 0
                handover_contacts_total{tenant="acme",outcome="failed"} 1
                handover_contacts_total{tenant="acme",outcome="undetermined"} 0
                "#
            )
        );
        assert_eq!(
            lines(&text, "handover_failures_total"),
            expected(
                r#"
                handover_failures_total{tenant="acme",failure="missing_context",reason="no_bot_session"} 0
                handover_failures_total{tenant="acme",failure="invalid_handover",reason="invalid_action"} 0
                handover_failures_total{tenant="acme",failure="missing_context",reason="no_contact_id"} 0
                handover_failures_total{tenant="acme",failure="timeout",reason="signal_timeout"} 0
                handover_failures_total{tenant="acme",failure="timeout",reason="signal_unavailable"} 0
                handover_failures_total{tenant="acme",failure="invalid_handover",reason="signal_rejected"} 1 # {contact_id="1001"} 1.0
                handover_failures_total{tenant="acme",failure="invalid_handover",reason="transfer_rejected"} 0
                handover_failures_total{tenant="acme",failure="timeout",reason="transfer_no_answer"} 0
                handover_failures_total{tenant="acme",failure="invalid_handover",reason="unknown_skill"} 0
                handover_failures_total{tenant="acme",failure="timeout",reason="not_queued"} 0
                handover_failures_total{tenant="acme",failure="timeout",reason="bot_turn_slow"} 0
                "#
            )
        );
        assert_eq!(
            lines(&text, "handover_escalations_total"),
            expected(r#"handover_escalations_total{tenant="acme"} 1"#)
        );
        assert_eq!(
            lines(&text, "handover_bot_turn_seconds_count"),
            expected(r#"handover_bot_turn_seconds_count{tenant="acme"} 2"#)
        );
        assert_eq!(
            lines(&text, "handover_signal_to_queue_seconds_sum"),
            expected(r#"handover_signal_to_queue_seconds_sum{tenant="acme"} 3.0"#)
        );
        assert!(
            text.contains(r#"handover_queue_wait_seconds_bucket{le="60.0",tenant="acme"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// At start-up every series exists at 0, with snake_case label values, and build info is set.
    #[test]
    fn startup_series_are_all_zero() {
        let m = Metrics::new(&["acme".to_owned(), "beta".to_owned()], "abc123");
        let text = m.encode();
        assert_eq!(
            lines(&text, "handover_up"),
            expected(
                r#"
                handover_up{tenant="acme",source="cxone"} 0
                handover_up{tenant="acme",source="cognigy"} 0
                handover_up{tenant="beta",source="cxone"} 0
                handover_up{tenant="beta",source="cognigy"} 0
                "#
            )
        );
        assert_eq!(
            lines(&text, "handover_pending_contacts"),
            expected(
                r#"
                handover_pending_contacts{tenant="acme"} 0
                handover_pending_contacts{tenant="beta"} 0
                "#
            )
        );
        assert_eq!(
            lines(&text, "handover_api_retries_total"),
            expected(
                r#"
                handover_api_retries_total{source="cxone",cause="rate_limited"} 0
                handover_api_retries_total{source="cxone",cause="server_error"} 0
                handover_api_retries_total{source="cxone",cause="request_timeout"} 0
                handover_api_retries_total{source="cxone",cause="timeout"} 0
                handover_api_retries_total{source="cxone",cause="connect"} 0
                handover_api_retries_total{source="cxone",cause="reauthenticate"} 0
                handover_api_retries_total{source="cognigy",cause="rate_limited"} 0
                handover_api_retries_total{source="cognigy",cause="server_error"} 0
                handover_api_retries_total{source="cognigy",cause="request_timeout"} 0
                handover_api_retries_total{source="cognigy",cause="timeout"} 0
                handover_api_retries_total{source="cognigy",cause="connect"} 0
                handover_api_retries_total{source="cognigy",cause="reauthenticate"} 0
                "#
            )
        );
        assert_eq!(
            lines(&text, "handover_contacts_total").len(),
            2 * Outcome::ALL.len()
        );
        assert_eq!(lines(&text, "handover_failures_total").len(), 2 * 11);
        assert_eq!(
            lines(&text, "handover_api_requests_total").len(),
            Endpoint::ALL.len() * CodeClass::ALL.len()
        );
        assert!(text.contains(
            r#"handover_api_requests_total{source="cognigy",endpoint="odata_sessions",code="2xx"} 0"#
        ));
        assert!(text.contains(&format!(
            "handover_build_info{{version=\"{}\",revision=\"abc123\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        // No Rust variant name leaks into a label value.
        for variant in [
            "MissingContext",
            "HandedOver",
            "Cxone",
            "CognigySessions",
            "Success",
        ] {
            assert!(
                !text.contains(&format!("\"{variant}\"")),
                "{variant} in {text}"
            );
        }
    }

    /// Persistent totals seed the counters once, and a new diagnosis adds to them.
    #[test]
    fn totals_seed_counters() {
        let m = Metrics::new(&tenants(), "abc123");
        m.load_totals(&[
            TotalRow {
                tenant: "acme".into(),
                outcome: Outcome::Failed,
                failure: Some(Failure::Timeout),
                reason: Reason::NotQueued,
                count: 5,
            },
            TotalRow {
                tenant: "acme".into(),
                outcome: Outcome::Contained,
                failure: None,
                reason: Reason::BotCompleted,
                count: 7,
            },
        ]);
        m.record_diagnosis("acme", &diagnosis(9, Reason::NotQueued));
        let text = m.encode();
        assert!(
            text.contains(r#"handover_contacts_total{tenant="acme",outcome="failed"} 6"#),
            "{text}"
        );
        assert!(text.contains(r#"handover_contacts_total{tenant="acme",outcome="contained"} 7"#));
        assert!(text.contains(
            r#"handover_failures_total{tenant="acme",failure="timeout",reason="not_queued"} 6 # {contact_id="9"} 1.0"#
        ));
    }

    /// Poll, watermark, pending and HTTP accounting setters reach their series.
    #[test]
    fn poll_and_request_accounting() {
        let m = Metrics::new(&tenants(), "abc123");
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        m.poll_succeeded("acme", Source::Cxone, at);
        m.poll_failed("acme", Source::Cognigy);
        m.set_watermark("acme", Source::Cxone, at);
        m.set_pending("acme", 4);
        m.observe_request(
            Endpoint::CognigyLogs,
            CodeClass::TooManyRequests,
            Duration::from_millis(200),
        );
        m.observe_retry(Source::Cognigy, RetryCause::RateLimited);
        let text = m.encode();
        for line in [
            r#"handover_up{tenant="acme",source="cxone"} 1"#,
            r#"handover_up{tenant="acme",source="cognigy"} 0"#,
            r#"handover_polls_total{tenant="acme",source="cognigy"} 1"#,
            r#"handover_poll_failures_total{tenant="acme",source="cognigy"} 1"#,
            r#"handover_poll_failures_total{tenant="acme",source="cxone"} 0"#,
            r#"handover_last_poll_success_timestamp_seconds{tenant="acme",source="cxone"} 1772359200.0"#,
            r#"handover_watermark_timestamp_seconds{tenant="acme",source="cxone"} 1772359200.0"#,
            r#"handover_pending_contacts{tenant="acme"} 4"#,
            r#"handover_api_requests_total{source="cognigy",endpoint="logs",code="429"} 1"#,
            r#"handover_api_request_duration_seconds_count{source="cognigy",endpoint="logs"} 1"#,
            r#"handover_api_retries_total{source="cognigy",cause="rate_limited"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in {text}");
        }
        m.set_up("acme", Source::Cxone, false);
        assert!(m
            .encode()
            .contains(r#"handover_up{tenant="acme",source="cxone"} 0"#));
    }

    /// FAMILIES and the exposition list the same families, with the same types and labels.
    #[test]
    fn families_match_exposition() {
        let m = Metrics::new(&tenants(), "abc123");
        // Quota series exist once a poller's budget is watched.
        m.watch_budget(std::sync::Arc::new(HostBudget::new(
            Source::Cognigy,
            "https://api-app.cognigy.ai",
            1000,
            Duration::from_secs(300),
        )));
        m.set_shard_tenant("acme", 0, 1, crate::sharding::TenantState::Polling);
        let text = m.encode();
        let mut exposed: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
            .collect();
        exposed.sort();
        let mut listed: Vec<(String, String)> = FAMILIES
            .iter()
            .map(|(name, kind, _)| {
                // OpenMetrics names a counter family without `_total`, an info without `_info`.
                let family = match *kind {
                    "counter" => name.strip_suffix("_total").unwrap_or(name),
                    "info" => name.strip_suffix("_info").unwrap_or(name),
                    _ => name,
                };
                (family.to_owned(), (*kind).to_owned())
            })
            .collect();
        listed.sort();
        assert_eq!(exposed, listed);
        for (name, kind, labels) in FAMILIES {
            let sample = match *kind {
                "histogram" => format!("{name}_count{{"),
                _ => format!("{name}{{"),
            };
            let line = text
                .lines()
                .find(|l| l.starts_with(&sample))
                .unwrap_or_else(|| panic!("no sample of {name} in {text}"));
            let label_part = &line[sample.len()..line.find('}').unwrap()];
            let names: Vec<&str> = label_part
                .split(',')
                .map(|kv| kv.split('=').next().unwrap())
                .collect();
            assert_eq!(names.join(","), *labels, "labels of {name}");
        }
    }

    /// Every record delay is observed; only those past the late window count as late.
    #[test]
    fn record_delays_and_late_records() {
        let m = Metrics::new(&tenants(), "test");
        m.record_delay("acme", OdataCollection::Analytics, 12.0, false);
        m.record_delay("acme", OdataCollection::Analytics, 3000.0, true);
        let text = m.encode();
        assert!(text.contains(
            "handover_cognigy_record_delay_seconds_count{tenant=\"acme\",collection=\"analytics\"} 2"
        ));
        assert!(text.contains(
            "handover_cognigy_late_records_total{tenant=\"acme\",collection=\"analytics\"} 1"
        ));
        assert!(text.contains(
            "handover_cognigy_late_records_total{tenant=\"acme\",collection=\"sessions\"} 0"
        ));
    }
}
