//! The integration tests: one binary, so the dependency tree is linked once instead of once
//! per file, with one module per theme and the shared helpers (start the simulator or the
//! binary, free ports, external programs, fixtures) in [`support`]. Each module opens with what
//! it covers; `cargo test --test it MODULE::` runs one theme.

mod support;

mod alerting;
mod capture;
mod check;
mod clients;
mod clients_simulator;
mod config;
mod config_check;
mod deploy;
mod e2e;
mod hardening;
mod log_lines;
mod pages;
mod parsers_proptest;
mod pipeline_catchup;
mod prometheus;
mod readme;
mod replay;
mod rules;
mod setup_guide;
mod shards;
mod simulator;
mod truth;
mod wire;
