//! The emulator's configuration: one serde shape for the library and the binary's
//! `--config FILE`. Every field has a default, so `{}` is a valid configuration.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Tenant size, which sets the resource-unit budget (S < 50 users, M 50–500, L > 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TenantSize {
    /// Fewer than 50 users: 3,500 RU per 10 s.
    #[default]
    Small,
    /// 50–500 users: 5,000 RU per 10 s.
    Medium,
    /// More than 500 users: 8,000 RU per 10 s.
    Large,
}

/// The emulated tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id (a GUID).
    pub id: String,
    /// Organization display name.
    pub display_name: String,
    /// The initial `*.onmicrosoft.com` domain (verified from the start).
    pub initial_domain: String,
    /// `countryLetterCode`.
    pub country: String,
    /// Size class, for throttling budgets.
    pub size: TenantSize,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            id: "8f3c2d4e-6a1b-4c5d-9e7f-0a1b2c3d4e5f".into(),
            display_name: "Contoso Ltd".into(),
            initial_domain: "contoso.onmicrosoft.com".into(),
            country: "GB".into(),
            size: TenantSize::Small,
        }
    }
}

/// An app registration allowed to get tokens. Its `Debug` leaves the secret out.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Application (client) id.
    pub client_id: String,
    /// Display name.
    pub display_name: String,
    /// Client secret; `None` accepts no secret.
    pub client_secret: Option<String>,
    /// PEM certificates whose keys may sign client assertions.
    pub certificates: Vec<String>,
    /// Application permissions granted (`User.ReadWrite.All`, `Domain.ReadWrite.All`, ...).
    pub permissions: Vec<String>,
    /// Directory roles the app's service principal holds (`User Administrator`, ...).
    pub directory_roles: Vec<String>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            client_id: "0e8b5a3c-1d2f-4b6a-8c9d-7e5f4a3b2c1d".into(),
            display_name: "o365-essentials".into(),
            client_secret: Some("emulator-secret-do-not-use-in-production".into()),
            certificates: Vec::new(),
            permissions: vec![
                "User.ReadWrite.All".into(),
                "Directory.ReadWrite.All".into(),
                "Domain.ReadWrite.All".into(),
                "Organization.Read.All".into(),
                "LicenseAssignment.ReadWrite.All".into(),
                "RoleManagement.Read.Directory".into(),
                "User-PasswordProfile.ReadWrite.All".into(),
                "Exchange.ManageAsApp".into(),
                "Sites.FullControl.All".into(),
            ],
            directory_roles: vec![
                "User Administrator".into(),
                "Privileged Authentication Administrator".into(),
                "Exchange Administrator".into(),
            ],
        }
    }
}

/// Throttling as documented for identity and access (numbers may be dated).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Whether requests are throttled at all.
    pub enabled: bool,
    /// Shrinks every window by this factor (10 → a 10 s window lasts 1 s), keeping the
    /// budgets, so benchmarks finish quickly with the same ratios.
    pub time_scale: f64,
    /// Writes per app and tenant per window (3,000).
    pub app_tenant_writes: u32,
    /// That window in seconds (150).
    pub app_tenant_write_window_secs: f64,
    /// Writes per tenant, all apps, per window (18,000).
    pub tenant_writes: u32,
    /// That window in seconds (300).
    pub tenant_write_window_secs: f64,
    /// Resource units per app and tenant per window; `None` takes the tenant size's.
    pub resource_units: Option<u32>,
    /// The resource-unit window in seconds (10).
    pub resource_unit_window_secs: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: true,
            time_scale: 1.0,
            app_tenant_writes: 3000,
            app_tenant_write_window_secs: 150.0,
            tenant_writes: 18000,
            tenant_write_window_secs: 300.0,
            resource_units: None,
            resource_unit_window_secs: 10.0,
        }
    }
}

/// Fixed plus uniformly jittered delay in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Delay {
    /// Always.
    pub fixed_ms: u64,
    /// Up to this much more, uniformly.
    pub jitter_ms: u64,
}

