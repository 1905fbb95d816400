//! Picking the first `n` items of an order without sorting everything: a partial selection
//! (`select_nth_unstable_by`) of the `n` smallest, then a sort of just those. A page of `$top`
//! records out of half a million then costs a linear scan, not a full sort.
//!
//! It serves the same items in the same order as a full sort would, provided the comparison is a
//! total order; callers make it one by adding each item's original position as the last key, which
//! orders equal keys the way a stable sort leaves them. It knows nothing of the APIs.

use std::cmp::Ordering;

/// Keeps the first `n` items of `items` in the order of `compare` (a total order), sorted.
pub fn keep_first_sorted<T>(items: &mut Vec<T>, n: usize, compare: impl Fn(&T, &T) -> Ordering) {
    if n == 0 {
        items.clear();
        return;
    }
    if n < items.len() {
        items.select_nth_unstable_by(n - 1, &compare);
        items.truncate(n);
    }
    items.sort_unstable_by(compare);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{World, WorldSpec};
    use chrono::{Duration, Utc};

    /// On a generated world's conversations keyed by a coarse, heavily tied key (timestamp
    /// truncated to the minute, then type), the selected first `n` equal the first `n` of a full
    /// stable sort, ascending and descending, for several `n`, with the position as the last key.
    #[test]
    fn selection_equals_a_stable_sort_prefix() {
        let world = World::new(WorldSpec::finite(
            3,
            400,
            Duration::hours(2),
            Duration::seconds(60),
            Utc::now(),
        ));
        let records: Vec<(i64, String, String)> = world
            .calls
            .iter()
            .filter_map(|c| c.session.as_ref())
            .flat_map(|s| &s.conversations)
            .map(|r| {
                let minute = r.natural_time.map_or(0, |t| t.timestamp() / 60);
                let kind = r.json["type"].as_str().unwrap_or("").to_owned();
                (minute, kind, r.id.clone())
            })
            .collect();
        assert!(records.len() > 1000, "{} records", records.len());
        for descending in [false, true] {
            let key_order = |a: &(i64, String, String), b: &(i64, String, String)| {
                let o = (a.0, &a.1).cmp(&(b.0, &b.1));
                if descending {
                    o.reverse()
                } else {
                    o
                }
            };
            let mut stable = records.clone();
            stable.sort_by(key_order);
            let positioned: Vec<(usize, &(i64, String, String))> =
                records.iter().enumerate().collect();
            for n in [0, 1, 7, 100, 333, records.len() - 1, records.len() + 5] {
                let mut picked = positioned.clone();
                keep_first_sorted(&mut picked, n, |a, b| {
                    key_order(a.1, b.1).then(a.0.cmp(&b.0))
                });
                let picked: Vec<&(i64, String, String)> = picked.iter().map(|p| p.1).collect();
                let expected: Vec<&(i64, String, String)> = stable.iter().take(n).collect();
                assert_eq!(picked, expected, "n={n} descending={descending}");
            }
        }
    }
}
