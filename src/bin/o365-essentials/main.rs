//! `o365-essentials`: the command line and the service of a server — every operation of
//! the engine's table as a subcommand, `serve` (the sync loop and password delivery under
//! systemd), `samba-hook` (the password hook `samba-tool user syncpasswords --script`
//! runs) and `init` (a commented starting configuration).
//!
//! The program is a thin front door: the subcommands, their options and their types are
//! read from the table (`ops::OPERATIONS`, the parameters' JSON Schema); each runs
//! `Integration::call_json`.

// Printing results, errors and logs is what a command line is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod notify;
mod output;
mod service;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use o365_essentials::engine::{CancelToken, Control, Integration};
use o365_essentials::{Error, ErrorCode, ErrorFamily};

/// The exit code of an error: one per family, so scripts can branch on it.
pub(crate) fn exit_code(e: &Error) -> u8 {
    if e.code() == ErrorCode::Cancelled {
        return 130;
    }
    match e.code().family() {
        ErrorFamily::Input => 2,
        ErrorFamily::Auth => 3,
        ErrorFamily::Object => 4,
        ErrorFamily::Service => 5,
        ErrorFamily::Policy => 6,
        ErrorFamily::Store => 7,
        ErrorFamily::Engine => 8,
        ErrorFamily::Dns => 9,
        ErrorFamily::Operation => 10,
    }
}

/// The exit code of `requirements` when a check failed (the report is printed; it is not
/// an error of the command).
pub(crate) const CHECKS_FAILED: u8 = 20;
/// The exit code of a run that ended with failed items (apply-plan, import-users, a sync
/// run; deliver-passwords with refused passwords): the results are printed and in the
/// results file, and a retry plans only the failures.
pub(crate) const DONE_WITH_FAILURES: u8 = 21;

/// The exit code of an operation that returned `result` (JSON): 0, or one of the codes
/// above when the work ran but did not all succeed.
pub(crate) fn outcome_code(op: &str, result: &str) -> u8 {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(result) else {
        return 0;
    };
    if op == "requirements"
        && v["checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["status"] == "fail"))
    {
        return CHECKS_FAILED;
    }
    let failed = |r: &serde_json::Value| r["counts"]["failed"].as_u64().is_some_and(|n| n > 0);
    let refused = |r: &serde_json::Value| r["refused"].as_array().is_some_and(|a| !a.is_empty());
    if failed(&v) || failed(&v["results"]) || refused(&v) || refused(&v["passwords"]) {
        return DONE_WITH_FAILURES;
    }
    0
}

/// The name under which the program is the Samba hook (a link to it): samba-tool runs
/// its `--script` without arguments, the configuration comes from
/// `O365_ESSENTIALS_CONFIG`.
const HOOK_NAME: &str = "o365-essentials-samba-hook";

fn main() -> ExitCode {
    // Passwords and keys pass through this process (the service, the hook, --password):
    // no core dump keeps them, and no other process of the same user may read its memory.
    let _ = o365_essentials::platform::set_non_dumpable();
    let called = std::env::args_os().next().unwrap_or_default();
    let as_hook =
        std::path::Path::new(&called).file_name() == Some(std::ffi::OsStr::new(HOOK_NAME));
    let parsed = if as_hook {
        args::command().try_get_matches_from(["o365-essentials", "samba-hook"])
    } else {
        args::command().try_get_matches()
    };
    let matches = match parsed {
        Ok(m) => m,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = matches.get_flag("json");
    let result = run(&matches, json);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::error(&e, json);
            ExitCode::from(exit_code(&e))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("o365-essentials")
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))
}

