//! `setup` and `teardown`: the app registration made from one administrator sign-in.
//!
//! The administrator signs in once with the OAuth 2.0 device authorization grant (RFC
//! 8628) through a public client (by default Microsoft Graph Command Line Tools,
//! `14d82eec-204b-4c2f-b7e8-296a70dab67e`); the code and the URL go out as an
//! [`Event::SignIn`]. With that delegated token the setup makes, or repairs, exactly
//! what docs/PERMISSIONS.md describes: the app registration `o365-essentials (<server>)`
//! with a certificate made on this server (its private key never leaves it: 0600, two
//! years), its service principal, the application permissions granted by admin consent
//! (app role assignments whose ids are read from the resource service principals'
//! `appRoles` by value), the two directory roles. It then waits, with backoff, until
//! the app's client credentials work (Entra replicates a new app for seconds to
//! minutes), switches the integration to it, writes the configuration's tenant section
//! and forgets the delegated token. Run again, it repairs what is missing and never
//! makes a second app; `dry_run` only lists what it would do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Control, Event, Integration};
use crate::error::{Error, ErrorCode, Result};
use crate::graph::{Credential, GraphConfig};

/// Microsoft Graph Command Line Tools: the public client Microsoft Graph PowerShell signs
/// in through.
pub const DEFAULT_PUBLIC_CLIENT: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";

/// The delegated Graph scopes the sign-in asks for (`User.Read` for `/me`: who signed in).
const SCOPES: &[&str] = &[
    "User.Read",
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
];

const GRAPH_APP: &str = "00000003-0000-0000-c000-000000000000";
const EXCHANGE_APP: &str = "00000002-0000-0ff1-ce00-000000000000";
const SHAREPOINT_APP: &str = "00000003-0000-0ff1-ce00-000000000000";

/// The application permissions of docs/PERMISSIONS.md: (resource app id, value).
pub const APPLICATION_PERMISSIONS: &[(&str, &str)] = &[
    (GRAPH_APP, "User.ReadWrite.All"),
    (GRAPH_APP, "Organization.Read.All"),
    (GRAPH_APP, "RoleManagement.Read.Directory"),
    (GRAPH_APP, "User-PasswordProfile.ReadWrite.All"),
    (GRAPH_APP, "Domain.ReadWrite.All"),
    (GRAPH_APP, "Sites.FullControl.All"),
    (GRAPH_APP, "LicenseAssignment.ReadWrite.All"),
    (EXCHANGE_APP, "Exchange.ManageAsApp"),
    (SHAREPOINT_APP, "Sites.FullControl.All"),
];

/// The directory roles of the app's service principal: (name, role template id).
pub const DIRECTORY_ROLES: &[(&str, &str)] = &[
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    (
        "Exchange Administrator",
        "29232cdf-9323-42fd-ade2-1d097af3e4de",
    ),
];

const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
const APP_ADMIN: &str = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3";
const CLOUD_APP_ADMIN: &str = "158c047a-c907-4556-b7ef-446551a6b5f7";
const PRIV_ROLE_ADMIN: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";

/// A certificate is replaced when it has fewer days than this left.
pub const RENEW_DAYS: i64 = 30;
/// A new certificate lasts this many days (two years).
const CERT_DAYS: u32 = 730;

fn default_wait() -> u64 {
    300
}

/// `setup` and `teardown`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupParams {
    /// This server's name, for the app's name `o365-essentials (<server>)` (host name).
    ///
    /// The host name when absent.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The public client to sign in through (Microsoft Graph Command Line Tools).
    ///
    /// Microsoft Graph Command Line Tools when absent.
    #[serde(default)]
    pub public_client_id: Option<String>,
    /// The configuration file whose `tenant` section setup writes (the command line's).
    ///
    /// TOML, or JSON for `.json`; nothing is written when absent (the result carries the
    /// section).
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// The folder of the certificate and its private key (the configuration's).
    ///
    /// The configuration file's folder, else the results folder, when absent.
    #[serde(default)]
    pub credential_dir: Option<PathBuf>,
    /// List what would be made or changed, changing nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Seconds to wait for the new app's credentials to work (300).
    #[serde(default = "default_wait")]
    pub wait_secs: u64,
}

/// What `setup` (or `teardown`) did, or would do.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SetupReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The app registration's display name.
    pub display_name: String,
    /// Its application (client) id, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// What was made, changed or removed (or would be, in a dry run), in order.
    pub changes: Vec<String>,
    /// The certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<PathBuf>,
    /// The private key file (0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// When the certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires: Option<String>,
    /// The configuration file written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_written: Option<PathBuf>,
    /// The tenant section (the same as written), without secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Value>,
}

/// A delegated Graph session: the administrator's token, dropped at the end.
struct Session {
    http: reqwest::Client,
    graph: String,
    token: SecretString,
}

impl Session {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.graph)
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.token.expose_secret());
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| {
                crate::transport::transport_error(&e, "calling Microsoft Graph for setup")
            })?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = resp.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                return Ok(value);
            }
            if (status == 429 || status >= 500) && attempt < 6 {
                let wait = retry_after.unwrap_or(1u64 << attempt.min(4)).min(30);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let code = value["error"]["code"].as_str().unwrap_or("").to_string();
            let message = value["error"]["message"].as_str().unwrap_or("").to_string();
            let ec = match status {
                401 => ErrorCode::Auth,
                403 => ErrorCode::PermissionDenied,
                404 => ErrorCode::NotFound,
                409 => ErrorCode::AlreadyExists,
                400 => ErrorCode::InvalidInput,
                _ => ErrorCode::UnexpectedResponse,
            };
            return Err(Error::new(
                ec,
                format!("{method} {path}: Graph answered {status} {code}: {message}"),
            ));
        }
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Every item of a listing, following `@odata.nextLink`.
    async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(p) = next.take() {
            pages += 1;
            let v = self.get(&p).await?;
            if let Some(items) = v["value"].as_array() {
                out.extend(items.iter().cloned());
            }
            // The administrator's token goes only where Graph is: a next link elsewhere
            // ends the listing rather than carry the token away.
            if pages < 1000 {
                next = v["@odata.nextLink"]
                    .as_str()
                    .filter(|l| l.starts_with(&format!("{}/", self.graph)))
                    .map(str::to_string);
            }
        }
        Ok(out)
    }
}

