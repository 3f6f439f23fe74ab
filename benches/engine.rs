//! `cargo bench --bench engine`: (1) planning a bulk create for 100,000 local users against
//! 100,000 online accounts (half of them hard-matched by anchor), time and peak memory;
//! (2) after one change in a 10,000-user Samba directory, what an incremental sync run
//! costs (LDAP operations, Graph requests, seconds).
#![allow(
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

fn main() {
    plan_100k();
    incremental();
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
        let mut cfg = o365_essentials_emulator::EmulatorConfig::default();
        cfg.throttling.enabled = false;
        let emu = o365_essentials_emulator::Emulator::start(cfg)
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
        let t = Instant::now();
        let first = integration
            .run_sync_once(&SyncOptions::default())
            .await
            .unwrap();
        println!("initial_sync_seconds: {:.1}", t.elapsed().as_secs_f64());
        assert!(first.results.items.is_empty(), "the seeded accounts match");

        dir.set_enabled(users[USERS / 2].guid, false).await.unwrap();
        let (l0, g0) = (dir.operation_count(), tenant.request_counts().0);
        let t = Instant::now();
        let run = integration
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
            tenant.request_counts().0 - g0
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
