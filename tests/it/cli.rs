//! The `o365-essentials` program as a real process: the tasks against the emulator, human
//! and JSON output, exit codes, Ctrl-C, `init`, the service under SIGTERM with the
//! tenant away and back, and the Samba password hook run by `samba-tool user
//! syncpasswords` on the throwaway DC.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use o365_essentials_emulator::config::{Delay, FaultKind, FaultRule};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::fixtures;
use crate::graph::admin;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
}

/// Runs the program with `--config cfg` and `args`.
async fn run(cfg: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.arg("--config").arg(cfg).args(args);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn tenant_toml(emu: &Emulator) -> String {
    let i = emu.info();
    format!(
        "[tenant]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nlogin_url = \"{}\"\ngraph_url = \"{}\"\n\
         exchange_url = \"{}\"\nsharepoint_url = \"{}\"\n[tenant.credential]\nkind = \"secret\"\nsecret = \"{}\"\n",
        i.tenant_id,
        i.client_id,
        i.login_url,
        i.graph_url,
        i.exchange_url,
        i.sharepoint_url,
        i.client_secret.clone().unwrap_or_default()
    )
}

fn demo_config(emu: &Emulator, dir: &Path, people: usize) -> PathBuf {
    let cfg = dir.join("contoso.toml");
    crate::fixtures::write_private(
        &cfg,
        format!(
            "store = \"{}\"\nresults_folder = \"{}\"\nusage_location = \"GB\"\nconcurrency = 8\n\
             [sync]\ninterval_secs = 1\n[directory.demo_company]\npeople = {people}\n{}",
            dir.join("state.db").display(),
            dir.display(),
            tenant_toml(emu)
        ),
    );
    cfg
}

fn slow_emulator_config() -> EmulatorConfig {
    let mut cfg = EmulatorConfig::default();
    cfg.latency.write = Delay {
        fixed_ms: 25,
        jitter_ms: 10,
    };
    cfg
}

#[tokio::test]
async fn the_command_line_runs_the_tasks_with_human_and_json_output_and_exit_codes() {
    let emu = Emulator::start(slow_emulator_config()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let secret = emu.info().client_secret.clone().unwrap_or_default();

    // `init` writes a commented starting file that is a valid configuration (0600).
    let template = tmp.path().join("etc/o365-essentials.toml");
    let out = run(&template, &["init", template.to_str().unwrap()]).await;
    ok(&out);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&template).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&template)
            .unwrap()
            .contains("# The Microsoft 365 tenant")
    );
    let again = run(&template, &["init", template.to_str().unwrap()]).await;
    assert_eq!(
        again.status.code(),
        Some(4),
        "exists: {}",
        text(&again.stderr)
    );
    // Its store folder is not writable here, so point it at ours; the rest parses.
    let parsed = std::fs::read_to_string(&template).unwrap().replacen(
        "store = \"/var/lib/o365-essentials/o365-essentials.db\"",
        &format!("store = \"{}\"", tmp.path().join("t.db").display()),
        1,
    );
    std::fs::write(&template, parsed).unwrap();
    // The template parses through to the directory's settings: only this machine's
    // missing Samba CA file stops it.
    let status = run(&template, &["status"]).await;
    assert_eq!(status.status.code(), Some(2), "{}", text(&status.stderr));
    assert!(
        text(&status.stderr).contains("ca_file"),
        "{}",
        text(&status.stderr)
    );
    let json_init = tmp.path().join("init.json");
    ok(&run(&json_init, &["init", json_init.to_str().unwrap()]).await);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_init).unwrap()).unwrap();
    assert_eq!(v["sync"]["interval_secs"], 300);

    let cfg = demo_config(&emu, tmp.path(), 30);
    let status = run(&cfg, &["status"]).await;
    assert_eq!(status.status.code(), Some(8), "engine family");
    assert!(
        text(&status.stderr).contains("what to do:"),
        "{}",
        text(&status.stderr)
    );
    let integrated = ok(&run(&cfg, &["integrate"]).await);
    assert!(integrated.contains("organization: Contoso"), "{integrated}");

    // The plan as JSON, kept in a file and applied from it.
    let plan = ok(&run(&cfg, &["--json", "plan-bulk-create"]).await);
    let planned: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(planned["items"].as_array().unwrap().len(), 42);
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, &plan).unwrap();
    let applied = run(
        &cfg,
        &["apply-plan", "--plan", &format!("@{}", plan_file.display())],
    )
    .await;
    let shown = ok(&applied);
    assert!(
        shown.contains("succeeded") && shown.contains("42 item(s)"),
        "{shown}"
    );
    assert!(
        !text(&applied.stderr).contains("[#"),
        "no progress bar when stderr is not a terminal"
    );
    let links = ok(&run(&cfg, &["--json", "list-links", "--local-user", "ava.adams"]).await);
    let links: Value = serde_json::from_str(&links).unwrap();
    assert_eq!(
        links[0]["user_principal_name"],
        "ava.adams@contoso.onmicrosoft.com"
    );
    let table = ok(&run(&cfg, &["licences"]).await);
    assert!(
        table.lines().next().unwrap().contains("sku_part_number"),
        "{table}"
    );

    // Bad input: a clear error, the input family's exit code, nothing done.
    let bad = run(&cfg, &["plan-bulk-create", "--params", r#"{"colour": 1}"#]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("colour"),
        "{}",
        text(&bad.stderr)
    );
    let bad = run(
        &cfg,
        &[
            "--json",
            "list-devices",
            "--user-principal-name",
            "not a upn",
        ],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2));
    let e: Value = serde_json::from_str(&text(&bad.stdout)).unwrap();
    assert_eq!(e["error"]["code_name"], "invalid_upn");
    let missing = run(&cfg, &["wipe-device", "--device-id", "x", "--kind", "full"]).await;
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    let usage = run(&cfg, &["apply-plan", "--no-such-option"]).await;
    assert_eq!(usage.status.code(), Some(2));
    let wrong = tmp.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        format!("store = \"x\"\n[tenant\nsecret = \"{secret}\"\n"),
    )
    .unwrap();
    let broken = run(&wrong, &["status"]).await;
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        text(&broken.stderr).contains("line 2"),
        "{}",
        text(&broken.stderr)
    );

    // The client secret is in no output.
    for o in [&status, &applied, &bad, &broken] {
        assert!(!text(&o.stdout).contains(&secret) && !text(&o.stderr).contains(&secret));
    }
    assert!(!integrated.contains(&secret) && !plan.contains(&secret));

    // `--help` lists every task of the table.
    let help = text(&Command::new(bin()).arg("--help").output().unwrap().stdout);
    for op in o365_essentials::ops::OPERATIONS {
        assert!(
            help.contains(&op.name.replace('_', "-")),
            "--help lacks {}",
            op.name
        );
    }
}

