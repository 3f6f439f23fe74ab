//! The state store: one SQLite file holding the integration's settings, the links, the
//! journal of multi-step operations, the password queue, change cursors and run results.
//!
//! * The file is created with mode 0600 and opened in WAL mode with full sync, so a
//!   process killed at any point loses nothing it had committed.
//! * The schema is versioned (`PRAGMA user_version`) and migrated forward in one
//!   transaction; a file written by a newer version is refused, never downgraded.
//! * A file that is not a state store, or is damaged, is reported as
//!   [`ErrorCode::StoreCorrupt`] and left exactly as it was.
//! * Any number of processes open one store (the service, the dashboard, scripts, the
//!   password hook): each holds `<file>.lock` shared; only a schema migration takes it
//!   exclusively, so [`ErrorCode::StoreLocked`] means "other processes have it open and it
//!   needs migrating". SQLite's WAL and a busy timeout arbitrate the short writes.
//! * Work that must not run twice at once (a sync run, a password round, applying a plan,
//!   the domain flow) is taken through a [`Lease`]: an exclusive lock on
//!   `<file>.lease-<work>` naming its holder. The operating system releases it the moment
//!   its process dies, so a killed service never blocks the next one; a second asker gets
//!   [`ErrorCode::WorkHeld`] naming the holder.
//! * No secret is stored in clear: the password queue holds ciphertext and nonce only.

// Transport, store and demo code keep wall-clock time of their own (token expiry,
// TSIG, timestamps); only the engine must read it from its Clock.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};
use crate::model::{Anchor, Link, LinkOrigin, LinkState, ObjectGuid, OnlineAccountId, RunResults};

/// `PRAGMA application_id` of a state store: "O365".
const APPLICATION_ID: i32 = 0x4F33_3635;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The migrations, `MIGRATIONS[n]` taking the schema from version `n` to `n + 1`.
/// Append only.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE links (
    local_guid TEXT PRIMARY KEY NOT NULL,
    online_id TEXT NOT NULL UNIQUE,
    anchor TEXT NOT NULL UNIQUE,
    user_principal_name TEXT NOT NULL,
    state TEXT NOT NULL,
    origin TEXT NOT NULL,
    linked_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    intent TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    outcome TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX journal_pending ON journal(state) WHERE state = 'pending';
CREATE TABLE password_queue (
    local_guid TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    enqueued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error_code TEXT,
    last_error TEXT
);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE run_results (
    run_id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    results TEXT NOT NULL
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
"#];

/// An entry of the journal: the intent of one remote step, written before the step, and
/// its outcome, written after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Row id.
    pub id: i64,
    /// The run (or plan) it belongs to.
    pub run_id: Uuid,
    /// What kind of step (`create_account`, `set_password`...).
    pub kind: String,
    /// What it is about (usually a local user's GUID).
    pub subject: String,
    /// The intent, as JSON; never holds a secret.
    pub intent: serde_json::Value,
    /// `pending`, `done` or `failed`.
    pub state: JournalState,
    /// The outcome, as JSON, once known.
    pub outcome: Option<serde_json::Value>,
}

/// Where a journal entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    /// Written before the remote call; the outcome is not known.
    Pending,
    /// The step was made; the outcome says what it made.
    Done,
    /// The step failed, or was settled after its process died (`interrupted` in the
    /// outcome); nothing more is done for it.
    Failed,
}

impl JournalState {
    fn as_str(self) -> &'static str {
        match self {
            JournalState::Pending => "pending",
            JournalState::Done => "done",
            JournalState::Failed => "failed",
        }
    }
}

/// An encrypted password waiting for delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct QueuedPassword {
    /// The local user.
    pub local_guid: ObjectGuid,
    /// Increases with every enqueue; a delivery erases only the entry it delivered.
    pub seq: i64,
    /// The encryption nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext.
    pub ciphertext: Vec<u8>,
    /// When it was queued.
    pub enqueued_at: OffsetDateTime,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The error code of the last failed attempt.
    pub last_error_code: Option<ErrorCode>,
    /// The message of the last failed attempt.
    pub last_error: Option<String>,
}

impl std::fmt::Debug for QueuedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedPassword")
            .field("local_guid", &self.local_guid)
            .field("seq", &self.seq)
            .field(
                "ciphertext",
                &format_args!("<{} bytes>", self.ciphertext.len()),
            )
            .field("attempts", &self.attempts)
            .field("last_error_code", &self.last_error_code)
            .finish()
    }
}

