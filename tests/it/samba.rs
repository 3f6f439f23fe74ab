//! A throwaway Samba AD domain controller for the tests: provisioned into the target's
//! temporary directory, on its own 127.0.0.N, with a TLS certificate issued by a CA the
//! tests trust (Samba's own has no subjectAltName). One instance per test binary, shared;
//! it stops when the test process ends (Samba runs with `-i` and exits when its stdin
//! closes). It installs nothing: scripts/setup does; a missing Samba fails loudly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const REALM: &str = "essentials.test";
pub(crate) const BASE_DN: &str = "DC=essentials,DC=test";
pub(crate) const ADMIN_PASSWORD: &str = "Admin-Passw0rd!";

pub(crate) struct Samba {
    pub ip: String,
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    process: Mutex<Option<(Child, ChildStdin)>>,
    /// Samba's GnuPG home: the capture key's public half.
    pub samba_gnupg: PathBuf,
    /// The integration's GnuPG home: the capture key's private half.
    pub capture_gnupg: PathBuf,
    /// The capture key's fingerprint (`password hash gpg key ids`).
    pub key_id: String,
    /// Ends the GnuPG agents of both homes when this test process ends (its end of the
    /// pipe closes then, however the process ends), as Samba's own stdin ends Samba.
    _reaper: Option<(Child, ChildStdin)>,
}

