//! [`IntegrationConfig`]: the one configuration shape that opens an integration, the same
//! JSON from Rust, C, Python and the command line. Unknown fields are refused with the
//! path of the field; secrets are never serialised back out and never in `Debug`.
//!
//! ```
//! let config = o365_essentials_core::config::IntegrationConfig::from_json(r#"{
//!     "directory": "demo",
//!     "tenant": {"tenant_id": "contoso.onmicrosoft.com", "client_id": "app",
//!                "credential": {"kind": "secret", "secret": "s3cret"}},
//!     "store": "/var/lib/o365-essentials/state.db"
//! }"#).unwrap();
//! assert!(!format!("{config:?}").contains("s3cret"));
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::graph::GraphConfig;
use crate::ldap::LdapConfig;
use crate::model::LicenceAssignment;
use crate::validate;

/// Where local users come from.
// One per process, read once: the LDAP variant's size does not matter, and boxing it
// would change the public shape every caller matches on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryConfig {
    /// Active Directory or Samba AD over LDAP.
    Ldap(LdapConfig),
    /// The demo company (in memory): for the quickstart and trying things out.
    #[default]
    Demo,
    /// The demo company with this many more staff (`staff0001`, ...; at most 100,000):
    /// for trying bulk work at a size.
    DemoCompany {
        /// Staff beyond the demo's twelve people.
        people: usize,
    },
    /// An empty in-memory directory of this DNS domain.
    Memory {
        /// The domain, such as `contoso.local`.
        domain: String,
    },
}

/// How the sync runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Seconds between sync rounds of the loop (at least 1; 300 by default).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Disables and deletes above this fraction of linked accounts are held (0.10).
    #[serde(default = "default_fraction")]
    pub threshold_fraction: f64,
    /// ... but never fewer than this many (5).
    #[serde(default = "default_min")]
    pub threshold_min: usize,
}

fn default_interval() -> u64 {
    300
}

fn default_fraction() -> f64 {
    0.10
}

fn default_min() -> usize {
    5
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            interval_secs: default_interval(),
            threshold_fraction: default_fraction(),
            threshold_min: default_min(),
        }
    }
}

/// The company's DNS server, for record checks and (with a key) automatic records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// The server to check records in and to update (`127.0.0.1:53`); the system
    /// resolver when unset.
    #[serde(default)]
    pub server: Option<SocketAddr>,
    /// A file holding the TSIG key (`key "name" { algorithm hmac-sha256; secret "..."; };`,
    /// as `tsig-keygen` prints it) allowed to update the zone; records are published by
    /// hand when unset.
    #[serde(default)]
    pub tsig_key_file: Option<PathBuf>,
}

/// Everything an integration is opened with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// The local directory.
    #[serde(default)]
    pub directory: DirectoryConfig,
    /// The Microsoft 365 tenant: app registration, credential, service base URLs. One
    /// credential serves Graph, Exchange and SharePoint.
    pub tenant: GraphConfig,
    /// The state store file (SQLite).
    pub store: PathBuf,
    /// The key file of the password queue (created 0600 when absent); beside the store
    /// (`<store>.key`) when unset.
    #[serde(default)]
    pub password_key: Option<PathBuf>,
    /// Where results files go; the store's folder when unset.
    #[serde(default)]
    pub results_folder: Option<PathBuf>,
    /// The company's domain (`contoso.com`): the requirements check validates it and new
    /// online IDs use it once verified.
    #[serde(default)]
    pub custom_domain: Option<String>,
    /// The `usageLocation` of new online accounts (ISO 3166 alpha-2, such as `GB`).
    #[serde(default)]
    pub usage_location: Option<String>,
    /// Licences a bulk create assigns when the request names none.
    #[serde(default)]
    pub default_licences: Vec<LicenceAssignment>,
    /// The sync loop.
    #[serde(default)]
    pub sync: SyncSettings,
    /// The company's DNS server.
    #[serde(default)]
    pub dns: Option<DnsSettings>,
    /// Items of bulk work (creates, imports) worked on at once (32); the requests are
    /// still paced to the tenant's throttling budget. 1 works one item at a time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Password capture on a Samba DC (`samba-tool user syncpasswords` and the hook).
    #[serde(default)]
    pub password_capture: Option<crate::engine::CaptureSettings>,
    /// Local users never synced, whatever else they are: sAMAccountNames, UPNs or
    /// objectGUIDs (a kiosk account, a shared mailbox's owner ...).
    #[serde(default)]
    pub exclude_users: Vec<String>,
    /// Privileged users (in Domain Admins or another privileged group, `adminCount = 1`,
    /// or online role holders by UPN) that are synced anyway, because the administrator
    /// named them here. Built-in, system, bind and out-of-scope accounts never are.
    #[serde(default)]
    pub allow_protected: Vec<String>,
}

