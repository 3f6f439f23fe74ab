//! The Exchange Online backend against the emulator's admin API: every operation,
//! validation before any request, faults, throttling and permissions.

use std::sync::Arc;
use std::time::Duration;

use o365_essentials::ErrorCode;
use o365_essentials::exchange::ExchangeOnline;
use o365_essentials::model::{
    AccessLevel, DeviceAccessState, DeviceCharacteristic, DevicePolicy, DistributionGroupUpdate,
    Limit, NewAccessRule, NewDistributionGroup, WipeKind, WipeStatus,
};
use o365_essentials::ports::Exchange;
use o365_essentials_emulator::config::{
    AppConfig, FaultKind, FaultRule, Seed, SeedDevice, SeedDomain, SeedUser,
};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::graph::{admin, config_for};

const DOMAIN: &str = "contoso.onmicrosoft.com";

fn user(nick: &str, name: &str) -> SeedUser {
    SeedUser {
        user_principal_name: format!("{nick}@{DOMAIN}"),
        display_name: name.into(),
        usage_location: Some("GB".into()),
        ..SeedUser::default()
    }
}

fn device(owner: &str, id: &str, model: &str, kind: &str, os: &str) -> SeedDevice {
    SeedDevice {
        user: format!("{owner}@{DOMAIN}"),
        device_id: id.into(),
        model: model.into(),
        device_type: kind.into(),
        os: os.into(),
        friendly_name: Some(format!("{owner}'s {kind}")),
        pending_discovery: false,
    }
}

fn config() -> EmulatorConfig {
    let mut cfg = EmulatorConfig {
        seed: Seed {
            users: vec![
                user("alex", "Alex Adams"),
                user("bea", "Bea Brown"),
                user("carl", "Carl Clark"),
            ],
            domains: vec![SeedDomain {
                name: "contoso.com".into(),
                verified: true,
            }],
            devices: vec![
                device("alex", "APPLEA1", "iPhone15,2", "iPhone", "iOS 17.1"),
                device("alex", "ANDROIDA2", "Pixel 8", "Android", "Android 14"),
                device("bea", "APPLEB1", "iPhone15,2", "iPhone", "iOS 17.0"),
            ],
            ..Seed::default()
        },
        ..EmulatorConfig::default()
    };
    cfg.exchange.wipe_ack_delay_ms = 600;
    cfg
}

fn exchange_for(emu: &Emulator) -> ExchangeOnline {
    let mut c = config_for(emu);
    c.exchange_url = emu.info().exchange_url.clone();
    ExchangeOnline::new(c).unwrap()
}

async fn stat(emu: &Emulator, key: &str) -> u64 {
    admin(emu, "GET", "/stats", None).await[key]
        .as_u64()
        .unwrap_or(0)
}

async fn exo_state(emu: &Emulator) -> Value {
    admin(emu, "GET", "/state", None).await["exchange"].clone()
}

