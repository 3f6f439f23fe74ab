//! `cargo bench --bench engine`: planning a bulk create for 100,000 local users against
//! 100,000 online accounts (half of them hard-matched by anchor), time and peak memory.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

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
