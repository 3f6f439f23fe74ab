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
/// The configuration file the command runs with.
pub(crate) fn config_path(matches: &ArgMatches) -> String {
    matches
        .get_one::<String>("config")
        .map(String::as_str)
        .unwrap_or("/etc/o365-essentials/o365-essentials.toml")
        .to_string()
}

pub(crate) fn load_config(matches: &ArgMatches) -> Result<IntegrationConfig, Error> {
    let path = config_path(matches);
    let path = path.as_str();
    let text = std::fs::read_to_string(path).map_err(|e| {
        config_error(
            path,
            format!("cannot read it ({e}); write one with `o365-essentials init {path}` or pass --config"),
        )
    })?;
    IntegrationConfig::from_json(&config_json(path, &text)?)
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

/// `serve`: the sync loop (a round every interval; after a failed round the next comes
/// sooner, backing off from 5 s to the interval) and the delivery of captured passwords
/// every few seconds, until SIGTERM or SIGINT, which stop it after the current item.
pub(crate) async fn serve(integration: Arc<Integration>, m: &ArgMatches) -> Result<u8, Error> {
    let interval = m
        .get_one::<u64>("interval")
        .map(|s| Duration::from_secs(*s));
    let delivery = Duration::from_secs(m.get_one::<u64>("delivery-interval").copied().unwrap_or(5));
    let cancel = CancelToken::new();
    let observer = Arc::new(|e: &Event| {
        let level = match e {
            Event::SyncRoundFinished {
                error_code: Some(_),
                ..
            }
            | Event::Warning { .. } => "warn",
            Event::PasswordRefused { .. } => "warn",
            _ => "info",
        };
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
    });
    let ctl = Control::with_observer(cancel.clone(), observer.clone())?;
    log(
        "info",
        "started",
        json!({"version": o365_essentials::VERSION, "pid": std::process::id()}),
    );
    let options = integration.sync_options();
    let sync_loop = integration.clone().start_sync_loop(
        interval,
        options,
        ctl,
        Some(tokio::runtime::Handle::current()),
    )?;
    let deliver = {
        let integration = integration.clone();
        let cancel = cancel.clone();
        let observer = observer.clone();
        tokio::spawn(async move {
            while cancel.sleep(delivery).await.is_ok() {
                let Ok(ctl) = Control::with_observer(cancel.clone(), observer.clone()) else {
                    continue;
                };
                match integration.deliver_passwords_with(&ctl).await {
                    Ok(d) if d.delivered > 0 || !d.refused.is_empty() => log(
                        "info",
                        "passwords_delivered",
                        json!({"delivered": d.delivered, "refused": d.refused.len(), "pending": d.pending}),
                    ),
                    Ok(_) => {}
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
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    log("info", "stopping", json!({"signal": why}));
    cancel.cancel();
    let rounds = sync_loop.stop_async().await;
    let _ = deliver.await;
    // A roll under way finishes (its new key proven or not) rather than stop half way.
    let _ = tokio::time::timeout(Duration::from_secs(30), credential).await;
    log("info", "stopped", json!({"rounds": rounds}));
    Ok(0)
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
        rt.block_on(integration.capture_password(&ldif))
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
