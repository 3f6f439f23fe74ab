//! The Graph backend's configuration: one serde shape for Rust, C and Python.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How the app proves who it is to the identity platform.
#[derive(schemars::JsonSchema, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// A client secret.
    Secret {
        /// The secret value (not its id); never serialised back out.
        #[serde(skip_serializing)]
        #[schemars(with = "String")]
        secret: SecretString,
    },
    /// A certificate and its RSA private key, PEM (`CERTIFICATE` and `PRIVATE KEY` or
    /// `RSA PRIVATE KEY`), given inline or as files.
    Certificate {
        /// The certificate PEM, inline.
        #[serde(default)]
        certificate_pem: Option<String>,
        /// Or a file holding it.
        #[serde(default)]
        certificate_file: Option<PathBuf>,
        /// The private key PEM, inline; never serialised back out.
        #[serde(default, skip_serializing)]
        #[schemars(with = "Option<String>")]
        private_key_pem: Option<SecretString>,
        /// Or a file holding it (may be the certificate file too).
        #[serde(default)]
        private_key_file: Option<PathBuf>,
    },
    /// A PKCS#12 (`.pfx`) file with the certificate and key.
    Pkcs12 {
        /// The file.
        path: PathBuf,
        /// Its password (empty when none); never serialised back out.
        #[serde(default = "empty_secret", skip_serializing)]
        #[schemars(with = "String")]
        password: SecretString,
    },
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret { .. } => f.write_str("Credential::Secret(<redacted>)"),
            Credential::Certificate {
                certificate_file,
                private_key_file,
                ..
            } => f
                .debug_struct("Credential::Certificate")
                .field("certificate_file", certificate_file)
                .field("private_key_file", private_key_file)
                .finish_non_exhaustive(),
            Credential::Pkcs12 { path, .. } => f
                .debug_struct("Credential::Pkcs12")
                .field("path", path)
                .finish_non_exhaustive(),
        }
    }
}

fn default_login_url() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_graph_url() -> String {
    "https://graph.microsoft.com/v1.0".into()
}

fn default_exchange_url() -> String {
    "https://outlook.office365.com/adminapi/beta".into()
}

fn default_connect_timeout() -> f64 {
    10.0
}

fn default_request_timeout() -> f64 {
    60.0
}

fn default_max_attempts() -> u32 {
    8
}

fn default_concurrency() -> usize {
    32
}

fn default_page_size() -> u32 {
    999
}

fn default_max_pages() -> u32 {
    10_000
}

/// The largest [`GraphConfig::max_pages`] accepted.
pub(crate) const MAX_PAGES_LIMIT: u32 = 1_000_000;

/// Everything the Graph backend needs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    /// Tenant id (GUID) or a verified domain of the tenant.
    pub tenant_id: String,
    /// The app registration's client id.
    pub client_id: String,
    /// Secret, certificate or PKCS#12.
    pub credential: Credential,
    /// Identity platform base (`https://login.microsoftonline.com`).
    #[serde(default = "default_login_url")]
    pub login_url: String,
    /// Graph base with the version (`https://graph.microsoft.com/v1.0`).
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    /// Exchange admin API base (`https://outlook.office365.com/adminapi/beta`).
    #[serde(default = "default_exchange_url")]
    pub exchange_url: String,
    /// Where to send SharePoint REST calls for the team site; `None` sends them to the
    /// team site's own URL (from Graph), which is right for Microsoft 365.
    #[serde(default)]
    pub sharepoint_url: Option<String>,
    /// Extra CA certificates (PEM) to trust, inline.
    #[serde(default)]
    pub ca_bundle_pem: Option<String>,
    /// Or a file with them.
    #[serde(default)]
    pub ca_bundle_file: Option<PathBuf>,
    /// An HTTP(S) proxy URL.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Seconds to wait for a whole request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
    /// Attempts per request before giving up (throttling and transient failures).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// `$top` for listings (1–999).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Pages one listing follows before it stops with `untrusted_response` (10,000; at
    /// most 1,000,000): a service that keeps sending a next link cannot loop forever.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

impl GraphConfig {
    /// A configuration with a client secret and the public endpoints.
    pub fn with_secret(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        GraphConfig {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            credential: Credential::Secret {
                secret: SecretString::from(secret.into()),
            },
            login_url: default_login_url(),
            graph_url: default_graph_url(),
            exchange_url: default_exchange_url(),
            sharepoint_url: None,
            ca_bundle_pem: None,
            ca_bundle_file: None,
            proxy: None,
            connect_timeout_secs: default_connect_timeout(),
            request_timeout_secs: default_request_timeout(),
            max_attempts: default_max_attempts(),
            max_concurrency: default_concurrency(),
            page_size: default_page_size(),
            max_pages: default_max_pages(),
        }
    }
}
