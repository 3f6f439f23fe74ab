//! The table of operations through its one dispatcher, `Integration::call`, as every front
//! door drives it: an integration opened from one JSON configuration (the demo directory,
//! the emulator's tenant with a certificate credential, BIND for the domain), every
//! operation called with JSON parameters. The test fails when the table gains an
//! operation it does not call.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use o365_essentials::ErrorCode;
use o365_essentials::config::IntegrationConfig;
use o365_essentials::engine::{CancelToken, Control, Event, Integration};
use o365_essentials::ops::OPERATIONS;
use o365_essentials::ports::Directory;
use o365_essentials_emulator::config::{Seed, SeedDevice, SeedDomain, SeedUser};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::dns::bind::Bind;
use crate::graph::admin;

const ZONE: &str = "tailspin.co.uk";
const TSIG_SECRET: &str = "bzM2NS1lc3NlbnRpYWxzLXRlc3Qta2V5LTMyYnl0ZXMhIQ==";

struct Opened {
    emu: Emulator,
    _dir: tempfile::TempDir,
    integration: Integration,
    called: Mutex<BTreeSet<String>>,
    /// Every call made, in order (replayed on a disabled integration).
    calls: Mutex<Vec<(String, Value)>>,
}

impl Opened {
    async fn call(&self, name: &str, params: Value) -> o365_essentials::Result<Value> {
        self.called.lock().unwrap().insert(name.to_string());
        self.calls
            .lock()
            .unwrap()
            .push((name.to_string(), params.clone()));
        self.integration.call(name, params, &Control::none()).await
    }