/// Round-trip time per request type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// GETs.
    pub read: Delay,
    /// POST, PATCH, PUT, DELETE.
    pub write: Delay,
    /// The token endpoint.
    pub token: Delay,
    /// After a write is applied, before its answer leaves: the window in which a client
    /// that dies has changed the tenant without hearing about it.
    pub write_response: Delay,
}

/// What a fault does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and a Graph error body (429 carries Retry-After).
    Status {
        /// 429, 500, 503, 504...
        status: u16,
    },
    /// Close the connection without an answer, before doing anything.
    Reset,
    /// Do the work, then close the connection without an answer (the create happened
    /// but the client never hears).
    LostResponse,
    /// Wait this long, then answer normally.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
}

/// A fault rule: requests matching `path` (and `method`) get `kind` with `probability`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// A path pattern: `*` matches any run of characters (`/v1.0/users*`).
    pub path: String,
    /// Only this method, if set.
    #[serde(default)]
    pub method: Option<String>,
    /// Fraction of matching requests affected, 0–1.
    #[serde(default = "one")]
    pub probability: f64,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Stop after this many faults, if set.
    #[serde(default)]
    pub limit: Option<u64>,
}

fn one() -> f64 {
    1.0
}

/// Where domain verification looks for the `MS=ms...` record.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// A DNS server to ask (e.g. the tests' BIND9 on 127.0.0.1:15353).
    pub server: Option<SocketAddr>,
    /// Verify every domain without asking DNS (for demos).
    pub verify_without_dns: bool,
}

/// A user to seed. Its `Debug` leaves the password out.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedUser {
    /// Id; generated when empty.
    pub id: Option<String>,
    /// `userPrincipalName`.
    pub user_principal_name: String,
    /// `displayName`.
    pub display_name: String,
    /// `mailNickname`; from the UPN when empty.
    pub mail_nickname: Option<String>,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `surname`.
    pub surname: Option<String>,
    /// `mail`.
    pub mail: Option<String>,
    /// `accountEnabled` (default true).
    pub account_enabled: Option<bool>,
    /// `usageLocation`.
    pub usage_location: Option<String>,
    /// `onPremisesImmutableId`.
    pub on_premises_immutable_id: Option<String>,
    /// `proxyAddresses`.
    pub proxy_addresses: Vec<String>,
    /// Password (stored hashed).
    pub password: Option<String>,
    /// Directory roles held (`Global Administrator`...).
    pub roles: Vec<String>,
    /// Directory roles the user is eligible for (PIM) without holding them now.
    pub eligible_roles: Vec<String>,
    /// SKU part numbers assigned.
    pub licences: Vec<String>,
}

/// A subscribed SKU to seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSku {
    /// `skuId`.
    pub sku_id: String,
    /// `skuPartNumber`.
    pub sku_part_number: String,
    /// `prepaidUnits.enabled`.
    pub enabled: u32,
}

/// A domain to seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDomain {
    /// Name.
    pub name: String,
    /// Already verified.
    #[serde(default)]
    pub verified: bool,
}

/// Tenant content: the configuration's `seed` (a section left out keeps its default)
/// or the body of `POST /_emulator/seed` (a section left out adds nothing). In JSON the
/// fields are documented in camelCase (`userPrincipalName`, `roleGroups`), as the state
/// dump names them; snake_case is accepted too. A seed is checked whole before any of
/// it is applied, and refuses what the tenant already has rather than duplicating it
/// (docs/EMULATOR.md, "The seed").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    /// Users.
    pub users: Vec<SeedUser>,
    /// Subscribed SKUs.
    pub skus: Vec<SeedSku>,
    /// Extra domains.
    pub domains: Vec<SeedDomain>,
    /// ActiveSync devices of mailboxes (their users must be seeded first).
    pub devices: Vec<SeedDevice>,
    /// Role-assignable groups: their members (UPNs or earlier groups' names) hold the
    /// groups' roles transitively.
    pub role_groups: Vec<SeedRoleGroup>,
}

/// A seeded role-assignable group.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedRoleGroup {
    /// `displayName`.
    pub display_name: String,
    /// Members: users' UPNs, or the names of role groups seeded before this one.
    pub members: Vec<String>,
    /// Directory roles assigned to the group (`Global Reader` ...).
    pub roles: Vec<String>,
}

