//! The configuration file, `init`, the service (`serve`) and the Samba password hook.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::ArgMatches;
use secrecy::SecretString;
use serde_json::{Value, json};

use o365_essentials::config::IntegrationConfig;
use o365_essentials::engine::{CancelToken, CaptureOutcome, Control, Event, Integration};
use o365_essentials::{Error, ErrorCode};

fn config_error(path: &str, why: String) -> Error {
    Error::new(
        ErrorCode::InvalidConfig,
        format!("the configuration file {path}: {why}"),
    )
}

/// The configuration text as JSON: a `.json` file (or text starting with `{`) is JSON,
/// anything else TOML. A TOML error names the line, never quotes it (it may hold a
/// secret).
pub(crate) fn config_json(path: &str, text: &str) -> Result<String, Error> {
    if path.ends_with(".json") || text.trim_start().starts_with('{') {
        return Ok(text.to_string());
    }
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        config_error(
            path,
            format!("not valid TOML at line {line}: {}", e.message()),
        )
    })?;
    serde_json::to_string(&table).map_err(|e| config_error(path, format!("{e}")))
}

/// Reads the configuration named by `--config` (or `O365_ESSENTIALS_CONFIG`).
pub(crate) fn load_config(matches: &ArgMatches) -> Result<IntegrationConfig, Error> {
    let path = config_path(matches);
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!(
                "; the service runs as the user o365-essentials, whose file it must be: chown o365-essentials: {path}"
            )
        } else {
            format!("; write one with `o365-essentials init {path}` or pass --config")
        };
        config_error(path, format!("cannot read it ({e}){hint}"))
    })?;
    let text = zeroize::Zeroizing::new(text);
    let json = zeroize::Zeroizing::new(config_json(path, &text)?);
    let config = IntegrationConfig::from_json(&json)?;
    if holds_secret(&config) {
        o365_essentials::platform::check_secret_path(
            Path::new(path),
            "configuration file (it holds a secret)",
        )?;
    }
    let mut config = config;
    // The password key's default lives with the configuration, not beside the store (a
    // copy of the state folder must not carry the key to its queue); an existing key
    // beside the store from an earlier version is used, and `requirements` warns of it.
    if config.password_key.is_none() && !config.password_key_path().exists() {
        let folder = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        config.password_key = Some(folder.join("password.key"));
    }
    Ok(config)
}

/// The configuration file named by `--config` (or `O365_ESSENTIALS_CONFIG`).
pub(crate) fn config_path(matches: &ArgMatches) -> &str {
    matches
        .get_one::<String>("config")
        .map(String::as_str)
        .unwrap_or("/etc/o365-essentials/o365-essentials.toml")
}

/// The hook runs as root under samba-tool (its ldapi socket needs root), and an
/// administrator or a Cockpit page may run commands as root, but nothing they do with an
/// integration needs root: reading the configuration, decrypting with the capture
/// keyring, the store are the service user's. When root runs the program and the
/// configuration belongs to another user, it becomes that user (its primary group, no
/// supplementary groups) before it reads anything of it, so the service user's files
/// can never make root run or write what they say (`password_capture.gpg`,
/// `results_folder`), and what it writes stays the service's. Must be called while the
/// process has one thread.
pub(crate) fn become_config_owner(path: &str) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    if rustix::process::geteuid().as_raw() != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // Reading it says what is wrong.
    };
    let uid = meta.uid();
    if uid == 0 {
        return Ok(());
    }
    let gid = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid))
                    .then(|| f[3].parse::<u32>().ok())
                    .flatten()
            })
        })
        .unwrap_or(meta.gid());
    let fail = |what: &str, e: rustix::io::Errno| {
        Error::internal(format!(
            "the hook could not become the owner of {path} (uid {uid}): {what}: {e}"
        ))
    };
    // One thread (no runtime yet): the thread's ids are the process's.
    rustix::thread::set_thread_groups(&[]).map_err(|e| fail("setgroups", e))?;
    let g = rustix::process::Gid::from_raw(gid);
    rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| fail("setresgid", e))?;
    let u = rustix::process::Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| fail("setresuid", e))?;
    // Dropping ids resets the dumpable flag: set it again.
    let _ = o365_essentials::platform::set_non_dumpable();
    Ok(())
}

