//! The Cockpit page (`cockpit/o365-essentials`): every operation of the engine's table has
//! a place in it or a stated reason why not; and the page in a real browser — headless
//! Chromium driven by Selenium (`tests/dashboard/browser.py`) against `cockpit-ws` started
//! here on 127.0.0.1 with a local session, a Samba DC of its own with 30 users, and the
//! emulator: the wizard from the requirements to a bulk create of 30 users with a live
//! progress bar, a Cancel and a rerun that creates exactly the rest; a distribution group;
//! a wipe refused until the device id is typed again; the domain's records; bad input
//! shown with the engine's message and action; axe-core on every tab; 1280×800 and phone
//! width.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use o365_essentials::ops::OPERATIONS;
use o365_essentials_emulator::config::{Delay, Seed, SeedDevice, SeedDomain, SeedUser};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::samba::{BASE_DN, REALM, Samba};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The operations the page's table (`operations.js`) names: (used by a tab, left out).
fn page_table() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(root().join("cockpit/o365-essentials/operations.js"))
        .expect("cockpit/o365-essentials/operations.js");
    let (pages, left_out) = text
        .split_once("export const NOT_IN_PAGE")
        .expect("operations.js has NOT_IN_PAGE");
    let mut used = BTreeSet::new();
    for part in pages.split("operations: [").skip(1) {
        let list = part.split(']').next().unwrap_or_default();
        for name in list.split(',') {
            let name = name.trim().trim_matches('"');
            if !name.is_empty() {
                used.insert(name.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    for line in left_out.lines() {
        let line = line.trim();
        if let Some((name, reason)) = line.split_once(": \"")
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            assert!(reason.len() > 40, "{name}: say why the page leaves it out");
            out.insert(name.to_string());
        }
    }
    (used, out)
}

#[test]
fn every_operation_an_administrator_needs_has_a_place_in_the_page() {
    let (used, left_out) = page_table();
    let table: BTreeSet<String> = OPERATIONS.iter().map(|o| o.name.to_string()).collect();
    let missing: Vec<_> = table
        .iter()
        .filter(|n| !used.contains(*n) && !left_out.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "operations with no place in the Cockpit page (add them to a tab in cockpit/o365-essentials/operations.js and app.js, or to NOT_IN_PAGE with the reason): {missing:?}"
    );
    let unknown: Vec<_> = used
        .union(&left_out)
        .filter(|n| !table.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "the page names operations the engine lacks: {unknown:?}"
    );
    let both: Vec<_> = used.intersection(&left_out).collect();
    assert!(both.is_empty(), "both used and left out: {both:?}");
    // Every operation a tab names is reachable from app.js's code for that tab: app.js
    // names it (as a view, a form or a button).
    let app = std::fs::read_to_string(root().join("cockpit/o365-essentials/app.js")).unwrap();
    let unreached: Vec<_> = used
        .iter()
        .filter(|n| !app.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        unreached.is_empty(),
        "named in operations.js but not in app.js: {unreached:?}"
    );
}

/// Every process of a group this test started ends with the test.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// The test's own DC (30 users of its own), stopped with the test.
struct Dc(Samba);

impl Drop for Dc {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn emulator_config() -> EmulatorConfig {
    let mut cfg = EmulatorConfig::default();
    // Every write takes 150–200 ms: a bulk create of 30 lasts long enough for Cancel.
    cfg.latency.write = Delay {
        fixed_ms: 150,
        jitter_ms: 50,
    };
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
        ..cfg.seed
    };
    cfg
}

fn results_files(dir: &Path) -> Vec<Value> {
    let mut out: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("bulk_create-") && n.ends_with(".json")
        })
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();
    out.sort_by_key(|v| v["started_at"].as_str().unwrap_or_default().to_string());
    out
}

