//! `cargo bench --bench engine`, each part in a process of its own (so each peak-memory
//! figure is that part's):
//! 1. planning a bulk create for 100,000 local users against 100,000 online accounts (half
//!    of them hard-matched by anchor), time and peak memory;
//! 2. 10,000 linked users in a Samba DC: the first (full) sync run against the emulator
//!    with the documented resource-unit budget, beside the bound that budget sets; then
//!    one change and the incremental run (LDAP operations, Graph requests, seconds);
//! 3. `SyncView::plan_sync_run` for 100,000 linked users (memory directory; the
//!    emulator in another process): the first plan, which reads everything, and one after
//!    1,000 local changes — seconds and the peak memory of the planning process.
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/samba.rs"]
mod samba;

use std::time::Instant;

use o365_essentials::engine::{BulkCreateRequest, Snapshot, plan_bulk_create};
use o365_essentials::model::{
    LocalUser, ObjectGuid, OnlineAccount, OnlineAccountId, PlanAction, uac,
};

const N: usize = 100_000;

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

const PART: &str = "O365_BENCH_PART";

fn vm_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    match std::env::var(PART).as_deref() {
        Ok("plan_bulk") => plan_100k(),
        Ok("samba") => incremental(),
        Ok("sync_plan") => sync_plan_100k(),
        Ok("emulator") => serve_emulator(),
        _ => {
            for part in ["plan_bulk", "samba", "sync_plan"] {
                let status = std::process::Command::new(std::env::current_exe().unwrap())
                    .env(PART, part)
                    .status()
                    .unwrap();
                assert!(status.success(), "part {part} failed");
            }
        }
    }
}

/// Runs an emulator (throttling at the documented small-tenant budget) and prints its
/// connection facts as one JSON line; serves until stdin closes.
fn serve_emulator() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let emu = o365_essentials_emulator::Emulator::start(
            o365_essentials_emulator::EmulatorConfig::default(),
        )
        .await
        .unwrap();
        println!("{}", serde_json::to_string(emu.info()).unwrap());
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut sink);
        })
        .await
        .unwrap();
    });
}

async fn resource_units(admin_url: &str) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{admin_url}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["resource_units"].as_u64().unwrap_or(0)
}

/// The documented small-tenant budget: 3,500 resource units per 10 s per app.
const RU_BUCKET: f64 = 3500.0;
const RU_PER_SECOND: f64 = 350.0;

/// The shortest time the budget allows for `units` (a full bucket at the start).
fn ru_bound_seconds(units: f64) -> f64 {
    ((units - RU_BUCKET) / RU_PER_SECOND).max(0.0)
}

