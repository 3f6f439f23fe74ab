//! The engine end to end: the memory directory or Samba, the Graph backend, the emulator,
//! the SQLite store.

use std::sync::{Arc, Mutex};

use o365_essentials::ErrorCode;
use o365_essentials::engine::{
    BulkCreateRequest, CancelToken, Control, Event, Integration, failed_users, write_results,
};
use o365_essentials::graph::GraphTenant;
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::{
    ItemResult, LicenceAssignment, Outcome, PlanAction, RunKind, SkipReason,
};
use o365_essentials::ports::{Directory, Tenant};
use o365_essentials::store::Store;
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::graph::{admin, tenant_for};

struct Fixture {
    _emu: Emulator,
    _tmp: tempfile::TempDir,
    integration: Integration,
    dir: Arc<dyn Directory>,
    tenant: Arc<GraphTenant>,
    emu_admin: String,
}

async fn fixture(dir: Arc<dyn Directory>, cfg: EmulatorConfig) -> Fixture {
    let emu = Emulator::start(cfg).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(tmp.path().join("state.db")).unwrap());
    let tenant = Arc::new(tenant_for(&emu));
    let integration = Integration::new(dir.clone(), tenant.clone(), store);
    let emu_admin = emu.info().admin_url.clone();
    Fixture {
        _emu: emu,
        _tmp: tmp,
        integration,
        dir,
        tenant,
        emu_admin,
    }
}

/// The demo company with an integrated tenant.
async fn integrated_demo() -> Fixture {
    let f = fixture(
        Arc::new(MemoryDirectory::demo_company().unwrap()),
        EmulatorConfig::default(),
    )
    .await;
    f.integration.integrate().await.unwrap();
    f
}

/// A bulk-create plan for every eligible local user, without a licence.
async fn plan_everyone(f: &Fixture) -> o365_essentials::model::Plan {
    f.integration
        .accounts()
        .plan_bulk_create(
            &f.integration.accounts().snapshot().await.unwrap(),
            &request(None),
        )
        .unwrap()
}

