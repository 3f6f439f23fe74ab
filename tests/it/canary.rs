//! The secrets canary through Rust, the command line and the Samba hook (the C ABI, C#
//! and Python doors have theirs in their own suites, with the same rule): a unique client
//! secret, PKCS#12 passphrase, user passwords and TSIG key are used for real — against
//! the emulator, the Samba DC and BIND9 — and on purpose wrongly, with every event
//! recorded (the library's log: its event stream, progress included); then every output
//! is searched for each secret, as text, as UTF-16LE and as base64: the events (as JSON
//! and `Debug`), results and their files, errors (`Display` and `Debug`), the
//! configuration's `Debug`, the command line's human and `--json` output and standard
//! error, the service's log, the hook's answers to samba-tool, the store with its WAL
//! and journal. Zero occurrences.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use o365_essentials::config::IntegrationConfig;
use o365_essentials::engine::{CancelToken, Control, Event, Integration};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::dns::bind::Bind;
use crate::fixtures;
use crate::samba;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
}

/// The secrets of one run, each unique.
pub(crate) struct Canaries {
    pub(crate) named: Vec<(&'static str, String)>,
}

impl Canaries {
    /// Each secret as the bytes it could leak as.
    pub(crate) fn forms(&self) -> Vec<(String, Vec<u8>)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        for (name, s) in &self.named {
            out.push((format!("{name} (text)"), s.as_bytes().to_vec()));
            let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
            out.push((format!("{name} (UTF-16LE)"), utf16));
            out.push((format!("{name} (base64)"), b64.encode(s).into_bytes()));
            if let Ok(raw) = b64.decode(s)
                && raw.len() >= 16
            {
                out.push((format!("{name} (decoded)"), raw));
            }
        }
        out
    }

    pub(crate) fn hits(&self, what: &str, bytes: &[u8]) -> Vec<String> {
        self.forms()
            .into_iter()
            .filter(|(_, f)| bytes.windows(f.len()).any(|w| w == f.as_slice()))
            .map(|(name, _)| format!("{name} in {what}"))
            .collect()
    }
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// What a door produced, to search.
#[derive(Default)]
pub(crate) struct Outputs {
    pub(crate) texts: Vec<(String, Vec<u8>)>,
}

impl Outputs {
    pub(crate) fn add(&mut self, what: impl Into<String>, text: impl AsRef<[u8]>) {
        self.texts.push((what.into(), text.as_ref().to_vec()));
    }