fn incremental() {
    use futures::TryStreamExt;
    use o365_essentials::engine::{Integration, SyncOptions, suggest_upn};
    use o365_essentials::graph::{GraphConfig, GraphTenant};
    use o365_essentials::ldap::LdapDirectory;
    use o365_essentials::model::{Link, LinkOrigin, LinkState};
    use o365_essentials::ports::Directory;
    use o365_essentials::store::Store;
    use std::sync::Arc;

    const USERS: usize = 10_000;
    let dc = samba::Samba::start("incremental");
    let mut ldif = String::new();
    for i in 0..USERS {
        ldif.push_str(&format!(
            "dn: CN=Inc User {i:05},CN=Users,{b}\nobjectClass: user\nsAMAccountName: inc{i:05}\nuserPrincipalName: inc{i:05}@{r}\ngivenName: Inc\nsn: User{i:05}\ndisplayName: Inc User {i:05}\nuserAccountControl: 512\n\n",
            b = samba::BASE_DN,
            r = samba::REALM
        ));
    }
    dc.ldif("ldapadd", &ldif);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The documented budget for a small tenant (3,500 resource units per 10 s).
        let emu = o365_essentials_emulator::Emulator::start(
            o365_essentials_emulator::EmulatorConfig::default(),
        )
        .await
        .unwrap();
        let info = emu.info().clone();
        let dir = Arc::new(LdapDirectory::new(dc.config()).unwrap());
        let users: Vec<LocalUser> = dir.users().try_collect().await.unwrap();
        let users: Vec<LocalUser> = users
            .into_iter()
            .filter(|u| u.sam_account_name.starts_with("inc"))
            .collect();
        assert_eq!(users.len(), USERS);
        // Online accounts that already match, linked in the store.
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(tmp.path().join("state.db")).unwrap());
        let http = reqwest::Client::new();
        for chunk in users.chunks(1000) {
            let seed: Vec<serde_json::Value> = chunk
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "user_principal_name": suggest_upn(u, "contoso.onmicrosoft.com"),
                        "display_name": u.friendly_name(),
                        "given_name": u.given_name,
                        "surname": u.surname,
                        "account_enabled": u.enabled(),
                        "on_premises_immutable_id": u.anchor().as_str(),
                    })
                })
                .collect();
            let r: serde_json::Value = http
                .post(format!("{}/seed", info.admin_url))
                .json(&serde_json::json!({"users": seed}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for (u, id) in chunk.iter().zip(r["userIds"].as_array().unwrap()) {
                store
                    .put_link(&Link {
                        local_guid: u.guid,
                        online_id: OnlineAccountId(id.as_str().unwrap().into()),
                        anchor: u.anchor(),
                        user_principal_name: suggest_upn(u, "contoso.onmicrosoft.com"),
                        state: LinkState::Active,
                        origin: LinkOrigin::HardMatch,
                        linked_at: time::OffsetDateTime::now_utc(),
                    })
                    .unwrap();
            }
        }
        let mut gc = GraphConfig::with_secret(
            &info.tenant_id,
            &info.client_id,
            info.client_secret.clone().unwrap(),
        );
        gc.login_url = info.login_url.clone();
        gc.graph_url = info.graph_url.clone();
        let tenant = Arc::new(GraphTenant::new(gc).unwrap());
        let integration = Integration::new(dir.clone(), tenant.clone(), store);
        integration.integrate().await.unwrap();
        let (g0, ru0) = (
            tenant.request_counts().requests,
            resource_units(&info.admin_url).await,
        );
        let t = Instant::now();
        let first = integration
            .sync()
            .run_sync_once(&SyncOptions::default())
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let units = (resource_units(&info.admin_url).await - ru0) as f64;
        assert!(first.results.items.is_empty(), "the seeded accounts match");
        println!("linked_users: {USERS}");
        println!("full_sync_seconds: {secs:.2}");
        println!(
            "full_sync_graph_requests: {}",
            tenant.request_counts().requests - g0
        );
        println!("full_sync_resource_units: {units:.0}");
        println!("full_sync_ru_bound_seconds: {:.2}", ru_bound_seconds(units));
        // Reading each linked account by itself ($select: 1 unit each) instead.
        println!(
            "per_account_reads_ru_bound_seconds: {:.2}",
            ru_bound_seconds(USERS as f64)
        );

        dir.set_enabled(users[USERS / 2].guid, false).await.unwrap();
        let (l0, g0) = (dir.operation_count(), tenant.request_counts().requests);
        let t = Instant::now();
        let run = integration
            .sync()
            .run_sync_once(&SyncOptions::default())
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(run.results.items.len(), 1, "{:?}", run.results.items);
        println!("directory_users: {USERS}");
        println!("incremental_items: {}", run.results.items.len());
        println!("incremental_ldap_ops: {}", dir.operation_count() - l0);
        println!(
            "incremental_graph_requests: {}",
            tenant.request_counts().requests - g0
        );
        println!("incremental_seconds: {secs:.3}");
    });
    dc.stop();
}