fn quote(s: &str) -> String {
    let q = s.replace('\'', "''");
    percent_encoding::utf8_percent_encode(&q, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn http_client(cfg: &GraphConfig) -> Result<reqwest::Client> {
    let bad = |m: String| Error::new(ErrorCode::InvalidConfig, m);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs_f64(cfg.connect_timeout_secs.max(0.1)))
        .timeout(Duration::from_secs_f64(cfg.request_timeout_secs.max(0.1)))
        .user_agent(concat!("o365-essentials/", env!("CARGO_PKG_VERSION")));
    let ca_pem = match (&cfg.ca_bundle_pem, &cfg.ca_bundle_file) {
        (Some(p), _) => Some(p.as_bytes().to_vec()),
        (None, Some(f)) => Some(
            std::fs::read(f)
                .map_err(|e| bad(format!("cannot read ca_bundle_file {}: {e}", f.display())))?,
        ),
        (None, None) => None,
    };
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| bad(format!("the CA bundle is not PEM certificates: {e}")))?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    if let Some(p) = &cfg.proxy {
        builder = builder.proxy(
            reqwest::Proxy::all(p).map_err(|e| bad(format!("proxy `{p}` is not usable: {e}")))?,
        );
    }
    builder
        .build()
        .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))
}

/// The administrator signs in with a device code; returns the delegated Graph token.
async fn sign_in(
    http: &reqwest::Client,
    cfg: &GraphConfig,
    client_id: &str,
    ctl: &Control,
) -> Result<SecretString> {
    let base = format!(
        "{}/{}/oauth2/v2.0",
        cfg.login_url.trim_end_matches('/'),
        cfg.tenant_id
    );
    let scope: Vec<String> = SCOPES
        .iter()
        .map(|s| format!("https://graph.microsoft.com/{s}"))
        .collect();
    let resp = http
        .post(format!("{base}/devicecode"))
        .form(&[
            ("client_id", client_id),
            ("scope", scope.join(" ").as_str()),
        ])
        .send()
        .await
        .map_err(|e| crate::transport::transport_error(&e, "starting the device code sign-in"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(crate::transport::auth::token_error(status, &body)
            .context("the identity platform refused to start the device code sign-in"));
    }
    let device_code = SecretString::from(
        body["device_code"]
            .as_str()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UnexpectedResponse,
                    "the answer has no device_code",
                )
            })?
            .to_string(),
    );
    let user_code = body["user_code"].as_str().unwrap_or("").to_string();
    let uri = body["verification_uri"].as_str().unwrap_or("").to_string();
    let expires = body["expires_in"].as_u64().unwrap_or(900);
    let mut interval = body["interval"].as_u64().unwrap_or(5).clamp(1, 60);
    let message = body["message"].as_str().map_or_else(
        || format!("To sign in, open {uri} and enter the code {user_code}."),
        str::to_string,
    );
    ctl.emit(Event::SignIn {
        user_code,
        verification_uri: uri,
        message,
        expires_in_secs: expires,
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(expires);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(interval)) => {}
            _ = ctl.cancel.cancelled() => {
                return Err(Error::new(ErrorCode::Cancelled, "the sign-in was cancelled; nothing was changed"));
            }
        }
        if tokio::time::Instant::now() > deadline + Duration::from_secs(5) {
            return Err(Error::new(
                ErrorCode::Auth,
                "the code expired before anyone signed in; run setup again",
            ));
        }
        let resp = http
            .post(format!("{base}/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", client_id),
                ("device_code", device_code.expose_secret()),
            ])
            .send()
            .await
            .map_err(|e| crate::transport::transport_error(&e, "waiting for the sign-in"))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 {
            let token = body["access_token"].as_str().ok_or_else(|| {
                Error::new(
                    ErrorCode::UnexpectedResponse,
                    "the token answer has no access_token",
                )
            })?;
            return Ok(SecretString::from(token.to_string()));
        }
        match body["error"].as_str().unwrap_or("") {
            "authorization_pending" => {}
            "slow_down" => interval += 5,
            "authorization_declined" => {
                return Err(Error::new(
                    ErrorCode::Auth,
                    "the administrator declined the sign-in; nothing was changed",
                ));
            }
            "expired_token" => {
                return Err(Error::new(
                    ErrorCode::Auth,
                    "the code expired before anyone signed in; run setup again",
                ));
            }
            "bad_verification_code" => {
                return Err(Error::new(
                    ErrorCode::Auth,
                    "the identity platform does not know the device code; run setup again",
                ));
            }
            _ => {
                return Err(crate::transport::auth::token_error(status, &body)
                    .context("the device code sign-in failed"));
            }
        }
    }
}