fn group(name: &str, alias: &str, members: &[&str]) -> NewDistributionGroup {
    NewDistributionGroup {
        name: name.into(),
        alias: alias.into(),
        display_name: None,
        primary_smtp_address: format!("{alias}@contoso.com"),
        allow_external_senders: false,
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

#[tokio::test]
async fn distribution_groups_end_to_end() {
    let emu = Emulator::start(config()).await.unwrap();
    let exo = exchange_for(&emu);
    assert!(exo.distribution_groups().await.unwrap().is_empty());

    let mut sales = group("Sales", "sales", &["alex@contoso.onmicrosoft.com"]);
    sales.allow_external_senders = true;
    sales.display_name = Some("Sales team".into());
    let g = exo.create_distribution_group(&sales).await.unwrap();
    assert_eq!(g.name, "Sales");
    assert_eq!(g.display_name, "Sales team");
    assert_eq!(g.primary_smtp_address, "sales@contoso.com");
    assert!(g.allow_external_senders);
    assert_eq!(g.members, vec!["alex@contoso.onmicrosoft.com"]);
    let state = exo_state(&emu).await;
    assert_eq!(
        state["groups"][0]["RequireSenderAuthenticationEnabled"],
        false
    );

    // Add by address (twice: the second is a no-op), remove, replace.
    let bea = vec!["bea@contoso.onmicrosoft.com".to_string()];
    exo.add_members("Sales", &bea).await.unwrap();
    exo.add_members("sales@contoso.com", &bea).await.unwrap();
    let listed = exo.distribution_groups().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].members,
        vec![
            "alex@contoso.onmicrosoft.com",
            "bea@contoso.onmicrosoft.com"
        ]
    );
    exo.remove_members(&g.id, &["alex@contoso.onmicrosoft.com".into()])
        .await
        .unwrap();
    exo.remove_members(&g.id, &["alex@contoso.onmicrosoft.com".into()])
        .await
        .unwrap();
    exo.replace_members(
        "Sales",
        &["carl@contoso.onmicrosoft.com".into(), "alex".into()],
    )
    .await
    .unwrap();
    let listed = exo.distribution_groups().await.unwrap();
    assert_eq!(
        listed[0].members,
        vec![
            "carl@contoso.onmicrosoft.com",
            "alex@contoso.onmicrosoft.com"
        ]
    );

    // Members that do not exist: NotFound naming every one, nothing changed.
    let ghosts = vec![
        "ghost@contoso.onmicrosoft.com".to_string(),
        "bea@contoso.onmicrosoft.com".to_string(),
        "nobody@contoso.com".to_string(),
    ];
    for r in [
        exo.add_members("Sales", &ghosts).await,
        exo.replace_members("Sales", &ghosts).await,
        exo.remove_members("Sales", &ghosts).await,
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert!(e.message().contains("ghost@contoso.onmicrosoft.com"), "{e}");
        assert!(e.message().contains("nobody@contoso.com"), "{e}");
        assert!(!e.message().contains("bea@"), "{e}");
    }
    let e = exo
        .create_distribution_group(&group("Ghosts", "ghosts", &["ghost@contoso.com"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(e.message().contains("ghost@contoso.com"));
    let listed = exo.distribution_groups().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].members.len(), 2);

    // A group that does not exist.
    let e = exo.add_members("Nope", &bea).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(e.message().contains("Nope"));

    // Duplicates, an unverified domain, bad input (refused before any request).
    let e = exo
        .create_distribution_group(&group("Sales", "sales2", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert!(
        e.service()
            .unwrap()
            .code
            .ends_with("ADObjectAlreadyExistsException")
    );
    let e = exo
        .create_distribution_group(&group("Sales 2", "sales", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    let mut foreign = group("Foreign", "foreign", &[]);
    foreign.primary_smtp_address = "foreign@fabrikam.com".into();
    let e = exo.create_distribution_group(&foreign).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::DomainNotVerified, "{e}");
    let before = stat(&emu, "requests").await;
    let long = "x".repeat(65);
    let e = exo
        .create_distribution_group(&group(&long, "long", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.message().contains("64"));
    let e = exo
        .create_distribution_group(&group("Bad alias", "bad alias", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidMailNickname);
    let mut bad_addr = group("Bad address", "badaddr", &[]);
    bad_addr.primary_smtp_address = "not-an-address".into();
    assert_eq!(
        exo.create_distribution_group(&bad_addr)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        stat(&emu, "requests").await,
        before + 1,
        "only the stats call"
    );

    // Change the display name and close it to outside senders.
    let changed = exo
        .update_distribution_group(
            "sales@contoso.com",
            &DistributionGroupUpdate {
                display_name: Some("Sales and orders".into()),
                allow_external_senders: Some(false),
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.display_name, "Sales and orders");
    assert!(!changed.allow_external_senders);
    assert_eq!(changed.members.len(), 2);
    assert_eq!(
        exo.update_distribution_group("Sales", &DistributionGroupUpdate::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    let e = exo
        .update_distribution_group(
            "Nope",
            &DistributionGroupUpdate {
                allow_external_senders: Some(true),
                ..DistributionGroupUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(e.message().contains("Nope"));

    // Delete; deleting again says it is not there.
    exo.delete_distribution_group("Sales").await.unwrap();
    assert!(exo.distribution_groups().await.unwrap().is_empty());
    let e = exo.delete_distribution_group("Sales").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);

    // Every call carried the anchor mailbox header (a bare call is counted without it).
    assert_eq!(stat(&emu, "exchange:New-DistributionGroup").await, 4);
    assert_eq!(stat(&emu, "exchange_without_anchor").await, 0);
    invoke_raw(&emu, "Get-DistributionGroup", json!({})).await;
    assert_eq!(stat(&emu, "exchange_without_anchor").await, 1);
}

#[tokio::test]
async fn listings_follow_next_links() {
    let emu = Emulator::start(config()).await.unwrap();
    let mut c = config_for(&emu);
    c.exchange_url = emu.info().exchange_url.clone();
    c.page_size = 2;
    let exo = ExchangeOnline::new(c).unwrap();
    for i in 0..5 {
        exo.create_distribution_group(&group(&format!("Team {i}"), &format!("team{i}"), &[]))
            .await
            .unwrap();
    }
    let before = stat(&emu, "exchange:Get-DistributionGroup").await;
    let groups = exo.distribution_groups().await.unwrap();
    let mut names: Vec<_> = groups.iter().map(|g| g.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["Team 0", "Team 1", "Team 2", "Team 3", "Team 4"]);
    assert_eq!(
        stat(&emu, "exchange:Get-DistributionGroup").await - before,
        3,
        "5 groups in pages of 2"
    );
}

#[tokio::test]
async fn device_policy_is_validated_before_any_request() {
    let emu = Emulator::start(config()).await.unwrap();
    let exo = exchange_for(&emu);
    let p = exo.device_policy().await.unwrap();
    assert!(!p.password_enabled);
    assert_eq!(p.max_password_failed_attempts, Limit::Unlimited);
    let wanted = DevicePolicy {
        password_enabled: true,
        min_password_length: Some(6),
        max_password_failed_attempts: Limit::Value(8),
        max_inactivity_lock_minutes: Limit::Value(15),
        alphanumeric_password_required: true,
    };
    exo.set_device_policy(&wanted).await.unwrap();
    assert_eq!(exo.device_policy().await.unwrap(), wanted);
    assert_eq!(
        exo_state(&emu).await["policy"]["MaxInactivityTimeLock"],
        "00:15:00"
    );
    let edges = DevicePolicy {
        min_password_length: Some(16),
        max_password_failed_attempts: Limit::Value(4),
        max_inactivity_lock_minutes: Limit::Value(60),
        ..wanted.clone()
    };
    exo.set_device_policy(&edges).await.unwrap();
    assert_eq!(exo.device_policy().await.unwrap(), edges);

    let sets = stat(&emu, "exchange:Set-MobileDeviceMailboxPolicy").await;
    let bad = [
        (
            DevicePolicy {
                min_password_length: Some(0),
                ..wanted.clone()
            },
            "1–16",
        ),
        (
            DevicePolicy {
                min_password_length: Some(17),
                ..wanted.clone()
            },
            "1–16",
        ),
        (
            DevicePolicy {
                max_password_failed_attempts: Limit::Value(3),
                ..wanted.clone()
            },
            "4–16",
        ),
        (
            DevicePolicy {
                max_password_failed_attempts: Limit::Value(17),
                ..wanted.clone()
            },
            "4–16",
        ),
        (
            DevicePolicy {
                max_inactivity_lock_minutes: Limit::Value(0),
                ..wanted.clone()
            },
            "1–60",
        ),
        (
            DevicePolicy {
                max_inactivity_lock_minutes: Limit::Value(61),
                ..wanted.clone()
            },
            "1–60",
        ),
    ];
    for (p, range) in bad {
        let e = exo.set_device_policy(&p).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(e.message().contains(range), "{e}");
    }
    assert_eq!(
        stat(&emu, "exchange:Set-MobileDeviceMailboxPolicy").await,
        sets,
        "no invalid policy reached Exchange"
    );
    assert_eq!(exo.device_policy().await.unwrap(), edges);

    // The emulator applies the same ranges to callers that skip our checks.
    let raw = invoke_raw(
        &emu,
        "Set-MobileDeviceMailboxPolicy",
        json!({"Identity": "Default", "MaxPasswordFailedAttempts": 3}),
    )
    .await;
    assert_eq!(raw.0, 400);
    let detail = raw.1["error"]["details"][0]["message"].as_str().unwrap();
    assert!(detail.contains("ParameterBindingException"), "{detail}");
    assert!(detail.contains("minimum allowed range of 4"), "{detail}");
}

/// Sends one cmdlet straight to the emulator (wire-format checks).
async fn invoke_raw(emu: &Emulator, cmdlet: &str, params: Value) -> (u16, Value) {
    let info = emu.info();
    let c = reqwest::Client::new();
    let tok = crate::graph::secret_token(emu, "https://outlook.office365.com/.default").await;
    let r = c
        .post(format!(
            "{}/{}/InvokeCommand",
            info.exchange_url, info.tenant_id
        ))
        .bearer_auth(&tok)
        .json(&json!({"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn access_rules_decide_device_access() {
    let emu = Emulator::start(config()).await.unwrap();
    let exo = exchange_for(&emu);
    let alex = "alex@contoso.onmicrosoft.com";
    let devices = exo.devices(alex).await.unwrap();
    assert_eq!(devices.len(), 2);
    assert!(
        devices
            .iter()
            .all(|d| d.access_state == DeviceAccessState::Allowed)
    );
    assert!(devices.iter().all(|d| d.wipe_status == WipeStatus::None));
    assert!(devices.iter().all(|d| d.last_sync.is_some()));
    assert!(
        devices
            .iter()
            .any(|d| d.friendly_name.as_deref() == Some("alex's iPhone"))
    );

    let rule = exo
        .add_access_rule(&NewAccessRule {
            access_level: AccessLevel::Block,
            characteristic: DeviceCharacteristic::DeviceModel,
            query_string: "iPhone15,2".into(),
        })
        .await
        .unwrap();
    assert_eq!(rule.access_level, AccessLevel::Block);
    let quarantine = exo
        .add_access_rule(&NewAccessRule {
            access_level: AccessLevel::Quarantine,
            characteristic: DeviceCharacteristic::DeviceType,
            query_string: "Android".into(),
        })
        .await
        .unwrap();
    let e = exo
        .add_access_rule(&NewAccessRule {
            access_level: AccessLevel::Allow,
            characteristic: DeviceCharacteristic::DeviceModel,
            query_string: "iPhone15,2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert_eq!(exo.access_rules().await.unwrap().len(), 2);

    let devices = exo.devices(alex).await.unwrap();
    let state = |model: &str| {
        devices
            .iter()
            .find(|d| d.model == model)
            .map(|d| d.access_state)
            .unwrap()
    };
    assert_eq!(state("iPhone15,2"), DeviceAccessState::Blocked);
    assert_eq!(state("Pixel 8"), DeviceAccessState::Quarantined);
    assert_eq!(
        exo.devices("bea@contoso.onmicrosoft.com").await.unwrap()[0].access_state,
        DeviceAccessState::Blocked
    );

    exo.remove_access_rule(&rule.id).await.unwrap();
    exo.remove_access_rule(&quarantine.id).await.unwrap();
    assert!(exo.access_rules().await.unwrap().is_empty());
    assert!(
        exo.devices(alex)
            .await
            .unwrap()
            .iter()
            .all(|d| d.access_state == DeviceAccessState::Allowed)
    );
    assert_eq!(
        exo.remove_access_rule(&rule.id).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert!(
        exo.devices("carl@contoso.onmicrosoft.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        exo.devices("ghost@contoso.onmicrosoft.com")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        exo.add_access_rule(&NewAccessRule {
            access_level: AccessLevel::Block,
            characteristic: DeviceCharacteristic::DeviceOs,
            query_string: " ".into(),
        })
        .await
        .unwrap_err()
        .code(),
        ErrorCode::InvalidInput
    );
}

#[tokio::test]
async fn wipes_need_confirmation_and_can_be_cancelled_until_acknowledged() {
    let emu = Emulator::start(config()).await.unwrap();
    let exo = exchange_for(&emu);
    let devices = exo.devices("alex@contoso.onmicrosoft.com").await.unwrap();
    let phone = devices.iter().find(|d| d.model == "iPhone15,2").unwrap();
    let pixel = devices.iter().find(|d| d.model == "Pixel 8").unwrap();

    let clears = stat(&emu, "exchange:Clear-MobileDevice").await;
    for confirm in ["", "yes", &pixel.id] {
        let e = exo
            .wipe_device(&phone.id, WipeKind::Full, confirm)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(e.message().contains(&phone.id));
    }
    assert_eq!(stat(&emu, "exchange:Clear-MobileDevice").await, clears);
    assert_eq!(exo.wipe_status(&phone.id).await.unwrap(), WipeStatus::None);

    // Wipe, cancel before the device acknowledges.
    assert_eq!(
        exo.wipe_device(&phone.id, WipeKind::Full, &phone.id)
            .await
            .unwrap(),
        WipeStatus::Pending
    );
    assert_eq!(
        exo.cancel_wipe(&phone.id).await.unwrap(),
        WipeStatus::Cancelled
    );
    assert_eq!(exo.wipe_status(&phone.id).await.unwrap(), WipeStatus::None);
    assert_eq!(exo.cancel_wipe(&phone.id).await.unwrap(), WipeStatus::None);

    // Account-only wipe, acknowledged after the emulated delay; then too late to cancel.
    assert_eq!(
        exo.wipe_device(&pixel.id, WipeKind::AccountOnly, &pixel.id.to_uppercase())
            .await
            .unwrap(),
        WipeStatus::Pending
    );
    let state = exo_state(&emu).await;
    let row = state["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["Guid"] == pixel.id.as_str())
        .unwrap()
        .clone();
    assert!(row["AccountOnlyDeviceWipeRequestTime"].is_string());
    assert!(row["DeviceWipeRequestTime"].is_null());
    let mut status = WipeStatus::Pending;
    for _ in 0..50 {
        status = exo.wipe_status(&pixel.id).await.unwrap();
        if status != WipeStatus::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, WipeStatus::Succeeded);
    let listed = exo.devices("alex@contoso.onmicrosoft.com").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|d| d.id == pixel.id)
            .unwrap()
            .wipe_status,
        WipeStatus::Succeeded
    );
    let e = exo.cancel_wipe(&pixel.id).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);

    let ghost = "00000000-0000-0000-0000-000000000000";
    assert_eq!(
        exo.wipe_device(ghost, WipeKind::Full, ghost)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        exo.wipe_status(ghost).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        exo.cancel_wipe(ghost).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn faults_lose_and_duplicate_nothing() {
    let mut cfg = config();
    cfg.random_seed = 29;
    // Injected 429s ask for 1 s / time scale; the wipe must stay pending throughout.
    cfg.throttling.time_scale = 10.0;
    cfg.exchange.wipe_ack_delay_ms = 3_600_000;
    let rule = |kind: FaultKind, p: f64| FaultRule {
        path: "/adminapi/*".into(),
        method: Some("POST".into()),
        probability: p,
        kind,
        limit: None,
    };
    cfg.faults = vec![
        rule(FaultKind::Status { status: 503 }, 0.03),
        rule(FaultKind::Status { status: 500 }, 0.08),
        rule(FaultKind::Status { status: 429 }, 0.05),
        rule(FaultKind::Reset, 0.04),
        rule(FaultKind::LostResponse, 0.08),
    ];
    let emu = Emulator::start(cfg).await.unwrap();
    let exo = exchange_for(&emu);
    for i in 0..12 {
        let g = exo
            .create_distribution_group(&group(
                &format!("Fault {i}"),
                &format!("fault{i}"),
                &["alex@contoso.onmicrosoft.com"],
            ))
            .await
            .unwrap_or_else(|e| panic!("group {i}: {e}"));
        exo.add_members(&g.id, &["bea@contoso.onmicrosoft.com".into()])
            .await
            .unwrap_or_else(|e| panic!("members {i}: {e}"));
        if i % 3 == 0 {
            exo.remove_members(&g.id, &["alex@contoso.onmicrosoft.com".into()])
                .await
                .unwrap_or_else(|e| panic!("remove {i}: {e}"));
        }
    }
    for i in (0..12).step_by(4) {
        exo.delete_distribution_group(&format!("Fault {i}"))
            .await
            .unwrap_or_else(|e| panic!("delete {i}: {e}"));
    }
    let rule = exo
        .add_access_rule(&NewAccessRule {
            access_level: AccessLevel::Block,
            characteristic: DeviceCharacteristic::DeviceType,
            query_string: "Android".into(),
        })
        .await
        .unwrap();
    exo.set_device_policy(&DevicePolicy {
        password_enabled: true,
        min_password_length: Some(8),
        max_password_failed_attempts: Limit::Value(10),
        max_inactivity_lock_minutes: Limit::Unlimited,
        alphanumeric_password_required: false,
    })
    .await
    .unwrap();
    let phone = exo.devices("bea@contoso.onmicrosoft.com").await.unwrap()[0].clone();
    assert_eq!(
        exo.wipe_device(&phone.id, WipeKind::Full, &phone.id)
            .await
            .unwrap(),
        WipeStatus::Pending
    );

    let stats = admin(&emu, "GET", "/stats", None).await;
    let injected: u64 = ["fault_status", "fault_reset", "fault_lost_response"]
        .iter()
        .map(|k| stats[*k].as_u64().unwrap_or(0))
        .sum();
    assert!(injected >= 10, "faults were injected: {stats}");

    let state = exo_state(&emu).await;
    let groups = state["groups"].as_array().unwrap();
    let mut names: Vec<&str> = groups.iter().map(|g| g["Name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut want: Vec<String> = (0..12)
        .filter(|i| i % 4 != 0)
        .map(|i| format!("Fault {i}"))
        .collect();
    want.sort();
    assert_eq!(names, want, "exactly the groups asked for");
    for g in groups {
        let i: usize = g["Name"].as_str().unwrap()[6..].parse().unwrap();
        let members = g["Members"].as_array().unwrap();
        let want: Vec<&str> = if i.is_multiple_of(3) {
            vec!["bea@contoso.onmicrosoft.com"]
        } else {
            vec![
                "alex@contoso.onmicrosoft.com",
                "bea@contoso.onmicrosoft.com",
            ]
        };
        assert_eq!(members, &want.iter().map(|m| json!(m)).collect::<Vec<_>>());
    }
    assert_eq!(state["rules"].as_array().unwrap().len(), 1);
    assert_eq!(state["rules"][0]["Guid"], rule.id.as_str());
    assert_eq!(state["policy"]["MinPasswordLength"], 8);
}

#[tokio::test]
async fn rate_limit_headers_pace_the_client() {
    let mut cfg = config();
    cfg.exchange.requests_per_window = 4;
    cfg.exchange.window_secs = 0.5;
    let emu = Emulator::start(cfg).await.unwrap();
    let exo = Arc::new(exchange_for(&emu));
    for _ in 0..12 {
        exo.access_rules().await.unwrap();
    }
    let o365_essentials::graph::RequestCounts {
        requests,
        throttled,
        budget_waits: waits,
        ..
    } = exo.request_counts();
    assert!(waits >= 2, "the client waited for the window: {waits}");
    assert_eq!(throttled, 0, "pacing by Rate-Limit-Remaining avoided 429s");
    assert_eq!(requests, 12);

    // Concurrent callers may still hit 429; Retry-After brings them through.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let exo = exo.clone();
        tasks.push(tokio::spawn(async move { exo.access_rules().await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn missing_role_and_bad_credentials_are_clear() {
    let mut cfg = config();
    cfg.apps.push(AppConfig {
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        client_secret: Some("second-app-secret".into()),
        directory_roles: vec!["User Administrator".into()],
        ..AppConfig::default()
    });
    let emu = Emulator::start(cfg).await.unwrap();
    let mut c = config_for(&emu);
    c.exchange_url = emu.info().exchange_url.clone();
    c.client_id = "11111111-2222-3333-4444-555555555555".into();
    c.credential = o365_essentials::graph::Credential::Secret {
        secret: "second-app-secret".to_string().into(),
    };
    let exo = ExchangeOnline::new(c.clone()).unwrap();
    let e = exo.distribution_groups().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    assert!(e.message().contains("Exchange Administrator"), "{e}");

    c.credential = o365_essentials::graph::Credential::Secret {
        secret: "wrong-secret-value".to_string().into(),
    };
    let exo = ExchangeOnline::new(c).unwrap();
    let e = exo.access_rules().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Auth);
    let shown = format!("{e} {e:?} {exo:?}");
    assert!(!shown.contains("wrong-secret-value"));
    assert!(!shown.contains("second-app-secret"));
}
