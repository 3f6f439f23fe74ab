//! The sync: lifecycle propagation, the safety threshold, drift, the loop — with the
//! memory directory and with Samba.

use std::sync::Arc;
use std::time::Duration;

use o365_essentials::ErrorCode;
use o365_essentials::engine::{BulkCreateRequest, Integration, SyncOptions};
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::{AccountUpdate, Outcome};
use o365_essentials::ports::{Directory, Tenant};
use o365_essentials::store::Store;
use o365_essentials_emulator::{Emulator, EmulatorConfig};

use crate::graph::tenant_for;

struct Setup {
    emu: Emulator,
    _tmp: tempfile::TempDir,
    integration: Arc<Integration>,
    tenant: Arc<o365_essentials::graph::GraphTenant>,
}

impl Setup {
    /// Whether the online account `nick@contoso.onmicrosoft.com` may sign in.
    async fn enabled(&self, nick: &str) -> bool {
        self.tenant
            .account(&format!("{nick}@contoso.onmicrosoft.com"))
            .await
            .unwrap()
            .account_enabled
    }

    /// One sync run with the default options.
    async fn sync(&self) -> o365_essentials::engine::SyncReport {
        self.integration
            .sync()
            .run_sync_once(&SyncOptions::default())
            .await
            .unwrap()
    }
}

async fn linked(
    dir: Arc<dyn Directory>,
    only: Option<Vec<o365_essentials::model::ObjectGuid>>,
) -> Setup {
    linked_with(
        dir,
        only,
        Arc::new(o365_essentials::engine::SystemClock),
        32,
    )
    .await
}

async fn linked_with(
    dir: Arc<dyn Directory>,
    only: Option<Vec<o365_essentials::model::ObjectGuid>>,
    clock: Arc<dyn o365_essentials::engine::Clock>,
    concurrency: usize,
) -> Setup {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tenant = Arc::new(tenant_for(&emu));
    let integration = Arc::new(
        Integration::new(
            dir,
            tenant.clone(),
            Arc::new(Store::open(tmp.path().join("s.db")).unwrap()),
        )
        .with_clock(clock)
        .with_concurrency(concurrency),
    );
    integration.integrate().await.unwrap();
    let req = BulkCreateRequest {
        domain: "contoso.onmicrosoft.com".into(),
        users: only.map(|v| v.into_iter().map(Into::into).collect()),
        ..Default::default()
    };
    let plan = integration
        .accounts()
        .plan_bulk_create(&integration.accounts().snapshot().await.unwrap(), &req)
        .unwrap();
    let r = integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    assert_eq!(r.count(Outcome::Failed), 0);
    // The first run reads the directory whole and finds nothing to change.
    let first = integration
        .sync()
        .run_sync_once(&SyncOptions::default())
        .await
        .unwrap();
    assert!(first.results.items.is_empty(), "{:?}", first.results.items);
    Setup {
        emu,
        _tmp: tmp,
        integration,
        tenant,
    }
}

