use super::*;
use crate::model::{ItemResult, Outcome, RunKind};
use std::os::unix::fs::PermissionsExt;

fn link(g: ObjectGuid, id: &str) -> Link {
    Link {
        local_guid: g,
        online_id: OnlineAccountId(id.into()),
        anchor: g.anchor(),
        user_principal_name: format!("{id}@contoso.com"),
        state: LinkState::Active,
        origin: LinkOrigin::Created,
        linked_at: time::macros::datetime!(2026-11-26 10:00 UTC),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn creates_a_0600_wal_store_at_the_current_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let store = Store::open(&path).expect("open");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    store.set_setting("tenant_id", &"abc").expect("write");
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("state.db-wal");
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600, "the WAL inherits the database's mode");
    assert_eq!(mode(&dir.path().join("state.db-shm")), 0o600);
    assert_eq!(mode(&dir.path().join("state.db.lock")), 0o600);
}

#[test]
fn everything_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let g = ObjectGuid::random();
    let run = Uuid::new_v4();
    let (entry, seq) = {
        let s = Store::open(&path).expect("open");
        s.set_setting("organization", &serde_json::json!({"name": "Contoso"}))
            .expect("setting");
        s.put_link(&link(g, "u1")).expect("link");
        let e = s
            .journal_begin(
                run,
                "create_account",
                &g.to_string(),
                &serde_json::json!({"upn": "u1@contoso.com"}),
            )
            .expect("journal");
        let seq = s
            .enqueue_password(g, b"nonce-123456", b"ciphertext")
            .expect("enqueue");
        s.set_cursor("dirsync", "cookie-1").expect("cursor");
        (e, seq)
    };
    let s = Store::open(&path).expect("reopen");
    assert_eq!(
        s.setting::<serde_json::Value>("organization").expect("get"),
        Some(serde_json::json!({"name": "Contoso"}))
    );
    assert_eq!(s.link_by_local(g).expect("link"), Some(link(g, "u1")));
    let pending = s.journal_pending().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, entry);
    assert_eq!(pending[0].state, JournalState::Pending);
    let q = s.queued_passwords().expect("queue");
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].seq, q[0].ciphertext.as_slice()),
        (seq, &b"ciphertext"[..])
    );
    assert_eq!(
        s.cursor("dirsync").expect("cursor").as_deref(),
        Some("cookie-1")
    );
}

#[test]
fn links_are_unique_per_online_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("s.db")).expect("open");
    let (a, b) = (ObjectGuid::random(), ObjectGuid::random());
    s.put_link(&link(a, "u1")).expect("a");
    let mut dup = link(b, "u1");
    dup.anchor = b.anchor();
    let e = s.put_link(&dup).expect_err("same online account twice");
    assert_eq!(e.code(), ErrorCode::Conflict);
    let mut moved = link(a, "u1");
    moved.state = LinkState::Unassigned;
    s.put_link(&moved).expect("update in place");
    assert_eq!(
        s.link_by_online(&OnlineAccountId("u1".into()))
            .expect("get")
            .map(|l| l.state),
        Some(LinkState::Unassigned)
    );
    assert_eq!(s.links().expect("all").len(), 1);
    s.remove_link(a).expect("remove");
    assert!(s.links().expect("all").is_empty());
}

#[test]
fn journal_records_intent_then_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("s.db")).expect("open");
    let run = Uuid::new_v4();
    let a = s
        .journal_begin(run, "create_account", "x", &serde_json::json!({"n": 1}))
        .expect("a");
    let b = s
        .journal_begin(run, "create_account", "y", &serde_json::json!({"n": 2}))
        .expect("b");
    s.journal_finish(a, JournalState::Done, &serde_json::json!({"id": "o1"}))
        .expect("finish");
    assert_eq!(
        s.journal_pending()
            .expect("pending")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![b]
    );
    let all = s.journal_of_run(run).expect("run");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].outcome, Some(serde_json::json!({"id": "o1"})));
    assert_eq!(
        s.journal_finish(9999, JournalState::Failed, &serde_json::Value::Null)
            .expect_err("missing")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        s.journal_finish(b, JournalState::Pending, &serde_json::Value::Null)
            .expect_err("pending")
            .code(),
        ErrorCode::InvalidInput
    );
}