    pub(crate) fn add_files(&mut self, dir: &Path, inputs: &[PathBuf]) {
        let mut files = Vec::new();
        walk(dir, &mut files);
        for f in files {
            if inputs.contains(&f) {
                continue;
            }
            self.add(
                f.display().to_string(),
                std::fs::read(&f).unwrap_or_default(),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaves_through_rust_the_command_line_or_the_hook() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let client_secret = unique("canary-client-secret-");
    let wrong_secret = unique("canary-wrong-secret-");
    let passphrase = unique("canary-pfx-passphrase-");
    let wrong_passphrase = unique("canary-wrong-passphrase-");
    // Samba's complexity rules; no token of the users' names (hex has no l, n, r, s, t, y).
    let pw = |n: u8| {
        format!(
            "Cn{n}#{}x7",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    };
    let (pw_rust, pw_rust_changed, pw_cli, pw_cli_changed, pw_samba) =
        (pw(1), pw(2), pw(3), pw(4), pw(5));
    let tsig = b64.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let wrong_tsig = b64.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let canaries = Canaries {
        named: vec![
            ("client secret", client_secret.clone()),
            ("wrong client secret", wrong_secret.clone()),
            ("PKCS#12 passphrase", passphrase.clone()),
            ("wrong PKCS#12 passphrase", wrong_passphrase.clone()),
            ("password (Rust)", pw_rust.clone()),
            ("changed password (Rust)", pw_rust_changed.clone()),
            ("password (command line)", pw_cli.clone()),
            ("changed password (command line)", pw_cli_changed.clone()),
            ("password (Samba, through the hook)", pw_samba.clone()),
            ("TSIG key", tsig.clone()),
            ("wrong TSIG key", wrong_tsig.clone()),
        ],
    };

    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let (cert, key, pfx) = fixtures::pkcs12(work, "canary-app", &passphrase);
    let mut emu_cfg = EmulatorConfig::default();
    emu_cfg.apps[0].client_secret = Some(client_secret.clone());
    emu_cfg.apps[0].certificates = vec![std::fs::read_to_string(&cert).unwrap()];
    let emu = Emulator::start(emu_cfg).await.unwrap();
    let zone = "canary-rust.co.uk";
    let dns = Bind::start_with_key(zone, &[], Some(("o365-update", &tsig)));
    reqwest::Client::new()
        .put(format!("{}/dns", emu.info().admin_url))
        .json(&json!({"server": dns.addr.to_string()}))
        .send()
        .await
        .unwrap();
    let tsig_file = fixtures::tsig_key_file(work, "tsig.key", &tsig);
    let wrong_tsig_file = fixtures::tsig_key_file(work, "wrong-tsig.key", &wrong_tsig);
    let samba = samba::capture();
    let config = |credential: Value, tsig: &Path| {
        let base = fixtures::config(samba, emu.info(), work);
        let extra = json!({
            "results_folder": work.join("results"),
            "dns": {"server": dns.addr.to_string(), "tsig_key_file": tsig}
        });
        let mut c = fixtures::merged(
            fixtures::merged(base, extra),
            fixtures::password_capture(samba),
        );
        c["tenant"]["credential"] = credential;
        c
    };
    let with_secret = config(
        json!({"kind": "secret", "secret": client_secret}),
        &tsig_file,
    );
    let with_pfx = config(
        json!({"kind": "pkcs12", "path": pfx, "password": passphrase}),
        &tsig_file,
    );
    let mut inputs = vec![
        cert.clone(),
        key.clone(),
        pfx.clone(),
        tsig_file.clone(),
        wrong_tsig_file.clone(),
    ];
    let mut out = Outputs::default();

    // Rust: the table of operations, every event recorded.
    let events = Arc::new(Mutex::new(String::new()));
    let ctl = {
        let events = events.clone();
        Control::with_observer(
            CancelToken::new(),
            Arc::new(move |e: &Event| {
                let mut t = events.lock().unwrap();
                t.push_str(&format!("{e:?}\n{}\n", serde_json::to_string(e).unwrap()));
            }),
        )
        .unwrap()
    };
    let parsed: IntegrationConfig = serde_json::from_value(with_secret.clone()).unwrap();
    out.add("the configuration's Debug", format!("{parsed:?}"));
    let integration = Integration::open(parsed).unwrap();
    let mut call = async |name: &str, params: Value| -> Value {
        let r = integration.call(name, params, &ctl).await;
        out.add(format!("{name} (Rust) result"), format!("{r:?}"));
        match r {
            Ok(v) => {
                out.add(format!("{name} (Rust) JSON"), v.to_string());
                v
            }
            Err(e) => {
                out.add(
                    format!("{name} (Rust) error"),
                    format!("{e} {}", e.action()),
                );
                Value::Null
            }
        }
    };
    call("integrate", json!({})).await;
    let user = |who: &str| {
        json!({"sam_account_name": format!("canary.{who}"),
            "user_principal_name": format!("canary.{who}@{}", samba::REALM),
            "display_name": format!("Canary {who}")})
    };
    let created = call(
        "create_user_with_account",
        json!({"user": user("rust"), "password": pw_rust}),
    )
    .await;
    let rust_guid = created["local"]["guid"].as_str().unwrap().to_string();
    // Again: a typed conflict, with the password in the parameters.
    call(
        "create_user_with_account",
        json!({"user": user("rust"), "password": pw_rust}),
    )
    .await;
    // A dashboard's password change: set on the DC, then handed to the engine.
    {
        use o365_essentials::ports::Directory as _;
        let dir = o365_essentials::ldap::LdapDirectory::new(samba.config()).unwrap();
        let guid: o365_essentials::model::ObjectGuid = rust_guid.parse().unwrap();
        dir.set_password(
            guid,
            &o365_essentials::SecretString::from(pw_rust_changed.clone()),
        )
        .await
        .unwrap();
    }
    call(
        "password_changed",
        json!({"local_guid": rust_guid, "password": pw_rust_changed}),
    )
    .await;
    call("deliver_passwords", json!({})).await;
    // The wrong TSIG key (before the right one links the domain): a typed refusal.
    let mut wrong = with_secret.clone();
    wrong["dns"]["tsig_key_file"] = json!(wrong_tsig_file);
    wrong["store"] = json!(work.join("wrong-tsig.db"));
    let other = Integration::open(serde_json::from_value(wrong).unwrap()).unwrap();
    other.call("integrate", json!({}), &ctl).await.unwrap();
    let e = other
        .call("link_domain", json!({"domain": zone}), &ctl)
        .await
        .unwrap_err();
    assert_eq!(e.code(), o365_essentials::ErrorCode::Auth, "{e}");
    assert!(e.to_string().contains("TSIG key"), "{e}");
    let tsig_refused = format!("{e} {e:?}");
    drop(other);
    let linked = call("link_domain", json!({"domain": zone})).await;
    assert_eq!(
        linked["stage"], "done",
        "linked with the TSIG key: {linked}"
    );
    call("sync_once", json!({})).await;
    out.add("link_domain with the wrong TSIG key (Rust)", tsig_refused);
    // The wrong secret, the wrong passphrase: typed errors.
    let mut wrong = with_secret.clone();
    wrong["tenant"]["credential"]["secret"] = json!(wrong_secret);
    wrong["store"] = json!(work.join("other.db"));
    let e = Integration::open(serde_json::from_value(wrong).unwrap())
        .unwrap()
        .call("integrate", json!({}), &ctl)
        .await
        .unwrap_err();
    out.add(
        "integrate with the wrong secret (Rust)",
        format!("{e} {e:?}"),
    );
    let mut wrong = with_pfx.clone();
    wrong["tenant"]["credential"]["password"] = json!(wrong_passphrase);
    let e = match Integration::open(serde_json::from_value(wrong).unwrap()) {
        Ok(i) => i.call("integrate", json!({}), &ctl).await.unwrap_err(),
        Err(e) => e,
    };
    out.add("the wrong passphrase (Rust)", format!("{e} {e:?}"));
    // The store while open: its WAL is there.
    out.add_files(work, &inputs);
    drop(integration);
    out.add("the events (Rust)", events.lock().unwrap().as_bytes());

    // The command line, with the PKCS#12 credential: human and --json output, errors.
    let cfg = work.join("config.json");
    crate::fixtures::write_private(&cfg, with_pfx.to_string());
    let mut wrong = with_pfx.clone();
    wrong["tenant"]["credential"]["password"] = json!(wrong_passphrase);
    let wrong_cfg = work.join("wrong.json");
    crate::fixtures::write_private(&wrong_cfg, wrong.to_string());
    let pw_file = |name: &str, p: &str| {
        let f = work.join(name);
        std::fs::write(&f, p).unwrap();
        f
    };
    let cli_pw = pw_file("pw-cli", &pw_cli);
    let cli_pw2 = pw_file("pw-cli-changed", &pw_cli_changed);
    inputs.extend([
        cfg.clone(),
        wrong_cfg.clone(),
        cli_pw.clone(),
        cli_pw2.clone(),
    ]);
    let user_json = user("cli").to_string();
    let create_args = [
        "create-user-with-account",
        "--user",
        &user_json,
        "--password",
        &format!("@{}", cli_pw.display()),
    ];
    let mut cli_guid = String::new();
    for (c, args) in [
        (&cfg, vec!["--json", "status"]),
        (&cfg, [&["--json"][..], &create_args[..]].concat()),
        (&cfg, create_args.to_vec()),
        (&cfg, [&["--json"][..], &create_args[..]].concat()),
        (&cfg, vec!["check-records", "--domain", zone]),
        (&cfg, vec!["--json", "deliver-passwords"]),
        (&wrong_cfg, vec!["status"]),
        (&wrong_cfg, vec!["--json", "licences"]),
        (&wrong_cfg, vec!["licences"]),
    ] {
        let o = Command::new(bin())
            .arg("--config")
            .arg(c)
            .args(&args)
            .output()
            .unwrap();
        let what = format!("o365-essentials {}", args.join(" "));
        if cli_guid.is_empty() && args.contains(&"create-user-with-account") {
            assert!(o.status.success(), "{what}: {o:?}");
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            cli_guid = v["local"]["guid"].as_str().unwrap().to_string();
        }
        out.add(format!("{what} (stdout)"), &o.stdout);
        out.add(format!("{what} (stderr)"), &o.stderr);
    }
    let o = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args([
            "--json",
            "password-changed",
            "--local-guid",
            &cli_guid,
            "--password",
        ])
        .arg(format!("@{}", cli_pw2.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    out.add("password-changed (stdout)", &o.stdout);
    out.add("password-changed (stderr)", &o.stderr);
    // The service: a few rounds, its log.
    let serve = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--interval", "1", "--delivery-interval", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &serve.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let served = serve.wait_with_output().unwrap();
    assert!(served.status.success());
    let log = String::from_utf8_lossy(&served.stdout).to_string();
    assert!(log.contains("sync_round_finished"), "{log}");
    out.add("the service's log", &served.stdout);
    out.add("the service's stderr", &served.stderr);

    // The hook: a password set on the DC, sent by samba-tool through the hook.
    let dn = format!("CN=Canary cli,CN=Users,{}", samba::BASE_DN);
    let utf16: Vec<u8> = format!("\"{pw_samba}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    samba.ldif(
        "ldapmodify",
        &format!(
            "dn: {dn}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n-\n",
            b64.encode(utf16)
        ),
    );
    let cache = fixtures::syncpasswords_cache(samba, &bin(), work);
    let hook = work.join("o365-essentials-samba-hook");
    inputs.push(hook.clone());
    let pass = samba
        .samba_tool(&["user", "syncpasswords", "--no-wait"])
        .arg(format!("--cache-ldb={}", cache.display()))
        .env("O365_ESSENTIALS_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(pass.status.success(), "{pass:?}");
    let said = String::from_utf8_lossy(&pass.stdout).to_string();
    assert!(said.contains("canary.cli: queued"), "{said}");
    out.add(
        "samba-tool syncpasswords with the hook (stdout)",
        &pass.stdout,
    );
    out.add(
        "samba-tool syncpasswords with the hook (stderr)",
        &pass.stderr,
    );
    // The hook's own error path: a broken LDIF.
    let mut broken = Command::new(&hook)
        .env("O365_ESSENTIALS_CONFIG", &cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = broken.stdin.take().unwrap();
        write!(
            stdin,
            "dn: CN=x\nvirtualSambaGPG:: {}\n",
            b64.encode(&pw_samba)
        )
        .unwrap();
    }
    let broken = broken.wait_with_output().unwrap();
    assert!(!broken.status.success());
    out.add("the hook refusing an LDIF (stdout)", &broken.stdout);
    out.add("the hook refusing an LDIF (stderr)", &broken.stderr);
    let delivered = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "deliver-passwords"])
        .output()
        .unwrap();
    out.add("deliver-passwords (stdout)", &delivered.stdout);
    let v: Value = serde_json::from_slice(&delivered.stdout).unwrap();
    assert!(v["delivered"].as_u64().unwrap() >= 1, "{v}");
    // Each password was used for real: the newest of each user is online.
    let state = crate::graph::admin(&emu, "GET", "/state", None).await;
    for (who, newest) in [("rust", &pw_rust_changed), ("cli", &pw_samba)] {
        let id = state["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["displayName"] == format!("Canary {who}"))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let check = crate::graph::admin(
            &emu,
            "POST",
            &format!("/users/{id}/check-password"),
            Some(json!({ "password": newest })),
        )
        .await;
        assert_eq!(check["matches"], true, "{who}'s newest password is online");
    }

    // Everything on disk now: the store, its journal, results files.
    out.add_files(work, &inputs);
    // The search finds what it looks for: the configuration holds the secret and the
    // passphrase, the hook's LDIF the password as UTF-16LE.
    let hits = canaries.hits("config.json", &std::fs::read(&cfg).unwrap());
    assert!(
        hits.iter()
            .any(|h| h.starts_with("PKCS#12 passphrase (text)")),
        "{hits:?}"
    );
    let planted: Vec<u8> = pw_samba.encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(canaries.hits("planted", &planted).len(), 1);
    let mut leaks = Vec::new();
    for (what, bytes) in &out.texts {
        leaks.extend(canaries.hits(what, bytes));
    }
    assert!(
        out.texts.len() > 40,
        "the outputs searched: {}",
        out.texts.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