/// Whether the configuration itself holds a secret (a client secret, a private key, a
/// PKCS#12 password, the directory's bind password) rather than naming files that do.
fn holds_secret(config: &IntegrationConfig) -> bool {
    use o365_essentials::ExposeSecret;
    use o365_essentials::graph::Credential;
    let tenant = match &config.tenant.credential {
        Credential::Secret { .. } => true,
        Credential::Certificate {
            private_key_pem, ..
        } => private_key_pem.is_some(),
        Credential::Pkcs12 { password, .. } => !password.expose_secret().is_empty(),
    };
    let directory = matches!(
        &config.directory,
        o365_essentials::config::DirectoryConfig::Ldap(l) if !l.password.expose_secret().is_empty()
    );
    tenant || directory
}

/// The starting configuration `init` writes (TOML, commented).
pub(crate) const TEMPLATE_TOML: &str = include_str!("o365-essentials.toml");

/// `init PATH`: writes a commented starting configuration (TOML, or JSON for `.json`),
/// 0600, refusing to overwrite unless `--force`.
pub(crate) fn init(m: &ArgMatches) -> Result<u8, Error> {
    let path = m
        .get_one::<String>("path")
        .ok_or_else(|| Error::new(ErrorCode::InvalidInput, "init needs the file to write"))?;
    if Path::new(path).exists() && !m.get_flag("force") {
        return Err(Error::new(
            ErrorCode::AlreadyExists,
            format!("{path} exists; pass --force to overwrite it"),
        ));
    }
    let text = if path.ends_with(".json") {
        let v: Value = serde_json::from_str(&config_json("template", TEMPLATE_TOML)?)
            .map_err(|e| Error::internal(format!("the template: {e}")))?;
        serde_json::to_string_pretty(&v).map_err(|e| Error::internal(format!("{e}")))? + "\n"
    } else {
        TEMPLATE_TOML.to_string()
    };
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())
    };
    write().map_err(|e| Error::new(ErrorCode::StoreIo, format!("cannot write {path}: {e}")))?;
    println!(
        "wrote {path}: fill in the tenant and the directory, then run `o365-essentials --config {path} requirements`"
    );
    Ok(0)
}

fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = t.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.subsec_millis()
    )
}

/// One structured log line on stdout (the journal keeps it).
pub(crate) fn log(level: &str, event: &str, mut fields: Value) {
    let mut line = json!({"time": now(), "level": level, "event": event});
    if let (Some(l), Some(f)) = (line.as_object_mut(), fields.as_object_mut()) {
        l.append(f);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// What the service last did well, kept beside the state store (`<store>.service.json`,
/// 0600) so `status` can show it from another process.
#[derive(Default)]
pub(crate) struct ServiceHealth {
    /// The service's process.
    pub(crate) pid: u32,
    /// When the last sync round finished without error.
    pub(crate) last_good_round: Option<String>,
    /// When the last password delivery round finished without error.
    pub(crate) last_delivery: Option<String>,
    /// When a password was last delivered.
    pub(crate) last_password_delivered: Option<String>,
}

impl ServiceHealth {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "pid": self.pid,
            "last_good_round": self.last_good_round,
            "last_delivery": self.last_delivery,
            "last_password_delivered": self.last_password_delivered,
        })
    }

    fn from_json(v: &Value) -> ServiceHealth {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        ServiceHealth {
            pid: v
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
            last_good_round: text("last_good_round"),
            last_delivery: text("last_delivery"),
            last_password_delivered: text("last_password_delivered"),
        }
    }
}

/// The file [`ServiceHealth`] is kept in.
pub(crate) fn health_path(config: &IntegrationConfig) -> std::path::PathBuf {
    let mut p = config.store.as_os_str().to_owned();
    p.push(".service.json");
    std::path::PathBuf::from(p)
}