/// A run that died between intent and outcome leaves entries pending; the next run of
/// the same work settles exactly those (not its own, not other work's).
#[test]
fn a_dead_runs_pending_steps_are_settled_by_the_next_run_of_that_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("s.db")).expect("open");
    let (dead, next) = (Uuid::new_v4(), Uuid::new_v4());
    let j = serde_json::json!({});
    let disable = s.journal_begin(dead, "disable", "a", &j).expect("disable");
    let create = s
        .journal_begin(dead, "create_account", "b", &j)
        .expect("create");
    let mine = s.journal_begin(next, "update", "c", &j).expect("mine");
    assert_eq!(
        s.journal_settle(&["enable", "disable", "update", "delete"], next)
            .expect("settle"),
        1
    );
    let pending: Vec<i64> = s
        .journal_pending()
        .expect("pending")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        pending,
        vec![create, mine],
        "other work's and the run's own stay"
    );
    let settled = s.journal_of_run(dead).expect("run");
    let e = settled.iter().find(|e| e.id == disable).expect("entry");
    assert_eq!(e.state, JournalState::Failed);
    assert_eq!(
        e.outcome,
        Some(serde_json::json!({"interrupted": true, "settled_by": next}))
    );
    assert_eq!(s.journal_settle(&[], next).expect("none"), 0);
}

#[test]
fn a_newer_password_supersedes_and_survives_delivery_of_the_older() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("s.db")).expect("open");
    let g = ObjectGuid::random();
    let first = s.enqueue_password(g, b"n1", b"c1").expect("first");
    s.password_attempt_failed(g, first, &Error::new(ErrorCode::ServiceUnavailable, "down"))
        .expect("fail");
    assert_eq!(s.queued_passwords().expect("q")[0].attempts, 1);
    let second = s.enqueue_password(g, b"n2", b"c2").expect("second");
    assert!(second > first);
    let q = s.queued_passwords().expect("q");
    assert_eq!(q.len(), 1, "one entry per user");
    assert_eq!((q[0].ciphertext.as_slice(), q[0].attempts), (&b"c2"[..], 0));
    // The worker delivered the first one: the second must stay.
    assert!(!s.password_delivered(g, first).expect("stale delivery"));
    assert_eq!(s.queued_passwords().expect("q").len(), 1);
    assert!(s.password_delivered(g, second).expect("delivery"));
    assert!(s.queued_passwords().expect("q").is_empty());
    let dbg = format!("{q:?}");
    assert!(!dbg.contains("c2") || dbg.contains("<2 bytes>"));
}

#[test]
fn run_results_come_back_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("s.db")).expect("open");
    for i in 0..3 {
        let t = time::macros::datetime!(2026-11-26 10:00 UTC) + time::Duration::minutes(i);
        s.save_run(&RunResults {
            run_id: Uuid::new_v4(),
            kind: [RunKind::BulkCreate, RunKind::Import, RunKind::Sync][i as usize],
            started_at: t,
            finished_at: t,
            counts: Default::default(),
            results_file: None,
            results_csv: None,
            items: vec![ItemResult {
                password_source: None,
                local_user: "jdoe".into(),
                local_guid: ObjectGuid::random(),
                requested_upn: None,
                action: crate::model::ItemAction::CreateAccount,
                reason: None,
                outcome: Outcome::Succeeded,
                error_code: None,
                service_message: None,
                recommended_action: None,
                online_id: None,
            }],
        })
        .expect("save");
    }
    let runs = s.recent_runs(2).expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.kind).collect::<Vec<_>>(),
        vec![RunKind::Sync, RunKind::Import]
    );
}

