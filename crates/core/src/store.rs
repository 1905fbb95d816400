//! The daemon's durable state (DESIGN §7): a SQLite file (WAL) holding per tenant and source
//! cursors, one row per CXone contact (pending or diagnosed, with its diagnosis JSON), the Cognigy
//! records still needed to re-correlate pending contacts across cycles, and persistent per-label
//! totals so counters continue across restarts.
//!
//! Each write of a poll cycle (its ingest of records and cursors, then each batch of diagnoses)
//! is one [`Store::commit_cycle`] transaction, which returns only the diagnoses newly recorded by
//! it: a contact is diagnosed and counted exactly once, even when a cycle is repeated after a
//! crash. The API is synchronous (rusqlite); async callers
//! use `spawn_blocking` or a dedicated thread. This module does not poll, correlate or diagnose,
//! and it does not touch metrics.
//!
//! One daemon per state file (DESIGN §9): [`Store::open`] first takes an exclusive `flock(2)` on
//! `<state file>.lock` (holding the owner's pid) and keeps it until the store is dropped; the
//! kernel releases it when the process dies, also on SIGKILL. A second opener is refused with
//! [`StoreError::Locked`], naming the lock file and the holder's pid. A file that is not SQLite,
//! or an SQLite file of another program (tables, none of them our `schema_version`), is refused
//! with [`StoreError::Foreign`] before anything is written into it. [`check_path`] runs the same
//! checks without writing, for `--config.check`.

use crate::engine::diagnosis::{Diagnosis, Failure, Outcome, Reason};
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cxone::wire::CompletedContact;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// The schema version this code writes; a newer file is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    watermark TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, source)
);
CREATE TABLE IF NOT EXISTS contacts (
    tenant TEXT NOT NULL,
    contact_id INTEGER NOT NULL,
    group_id INTEGER NOT NULL,
    ended_at TEXT NOT NULL,
    updated_at TEXT,
    record TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'diagnosed', 'ignored')),
    first_seen TEXT NOT NULL,
    diagnosed_at TEXT,
    outcome TEXT,
    failure TEXT,
    reason TEXT,
    diagnosis TEXT,
    PRIMARY KEY (tenant, contact_id)
);
CREATE INDEX IF NOT EXISTS contacts_by_group ON contacts (tenant, group_id);
CREATE INDEX IF NOT EXISTS contacts_by_status ON contacts (tenant, status);
CREATE INDEX IF NOT EXISTS contacts_by_diagnosed_at ON contacts (diagnosed_at);
CREATE INDEX IF NOT EXISTS contacts_by_id ON contacts (contact_id);
CREATE TABLE IF NOT EXISTS cognigy_records (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('session', 'conversation', 'analytics', 'log')),
    record_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    at TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, record_key)
);
CREATE INDEX IF NOT EXISTS cognigy_by_at ON cognigy_records (tenant, at);
CREATE TABLE IF NOT EXISTS source_outages (
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (tenant, source)
);
CREATE TABLE IF NOT EXISTS totals (
    tenant TEXT NOT NULL,
    outcome TEXT NOT NULL,
    failure TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant, outcome, failure, reason)
);
";

/// What can go wrong with the state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open state file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state file was written by a newer version (schema {found}, this build reads {SCHEMA_VERSION})")]
    NewerSchema { found: i64 },
    #[error(
        "state file {path} is in use by another handover-exporter ({holder}): its lock file {} is \
         held; run exactly one daemon per state file",
        lock.display()
    )]
    Locked {
        path: PathBuf,
        lock: PathBuf,
        /// `pid N`, or why the pid is unknown.
        holder: String,
    },
    #[error("cannot lock state file {path} through its lock file {}: {source}", lock.display())]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file {path} is not a handover-exporter state file: {reason}; refusing to use it"
    )]
    Foreign { path: PathBuf, reason: String },
    #[error("state file {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("state file {what} failed: {source}")]
    Sqlite {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot encode or decode the {what} JSON in the state file: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file holds an invalid {what}: {value:?}")]
    Invalid { what: &'static str, value: String },
}

type Result<T> = std::result::Result<T, StoreError>;

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { what, source }
}

fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Json { what, source }
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text so that text order is time order.
fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(what: &'static str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Invalid {
            what,
            value: text.to_owned(),
        })
}

/// How far one source of one tenant has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub watermark: DateTime<Utc>,
    /// Source-specific resume detail (a paging cursor, the last key seen); may be empty.
    pub detail: String,
}

/// Where a batch of [`Store::ripe_pending`] ended: the last group's last end and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RipeKey {
    last_end: String,
    group_id: i64,
}

/// Cognigy records of one tenant, as kept for re-correlation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CognigySet {
    pub sessions: Vec<Session>,
    pub conversations: Vec<Conversation>,
    pub analytics: Vec<Analytics>,
    pub logs: Vec<LogEntry>,
}

/// One write of a poll cycle of one tenant (its ingest, or a batch of diagnoses), committed in
/// one transaction.
#[derive(Debug, Clone, Copy)]
pub struct CycleCommit<'a> {
    /// The cycle's clock: `first_seen` of new contacts and `diagnosed_at` of new diagnoses.
    pub now: DateTime<Utc>,
    /// Completed contacts read this cycle: inserted as pending, or their record refreshed when
    /// newer and still pending. A diagnosed contact is never reset.
    pub contacts: &'a [CompletedContact],
    pub sessions: &'a [Session],
    pub conversations: &'a [Conversation],
    pub analytics: &'a [Analytics],
    pub logs: &'a [LogEntry],
    /// Diagnoses of this cycle; one for a contact already diagnosed is ignored.
    pub diagnoses: &'a [Diagnosis],
    /// Cursors to advance: (source name, watermark, detail).
    pub cursors: &'a [(&'a str, DateTime<Utc>, String)],
    /// Pending contacts that turned out not to be bot contacts (no bot entry, and no session
    /// pointed to them while Cognigy was read past their lag): they leave the pending set
    /// without being counted.
    pub ignored: &'a [i64],
}

impl<'a> CycleCommit<'a> {
    /// A commit that writes nothing yet, at `now`; fill the slices you have.
    pub fn empty(now: DateTime<Utc>) -> CycleCommit<'a> {
        CycleCommit {
            now,
            contacts: &[],
            sessions: &[],
            conversations: &[],
            analytics: &[],
            logs: &[],
            diagnoses: &[],
            cursors: &[],
            ignored: &[],
        }
    }
}

/// One persistent counter value (`handover_contacts_total` / `handover_failures_total` seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalRow {
    pub tenant: String,
    pub outcome: Outcome,
    pub failure: Option<Failure>,
    pub reason: Reason,
    pub count: u64,
}

/// Which diagnoses to list; `limit` bounds the answer.
#[derive(Debug, Clone, Default)]
pub struct DiagnosisFilter {
    pub tenant: Option<String>,
    pub outcome: Option<Outcome>,
    pub failure: Option<Failure>,
    pub reason: Option<Reason>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
    /// Rows skipped before the first one returned (pages of the `/diagnoses` page).
    pub offset: usize,
}

/// One recorded diagnosis with where and when it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiagnosisRow {
    pub tenant: String,
    pub diagnosed_at: DateTime<Utc>,
    pub diagnosis: Diagnosis,
}

