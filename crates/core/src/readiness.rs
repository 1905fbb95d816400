//! Readiness: when each tenant's sources (CXone, Cognigy) last polled successfully, and what is
//! therefore not ready. The pipeline writes it after every successful poll; the server's
//! `/readyz` reads it. It holds no HTTP and no polling of its own, so the core (the pipeline)
//! does not depend on the HTTP module.

use crate::sources::http::Source;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each tenant's sources last polled successfully; `/readyz` reads it, the pipeline writes it.
#[derive(Debug)]
pub struct Readiness {
    poll_interval: Duration,
    last_success: Mutex<BTreeMap<(String, Source), Option<Instant>>>,
}

impl Readiness {
    /// Expects a successful poll of every source of every tenant within three `poll_interval`s.
    pub fn new(tenants: &[String], poll_interval: Duration) -> Readiness {
        let mut last_success = BTreeMap::new();
        for tenant in tenants {
            for source in Source::ALL {
                last_success.insert((tenant.clone(), *source), None);
            }
        }
        Readiness {
            poll_interval,
            last_success: Mutex::new(last_success),
        }
    }

    /// Records a successful poll now.
    pub fn mark_success(&self, tenant: &str, source: Source) {
        self.mark_success_at(tenant, source, Instant::now());
    }

    /// Records a successful poll at `at`.
    pub fn mark_success_at(&self, tenant: &str, source: Source, at: Instant) {
        // A poisoned lock only means a writer panicked between two plain stores; the map is intact.
        let mut map = self.last_success.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((tenant.to_owned(), source), Some(at));
    }

    /// What is not ready at `now`, one line each; empty when ready.
    pub fn not_ready(&self, now: Instant) -> Vec<String> {
        let limit = self.poll_interval * 3;
        let map = self.last_success.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter_map(|((tenant, source), last)| match last {
                None => Some(format!("{tenant}/{source}: no successful poll yet")),
                Some(at) => {
                    let age = now.saturating_duration_since(*at);
                    (age > limit).then(|| {
                        format!(
                            "{tenant}/{source}: last successful poll {}s ago (limit {}s)",
                            age.as_secs(),
                            limit.as_secs()
                        )
                    })
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source is named until it polls, a poll older than three intervals names it again
    /// with its age and the limit, and recent polls of every source make it ready.
    #[test]
    fn names_each_source_without_a_recent_poll() {
        let readiness = Readiness::new(&["acme".to_owned()], Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(
            readiness.not_ready(now),
            vec![
                "acme/cxone: no successful poll yet".to_owned(),
                "acme/cognigy: no successful poll yet".to_owned(),
            ]
        );
        let stale = now.checked_sub(Duration::from_secs(10)).unwrap();
        readiness.mark_success_at("acme", Source::Cxone, now);
        readiness.mark_success_at("acme", Source::Cognigy, stale);
        assert_eq!(
            readiness.not_ready(now),
            vec!["acme/cognigy: last successful poll 10s ago (limit 3s)".to_owned()]
        );
        readiness.mark_success_at("acme", Source::Cognigy, now);
        assert!(readiness.not_ready(now).is_empty());
    }
}