#[tokio::test]
async fn ctrl_c_stops_a_bulk_create_at_an_item_boundary_and_says_what_was_done() {
    let emu = Emulator::start(slow_emulator_config()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Enough people that the run is far from done when Ctrl-C comes (312 could all be
    // started within the 1.5 s on a fast machine).
    let cfg = demo_config(&emu, tmp.path(), 1200);
    ok(&run(&cfg, &["integrate"]).await);
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(
        &plan_file,
        ok(&run(&cfg, &["--json", "plan-bulk-create"]).await),
    )
    .unwrap();
    let child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["apply-plan", "--plan"])
        .arg(format!("@{}", plan_file.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "stopped at an item boundary, soon"
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("done before it stopped"), "{said}");
    let results = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("bulk_create-") && n.ends_with(".json")
        })
        .expect("the results file was written");
    let done: Value =
        serde_json::from_str(&std::fs::read_to_string(results.path()).unwrap()).unwrap();
    let created = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "succeeded")
        .count();
    assert!(created > 0 && created < 1212, "{created}");
    let rest: Value =
        serde_json::from_str(&ok(&run(&cfg, &["--json", "plan-bulk-create"]).await)).unwrap();
    assert_eq!(
        rest["items"].as_array().unwrap().len(),
        1212 - created,
        "nothing lost, nothing twice"
    );
}

