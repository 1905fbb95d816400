//! Which shard polls which tenant, as recorded in the state file, and the hand-over of a tenant's
//! state from one shard's state file to another's when the shard count changes.
//!
//! A tenant belongs to the shard its stable hash falls on ([`crate::daemon::tenant_shard`]:
//! FNV-1a of the name, the same in every process and Rust version). Each state file records,
//! per tenant, the shard (and shard count) that polls it from that file, in a `tenant_shards`
//! table. At start-up [`claim_tenants`] claims the tenants of this shard's selection that the
//! file does not know yet, keeps those it already owns (a changed shard count with the same
//! ordinal is the same continuous owner), and refuses those the file says another shard owns
//! (their state was handed over, or this volume belongs to another ordinal) unless the daemon
//! was told to take them over (`--shard.takeover`). [`hand_over`] copies one tenant's cursors,
//! contacts, records and totals into the new owner's state file and marks the old file's row
//! as owned by the new shard, so the tenant continues where it stopped, counted once.
//!
//! This module does not select tenants from the configuration (the daemon does, by hash) and
//! does not poll; it only reads and writes the ownership rows and copies state between files.

use crate::labels::label_enum;
use crate::store::{Store, StoreError};
use chrono::{SecondsFormat, Utc};
use rusqlite::{params, OptionalExtension};
use std::path::Path;

/// The ownership table (created on first use; older state files simply lack it).
const OWNERSHIP_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenant_shards (
    tenant TEXT PRIMARY KEY,
    shard INTEGER NOT NULL,
    total_shards INTEGER NOT NULL,
    since TEXT NOT NULL
);
";

/// The tables that hold a tenant's state, all keyed by a `tenant` column (store.rs SCHEMA).
const TENANT_TABLES: &[&str] = &[
    "cursors",
    "contacts",
    "cognigy_records",
    "source_outages",
    "totals",
];

/// This process's place among the shards, from `--shard`, `--total-shards`, `--shard.takeover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub shard: u32,
    pub total: u32,
    /// Claim tenants whose state says another shard owns them (after a manual hand-over check).
    pub takeover: bool,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            shard: 0,
            total: 1,
            takeover: false,
        }
    }
}

label_enum!(
    /// What this shard does with one tenant of its selection (`state` label of
    /// `handover_shard_tenant`).
    pub TenantState {
        /// Owned and polled by this shard.
        Polling => "polling",
        /// Not polled: this state file says another shard owns it.
        Refused => "refused",
    }
);

/// The shard (of how many) a state file says owns a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub shard: u32,
    pub total: u32,
}