fn request(licence: Option<uuid::Uuid>) -> BulkCreateRequest {
    BulkCreateRequest {
        domain: "contoso.onmicrosoft.com".into(),
        usage_location: Some("GB".into()),
        licences: licence
            .map(|sku_id| {
                vec![LicenceAssignment {
                    sku_id,
                    disabled_plans: vec![],
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

#[tokio::test]
async fn bulk_create_links_everyone_once_and_a_rerun_does_nothing() {
    let f = fixture(
        Arc::new(MemoryDirectory::demo_company().unwrap()),
        EmulatorConfig::default(),
    )
    .await;
    assert_eq!(
        f.integration.status().unwrap_err().code(),
        ErrorCode::NotIntegrated
    );
    let report = f.integration.requirements(Some("contoso.com")).await;
    assert!(report.can_integrate(), "{report:?}");
    let status = f.integration.integrate().await.unwrap();
    assert_eq!(status.initial_domain, "contoso.onmicrosoft.com");

    let sku = f.tenant.skus().await.unwrap()[0].sku_id;
    let snapshot = f.integration.accounts().snapshot().await.unwrap();
    let plan = f
        .integration
        .accounts()
        .plan_bulk_create(&snapshot, &request(Some(sku)))
        .unwrap();
    assert_eq!(plan.items.len(), 12);
    // A plan survives JSON for review and is applied as reviewed.
    let plan: o365_essentials::model::Plan =
        serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Event>::new()));
    let s2 = seen.clone();
    let ctl = Control::with_observer(
        CancelToken::new(),
        Arc::new(move |e: &Event| s2.lock().unwrap().push(e.clone())),
    )
    .unwrap();
    let results = f.integration.accounts().apply(&plan, &ctl).await.unwrap();
    drop(ctl); // delivers what is queued
    assert_eq!(results.count(Outcome::Succeeded), 12, "{results:?}");
    let events = seen.lock().unwrap().clone();
    let progress: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    // Progress may be coalesced, never reordered; it ends at 12 of 12.
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert_eq!(progress.last(), Some(&(12, 12)));
    // Every item is reported once, in plan order, with the result the run returned.
    let finished: Vec<&ItemResult> = events
        .iter()
        .filter_map(|e| match e {
            Event::ItemFinished { item, .. } => Some(item.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 12);
    assert!(finished.iter().zip(&results.items).all(|(a, b)| *a == b));
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished { counts, kind: RunKind::BulkCreate, .. }) if counts.succeeded == 12
    ));

    let state = admin_state(&f).await;
    assert_eq!(
        state["users"].as_array().unwrap().len(),
        13,
        "12 created + the admin"
    );
    let liam = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == "liam.lopez@contoso.onmicrosoft.com")
        .unwrap();
    assert_eq!(
        liam["accountEnabled"], false,
        "a disabled local user gets a disabled online account"
    );
    assert_eq!(f.integration.status().unwrap().links, 12);

    let again = f
        .integration
        .accounts()
        .plan_bulk_create(
            &f.integration.accounts().snapshot().await.unwrap(),
            &request(Some(sku)),
        )
        .unwrap();
    assert!(again.items.is_empty(), "{:?}", again.items);
    assert_eq!(
        again
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::AlreadyLinked)
            .count(),
        12
    );
}

async fn admin_state(f: &Fixture) -> Value {
    reqwest::get(format!("{}/state", f.emu_admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn items_whose_user_changed_since_planning_are_refused_and_failures_can_be_retried() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let mut cfg = EmulatorConfig::default();
    cfg.seed.skus[1].enabled = 3;
    let f = fixture(mem.clone(), cfg).await;
    f.integration.integrate().await.unwrap();
    let essentials = f
        .tenant
        .skus()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.sku_part_number == "O365_BUSINESS_ESSENTIALS")
        .unwrap()
        .sku_id;
    let plan = f
        .integration
        .accounts()
        .plan_bulk_create(
            &f.integration.accounts().snapshot().await.unwrap(),
            &request(Some(essentials)),
        )
        .unwrap();
    // Ava is renamed after the plan was reviewed.
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap();
    mem.edit_user(ava.guid, |u| u.display_name = Some("Ava Renamed".into()))
        .unwrap();
    let results = f
        .integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    let ava_item = results
        .items
        .iter()
        .find(|i| i.local_guid == ava.guid)
        .unwrap();
    assert_eq!(
        (ava_item.outcome, ava_item.error_code),
        (Outcome::Skipped, Some(ErrorCode::PlanStale))
    );
    // Only 3 licence seats: the preview said so, and the rest are refused before anything
    // is written for them (no account without its licence, unless asked).
    let seats = plan.seats.iter().find(|c| c.sku_id == essentials).unwrap();
    assert_eq!((seats.free, seats.planned, seats.short), (3, 12, 9));
    assert_eq!(plan.items.iter().filter(|i| i.licence_short).count(), 9);
    let refused: Vec<_> = results
        .items
        .iter()
        .filter(|i| i.error_code == Some(ErrorCode::LicenceUnavailable))
        .collect();
    assert_eq!(refused.len(), 8, "{results:#?}");
    assert!(
        refused
            .iter()
            .all(|i| i.outcome == Outcome::Skipped && i.online_id.is_none())
    );
    assert!(
        refused[0]
            .service_message
            .as_deref()
            .unwrap()
            .contains("no free seat")
    );
    assert_eq!(f.integration.status().unwrap().links, 3);
    let state = admin_state(&f).await;
    assert_eq!(
        state["users"].as_array().unwrap().len(),
        4,
        "3 created + the admin"
    );

    let dir = tempfile::tempdir().unwrap();
    let (json_file, csv_file) = write_results(&results, dir.path()).unwrap();
    let csv = std::fs::read_to_string(&csv_file).unwrap();
    assert!(csv.lines().next().unwrap().starts_with("local_user,"));
    assert!(csv.contains("licence_unavailable"));
    let text = std::fs::read_to_string(&json_file).unwrap() + &csv;
    assert!(
        !text.contains("passwordProfile") && !text.to_lowercase().contains("password\":"),
        "no secret in the results file"
    );
    // The retry plans the refused and the stale: 8 without a seat, and Ava.
    let retry = failed_users(&json_file).unwrap();
    assert_eq!(retry.len(), 9);

    // Asked to, the retry creates them without the licence; the next plan proposes it.
    let again = f
        .integration
        .accounts()
        .plan_bulk_create(
            &f.integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                users: Some(retry.iter().map(|g| (*g).into()).collect()),
                allow_unlicensed: true,
                ..request(Some(essentials))
            },
        )
        .unwrap();
    assert!(again.allow_unlicensed);
    let unlicensed = f
        .integration
        .accounts()
        .apply(&again, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    assert_eq!(unlicensed.count(Outcome::Succeeded), 9, "{unlicensed:#?}");
    assert!(
        unlicensed
            .items
            .iter()
            .filter(|i| i.local_user != "ava.adams")
            .all(|i| i
                .service_message
                .as_deref()
                .unwrap_or_default()
                .contains("created without"))
    );
    assert_eq!(f.integration.status().unwrap().links, 12);
    let next = f
        .integration
        .accounts()
        .plan_bulk_create(
            &f.integration.accounts().snapshot().await.unwrap(),
            &request(Some(essentials)),
        )
        .unwrap();
    let proposed = next
        .items
        .iter()
        .filter(|i| matches!(i.action, PlanAction::Licences { .. }))
        .count();
    assert!(proposed >= 8, "{:#?}", next.items);
    assert!(
        next.items
            .iter()
            .all(|i| !matches!(i.action, PlanAction::CreateAccount { .. })),
        "nothing is created twice"
    );
}

#[tokio::test]
async fn disabled_integration_works_offline_and_refuses_changes() {
    let f = integrated_demo().await;
    let plan = plan_everyone(&f).await;
    let Fixture {
        _emu, integration, ..
    } = f;
    drop(_emu); // the tenant is gone
    integration.disable().unwrap();
    assert!(!integration.status().unwrap().enabled);
    assert_eq!(
        integration
            .accounts()
            .apply(&plan, &o365_essentials::engine::Control::none())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::IntegrationDisabled
    );
    // No links yet, so nothing to check online: re-enabling works even offline.
    let report = integration.enable().await.unwrap();
    assert!(report.missing.is_empty() && report.changed.is_empty());
    assert!(integration.status().unwrap().enabled);
    let bad = BulkCreateRequest {
        domain: "not-verified.example".into(),
        ..Default::default()
    };
    assert_eq!(
        integration
            .accounts()
            .plan_bulk_create(&o365_essentials::engine::Snapshot::default(), &bad)
            .unwrap_err()
            .code(),
        ErrorCode::DomainNotVerified
    );
}

#[tokio::test]
async fn requirements_report_what_to_fix() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let mut t = mem.topology().await.unwrap();
    t.domain_controllers.push("dc2.essentials.test".into());
    t.this_host_is_dc = false;
    mem.set_topology(t).unwrap();
    let f = fixture(mem, EmulatorConfig::default()).await;
    let r = f
        .integration
        .requirements(Some("marketing..contoso.com"))
        .await;
    let by = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap().clone();
    assert_eq!(
        by("single_domain_controller").status,
        o365_essentials::model::CheckStatus::Fail
    );
    assert!(!by("single_domain_controller").remedy.is_empty());
    assert_eq!(
        by("running_on_dc").status,
        o365_essentials::model::CheckStatus::Warn
    );
    assert_eq!(
        by("tenant_reachable").status,
        o365_essentials::model::CheckStatus::Pass
    );
    assert_eq!(
        by("custom_domain").status,
        o365_essentials::model::CheckStatus::Fail
    );
    assert!(!r.can_integrate());
}

#[tokio::test]
async fn bulk_create_from_samba() {
    let d = Arc::new(
        o365_essentials::ldap::LdapDirectory::new(crate::samba::shared().config()).unwrap(),
    );
    for i in 0..3 {
        let u = o365_essentials::model::NewLocalUser {
            sam_account_name: format!("eng{i}"),
            user_principal_name: format!("eng{i}@essentials.test"),
            display_name: format!("Engine Person {i}"),
            ..Default::default()
        };
        d.create_user(
            &u,
            &o365_essentials::SecretString::from("Engine-Test-2026!"),
        )
        .await
        .unwrap();
    }
    let f = fixture(d.clone(), EmulatorConfig::default()).await;
    f.integration.integrate().await.unwrap();
    let snapshot = f.integration.accounts().snapshot().await.unwrap();
    let chosen: Vec<_> = snapshot
        .users
        .iter()
        .filter(|u| u.sam_account_name.starts_with("eng"))
        .map(|u| u.guid)
        .collect();
    assert_eq!(chosen.len(), 3);
    let plan = f
        .integration
        .accounts()
        .plan_bulk_create(
            &snapshot,
            &BulkCreateRequest {
                users: Some(chosen.iter().map(|g| (*g).into()).collect()),
                ..request(None)
            },
        )
        .unwrap();
    assert_eq!(plan.items.len(), 3);
    let results = f
        .integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    assert_eq!(results.count(Outcome::Succeeded), 3);
    for g in chosen {
        let local = f.dir.user(g).await.unwrap();
        let online = f
            .tenant
            .find_by_anchor(&local.anchor())
            .await
            .unwrap()
            .expect("created with the objectGUID anchor");
        assert_eq!(
            online.user_principal_name,
            format!("{}@contoso.onmicrosoft.com", local.sam_account_name)
        );
    }
    let _ = admin(&f._emu, "GET", "/stats", None).await;
    let _ = json!({});
}

#[tokio::test]
async fn changing_credentials_checks_the_new_ones_first_and_keeps_the_old_on_failure() {
    let f = integrated_demo().await;
    let mut bad = crate::graph::config_for(&f._emu);
    bad.credential = o365_essentials::graph::Credential::Secret {
        secret: o365_essentials::SecretString::from("wrong-secret"),
    };
    let e = f.integration.change_credentials(bad).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Auth);
    assert!(e.message().contains("old ones stay in use"));
    assert!(!e.to_string().contains("wrong-secret"));
    // The old credentials still work.
    assert!(f.integration.accounts().snapshot().await.is_ok());
    f.integration
        .change_credentials(crate::graph::config_for(&f._emu))
        .await
        .unwrap();
    assert!(f.integration.accounts().snapshot().await.is_ok());
    let pad = f.integration.launchpad().unwrap();
    assert_eq!(
        pad.team_site.as_deref(),
        Some("https://contoso.sharepoint.com")
    );
    assert!(pad.admin_centre.starts_with("https://"));
}