/// Reads the service's health file, if the service ever ran.
pub(crate) fn read_health(config: &IntegrationConfig) -> Option<ServiceHealth> {
    let text = std::fs::read_to_string(health_path(config)).ok()?;
    serde_json::from_str::<Value>(&text)
        .ok()
        .map(|v| ServiceHealth::from_json(&v))
}

struct HealthFile {
    path: std::path::PathBuf,
    state: std::sync::Mutex<(ServiceHealth, std::time::Instant)>,
}

impl HealthFile {
    fn new(path: std::path::PathBuf) -> HealthFile {
        let health = ServiceHealth {
            pid: std::process::id(),
            ..ServiceHealth::default()
        };
        HealthFile {
            path,
            state: std::sync::Mutex::new((health, std::time::Instant::now())),
        }
    }

    /// Records progress (`f` changes the health); written through a temporary file.
    fn update(&self, f: impl FnOnce(&mut ServiceHealth)) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g.0);
        g.1 = std::time::Instant::now();
        let text = g.0.to_json().to_string();
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let written =
            o365_essentials::platform::private_file(&tmp, o365_essentials::platform::Create::New)
                .and_then(|mut file| file.write_all(text.as_bytes()))
                .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            log(
                "warn",
                "health_file_not_written",
                json!({"file": self.path.display().to_string(), "message": e.to_string()}),
            );
        }
    }

    /// Marks the loop alive (a round's progress) without writing.
    fn beat(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = std::time::Instant::now();
    }

    fn since_last_beat(&self) -> Duration {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .elapsed()
    }
}

/// A test build (debug assertions) can make a task panic on purpose, to show that the
/// service then exits non-zero; a release build has no such switch.
#[cfg(debug_assertions)]
fn injected_panic(task: &str) {
    if std::env::var("O365_ESSENTIALS_TEST_PANIC").ok().as_deref() == Some(task) {
        #[allow(clippy::panic)]
        {
            panic!("injected by O365_ESSENTIALS_TEST_PANIC={task}");
        }
    }
}

#[cfg(not(debug_assertions))]
fn injected_panic(_task: &str) {}

