//! `o365-essentials setup` and `teardown` as an administrator meets them: the program
//! prints a device code, the administrator signs in (here through the emulator's admin
//! endpoint), and the app registration, its certificate, grants and roles are made; the
//! configuration then works for `integrate`. Re-running repairs a removed grant and
//! never makes a second app; a user without the roles gets a typed error naming them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use o365_essentials_emulator::config::SeedUser;
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

const ADMIN: &str = "admin@contoso.onmicrosoft.com";
const APP_ADMIN_ONLY: &str = "appadmin@contoso.onmicrosoft.com";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
}

/// A clock standing at a given time.
struct Later(time::OffsetDateTime);

impl o365_essentials::engine::Clock for Later {
    fn now(&self) -> time::OffsetDateTime {
        self.0
    }
}

/// The TOML configuration as the JSON `IntegrationConfig::from_json` reads.
fn toml_as_json(path: &Path) -> String {
    let t: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::to_string(&t).unwrap()
}

fn emulator_config() -> EmulatorConfig {
    let mut cfg = EmulatorConfig::default();
    cfg.identity.device_code_interval_secs = 1;
    cfg.identity.app_replication_delay_ms = 1500;
    cfg.seed.users.push(SeedUser {
        user_principal_name: APP_ADMIN_ONLY.into(),
        display_name: "Application Administrator only".into(),
        roles: vec!["Application Administrator".into()],
        ..SeedUser::default()
    });
    cfg
}

/// A configuration naming the tenant and its endpoints, with a placeholder credential
/// (what `init` leaves before `setup`).
fn config(emu: &Emulator, dir: &Path) -> PathBuf {
    let i = emu.info();
    let cfg = dir.join("o365-essentials.toml");
    // 0600: it holds a (placeholder) secret, and a readable one is refused.
    crate::fixtures::write_private(
        &cfg,
        format!(
            "store = \"{}\"\nresults_folder = \"{}\"\nusage_location = \"GB\"\n\
             [directory.demo_company]\npeople = 5\n\
             [tenant]\ntenant_id = \"{}\"\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n\
             login_url = \"{}\"\ngraph_url = \"{}\"\nexchange_url = \"{}\"\nsharepoint_url = \"{}\"\n\
             [tenant.credential]\nkind = \"secret\"\nsecret = \"the client secret's value\"\n",
            dir.join("state.db").display(),
            dir.display(),
            i.tenant_id,
            i.login_url,
            i.graph_url,
            i.exchange_url,
            i.sharepoint_url,
        ),
    );
    cfg
}

/// Approves (or declines) the next pending device code as `user`; returns its code.
async fn approve_next(emu: &Emulator, user: &str, decline: bool) -> String {
    try_approve_next(emu, user, decline)
        .await
        .expect("no device code appeared")
}

