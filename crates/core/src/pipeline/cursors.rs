//! The read cursors of one tenant and the arithmetic on them, as pure functions: where each of
//! the five read streams continues, how far each source has been read (the read horizon), and
//! which pending contacts that horizon lets a cycle decide.
//!
//! Every stream reads in *passes*. A pass starts at a position and reads page by page to the end
//! of the data; each page is committed with the cursor it leads to, so a pass may span cycles
//! and restarts. A pass reads every record that was visible when it began (`started`) and is
//! stamped after its starting position. When it completes, the next pass starts `reread` before
//! the wall-clock time the completed one began: a record written up to `reread` after its own
//! timestamp is then always read by some pass (the first pass that began after the record was
//! written starts early enough to reach it). Hence the horizon of a source: everything visible
//! at `complete_at` (the start of the last completed pass) has been read, and so has everything
//! visible at the start of the running pass and stamped before its position.
//!
//! This module only computes; it reads no clock, store or network (`mod.rs` and `read.rs` do).

use crate::sources::cognigy::KeysetPosition;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Cursor names in the store.
pub const CXONE: &str = "cxone";
pub const SESSIONS: &str = "cognigy_sessions";
pub const CONVERSATIONS: &str = "cognigy_conversations";
pub const ANALYTICS: &str = "cognigy_analytics";
pub const LOGS: &str = "cognigy_logs";
/// Written by versions before page-by-page progress: when every Cognigy source was last read
/// completely. Read once to carry an old state file's horizon over; never written.
pub const LEGACY_COGNIGY_READ_UNTIL: &str = "cognigy_read_until";
/// Every cursor name a cycle loads.
pub const NAMES: [&str; 6] = [
    CXONE,
    SESSIONS,
    CONVERSATIONS,
    ANALYTICS,
    LOGS,
    LEGACY_COGNIGY_READ_UNTIL,
];

/// The earliest time, for "never read".
pub const NEVER: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;

/// Where a CXone `contacts/completed` read continues: contacts updated at or after `since`
/// (CXone's `updatedSince` is inclusive), less the first `skip` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CxonePosition {
    pub since: DateTime<Utc>,
    #[serde(default)]
    pub skip: u64,
}

impl CxonePosition {
    /// The start of a read from `since`.
    pub fn from(since: DateTime<Utc>) -> CxonePosition {
        CxonePosition { since, skip: 0 }
    }

    /// The position after a page of `received` contacts whose latest `lastUpdateTime` is
    /// `newest`. The next page starts at that time again (its ties are read twice, which the
    /// store's upsert absorbs) rather than skipping them, because a contact updated meanwhile
    /// moves to the end and a skip count would then pass over an unread one; only a page that
    /// did not move the time (every contact at `since`) counts on with `skip`.
    pub fn advanced(self, received: usize, newest: Option<DateTime<Utc>>) -> CxonePosition {
        match newest {
            Some(t) if t > self.since => CxonePosition::from(t),
            _ => CxonePosition {
                since: self.since,
                skip: self.skip + received as u64,
            },
        }
    }
}

/// Where a newest-first pass over the project logs continues: entries stamped at or after
/// `after`, from the server's cursor `resume` (from the newest entry when `None`), for the
/// `term`-th server-side filter term (a pass reads each configured term in turn). `newest` is
/// the newest entry's timestamp the running pass has read (server time): the next pass starts
/// from it (see [`Pass::completed_logs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsPosition {
    pub after: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    #[serde(default)]
    pub term: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<DateTime<Utc>>,
}

impl LogsPosition {
    /// The position once entries stamped `stamps` have been read: `newest` moves up to the
    /// latest of them.
    pub fn saw(mut self, stamps: impl IntoIterator<Item = DateTime<Utc>>) -> LogsPosition {
        self.newest = self.newest.into_iter().chain(stamps).max();
        self
    }
}

/// A stream position: where a pass starts, and what time it stands for in the horizon.
pub trait Position: Clone {
    /// The position at which a pass reading everything stamped after `t` starts.
    fn start(t: DateTime<Utc>) -> Self;
    /// The timestamp below which a running pass has read every record (`None`: a pass that
    /// reads newest first covers no contiguous range until it completes).
    fn read_through(&self) -> Option<DateTime<Utc>>;
    /// The timestamp kept in the store's `watermark` column.
    fn watermark(&self) -> DateTime<Utc>;
}