fn succeeded(run: &Value) -> usize {
    run["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "succeeded")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser_against_cockpit_samba_and_the_emulator() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    // The package folder, as the Debian package lays it out, in a data dir of our own.
    let share = work.path().join("share");
    let pkg = share.join("cockpit/o365-essentials");
    let built = Command::new(root().join("cockpit/build"))
        .arg(&pkg)
        .status()
        .expect("cockpit/build runs (npm is needed for PatternFly)");
    assert!(built.success(), "cockpit/build failed");

    let dc = Dc(tokio::task::spawn_blocking(|| Samba::start("dashboard"))
        .await
        .unwrap());
    let dc = &dc.0;
    let mut ldif = String::new();
    for i in 0..30 {
        ldif.push_str(&format!(
            "dn: CN=Dash {i:02},CN=Users,{BASE_DN}\nobjectClass: user\nsAMAccountName: dash{i:02}\n\
             userPrincipalName: dash{i:02}@{REALM}\ndisplayName: Dash {i:02}\n\
             userAccountControl: 544\n\n"
        ));
    }
    // Enabled (a normal account with no password required: 544), so the browser's
    // disable (546) is a change the next sync propagates.
    dc.ldif("ldapadd", &ldif);

    let emu = Emulator::start(emulator_config()).await.unwrap();
    let results = work.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let config = crate::fixtures::merged(
        crate::fixtures::config(dc, emu.info(), work.path()),
        json!({"results_folder": results, "concurrency": 2}),
    );
    let config_file = crate::fixtures::write(work.path(), "o365-essentials.json", &config);

    // cockpit-ws with a local session: the bridge runs as this user, finds the package in
    // our data dir, and runs the program from this build with our configuration.
    let ws_bin = Path::new("/usr/lib/cockpit/cockpit-ws");
    assert!(
        ws_bin.exists(),
        "cockpit-ws is missing: scripts/setup installs cockpit-ws, cockpit-bridge, cockpit-system"
    );
    let port = free_port();
    let program_dir = PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        program_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ws = Group(
        Command::new(ws_bin)
            .args(["--address", "127.0.0.1", "--port", &port.to_string()])
            .arg("--local-session=cockpit-bridge")
            .env("PATH", &path)
            .env("HOME", &home)
            .env("XDG_DATA_DIRS", format!("{}:/usr/share", share.display()))
            .env("O365_ESSENTIALS_CONFIG", &config_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("cockpit-ws.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("cockpit-ws starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cockpit-ws did not listen on 127.0.0.1:{port}: {}",
            std::fs::read_to_string(work.path().join("cockpit-ws.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The same page for a user without administrative access (nobody): cockpit-ws as that
    // user, the package readable, the configuration not.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let nobody_home = work.path().join("home-nobody");
    std::fs::create_dir_all(&nobody_home).unwrap();
    std::os::unix::fs::chown(&nobody_home, Some(65534), Some(65534)).unwrap();
    let port_nobody = free_port();
    let ws_nobody = Group(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(ws_bin)
            .args(["--address", "127.0.0.1", "--port", &port_nobody.to_string()])
            .arg("--local-session=cockpit-bridge")
            .env("PATH", &path)
            .env("HOME", &nobody_home)
            .env("XDG_DATA_DIRS", format!("{}:/usr/share", share.display()))
            .env("O365_ESSENTIALS_CONFIG", &config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("cockpit-ws starts as nobody"),
    );
    for p in [port, port_nobody] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cockpit-ws did not listen on 127.0.0.1:{p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Cockpit lists the page in its menu (the shell builds the menu from the manifests).
    let manifests: Value = reqwest::get(format!(
        "http://127.0.0.1:{port}/cockpit/@localhost/manifests.json"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        manifests["o365-essentials"]["menu"]["index"]["label"], "Microsoft 365",
        "the page is in Cockpit's menu"
    );

    // The browser's part.
    let out_dir = root().join("build/dashboard");
    std::fs::create_dir_all(&out_dir).unwrap();
    let python = root().join("build/venv/bin/python");
    assert!(python.exists(), "build/venv is missing: run scripts/setup");
    let admin = emu.info().admin_url.clone();
    let mut script = Command::new(python);
    script
        .arg(root().join("tests/dashboard/browser.py"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}/cockpit/@localhost/o365-essentials/index.html"),
        ])
        .arg("--out")
        .arg(&out_dir)
        .arg("--axe")
        .arg(root().join("cockpit/node_modules/axe-core/axe.min.js"))
        .args(["--admin-url", &admin])
        .args(["--users", "30"])
        .args([
            "--unprivileged-url",
            &format!(
                "http://127.0.0.1:{port_nobody}/cockpit/@localhost/o365-essentials/index.html"
            ),
        ])
        .args(["--ldap-uri", &format!("ldaps://{}", dc.ip)])
        .arg("--ldap-ca")
        .arg(&dc.ca_file)
        .args(["--ldap-bind", &format!("Administrator@{REALM}")])
        .args(["--disable-dn", &format!("CN=Dash 05,CN=Users,{BASE_DN}")])
        .env("DASHBOARD_LDAP_PASSWORD", crate::samba::ADMIN_PASSWORD)
        .process_group(0);
    let output = tokio::task::spawn_blocking(move || script.output().unwrap())
        .await
        .unwrap();
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{said}");
    assert!(output.status.success(), "the browser test failed:\n{said}");
    drop(ws);
    drop(ws_nobody);

    // What the page did, as the engine recorded it: the first run stopped part way by
    // Cancel, the rerun created exactly the rest — each of the 30 once.
    let runs = results_files(&results);
    assert!(
        runs.len() >= 2,
        "a cancelled run and its rerun: {} results files",
        runs.len()
    );
    let first = succeeded(&runs[0]);
    assert!(
        first > 0 && first < 30,
        "Cancel landed part way: {first} of 30"
    );
    let total: usize = runs.iter().map(succeeded).sum();
    assert_eq!(
        total, 30,
        "each of the 30 created exactly once over the runs"
    );
    let stats: Value = reqwest::get(format!("{admin}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["user_created"].as_u64(), Some(30), "{stats}");
    println!(
        "dashboard browser test: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Cockpit's `close("terminate")` (the page closed mid-run) sends SIGTERM: the program
/// stops a bulk create at an item boundary as on Ctrl-C, saves what was done and exits
/// 130; a rerun plans exactly the rest. The progress events of `--verbose` say when the
/// run is under way (no sleep). The program runs blocking on one worker; the emulator
/// answers on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_bulk_create_at_an_item_boundary() {
    use std::io::BufRead;
    let mut cfg = EmulatorConfig::default();
    cfg.latency.write = Delay {
        fixed_ms: 25,
        jitter_ms: 10,
    };
    let emu = Emulator::start(cfg).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let i = emu.info();
    let config = json!({
        "directory": {"demo_company": {"people": 300}},
        "tenant": {"tenant_id": i.tenant_id, "client_id": i.client_id,
            "credential": {"kind": "secret", "secret": i.client_secret},
            "login_url": i.login_url, "graph_url": i.graph_url,
            "exchange_url": i.exchange_url, "sharepoint_url": i.sharepoint_url},
        "store": tmp.path().join("state.db"), "results_folder": tmp.path(),
        "usage_location": "GB", "concurrency": 4
    });
    let cfg = crate::fixtures::write(tmp.path(), "c.json", &config);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"));
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["integrate"]);
    let plan: Value = serde_json::from_str(&run(&["--json", "plan-bulk-create"])).unwrap();
    let planned = plan["items"].as_array().unwrap().len();
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let (stdout, child_err, pid) = tokio::task::spawn_blocking({
        let bin = bin.clone();
        let cfg = cfg.clone();
        move || {
            let mut child = Command::new(bin)
                .arg("--config")
                .arg(&cfg)
                .args(["--json", "-v", "apply-plan", "--plan"])
                .arg(format!("@{}", plan_file.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let pid = child.id();
            let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
            let mut line = String::new();
            loop {
                line.clear();
                assert!(
                    err.read_line(&mut line).unwrap() > 0,
                    "ended before any progress"
                );
                if let Ok(e) = serde_json::from_str::<Value>(&line)
                    && e["event"] == "progress"
                    && e["done"].as_u64().unwrap_or(0) > 0
                {
                    break;
                }
            }
            assert!(
                Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .unwrap()
                    .success()
            );
            // stderr drained beside stdout (a full pipe would stop the program).
            let drain = std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut err, &mut rest);
                rest
            });
            let out = child.wait_with_output().unwrap();
            (out, drain.join().unwrap(), pid)
        }
    })
    .await
    .unwrap();
    let _ = pid;
    assert_eq!(stdout.status.code(), Some(130), "{child_err}");
    let answer: Value = serde_json::from_slice(&stdout.stdout).unwrap();
    assert_eq!(answer["error"]["code_name"], "cancelled", "{answer}");
    let done = succeeded(&answer["error"]["partial"]);
    assert!(done > 0 && done < planned, "{done} of {planned}");
    let runs = results_files(tmp.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(succeeded(&runs[0]), done, "the results file says the same");
    let rest: Value = serde_json::from_str(&run(&["--json", "plan-bulk-create"])).unwrap();
    assert_eq!(
        rest["items"].as_array().unwrap().len(),
        planned - done,
        "nothing lost, nothing twice"
    );
}