/// The default of [`IntegrationConfig::concurrency`].
pub fn default_concurrency() -> usize {
    32
}

/// Parses JSON strictly: an unknown or mistyped field is an error naming its path
/// (`tenant.credential.secrte`) and position.
///
/// # Errors
/// `code` with the path and serde's message.
pub(crate) fn parse_strict<T: DeserializeOwned>(
    text: &str,
    code: ErrorCode,
    what: &str,
) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_json reports some type mismatches (a number where an enum is read) as
        // syntax errors: well-formed text is never `malformed_json`.
        let well_formed = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        path_error(e, code, what, well_formed)
    })?;
    de.end().map_err(|e| {
        let code = if code == ErrorCode::InvalidInput {
            ErrorCode::MalformedJson
        } else {
            code
        };
        Error::new(code, format!("{what}: {e}"))
    })?;
    Ok(value)
}

/// Like [`parse_strict`], from an already parsed JSON value.
///
/// # Errors
/// `code` with the path and serde's message.
pub(crate) fn from_value_strict<T: DeserializeOwned>(
    value: serde_json::Value,
    code: ErrorCode,
    what: &str,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| path_error(e, code, what, true))
}

/// `what at `a.b.c`: serde's message` — the path only when there is one.
fn path_error(
    e: serde_path_to_error::Error<serde_json::Error>,
    code: ErrorCode,
    what: &str,
    well_formed: bool,
) -> Error {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let at = if path == "." || path.is_empty() {
        String::new()
    } else {
        format!(" at `{path}`")
    };
    // Parameters say precisely what is wrong; a configuration is `invalid_config` whole.
    let code = match code {
        ErrorCode::InvalidInput if !well_formed && (inner.is_syntax() || inner.is_eof()) => {
            ErrorCode::MalformedJson
        }
        ErrorCode::InvalidInput if inner.to_string().starts_with("unknown field") => {
            ErrorCode::UnknownField
        }
        c => c,
    };
    Error::new(code, format!("{what}{at}: {inner}"))
}

impl IntegrationConfig {
    /// Parses and checks a configuration.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] naming the field and what is wrong.
    pub fn from_json(text: &str) -> Result<IntegrationConfig> {
        let c: IntegrationConfig =
            parse_strict(text, ErrorCode::InvalidConfig, "the configuration")?;
        c.check()?;
        Ok(c)
    }

