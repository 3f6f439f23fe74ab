//! Active Directory (Windows AD or Samba AD) over LDAP: the [`Directory`] port.
//!
//! TLS by default (LDAPS or StartTLS, certificates verified, a custom CA on request);
//! plain LDAP only when explicitly allowed and never for a password. Reads are paged and
//! streamed; changes come from DirSync (cookie kept by the caller) with a `uSNChanged`
//! fallback; deletions come out as tombstones with their GUID.
//!
//! ```no_run
//! # async fn demo() -> o365_essentials_core::Result<()> {
//! use futures::TryStreamExt;
//! use o365_essentials_core::ldap::{LdapConfig, LdapDirectory};
//! use o365_essentials_core::ports::Directory;
//! let dir = LdapDirectory::new(LdapConfig::new("ldaps://dc1.contoso.local", "svc-o365@contoso.local", "secret"))?;
//! let users: Vec<_> = dir.users().try_collect().await?;
//! println!("{} syncable users", users.len());
//! # Ok(()) }
//! ```

pub(crate) mod map;

/// The attributes read for each user (as `ldapsearch` would be asked for them).
pub const USER_ATTRIBUTES: &[&str] = map::USER_ATTRS;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use futures::stream::BoxStream;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry, SearchStream,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{Error, ErrorCode, Result};
use crate::model::{
    DirectoryChange, DirectoryChanges, DirectoryCursor, LocalGroup, LocalUser, NewLocalUser,
    ObjectGuid, PasswordPolicy, Topology, uac,
};
use crate::ports::Directory;

const DOMAIN_SCOPE: &str = "1.2.840.113556.1.4.1339";
const DIRSYNC: &str = "1.2.840.113556.1.4.841";
const SHOW_DELETED: &str = "1.2.840.113556.1.4.417";

fn default_page_size() -> u32 {
    500
}

fn default_timeout() -> f64 {
    15.0
}

fn yes() -> bool {
    true
}

/// How to reach and read the directory.
#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://dc1.contoso.local` (port 636) or `ldap://...` (389, with `starttls` or
    /// `allow_plain`).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Allow an unencrypted `ldap://` connection. The service account's password is
    /// still not sent over it unless `allow_plain_password` is set too.
    #[serde(default)]
    pub allow_plain: bool,
    /// Send the service account's password over an unencrypted connection anyway (a
    /// simple bind in clear). Anyone on the network path can read it; the requirements
    /// check and `status` warn on every run while this is set.
    #[serde(default)]
    pub allow_plain_password: bool,
    /// Verify the server certificate. Only `true` is accepted: switching verification
    /// off sent the password to any impostor; pin the DC's certificate with
    /// `certificate_sha256` instead.
    #[serde(default = "yes")]
    pub verify_certificates: bool,
    /// The SHA-256 fingerprint of the DC's own certificate (hex, colons allowed, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it). When set, exactly that
    /// certificate is accepted, whoever issued it and whatever names it holds — for a
    /// DC whose certificate no CA signed or has no subjectAltName (Samba's own).
    #[serde(default)]
    pub certificate_sha256: Option<String>,
    /// CA certificates (PEM) that issued the DC's certificate, inline.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Or a file with them.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The service account: a DN, a UPN (`svc@contoso.local`) or `DOMAIN\user`.
    pub bind: String,
    /// Its password; never serialised back out.
    #[serde(skip_serializing)]
    pub password: SecretString,
    /// Where users are read from; the domain's root when empty.
    #[serde(default)]
    pub base_dns: Vec<String>,
    /// An extra LDAP filter ANDed to the user filter (an administrator's setting).
    #[serde(default)]
    pub user_filter: Option<String>,
    /// The OU new users are created in; `CN=Users` when unset.
    #[serde(default)]
    pub users_ou: Option<String>,
    /// Page size of searches (AD caps at 1,000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Seconds for connecting and for each operation.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// The DC's DNS name as its certificate has it: the certificate is checked against
    /// this name as well as the URL's host (so a URL with an address keeps verification
    /// on), and the requirements check compares it with the DC it reached. The system's
    /// host name when unset.
    #[serde(default)]
    pub host_name: Option<String>,
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("allow_plain", &self.allow_plain)
            .field("allow_plain_password", &self.allow_plain_password)
            .field("verify_certificates", &self.verify_certificates)
            .field("certificate_sha256", &self.certificate_sha256)
            .field("bind", &self.bind)
            .field("password", &"<redacted>")
            .field("base_dns", &self.base_dns)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl LdapConfig {
    /// LDAPS with certificate verification and the defaults.
    pub fn new(
        url: impl Into<String>,
        bind: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        LdapConfig {
            url: url.into(),
            starttls: false,
            allow_plain: false,
            allow_plain_password: false,
            verify_certificates: true,
            certificate_sha256: None,
            ca_pem: None,
            ca_file: None,
            bind: bind.into(),
            password: SecretString::from(password.into()),
            base_dns: Vec::new(),
            user_filter: None,
            users_ou: None,
            page_size: default_page_size(),
            timeout_secs: default_timeout(),
            host_name: None,
        }
    }

    fn encrypted(&self) -> bool {
        self.url.to_ascii_lowercase().starts_with("ldaps://") || self.starttls
    }

    /// What in this configuration weakens the protection of the service account's
    /// password, for the requirements check and `status` to show on every run.
    pub fn security_warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.encrypted() && self.allow_plain_password {
            w.push(format!(
                "directory.ldap.allow_plain_password is set: the service account's password is sent unencrypted to {}; use ldaps:// or starttls",
                self.url
            ));
        }
        w
    }
}

