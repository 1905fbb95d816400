//! The quota step of `check`: the Cognigy requests the daemon would make per quota window at the
//! volume the look-back showed, as a share of the configured quota.

use super::Steps;
use crate::config::{Config, TenantConfig};

/// What the look-back held, for the quota estimate.
#[derive(Debug, Clone, Copy)]
pub(super) struct Volume {
    pub(super) hours: f64,
    pub(super) sessions: usize,
    pub(super) conversations: usize,
    pub(super) analytics: usize,
    pub(super) log_lines: usize,
}

/// Pages one keyset read of `records` needs at `page`: a read ends on a short page.
pub(super) fn pages_for(records: f64, page: u32) -> f64 {
    (records / f64::from(page.max(1))).floor() + 1.0
}

/// The Cognigy requests the daemon would make per quota window at `volume`, as the pipeline
/// reads (api/cognigy.md §1.5: the quota is per IP address, shared by OData and the logs API):
/// every poll one keyset pass per collection over `poll_interval + overlap`, one logs pass per
/// filter term over `poll_interval + 60 s`, and every `late_sweep_interval` a sweep over
/// `late_window + late_sweep_interval`.
pub fn requests_per_quota_window(
    config: &Config,
    tenant: &TenantConfig,
    per_hour: [f64; 4],
) -> f64 {
    let [sessions, conversations, analytics, log_lines] = per_hour;
    let cg = &tenant.cognigy;
    let quota_window = cg.http.quota_window.as_secs_f64().max(1.0);
    let poll = config.poll_interval.as_secs_f64().max(1.0);
    let pass = (poll + config.overlap.as_secs_f64()) / 3600.0;
    let page = cg.odata_page_size;
    let per_pass = pages_for(sessions * pass, page)
        + pages_for(conversations * pass, page)
        + pages_for(analytics * pass, page);
    let terms = cg.logs_filter.len().max(1) as f64;
    let logs_pass = (poll + 60.0) / 3600.0;
    let logs = terms
        * pages_for(
            log_lines * logs_pass / terms,
            cg.logs_page_size.clamp(1, 100),
        );
    let sweep_span = (cg.late_window.as_secs_f64() + cg.late_sweep_interval.as_secs_f64()) / 3600.0;
    let sweep = pages_for(sessions * sweep_span, page)
        + pages_for(conversations * sweep_span, page)
        + pages_for(analytics * sweep_span, page);
    let sweeps_per_window = quota_window / cg.late_sweep_interval.as_secs_f64().max(1.0);
    (quota_window / poll) * (per_pass + logs) + sweeps_per_window * sweep
}

/// The expected share of the Cognigy quota at the observed volume.
pub(super) fn quota_step(
    steps: &mut Steps,
    config: &Config,
    tenant: &TenantConfig,
    volume: Volume,
) {
    let hours = volume.hours.max(1.0 / 60.0);
    let rate = |n: usize| n as f64 / hours;
    let per_hour = [
        rate(volume.sessions),
        rate(volume.conversations),
        rate(volume.analytics),
        rate(volume.log_lines),
    ];
    let requests = requests_per_quota_window(config, tenant, per_hour);
    let quota = f64::from(tenant.cognigy.http.quota_requests.max(1));
    let share = 100.0 * requests / quota;
    let detail = format!(
        "at {:.0} sessions, {:.0} Conversations, {:.0} Analytics records and {:.0} log lines \
         (as the logs filter reads them) per hour, polling every {} s uses about {requests:.0} of {quota:.0} requests per \
         {} s ({share:.0} % of the Cognigy quota, this tenant alone)",
        per_hour[0],
        per_hour[1],
        per_hour[2],
        per_hour[3],
        config.poll_interval.as_secs(),
        tenant.cognigy.http.quota_window.as_secs()
    );
    let hint = "the quota is per IP address and shared by every tenant on the installation: \
                raise poll_interval_seconds or odata_page_size, or lower overlap_seconds, \
                late_window_seconds or the number of logs_filter terms"
        .to_owned();
    if share >= 100.0 {
        steps.fail("cognigy.quota", detail, hint);
    } else if share >= 80.0 {
        steps.warn("cognigy.quota", detail, hint);
    } else {
        steps.pass("cognigy.quota", detail);
    }
}