impl Position for CxonePosition {
    fn start(t: DateTime<Utc>) -> Self {
        CxonePosition::from(t)
    }
    fn read_through(&self) -> Option<DateTime<Utc>> {
        Some(self.since)
    }
    fn watermark(&self) -> DateTime<Utc> {
        self.since
    }
}

impl Position for KeysetPosition {
    fn start(t: DateTime<Utc>) -> Self {
        KeysetPosition::after(t)
    }
    fn read_through(&self) -> Option<DateTime<Utc>> {
        Some(self.after)
    }
    fn watermark(&self) -> DateTime<Utc> {
        self.after
    }
}

impl Position for LogsPosition {
    fn start(t: DateTime<Utc>) -> Self {
        LogsPosition {
            after: t,
            resume: None,
            term: 0,
            newest: None,
        }
    }
    fn read_through(&self) -> Option<DateTime<Utc>> {
        None
    }
    fn watermark(&self) -> DateTime<Utc> {
        self.after
    }
}

/// How far back a stream's passes reach. Most passes (short) start `short` before the previous
/// pass began; a *sweep* starts `long` before the previous sweep began, and one is made whenever
/// the last began `sweep_every` ago or more. Streams without sweeps have `short == long` and
/// `sweep_every` zero (every pass is a sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub short: Duration,
    pub long: Duration,
    pub sweep_every: Duration,
}

impl Windows {
    /// One window for every pass (CXone, the logs).
    pub fn single(window: Duration) -> Windows {
        Windows {
            short: window,
            long: window,
            sweep_every: Duration::zero(),
        }
    }
}

/// The cursor of one stream: the running pass and what the completed ones established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass<P> {
    /// Where the next page starts.
    pub position: P,
    /// When the running pass began (its first page was asked for at or after this time).
    pub started: DateTime<Utc>,
    /// No page of the running pass has been read yet: `started` is set by its first page.
    pub fresh: bool,
    /// When the last completed pass began; `None` before any pass completed.
    pub complete_at: Option<DateTime<Utc>>,
    /// The running pass is a sweep (the first pass of a stream is one).
    pub sweep: bool,
    /// When the last completed sweep began.
    pub swept_at: Option<DateTime<Utc>>,
}

impl<P: Position> Pass<P> {
    /// The first pass of a stream never read: everything stamped after `lookback_start`.
    pub fn first(lookback_start: DateTime<Utc>, now: DateTime<Utc>) -> Pass<P> {
        Pass {
            position: P::start(lookback_start),
            started: now,
            fresh: true,
            complete_at: None,
            sweep: true,
            swept_at: None,
        }
    }

    /// The cursor once a page asked for at `asked_at` has moved the position to `position`.
    pub fn after_page(&self, position: P, asked_at: DateTime<Utc>) -> Pass<P> {
        Pass {
            position,
            started: if self.fresh { asked_at } else { self.started },
            fresh: false,
            ..self.clone()
        }
    }

    /// The cursor once the running pass (as [`Pass::after_page`] left it) reached the end of the
    /// data, at `now`: the next pass is a sweep when the last one began `sweep_every` ago, and
    /// starts `long` before that sweep began; otherwise it starts `short` before this pass began.
    pub fn completed(&self, windows: Windows, now: DateTime<Utc>) -> Pass<P> {
        let swept_at = if self.sweep {
            Some(self.started)
        } else {
            self.swept_at
        };
        let sweep = swept_at.map_or(true, |s| {
            now.signed_duration_since(s) >= windows.sweep_every
        });
        let from = if sweep {
            before(swept_at.unwrap_or(self.started), windows.long)
        } else {
            before(self.started, windows.short)
        };
        Pass {
            position: P::start(from),
            started: now,
            fresh: true,
            complete_at: Some(self.started),
            sweep,
            swept_at,
        }
    }

    /// The running pass's own coverage: its position while that is below its start.
    fn running(&self) -> Option<DateTime<Utc>> {
        if self.fresh {
            return None;
        }
        self.position
            .read_through()
            .map(|through| through.min(self.started))
    }