/// A seeded ActiveSync device.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SeedDevice {
    /// The owner's UPN.
    pub user: String,
    /// The ActiveSync `DeviceId` (random when empty).
    pub device_id: String,
    /// `DeviceModel` (`iPhone15,2`).
    pub model: String,
    /// `DeviceType` (`iPhone`, `Android`, `Outlook`).
    pub device_type: String,
    /// `DeviceOS` (`iOS 17.1`).
    pub os: String,
    /// `FriendlyName`.
    pub friendly_name: Option<String>,
    /// Quarantined until an admin decides (`DeviceDiscovery` state) instead of allowed.
    pub pending_discovery: bool,
}

/// The Exchange admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Milliseconds (at time scale 1) before a device acknowledges a wipe.
    pub wipe_ack_delay_ms: u64,
    /// InvokeCommand calls allowed per app per window (`Rate-Limit-Limit`).
    pub requests_per_window: u32,
    /// The window in seconds.
    pub window_secs: f64,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            wipe_ack_delay_ms: 2_000,
            requests_per_window: 600,
            window_secs: 60.0,
        }
    }
}

/// SharePoint Online.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharePointConfig {
    /// Milliseconds (at time scale 1) between creating a library and its drive appearing.
    pub drive_delay_ms: u64,
    /// The SharePoint host label (`contoso` of `contoso.sharepoint.com`) when it differs
    /// from the initial domain's (a renamed SharePoint domain).
    pub host_label: Option<String>,
    /// SharePoint REST resource units per app per window (1 for a single item, 2 for a
    /// collection or a change, 5 for a permission change).
    pub resource_units: u32,
    /// The window in seconds.
    pub window_secs: f64,
}

impl Default for SharePointConfig {
    fn default() -> Self {
        SharePointConfig {
            drive_delay_ms: 300,
            host_label: None,
            resource_units: 1_250,
            window_secs: 60.0,
        }
    }
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            users: vec![SeedUser {
                user_principal_name: "admin@contoso.onmicrosoft.com".into(),
                display_name: "Tenant Administrator".into(),
                password: Some("Admin-Passw0rd!".into()),
                roles: vec!["Global Administrator".into()],
                usage_location: Some("GB".into()),
                ..SeedUser::default()
            }],
            skus: vec![
                SeedSku {
                    sku_id: "f245ecc8-75af-4f8e-b61f-27d8114de5f3".into(),
                    sku_part_number: "O365_BUSINESS_PREMIUM".into(),
                    enabled: 25,
                },
                SeedSku {
                    sku_id: "3b555118-da6a-4418-894f-7df1e2096870".into(),
                    sku_part_number: "O365_BUSINESS_ESSENTIALS".into(),
                    enabled: 10,
                },
            ],
            domains: Vec::new(),
            devices: Vec::new(),
            role_groups: Vec::new(),
        }
    }
}

/// Serve over HTTPS, with a generated certificate or a given one.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Whether to serve HTTPS.
    pub enabled: bool,
    /// Where to write the generated CA certificate (PEM); a temporary file when unset.
    /// Unused with `cert_file`.
    pub ca_file: Option<std::path::PathBuf>,
    /// A certificate chain to serve (PEM, leaf first) instead of a generated one; needs
    /// `key_file`. Its names must cover the host names clients use.
    pub cert_file: Option<std::path::PathBuf>,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<std::path::PathBuf>,
}

/// The URLs clients reach the emulator under when they are not its listen address: a
/// proxy's name, or Microsoft's own host names resolved to the emulator's address. The
/// emulator writes them into what it answers (`@odata.nextLink`, `@odata.context`,
/// `Location`, its OpenID configuration) and routes requests that arrive with these
/// host names. Each is a base URL without a trailing `/`; unset ones stay the listen
/// address's.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PublicUrls {
    /// The identity platform (`https://login.microsoftonline.com`): token endpoint and
    /// OpenID configuration are `{login_url}/{tenant}/...`.
    pub login_url: Option<String>,
    /// Graph, without the version (`https://graph.microsoft.com`).
    pub graph_url: Option<String>,
    /// The Exchange admin API host (`https://outlook.office365.com`); `/adminapi/beta`
    /// follows.
    pub exchange_url: Option<String>,
    /// SharePoint REST's site (`https://contoso.sharepoint.com`); `/_api/web` follows.
    pub sharepoint_url: Option<String>,
}

