//! handover-exporter: watches NICE CXone voice calls handled by a Cognigy.AI voicebot and tells,
//! for every call, whether the bot's handover to a live agent worked, and if not, where it broke.
//! This crate (`crates/core`) is the whole product but the command line (`src/main.rs`) and the
//! test double of both APIs (`crates/simulator`).
//!
//! Crate map, in the order data flows:
//! - [`config`]: the TOML configuration, validated in one place (the only way a `Config` is made).
//! - [`sources`]: the shared HTTP layer (timeouts, retries, status handling, per-host budgets)
//!   and one client per API with its wire types ([`sources::cxone`], [`sources::cognigy`]).
//! - [`logline`]: recognises the Cognigy handover extension's log lines (every version).
//! - [`engine`]: the pure decision: [`engine::correlation`] joins contacts and sessions into
//!   cases, [`engine::diagnosis`] applies the rule table of DESIGN §5 to a case, and
//!   [`engine::decide`] does both, for the pipeline, `diagnose --replay` and the drill-down alike.
//! - [`labels`]: the one mechanism for bounded label values (`LabelValue`, `label_enum!`).
//! - [`store`]: SQLite state: cursors, contacts (pending/diagnosed), Cognigy records, totals.
//! - [`pipeline`]: one poll cycle of one tenant, the only joint: cursors, read page by page,
//!   ingest, decide.
//! - [`daemon`]: one poll loop per tenant plus the web server; start-up, shutdown, exit codes.
//! - [`sharding`]: which shard polls which tenant (a stable hash), ownership in the state file,
//!   and the hand-over of a tenant's state when the shard count changes.
//! - [`readiness`]: when each tenant's sources last polled successfully (the pipeline writes it,
//!   the server's `/readyz` reads it).
//! - [`metrics`]: every metric family in one struct, OpenMetrics text.
//! - [`server`]: the HTTP interface: the routes (landing, metrics, health, readiness), the
//!   drill-down API and page routes, `--web.config.file` with basic auth and TLS, and the accept
//!   loop under its limits.
//! - [`pages`]: the HTML drill-down pages for people (rendering only).
//! - [`replay`]: reads a directory of raw API bodies for offline diagnosis.
//! - [`drilldown`]: `diagnose CONTACT_ID` against the live (or simulated) APIs.
//! - [`check`]: `check`, the live preflight of a tenant (one pass/warn/fail line per step).
//! - [`capture`]: `capture`, a contact's or a window's raw API bodies as a replay directory,
//!   credentials removed and caller numbers masked.
//! - [`report`]: renders diagnoses as text or JSON lines.
//! - [`telemetry`]: logging set-up (logfmt or JSON) and the `--log.*` flags.
//! - [`allocator`]: run-time settings of the process allocator (mimalloc).
//!
//! Pipeline of one poll cycle (and of `diagnose --replay` and the drill-down, minus the store):
//!
//! ```text
//!  CXone contacts/completed ──┐   pipeline::read      pipeline::ingest    pipeline::decide
//!  Cognigy OData Sessions ────┤   (page by page,  ─>  (each page with ─>  engine::decide ─────┐
//!  Cognigy OData Conversations┤    one budget per      its cursor, one     = correlation      │
//!  Cognigy OData Analytics ───┤    API host)           transaction)        + diagnosis        │
//!  Cognigy REST logs ─────────┘                                          (cases -> verdicts)  │
//!                                                                                              v
//!            /metrics <─ metrics <─ store (SQLite: diagnoses committed with the counters) <───┘
//! ```

pub mod allocator;
pub mod capture;
pub mod check;
pub mod config;
pub mod daemon;
pub mod drilldown;
pub mod engine;
pub mod labels;
pub mod logline;
pub mod metrics;
pub mod pages;
pub mod pipeline;
pub mod readiness;
pub mod replay;
pub mod report;
pub mod server;
pub mod sharding;
pub mod sources;
pub mod store;
pub mod telemetry;