#[tokio::test]
async fn the_service_survives_the_tenant_away_and_stops_on_sigterm() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = demo_config(&emu, tmp.path(), 3);
    ok(&run(&cfg, &["integrate"]).await);
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--interval", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            all.push(line);
            let _ = tx.send(v);
        }
        all
    });
    wait_for(&mut rx, "first round", |v| {
        v["event"] == "sync_round_finished" && v.get("error_code").is_none()
    })
    .await;
    // The tenant goes away: rounds fail (logged as warnings), the service goes on.
    let rule = FaultRule {
        path: "/v1.0/*".into(),
        method: None,
        probability: 1.0,
        kind: FaultKind::Status { status: 503 },
        limit: None,
    };
    admin(&emu, "PUT", "/faults", Some(json!({ "rules": [rule] }))).await;
    let failed = wait_for(&mut rx, "a failed round", |v| {
        v["event"] == "sync_round_finished" && v.get("error_code").is_some()
    })
    .await;
    assert_eq!(failed["level"], "warn");
    let c = reqwest::Client::new();
    c.delete(format!("{}/faults", emu.info().admin_url))
        .send()
        .await
        .unwrap();
    wait_for(&mut rx, "a round after the tenant came back", |v| {
        v["event"] == "sync_round_finished" && v.get("error_code").is_none()
    })
    .await;
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(sent.elapsed() < Duration::from_secs(5));
    let lines = reader.join().unwrap();
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["event"], "stopped");
    let secret = emu.info().client_secret.clone().unwrap_or_default();
    assert!(
        lines.iter().all(|l| !l.contains(&secret)),
        "no secret in the logs"
    );
}

/// The next log line `pred` accepts, within 30 s.
async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    what: &str,
    pred: fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(v)) if pred(&v) => return v,
            Ok(Some(_)) => {}
            _ => panic!("no {what} within 30 s"),
        }
    }
}

/// `unicodePwd`'s value for LDIF: base64 of the quoted password in UTF-16LE.
fn unicode_pwd(password: &str) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether the emulator's account has this password.
async fn online_password_is(emu: &Emulator, upn: &str, password: &str) -> bool {
    use o365_essentials::ports::Tenant;
    let tenant = crate::graph::tenant_for(emu);
    let a = tenant.account(upn).await.unwrap();
    let check = admin(
        emu,
        "POST",
        &format!("/users/{}/check-password", a.id.0),
        Some(json!({ "password": password })),
    )
    .await;
    check["matches"] == true
}

/// The captured passwords delivered by `deliver-passwords` now.
async fn deliver(cfg: &Path) -> u64 {
    let out = ok(&run(cfg, &["--json", "deliver-passwords"]).await);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["refused"], json!([]), "{v}");
    v["delivered"].as_u64().unwrap()
}