async fn try_approve_next(emu: &Emulator, user: &str, decline: bool) -> Option<String> {
    let http = reqwest::Client::new();
    let admin = &emu.info().admin_url;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = http
            .get(format!("{admin}/devicecode"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(code) = v["value"]
            .as_array()
            .and_then(|a| a.last())
            .and_then(|c| c["userCode"].as_str())
        {
            let r = http
                .post(format!("{admin}/devicecode/approve"))
                .json(&json!({"userCode": code, "user": user, "decline": decline}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
            return Some(code.to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    user_code: String,
}

/// Runs `o365-essentials --config cfg <args>` and signs in as `user` when it asks.
async fn run_signed_in(emu: &Emulator, cfg: &Path, args: &[&str], user: &str) -> Run {
    let child = Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let user_code = try_approve_next(emu, user, false).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let Some(user_code) = user_code else {
        panic!(
            "no device code appeared; {:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        user_code,
    }
}

/// A delegated Graph token for `user` through the device code flow, over HTTP.
async fn delegated_token(emu: &Emulator, user: &str) -> String {
    let http = reqwest::Client::new();
    let i = emu.info();
    let base = format!("{}/{}/oauth2/v2.0", i.login_url, i.tenant_id);
    let client = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
    let start: Value = http
        .post(format!("{base}/devicecode"))
        .form(&[
            ("client_id", client),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    approve_next(emu, user, false).await;
    let v: Value = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", client),
            ("device_code", start["device_code"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn graph_get(emu: &Emulator, token: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", emu.info().graph_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn setup_registers_the_app_from_one_sign_in_then_integrate_works_and_rerun_repairs() {
    let emu = Emulator::start(emulator_config()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&emu, tmp.path());

    // A dry run lists everything and makes nothing.
    let dry = run_signed_in(
        &emu,
        &cfg,
        &[
            "--json",
            "setup",
            "--server-name",
            "dc1",
            "--dry-run",
            "true",
        ],
        ADMIN,
    )
    .await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    let report: Value = serde_json::from_str(dry.stdout.trim()).unwrap();
    assert_eq!(report["dry_run"], true);
    let changes = report["changes"].to_string();
    for what in [
        "create the app registration o365-essentials (dc1)",
        "Exchange.ManageAsApp",
        "Office 365 SharePoint Online Sites.FullControl.All",
        "User Administrator",
        "Exchange Administrator",
    ] {
        assert!(changes.contains(what), "{what}: {changes}");
    }
    assert!(!tmp.path().join("o365-essentials-app.key").exists());

    // The real run: the code is printed, the administrator signs in, it waits for the
    // new app to replicate and writes the configuration.
    let run = run_signed_in(&emu, &cfg, &["setup", "--server-name", "dc1"], ADMIN).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&run.user_code),
        "the code is shown: {}",
        run.stderr
    );
    assert!(run.stderr.contains("/devicelogin"), "{}", run.stderr);
    let key = tmp.path().join("o365-essentials-app.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert!(written.contains("kind = \"certificate\""), "{written}");
    assert!(!written.contains("the client secret's value"), "{written}");
    assert!(!run.stdout.contains("PRIVATE KEY") && !run.stderr.contains("eyJ"));

    // The configuration works: integrate on the created app.
    let mut integrate = Command::new(bin());
    integrate
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "integrate"]);
    let out = tokio::task::spawn_blocking(move || integrate.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "integrate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The quickstart's walk on the created app: accounts for the local users, a sync
    // round, Exchange and SharePoint (whose REST API takes only a certificate).
    for args in [
        vec!["--json", "requirements"],
        vec!["--json", "match-preview"],
        vec!["--json", "sync-once"],
        vec!["--json", "list-distribution-groups"],
        vec!["--json", "list-site-groups"],
        vec!["--json", "licences"],
    ] {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&cfg).args(&args);
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if args[1] == "requirements" {
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            let failed: Vec<&Value> = report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "fail")
                .collect();
            assert!(
                failed.is_empty(),
                "the created app lacks nothing: {failed:?}"
            );
        }
    }
    let mut plan = Command::new(bin());
    plan.arg("--config")
        .arg(&cfg)
        .args(["--json", "plan-bulk-create"]);
    let out = tokio::task::spawn_blocking(move || plan.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, &out.stdout).unwrap();
    let mut apply = Command::new(bin());
    apply
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "apply-plan", "--plan"])
        .arg(format!("@{}", plan_file.display()));
    let out = tokio::task::spawn_blocking(move || apply.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "apply-plan: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        results.to_string().contains("succeeded"),
        "accounts made on the created app: {results}"
    );

    // A removed grant is repaired by running setup again; still one app.
    let token = delegated_token(&emu, ADMIN).await;
    let apps = graph_get(
        &emu,
        &token,
        "/applications?$filter=displayName%20eq%20'o365-essentials%20(dc1)'",
    )
    .await;
    assert_eq!(apps["value"].as_array().unwrap().len(), 1);
    let app_id = apps["value"][0]["appId"].as_str().unwrap().to_string();
    let sp = graph_get(
        &emu,
        &token,
        &format!("/servicePrincipals?$filter=appId%20eq%20'{app_id}'"),
    )
    .await;
    let sp_id = sp["value"][0]["id"].as_str().unwrap().to_string();
    let grants = graph_get(
        &emu,
        &token,
        &format!("/servicePrincipals/{sp_id}/appRoleAssignments"),
    )
    .await;
    assert_eq!(grants["value"].as_array().unwrap().len(), 9);
    let exo = grants["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["appRoleId"] == "dc50a0fb-09a3-484d-be87-e023b12c6440")
        .unwrap();
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/servicePrincipals/{sp_id}/appRoleAssignments/{}",
            emu.info().graph_url,
            exo["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let again = run_signed_in(
        &emu,
        &cfg,
        &["--json", "setup", "--server-name", "dc1"],
        ADMIN,
    )
    .await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    let report: Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(report["client_id"], app_id.as_str());
    let changes: Vec<String> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(
        changes
            .iter()
            .any(|c| c.contains("Office 365 Exchange Online Exchange.ManageAsApp")),
        "{changes:?}"
    );
    assert!(!changes.iter().any(|c| c.contains("create")), "{changes:?}");
    let apps = graph_get(&emu, &token, "/applications").await;
    assert_eq!(apps["value"].as_array().unwrap().len(), 1);

    // The credential's lifecycle: status knows the certificate's expiry and warns 30 days
    // ahead (time moved through the engine's clock) ...
    let later = {
        let config =
            o365_essentials::config::IntegrationConfig::from_json(&toml_as_json(&cfg)).unwrap();
        let integration = o365_essentials::engine::Integration::open(config)
            .unwrap()
            .with_clock(std::sync::Arc::new(Later(
                time::OffsetDateTime::now_utc() + time::Duration::days(710),
            )));
        let now = integration.status().unwrap().credential.unwrap();
        assert_eq!(now.kind, "certificate");
        assert!(now.days_left.unwrap() <= 20, "{now:?}");
        assert!(now.warning.unwrap().contains("expires in"));
        let report = integration.requirements(None).await;
        let check = report
            .checks
            .iter()
            .find(|c| c.id == "credential_expiry")
            .unwrap();
        assert_eq!(
            check.status,
            o365_essentials::model::CheckStatus::Warn,
            "{check:?}"
        );
        assert!(check.remedy.contains("roll-credential"), "{check:?}");
        drop(integration);
        let config =
            o365_essentials::config::IntegrationConfig::from_json(&toml_as_json(&cfg)).unwrap();
        let today = o365_essentials::engine::Integration::open(config).unwrap();
        let c = today.status().unwrap().credential.unwrap();
        assert!(c.days_left.unwrap() >= 728 && c.warning.is_none(), "{c:?}");
        c
    };
    // ... and rolls it: a new key added with a proof from the old, proven, then the old
    // one removed; the service keeps working on the new one.
    let old_pem = std::fs::read_to_string(tmp.path().join("o365-essentials-app.pem")).unwrap();
    let mut roll = Command::new(bin());
    roll.arg("--config")
        .arg(&cfg)
        .args(["--json", "roll-credential"]);
    let out = tokio::task::spawn_blocking(move || roll.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "roll: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rolled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(rolled["added_key_id"], rolled["removed_key_id"]);
    let new_pem = std::fs::read_to_string(tmp.path().join("o365-essentials-app.pem")).unwrap();
    assert_ne!(old_pem, new_pem);
    let app = graph_get(
        &emu,
        &token,
        "/applications?$filter=displayName%20eq%20'o365-essentials%20(dc1)'",
    )
    .await;
    let keys = app["value"][0]["keyCredentials"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["keyId"], rolled["added_key_id"]);
    let key = tmp.path().join("o365-essentials-app.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let _ = later;
    let mut status = Command::new(bin());
    status
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "match-preview"]);
    let out = tokio::task::spawn_blocking(move || status.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "after the roll: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The service rolls the certificate itself when it is due (`--roll-days` beyond its
    // two years makes it due at once) and keeps delivering rounds on the new one.
    let before = std::fs::read_to_string(tmp.path().join("o365-essentials-app.pem")).unwrap();
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--interval", "1", "--roll-days", "800"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let events = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut rolled = false;
        while Instant::now() < deadline {
            let Ok(v) = rx.recv_timeout(Duration::from_secs(1)) else {
                continue;
            };
            seen.push(v.clone());
            if v["event"] == "credential_rolled" {
                rolled = true;
            }
            if rolled && v["event"] == "sync_round_finished" && v.get("error_code").is_none() {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait().unwrap()).await;
    let _ = reader.join();
    let rolled = events
        .iter()
        .position(|v| v["event"] == "credential_rolled");
    let after_roll = rolled.and_then(|i| {
        events[i..]
            .iter()
            .position(|v| v["event"] == "sync_round_finished" && v.get("error_code").is_none())
    });
    assert!(
        after_roll.is_some(),
        "a round on the new certificate: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|v| v["event"] == "sync_round_finished" && v.get("error_code").is_some()),
        "no failed round: {events:?}"
    );
    assert_ne!(
        before,
        std::fs::read_to_string(tmp.path().join("o365-essentials-app.pem")).unwrap()
    );

    // teardown removes it.
    let down = run_signed_in(
        &emu,
        &cfg,
        &["--json", "teardown", "--server-name", "dc1"],
        ADMIN,
    )
    .await;
    assert_eq!(down.code, Some(0), "{}", down.stderr);
    let apps = graph_get(&emu, &token, "/applications").await;
    assert_eq!(apps["value"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn setup_without_the_roles_names_the_missing_role_and_changes_nothing() {
    let emu = Emulator::start(emulator_config()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&emu, tmp.path());
    let before = std::fs::read_to_string(&cfg).unwrap();
    let run = run_signed_in(
        &emu,
        &cfg,
        &["--json", "setup", "--server-name", "dc1"],
        APP_ADMIN_ONLY,
    )
    .await;
    assert_eq!(
        run.code,
        Some(3),
        "code {:?} out {} err {}",
        run.code,
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("admin_role_missing"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Privileged Role Administrator"),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), before);

    // A declined sign-in stops it too, as a sign-in failure.
    let child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "setup", "--server-name", "dc1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    try_approve_next(&emu, ADMIN, true).await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("declined"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), before);
    let token = delegated_token(&emu, ADMIN).await;
    let apps = graph_get(&emu, &token, "/applications").await;
    assert_eq!(apps["value"].as_array().unwrap().len(), 0);
}
