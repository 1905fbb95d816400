//! Engine benchmarks (issue 5): correlation plus diagnosis over a generated world of about
//! 100 000 contacts, reported as contacts per second; and `/metrics` encoding with every series
//! populated (10 tenants, every label combination incremented).
//!
//! The world comes from the simulator's generator and goes through the real wire parsers (written
//! as a replay directory and read back) before anything is timed, so the timed part is exactly
//! `correlate` + `diagnose` over the crate's wire types. `ENGINE_CALLS` sets the number of calls
//! (default 50 000 calls, which is about 100 000 contacts with their backchannel and agent legs).

/// The binary's allocator (src/main.rs), so these figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use handover_exporter::metrics::Metrics;
use handover_exporter::replay::{self, ReplayData};
use handover_exporter::sources::http::{CodeClass, Endpoint, RequestObserver, RetryCause, Source};
use handover_simulator::{dump_replay, World, WorldSpec};
use std::hint::black_box;

/// Generates the world, writes it as raw API bodies and parses them back into wire types.
fn parsed_world() -> ReplayData {
    let calls: usize = std::env::var("ENGINE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let now = Utc::now();
    let world = World::new(WorldSpec::finite(
        11,
        calls,
        Duration::hours(24),
        Duration::seconds(60),
        now,
    ));
    let dir = tempfile::tempdir().expect("a temporary directory for the replay files");
    dump_replay(&world, dir.path(), now).expect("the generated world can be written");
    drop(world);
    let data = replay::read_dir(dir.path()).expect("the written replay directory reads back");
    assert!(
        data.problems.is_empty(),
        "replay problems: {:?}",
        data.problems
    );
    data
}

fn correlation_and_diagnosis(c: &mut Criterion) {
    handover_exporter::allocator::tune();
    let data = parsed_world();
    let contacts = data.contacts.len() as u64;
    let diagnosed = replay::diagnose_data(&data).len();
    eprintln!(
        "engine world: {contacts} contacts, {} sessions, {} conversations, {} analytics, {} log lines -> {diagnosed} diagnoses",
        data.sessions.len(),
        data.conversations.len(),
        data.analytics.len(),
        data.logs.len()
    );
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(contacts));
    group.sample_size(10);
    group.bench_with_input(
        BenchmarkId::new("correlate_and_diagnose", contacts),
        &data,
        |b, data| b.iter(|| black_box(replay::diagnose_data(black_box(data)))),
    );
    group.finish();
}

fn metrics_encoding(c: &mut Criterion) {
    // A small world yields diagnoses of every reason, with escalation and queue timings.
    let data = {
        let now = Utc::now();
        let world = World::new(WorldSpec::finite(
            3,
            400,
            Duration::hours(2),
            Duration::seconds(60),
            now,
        ));
        let dir = tempfile::tempdir().expect("a temporary directory for the replay files");
        dump_replay(&world, dir.path(), now).expect("the generated world can be written");
        replay::read_dir(dir.path()).expect("the written replay directory reads back")
    };
    let diagnoses = replay::diagnose_data(&data);
    let tenants: Vec<String> = (1..=10).map(|n| format!("tenant-{n:02}")).collect();
    let metrics = Metrics::new(&tenants, "bench");
    for tenant in &tenants {
        for d in &diagnoses {
            metrics.record_diagnosis(tenant, d);
        }
        metrics.set_pending(tenant, 42);
        for source in Source::ALL {
            metrics.poll_succeeded(tenant, *source, Utc::now());
            metrics.poll_failed(tenant, *source);
            metrics.set_watermark(tenant, *source, Utc::now());
        }
    }
    for endpoint in Endpoint::ALL {
        for code in CodeClass::ALL {
            metrics.observe_request(*endpoint, *code, std::time::Duration::from_millis(120));
        }
    }
    for source in Source::ALL {
        for cause in RetryCause::ALL {
            metrics.observe_retry(*source, *cause);
        }
    }
    let text = metrics.encode();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    eprintln!(
        "metrics exposition: {series} sample lines, {} bytes",
        text.len()
    );
    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("encode_10_tenants_all_series", |b| {
        b.iter(|| black_box(metrics.encode()))
    });
    group.finish();
}

criterion_group!(benches, correlation_and_diagnosis, metrics_encoding);
criterion_main!(benches);