    /// The wall-clock time up to which this stream's records written up to the `short` window
    /// after their own time are known read: every such record visible by then (and stamped after
    /// the lookback start) has been read.
    pub fn covered(&self) -> DateTime<Utc> {
        self.complete_at.max(self.running()).unwrap_or(NEVER)
    }

    /// The same for records written up to the `long` window late: what the sweeps cover.
    pub fn swept(&self) -> DateTime<Utc> {
        let running = if self.sweep { self.running() } else { None };
        self.swept_at.max(running).unwrap_or(NEVER)
    }
}

impl Pass<LogsPosition> {
    /// The cursor once a logs pass (as [`Pass::after_page`] left it) read down to its lower
    /// bound, at `now`. The next pass reads down to [`LOGS_WRITE_MARGIN`] before the newest
    /// entry this one read: both are the server's timestamps, so no clock skew enters, and log
    /// entries are written as the flow runs, so nothing older than that appears later. A pass
    /// that read no entry leaves the bound where it was (nothing newer existed). The horizon
    /// (`complete_at`) is the pass's wall-clock start, as for every stream.
    pub fn completed_logs(&self, now: DateTime<Utc>) -> Pass<LogsPosition> {
        let mut next = self.completed(Windows::single(Duration::zero()), now);
        next.position.after = match self.position.newest {
            Some(newest) => before(newest, LOGS_WRITE_MARGIN).max(self.position.after),
            None => self.position.after,
        };
        next
    }
}

/// How much earlier than the newest entry a logs pass read the next one starts: entries stamped
/// that much before it may still have been on their way into the log store. Small, because a
/// logs page holds at most 100 entries and every second re-read is read again each cycle.
pub const LOGS_WRITE_MARGIN: Duration = Duration::seconds(10);

/// The detail column of a cursor row (JSON); older versions wrote `""`, `"continue"` or
/// `{"resume", "top"}`, which parse too (with `started` missing: see [`decode`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Detail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fresh: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complete_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    skip: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    tied: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    term: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    sweep: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    swept_at: Option<DateTime<Utc>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

/// The position fields of a cursor row besides its watermark.
#[derive(Debug, Default)]
pub struct RowParts {
    skip: u64,
    tied: u64,
    resume: Option<String>,
    term: usize,
    newest: Option<DateTime<Utc>>,
}

/// A stream whose cursor can be kept in one store row.
pub trait Stored: Position + Sized {
    fn from_row(watermark: DateTime<Utc>, parts: RowParts) -> Self;
    fn row_parts(&self) -> RowParts;
}

impl Stored for CxonePosition {
    fn from_row(since: DateTime<Utc>, parts: RowParts) -> Self {
        CxonePosition {
            since,
            skip: parts.skip,
        }
    }
    fn row_parts(&self) -> RowParts {
        RowParts {
            skip: self.skip,
            ..RowParts::default()
        }
    }
}

impl Stored for KeysetPosition {
    fn from_row(after: DateTime<Utc>, parts: RowParts) -> Self {
        KeysetPosition {
            after,
            tied: parts.tied,
        }
    }
    fn row_parts(&self) -> RowParts {
        RowParts {
            tied: self.tied,
            ..RowParts::default()
        }
    }
}

impl Stored for LogsPosition {
    fn from_row(after: DateTime<Utc>, parts: RowParts) -> Self {
        LogsPosition {
            after,
            resume: parts.resume.filter(|r| !r.is_empty()),
            term: parts.term,
            newest: parts.newest,
        }
    }
    fn row_parts(&self) -> RowParts {
        RowParts {
            resume: self.resume.clone(),
            term: self.term,
            newest: self.newest,
            ..RowParts::default()
        }
    }
}

/// The store row of a cursor: (watermark, detail).
pub fn encode<P: Stored>(pass: &Pass<P>) -> (DateTime<Utc>, String) {
    let RowParts {
        skip,
        tied,
        resume,
        term,
        newest,
    } = pass.position.row_parts();
    let detail = Detail {
        started: Some(pass.started),
        fresh: pass.fresh,
        complete_at: pass.complete_at,
        skip,
        tied,
        resume,
        term,
        newest,
        sweep: pass.sweep,
        swept_at: pass.swept_at,
    };
    // Serializing a struct of plain fields to JSON cannot fail; an empty detail would only make
    // the next load treat the cursor as an old one (see `decode`), which loses nothing.
    let text = serde_json::to_string(&detail).unwrap_or_default();
    (pass.position.watermark(), text)
}