/// The state store. `Send + Sync`; share it as `Arc<Store>`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    read_only: bool,
    /// Held for the store's lifetime; dropping it releases the lock.
    _lock: Option<File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_ts(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        Error::new(
            ErrorCode::StoreCorrupt,
            format!("the state store holds a bad timestamp `{s}`"),
        )
    })
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::StoreIo,
        format!("cannot {what} the state store {}: {e}", path.display()),
    )
    .with_source(e)
}

/// Maps an SQLite failure: damage is `StoreCorrupt`, the rest `StoreIo`.
fn sql_err(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseCorrupt | C::NotADatabase => ErrorCode::StoreCorrupt,
            C::DatabaseBusy | C::DatabaseLocked => ErrorCode::StoreLocked,
            _ => ErrorCode::StoreIo,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => ErrorCode::StoreCorrupt,
        _ => ErrorCode::StoreIo,
    };
    let what = match code {
        ErrorCode::StoreCorrupt => "is damaged",
        ErrorCode::StoreLocked => "is busy",
        _ => "could not be read or written",
    };
    Error::new(
        code,
        format!("the state store {} {what}: {e}", path.display()),
    )
    .with_source(e)
}

fn json_err(e: serde_json::Error) -> Error {
    Error::new(
        ErrorCode::StoreCorrupt,
        format!("the state store holds malformed JSON: {e}"),
    )
    .with_source(e)
}

/// Applies `migrations[from..]` in one transaction and sets `user_version`.
fn migrate(conn: &mut Connection, from: u32, migrations: &[&str]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (i, sql) in migrations.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()
}

/// Takes `lock` shared, waiting up to 10 s for a process that holds it exclusively (one
/// creating or migrating the store).
fn shared_lock(lock: &File, path: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match lock.try_lock_shared() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorCode::StoreLocked,
                    format!(
                        "another o365-essentials process has held the state store {} exclusively for 10 s (migrating it?); try again when it is done",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path, "lock", e)),
        }
    }
}

/// Work one process at a time does on a store, held by a [`Lease`]. Each has its own
/// lease file beside the store (`<store>.lease-<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    /// Sync runs (one round at a time, from any process).
    Sync,
    /// Password delivery.
    Passwords,
    /// Applying a bulk-create plan.
    Apply,
    /// Importing local users from online accounts.
    Import,
    /// Adding the company's domain (its DNS records).
    Domain,
    /// Manual links: assign, unassign and create-user-with-account, and settling the
    /// ones a dead process left half-done.
    Links,
}

impl Work {
    /// The name in the lease file's name and in messages (`sync`, `passwords`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Work::Sync => "sync",
            Work::Passwords => "passwords",
            Work::Apply => "apply",
            Work::Import => "import",
            Work::Domain => "domain",
            Work::Links => "links",
        }
    }
}

impl std::fmt::Display for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Work held by this process until dropped (see the module documentation).
#[derive(Debug)]
pub struct Lease {
    _file: File,
    work: Work,
}

impl Lease {
    /// The work held.
    pub fn work(&self) -> Work {
        self.work
    }
}

