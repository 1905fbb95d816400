//! Engine: the one path from what was read to what is concluded. [`decide`] correlates the
//! inputs into cases ([`correlation`]) and applies the rules to each
//! ([`diagnosis`]); the daemon's pipeline, `diagnose --replay` and the live
//! drill-down all call it, so they cannot disagree. It neither reads nor stores anything and
//! reads no clock: the caller gives the [`Horizon`] (what time it is, how far each source was
//! read).

pub mod correlation;
pub mod diagnosis;

use crate::config::Rules;
use crate::engine::correlation::{correlate, Case, Inputs};
use crate::engine::diagnosis::{diagnose, Diagnosis, Horizon, Verdict};

/// One case and what the rules concluded about it.
#[derive(Debug)]
pub struct Decision<'a> {
    /// The correlated case (its contacts, session and log lines borrow the inputs).
    pub case: Case<'a>,
    pub verdict: Verdict,
}

/// Correlates `inputs` into cases and diagnoses every one of them, in case order.
pub fn decide<'a>(inputs: Inputs<'a>, rules: &Rules, horizon: &Horizon) -> Vec<Decision<'a>> {
    correlate(inputs, rules)
        .into_iter()
        .map(|case| {
            let verdict = diagnose(&case, rules, horizon);
            Decision { case, verdict }
        })
        .collect()
}

/// The diagnoses among `decisions` (the pending ones are left for a later look).
pub fn diagnoses(decisions: Vec<Decision<'_>>) -> Vec<Diagnosis> {
    decisions
        .into_iter()
        .filter_map(|d| match d.verdict {
            Verdict::Diagnosed(diagnosis) => Some(*diagnosis),
            Verdict::Pending { .. } => None,
        })
        .collect()
}
