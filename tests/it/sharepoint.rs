//! The SharePoint Online backend against the emulator: the team site, libraries through
//! Graph, site groups through SharePoint REST (certificate only), faults.

use o365_essentials::ErrorCode;
use o365_essentials::graph::{Credential, GraphConfig};
use o365_essentials::model::{NewLibrary, RevokeOutcome, SiteRole};
use o365_essentials::ports::SharePoint;
use o365_essentials::sharepoint::SharePointOnline;
use o365_essentials_emulator::config::{FaultKind, FaultRule, Seed, SeedUser};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

use crate::graph::{admin, config_for, self_signed_rsa};

const DOMAIN: &str = "contoso.onmicrosoft.com";

/// An RSA certificate and key made by openssl, in a temporary directory.
struct AppCert {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn app_cert() -> AppCert {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_rsa(dir.path(), "spo-test");
    AppCert {
        _dir: dir,
        cert,
        key,
    }
}

fn config(cert: &AppCert) -> EmulatorConfig {
    let mut cfg = EmulatorConfig::default();
    cfg.tenant.display_name = "Contoso".into();
    cfg.apps[0].certificates = vec![std::fs::read_to_string(&cert.cert).unwrap()];
    cfg.sharepoint.drive_delay_ms = 400;
    let user = |nick: &str, name: &str| SeedUser {
        user_principal_name: format!("{nick}@{DOMAIN}"),
        display_name: name.into(),
        ..SeedUser::default()
    };
    cfg.seed = Seed {
        users: vec![
            user("alex", "Alex Adams"),
            user("bea", "Bea Brown"),
            user("carl", "Carl Clark"),
        ],
        ..Seed::default()
    };
    cfg
}

fn graph_config(emu: &Emulator, cert: &AppCert) -> GraphConfig {
    let mut c = config_for(emu);
    c.sharepoint_url = Some(emu.info().sharepoint_url.clone());
    c.credential = Credential::Certificate {
        certificate_pem: None,
        certificate_file: Some(cert.cert.clone()),
        private_key_pem: None,
        private_key_file: Some(cert.key.clone()),
    };
    c
}

fn with_secret(emu: &Emulator) -> SharePointOnline {
    let mut c = config_for(emu);
    c.sharepoint_url = Some(emu.info().sharepoint_url.clone());
    SharePointOnline::new(c).unwrap()
}

async fn spo_state(emu: &Emulator) -> Value {
    admin(emu, "GET", "/state", None).await["sharepoint"].clone()
}

fn members_of(state: &Value, id: u64) -> Vec<String> {
    state["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id)
        .unwrap()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn team_site_and_libraries() {
    let cert = app_cert();
    let emu = Emulator::start(config(&cert)).await.unwrap();
    let spo = SharePointOnline::new(graph_config(&emu, &cert)).unwrap();
    let site = spo.team_site().await.unwrap();
    assert_eq!(site.url, "https://contoso.sharepoint.com");
    assert_eq!(site.display_name, "Contoso");
    assert!(site.id.starts_with("contoso.sharepoint.com,"));

    let libs = spo.libraries().await.unwrap();
    assert_eq!(
        libs.len(),
        1,
        "the Documents library only (Events is a list)"
    );
    assert_eq!(libs[0].name, "Documents");
    assert_eq!(libs[0].versioning, Some(true));
    assert!(libs[0].drive_id.is_some());

    // Create with versioning on (the default) and off; each waits for its drive.
    let contracts = spo
        .create_library(&NewLibrary {
            name: "Contracts".into(),
            description: "Signed contracts".into(),
            ..NewLibrary::default()
        })
        .await
        .unwrap();
    assert_eq!(contracts.name, "Contracts");
    assert_eq!(contracts.description, "Signed contracts");
    assert_eq!(contracts.versioning, Some(true));
    assert!(contracts.drive_id.is_some(), "waited for the drive");
    assert_eq!(contracts.url, "https://contoso.sharepoint.com/Contracts");
    let scratch = spo
        .create_library(&NewLibrary {
            name: "Scratch space".into(),
            description: String::new(),
            versioning: false,
        })
        .await
        .unwrap();
    assert_eq!(scratch.versioning, Some(false));
    assert!(scratch.drive_id.is_some());

    let libs = spo.libraries().await.unwrap();
    let names: Vec<_> = libs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Documents", "Contracts", "Scratch space"]);
    assert_eq!(libs[2].versioning, Some(false));
    assert!(libs.iter().all(|l| l.drive_id.is_some()));

    // The wait for the drive is bounded: a slow drive leaves the library without one.
    let mut slow_cfg = config(&cert);
    slow_cfg.sharepoint.drive_delay_ms = 600_000;
    let slow = Emulator::start(slow_cfg).await.unwrap();
    let slow_spo = SharePointOnline::new(graph_config(&slow, &cert)).unwrap();
    slow_spo.set_drive_wait(std::time::Duration::from_millis(400));
    let started = std::time::Instant::now();
    let pending = slow_spo
        .create_library(&NewLibrary {
            name: "Slow".into(),
            ..NewLibrary::default()
        })
        .await
        .unwrap();
    assert!(pending.drive_id.is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        slow_spo
            .libraries()
            .await
            .unwrap()
            .iter()
            .any(|l| l.name == "Slow" && l.drive_id.is_none())
    );

    // A duplicate name (any case) and bad names.
    let e = spo
        .create_library(&NewLibrary {
            name: "contracts".into(),
            ..NewLibrary::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert!(e.message().contains("contracts"));
    assert_eq!(e.service().unwrap().code, "nameAlreadyExists");
    let before = emu.request_count();
    for bad in ["", "  ", "a/b", "why?", &"x".repeat(256)] {
        let e = spo
            .create_library(&NewLibrary {
                name: bad.into(),
                ..NewLibrary::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{bad:?}");
    }
    assert_eq!(emu.request_count(), before, "refused before any request");

    // Delete; again → NotFound; not a GUID → InvalidInput.
    spo.delete_library(&scratch.id).await.unwrap();
    assert_eq!(
        spo.delete_library(&scratch.id).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        spo.delete_library("Contracts").await.unwrap_err().code(),
        ErrorCode::InvalidInput
    );
    assert_eq!(spo.libraries().await.unwrap().len(), 2);
}

#[tokio::test]
async fn grant_and_revoke_site_levels() {
    let cert = app_cert();
    let emu = Emulator::start(config(&cert)).await.unwrap();
    let spo = SharePointOnline::new(graph_config(&emu, &cert)).unwrap();
    let groups = spo.site_groups().await.unwrap();
    let roles: Vec<_> = groups
        .iter()
        .map(|g| (g.role, g.id, g.title.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            (SiteRole::Owner, 3, "Contoso Owners"),
            (SiteRole::Member, 5, "Contoso Members"),
            (SiteRole::Visitor, 4, "Contoso Visitors"),
        ]
    );
    assert!(groups.iter().all(|g| g.members.is_empty()));

    let alex = "alex@contoso.onmicrosoft.com";
    let bea = "bea@contoso.onmicrosoft.com";
    spo.grant(alex, SiteRole::Owner).await.unwrap();
    spo.grant(alex, SiteRole::Owner).await.unwrap();
    spo.grant(bea, SiteRole::Member).await.unwrap();
    spo.grant("CARL@contoso.onmicrosoft.com", SiteRole::Visitor)
        .await
        .unwrap();
    let groups = spo.site_groups().await.unwrap();
    let of = |role: SiteRole| {
        groups
            .iter()
            .find(|g| g.role == role)
            .unwrap()
            .members
            .clone()
    };
    assert_eq!(of(SiteRole::Owner), [alex]);
    assert_eq!(of(SiteRole::Member), [bea]);
    assert_eq!(of(SiteRole::Visitor), ["carl@contoso.onmicrosoft.com"]);
    assert_eq!(members_of(&spo_state(&emu).await, 3), [alex]);

    // Revoke: once revoked, then nothing to revoke.
    assert_eq!(
        spo.revoke(alex, SiteRole::Owner).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        spo.revoke(alex, SiteRole::Owner).await.unwrap(),
        RevokeOutcome::NothingToRevoke
    );
    assert_eq!(
        spo.revoke(bea, SiteRole::Visitor).await.unwrap(),
        RevokeOutcome::NothingToRevoke
    );
    assert!(members_of(&spo_state(&emu).await, 3).is_empty());
    assert_eq!(members_of(&spo_state(&emu).await, 5), [bea]);

    // Accounts that do not exist.
    for r in [
        spo.grant("ghost@contoso.onmicrosoft.com", SiteRole::Member)
            .await
            .map(|_| ()),
        spo.revoke("ghost@contoso.onmicrosoft.com", SiteRole::Member)
            .await
            .map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert!(e.message().contains("ghost@contoso.onmicrosoft.com"));
    }
    assert_eq!(
        spo.grant("not a user name", SiteRole::Member)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidUpn
    );
}

#[tokio::test]
async fn a_client_secret_is_refused_by_sharepoint_rest() {
    let cert = app_cert();
    let emu = Emulator::start(config(&cert)).await.unwrap();
    let spo = with_secret(&emu);
    // Graph works with a secret: the site and its libraries (versioning unknown).
    assert_eq!(
        spo.team_site().await.unwrap().url,
        "https://contoso.sharepoint.com"
    );
    let libs = spo.libraries().await.unwrap();
    assert_eq!(libs[0].versioning, None);
    spo.create_library(&NewLibrary {
        name: "Shared with secret".into(),
        ..NewLibrary::default()
    })
    .await
    .unwrap();
    // SharePoint REST does not: a clear error, before any request.
    let before = emu.request_count();
    let errors = [
        spo.site_groups().await.map(|_| ()).unwrap_err(),
        spo.grant("alex@contoso.onmicrosoft.com", SiteRole::Member)
            .await
            .unwrap_err(),
        spo.revoke("alex@contoso.onmicrosoft.com", SiteRole::Member)
            .await
            .map(|_| ())
            .unwrap_err(),
        spo.create_library(&NewLibrary {
            name: "No versions".into(),
            description: String::new(),
            versioning: false,
        })
        .await
        .map(|_| ())
        .unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.code(), ErrorCode::CertificateRequired);
        assert!(e.message().contains("certificate"), "{e}");
    }
    assert_eq!(emu.request_count(), before);
    assert_eq!(
        spo.libraries().await.unwrap().len(),
        2,
        "nothing half-created"
    );

    // The emulator answers a secret-based token as SharePoint does.
    let info = emu.info();
    let c = reqwest::Client::new();
    let tok = crate::graph::secret_token(&emu, "https://contoso.sharepoint.com/.default").await;
    let r = c
        .get(format!(
            "{}/_api/web/associatedownergroup",
            info.sharepoint_url
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let diag = r.headers()["x-ms-diagnostics"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(diag.contains("Unsupported app only token"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_description"], "Unsupported app only token.");
}

#[tokio::test]
async fn faults_lose_and_duplicate_nothing() {
    let cert = app_cert();
    let mut cfg = config(&cert);
    cfg.random_seed = 41;
    cfg.throttling.time_scale = 10.0;
    cfg.sharepoint.drive_delay_ms = 50;
    let rule = |path: &str, kind: FaultKind, p: f64| FaultRule {
        path: path.into(),
        method: None,
        probability: p,
        kind,
        limit: None,
    };
    cfg.faults = vec![
        rule("/v1.0/sites/*", FaultKind::Status { status: 500 }, 0.08),
        rule("/v1.0/sites/*", FaultKind::LostResponse, 0.1),
        rule("/v1.0/sites/*", FaultKind::Reset, 0.05),
        rule("/sharepoint/*", FaultKind::Status { status: 503 }, 0.08),
        rule("/sharepoint/*", FaultKind::LostResponse, 0.1),
        rule("/sharepoint/*", FaultKind::Status { status: 429 }, 0.05),
    ];
    let emu = Emulator::start(cfg).await.unwrap();
    let spo = SharePointOnline::new(graph_config(&emu, &cert)).unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        let lib = spo
            .create_library(&NewLibrary {
                name: format!("Library {i}"),
                description: String::new(),
                versioning: i % 2 == 0,
            })
            .await
            .unwrap_or_else(|e| panic!("library {i}: {e}"));
        ids.push(lib.id);
    }
    for id in ids.iter().step_by(3) {
        spo.delete_library(id)
            .await
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
    }
    let users = ["alex", "bea", "carl"].map(|n| format!("{n}@{DOMAIN}"));
    for u in &users {
        spo.grant(u, SiteRole::Member)
            .await
            .unwrap_or_else(|e| panic!("grant {u}: {e}"));
    }
    assert_eq!(
        spo.revoke(&users[1], SiteRole::Member)
            .await
            .unwrap_or_else(|e| panic!("revoke: {e}")),
        RevokeOutcome::Revoked
    );

    let stats = admin(&emu, "GET", "/stats", None).await;
    let injected: u64 = ["fault_status", "fault_reset", "fault_lost_response"]
        .iter()
        .map(|k| stats[*k].as_u64().unwrap_or(0))
        .sum();
    assert!(injected >= 5, "faults were injected: {stats}");

    let state = spo_state(&emu).await;
    let mut names: Vec<String> = state["lists"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["template"] == "documentLibrary")
        .map(|l| l["displayName"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..8)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("Library {i}"))
        .chain(["Documents".to_string()])
        .collect();
    want.sort();
    assert_eq!(names, want, "exactly the libraries asked for");
    for l in state["lists"].as_array().unwrap() {
        if let Some(i) = l["displayName"].as_str().unwrap().strip_prefix("Library ") {
            let i: u32 = i.parse().unwrap();
            assert_eq!(l["versioning"], i.is_multiple_of(2), "versioning of {i}");
        }
    }
    assert_eq!(
        members_of(&state, 5),
        [users[0].clone(), users[2].clone()],
        "granted once each, revoked once"
    );
}

#[tokio::test]
async fn resource_units_pace_sharepoint_rest() {
    let cert = app_cert();
    let mut cfg = config(&cert);
    cfg.sharepoint.resource_units = 12;
    cfg.sharepoint.window_secs = 0.5;
    let emu = Emulator::start(cfg).await.unwrap();
    let spo = SharePointOnline::new(graph_config(&emu, &cert)).unwrap();
    spo.grant("alex@contoso.onmicrosoft.com", SiteRole::Owner)
        .await
        .unwrap();
    // Each listing costs 9 units (three groups at 1, their users at 2): four of them
    // need three windows.
    for _ in 0..4 {
        let groups = spo.site_groups().await.unwrap();
        assert_eq!(groups[0].members, ["alex@contoso.onmicrosoft.com"]);
    }
    let o365_essentials::graph::RequestCounts {
        requests,
        throttled,
        budget_waits: waits,
        ..
    } = spo.request_counts();
    assert!(requests >= 26, "{requests}");
    assert!(
        throttled + waits >= 2,
        "the budget ran out and the client waited: throttled {throttled}, waits {waits}"
    );
    let stats = admin(&emu, "GET", "/stats", None).await;
    assert_eq!(
        stats["sharepoint_throttled"].as_u64().unwrap_or(0),
        throttled
    );
}