impl Store {
    /// Takes the lease of `work`: held until the [`Lease`] is dropped or this process
    /// ends, however it ends. With `wait`, waits up to that long for the holder to finish.
    ///
    /// # Errors
    /// [`ErrorCode::WorkHeld`] naming the holder (its process id, program and since when);
    /// [`ErrorCode::StoreIo`].
    pub fn lease(&self, work: Work, wait: Option<std::time::Duration>) -> Result<Lease> {
        use std::io::{Seek, Write};
        let mut p = self.path.as_os_str().to_owned();
        p.push(format!(".lease-{work}"));
        let lease_path = PathBuf::from(p);
        let mut file = crate::platform::private_file(&lease_path, crate::platform::Create::Keep)
            .map_err(|e| io_err(&self.path, "create a lease file of", e))?;
        // A wait too long for the clock is no deadline at all.
        let deadline = std::time::Instant::now().checked_add(wait.unwrap_or_default());
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock)
                    if deadline.is_none_or(|d| std::time::Instant::now() < d) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = File::open(&lease_path).and_then(|mut f| f.read_to_string(&mut holder));
                    let holder = holder.trim();
                    let own = format!("process {} ", std::process::id());
                    let message = match holder.strip_prefix(&own) {
                        // Another call of this same process: naming our own pid would
                        // send the reader looking for a process that is themselves.
                        Some(rest) => format!(
                            "the {work} work of {} is held by another call in this same process {rest}: wait for that call to end (or give the call a lease wait)",
                            self.path.display()
                        ),
                        None => format!(
                            "the {work} work of {} is held by {}",
                            self.path.display(),
                            if holder.is_empty() {
                                "another caller"
                            } else {
                                holder
                            }
                        ),
                    };
                    return Err(Error::new(ErrorCode::WorkHeld, message));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&self.path, "lock", e)),
            }
        }
        let program = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let since = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let info = format!("process {} ({program}) since {since}\n", std::process::id());
        // Best effort: the lock is what counts, the text only names the holder.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(info.as_bytes());
        let _ = file.flush();
        Ok(Lease { _file: file, work })
    }

    /// Opens the store at `path`, creating it (mode 0600) if it does not exist, and
    /// migrating an older schema forward.
    ///
    /// # Errors
    /// [`ErrorCode::StoreLocked`] when it needs migrating while other processes have it
    /// open (or another process is migrating it for longer than 10 s);
    /// [`ErrorCode::StoreVersionTooNew`] when a newer version wrote it;
    /// [`ErrorCode::StoreCorrupt`] when it is damaged or not a state store (the file is
    /// left untouched); [`ErrorCode::StoreIo`] for file system failures.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path.as_ref(), MIGRATIONS)
    }

    fn open_with(path: &Path, migrations: &[&str]) -> Result<Store> {
        let lock_path = {
            let mut p = path.as_os_str().to_owned();
            p.push(".lock");
            PathBuf::from(p)
        };
        let lock = crate::platform::private_file(&lock_path, crate::platform::Create::Keep)
            .map_err(|e| io_err(path, "create the lock file of", e))?;
        // Exclusive when nobody else has the store open (to create or migrate it), shared
        // otherwise; an exclusive holder only ever holds it for a moment.
        let exclusive = match lock.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => {
                shared_lock(&lock, path)?;
                false
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path, "lock", e)),
        };

        let existed = match crate::platform::private_file(path, crate::platform::Create::New) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
            Err(e) => return Err(io_err(path, "create", e)),
        };
        if existed {
            check_header(path)?;
            if crate::platform::readable_by_others(path).map_err(|e| io_err(path, "inspect", e))? {
                crate::platform::restrict_to_owner(path)
                    .map_err(|e| io_err(path, "restrict the permissions of", e))?;
            }
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, e))?;
        let version = inspect(&conn, path)?;
        if version > migrations.len() as u32 {
            return Err(too_new(path, version, migrations.len() as u32));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sql_err(path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| sql_err(path, e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| sql_err(path, e))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| sql_err(path, e))?;
        if version < migrations.len() as u32 {
            if !exclusive {
                return Err(Error::new(
                    ErrorCode::StoreLocked,
                    format!(
                        "the state store {} needs migrating from schema {version} to {}, and other o365-essentials processes have it open; stop them once so this version can upgrade it",
                        path.display(),
                        migrations.len()
                    ),
                ));
            }
            migrate(&mut conn, version, migrations).map_err(|e| sql_err(path, e))?;
        }
        if exclusive {
            // Let the others in.
            lock.unlock().map_err(|e| io_err(path, "unlock", e))?;
            shared_lock(&lock, path)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            read_only: false,
            _lock: Some(lock),
        })
    }

    /// Opens an existing store for reading only, without the lock — for a dashboard
    /// showing status while the engine runs in another process.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] when there is no store; [`ErrorCode::PreconditionFailed`]
    /// when it needs a migration (open it read-write once);
    /// [`ErrorCode::StoreVersionTooNew`]; [`ErrorCode::StoreCorrupt`]; [`ErrorCode::StoreIo`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::not_found(format!(
                "there is no state store at {}",
                path.display()
            )));
        }
        check_header(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, e))?;
        let version = inspect(&conn, path)?;
        if version > SCHEMA_VERSION {
            return Err(too_new(path, version, SCHEMA_VERSION));
        }
        if version < SCHEMA_VERSION {
            return Err(Error::new(
                ErrorCode::PreconditionFailed,
                format!(
                    "the state store {} has schema version {version} and needs migrating to {SCHEMA_VERSION}; open it read-write once",
                    path.display()
                ),
            ));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sql_err(path, e))?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            read_only: true,
            _lock: None,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn schema_version(&self) -> Result<u32> {
        let c = self.conn()?;
        c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .map(|v| v as u32)
            .map_err(|e| sql_err(&self.path, e))
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::internal("the state store's lock was poisoned by a panic"))
    }

    fn write(&self) -> Result<MutexGuard<'_, Connection>> {
        if self.read_only {
            return Err(Error::new(
                ErrorCode::NotSupported,
                "the state store was opened read-only",
            ));
        }
        self.conn()
    }

    // ---- settings ----

    /// Stores a setting (any serialisable value). Secrets must not be stored here.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::InvalidInput`] if the value does not serialise.
    pub fn set_setting<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let json = serde_json::to_string(value)
            .map_err(|e| Error::invalid_input(format!("setting `{key}` cannot be stored: {e}")))?;
        self.write()?
            .execute(
                "INSERT INTO settings(key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, json, ts(now())],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(())
    }

    /// Reads a setting.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`] when it does not parse as `T`.
    pub fn setting<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>> {
        let v: Option<String> = self
            .conn()?
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| sql_err(&self.path, e))?;
        v.map(|s| serde_json::from_str(&s).map_err(json_err))
            .transpose()
    }

    /// The keys of the settings that start with `prefix`.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn setting_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let c = self.conn()?;
        let mut stmt = c
            .prepare("SELECT key FROM settings WHERE substr(key, 1, ?2) = ?1 ORDER BY key")
            .map_err(|e| sql_err(&self.path, e))?;
        let rows = stmt
            .query_map(params![prefix, prefix.len() as i64], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| sql_err(&self.path, e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(&self.path, e))
    }

    /// Removes a setting; absent is fine.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn remove_setting(&self, key: &str) -> Result<()> {
        self.write()?
            .execute("DELETE FROM settings WHERE key = ?1", [key])
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(())
    }

    // ---- links ----

    /// Inserts or replaces the link of `link.local_guid`.
    ///
    /// # Errors
    /// [`ErrorCode::Conflict`] when the online account or anchor is linked to another
    /// local user; [`ErrorCode::StoreIo`].
    pub fn put_link(&self, link: &Link) -> Result<()> {
        let c = self.write()?;
        let res = c.execute(
            "INSERT INTO links(local_guid, online_id, anchor, user_principal_name, state, origin, linked_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(local_guid) DO UPDATE SET online_id = excluded.online_id, anchor = excluded.anchor,
               user_principal_name = excluded.user_principal_name, state = excluded.state,
               origin = excluded.origin, updated_at = excluded.updated_at",
            params![
                link.local_guid.to_string(),
                link.online_id.0,
                link.anchor.0,
                link.user_principal_name,
                enum_str(&link.state)?,
                enum_str(&link.origin)?,
                ts(link.linked_at),
                ts(now()),
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "online account {} ({}) is already linked to another local user",
                        link.online_id, link.user_principal_name
                    ),
                ))
            }
            Err(e) => Err(sql_err(&self.path, e)),
        }
    }

    /// The link of a local user.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn link_by_local(&self, guid: ObjectGuid) -> Result<Option<Link>> {
        self.query_links("WHERE local_guid = ?1", &guid.to_string())
            .map(|mut v| v.pop())
    }

    /// The link of an online account.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn link_by_online(&self, id: &OnlineAccountId) -> Result<Option<Link>> {
        self.query_links("WHERE online_id = ?1", &id.0)
            .map(|mut v| v.pop())
    }

    /// Every link.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn links(&self) -> Result<Vec<Link>> {
        self.query_links("WHERE ?1 = ?1", "")
    }

    fn query_links(&self, filter: &str, arg: &str) -> Result<Vec<Link>> {
        let c = self.conn()?;
        let mut stmt = c
            .prepare(&format!(
                "SELECT local_guid, online_id, anchor, user_principal_name, state, origin, linked_at
                 FROM links {filter} ORDER BY linked_at, local_guid"
            ))
            .map_err(|e| sql_err(&self.path, e))?;
        let rows = stmt
            .query_map([arg], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(|e| sql_err(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (g, id, anchor, upn, state, origin, at) =
                row.map_err(|e| sql_err(&self.path, e))?;
            out.push(Link {
                local_guid: g.parse().map_err(|_| corrupt("a link's local GUID"))?,
                online_id: OnlineAccountId(id),
                anchor: Anchor(anchor),
                user_principal_name: upn,
                state: str_enum::<LinkState>(&state)?,
                origin: str_enum::<LinkOrigin>(&origin)?,
                linked_at: parse_ts(&at)?,
            });
        }
        Ok(out)
    }

    /// Removes a local user's link; absent is fine.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn remove_link(&self, guid: ObjectGuid) -> Result<()> {
        self.write()?
            .execute(
                "DELETE FROM links WHERE local_guid = ?1",
                [guid.to_string()],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(())
    }

    // ---- journal ----

    /// Records the intent of a remote step before making it. Returns the entry id.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn journal_begin(
        &self,
        run_id: Uuid,
        kind: &str,
        subject: &str,
        intent: &serde_json::Value,
    ) -> Result<i64> {
        let c = self.write()?;
        let t = ts(now());
        c.execute(
            "INSERT INTO journal(run_id, kind, subject, intent, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
            params![run_id.to_string(), kind, subject, intent.to_string(), t],
        )
        .map_err(|e| sql_err(&self.path, e))?;
        Ok(c.last_insert_rowid())
    }

    /// Finishes a journal entry as failed with the error's code (never its message, which
    /// may quote what the service said).
    ///
    /// # Errors
    /// As [`Store::journal_finish`].
    pub fn journal_failed(&self, id: i64, error: &Error) -> Result<()> {
        self.journal_finish(
            id,
            JournalState::Failed,
            &serde_json::json!({"code": error.code().name()}),
        )
    }

    /// Records the outcome of a journal entry.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] for an unknown id; [`ErrorCode::InvalidInput`] for
    /// [`JournalState::Pending`]; [`ErrorCode::StoreIo`].
    pub fn journal_finish(
        &self,
        id: i64,
        state: JournalState,
        outcome: &serde_json::Value,
    ) -> Result<()> {
        if state == JournalState::Pending {
            return Err(Error::invalid_input(
                "a journal entry is finished as done or failed",
            ));
        }
        let n = self
            .write()?
            .execute(
                "UPDATE journal SET state = ?2, outcome = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, state.as_str(), outcome.to_string(), ts(now())],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        if n == 0 {
            return Err(Error::not_found(format!("no journal entry {id}")));
        }
        Ok(())
    }

    /// Notes how far a pending entry's step got (say, the GUID of the local user made by
    /// its first half), so a run settling it after a crash knows what to look at. The
    /// entry stays pending; a finished one is left as it is.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] for an id that is not pending; [`ErrorCode::StoreIo`].
    pub fn journal_progress(&self, id: i64, note: &serde_json::Value) -> Result<()> {
        let n = self
            .write()?
            .execute(
                "UPDATE journal SET outcome = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'pending'",
                params![id, note.to_string(), ts(now())],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        if n == 0 {
            return Err(Error::not_found(format!("no pending journal entry {id}")));
        }
        Ok(())
    }

    /// The entries of `kinds` left pending by runs other than `by`, oldest first: steps
    /// of a process that died between intent and outcome, for the settling run to look
    /// at (holding the lease of their work) before finishing them.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn journal_interrupted(&self, kinds: &[&str], by: Uuid) -> Result<Vec<JournalEntry>> {
        let by = by.to_string();
        Ok(self
            .journal_pending()?
            .into_iter()
            .filter(|e| e.run_id.to_string() != by && kinds.contains(&e.kind.as_str()))
            .collect())
    }

    /// Entries whose outcome is unknown (the process stopped between intent and outcome).
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn journal_pending(&self) -> Result<Vec<JournalEntry>> {
        self.query_journal("WHERE state = 'pending'", "")
    }

    /// Settles the entries of `kinds` left pending by runs other than `by` — runs whose
    /// process died (or stopped on an error) between intent and outcome — as failed, with
    /// `{"interrupted": true, "settled_by": by}`. Call it holding the lease of the work
    /// those kinds belong to, so no live run of it has entries in flight; the settling
    /// run decides the change again from the directory and the tenant. Returns how many
    /// were settled.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn journal_settle(&self, kinds: &[&str], by: Uuid) -> Result<usize> {
        if kinds.is_empty() {
            return Ok(0);
        }
        let marks = vec!["?"; kinds.len()].join(", ");
        let outcome = serde_json::json!({"interrupted": true, "settled_by": by}).to_string();
        let by = by.to_string();
        let t = ts(now());
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&outcome, &t, &by];
        for k in kinds {
            args.push(k);
        }
        self.write()?
            .execute(
                &format!(
                    "UPDATE journal SET state = 'failed', outcome = ?1, updated_at = ?2
                     WHERE state = 'pending' AND run_id != ?3 AND kind IN ({marks})"
                ),
                args.as_slice(),
            )
            .map_err(|e| sql_err(&self.path, e))
    }

    /// Every entry of a run, oldest first.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn journal_of_run(&self, run_id: Uuid) -> Result<Vec<JournalEntry>> {
        self.query_journal("WHERE run_id = ?1", &run_id.to_string())
    }

    fn query_journal(&self, filter: &str, arg: &str) -> Result<Vec<JournalEntry>> {
        let c = self.conn()?;
        let mut stmt = c
            .prepare(&format!(
                "SELECT id, run_id, kind, subject, intent, state, outcome FROM journal {filter} ORDER BY id"
            ))
            .map_err(|e| sql_err(&self.path, e))?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(Some(arg).filter(|a| !a.is_empty())),
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                },
            )
            .map_err(|e| sql_err(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, run, kind, subject, intent, state, outcome) =
                row.map_err(|e| sql_err(&self.path, e))?;
            out.push(JournalEntry {
                id,
                run_id: Uuid::parse_str(&run).map_err(|_| corrupt("a journal run id"))?,
                kind,
                subject,
                intent: serde_json::from_str(&intent).map_err(json_err)?,
                state: str_enum(&state)?,
                outcome: outcome
                    .map(|o| serde_json::from_str(&o).map_err(json_err))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    // ---- password queue ----

    /// Queues an encrypted password for a user, superseding an undelivered older one.
    /// Returns the entry's sequence number.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn enqueue_password(
        &self,
        local_guid: ObjectGuid,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<i64> {
        let mut c = self.write()?;
        let tx = c.transaction().map_err(|e| sql_err(&self.path, e))?;
        let seq: i64 = tx
            .query_row(
                "INSERT INTO counters(name, value) VALUES ('password_seq', 1)
                 ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(&self.path, e))?;
        tx.execute(
            "INSERT INTO password_queue(local_guid, seq, nonce, ciphertext, enqueued_at, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)
             ON CONFLICT(local_guid) DO UPDATE SET seq = excluded.seq, nonce = excluded.nonce,
               ciphertext = excluded.ciphertext, enqueued_at = excluded.enqueued_at,
               attempts = 0, last_error_code = NULL, last_error = NULL",
            params![local_guid.to_string(), seq, nonce, ciphertext, ts(now())],
        )
        .map_err(|e| sql_err(&self.path, e))?;
        tx.commit().map_err(|e| sql_err(&self.path, e))?;
        Ok(seq)
    }

    /// Queued passwords, oldest first.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn queued_passwords(&self) -> Result<Vec<QueuedPassword>> {
        let c = self.conn()?;
        let mut stmt = c
            .prepare(
                "SELECT local_guid, seq, nonce, ciphertext, enqueued_at, attempts, last_error_code, last_error
                 FROM password_queue ORDER BY seq",
            )
            .map_err(|e| sql_err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })
            .map_err(|e| sql_err(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (g, seq, nonce, ciphertext, at, attempts, code, msg) =
                row.map_err(|e| sql_err(&self.path, e))?;
            out.push(QueuedPassword {
                local_guid: g.parse().map_err(|_| corrupt("a queued password's GUID"))?,
                seq,
                nonce,
                ciphertext,
                enqueued_at: parse_ts(&at)?,
                attempts: attempts.max(0) as u32,
                last_error_code: code.as_deref().and_then(ErrorCode::from_name),
                last_error: msg,
            });
        }
        Ok(out)
    }

    /// Records a failed delivery attempt.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn password_attempt_failed(
        &self,
        local_guid: ObjectGuid,
        seq: i64,
        error: &Error,
    ) -> Result<()> {
        self.write()?
            .execute(
                "UPDATE password_queue SET attempts = attempts + 1, last_error_code = ?3, last_error = ?4
                 WHERE local_guid = ?1 AND seq = ?2",
                params![local_guid.to_string(), seq, error.code().name(), error.to_string()],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(())
    }

    /// Erases a delivered entry — only if it is still the entry `seq` (a newer change
    /// queued meanwhile stays). Returns whether it was erased.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn password_delivered(&self, local_guid: ObjectGuid, seq: i64) -> Result<bool> {
        let n = self
            .write()?
            .execute(
                "DELETE FROM password_queue WHERE local_guid = ?1 AND seq = ?2",
                params![local_guid.to_string(), seq],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(n == 1)
    }

    // ---- cursors ----

    /// Saves a named cursor (DirSync cookie, delta link...).
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn set_cursor(&self, name: &str, value: &str) -> Result<()> {
        self.write()?
            .execute(
                "INSERT INTO cursors(name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![name, value, ts(now())],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(())
    }

    /// Reads a named cursor.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn cursor(&self, name: &str) -> Result<Option<String>> {
        self.conn()?
            .query_row("SELECT value FROM cursors WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| sql_err(&self.path, e))
    }

    /// Forgets a cursor (the next read starts over).
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn clear_cursor(&self, name: &str) -> Result<()> {
        self.write()?
            .execute("DELETE FROM cursors WHERE name = ?1", [name])
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(())
    }

    // ---- run results ----

    /// Saves the results of a run.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`].
    pub fn save_run(&self, run: &RunResults) -> Result<()> {
        let json = serde_json::to_string(run)
            .map_err(|e| Error::internal(format!("run results do not serialise: {e}")))?;
        self.write()?
            .execute(
                "INSERT OR REPLACE INTO run_results(run_id, kind, started_at, finished_at, results)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    run.run_id.to_string(),
                    run.kind.name(),
                    ts(run.started_at),
                    ts(run.finished_at),
                    json
                ],
            )
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(())
    }

    /// The most recent runs, newest first.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`]; [`ErrorCode::StoreCorrupt`].
    pub fn recent_runs(&self, limit: u32) -> Result<Vec<RunResults>> {
        let c = self.conn()?;
        let mut stmt = c
            .prepare(
                "SELECT results FROM run_results ORDER BY finished_at DESC, rowid DESC LIMIT ?1",
            )
            .map_err(|e| sql_err(&self.path, e))?;
        let rows = stmt
            .query_map([limit], |r| r.get::<_, String>(0))
            .map_err(|e| sql_err(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let s = row.map_err(|e| sql_err(&self.path, e))?;
            out.push(serde_json::from_str(&s).map_err(json_err)?);
        }
        Ok(out)
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorCode::StoreCorrupt,
        format!("the state store holds a malformed value in {what}"),
    )
}

fn enum_str<T: Serialize>(v: &T) -> Result<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(Error::internal("an enum did not serialise as a string")),
    }
}

