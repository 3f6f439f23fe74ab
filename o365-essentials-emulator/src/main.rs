//! `o365-essentials-emulator [--listen 127.0.0.1:PORT] [--config FILE] [--tls]
//! [--tls-cert FILE --tls-key FILE] [--ca-file FILE] [--public-base-url URL |
//! --microsoft-hosts]`
//!
//! Prints exactly one JSON line on stdout (URLs, tenant id, the first app's client id
//! and secret, the CA file when serving HTTPS, the public URLs when set), then serves
//! until killed.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use o365_essentials_emulator::Emulator;
use o365_essentials_emulator::{EmulatorConfig, PublicUrls};

const HELP: &str = "\
o365-essentials-emulator: an offline Microsoft 365 (identity platform, Graph v1.0,
Exchange admin API, SharePoint REST) for tests and demos.

usage: o365-essentials-emulator [OPTIONS]

Options:
  --listen ADDR:PORT     Address to listen on; loopback only (127.0.0.0/8 or [::1]).
                         Default 127.0.0.1:0 (a free port, printed on start).
  --config FILE          The configuration (JSON; see docs/EMULATOR.md). Options given
                         here override its fields.
  --tls                  Serve HTTPS. Without --tls-cert, with a certificate generated
                         on start, signed by a CA made for this instance; the
                         certificate covers localhost, 127.0.0.1, the listen address and
                         the public host names (see below).
  --tls-cert FILE        Serve this certificate chain (PEM, leaf first) instead of a
                         generated one; implies --tls and needs --tls-key.
  --tls-key FILE         The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
  --ca-file FILE         Where to write the generated CA certificate (PEM); a temporary
                         file otherwise. The path is printed as ca_file.
  --public-base-url URL  The base URL clients reach the emulator under (a reverse proxy
                         in front of it, e.g. https://emu.example:8443): answers name it
                         in @odata.nextLink, @odata.context, Location and the OpenID
                         configuration, with the emulator's own layout ({URL}/v1.0,
                         {URL}/sharepoint, {URL}/adminapi/beta).
  --microsoft-hosts      Answer as Microsoft's own hosts: https://graph.microsoft.com,
                         https://login.microsoftonline.com,
                         https://<tenant>.sharepoint.com (SharePoint REST at /_api) and
                         https://outlook.office365.com, for clients whose resolver maps
                         those names to the listen address. Use with --tls (the generated
                         certificate then covers these names) and trust the CA.
  -h, --help             This help.

Prints one JSON line on stdout: login_url, graph_url, exchange_url, sharepoint_url,
admin_url (the listen address's), tenant_id, client_id, client_secret, ca_file,
listen, and public (the public URLs, when set). Stops on SIGTERM or Ctrl-C.
";

const USAGE: &str = "usage: o365-essentials-emulator [--listen 127.0.0.1:PORT] [--config FILE] [--tls] [--tls-cert FILE --tls-key FILE] [--ca-file FILE] [--public-base-url URL | --microsoft-hosts] (--help for more)";

/// What the command line asks for.
enum Parsed {
    Run(std::net::SocketAddr, Box<EmulatorConfig>),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut listen: std::net::SocketAddr = "127.0.0.1:0".parse().map_err(|_| "bad default")?;
    let mut config = EmulatorConfig::default();
    let mut tls = false;
    let mut cert = None;
    let mut key = None;
    let mut ca = None;
    let mut public_base = None;
    let mut microsoft = false;
    let mut args = args.into_iter();
    let value = |args: &mut dyn Iterator<Item = String>, flag: &str, what: &str| {
        args.next()
            .ok_or_else(|| format!("{flag} needs {what}\n{USAGE}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = value(&mut args, "--listen", "an address such as 127.0.0.1:8080")?;
                listen = v
                    .parse()
                    .map_err(|_| format!("--listen: `{v}` is not an address:port"))?;
            }
            "--config" => {
                let path = value(&mut args, "--config", "a file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--config: cannot read {path}: {e}"))?;
                config = serde_json::from_str(&text)
                    .map_err(|e| format!("--config: {path} is not a valid configuration: {e}"))?;
            }
            "--tls" => tls = true,
            "--tls-cert" => cert = Some(value(&mut args, "--tls-cert", "a PEM file")?),
            "--tls-key" => key = Some(value(&mut args, "--tls-key", "a PEM file")?),
            "--ca-file" => ca = Some(value(&mut args, "--ca-file", "a file to write")?),
            "--public-base-url" => {
                public_base = Some(value(&mut args, "--public-base-url", "a URL")?)
            }
            "--microsoft-hosts" => microsoft = true,
            "--help" | "-h" => return Ok(Parsed::Help),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if cert.is_some() != key.is_some() {
        return Err(format!("--tls-cert and --tls-key go together\n{USAGE}"));
    }
    if let (Some(c), Some(k)) = (cert, key) {
        tls = true;
        config.tls.cert_file = Some(c.into());
        config.tls.key_file = Some(k.into());
    }
    if let Some(c) = ca {
        config.tls.ca_file = Some(c.into());
    }
    if tls {
        config.tls.enabled = true;
    }
    match (public_base, microsoft) {
        (Some(_), true) => {
            return Err(format!(
                "--public-base-url and --microsoft-hosts exclude each other\n{USAGE}"
            ));
        }
        (Some(url), false) => {
            let u = url.trim_end_matches('/');
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(format!(
                    "--public-base-url: `{url}` is not an http(s) URL\n{USAGE}"
                ));
            }
            config.public = PublicUrls::one_base(u);
        }
        (None, true) => config.public = PublicUrls::microsoft(&config.sharepoint_label()),
        (None, false) => {}
    }
    Ok(Parsed::Run(listen, Box::new(config)))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (listen, config) = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(listen, config)) => (listen, *config),
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
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