#[test]
fn several_openers_share_the_store_and_a_viewer_reads_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let first = Store::open(&path).expect("first");
    first.set_setting("k", &1).expect("write");
    let second = Store::open(&path).expect("a second process-like opener");
    assert_eq!(second.setting::<i32>("k").expect("read"), Some(1));
    second.set_setting("k", &2).expect("write from the second");
    assert_eq!(first.setting::<i32>("k").expect("read"), Some(2));
    // A read-only viewer may look while the engine runs.
    let viewer = Store::open_read_only(&path).expect("viewer");
    assert_eq!(viewer.setting::<i32>("k").expect("read"), Some(2));
    assert_eq!(
        viewer.set_setting("k", &3).expect_err("read-only").code(),
        ErrorCode::NotSupported
    );
    // A lease is held once, also within one process.
    let held = first.lease(Work::Sync, None).expect("lease");
    assert_eq!(held.work(), Work::Sync);
    let e = second.lease(Work::Sync, None).expect_err("held");
    assert_eq!(e.code(), ErrorCode::WorkHeld);
    assert!(e.message().contains("this same process"), "{e}");
    assert!(
        second.lease(Work::Passwords, None).is_ok(),
        "other work is free"
    );
    drop(held);
    assert!(second.lease(Work::Sync, None).is_ok());
}

/// With real processes: a child opens the store and takes the sync lease; the parent
/// shares the store meanwhile, is told who holds the lease, and gets it the moment the
/// child is killed (SIGKILL: no clean-up runs).
#[test]
fn a_lease_names_its_holder_process_and_a_killed_holder_releases_it_at_once() {
    use std::io::BufRead;
    if let Some(path) = std::env::var_os("O365_LEASE_CHILD") {
        // The child's part.
        let s = Store::open(std::path::Path::new(&path)).expect("child open");
        let _lease = s.lease(Work::Sync, None).expect("child lease");
        s.set_setting("child", &std::process::id())
            .expect("child write");
        println!("held");
        std::thread::sleep(std::time::Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let parent = Store::open(&path).expect("parent");
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "store::tests::a_lease_names_its_holder_process_and_a_killed_holder_releases_it_at_once",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("O365_LEASE_CHILD", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("held") {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "the child ended early"
        );
    }
    let child_pid = child.id();
    assert_eq!(
        parent.setting::<u32>("child").expect("read"),
        Some(child_pid)
    );
    parent
        .set_setting("parent", &1)
        .expect("the parent writes meanwhile");
    let e = parent
        .lease(Work::Sync, None)
        .expect_err("held by the child");
    assert_eq!(e.code(), ErrorCode::WorkHeld);
    assert!(e.message().contains(&format!("process {child_pid}")), "{e}");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let lease = parent
        .lease(Work::Sync, None)
        .expect("released at once by the kill");
    assert_eq!(lease.work(), Work::Sync);
}

#[test]
fn a_second_process_is_refused() {
    // The lock is a real flock: prove it against another process, not just another handle.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let _first = Store::open(&path).expect("first");
    let lock = format!("{}.lock", path.display());
    let status = std::process::Command::new("flock")
        .args(["--nonblock", "--exclusive", &lock, "true"])
        .status()
        .expect("run flock(1) from util-linux");
    assert!(!status.success(), "another process could take the lock");
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    drop(Store::open(&path).expect("create"));
    {
        let c = Connection::open(&path).expect("raw");
        c.pragma_update(None, "user_version", SCHEMA_VERSION as i64 + 1)
            .expect("bump");
    }
    let before = std::fs::read(&path).expect("read");
    let e = Store::open(&path).expect_err("too new");
    assert_eq!(e.code(), ErrorCode::StoreVersionTooNew);
    assert!(
        e.message()
            .contains(&format!("schema version {}", SCHEMA_VERSION + 1))
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(
        Store::open_read_only(&path).expect_err("ro too").code(),
        ErrorCode::StoreVersionTooNew
    );
}

#[test]
fn a_file_that_is_not_a_store_is_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let garbage = b"this is the admin's spreadsheet, not a database".repeat(100);
    std::fs::write(&path, &garbage).expect("write");
    let e = Store::open(&path).expect_err("garbage");
    assert_eq!(e.code(), ErrorCode::StoreCorrupt);
    assert!(e.message().contains("left unchanged"));
    assert_eq!(std::fs::read(&path).expect("read"), garbage);

    // A healthy SQLite database of another program.
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .expect("other")
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .expect("fill");
    let before = std::fs::read(&other).expect("read");
    assert_eq!(
        Store::open(&other).expect_err("foreign").code(),
        ErrorCode::StoreCorrupt
    );
    assert_eq!(std::fs::read(&other).expect("read"), before);
}

#[test]
fn a_damaged_store_is_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    {
        let s = Store::open(&path).expect("create");
        for i in 0..200 {
            let g = ObjectGuid::random();
            s.put_link(&link(g, &format!("user{i}"))).expect("link");
        }
    }
    // Checkpointed on close; now smash the middle pages.
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 8192, "store has several pages");
    let end = bytes.len() - 100;
    for b in &mut bytes[4096..end] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("smash");
    let e = Store::open(&path).expect_err("damaged");
    assert_eq!(e.code(), ErrorCode::StoreCorrupt, "{e}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "file left as it was"
    );
}