/// `samba-tool user syncpasswords --no-wait` with the hook as its script: handles what is
/// pending and exits.
async fn syncpasswords(samba: &'static crate::samba::Samba, cache: &Path, config: &Path) -> Output {
    let mut c = samba.samba_tool(&["user", "syncpasswords", "--no-wait"]);
    c.arg(format!("--cache-ldb={}", cache.display()))
        .env("O365_ESSENTIALS_CONFIG", config);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn passwords_changed_on_samba_arrive_online_through_the_hook() {
    use o365_essentials::model::NewLocalUser;
    use o365_essentials::ports::Directory;
    let samba = crate::samba::capture();
    let dir = o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap();
    let first = "Tidal-Basin-4471!";
    let ann = dir
        .create_user(
            &NewLocalUser {
                sam_account_name: "hook.ann".into(),
                user_principal_name: "hook.ann@essentials.test".into(),
                display_name: "Hook Ann".into(),
                ..Default::default()
            },
            &o365_essentials::SecretString::from(first),
        )
        .await
        .unwrap();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = fixtures::write(
        tmp.path(),
        "config.json",
        &fixtures::merged(
            fixtures::merged(
                fixtures::config(samba, emu.info(), tmp.path()),
                fixtures::password_capture(samba),
            ),
            // Users marked `description: outside` are out of the synced scope.
            json!({"directory": {"ldap": {"user_filter": "(!(description=outside))"}}}),
        ),
    );
    ok(&run(&config, &["integrate"]).await);
    // The requirements check sees the capture set up: the key in smb.conf, its public
    // half in Samba's keyring, its private half in ours; syncpasswords not running yet.
    let report: Value =
        serde_json::from_str(&ok(&run(&config, &["--json", "requirements"]).await)).unwrap();
    let status = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no check {id}: {report}"))
    };
    assert_eq!(status("samba_capture_key_configured"), "pass", "{report}");
    assert_eq!(
        status("samba_capture_key_in_samba_keyring"),
        "pass",
        "{report}"
    );
    assert_eq!(status("capture_private_key"), "pass", "{report}");
    assert_eq!(status("samba_syncpasswords_running"), "warn", "{report}");
    let guid = ann.guid.to_string();
    let plan = ok(&run(&config, &["--json", "plan-bulk-create", "--users", &guid]).await);
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, plan).unwrap();
    let applied: Value = serde_json::from_str(&ok(&run(
        &config,
        &[
            "--json",
            "apply-plan",
            "--plan",
            &format!("@{}", plan_file.display()),
        ],
    )
    .await))
    .unwrap();
    assert_eq!(
        applied["items"][0]["password_source"], "random",
        "nothing captured yet: a random initial password"
    );
    let upn = "hook.ann@contoso.onmicrosoft.com";

    // samba-tool runs the hook by its name: the program linked as o365-essentials-samba-hook.
    let work = tmp.path().to_path_buf();
    let cache =
        tokio::task::spawn_blocking(move || fixtures::syncpasswords_cache(samba, &bin(), &work))
            .await
            .unwrap();

    // The first run sends every account: ann's current password, decrypted, arrives.
    let out = syncpasswords(samba, &cache, &config).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(deliver(&config).await >= 1);
    assert!(
        online_password_is(&emu, upn, first).await,
        "the current password is online"
    );

    // An admin reset over LDAPS.
    let reset = "Harbour-Walls-2291!";
    let modify = |p: &str| {
        format!(
            "dn: {}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n-\n",
            ann.dn,
            unicode_pwd(p)
        )
    };
    samba.ldif("ldapmodify", &modify(reset));
    syncpasswords(samba, &cache, &config).await;
    assert_eq!(deliver(&config).await, 1);
    assert!(online_password_is(&emu, upn, reset).await);

    // The user's own change, bound as the user.
    let own = "Quiet-Meadow-8830!";
    let change = format!(
        "dn: {}\nchangetype: modify\ndelete: unicodePwd\nunicodePwd:: {}\n-\nadd: unicodePwd\nunicodePwd:: {}\n-\n",
        ann.dn,
        unicode_pwd(reset),
        unicode_pwd(own)
    );
    assert!(
        samba.ldif_as("hook.ann@essentials.test", reset, &change),
        "the user changes their password"
    );
    syncpasswords(samba, &cache, &config).await;
    assert_eq!(deliver(&config).await, 1);
    assert!(online_password_is(&emu, upn, own).await);

    // A refused change (too short) delivers nothing.
    assert!(!samba.ldif_as("hook.ann@essentials.test", own, &format!(
        "dn: {}\nchangetype: modify\ndelete: unicodePwd\nunicodePwd:: {}\n-\nadd: unicodePwd\nunicodePwd:: {}\n-\n",
        ann.dn, unicode_pwd(own), unicode_pwd("ab1")
    )));
    syncpasswords(samba, &cache, &config).await;
    assert_eq!(deliver(&config).await, 0);

    // A rename and a disable send the same password version again: nothing is re-sent.
    samba.ldif(
        "ldapmodify",
        &format!(
            "dn: {}\nchangetype: modify\nreplace: displayName\ndisplayName: Hook Ann Renamed\n-\n",
            ann.dn
        ),
    );
    samba.ldif(
        "ldapmodify",
        &format!(
            "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n-\n",
            ann.dn
        ),
    );
    syncpasswords(samba, &cache, &config).await;
    assert_eq!(deliver(&config).await, 0);

    // A user made with an account: samba-tool calls twice for the create; sent once.
    let cy_password = "Copper-Kettle-5512!";
    ok(&run(
        &config,
        &[
            "create-user-with-account",
            "--user",
            r#"{"sam_account_name": "hook.cy", "user_principal_name": "hook.cy@essentials.test", "display_name": "Hook Cy"}"#,
            "--password",
            cy_password,
        ],
    )
    .await);
    syncpasswords(samba, &cache, &config).await;
    assert_eq!(deliver(&config).await, 1, "one delivery for two calls");
    assert!(online_password_is(&emu, "hook.cy@contoso.onmicrosoft.com", cy_password).await);

    // The hook enqueues while another process holds the sync run.
    let store = o365_essentials::store::Store::open(tmp.path().join("state.db")).unwrap();
    let held = store
        .lease(o365_essentials::store::Work::Sync, None)
        .unwrap();
    let while_held = "Lantern-Field-6604!";
    samba.ldif("ldapmodify", &modify(while_held));
    let out = syncpasswords(samba, &cache, &config).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    drop(held);
    assert_eq!(deliver(&config).await, 1);
    assert!(online_password_is(&emu, upn, while_held).await);

    // The hook failing (its configuration unreadable) stops samba-tool before the
    // cursor moves; run again, the change is delivered: nothing lost.
    let later = "Granite-Steps-7719!";
    samba.ldif("ldapmodify", &modify(later));
    let failed = syncpasswords(samba, &cache, &tmp.path().join("missing.json")).await;
    assert!(
        !failed.status.success(),
        "samba-tool stops when the hook fails"
    );
    let out = syncpasswords(samba, &cache, &config).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(deliver(&config).await, 1);
    assert!(online_password_is(&emu, upn, later).await);

    // A deleted account sends nothing.
    let cy = dir.find_user("hook.cy").await.unwrap().unwrap();
    samba.ldif(
        "ldapmodify",
        &format!("dn: {}\nchangetype: delete\n", cy.dn),
    );
    syncpasswords(samba, &cache, &config).await;
    assert_eq!(deliver(&config).await, 0);

    // Same password from day one: a user without an online account changes their
    // password; it is kept (encrypted), and the account a bulk create makes gets it.
    let dee_password = "Orchard-Gate-3357!";
    let dee = dir
        .create_user(
            &NewLocalUser {
                sam_account_name: "hook.dee".into(),
                user_principal_name: "hook.dee@essentials.test".into(),
                display_name: "Hook Dee".into(),
                ..Default::default()
            },
            &o365_essentials::SecretString::from(dee_password),
        )
        .await
        .unwrap();
    syncpasswords(samba, &cache, &config).await;
    assert_eq!(
        deliver(&config).await,
        0,
        "nothing to deliver: dee has no account"
    );
    let guid = dee.guid.to_string();
    let plan = ok(&run(&config, &["--json", "plan-bulk-create", "--users", &guid]).await);
    std::fs::write(&plan_file, plan).unwrap();
    let applied: Value = serde_json::from_str(&ok(&run(
        &config,
        &[
            "--json",
            "apply-plan",
            "--plan",
            &format!("@{}", plan_file.display()),
        ],
    )
    .await))
    .unwrap();
    assert_eq!(applied["items"][0]["outcome"], "succeeded", "{applied}");
    assert_eq!(
        applied["items"][0]["password_source"], "current",
        "{applied}"
    );
    assert!(online_password_is(&emu, "hook.dee@contoso.onmicrosoft.com", dee_password).await);
    let csv = walk(tmp.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(csv.contains(",current") && csv.contains(",random"), "{csv}");

    // A Domain Admin's and an out-of-scope user's password changes, through the real
    // samba-tool: neither queued nor kept; the hook says why.
    let da_password = "Granite-Admin-8841!";
    let mut outsiders = Vec::new();
    for sam in ["hook.da", "hook.out"] {
        outsiders.push(
            dir.create_user(
                &NewLocalUser {
                    sam_account_name: sam.into(),
                    user_principal_name: format!("{sam}@essentials.test"),
                    display_name: format!("Hook {sam}"),
                    ..Default::default()
                },
                &o365_essentials::SecretString::from(da_password),
            )
            .await
            .unwrap(),
        );
    }
    let added = samba
        .samba_tool(&["group", "addmembers", "Domain Admins", "hook.da"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", text(&added.stderr));
    samba.ldif(
        "ldapmodify",
        &format!(
            "dn: {}\nchangetype: modify\nreplace: description\ndescription: outside\n-\n",
            outsiders[1].dn
        ),
    );
    let da_reset = "Granite-Admin-9952!";
    for u in &outsiders {
        samba.ldif(
            "ldapmodify",
            &format!(
                "dn: {}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n-\n",
                u.dn,
                unicode_pwd(da_reset)
            ),
        );
    }
    let out = syncpasswords(samba, &cache, &config).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("hook.da: protected") && said.contains("hook.out: protected"),
        "{said}"
    );
    let kept = store.setting_keys("capture.kept.").unwrap();
    let queued = store.queued_passwords().unwrap();
    for u in &outsiders {
        assert!(
            !kept.iter().any(|k| k.ends_with(&u.guid.to_string())),
            "a password is kept for {}",
            u.sam_account_name
        );
        assert!(!queued.iter().any(|q| q.local_guid == u.guid));
    }
    assert_eq!(deliver(&config).await, 0);

    // No cleartext anywhere the integration writes: store, WAL, journal, results.
    for entry in walk(tmp.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for p in [
            da_password,
            da_reset,
            first,
            reset,
            own,
            cy_password,
            while_held,
            later,
            dee_password,
        ] {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "{p} is in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.is_file() && !p.ends_with("config.json") {
            out.push(p);
        }
    }
    out
}

/// The Debian package's program as installed (scripts/test builds the package with
/// scripts/build-deb and installs it with dpkg before this suite): its version, the hook
/// under its name, and its requirements check against the DC and the emulator.
#[tokio::test]
async fn the_installed_package_checks_the_dc_and_the_tenant() {
    let installed = Path::new("/usr/bin/o365-essentials");
    assert!(
        installed.exists(),
        "the package is not installed: scripts/test builds it (scripts/build-deb) and installs it \
         (dpkg -i build/deb/o365-essentials_*.deb) before the Rust tests"
    );
    let version = text(
        &Command::new(installed)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(
        version.trim(),
        format!("o365-essentials {}", o365_essentials::VERSION)
    );
    let samba = crate::samba::shared();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = fixtures::write(
        tmp.path(),
        "config.json",
        &fixtures::config(samba, emu.info(), tmp.path()),
    );
    let mut c = Command::new(installed);
    c.arg("--config")
        .arg(&config)
        .args(["--json", "requirements"]);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    for id in [
        "single_domain_controller",
        "tenant_reachable",
        "graph_licences",
    ] {
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {report}"));
        assert_eq!(check["status"], "pass", "{check}");
    }
    // The hook, as samba-tool runs it: by its name, no arguments, the LDIF on stdin.
    let mut hook = Command::new("/usr/libexec/o365-essentials/o365-essentials-samba-hook");
    hook.env("O365_ESSENTIALS_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = hook.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"objectGUID: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\nisDeleted: TRUE\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("DONE-EXIT: "),
        "{}",
        text(&out.stdout)
    );
    assert!(out.stderr.is_empty(), "nothing on stderr");
}

/// Work that ran to its end with failures has exit codes of its own, distinct from
/// errors: 20 when `requirements` has a failed check, 21 when a run has failed items;
/// the result is printed as on success (counts and the results file included). Users are
/// named by sAMAccountName, a limit by a plain number, a policy changed in part.
#[tokio::test]
async fn checks_failed_and_done_with_failures_exit_with_their_own_codes() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = demo_config(&emu, tmp.path(), 0);
    ok(&run(&cfg, &["integrate"]).await);

    let out = run(
        &cfg,
        &["--json", "requirements", "--custom-domain", "not a domain"],
    )
    .await;
    assert_eq!(out.status.code(), Some(20), "{}", text(&out.stderr));
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "custom_domain" && c["status"] == "fail"),
        "{report}"
    );

    // Every create refused by the tenant: the run ends, its items failed.
    let plan = ok(&run(
        &cfg,
        &[
            "--json",
            "plan-bulk-create",
            "--users",
            "ava.adams,BEN.BROOKS",
        ],
    )
    .await);
    let planned: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(planned["items"].as_array().unwrap().len(), 2, "{planned}");
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, &plan).unwrap();
    let rule = FaultRule {
        path: "/v1.0/users".into(),
        method: Some("POST".into()),
        probability: 1.0,
        kind: FaultKind::Status { status: 400 },
        limit: None,
    };
    admin(&emu, "PUT", "/faults", Some(json!({ "rules": [rule] }))).await;
    let applied = run(
        &cfg,
        &[
            "--json",
            "apply-plan",
            "--plan",
            &format!("@{}", plan_file.display()),
        ],
    )
    .await;
    assert_eq!(applied.status.code(), Some(21), "{}", text(&applied.stderr));
    let results: Value = serde_json::from_str(&text(&applied.stdout)).unwrap();
    assert_eq!(results["counts"]["failed"], 2, "{results}");
    let results_file = results["results_file"].as_str().unwrap();
    assert!(Path::new(results_file).exists(), "{results}");
    admin(&emu, "PUT", "/faults", Some(json!({ "rules": [] }))).await;
    // The results file the result named plans the failures again, and they succeed.
    let retry = ok(&run(
        &cfg,
        &["--json", "plan-retry", "--results-file", results_file],
    )
    .await);
    std::fs::write(&plan_file, &retry).unwrap();
    let again = run(
        &cfg,
        &[
            "--json",
            "apply-plan",
            "--plan",
            &format!("@{}", plan_file.display()),
        ],
    )
    .await;
    let again: Value = serde_json::from_str(&ok(&again)).unwrap();
    assert_eq!(again["counts"]["succeeded"], 2, "{again}");

    // A plain number for a limit, and only that field changed.
    let before: Value =
        serde_json::from_str(&ok(&run(&cfg, &["--json", "get-device-policy"]).await)).unwrap();
    ok(&run(
        &cfg,
        &["set-device-policy", "--max-password-failed-attempts", "8"],
    )
    .await);
    let after: Value =
        serde_json::from_str(&ok(&run(&cfg, &["--json", "get-device-policy"]).await)).unwrap();
    assert_eq!(after["max_password_failed_attempts"], json!({"value": 8}));
    assert_eq!(after["password_enabled"], before["password_enabled"]);
    assert_eq!(
        after["max_inactivity_lock_minutes"],
        before["max_inactivity_lock_minutes"]
    );
    // A wrong type is an input error (2) naming the field.
    let bad = run(
        &cfg,
        &[
            "set-device-policy",
            "--max-password-failed-attempts",
            "true",
        ],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("max_password_failed_attempts"),
        "{}",
        text(&bad.stderr)
    );
}