impl PublicUrls {
    /// Microsoft's own host names, for a SharePoint host label (`contoso` of
    /// `contoso.sharepoint.com`).
    pub fn microsoft(sharepoint_label: &str) -> PublicUrls {
        PublicUrls {
            login_url: Some("https://login.microsoftonline.com".into()),
            graph_url: Some("https://graph.microsoft.com".into()),
            exchange_url: Some("https://outlook.office365.com".into()),
            sharepoint_url: Some(format!(
                "https://{}.sharepoint.com",
                sharepoint_label.to_ascii_lowercase()
            )),
        }
    }

    /// Everything under one base (a reverse proxy in front of the emulator), in the
    /// emulator's own layout: Graph at `{base}/v1.0`, SharePoint at `{base}/sharepoint`.
    pub fn one_base(base: &str) -> PublicUrls {
        let b = base.trim_end_matches('/');
        PublicUrls {
            login_url: Some(b.to_string()),
            graph_url: Some(b.to_string()),
            exchange_url: Some(b.to_string()),
            sharepoint_url: Some(format!("{b}/sharepoint")),
        }
    }

    /// The host names of these URLs (for a generated certificate).
    pub fn host_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for u in [
            &self.login_url,
            &self.graph_url,
            &self.exchange_url,
            &self.sharepoint_url,
        ]
        .into_iter()
        .flatten()
        {
            if let Some((host, _)) = crate::route::split_url(u)
                && !out.contains(&host)
            {
                out.push(host);
            }
        }
        out
    }
}

/// The whole configuration. [`EmulatorConfig::from_json`] reads it from a file's text
/// (snake_case field names, camelCase accepted too) and checks it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// The tenant.
    pub tenant: TenantConfig,
    /// App registrations; the first is the one the binary prints.
    pub apps: Vec<AppConfig>,
    /// Access token lifetime in seconds (3599 like the real service).
    pub token_lifetime_secs: u64,
    /// Throttling.
    pub throttling: ThrottleConfig,
    /// Latency model (off by default).
    pub latency: LatencyConfig,
    /// Fault rules (none by default).
    pub faults: Vec<FaultRule>,
    /// Seed of the random choices (faults, jitter, batch response order).
    pub random_seed: u64,
    /// Domain verification.
    pub dns: DnsConfig,
    /// HTTPS.
    pub tls: TlsConfig,
    /// The URLs clients reach it under, when not the listen address.
    pub public: PublicUrls,
    /// Initial content.
    pub seed: Seed,
    /// Largest request body accepted (Graph: 4 MiB).
    pub max_body_bytes: usize,
    /// Delta tokens older than this many changes are expired (`resyncRequired`).
    pub delta_retention_changes: u64,
    /// The Exchange admin API.
    pub exchange: ExchangeConfig,
    /// SharePoint Online.
    pub sharepoint: SharePointConfig,
    /// The identity platform's sign-in side: device code flow, created apps.
    pub identity: IdentityConfig,
}

/// The device authorization grant and app registrations created through Graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Public clients allowed to start a device code sign-in (by default Microsoft
    /// Graph Command Line Tools, `14d82eec-204b-4c2f-b7e8-296a70dab67e`).
    pub public_clients: Vec<String>,
    /// Seconds a client must wait between polls (`interval`; 5 like the real service).
    pub device_code_interval_secs: u64,
    /// Seconds a device code lives (`expires_in`; 900 like the real service).
    pub device_code_expires_secs: u64,
    /// Milliseconds after an app is created through Graph before its client
    /// credentials tokens work (Entra replicates a new app for seconds to minutes;
    /// until then the token endpoint answers `AADSTS700016`).
    pub app_replication_delay_ms: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            public_clients: vec!["14d82eec-204b-4c2f-b7e8-296a70dab67e".into()],
            device_code_interval_secs: 5,
            device_code_expires_secs: 900,
            app_replication_delay_ms: 0,
        }
    }
}

