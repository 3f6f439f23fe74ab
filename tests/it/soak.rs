//! The convergence soak: `o365-essentials serve` (the service's sync loop, a real
//! process) against the emulator with about 10% of Graph requests faulted (429, 5xx,
//! resets, lost answers), `samba-tool user syncpasswords` running the password hook, and a
//! driver making random local changes on the Samba DC (creates, renames, disables,
//! enables, deletes, password changes) while the administrator bulk-creates accounts for
//! the new users from the command line and the service is SIGKILLed and restarted at
//! random moments. At the end, faults off and one more run: every linked online account
//! matches the local truth, each user's newest password is the online one, nothing is
//! duplicated or orphaned, the journal has no open entry, the sync plans nothing, and the
//! service's memory stayed flat.
//!
//! Bounded: `O365_SOAK_SECS` seconds of changes (80 in `scripts/test`; RELIABILITY.md
//! has a 30-minute run: `O365_SOAK_SECS=1800 cargo test --test it soak -- --nocapture`).
//! Kills fall in the first 60% of the run; the last 40% is one service process, whose
//! RSS is read after its first minute (or a quarter of its life when shorter) and at
//! the end.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use o365_essentials::SecretString;
use o365_essentials::ldap::LdapDirectory;
use o365_essentials::model::{NewLocalUser, ObjectGuid};
use o365_essentials::ports::Directory;
use o365_essentials::store::Store;
use o365_essentials_emulator::config::{FaultKind, FaultRule};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::fixtures;
use crate::graph::admin;
use crate::samba;

const PREFIX: &str = "soak";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// A local user as the driver left it.
#[derive(Debug, Clone)]
struct Person {
    guid: ObjectGuid,
    dn: String,
    display: String,
    enabled: bool,
    deleted: bool,
    password: String,
}

