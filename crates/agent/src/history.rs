//! Sync history: one [`Entry`] per reconcile that applied (or tried to apply) a
//! revision, stored in a redb database so it survives restarts and crashes.
//!
//! Entries are JSON values keyed by id in one table; a second table indexes
//! `(app, id)` so per-app listing is a range scan. Every [`History::record`] is a
//! single durable transaction: after it returns, the entry survives `SIGKILL` and
//! power loss, and a crash mid-write leaves the previous state intact.
//!
//! The history is a record, not the state the agent acts on, so damage costs history
//! only: a database file redb finds corrupt is moved aside to
//! `history.redb.corrupt-<UTC timestamp>` (with a warning naming both paths) and a fresh
//! one is started; an entry that does not decode is skipped when listing an app's
//! history, logged once and counted in the counter given to
//! [`History::count_corrupt_entries`] (`ferry_history_corrupt_entries_total`).
//!
//! Apps are named `namespace/name` ([`ferry_model::AppKey`]). Earlier versions named
//! them by their bare name; an app's entries under its bare name are moved to its full
//! name (index and each entry's `app`) the first time the app records or looks up its last
//! success, i.e. on its first sync — the first app of that name to sync claims them, as
//! with inventories. Listing never moves entries (a reader of another namespace's app of
//! that name does not get them).
//!
//! The calls block on disk I/O (an `fsync` per record); call them from
//! `spawn_blocking` or accept a few milliseconds of blocking.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use ferry_api::{HistoryEntry as Entry, Outcome, Trigger};
use prometheus_client::metrics::counter::Counter;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::warn;

/// Most entries kept per app; recording one more removes the oldest.
pub const MAX_PER_APP: usize = 200;

/// File name of the database inside the history directory.
const FILE_NAME: &str = "history.redb";

/// Entry id → JSON-encoded [`Entry`].
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// `(app, id)` → nothing: the per-app index.
const BY_APP: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_app");