/// A SHA-256 fingerprint in hex (colons and spaces allowed) → 32 bytes.
fn parse_fingerprint(text: &str) -> Result<[u8; 32]> {
    let hex: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    let bad = || {
        bad_config(
            "certificate_sha256 is not a SHA-256 fingerprint (64 hex digits, colons allowed, as `openssl x509 -noout -fingerprint -sha256 -in cert.pem` prints it)",
        )
    };
    let hex = hex
        .strip_prefix("sha256 Fingerprint=")
        .or_else(|| hex.strip_prefix("SHA256Fingerprint="))
        .unwrap_or(&hex);
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Checks the DC's certificate: the configured CA with the URL's host or `host_name`,
/// or exactly the pinned certificate. Handshake signatures are always verified.
#[derive(Debug)]
struct DcVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Chain and name verification; `None` when a pin replaces it.
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// `host_name`, tried when the URL's host does not match.
    also: Option<rustls_pki_types::ServerName<'static>>,
    pin: Option<[u8; 32]>,
}

impl rustls::client::danger::ServerCertVerifier for DcVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.pin {
            let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
            return if got.as_ref() == pin.as_slice() {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            };
        }
        let Some(webpki) = &self.webpki else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(first) => match &self.also {
                Some(name) => webpki
                    .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
                    .map_err(|_| first),
                None => Err(first),
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

struct RootDse {
    default_nc: String,
    config_nc: String,
    dns_host_name: String,
    domain_functionality: u32,
}

/// The LDAP directory. Share it as `Arc<LdapDirectory>`.
pub struct LdapDirectory {
    /// Operations sent (searches, modifications), for diagnostics and benchmarks.
    ops: std::sync::atomic::AtomicU64,
    cfg: LdapConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: tokio::sync::Mutex<Option<Ldap>>,
    root: tokio::sync::OnceCell<RootDse>,
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn bad_config(m: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidConfig, m)
}

/// Maps any ldap3 failure; result codes through [`map::result_error`].
fn ldap_err(e: LdapError, what: &str) -> Error {
    match e {
        LdapError::LdapResult { result } => map::result_error(result.rc, &result.text, what),
        LdapError::Timeout { .. } => Error::new(
            ErrorCode::Timeout,
            format!("{what}: the directory did not answer in time"),
        ),
        other => {
            let text = other.to_string().to_lowercase();
            let code = if text.contains("certificate")
                || text.contains("tls")
                || text.contains("handshake")
            {
                ErrorCode::Tls
            } else {
                ErrorCode::Transport
            };
            let why = if code == ErrorCode::Tls {
                "the TLS connection failed (is the DC's certificate trusted? set ca_file)"
            } else {
                "the connection to the directory failed"
            };
            Error::new(code, format!("{what}: {why}")).with_source(other)
        }
    }
}

/// Whether a failure is the connection's (worth one reconnect).
fn is_connection_error(e: &LdapError) -> bool {
    !matches!(
        e,
        LdapError::LdapResult { .. } | LdapError::AdapterInit(_) | LdapError::FilterParsing
    )
}

fn sam_ok(sam: &str) -> Result<()> {
    if sam.trim().is_empty() || sam.chars().count() > 20 {
        return Err(Error::invalid_input(format!(
            "the sAMAccountName `{sam}` must be 1–20 characters"
        )));
    }
    if let Some(c) = sam
        .chars()
        .find(|c| "\"/\\[]:;|=,+*?<>@".contains(*c) || c.is_control())
    {
        return Err(Error::invalid_input(format!(
            "the sAMAccountName `{}` contains `{}`, which AD does not allow",
            sam.escape_default(),
            c.escape_default()
        )));
    }
    Ok(())
}

type Stream = SearchStream<'static, String, Vec<String>>;

impl LdapDirectory {
    /// Checks the configuration; connects on first use.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] naming the setting: a plain `ldap://` URL without
    /// `starttls` or `allow_plain`, an unreadable CA file, an empty bind name.
    pub fn new(cfg: LdapConfig) -> Result<LdapDirectory> {
        let lower = cfg.url.to_ascii_lowercase();
        if !(lower.starts_with("ldaps://") || lower.starts_with("ldap://")) {
            return Err(bad_config(format!(
                "url `{}` must start with ldaps:// or ldap://",
                cfg.url
            )));
        }
        if !cfg.encrypted() && !cfg.allow_plain {
            return Err(bad_config(
                "an ldap:// URL sends the service account's password in clear: use ldaps://, set starttls, or set allow_plain",
            ));
        }
        if !cfg.verify_certificates {
            return Err(bad_config(
                "verify_certificates = false is no longer accepted: it sent the service account's password to any server that answered. Remove it and either configure ca_file (the CA that issued the DC's certificate) or pin the DC's own certificate with certificate_sha256 = the output of `openssl x509 -noout -fingerprint -sha256 -in /var/lib/samba/private/tls/cert.pem`",
            ));
        }
        if cfg.bind.trim().is_empty() {
            return Err(bad_config("bind (the service account) is empty"));
        }
        if !(1..=10_000).contains(&cfg.page_size) {
            return Err(bad_config(format!(
                "page_size {} is outside 1–10000",
                cfg.page_size
            )));
        }
        crate::validate::seconds(
            "timeout_secs",
            cfg.timeout_secs,
            crate::validate::MAX_TIMEOUT_SECS,
        )?;
        let tls = LdapDirectory::tls_config(&cfg)?;
        Ok(LdapDirectory {
            ops: std::sync::atomic::AtomicU64::new(0),
            cfg,
            tls,
            conn: tokio::sync::Mutex::new(None),
            root: tokio::sync::OnceCell::new(),
        })
    }

    fn tls_config(cfg: &LdapConfig) -> Result<Option<Arc<rustls::ClientConfig>>> {
        let pem = match (&cfg.ca_pem, &cfg.ca_file) {
            (Some(p), _) => Some(p.as_bytes().to_vec()),
            (None, Some(f)) => Some(
                std::fs::read(f)
                    .map_err(|e| bad_config(format!("cannot read ca_file {}: {e}", f.display())))?,
            ),
            (None, None) => None,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_config(format!("TLS setup failed: {e}")))?;
        let pin = cfg
            .certificate_sha256
            .as_deref()
            .map(parse_fingerprint)
            .transpose()?;
        let also = match cfg.host_name.as_deref().map(str::trim) {
            Some(h) if !h.is_empty() => Some(
                rustls_pki_types::ServerName::try_from(h.to_string()).map_err(|_| {
                    bad_config(format!("host_name `{h}` is not a DNS name or address"))
                })?,
            ),
            _ => None,
        };
        if pin.is_none() && pem.is_none() {
            return Ok(None); // ldap3's own roots, checked against the URL's host.
        }
        let webpki = match (&pin, pem) {
            (Some(_), _) | (None, None) => None,
            (None, Some(pem)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let c = c.map_err(|e| bad_config(format!("the CA PEM is malformed: {e}")))?;
                    roots
                        .add(c)
                        .map_err(|e| bad_config(format!("a CA certificate is not usable: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(bad_config("the CA PEM holds no certificate"));
                }
                Some(
                    rustls::client::WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| bad_config(format!("the CA certificates are not usable: {e}")))?,
                )
            }
        };
        let verifier = DcVerifier {
            provider,
            webpki,
            also,
            pin,
        };
        Ok(Some(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth(),
        )))
    }

    async fn connect(&self) -> Result<Ldap> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs_f64(self.cfg.timeout_secs))
            .set_starttls(self.cfg.starttls);
        if let Some(c) = &self.tls {
            settings = settings.set_config(c.clone());
        }
        if !self.cfg.encrypted() && !self.cfg.allow_plain_password {
            // Refused before connecting: nothing of the password leaves this host.
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "signing in to the directory as {}: {} is not encrypted, and the service account's password is not sent in clear; use ldaps:// or starttls (or set allow_plain_password to send it anyway, which is warned about on every run)",
                    self.cfg.bind, self.cfg.url
                ),
            ));
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| ldap_err(e, &format!("connecting to {}", self.cfg.url)))?;
        ldap3::drive!(conn);
        ldap.with_timeout(Duration::from_secs_f64(self.cfg.timeout_secs));
        let res = ldap
            .simple_bind(&self.cfg.bind, self.cfg.password.expose_secret())
            .await
            .map_err(|e| ldap_err(e, "signing in to the directory"))?;
        res.success().map_err(|e| {
            ldap_err(
                e,
                &format!("signing in to the directory as {}", self.cfg.bind),
            )
        })?;
        Ok(ldap)
    }

    /// LDAP operations sent so far (each search counts once, however many pages).
    pub fn operation_count(&self) -> u64 {
        self.ops.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn handle(&self, fresh: bool) -> Result<Ldap> {
        self.ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut g = self.conn.lock().await;
        if fresh {
            *g = None;
        }
        if let Some(l) = g.as_ref() {
            return Ok(l.clone());
        }
        let l = self.connect().await?;
        *g = Some(l.clone());
        Ok(l)
    }

    /// Runs `op` on the connection; after a dropped connection, reconnects and runs it
    /// once more.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn(Ldap) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, LdapError>>,
    {
        let ldap = self.handle(false).await?;
        match op(ldap).await {
            Ok(v) => Ok(v),
            Err(e) if is_connection_error(&e) => {
                let ldap = self.handle(true).await?;
                op(ldap).await.map_err(|e| ldap_err(e, what))
            }
            Err(e) => Err(ldap_err(e, what)),
        }
    }

    /// Reads one object's attributes (a base search); `None` when the answer is empty.
    async fn read_object(
        &self,
        dn: &str,
        attrs: &[&str],
        what: &str,
    ) -> Result<Option<SearchEntry>> {
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_string()).collect();
        let entries = self
            .run(what, |mut l| {
                let (dn, attrs) = (dn.to_string(), attrs.clone());
                async move {
                    l.search(&dn, Scope::Base, "(objectClass=*)", attrs)
                        .await?
                        .success()
                        .map(|(e, _)| e)
                }
            })
            .await?;
        Ok(entries.into_iter().next().map(SearchEntry::construct))
    }

    async fn root(&self) -> Result<&RootDse> {
        self.root
            .get_or_try_init(|| async {
                let e = self
                    .read_object(
                        "",
                        &[
                            "defaultNamingContext",
                            "configurationNamingContext",
                            "dnsHostName",
                            "domainFunctionality",
                        ],
                        "reading the rootDSE",
                    )
                    .await?
                    .ok_or_else(|| {
                        Error::new(
                            ErrorCode::UnexpectedResponse,
                            "the directory has no rootDSE",
                        )
                    })?;
                let get = |k: &str| {
                    e.attrs
                        .get(k)
                        .and_then(|v| v.first())
                        .cloned()
                        .unwrap_or_default()
                };
                Ok(RootDse {
                    default_nc: get("defaultNamingContext"),
                    config_nc: get("configurationNamingContext"),
                    dns_host_name: get("dnsHostName"),
                    domain_functionality: get("domainFunctionality").parse().unwrap_or(0),
                })
            })
            .await
    }

    async fn bases(&self) -> Result<Vec<String>> {
        if self.cfg.base_dns.is_empty() {
            Ok(vec![self.root().await?.default_nc.clone()])
        } else {
            Ok(self.cfg.base_dns.clone())
        }
    }

    fn user_filter(&self, extra: &str) -> String {
        let admin = self
            .cfg
            .user_filter
            .as_deref()
            .map(|f| {
                if f.starts_with('(') {
                    f.to_string()
                } else {
                    format!("({f})")
                }
            })
            .unwrap_or_default();
        format!(
            "(&(objectCategory=person)(objectClass=user)(!(isCriticalSystemObject=TRUE)){admin}{extra})"
        )
    }

    async fn start_stream(&self, base: &str, filter: &str, attrs: Vec<String>) -> Result<Stream> {
        let page = self.cfg.page_size as i32;
        self.run(&format!("searching {base}"), |mut l| {
            let attrs = attrs.clone();
            async move {
                let adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> = vec![
                    Box::new(EntriesOnly::new()),
                    Box::new(PagedResults::new(page)),
                ];
                l.with_controls(RawControl {
                    ctype: DOMAIN_SCOPE.into(),
                    crit: false,
                    val: None,
                });
                l.streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
                    .await
            }
        })
        .await
    }

    /// Every entry of a paged subtree search, mapped; collected (for bounded results).
    async fn search_all<T>(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
        f: impl Fn(&map::Entry<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut s = self
            .start_stream(base, filter, attrs.iter().map(|a| a.to_string()).collect())
            .await?;
        let mut out = Vec::new();
        loop {
            match s.next().await {
                Ok(Some(entry)) => {
                    let e = SearchEntry::construct(entry);
                    out.push(f(&map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs))?);
                }
                Ok(None) => break,
                Err(e) => return Err(ldap_err(e, &format!("searching {base}"))),
            }
        }
        s.finish()
            .await
            .success()
            .map_err(|e| ldap_err(e, &format!("searching {base}")))?;
        Ok(out)
    }

    async fn find_one(
        &self,
        filter: &str,
        attrs: &[&str],
        what: &str,
    ) -> Result<Option<SearchEntry>> {
        let base = self.root().await?.default_nc.clone();
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let entries = self
            .run(what, |mut l| {
                let (attrs, base) = (attrs.clone(), base.clone());
                async move {
                    l.with_controls(RawControl {
                        ctype: DOMAIN_SCOPE.into(),
                        crit: false,
                        val: None,
                    });
                    l.search(&base, Scope::Subtree, filter, attrs)
                        .await?
                        .success()
                        .map(|(e, _)| e)
                }
            })
            .await?;
        Ok(entries
            .into_iter()
            .map(SearchEntry::construct)
            .find(|e| !e.dn.is_empty()))
    }

    /// One base search at `dn` with `filter`; `None` when the entry does not match.
    async fn read_matching(
        &self,
        dn: &str,
        filter: &str,
        attrs: &[&str],
        what: &str,
    ) -> Result<Option<SearchEntry>> {
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_string()).collect();
        let entries = self
            .run(what, |mut l| {
                let (dn, attrs, filter) = (dn.to_string(), attrs.clone(), filter.to_string());
                async move {
                    l.search(&dn, Scope::Base, &filter, attrs)
                        .await?
                        .success()
                        .map(|(e, _)| e)
                }
            })
            .await?;
        Ok(entries.into_iter().next().map(SearchEntry::construct))
    }

    /// Whether `dn` is under one of the configured bases.
    async fn under_bases(&self, dn: &str) -> Result<bool> {
        let dn = dn.to_ascii_lowercase();
        Ok(self.bases().await?.iter().any(|b| {
            let b = b.to_ascii_lowercase();
            dn == b || dn.ends_with(&format!(",{b}"))
        }))
    }

    /// Fills in what the gate decides from, for one user: the privileged groups it is in
    /// from `tokenGroups` (the server's own transitive answer, primary group included)
    /// and whether it is in the configured scope.
    async fn add_standing(&self, u: &mut LocalUser) -> Result<()> {
        let what = format!("reading the groups of {}", u.sam_account_name);
        let groups = self
            .read_object(&u.dn, &["tokenGroups"], &what)
            .await?
            .map(|e| map::token_group_sids(&map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs)))
            .unwrap_or_default();
        u.standing.privileged_groups = groups
            .iter()
            .filter_map(|sid| crate::engine::guard::privileged_group(sid))
            .collect();
        u.standing.privileged_groups.sort();
        let in_scope = self.under_bases(&u.dn).await?
            && (self.cfg.user_filter.is_none()
                || self
                    .read_matching(&u.dn, &self.user_filter(""), &["objectGUID"], &what)
                    .await?
                    .is_some());
        u.standing.out_of_scope = !in_scope;
        Ok(())
    }

    /// Every group of the domain that is a privileged well-known group or (nested) in
    /// one, by DN (lower case), with the privileged groups it amounts to; and the DNs of
    /// groups by SID (for primary groups). One listing of the domain's groups.
    async fn privileged_closure(
        &self,
    ) -> Result<(HashMap<String, Vec<String>>, HashMap<String, String>)> {
        struct G {
            dn: String,
            sid: Option<String>,
            member_of: Vec<String>,
        }
        let base = self.root().await?.default_nc.clone();
        let groups = self
            .search_all(
                &base,
                "(objectClass=group)",
                &["objectSid", "memberOf"],
                |e| {
                    Ok(G {
                        dn: e.dn.to_ascii_lowercase(),
                        sid: e.bytes("objectSid").as_deref().and_then(map::sid_text),
                        member_of: e
                            .texts("memberOf")
                            .into_iter()
                            .map(|m| m.to_ascii_lowercase())
                            .collect(),
                    })
                },
            )
            .await?;
        let by_dn: HashMap<&str, &G> = groups.iter().map(|g| (g.dn.as_str(), g)).collect();
        let by_sid: HashMap<String, String> = groups
            .iter()
            .filter_map(|g| g.sid.clone().map(|s| (s, g.dn.clone())))
            .collect();
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for g in &groups {
            // Walk up the nesting from this group, each group once (cycles are legal).
            let mut seen = HashSet::new();
            let mut todo = vec![g.dn.as_str()];
            let mut privileged = Vec::new();
            while let Some(dn) = todo.pop() {
                if !seen.insert(dn) {
                    continue;
                }
                let Some(x) = by_dn.get(dn) else { continue };
                if let Some(p) = x
                    .sid
                    .as_deref()
                    .and_then(crate::engine::guard::privileged_group)
                {
                    privileged.push(p);
                }
                todo.extend(x.member_of.iter().map(String::as_str));
            }
            if !privileged.is_empty() {
                privileged.sort();
                out.insert(g.dn.clone(), privileged);
            }
        }
        Ok((out, by_sid))
    }

    async fn dn_of(&self, guid: ObjectGuid) -> Result<String> {
        let f = format!("(&(objectClass=user){})", map::guid_filter(guid));
        self.find_one(&f, &["objectGUID"], &format!("looking up user {guid}"))
            .await?
            .map(|e| e.dn)
            .ok_or_else(|| Error::not_found(format!("no local user has objectGUID {guid}")))
    }

    async fn modify(&self, dn: &str, mods: Vec<Mod<Vec<u8>>>, what: &str) -> Result<()> {
        self.run(what, |mut l| {
            let mods = mods.clone();
            async move { l.modify(dn, mods).await?.success().map(|_| ()) }
        })
        .await
    }

    fn require_tls_for_passwords(&self) -> Result<()> {
        if self.cfg.encrypted() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::NotSupported,
                "passwords are never sent over an unencrypted LDAP connection: use ldaps:// or starttls",
            ))
        }
    }

    async fn full_listing(&self) -> Result<Vec<DirectoryChange>> {
        let mut all: Vec<LocalUser> = futures::TryStreamExt::try_collect(self.users()).await?;
        all.sort_by_key(|u| u.usn_changed);
        Ok(all
            .into_iter()
            .map(|u| DirectoryChange::Upserted { user: Box::new(u) })
            .collect())
    }

    async fn highest_usn(&self) -> Result<u64> {
        self.read_object("", &["highestCommittedUSN"], "reading highestCommittedUSN")
            .await?
            .and_then(|e| {
                e.attrs
                    .get("highestCommittedUSN")
                    .and_then(|v| v.first())
                    .and_then(|v| v.parse().ok())
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UnexpectedResponse,
                    "the rootDSE has no highestCommittedUSN",
                )
            })
    }

    /// One DirSync round from `cookie`: the changes and the new cookie. `Err` with
    /// `PreconditionFailed` when the server refuses the cookie.
    async fn dirsync(&self, cookie: &[u8]) -> Result<(Vec<DirectoryChange>, Vec<u8>)> {
        let base = self.root().await?.default_nc.clone();
        let mut cookie = cookie.to_vec();
        let mut changes = Vec::new();
        let mut attrs: Vec<String> = map::USER_ATTRS.iter().map(|a| a.to_string()).collect();
        attrs.push("isDeleted".into());
        loop {
            let req = map::dirsync_request(0, 0, &cookie);
            let (entries, res) = {
                let base = base.clone();
                let attrs = attrs.clone();
                let ldap = self.handle(false).await?;
                let mut l = ldap;
                l.with_controls(RawControl {
                    ctype: DIRSYNC.into(),
                    crit: true,
                    val: Some(req),
                });
                match l
                    .search(&base, Scope::Subtree, "(objectClass=user)", attrs)
                    .await
                {
                    Ok(r) => match r.success() {
                        Ok(v) => v,
                        Err(LdapError::LdapResult { result })
                            if !cookie.is_empty() && matches!(result.rc, 2 | 12 | 53 | 80) =>
                        {
                            return Err(Error::new(
                                ErrorCode::PreconditionFailed,
                                format!(
                                    "the directory refused the change cookie ({})",
                                    result.text
                                ),
                            ));
                        }
                        Err(e) => return Err(ldap_err(e, "reading directory changes (DirSync)")),
                    },
                    Err(e) => return Err(ldap_err(e, "reading directory changes (DirSync)")),
                }
            };
            for entry in entries {
                let e = SearchEntry::construct(entry);
                let view = map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs);
                let Some(raw) = view.bytes("objectGUID") else {
                    continue;
                };
                let guid = ObjectGuid::from_ad_bytes(&raw)?;
                let deleted = view
                    .text("isDeleted")
                    .is_some_and(|v| v.eq_ignore_ascii_case("TRUE"))
                    || e.dn.contains("\\0ADEL:");
                if deleted {
                    changes.push(DirectoryChange::Deleted { guid });
                } else {
                    // DirSync returns only the changed attributes: read the whole user.
                    match self.user(guid).await {
                        Ok(u) if u.is_syncable() => {
                            changes.push(DirectoryChange::Upserted { user: Box::new(u) })
                        }
                        Ok(_) => {}
                        Err(e) if e.code() == ErrorCode::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            let ctrl = res
                .ctrls
                .iter()
                .find(|c| c.1.ctype == DIRSYNC)
                .and_then(|c| c.1.val.as_deref())
                .and_then(map::dirsync_response);
            let Some((more, next)) = ctrl else {
                return Err(Error::new(
                    ErrorCode::UnexpectedResponse,
                    "the DirSync answer had no cookie",
                ));
            };
            cookie = next;
            if !more {
                return Ok((changes, cookie));
            }
        }
    }

    async fn usn_changes(&self, from: u64) -> Result<(Vec<DirectoryChange>, u64)> {
        let top = self.highest_usn().await?;
        let mut out = Vec::new();
        for base in self.bases().await? {
            let filter = self.user_filter(&format!("(uSNChanged>={})", from + 1));
            let mut users: Vec<LocalUser> = self
                .search_all(&base, &filter, map::USER_ATTRS, map::user)
                .await?;
            users.retain(|u| u.is_syncable() && u.usn_changed <= top);
            out.extend(
                users
                    .into_iter()
                    .map(|u| DirectoryChange::Upserted { user: Box::new(u) }),
            );
        }
        let nc = self.root().await?.default_nc.clone();
        let filter = format!(
            "(&(isDeleted=TRUE)(objectClass=user)(uSNChanged>={}))",
            from + 1
        );
        let deleted = self
            .run("reading deleted users", |mut l| {
                let (nc, filter) = (nc.clone(), filter.clone());
                async move {
                    l.with_controls(RawControl {
                        ctype: SHOW_DELETED.into(),
                        crit: true,
                        val: None,
                    });
                    l.search(
                        &format!("CN=Deleted Objects,{nc}"),
                        Scope::Subtree,
                        &filter,
                        vec!["objectGUID", "uSNChanged"],
                    )
                    .await?
                    .success()
                    .map(|(e, _)| e)
                }
            })
            .await
            .unwrap_or_default();
        for entry in deleted {
            let e = SearchEntry::construct(entry);
            if let Some(raw) = map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs).bytes("objectGUID") {
                out.push(DirectoryChange::Deleted {
                    guid: ObjectGuid::from_ad_bytes(&raw)?,
                });
            }
        }
        Ok((out, top))
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    fn users(&self) -> BoxStream<'_, Result<LocalUser>> {
        struct Walk {
            bases: Option<VecDeque<String>>,
            current: Option<Stream>,
            done: bool,
            /// Privileged groups by group DN, and group DNs by SID.
            closure: (HashMap<String, Vec<String>>, HashMap<String, String>),
        }
        let attrs: Vec<String> = map::USER_ATTRS.iter().map(|a| a.to_string()).collect();
        let filter = self.user_filter("");
        let start = Walk {
            bases: None,
            current: None,
            done: false,
            closure: Default::default(),
        };
        futures::stream::unfold(start, move |mut w| {
            let attrs = attrs.clone();
            let filter = filter.clone();
            async move {
                loop {
                    if w.done {
                        return None;
                    }
                    if w.bases.is_none() {
                        match self.bases().await {
                            Ok(b) => w.bases = Some(b.into()),
                            Err(e) => {
                                w.done = true;
                                return Some((Err(e), w));
                            }
                        }
                        match self.privileged_closure().await {
                            Ok(c) => w.closure = c,
                            Err(e) => {
                                w.done = true;
                                return Some((Err(e), w));
                            }
                        }
                    }
                    let Some(stream) = w.current.as_mut() else {
                        let base = w.bases.as_mut().and_then(VecDeque::pop_front)?;
                        match self.start_stream(&base, &filter, attrs.clone()).await {
                            Ok(s) => w.current = Some(s),
                            Err(e) => {
                                w.done = true;
                                return Some((Err(e), w));
                            }
                        }
                        continue;
                    };
                    match stream.next().await {
                        Ok(Some(entry)) => {
                            let e = SearchEntry::construct(entry);
                            let entry = map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs);
                            match map::user(&entry) {
                                Ok(mut u) if u.is_syncable() => {
                                    u.standing.privileged_groups =
                                        map::privileged_groups(&entry, &u, &w.closure);
                                    return Some((Ok(u), w));
                                }
                                Ok(_) => continue,
                                Err(err) => return Some((Err(err), w)),
                            }
                        }
                        Ok(None) => {
                            let res = stream.finish().await;
                            w.current = None;
                            if let Err(e) = res.success() {
                                w.done = true;
                                return Some((Err(ldap_err(e, "listing users")), w));
                            }
                        }
                        Err(e) => {
                            w.done = true;
                            // The connection is suspect; the next operation reconnects.
                            if is_connection_error(&e) {
                                *self.conn.lock().await = None;
                            }
                            return Some((Err(ldap_err(e, "listing users")), w));
                        }
                    }
                }
            }
        })
        .boxed()
    }

    async fn user(&self, guid: ObjectGuid) -> Result<LocalUser> {
        let f = format!("(&(objectClass=user){})", map::guid_filter(guid));
        let e = self
            .find_one(&f, map::USER_ATTRS, &format!("reading user {guid}"))
            .await?
            .ok_or_else(|| Error::not_found(format!("no local user has objectGUID {guid}")))?;
        let mut u = map::user(&map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs))?;
        self.add_standing(&mut u).await?;
        Ok(u)
    }

    async fn user_by_anchor(&self, guid: ObjectGuid) -> Result<LocalUser> {
        let consistency = map::guid_filter(guid).replacen("objectGUID", "mS-DS-ConsistencyGuid", 1);
        let f = format!(
            "(&(objectClass=user)(|{consistency}{}))",
            map::guid_filter(guid)
        );
        let e = self
            .find_one(
                &f,
                map::USER_ATTRS,
                &format!("looking up the anchor {guid}"),
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("no local user has the anchor {guid}")))?;
        let mut u = map::user(&map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs))?;
        self.add_standing(&mut u).await?;
        Ok(u)
    }

    async fn find_user(&self, name: &str) -> Result<Option<LocalUser>> {
        if name.is_empty() {
            return Ok(None);
        }
        let v = ldap3::ldap_escape(name);
        let f = format!("(&(objectClass=user)(|(sAMAccountName={v})(userPrincipalName={v})))");
        match self
            .find_one(&f, map::USER_ATTRS, &format!("looking up {name}"))
            .await?
        {
            Some(e) => map::user(&map::Entry::new(&e.dn, &e.attrs, &e.bin_attrs)).map(Some),
            None => Ok(None),
        }
    }

    fn groups(&self) -> BoxStream<'_, Result<LocalGroup>> {
        futures::stream::once(async move {
            let mut all = Vec::new();
            for base in self.bases().await? {
                all.extend(
                    self.search_all(
                        &base,
                        "(objectClass=group)",
                        &["objectGUID", "sAMAccountName", "displayName", "cn", "mail"],
                        map::group,
                    )
                    .await?,
                );
            }
            Ok::<_, Error>(all)
        })
        .map(|r| match r {
            Ok(v) => futures::stream::iter(v.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn group_members(&self, group: ObjectGuid) -> Result<Vec<ObjectGuid>> {
        let f = format!("(&(objectClass=group){})", map::guid_filter(group));
        let g = self
            .find_one(&f, &["objectGUID"], &format!("looking up group {group}"))
            .await?
            .ok_or_else(|| Error::not_found(format!("no local group has objectGUID {group}")))?;
        let filter = format!(
            "(&(objectClass=user)(memberOf={}))",
            ldap3::ldap_escape(g.dn.as_str())
        );
        let base = self.root().await?.default_nc.clone();
        self.search_all(&base, &filter, &["objectGUID"], |e| {
            ObjectGuid::from_ad_bytes(&e.bytes("objectGUID").ok_or_else(|| {
                Error::new(ErrorCode::UnexpectedResponse, "a member without objectGUID")
            })?)
        })
        .await
    }

    async fn changes_since(&self, cursor: Option<&DirectoryCursor>) -> Result<DirectoryChanges> {
        let resync = |changes: Vec<DirectoryChange>, cursor: DirectoryCursor| DirectoryChanges {
            changes,
            cursor,
            full_resync: true,
        };
        match cursor.map(|c| c.0.as_str()) {
            Some(c) if c.starts_with("dirsync:") => {
                let cookie = BASE64.decode(&c["dirsync:".len()..]).unwrap_or_default();
                match self.dirsync(&cookie).await {
                    Ok((changes, next)) => Ok(DirectoryChanges {
                        changes,
                        cursor: DirectoryCursor(format!("dirsync:{}", BASE64.encode(next))),
                        full_resync: false,
                    }),
                    Err(e) if e.code() == ErrorCode::PreconditionFailed => {
                        let (_, next) = self.dirsync(&[]).await?;
                        Ok(resync(
                            self.full_listing().await?,
                            DirectoryCursor(format!("dirsync:{}", BASE64.encode(next))),
                        ))
                    }
                    Err(e) => Err(e),
                }
            }
            Some(c) if c.starts_with("usn:") => {
                let from: Option<u64> = c["usn:".len()..].parse().ok();
                let top = self.highest_usn().await?;
                match from.filter(|f| *f <= top) {
                    Some(f) => {
                        let (changes, top) = self.usn_changes(f).await?;
                        Ok(DirectoryChanges {
                            changes,
                            cursor: DirectoryCursor(format!("usn:{top}")),
                            full_resync: false,
                        })
                    }
                    None => Ok(resync(
                        self.full_listing().await?,
                        DirectoryCursor(format!("usn:{top}")),
                    )),
                }
            }
            _ => {
                // Start: DirSync when the account may use it, else the uSN fallback.
                match self.dirsync(&[]).await {
                    Ok((_, next)) => Ok(resync(
                        self.full_listing().await?,
                        DirectoryCursor(format!("dirsync:{}", BASE64.encode(next))),
                    )),
                    Err(e)
                        if matches!(
                            e.code(),
                            ErrorCode::PermissionDenied
                                | ErrorCode::NotSupported
                                | ErrorCode::PolicyViolation
                        ) =>
                    {
                        let top = self.highest_usn().await?;
                        Ok(resync(
                            self.full_listing().await?,
                            DirectoryCursor(format!("usn:{top}")),
                        ))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn create_user(
        &self,
        user: &NewLocalUser,
        password: &secrecy::SecretString,
    ) -> Result<LocalUser> {
        self.require_tls_for_passwords()?;
        sam_ok(&user.sam_account_name)?;
        crate::validate::display_name(&user.display_name)?;
        let upn = user.user_principal_name.trim();
        match upn.split_once('@') {
            Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') => {}
            _ => {
                return Err(Error::invalid_input(format!(
                    "the userPrincipalName `{upn}` is not of the form name@domain"
                )));
            }
        }
        if self.find_user(&user.sam_account_name).await?.is_some() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "the sAMAccountName `{}` is already used",
                    user.sam_account_name
                ),
            ));
        }
        if self.find_user(upn).await?.is_some() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("the userPrincipalName `{upn}` is already used"),
            ));
        }
        let ou = match (&user.ou, &self.cfg.users_ou) {
            (Some(o), _) | (None, Some(o)) => o.clone(),
            (None, None) => format!("CN=Users,{}", self.root().await?.default_nc),
        };
        let dn = format!("CN={},{ou}", ldap3::dn_escape(user.display_name.as_str()));
        let set = |v: &str| HashSet::from([v.as_bytes().to_vec()]);
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (
                b"objectClass".to_vec(),
                ["top", "person", "organizationalPerson", "user"]
                    .iter()
                    .map(|c| c.as_bytes().to_vec())
                    .collect(),
            ),
            (b"sAMAccountName".to_vec(), set(&user.sam_account_name)),
            (b"userPrincipalName".to_vec(), set(upn)),
            (b"displayName".to_vec(), set(&user.display_name)),
            (
                b"userAccountControl".to_vec(),
                set(&uac::NORMAL_ACCOUNT.to_string()),
            ),
            (
                b"unicodePwd".to_vec(),
                HashSet::from([map::unicode_pwd(password.expose_secret())]),
            ),
        ];
        for (k, v) in [
            ("givenName", &user.given_name),
            ("sn", &user.surname),
            ("mail", &user.mail),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                attrs.push((k.as_bytes().to_vec(), set(v)));
            }
        }
        self.run(
            &format!("creating the user {}", user.sam_account_name),
            |mut l| {
                let attrs = attrs.clone();
                let dn = dn.clone();
                async move { l.add(&dn, attrs).await?.success().map(|_| ()) }
            },
        )
        .await?;
        self.find_user(&user.sam_account_name)
            .await?
            .ok_or_else(|| {
                Error::internal(format!(
                    "the user {} was created but cannot be read back",
                    user.sam_account_name
                ))
            })
    }

    async fn set_enabled(&self, guid: ObjectGuid, enabled: bool) -> Result<()> {
        let u = self.user(guid).await?;
        let bits = if enabled {
            u.user_account_control & !uac::ACCOUNTDISABLE
        } else {
            u.user_account_control | uac::ACCOUNTDISABLE
        };
        if bits == u.user_account_control {
            return Ok(());
        }
        self.modify(
            &u.dn,
            vec![Mod::Replace(
                b"userAccountControl".to_vec(),
                HashSet::from([bits.to_string().into_bytes()]),
            )],
            &format!("changing userAccountControl of {}", u.sam_account_name),
        )
        .await
    }

    async fn delete_user(&self, guid: ObjectGuid) -> Result<()> {
        let dn = self.dn_of(guid).await?;
        self.run(&format!("deleting {dn}"), |mut l| {
            let dn = dn.clone();
            async move { l.delete(&dn).await?.success().map(|_| ()) }
        })
        .await
    }

    async fn set_password(&self, guid: ObjectGuid, password: &secrecy::SecretString) -> Result<()> {
        self.require_tls_for_passwords()?;
        let dn = self.dn_of(guid).await?;
        self.modify(
            &dn,
            vec![Mod::Replace(
                b"unicodePwd".to_vec(),
                HashSet::from([map::unicode_pwd(password.expose_secret())]),
            )],
            &format!("setting the password of {dn}"),
        )
        .await
    }

    async fn set_consistency_guid(&self, guid: ObjectGuid, value: ObjectGuid) -> Result<()> {
        let dn = self.dn_of(guid).await?;
        self.modify(
            &dn,
            vec![Mod::Replace(
                b"mS-DS-ConsistencyGuid".to_vec(),
                HashSet::from([value.to_ad_bytes().to_vec()]),
            )],
            &format!("setting mS-DS-ConsistencyGuid of {dn}"),
        )
        .await
    }

    async fn password_policy(&self) -> Result<PasswordPolicy> {
        let nc = self.root().await?.default_nc.clone();
        let e = self
            .read_object(
                &nc,
                &["minPwdLength", "pwdProperties", "pwdHistoryLength"],
                "reading the password policy",
            )
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UnexpectedResponse,
                    "the domain object is missing",
                )
            })?;
        let n = |k: &str| {
            e.attrs
                .get(k)
                .and_then(|v| v.first())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        Ok(PasswordPolicy {
            min_length: n("minPwdLength"),
            complexity: n("pwdProperties") & 1 == 1,
            history_length: n("pwdHistoryLength"),
        })
    }

    async fn topology(&self) -> Result<Topology> {
        let root = self.root().await?;
        let config = root.config_nc.clone();
        let servers = self
            .search_all(&config, "(objectClass=nTDSDSA)", &["objectGUID"], |e| {
                Ok(e.dn.to_string())
            })
            .await?;
        let mut dcs = Vec::new();
        for s in &servers {
            // CN=NTDS Settings,CN=DC1,CN=Servers,... → the server object holds dNSHostName.
            let parent = s
                .split_once(',')
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            let name = self
                .read_object(&parent, &["dNSHostName"], "reading a domain controller")
                .await?
                .and_then(|e| e.attrs.get("dNSHostName").and_then(|v| v.first()).cloned())
                .unwrap_or(parent);
            dcs.push(name);
        }
        let netbios = self
            .search_all(
                &format!("CN=Partitions,{config}"),
                &format!(
                    "(&(nETBIOSName=*)(nCName={}))",
                    ldap3::ldap_escape(root.default_nc.as_str())
                ),
                &["nETBIOSName"],
                |e| Ok(e.text("nETBIOSName")),
            )
            .await?
            .into_iter()
            .flatten()
            .next();
        let host = self
            .cfg
            .host_name
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_default()
            .to_ascii_lowercase();
        let dc = root.dns_host_name.to_ascii_lowercase();
        let short = |s: &str| s.split('.').next().unwrap_or("").to_string();
        let this_host_is_dc =
            !host.is_empty() && (host == dc || (!host.contains('.') && short(&dc) == host));
        let domain_dns_name = root
            .default_nc
            .split(',')
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("DC=")
                    .or_else(|| p.trim().strip_prefix("dc="))
            })
            .collect::<Vec<_>>()
            .join(".");
        Ok(Topology {
            domain_controllers: dcs,
            connected_dc: root.dns_host_name.clone(),
            this_host_is_dc,
            domain_functional_level: root.domain_functionality,
            domain_dns_name,
            netbios_name: netbios,
        })
    }
}