async fn seed(f: &Fixture, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/seed", f.emu_admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_match_preview_shows_hard_soft_protected_and_conflicts_before_anything_is_written() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap();
    let ben = mem.find_user("ben.brooks").await.unwrap().unwrap();
    let chloe = mem.find_user("chloe.carter").await.unwrap().unwrap();
    let daniel = mem.find_user("daniel.diaz").await.unwrap().unwrap();
    mem.edit_user(daniel.guid, |u| {
        u.proxy_addresses = vec!["SMTP:shared@contoso.com".into()]
    })
    .unwrap();
    let emma = mem.find_user("emma.evans").await.unwrap().unwrap();
    mem.edit_user(emma.guid, |u| {
        u.proxy_addresses = vec!["smtp:SHARED@contoso.com".into()]
    })
    .unwrap();
    let f = fixture(mem, EmulatorConfig::default()).await;
    f.integration.integrate().await.unwrap();
    seed(&f, json!({"users": [
        {"user_principal_name": "ava.adams@contoso.onmicrosoft.com", "display_name": "Ava online", "on_premises_immutable_id": ava.anchor().as_str()},
        {"user_principal_name": "ben.brooks@contoso.onmicrosoft.com", "display_name": "Ben online"},
        {"user_principal_name": "chloe.carter@contoso.onmicrosoft.com", "display_name": "Chloe admin", "roles": ["Global Administrator"]}
    ]})).await;
    let before = admin_state(&f).await;
    let preview = o365_essentials::engine::match_preview(
        &f.integration.accounts().snapshot().await.unwrap(),
        "contoso.onmicrosoft.com",
    );
    assert_eq!(
        preview
            .hard_matches
            .iter()
            .map(|p| p.local_guid)
            .collect::<Vec<_>>(),
        vec![ava.guid]
    );
    assert_eq!(
        preview
            .soft_candidates
            .iter()
            .map(|p| (p.local_guid, p.basis.as_str()))
            .collect::<Vec<_>>(),
        vec![(ben.guid, "user name")]
    );
    assert_eq!(
        preview
            .protected
            .iter()
            .map(|p| p.local_guid)
            .collect::<Vec<_>>(),
        vec![chloe.guid]
    );
    assert_eq!(preview.conflicts.len(), 1);
    assert_eq!(preview.conflicts[0].attribute, "proxyAddress");
    assert_eq!(
        preview.conflicts[0].objects,
        vec!["daniel.diaz".to_string(), "emma.evans".to_string()]
    );
    assert_eq!(
        admin_state(&f).await["changeSeq"],
        before["changeSeq"],
        "nothing written"
    );

    // With soft matching allowed the plan links Ben, and still never Chloe (admin).
    let plan = f
        .integration
        .accounts()
        .plan_bulk_create(
            &f.integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                allow_soft_match: true,
                ..request(None)
            },
        )
        .unwrap();
    assert!(
        plan.items
            .iter()
            .any(|i| matches!(&i.action, PlanAction::Link { local, .. } if local.guid == ben.guid))
    );
    assert!(
        plan.skipped
            .iter()
            .any(|s| s.guid == chloe.guid && s.reason == SkipReason::AdministratorAccount)
    );
    let results = f
        .integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    assert_eq!(results.count(Outcome::Failed), 0, "{results:#?}");
    let ben_online = f
        .tenant
        .account("ben.brooks@contoso.onmicrosoft.com")
        .await
        .unwrap();
    assert_eq!(
        ben_online.immutable_id,
        Some(ben.anchor()),
        "a soft match writes the anchor"
    );
}

