//! Issue 28: the attacks an adversarial review found, each reproduced against the real
//! component — links from an answer that lead the token elsewhere, listings that never
//! end, token lifetimes that overflow, secret files others can read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use o365_essentials::ErrorCode;
use o365_essentials::graph::GraphTenant;
use o365_essentials::ports::Tenant;
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A tiny HTTP/1.1 server on `ip`, answering every request with `answer(path, port)`
/// as JSON, and keeping every request's head (request line and headers) it received.
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    pub(crate) heads: Arc<Mutex<Vec<String>>>,
    pub(crate) connections: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub(crate) async fn start(
        ip: &str,
        answer: impl Fn(&str, u16) -> (u16, Value) + Send + Sync + 'static,
    ) -> Listener {
        let socket = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {ip}: {e}"));
        let addr = socket.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let answer = Arc::new(answer);
        let (h, c) = (heads.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = socket.accept().await else {
                    return;
                };
                *c.lock().unwrap() += 1;
                let (h, answer) = (h.clone(), answer.clone());
                tokio::spawn(async move {
                    loop {
                        let mut buf = Vec::new();
                        let mut byte = [0u8; 1];
                        while !buf.ends_with(b"\r\n\r\n") {
                            match s.read(&mut byte).await {
                                Ok(1) => buf.push(byte[0]),
                                _ => return,
                            }
                        }
                        let head = String::from_utf8_lossy(&buf).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        let mut body = vec![0u8; len];
                        if s.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        h.lock().unwrap().push(head);
                        let (status, v) = answer(&path, addr.port());
                        let text = v.to_string();
                        let out = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if s.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Listener {
            addr,
            heads,
            connections,
            task,
        }
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A Graph that answers the account listing with `next` as the next link; the token
/// still comes from the emulator's identity platform.
async fn graph_with_next_link(
    emu: &Emulator,
    next: impl Fn(u16) -> String + Send + Sync + 'static,
) -> (Listener, GraphTenant) {
    let fake = Listener::start("127.0.0.1", move |_path, port| {
        (200, json!({"value": [], "@odata.nextLink": next(port)}))
    })
    .await;
    let mut cfg = crate::graph::config_for(emu);
    cfg.graph_url = format!("http://{}/v1.0", fake.addr);
    cfg.max_pages = 5;
    (fake, GraphTenant::new(cfg).unwrap())
}

#[tokio::test]
async fn a_next_link_to_another_address_gets_no_request_and_no_token() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let rogue = Listener::start("127.0.0.2", |_, _| (200, json!({"value": []}))).await;
    let rogue_url = format!("http://{}/v1.0/users?page=2", rogue.addr);
    let (fake, tenant) = graph_with_next_link(&emu, move |_| rogue_url.clone()).await;
    let e = tenant
        .accounts()
        .try_collect::<Vec<_>>()
        .await
        .expect_err("the rogue link is refused");
    assert_eq!(e.code(), ErrorCode::UntrustedResponse, "{e}");
    assert!(e.message().contains("127.0.0.2"), "{e}");
    assert_eq!(fake.requests().len(), 1);
    assert!(
        fake.requests()[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer"),
        "the configured Graph gets the token"
    );
    assert_eq!(
        *rogue.connections.lock().unwrap(),
        0,
        "{:?}",
        rogue.requests()
    );
    assert!(rogue.requests().is_empty());

    // The same origin on another port is another origin; so is another scheme.
    let other_port = format!("http://127.0.0.1:{}/v1.0/users", rogue.addr.port());
    let (_fake, tenant) = graph_with_next_link(&emu, move |_| other_port.clone()).await;
    let e = tenant.accounts().try_collect::<Vec<_>>().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UntrustedResponse, "{e}");
    let other_scheme = |port: u16| format!("https://127.0.0.1:{port}/v1.0/users");
    let (_fake, tenant) = graph_with_next_link(&emu, other_scheme).await;
    let e = tenant.accounts().try_collect::<Vec<_>>().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UntrustedResponse, "{e}");
}

#[tokio::test]
async fn a_self_referencing_next_link_stops_at_the_page_cap() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (fake, tenant) = graph_with_next_link(&emu, |port| {
        format!("http://127.0.0.1:{port}/v1.0/users?again")
    })
    .await;
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tenant.accounts().try_collect::<Vec<_>>(),
    )
    .await
    .expect("the listing ends")
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::UntrustedResponse, "{e}");
    assert!(e.message().contains("max_pages"), "{e}");
    assert_eq!(
        fake.requests().len(),
        5,
        "exactly max_pages pages were read"
    );
}