impl EmulatorConfig {
    /// Reads a configuration from JSON (the binary's `--config FILE`). Field names may be
    /// snake_case (`token_lifetime_secs`, as documented) or camelCase
    /// (`tokenLifetimeSecs`, `userPrincipalName` in the seed); fields left out keep their
    /// defaults, so `{}` is valid. The values are checked as well as their types.
    ///
    /// # Errors
    /// A message naming the field (`seed.users[0].user_principal_name: ...`) and what to
    /// write instead.
    pub fn from_json(text: &str) -> Result<EmulatorConfig, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if !v.is_object() {
            return Err("the configuration is one JSON object ({} for the defaults)".into());
        }
        let cfg: EmulatorConfig = crate::input::read(v)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values the types cannot: positive windows and lifetimes,
    /// probabilities between 0 and 1, GUIDs where Microsoft 365 wants GUIDs, at least one
    /// app. The seed is checked when the emulator starts (it needs the tenant).
    ///
    /// # Errors
    /// A message naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let guid = |field: &str, v: &str| {
            if uuid::Uuid::try_parse(v).is_ok() {
                Ok(())
            } else {
                Err(format!(
                    "{field}: `{v}` is not a GUID (write it as 8-4-4-4-12 hexadecimal digits)"
                ))
            }
        };
        let positive = |field: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(format!("{field}: {v} must be a positive number"))
            }
        };
        guid("tenant.id", &self.tenant.id)?;
        let domain = &self.tenant.initial_domain;
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(format!(
                "tenant.initial_domain: `{domain}` is not a domain name (e.g. contoso.onmicrosoft.com)"
            ));
        }
        if self.apps.is_empty() {
            return Err(
                "apps: the configuration needs at least one app registration (leave `apps` out for the default one)"
                    .into(),
            );
        }
        for (i, a) in self.apps.iter().enumerate() {
            if a.client_id.trim().is_empty() {
                return Err(format!(
                    "apps[{i}].client_id: empty; give the app's client id (a GUID)"
                ));
            }
            if a.client_secret.is_none() && a.certificates.is_empty() {
                return Err(format!(
                    "apps[{i}]: neither client_secret nor certificates; the app could never get a token"
                ));
            }
        }
        if self.token_lifetime_secs == 0 {
            return Err(
                "token_lifetime_secs: must be at least 1 (3599 like the real service)".into(),
            );
        }
        positive("throttling.time_scale", self.throttling.time_scale)?;
        positive(
            "throttling.app_tenant_write_window_secs",
            self.throttling.app_tenant_write_window_secs,
        )?;
        positive(
            "throttling.tenant_write_window_secs",
            self.throttling.tenant_write_window_secs,
        )?;
        positive(
            "throttling.resource_unit_window_secs",
            self.throttling.resource_unit_window_secs,
        )?;
        for (i, f) in self.faults.iter().enumerate() {
            if !(0.0..=1.0).contains(&f.probability) {
                return Err(format!(
                    "faults[{i}].probability: {} is not between 0 and 1",
                    f.probability
                ));
            }
        }
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes: must be at least 1 (Graph takes 4194304)".into());
        }
        if self.delta_retention_changes == 0 {
            return Err("delta_retention_changes: must be at least 1".into());
        }
        positive("exchange.window_secs", self.exchange.window_secs)?;
        positive("sharepoint.window_secs", self.sharepoint.window_secs)?;
        if self.identity.device_code_interval_secs == 0 {
            return Err(
                "identity.device_code_interval_secs: must be at least 1 (5 like the real service)"
                    .into(),
            );
        }
        for (i, c) in self.identity.public_clients.iter().enumerate() {
            guid(&format!("identity.public_clients[{i}]"), c)?;
        }
        Ok(())
    }

    /// The SharePoint host label: `sharepoint.host_label`, else the first label of the
    /// initial domain (`contoso` of `contoso.onmicrosoft.com`), in lower case.
    pub fn sharepoint_label(&self) -> String {
        if let Some(label) = &self.sharepoint.host_label {
            return label.to_ascii_lowercase();
        }
        self.tenant
            .initial_domain
            .split('.')
            .next()
            .unwrap_or("contoso")
            .to_ascii_lowercase()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            tenant: TenantConfig::default(),
            apps: vec![AppConfig::default()],
            token_lifetime_secs: 3599,
            throttling: ThrottleConfig::default(),
            latency: LatencyConfig::default(),
            faults: Vec::new(),
            random_seed: 0x0365,
            dns: DnsConfig::default(),
            tls: TlsConfig::default(),
            public: PublicUrls::default(),
            seed: Seed::default(),
            max_body_bytes: 4 * 1024 * 1024,
            delta_retention_changes: 100_000,
            exchange: ExchangeConfig::default(),
            sharepoint: SharePointConfig::default(),
            identity: IdentityConfig::default(),
        }
    }
}