/// A cursor from its store row. A row written before page-by-page progress (no `started`) is
/// taken conservatively: its pass began no later than its watermark, and what it established is
/// `legacy_complete` (the old `cognigy_read_until` for Cognigy; for CXone its own watermark
/// unless it was in the middle of a capped read).
pub fn decode<P: Stored>(
    watermark: DateTime<Utc>,
    detail: &str,
    legacy_complete: Option<DateTime<Utc>>,
) -> Pass<P> {
    let parsed: Option<Detail> = serde_json::from_str(detail).ok();
    match parsed {
        Some(Detail {
            started: Some(started),
            fresh,
            complete_at,
            skip,
            tied,
            resume,
            term,
            newest,
            sweep,
            swept_at,
        }) => Pass {
            position: P::from_row(
                watermark,
                RowParts {
                    skip,
                    tied,
                    resume,
                    term,
                    newest,
                },
            ),
            started,
            fresh,
            complete_at,
            sweep,
            swept_at,
        },
        old => {
            let resume = old.and_then(|d| d.resume);
            // The old passes all reached back the whole re-read window: sweeps.
            Pass {
                position: P::from_row(
                    watermark,
                    RowParts {
                        resume,
                        ..RowParts::default()
                    },
                ),
                started: watermark,
                fresh: false,
                complete_at: legacy_complete,
                sweep: true,
                swept_at: legacy_complete,
            }
        }
    }
}

/// How far each source has been read, as wall-clock times (see [`Pass::covered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadHorizon {
    pub cxone: DateTime<Utc>,
    /// The least of the four Cognigy streams, for records written within the short window.
    pub cognigy: DateTime<Utc>,
    /// The same for records written within the long window (what the sweeps cover).
    pub cognigy_swept: DateTime<Utc>,
}

impl ReadHorizon {
    /// How far Cognigy is known read for a contact whose data is expected `wait` after it ended:
    /// the short-window horizon when `wait` is within `short`, else the sweeps' horizon.
    pub fn cognigy_for(&self, wait: Duration, short: Duration) -> DateTime<Utc> {
        if wait <= short {
            self.cognigy
        } else {
            self.cognigy_swept
        }
    }
}

/// The cursors of one tenant's five streams (`None`: never read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursors {
    pub cxone: Option<Pass<CxonePosition>>,
    pub sessions: Option<Pass<KeysetPosition>>,
    pub conversations: Option<Pass<KeysetPosition>>,
    pub analytics: Option<Pass<KeysetPosition>>,
    pub logs: Option<Pass<LogsPosition>>,
}

impl Cursors {
    /// The read horizon these cursors establish.
    pub fn horizon(&self) -> ReadHorizon {
        fn covered<P: Position>(p: &Option<Pass<P>>) -> DateTime<Utc> {
            p.as_ref().map_or(NEVER, Pass::covered)
        }
        fn swept<P: Position>(p: &Option<Pass<P>>) -> DateTime<Utc> {
            p.as_ref().map_or(NEVER, Pass::swept)
        }
        ReadHorizon {
            cxone: covered(&self.cxone),
            cognigy: covered(&self.sessions)
                .min(covered(&self.conversations))
                .min(covered(&self.analytics))
                .min(covered(&self.logs)),
            // The logs are written in real time: they have no sweeps, their passes cover it.
            cognigy_swept: swept(&self.sessions)
                .min(swept(&self.conversations))
                .min(swept(&self.analytics))
                .min(covered(&self.logs)),
        }
    }
}

/// `t - d`, or the earliest time when that is out of range.
pub fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(NEVER)
}