#[tokio::test]
async fn local_changes_propagate_and_our_own_changes_are_not_drift() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = linked(mem.clone(), None).await;
    let find = |n: &'static str| {
        let mem = mem.clone();
        async move { mem.find_user(n).await.unwrap().unwrap() }
    };
    let (ava, ben, chloe, liam) = (
        find("ava.adams").await,
        find("ben.brooks").await,
        find("chloe.carter").await,
        find("liam.lopez").await,
    );
    mem.set_enabled(ava.guid, false).await.unwrap();
    mem.set_enabled(liam.guid, true).await.unwrap();
    mem.delete_user(ben.guid).await.unwrap();
    mem.edit_user(chloe.guid, |u| {
        u.display_name = Some("Chloe Carter-Smith".into());
        u.user_principal_name = Some("chloe.smith@essentials.test".into());
    })
    .unwrap();
    let report = s.sync().await;
    assert_eq!(
        report.results.count(Outcome::Succeeded),
        4,
        "{:#?}",
        report.results.items
    );
    assert!(report.drift.is_empty());
    assert!(!s.enabled("ava.adams").await);
    assert!(s.enabled("liam.lopez").await);
    assert_eq!(
        s.tenant
            .account("ben.brooks@contoso.onmicrosoft.com")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    let c = s
        .tenant
        .account("chloe.smith@contoso.onmicrosoft.com")
        .await
        .unwrap();
    assert_eq!(c.display_name, "Chloe Carter-Smith");
    let stats: serde_json::Value = reqwest::get(format!("{}/stats", s.emu.info().admin_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["sessions_revoked"], 1, "a disable revokes sessions");

    // Next run: nothing new locally, and our own writes are not reported as drift.
    let quiet = s.sync().await;
    assert!(quiet.results.items.is_empty());
    assert!(quiet.drift.is_empty(), "{:?}", quiet.drift);

    // A change made online by someone else is reported, not overwritten.
    let emma = s
        .tenant
        .account("emma.evans@contoso.onmicrosoft.com")
        .await
        .unwrap();
    s.tenant
        .update_account(
            &emma.id,
            &AccountUpdate {
                display_name: Some("Emma (set in the portal)".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let drift = s.sync().await;
    assert_eq!(drift.drift.len(), 1, "{:?}", drift.drift);
    assert!(drift.drift[0].what.contains("emma.evans"));
    assert_eq!(
        s.tenant.account(&emma.id.0).await.unwrap().display_name,
        "Emma (set in the portal)"
    );
}

#[tokio::test]
async fn the_safety_threshold_holds_mass_disables_until_allowed() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = linked(mem.clone(), None).await;
    let names = [
        "ava.adams",
        "ben.brooks",
        "chloe.carter",
        "daniel.diaz",
        "emma.evans",
        "finn.fischer",
    ];
    for n in names {
        let u = mem.find_user(n).await.unwrap().unwrap();
        mem.set_enabled(u.guid, false).await.unwrap();
    }
    for _ in 0..2 {
        let r = s.sync().await;
        assert_eq!((r.held, r.threshold), (6, 5), "12 linked: max(5, 10%) = 5");
        assert_eq!(r.results.count(Outcome::Held), 6);
        assert!(
            r.results
                .items
                .iter()
                .all(|i| i.error_code == Some(ErrorCode::SafetyThreshold))
        );
        assert!(s.enabled("ava.adams").await, "held, not applied");
    }
    let allowed = s
        .integration
        .sync()
        .run_sync_once(&SyncOptions {
            allow_beyond_threshold: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(allowed.results.count(Outcome::Succeeded), 6);
    for n in names {
        assert!(!s.enabled(n).await);
    }
    assert!(
        s.sync().await.results.items.is_empty(),
        "released once, not again"
    );
}

#[tokio::test]
async fn the_sync_loop_propagates_and_stops_cleanly() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = linked(mem.clone(), None).await;
    let running = s
        .integration
        .clone()
        .spawn_sync_loop(Duration::from_millis(100), SyncOptions::default())
        .unwrap();
    let grace = mem.find_user("grace.garcia").await.unwrap().unwrap();
    mem.set_enabled(grace.guid, false).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.enabled("grace.garcia").await {
        assert!(
            std::time::Instant::now() < deadline,
            "the loop did not propagate the disable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rounds = running.stop_async().await;
    assert!(rounds >= 1);
    s.integration.disable().unwrap();
    assert_eq!(
        s.integration
            .sync()
            .run_sync_once(&SyncOptions::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::IntegrationDisabled,
        "after disable nothing propagates"
    );
}

#[tokio::test]
async fn a_disable_in_samba_reaches_the_online_account_through_dirsync() {
    let d = Arc::new(
        o365_essentials::ldap::LdapDirectory::new(crate::samba::shared().config()).unwrap(),
    );
    let mut guids = Vec::new();
    for i in 0..2 {
        let u = o365_essentials::model::NewLocalUser {
            sam_account_name: format!("sync{i}"),
            user_principal_name: format!("sync{i}@essentials.test"),
            display_name: format!("Sync Person {i}"),
            ..Default::default()
        };
        guids.push(
            d.create_user(&u, &o365_essentials::SecretString::from("Zebra-Sync-2026!"))
                .await
                .unwrap()
                .guid,
        );
    }
    let s = linked(d.clone(), Some(guids.clone())).await;
    d.set_enabled(guids[0], false).await.unwrap();
    let r = s.sync().await;
    assert!(
        r.results.items.iter().any(|i| i.local_guid == guids[0]
            && i.action == o365_essentials::model::ItemAction::Disable
            && i.outcome == Outcome::Succeeded),
        "{:#?}",
        r.results.items
    );
    assert!(!s.enabled("sync0").await);
    assert!(s.enabled("sync1").await);
}

#[tokio::test]
async fn a_sync_run_cut_off_midway_is_finished_by_the_next_one() {
    use o365_essentials_emulator::config::{Delay, LatencyConfig};
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    // One item at a time, so a cut after 400 ms of 150 ms writes lands between items.
    let s = linked_with(
        mem.clone(),
        None,
        Arc::new(o365_essentials::engine::SystemClock),
        1,
    )
    .await;
    let names = ["ava.adams", "ben.brooks", "chloe.carter", "daniel.diaz"];
    for n in names {
        let u = mem.find_user(n).await.unwrap().unwrap();
        mem.set_enabled(u.guid, false).await.unwrap();
    }
    let hugo = mem.find_user("hugo.hughes").await.unwrap().unwrap();
    mem.delete_user(hugo.guid).await.unwrap();
    // Slow writes, and the run is abandoned (as a killed process would) part-way.
    let slow = LatencyConfig {
        write: Delay {
            fixed_ms: 150,
            jitter_ms: 0,
        },
        ..Default::default()
    };
    reqwest::Client::new()
        .put(format!("{}/latency", s.emu.info().admin_url))
        .json(&slow)
        .send()
        .await
        .unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(400),
        s.integration.sync().run_sync_once(&SyncOptions::default()),
    )
    .await;
    assert!(cut.is_err(), "the run was cut off");
    let disabled_so_far = {
        let mut n = 0;
        for name in names {
            if !s.enabled(name).await {
                n += 1;
            }
        }
        n
    };
    assert!(
        disabled_so_far < 4,
        "part of the work was done ({disabled_so_far})"
    );
    reqwest::Client::new()
        .put(format!("{}/latency", s.emu.info().admin_url))
        .json(&LatencyConfig::default())
        .send()
        .await
        .unwrap();
    let next = s.sync().await;
    assert_eq!(
        next.results.count(Outcome::Failed),
        0,
        "{:#?}",
        next.results.items
    );
    for name in names {
        assert!(!s.enabled(name).await, "{name}");
    }
    assert_eq!(
        s.tenant
            .account("hugo.hughes@contoso.onmicrosoft.com")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert!(
        s.sync().await.results.items.is_empty(),
        "nothing left over, nothing repeated"
    );
}

#[tokio::test]
async fn changes_that_fail_transiently_come_back_in_the_next_run() {
    use o365_essentials_emulator::config::{FaultKind, FaultRule};
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = linked(mem.clone(), None).await;
    let mut tenant_cfg = crate::graph::config_for(&s.emu);
    tenant_cfg.max_attempts = 1; // give up at once, so the fault reaches the run
    s.integration.change_credentials(tenant_cfg).await.unwrap();
    let names = ["isla.ito", "jack.jensen", "kira.kowalski"];
    for n in names {
        let u = mem.find_user(n).await.unwrap().unwrap();
        mem.set_enabled(u.guid, false).await.unwrap();
    }
    let rules = vec![FaultRule {
        path: "/v1.0/users/*".into(),
        method: Some("PATCH".into()),
        probability: 1.0,
        kind: FaultKind::Status { status: 503 },
        limit: Some(2),
    }];
    reqwest::Client::new()
        .put(format!("{}/faults", s.emu.info().admin_url))
        .json(&serde_json::json!({"rules": rules}))
        .send()
        .await
        .unwrap();
    let first = s.sync().await;
    assert_eq!(
        first.results.count(Outcome::Failed),
        2,
        "{:#?}",
        first.results.items
    );
    assert!(
        first
            .results
            .items
            .iter()
            .filter(|i| i.outcome == Outcome::Failed)
            .all(|i| i.error_code == Some(ErrorCode::ServiceUnavailable))
    );
    let second = s.sync().await;
    assert_eq!(
        second.results.count(Outcome::Succeeded),
        2,
        "only the two that failed: {:#?}",
        second.results.items
    );
    for n in names {
        assert!(!s.enabled(n).await, "{n}");
    }
    assert!(s.sync().await.results.items.is_empty());
}

/// The system clock moved on by whole days.
#[derive(Default)]
struct ShiftedClock {
    days: std::sync::atomic::AtomicI64,
}

impl o365_essentials::engine::Clock for ShiftedClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
            + time::Duration::days(self.days.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// `accountExpires` as AD writes it: 100 ns ticks since 1601-01-01.
fn filetime(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp() + 11_644_473_600) * 10_000_000
}

#[tokio::test]
async fn an_expired_samba_account_is_created_blocked_and_one_that_expires_later_is_blocked_then() {
    let samba = crate::samba::shared();
    let d = Arc::new(o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap());
    let mut made = Vec::new();
    for name in ["expired1", "expiring1"] {
        let u = o365_essentials::model::NewLocalUser {
            sam_account_name: name.into(),
            user_principal_name: format!("{name}@essentials.test"),
            display_name: format!("Temp Worker {name}"),
            ..Default::default()
        };
        made.push(
            d.create_user(&u, &o365_essentials::SecretString::from("Zebra-Sync-2026!"))
                .await
                .unwrap(),
        );
    }
    let now = time::OffsetDateTime::now_utc();
    let soon = now + time::Duration::days(1);
    for (u, at) in [(&made[0], now - time::Duration::days(2)), (&made[1], soon)] {
        samba.ldif(
            "ldapmodify",
            &format!(
                "dn: {}\nchangetype: modify\nreplace: accountExpires\naccountExpires: {}\n",
                u.dn,
                filetime(at)
            ),
        );
    }
    let read = d.user(made[0].guid).await.unwrap();
    assert!(read.enabled() && read.expired_at(time::OffsetDateTime::now_utc()));
    let clock = Arc::new(ShiftedClock::default());
    let s = linked_with(
        d.clone(),
        Some(made.iter().map(|u| u.guid).collect()),
        clock.clone(),
        32,
    )
    .await;
    assert!(
        !s.enabled("expired1").await,
        "created blocked, like a disabled account"
    );
    assert!(s.enabled("expiring1").await);
    // Nothing changes in the directory when the day comes; the next sync after it blocks.
    assert!(s.sync().await.results.items.is_empty());
    clock.days.store(2, std::sync::atomic::Ordering::SeqCst);
    let r = s.sync().await;
    assert!(
        r.results.items.iter().any(|i| i.local_guid == made[1].guid
            && i.action == o365_essentials::model::ItemAction::Disable
            && i.reason == Some(o365_essentials::model::PlanReason::ExpiredLocally)
            && i.outcome == Outcome::Succeeded),
        "{:#?}",
        r.results.items
    );
    assert!(!s.enabled("expiring1").await);
}

/// The sync loop started from a program that is not on tokio: the engine runs it on a
/// runtime of its own, reports each round as an event, and allowing changes beyond the
/// threshold applies to the first round only.
#[test]
fn the_sync_loop_runs_without_a_caller_runtime_and_allows_the_threshold_once() {
    use o365_essentials::engine::{CancelToken, Control, Event};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = rt.block_on(linked(mem.clone(), None));
    let disable = |names: &[&str]| {
        rt.block_on(async {
            for n in names {
                let u = mem.find_user(n).await.unwrap().unwrap();
                mem.set_enabled(u.guid, false).await.unwrap();
            }
        })
    };
    // 6 disables exceed the threshold (2 of 12 linked): allowed in the first round.
    disable(&[
        "ava.adams",
        "ben.brooks",
        "chloe.carter",
        "daniel.diaz",
        "emma.evans",
        "finn.fischer",
    ]);
    let (tx, rx) = std::sync::mpsc::channel();
    let ctl = Control::with_observer(
        CancelToken::new(),
        Arc::new(move |e: &Event| {
            if let Event::SyncRoundFinished { counts, error, .. } = e {
                let _ = tx.send((counts.succeeded, counts.held, error.clone()));
            }
        }),
    )
    .unwrap();
    let options = SyncOptions {
        allow_beyond_threshold: true,
        threshold_min: 2,
        ..SyncOptions::default()
    };
    // Called outside any runtime (this is a plain thread).
    let running = s
        .integration
        .clone()
        .start_sync_loop(Some(Duration::from_millis(1000)), options, ctl, None)
        .unwrap();
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(first, (6, 0, None), "the first round applies all six");
    disable(&[
        "grace.garcia",
        "hugo.hughes",
        "isla.ito",
        "jack.jensen",
        "kira.kowalski",
        "liam.lopez",
    ]);
    let mut held = None;
    for _ in 0..50 {
        let round = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        if round.1 > 0 {
            held = Some(round);
            break;
        }
    }
    let (done, held_now, error) = held.expect("a later round holds the disables");
    assert_eq!((done, error), (0, None), "later rounds hold them again");
    assert!(held_now > 2);
    let rounds = running.stop();
    assert!(rounds >= 2);
    assert!(rt.block_on(s.enabled("grace.garcia")));
}

#[tokio::test]
async fn without_a_password_key_password_sync_says_so_instead_of_skipping() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = linked(mem.clone(), None).await;
    let status = s.integration.status().unwrap();
    assert_eq!(
        status.password_sync,
        o365_essentials::engine::PasswordSyncState::NoKey
    );
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap();
    let e = s
        .integration
        .passwords()
        .password_changed(
            ava.guid,
            &o365_essentials::SecretString::from("Spring-Rain-2027!"),
        )
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.message().contains("password_key"), "{e}");
    let r = s.sync().await;
    assert_eq!(
        r.passwords.state,
        o365_essentials::engine::PasswordSyncState::NoKey
    );
}

/// A reviewed sync plan is applied exactly: an item whose local user changed since the
/// plan was made is skipped as stale, the rest is done, and the next plan picks the change
/// up.
#[tokio::test]
async fn a_sync_plan_skips_users_changed_since_it_was_made() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = linked(mem.clone(), None).await;
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap();
    let ben = mem.find_user("ben.brooks").await.unwrap().unwrap();
    mem.set_enabled(ava.guid, false).await.unwrap();
    mem.set_enabled(ben.guid, false).await.unwrap();
    let plan = s
        .integration
        .sync()
        .plan_sync_run(&SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(plan.items.len(), 2);
    // Ben is enabled again after the review.
    mem.set_enabled(ben.guid, true).await.unwrap();
    let report = s
        .integration
        .sync()
        .apply_sync_plan(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    let outcome = |g| {
        report
            .results
            .items
            .iter()
            .find(|i| i.local_guid == g)
            .map(|i| (i.outcome, i.error_code))
    };
    assert_eq!(outcome(ava.guid), Some((Outcome::Succeeded, None)));
    assert_eq!(
        outcome(ben.guid),
        Some((Outcome::Skipped, Some(ErrorCode::PlanStale)))
    );
    assert!(!s.enabled("ava.adams").await);
    assert!(
        s.enabled("ben.brooks").await,
        "nothing was done the plan did not say"
    );
}

#[tokio::test]
async fn a_run_asked_to_wait_for_held_work_waits_and_one_not_asked_is_refused() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let s = linked(mem.clone(), None).await;
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap();
    mem.set_enabled(ava.guid, false).await.unwrap();
    // Another opener of the same store (as another process would be) runs a sync.
    let other = Store::open(s._tmp.path().join("s.db")).unwrap();
    let held = other
        .lease(o365_essentials::store::Work::Sync, None)
        .unwrap();
    let e = s
        .integration
        .sync()
        .run_sync(
            &SyncOptions::default(),
            &o365_essentials::engine::Control::none(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::WorkHeld);
    assert!(
        e.message().contains("another call in this same process"),
        "names the holder, this same process: {e}"
    );
    assert!(
        s.enabled("ava.adams").await,
        "a refused run changes nothing"
    );

    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        drop(held);
    });
    let t = std::time::Instant::now();
    let ctl = o365_essentials::engine::Control::none().with_lease_wait(Duration::from_secs(20));
    let report = s
        .integration
        .sync()
        .run_sync(&SyncOptions::default(), &ctl)
        .await
        .unwrap();
    release.join().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(500), "it waited");
    assert_eq!(report.results.count(Outcome::Succeeded), 1);
    assert!(!s.enabled("ava.adams").await);

    // A wait ends when the call is cancelled.
    let _held = other
        .lease(o365_essentials::store::Work::Sync, None)
        .unwrap();
    let cancel = o365_essentials::engine::CancelToken::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c2.cancel();
    });
    let ctl = o365_essentials::engine::Control::with_cancel(cancel)
        .with_lease_wait(Duration::from_secs(60));
    let e = s
        .integration
        .sync()
        .run_sync(&SyncOptions::default(), &ctl)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Cancelled);
}