#[tokio::test]
async fn assign_unassign_and_one_step_create() {
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let f = fixture(mem.clone(), EmulatorConfig::default()).await;
    f.integration.integrate().await.unwrap();
    let ids = seed(&f, json!({"users": [
        {"user_principal_name": "free@contoso.onmicrosoft.com", "display_name": "Free", "usage_location": "GB", "licences": ["O365_BUSINESS_PREMIUM"]},
        {"user_principal_name": "boss@contoso.onmicrosoft.com", "display_name": "Boss", "roles": ["Global Administrator"]}
    ]})).await;
    let free = o365_essentials::model::OnlineAccountId(ids["userIds"][0].as_str().unwrap().into());
    let boss = o365_essentials::model::OnlineAccountId(ids["userIds"][1].as_str().unwrap().into());
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap();
    let ben = mem.find_user("ben.brooks").await.unwrap().unwrap();
    assert_eq!(
        f.integration
            .accounts()
            .assign(ben.guid, &boss)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::ProtectedAccount
    );
    let link = f
        .integration
        .accounts()
        .assign(ava.guid, &free)
        .await
        .unwrap();
    assert_eq!(link.origin, o365_essentials::model::LinkOrigin::Manual);
    assert_eq!(
        f.tenant.account(&free.0).await.unwrap().immutable_id,
        Some(ava.anchor())
    );
    assert_eq!(
        f.integration
            .accounts()
            .assign(ben.guid, &free)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Conflict
    );

    let unassigned = f.integration.accounts().unassign(ava.guid).await.unwrap();
    assert_eq!(
        unassigned.state,
        o365_essentials::model::LinkState::Unassigned
    );
    let acc = f.tenant.account(&free.0).await.unwrap();
    assert!(acc.assigned_skus.is_empty(), "licence released");
    assert!(!acc.account_enabled, "sign-in blocked");
    assert!(
        f.integration.status().unwrap().links >= 1,
        "the mapping is kept"
    );

    let new = o365_essentials::model::NewLocalUser {
        sam_account_name: "newstart".into(),
        user_principal_name: "newstart@essentials.test".into(),
        display_name: "New Starter".into(),
        ..Default::default()
    };
    let weak = f
        .integration
        .accounts()
        .create_user_with_account(
            &new,
            &o365_essentials::SecretString::from("short"),
            "contoso.onmicrosoft.com",
            Some("GB"),
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(weak.code(), ErrorCode::PasswordPolicy);
    assert!(mem.find_user("newstart").await.unwrap().is_none());
    let pw = o365_essentials::SecretString::from("Fresh-Start-2026!");
    let (local, online) = f
        .integration
        .accounts()
        .create_user_with_account(&new, &pw, "contoso.onmicrosoft.com", Some("GB"), &[])
        .await
        .unwrap();
    assert!(mem.check_password(local.guid, &pw).unwrap());
    let check: Value = reqwest::Client::new()
        .post(format!(
            "{}/users/{}/check-password",
            f.emu_admin, online.id
        ))
        .json(&json!({"password": "Fresh-Start-2026!"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["matches"], true, "the same password online");
}

#[tokio::test]
async fn import_creates_local_users_with_passwords_returned_once() {
    let mem = Arc::new(MemoryDirectory::new("essentials.test").unwrap());
    let f = fixture(mem.clone(), EmulatorConfig::default()).await;
    f.integration.integrate().await.unwrap();
    seed(&f, json!({"users": [
        {"user_principal_name": "cloud.one@contoso.onmicrosoft.com", "display_name": "Cloud One", "given_name": "Cloud", "surname": "One"},
        {"user_principal_name": "cloud.two@contoso.onmicrosoft.com", "display_name": "Cloud Two"}
    ]})).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("initial-passwords.csv");
    let req = o365_essentials::engine::ImportRequest {
        password_file: Some(file.clone()),
        ..Default::default()
    };
    let (imported, results) = f.integration.accounts().import(&req).await.unwrap();
    assert_eq!(imported.len(), 2, "the admin is not imported: {results:#?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    for u in &imported {
        assert!(
            mem.check_password(u.local.guid, &u.initial_password)
                .unwrap(),
            "the returned password is the user's"
        );
        let pw = o365_essentials::ExposeSecret::expose_secret(&u.initial_password).to_string();
        assert!(text.contains(&pw));
        assert!(!format!("{u:?}").contains(&pw), "Debug hides it");
        let online = f.tenant.account(&u.online_id.0).await.unwrap();
        assert_eq!(
            online.immutable_id,
            Some(u.local.anchor()),
            "linked by anchor"
        );
        let results_json = serde_json::to_string(&results).unwrap();
        assert!(!results_json.contains(&pw), "never in the results");
    }
    assert_eq!(
        mem.find_user("cloud.one")
            .await
            .unwrap()
            .unwrap()
            .given_name
            .as_deref(),
        Some("Cloud")
    );
    // The file is never overwritten; nothing is imported twice.
    assert_eq!(
        f.integration
            .accounts()
            .import(&req)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::AlreadyExists
    );
    let (again, _) = f
        .integration
        .accounts()
        .import(&o365_essentials::engine::ImportRequest::default())
        .await
        .unwrap();
    assert!(again.is_empty());
}

#[tokio::test]
async fn a_concurrent_import_gives_clashing_names_two_users_and_a_cancelled_one_resumes() {
    use o365_essentials::engine::{CancelToken, Control, Event, ImportRequest};
    let mem = Arc::new(MemoryDirectory::new("essentials.test").unwrap());
    let mut cfg = EmulatorConfig::default();
    cfg.latency.write = o365_essentials_emulator::config::Delay {
        fixed_ms: 40,
        jitter_ms: 40,
    };
    let f = fixture(mem.clone(), cfg).await;
    f.integration.integrate().await.unwrap();
    let mut users: Vec<Value> = (0..60)
        .map(|i| json!({"user_principal_name": format!("staff{i:02}@contoso.onmicrosoft.com"), "display_name": format!("Staff {i:02}")}))
        .collect();
    // Two people called Jane in two domains would both be `jane` locally.
    users.push(json!({"user_principal_name": "jane@contoso.onmicrosoft.com", "display_name": "Jane North"}));
    users.push(json!({"user_principal_name": "jane@fabrikam.onmicrosoft.com", "display_name": "Jane South"}));
    seed(&f, json!({ "users": users })).await;

    // Cancelled once a dozen accounts are done.
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let ctl = Control::with_observer(
        cancel,
        Arc::new(move |e: &Event| {
            if let Event::Progress { done, .. } = e {
                s2.lock().unwrap().push(*done);
                if *done >= 12 {
                    c2.cancel();
                }
            }
        }),
    )
    .unwrap();
    let (first, results) = f
        .integration
        .accounts()
        .import_with(&ImportRequest::default(), &ctl)
        .await
        .unwrap();
    drop(ctl);
    let cancelled = results.count(Outcome::Cancelled);
    assert!(cancelled > 0, "stopped early: {} imported", first.len());
    assert_eq!(results.count(Outcome::Succeeded), first.len());
    assert_eq!(
        first.len() + cancelled,
        62,
        "every account is accounted for"
    );
    let done = seen.lock().unwrap().clone();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {done:?}"
    );

    // The rerun imports the rest, nothing twice.
    let (rest, results) = f
        .integration
        .accounts()
        .import(&ImportRequest::default())
        .await
        .unwrap();
    assert_eq!(results.count(Outcome::Failed), 0, "{results:#?}");
    assert_eq!(first.len() + rest.len(), 62);
    let mut sams: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|u| u.local.sam_account_name.to_ascii_lowercase())
        .collect();
    sams.sort();
    let n = sams.len();
    sams.dedup();
    assert_eq!(sams.len(), n, "every local user has a name of its own");
    assert!(sams.contains(&"jane".to_string()) && sams.contains(&"jane2".to_string()));
    for u in first.iter().chain(&rest) {
        let online = f.tenant.account(&u.online_id.0).await.unwrap();
        assert_eq!(online.immutable_id, Some(u.local.anchor()));
    }
    assert_eq!(f.integration.status().unwrap().links, 62);
}

#[tokio::test]
async fn an_import_runs_one_at_a_time_and_settles_what_a_dead_one_left_pending() {
    use o365_essentials::engine::ImportRequest;
    use o365_essentials::store::JournalState;
    let mem = Arc::new(MemoryDirectory::new("essentials.test").unwrap());
    let f = fixture(mem.clone(), EmulatorConfig::default()).await;
    f.integration.integrate().await.unwrap();
    seed(
        &f,
        json!({"users": [
            {"user_principal_name": "held.one@contoso.onmicrosoft.com", "display_name": "Held One"},
            {"user_principal_name": "held.two@contoso.onmicrosoft.com", "display_name": "Held Two"}
        ]}),
    )
    .await;
    // Another process on the same store is importing: this one is told so and makes
    // nobody (two imports at once would both make a local user of each account).
    let other = Store::open(f._tmp.path().join("state.db")).unwrap();
    let held = other
        .lease(o365_essentials::store::Work::Import, None)
        .unwrap();
    let e = f
        .integration
        .accounts()
        .import(&ImportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::WorkHeld, "{e}");
    use futures::TryStreamExt as _;
    let made: Vec<_> = mem.users().try_collect().await.unwrap();
    assert!(made.is_empty(), "no local user made: {made:?}");
    assert_eq!(f.integration.status().unwrap().links, 0);

    // That process died in the middle of a step: begun, never answered.
    let dead = uuid::Uuid::new_v4();
    other
        .journal_begin(dead, "import", "an-account", &json!({"sam": "held.one"}))
        .unwrap();
    drop(held);
    let (imported, results) = f
        .integration
        .accounts()
        .import(&ImportRequest::default())
        .await
        .unwrap();
    assert_eq!(imported.len(), 2, "{results:#?}");
    assert!(
        other.journal_pending().unwrap().is_empty(),
        "the dead import's step is settled, the new one's are finished"
    );
    let settled = other.journal_of_run(dead).unwrap();
    assert_eq!(settled[0].state, JournalState::Failed);
    assert_eq!(settled[0].outcome.as_ref().unwrap()["interrupted"], true);
}

#[tokio::test]
async fn applying_a_plan_never_does_more_than_the_plan() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for round in 0..6 {
        let f = integrated_demo().await;
        let mut plan = plan_everyone(&f).await;
        // The administrator reviewed the plan and struck some items out.
        plan.items.retain(|_| rng.random_bool(0.5));
        let kept: std::collections::HashSet<_> =
            plan.items.iter().map(|i| i.action.local_guid()).collect();
        let before = admin_state(&f).await["users"].as_array().unwrap().len();
        let results = f
            .integration
            .accounts()
            .apply(&plan, &o365_essentials::engine::Control::none())
            .await
            .unwrap();
        let after = admin_state(&f).await["users"].as_array().unwrap().len();
        assert_eq!(
            after - before,
            plan.items.len(),
            "round {round}: exactly the planned creates"
        );
        assert!(
            results.items.iter().all(|i| kept.contains(&i.local_guid)),
            "round {round}: nobody outside the plan was touched"
        );
        assert_eq!(f.integration.status().unwrap().links, plan.items.len());
    }
}