/// The latest end of a contact group the horizon may let a cycle decide: Cognigy must have been
/// read `settle` past it for a matched session or `lag` past it for an unmatched one (each with
/// the horizon that covers records written that late, see [`ReadHorizon::cognigy_for`];
/// `diagnose` checks which case applies) and CXone `settle` past it. A source given up
/// (unavailable for `max_pending_seconds`; `diagnose` then decides what waited for it) bounds
/// nothing: every group that ended by `now` may be loaded.
pub fn decidable_by(
    horizon: ReadHorizon,
    settle: Duration,
    lag: Duration,
    short: Duration,
    given_up: GivenUp,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let cognigy = if given_up.cognigy {
        now
    } else {
        before(horizon.cognigy_for(settle, short), settle)
            .max(before(horizon.cognigy_for(lag, short), lag))
    };
    let cxone = if given_up.cxone {
        now
    } else {
        before(horizon.cxone, settle)
    };
    cognigy.min(cxone).min(now)
}

/// Which sources have been unavailable for `max_pending_seconds` of wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GivenUp {
    pub cxone: bool,
    pub cognigy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 20, 9, 0, 0).unwrap() + Duration::minutes(minute)
    }

    fn single(minutes: i64) -> Windows {
        Windows::single(Duration::minutes(minutes))
    }

    /// A CXone page that moves the update time restarts at that time; one that does not counts on.
    #[test]
    fn cxone_position_advances_by_time_or_by_skip() {
        let p = CxonePosition::from(at(0));
        assert_eq!(p.advanced(3, Some(at(2))), CxonePosition::from(at(2)));
        let stuck = p.advanced(5, Some(at(0)));
        assert_eq!(
            stuck,
            CxonePosition {
                since: at(0),
                skip: 5
            }
        );
        assert_eq!(stuck.advanced(5, Some(at(0))).skip, 10);
        assert_eq!(p.advanced(0, None), p);
    }

    /// A fresh pass takes its start from its first page; completing it starts the next one
    /// `reread` before that, and records where the completed one began.
    #[test]
    fn passes_start_complete_and_restart_reread_before() {
        let first: Pass<KeysetPosition> = Pass::first(at(-60), at(0));
        assert!(first.fresh && first.sweep);
        assert_eq!(first.covered(), NEVER);
        let paged = first.after_page(KeysetPosition::after(at(-30)), at(1));
        assert_eq!(paged.started, at(1));
        assert!(!paged.fresh);
        let paged = paged.after_page(KeysetPosition::after(at(-10)), at(2));
        assert_eq!(paged.started, at(1), "only the first page sets the start");
        let done = paged.completed(single(20), at(3));
        assert_eq!(done.complete_at, Some(at(1)));
        assert_eq!(done.position, KeysetPosition::after(at(-19)));
        assert_eq!(done.started, at(3));
        assert!(done.fresh);
    }

    /// A logs pass starts the next one `LOGS_WRITE_MARGIN` before the newest entry it read
    /// (server time, whatever the local clock says); one that read nothing keeps its bound.
    #[test]
    fn logs_pass_restarts_from_newest_entry_read() {
        let first: Pass<LogsPosition> = Pass::first(at(-60), at(0));
        // The server's clock runs 3 minutes behind the local one: its newest entry is at -3.
        let read = first
            .after_page(LogsPosition::start(at(-60)).saw([at(-5), at(-3)]), at(0))
            .after_page(
                LogsPosition {
                    resume: None,
                    term: 1,
                    ..LogsPosition::start(at(-60)).saw([at(-3)])
                }
                .saw([at(-4)]),
                at(0),
            );
        assert_eq!(read.position.newest, Some(at(-3)));
        let next = read.completed_logs(at(1));
        assert_eq!(
            next.position,
            LogsPosition::start(at(-3) - LOGS_WRITE_MARGIN)
        );
        assert_eq!(
            next.complete_at,
            Some(at(0)),
            "the horizon is the pass's own start"
        );
        assert!(next.fresh);
        let idle = next
            .after_page(next.position.clone(), at(2))
            .completed_logs(at(3));
        assert_eq!(
            idle.position.after,
            at(-3) - LOGS_WRITE_MARGIN,
            "nothing read: same bound"
        );
        assert_eq!(idle.position.newest, None);
        let empty: Pass<LogsPosition> = Pass::first(at(-60), at(0));
        let empty = empty
            .after_page(empty.position.clone(), at(0))
            .completed_logs(at(1));
        assert_eq!(empty.position.after, at(-60));
    }

    /// Coverage: the start of the last completed pass, or the running pass's position while it
    /// is below the running pass's start; a newest-first pass covers nothing until it completes.
    #[test]
    fn coverage_of_running_and_completed_passes() {
        let running: Pass<KeysetPosition> =
            Pass::first(at(-60), at(0)).after_page(KeysetPosition::after(at(-30)), at(0));
        assert_eq!(running.covered(), at(-30));
        let ahead = running.after_page(KeysetPosition::after(at(5)), at(6));
        assert_eq!(ahead.covered(), at(0), "not past the pass's own start");
        let done = ahead.completed(single(20), at(7));
        assert_eq!(done.covered(), at(0));
        let next = done.after_page(KeysetPosition::after(at(-10)), at(8));
        assert_eq!(next.covered(), at(0), "the completed pass still counts");
        let logs: Pass<LogsPosition> = Pass::first(at(-60), at(0)).after_page(
            LogsPosition {
                after: at(-60),
                resume: Some("c".into()),
                term: 0,
                newest: None,
            },
            at(0),
        );
        assert_eq!(logs.covered(), NEVER);
        assert_eq!(logs.completed(single(5), at(1)).covered(), at(0));
    }

    /// Short passes start `short` before the previous pass began; every `sweep_every` a sweep
    /// starts `long` before the previous sweep began; the sweeps' horizon moves only with them.
    #[test]
    fn sweeps_alternate_with_short_passes() {
        let windows = Windows {
            short: Duration::minutes(5),
            long: Duration::minutes(45),
            sweep_every: Duration::minutes(15),
        };
        let run = |p: &Pass<KeysetPosition>, begin: i64| {
            p.after_page(p.position, at(begin))
                .completed(windows, at(begin + 1))
        };
        let first: Pass<KeysetPosition> = Pass::first(at(-600), at(0));
        let p = run(&first, 0);
        assert_eq!((p.sweep, p.swept_at), (false, Some(at(0))));
        assert_eq!(p.position.after, at(-5));
        let p = run(&p, 10);
        assert_eq!((p.sweep, p.position.after), (false, at(5)));
        assert_eq!((p.covered(), p.swept()), (at(10), at(0)));
        let p = run(&p, 16);
        assert!(p.sweep, "the last sweep began 16 minutes ago");
        assert_eq!(p.position.after, at(-45), "45 minutes before that sweep");
        let running = p.after_page(KeysetPosition::after(at(-20)), at(18));
        assert_eq!((running.covered(), running.swept()), (at(16), at(0)));
        let p = run(&p, 18);
        assert_eq!((p.sweep, p.swept_at), (false, Some(at(18))));
        assert_eq!((p.covered(), p.swept()), (at(18), at(18)));
    }

    /// A record written late, within the short window, is reached by the pass that begins after
    /// it was written; within the long window, by the sweep that does; however passes fall.
    #[test]
    fn late_records_within_the_windows_are_always_reached() {
        for (windows, delays) in [
            (single(45), vec![0, 1, 10, 30, 44]),
            (
                Windows {
                    short: Duration::minutes(5),
                    long: Duration::minutes(45),
                    sweep_every: Duration::minutes(15),
                },
                vec![0, 1, 4, 10, 30, 44],
            ),
        ] {
            // Passes begin every 7 minutes and each takes 3.
            let mut pass: Pass<KeysetPosition> = Pass::first(at(-600), at(0));
            let mut ranges = Vec::new();
            for k in 0..60 {
                let begin = at(7 * k);
                let p = pass.after_page(pass.position, begin);
                ranges.push((begin, p.position.after, p.sweep));
                pass = p.completed(windows, begin + Duration::minutes(3));
            }
            for t in (0..300).map(at) {
                for delay in &delays {
                    let written = t + Duration::minutes(*delay);
                    // The first pass begun after the record was written, of the kind whose
                    // window covers the delay.
                    let short = Duration::minutes(*delay) <= windows.short;
                    let (begin, from, _) = ranges
                        .iter()
                        .find(|(begin, _, sweep)| *begin >= written && (short || *sweep))
                        .copied()
                        .unwrap();
                    assert!(
                        from < t,
                        "record at {t} written {delay} min late: pass at {begin} starts at {from}"
                    );
                }
            }
        }
    }

    /// Rows round-trip, and rows of older versions load conservatively.
    #[test]
    fn cursor_rows_round_trip_and_old_rows_load() {
        let pass = Pass {
            position: KeysetPosition {
                after: at(3),
                tied: 2,
            },
            started: at(4),
            fresh: false,
            complete_at: Some(at(1)),
            sweep: false,
            swept_at: Some(at(0)),
        };
        let (w, d) = encode(&pass);
        assert_eq!(decode::<KeysetPosition>(w, &d, None), pass);
        let logs = Pass {
            position: LogsPosition {
                after: at(0),
                resume: Some("65f0".into()),
                term: 1,
                newest: Some(at(1)),
            },
            started: at(2),
            fresh: true,
            complete_at: None,
            sweep: true,
            swept_at: None,
        };
        let (w, d) = encode(&logs);
        assert_eq!(decode::<LogsPosition>(w, &d, None), logs);
        let old: Pass<LogsPosition> = decode(
            at(5),
            r#"{"resume":"abc","top":"2026-03-20T09:09:00Z"}"#,
            Some(at(2)),
        );
        assert_eq!(old.position.resume.as_deref(), Some("abc"));
        assert_eq!((old.started, old.complete_at), (at(5), Some(at(2))));
        let old: Pass<CxonePosition> = decode(at(5), "continue", None);
        assert_eq!(old.position, CxonePosition::from(at(5)));
        assert_eq!(old.covered(), at(5));
    }

    /// The horizon is the least Cognigy stream; what may be decided lags it by settle (short
    /// horizon) or lag (the sweeps' horizon, when lag is past the short window), unless a source
    /// has been given up.
    #[test]
    fn horizon_and_decidable_groups() {
        let done = |t: i64, swept: i64| {
            Some(Pass {
                position: KeysetPosition::after(at(t - 20)),
                started: at(t + 1),
                fresh: true,
                complete_at: Some(at(t)),
                sweep: false,
                swept_at: Some(at(swept)),
            })
        };
        let cursors = Cursors {
            cxone: Some(Pass {
                position: CxonePosition::from(at(40)),
                started: at(41),
                fresh: true,
                complete_at: Some(at(40)),
                sweep: true,
                swept_at: Some(at(40)),
            }),
            sessions: done(30, 20),
            conversations: done(25, 22),
            analytics: done(35, 21),
            logs: Some(Pass {
                position: LogsPosition {
                    after: at(0),
                    resume: None,
                    term: 0,
                    newest: None,
                },
                started: at(28),
                fresh: true,
                complete_at: Some(at(28)),
                sweep: true,
                swept_at: Some(at(28)),
            }),
        };
        let h = cursors.horizon();
        assert_eq!(
            h,
            ReadHorizon {
                cxone: at(40),
                cognigy: at(25),
                cognigy_swept: at(20),
            }
        );
        let (settle, lag, short) = (
            Duration::minutes(1),
            Duration::minutes(15),
            Duration::minutes(5),
        );
        let none = GivenUp::default();
        assert_eq!(decidable_by(h, settle, lag, short, none, at(60)), at(24));
        // A lag within the short window is measured on the short horizon too.
        let small_lag = Duration::minutes(2);
        assert_eq!(h.cognigy_for(small_lag, short), at(25));
        assert_eq!(h.cognigy_for(lag, short), at(20));
        let cognigy_down = GivenUp {
            cognigy: true,
            cxone: false,
        };
        assert_eq!(
            decidable_by(h, settle, lag, short, cognigy_down, at(60)),
            at(39)
        );
        let both = GivenUp {
            cognigy: true,
            cxone: true,
        };
        assert_eq!(decidable_by(h, settle, lag, short, both, at(60)), at(60));
        assert_eq!(Cursors::default().horizon().cognigy, NEVER);
        let never = decidable_by(
            Cursors::default().horizon(),
            settle,
            lag,
            short,
            none,
            at(0),
        );
        assert_eq!(never, NEVER);
    }
}