    async fn ok(&self, name: &str, params: Value) -> Value {
        match self.call(name, params).await {
            Ok(v) => v,
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

/// Plays the person who enters the next device code and signs in as `user`.
async fn approve_device_code(admin_url: String, user: &'static str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let v: Value = http
            .get(format!("{admin_url}/devicecode"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(code) = v["value"][0]["userCode"].as_str() {
            let r = http
                .post(format!("{admin_url}/devicecode/approve"))
                .json(&json!({"userCode": code, "user": user}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no device code appeared");
}

fn emulator_config(cert_pem: String) -> EmulatorConfig {
    let mut cfg = EmulatorConfig::default();
    cfg.apps[0].certificates = vec![cert_pem];
    cfg.identity.device_code_interval_secs = 1;
    cfg.sharepoint.drive_delay_ms = 100;
    cfg.exchange.wipe_ack_delay_ms = 60_000;
    cfg.seed = Seed {
        users: vec![SeedUser {
            user_principal_name: "alex@contoso.onmicrosoft.com".into(),
            display_name: "Alex Adams".into(),
            ..SeedUser::default()
        }],
        domains: vec![SeedDomain {
            name: "contoso.com".into(),
            verified: true,
        }],
        devices: vec![SeedDevice {
            user: "alex@contoso.onmicrosoft.com".into(),
            device_id: "APPLEA1".into(),
            model: "iPhone15,2".into(),
            device_type: "iPhone".into(),
            os: "iOS 17.1".into(),
            friendly_name: Some("Alex's iPhone".into()),
            pending_discovery: false,
        }],
        ..Seed::default()
    };
    cfg
}

/// The integration a dashboard would open: one JSON configuration.
async fn open(dns: &Bind) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::graph::self_signed_rsa(dir.path(), "ops-test");
    let emu = Emulator::start(emulator_config(std::fs::read_to_string(&cert).unwrap()))
        .await
        .unwrap();
    admin(
        &emu,
        "PUT",
        "/dns",
        Some(json!({"server": dns.addr.to_string()})),
    )
    .await;
    let key_file = dir.path().join("tsig.key");
    crate::fixtures::write_private(
        &key_file,
        format!("key \"o365-update\" {{ algorithm hmac-sha256; secret \"{TSIG_SECRET}\"; }};"),
    );
    let info = emu.info();
    let config = json!({
        "directory": "demo",
        "tenant": {
            "tenant_id": info.tenant_id,
            "client_id": info.client_id,
            "credential": {"kind": "certificate", "certificate_file": cert, "private_key_file": key},
            "login_url": info.login_url,
            "graph_url": info.graph_url,
            "exchange_url": info.exchange_url,
            "sharepoint_url": info.sharepoint_url
        },
        "store": dir.path().join("state.db"),
        "results_folder": dir.path(),
        "custom_domain": ZONE,
        "usage_location": "GB",
        "dns": {"server": dns.addr.to_string(), "tsig_key_file": key_file}
    });
    let config = IntegrationConfig::from_json(&config.to_string()).unwrap();
    Opened {
        integration: Integration::open(config).unwrap(),
        emu,
        _dir: dir,
        called: Mutex::new(BTreeSet::new()),
        calls: Mutex::new(Vec::new()),
    }
}

/// An online account with no local user, made straight through Graph (as an admin would
/// in the portal: the engine's own tenant port refuses to create accounts for no one).
async fn online_only(o: &Opened, nick: &str, name: &str) -> o365_essentials::model::OnlineAccount {
    use o365_essentials::ports::Tenant as _;
    o365_essentials::graph::GraphTenant::new(crate::graph::config_for(&o.emu))
        .unwrap()
        .create_account(
            &o365_essentials::model::NewOnlineAccount {
                user_principal_name: format!("{nick}@contoso.onmicrosoft.com"),
                display_name: name.into(),
                mail_nickname: nick.into(),
                account_enabled: true,
                ..Default::default()
            },
            &o365_essentials::SecretString::from("Online-Only-2027!"),
        )
        .await
        .unwrap()
}

/// A local user made straight in a directory.
async fn local_user(
    dir: &dyn Directory,
    sam: &str,
    domain: &str,
    name: &str,
) -> o365_essentials::model::LocalUser {
    dir.create_user(
        &o365_essentials::model::NewLocalUser {
            sam_account_name: sam.into(),
            user_principal_name: format!("{sam}@{domain}"),
            display_name: name.into(),
            ..Default::default()
        },
        &o365_essentials::SecretString::from("Zebra-Sync-2026!"),
    )
    .await
    .unwrap()
}

/// The demo company integrated with a fresh emulator (accounts only), on a new store.
async fn integrated_demo() -> (Emulator, tempfile::TempDir, Integration) {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap());
    let integration = Integration::new(
        Arc::new(o365_essentials::memory::MemoryDirectory::demo_company().unwrap()),
        Arc::new(crate::graph::tenant_for(&emu)),
        store,
    );
    integration.integrate().await.unwrap();
    (emu, tmp, integration)
}

#[tokio::test]
async fn every_operation_of_the_table_runs_through_the_dispatcher() {
    let dns = Bind::start_with_key(ZONE, &[], Some(("o365-update", TSIG_SECRET)));
    let o = open(&dns).await;

    // Requirements reach Graph, the Exchange admin API and SharePoint.
    let report = o.ok("requirements", json!({})).await;
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in [
        "tenant_reachable",
        "graph_administrators",
        "exchange_admin_api",
        "sharepoint",
        "custom_domain",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["id"] != "single_domain_controller" && c["id"] != "running_on_dc")
            .filter(|c| c["id"] != "password_key_location" && c["id"] != "credential_expiry")
            .all(|c| c["status"] == "pass"),
        "{report:#}"
    );
    // The key is beside the store here (no `password_key` in the configuration): said.
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "password_key_location" && c["status"] == "warn"),
        "{report:#}"
    );
    // The test's certificate lasts two days: its expiry is warned about.
    let expiry = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "credential_expiry")
        .unwrap();
    assert_eq!(expiry["status"], "warn", "{expiry}");
    assert_eq!(
        o.call("status", json!({})).await.unwrap_err().code(),
        ErrorCode::NotIntegrated
    );
    let status = o.ok("integrate", Value::Null).await;
    assert_eq!(status["enabled"], true);
    assert_eq!(status["password_sync"], "ready");
    assert_eq!(
        o.ok("status", json!({})).await["tenant_id"],
        status["tenant_id"]
    );

    // Accounts: preview, plan, apply, retry.
    let preview = o.ok("match_preview", json!({})).await;
    assert!(preview.is_object());
    let skus = o.ok("licences", json!({})).await;
    let sku = skus[0]["sku_id"].clone();
    let plan = o
        .ok("plan_bulk_create", json!({"licences": [{"sku_id": sku}]}))
        .await;
    let items = plan["items"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    assert!(items.iter().all(|i| i["reason"] == "no_online_account"));
    assert!(items.iter().all(|i| {
        i["user_principal_name"]
            .as_str()
            .unwrap()
            .ends_with("@contoso.onmicrosoft.com")
    }));
    let results = o.ok("apply_plan", json!({"plan": plan})).await;
    assert_eq!(
        results["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["outcome"] == "succeeded")
            .count(),
        12
    );
    // The result counts the items and names its results files: no caller rebuilds them.
    assert_eq!(results["counts"]["succeeded"], 12, "{results:#}");
    assert_eq!(results["counts"]["failed"], 0, "{results:#}");
    let results_file = std::path::PathBuf::from(results["results_file"].as_str().unwrap());
    assert_eq!(results_file.parent(), Some(o._dir.path()));
    assert!(results_file.exists(), "the run wrote its results file");
    assert!(
        std::path::Path::new(results["results_csv"].as_str().unwrap()).exists(),
        "{results:#}"
    );
    let retry = o
        .ok("plan_retry", json!({"results_file": results_file}))
        .await;
    assert!(
        retry["items"].as_array().unwrap().is_empty(),
        "nothing failed, nothing to retry"
    );

    let demo = o.integration.demo_directory().unwrap().clone();
    let links = o.ok("list_links", json!({})).await;
    assert_eq!(links.as_array().map(Vec::len), Some(12));
    let ava_link = o.ok("list_links", json!({"local_user": "AVA.ADAMS"})).await;
    assert_eq!(ava_link[0]["local_user"], "ava.adams");
    assert_eq!(
        ava_link[0]["user_principal_name"],
        "ava.adams@contoso.onmicrosoft.com"
    );
    assert_eq!(
        o.ok("list_links", json!({"local_user": "nobody"})).await,
        json!([])
    );

    let ava = demo.find_user("ava.adams").await.unwrap().unwrap();
    let ben = demo.find_user("ben.brooks").await.unwrap().unwrap();
    let names = o
        .ok(
            "online_user_names",
            json!({"local_guids": [ava.guid, ben.guid]}),
        )
        .await;
    assert_eq!(
        names,
        json!([
            "ava.adams@contoso.onmicrosoft.com",
            "ben.brooks@contoso.onmicrosoft.com"
        ])
    );
    let unassigned = o.ok("unassign", json!({"local_guid": ben.guid})).await;
    assert_eq!(unassigned["state"], "unassigned");
    let created = o
        .ok(
            "create_user_with_account",
            json!({
                "user": {"sam_account_name": "nora.nash", "user_principal_name": "nora.nash@contoso.local",
                         "given_name": "Nora", "surname": "Nash", "display_name": "Nora Nash"},
                "password": "Winter-Harbour-2027!",
                "domain": "contoso.onmicrosoft.com"
            }),
        )
        .await;
    assert_eq!(
        created["online"]["user_principal_name"],
        "nora.nash@contoso.onmicrosoft.com"
    );
    let imported = o
        .ok("import_users", json!({"online_ids": [o.integration.microsoft365().tenant.account("alex@contoso.onmicrosoft.com").await.unwrap().id]}))
        .await;
    assert_eq!(imported["imported"].as_array().unwrap().len(), 1);
    assert!(
        imported["imported"][0]["initial_password"]
            .as_str()
            .unwrap()
            .len()
            >= 16
    );
    let alex_local = imported["imported"][0]["local"]["guid"].clone();
    // Assign needs an unlinked pair: unlink alex by hand through unassign + a fresh user.
    let fresh = online_only(&o, "spare", "Spare").await;
    let liam = demo.find_user("liam.lopez").await.unwrap().unwrap();
    let e = o
        .call(
            "assign",
            json!({"local_guid": liam.guid, "online_id": fresh.id}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict, "liam is linked already: {e}");
    let nobody = local_user(&*demo, "omar.ortiz", "contoso.local", "Omar Ortiz").await;
    let link = o
        .ok(
            "assign",
            json!({"local_guid": nobody.guid, "online_id": fresh.id}),
        )
        .await;
    assert_eq!(link["origin"], "manual");
    let _ = alex_local;

    // Sync: a preview that writes nothing, then the run.
    demo.set_enabled(ava.guid, false).await.unwrap();
    let writes_before = admin(&o.emu, "GET", "/stats", None).await;
    let sync_plan = o.ok("plan_sync", json!({})).await;
    let writes_after = admin(&o.emu, "GET", "/stats", None).await;
    assert_eq!(
        writes_before["writes"], writes_after["writes"],
        "a sync preview writes nothing"
    );
    assert!(
        sync_plan["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["action"] == "disable" && i["reason"] == "disabled_locally"),
        "{sync_plan:#}"
    );
    // The preview moved no cursor: the same changes are planned again, then applied.
    let again = o.ok("plan_sync", json!({})).await;
    assert_eq!(again["items"], sync_plan["items"]);
    let applied = o.ok("apply_sync_plan", json!({"plan": again})).await;
    assert!(
        applied["results"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["action"] == "disable" && i["outcome"] == "succeeded"),
        "{applied:#}"
    );
    // That plan has been applied: applying the first preview now is refused as stale.
    let e = o
        .call("apply_sync_plan", json!({"plan": sync_plan}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PlanStale, "{e}");
    assert_eq!(
        o.ok(
            "password_changed",
            json!({"local_guid": ben.guid, "password": "Autumn-Leaves-2027!"})
        )
        .await,
        json!(true)
    );
    // The Samba hook's operation: the same password version twice is queued once; a
    // deleted account and one without a password send nothing.
    let ldif = format!(
        "objectGUID: {}\nmsDS-KeyVersionNumber: 4\nvirtualClearTextUTF8:: U3ByaW5nLVJhaW4tMjAyOCE=\n",
        ben.guid
    );
    let first = o.ok("capture_password", json!({ "ldif": ldif })).await;
    assert_eq!(first["outcome"], "queued", "{first}");
    let again = o.ok("capture_password", json!({ "ldif": ldif })).await;
    assert_eq!(again["outcome"], "repeated", "{again}");
    let gone = format!("objectGUID: {}\nisDeleted: TRUE\n", ben.guid);
    let gone = o.ok("capture_password", json!({ "ldif": gone })).await;
    assert_eq!(gone["outcome"], "deleted");
    let e = o
        .call("capture_password", json!({"ldif": "sAMAccountName: ben\n"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
    let chloe = demo.find_user("chloe.carter").await.unwrap().unwrap();
    demo.set_enabled(chloe.guid, false).await.unwrap();
    let report = o
        .ok("sync_once", json!({"allow_beyond_threshold": false}))
        .await;
    assert!(
        report["results"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["action"] == "disable" && i["outcome"] == "succeeded")
    );
    assert_eq!(report["passwords"]["state"], "ready");
    let delivery = o.ok("deliver_passwords", json!({})).await;
    assert_eq!(delivery["pending"], 0);
    assert!(o.ok("password_problems", json!({})).await.is_array());

    // Exchange: groups, device policy, rules, devices, wipe.
    let group = o
        .ok(
            "create_distribution_group",
            json!({"name": "Sales", "alias": "sales", "primary_smtp_address": "sales@contoso.com",
                   "members": ["ava.adams@contoso.onmicrosoft.com"]}),
        )
        .await;
    assert_eq!(group["primary_smtp_address"], "sales@contoso.com");
    o.ok(
        "add_group_members",
        json!({"group": "sales", "members": ["liam.lopez@contoso.onmicrosoft.com"]}),
    )
    .await;
    o.ok(
        "remove_group_members",
        json!({"group": "sales", "members": ["ava.adams@contoso.onmicrosoft.com"]}),
    )
    .await;
    o.ok(
        "replace_group_members",
        json!({"group": "sales", "members": ["kira.kowalski@contoso.onmicrosoft.com"]}),
    )
    .await;
    let updated = o
        .ok(
            "update_distribution_group",
            json!({"group": "sales", "update": {"display_name": "Sales team"}}),
        )
        .await;
    assert_eq!(updated["display_name"], "Sales team");
    let groups = o.ok("list_distribution_groups", json!({})).await;
    assert_eq!(groups[0]["members"].as_array().map(Vec::len), Some(1));
    // Members go in as user names and come back as addresses and as user names.
    assert_eq!(
        groups[0]["member_user_names"],
        json!(["kira.kowalski@contoso.onmicrosoft.com"])
    );
    o.ok("delete_distribution_group", json!({"group": "sales"}))
        .await;
    o.ok(
        "set_device_policy",
        json!({"password_enabled": true, "min_password_length": 6,
        "max_password_failed_attempts": {"value": 10}, "max_inactivity_lock_minutes": {"value": 15},
        "alphanumeric_password_required": false}),
    )
    .await;
    assert_eq!(
        o.ok("get_device_policy", json!({})).await["min_password_length"],
        6
    );
    o.ok("set_default_access_level", json!({"level": "quarantine"}))
        .await;
    assert_eq!(
        o.ok("get_default_access_level", json!({})).await,
        json!("quarantine")
    );
    let rule = o.ok("add_access_rule", json!({"access_level": "block", "characteristic": "DeviceModel", "query_string": "Nokia 3310"})).await;
    assert_eq!(
        o.ok("list_access_rules", json!({}))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    o.ok("remove_access_rule", json!({"id": rule["id"]})).await;
    let devices = o
        .ok(
            "list_devices",
            json!({"user_principal_name": "alex@contoso.onmicrosoft.com"}),
        )
        .await;
    let device = devices[0]["id"].as_str().unwrap().to_string();
    o.ok(
        "set_device_access",
        json!({"device_id": device, "allow": true}),
    )
    .await;
    let e = o
        .call(
            "wipe_device",
            json!({"device_id": device, "kind": "full", "confirm": "another"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::InvalidInput,
        "the device id typed again must match"
    );
    o.ok(
        "wipe_device",
        json!({"device_id": device, "kind": "account_only", "confirm": device}),
    )
    .await;
    assert_eq!(
        o.ok("wipe_status", json!({"device_id": device})).await,
        json!("pending")
    );
    o.ok("cancel_wipe", json!({"device_id": device})).await;

    // The domain: records, zone fragment, the flow with automatic records, checks.
    assert_eq!(o.ok("domain_stage", json!({})).await, json!("new"));
    let progress = o.ok("link_domain", json!({})).await;
    assert_eq!(progress["stage"], "done", "{progress:#}");
    // The status shows the domain verified since integrating.
    let verified = o.ok("status", json!({})).await["verified_domains"].clone();
    assert!(
        verified.as_array().unwrap().iter().any(|d| d == ZONE),
        "{verified}"
    );
    assert_eq!(o.ok("domain_stage", json!({})).await, json!("done"));
    let fragment = o.ok("zone_fragment", json!({})).await;
    assert!(
        fragment["text"].as_str().unwrap().contains("MX"),
        "{fragment:#}"
    );
    let file = o.ok("write_records_file", json!({})).await;
    assert!(std::path::Path::new(file["path"].as_str().unwrap()).exists());
    let checks = o.ok("check_records", json!({})).await;
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "present"),
        "{checks:#}"
    );
    let applied = o.ok("apply_records", json!({})).await;
    assert!(
        applied["added"].as_array().is_none_or(|a| a.is_empty()),
        "everything was published already: {applied:#}"
    );
    let health = o.ok("health_report", json!({})).await;
    // The verification records are gone from the zone once the domain is verified.
    assert!(
        !health.to_string().contains("msv1.invalid"),
        "the verification MX was left behind: {health:#}"
    );
    assert!(
        health["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "mx"),
        "{health:#}"
    );

    // SharePoint: libraries and site access.
    let library = o
        .ok(
            "create_library",
            json!({"name": "Contracts", "description": "Signed"}),
        )
        .await;
    assert!(
        o.ok("list_libraries", json!({}))
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "Contracts")
    );
    o.ok("delete_library", json!({"id": library["id"]})).await;
    o.ok(
        "grant_site_access",
        json!({"user_principal_name": "ava.adams@contoso.onmicrosoft.com", "role": "member"}),
    )
    .await;
    let site_groups = o.ok("list_site_groups", json!({})).await;
    assert!(
        site_groups
            .to_string()
            .contains("ava.adams@contoso.onmicrosoft.com")
    );
    assert_eq!(
        o.ok(
            "revoke_site_access",
            json!({"user_principal_name": "ava.adams@contoso.onmicrosoft.com", "role": "member"})
        )
        .await,
        json!("revoked")
    );
    let pad = o.ok("launchpad", json!({})).await;
    assert!(pad["team_site"].as_str().unwrap().starts_with("https://"));

    // setup and teardown sign an administrator in with a device code; Alex holds no
    // directory role, so both stop with the role named and nothing changed.
    for name in ["setup", "teardown"] {
        let approver = tokio::spawn(approve_device_code(
            o.emu.info().admin_url.clone(),
            "alex@contoso.onmicrosoft.com",
        ));
        let e = o
            .call(name, json!({"server_name": "ops", "dry_run": true}))
            .await
            .unwrap_err();
        approver.await.unwrap();
        assert_eq!(e.code(), ErrorCode::AdminRoleMissing, "{name}: {e}");
        assert!(e.message().contains("Privileged Role Administrator"), "{e}");
    }
    // Rolling the certificate needs a registration setup made.
    let e = o.call("roll_credential", json!({})).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotSupported, "{e}");

    // Credentials, disable, enable.
    let e = o
        .call(
            "change_credentials",
            json!({"credential": {"kind": "secret", "secret": "wrong-secret"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Auth);
    assert!(!e.to_string().contains("wrong-secret"));
    let cert = o._dir.path().join("ops-test.pem");
    let key = o._dir.path().join("ops-test.key");
    o.ok("change_credentials", json!({"credential": {"kind": "certificate", "certificate_file": cert, "private_key_file": key}})).await;
    o.ok("disable", json!({})).await;
    let e = o.call("integrate", json!({})).await.unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::IntegrationDisabled,
        "integrate never re-enables silently"
    );
    let drift = o.ok("enable", json!({})).await;
    assert!(drift["missing"].as_array().unwrap().is_empty());

    let called = o.called.lock().unwrap().clone();
    let table: BTreeSet<String> = OPERATIONS.iter().map(|op| op.name.to_string()).collect();
    let missing: Vec<_> = table.difference(&called).collect();
    assert!(
        missing.is_empty(),
        "operations of the table this test does not call: {missing:?}"
    );

    // The gate, walked through the whole table: disabled, every call made above is made
    // again, and nothing in the tenant (accounts, Exchange, SharePoint, domains) or the
    // company's zone changes; each refused write says the integration is disabled.
    o.ok("disable", json!({})).await;
    let tenant_before = crate::graph::admin(&o.emu, "GET", "/state", None).await;
    let zone_before = dns.journal_len();
    let calls = o.calls.lock().unwrap().clone();
    let mut refused = BTreeSet::new();
    for (name, params) in calls {
        // setup and teardown act on the app registration after an administrator's
        // interactive sign-in (nobody approves one here), roll_credential on the app's own
        // key: none of them propagates anything of the directory.
        if matches!(
            name.as_str(),
            "enable" | "integrate" | "disable" | "setup" | "teardown" | "roll_credential"
        ) {
            continue;
        }
        if let Err(e) = o.integration.call(&name, params, &Control::none()).await
            && e.code() == ErrorCode::IntegrationDisabled
        {
            refused.insert(name);
        }
    }
    let mut tenant_after = crate::graph::admin(&o.emu, "GET", "/state", None).await;
    // Reads count requests and move nothing else.
    for v in [&mut tenant_after] {
        if let Some(m) = v.as_object_mut() {
            m.remove("stats");
        }
    }
    let mut before = tenant_before.clone();
    if let Some(m) = before.as_object_mut() {
        m.remove("stats");
    }
    assert_eq!(
        before, tenant_after,
        "a disabled integration wrote to the tenant"
    );
    assert_eq!(
        zone_before,
        dns.journal_len(),
        "a disabled integration updated the zone"
    );
    for w in [
        "apply_plan",
        "assign",
        "unassign",
        "create_user_with_account",
        "create_distribution_group",
        "add_group_members",
        "delete_distribution_group",
        "set_device_policy",
        "wipe_device",
        "create_library",
        "grant_site_access",
        "apply_records",
        "link_domain",
    ] {
        if table.contains(w) {
            assert!(
                refused.contains(w),
                "{w} was not refused while disabled: {refused:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_dispatcher_names_what_is_wrong_with_a_call() {
    let dns = Bind::start(ZONE, &[]);
    let o = open(&dns).await;
    let e = o.call("no_such_operation", json!({})).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownOperation);
    assert!(e.message().contains("no_such_operation"));
    let e = o
        .call("plan_bulk_create", json!({"domian": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownField);
    assert!(e.message().contains("domian"), "{e}");
    let e = o
        .call(
            "assign",
            json!({"local_guid": "not-a-guid", "online_id": "x"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.message().contains("local_guid"), "{e}");
    let e = o.call("status", json!([1, 2])).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    // From text, as the C ABI calls it: each fault its own code.
    let text = |name: &'static str, p: &'static str| {
        let i = &o.integration;
        async move { i.call_json(name, p, &Control::none()).await }
    };
    assert_eq!(
        text("licences", "{nope").await.unwrap_err().code(),
        ErrorCode::MalformedJson
    );
    assert_eq!(
        text("licences", "{} trailing").await.unwrap_err().code(),
        ErrorCode::MalformedJson
    );
    assert_eq!(
        text("plan_bulk_create", r#"{"domian": "x"}"#)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::UnknownField
    );
    assert_eq!(
        text("nothing_here", "{}").await.unwrap_err().code(),
        ErrorCode::UnknownOperation
    );
    let same = text("domain_stage", "").await.map_err(|e| e.code());
    let value = o
        .integration
        .call("domain_stage", Value::Null, &Control::none())
        .await
        .map(|v| v.to_string())
        .map_err(|e| e.code());
    assert_eq!(same, value, "text and value calls agree");
    // Secrets in bad parameters never come back in the error.
    let e = o
        .call(
            "password_changed",
            json!({"local_guid": "x", "password": "Do-Not-Echo-2027!"}),
        )
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("Do-Not-Echo"), "{e}");
}

/// What the Everywhere fixes promise every door, through the one table: users named the
/// way callers know them, numbers where a field means a number, partial policy updates,
/// type mismatches as `invalid_input` naming the field.
#[tokio::test]
async fn the_table_takes_names_numbers_and_partial_updates_as_callers_write_them() {
    let dns = Bind::start(ZONE, &[]);
    let o = open(&dns).await;
    o.ok("integrate", Value::Null).await;
    let demo = o.integration.demo_directory().unwrap().clone();
    let ben = demo.find_user("ben.brooks").await.unwrap().unwrap();
    let cy = demo.find_user("chloe.carter").await.unwrap().unwrap();
    // A sAMAccountName (any case), a UPN and a GUID name three users.
    let plan = o
        .ok(
            "plan_bulk_create",
            json!({"users": ["AVA.ADAMS", ben.user_principal_name.clone().unwrap(), cy.guid]}),
        )
        .await;
    let mut planned: Vec<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["local"]["sam_account_name"].as_str().unwrap())
        .collect();
    planned.sort_unstable();
    assert_eq!(
        planned,
        ["ava.adams", "ben.brooks", "chloe.carter"],
        "{plan:#}"
    );
    // Choices name their user the same ways.
    let plan = o
        .ok(
            "plan_bulk_create",
            json!({"users": ["ava.adams"], "choices": [{"user": "ava.adams",
                "user_principal_name": "ava@contoso.onmicrosoft.com"}]}),
        )
        .await;
    assert_eq!(
        plan["items"][0]["user_principal_name"], "ava@contoso.onmicrosoft.com",
        "{plan:#}"
    );
    // An unknown name is refused, named.
    let e = o
        .call(
            "plan_bulk_create",
            json!({"users": ["ava.adams", "no.such.person"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.message().contains("no.such.person"), "{e}");
    let results = o.ok("apply_plan", json!({"plan": plan})).await;
    assert_eq!(results["counts"]["succeeded"], 1, "{results:#}");
    assert!(std::path::Path::new(results["results_file"].as_str().unwrap()).exists());

    // A partial policy update with a plain number: the other fields keep their value.
    let before = o.ok("get_device_policy", json!({})).await;
    o.ok(
        "set_device_policy",
        json!({"max_password_failed_attempts": 8}),
    )
    .await;
    let after = o.ok("get_device_policy", json!({})).await;
    assert_eq!(after["max_password_failed_attempts"], json!({"value": 8}));
    for keep in [
        "password_enabled",
        "min_password_length",
        "max_inactivity_lock_minutes",
        "alphanumeric_password_required",
    ] {
        assert_eq!(after[keep], before[keep], "{keep} changed: {after:#}");
    }
    o.ok(
        "set_device_policy",
        json!({"max_inactivity_lock_minutes": {"value": 15}, "max_password_failed_attempts": "unlimited"}),
    )
    .await;
    let after = o.ok("get_device_policy", json!({})).await;
    assert_eq!(after["max_inactivity_lock_minutes"], json!({"value": 15}));
    assert_eq!(after["max_password_failed_attempts"], "unlimited");
    assert_eq!(
        o.call("set_device_policy", json!({}))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    // Mismatched types, from text as the C ABI sends them: `invalid_input` naming the
    // field, not `malformed_json`.
    for (op, params, field) in [
        (
            "set_device_policy",
            r#"{"max_password_failed_attempts": "eight"}"#,
            "max_password_failed_attempts",
        ),
        ("set_default_access_level", r#"{"level": 5}"#, "level"),
        (
            "wipe_device",
            r#"{"device_id": "d", "kind": 1, "confirm": "d"}"#,
            "kind",
        ),
    ] {
        let e = o
            .integration
            .call_json(op, params, &Control::none())
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{op}: {e}");
        assert!(e.message().contains(field), "{op}: {e}");
    }
}

/// A bulk create of 300 accounts cancelled at about half: what was started is finished
/// and recorded, the rest is `cancelled`, the results are saved; a rerun creates exactly
/// the rest.
#[tokio::test]
async fn a_cancelled_bulk_create_keeps_what_was_done_and_a_rerun_finishes_exactly() {
    use o365_essentials::memory::MemoryDirectory;
    use o365_essentials::model::{NewLocalUser, Outcome, RunResults};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = Arc::new(MemoryDirectory::new("essentials.test").unwrap());
    for i in 0..300 {
        dir.create_user(
            &NewLocalUser {
                sam_account_name: format!("user{i:03}"),
                user_principal_name: format!("user{i:03}@essentials.test"),
                display_name: format!("Person {i:03}"),
                ..Default::default()
            },
            &o365_essentials::SecretString::from("Quiet-Harbour-Wide!"),
        )
        .await
        .unwrap();
    }
    let store = Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap());
    let integration = Integration::new(dir, Arc::new(crate::graph::tenant_for(&emu)), store);
    integration.integrate().await.unwrap();
    let plan = integration
        .accounts()
        .plan_bulk_create(
            &integration.accounts().snapshot().await.unwrap(),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(plan.items.len(), 300);
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let ctl = Control::with_observer(
        cancel.clone(),
        Arc::new(move |e: &Event| {
            if let Event::ItemFinished { seq: 150, .. } = e {
                c2.cancel(); // from the event thread, not the engine's
            }
        }),
    )
    .unwrap();
    let e = integration.accounts().apply(&plan, &ctl).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Cancelled);
    let partial: RunResults = serde_json::from_value(e.partial().unwrap().clone()).unwrap();
    assert_eq!(partial.items.len(), 300, "every item is reported");
    let done = partial.count(Outcome::Succeeded);
    let cancelled = partial.count(Outcome::Cancelled);
    assert_eq!(done + cancelled, 300, "nothing half-done or failed");
    assert!(
        (150..300).contains(&done),
        "stopped soon after half: {done}"
    );
    // Cancellation falls between items: results stay in plan order.
    assert!(
        partial.items[..done]
            .iter()
            .all(|i| i.outcome == Outcome::Succeeded)
    );
    let state = admin(&emu, "GET", "/state", None).await;
    assert_eq!(
        state["users"].as_array().unwrap().len(),
        done + 1,
        "+ the admin"
    );

    let rerun = integration
        .accounts()
        .plan_bulk_create(
            &integration.accounts().snapshot().await.unwrap(),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(rerun.items.len(), cancelled);
    let r = integration
        .accounts()
        .apply(&rerun, &Control::none())
        .await
        .unwrap();
    assert_eq!(r.count(Outcome::Succeeded), cancelled);
    let state = admin(&emu, "GET", "/state", None).await;
    let users = state["users"].as_array().unwrap();
    assert_eq!(users.len(), 301, "exactly 300 accounts + the admin");
    let mut upns: Vec<&str> = users
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    upns.sort_unstable();
    upns.dedup();
    assert_eq!(upns.len(), 301, "no duplicates");
}

/// An observer that does not return until the run is over cannot hold the run up: the
/// engine never waits for it (it would never finish otherwise), and once released the
/// observer still gets every item event, in order.
#[tokio::test]
async fn a_blocked_observer_does_not_hold_up_the_engine() {
    let (_emu, _tmp, integration) = integrated_demo().await;
    let plan = integration
        .accounts()
        .plan_bulk_create(
            &integration.accounts().snapshot().await.unwrap(),
            &Default::default(),
        )
        .unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let ctl = Control::with_observer(
        CancelToken::new(),
        Arc::new(move |e: &Event| {
            if let Some(g) = gate.lock().unwrap().take() {
                let _ = g.recv(); // blocks the first event until the run returned
            }
            s2.lock().unwrap().push(e.clone());
        }),
    )
    .unwrap();
    let r = integration.accounts().apply(&plan, &ctl).await.unwrap();
    assert_eq!(
        r.items.len(),
        12,
        "the run finished while its observer was blocked"
    );
    assert!(seen.lock().unwrap().is_empty());
    release.send(()).unwrap();
    drop(ctl); // delivers what is queued
    let seen = seen.lock().unwrap();
    let items: Vec<u32> = seen
        .iter()
        .filter_map(|e| match e {
            Event::ItemFinished { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(items, (1..=12).collect::<Vec<_>>());
    assert!(matches!(seen.last(), Some(Event::RunFinished { .. })));
}

/// A domain verified after integrating can be used for the next bulk create: the plan
/// reads the verified domains, not the ones recorded at `integrate`.
#[tokio::test]
async fn a_domain_verified_after_integrating_is_used_by_the_next_plan() {
    let (emu, _tmp, integration) = integrated_demo().await;
    let request = o365_essentials::engine::BulkCreateRequest {
        domain: "fabrikam.com".into(),
        ..Default::default()
    };
    let e = integration
        .accounts()
        .plan_bulk_create(&integration.accounts().snapshot().await.unwrap(), &request)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::DomainNotVerified);
    admin(&emu, "POST", "/seed", Some(json!({"users": [], "skus": [], "devices": [], "domains": [{"name": "fabrikam.com", "verified": true}]}))).await;
    let plan = integration
        .accounts()
        .plan_bulk_create(&integration.accounts().snapshot().await.unwrap(), &request)
        .unwrap();
    assert!(matches!(&plan.items[0].action,
        o365_essentials::model::PlanAction::CreateAccount { user_principal_name, .. } if user_principal_name.ends_with("@fabrikam.com")));
}

/// A store integrated with one tenant refuses another tenant's credentials at
/// `integrate`, instead of mixing two tenants' links in one store.
#[tokio::test]
async fn integrate_refuses_a_store_of_another_tenant() {
    use o365_essentials::memory::MemoryDirectory;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.db");
    let first = Emulator::start(EmulatorConfig::default()).await.unwrap();
    {
        let store = Arc::new(o365_essentials::store::Store::open(&path).unwrap());
        let i = Integration::new(
            Arc::new(MemoryDirectory::demo_company().unwrap()),
            Arc::new(crate::graph::tenant_for(&first)),
            store,
        );
        i.integrate().await.unwrap();
    }
    let mut other = EmulatorConfig::default();
    other.tenant.id = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d".into();
    let second = Emulator::start(other).await.unwrap();
    let store = Arc::new(o365_essentials::store::Store::open(&path).unwrap());
    let i = Integration::new(
        Arc::new(MemoryDirectory::demo_company().unwrap()),
        Arc::new(crate::graph::tenant_for(&second)),
        store,
    );
    let e = i.integrate().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.message().contains("belongs to tenant"), "{e}");
    // The store still names the first tenant.
    assert_eq!(i.status().unwrap().tenant_id, first.info().tenant_id);
}

/// The operations that touch the local directory, through the dispatcher, on Samba as an
/// AD domain controller: requirements (topology), plan and apply a bulk create for chosen
/// users, a user created with its account, an import, assign / unassign, online user names,
/// a sync preview and run, a password change queued and delivered.
#[tokio::test]
async fn the_directory_operations_run_through_the_dispatcher_on_samba() {
    use o365_essentials::config::{DirectoryConfig, IntegrationConfig};
    use o365_essentials::model::NewLocalUser;
    let samba = crate::samba::shared();
    let dir = o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap();
    let mut chosen = Vec::new();
    for name in ["disp.ana", "disp.bo"] {
        let u = dir
            .create_user(
                &NewLocalUser {
                    sam_account_name: name.into(),
                    user_principal_name: format!("{name}@essentials.test"),
                    display_name: format!("Dispatch {name}"),
                    ..Default::default()
                },
                &o365_essentials::SecretString::from("Zebra-Sync-2026!"),
            )
            .await
            .unwrap();
        chosen.push(u.guid);
    }
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = IntegrationConfig {
        directory: DirectoryConfig::Ldap(samba.config()),
        tenant: crate::graph::config_for(&emu),
        store: tmp.path().join("state.db"),
        password_key: None,
        results_folder: Some(tmp.path().to_path_buf()),
        custom_domain: None,
        usage_location: Some("GB".into()),
        default_licences: vec![],
        sync: Default::default(),
        dns: None,
        concurrency: 8,
        password_capture: None,
        exclude_users: Vec::new(),
        allow_protected: Vec::new(),
    };
    let o = Opened {
        integration: Integration::open(config).unwrap(),
        emu,
        _dir: tmp,
        called: Mutex::new(BTreeSet::new()),
        calls: Mutex::new(Vec::new()),
    };
    let report = o.ok("requirements", json!({})).await;
    let dc = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "single_domain_controller")
        .cloned()
        .unwrap();
    assert_eq!(dc["status"], "pass", "{dc:#}");
    o.ok("integrate", json!({})).await;
    let plan = o.ok("plan_bulk_create", json!({"users": chosen})).await;
    assert_eq!(plan["items"].as_array().unwrap().len(), 2, "{plan:#}");
    let results = o.ok("apply_plan", json!({"plan": plan})).await;
    assert!(
        results["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["outcome"] == "succeeded"),
        "{results:#}"
    );
    let names = o
        .ok("online_user_names", json!({"local_guids": chosen}))
        .await;
    assert_eq!(
        names,
        json!([
            "disp.ana@contoso.onmicrosoft.com",
            "disp.bo@contoso.onmicrosoft.com"
        ])
    );

    let created = o
        .ok(
            "create_user_with_account",
            json!({"user": {"sam_account_name": "disp.cy", "user_principal_name": "disp.cy@essentials.test",
                            "display_name": "Dispatch Cy"},
                   "password": "Harbour-Lights-2027!"}),
        )
        .await;
    assert_eq!(
        created["online"]["user_principal_name"],
        "disp.cy@contoso.onmicrosoft.com"
    );
    let cy = dir
        .find_user("disp.cy")
        .await
        .unwrap()
        .expect("made in Samba");
    assert_eq!(
        cy.guid.to_string(),
        created["local"]["guid"].as_str().unwrap()
    );

    // An online account with no local user: imported into Samba.
    let online = online_only(&o, "disp.dee", "Dispatch Dee").await;
    let imported = o
        .ok("import_users", json!({"online_ids": [online.id]}))
        .await;
    let dee = dir
        .find_user("disp.dee")
        .await
        .unwrap()
        .expect("imported into Samba");
    assert_eq!(
        imported["imported"][0]["local"]["guid"].as_str().unwrap(),
        dee.guid.to_string()
    );

    let unassigned = o.ok("unassign", json!({"local_guid": chosen[1]})).await;
    assert_eq!(unassigned["state"], "unassigned");
    let eve = local_user(&dir, "disp.eve", "essentials.test", "Dispatch Eve").await;
    let spare = online_only(&o, "disp.spare", "Spare").await;
    let link = o
        .ok(
            "assign",
            json!({"local_guid": eve.guid, "online_id": spare.id}),
        )
        .await;
    assert_eq!(link["local_guid"].as_str().unwrap(), eve.guid.to_string());

    // A sync: the first run reads Samba whole; then a disable in Samba is previewed and run.
    o.ok("sync_once", json!({})).await;
    dir.set_enabled(chosen[0], false).await.unwrap();
    let preview = o.ok("plan_sync", json!({})).await;
    assert!(
        preview["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["action"] == "disable" && i["local_user"] == "disp.ana"),
        "{preview:#}"
    );
    let report = o.ok("sync_once", json!({})).await;
    assert!(
        report["results"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["action"] == "disable" && i["outcome"] == "succeeded"),
        "{report:#}"
    );
    assert_eq!(
        o.ok(
            "password_changed",
            json!({"local_guid": cy.guid, "password": "Harbour-Lights-2028!"})
        )
        .await,
        json!(true)
    );
    assert_eq!(o.ok("deliver_passwords", json!({})).await["delivered"], 1);
}

/// The requirements check calls every endpoint the integration uses and names the
/// permission or role that is missing for each.
#[tokio::test]
async fn the_requirements_check_names_each_missing_permission() {
    use o365_essentials::engine::Microsoft365;
    use o365_essentials::memory::MemoryDirectory;
    use o365_essentials::model::CheckStatus;
    let mut cfg = EmulatorConfig::default();
    cfg.apps[0]
        .permissions
        .retain(|p| p != "Exchange.ManageAsApp" && p != "Sites.FullControl.All");
    let emu = Emulator::start(cfg).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let integration = Integration::with_services(
        Arc::new(MemoryDirectory::demo_company().unwrap()),
        Microsoft365::from_config(crate::graph::config_for(&emu)).unwrap(),
        Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap()),
    );
    let report = integration.requirements(None).await;
    let find = |id: &str| report.checks.iter().find(|c| c.id == id).unwrap().clone();
    let exo = find("exchange_admin_api");
    assert_eq!(exo.status, CheckStatus::Warn, "{exo:?}");
    assert!(
        exo.detail.contains("Exchange.ManageAsApp") || exo.remedy.contains("Exchange.ManageAsApp"),
        "{exo:?}"
    );
    let spo = find("sharepoint");
    assert_eq!(spo.status, CheckStatus::Warn, "{spo:?}");
    assert!(spo.remedy.contains("Sites.FullControl.All"), "{spo:?}");
    // Graph itself is fine, so integrating is possible; the features wait for the grants.
    assert_eq!(find("tenant_reachable").status, CheckStatus::Pass);
    assert!(report.can_integrate());
}

/// A front door's program that runs steps (`operation TAB params TAB code TAB holds`)
/// on an integration opened from a JSON configuration file.
pub(crate) enum StepsRunner {
    /// `o365-essentials-ffi/tests/c/steps.c` against the C ABI's shared library.
    C,
    /// `o365-essentials-py/tests/steps.py` with the installed Python package.
    Python,
}

/// The directory operations from C on Samba: `o365-essentials-ffi/tests/c/steps.c`,
/// compiled against the C ABI's shared library, runs them one after the other through
/// `o365_call` on an integration opened from JSON with the Samba DC as its directory;
/// then Samba and the emulator are checked for what they did.
#[tokio::test]
async fn the_directory_operations_run_from_c_on_samba() {
    directory_steps_on_samba("cabi", StepsRunner::C).await;
}

/// The same steps from Python (the wheel installed into `build/venv` by `scripts/test`):
/// each operation through its typed method, the result written back as JSON.
#[tokio::test]
async fn the_directory_operations_run_from_python_on_samba() {
    directory_steps_on_samba("pyth", StepsRunner::Python).await;
}

async fn directory_steps_on_samba(prefix: &str, runner: StepsRunner) {
    use o365_essentials::model::NewLocalUser;
    use o365_essentials::ports::Tenant;
    let samba = crate::samba::shared();
    let dir = o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap();
    let mut chosen = Vec::new();
    for name in [format!("{prefix}.ann"), format!("{prefix}.bo")] {
        let u = dir
            .create_user(
                &NewLocalUser {
                    sam_account_name: name.clone(),
                    user_principal_name: format!("{name}@essentials.test"),
                    display_name: format!("Abi {name}"),
                    ..Default::default()
                },
                &o365_essentials::SecretString::from("Zebra-Sync-2026!"),
            )
            .await
            .unwrap();
        chosen.push(u.guid.to_string());
    }
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tenant = crate::graph::tenant_for(&emu);
    let dee = tenant
        .create_account(
            &o365_essentials::model::NewOnlineAccount {
                user_principal_name: format!("{prefix}.dee@contoso.onmicrosoft.com"),
                display_name: format!("Abi Dee {prefix}"),
                mail_nickname: format!("{prefix}.dee"),
                account_enabled: true,
                ..Default::default()
            },
            &o365_essentials::SecretString::from("Online-Only-2027!"),
        )
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let config = crate::fixtures::merged(
        crate::fixtures::config(samba, emu.info(), tmp.path()),
        json!({"concurrency": 8}),
    );
    let config_file = crate::fixtures::write(tmp.path(), "config.json", &config);
    // The C program finds the password of a user it made in the previous step's result.
    let steps = [
        (
            "requirements",
            "{}".to_string(),
            "ok",
            "single_domain_controller",
        ),
        ("integrate", "{}".into(), "ok", "\"enabled\":true"),
        (
            "plan_bulk_create",
            json!({"users": chosen}).to_string(),
            "ok",
            &format!("{prefix}.ann@contoso.onmicrosoft.com"),
        ),
        ("apply_plan", "{\"plan\": $prev}".into(), "ok", "succeeded"),
        (
            "create_user_with_account",
            json!({"user": {"sam_account_name": format!("{prefix}.cy"),
                            "user_principal_name": format!("{prefix}.cy@essentials.test"),
                            "display_name": format!("Abi Cy {prefix}")}, "password": "Harbour-Lights-2027!"})
            .to_string(),
            "ok",
            &format!("{prefix}.cy@contoso.onmicrosoft.com"),
        ),
        (
            "import_users",
            json!({"online_ids": [dee.id]}).to_string(),
            "ok",
            "initial_password",
        ),
        (
            "online_user_names",
            json!({"local_guids": chosen}).to_string(),
            "ok",
            &format!("{prefix}.bo@contoso.onmicrosoft.com"),
        ),
        ("sync_once", "{}".into(), "ok", "\"results\""),
        ("plan_sync", "{}".into(), "ok", "\"items\":[]"),
        (
            "password_changed",
            json!({"local_guid": chosen[0], "password": "Quiet-Harbour-Wide!"}).to_string(),
            "ok",
            "true",
        ),
        ("deliver_passwords", "{}".into(), "ok", "\"delivered\":1"),
        (
            "unassign",
            json!({"local_guid": chosen[1]}).to_string(),
            "ok",
            "unassigned",
        ),
        ("no_such_operation", "{}".into(), "unknown_operation", ""),
    ];
    let text: String = steps
        .iter()
        .map(|(op, p, code, holds)| format!("{op}\t{p}\t{code}\t{holds}\n"))
        .collect();
    let steps_file = tmp.path().join("steps.tsv");
    std::fs::write(&steps_file, text).unwrap();
    let mut command = steps_command(&runner, tmp.path());
    command.arg(&config_file).arg(&steps_file);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), steps.len(), "{stdout}");

    // What the C calls did, seen in Samba and in the tenant.
    let cy = dir
        .find_user(&format!("{prefix}.cy"))
        .await
        .unwrap()
        .expect("made in Samba");
    let online_cy = tenant
        .account(&format!("{prefix}.cy@contoso.onmicrosoft.com"))
        .await
        .unwrap();
    assert_eq!(online_cy.immutable_id, Some(cy.anchor()));
    assert!(
        dir.find_user(&format!("{prefix}.dee"))
            .await
            .unwrap()
            .is_some(),
        "imported into Samba"
    );
    let ann = tenant
        .account(&format!("{prefix}.ann@contoso.onmicrosoft.com"))
        .await
        .unwrap();
    let check = admin(
        &emu,
        "POST",
        &format!("/users/{}/check-password", ann.id.0),
        Some(json!({"password": "Quiet-Harbour-Wide!"})),
    )
    .await;
    assert_eq!(
        check["matches"], true,
        "the changed password is the online one"
    );
}

/// The program of a front door that runs a steps file, ready for its two arguments
/// (the configuration file, the steps file); built in `dir` when it is the C one.
pub(crate) fn steps_command(runner: &StepsRunner, dir: &std::path::Path) -> std::process::Command {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // target/debug/deps: the test binary's folder, where `cargo test` leaves the C ABI's
    // libraries (it copies up only programs and examples).
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    match runner {
        StepsRunner::C => {
            // Build the C program against the library: the library as scripts/test builds
            // it (`cargo test --workspace` resolves one set of features; a `cargo build
            // -p` would build the core again), at once when it is up to date.
            let built = crate::fixtures::cargo()
                .args(["test", "--workspace", "--no-run", "--quiet"])
                .current_dir(root)
                .status()
                .expect("cargo runs");
            assert!(built.success(), "the C ABI library builds");
            let library = deps.join("libo365_essentials.so");
            assert!(library.exists(), "{} is missing", library.display());
            let exe = dir.join("steps");
            let cc = std::process::Command::new("gcc")
                .args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-g", "-I"])
                .arg(root.join("o365-essentials-ffi/include"))
                .arg(root.join("o365-essentials-ffi/tests/c/steps.c"))
                .arg("-L")
                .arg(&deps)
                .args(["-lo365_essentials", "-o"])
                .arg(&exe)
                .status()
                .expect("gcc runs (scripts/setup installs it)");
            assert!(cc.success(), "the C program compiles");
            // It loads the build tree's library, not an installed package's in /usr/lib.
            let ldd = std::process::Command::new("ldd")
                .arg(&exe)
                .env("LD_LIBRARY_PATH", &deps)
                .output()
                .expect("ldd runs");
            let loads = String::from_utf8_lossy(&ldd.stdout).to_string();
            assert!(
                loads.contains(&library.display().to_string()),
                "the C program loads another libo365_essentials than {}:\n{loads}",
                library.display()
            );
            let mut c = std::process::Command::new(&exe);
            c.env("LD_LIBRARY_PATH", &deps);
            c
        }
        StepsRunner::Python => {
            let python = root.join("build/venv/bin/python");
            let found = std::process::Command::new(&python)
                .args(["-c", "import o365_essentials"])
                .status();
            assert!(
                matches!(found, Ok(s) if s.success()),
                "{} cannot import o365_essentials: scripts/test builds the wheel and installs it \
                 there before the Rust tests (or: scripts/setup, then maturin build and pip install)",
                python.display()
            );
            let mut c = std::process::Command::new(python);
            c.arg(root.join("o365-essentials-py/tests/steps.py"));
            c
        }
    }
}

/// The safety threshold through every door: users linked from C, Python and the command
/// line, more than the threshold of them disabled on Samba, then a sync run from the
/// same door — held, nothing applied online, reported the same way (`"held": 6`).
#[tokio::test]
async fn a_mass_disable_is_held_through_c_python_and_the_command_line() {
    use o365_essentials::model::NewLocalUser;
    use o365_essentials::ports::Tenant;
    let samba = crate::samba::shared();
    let dir = o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap();
    for door in ["c", "py", "cli"] {
        let mut users = Vec::new();
        for n in 0..8 {
            let name = format!("mass{door}.u{n}");
            let u = dir
                .create_user(
                    &NewLocalUser {
                        sam_account_name: name.clone(),
                        user_principal_name: format!("{name}@essentials.test"),
                        display_name: format!("Mass {door} {n}"),
                        ..Default::default()
                    },
                    &o365_essentials::SecretString::from("Zebra-Sync-2026!"),
                )
                .await
                .unwrap();
            users.push(u);
        }
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let config = crate::fixtures::write(
            tmp.path(),
            "config.json",
            &crate::fixtures::merged(
                crate::fixtures::config(samba, emu.info(), tmp.path()),
                json!({"sync": {"threshold_fraction": 0.1, "threshold_min": 5}}),
            ),
        );
        let guids: Vec<String> = users.iter().map(|u| u.guid.to_string()).collect();
        // Link them (and take the sync run's starting point), through the door.
        let first = [
            ("integrate", "{}".to_string(), "ok", String::new()),
            (
                "plan_bulk_create",
                json!({ "users": guids }).to_string(),
                "ok",
                format!("mass{door}.u7"),
            ),
            (
                "apply_plan",
                "{\"plan\": $prev}".into(),
                "ok",
                "succeeded".into(),
            ),
            ("sync_once", "{}".into(), "ok", "\"held\":0".into()),
        ];
        run_door(door, tmp.path(), &config, &first).await;
        for u in &users[..6] {
            samba.ldif(
                "ldapmodify",
                &format!("dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n-\n", u.dn),
            );
        }
        let second = [(
            "sync_once",
            "{}".to_string(),
            "ok",
            "\"held\":6".to_string(),
        )];
        let out = run_door(door, tmp.path(), &config, &second).await;
        let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(report["held"], 6, "{door}: {report}");
        let disabled = report["results"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["action"] == "disable" && i["outcome"] == "succeeded")
            .count();
        assert_eq!(disabled, 0, "{door}: nothing applied: {report}");
        let tenant = crate::graph::tenant_for(&emu);
        for n in 0..6 {
            let a = tenant
                .account(&format!("mass{door}.u{n}@contoso.onmicrosoft.com"))
                .await
                .unwrap();
            assert!(a.account_enabled, "{door}: u{n} still enabled online");
        }
    }
}

/// Runs steps through a door (`c`, `py` or `cli`); returns what it printed, one result
/// per line (the command line prints each result as `--json`).
async fn run_door(
    door: &str,
    dir: &std::path::Path,
    config: &std::path::Path,
    steps: &[(&str, String, &str, String)],
) -> String {
    if door == "cli" {
        let mut printed = String::new();
        let mut prev = String::new();
        for (op, params, code, holds) in steps {
            let params = params.replace("$prev", &prev);
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_o365-essentials"));
            c.arg("--config").arg(config).args([
                "--json",
                &op.replace('_', "-"),
                "--params",
                &params,
            ]);
            let out = tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(*code, "ok");
            assert!(
                out.status.success(),
                "{op}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains(holds.as_str()), "{op}: lacks {holds}: {text}");
            printed.push_str(&text);
            printed.push('\n');
            prev = text;
        }
        return printed;
    }
    let runner = if door == "c" {
        StepsRunner::C
    } else {
        StepsRunner::Python
    };
    let text: String = steps
        .iter()
        .map(|(op, p, code, holds)| format!("{op}\t{p}\t{code}\t{holds}\n"))
        .collect();
    let steps_file = dir.join("steps.tsv");
    std::fs::write(&steps_file, text).unwrap();
    let mut command = steps_command(&runner, dir);
    command.arg(config).arg(&steps_file);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{door}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each line is `operation TAB result`: the results alone.
    stdout
        .lines()
        .map(|l| l.split_once('\t').map(|(_, r)| r).unwrap_or(l).to_string() + "\n")
        .collect()
}