/// An error reading or writing the history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The history directory could not be created.
    #[error("history directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A corrupt database file could not be moved aside.
    #[error("moving the corrupt history database {path} aside to {aside}: {source}")]
    MoveAside {
        /// The database file.
        path: PathBuf,
        /// Where it was to go.
        aside: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database failed (open, transaction, storage or commit).
    #[error("history database: {0}")]
    Db(#[from] redb::Error),
    /// An entry could not be encoded as JSON.
    #[error("encoding history entry: {0}")]
    Encode(serde_json::Error),
    /// A stored entry is not valid JSON for [`Entry`].
    #[error("history entry {id} is corrupt: {source}")]
    Corrupt {
        /// The entry's id.
        id: u64,
        /// The decoding error.
        source: serde_json::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for HistoryError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl HistoryError {
    /// Whether the database file itself is damaged (not merely busy or unreachable).
    fn is_corrupt_file(&self) -> bool {
        let storage = match self {
            Self::Db(redb::Error::Corrupted(_)) => return true,
            Self::Db(redb::Error::Io(e)) => e,
            _ => return false,
        };
        matches!(
            storage.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
        )
    }
}

/// The sync history store. Cheap to clone; clones share one database.
#[derive(Clone)]
pub struct History {
    db: Arc<Database>,
    corrupt: Arc<Corrupt>,
}

/// The corrupt entries found so far, each counted once.
#[derive(Default)]
struct Corrupt {
    ids: Mutex<BTreeSet<u64>>,
    counter: Mutex<Counter>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// Opens (or creates) `dir/history.redb`, creating `dir` when missing. A database
    /// left by a crashed process is repaired on open; a corrupt one is moved aside and a
    /// fresh one started. Only one process may have it open.
    pub fn open(dir: &Path) -> Result<Self, HistoryError> {
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = match open_db(&path) {
            Err(e) if e.is_corrupt_file() => {
                let aside = aside_path(&path);
                std::fs::rename(&path, &aside).map_err(|source| HistoryError::MoveAside {
                    path: path.clone(),
                    aside: aside.clone(),
                    source,
                })?;
                warn!(
                    "history database {} is corrupt ({e}); moved it to {} and started a fresh one",
                    path.display(),
                    aside.display()
                );
                open_db(&path)?
            }
            other => other?,
        };
        Ok(Self {
            db: Arc::new(db),
            corrupt: Arc::default(),
        })
    }

    /// Counts corrupt entries, from now on, in `counter` (the agent's
    /// `ferry_history_corrupt_entries_total`); each entry counts once.
    pub fn count_corrupt_entries(self, counter: Counter) -> Self {
        *self
            .corrupt
            .counter
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = counter;
        self
    }

    /// Notes that entry `id` is corrupt: logged and counted the first time.
    fn found_corrupt(&self, error: &HistoryError, id: u64) {
        let new = self
            .corrupt
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        if new {
            warn!("{error}; skipped");
            self.corrupt
                .counter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .inc();
        }
    }

    /// Stores `entry` under a new id (its `id` field is ignored and overwritten),
    /// drops the app's oldest entries beyond [`MAX_PER_APP`], and commits durably.
    /// Returns the id.
    pub fn record(&self, mut entry: Entry) -> Result<u64, HistoryError> {
        let txn = self.db.begin_write()?;
        {
            let mut entries = txn.open_table(ENTRIES)?;
            let mut index = txn.open_table(BY_APP)?;
            claim_bare(&mut entries, &mut index, &entry.app)?;
            // Retention never removes an app's newest entry, so the largest id stays.
            entry.id = match entries.last()? {
                Some((id, _)) => id.value() + 1,
                None => 1,
            };
            let json = serde_json::to_vec(&entry).map_err(HistoryError::Encode)?;
            entries.insert(entry.id, json.as_slice())?;
            let app = entry.app.as_str();
            index.insert((app, entry.id), ())?;

            retain_newest(&mut entries, &mut index, app)?;
        }
        txn.commit()?;
        Ok(entry.id)
    }

    /// The app's newest `limit` entries, newest first.
    pub fn list(&self, app: &str, limit: usize) -> Result<Vec<Entry>, HistoryError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_newest_first(app, |entry| {
            out.push(entry);
            out.len() < limit
        })?;
        Ok(out)
    }

    /// The entry with this id, if it is (still) stored.
    pub fn get(&self, id: u64) -> Result<Option<Entry>, HistoryError> {
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let found = entries.get(id)?.map(|json| decode(id, json.value()));
        if let Some(Err(e)) = &found {
            self.found_corrupt(e, id);
        }
        found.transpose()
    }

    /// The app's newest entry whose outcome is [`Outcome::Succeeded`]. Called by a
    /// sync, it first claims the entries of the app's bare name (see the module docs).
    pub fn last_success(&self, app: &str) -> Result<Option<Entry>, HistoryError> {
        if self.has_bare(app)? {
            let txn = self.db.begin_write()?;
            {
                let mut entries = txn.open_table(ENTRIES)?;
                let mut index = txn.open_table(BY_APP)?;
                claim_bare(&mut entries, &mut index, app)?;
            }
            txn.commit()?;
        }
        let mut found = None;
        self.scan_newest_first(app, |entry| {
            if entry.outcome == Outcome::Succeeded {
                found = Some(entry);
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// Feeds the app's entries, newest first, to `visit` until it returns false; corrupt
    /// entries are skipped.
    fn scan_newest_first(
        &self,
        app: &str,
        mut visit: impl FnMut(Entry) -> bool,
    ) -> Result<(), HistoryError> {
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let index = txn.open_table(BY_APP)?;
        for item in index.range((app, 0)..=(app, u64::MAX))?.rev() {
            let id = item?.0.value().1;
            // Both tables change in one transaction, so the entry is present.
            let Some(json) = entries.get(id)? else {
                continue;
            };
            match decode(id, json.value()) {
                Ok(entry) => {
                    if !visit(entry) {
                        break;
                    }
                }
                Err(e) => self.found_corrupt(&e, id),
            }
        }
        Ok(())
    }
}

impl History {
    /// Whether entries are indexed under the bare name of the app `app`.
    fn has_bare(&self, app: &str) -> Result<bool, HistoryError> {
        let Some((_, bare)) = app.split_once('/') else {
            return Ok(false);
        };
        let txn = self.db.begin_read()?;
        let index = txn.open_table(BY_APP)?;
        Ok(index.range((bare, 0)..=(bare, u64::MAX))?.next().is_some())
    }
}

type Entries<'t> = redb::Table<'t, u64, &'static [u8]>;
type Index<'t> = redb::Table<'t, (&'static str, u64), ()>;

/// Moves the entries an earlier version indexed under the bare name of `app`
/// (`namespace/name`) to `app`, rewriting their `app` field (and their change set's, when
/// it was the bare name too); an entry that is not JSON moves unchanged, to be skipped
/// and counted when listed. Then keeps the newest [`MAX_PER_APP`]. Returns how many moved.
fn claim_bare(entries: &mut Entries, index: &mut Index, app: &str) -> Result<usize, HistoryError> {
    let Some((_, bare)) = app.split_once('/') else {
        return Ok(0);
    };
    let ids = index
        .range((bare, 0)..=(bare, u64::MAX))?
        .map(|item| item.map(|(key, _)| key.value().1))
        .collect::<Result<Vec<u64>, _>>()?;
    for &id in &ids {
        index.remove((bare, id))?;
        index.insert((app, id), ())?;
        let Some(stored) = entries.get(id)?.map(|json| json.value().to_vec()) else {
            continue;
        };
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&stored) else {
            continue;
        };
        for pointer in ["/app", "/changeset/app"] {
            if let Some(field) = value
                .pointer_mut(pointer)
                .filter(|f| f.as_str() == Some(bare))
            {
                *field = app.into();
            }
        }
        let json = serde_json::to_vec(&value).map_err(HistoryError::Encode)?;
        entries.insert(id, json.as_slice())?;
    }
    if !ids.is_empty() {
        warn!(
            app,
            "moved {} history entries recorded under the bare name {bare:?} by an earlier version",
            ids.len()
        );
        retain_newest(entries, index, app)?;
    }
    Ok(ids.len())
}

/// Drops the app's oldest entries beyond [`MAX_PER_APP`].
fn retain_newest(entries: &mut Entries, index: &mut Index, app: &str) -> Result<(), HistoryError> {
    let ids = index
        .range((app, 0)..=(app, u64::MAX))?
        .map(|item| item.map(|(key, _)| key.value().1))
        .collect::<Result<Vec<u64>, _>>()?;
    let excess = ids.len().saturating_sub(MAX_PER_APP);
    for &old in &ids[..excess] {
        index.remove((app, old))?;
        entries.remove(old)?;
    }
    Ok(())
}

/// The most memory redb may keep of the database's pages. redb's own default is 1 GiB,
/// and every page read or written stays resident up to it: the history is written once
/// per sync and read by people, so 1 MiB is enough.
const CACHE_BYTES: usize = 1 << 20;

/// Opens or creates the database at `path` and its tables.
fn open_db(path: &Path) -> Result<Database, HistoryError> {
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)?;
    // Create the tables up front so read transactions always find them.
    let txn = db.begin_write()?;
    txn.open_table(ENTRIES)?;
    txn.open_table(BY_APP)?;
    txn.commit()?;
    Ok(db)
}

/// Where a corrupt database at `path` goes: `<path>.corrupt-<UTC timestamp>`, with a
/// counter appended when that name is taken.
fn aside_path(path: &Path) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = format!("{}.corrupt-{stamp}", path.display());
    let mut aside = PathBuf::from(&base);
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    aside
}

fn decode(id: u64, json: &[u8]) -> Result<Entry, HistoryError> {
    serde_json::from_slice(json).map_err(|source| HistoryError::Corrupt { id, source })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ferry_model::{Action, Change, ChangeSet, ObjectRef};
    use serde_json::json;

    use super::*;

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "ferry-history-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entry(app: &str, n: u64, outcome: Outcome) -> Entry {
        let changeset = ChangeSet {
            app: app.into(),
            revision: format!("{n:040x}"),
            changes: vec![Change {
                subject: ObjectRef::new("apps/v1", "Deployment", Some("web"), "api"),
                action: Action::Update,
                diff: format!("-replicas: {n}\n+replicas: {}\n", n + 1),
                reason: None,
            }],
            ..Default::default()
        };
        Entry {
            id: 0,
            app: app.into(),
            revision: changeset.revision.clone(),
            message: format!("commit {n}"),
            trigger: Trigger::Poll,
            started_at: 1_700_000_000_000 + n as i64,
            duration_ms: n,
            outcome,
            error: (outcome == Outcome::Failed).then(|| "boom".to_string()),
            summary: changeset.summary(),
            changeset,
        }
    }

    fn ids(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn record_list_get() {
        let dir = TempDir::new();
        let h = History::open(&dir.0.join("nested")).unwrap();
        assert!(h.list("a", 10).unwrap().is_empty());
        assert_eq!(h.get(1).unwrap(), None);
        assert_eq!(h.last_success("a").unwrap(), None);

        let mut e = entry("a", 1, Outcome::Succeeded);
        e.id = 99; // ignored
        assert_eq!(h.record(e.clone()).unwrap(), 1);
        assert_eq!(h.record(entry("b", 2, Outcome::Succeeded)).unwrap(), 2);
        assert_eq!(h.record(entry("a", 3, Outcome::Failed)).unwrap(), 3);
        assert_eq!(h.record(entry("ab", 4, Outcome::Succeeded)).unwrap(), 4);

        assert_eq!(ids(&h.list("a", 10).unwrap()), [3, 1]);
        assert_eq!(ids(&h.list("a", 1).unwrap()), [3]);
        assert!(h.list("a", 0).unwrap().is_empty());
        assert_eq!(ids(&h.list("b", 10).unwrap()), [2]);
        assert!(h.list("", 10).unwrap().is_empty());

        e.id = 1;
        assert_eq!(h.get(1).unwrap(), Some(e));
        assert_eq!(h.get(3).unwrap().unwrap().error.as_deref(), Some("boom"));
        assert_eq!(h.get(5).unwrap(), None);
        assert_eq!(h.last_success("a").unwrap().unwrap().id, 1);
        assert_eq!(h.last_success("nope").unwrap(), None);
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(entry("a", 1, Outcome::Failed)).unwrap();
        assert_eq!(v["trigger"], "poll");
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["summary"]["update"], 1);
        assert_eq!(v["changeset"]["changes"][0]["action"], "update");
        let stored = ["poll", "webhook", "drift", "manual", "rollback", "startup"];
        for name in stored {
            let t: Trigger = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(serde_json::to_value(t).unwrap(), name);
        }
    }

    #[test]
    fn reopen_keeps_data() {
        let dir = TempDir::new();
        {
            let h = History::open(&dir.0).unwrap();
            let clone = h.clone();
            h.record(entry("a", 1, Outcome::Succeeded)).unwrap();
            clone.record(entry("a", 2, Outcome::Failed)).unwrap();
        }
        let h = History::open(&dir.0).unwrap();
        assert_eq!(ids(&h.list("a", 10).unwrap()), [2, 1]);
        assert_eq!(h.record(entry("a", 3, Outcome::Succeeded)).unwrap(), 3);
    }

    #[test]
    fn retention_keeps_newest_per_app() {
        let dir = TempDir::new();
        let h = History::open(&dir.0).unwrap();
        h.record(entry("other", 0, Outcome::Succeeded)).unwrap();
        let first = h.record(entry("a", 0, Outcome::Succeeded)).unwrap();
        for n in 1..MAX_PER_APP as u64 + 5 {
            h.record(entry("a", n, Outcome::Failed)).unwrap();
        }
        let list = h.list("a", usize::MAX).unwrap();
        assert_eq!(list.len(), MAX_PER_APP);
        let newest = list[0].id;
        assert_eq!(newest, 2 + MAX_PER_APP as u64 + 4);
        assert_eq!(
            ids(&list),
            (newest - MAX_PER_APP as u64 + 1..=newest)
                .rev()
                .collect::<Vec<_>>()
        );
        // The removed entries are gone from the entry table too.
        assert_eq!(h.get(first).unwrap(), None);
        assert_eq!(h.last_success("a").unwrap(), None);
        // Other apps are untouched.
        assert_eq!(h.list("other", 10).unwrap().len(), 1);
        assert_eq!(table_len(&h), MAX_PER_APP + 1);
    }

    fn table_len(h: &History) -> usize {
        use redb::ReadableTableMetadata;
        let txn = h.db.begin_read().unwrap();
        let entries = txn.open_table(ENTRIES).unwrap().len().unwrap();
        let index = txn.open_table(BY_APP).unwrap().len().unwrap();
        assert_eq!(entries, index, "entry table and index disagree");
        entries as usize
    }

    /// The files of `dir` whose names start with `history.redb.corrupt-`.
    fn moved_aside(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("history.redb.corrupt-"))
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn a_garbage_file_is_moved_aside_and_a_fresh_database_started() {
        let dir = TempDir::new();
        let garbage = b"this is not a redb database\n".repeat(200);
        std::fs::write(dir.0.join(FILE_NAME), &garbage).unwrap();
        let h = History::open(&dir.0).unwrap();
        assert!(h.list("a", 10).unwrap().is_empty());
        assert_eq!(h.record(entry("a", 1, Outcome::Succeeded)).unwrap(), 1);
        let aside = moved_aside(&dir.0);
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
        drop(h);

        // A second corrupt file in the same second does not overwrite the first.
        std::fs::write(dir.0.join(FILE_NAME), b"garbage again").unwrap();
        let h = History::open(&dir.0).unwrap();
        assert!(h.list("a", 10).unwrap().is_empty());
        assert_eq!(moved_aside(&dir.0).len(), 2);
    }

    #[test]
    fn a_truncated_file_is_moved_aside_and_a_fresh_database_started() {
        let dir = TempDir::new();
        {
            let h = History::open(&dir.0).unwrap();
            for n in 0..50 {
                h.record(entry("a", n, Outcome::Succeeded)).unwrap();
            }
        }
        let path = dir.0.join(FILE_NAME);
        let whole = std::fs::read(&path).unwrap();
        for (n, cut) in [100, whole.len() / 2].into_iter().enumerate() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let h = History::open(&dir.0).unwrap();
            assert!(h.list("a", 10).unwrap().is_empty(), "cut at {cut}");
            assert_eq!(h.record(entry("a", 1, Outcome::Succeeded)).unwrap(), 1);
            assert_eq!(moved_aside(&dir.0).len(), n + 1, "cut at {cut}");
        }
    }

    #[test]
    fn a_corrupt_entry_is_skipped_and_counted_once() {
        let dir = TempDir::new();
        let counter = Counter::default();
        let h = History::open(&dir.0)
            .unwrap()
            .count_corrupt_entries(counter.clone());
        h.record(entry("a", 1, Outcome::Succeeded)).unwrap();
        h.record(entry("a", 2, Outcome::Succeeded)).unwrap();
        h.record(entry("a", 3, Outcome::Failed)).unwrap();
        let txn = h.db.begin_write().unwrap();
        txn.open_table(ENTRIES)
            .unwrap()
            .insert(2, b"{not json".as_slice())
            .unwrap();
        txn.commit().unwrap();

        assert_eq!(ids(&h.list("a", 10).unwrap()), [3, 1]);
        assert_eq!(counter.get(), 1);
        assert_eq!(ids(&h.list("a", 10).unwrap()), [3, 1]);
        assert_eq!(h.last_success("a").unwrap().unwrap().id, 1);
        assert_eq!(counter.get(), 1, "an entry counts once");
        let err = h.get(2).unwrap_err();
        assert!(matches!(err, HistoryError::Corrupt { id: 2, .. }), "{err}");
        assert_eq!(counter.get(), 1);
        // Recording goes on, and retention removes the corrupt entry in its turn.
        assert_eq!(h.record(entry("a", 4, Outcome::Succeeded)).unwrap(), 4);
        assert_eq!(ids(&h.list("a", 2).unwrap()), [4, 3]);
    }

    /// Writes the database an earlier version left: entries indexed by bare app names,
    /// `(id, app, stored bytes)`.
    fn write_bare_named(dir: &Path, rows: &[(u64, &str, Vec<u8>)]) {
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut entries = txn.open_table(ENTRIES).unwrap();
            let mut index = txn.open_table(BY_APP).unwrap();
            for (id, app, bytes) in rows {
                entries.insert(*id, bytes.as_slice()).unwrap();
                index.insert((*app, *id), ()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn stored(app: &str, id: u64, outcome: Outcome) -> Vec<u8> {
        let mut e = entry(app, id, outcome);
        e.id = id;
        serde_json::to_vec(&e).unwrap()
    }

    #[test]
    fn entries_of_a_bare_name_move_to_the_first_app_of_that_name_to_sync() {
        let dir = TempDir::new();
        write_bare_named(
            &dir.0,
            &[
                (1, "web", stored("web", 1, Outcome::Succeeded)),
                (2, "api", stored("api", 2, Outcome::Succeeded)),
                (3, "web", stored("web", 3, Outcome::Failed)),
            ],
        );
        let h = History::open(&dir.0).unwrap();
        // Listing moves nothing.
        assert!(h.list("team-b/web", 10).unwrap().is_empty());
        assert_eq!(ids(&h.list("web", 10).unwrap()), [3, 1]);

        // The first sync of ferry-system/web looks up its last success: it claims them.
        let last = h.last_success("ferry-system/web").unwrap().unwrap();
        assert_eq!((last.id, last.app.as_str()), (1, "ferry-system/web"));
        assert_eq!(last.changeset.app, "ferry-system/web");
        let list = h.list("ferry-system/web", 10).unwrap();
        assert_eq!(ids(&list), [3, 1]);
        assert!(list.iter().all(|e| e.app == "ferry-system/web"), "{list:?}");
        assert_eq!(list[0].message, "commit 3");
        assert!(h.list("web", 10).unwrap().is_empty());
        // Another app of that name gets none of them.
        assert_eq!(h.last_success("team-b/web").unwrap(), None);
        assert!(h.list("team-b/web", 10).unwrap().is_empty());

        // Recording claims too, before the new entry.
        assert_eq!(
            h.record(entry("ferry-system/api", 4, Outcome::Succeeded))
                .unwrap(),
            4
        );
        let api = h.list("ferry-system/api", 10).unwrap();
        assert_eq!(ids(&api), [4, 2]);
        assert_eq!(api[1].app, "ferry-system/api");
        assert_eq!(table_len(&h), 4);
        drop(h);
        let h = History::open(&dir.0).unwrap();
        assert_eq!(ids(&h.list("ferry-system/web", 10).unwrap()), [3, 1]);
        assert_eq!(h.get(2).unwrap().unwrap().app, "ferry-system/api");
    }

    #[test]
    fn claiming_a_bare_name_keeps_a_corrupt_entry_and_the_retention_limit() {
        let dir = TempDir::new();
        let mut rows = vec![(1, "web", b"{not json".to_vec())];
        let n = MAX_PER_APP as u64 + 3;
        rows.extend((2..=n).map(|id| (id, "web", stored("web", id, Outcome::Succeeded))));
        write_bare_named(&dir.0, &rows);
        let counter = Counter::default();
        let h = History::open(&dir.0)
            .unwrap()
            .count_corrupt_entries(counter.clone());
        // Listed under its bare name, the corrupt entry is skipped and counted.
        assert_eq!(h.list("web", usize::MAX).unwrap().len(), n as usize - 1);
        assert_eq!(counter.get(), 1);

        assert_eq!(h.last_success("shop/web").unwrap().unwrap().id, n);
        // The newest MAX_PER_APP moved; the oldest (the corrupt one among them) are gone.
        let list = h.list("shop/web", usize::MAX).unwrap();
        assert_eq!(
            ids(&list),
            (n - MAX_PER_APP as u64 + 1..=n).rev().collect::<Vec<_>>()
        );
        assert_eq!(table_len(&h), MAX_PER_APP);
        drop(h);

        // A corrupt entry within the limit moves unchanged: still stored, still skipped.
        let dir = TempDir::new();
        write_bare_named(
            &dir.0,
            &[
                (1, "web", b"{not json".to_vec()),
                (2, "web", stored("web", 2, Outcome::Succeeded)),
            ],
        );
        let counter = Counter::default();
        let h = History::open(&dir.0)
            .unwrap()
            .count_corrupt_entries(counter.clone());
        assert_eq!(h.last_success("shop/web").unwrap().unwrap().id, 2);
        assert_eq!(counter.get(), 0, "the newest success comes first");
        assert_eq!(ids(&h.list("shop/web", 10).unwrap()), [2]);
        assert_eq!(counter.get(), 1);
        let txn = h.db.begin_read().unwrap();
        let entries = txn.open_table(ENTRIES).unwrap();
        assert_eq!(entries.get(1).unwrap().unwrap().value(), b"{not json");
        let index = txn.open_table(BY_APP).unwrap();
        assert!(index.get(("shop/web", 1)).unwrap().is_some());
        assert!(index.get(("web", 1)).unwrap().is_none());
    }

    const CHILD_ENV: &str = "FERRY_HISTORY_CHILD";
    /// Committed records the parent waits for before killing: past the retention limit.
    const KILL_AFTER: u64 = MAX_PER_APP as u64 + 30;

    /// Kills the child on drop, so a failing assertion does not leak it.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn survives_sigkill() {
        if let Some(dir) = std::env::var_os(CHILD_ENV) {
            // Child: record forever, reporting each committed id, until killed.
            let h = History::open(Path::new(&dir)).unwrap();
            let mut out = std::io::stdout().lock();
            for n in 0.. {
                let id = h.record(entry("crash", n, Outcome::Succeeded)).unwrap();
                writeln!(out, "recorded {id}").unwrap();
                out.flush().unwrap();
            }
            unreachable!();
        }

        let dir = TempDir::new();
        let name = concat!(module_path!(), "::survives_sigkill")
            .split_once("::")
            .unwrap()
            .1;
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let mut acked = 0;
        let mut lines = BufReader::new(stdout).lines();
        let mut read_acks = |until: Option<u64>| {
            for line in lines.by_ref() {
                if let Some(id) = line.unwrap().strip_prefix("recorded ") {
                    acked = id.parse::<u64>().unwrap();
                    if until.is_some_and(|n| acked >= n) {
                        break;
                    }
                }
            }
            acked
        };
        let seen = read_acks(Some(KILL_AFTER));
        assert!(seen >= KILL_AFTER, "child stopped after {seen} records");
        // SIGKILL while the child is in the middle of its next record.
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert!(!status.success());
        // The child may have acknowledged more records before the signal landed.
        let acked = read_acks(None);

        let h = History::open(&dir.0).unwrap();
        let list = h.list("crash", usize::MAX).unwrap();
        let newest = list[0].id;
        assert!(
            newest == acked || newest == acked + 1,
            "acknowledged {acked}, stored {newest}"
        );
        // Contiguous newest ids, all decodable, consistent with the index.
        assert_eq!(
            ids(&list),
            (newest - MAX_PER_APP as u64 + 1..=newest)
                .rev()
                .collect::<Vec<_>>()
        );
        for e in &list {
            assert_eq!(e.message, format!("commit {}", e.id - 1));
            assert_eq!(h.get(e.id).unwrap().as_ref(), Some(e));
        }
        assert_eq!(table_len(&h), MAX_PER_APP);
        assert_eq!(
            h.record(entry("crash", 0, Outcome::Failed)).unwrap(),
            newest + 1
        );
    }
}