/// Checks the signed-in administrator's directory roles.
async fn check_roles(s: &Session) -> Result<()> {
    let me = s.get("/me?$select=id,userPrincipalName").await?;
    let id = me["id"].as_str().unwrap_or("").to_ascii_lowercase();
    let upn = me["userPrincipalName"]
        .as_str()
        .unwrap_or("the signed-in user")
        .to_string();
    let assignments = s
        .list(&format!(
            "/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{}'",
            quote(&id)
        ))
        .await?;
    let held: Vec<String> = assignments
        .iter()
        .filter(|a| {
            a["principalId"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(&id))
        })
        .filter_map(|a| a["roleDefinitionId"].as_str().map(str::to_ascii_lowercase))
        .collect();
    let has = |t: &str| held.iter().any(|h| h == t);
    if has(GLOBAL_ADMIN) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !has(APP_ADMIN) && !has(CLOUD_APP_ADMIN) {
        missing.push("Application Administrator");
    }
    if !has(PRIV_ROLE_ADMIN) {
        missing.push("Privileged Role Administrator");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::AdminRoleMissing,
        format!(
            "{upn} lacks the directory role {}: sign in as a Global Administrator, or as an Application Administrator who is also a Privileged Role Administrator",
            missing.join(" and ")
        ),
    ))
}

/// A certificate made on this server.
struct LocalCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    der: Vec<u8>,
    sha1: Vec<u8>,
    not_after: i64,
}

fn read_local_cert(cert_file: &Path, key_file: &Path) -> Option<LocalCert> {
    if !key_file.exists() {
        return None;
    }
    let pem = std::fs::read(cert_file).ok()?;
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()?
        .ok()?
        .to_vec();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der)
        .as_ref()
        .to_vec();
    Some(LocalCert {
        cert_file: cert_file.to_path_buf(),
        key_file: key_file.to_path_buf(),
        der,
        sha1,
        not_after,
    })
}

/// Makes an RSA 2048 certificate and key (0600) with `openssl`, written beside the final
/// names and then moved into place.
fn make_cert(dir: &Path, cert_file: &Path, key_file: &Path, subject: &str) -> Result<LocalCert> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what: &str, e: std::io::Error| {
        Error::new(ErrorCode::InvalidConfig, format!("{what}: {e}"))
    };
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("cannot create {}", dir.display()), e))?;
    let tmp_key = key_file.with_extension("key.new");
    let tmp_cert = cert_file.with_extension("pem.new");
    // The key file exists 0600 before a byte of the key is written into it.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp_key)
        .map_err(|e| io(&format!("cannot create {}", tmp_key.display()), e))?;
    std::fs::set_permissions(&tmp_key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io(&format!("cannot protect {}", tmp_key.display()), e))?;
    let cn: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " ().-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days",
        ])
        .arg(CERT_DAYS.to_string())
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&tmp_key)
        .arg("-out")
        .arg(&tmp_cert)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            io(
                "cannot run openssl to make the certificate (install openssl)",
                e,
            )
        })?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp_key);
        return Err(Error::new(
            ErrorCode::Internal,
            "openssl could not make the certificate",
        ));
    }
    std::fs::set_permissions(&tmp_key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io(&format!("cannot protect {}", tmp_key.display()), e))?;
    std::fs::rename(&tmp_key, key_file).map_err(|e| io("cannot move the key into place", e))?;
    std::fs::rename(&tmp_cert, cert_file)
        .map_err(|e| io("cannot move the certificate into place", e))?;
    read_local_cert(cert_file, key_file).ok_or_else(|| {
        Error::new(
            ErrorCode::Internal,
            "the new certificate cannot be read back",
        )
    })
}

/// The time written into assertions and proofs: Entra checks them against its own clock,
/// so they carry the system clock's, not the engine's (which tests move).
fn wall_clock() -> time::OffsetDateTime {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "server".into())
}

/// The app role id of `value` on a resource service principal.
fn role_id(sp: &Value, value: &str) -> Option<String> {
    sp["appRoles"].as_array()?.iter().find_map(|r| {
        let allowed = r["allowedMemberTypes"]
            .as_array()
            .is_none_or(|a| a.iter().any(|m| m == "Application"));
        (r["value"].as_str() == Some(value) && allowed)
            .then(|| r["id"].as_str().map(str::to_ascii_lowercase))
            .flatten()
    })
}

fn config_dir(p: &SetupParams, i: &Integration) -> PathBuf {
    p.credential_dir
        .clone()
        .or_else(|| {
            p.config_file
                .as_ref()
                .and_then(|f| f.parent().map(Path::to_path_buf))
                .filter(|d| !d.as_os_str().is_empty())
        })
        .unwrap_or_else(|| i.results_folder())
}

/// Writes the tenant section into a configuration file (TOML or JSON), 0600.
fn write_config(path: &Path, tenant: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |m: String| Error::new(ErrorCode::InvalidConfig, m);
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let out = if json {
        let mut v: Value = serde_json::from_str(&text)
            .map_err(|e| err(format!("{} is not JSON: {e}", path.display())))?;
        merge_tenant(&mut v, tenant);
        serde_json::to_string_pretty(&v).map_err(|e| Error::internal(e.to_string()))? + "\n"
    } else {
        let t: toml::Table = toml::from_str(&text)
            .map_err(|e| err(format!("{} is not TOML: {e}", path.display())))?;
        let mut v = serde_json::to_value(&t).map_err(|e| Error::internal(e.to_string()))?;
        merge_tenant(&mut v, tenant);
        let t: toml::Table =
            serde_json::from_value(v).map_err(|e| Error::internal(e.to_string()))?;
        format!(
            "# Written by `o365-essentials setup`; the tenant section is its own.\n{}",
            toml::to_string(&t).map_err(|e| Error::internal(e.to_string()))?
        )
    };
    let tmp = path.with_extension("setup-new");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

fn merge_tenant(config: &mut Value, tenant: &Value) {
    if !config["tenant"].is_object() {
        config["tenant"] = json!({});
    }
    if let (Some(dst), Some(src)) = (config["tenant"].as_object_mut(), tenant.as_object()) {
        for (k, v) in src {
            dst.insert(k.clone(), v.clone());
        }
    }
}

/// A PS256 client assertion signed by `key` (PKCS#8 DER) for the certificate `der`.
fn signed_jwt(key_pem: &[u8], cert_der: &[u8], claims: &Value) -> Result<String> {
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| Error::internal("the private key file holds no key"))?;
    let pair = match &key {
        rustls::pki_types::PrivateKeyDer::Pkcs8(k) => {
            ring::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
        }
        rustls::pki_types::PrivateKeyDer::Pkcs1(k) => {
            ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der())
        }
        _ => return Err(Error::internal("the private key is not RSA")),
    }
    .map_err(|_| Error::internal("the private key is not a usable RSA key"))?;
    let thumb = B64URL.encode(ring::digest::digest(&ring::digest::SHA256, cert_der));
    let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": thumb});
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PSS_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| Error::internal("signing failed"))?;
    Ok(format!("{input}.{}", B64URL.encode(sig)))
}