fn run(matches: &clap::ArgMatches, json: bool) -> Result<u8, Error> {
    let (name, sub) = matches
        .subcommand()
        .ok_or_else(|| Error::new(ErrorCode::InvalidInput, "no command; see --help"))?;
    match name {
        "init" => service::init(sub),
        "operations" => {
            output::operations(json);
            Ok(0)
        }
        "samba-hook" => Ok(service::samba_hook(matches)),
        "serve" => {
            service::become_config_owner(service::config_path(matches))?;
            let config = service::load_config(matches)?;
            let setup = service::ServeSetup::from_config(&config);
            let rt = runtime()?;
            let _guard = rt.enter();
            let integration = Arc::new(Integration::open(config)?);
            rt.block_on(service::serve(integration, sub, setup))
        }
        op => {
            let info = args::operation(op).ok_or_else(|| {
                Error::new(ErrorCode::UnknownOperation, format!("no command `{op}`"))
            })?;
            // Root (an administrator, a Cockpit page) works as the configuration's owner,
            // the service user: its files decide nothing root does, and what it writes
            // stays the service's. Still one thread here.
            service::become_config_owner(service::config_path(matches))?;
            let mut params = args::params(info, sub)?;
            if info.name == "setup" {
                params = with_config_file(&params, service::config_path(matches));
            }
            let config = service::load_config(matches)?;
            // The requirements report has the warnings as checks of its own.
            let shows_health = op == "status";
            let warnings = service::config_warnings(&config);
            let health = (op == "status")
                .then(|| service::read_health(&config))
                .flatten();
            let rt = runtime()?;
            let integration = {
                let _guard = rt.enter();
                Integration::open(config)?
            };
            let lease_wait = matches.get_one::<u64>("lease-wait").copied();
            let verbose = matches.get_flag("verbose");
            let code = rt.block_on(call(&integration, info, &params, lease_wait, json, verbose));
            if shows_health {
                for w in &warnings {
                    eprintln!("warning: {}", o365_essentials::validate::printable(w));
                }
            }
            if let Some(h) = health
                && !json
                && code.is_ok()
            {
                output::service_health(&h);
            }
            code
        }
    }
}

/// `setup` writes the tenant section of the configuration it runs with, unless told
/// another file.
fn with_config_file(params: &str, path: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(params).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(o) = v.as_object_mut() {
        o.entry("config_file")
            .or_insert_with(|| serde_json::Value::String(path.to_string()));
    }
    v.to_string()
}

async fn call(
    integration: &Integration,
    info: &o365_essentials::ops::OperationInfo,
    params: &str,
    lease_wait: Option<u64>,
    json: bool,
    verbose: bool,
) -> Result<u8, Error> {
    let cancel = CancelToken::new();
    let progress = info.long_running && !json && std::io::stderr().is_terminal();
    let bar = Arc::new(output::ProgressBar::new(progress));
    let mut ctl = if info.long_running || verbose {
        let bar = bar.clone();
        Control::with_observer(
            cancel.clone(),
            Arc::new(move |e: &o365_essentials::engine::Event| {
                // The sign-in code goes out whatever else is shown: setup waits for it.
                if let o365_essentials::engine::Event::SignIn { message, .. } = e {
                    if json {
                        output::event_line(e);
                    } else {
                        eprintln!("{message}");
                    }
                    return;
                }
                if verbose {
                    output::event_line(e);
                }
                bar.event(e)
            }),
        )?
    } else {
        Control::with_cancel(cancel.clone())
    };
    if let Some(secs) = lease_wait {
        ctl = ctl.with_lease_wait(std::time::Duration::from_secs(secs));
    }
    // Ctrl-C stops long work at its next item boundary; a second one ends the program.
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping at the next item boundary (Ctrl-C again to quit at once)");
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let outcome = integration.call_json(info.name, params, &ctl).await;
    drop(ctl);
    watcher.abort();
    bar.finish();
    let text = outcome?;
    output::result(info, &text, json);
    Ok(outcome_code(info.name, &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_that_ran_with_failures_has_its_own_exit_codes() {
        let fail = r#"{"checks": [{"id": "a", "status": "pass"}, {"id": "b", "status": "fail"}]}"#;
        let warn = r#"{"checks": [{"id": "a", "status": "warn"}]}"#;
        assert_eq!(outcome_code("requirements", fail), CHECKS_FAILED);
        assert_eq!(outcome_code("requirements", warn), 0);
        let run = |failed: u32| {
            format!(r#"{{"items": [], "counts": {{"succeeded": 3, "failed": {failed}}}}}"#)
        };
        assert_eq!(outcome_code("apply_plan", &run(1)), DONE_WITH_FAILURES);
        assert_eq!(outcome_code("apply_plan", &run(0)), 0);
        let import = format!(r#"{{"imported": [], "results": {}}}"#, run(2));
        assert_eq!(outcome_code("import_users", &import), DONE_WITH_FAILURES);
        let delivery = r#"{"delivered": 1, "pending": 0, "refused": [{"local_user": "x"}]}"#;
        assert_eq!(
            outcome_code("deliver_passwords", delivery),
            DONE_WITH_FAILURES
        );
        assert_eq!(outcome_code("status", "null"), 0);
        // Distinct from every error's code (2-10, 130) and from the hook's 1.
        for code in [CHECKS_FAILED, DONE_WITH_FAILURES] {
            assert!(!(2..=10).contains(&code) && code != 130 && code != 0 && code != 1);
        }
    }
}
