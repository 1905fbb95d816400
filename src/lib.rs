//! handover-exporter: watches NICE CXone voice calls handled by a Cognigy.AI voicebot and tells,
//! for every call, whether the bot's handover to a live agent worked, and if not, where it broke.
//!
//! Crate map:
//! - [`config`]: the TOML configuration, validated in one place.
//! - [`sources`]: the shared HTTP layer and the CXone and Cognigy clients with their wire types.
//! - [`logline`]: recognises the Cognigy handover extension's log lines.
//! - [`correlation`]: pure join of contacts and sessions into cases.
//! - [`diagnosis`]: pure rules, one outcome per bot contact, with evidence.
//! - [`store`]: SQLite state: cursors, contacts (pending/diagnosed), Cognigy records, totals.
//! - [`pipeline`]: one poll cycle of one tenant: cursors, read page by page, ingest, decide.
//! - [`metrics`]: every metric family in one struct, OpenMetrics text.
//! - [`pages`]: the HTML drill-down pages for people (rendering only).
//! - [`server`]: the HTTP routes (landing, metrics, health, readiness, drill-down API).
//! - [`replay`]: reads a directory of raw API bodies for offline diagnosis.
//! - [`report`]: renders diagnoses as text or JSON lines.
//! - [`drilldown`]: `diagnose CONTACT_ID` against the live (or simulated) APIs.
//! - [`sharding`]: which shard owns which tenant (in the state file) and the hand-over between shards.
//! - [`allocator`]: run-time settings of the process allocator (mimalloc).
//!
//! Pipeline of one poll cycle (and of `diagnose --replay`, minus the store):
//!
//! ```text
//!  CXone contacts/completed ─┐
//!  Cognigy OData Sessions ───┤
//!  Cognigy OData Conversations┼─> correlation::correlate ─> diagnosis::diagnose ─> store ─> metrics
//!  Cognigy OData Analytics ──┤        (cases)                (outcome+evidence)   (SQLite)  (/metrics)
//!  Cognigy REST logs ────────┘
//! ```

pub mod allocator;
pub mod config;
pub mod correlation;
pub mod daemon;
pub mod demo;
pub mod diagnosis;
pub mod drilldown;
pub mod logline;
pub mod metrics;
pub mod pages;
pub mod pipeline;
pub mod replay;
pub mod report;
pub mod server;
pub mod sharding;
pub mod simulator;
pub mod sources;
pub mod store;
pub mod telemetry;