/// Whether the app's certificate gets a Graph token carrying its permissions now.
async fn app_token_works(
    http: &reqwest::Client,
    cfg: &GraphConfig,
    client_id: &str,
    cert: &LocalCert,
) -> Result<SecretString> {
    let token_url = format!(
        "{}/{}/oauth2/v2.0/token",
        cfg.login_url.trim_end_matches('/'),
        cfg.tenant_id
    );
    let key_pem = std::fs::read(&cert.key_file).map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot read {}: {e}", cert.key_file.display()),
        )
    })?;
    let now = wall_clock().unix_timestamp();
    let assertion = signed_jwt(
        &key_pem,
        &cert.der,
        &json!({"aud": token_url, "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(), "nbf": now, "iat": now, "exp": now + 600}),
    )?;
    let resp = http
        .post(&token_url)
        .form(&[
            ("client_id", client_id),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .map_err(|e| crate::transport::transport_error(&e, "asking for the new app's token"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200
        && let Some(t) = body["access_token"].as_str()
    {
        return Ok(SecretString::from(t.to_string()));
    }
    Err(crate::transport::auth::token_error(status, &body))
}

impl Integration {
    /// `setup`: see the module documentation.
    ///
    /// # Errors
    /// [`ErrorCode::Auth`] when the sign-in is declined or expires;
    /// [`ErrorCode::AdminRoleMissing`] naming the role the administrator lacks; Graph's
    /// errors; [`ErrorCode::Timeout`] when the new app's credential does not work in
    /// `wait_secs`.
    pub async fn setup(&self, p: SetupParams, ctl: &Control) -> Result<SetupReport> {
        let cfg = self.current_tenant_config()?;
        let http = http_client(&cfg)?;
        let server = p.server_name.clone().unwrap_or_else(host_name);
        let name = format!("o365-essentials ({server})");
        let public = p
            .public_client_id
            .clone()
            .unwrap_or_else(|| DEFAULT_PUBLIC_CLIENT.into());
        let token = sign_in(&http, &cfg, &public, ctl).await?;
        let s = Session {
            http: http.clone(),
            graph: cfg.graph_url.trim_end_matches('/').to_string(),
            token,
        };
        check_roles(&s).await?;
        let mut report = SetupReport {
            dry_run: p.dry_run,
            display_name: name.clone(),
            client_id: None,
            changes: Vec::new(),
            certificate_file: None,
            private_key_file: None,
            certificate_expires: None,
            config_written: None,
            tenant: None,
        };
        let note = |r: &mut SetupReport, what: String| r.changes.push(what);
        // The resource service principals and the app role ids, by value.
        let mut resources: Vec<(String, Value)> = Vec::new();
        for app in [GRAPH_APP, EXCHANGE_APP, SHAREPOINT_APP] {
            let sps = s
                .list(&format!("/servicePrincipals?$filter=appId%20eq%20'{app}'"))
                .await?;
            let sp = sps.into_iter().next().ok_or_else(|| {
                Error::new(
                    ErrorCode::NotFound,
                    format!("the tenant has no service principal for the resource {app}"),
                )
            })?;
            resources.push((app.to_string(), sp));
        }
        let mut wanted: Vec<(String, String, String)> = Vec::new(); // (resource sp id, role id, label)
        let mut rra: Vec<(String, Vec<String>)> = Vec::new();
        for (app, value) in APPLICATION_PERMISSIONS {
            let (_, sp) = resources
                .iter()
                .find(|(a, _)| a == app)
                .ok_or_else(|| Error::internal("resource missing"))?;
            let id = role_id(sp, value).ok_or_else(|| {
                Error::new(
                    ErrorCode::NotFound,
                    format!(
                        "the service principal {} has no application permission {value}",
                        sp["displayName"].as_str().unwrap_or(app)
                    ),
                )
            })?;
            let sp_id = sp["id"].as_str().unwrap_or("").to_ascii_lowercase();
            let label = format!("{} {value}", sp["displayName"].as_str().unwrap_or(app));
            match rra.iter_mut().find(|(a, _)| a == app) {
                Some((_, ids)) => ids.push(id.clone()),
                None => rra.push(((*app).to_string(), vec![id.clone()])),
            }
            wanted.push((sp_id, id, label));
        }
        let rra_json: Value = rra
            .iter()
            .map(|(app, ids)| {
                json!({
                    "resourceAppId": app,
                    "resourceAccess": ids.iter().map(|i| json!({"id": i, "type": "Role"})).collect::<Vec<_>>(),
                })
            })
            .collect();
        // The certificate on this server.
        let dir = config_dir(&p, self);
        let cert_file = dir.join("o365-essentials-app.pem");
        let key_file = dir.join("o365-essentials-app.key");
        let now = self.now().unix_timestamp();
        let mut local = read_local_cert(&cert_file, &key_file)
            .filter(|c| c.not_after - now > RENEW_DAYS * 86_400);
        // The app registration.
        let apps = s
            .list(&format!(
                "/applications?$filter=displayName%20eq%20'{}'",
                quote(&name)
            ))
            .await?;
        let existing = apps.into_iter().next();
        let registered = |app: &Value, c: &LocalCert| {
            let thumb = B64.encode(&c.sha1);
            app["keyCredentials"].as_array().is_some_and(|ks| {
                ks.iter()
                    .any(|k| k["customKeyIdentifier"].as_str() == Some(thumb.as_str()))
            })
        };
        let need_cert = match (&existing, &local) {
            (_, None) => true,
            (Some(app), Some(c)) => !registered(app, c),
            (None, Some(_)) => false,
        };
        if need_cert && local.is_none() {
            note(
                &mut report,
                format!("make a certificate (two years) in {}", dir.display()),
            );
            if !p.dry_run {
                local = Some(make_cert(&dir, &cert_file, &key_file, &name)?);
            }
        }
        let new_key_id = uuid::Uuid::new_v4().to_string();
        let key_json = |c: &LocalCert| json!({"keyId": new_key_id, "type": "AsymmetricX509Cert", "usage": "Verify", "key": B64.encode(&c.der), "customKeyIdentifier": B64.encode(&c.sha1), "displayName": format!("CN={name}")});
        let app = match existing {
            Some(app) => {
                let id = app["id"].as_str().unwrap_or("").to_string();
                let mut patch = serde_json::Map::new();
                if let Some(c) = &local
                    && !registered(&app, c)
                {
                    note(
                        &mut report,
                        "register this server's certificate on the app".into(),
                    );
                    patch.insert("keyCredentials".into(), json!([key_json(c)]));
                } else if local.is_none() {
                    note(
                        &mut report,
                        "register this server's certificate on the app".into(),
                    );
                }
                if !same_access(&app["requiredResourceAccess"], &rra_json) {
                    note(&mut report, "set the app's required permissions".into());
                    patch.insert("requiredResourceAccess".into(), rra_json.clone());
                }
                if !p.dry_run && !patch.is_empty() {
                    s.send(
                        reqwest::Method::PATCH,
                        &format!("/applications/{id}"),
                        Some(&Value::Object(patch)),
                    )
                    .await?;
                }
                app
            }
            None => {
                note(&mut report, format!("create the app registration {name}"));
                if p.dry_run {
                    Value::Null
                } else {
                    let c = local
                        .as_ref()
                        .ok_or_else(|| Error::internal("no certificate"))?;
                    s.send(
                        reqwest::Method::POST,
                        "/applications",
                        Some(&json!({
                            "displayName": name,
                            "signInAudience": "AzureADMyOrg",
                            "notes": "Made by `o365-essentials setup`; `o365-essentials teardown` removes it.",
                            "keyCredentials": [key_json(c)],
                            "requiredResourceAccess": rra_json,
                        })),
                    )
                    .await?
                }
            }
        };
        let app_id = app["appId"].as_str().map(str::to_string);
        let object_id = app["id"].as_str().unwrap_or("").to_string();
        // The key credential of this server's certificate (for rolling it later).
        let key_id = match &local {
            Some(c) => app["keyCredentials"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["customKeyIdentifier"].as_str() == Some(B64.encode(&c.sha1).as_str()))
                .and_then(|k| k["keyId"].as_str())
                .map_or_else(|| new_key_id.clone(), str::to_string),
            None => new_key_id.clone(),
        };
        report.client_id = app_id.clone();
        // Its service principal.
        let sp_id = match &app_id {
            Some(a) => {
                let sps = s
                    .list(&format!(
                        "/servicePrincipals?$filter=appId%20eq%20'{}'",
                        quote(a)
                    ))
                    .await?;
                match sps.first() {
                    Some(sp) => sp["id"].as_str().map(str::to_ascii_lowercase),
                    None => {
                        note(&mut report, "create the app's service principal".into());
                        if p.dry_run {
                            None
                        } else {
                            let sp = s
                                .send(
                                    reqwest::Method::POST,
                                    "/servicePrincipals",
                                    Some(&json!({"appId": a})),
                                )
                                .await?;
                            sp["id"].as_str().map(str::to_ascii_lowercase)
                        }
                    }
                }
            }
            None => {
                note(&mut report, "create the app's service principal".into());
                None
            }
        };
        // Admin consent: the app role assignments.
        let granted: Vec<(String, String)> = match &sp_id {
            Some(id) => s
                .list(&format!("/servicePrincipals/{id}/appRoleAssignments"))
                .await?
                .iter()
                .map(|a| {
                    (
                        a["resourceId"].as_str().unwrap_or("").to_ascii_lowercase(),
                        a["appRoleId"].as_str().unwrap_or("").to_ascii_lowercase(),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        for (res, role, label) in &wanted {
            if granted.iter().any(|(r, a)| r == res && a == role) {
                continue;
            }
            note(&mut report, format!("grant {label} (admin consent)"));
            if let (false, Some(id)) = (p.dry_run, &sp_id) {
                s.send(
                    reqwest::Method::POST,
                    &format!("/servicePrincipals/{res}/appRoleAssignedTo"),
                    Some(&json!({"principalId": id, "resourceId": res, "appRoleId": role})),
                )
                .await?;
            }
        }
        // The directory roles.
        let held: Vec<String> = match &sp_id {
            Some(id) => s
                .list(&format!(
                    "/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{id}'"
                ))
                .await?
                .iter()
                .filter(|a| {
                    a["principalId"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(id))
                })
                .filter_map(|a| a["roleDefinitionId"].as_str().map(str::to_ascii_lowercase))
                .collect(),
            None => Vec::new(),
        };
        for (role, template) in DIRECTORY_ROLES {
            if held.iter().any(|h| h == template) {
                continue;
            }
            note(
                &mut report,
                format!("assign the directory role {role} to the app"),
            );
            if let (false, Some(id)) = (p.dry_run, &sp_id) {
                s.send(
                    reqwest::Method::POST,
                    "/roleManagement/directory/roleAssignments",
                    Some(&json!({"principalId": id, "roleDefinitionId": template, "directoryScopeId": "/"})),
                )
                .await?;
            }
        }
        // The delegated token is no longer needed.
        drop(s);
        if let Some(c) = &local {
            report.certificate_file = Some(c.cert_file.clone());
            report.private_key_file = Some(c.key_file.clone());
            report.certificate_expires = Some(rfc3339(c.not_after));
        }
        let (Some(app_id), Some(cert), false) = (app_id, local, p.dry_run) else {
            return Ok(report);
        };
        // Wait for Entra to replicate the app and its grants.
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            match app_token_works(&http, &cfg, &app_id, &cert).await {
                Ok(_) => break,
                Err(_) if started.elapsed() < Duration::from_secs(p.wait_secs) => {}
                Err(e) => {
                    return Err(Error::new(
                        ErrorCode::Timeout,
                        format!(
                            "the new app's certificate got no token within {} s (the last answer: {}); run setup again later",
                            p.wait_secs,
                            e.message()
                        ),
                    ));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = ctl.cancel.cancelled() => {
                    return Err(Error::new(ErrorCode::Cancelled, "setup was cancelled while waiting for the new app; run it again to finish"));
                }
            }
            delay = (delay * 2).min(Duration::from_secs(15));
        }
        let credential = Credential::Certificate {
            certificate_pem: None,
            certificate_file: Some(cert.cert_file.clone()),
            private_key_pem: None,
            private_key_file: Some(cert.key_file.clone()),
        };
        let mut new = cfg.clone();
        new.client_id = app_id.clone();
        new.credential = credential;
        // Switch this integration over, checking the organization and the role holders
        // can be read with it (grants may replicate after the token works).
        let mut delay = Duration::from_millis(500);
        loop {
            match self.adopt_tenant_config(new.clone()).await {
                Ok(()) => break,
                Err(_) if started.elapsed() < Duration::from_secs(p.wait_secs) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
                Err(e) => return Err(e),
            }
        }
        let tenant = json!({
            "tenant_id": cfg.tenant_id,
            "client_id": app_id,
            "credential": {
                "kind": "certificate",
                "certificate_file": cert.cert_file,
                "private_key_file": cert.key_file,
            },
        });
        if let Some(path) = &p.config_file {
            write_config(path, &tenant)?;
            note(
                &mut report,
                format!("write the tenant section of {}", path.display()),
            );
            report.config_written = Some(path.clone());
        }
        self.store.set_setting(
            REGISTRATION_KEY,
            &Registration {
                client_id: app_id,
                object_id,
                key_id,
            },
        )?;
        report.tenant = Some(tenant);
        Ok(report)
    }

    /// `teardown`: removes the app registration `setup` made (its service principal,
    /// grants and directory roles with it).
    ///
    /// # Errors
    /// As [`Integration::setup`].
    pub async fn teardown(&self, p: SetupParams, ctl: &Control) -> Result<SetupReport> {
        let cfg = self.current_tenant_config()?;
        let http = http_client(&cfg)?;
        let server = p.server_name.clone().unwrap_or_else(host_name);
        let name = format!("o365-essentials ({server})");
        let public = p
            .public_client_id
            .clone()
            .unwrap_or_else(|| DEFAULT_PUBLIC_CLIENT.into());
        let token = sign_in(&http, &cfg, &public, ctl).await?;
        let s = Session {
            http,
            graph: cfg.graph_url.trim_end_matches('/').to_string(),
            token,
        };
        check_roles(&s).await?;
        let mut report = SetupReport {
            dry_run: p.dry_run,
            display_name: name.clone(),
            client_id: None,
            changes: Vec::new(),
            certificate_file: None,
            private_key_file: None,
            certificate_expires: None,
            config_written: None,
            tenant: None,
        };
        let apps = s
            .list(&format!(
                "/applications?$filter=displayName%20eq%20'{}'",
                quote(&name)
            ))
            .await?;
        for app in apps {
            let (Some(id), Some(app_id)) = (app["id"].as_str(), app["appId"].as_str()) else {
                continue;
            };
            report.client_id = Some(app_id.to_string());
            let sps = s
                .list(&format!(
                    "/servicePrincipals?$filter=appId%20eq%20'{}'",
                    quote(app_id)
                ))
                .await?;
            for sp in &sps {
                let Some(sp_id) = sp["id"].as_str() else {
                    continue;
                };
                let roles = s
                    .list(&format!(
                        "/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{sp_id}'"
                    ))
                    .await?;
                for r in roles.iter().filter(|a| {
                    a["principalId"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(sp_id))
                }) {
                    let rid = r["id"].as_str().unwrap_or("");
                    report.changes.push(format!(
                        "remove the directory role {} from the app",
                        r["roleDefinitionId"].as_str().unwrap_or("")
                    ));
                    if !p.dry_run {
                        s.send(
                            reqwest::Method::DELETE,
                            &format!("/roleManagement/directory/roleAssignments/{rid}"),
                            None,
                        )
                        .await?;
                    }
                }
            }
            report.changes.push(format!("delete the app registration {name} ({app_id}) with its service principal and grants"));
            if !p.dry_run {
                s.send(
                    reqwest::Method::DELETE,
                    &format!("/applications/{id}"),
                    None,
                )
                .await?;
            }
        }
        if report.changes.is_empty() {
            report.changes.push(format!(
                "nothing to remove: there is no app registration {name}"
            ));
        }
        Ok(report)
    }

    fn current_tenant_config(&self) -> Result<GraphConfig> {
        self.tenant_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NotSupported,
                    "setup needs an integration opened from a configuration (its tenant section names the tenant and the endpoints)",
                )
            })
    }

    /// Switches to `new` after reading the organization and the administrators with it,
    /// whether integrated yet or not.
    async fn adopt_tenant_config(&self, new: GraphConfig) -> Result<()> {
        let services = super::Microsoft365::from_config(new.clone())?;
        services.tenant.organization().await?;
        services.tenant.admin_role_holders().await?;
        *self.m365.write().unwrap_or_else(|p| p.into_inner()) =
            std::sync::Arc::new(Self::guarded(&self.gate, services));
        *self
            .tenant_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(new);
        Ok(())
    }
}

/// Whether two `requiredResourceAccess` lists grant the same (ignoring order and case).
fn same_access(a: &Value, b: &Value) -> bool {
    let set = |v: &Value| {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in v.as_array().into_iter().flatten() {
            let app = r["resourceAppId"]
                .as_str()
                .unwrap_or("")
                .to_ascii_lowercase();
            for x in r["resourceAccess"].as_array().into_iter().flatten() {
                out.push((
                    app.clone(),
                    x["id"].as_str().unwrap_or("").to_ascii_lowercase(),
                ));
            }
        }
        out.sort();
        out.dedup();
        out
    };
    set(a) == set(b)
}

/// The app's credential as this server holds it: its kind and, for a certificate, its
/// expiry; a warning when it expires within [`RENEW_DAYS`] days or is a secret (whose
/// expiry the server cannot see).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialInfo {
    /// `secret`, `certificate` or `pkcs12`.
    pub kind: String,
    /// When the certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Whole days left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// What the administrator should do, when anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What `roll_credential` did.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RollReport {
    /// The new certificate's key credential id.
    pub added_key_id: String,
    /// The old one's, removed.
    pub removed_key_id: String,
    /// When the new certificate expires (RFC 3339).
    pub certificate_expires: String,
}

/// What `setup` remembers in the store to roll the certificate later.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Registration {
    client_id: String,
    object_id: String,
    key_id: String,
}

const REGISTRATION_KEY: &str = "setup.registration";

fn cert_not_after(cfg: &GraphConfig) -> Option<i64> {
    let pem = match &cfg.credential {
        Credential::Certificate {
            certificate_pem: Some(p),
            ..
        } => p.as_bytes().to_vec(),
        Credential::Certificate {
            certificate_file: Some(f),
            ..
        } => std::fs::read(f).ok()?,
        _ => return None,
    };
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

impl Integration {
    /// The credential's kind and expiry, with a warning 30 days ahead.
    pub fn credential_info(&self) -> Option<CredentialInfo> {
        let cfg = self.current_tenant_config().ok()?;
        let now = self.now().unix_timestamp();
        Some(match &cfg.credential {
            Credential::Secret { .. } => CredentialInfo {
                kind: "secret".into(),
                expires: None,
                days_left: None,
                warning: Some(
                    "a client secret expires (after two years at most) without this server seeing it; run `o365-essentials setup` to replace it with a certificate made here".into(),
                ),
            },
            Credential::Pkcs12 { .. } => CredentialInfo {
                kind: "pkcs12".into(),
                expires: None,
                days_left: None,
                warning: None,
            },
            Credential::Certificate { .. } => {
                let end = cert_not_after(&cfg);
                let days = end.map(|e| (e - now).div_euclid(86_400));
                let warning = match days {
                    Some(d) if d < 0 => Some(
                        "the certificate has expired: Microsoft 365 refuses it; run `o365-essentials setup` to make a new one".to_string(),
                    ),
                    Some(d) if d <= RENEW_DAYS => Some(format!(
                        "the certificate expires in {d} days; run `o365-essentials roll-credential` (or `setup`) to replace it"
                    )),
                    _ => None,
                };
                CredentialInfo {
                    kind: "certificate".into(),
                    expires: end.map(rfc3339),
                    days_left: days,
                    warning,
                }
            }
        })
    }

    /// Replaces the app's certificate with a new one made here, through Graph's
    /// `addKey` and `removeKey` with proofs signed by the current key: the new key is
    /// added and proven to get a token before the integration switches to it, and only
    /// then is the old one removed.
    ///
    /// # Errors
    /// [`ErrorCode::NotSupported`] when `setup` did not make this registration or the
    /// credential is not a certificate file; Graph's and the identity platform's errors
    /// (the old certificate stays in use).
    pub async fn roll_credential(&self) -> Result<RollReport> {
        let cfg = self.current_tenant_config()?;
        let reg: Registration = self.store.setting(REGISTRATION_KEY)?.ok_or_else(|| {
            Error::new(
                ErrorCode::NotSupported,
                "this registration was not made by `o365-essentials setup`; run setup to take it over",
            )
        })?;
        let Credential::Certificate {
            certificate_file: Some(cert_file),
            private_key_file: Some(key_file),
            ..
        } = &cfg.credential
        else {
            return Err(Error::new(
                ErrorCode::NotSupported,
                "rolling needs a certificate credential in files; run `o365-essentials setup` to make one",
            ));
        };
        let old = read_local_cert(cert_file, key_file).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidConfig,
                "the current certificate cannot be read",
            )
        })?;
        let http = http_client(&cfg)?;
        let token = app_token(&http, &cfg, &reg.client_id, &old).await?;
        let dir = cert_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.results_folder());
        let new_cert_file = cert_file.with_extension("pem.next");
        let new_key_file = key_file.with_extension("key.next");
        let new = make_cert(&dir, &new_cert_file, &new_key_file, "o365-essentials")?;
        let graph = cfg.graph_url.trim_end_matches('/').to_string();
        let proof = |c: &LocalCert| -> Result<String> {
            let key = std::fs::read(&c.key_file).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("cannot read {}: {e}", c.key_file.display()),
                )
            })?;
            let now = wall_clock().unix_timestamp();
            signed_jwt(
                &key,
                &c.der,
                &json!({"aud": "00000002-0000-0000-c000-000000000000", "iss": reg.object_id, "nbf": now, "exp": now + 600}),
            )
        };
        let s = Session {
            http: http.clone(),
            graph,
            token,
        };
        let added = s
            .send(
                reqwest::Method::POST,
                &format!("/applications/{}/addKey", reg.object_id),
                Some(&json!({
                    "keyCredential": {"type": "AsymmetricX509Cert", "usage": "Verify", "key": B64.encode(&new.der)},
                    "passwordCredential": null,
                    "proof": proof(&old)?,
                })),
            )
            .await?;
        let added_key_id = added["keyId"].as_str().unwrap_or("").to_string();
        // The new key must work before anything switches to it.
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            match app_token(&http, &cfg, &reg.client_id, &new).await {
                Ok(_) => break,
                Err(e) if started.elapsed() > Duration::from_secs(300) => {
                    return Err(
                        e.context("the new certificate got no token; the old one stays in use")
                    );
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
            }
        }
        let io = |e: std::io::Error| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("cannot move the new certificate into place: {e}"),
            )
        };
        std::fs::rename(&new_key_file, key_file).map_err(io)?;
        std::fs::rename(&new_cert_file, cert_file).map_err(io)?;
        let current = read_local_cert(cert_file, key_file)
            .ok_or_else(|| Error::internal("the new certificate cannot be read back"))?;
        self.adopt_tenant_config(cfg.clone()).await?;
        s.send(
            reqwest::Method::POST,
            &format!("/applications/{}/removeKey", reg.object_id),
            Some(&json!({"keyId": reg.key_id, "proof": proof(&current)?})),
        )
        .await?;
        self.store.set_setting(
            REGISTRATION_KEY,
            &Registration {
                key_id: added_key_id.clone(),
                ..reg.clone()
            },
        )?;
        Ok(RollReport {
            added_key_id,
            removed_key_id: reg.key_id,
            certificate_expires: rfc3339(current.not_after),
        })
    }
}