/// `serve`: the sync loop (a round every interval; after a failed round the next comes
/// sooner, backing off from 5 s to the interval) and the delivery of captured passwords
/// every few seconds, until SIGTERM or SIGINT, which stop it after the current item.
///
/// Neither may end while the service runs: if the sync loop or the delivery task ends
/// for any reason (a panic among them), `serve` logs why and fails, so systemd's
/// `Restart=on-failure` starts it again. Under `Type=notify` it reports `READY=1`, and
/// with `WatchdogSec=` it sends `WATCHDOG=1` only while the loop shows signs of life
/// (an event within the interval plus 15 minutes), so a hung round is restarted too.
pub(crate) async fn serve(
    integration: Arc<Integration>,
    m: &ArgMatches,
    setup: ServeSetup,
) -> Result<u8, Error> {
    let interval = m
        .get_one::<u64>("interval")
        .map(|s| Duration::from_secs(*s));
    let delivery = Duration::from_secs(m.get_one::<u64>("delivery-interval").copied().unwrap_or(5));
    let cancel = CancelToken::new();
    let health = Arc::new(HealthFile::new(setup.health_file));
    let observer = {
        let health = health.clone();
        Arc::new(move |e: &Event| {
            health.beat();
            let level = match e {
                Event::SyncRoundFinished {
                    error_code: Some(_),
                    ..
                }
                | Event::Warning { .. } => "warn",
                Event::PasswordRefused { .. } => "warn",
                _ => "info",
            };
            if let Event::SyncRoundFinished {
                error_code: None, ..
            } = e
            {
                let at = now();
                health.update(|h| h.last_good_round = Some(at));
            }
            if matches!(e, Event::Progress { .. }) {
                return;
            }
            let v = serde_json::to_value(e).unwrap_or(Value::Null);
            let name = v
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("event")
                .to_string();
            let mut fields = v;
            if let Some(o) = fields.as_object_mut() {
                o.remove("event");
            }
            log(level, &name, fields);
        })
    };
    let ctl = Control::with_observer(cancel.clone(), observer.clone())?;
    log(
        "info",
        "started",
        json!({"version": o365_essentials::VERSION, "pid": std::process::id()}),
    );
    for w in &setup.warnings {
        log("warn", "insecure_setting", json!({"message": w}));
    }
    let options = integration.sync().sync_options();
    let mut sync_loop = integration.clone().start_sync_loop(
        interval,
        options,
        ctl,
        Some(tokio::runtime::Handle::current()),
    )?;
    let mut deliver = {
        let integration = integration.clone();
        let cancel = cancel.clone();
        let observer = observer.clone();
        let health = health.clone();
        tokio::spawn(async move {
            while cancel.sleep(delivery).await.is_ok() {
                injected_panic("delivery");
                let Ok(ctl) = Control::with_observer(cancel.clone(), observer.clone()) else {
                    continue;
                };
                match integration.passwords().deliver_passwords_with(&ctl).await {
                    Ok(d) => {
                        let at = now();
                        let delivered = d.delivered > 0;
                        health.update(|h| {
                            if delivered {
                                h.last_password_delivered = Some(at.clone());
                            }
                            h.last_delivery = Some(at);
                        });
                        if d.delivered > 0 || !d.refused.is_empty() {
                            log(
                                "info",
                                "passwords_delivered",
                                json!({"delivered": d.delivered, "refused": d.refused.len(), "pending": d.pending}),
                            );
                        }
                    }
                    // The sync round delivers too; another process may hold the round.
                    Err(e)
                        if e.code() == ErrorCode::WorkHeld || e.code() == ErrorCode::Cancelled => {}
                    Err(e) => log(
                        "warn",
                        "password_delivery_failed",
                        json!({"code": e.code().name(), "message": e.to_string()}),
                    ),
                }
            }
        })
    };
    let notifier = crate::notify::Notifier::from_env();
    notifier.send("READY=1\nSTATUS=syncing");
    let watchdog = crate::notify::Notifier::watchdog();
    let alive_within = interval
        .unwrap_or(Duration::from_secs(setup.interval_secs))
        .saturating_add(Duration::from_secs(15 * 60));
    let pet = {
        let health = health.clone();
        async move {
            let Some(period) = watchdog else {
                return std::future::pending::<()>().await;
            };
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                if health.since_last_beat() < alive_within {
                    notifier.send("WATCHDOG=1");
                }
            }
        }
    };
    // The credential: warned about 30 days ahead, rolled `--roll-days` ahead (a
    // certificate setup made), checked at start and every hour.
    let roll_days = m.get_one::<i64>("roll-days").copied().unwrap_or(14);
    let credential = {
        let integration = integration.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            // A warning once a day is enough to be seen in the journal.
            let mut warned: Option<std::time::Instant> = None;
            loop {
                if let Some(c) = integration.credential_info() {
                    let due_warning =
                        warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(86_400));
                    if let Some(w) = c.warning.as_ref().filter(|_| due_warning) {
                        warned = Some(std::time::Instant::now());
                        log(
                            "warn",
                            "credential_expiring",
                            json!({"kind": c.kind, "expires": c.expires, "days_left": c.days_left, "message": w}),
                        );
                    }
                    let due = c.kind == "certificate"
                        && roll_days > 0
                        && c.days_left.is_some_and(|d| d <= roll_days);
                    if due {
                        match integration.roll_credential().await {
                            Ok(r) => log(
                                "info",
                                "credential_rolled",
                                json!({"added_key_id": r.added_key_id, "removed_key_id": r.removed_key_id, "certificate_expires": r.certificate_expires}),
                            ),
                            Err(e) => log(
                                "warn",
                                "credential_roll_failed",
                                json!({"code": e.code().name(), "message": e.to_string()}),
                            ),
                        }
                    }
                }
                if cancel.sleep(Duration::from_secs(3600)).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::internal(format!("cannot watch SIGTERM: {e}")))?;
    let died = tokio::select! {
        _ = term.recv() => { log("info", "stopping", json!({"signal": "SIGTERM"})); None }
        _ = tokio::signal::ctrl_c() => { log("info", "stopping", json!({"signal": "SIGINT"})); None }
        why = sync_loop.ended() => Some(why),
        r = &mut deliver => Some(match r {
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                format!("the password delivery task panicked: {why}")
            }
            Err(e) => format!("the password delivery task ended: {e}"),
            Ok(()) => "the password delivery task ended".to_string(),
        }),
        () = pet => None,
    };
    crate::notify::Notifier::from_env().send("STOPPING=1");
    cancel.cancel();
    if let Some(why) = died {
        log("error", "failed", json!({"message": why}));
        // What still runs stops with the process; systemd restarts the service.
        return Err(Error::internal(format!(
            "{why}; the service stops so that systemd restarts it"
        )));
    }
    let rounds = sync_loop.stop_async().await;
    let _ = deliver.await;
    // A roll under way finishes (its new key proven or not) rather than stop half way.
    let _ = tokio::time::timeout(Duration::from_secs(30), credential).await;
    log("info", "stopped", json!({"rounds": rounds}));
    Ok(0)
}

