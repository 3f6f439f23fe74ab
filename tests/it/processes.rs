//! Many processes on one store, as on a real server: real OS processes (this test binary
//! run again in a role) open one integration from one JSON configuration — one runs the
//! sync loop, one queues 200 password changes, one applies a 300-account plan — against
//! Samba and the emulator; then the holder of a plan's lease is SIGKILLed part-way and
//! another process finishes the work.

#![allow(clippy::print_stdout)] // a child process reports to its parent on stdout

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use o365_essentials::config::IntegrationConfig;
use o365_essentials::engine::{BulkCreateRequest, CancelToken, Control, Integration};
use o365_essentials::model::{ObjectGuid, Outcome};
use o365_essentials::ports::Directory;
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::graph::admin;

const ROLE: &str = "O365_TEST_ROLE";
const CONFIG: &str = "O365_TEST_CONFIG";
const USERS: &str = "O365_TEST_USERS";
const TEST: &str =
    "processes::several_processes_share_one_integration_and_a_killed_lease_holder_is_taken_over";

fn password_for(g: ObjectGuid) -> String {
    format!("Sea-Breeze-{}!", &g.to_string()[..8])
}

/// The part a child process plays.
fn child(role: &str) {
    let config = IntegrationConfig::from_json(&std::env::var(CONFIG).unwrap()).unwrap();
    let users: Vec<ObjectGuid> = serde_json::from_str(&std::env::var(USERS).unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let integration = Arc::new(Integration::open(config).unwrap());
    match role {
        "loop" => {
            let running = integration
                .clone()
                .start_sync_loop(
                    Some(Duration::from_millis(200)),
                    integration.sync().sync_options(),
                    Control::none(),
                    None,
                )
                .unwrap();
            println!("\n@@ready");
            // Runs until the parent kills it.
            std::thread::sleep(Duration::from_secs(120));
            running.stop();
        }
        "passwords" => {
            for g in users {
                let queued = integration
                    .passwords()
                    .password_changed(g, &o365_essentials::SecretString::from(password_for(g)))
                    .unwrap();
                assert!(queued);
            }
            println!("\n@@done");
        }
        "apply" => rt.block_on(async {
            let plan = integration
                .accounts()
                .plan_bulk_create(
                    &integration.accounts().snapshot().await.unwrap(),
                    &BulkCreateRequest {
                        users: Some(users.iter().map(|g| (*g).into()).collect()),
                        ..Default::default()
                    },
                )
                .unwrap();
            println!("\n@@ready {}", plan.items.len());
            let r = integration
                .accounts()
                .apply(&plan, &Control::none())
                .await
                .unwrap();
            assert_eq!(r.count(Outcome::Failed), 0, "{r:?}");
            println!("\n@@done");
        }),
        other => panic!("no role {other}"),
    }
}

fn spawn(role: &str, config: &str, users: &[ObjectGuid]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(CONFIG, config)
        .env(USERS, serde_json::to_string(users).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for a line starting with `what` on the child's output.
fn wait_for(child: &mut Child, what: &str) -> String {
    let out = child.stdout.as_mut().unwrap();
    let mut r = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "the child ended before `{what}`"
        );
        // libtest prints `test name ... ` before the test's own output, on one line.
        if let Some(i) = line.find(what) {
            return line[i..].trim().to_string();
        }
    }
}

async fn counter(emu: &Emulator, name: &str) -> u64 {
    admin(emu, "GET", "/stats", None).await[name]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn several_processes_share_one_integration_and_a_killed_lease_holder_is_taken_over() {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(parent());
}

async fn parent() {
    let samba = crate::samba::shared();
    let ldap = samba.config();
    let dir = o365_essentials::ldap::LdapDirectory::new(ldap.clone()).unwrap();
    let make = |prefix: &'static str, n: usize| {
        let dir = &dir;
        async move {
            let mut v = Vec::new();
            for i in 0..n {
                v.push(
                    dir.create_user(
                        &o365_essentials::model::NewLocalUser {
                            sam_account_name: format!("{prefix}{i:03}"),
                            user_principal_name: format!("{prefix}{i:03}@essentials.test"),
                            display_name: format!("Worker {prefix} {i:03}"),
                            ..Default::default()
                        },
                        &o365_essentials::SecretString::from("Zebra-Sync-2026!"),
                    )
                    .await
                    .unwrap()
                    .guid,
                );
            }
            v
        }
    };
    let pw_users = make("mpw", 200).await;
    let new_users = make("mnew", 300).await;
    let late_users = make("mlate", 100).await;

    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = crate::fixtures::config(samba, emu.info(), tmp.path()).to_string();

    // This process links the 200 users whose passwords will change.
    let main = Integration::open(IntegrationConfig::from_json(&config).unwrap()).unwrap();
    main.integrate().await.unwrap();
    let plan = main
        .accounts()
        .plan_bulk_create(
            &main.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                users: Some(pw_users.iter().map(|g| (*g).into()).collect()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(plan.items.len(), 200);
    main.accounts()
        .apply(&plan, &Control::none())
        .await
        .unwrap();
    let updated_before = counter(&emu, "user_updated").await;

    // Three processes at once, on the same store.
    let mut sync_loop = spawn("loop", &config, &[]);
    wait_for(&mut sync_loop, "@@ready");
    let mut passwords = spawn("passwords", &config, &pw_users);
    let mut apply = spawn("apply", &config, &new_users);
    for c in [&mut passwords, &mut apply] {
        wait_for(c, "@@done");
        assert!(
            c.wait().unwrap().success(),
            "no SQLITE_BUSY or other error reached a caller"
        );
    }
    // The loop delivers every queued password.
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter(&emu, "user_updated").await < updated_before + 200 {
        assert!(
            Instant::now() < deadline,
            "the sync loop did not deliver the passwords"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Exactly once each: nothing else updated accounts, and every password is the new one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(counter(&emu, "user_updated").await, updated_before + 200);
    let status = main
        .call("status", Value::Null, &Control::none())
        .await
        .unwrap();
    assert_eq!(
        status["links"], 500,
        "the other processes' links are in the shared store"
    );
    for g in pw_users.iter().take(20) {
        let upn = format!(
            "{}@contoso.onmicrosoft.com",
            dir.user(*g).await.unwrap().sam_account_name
        );
        let online = main.microsoft365().tenant.account(&upn).await.unwrap();
        let r: Value = reqwest::Client::new()
            .post(format!(
                "{}/users/{}/check-password",
                emu.info().admin_url,
                online.id.0
            ))
            .json(&json!({"password": password_for(*g)}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["matches"], true, "{upn}");
    }
    sync_loop.kill().unwrap();
    sync_loop.wait().unwrap();

    // A plan's lease holder killed part-way (slow writes): the lease is free at once and
    // this process finishes the rest with no duplicates.
    admin(
        &emu,
        "PUT",
        "/latency",
        Some(json!({"write": {"fixed_ms": 400, "jitter_ms": 0}})),
    )
    .await;
    let created_before = counter(&emu, "user_created").await;
    let mut doomed = spawn("apply", &config, &late_users);
    wait_for(&mut doomed, "@@ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&emu, "user_created").await < created_before + 20 {
        assert!(
            Instant::now() < deadline,
            "the doomed apply made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = main
        .accounts()
        .apply(&plan, &Control::none())
        .await
        .unwrap_err();
    assert_eq!(e.code(), o365_essentials::ErrorCode::WorkHeld, "{e}");
    assert!(
        e.message().contains(&format!("process {}", doomed.id())),
        "{e}"
    );
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    admin(&emu, "PUT", "/latency", Some(json!({}))).await;
    let rest = main
        .accounts()
        .plan_bulk_create(
            &main.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                users: Some(late_users.iter().map(|g| (*g).into()).collect()),
                ..Default::default()
            },
        )
        .unwrap();
    let r = main
        .accounts()
        .apply(&rest, &Control::with_cancel(CancelToken::new()))
        .await
        .unwrap();
    assert_eq!(r.count(Outcome::Failed), 0, "{r:?}");
    let state = admin(&emu, "GET", "/state", None).await;
    let mut upns: Vec<String> = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            u["userPrincipalName"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
        })
        .collect();
    let total = upns.len();
    upns.sort_unstable();
    upns.dedup();
    assert_eq!(upns.len(), total, "no account twice");
    assert_eq!(
        total,
        1 + 200 + 300 + 100,
        "every account once: admin + 600"
    );
}