/// The SQLite state store.
pub struct Store {
    conn: Connection,
    /// The open lock file holding the exclusive `flock`; closing it (on drop) releases the lock.
    /// `None` for `:memory:`.
    _lock: Option<std::fs::File>,
}

/// The lock file of a state file: `<state file>.lock` beside it.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock of the state file at `path` without waiting, and writes our pid into
/// the lock file; refused when another process (or another store in this one) holds it.
fn lock(path: &Path) -> Result<std::fs::File> {
    let lock = lock_path(path);
    let lock_err = |source| StoreError::Lock {
        path: path.to_owned(),
        lock: lock.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(lock_err)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(errno) if errno == rustix::io::Errno::WOULDBLOCK => {
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) => match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_owned(),
                },
                Err(_) => "pid unknown".to_owned(),
            };
            return Err(StoreError::Locked {
                path: path.to_owned(),
                lock,
                holder,
            });
        }
        Err(errno) => return Err(lock_err(errno.into())),
    }
    // The pid is for the error message of a second opener only; failing to write it is harmless.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    Ok(file)
}

/// Refuses a file that is not SQLite, or an SQLite database that holds tables but not our
/// `schema_version` (another program's file); an empty database is fine (it becomes ours).
fn check_ours(conn: &Connection, path: &Path) -> Result<()> {
    let names: std::result::Result<Vec<String>, rusqlite::Error> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<std::result::Result<Vec<_>, _>>()
        });
    let names = match names {
        Ok(names) => names,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Err(StoreError::Foreign {
                path: path.to_owned(),
                reason: "it is not an SQLite database".to_owned(),
            })
        }
        Err(source) => {
            return Err(StoreError::Open {
                path: path.to_owned(),
                source,
            })
        }
    };
    if names.is_empty() || names.iter().any(|n| n == "schema_version") {
        return Ok(());
    }
    let mut shown: Vec<&str> = names.iter().map(String::as_str).take(5).collect();
    if names.len() > shown.len() {
        shown.push("...");
    }
    Err(StoreError::Foreign {
        path: path.to_owned(),
        reason: format!(
            "it is an SQLite database of another program (tables {}, no schema_version)",
            shown.join(", ")
        ),
    })
}