/// What `serve` takes from the configuration besides the integration.
pub(crate) struct ServeSetup {
    /// Where the service's health is kept ([`health_path`]).
    pub(crate) health_file: std::path::PathBuf,
    /// The sync interval configured.
    pub(crate) interval_secs: u64,
    /// [`config_warnings`].
    pub(crate) warnings: Vec<String>,
}

impl ServeSetup {
    pub(crate) fn from_config(config: &IntegrationConfig) -> ServeSetup {
        ServeSetup {
            health_file: health_path(config),
            interval_secs: config.sync.interval_secs,
            warnings: config_warnings(config),
        }
    }
}

/// Settings that weaken the protection of a secret: `serve`, `requirements` and
/// `status` show them on every run.
pub(crate) fn config_warnings(config: &IntegrationConfig) -> Vec<String> {
    match &config.directory {
        o365_essentials::config::DirectoryConfig::Ldap(l) => l.security_warnings(),
        _ => Vec::new(),
    }
}

/// `samba-hook`: one account's LDIF on stdin from `samba-tool user syncpasswords
/// --script`. Answers `DONE-EXIT: …` on stdout when the account is handled (queued,
/// repeated, deleted, no password, not linked); nothing ever goes to stderr (samba-tool
/// would stop). A failure it cannot handle prints its reason on stdout without
/// `DONE-EXIT:` and exits 1, so samba-tool stops and delivers the account again when it
/// is restarted.
pub(crate) fn samba_hook(matches: &ArgMatches) -> u8 {
    let fail = |e: &Error| {
        println!(
            "o365-essentials samba-hook: error {}: {e} ({})",
            e.code().name(),
            e.action()
        );
        1
    };
    if let Err(e) = become_config_owner(config_path(matches)) {
        return fail(&e);
    }
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        return fail(&Error::new(
            ErrorCode::InvalidInput,
            format!("cannot read stdin: {e}"),
        ));
    }
    let ldif = SecretString::from(text);
    let run = || -> Result<o365_essentials::engine::CaptureReport, Error> {
        let config = load_config(matches)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
        let integration = {
            let _g = rt.enter();
            Integration::open(config)?
        };
        rt.block_on(integration.passwords().capture_password(&ldif))
    };
    match run() {
        Ok(r) => {
            let who = r
                .sam_account_name
                .clone()
                .unwrap_or_else(|| r.local_guid.to_string());
            let what = match r.outcome {
                CaptureOutcome::Queued => "queued",
                CaptureOutcome::Repeated => "already queued (same password version)",
                CaptureOutcome::Deleted => "deleted: nothing to send",
                CaptureOutcome::NoPassword => "no password in the change",
                CaptureOutcome::NotLinked => "no online account and none to be made: nothing kept",
                CaptureOutcome::Protected => "protected or out of scope: neither sent nor kept",
                CaptureOutcome::Kept => {
                    "no online account yet: kept for the account a bulk create makes"
                }
                CaptureOutcome::Disabled => "integration disabled: not sent",
            };
            let version = r
                .key_version
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default();
            println!("DONE-EXIT: {who}: {what}{version}");
            0
        }
        Err(e) => fail(&e),
    }
}