/// A name of letters only (Samba refuses a password holding a 3+ character token of the
/// display name; the passwords here hold digits and `Zw#` only).
fn code(mut n: usize) -> String {
    let mut s = String::new();
    loop {
        s.insert(0, (b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

fn password(rng: &mut impl Rng) -> String {
    format!(
        "{:06}-Zw#{:04}",
        rng.random_range(0..1_000_000),
        rng.random_range(0..10_000)
    )
}

fn faults() -> Value {
    let rule = |kind: FaultKind, method: Option<&str>, probability: f64| FaultRule {
        path: "/v1.0/*".into(),
        method: method.map(str::to_string),
        probability,
        kind,
        limit: None,
    };
    json!({"rules": [
        rule(FaultKind::Status { status: 429 }, None, 0.03),
        rule(FaultKind::Status { status: 500 }, None, 0.01),
        rule(FaultKind::Status { status: 503 }, None, 0.02),
        rule(FaultKind::Status { status: 504 }, None, 0.01),
        rule(FaultKind::Reset, None, 0.02),
        rule(FaultKind::LostResponse, Some("POST"), 0.04),
        rule(FaultKind::LostResponse, Some("PATCH"), 0.04),
    ]})
}

/// `VmRSS` of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Service {
    child: Child,
    started: Instant,
}

fn start_service(config: &Path, log: &Path) -> Service {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(["serve", "--interval", "2", "--delivery-interval", "2"])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Service {
        child,
        started: Instant::now(),
    }
}

/// The administrator's bulk create from the command line for these users; the failed
/// ones stay unlinked for the next try.
fn bulk_create(config: &Path, guids: &[String]) -> (usize, usize) {
    if guids.is_empty() {
        return (0, 0);
    }
    let plan = cli(
        config,
        &[
            "--json",
            "--lease-wait",
            "20",
            "plan-bulk-create",
            "--users",
            &guids.join(","),
        ],
    );
    if !plan.status.success() {
        return (0, guids.len());
    }
    let file = config.with_file_name("plan.json");
    std::fs::write(&file, &plan.stdout).unwrap();
    let out = cli(
        config,
        &[
            "--json",
            "--lease-wait",
            "20",
            "apply-plan",
            "--plan",
            &format!("@{}", file.display()),
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let created = v["items"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["outcome"] == "succeeded").count())
        .unwrap_or(0);
    (created, guids.len() - created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_converges_under_faults_kills_and_local_changes() {
    let secs: u64 = std::env::var("O365_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(80);
    let run_for = Duration::from_secs(secs);
    let seed: u64 = std::env::var("O365_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // A DC of its own: its syncpasswords loop would make the requirements check of the
    // other hook tests see a loop running for their DC.
    let dc = samba::Samba::start("soak");
    let samba = &dc;
    let dir = LdapDirectory::new(samba.config()).unwrap();
    let emu = Emulator::start(EmulatorConfig {
        random_seed: seed,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    // The driver changes users faster than any office: the mass-change guard (tested on
    // its own in operations.rs) is set wide enough not to hold the service's rounds.
    let config = fixtures::write(
        work,
        "config.json",
        &fixtures::merged(
            fixtures::merged(
                fixtures::config(samba, emu.info(), work),
                json!({"sync": {"interval_secs": 2, "threshold_min": 50}}),
            ),
            fixtures::password_capture(samba),
        ),
    );
    let out = cli(&config, &["integrate"]);
    assert!(out.status.success(), "{out:?}");

    // Thirty people to start with, created online with faults off.
    let mut people: Vec<Person> = Vec::new();
    let mut next = 0usize;
    let create = |rng: &mut rand_chacha::ChaCha8Rng, next: &mut usize| {
        let c = code(*next + 26 * 26 * (seed as usize % 7 + 1));
        *next += 1;
        let display = format!("Soak {}", c.to_uppercase());
        let pw = password(rng);
        let sam = format!("{PREFIX}.{c}");
        (
            NewLocalUser {
                sam_account_name: sam.clone(),
                user_principal_name: format!("{sam}@{}", samba::REALM),
                display_name: display.clone(),
                ..Default::default()
            },
            display,
            pw,
        )
    };
    for _ in 0..30 {
        let (n, display, pw) = create(&mut rng, &mut next);
        let u = dir
            .create_user(&n, &SecretString::from(pw.clone()))
            .await
            .unwrap();
        people.push(Person {
            guid: u.guid,
            dn: u.dn.clone(),
            display,
            enabled: true,
            deleted: false,
            password: pw,
        });
    }

    // The password hook, as the syncpasswords unit runs it.
    let cache = fixtures::syncpasswords_cache(samba, &bin(), work);
    let syncpasswords = || {
        let mut c = samba.samba_tool(&["user", "syncpasswords"]);
        c.arg(format!("--cache-ldb={}", cache.display()))
            .env("O365_ESSENTIALS_CONFIG", &config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut capture = syncpasswords().spawn().unwrap();
    // The requirements check sees the loop running for this DC.
    let out = cli(&config, &["--json", "requirements"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let running = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "samba_syncpasswords_running"))
        .map(|c| c["status"].clone());
    assert_eq!(running, Some(json!("pass")), "{report}");

    let guids: Vec<String> = people.iter().map(|p| p.guid.to_string()).collect();
    let (created, _) = bulk_create(&config, &guids);
    assert_eq!(created, 30, "the first thirty accounts, faults off");
    admin(&emu, "PUT", "/faults", Some(faults())).await;
    let stats_before = admin(&emu, "GET", "/stats", None).await;

    let log = work.join("serve.log");
    let mut service = start_service(&config, &log);
    let start = Instant::now();
    let kills_until = start + run_for.mul_f64(0.6);
    let mut next_kill = start + Duration::from_millis(rng.random_range(4_000..12_000));
    let mut next_bulk = start + Duration::from_secs(8);
    let mut kills = 0u32;
    let mut counts: HashMap<&str, u32> = HashMap::new();
    let (mut bulk_created, mut bulk_failed) = (0usize, 0usize);
    let mut rss_first: Option<u64> = None;
    let mut linked: HashSet<ObjectGuid> = people.iter().map(|p| p.guid).collect();

    while start.elapsed() < run_for {
        let now = Instant::now();
        if now >= next_kill && now < kills_until {
            service.child.kill().unwrap(); // SIGKILL
            service.child.wait().unwrap();
            kills += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(0..2_000)));
            service = start_service(&config, &log);
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(4_000..15_000));
        }
        if now >= kills_until && rss_first.is_none() {
            let life = (start + run_for).saturating_duration_since(service.started);
            if service.started.elapsed() >= Duration::from_secs(60).min(life / 4) {
                rss_first = rss_kib(service.child.id());
            }
        }
        if now >= next_bulk {
            let unlinked: Vec<String> = people
                .iter()
                .filter(|p| !p.deleted && !linked.contains(&p.guid))
                .map(|p| p.guid.to_string())
                .collect();
            let (c, f) = bulk_create(&config, &unlinked);
            bulk_created += c;
            bulk_failed += f;
            linked = Store::open_read_only(work.join("state.db"))
                .unwrap()
                .links()
                .unwrap()
                .into_iter()
                .map(|l| l.local_guid)
                .collect();
            next_bulk = Instant::now() + Duration::from_secs(rng.random_range(6..12));
        }
        let alive: Vec<usize> = (0..people.len()).filter(|&k| !people[k].deleted).collect();
        let k = alive[rng.random_range(0..alive.len())];
        let roll = rng.random_range(0..100);
        let what = if roll < 8 {
            let (n, display, pw) = create(&mut rng, &mut next);
            let u = dir
                .create_user(&n, &SecretString::from(pw.clone()))
                .await
                .unwrap();
            people.push(Person {
                guid: u.guid,
                dn: u.dn.clone(),
                display,
                enabled: true,
                deleted: false,
                password: pw,
            });
            "create"
        } else if roll < 28 {
            let p = &mut people[k];
            let base = p.display.split(" v").next().unwrap_or_default().to_string();
            p.display = format!("{base} v{}", rng.random_range(0..1000));
            samba.ldif(
                "ldapmodify",
                &format!(
                    "dn: {}\nchangetype: modify\nreplace: displayName\ndisplayName: {}\n-\n",
                    p.dn, p.display
                ),
            );
            "rename"
        } else if roll < 43 {
            people[k].enabled = false;
            dir.set_enabled(people[k].guid, false).await.unwrap();
            "disable"
        } else if roll < 58 {
            people[k].enabled = true;
            dir.set_enabled(people[k].guid, true).await.unwrap();
            "enable"
        } else if roll < 63 && alive.len() > 20 {
            people[k].deleted = true;
            dir.delete_user(people[k].guid).await.unwrap();
            "delete"
        } else {
            let pw = password(&mut rng);
            dir.set_password(people[k].guid, &SecretString::from(pw.clone()))
                .await
                .unwrap();
            people[k].password = pw;
            "password"
        };
        *counts.entry(what).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..900))).await;
    }

    // Faults off; the hook catches up (the running one, then a pass of its own); the
    // service's memory at the end; SIGTERM.
    reqwest::Client::new()
        .delete(format!("{}/faults", emu.info().admin_url))
        .send()
        .await
        .unwrap();
    let stats = admin(&emu, "GET", "/stats", None).await;
    let delta = |k: &str| stats[k].as_u64().unwrap_or(0) - stats_before[k].as_u64().unwrap_or(0);
    let faulted = delta("fault_status") + delta("fault_reset") + delta("fault_lost_response");
    let requests = delta("requests");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = capture.kill();
    let _ = capture.wait();
    let pass = syncpasswords().arg("--no-wait").output().unwrap();
    assert!(pass.status.success(), "{pass:?}");
    let rss_end = rss_kib(service.child.id());
    assert!(
        Command::new("kill")
            .args(["-TERM", &service.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = service.child.wait().unwrap();
    assert!(
        status.success(),
        "the last service stops cleanly on SIGTERM: {status}"
    );

    // One more run with faults off: the administrator's bulk create for who is left, a
    // sync round.
    let store = Store::open_read_only(work.join("state.db")).unwrap();
    let linked: HashSet<ObjectGuid> = store
        .links()
        .unwrap()
        .iter()
        .map(|l| l.local_guid)
        .collect();
    drop(store);
    let unlinked: Vec<String> = people
        .iter()
        .filter(|p| !p.deleted && !linked.contains(&p.guid))
        .map(|p| p.guid.to_string())
        .collect();
    let (c, f) = bulk_create(&config, &unlinked);
    assert_eq!(
        f, 0,
        "the last bulk create, faults off, creates every account left"
    );
    bulk_created += c;
    let out = cli(&config, &["--json", "sync-once"]);
    // 21 is "done, with failures" (docs/COMMAND-LINE.md): a password queued for someone
    // deleted since is refused, and said. Nothing else may be refused.
    assert!(matches!(out.status.code(), Some(0 | 21)), "{out:?}");
    let last: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(last["held"], 0, "{last}");
    let deleted: HashSet<String> = people
        .iter()
        .filter(|p| p.deleted)
        .map(|p| p.guid.to_string())
        .collect();
    for refused in last["passwords"]["refused"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let guid = refused["local_guid"].as_str().unwrap_or_default();
        assert!(
            deleted.contains(guid),
            "a password refused for someone still here: {refused}"
        );
    }

    // The checks.
    let store = Store::open_read_only(work.join("state.db")).unwrap();
    let links = store.links().unwrap();
    let pending = store.journal_pending().unwrap();
    assert!(pending.is_empty(), "open journal entries: {pending:?}");
    drop(store);
    let state = admin(&emu, "GET", "/state", None).await;
    let online: HashMap<String, Value> = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap().to_string(), u.clone()))
        .collect();
    let by_guid: HashMap<ObjectGuid, &Person> = people.iter().map(|p| (p.guid, p)).collect();
    let mut checked_passwords = 0;
    for l in &links {
        let p = by_guid
            .get(&l.local_guid)
            .unwrap_or_else(|| panic!("a link to a user the soak never made: {l:?}"));
        let acc = online.get(&l.online_id.0);
        if p.deleted {
            assert!(
                acc.is_none(),
                "{} was deleted locally but is online",
                p.display
            );
            continue;
        }
        let acc = acc.unwrap_or_else(|| panic!("{}'s online account is gone", p.display));
        assert_eq!(acc["displayName"], p.display.as_str(), "{acc}");
        assert_eq!(acc["accountEnabled"], p.enabled, "{}: {acc}", p.display);
        let check = admin(
            &emu,
            "POST",
            &format!("/users/{}/check-password", l.online_id.0),
            Some(json!({ "password": p.password })),
        )
        .await;
        assert_eq!(
            check["matches"], true,
            "{}: the newest local password is online",
            p.display
        );
        checked_passwords += 1;
    }
    for p in people.iter().filter(|p| !p.deleted) {
        assert!(
            links.iter().any(|l| l.local_guid == p.guid),
            "{} has no online account after the last bulk create",
            p.display
        );
    }
    // Nothing duplicated or orphaned: every soak account online is one link's.
    let ours: HashSet<&str> = links.iter().map(|l| l.online_id.0.as_str()).collect();
    let soak_online: Vec<&Value> = online
        .values()
        .filter(|u| {
            u["displayName"]
                .as_str()
                .is_some_and(|d| d.starts_with("Soak "))
        })
        .collect();
    for u in &soak_online {
        assert!(
            ours.contains(u["id"].as_str().unwrap()),
            "an online account no link knows (a duplicate): {u}"
        );
    }
    // The engine's own view agrees: nothing left to do.
    let plan = cli(&config, &["--json", "plan-sync"]);
    assert!(plan.status.success(), "{plan:?}");
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["items"], json!([]), "{plan}");

    // What the service logged: JSON lines only, rounds that failed under faults and
    // rounds that went through.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut rounds = (0, 0);
    for line in text.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v["event"] == "sync_round_finished" {
            if v.get("error_code").is_some() {
                rounds.1 += 1;
            } else {
                rounds.0 += 1;
            }
        }
    }
    assert!(rounds.0 > 0, "no round went through: {text}");
    let (first, end) = (rss_first.unwrap_or(0), rss_end.unwrap_or(0));
    let mut report = std::io::stdout();
    writeln!(
        report,
        "soak_seconds: {secs}\nsoak_seed: {seed}\nsoak_kills: {kills}\nsoak_changes: {counts:?}\n\
         soak_bulk_created: {bulk_created}\nsoak_bulk_failed_items: {bulk_failed}\n\
         soak_rounds_ok: {}\nsoak_rounds_failed: {}\nsoak_linked: {}\nsoak_passwords_checked: {checked_passwords}\n\
         soak_rss_kib_first: {first}\nsoak_rss_kib_end: {end}\nsoak_requests_under_faults: {requests}\nsoak_faulted: {faulted} ({:.1}%)",
        rounds.0,
        rounds.1,
        links.len(),
        100.0 * faulted as f64 / requests.max(1) as f64
    )
    .unwrap();
    assert!(
        first > 0 && end > 0,
        "RSS read: first {first} KiB, end {end} KiB"
    );
    assert!(
        end <= first * 3 / 2 + 8 * 1024,
        "the service's memory grew: {first} KiB after its first minute, {end} KiB at the end"
    );
}