#[tokio::test]
async fn a_delta_link_to_another_address_is_refused_before_it_is_kept() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let rogue = Listener::start("127.0.0.2", |_, _| (200, json!({"value": []}))).await;
    let rogue_url = format!("http://{}/v1.0/users/delta?token=x", rogue.addr);
    let fake = Listener::start("127.0.0.1", move |_, _| {
        (200, json!({"value": [], "@odata.deltaLink": rogue_url}))
    })
    .await;
    let mut cfg = crate::graph::config_for(&emu);
    cfg.graph_url = format!("http://{}/v1.0", fake.addr);
    let tenant = GraphTenant::new(cfg).unwrap();
    let e = tenant.changes(None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UntrustedResponse, "{e}");
    // A stored delta link that leads elsewhere is not followed either.
    let stored = format!("http://{}/v1.0/users/delta?token=y", rogue.addr);
    let e = tenant.changes(Some(&stored)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
    assert_eq!(*rogue.connections.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_huge_token_lifetime_or_retry_after_does_not_panic() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let login = Listener::start("127.0.0.1", |_, _| {
        (
            200,
            json!({"access_token": "t", "token_type": "Bearer", "expires_in": 18446744073709551615u64}),
        )
    })
    .await;
    let graph = Listener::start("127.0.0.1", |_, _| (200, json!({"value": []}))).await;
    let mut cfg = crate::graph::config_for(&emu);
    cfg.login_url = format!("http://{}", login.addr);
    cfg.graph_url = format!("http://{}/v1.0", graph.addr);
    let tenant = GraphTenant::new(cfg).unwrap();
    let accounts: Vec<_> = tenant.accounts().try_collect().await.unwrap();
    assert!(accounts.is_empty());
    // The second call uses the cached token: its refresh time was computed safely.
    let accounts: Vec<_> = tenant.accounts().try_collect().await.unwrap();
    assert!(accounts.is_empty());
    assert_eq!(login.requests().len(), 1);
}

/// A TCP listener on `ip` that keeps every byte it is sent.
async fn byte_sink(ip: &str) -> (SocketAddr, Arc<Mutex<Vec<u8>>>, Arc<Mutex<u32>>) {
    let socket = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(Mutex::new(0));
    let (g, c) = (got.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = socket.accept().await {
            *c.lock().unwrap() += 1;
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    g.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, got, connections)
}

/// Forwards connections on `ip` to `to`: the DC reached under another address.
async fn forward(ip: &str, to: SocketAddr) -> SocketAddr {
    let socket = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = socket.accept().await {
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_plain_ldap_listener_receives_no_password_unless_the_admin_says_so_loudly() {
    use o365_essentials::ldap::{LdapConfig, LdapDirectory};
    use o365_essentials::ports::Directory;
    const PASSWORD: &str = "Plain-Text-Bind-Passw0rd";
    let (addr, got, connections) = byte_sink("127.0.0.3").await;
    let mut c = LdapConfig::new(format!("ldap://{addr}"), "svc@essentials.test", PASSWORD);
    c.allow_plain = true;
    c.timeout_secs = 2.0;
    assert!(c.security_warnings().is_empty());
    let e = LdapDirectory::new(c.clone())
        .unwrap()
        .topology()
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig, "{e}");
    assert!(e.message().contains("allow_plain_password"), "{e}");
    assert!(!e.to_string().contains(PASSWORD));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        *connections.lock().unwrap(),
        0,
        "no connection is even made"
    );
    assert!(got.lock().unwrap().is_empty());

    // Said explicitly: it is sent (that is the point of the setting), and warned about.
    c.allow_plain_password = true;
    let w = c.security_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("unencrypted"), "{w:?}");
    let _ = LdapDirectory::new(c.clone()).unwrap().topology().await;
    let sent = String::from_utf8_lossy(&got.lock().unwrap()).to_string();
    assert!(sent.contains(PASSWORD), "the opt-in works as documented");

    // The requirements check says so on every run, through every door.
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = o365_essentials::config::IntegrationConfig::from_json(
        &json!({"tenant": {"tenant_id": "t", "client_id": "c",
                           "credential": {"kind": "secret", "secret": "s"}},
                "store": tmp.path().join("state.db")})
        .to_string(),
    )
    .unwrap();
    config.tenant = crate::graph::config_for(&emu);
    config.directory = o365_essentials::config::DirectoryConfig::Ldap(c);
    let integration = o365_essentials::engine::Integration::open(config).unwrap();
    let report = integration.requirements(None).await;
    let warned = report
        .checks
        .iter()
        .find(|k| k.id == "directory_password_in_clear")
        .unwrap_or_else(|| panic!("no warning: {report:?}"));
    assert_eq!(warned.status, o365_essentials::model::CheckStatus::Warn);
    assert!(!format!("{report:?}").contains(PASSWORD));
}

#[tokio::test]
async fn certificate_verification_cannot_be_switched_off_only_replaced_by_a_pin() {
    use o365_essentials::ldap::LdapDirectory;
    use o365_essentials::ports::Directory;
    let s = crate::samba::shared();
    let mut c = s.config();
    c.verify_certificates = false;
    let e = LdapDirectory::new(c).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.message().contains("certificate_sha256"), "{e}");

    // The DC's own certificate, pinned as the docs say: no CA needed.
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(s.dir.join("tls/cert.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let pin = line.trim().rsplit('=').next().unwrap().to_string();
    let mut c = s.config();
    c.ca_file = None;
    c.certificate_sha256 = Some(pin.clone());
    LdapDirectory::new(c).unwrap().topology().await.unwrap();

    // Another certificate (the CA's own fingerprint) is an impostor.
    let mut wrong = pin.replace(':', "");
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(63.., last);
    let mut c = s.config();
    c.ca_file = None;
    c.certificate_sha256 = Some(wrong);
    let e = LdapDirectory::new(c).unwrap().topology().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Tls, "{e}");

    let mut c = s.config();
    c.certificate_sha256 = Some("not hex".into());
    assert_eq!(
        LdapDirectory::new(c).unwrap_err().code(),
        ErrorCode::InvalidConfig
    );
}

#[tokio::test]
async fn host_name_is_the_tls_name_when_the_url_has_another_address() {
    use o365_essentials::ldap::LdapDirectory;
    use o365_essentials::ports::Directory;
    let s = crate::samba::shared();
    let dc: SocketAddr = format!("{}:636", s.ip).parse().unwrap();
    let other = forward("127.0.0.4", dc).await;
    let mut c = s.config();
    c.url = format!("ldaps://{other}");
    c.host_name = Some("dc1.essentials.test".into());
    let t = LdapDirectory::new(c.clone())
        .unwrap()
        .topology()
        .await
        .unwrap();
    assert_eq!(t.connected_dc, "dc1.essentials.test");
    // Neither the address nor the name given matches: refused.
    c.host_name = Some("impostor.essentials.test".into());
    let e = LdapDirectory::new(c).unwrap().topology().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Tls, "{e}");
}

fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// A configuration (JSON) of the demo company on the emulator, holding the client
/// secret, written with `mode`.
fn demo_config(emu: &Emulator, dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let i = emu.info();
    let config = json!({
        "directory": "demo",
        "tenant": {"tenant_id": i.tenant_id, "client_id": i.client_id,
                   "login_url": i.login_url, "graph_url": i.graph_url,
                   "exchange_url": i.exchange_url, "sharepoint_url": i.sharepoint_url,
                   "credential": {"kind": "secret", "secret": i.client_secret}},
        "store": dir.join("state.db"),
        "sync": {"interval_secs": 1}
    });
    let path = dir.join("o365-essentials.json");
    crate::fixtures::write_private(&path, config.to_string());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_others_can_read_are_refused_with_the_chmod_to_run() {
    use o365_essentials::config::IntegrationConfig;
    use o365_essentials::engine::Integration;
    use std::os::unix::fs::PermissionsExt;
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // The configuration holding the client secret, 0644.
    let cfg = demo_config(&emu, tmp.path(), 0o644);
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("mode 0644"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", cfg.display())),
        "{err}"
    );
    let secret = emu.info().client_secret.clone().unwrap_or_default();
    assert!(!err.contains(&secret));
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        !text(&out.stderr).contains("chmod"),
        "0600 is accepted: {}",
        text(&out.stderr)
    );

    // The password key, 0644.
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let key = tmp.path().join("password.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = base.clone();
    c["password_key"] = json!(key);
    let config = IntegrationConfig::from_json(&c.to_string()).unwrap();
    let e = Integration::open(config).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig, "{e}");
    assert!(e.message().contains("password key file"), "{e}");
    assert!(
        e.message()
            .contains(&format!("chmod 600 {}", key.display())),
        "{e}"
    );

    // The TSIG key, 0640 (group-readable is refused too).
    let tsig = crate::fixtures::tsig_key_file(tmp.path(), "tsig.key", "c2VjcmV0");
    std::fs::set_permissions(&tsig, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut c = base.clone();
    c["dns"] = json!({"tsig_key_file": tsig});
    let config = IntegrationConfig::from_json(&c.to_string()).unwrap();
    let e = Integration::open(config).unwrap_err();
    assert!(e.message().contains("TSIG key file"), "{e}");
    assert!(e.message().contains("mode 0640"), "{e}");

    // The certificate's private key, 0644.
    let (cert, key) = crate::graph::self_signed_rsa(tmp.path(), "app");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut g = crate::graph::config_for(&emu);
    g.credential = o365_essentials::graph::Credential::Certificate {
        certificate_pem: None,
        certificate_file: Some(cert),
        private_key_pem: None,
        private_key_file: Some(key.clone()),
    };
    let e = GraphTenant::new(g).unwrap_err();
    assert!(e.message().contains("private key file"), "{e}");
    assert!(
        e.message()
            .contains(&format!("chmod 600 {}", key.display())),
        "{e}"
    );
}

#[tokio::test]
async fn a_secret_from_a_missing_file_is_never_echoed_and_an_inline_one_is_warned_about() {
    for json_flag in [false, true] {
        let mut c = std::process::Command::new(bin());
        if json_flag {
            c.arg("--json");
        }
        let out = c
            .args([
                "password-changed",
                "--local-guid",
                "00000000-0000-0000-0000-000000000001",
                "--password",
                "@Rest-Of-The-Passw0rd",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(!all.contains("Rest-Of"), "{all}");
        assert!(all.contains("cannot be read"), "{all}");
    }
    // Inline: a warning pointing at `-` and `@FILE` (the run then fails on the missing
    // configuration, which is beside the point).
    let out = std::process::Command::new(bin())
        .args(["--config", "/nonexistent/o365.toml"])
        .args([
            "password-changed",
            "--local-guid",
            "00000000-0000-0000-0000-000000000001",
            "--password",
            "Inline-Passw0rd",
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("warning: --password"), "{err}");
    assert!(err.contains("`-`") && err.contains("`@FILE`"), "{err}");
    assert!(!err.contains("Inline-Passw0rd"), "{err}");
}

/// Starts `serve` on `cfg` with `env`; its JSON log lines come through the receiver.
fn serve(
    cfg: &std::path::Path,
    env: &[(&str, String)],
) -> (std::process::Child, std::sync::mpsc::Receiver<Value>) {
    let mut c = std::process::Command::new(bin());
    c.arg("--config")
        .arg(cfg)
        .args(["serve", "--interval", "1", "--delivery-interval", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
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
    (child, rx)
}

fn wait_exit(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the service did not exit within {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_the_service_that_dies_makes_serve_exit_non_zero() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = demo_config(&emu, tmp.path(), 0o600);
    let (mut child, rx) = serve(
        &cfg,
        &[("O365_ESSENTIALS_TEST_PANIC", "delivery".to_string())],
    );
    let status = tokio::task::spawn_blocking(move || {
        wait_exit(&mut child, std::time::Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(!status.success(), "{status}");
    assert_eq!(status.code(), Some(10), "an internal error's exit code");
    let lines: Vec<Value> = rx.try_iter().collect();
    let failed = lines
        .iter()
        .find(|v| v["event"] == "failed")
        .unwrap_or_else(|| panic!("no `failed` line: {lines:?}"));
    assert_eq!(failed["level"], "error");
    assert!(
        failed["message"].as_str().unwrap().contains("panicked"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tells_systemd_it_is_ready_pets_the_watchdog_and_status_shows_its_last_good_round() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = demo_config(&emu, tmp.path(), 0o600);
    let integrate = std::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("integrate")
        .output()
        .unwrap();
    assert!(integrate.status.success(), "{}", text(&integrate.stderr));
    let socket_path = tmp.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let (mut child, rx) = serve(
        &cfg,
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".to_string()),
        ],
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !(got.iter().any(|m: &String| m.contains("READY=1"))
        && got.iter().any(|m| m == "WATCHDOG=1"))
    {
        let n = socket.recv(&mut buf).expect("a notification within 30 s");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    // A good round, then the health file says when.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("log lines");
        if v["event"] == "sync_round_finished" && v.get("error_code").is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no good round");
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = std::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .output()
        .unwrap();
    let shown = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(shown.contains("last_good_round: 20"), "{shown}");
    assert!(shown.contains("last_delivery: 20"), "{shown}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut child, std::time::Duration::from_secs(30));
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let n = socket.recv(&mut buf).unwrap();
    let mut rest = vec![String::from_utf8_lossy(&buf[..n]).to_string()];
    socket.set_nonblocking(true).unwrap();
    while let Ok(n) = socket.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}

/// `systemd-analyze security`'s overall exposure of a unit file (0 safe … 10 unsafe).
fn exposure(unit: &str) -> f64 {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/systemd")
        .join(unit);
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect(
            "systemd-analyze (package systemd) is needed for this test; scripts/setup installs it",
        );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure for {unit}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure from {line}"))
}

#[test]
fn the_units_are_sandboxed_to_the_scores_promised() {
    for (unit, at_most) in [
        ("o365-essentials.service", 2.5),
        ("o365-essentials@.service", 2.5),
        ("o365-essentials-syncpasswords.service", 5.0),
    ] {
        let e = exposure(unit);
        assert!(e <= at_most, "{unit} is rated {e}, more than {at_most}");
    }
    let service = include_str!("../../packaging/systemd/o365-essentials.service");
    for line in [
        "User=o365-essentials",
        "Type=notify",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "UMask=0077",
    ] {
        assert!(service.contains(line), "the service unit lacks {line}");
    }
}

#[test]
fn a_lease_wait_too_long_for_the_clock_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = o365_essentials::store::Store::open(tmp.path().join("state.db")).unwrap();
    let lease = store
        .lease(
            o365_essentials::store::Work::Sync,
            Some(std::time::Duration::MAX),
        )
        .expect("a free lease is taken at once");
    drop(lease);
}

/// The hook runs as root under samba-tool. A configuration the service user owns (and so
/// could rewrite) names the program the hook runs to decrypt (`password_capture.gpg`):
/// the hook must have become the service user before it reads that file, or the service
/// user could make root run anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_run_by_root_becomes_the_configurations_owner_before_reading_it() {
    use o365_essentials::ldap::LdapDirectory;
    use o365_essentials::ports::Directory;
    use std::os::unix::fs::{PermissionsExt, chown};
    assert_eq!(
        effective_uid(),
        0,
        "this test runs as root, as samba-tool runs the hook"
    );
    const NOBODY: u32 = 65534;
    let s = crate::samba::shared();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    // A user of the DC whose password the hook is handed.
    let sam = format!("hookpriv{}", std::process::id() % 100_000);
    // An enabled user without an online account: one whose password the hook keeps.
    let user = LdapDirectory::new(s.config())
        .unwrap()
        .create_user(
            &o365_essentials::model::NewLocalUser {
                sam_account_name: sam.clone(),
                user_principal_name: format!("{sam}@{}", crate::samba::REALM),
                display_name: format!("Hook {sam}"),
                ..Default::default()
            },
            &o365_essentials::SecretString::from("Zebra-Hook-2026!"),
        )
        .await
        .expect("the user was made");

    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = tmp.path().join("state");
    let gnupg = state.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    for d in [&state, &gnupg] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    // The "gpg" the configuration names: it says who ran it.
    let evil = tmp.path().join("evil-gpg");
    std::fs::write(
        &evil,
        format!(
            "#!/bin/sh\nid -u > {}/ran-as\ncat >/dev/null\nexit 2\n",
            state.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The DC pinned (the service user cannot read the test CA's folder).
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(s.dir.join("tls/cert.pem"))
        .output()
        .unwrap();
    let pin = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    let mut config = crate::fixtures::config(s, emu.info(), &state);
    config["directory"]["ldap"]
        .as_object_mut()
        .unwrap()
        .remove("ca_file");
    config["directory"]["ldap"]["certificate_sha256"] = json!(pin);
    config["password_capture"] = json!({"gnupg_home": gnupg, "gpg": evil});
    // The key in the service user's folder (its default is beside the configuration,
    // in a folder root owns here).
    config["password_key"] = json!(state.join("password.key"));
    let cfg = crate::fixtures::write(tmp.path(), "o365-essentials.json", &config);
    chown(&cfg, Some(NOBODY), Some(NOBODY)).unwrap();

    // An administrator's command as root works as the owner too: the store it makes is
    // the service user's.
    let mut status = std::process::Command::new(bin());
    status.arg("--config").arg(&cfg).arg("status");
    let out = tokio::task::spawn_blocking(move || status.output().unwrap())
        .await
        .unwrap();
    assert!(
        !text(&out.stderr).contains("belongs to uid"),
        "{}",
        text(&out.stderr)
    );
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(state.join("state.db"))
            .unwrap_or_else(|e| panic!("no store ({e}): {}", text(&out.stderr)));
        assert_eq!(meta.uid(), NOBODY, "the store is the owner's, not root's");
    }

    let ldif = format!(
        "objectGUID: {}\nmsDS-KeyVersionNumber: 4\nvirtualSambaGPG:: LS0tLS1CRUdJTiBQR1AgTUVTU0FHRS0tLS0tCgpoUUVNQQotLS0tLUVORCBQR1AgTUVTU0FHRS0tLS0tCg==\n",
        user.guid
    );
    let mut hook = std::process::Command::new(bin());
    hook.arg("--config")
        .arg(&cfg)
        .arg("samba-hook")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = hook.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let ran_as = std::fs::read_to_string(state.join("ran-as")).unwrap_or_else(|e| {
        panic!(
            "the decrypting program did not run ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(ran_as.trim(), NOBODY.to_string(), "never root");
    assert!(
        !out.status.success(),
        "the fake gpg fails the decryption: {}",
        text(&out.stdout)
    );
}

fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just made is its effective user.
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid()
}