/// What `--config.check` verifies of `state_path` without writing to it: `:memory:` is fine;
/// otherwise the directory must exist and be writable (a probe file is created and removed), and
/// an existing file must be a handover-exporter state file (not another program's, not a newer
/// schema). A running daemon on the file does not make the check fail.
pub fn check_path(path: &Path) -> Result<()> {
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let unusable = |reason: String| StoreError::Unusable {
        path: path.to_owned(),
        reason,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(unusable(format!("{} is not a directory", dir.display()))),
        Err(e) => {
            return Err(unusable(format!(
                "its directory {} cannot be used: {e}",
                dir.display()
            )))
        }
    }
    let probe = dir.join(format!(".handover-exporter-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return Err(unusable(format!(
                "its directory {} is not writable (the state file, its WAL and its lock file live \
                 there): {e}",
                dir.display()
            )))
        }
    }
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unusable(format!("cannot be read: {e}"))),
        Ok(meta) if !meta.is_file() => {
            return Err(unusable("is not a regular file".to_owned()));
        }
        Ok(meta) if meta.len() == 0 => return Ok(()),
        Ok(_) => {}
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
    check_ours(&conn, path)?;
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let has_version: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(open_err)?;
    let found: Option<i64> = if has_version {
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(open_err)?
    } else {
        None
    };
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::NewerSchema { found }),
        _ => Ok(()),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the state file at `path`, or an in-memory store for `:memory:`;
    /// takes the state file's lock, refuses a file that is not ours, turns on WAL and creates or
    /// checks the schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let memory = path.as_os_str() == ":memory:";
        let lock = if memory { None } else { Some(lock(path)?) };
        let conn = if memory {
            Connection::open_in_memory()
        } else {
            Connection::open(path)
        }
        .map_err(open_err)?;
        if !memory {
            check_ours(&conn, path)?;
        }
        // WAL lets the HTTP API read while a cycle writes; in-memory databases answer "memory".
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let found: Option<i64> = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(open_err)?;
        match found {
            None => {
                conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(open_err)?;
            }
            Some(found) if found > SCHEMA_VERSION => return Err(StoreError::NewerSchema { found }),
            Some(_) => {}
        }
        Ok(Store { conn, _lock: lock })
    }

    /// The connection, for the tenant ownership rows of `sharding` (its own table).
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for tests that need to break the store on purpose.
    #[doc(hidden)]
    pub fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// The journal mode SQLite reports (`wal` for a file store).
    pub fn journal_mode(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sql("journal mode query"))
    }

    /// The cursor of one source of one tenant, if it was ever advanced.
    pub fn cursor(&self, tenant: &str, source: &str) -> Result<Option<Cursor>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT watermark, detail FROM cursors WHERE tenant = ?1 AND source = ?2",
                params![tenant, source],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("cursor read"))?;
        row.map(|(watermark, detail)| {
            Ok(Cursor {
                watermark: parse_ts("cursor watermark", &watermark)?,
                detail,
            })
        })
        .transpose()
    }

    /// Writes one commit of a cycle in one transaction and returns the diagnoses newly recorded
    /// by it (the caller increments its counters for exactly these, after this returns).
    pub fn commit_cycle(
        &mut self,
        tenant: &str,
        commit: CycleCommit<'_>,
    ) -> Result<Vec<Diagnosis>> {
        self.commit(tenant, commit, &mut Vec::new())
    }

    /// [`Store::commit_cycle`] for one page of reads: returns the own times (`startedAt`,
    /// `timestamp`) of the Cognigy OData records it stored for the first time, so the caller can
    /// measure how late each record appeared.
    pub fn commit_page(
        &mut self,
        tenant: &str,
        commit: CycleCommit<'_>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let mut first_seen = Vec::new();
        self.commit(tenant, commit, &mut first_seen)?;
        Ok(first_seen)
    }

    fn commit(
        &mut self,
        tenant: &str,
        commit: CycleCommit<'_>,
        first_seen: &mut Vec<DateTime<Utc>>,
    ) -> Result<Vec<Diagnosis>> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("begin cycle transaction"))?;
        let now = ts(commit.now);
        for contact in commit.contacts {
            upsert_contact(&tx, tenant, contact, &now)?;
        }
        for s in commit.sessions {
            let key = s.id.clone().unwrap_or_else(|| s.session_id.clone());
            if upsert_cognigy(&tx, tenant, "session", &key, &s.session_id, s.started_at, s)? {
                first_seen.push(s.started_at);
            }
        }
        for c in commit.conversations {
            let key =
                c.id.clone()
                    .unwrap_or_else(|| format!("{}|{}", c.session_id, ts(c.timestamp)));
            if upsert_cognigy(
                &tx,
                tenant,
                "conversation",
                &key,
                &c.session_id,
                c.timestamp,
                c,
            )? {
                first_seen.push(c.timestamp);
            }
        }
        for a in commit.analytics {
            let key =
                a.id.clone()
                    .unwrap_or_else(|| format!("{}|{}", a.session_id, ts(a.timestamp)));
            if upsert_cognigy(
                &tx,
                tenant,
                "analytics",
                &key,
                &a.session_id,
                a.timestamp,
                a,
            )? {
                first_seen.push(a.timestamp);
            }
        }
        for l in commit.logs {
            let session = l.meta.session_id.clone().unwrap_or_default();
            // Log lines without an id are told apart by their text as well as time and session.
            let key =
                l.id.clone()
                    .unwrap_or_else(|| format!("{session}|{}|{}", ts(l.timestamp), l.msg));
            upsert_cognigy(&tx, tenant, "log", &key, &session, l.timestamp, l)?;
        }
        for id in commit.ignored {
            tx.prepare_cached(
                "UPDATE contacts SET status = 'ignored', diagnosed_at = ?3
                 WHERE tenant = ?1 AND contact_id = ?2 AND status = 'pending'",
            )
            .map_err(sql("mark contact ignored"))?
            .execute(params![tenant, id, now])
            .map_err(sql("mark contact ignored"))?;
        }
        let mut recorded = Vec::new();
        for d in commit.diagnoses {
            if record_diagnosis(&tx, tenant, d, &now)? {
                recorded.push(d.clone());
            }
        }
        for (source, watermark, detail) in commit.cursors {
            tx.prepare_cached(
                "INSERT INTO cursors (tenant, source, watermark, detail) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, source) DO UPDATE
                 SET watermark = excluded.watermark, detail = excluded.detail",
            )
            .map_err(sql("cursor write"))?
            .execute(params![tenant, source, ts(*watermark), detail])
            .map_err(sql("cursor write"))?;
        }
        tx.commit().map_err(sql("commit cycle transaction"))?;
        Ok(recorded)
    }

    /// Records whether this cycle's reads of `source` failed, and returns since when it has been
    /// failing: the time of the first failure of the current run of failures (kept across
    /// restarts), or `None` once a read succeeds.
    pub fn record_source_health(
        &mut self,
        tenant: &str,
        source: &str,
        failed: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        if !failed {
            self.conn
                .prepare_cached("DELETE FROM source_outages WHERE tenant = ?1 AND source = ?2")
                .map_err(sql("source outage clear"))?
                .execute(params![tenant, source])
                .map_err(sql("source outage clear"))?;
            return Ok(None);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO source_outages (tenant, source, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, source) DO NOTHING",
            )
            .map_err(sql("source outage write"))?
            .execute(params![tenant, source, ts(now)])
            .map_err(sql("source outage write"))?;
        let since: String = self
            .conn
            .query_row(
                "SELECT since FROM source_outages WHERE tenant = ?1 AND source = ?2",
                params![tenant, source],
                |r| r.get(0),
            )
            .map_err(sql("source outage read"))?;
        parse_ts("source outage start", &since).map(Some)
    }

    /// The records of every contact of every group that still has a pending contact (the unit
    /// tests' view of the pending table; the pipeline reads it batch by batch instead).
    #[cfg(test)]
    pub fn pending(&self, tenant: &str) -> Result<Vec<CompletedContact>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT record FROM contacts
                 WHERE tenant = ?1 AND record IS NOT NULL AND group_id IN
                   (SELECT group_id FROM contacts WHERE tenant = ?1 AND status = 'pending')
                 ORDER BY group_id, contact_id",
            )
            .map_err(sql("pending query"))?;
        let rows = stmt
            .query_map([tenant], |r| r.get::<_, String>(0))
            .map_err(sql("pending query"))?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(sql("pending query"))?;
            out.push(serde_json::from_str(&text).map_err(json("contact record"))?);
        }
        Ok(out)
    }

    /// The next batch of pending groups that may be decidable: up to `limit` groups that have a
    /// pending contact and whose last contact ended at or before `ended_by`, after the group
    /// `after` (last end, group id) in that order, with the records of all their contacts.
    /// Returns the contacts and the key of the batch's last group (`None` when there is none).
    /// Loading by batch keeps a cycle's memory bounded however long the backlog is (issue 5).
    pub fn ripe_pending(
        &self,
        tenant: &str,
        ended_by: DateTime<Utc>,
        after: Option<&RipeKey>,
        limit: usize,
    ) -> Result<(Vec<CompletedContact>, Option<RipeKey>)> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "WITH ripe AS (
                   SELECT group_id, MAX(ended_at) AS last_end FROM contacts
                   WHERE tenant = ?1 AND group_id IN
                     (SELECT group_id FROM contacts WHERE tenant = ?1 AND status = 'pending')
                   GROUP BY group_id
                   HAVING MAX(ended_at) <= ?2 AND (MAX(ended_at), group_id) > (?3, ?4)
                   ORDER BY MAX(ended_at), group_id
                   LIMIT ?5)
                 SELECT c.record, r.last_end, r.group_id FROM contacts c
                 JOIN ripe r ON c.group_id = r.group_id
                 WHERE c.tenant = ?1 AND c.record IS NOT NULL
                 ORDER BY r.last_end, r.group_id, c.contact_id",
            )
            .map_err(sql("ripe pending query"))?;
        let (after_end, after_group) = match after {
            Some(k) => (k.last_end.clone(), k.group_id),
            None => (String::new(), i64::MIN),
        };
        let rows = stmt
            .query_map(
                params![
                    tenant,
                    ts(ended_by),
                    after_end,
                    after_group,
                    limit.min(i64::MAX as usize) as i64
                ],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .map_err(sql("ripe pending query"))?;
        let mut out = Vec::new();
        let mut last = None;
        for row in rows {
            let (text, last_end, group_id) = row.map_err(sql("ripe pending query"))?;
            out.push(serde_json::from_str(&text).map_err(json("contact record"))?);
            last = Some(RipeKey { last_end, group_id });
        }
        Ok((out, last))
    }

    /// The Cognigy records of the tenant dated from `from` to `to` (inclusive).
    pub fn cognigy_between(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<CognigySet> {
        self.cognigy_query(
            "SELECT kind, record FROM cognigy_records WHERE tenant = ?1 AND at >= ?2 AND at <= ?3
             ORDER BY at, record_key",
            params![tenant, ts(from), ts(to)],
        )
    }

    /// The Cognigy records of one session of the tenant (its conversations and analytics, for the
    /// contact page's turns), oldest first; empty once pruned.
    pub fn session_records(&self, tenant: &str, session_id: &str) -> Result<CognigySet> {
        self.cognigy_query(
            "SELECT kind, record FROM cognigy_records WHERE tenant = ?1 AND session_id = ?2
             AND kind IN ('conversation', 'analytics') ORDER BY at, record_key",
            params![tenant, session_id],
        )
    }

    /// Diagnoses per reason under `filter` (its reason and limit ignored), most first.
    pub fn reason_counts(&self, filter: &DiagnosisFilter) -> Result<Vec<(Reason, u64)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT reason, COUNT(*) FROM contacts
                 WHERE status = 'diagnosed' AND diagnosis IS NOT NULL
                   AND (?1 IS NULL OR tenant = ?1)
                   AND (?2 IS NULL OR outcome = ?2)
                   AND (?3 IS NULL OR failure = ?3)
                   AND (?4 IS NULL OR diagnosed_at >= ?4)
                 GROUP BY reason ORDER BY COUNT(*) DESC, reason",
            )
            .map_err(sql("reason counts"))?;
        let rows = stmt
            .query_map(
                params![
                    filter.tenant,
                    filter.outcome.map(Outcome::as_str),
                    filter.failure.map(Failure::as_str),
                    filter.since.map(ts)
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(sql("reason counts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (reason, count) = row.map_err(sql("reason counts"))?;
            // Only this program writes the column, from the enum; an unknown text is skipped.
            if let Some(reason) = Reason::parse(&reason) {
                out.push((reason, count.max(0) as u64));
            }
        }
        Ok(out)
    }

    /// How many contacts of the tenant are pending.
    pub fn pending_count(&self, tenant: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM contacts WHERE tenant = ?1 AND status = 'pending'",
                [tenant],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(sql("pending count"))
    }

    /// The Cognigy records of the tenant whose time (session start, record timestamp) is at or
    /// after `since`, oldest first.
    pub fn cognigy_since(&self, tenant: &str, since: DateTime<Utc>) -> Result<CognigySet> {
        self.cognigy_query(
            "SELECT kind, record FROM cognigy_records WHERE tenant = ?1 AND at >= ?2
             ORDER BY at, record_key",
            params![tenant, ts(since)],
        )
    }

    fn cognigy_query(&self, query: &str, args: impl rusqlite::Params) -> Result<CognigySet> {
        let mut stmt = self
            .conn
            .prepare_cached(query)
            .map_err(sql("cognigy query"))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(sql("cognigy query"))?;
        let mut set = CognigySet::default();
        for row in rows {
            let (kind, text) = row.map_err(sql("cognigy query"))?;
            match kind.as_str() {
                "session" => set
                    .sessions
                    .push(serde_json::from_str(&text).map_err(json("session record"))?),
                "conversation" => set
                    .conversations
                    .push(serde_json::from_str(&text).map_err(json("conversation record"))?),
                "analytics" => set
                    .analytics
                    .push(serde_json::from_str(&text).map_err(json("analytics record"))?),
                "log" => set
                    .logs
                    .push(serde_json::from_str(&text).map_err(json("log record"))?),
                _ => {
                    return Err(StoreError::Invalid {
                        what: "cognigy record kind",
                        value: kind,
                    })
                }
            }
        }
        Ok(set)
    }

    /// Every persistent total, for seeding the counters at start-up.
    pub fn totals(&self) -> Result<Vec<TotalRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tenant, outcome, failure, reason, count FROM totals
                 ORDER BY tenant, outcome, failure, reason",
            )
            .map_err(sql("totals query"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(sql("totals query"))?;
        let mut out = Vec::new();
        for row in rows {
            let (tenant, outcome, failure, reason, count) = row.map_err(sql("totals query"))?;
            out.push(TotalRow {
                tenant,
                outcome: Outcome::parse(&outcome).ok_or(StoreError::Invalid {
                    what: "outcome",
                    value: outcome.clone(),
                })?,
                failure: if failure.is_empty() {
                    None
                } else {
                    Some(Failure::parse(&failure).ok_or(StoreError::Invalid {
                        what: "failure",
                        value: failure.clone(),
                    })?)
                },
                reason: Reason::parse(&reason).ok_or(StoreError::Invalid {
                    what: "reason",
                    value: reason.clone(),
                })?,
                count: count.max(0) as u64,
            });
        }
        Ok(out)
    }

    /// Recorded diagnoses matching `filter`, newest first, at most `filter.limit`.
    pub fn diagnoses(&self, filter: &DiagnosisFilter) -> Result<Vec<DiagnosisRow>> {
        let mut out = Vec::new();
        self.visit_diagnoses(filter, |row| {
            out.push(row);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Hands the diagnoses of [`Store::diagnoses`] to `visit` one at a time, newest first, until
    /// it returns `false`; only one row is in memory at a time.
    pub fn visit_diagnoses(
        &self,
        filter: &DiagnosisFilter,
        mut visit: impl FnMut(DiagnosisRow) -> Result<bool>,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tenant, diagnosed_at, diagnosis FROM contacts
                 WHERE status = 'diagnosed' AND diagnosis IS NOT NULL
                   AND (?1 IS NULL OR tenant = ?1)
                   AND (?2 IS NULL OR outcome = ?2)
                   AND (?3 IS NULL OR failure = ?3)
                   AND (?4 IS NULL OR reason = ?4)
                   AND (?5 IS NULL OR diagnosed_at >= ?5)
                 ORDER BY diagnosed_at DESC, contact_id DESC
                 LIMIT ?6 OFFSET ?7",
            )
            .map_err(sql("diagnoses query"))?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![
                    filter.tenant,
                    filter.outcome.map(Outcome::as_str),
                    filter.failure.map(Failure::as_str),
                    filter.reason.map(Reason::as_str),
                    filter.since.map(ts),
                    limit,
                    i64::try_from(filter.offset).unwrap_or(i64::MAX)
                ],
                diagnosis_columns,
            )
            .map_err(sql("diagnoses query"))?;
        for row in rows {
            if !visit(diagnosis_row(row.map_err(sql("diagnoses query"))?)?)? {
                break;
            }
        }
        Ok(())
    }

    /// The recorded diagnosis of one contact (master contact id), if any.
    pub fn diagnosis(&self, contact_id: i64) -> Result<Option<DiagnosisRow>> {
        let row = self
            .conn
            .query_row(
                // A leg's id (spawned backchannel, post-handover) finds its group's diagnosis.
                "SELECT tenant, diagnosed_at, diagnosis FROM contacts
                 WHERE status = 'diagnosed' AND diagnosis IS NOT NULL
                   AND (contact_id = ?1 OR contact_id = (SELECT group_id FROM contacts
                                                         WHERE contact_id = ?1 LIMIT 1))
                 ORDER BY contact_id = ?1 DESC, diagnosed_at DESC LIMIT 1",
                [contact_id],
                diagnosis_columns,
            )
            .optional()
            .map_err(sql("diagnosis query"))?;
        row.map(diagnosis_row).transpose()
    }

    /// Deletes diagnosed contacts diagnosed and ended before `older_than`, and Cognigy records
    /// older than it; never a pending contact and never a total. Returns the rows deleted.
    pub fn prune(&mut self, older_than: DateTime<Utc>) -> Result<usize> {
        let cutoff = ts(older_than);
        let tx = self.conn.transaction().map_err(sql("begin prune"))?;
        let contacts = tx
            .execute(
                "DELETE FROM contacts WHERE status IN ('diagnosed', 'ignored')
                 AND diagnosed_at < ?1 AND ended_at < ?1",
                [&cutoff],
            )
            .map_err(sql("prune contacts"))?;
        let records = tx
            .execute("DELETE FROM cognigy_records WHERE at < ?1", [&cutoff])
            .map_err(sql("prune cognigy records"))?;
        tx.commit().map_err(sql("commit prune"))?;
        Ok(contacts + records)
    }
}

type DiagnosisColumns = (String, String, String);

fn diagnosis_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<DiagnosisColumns> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn diagnosis_row((tenant, at, text): DiagnosisColumns) -> Result<DiagnosisRow> {
    Ok(DiagnosisRow {
        tenant,
        diagnosed_at: parse_ts("diagnosed_at", &at)?,
        diagnosis: serde_json::from_str(&text).map_err(json("diagnosis"))?,
    })
}

fn upsert_contact(
    tx: &Transaction<'_>,
    tenant: &str,
    c: &CompletedContact,
    now: &str,
) -> Result<()> {
    let record = serde_json::to_string(c).map_err(json("contact record"))?;
    // A late leg of a group that is already diagnosed joins it as diagnosed: a group is
    // diagnosed exactly once, so the leg must not make it pending again.
    tx.prepare_cached(
        "INSERT INTO contacts (tenant, contact_id, group_id, ended_at, updated_at, record, status,
                               first_seen, diagnosed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                 CASE WHEN EXISTS (SELECT 1 FROM contacts WHERE tenant = ?1 AND contact_id = ?3
                                   AND status = 'diagnosed') THEN 'diagnosed' ELSE 'pending' END,
                 ?7,
                 (SELECT diagnosed_at FROM contacts WHERE tenant = ?1 AND contact_id = ?3
                  AND status = 'diagnosed'))
         ON CONFLICT (tenant, contact_id) DO UPDATE
         SET record = excluded.record, updated_at = excluded.updated_at,
             group_id = excluded.group_id, ended_at = excluded.ended_at
         WHERE contacts.status = 'pending'
           AND COALESCE(excluded.updated_at, '') >= COALESCE(contacts.updated_at, '')",
    )
    .map_err(sql("contact upsert"))?
    .execute(params![
        tenant,
        c.contact_id,
        c.group_id(),
        ts(c.ended_at()),
        c.last_update_time.map(ts),
        record,
        now
    ])
    .map_err(sql("contact upsert"))?;
    Ok(())
}

/// Inserts or replaces one Cognigy record; true when it was not stored before.
fn upsert_cognigy<T: Serialize>(
    tx: &Transaction<'_>,
    tenant: &str,
    kind: &str,
    key: &str,
    session_id: &str,
    at: DateTime<Utc>,
    record: &T,
) -> Result<bool> {
    let text = serde_json::to_string(record).map_err(json("cognigy record"))?;
    let at = ts(at);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO cognigy_records (tenant, kind, record_key, session_id, at, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (tenant, kind, record_key) DO NOTHING",
        )
        .map_err(sql("cognigy record upsert"))?
        .execute(params![tenant, kind, key, session_id, at, text])
        .map_err(sql("cognigy record upsert"))?;
    if inserted == 0 {
        tx.prepare_cached(
            "UPDATE cognigy_records SET session_id = ?4, at = ?5, record = ?6
             WHERE tenant = ?1 AND kind = ?2 AND record_key = ?3",
        )
        .map_err(sql("cognigy record upsert"))?
        .execute(params![tenant, kind, key, session_id, at, text])
        .map_err(sql("cognigy record upsert"))?;
    }
    Ok(inserted > 0)
}

/// Marks one contact's group diagnosed and counts it; false when it was already diagnosed.
fn record_diagnosis(tx: &Transaction<'_>, tenant: &str, d: &Diagnosis, now: &str) -> Result<bool> {
    let status: Option<String> = tx
        .prepare_cached("SELECT status FROM contacts WHERE tenant = ?1 AND contact_id = ?2")
        .map_err(sql("diagnosis status read"))?
        .query_row(params![tenant, d.contact_id], |r| r.get(0))
        .optional()
        .map_err(sql("diagnosis status read"))?;
    let already = status.as_deref() == Some("diagnosed");
    if !already {
        let text = serde_json::to_string(d).map_err(json("diagnosis"))?;
        let failure = d.failure.map(Failure::as_str);
        if status.is_some() {
            tx.prepare_cached(
                "UPDATE contacts SET status = 'diagnosed', diagnosed_at = ?3, outcome = ?4,
                        failure = ?5, reason = ?6, diagnosis = ?7
                 WHERE tenant = ?1 AND contact_id = ?2",
            )
            .map_err(sql("diagnosis write"))?
            .execute(params![
                tenant,
                d.contact_id,
                now,
                d.outcome.as_str(),
                failure,
                d.reason.as_str(),
                text
            ])
            .map_err(sql("diagnosis write"))?;
        } else {
            // The master contact itself was never read (only a leg or a session pointed at it):
            // keep the diagnosis in a row without a record.
            tx.prepare_cached(
                "INSERT INTO contacts (tenant, contact_id, group_id, ended_at, updated_at, record,
                        status, first_seen, diagnosed_at, outcome, failure, reason, diagnosis)
                 VALUES (?1, ?2, ?2, ?3, NULL, NULL, 'diagnosed', ?4, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(sql("diagnosis write"))?
            .execute(params![
                tenant,
                d.contact_id,
                ts(d.evidence.contact_ended_at),
                now,
                d.outcome.as_str(),
                failure,
                d.reason.as_str(),
                text
            ])
            .map_err(sql("diagnosis write"))?;
        }
        tx.prepare_cached("INSERT INTO totals (tenant, outcome, failure, reason, count) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (tenant, outcome, failure, reason) DO UPDATE SET count = count + 1")
        .map_err(sql("totals increment"))?
        .execute(params![tenant, d.outcome.as_str(), failure.unwrap_or(""), d.reason.as_str()])
        .map_err(sql("totals increment"))?;
    }
    // The other legs of the group are settled by the group's diagnosis, whichever cycle made it.
    // `INDEXED BY`: left to itself SQLite picks the (tenant, status) index here and walks every
    // pending row for each diagnosis, which made a catch-up quadratic (issue 5).
    tx.prepare_cached("UPDATE contacts INDEXED BY contacts_by_group SET status = 'diagnosed',
                diagnosed_at = (SELECT diagnosed_at FROM contacts WHERE tenant = ?1 AND contact_id = ?2)
         WHERE tenant = ?1 AND group_id = ?2 AND status = 'pending'")
        .map_err(sql("group settle"))?
        .execute(params![tenant, d.contact_id])
        .map_err(sql("group settle"))?;
    Ok(!already)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diagnosis::Evidence;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).unwrap()
    }

    fn contact(id: i64, master: i64, updated_minute: u32) -> CompletedContact {
        serde_json::from_value(serde_json::json!({
            "contactId": id,
            "masterContactId": master,
            "contactStartDate": "2026-03-01T10:00:00Z",
            "lastUpdateTime": at(updated_minute).to_rfc3339(),
            "fromAddress": "+15551230000",
            "pointOfContactId": 3189288,
            "skillId": 4001,
            "agentId": 0,
            "inQueueSeconds": 0,
            "totalDurationSeconds": 120,
        }))
        .unwrap()
    }

    fn diagnosis(id: i64, reason: Reason) -> Diagnosis {
        Diagnosis {
            contact_id: id,
            outcome: reason.outcome(),
            failure: reason.failure(),
            reason,
            rule: reason.rule(),
            summary: reason.explain().into(),
            evidence: Evidence {
                contact_ids: vec![id],
                bot_entry: true,
                session_id: Some("s-1".into()),
                match_kind: None,
                carried_contact_id: Some(id.to_string()),
                contact_started_at: at(0),
                contact_ended_at: at(2),
                escalated_at: Some(at(1)),
                queued_at: None,
                queue_skill_id: None,
                signal_to_queue_seconds: None,
                queue_wait_seconds: None,
                bot_turn_seconds: vec![0.4],
                decided_by: vec![],
                timeline: vec![],
            },
        }
    }

    fn session(id: &str, minute: u32) -> Session {
        serde_json::from_value(serde_json::json!({
            "sessionId": id, "startedAt": at(minute).to_rfc3339(), "userId": "+15551230000",
            "handoverEscalations": 1, "projectId": "p", "endpointName": "vg"
        }))
        .unwrap()
    }

    fn conversation(session: &str, minute: u32) -> Conversation {
        serde_json::from_value(serde_json::json!({
            "sessionId": session, "timestamp": at(minute).to_rfc3339(), "type": "input",
            "inHandoverRequest": true,
            "inputData": "{\"payload\":{\"sip\":{\"headers\":{\"X-InContact-MasterId\":\"1001\"}}}}"
        }))
        .unwrap()
    }

    fn analytics(session: &str, minute: u32) -> Analytics {
        serde_json::from_value(serde_json::json!({
            "_id": format!("a-{session}-{minute}"), "sessionId": session,
            "timestamp": at(minute).to_rfc3339(), "executionTime": "350", "custom1": "1001"
        }))
        .unwrap()
    }

    fn log(session: &str, minute: u32) -> LogEntry {
        serde_json::from_value(serde_json::json!({
            "timestamp": at(minute).to_rfc3339(), "type": "info", "meta": {"sessionId": session},
            "msg": "handoverToCXone: Signaled CXone with: 'Escalate' for contactId: 1002"
        }))
        .unwrap()
    }

    fn open_file() -> (tempfile::TempDir, PathBuf, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        (dir, path, store)
    }

    /// Ripe batches come whole group by whole group, in order of the group's last end, each
    /// once across batches, and never a group that ended after the limit or is not pending.
    #[test]
    fn ripe_pending_pages_whole_groups_by_last_end() {
        let (_dir, _path, mut store) = open_file();
        let with_duration = |id: i64, master: i64, seconds: f64| {
            let mut c = contact(id, master, 3);
            c.total_duration_seconds = seconds;
            c
        };
        // Group 1001 ends at 10:10 (its leg runs longest), 2001 at 10:05, 3001 at 10:30, and
        // 4001 (10:01) is diagnosed already.
        let contacts = [
            with_duration(1001, 0, 120.0),
            with_duration(1002, 1001, 600.0),
            with_duration(2001, 0, 300.0),
            with_duration(3001, 0, 1800.0),
            with_duration(4001, 0, 60.0),
        ];
        let commit = CycleCommit {
            contacts: &contacts,
            ..CycleCommit::empty(at(40))
        };
        store.commit_cycle("acme", commit).unwrap();
        let done = [diagnosis(4001, Reason::BotCompleted)];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    diagnoses: &done,
                    ..CycleCommit::empty(at(41))
                },
            )
            .unwrap();
        let ids = |c: &[CompletedContact]| c.iter().map(|c| c.contact_id).collect::<Vec<_>>();
        let (first, key) = store.ripe_pending("acme", at(20), None, 1).unwrap();
        assert_eq!(ids(&first), vec![2001]);
        let (second, key) = store.ripe_pending("acme", at(20), key.as_ref(), 1).unwrap();
        assert_eq!(ids(&second), vec![1001, 1002]);
        let (third, key) = store.ripe_pending("acme", at(20), key.as_ref(), 1).unwrap();
        assert!(third.is_empty() && key.is_none());
        let (all, _) = store.ripe_pending("acme", at(59), None, 10).unwrap();
        assert_eq!(ids(&all), vec![2001, 1001, 1002, 3001]);
        assert!(store
            .ripe_pending("other", at(59), None, 10)
            .unwrap()
            .0
            .is_empty());
    }

    /// Contacts, Cognigy records and cursors written by a cycle read back unchanged.
    #[test]
    fn cycle_round_trips_every_record_kind() {
        let (_dir, _path, mut store) = open_file();
        let contacts = [contact(1001, 0, 3), contact(1002, 1001, 3)];
        let sessions = [session("s-1", 0)];
        let conversations = [conversation("s-1", 1)];
        let analytics = [analytics("s-1", 1)];
        let logs = [log("s-1", 1)];
        let cursors = [("cxone", at(5), "skip=0".to_owned())];
        let commit = CycleCommit {
            contacts: &contacts,
            sessions: &sessions,
            conversations: &conversations,
            analytics: &analytics,
            logs: &logs,
            cursors: &cursors,
            ..CycleCommit::empty(at(5))
        };
        assert!(store.commit_cycle("acme", commit).unwrap().is_empty());
        assert_eq!(store.pending("acme").unwrap(), contacts.to_vec());
        assert_eq!(store.pending_count("acme").unwrap(), 2);
        assert!(store.pending("other").unwrap().is_empty());
        let set = store.cognigy_since("acme", at(0)).unwrap();
        assert_eq!(set.sessions, sessions.to_vec());
        assert_eq!(set.conversations, conversations.to_vec());
        assert_eq!(
            set.conversations[0].input_data.master_contact_id.as_deref(),
            Some("1001")
        );
        assert_eq!(set.analytics, analytics.to_vec());
        assert_eq!(set.logs, logs.to_vec());
        let later = store.cognigy_since("acme", at(1)).unwrap();
        assert!(later.sessions.is_empty());
        assert_eq!(later.conversations.len(), 1);
        assert_eq!(
            store.cursor("acme", "cxone").unwrap(),
            Some(Cursor {
                watermark: at(5),
                detail: "skip=0".into()
            })
        );
        assert_eq!(store.cursor("acme", "cognigy").unwrap(), None);
    }

    /// Re-reading a Cognigy record with the same key replaces it instead of duplicating it.
    #[test]
    fn cognigy_records_upsert_by_key() {
        let (_dir, _path, mut store) = open_file();
        let first = [session("s-1", 0)];
        let mut changed = session("s-1", 0);
        changed.handover_escalations = 2;
        let second = [changed.clone()];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    sessions: &first,
                    ..CycleCommit::empty(at(1))
                },
            )
            .unwrap();
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    sessions: &second,
                    ..CycleCommit::empty(at(2))
                },
            )
            .unwrap();
        assert_eq!(
            store.cognigy_since("acme", at(0)).unwrap().sessions,
            vec![changed]
        );
    }

    /// A pending contact's record is refreshed only by a newer record.
    #[test]
    fn pending_record_updates_only_when_newer() {
        let (_dir, _path, mut store) = open_file();
        let mut newer = contact(1001, 0, 4);
        newer.agent_id = 7;
        let mut older = contact(1001, 0, 2);
        older.agent_id = 9;
        for c in [contact(1001, 0, 3), newer.clone(), older] {
            let one = [c];
            store
                .commit_cycle(
                    "acme",
                    CycleCommit {
                        contacts: &one,
                        ..CycleCommit::empty(at(5))
                    },
                )
                .unwrap();
        }
        assert_eq!(store.pending("acme").unwrap(), vec![newer]);
    }

    /// A diagnosed contact read again stays diagnosed, and so does a late leg of its group.
    #[test]
    fn reupserting_a_diagnosed_contact_does_not_reset_it() {
        let (_dir, _path, mut store) = open_file();
        let contacts = [contact(1001, 0, 3)];
        let d = [diagnosis(1001, Reason::SignalRejected)];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &contacts,
                    diagnoses: &d,
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap();
        let again = [contact(1001, 0, 9), contact(1003, 1001, 9)];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &again,
                    ..CycleCommit::empty(at(10))
                },
            )
            .unwrap();
        assert_eq!(store.pending_count("acme").unwrap(), 0);
        assert!(store.pending("acme").unwrap().is_empty());
        let row = store.diagnosis(1001).unwrap().unwrap();
        assert_eq!(row.diagnosis, d[0]);
        assert_eq!(row.diagnosed_at, at(5));
        assert_eq!(row.tenant, "acme");
    }

    /// Pending lists every contact of a group with a pending contact, including diagnosed legs.
    #[test]
    fn pending_includes_whole_group() {
        let (_dir, _path, mut store) = open_file();
        let contacts = [
            contact(1001, 0, 3),
            contact(1002, 1001, 3),
            contact(2001, 0, 3),
        ];
        let d = [diagnosis(2001, Reason::BotCompleted)];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &contacts,
                    diagnoses: &d,
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap();
        let ids: Vec<i64> = store
            .pending("acme")
            .unwrap()
            .iter()
            .map(|c| c.contact_id)
            .collect();
        assert_eq!(ids, vec![1001, 1002]);
    }

    /// A leg's contact id finds its group's diagnosis; an ignored contact leaves the pending set
    /// without being counted.
    #[test]
    fn leg_lookup_and_ignored_contacts() {
        let (_dir, _path, mut store) = open_file();
        let contacts = [
            contact(1001, 0, 3),
            contact(1002, 1001, 3),
            contact(3001, 0, 3),
        ];
        let d = [diagnosis(1001, Reason::SignalRejected)];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &contacts,
                    diagnoses: &d,
                    ignored: &[3001],
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap();
        let by_leg = store
            .diagnosis(1002)
            .unwrap()
            .expect("the leg finds its group");
        assert_eq!(by_leg.diagnosis.contact_id, 1001);
        assert!(store.diagnosis(3001).unwrap().is_none());
        assert_eq!(store.pending_count("acme").unwrap(), 0);
        let counted: u64 = store.totals().unwrap().iter().map(|r| r.count).sum();
        assert_eq!(counted, 1);
    }

    /// The same diagnosis committed twice (a repeated cycle) is returned and counted once.
    #[test]
    fn committing_a_diagnosis_twice_counts_once() {
        let (_dir, _path, mut store) = open_file();
        let contacts = [contact(1001, 0, 3), contact(1002, 1001, 3)];
        let d = [
            diagnosis(1001, Reason::SignalRejected),
            diagnosis(1001, Reason::SignalRejected),
        ];
        let first = store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &contacts,
                    diagnoses: &d,
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap();
        assert_eq!(first, vec![d[0].clone()]);
        let second = store
            .commit_cycle(
                "acme",
                CycleCommit {
                    diagnoses: &d[..1],
                    ..CycleCommit::empty(at(6))
                },
            )
            .unwrap();
        assert!(second.is_empty());
        assert_eq!(
            store.totals().unwrap(),
            vec![TotalRow {
                tenant: "acme".into(),
                outcome: Outcome::Failed,
                failure: Some(Failure::InvalidHandover),
                reason: Reason::SignalRejected,
                count: 1,
            }]
        );
        assert_eq!(store.pending_count("acme").unwrap(), 0);
    }

    /// A diagnosis for a master contact never read itself is still recorded and counted.
    #[test]
    fn diagnosis_without_contact_row_is_recorded() {
        let (_dir, _path, mut store) = open_file();
        let d = [diagnosis(5005, Reason::NoBotSession)];
        let new = store
            .commit_cycle(
                "acme",
                CycleCommit {
                    diagnoses: &d,
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(store.diagnosis(5005).unwrap().unwrap().diagnosis, d[0]);
        assert_eq!(store.totals().unwrap()[0].count, 1);
    }

    /// Dropping the store and reopening the file (a restart) keeps every table's content.
    #[test]
    fn reopen_after_drop_keeps_everything() {
        let (_dir, path, mut store) = open_file();
        let contacts = [contact(1001, 0, 3), contact(2001, 0, 3)];
        let sessions = [session("s-1", 0)];
        let d = [diagnosis(2001, Reason::AgentAnswered)];
        let cursors = [("cognigy_sessions", at(4), String::new())];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &contacts,
                    sessions: &sessions,
                    diagnoses: &d,
                    cursors: &cursors,
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.pending("acme").unwrap(), vec![contacts[0].clone()]);
        assert_eq!(
            store.cognigy_since("acme", at(0)).unwrap().sessions,
            sessions.to_vec()
        );
        assert_eq!(store.diagnosis(2001).unwrap().unwrap().diagnosis, d[0]);
        assert_eq!(store.totals().unwrap().len(), 1);
        assert_eq!(
            store
                .cursor("acme", "cognigy_sessions")
                .unwrap()
                .unwrap()
                .watermark,
            at(4)
        );
        // After the restart the same diagnosis is still not counted again.
        let again = store
            .commit_cycle(
                "acme",
                CycleCommit {
                    diagnoses: &d,
                    ..CycleCommit::empty(at(6))
                },
            )
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(store.totals().unwrap()[0].count, 1);
    }

    /// A cycle whose last write fails leaves no contact, diagnosis, total or cursor behind.
    #[test]
    fn failed_cycle_leaves_nothing() {
        let (_dir, _path, mut store) = open_file();
        // Injected failure: the cursor write (the transaction's last step) is refused.
        store
            .conn
            .execute_batch(
                "CREATE TRIGGER refuse_cursor BEFORE INSERT ON cursors
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let contacts = [contact(1001, 0, 3), contact(2001, 0, 3)];
        let sessions = [session("s-1", 0)];
        let d = [diagnosis(2001, Reason::AgentAnswered)];
        let cursors = [("cxone", at(4), String::new())];
        let err = store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &contacts,
                    sessions: &sessions,
                    diagnoses: &d,
                    cursors: &cursors,
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("cursor write"), "{err}");
        assert!(store.pending("acme").unwrap().is_empty());
        assert!(store
            .cognigy_since("acme", at(0))
            .unwrap()
            .sessions
            .is_empty());
        assert!(store.diagnosis(2001).unwrap().is_none());
        assert!(store.totals().unwrap().is_empty());
        assert!(store.cursor("acme", "cxone").unwrap().is_none());
    }

    /// Prune deletes old diagnosed contacts and Cognigy records, keeps pending ones and totals.
    #[test]
    fn prune_keeps_pending_rows_and_totals() {
        let (_dir, _path, mut store) = open_file();
        let contacts = [contact(1001, 0, 3), contact(2001, 0, 3)];
        let sessions = [session("s-1", 0)];
        let d = [diagnosis(2001, Reason::AgentAnswered)];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    contacts: &contacts,
                    sessions: &sessions,
                    diagnoses: &d,
                    ..CycleCommit::empty(at(5))
                },
            )
            .unwrap();
        assert_eq!(
            store.prune(at(4)).unwrap(),
            1,
            "only the session is older than 10:04"
        );
        assert_eq!(
            store.prune(at(30)).unwrap(),
            1,
            "then the diagnosed contact"
        );
        assert_eq!(store.pending("acme").unwrap(), vec![contacts[0].clone()]);
        assert!(store.diagnosis(2001).unwrap().is_none());
        assert_eq!(store.totals().unwrap()[0].count, 1);
    }

    /// Diagnoses are listed newest first and filtered by every parameter.
    #[test]
    fn diagnoses_filter_and_order() {
        let (_dir, _path, mut store) = open_file();
        for (minute, d) in [
            (5, diagnosis(1, Reason::SignalRejected)),
            (6, diagnosis(2, Reason::NotQueued)),
            (7, diagnosis(3, Reason::AgentAnswered)),
        ] {
            let one = [d];
            store
                .commit_cycle(
                    "acme",
                    CycleCommit {
                        diagnoses: &one,
                        ..CycleCommit::empty(at(minute))
                    },
                )
                .unwrap();
        }
        let one = [diagnosis(4, Reason::NotQueued)];
        store
            .commit_cycle(
                "beta",
                CycleCommit {
                    diagnoses: &one,
                    ..CycleCommit::empty(at(8))
                },
            )
            .unwrap();
        let ids = |f: DiagnosisFilter| -> Vec<i64> {
            store
                .diagnoses(&f)
                .unwrap()
                .iter()
                .map(|r| r.diagnosis.contact_id)
                .collect()
        };
        assert_eq!(
            ids(DiagnosisFilter {
                limit: 10,
                ..Default::default()
            }),
            vec![4, 3, 2, 1]
        );
        assert_eq!(
            ids(DiagnosisFilter {
                limit: 2,
                ..Default::default()
            }),
            vec![4, 3]
        );
        assert_eq!(
            ids(DiagnosisFilter {
                tenant: Some("acme".into()),
                limit: 10,
                ..Default::default()
            }),
            vec![3, 2, 1]
        );
        assert_eq!(
            ids(DiagnosisFilter {
                outcome: Some(Outcome::Failed),
                limit: 10,
                ..Default::default()
            }),
            vec![4, 2, 1]
        );
        assert_eq!(
            ids(DiagnosisFilter {
                failure: Some(Failure::Timeout),
                limit: 10,
                ..Default::default()
            }),
            vec![4, 2]
        );
        assert_eq!(
            ids(DiagnosisFilter {
                reason: Some(Reason::SignalRejected),
                limit: 10,
                ..Default::default()
            }),
            vec![1]
        );
        assert_eq!(
            ids(DiagnosisFilter {
                since: Some(at(6)),
                limit: 10,
                ..Default::default()
            }),
            vec![4, 3, 2]
        );
    }

    /// A page commit reports the OData records it stored for the first time, not the ones it
    /// stored again.
    #[test]
    fn commit_page_reports_first_seen_records() {
        let (_dir, _path, mut store) = open_file();
        let first = [session("s-1", 0), session("s-2", 1)];
        let seen = store
            .commit_page(
                "acme",
                CycleCommit {
                    sessions: &first,
                    ..CycleCommit::empty(at(3))
                },
            )
            .unwrap();
        assert_eq!(seen, vec![first[0].started_at, first[1].started_at]);
        let again = [session("s-2", 1), session("s-3", 2)];
        let seen = store
            .commit_page(
                "acme",
                CycleCommit {
                    sessions: &again,
                    ..CycleCommit::empty(at(4))
                },
            )
            .unwrap();
        assert_eq!(seen, vec![again[1].started_at]);
    }

    /// A source's outage starts at its first failure, survives a restart, and ends with a success.
    #[test]
    fn source_outage_is_measured_from_the_first_failure() {
        let (_dir, path, mut store) = open_file();
        assert_eq!(
            store
                .record_source_health("acme", "cognigy", true, at(1))
                .unwrap(),
            Some(at(1))
        );
        assert_eq!(
            store
                .record_source_health("acme", "cognigy", true, at(2))
                .unwrap(),
            Some(at(1))
        );
        assert_eq!(
            store
                .record_source_health("acme", "cxone", false, at(2))
                .unwrap(),
            None
        );
        drop(store);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(
            store
                .record_source_health("acme", "cognigy", true, at(3))
                .unwrap(),
            Some(at(1))
        );
        assert_eq!(
            store
                .record_source_health("beta", "cognigy", true, at(3))
                .unwrap(),
            Some(at(3))
        );
        assert_eq!(
            store
                .record_source_health("acme", "cognigy", false, at(4))
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .record_source_health("acme", "cognigy", true, at(5))
                .unwrap(),
            Some(at(5))
        );
    }

    /// A file store runs in WAL mode; `:memory:` opens too.
    #[test]
    fn wal_mode_is_on() {
        let (_dir, _path, store) = open_file();
        assert_eq!(store.journal_mode().unwrap(), "wal");
        let memory = Store::open(":memory:").unwrap();
        assert_eq!(memory.pending_count("acme").unwrap(), 0);
    }

    /// A state file from a newer schema is refused with an error naming the versions.
    #[test]
    fn newer_schema_is_refused() {
        let (_dir, path, store) = open_file();
        store
            .conn
            .execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(store);
        let err = Store::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema 99"), "{err}");
    }

    /// A second store on the same file is refused naming the lock file and our pid; dropping the
    /// first releases the lock.
    #[test]
    fn second_opener_is_refused_until_the_first_closes() {
        let (_dir, path, store) = open_file();
        let err = Store::open(&path).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Locked { .. }), "{message}");
        assert!(
            message.contains(&lock_path(&path).display().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(store);
        Store::open(&path).unwrap();
    }

    /// A file that is not SQLite, and another program's SQLite database, are refused naming the
    /// path, and nothing is written into the foreign database.
    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "not a database, just some text that is long enough ".repeat(20),
        )
        .unwrap();
        let err = Store::open(&text).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        assert!(err.contains("not an SQLite database"), "{err}");
        assert!(check_path(&text).is_err());

        let other = dir.path().join("other.db");
        let conn = Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (1);")
            .unwrap();
        drop(conn);
        let err = Store::open(&other).unwrap_err().to_string();
        assert!(err.contains("other.db"), "{err}");
        assert!(err.contains("another program (tables invoices"), "{err}");
        let check = check_path(&other).unwrap_err().to_string();
        assert!(check.contains("another program"), "{check}");
        let conn = Connection::open(&other).unwrap();
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 1, "the foreign database was written into");
    }

    /// `check_path` accepts a new file, our own file (also while it is open) and `:memory:`, and
    /// refuses a directory that does not exist or is a file, naming it.
    #[test]
    fn check_path_checks_the_directory_and_the_file() {
        let (dir, path, store) = open_file();
        check_path(&path).unwrap();
        drop(store);
        check_path(&path).unwrap();
        check_path(&dir.path().join("new.db")).unwrap();
        check_path(Path::new(":memory:")).unwrap();
        let missing = dir.path().join("nope").join("state.db");
        let err = check_path(&missing).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = check_path(&file.join("state.db")).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("check"))
            .collect();
        assert!(leftovers.is_empty(), "probe file left behind");
    }
}