/// One tenant of this shard's selection after [`claim_tenants`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub tenant: String,
    pub state: TenantState,
    /// The owner the state file named before this start (`None`: the tenant was new to it).
    pub previous: Option<Owner>,
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { what, source }
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The owner `store` records for `tenant`, if any.
pub fn owner(store: &Store, tenant: &str) -> Result<Option<Owner>, StoreError> {
    let conn = store.connection();
    conn.execute_batch(OWNERSHIP_SCHEMA)
        .map_err(sql("ownership table"))?;
    conn.query_row(
        "SELECT shard, total_shards FROM tenant_shards WHERE tenant = ?1",
        [tenant],
        |r| {
            Ok(Owner {
                shard: r.get(0)?,
                total: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(sql("ownership read"))
}

/// Records `owner` as the owner of `tenant` in `store`.
pub fn record_owner(store: &Store, tenant: &str, owner: Owner) -> Result<(), StoreError> {
    let conn = store.connection();
    conn.execute_batch(OWNERSHIP_SCHEMA)
        .map_err(sql("ownership table"))?;
    conn.execute(
        "INSERT INTO tenant_shards (tenant, shard, total_shards, since) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant) DO UPDATE SET shard = excluded.shard,
             total_shards = excluded.total_shards, since = excluded.since",
        params![tenant, owner.shard, owner.total, now_text()],
    )
    .map_err(sql("ownership write"))?;
    Ok(())
}

/// Decides, for each tenant of this shard's selection, whether this process polls it, and records
/// the claims: a tenant new to the state file, or one the file says this ordinal owns, is
/// (re)claimed for `placement`; one the file says another ordinal owns is refused unless
/// `placement.takeover`.
pub fn claim_tenants(
    store: &Store,
    placement: &Placement,
    tenants: &[String],
) -> Result<Vec<Claim>, StoreError> {
    let mine = Owner {
        shard: placement.shard,
        total: placement.total,
    };
    let mut claims = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let previous = owner(store, tenant)?;
        let state = match previous {
            Some(other) if other.shard != mine.shard && !placement.takeover => TenantState::Refused,
            _ => TenantState::Polling,
        };
        if state == TenantState::Polling && previous != Some(mine) {
            record_owner(store, tenant, mine)?;
        }
        claims.push(Claim {
            tenant: tenant.clone(),
            state,
            previous,
        });
    }
    Ok(claims)
}

/// What [`hand_over`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOverReport {
    /// Rows copied per table, in [`TENANT_TABLES`] order.
    pub rows: Vec<(&'static str, usize)>,
}

/// Why a hand-over was refused.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    #[error(
        "tenant {tenant} belongs to shard {expected} of {total} by its hash, not shard {shard}; \
         hand it to shard {expected}"
    )]
    WrongShard {
        tenant: String,
        shard: u32,
        total: u32,
        expected: u32,
    },
    #[error(
        "--shard {shard} must be below --total-shards {total} (and --total-shards at least 1)"
    )]
    BadShard { shard: u32, total: u32 },
    #[error("--from and --to are the same state file {0}")]
    SameFile(String),
    #[error("state file {path} has no state for tenant {tenant}; nothing to hand over")]
    NothingToHandOver { path: String, tenant: String },
    #[error(
        "state file {path} already holds state for tenant {tenant} ({rows} row(s) in {table}); \
         refusing to merge two histories of one tenant"
    )]
    TargetHasState {
        path: String,
        tenant: String,
        table: &'static str,
        rows: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Moves `tenant`'s state (cursors, contacts, Cognigy records, outages, totals) from the state
/// file `from` to the state file `to`, records in `to` that shard `shard` of `total` owns it, and
/// records the same in `from` so that a daemon on `from` refuses it from then on. Both files are
/// locked while this runs (no daemon may hold either). The rows stay in `from` too (nothing is
/// deleted); only the ownership row there changes.
pub fn hand_over(
    from: &Path,
    to: &Path,
    tenant: &str,
    shard: u32,
    total: u32,
) -> Result<HandOverReport, HandOverError> {
    if total == 0 || shard >= total {
        return Err(HandOverError::BadShard { shard, total });
    }
    let expected = crate::daemon::tenant_shard(tenant, total);
    if expected != shard {
        return Err(HandOverError::WrongShard {
            tenant: tenant.to_owned(),
            shard,
            total,
            expected,
        });
    }
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => from == to,
    };
    if same {
        return Err(HandOverError::SameFile(from.display().to_string()));
    }
    let source = Store::open(from)?;
    let target = Store::open(to)?;
    let conn = target.connection();
    conn.execute("ATTACH DATABASE ?1 AS handed", [from.display().to_string()])
        .map_err(sql("attach the old state file"))?;
    let copied = copy_tenant(conn, from, to, tenant, Owner { shard, total });
    let _ = conn.execute_batch("DETACH DATABASE handed");
    let report = copied?;
    // Only once the new owner's file holds the state: the old file now says it is owned elsewhere.
    record_owner(&source, tenant, Owner { shard, total })?;
    Ok(report)
}

/// Copies `tenant`'s rows from the attached `handed` database into `main` in one transaction,
/// with the ownership row for `owner`; refuses when `main` already holds state of the tenant.
fn copy_tenant(
    conn: &rusqlite::Connection,
    from: &Path,
    to: &Path,
    tenant: &str,
    owner: Owner,
) -> Result<HandOverReport, HandOverError> {
    for table in TENANT_TABLES {
        let existing: usize = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM main.{table} WHERE tenant = ?1"),
                [tenant],
                |r| r.get(0),
            )
            .map_err(sql("hand-over target check"))?;
        if existing > 0 {
            return Err(HandOverError::TargetHasState {
                path: to.display().to_string(),
                tenant: tenant.to_owned(),
                table,
                rows: existing,
            });
        }
    }
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(sql("hand-over transaction"))?;
    match copy_rows(conn, from, tenant, owner) {
        Ok(report) => {
            conn.execute_batch("COMMIT")
                .map_err(sql("hand-over commit"))?;
            Ok(report)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The statements of [`copy_tenant`]'s transaction.
fn copy_rows(
    conn: &rusqlite::Connection,
    from: &Path,
    tenant: &str,
    owner: Owner,
) -> Result<HandOverReport, HandOverError> {
    let mut rows = Vec::new();
    let mut any = 0;
    for table in TENANT_TABLES {
        let n = conn
            .execute(
                &format!("INSERT INTO main.{table} SELECT * FROM handed.{table} WHERE tenant = ?1"),
                [tenant],
            )
            .map_err(sql("hand-over copy"))?;
        any += n;
        rows.push((*table, n));
    }
    if any == 0 {
        return Err(HandOverError::NothingToHandOver {
            path: from.display().to_string(),
            tenant: tenant.to_owned(),
        });
    }
    conn.execute_batch(OWNERSHIP_SCHEMA)
        .map_err(sql("ownership table"))?;
    conn.execute(
        "INSERT INTO main.tenant_shards (tenant, shard, total_shards, since)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant) DO UPDATE SET shard = excluded.shard,
             total_shards = excluded.total_shards, since = excluded.since",
        params![tenant, owner.shard, owner.total, now_text()],
    )
    .map_err(sql("ownership write"))?;
    Ok(HandOverReport { rows })
}

/// A host name that does not end in a shard ordinal (`--shard.from-hostname`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--shard.from-hostname: host name {0:?} does not end in -N (a StatefulSet pod's ordinal, \
     e.g. handover-exporter-2)"
)]
pub struct HostnameShardError(pub String);