fn plan_100k() {
    let users: Vec<LocalUser> = (0..N)
        .map(|i| LocalUser {
            guid: ObjectGuid::random(),
            consistency_guid: None,
            dn: format!("CN=User {i},OU=Staff,DC=contoso,DC=local"),
            sam_account_name: format!("user{i:06}"),
            user_principal_name: Some(format!("user{i:06}@contoso.local")),
            given_name: Some("Given".into()),
            surname: Some(format!("Surname{i}")),
            display_name: Some(format!("User {i}")),
            mail: Some(format!("user{i:06}@contoso.com")),
            proxy_addresses: vec![format!("SMTP:user{i:06}@contoso.com")],
            user_account_control: uac::NORMAL_ACCOUNT,
            member_of: vec![],
            when_changed: None,
            usn_changed: i as u64,
            critical_system_object: false,
            standing: Default::default(),
            account_expires: None,
        })
        .collect();
    // Half the users already have an online account carrying their anchor; the other
    // half of the accounts are unrelated cloud-only accounts.
    let accounts: Vec<OnlineAccount> = (0..N)
        .map(|i| OnlineAccount {
            id: OnlineAccountId(uuid::Uuid::new_v4().to_string()),
            user_principal_name: if i % 2 == 0 {
                format!("user{i:06}@contoso.com")
            } else {
                format!("cloud{i:06}@contoso.com")
            },
            display_name: format!("Online {i}"),
            given_name: None,
            surname: None,
            mail: None,
            mail_nickname: None,
            proxy_addresses: vec![],
            account_enabled: true,
            usage_location: None,
            immutable_id: if i % 2 == 0 {
                Some(users[i].anchor())
            } else {
                None
            },
            assigned_skus: vec![],
        })
        .collect();
    let snapshot = Snapshot {
        users,
        accounts,
        admins: vec![],
        links: vec![],
        verified_domains: vec![],
        ..Default::default()
    };
    let before_mb = vm_hwm_mb();
    let request = BulkCreateRequest {
        domain: "contoso.com".into(),
        usage_location: Some("GB".into()),
        ..Default::default()
    };
    let mut best = f64::MAX;
    let mut plan = None;
    for _ in 0..3 {
        let t = Instant::now();
        let p = plan_bulk_create(
            &snapshot,
            &request,
            uuid::Uuid::nil(),
            time::OffsetDateTime::now_utc(),
            "tenant",
        );
        best = best.min(t.elapsed().as_secs_f64());
        plan = Some(p);
    }
    let plan = plan.unwrap();
    let creates = plan
        .items
        .iter()
        .filter(|i| matches!(i.action, PlanAction::CreateAccount { .. }))
        .count();
    let links = plan
        .items
        .iter()
        .filter(|i| matches!(i.action, PlanAction::Link { .. }))
        .count();
    assert_eq!(creates + links, N);
    println!("local_users: {N}");
    println!("online_accounts: {N}");
    println!("planned_creates: {creates}");
    println!("planned_links: {links}");
    println!("plan_100k_seconds: {best:.3}");
    println!("snapshot_resident_mb: {before_mb:.0}");
    println!("plan_100k_peak_mb: {:.0}", vm_hwm_mb());
}

