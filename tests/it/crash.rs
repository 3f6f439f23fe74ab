//! Crash safety with real process kills: the quickstart (in `--config` mode, against a
//! Samba DC and the emulator running as its own process) bulk-creates 1,000 online
//! accounts and is SIGKILLed at 20 random points — many of them between a create being
//! applied and its answer arriving — then runs to the end. Exactly 1,000 linked accounts,
//! no duplicates, no orphans.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::samba::{self, BASE_DN, REALM};

const USERS: usize = 1000;
const KILLS: usize = 20;

fn target_bin(rel: &str) -> std::path::PathBuf {
    // target/debug/deps/it-<hash> → target/debug/<rel>
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(|p| p.parent()).unwrap();
    let p = debug.join(rel);
    assert!(
        p.exists(),
        "{} is missing: build with `cargo test --workspace --no-run` (scripts/test does)",
        p.display()
    );
    p
}

#[test]
fn a_bulk_create_killed_at_twenty_points_ends_with_each_account_exactly_once() {
    let quickstart = target_bin("examples/quickstart");
    let emulator_bin = target_bin("o365-essentials-emulator");
    let dc = samba::Samba::start("crash");
    let mut ldif = String::new();
    for i in 0..USERS {
        ldif.push_str(&format!("dn: CN=Crash {i:04},CN=Users,{BASE_DN}\nobjectClass: user\nsAMAccountName: crash{i:04}\nuserPrincipalName: crash{i:04}@{REALM}\ndisplayName: Crash {i:04}\n\n"));
    }
    dc.ldif("ldapadd", &ldif);

    let work = tempfile::tempdir().unwrap();
    // The emulator in its own process, so the tenant survives the runner's deaths; every
    // write takes 200–300 ms (so the run, with its items applied concurrently, lasts long
    // enough for twenty kill points) and waits 4 ms after it is applied before answering.
    let emu_cfg = json!({
        "throttling": {"enabled": false},
        "latency": {
            "write": {"fixed_ms": 200, "jitter_ms": 100},
            "write_response": {"fixed_ms": 4, "jitter_ms": 4}
        },
        "seed": {"skus": [{"sku_id": "f245ecc8-75af-4f8e-b61f-27d8114de5f3", "sku_part_number": "O365_BUSINESS_PREMIUM", "enabled": 5000}]}
    });
    std::fs::write(work.path().join("emulator.json"), emu_cfg.to_string()).unwrap();
    let mut emu = Stopped(
        Command::new(emulator_bin)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(work.path().join("emulator.json"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(emu.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();

    let store = work.path().join("state.db");
    let config = json!({
        "directory": {"ldap": {
            "url": format!("ldaps://{}", dc.ip),
            "ca_file": dc.ca_file,
            "bind": format!("Administrator@{REALM}"),
            "password": samba::ADMIN_PASSWORD,
            "host_name": "dc1.essentials.test"
        }},
        "tenant": {
            "tenant_id": info["tenant_id"],
            "client_id": info["client_id"],
            "credential": {"kind": "secret", "secret": info["client_secret"]},
            "login_url": info["login_url"],
            "graph_url": info["graph_url"],
            "exchange_url": info["exchange_url"],
            "sharepoint_url": info["sharepoint_url"]
        },
        "usage_location": "GB",
        "store": store,
        "results_folder": work.path()
    });
    let config_file = work.path().join("quickstart.json");
    crate::fixtures::write_private(&config_file, config.to_string());
    let run = || {
        Command::new(&quickstart)
            .arg("--config")
            .arg(&config_file)
            .arg("--apply")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    let admin = info["admin_url"].as_str().unwrap().to_string();
    let created = || -> u64 {
        let stats: Value = reqwest::blocking_get(&format!("{admin}/stats"));
        stats["user_created"].as_u64().unwrap_or(0)
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let mut kills = 0;
    let mut mid_flight = 0;
    let mut applied_unheard = 0;
    let mut last_created = 0;
    while kills < KILLS {
        let mut child = run();
        let wait = Duration::from_millis(rng.random_range(300..2500));
        let start = Instant::now();
        let mut finished = false;
        while start.elapsed() < wait {
            if let Ok(Some(_)) = child.try_wait() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if finished {
            break; // Everything done before this kill point.
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let now = created();
        if now > last_created {
            mid_flight += 1;
        }
        last_created = now;
        // An account the tenant has but the store has not linked: the kill fell between
        // the create being applied and the runner hearing (and recording) it.
        if let Ok(st) = o365_essentials::store::Store::open_read_only(&store) {
            let linked = st.links().map(|l| l.len() as u64).unwrap_or(0);
            if now > linked {
                applied_unheard += 1;
            }
        }
    }
    println!(
        "kills: {kills}, while creating: {mid_flight}, with a create applied but unrecorded: {applied_unheard}"
    );
    assert!(
        kills >= 10,
        "the run finished after only {kills} kills; the kill points came too late"
    );
    assert!(
        mid_flight >= 5,
        "only {mid_flight} kills fell while accounts were being created"
    );
    assert!(
        applied_unheard >= 1,
        "no kill fell between a create being applied and being recorded"
    );
    let status = run().wait().unwrap();
    assert!(status.success(), "the final run did not finish cleanly");

    // Exactly one online account per local user, every one linked.
    let state: Value = reqwest::blocking_get(&format!("{admin}/state"));
    let mut by_upn: HashMap<String, usize> = HashMap::new();
    let mut anchors: HashMap<String, usize> = HashMap::new();
    for u in state["users"].as_array().unwrap() {
        let upn = u["userPrincipalName"].as_str().unwrap().to_string();
        if upn.starts_with("crash") {
            *by_upn.entry(upn).or_default() += 1;
            *anchors
                .entry(
                    u["onPremisesImmutableId"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
                .or_default() += 1;
        }
    }
    assert_eq!(
        by_upn.len(),
        USERS,
        "every local user has an online account"
    );
    assert!(by_upn.values().all(|n| *n == 1), "no duplicates");
    assert!(
        anchors.values().all(|n| *n == 1) && !anchors.contains_key(""),
        "each account carries its own anchor"
    );
    let st = o365_essentials::store::Store::open_read_only(&store).unwrap();
    let links = st.links().unwrap();
    assert_eq!(
        links
            .iter()
            .filter(|l| l.user_principal_name.starts_with("crash"))
            .count(),
        USERS,
        "no orphans: every account is linked"
    );
    drop(emu);
    dc.stop();
}

/// The emulator process, stopped when the test ends — also when an assertion fails.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

mod reqwest {
    /// A blocking GET returning JSON, from a test thread with no runtime.
    pub(super) fn blocking_get(url: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().json().await.unwrap() })
    }
}

/// The manual links killed half-way: `assign` and `create_user_with_account` run as the
/// `o365-essentials` program (its own process, against the shared Samba DC and an
/// emulator whose writes take 150–250 ms and answer 200–300 ms after they are applied),
/// SIGKILLed at three kinds of point each — early, once the first half is visible (the
/// local user in the directory; the anchor or the account online, applied but not yet
/// answered), and at a random moment — then the next call of the same kind settles what
/// the dead ones left. No online account without its link and local user, none twice,
/// no local user left without its account.
mod links {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use o365_essentials::model::{LocalUser, NewLocalUser};
    use o365_essentials::ports::Directory;
    use o365_essentials_emulator::config::{Delay, SeedUser};
    use o365_essentials_emulator::{Emulator, EmulatorConfig};
    use rand::{Rng, SeedableRng};
    use serde_json::Value;

    use crate::fixtures;
    use crate::graph::admin;

    /// Kills of each kind of call.
    const KILLS: usize = 9;

    fn bin() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
    }

    fn spawn(cfg: &Path, args: &[&str]) -> Child {
        Command::new(bin())
            .arg("--config")
            .arg(cfg)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn finish(cfg: &Path, args: &[&str]) {
        let out = Command::new(bin())
            .arg("--config")
            .arg(cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An emulator whose writes are slow to apply and slower to answer, seeded with
    /// `users` unanchored accounts.
    async fn emulator(users: &[String]) -> Emulator {
        let mut cfg = EmulatorConfig::default();
        cfg.latency.write = Delay {
            fixed_ms: 150,
            jitter_ms: 100,
        };
        cfg.latency.write_response = Delay {
            fixed_ms: 200,
            jitter_ms: 100,
        };
        for u in users {
            cfg.seed.users.push(SeedUser {
                user_principal_name: format!("{u}@contoso.onmicrosoft.com"),
                display_name: u.clone(),
                ..Default::default()
            });
        }
        Emulator::start(cfg).await.unwrap()
    }

    async fn online_users(emu: &Emulator) -> Vec<Value> {
        admin(emu, "GET", "/state", None).await["users"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits (polling) until `seen` says the call got that far, or the call ends, or 20 s
    /// pass; then SIGKILLs it. Whether the point was reached.
    async fn kill_when<F, Fut>(mut child: Child, mut seen: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        let mut reached = false;
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if seen().await {
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        reached
    }

    async fn kill_after(mut child: Child, wait: Duration) {
        let start = Instant::now();
        while start.elapsed() < wait {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = child.kill();
        child.wait().unwrap();
    }

    fn store(dir: &Path) -> o365_essentials::store::Store {
        o365_essentials::store::Store::open_read_only(dir.join("state.db")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_assign_killed_half_way_leaves_no_anchored_account_unlinked() {
        let samba = crate::samba::shared();
        let dir = o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap();
        let names: Vec<String> = (0..=KILLS).map(|i| format!("kassign{i:02}")).collect();
        let emu = emulator(&names).await;
        let mut locals: Vec<LocalUser> = Vec::new();
        for n in &names {
            locals.push(
                dir.create_user(
                    &NewLocalUser {
                        sam_account_name: n.clone(),
                        user_principal_name: format!("{n}@essentials.test"),
                        display_name: n.clone(),
                        ..Default::default()
                    },
                    &o365_essentials::SecretString::from("Kill-Point-4471!"),
                )
                .await
                .unwrap(),
            );
        }
        let online = online_users(&emu).await;
        let id_of = |n: &str| -> String {
            online
                .iter()
                .find(|u| u["userPrincipalName"] == format!("{n}@contoso.onmicrosoft.com"))
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let tmp = tempfile::tempdir().unwrap();
        let cfg = fixtures::write(
            tmp.path(),
            "config.json",
            &fixtures::config(samba, emu.info(), tmp.path()),
        );
        finish(&cfg, &["integrate"]);

        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(33);
        let mut anchored_unlinked = 0;
        for (i, local) in locals.iter().enumerate().take(KILLS) {
            let (guid, id) = (local.guid.to_string(), id_of(&names[i]));
            let child = spawn(&cfg, &["assign", "--local-guid", &guid, "--online-id", &id]);
            match i % 3 {
                0 => kill_after(child, Duration::from_millis(rng.random_range(0..150))).await,
                1 => {
                    let anchor = local.anchor();
                    let reached = kill_when(child, || {
                        let (emu, id, anchor) = (&emu, id.clone(), anchor.clone());
                        async move {
                            online_users(emu).await.iter().any(|u| {
                                u["id"] == id.as_str()
                                    && u["onPremisesImmutableId"] == anchor.as_str()
                            })
                        }
                    })
                    .await;
                    assert!(reached, "assign {i} never wrote the anchor");
                }
                _ => kill_after(child, Duration::from_millis(rng.random_range(100..1500))).await,
            }
            let anchored = online_users(&emu).await.iter().any(|u| {
                u["id"] == id.as_str() && u["onPremisesImmutableId"] == local.anchor().as_str()
            });
            let linked = store(tmp.path())
                .link_by_local(local.guid)
                .unwrap()
                .is_some();
            if anchored && !linked {
                anchored_unlinked += 1;
            }
        }
        println!("assign: {KILLS} kills, {anchored_unlinked} with the anchor written but no link");
        assert!(
            anchored_unlinked >= KILLS / 3,
            "only {anchored_unlinked} kills fell between the anchor and the link"
        );

        // The next assign settles what the dead ones left, then does its own work.
        let last = &locals[KILLS];
        finish(
            &cfg,
            &[
                "assign",
                "--local-guid",
                &last.guid.to_string(),
                "--online-id",
                &id_of(&names[KILLS]),
            ],
        );
        let st = store(tmp.path());
        let online = online_users(&emu).await;
        for (local, name) in locals.iter().zip(&names) {
            let account = online
                .iter()
                .find(|u| u["userPrincipalName"] == format!("{name}@contoso.onmicrosoft.com"))
                .unwrap();
            let anchored = account["onPremisesImmutableId"] == local.anchor().as_str();
            let link = st.link_by_local(local.guid).unwrap();
            assert_eq!(
                anchored,
                link.is_some(),
                "{name}: an account carries the anchor exactly when it is linked"
            );
            if let Some(l) = link {
                assert_eq!(l.online_id.0, account["id"].as_str().unwrap(), "{name}");
            }
            assert!(
                account["onPremisesImmutableId"].is_null() || anchored,
                "{name} carries no other anchor"
            );
        }
        assert!(
            st.journal_pending().unwrap().is_empty(),
            "every interrupted step was settled"
        );
        for l in &locals {
            dir.delete_user(l.guid).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_user_with_account_killed_half_way_leaves_nothing_half_made() {
        let samba = crate::samba::shared();
        let dir = o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap();
        let emu = emulator(&[]).await;
        let tmp = tempfile::tempdir().unwrap();
        let cfg = fixtures::write(
            tmp.path(),
            "config.json",
            &fixtures::config(samba, emu.info(), tmp.path()),
        );
        finish(&cfg, &["integrate"]);
        let names: Vec<String> = (0..=KILLS).map(|i| format!("kcreate{i:02}")).collect();
        let user = |n: &str| {
            format!(
                r#"{{"sam_account_name": "{n}", "user_principal_name": "{n}@essentials.test", "display_name": "{n}"}}"#
            )
        };
        let password = "Kill-Point-5512!";
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(33);
        let (mut local_only, mut online_unlinked) = (0, 0);
        for (i, n) in names.iter().enumerate().take(KILLS) {
            let u = user(n);
            let child = spawn(
                &cfg,
                &[
                    "create-user-with-account",
                    "--user",
                    &u,
                    "--password",
                    password,
                ],
            );
            let prefix = format!("{n}@");
            match i % 3 {
                0 => {
                    let reached = kill_when(child, || {
                        let (dir, n) = (&dir, n.clone());
                        async move { dir.find_user(&n).await.unwrap().is_some() }
                    })
                    .await;
                    assert!(reached, "{n} was never made locally");
                }
                1 => {
                    let reached = kill_when(child, || {
                        let (emu, prefix) = (&emu, prefix.clone());
                        async move {
                            online_users(emu).await.iter().any(|u| {
                                u["userPrincipalName"]
                                    .as_str()
                                    .unwrap_or("")
                                    .starts_with(&prefix)
                            })
                        }
                    })
                    .await;
                    assert!(reached, "{n} never got an online account");
                }
                _ => kill_after(child, Duration::from_millis(rng.random_range(0..1500))).await,
            }
            let local = dir.find_user(n).await.unwrap();
            let online = online_users(&emu).await.iter().any(|u| {
                u["userPrincipalName"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(&prefix)
            });
            let linked = match &local {
                Some(l) => store(tmp.path()).link_by_local(l.guid).unwrap().is_some(),
                None => false,
            };
            if local.is_some() && !online {
                local_only += 1;
            }
            if online && !linked {
                online_unlinked += 1;
            }
        }
        println!(
            "create_user_with_account: {KILLS} kills, {local_only} with only the local user made, {online_unlinked} with the account made but not linked"
        );
        assert!(
            local_only >= KILLS / 3,
            "only {local_only} kills fell after the local create"
        );
        assert!(
            online_unlinked >= KILLS / 3,
            "only {online_unlinked} kills fell between the online create and the link"
        );

        // The next call settles what the dead ones left, then makes its own user.
        let u = user(&names[KILLS]);
        finish(
            &cfg,
            &[
                "create-user-with-account",
                "--user",
                &u,
                "--password",
                password,
            ],
        );
        let st = store(tmp.path());
        let online = online_users(&emu).await;
        for n in &names {
            let prefix = format!("{n}@");
            let accounts: Vec<&Value> = online
                .iter()
                .filter(|u| {
                    u["userPrincipalName"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with(&prefix)
                })
                .collect();
            match dir.find_user(n).await.unwrap() {
                Some(local) => {
                    assert_eq!(accounts.len(), 1, "{n}: exactly one online account");
                    assert_eq!(
                        accounts[0]["onPremisesImmutableId"],
                        local.anchor().as_str(),
                        "{n}: the account carries the user's anchor"
                    );
                    let link = st.link_by_local(local.guid).unwrap();
                    assert_eq!(
                        link.map(|l| l.online_id.0),
                        accounts[0]["id"].as_str().map(str::to_string),
                        "{n}: linked to its account"
                    );
                    dir.delete_user(local.guid).await.unwrap();
                }
                None => assert!(
                    accounts.is_empty(),
                    "{n}: no online account without a local user"
                ),
            }
        }
        assert!(
            st.journal_pending().unwrap().is_empty(),
            "every interrupted step was settled"
        );
    }
}