#[tokio::test]
async fn re_enabling_relinks_by_anchor_and_reports_drift() {
    let f = integrated_demo().await;
    let plan = plan_everyone(&f).await;
    f.integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    f.integration.disable().unwrap();
    // Behind our back, while disabled:
    let renamed = f
        .tenant
        .account("ava.adams@contoso.onmicrosoft.com")
        .await
        .unwrap();
    f.tenant
        .update_account(
            &renamed.id,
            &o365_essentials::model::AccountUpdate {
                user_principal_name: Some("ava@contoso.onmicrosoft.com".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let gone = f
        .tenant
        .account("ben.brooks@contoso.onmicrosoft.com")
        .await
        .unwrap();
    f.tenant.delete_account(&gone.id).await.unwrap();
    let recreated = f
        .tenant
        .account("chloe.carter@contoso.onmicrosoft.com")
        .await
        .unwrap();
    f.tenant.delete_account(&recreated.id).await.unwrap();
    purge(&f._emu, &recreated.id.0).await; // gone for good, so its anchor is free again
    let again = o365_essentials::model::NewOnlineAccount {
        user_principal_name: "chloe.carter@contoso.onmicrosoft.com".into(),
        display_name: "Chloe again".into(),
        mail_nickname: "chloe.carter".into(),
        immutable_id: recreated.immutable_id.clone(),
        account_enabled: true,
        ..Default::default()
    };
    let new_chloe = f
        .tenant
        .create_account(
            &again,
            &o365_essentials::SecretString::from("Recreated-2026!"),
        )
        .await
        .unwrap();
    let report = f.integration.enable().await.unwrap();
    assert!(f.integration.status().unwrap().enabled);
    assert_eq!(report.missing.len(), 1, "{report:?}");
    assert_eq!(report.missing[0].online_id, gone.id);
    assert_eq!(report.relinked.len(), 1);
    assert!(report.relinked[0].what.contains(&new_chloe.id.0));
    assert!(
        report
            .changed
            .iter()
            .any(|d| d.what.contains("ava@contoso.onmicrosoft.com")),
        "{report:?}"
    );
    let ava_link = f
        .integration
        .accounts()
        .snapshot()
        .await
        .unwrap()
        .links
        .into_iter()
        .find(|l| l.online_id == renamed.id)
        .unwrap();
    assert_eq!(
        ava_link.user_principal_name, "ava@contoso.onmicrosoft.com",
        "the link follows; the online change is not overwritten"
    );
}

/// Permanently deletes a soft-deleted account through Graph (not a port operation).
async fn purge(emu: &Emulator, id: &str) {
    let info = emu.info();
    let token = crate::graph::secret_token(emu, "https://graph.microsoft.com/.default").await;
    let r = reqwest::Client::new()
        .delete(format!("{}/directory/deletedItems/{id}", info.graph_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn bulk_create_with_injected_faults_ends_exact() {
    use o365_essentials_emulator::config::{FaultKind, FaultRule};
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    for i in 0..40 {
        let u = o365_essentials::model::NewLocalUser {
            sam_account_name: format!("extra{i:02}"),
            user_principal_name: format!("extra{i:02}@essentials.test"),
            display_name: format!("Extra {i:02}"),
            ..Default::default()
        };
        mem.create_user(&u, &o365_essentials::SecretString::from("Zebra-Passw0rd!"))
            .await
            .unwrap();
    }
    let rule = |kind: FaultKind, path: &str| FaultRule {
        path: path.into(),
        method: Some("POST".into()),
        probability: 0.025,
        kind,
        limit: None,
    };
    let cfg = EmulatorConfig {
        random_seed: 99,
        faults: vec![
            rule(FaultKind::Status { status: 503 }, "/v1.0/users"),
            rule(FaultKind::Reset, "/v1.0/users"),
            rule(FaultKind::LostResponse, "/v1.0/users"),
            rule(FaultKind::Status { status: 500 }, "/v1.0/users"),
            rule(FaultKind::LostResponse, "/v1.0/users/*/assignLicense"),
            rule(
                FaultKind::Status { status: 504 },
                "/v1.0/users/*/assignLicense",
            ),
        ],
        ..EmulatorConfig::default()
    };
    let f = fixture(mem, cfg).await;
    f.integration.integrate().await.unwrap();
    let sku = f.tenant.skus().await.unwrap()[0].sku_id;
    // More users than seats: the ones beyond are made without the licence, as asked.
    let req = BulkCreateRequest {
        allow_unlicensed: true,
        ..request(Some(sku))
    };
    let cfg_seats = f
        .tenant
        .skus()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.sku_id == sku)
        .unwrap()
        .enabled_units;
    let plan = f
        .integration
        .accounts()
        .plan_bulk_create(&f.integration.accounts().snapshot().await.unwrap(), &req)
        .unwrap();
    assert_eq!(plan.items.len(), 52);
    let results = f
        .integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    assert_eq!(
        results.count(Outcome::Succeeded),
        52,
        "nothing may fail: {results:#?}"
    );
    let unlicensed = results
        .items
        .iter()
        .filter(|i| {
            i.service_message
                .as_deref()
                .is_some_and(|m| m.contains("created without"))
        })
        .count() as u32;
    assert_eq!(
        unlicensed,
        52 - cfg_seats.min(52),
        "exactly the seats were used"
    );
    let stats: Value = reqwest::get(format!("{}/stats", f.emu_admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let injected: u64 = ["fault_status", "fault_reset", "fault_lost_response"]
        .iter()
        .map(|k| stats[k].as_u64().unwrap_or(0))
        .sum();
    assert!(injected >= 5, "faults were injected: {stats}");
    let state = admin_state(&f).await;
    let users = state["users"].as_array().unwrap();
    assert_eq!(users.len(), 53, "52 created once each + the admin");
    let anchors: std::collections::HashSet<_> = users
        .iter()
        .filter_map(|u| u["onPremisesImmutableId"].as_str())
        .collect();
    assert_eq!(anchors.len(), 52);
    assert_eq!(f.integration.status().unwrap().links, 52);
}

#[tokio::test]
async fn local_users_join_groups_and_the_launchpad_finds_the_team_site() {
    use o365_essentials::exchange::ExchangeOnline;
    use o365_essentials::model::{NewDistributionGroup, NewLocalUser};
    use o365_essentials::ports::Exchange;
    use o365_essentials::sharepoint::SharePointOnline;

    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let mut cfg = EmulatorConfig::default();
    // A tenant whose SharePoint domain was renamed: the guess from the initial domain is wrong.
    cfg.sharepoint.host_label = Some("contosogroup".into());
    let f = fixture(mem.clone(), cfg).await;
    f.integration.integrate().await.unwrap();
    let plan = plan_everyone(&f).await;
    f.integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap();
    let ben = mem.find_user("ben.brooks").await.unwrap().unwrap();
    let newcomer = mem
        .create_user(
            &NewLocalUser {
                sam_account_name: "nina.new".into(),
                user_principal_name: "nina.new@contoso.local".into(),
                display_name: "Nina New".into(),
                ..NewLocalUser::default()
            },
            &o365_essentials::SecretString::from("Spring-2027!Qx"),
        )
        .await
        .unwrap();

    let names = f
        .integration
        .accounts()
        .online_user_names(&[ava.guid, ben.guid])
        .await
        .unwrap();
    assert_eq!(
        names,
        [
            "ava.adams@contoso.onmicrosoft.com",
            "ben.brooks@contoso.onmicrosoft.com"
        ]
    );
    let e = f
        .integration
        .accounts()
        .online_user_names(&[ava.guid, newcomer.guid])
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(e.message().contains("nina.new"), "{e}");

    // The names go straight into Exchange.
    let mut c = crate::graph::config_for(&f._emu);
    c.exchange_url = f._emu.info().exchange_url.clone();
    let exo = ExchangeOnline::new(c.clone()).unwrap();
    let g = exo
        .create_distribution_group(&NewDistributionGroup {
            name: "Office".into(),
            alias: "office".into(),
            primary_smtp_address: "office@contoso.onmicrosoft.com".into(),
            members: names.clone(),
            ..NewDistributionGroup::default()
        })
        .await
        .unwrap();
    assert_eq!(g.members, names);

    let guessed = f.integration.launchpad().unwrap();
    assert_eq!(
        guessed.team_site.as_deref(),
        Some("https://contoso.sharepoint.com")
    );
    let spo = SharePointOnline::new(c).unwrap();
    let pad = f.integration.launchpad_from(&spo).await.unwrap();
    assert_eq!(
        pad.team_site.as_deref(),
        Some("https://contosogroup.sharepoint.com")
    );
}