#[test]
fn migrations_run_forward_in_one_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let v1 = &MIGRATIONS[..1];
    {
        let s = Store::open_with(&path, v1).expect("v1");
        s.set_setting("kept", &"yes").expect("write");
    }
    // A broken migration leaves the store at v1 with its data.
    let broken: Vec<&str> = vec![MIGRATIONS[0], "CREATE TABLE extra(x); THIS IS NOT SQL;"];
    let e = Store::open_with(&path, &broken).expect_err("broken migration");
    assert_eq!(e.code(), ErrorCode::StoreIo);
    {
        let s = Store::open_with(&path, v1).expect("still v1");
        assert_eq!(s.schema_version().expect("v"), 1);
        assert_eq!(
            s.setting::<String>("kept").expect("kept").as_deref(),
            Some("yes")
        );
    }
    // A good migration to v2 keeps the data and bumps the version.
    let good: Vec<&str> = vec![MIGRATIONS[0], "ALTER TABLE links ADD COLUMN note TEXT;"];
    let s = Store::open_with(&path, &good).expect("v2");
    assert_eq!(s.schema_version().expect("v"), 2);
    assert_eq!(
        s.setting::<String>("kept").expect("kept").as_deref(),
        Some("yes")
    );
    drop(s);
    // This build (v1) now refuses the v2 file.
    assert_eq!(
        Store::open(&path).expect_err("v2 vs v1").code(),
        ErrorCode::StoreVersionTooNew
    );
}

#[test]
fn read_only_open_needs_an_existing_current_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    assert_eq!(
        Store::open_read_only(&path).expect_err("missing").code(),
        ErrorCode::NotFound
    );
    assert!(!path.exists(), "read-only open creates nothing");
}

#[test]
fn a_missing_directory_is_an_io_error_naming_the_path() {
    let e = Store::open("/nonexistent-dir-o365/state.db").expect_err("no dir");
    assert_eq!(e.code(), ErrorCode::StoreIo);
    assert!(e.message().contains("/nonexistent-dir-o365/state.db"));
}

#[test]
fn wide_permissions_are_tightened_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    drop(Store::open(&path).expect("create"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(Store::open(&path).expect("reopen"));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_lease_held_by_another_call_of_this_process_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("s.db")).expect("open");
    let _held = s.lease(Work::Apply, None).expect("first call");
    let e = s.lease(Work::Apply, None).expect_err("second call");
    assert_eq!(e.code(), ErrorCode::WorkHeld);
    assert!(
        e.message().contains("another call in this same process"),
        "{e}"
    );
    assert!(
        !e.message()
            .contains(&format!("held by process {}", std::process::id())),
        "{e}"
    );
}