fn sync_plan_100k() {
    use o365_essentials::engine::{Integration, SyncOptions, suggest_upn};
    use o365_essentials::graph::{GraphConfig, GraphTenant};
    use o365_essentials::memory::MemoryDirectory;
    use o365_essentials::model::{Link, LinkOrigin, LinkState, NewLocalUser};
    use o365_essentials::store::Store;
    use std::io::BufRead;
    use std::sync::Arc;

    // The emulator in a process of its own, so its memory is not counted here.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(PART, "emulator")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: o365_essentials_emulator::EmulatorInfo = serde_json::from_str(&line).unwrap();

    let dir = Arc::new(MemoryDirectory::new("contoso.local").unwrap());
    let new: Vec<NewLocalUser> = (0..N)
        .map(|i| NewLocalUser {
            sam_account_name: format!("user{i:06}"),
            user_principal_name: format!("user{i:06}@contoso.local"),
            given_name: Some("Given".into()),
            surname: Some(format!("Surname{i}")),
            display_name: format!("User {i:06}"),
            mail: None,
            ou: None,
        })
        .collect();
    let users = dir.load_users(&new).unwrap();
    drop(new);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let store = Arc::new(Store::open(tmp.path().join("state.db")).unwrap());
        let http = reqwest::Client::new();
        let (mut seed_s, mut link_s) = (0.0, 0.0);
        for chunk in users.chunks(2000) {
            let t = Instant::now();
            let seed: Vec<serde_json::Value> = chunk
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "user_principal_name": suggest_upn(u, "contoso.onmicrosoft.com"),
                        "display_name": u.friendly_name(),
                        "given_name": u.given_name,
                        "surname": u.surname,
                        "account_enabled": true,
                        "on_premises_immutable_id": u.anchor().as_str(),
                    })
                })
                .collect();
            let r: serde_json::Value = http
                .post(format!("{}/seed", info.admin_url))
                .json(&serde_json::json!({"users": seed}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let links: Vec<Link> = chunk
                .iter()
                .zip(r["userIds"].as_array().unwrap())
                .map(|(u, id)| Link {
                    local_guid: u.guid,
                    online_id: OnlineAccountId(id.as_str().unwrap().into()),
                    anchor: u.anchor(),
                    user_principal_name: suggest_upn(u, "contoso.onmicrosoft.com"),
                    state: LinkState::Active,
                    origin: LinkOrigin::HardMatch,
                    linked_at: time::OffsetDateTime::now_utc(),
                })
                .collect();
            seed_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            for l in &links {
                store.put_link(l).unwrap();
            }
            link_s += t.elapsed().as_secs_f64();
        }
        eprintln!("setup: seeding {seed_s:.1} s, links {link_s:.1} s");
        // Only the users to change later are kept here; the directory has them all.
        let to_change: Vec<o365_essentials::model::ObjectGuid> =
            users.iter().step_by(N / 1000).map(|u| u.guid).collect();
        drop(users);
        let mut gc = GraphConfig::with_secret(
            &info.tenant_id,
            &info.client_id,
            info.client_secret.clone().unwrap(),
        );
        gc.login_url = info.login_url.clone();
        gc.graph_url = info.graph_url.clone();
        let tenant = Arc::new(GraphTenant::new(gc).unwrap());
        let integration = Integration::new(dir.clone(), tenant.clone(), store);
        integration.integrate().await.unwrap();
        let setup_mb = vm_rss_mb();

        // The first plan reads everything: every local user, every linked account.
        let (g0, ru0) = (
            tenant.request_counts().requests,
            resource_units(&info.admin_url).await,
        );
        let t = Instant::now();
        let plan = integration
            .sync()
            .plan_sync_run(&SyncOptions::default())
            .await
            .unwrap();
        let full = t.elapsed().as_secs_f64();
        assert!(plan.items.is_empty(), "the seeded accounts match");
        println!("linked_users: {N}");
        println!("sync_plan_full_100k_seconds: {full:.3}");
        println!(
            "sync_plan_full_100k_graph_requests: {}",
            tenant.request_counts().requests - g0
        );
        println!(
            "sync_plan_full_100k_resource_units: {}",
            resource_units(&info.admin_url).await - ru0
        );
        // The run that follows sets the cursors; then 1,000 people change locally.
        let first = integration
            .sync()
            .run_sync_once(&SyncOptions::default())
            .await
            .unwrap();
        assert!(first.results.items.is_empty());
        for g in &to_change {
            dir.edit_user(*g, |u| {
                u.display_name = Some(format!("Renamed {}", u.sam_account_name))
            })
            .unwrap();
        }
        let g0 = tenant.request_counts().requests;
        let t = Instant::now();
        let plan = integration
            .sync()
            .plan_sync_run(&SyncOptions::default())
            .await
            .unwrap();
        let incremental = t.elapsed().as_secs_f64();
        assert_eq!(plan.items.len(), 1000);
        println!("sync_plan_1000_changes_seconds: {incremental:.3}");
        println!(
            "sync_plan_1000_changes_graph_requests: {}",
            tenant.request_counts().requests - g0
        );
        println!("sync_plan_before_planning_mb: {setup_mb:.0}");
        println!("sync_plan_100k_peak_mb: {:.0}", vm_hwm_mb());
    });
    drop(child.stdin.take());
    let _ = child.wait();
}
