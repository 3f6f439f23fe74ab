//! `o365-essentials-emulator --listen 127.0.0.1:PORT [--config FILE] [--tls]`
//!
//! Prints exactly one JSON line on stdout (URLs, tenant id, the first app's client id
//! and secret, the CA file when serving HTTPS), then serves until killed.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use o365_essentials_emulator::{Emulator, EmulatorConfig};

const USAGE: &str =
    "usage: o365-essentials-emulator [--listen 127.0.0.1:PORT] [--config FILE] [--tls]";

fn parse_args() -> Result<(std::net::SocketAddr, EmulatorConfig), String> {
    let mut listen: std::net::SocketAddr = "127.0.0.1:0".parse().map_err(|_| "bad default")?;
    let mut config = EmulatorConfig::default();
    let mut tls = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = args
                    .next()
                    .ok_or("--listen needs an address such as 127.0.0.1:8080")?;
                listen = v
                    .parse()
                    .map_err(|_| format!("--listen: `{v}` is not an address:port"))?;
            }
            "--config" => {
                let path = args.next().ok_or("--config needs a file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--config: cannot read {path}: {e}"))?;
                config = serde_json::from_str(&text)
                    .map_err(|e| format!("--config: {path} is not a valid configuration: {e}"))?;
            }
            "--tls" => tls = true,
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if tls {
        config.tls.enabled = true;
    }
    Ok((listen, config))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (listen, config) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let emu = match Emulator::start_on(listen, config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("o365-essentials-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string(emu.info()) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("o365-essentials-emulator: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("o365-essentials-emulator: cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(emu);
    ExitCode::SUCCESS
}