/// A shell that waits for its stdin to close, then stops the gpg-agents of `homes`.
fn agent_reaper(homes: &[&Path]) -> Option<(Child, ChildStdin)> {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"cat >/dev/null; for h in "$@"; do gpgconf --homedir "$h" --kill gpg-agent; done"#)
        .arg("agent-reaper");
    for h in homes {
        c.arg(h);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    Some((child, stdin))
}

fn need(tool: &str) -> PathBuf {
    for d in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{tool}` is not installed: Samba AD is needed for the LDAP tests (scripts/setup installs samba, samba-ad-dc, samba-ad-provision, ldap-utils)"
    );
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free 127.0.0.N (ports 389/636 cannot be changed, so each DC needs its own address).
fn free_ip(seed: u32) -> String {
    for k in 0..200 {
        let n = 20 + (seed + k) % 200;
        let ip = format!("127.0.0.{n}");
        if std::net::TcpListener::bind((ip.as_str(), 636)).is_ok()
            && std::net::TcpListener::bind((ip.as_str(), 389)).is_ok()
        {
            return ip;
        }
    }
    panic!("no free 127.0.0.N for Samba");
}

/// Makes the capture key: (Samba's keyring with the public key, the integration's keyring
/// with the private key, the fingerprint).
fn gpg_keys(dir: &Path) -> (PathBuf, PathBuf, String) {
    let gpg = need("gpg");
    let capture = dir.join("gnupg-capture");
    let samba = dir.join("gnupg-samba");
    for d in [&capture, &samba] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    run(
        Command::new(&gpg).arg("--homedir").arg(&capture).args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "o365-essentials test <capture@essentials.test>",
            "rsa2048",
            "encr,sign",
            "never",
        ]),
        "gpg --quick-gen-key",
    );
    let listed = Command::new(&gpg)
        .arg("--homedir")
        .arg(&capture)
        .args(["--list-keys", "--with-colons"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let fpr = listed
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| f.len() == 40))
        .unwrap_or_else(|| panic!("no fingerprint in gpg's list: {listed}"))
        .to_string();
    let public = Command::new(&gpg)
        .arg("--homedir")
        .arg(&capture)
        .args(["--export", &fpr])
        .output()
        .unwrap();
    assert!(!public.stdout.is_empty(), "gpg exported no public key");
    let mut import = Command::new(&gpg)
        .arg("--homedir")
        .arg(&samba)
        .args(["--batch", "--import"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(&public.stdout)
        .unwrap();
    assert!(
        import.wait().unwrap().success(),
        "gpg --import into Samba's keyring"
    );
    (samba, capture, fpr)
}

impl Samba {
    /// Provisions and starts a new DC.
    pub(crate) fn start(name: &str) -> Samba {
        let tool = need("samba-tool");
        need("samba");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("samba-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = free_ip(std::process::id() % 200 + name.len() as u32 * 17);
        let d = dir.display().to_string();
        // Password capture (SAMBA-PASSWORDS.md): every password set is encrypted to a key
        // whose public half is in Samba's keyring and whose private half only the
        // integration's keyring holds.
        let (samba_gnupg, capture_gnupg, key_id) = gpg_keys(&dir);
        let opt = |o: String| format!("--option={o}");
        run(
            Command::new(tool)
                .env("GNUPGHOME", &samba_gnupg)
                .args([
                    "domain",
                    "provision",
                    "--realm=ESSENTIALS.TEST",
                    "--domain=ESSENTIALS",
                    "--server-role=dc",
                    "--dns-backend=SAMBA_INTERNAL",
                    "--backend-store=mdb",
                    "--host-name=dc1",
                ])
                .arg(format!("--adminpass={ADMIN_PASSWORD}"))
                .arg(format!("--targetdir={d}"))
                .arg(opt(format!("interfaces={ip}/8")))
                .arg(opt("bind interfaces only=yes".into()))
                .arg(opt(format!("pid directory={d}/run")))
                .arg(opt(format!("ncalrpc dir={d}/ncalrpc")))
                .arg(opt(format!("winbindd socket directory={d}/winbindd")))
                .arg(opt(format!("ntp signd socket directory={d}/ntp_signd")))
                .arg(opt(format!("log file={d}/log/log.%m")))
                .arg(opt(format!("password hash gpg key ids={key_id}")))
                .arg(opt(
                    "server services=-dns -dnsupdate -nbt -wrepl -ntp_signd -kcc -s3fs -winbindd"
                        .into(),
                )),
            "samba-tool domain provision",
        );
        // A CA and a server certificate with the DC's address in its subjectAltName.
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let t = |f: &str| tls.join(f).display().to_string();
        run(
            Command::new("openssl").args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3",
                "-subj",
                "/CN=o365-essentials test CA",
                "-keyout",
                &t("ca.key"),
                "-out",
                &t("ca.pem"),
            ]),
            "openssl CA",
        );
        run(
            Command::new("openssl").args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=dc1.essentials.test",
                "-keyout",
                &t("key.pem"),
                "-out",
                &t("req.csr"),
            ]),
            "openssl CSR",
        );
        std::fs::write(
            tls.join("ext.cnf"),
            format!("subjectAltName=IP:{ip},DNS:dc1.essentials.test\n"),
        )
        .unwrap();
        run(
            Command::new("openssl").args([
                "x509",
                "-req",
                "-in",
                &t("req.csr"),
                "-CA",
                &t("ca.pem"),
                "-CAkey",
                &t("ca.key"),
                "-CAcreateserial",
                "-days",
                "3",
                "-extfile",
                &t("ext.cnf"),
                "-out",
                &t("cert.pem"),
            ]),
            "openssl sign",
        );
        std::fs::set_permissions(
            tls.join("key.pem"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let conf = dir.join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let extra = format!(
            "[global]\n\ttls enabled = yes\n\ttls keyfile = {}\n\ttls certfile = {}\n\ttls cafile = {}\n\told password allowed period = 0\n",
            t("key.pem"),
            t("cert.pem"),
            t("ca.pem")
        );
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("dns forwarder"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replacen("[global]\n", &extra, 1);
        std::fs::write(&conf, text).unwrap();
        // A user may change their own password at once (the default minimum age is a day).
        run(
            Command::new(need("samba-tool"))
                .env("GNUPGHOME", &samba_gnupg)
                .args(["domain", "passwordsettings", "set", "--min-pwd-age=0", "-H"])
                .arg(dir.join("private/sam.ldb")),
            "samba-tool domain passwordsettings set --min-pwd-age=0",
        );
        let samba = Samba {
            ip,
            ca_file: tls.join("ca.pem"),
            dir,
            process: Mutex::new(None),
            _reaper: agent_reaper(&[&samba_gnupg, &capture_gnupg]),
            samba_gnupg,
            capture_gnupg,
            key_id,
        };
        samba.launch();
        samba
    }

    /// Starts (or restarts) the samba process and waits until LDAPS answers.
    pub(crate) fn launch(&self) {
        let log = std::fs::File::create(self.dir.join("samba.out")).unwrap();
        let mut child = Command::new(need("samba"))
            .env("GNUPGHOME", &self.samba_gnupg)
            .arg("-s")
            .arg(self.dir.join("etc/smb.conf"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-M", "single", "-i", "--no-process-group"])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start samba");
        let stdin = child.stdin.take().unwrap();
        *self.process.lock().unwrap() = Some((child, stdin));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .admin_tool("ldapsearch")
                .args(["-b", "", "-s", "base", "dnsHostName"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if let Some((c, _)) = self.process.lock().unwrap().as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "samba exited ({status}) — see {}",
                    self.dir.join("samba.out").display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Samba did not answer LDAPS on {} within 60 s — see {}",
                self.ip,
                self.dir.join("samba.out").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the samba process (its data stays).
    pub(crate) fn stop(&self) {
        if let Some((mut c, stdin)) = self.process.lock().unwrap().take() {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn config(&self) -> o365_essentials::ldap::LdapConfig {
        let mut c = o365_essentials::ldap::LdapConfig::new(
            format!("ldaps://{}", self.ip),
            format!("Administrator@{REALM}"),
            ADMIN_PASSWORD,
        );
        c.ca_file = Some(self.ca_file.clone());
        c.host_name = Some("dc1.essentials.test".into());
        c
    }

    /// An OpenLDAP client tool bound as Administrator over LDAPS with the test CA.
    fn admin_tool(&self, tool: &str) -> Command {
        let mut c = Command::new(need(tool));
        c.env("LDAPTLS_CACERT", &self.ca_file).args([
            "-H",
            &format!("ldaps://{}", self.ip),
            "-x",
            "-D",
            &format!("Administrator@{REALM}"),
            "-w",
            ADMIN_PASSWORD,
        ]);
        c
    }

    /// Runs `ldapmodify` with an LDIF bound as `bind` (a UPN) with `password`, over
    /// LDAPS; whether the server took it.
    pub(crate) fn ldif_as(&self, bind: &str, password: &str, ldif: &str) -> bool {
        let mut child = Command::new(need("ldapmodify"))
            .env("LDAPTLS_CACERT", &self.ca_file)
            .args([
                "-H",
                &format!("ldaps://{}", self.ip),
                "-x",
                "-D",
                bind,
                "-w",
                password,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    }

    /// `samba-tool SUBCOMMAND...` on this DC (its smb.conf; Samba's GnuPG home).
    pub(crate) fn samba_tool(&self, sub: &[&str]) -> Command {
        let mut c = Command::new(need("samba-tool"));
        c.env("GNUPGHOME", &self.samba_gnupg).args(sub).arg(format!(
            "--configfile={}",
            self.dir.join("etc/smb.conf").display()
        ));
        c
    }

    /// Runs `ldapadd` (or `ldapmodify`) with an LDIF, as Administrator over LDAPS.
    pub(crate) fn ldif(&self, tool: &str, ldif: &str) {
        let mut child = self
            .admin_tool(tool)
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

static SHARED: OnceLock<Samba> = OnceLock::new();

/// The DC shared by this test binary.
pub(crate) fn shared() -> &'static Samba {
    SHARED.get_or_init(|| Samba::start("shared"))
}

static CAPTURE: OnceLock<Samba> = OnceLock::new();

/// A second DC, shared by the tests that run `samba-tool user syncpasswords`: its first
/// pass hands every account of the domain to the hook, one process each, and the shared
/// DC holds thousands (the 10,000-member group of ldap.rs) by the time they run.
pub(crate) fn capture() -> &'static Samba {
    CAPTURE.get_or_init(|| Samba::start("capture"))
}