/// `Some(<redacted>)` or `None`: whether a secret is set, never the secret.
fn redacted(v: &Option<String>) -> Option<&'static str> {
    v.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("client_id", &self.client_id)
            .field("display_name", &self.display_name)
            .field("client_secret", &redacted(&self.client_secret))
            .field("certificates", &self.certificates.len())
            .field("permissions", &self.permissions)
            .field("directory_roles", &self.directory_roles)
            .finish()
    }
}

impl std::fmt::Debug for SeedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedUser")
            .field("id", &self.id)
            .field("user_principal_name", &self.user_principal_name)
            .field("display_name", &self.display_name)
            .field("mail_nickname", &self.mail_nickname)
            .field("given_name", &self.given_name)
            .field("surname", &self.surname)
            .field("mail", &self.mail)
            .field("account_enabled", &self.account_enabled)
            .field("usage_location", &self.usage_location)
            .field("on_premises_immutable_id", &self.on_premises_immutable_id)
            .field("proxy_addresses", &self.proxy_addresses)
            .field("password", &redacted(&self.password))
            .field("roles", &self.roles)
            .field("eligible_roles", &self.eligible_roles)
            .field("licences", &self.licences)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret_or_password() {
        let cfg = EmulatorConfig::default();
        let text = format!("{cfg:?}");
        assert!(
            !text.contains("emulator-secret-do-not-use-in-production"),
            "{text}"
        );
        assert!(!text.contains("Admin-Passw0rd!"), "{text}");
        assert!(
            text.contains("client_secret: Some(\"<redacted>\")"),
            "{text}"
        );
        assert!(text.contains("password: Some(\"<redacted>\")"), "{text}");
    }

    #[tokio::test]
    async fn a_running_emulators_debug_shows_no_secret() {
        let emu = crate::Emulator::start(EmulatorConfig::default())
            .await
            .unwrap();
        let text = format!("{:?} {emu:?}", emu.info());
        assert!(
            !text.contains("emulator-secret-do-not-use-in-production"),
            "{text}"
        );
        assert!(text.contains(&emu.info().client_id), "{text}");
    }

    #[test]
    fn a_configuration_is_read_in_either_case_and_checked() {
        let cfg = EmulatorConfig::from_json(
            r#"{"tokenLifetimeSecs": 60, "seed": {"users": [], "role_groups": []}}"#,
        )
        .unwrap();
        assert_eq!(cfg.token_lifetime_secs, 60);
        assert!(cfg.seed.users.is_empty());
        assert_eq!(
            cfg.seed.skus.len(),
            2,
            "a seed section left out keeps its default"
        );
        let e =
            EmulatorConfig::from_json(r#"{"identity": {"public_clients": ["cli"]}}"#).unwrap_err();
        assert!(
            e.starts_with("identity.public_clients[0]: `cli` is not a GUID"),
            "{e}"
        );
        let e = EmulatorConfig::from_json(r#"{"exchange": {"window_secs": -1}}"#).unwrap_err();
        assert!(e.starts_with("exchange.window_secs"), "{e}");
    }
}
