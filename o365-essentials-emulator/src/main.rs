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
Exchange admin API, SharePoint REST) for tests and demos. The tenant lives in memory
and is gone when the process ends. The full guide: docs/EMULATOR.md.

usage: o365-essentials-emulator [OPTIONS]

Options:
  --listen ADDR:PORT     Address to listen on; loopback only (127.0.0.0/8 or [::1]).
                         Default 127.0.0.1:0 (a free port, printed on start).
  --config FILE          The configuration: one JSON object (format below). Options
                         given here override its fields.
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

On start it prints one JSON line on stdout: login_url, graph_url, exchange_url,
sharepoint_url, admin_url (the listen address's), tenant_id, client_id, client_secret,
ca_file, listen, and public (the public URLs, when set); then it serves until SIGTERM
or Ctrl-C. Bad arguments or an invalid configuration file exit with status 2; a
failed start (the address taken, a seed that does not apply) with 1.

Configuration file (--config): every field is optional, {} is the defaults, unknown
fields are refused with the field's name. Names are snake_case as below; camelCase
(tokenLifetimeSecs) is accepted too.
  tenant        {id (GUID), display_name, initial_domain, country, size:
                 small|medium|large}                  default Contoso, contoso.onmicrosoft.com
  apps          [{client_id, display_name, client_secret, certificates: [PEM],
                  permissions: [..], directory_roles: [..]}]   default: one app with a
                 secret and every permission the product needs
  token_lifetime_secs   default 3599
  throttling    {enabled, time_scale, app_tenant_writes, app_tenant_write_window_secs,
                 tenant_writes, tenant_write_window_secs, resource_units,
                 resource_unit_window_secs}           default on, Microsoft's budgets
  latency       {read, write, token, write_response: {fixed_ms, jitter_ms}}  default 0
  faults        [{path (* wildcards), method, probability (0-1), limit,
                  kind: status|reset|lost_response|delay, status, ms}]  default none
  random_seed   seed of faults, jitter and $batch order (a number)
  dns           {server: \"127.0.0.1:53\", verify_without_dns}
  tls           {enabled, ca_file, cert_file, key_file}  (as the options above)
  public        {login_url, graph_url, exchange_url, sharepoint_url}
  seed          the tenant's first content (below); a section left out keeps its
                default (the admin user and two SKUs)
  max_body_bytes        largest request body, default 4194304 (Graph's 4 MiB)
  delta_retention_changes   delta tokens older than this many changes expire (100000)
  exchange      {wipe_ack_delay_ms, requests_per_window, window_secs}
  sharepoint    {drive_delay_ms, host_label, resource_units, window_secs}
  identity      {public_clients: [GUID], device_code_interval_secs,
                 device_code_expires_secs, app_replication_delay_ms}

Seed (the configuration's seed, or POST {admin_url}/seed while running): one JSON
object with any of these sections. Names are camelCase, as GET {admin_url}/state
answers (snake_case is accepted too). POST /seed adds exactly what it names, all or
nothing: a seed with any error answers 400 listing every field at fault and changes
nothing; something the tenant already has (a UPN, SKU, domain, role group, device id)
is an error, never a duplicate.
  users       [{userPrincipalName (required), displayName, id (GUID), mailNickname,
                givenName, surname, mail, accountEnabled, usageLocation (GB),
                onPremisesImmutableId, proxyAddresses: [..], password,
                roles: [role names], eligibleRoles: [..], licences: [skuPartNumber]}]
  skus        [{skuId (GUID), skuPartNumber, enabled (seats)}]
  domains     [{name, verified}]
  roleGroups  [{displayName, members: [UPN or earlier group], roles: [..]}]
  devices     [{user (UPN), deviceId, model, deviceType, os, friendlyName,
                pendingDiscovery}]
The answer is {\"userIds\": [...]}, in the order of users.

Passwords (seeded, or set through Graph) are stored hashed and never shown, not even
in the state. To check one:
  POST {admin_url}/users/{UPN or id}/check-password {\"password\": \"...\"}
  answers {\"matches\": true|false, \"forceChangePasswordNextSignIn\": ...}.
Or as a client of a real tenant would: the token endpoint's grant_type=password
(client_id one of identity.public_clients, username, password, scope) answers the
user's token, or invalid_grant with AADSTS50126 for a wrong password.

Example:
  $ cat emulator.json
  {\"tenant\": {\"display_name\": \"Fabrikam\", \"initial_domain\": \"fabrikam.onmicrosoft.com\"},
   \"throttling\": {\"enabled\": false},
   \"seed\": {\"users\": [{\"userPrincipalName\": \"admin@fabrikam.onmicrosoft.com\",
      \"displayName\": \"Admin\", \"password\": \"Admin-Passw0rd!\",
      \"roles\": [\"Global Administrator\"]}]}}
  $ o365-essentials-emulator --config emulator.json --listen 127.0.0.1:8080
  {\"login_url\":\"http://127.0.0.1:8080\",\"graph_url\":\"http://127.0.0.1:8080/v1.0\",...}
  $ curl -s -X POST http://127.0.0.1:8080/_emulator/seed -H 'Content-Type: application/json' \\
      -d '{\"users\": [{\"userPrincipalName\": \"ava@fabrikam.onmicrosoft.com\",
           \"displayName\": \"Ava Adams\", \"usageLocation\": \"GB\",
           \"licences\": [\"O365_BUSINESS_PREMIUM\"]}]}'
  {\"userIds\":[\"...\"]}
  $ curl -s http://127.0.0.1:8080/_emulator/state
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
                config = EmulatorConfig::from_json(&text).map_err(|e| {
                    format!(
                        "--config: {path} is not a valid configuration: {e}\n(see --help for the format)"
                    )
                })?;
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
