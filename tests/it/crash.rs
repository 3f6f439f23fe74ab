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
    let mut emu = Command::new(emulator_bin)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(work.path().join("emulator.json"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(emu.stdout.take().unwrap())
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
    let _ = emu.kill();
    let _ = emu.wait();
    dc.stop();
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