    /// Checks what serde cannot: values in range, names well formed.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] naming the field.
    pub fn check(&self) -> Result<()> {
        let bad = |field: &str, why: String| {
            Err(Error::new(
                ErrorCode::InvalidConfig,
                format!("the configuration at `{field}`: {why}"),
            ))
        };
        if self.store.as_os_str().is_empty() {
            return bad("store", "the state store path is empty".into());
        }
        if self.tenant.tenant_id.trim().is_empty() {
            return bad("tenant.tenant_id", "the tenant id is empty".into());
        }
        if self.tenant.client_id.trim().is_empty() {
            return bad("tenant.client_id", "the app's client id is empty".into());
        }
        if let Some(d) = &self.custom_domain
            && let Err(e) = validate::domain_name(d)
        {
            return bad("custom_domain", e.message().to_string());
        }
        if let Some(l) = &self.usage_location
            && let Err(e) = validate::usage_location(l)
        {
            return bad("usage_location", e.message().to_string());
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return bad(
                "concurrency",
                format!("{} is not between 1 and 256", self.concurrency),
            );
        }
        if self.sync.interval_secs == 0 || self.sync.interval_secs > 7 * 24 * 3600 {
            return bad(
                "sync.interval_secs",
                format!(
                    "{} is not between 1 and 604800 (a week)",
                    self.sync.interval_secs
                ),
            );
        }
        for (field, value) in [
            (
                "tenant.connect_timeout_secs",
                self.tenant.connect_timeout_secs,
            ),
            (
                "tenant.request_timeout_secs",
                self.tenant.request_timeout_secs,
            ),
        ] {
            if let Err(e) = validate::seconds(field, value, validate::MAX_TIMEOUT_SECS) {
                return bad(field, e.message().to_string());
            }
        }
        if let DirectoryConfig::Ldap(l) = &self.directory
            && let Err(e) = validate::seconds(
                "directory.ldap.timeout_secs",
                l.timeout_secs,
                validate::MAX_TIMEOUT_SECS,
            )
        {
            return bad("directory.ldap.timeout_secs", e.message().to_string());
        }
        if !(1..=100).contains(&self.tenant.max_attempts) {
            return bad(
                "tenant.max_attempts",
                format!("{} is not between 1 and 100", self.tenant.max_attempts),
            );
        }
        if !(1..=1024).contains(&self.tenant.max_concurrency) {
            return bad(
                "tenant.max_concurrency",
                format!("{} is not between 1 and 1024", self.tenant.max_concurrency),
            );
        }
        if !(1..=999).contains(&self.tenant.page_size) {
            return bad(
                "tenant.page_size",
                format!("{} is not between 1 and 999", self.tenant.page_size),
            );
        }
        if !(1..=crate::graph::MAX_PAGES_LIMIT).contains(&self.tenant.max_pages) {
            return bad(
                "tenant.max_pages",
                format!(
                    "{} is not between 1 and {}",
                    self.tenant.max_pages,
                    crate::graph::MAX_PAGES_LIMIT
                ),
            );
        }
        if !(self.sync.threshold_fraction > 0.0 && self.sync.threshold_fraction <= 1.0) {
            return bad(
                "sync.threshold_fraction",
                format!("{} is not in (0, 1]", self.sync.threshold_fraction),
            );
        }
        if let DirectoryConfig::DemoCompany { people } = &self.directory
            && *people > 100_000
        {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "the configuration at `directory.demo_company.people`: {people} is more than 100,000"
                ),
            ));
        }
        if let DirectoryConfig::Memory { domain } = &self.directory
            && domain.trim().is_empty()
        {
            return bad("directory.memory.domain", "the domain is empty".into());
        }
        Ok(())
    }

    /// The password key file: the one configured, else `<store>.key`.
    pub fn password_key_path(&self) -> PathBuf {
        self.password_key.clone().unwrap_or_else(|| {
            let mut p = self.store.as_os_str().to_owned();
            p.push(".key");
            PathBuf::from(p)
        })
    }

    /// The results folder: the one configured, else the store's folder.
    pub fn results_folder_path(&self) -> PathBuf {
        self.results_folder.clone().unwrap_or_else(|| {
            self.store
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
        })
    }

    /// The configuration as JSON with every secret left out (for showing settings).
    ///
    /// # Errors
    /// [`ErrorCode::Internal`] if it cannot be represented.
    pub fn to_redacted_json(&self) -> Result<String> {
        crate::json::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
        "tenant": {"tenant_id": "t", "client_id": "c",
                   "credential": {"kind": "secret", "secret": "very-secret-value"}},
        "store": "/var/lib/o365-essentials/state.db"
    }"#;

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = IntegrationConfig::from_json(MINIMAL).unwrap();
        assert!(matches!(c.directory, DirectoryConfig::Demo));
        assert_eq!(c.sync, SyncSettings::default());
        assert_eq!(
            c.password_key_path(),
            PathBuf::from("/var/lib/o365-essentials/state.db.key")
        );
        assert_eq!(
            c.results_folder_path(),
            PathBuf::from("/var/lib/o365-essentials")
        );
        assert_eq!(c.tenant.graph_url, "https://graph.microsoft.com/v1.0");
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let typo = MINIMAL.replace("\"secret\": \"very", "\"secrte\": \"very");
        let e = IntegrationConfig::from_json(&typo).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert!(e.message().contains("secrte"), "{e}");
        let nested = MINIMAL.replace("\"store\"", "\"sync\": {\"intervall_secs\": 5}, \"store\"");
        let e = IntegrationConfig::from_json(&nested).unwrap_err();
        assert!(
            e.message().contains("`sync.intervall_secs`") || e.message().contains("sync"),
            "{e}"
        );
        assert!(e.message().contains("intervall_secs"), "{e}");
        let top = MINIMAL.replace("\"store\"", "\"stores\": 1, \"store\"");
        let e = IntegrationConfig::from_json(&top).unwrap_err();
        assert!(e.message().contains("stores"), "{e}");
        let ldap = MINIMAL.replace(
            "\"store\"",
            "\"directory\": {\"ldap\": {\"url\": \"ldaps://dc\", \"bind\": \"b\", \"password\": \"p\", \"base_dn\": \"x\"}}, \"store\"",
        );
        let e = IntegrationConfig::from_json(&ldap).unwrap_err();
        assert!(e.message().contains("directory.ldap"), "{e}");
        assert!(e.message().contains("base_dn"), "{e}");
    }

    #[test]
    fn values_are_checked_with_the_field_named() {
        let bad = MINIMAL.replace("\"store\"", "\"usage_location\": \"Britain\", \"store\"");
        let e = IntegrationConfig::from_json(&bad).unwrap_err();
        assert!(e.message().contains("usage_location"), "{e}");
        let bad = MINIMAL.replace(
            "\"store\"",
            "\"sync\": {\"threshold_fraction\": 2}, \"store\"",
        );
        assert!(
            IntegrationConfig::from_json(&bad)
                .unwrap_err()
                .message()
                .contains("threshold_fraction")
        );
    }

    #[test]
    fn durations_and_limits_out_of_range_are_refused_with_the_field_named() {
        for (field, json) in [
            (
                "tenant.connect_timeout_secs",
                r#""connect_timeout_secs": 1e300"#,
            ),
            (
                "tenant.request_timeout_secs",
                r#""request_timeout_secs": -1"#,
            ),
            (
                "tenant.request_timeout_secs",
                r#""request_timeout_secs": 0"#,
            ),
            ("tenant.max_attempts", r#""max_attempts": 0"#),
            ("tenant.max_pages", r#""max_pages": 0"#),
            ("tenant.page_size", r#""page_size": 5000"#),
        ] {
            let text = MINIMAL.replace(
                r#""client_id": "c","#,
                &format!(r#""client_id": "c", {json},"#),
            );
            let e = IntegrationConfig::from_json(&text).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidConfig, "{json}");
            assert!(e.message().contains(&format!("`{field}`")), "{json}: {e}");
        }
        let text = MINIMAL.replace(
            "\"store\"",
            "\"sync\": {\"interval_secs\": 18446744073709551615}, \"store\"",
        );
        let e = IntegrationConfig::from_json(&text).unwrap_err();
        assert!(e.message().contains("`sync.interval_secs`"), "{e}");
        // A GraphTenant built from a struct (not JSON) checks too, rather than panicking.
        let mut g = crate::graph::GraphConfig::with_secret("t", "c", "s");
        g.connect_timeout_secs = 1e300;
        let e = crate::graph::GraphTenant::new(g).unwrap_err();
        assert!(e.message().contains("connect_timeout_secs"), "{e}");
    }

    #[test]
    fn secrets_never_leave_through_debug_or_serialisation() {
        let ldap = MINIMAL.replace(
            "\"store\"",
            "\"directory\": {\"ldap\": {\"url\": \"ldaps://dc\", \"bind\": \"b\", \"password\": \"ldap-pass-value\"}}, \"store\"",
        );
        let c = IntegrationConfig::from_json(&ldap).unwrap();
        let shown = format!("{c:?} {}", c.to_redacted_json().unwrap());
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("ldap-pass-value"), "{shown}");
        assert!(shown.contains("ldaps://dc"));
    }

    #[test]
    fn the_example_file_in_the_repository_parses() {
        let text = include_str!("../../docs/integration.example.json");
        let c = IntegrationConfig::from_json(text).unwrap();
        assert!(matches!(c.directory, DirectoryConfig::Ldap(_)));
        assert_eq!(c.custom_domain.as_deref(), Some("contoso.com"));
    }
}