/// A client credentials token for Graph from `cert`.
async fn app_token(
    http: &reqwest::Client,
    cfg: &GraphConfig,
    client_id: &str,
    cert: &LocalCert,
) -> Result<SecretString> {
    app_token_works(http, cfg, client_id, cert).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_role_ids_are_read_by_value_for_application_members_only() {
        let sp = json!({"appRoles": [
            {"id": "A", "value": "Sites.FullControl.All", "allowedMemberTypes": ["User"]},
            {"id": "B", "value": "Sites.FullControl.All", "allowedMemberTypes": ["Application"]},
            {"id": "C", "value": "User.ReadWrite.All"},
        ]});
        assert_eq!(role_id(&sp, "Sites.FullControl.All").as_deref(), Some("b"));
        assert_eq!(role_id(&sp, "User.ReadWrite.All").as_deref(), Some("c"));
        assert_eq!(role_id(&sp, "Mail.Send"), None);
        assert_eq!(role_id(&json!({"appRoles": "no"}), "x"), None);
        assert_eq!(role_id(&Value::Null, "x"), None);
    }

    #[test]
    fn required_access_compares_ignoring_order_and_case() {
        let a = json!([{"resourceAppId": "G", "resourceAccess": [{"id": "X"}, {"id": "y"}]}]);
        let b = json!([{"resourceAppId": "g", "resourceAccess": [{"id": "Y"}, {"id": "x"}]}]);
        assert!(same_access(&a, &b));
        assert!(!same_access(&a, &json!([])));
        assert!(same_access(&Value::Null, &json!([])));
    }

    #[test]
    fn the_tenant_section_is_written_and_the_rest_kept_in_toml_and_json() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("o365-setup-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let tenant = json!({"tenant_id": "t", "client_id": "c", "credential": {"kind": "certificate", "certificate_file": "/a.pem", "private_key_file": "/a.key"}});
        let toml_file = dir.join("c.toml");
        std::fs::write(
            &toml_file,
            "store = \"/s.db\"\n[tenant]\ntenant_id = \"t\"\nclient_id = \"0\"\nlogin_url = \"http://x\"\n[tenant.credential]\nkind = \"secret\"\nsecret = \"old\"\n",
        )
        .unwrap_or_default();
        assert!(write_config(&toml_file, &tenant).is_ok());
        let text = std::fs::read_to_string(&toml_file).unwrap_or_default();
        let t: toml::Table = toml::from_str(&text).unwrap_or_default();
        assert_eq!(t["store"].as_str(), Some("/s.db"));
        assert_eq!(t["tenant"]["client_id"].as_str(), Some("c"));
        assert_eq!(t["tenant"]["login_url"].as_str(), Some("http://x"));
        assert_eq!(
            t["tenant"]["credential"]["kind"].as_str(),
            Some("certificate")
        );
        assert!(!text.contains("old"), "the secret is gone");
        let mode = std::fs::metadata(&toml_file)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o777, 0o600);
        let json_file = dir.join("c.json");
        std::fs::write(&json_file, r#"{"store": "/s.db", "tenant": {"tenant_id": "t", "client_id": "0", "credential": {"kind": "secret", "secret": "old"}}}"#).unwrap_or_default();
        assert!(write_config(&json_file, &tenant).is_ok());
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(v["tenant"]["client_id"], "c");
        assert_eq!(v["store"], "/s.db");
        assert!(write_config(&dir.join("missing.toml"), &tenant).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
