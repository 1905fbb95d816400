//! The log entries a logs query selects (by level and `filter` text), kept ordered by
//! `(timestamp, id, world position)` so that serving a page is a range read of a few entries, not
//! a search of every entry of the day. A day at 100 000 calls holds millions of log lines; the
//! daemon pages through it at the quota's pace (a page every 0.3 s), which a scan per request
//! could not keep up with.
//!
//! Each selection is brought up to date with the world's calls when it is asked for: the calls
//! generated since are searched once, and entries of calls the world has forgotten are skipped
//! (and dropped now and then). It does not decide which entries a request may see (time bounds,
//! retention, cursors): the logs handler does, with ranges over these keys.

use crate::world::{Call, LogRecord};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};

/// An entry's place in the logs' order: timestamp, id, then its call's index and its line within
/// the call (the world position, which orders equal `(timestamp, id)` keys as world order).
pub type LogKey = (DateTime<Utc>, Box<str>, usize, usize);

/// What a logs query selects by content: the `type` values (none: every level) and the lower-cased
/// `filter` text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogSelector {
    levels: Vec<String>,
    text: Option<String>,
}

impl LogSelector {
    /// The selector of the `type` values `levels` and the `filter` text (matched ignoring case).
    pub fn new(levels: &[&str], text: Option<&str>) -> LogSelector {
        let mut levels: Vec<String> = levels.iter().map(|l| (*l).to_owned()).collect();
        levels.sort();
        levels.dedup();
        LogSelector {
            levels,
            text: text.map(str::to_ascii_lowercase),
        }
    }

    /// Whether `entry` has one of the levels and contains the text in its message, trace id or
    /// level (not across the boundary between two of them).
    pub fn selects(&self, entry: &LogRecord) -> bool {
        (self.levels.is_empty() || self.levels.iter().any(|l| l == entry.level))
            && self.text.as_deref().map_or(true, |f| {
                entry.search_text.split('\0').any(|field| field.contains(f))
                    || entry.level.contains(f)
            })
    }
}

/// How many selections are kept (a client could send a different `filter` on every request).
const SELECTIONS_KEPT: usize = 8;

/// How many calls are forgotten by the world before a selection drops their entries (until then
/// they are skipped when read).
const PRUNE_AFTER_CALLS: usize = 1_000;

/// The selections asked for so far, each up to date with the calls as of its last use.
#[derive(Debug, Clone, Default)]
pub struct LogIndex {
    selections: HashMap<LogSelector, Selection>,
}

#[derive(Debug, Clone, Default)]
struct Selection {
    /// The index of the first call not searched yet.
    searched_to: usize,
    /// Entries of calls below this index have been dropped.
    pruned_below: usize,
    keys: BTreeSet<LogKey>,
}

impl LogIndex {
    /// The keys of the entries of `calls` (the world's kept calls, oldest first, consecutive
    /// indices) that `selector` selects, in order; keys of calls no longer in `calls` may remain,
    /// and [`entry`] finds nothing for them.
    pub fn select(&mut self, selector: &LogSelector, calls: &[Call]) -> &BTreeSet<LogKey> {
        if !self.selections.contains_key(selector) && self.selections.len() >= SELECTIONS_KEPT {
            self.selections.clear();
        }
        let selection = self.selections.entry(selector.clone()).or_default();
        let first = calls.first().map_or(0, |c| c.index);
        if first >= selection.pruned_below + PRUNE_AFTER_CALLS {
            selection.keys.retain(|k| k.2 >= first);
            selection.pruned_below = first;
        }
        let unsearched = selection.searched_to.saturating_sub(first);
        for call in calls.iter().skip(unsearched) {
            for (line, entry) in call.logs.iter().enumerate() {
                if selector.selects(entry) {
                    selection.keys.insert((
                        entry.timestamp,
                        entry.id.as_str().into(),
                        call.index,
                        line,
                    ));
                }
            }
            selection.searched_to = call.index + 1;
        }
        &selection.keys
    }
}

/// The entry `key` names among `calls` (the world's kept calls), if its call is still kept.
pub fn entry<'c>(calls: &'c [Call], key: &LogKey) -> Option<&'c LogRecord> {
    let first = calls.first()?.index;
    calls.get(key.2.checked_sub(first)?)?.logs.get(key.3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{World, WorldSpec};
    use chrono::Duration;

    /// A selection holds exactly the entries a search of every kept call finds, in key order,
    /// after the world grew and forgot calls; another selector gets its own entries.
    #[test]
    fn selection_equals_a_search_of_the_kept_calls() {
        let now = Utc::now();
        let origin = now - Duration::hours(3);
        let mut spec =
            WorldSpec::streaming(5, 20_000.0, Duration::hours(3), Duration::seconds(60), now);
        spec.retention = Some(Duration::minutes(20));
        let mut world = World::new(spec);
        let mut index = LogIndex::default();
        let handover = LogSelector::new(&[], Some("HANDOVER"));
        let errors = LogSelector::new(&["error"], None);
        let mut pruned_once = false;
        for minutes in [10, 30, 100, 140, 180] {
            world.extend_until(origin + Duration::minutes(minutes));
            for selector in [&handover, &errors] {
                let mut want: Vec<LogKey> = world
                    .calls
                    .iter()
                    .flat_map(|c| {
                        c.logs
                            .iter()
                            .enumerate()
                            .filter(|(_, e)| selector.selects(e))
                            .map(move |(line, e)| {
                                (e.timestamp, e.id.as_str().into(), c.index, line)
                            })
                    })
                    .collect();
                want.sort();
                let got: Vec<LogKey> = index
                    .select(selector, &world.calls)
                    .iter()
                    .filter(|k| entry(&world.calls, k).is_some())
                    .cloned()
                    .collect();
                assert_eq!(got, want, "{selector:?} at {minutes} min");
                pruned_once |= index.selections[selector].pruned_below > 0;
            }
        }
        assert!(
            index.selections[&handover].keys.len() > 10,
            "the handover selector selects something"
        );
        assert!(pruned_once, "the world forgot enough calls to prune");
    }
}