/// The shard of a StatefulSet pod from its host name, the pod name `<set>-<ordinal>`.
pub fn shard_from_hostname(hostname: &str) -> Result<u32, HostnameShardError> {
    let hostname = hostname.trim();
    // A pod's host name is its name; a FQDN would only add `.<service>...` after it.
    let name = hostname.split('.').next().unwrap_or(hostname);
    name.rsplit_once('-')
        .filter(|(set, _)| !set.is_empty())
        .and_then(|(_, ordinal)| {
            (!ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
                .then(|| ordinal.parse().ok())
                .flatten()
        })
        .ok_or_else(|| HostnameShardError(hostname.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A StatefulSet pod's host name gives its ordinal; anything else is refused naming it.
    #[test]
    fn shard_from_hostname_takes_the_pod_ordinal() {
        assert_eq!(shard_from_hostname("handover-exporter-0"), Ok(0));
        assert_eq!(shard_from_hostname("handover-exporter-12\n"), Ok(12));
        assert_eq!(
            shard_from_hostname("handover-exporter-2.handover-exporter.ns.svc"),
            Ok(2)
        );
        for bad in ["laptop", "handover-exporter-", "-3", "web-7f9c8", ""] {
            assert_eq!(
                shard_from_hostname(bad),
                Err(HostnameShardError(bad.to_owned()))
            );
        }
        assert_eq!(
            shard_from_hostname("laptop").unwrap_err().to_string(),
            "--shard.from-hostname: host name \"laptop\" does not end in -N (a StatefulSet \
             pod's ordinal, e.g. handover-exporter-2)"
        );
    }

    /// A new tenant is claimed, an owned one kept across a changed shard count, one owned by
    /// another ordinal refused, and taken over only when told.
    #[test]
    fn claims_follow_the_recorded_owner() {
        let store = Store::open(":memory:").expect("store");
        let names = vec!["acme".to_owned(), "globex".to_owned()];
        record_owner(&store, "globex", Owner { shard: 2, total: 3 }).expect("record");
        let placement = Placement {
            shard: 1,
            total: 3,
            takeover: false,
        };
        let claims = claim_tenants(&store, &placement, &names).expect("claims");
        assert_eq!(claims[0].state, TenantState::Polling);
        assert_eq!(claims[0].previous, None);
        assert_eq!(claims[1].state, TenantState::Refused);
        assert_eq!(
            owner(&store, "globex").expect("owner"),
            Some(Owner { shard: 2, total: 3 })
        );
        let grown = Placement {
            total: 4,
            ..placement
        };
        let claims = claim_tenants(&store, &grown, &names[..1]).expect("claims");
        assert_eq!(claims[0].state, TenantState::Polling);
        assert_eq!(
            owner(&store, "acme").expect("owner"),
            Some(Owner { shard: 1, total: 4 })
        );
        let told = Placement {
            takeover: true,
            ..placement
        };
        let claims = claim_tenants(&store, &told, &names).expect("claims");
        assert_eq!(claims[1].state, TenantState::Polling);
        assert_eq!(
            owner(&store, "globex").expect("owner"),
            Some(Owner { shard: 1, total: 3 })
        );
    }

    /// A hand-over to the wrong shard for the tenant's hash is refused naming the right one.
    #[test]
    fn hand_over_to_the_wrong_shard_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let expected = crate::daemon::tenant_shard("acme", 3);
        let wrong = (expected + 1) % 3;
        let error = hand_over(
            &dir.path().join("a.db"),
            &dir.path().join("b.db"),
            "acme",
            wrong,
            3,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "tenant acme belongs to shard {expected} of 3 by its hash, not shard {wrong}; \
                 hand it to shard {expected}"
            )
        );
    }
}
