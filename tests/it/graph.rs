//! The Graph backend against the emulator: every operation, with throttling and faults.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use o365_essentials::graph::{Credential, GraphConfig, GraphTenant};
use o365_essentials::model::{
    AccountUpdate, Anchor, DomainService, LicenceAssignment, NewOnlineAccount, ObjectGuid,
    OnlineChange, RecordData,
};
use o365_essentials::ports::{Domains, Tenant};
use o365_essentials::{ErrorCode, SecretString};
use o365_essentials_emulator::config::{AppConfig, FaultKind, FaultRule};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

pub(crate) fn config_for(emu: &Emulator) -> GraphConfig {
    let info = emu.info();
    let mut c = GraphConfig::with_secret(
        &info.tenant_id,
        &info.client_id,
        info.client_secret.clone().unwrap_or_default(),
    );
    c.login_url = info.login_url.clone();
    c.graph_url = info.graph_url.clone();
    c.exchange_url = info.exchange_url.clone();
    c.sharepoint_url = Some(info.sharepoint_url.clone());
    c.request_timeout_secs = 20.0;
    c
}

/// An access token for `scope` from the emulator with the first app's secret, for calls
/// made on the wire directly.
pub(crate) async fn secret_token(emu: &Emulator, scope: &str) -> String {
    let info = emu.info();
    let v: Value = reqwest::Client::new()
        .post(emu.token_url())
        .form(&[
            ("client_id", info.client_id.as_str()),
            ("client_secret", info.client_secret.as_deref().unwrap_or("")),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token for {scope}: {v}"))
        .to_string()
}

/// A self-signed RSA certificate and its key (PEM files in `dir`), made by openssl, for
/// certificate credentials.
pub(crate) fn self_signed_rsa(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed (scripts/setup installs it)");
    assert!(ok.success(), "openssl could not make a certificate");
    // A private key others can read is refused (as ssh refuses one).
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (cert, key)
}

pub(crate) fn tenant_for(emu: &Emulator) -> GraphTenant {
    GraphTenant::new(config_for(emu)).unwrap()
}

pub(crate) fn new_account(nick: &str) -> NewOnlineAccount {
    NewOnlineAccount {
        user_principal_name: format!("{nick}@contoso.onmicrosoft.com"),
        display_name: format!("Graph {nick}"),
        mail_nickname: nick.to_string(),
        account_enabled: true,
        immutable_id: Some(ObjectGuid::random().anchor()),
        usage_location: Some("GB".into()),
        ..NewOnlineAccount::default()
    }
}

pub(crate) fn pw() -> SecretString {
    SecretString::from("Winter-2026!x")
}

pub(crate) async fn admin(emu: &Emulator, method: &str, path: &str, body: Option<Value>) -> Value {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", emu.info().admin_url);
    let mut r = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        _ => c.post(url),
    };
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

async fn users_with_anchor(emu: &Emulator, anchor: &Anchor) -> usize {
    let state = admin(emu, "GET", "/state", None).await;
    state["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["onPremisesImmutableId"] == anchor.as_str())
        .count()
}

#[tokio::test]
async fn every_tenant_operation_round_trips() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let t = tenant_for(&emu);
    t.check_credentials().await.unwrap();
    let n = new_account("roundtrip");
    let a = t.create_account(&n, &pw()).await.unwrap();
    assert_eq!(a.user_principal_name, n.user_principal_name);
    assert_eq!(a.immutable_id, n.immutable_id);
    assert_eq!(t.account(&a.id.0).await.unwrap().id, a.id);
    assert_eq!(
        t.account("ROUNDTRIP@contoso.onmicrosoft.com")
            .await
            .unwrap()
            .id,
        a.id
    );
    assert_eq!(
        t.find_by_anchor(n.immutable_id.as_ref().unwrap())
            .await
            .unwrap()
            .map(|x| x.id),
        Some(a.id.clone())
    );
    assert!(
        t.find_by_anchor(&Anchor("bm9ib2R5".into()))
            .await
            .unwrap()
            .is_none()
    );

    t.update_account(
        &a.id,
        &AccountUpdate {
            display_name: Some("Renamed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(t.account(&a.id.0).await.unwrap().display_name, "Renamed");

    t.set_password(&a.id, &SecretString::from("Spring-2027!y"))
        .await
        .unwrap();
    let check = admin(
        &emu,
        "POST",
        &format!("/users/{}/check-password", a.id),
        Some(json!({"password": "Spring-2027!y"})),
    )
    .await;
    assert_eq!(check["matches"], true);
    assert_eq!(
        check["forceChangePasswordNextSignIn"], false,
        "no forced change at next sign-in"
    );

    t.set_enabled(&a.id, false).await.unwrap();
    assert!(!t.account(&a.id.0).await.unwrap().account_enabled);
    let stats = admin(&emu, "GET", "/stats", None).await;
    assert_eq!(stats["sessions_revoked"], 1, "disable revokes sessions");
    t.set_enabled(&a.id, true).await.unwrap();

    let skus = t.skus().await.unwrap();
    let premium = skus
        .iter()
        .find(|s| s.sku_part_number == "O365_BUSINESS_PREMIUM")
        .unwrap()
        .clone();
    assert_eq!(premium.free_units(), 25);
    t.assign_licences(
        &a.id,
        &[LicenceAssignment {
            sku_id: premium.sku_id,
            disabled_plans: vec![],
        }],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        t.account(&a.id.0).await.unwrap().assigned_skus,
        vec![premium.sku_id]
    );
    assert_eq!(
        t.skus()
            .await
            .unwrap()
            .iter()
            .find(|s| s.sku_id == premium.sku_id)
            .unwrap()
            .free_units(),
        24
    );
    t.assign_licences(&a.id, &[], &[premium.sku_id])
        .await
        .unwrap();
    assert!(t.account(&a.id.0).await.unwrap().assigned_skus.is_empty());

    let org = t.organization().await.unwrap();
    assert_eq!(org.tenant_id, emu.info().tenant_id);
    assert_eq!(org.initial_domain, "contoso.onmicrosoft.com");
    let admins = t.admin_role_holders().await.unwrap();
    assert_eq!(admins.len(), 1);
    assert_eq!(
        admins[0].user_principal_name,
        "admin@contoso.onmicrosoft.com"
    );
    assert!(
        admins[0]
            .roles
            .contains(&"Global Administrator".to_string())
    );

    t.delete_account(&a.id).await.unwrap();
    assert_eq!(
        t.account(&a.id.0).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    let restored = t.restore_account(&a.id).await.unwrap();
    assert_eq!(restored.id, a.id);
    assert_eq!(
        t.delete_account(&OnlineAccountIdExt::missing())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
}

struct OnlineAccountIdExt;
impl OnlineAccountIdExt {
    fn missing() -> o365_essentials::model::OnlineAccountId {
        o365_essentials::model::OnlineAccountId("00000000-0000-0000-0000-000000000000".into())
    }
}

#[tokio::test]
async fn errors_are_mapped_and_bad_input_is_refused_before_any_request() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let t = tenant_for(&emu);
    let n = new_account("dupe");
    t.create_account(&n, &pw()).await.unwrap();
    let mut again = new_account("dupe2");
    again.user_principal_name = n.user_principal_name.clone();
    let e = t.create_account(&again, &pw()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert!(e.message().contains("userPrincipalName"), "{e}");
    let svc = e.service().unwrap();
    assert_eq!(svc.code, "Request_BadRequest");
    assert!(svc.request_id.is_some(), "the request-id is kept");

    let mut other_domain = new_account("elsewhere");
    other_domain.user_principal_name = "elsewhere@not-verified.example".into();
    assert_eq!(
        t.create_account(&other_domain, &pw())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::DomainNotVerified
    );

    let before = t.request_counts().requests;
    let e = t
        .create_account(&new_account("weak"), &SecretString::from("weak"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PasswordPolicy);
    let mut bad = new_account("bad");
    bad.user_principal_name = "bad user@contoso.onmicrosoft.com".into();
    assert_eq!(
        t.create_account(&bad, &pw()).await.unwrap_err().code(),
        ErrorCode::InvalidUpn
    );
    let mut bad = new_account("bad");
    bad.usage_location = Some("gbr".into());
    assert_eq!(
        t.create_account(&bad, &pw()).await.unwrap_err().code(),
        ErrorCode::InvalidUsageLocation
    );
    assert_eq!(
        t.account("").await.unwrap_err().code(),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        t.request_counts().requests,
        before,
        "refused locally, nothing sent"
    );
    assert_eq!(
        t.account("nobody@contoso.onmicrosoft.com")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn missing_roles_and_wrong_secrets_are_reported_clearly_and_once() {
    let mut cfg = EmulatorConfig::default();
    cfg.apps.push(AppConfig {
        client_id: "e5e5e5e5-0000-4000-8000-000000000003".into(),
        directory_roles: vec![],
        ..AppConfig::default()
    });
    let emu = Emulator::start(cfg).await.unwrap();
    let mut c = config_for(&emu);
    c.client_id = "e5e5e5e5-0000-4000-8000-000000000003".into();
    let no_role = GraphTenant::new(c).unwrap();
    let a = no_role
        .create_account(&new_account("norole"), &pw())
        .await
        .unwrap();
    let e = no_role
        .set_password(&a.id, &SecretString::from("Spring-2027!y"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    assert!(e.message().contains("User Administrator"), "{e}");
    assert_eq!(e.service().unwrap().code, "Authorization_RequestDenied");

    let mut c = config_for(&emu);
    c.credential = Credential::Secret {
        secret: SecretString::from("definitely-wrong-secret"),
    };
    let wrong = GraphTenant::new(c).unwrap();
    let tokens_before = admin(&emu, "GET", "/stats", None).await["token"]
        .as_u64()
        .unwrap_or(0);
    for _ in 0..5 {
        let e = wrong.organization().await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::Auth);
        assert!(e.service().unwrap().code.contains("AADSTS7000215"), "{e}");
        assert!(!e.to_string().contains("definitely-wrong-secret"));
        assert!(!format!("{e:?}").contains("definitely-wrong-secret"));
    }
    let tokens_after = admin(&emu, "GET", "/stats", None).await["token"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        tokens_after - tokens_before,
        1,
        "a refused credential is asked once, not hammered"
    );
    assert!(!format!("{wrong:?}").contains("definitely-wrong-secret"));
    assert!(!format!("{:?}", config_for(&emu)).contains("emulator-secret"));
}

#[tokio::test]
async fn tokens_are_refreshed_when_they_expire_mid_run() {
    let cfg = EmulatorConfig {
        token_lifetime_secs: 1,
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(cfg).await.unwrap();
    let t = tenant_for(&emu);
    let start = std::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < std::time::Duration::from_millis(2600) {
        t.organization().await.unwrap();
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(n >= 10);
    let tokens = admin(&emu, "GET", "/stats", None).await["token_issued"]
        .as_u64()
        .unwrap();
    assert!(tokens >= 3, "1 s tokens over 2.6 s: {tokens} issued");
}

#[tokio::test]
async fn ten_percent_faults_lose_and_duplicate_nothing() {
    let mut cfg = EmulatorConfig {
        random_seed: 11,
        ..EmulatorConfig::default()
    };
    let rule = |kind: FaultKind, method: &str| FaultRule {
        path: "/v1.0/users*".into(),
        method: Some(method.into()),
        probability: 0.02,
        kind,
        limit: None,
    };
    cfg.faults = vec![
        rule(FaultKind::Status { status: 500 }, "POST"),
        rule(FaultKind::Status { status: 503 }, "POST"),
        rule(FaultKind::Status { status: 429 }, "POST"),
        rule(FaultKind::Reset, "POST"),
        rule(FaultKind::LostResponse, "POST"),
        rule(FaultKind::Status { status: 504 }, "PATCH"),
        rule(FaultKind::LostResponse, "PATCH"),
        rule(FaultKind::Status { status: 503 }, "GET"),
    ];
    let emu = Emulator::start(cfg).await.unwrap();
    let t = Arc::new(tenant_for(&emu));
    let mut tasks = Vec::new();
    for i in 0..150 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let n = new_account(&format!("fault{i:03}"));
            let a = t
                .create_account(&n, &pw())
                .await
                .map_err(|e| format!("{i}: {e}"))?;
            t.update_account(
                &a.id,
                &AccountUpdate {
                    surname: Some(format!("S{i}")),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("{i} update: {e}"))?;
            Ok::<_, String>(n.immutable_id.unwrap())
        }));
    }
    let mut anchors = Vec::new();
    for task in tasks {
        anchors.push(task.await.unwrap().unwrap());
    }
    let stats = admin(&emu, "GET", "/stats", None).await;
    let injected: u64 = ["fault_status", "fault_reset", "fault_lost_response"]
        .iter()
        .map(|k| stats[k].as_u64().unwrap_or(0))
        .sum();
    assert!(injected >= 15, "faults were injected: {stats}");
    let state = admin(&emu, "GET", "/state", None).await;
    let users = state["users"].as_array().unwrap();
    for a in &anchors {
        let n = users
            .iter()
            .filter(|u| u["onPremisesImmutableId"] == a.as_str())
            .count();
        assert_eq!(n, 1, "anchor {a}: exactly one account");
    }
    assert_eq!(
        users.len(),
        151,
        "150 created + the admin, nothing duplicated"
    );
    let distinct: HashSet<&str> = users
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    assert_eq!(distinct.len(), 151);
    assert!(
        users
            .iter()
            .filter(|u| u["surname"].as_str().is_some_and(|s| s.starts_with('S')))
            .count()
            == 150,
        "every update landed"
    );
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_not_repeated() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let rules = vec![FaultRule {
        path: "/v1.0/users".into(),
        method: Some("POST".into()),
        probability: 1.0,
        kind: FaultKind::LostResponse,
        limit: Some(3),
    }];
    admin(&emu, "PUT", "/faults", Some(json!({"rules": rules}))).await;
    let t = tenant_for(&emu);
    for i in 0..4 {
        let n = new_account(&format!("lost{i}"));
        let a = t.create_account(&n, &pw()).await.unwrap();
        assert_eq!(a.immutable_id, n.immutable_id);
        assert_eq!(
            users_with_anchor(&emu, n.immutable_id.as_ref().unwrap()).await,
            1
        );
    }
    // Without an anchor, the UPN identifies it.
    admin(&emu, "PUT", "/faults", Some(json!({"rules": [{"path": "/v1.0/users", "method": "POST", "probability": 1.0, "kind": "lost_response", "limit": 1}]}))).await;
    let mut n = new_account("lostnoanchor");
    n.immutable_id = None;
    assert_eq!(
        t.create_account(&n, &pw())
            .await
            .unwrap()
            .user_principal_name,
        n.user_principal_name
    );
    let stats = admin(&emu, "GET", "/stats", None).await;
    assert_eq!(stats["fault_lost_response"], 4);
    assert_eq!(stats["user_created"], 5, "each account created once");
}

#[tokio::test]
async fn listing_pages_through_every_account() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let mut c = config_for(&emu);
    c.page_size = 2;
    let t = GraphTenant::new(c).unwrap();
    for i in 0..7 {
        t.create_account(&new_account(&format!("page{i}")), &pw())
            .await
            .unwrap();
    }
    let before = t.request_counts().requests;
    let all: Vec<_> = t.accounts().try_collect().await.unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(
        all.iter()
            .map(|a| a.id.0.clone())
            .collect::<HashSet<_>>()
            .len(),
        8
    );
    assert_eq!(t.request_counts().requests - before, 4, "pages of two");
}

#[tokio::test]
async fn delta_reports_changes_deletions_and_restores_and_survives_expiry() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let t = tenant_for(&emu);
    let a = t
        .create_account(&new_account("delta1"), &pw())
        .await
        .unwrap();
    let b = t
        .create_account(&new_account("delta2"), &pw())
        .await
        .unwrap();
    let first = t.changes(None).await.unwrap();
    assert!(first.full_resync);
    assert_eq!(first.changes.len(), 3);
    let quiet = t.changes(Some(&first.delta_link)).await.unwrap();
    assert!(quiet.changes.is_empty() && !quiet.full_resync);

    t.set_enabled(&a.id, false).await.unwrap();
    t.delete_account(&b.id).await.unwrap();
    let round = t.changes(Some(&quiet.delta_link)).await.unwrap();
    assert!(round.changes.iter().any(|c| matches!(c, OnlineChange::Changed { account } if account.id == a.id && !account.account_enabled)));
    assert!(round.changes.iter().any(
        |c| matches!(c, OnlineChange::Removed { id, reason } if *id == b.id && reason == "changed")
    ));
    t.restore_account(&b.id).await.unwrap();
    let back = t.changes(Some(&round.delta_link)).await.unwrap();
    assert!(
        back.changes
            .iter()
            .any(|c| matches!(c, OnlineChange::Changed { account } if account.id == b.id))
    );

    // A link from now lists nothing that was there, only what changes after it.
    let before = t.request_counts().requests;
    let now = t.changes_from_now().await.unwrap();
    assert_eq!(
        t.request_counts().requests - before,
        1,
        "one request, no listing"
    );
    t.set_enabled(&a.id, true).await.unwrap();
    let after = t.changes(Some(&now)).await.unwrap();
    assert_eq!(after.changes.len(), 1, "{:?}", after.changes);
    assert!(
        matches!(&after.changes[0], OnlineChange::Changed { account } if account.id == a.id && account.account_enabled)
    );

    admin(&emu, "POST", "/delta/expire", Some(json!({}))).await;
    let resync = t.changes(Some(&back.delta_link)).await.unwrap();
    assert!(
        resync.full_resync,
        "an expired link becomes a full resync, not an error"
    );
    assert_eq!(resync.changes.len(), 3);
    assert_eq!(
        t.changes(Some("https://elsewhere.example/v1.0/users/delta"))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
}

#[tokio::test]
async fn batches_pack_twenty_and_keep_mixed_outcomes_in_order() {
    let mut cfg = EmulatorConfig::default();
    cfg.throttling.resource_units = Some(12);
    cfg.throttling.enabled = false;
    let emu = Emulator::start(cfg).await.unwrap();
    let t = tenant_for(&emu);
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            t.create_account(&new_account(&format!("batch{i}")), &pw())
                .await
                .unwrap()
                .id,
        );
    }
    admin(
        &emu,
        "PUT",
        "/throttling",
        Some(json!({"enabled": true, "time_scale": 10.0})),
    )
    .await;
    ids.insert(
        3,
        o365_essentials::model::OnlineAccountId("00000000-0000-0000-0000-00000000dead".into()),
    );
    let before = t.request_counts();
    let got = t.accounts_by_id(&ids).await.unwrap();
    assert_eq!(got.len(), 26);
    for (i, r) in got.iter().enumerate() {
        if i == 3 {
            assert_eq!(r.as_ref().unwrap_err().code(), ErrorCode::NotFound);
        } else {
            assert_eq!(&r.as_ref().unwrap().id, &ids[i], "answers in input order");
        }
    }
    let after = t.request_counts();
    assert!(
        after.throttled > before.throttled,
        "items were throttled inside the batches (12 RU for 26 reads of 1 RU)"
    );
}

#[tokio::test]
async fn domains_operations_round_trip() {
    let cfg = EmulatorConfig {
        dns: o365_essentials_emulator::config::DnsConfig {
            server: None,
            verify_without_dns: true,
        },
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(cfg).await.unwrap();
    let t = tenant_for(&emu);
    let d = t.add_domain("northwind.example").await.unwrap();
    assert!(!d.is_verified);
    assert_eq!(
        t.add_domain("northwind.example").await.unwrap_err().code(),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        t.add_domain("Northwind.example.").await.unwrap_err().code(),
        ErrorCode::InvalidDomainName
    );
    let recs = t.verification_records("northwind.example").await.unwrap();
    assert!(
        recs.iter()
            .any(|r| matches!(&r.data, RecordData::Txt { text } if text.starts_with("MS=ms")))
    );
    assert_eq!(
        t.set_supported_services("northwind.example", &[DomainService::Email])
            .await
            .unwrap_err()
            .code(),
        ErrorCode::DomainNotVerified
    );
    assert!(t.verify("northwind.example").await.unwrap().is_verified);
    t.set_supported_services(
        "northwind.example",
        &[DomainService::Email, DomainService::Intune],
    )
    .await
    .unwrap();
    let svc = t.service_records("northwind.example").await.unwrap();
    assert!(svc.iter().any(|r| matches!(&r.data, RecordData::Mx { exchange, .. } if exchange == "northwind-example.mail.protection.outlook.com")));
    assert!(
        svc.iter()
            .any(|r| r.name == "enterpriseregistration.northwind.example")
    );
    assert!(
        t.domains()
            .await
            .unwrap()
            .iter()
            .any(|x| x.name == "northwind.example" && x.is_verified)
    );
    let mut n = new_account("nw");
    n.user_principal_name = "nw@northwind.example".into();
    let a = t.create_account(&n, &pw()).await.unwrap();
    assert_eq!(
        t.remove_domain("northwind.example")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Conflict
    );
    t.delete_account(&a.id).await.unwrap();
    t.remove_domain("northwind.example").await.unwrap();
    assert_eq!(
        t.domain("northwind.example").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn throttled_reads_wait_and_succeed() {
    let mut cfg = EmulatorConfig::default();
    cfg.throttling.resource_units = Some(6);
    cfg.throttling.time_scale = 20.0;
    let emu = Emulator::start(cfg).await.unwrap();
    let t = tenant_for(&emu);
    for _ in 0..20 {
        t.organization().await.unwrap();
    }
    assert!(
        t.request_counts().throttled > 0,
        "the tenant throttled, the client waited it out"
    );
}

#[tokio::test]
async fn https_with_a_custom_ca_and_certificate_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_rsa(dir.path(), "graph-test");
    let p12 = dir.path().join("app.pfx");
    let ok = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:p12-pass"])
        .arg("-inkey")
        .arg(&key)
        .arg("-in")
        .arg(&cert)
        .arg("-out")
        .arg(&p12)
        .status()
        .expect("openssl pkcs12");
    assert!(ok.success());
    std::fs::set_permissions(&p12, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut cfg = EmulatorConfig::default();
    cfg.tls.enabled = true;
    cfg.apps[0].certificates = vec![std::fs::read_to_string(&cert).unwrap()];
    let emu = Emulator::start(cfg).await.unwrap();
    let ca = emu.info().ca_file.clone().unwrap();

    let mut c = config_for(&emu);
    c.ca_bundle_file = Some(ca.clone());
    GraphTenant::new(c.clone())
        .unwrap()
        .organization()
        .await
        .unwrap();

    let mut pem = c.clone();
    pem.credential = Credential::Certificate {
        certificate_pem: None,
        certificate_file: Some(cert.clone()),
        private_key_pem: None,
        private_key_file: Some(key.clone()),
    };
    GraphTenant::new(pem).unwrap().organization().await.unwrap();
    let mut pfx = c.clone();
    pfx.credential = Credential::Pkcs12 {
        path: p12.clone(),
        password: SecretString::from("p12-pass"),
    };
    GraphTenant::new(pfx).unwrap().organization().await.unwrap();
    let mut wrong_pass = c.clone();
    wrong_pass.credential = Credential::Pkcs12 {
        path: p12,
        password: SecretString::from("nope"),
    };
    assert_eq!(
        GraphTenant::new(wrong_pass).unwrap_err().code(),
        ErrorCode::InvalidConfig
    );

    let untrusted = GraphTenant::new(config_for(&emu)).unwrap();
    assert_eq!(
        untrusted.organization().await.unwrap_err().code(),
        ErrorCode::Tls
    );
}

#[test]
fn bad_configuration_is_refused_with_the_setting_named() {
    let base = || GraphConfig::with_secret("t", "c", "s");
    let mut c = base();
    c.tenant_id = " ".into();
    assert!(
        GraphTenant::new(c)
            .unwrap_err()
            .message()
            .contains("tenant_id")
    );
    let mut c = base();
    c.page_size = 1000;
    assert!(
        GraphTenant::new(c)
            .unwrap_err()
            .message()
            .contains("page_size")
    );
    let mut c = base();
    c.graph_url = "not a url".into();
    assert!(
        GraphTenant::new(c)
            .unwrap_err()
            .message()
            .contains("graph_url")
    );
    let mut c = base();
    c.ca_bundle_pem = Some("nonsense".into());
    assert_eq!(
        GraphTenant::new(c).unwrap_err().code(),
        ErrorCode::InvalidConfig
    );
    let parsed: GraphConfig = serde_json::from_value(json!({"tenant_id": "t", "client_id": "c", "credential": {"kind": "secret", "secret": "s3cr3t"}})).unwrap();
    assert!(!format!("{parsed:?}").contains("s3cr3t"));
    assert_eq!(parsed.graph_url, "https://graph.microsoft.com/v1.0");
}