fn str_enum<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| corrupt(&format!("the value `{s}`")))
}

fn too_new(path: &Path, version: u32, known: u32) -> Error {
    Error::new(
        ErrorCode::StoreVersionTooNew,
        format!(
            "the state store {} has schema version {version}, written by a newer o365-essentials; \
             this version understands up to {known} and will not touch it",
            path.display()
        ),
    )
}

/// Refuses files that are not SQLite databases before SQLite is let near them.
fn check_header(path: &Path) -> Result<()> {
    let mut f = File::open(path).map_err(|e| io_err(path, "open", e))?;
    let mut header = [0u8; 16];
    let mut n = 0;
    while n < header.len() {
        match f.read(&mut header[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(io_err(path, "read", e)),
        }
    }
    if n == 0 {
        return Ok(()); // An empty file: a store created but never initialised.
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(Error::new(
            ErrorCode::StoreCorrupt,
            format!(
                "{} is not an o365-essentials state store (not an SQLite database); it was left unchanged",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Checks integrity and ownership; returns the schema version. Writes nothing.
fn inspect(conn: &Connection, path: &Path) -> Result<u32> {
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| sql_err(path, e))?;
    if check != "ok" {
        return Err(Error::new(
            ErrorCode::StoreCorrupt,
            format!(
                "the state store {} is damaged ({check}); it was left unchanged",
                path.display()
            ),
        ));
    }
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| sql_err(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sql_err(path, e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| sql_err(path, e))?;
    let ours = app == APPLICATION_ID || (app == 0 && version == 0 && tables == 0);
    if !ours {
        return Err(Error::new(
            ErrorCode::StoreCorrupt,
            format!(
                "{} is an SQLite database of another application, not an o365-essentials state store; it was left unchanged",
                path.display()
            ),
        ));
    }
    Ok(version.max(0) as u32)
}

#[cfg(test)]
mod tests;
