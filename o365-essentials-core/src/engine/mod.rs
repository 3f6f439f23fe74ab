//! The integration engine. [`Integration`] is the root: [`Integration::open`] builds the
//! context (directory, the gate's guarded Microsoft 365 ports, the state store, the
//! password key, the clock) and the root itself carries integration control
//! (requirements, integrate / status / disable / re-enable, setup and credentials).
//! Everything else is a view borrowed from it, each in its own file:
//! [`Integration::accounts`] (snapshot, plan → apply bulk creates with a journal,
//! progress reports and a results file; import, assign, unassign), [`Integration::sync`],
//! [`Integration::passwords`], [`Integration::mail_and_devices`], [`Integration::files`]
//! and [`Integration::domains`].
//!
//! ```no_run
//! # async fn demo(integration: o365_essentials_core::engine::Integration) -> o365_essentials_core::Result<()> {
//! use o365_essentials_core::engine::{BulkCreateRequest, CancelToken, Control, Event};
//! let accounts = integration.accounts();
//! let snapshot = accounts.snapshot().await?;
//! let plan = accounts.plan_bulk_create(&snapshot, &BulkCreateRequest { domain: "contoso.com".into(), ..Default::default() })?;
//! let ctl = Control::with_observer(CancelToken::new(), std::sync::Arc::new(|e: &Event| {
//!     if let Event::Progress { done, total, .. } = e { println!("{done}/{total}") }
//! }))?;
//! let results = accounts.apply(&plan, &ctl).await?;
//! # Ok(()) }
//! ```

mod accounts;
mod capture;
mod control;
mod domains;
mod executor;
mod files;
pub mod guard;
mod guard_services;
mod mail_and_devices;
mod passwords;
mod plan;
mod preview;
mod results;
mod services;
mod setup;
mod sync;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rand::Rng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

pub use accounts::{AccountsView, ImportRequest, ImportedUser, LinkedUser};
pub use capture::{CaptureOutcome, CaptureReport, CaptureSettings, HookEntry, parse_hook_ldif};
pub use control::{CancelToken, Control, Event, EventSink, Observer, RunCounts};
pub use domains::{DomainsView, RecordsFile, ZoneFragment};
pub use files::FilesView;
pub use mail_and_devices::MailAndDevicesView;
pub use passwords::{
    PasswordDelivery, PasswordKey, PasswordProblem, PasswordSyncState, PasswordsView,
};
pub use plan::{
    BulkCreateRequest, Snapshot, UserChoice, online_id_local_part, plan_bulk_create, suggest_upn,
};
pub use preview::{MatchConflict, MatchPair, MatchPreview, Side, match_preview};
pub use results::{failed_users, failed_users_in, results_paths, to_csv, write_results};
pub use services::Microsoft365;
pub use setup::{
    APPLICATION_PERMISSIONS, CredentialInfo, DEFAULT_PUBLIC_CLIENT, DIRECTORY_ROLES, RENEW_DAYS,
    RollReport, SetupParams, SetupReport,
};
pub use sync::{
    SyncItem, SyncLoop, SyncOptions, SyncPlan, SyncReport, SyncView, plan_sync, plan_sync_with,
};

use crate::config::{DirectoryConfig, DnsSettings, IntegrationConfig, SyncSettings};
use crate::dns::TsigKey;
use crate::error::{Error, ErrorCode, Result};
use crate::graph::{Credential, GraphConfig};
use crate::model::{
    AccountUpdate, CheckStatus, ItemAction, ItemResult, LicenceAssignment, Link, LinkOrigin,
    LinkState, LocalVersion, NewOnlineAccount, Outcome, Plan, PlanAction, RequirementCheck,
    RequirementsReport, RunKind, RunResults,
};
use crate::ports::{Directory, Tenant};
use crate::store::{Store, Work};
use crate::validate;

const SETTINGS_KEY: &str = "integration";
/// How many online accounts the last bulk create left without their licence.
const UNLICENSED: &str = "unlicensed_accounts";

/// Where the integration stands.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationStatus {
    /// The tenant.
    pub tenant_id: String,
    /// The organization's name.
    pub organization: String,
    /// The `*.onmicrosoft.com` domain.
    pub initial_domain: String,
    /// Verified domains when integrated.
    pub verified_domains: Vec<String>,
    /// When it was integrated.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::json::Rfc3339")]
    pub integrated_at: OffsetDateTime,
    /// Whether changes propagate (false after [`Integration::disable`]).
    pub enabled: bool,
    /// Links recorded.
    #[serde(default)]
    pub links: usize,
    /// Whether local password changes can be queued and delivered (no password key → no).
    #[serde(default)]
    pub password_sync: PasswordSyncState,
    /// What needs the administrator's attention (a password key beside the store,
    /// accounts left without their licence ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The app's credential: its kind, expiry and a warning 30 days ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialInfo>,
}

/// One difference found between a link and the tenant.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// The local user.
    pub local_guid: crate::model::ObjectGuid,
    /// What kind of difference it is.
    pub kind: DriftKind,
    /// What differs, in words (names the account and the values).
    pub what: String,
}

/// What kind of difference a [`Drift`] reports.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The link moved to the account now carrying the user's anchor.
    Relinked,
    /// The account's user name was changed online.
    UserNameChanged,
    /// The account no longer carries the user's anchor.
    AnchorRemoved,
    /// A linked account was changed online by someone else.
    ChangedOnline,
    /// A linked account was removed online.
    RemovedOnline,
    /// The user left while the integration was disabled: sign-in was blocked.
    Blocked,
    /// The user left while the integration was disabled, and blocking sign-in failed.
    BlockFailed,
}

/// What re-enabling found.
#[derive(schemars::JsonSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Links whose online account is gone (not found by id nor anchor).
    pub missing: Vec<Link>,
    /// Links moved to the account now carrying their anchor.
    pub relinked: Vec<Drift>,
    /// Changes made online while disabled (reported, not overwritten).
    pub changed: Vec<Drift>,
    /// Linked users who left while the integration was disabled (deleted, disabled,
    /// expired, protected or out of scope): their sign-in was blocked at once; the next
    /// sync round deletes the accounts of deleted users.
    #[serde(default)]
    pub blocked: Vec<Drift>,
}

pub use crate::clock::{Clock, SystemClock};

/// Options from the configuration that operations use as their defaults.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) custom_domain: Option<String>,
    pub(crate) usage_location: Option<String>,
    pub(crate) default_licences: Vec<LicenceAssignment>,
    pub(crate) results_folder: Option<PathBuf>,
    pub(crate) sync: SyncSettings,
    /// Items of a bulk create, import or sync run worked on at once.
    pub(crate) concurrency: usize,
    pub(crate) dns: Option<DnsSettings>,
    pub(crate) tsig: Option<TsigKey>,
    /// Password capture on a Samba DC.
    pub(crate) capture: Option<CaptureSettings>,
    /// Where the password key is (to warn when it sits beside the store).
    pub(crate) password_key_path: Option<PathBuf>,
    /// Settings that weaken the protection of a secret (the directory's password sent in
    /// clear): the requirements check warns about each on every run.
    pub(crate) security_warnings: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            custom_domain: None,
            usage_location: None,
            default_licences: Vec::new(),
            results_folder: None,
            sync: SyncSettings::default(),
            concurrency: crate::config::default_concurrency(),
            dns: None,
            tsig: None,
            capture: None,
            password_key_path: None,
            security_warnings: Vec::new(),
        }
    }
}

/// The root the bindings open: one directory, one Microsoft 365 credential shared by
/// Graph, Exchange and SharePoint, one state store, the password key.
pub struct Integration {
    dir: Arc<dyn Directory>,
    /// Decides every remote write; the tenant port in `m365` is its [`guard::GuardedTenant`].
    gate: Arc<guard::Gate>,
    m365: RwLock<Arc<Microsoft365>>,
    tenant_config: RwLock<Option<GraphConfig>>,
    pub(crate) store: Arc<Store>,
    password_key: Option<PasswordKey>,
    pub(crate) settings: Settings,
    /// The demo directory, when opened with one (the quickstart makes changes in it).
    demo: Option<Arc<crate::memory::MemoryDirectory>>,
    /// Decisions that depend on the date (account expiry) read it here.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integration")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn check(
    id: &str,
    title: &str,
    status: CheckStatus,
    detail: String,
    remedy: &str,
) -> RequirementCheck {
    RequirementCheck {
        id: id.into(),
        title: title.into(),
        status,
        detail,
        remedy: if status == CheckStatus::Pass {
            String::new()
        } else {
            remedy.into()
        },
    }
}

/// The error of a run cancelled part way (without its partial result), if it was.
pub(crate) fn cancelled_run(run: &RunResults) -> Option<Error> {
    let counts = RunCounts::of(&run.items);
    (counts.cancelled > 0).then(|| {
        Error::new(
            ErrorCode::Cancelled,
            format!(
                "cancelled: {} item(s) done, {} not started; the results are saved (run {}) and a rerun does the rest",
                run.items.len() - counts.cancelled,
                counts.cancelled,
                run.run_id
            ),
        )
    })
}

/// The result of an item the run did not start (cancelled first).
fn not_started(action: &PlanAction, reason: Option<crate::model::PlanReason>) -> ItemResult {
    let (local_user, upn) = match action {
        PlanAction::CreateAccount {
            local,
            user_principal_name,
            ..
        }
        | PlanAction::Link {
            local,
            user_principal_name,
            ..
        } => (
            local.sam_account_name.clone(),
            Some(user_principal_name.clone()),
        ),
        PlanAction::Update { local, .. }
        | PlanAction::Disable { local, .. }
        | PlanAction::Enable { local, .. } => (local.sam_account_name.clone(), None),
        _ => (String::new(), None),
    };
    ItemResult {
        password_source: None,
        local_user,
        local_guid: action.local_guid(),
        requested_upn: upn,
        action: action.kind(),
        reason,
        outcome: Outcome::Cancelled,
        error_code: Some(ErrorCode::Cancelled),
        service_message: None,
        recommended_action: Some("Run again to do this item.".into()),
        online_id: None,
    }
}

fn permission_remedy(e: &Error, permission: &str) -> String {
    match e.code() {
        ErrorCode::PermissionDenied => {
            format!("Grant the app {permission} (and consent for the organisation).")
        }
        ErrorCode::Auth => {
            "Check the app's client id and credential (secret or certificate).".into()
        }
        _ => e.action().to_string(),
    }
}

/// A check of one endpoint. `required`: integrating needs it (Graph); otherwise only the
/// features behind it do (Exchange, SharePoint), so a failure is a warning.
fn endpoint_check(
    id: &str,
    title: &str,
    r: Result<String>,
    permission: &str,
    required: bool,
) -> RequirementCheck {
    match r {
        Ok(detail) => check(id, title, CheckStatus::Pass, detail, ""),
        Err(e) => {
            let status = if required && e.code() != ErrorCode::CertificateRequired {
                CheckStatus::Fail
            } else {
                CheckStatus::Warn
            };
            let detail = if e.code() == ErrorCode::PermissionDenied {
                format!("{e} (needs {permission})")
            } else {
                e.to_string()
            };
            check(
                id,
                title,
                status,
                detail,
                &permission_remedy(&e, permission),
            )
        }
    }
}

/// A strong random initial password (never stored or logged; the password sync replaces
/// it with the user's own at their next change).
fn initial_password() -> SecretString {
    const SETS: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#%+-=?@^_",
    ];
    let mut rng = rand::rng();
    let mut chars: Vec<u8> = SETS
        .iter()
        .map(|s| s[rng.random_range(0..s.len())])
        .collect();
    let all: Vec<u8> = SETS.concat();
    while chars.len() < 24 {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    for i in (1..chars.len()).rev() {
        chars.swap(i, rng.random_range(0..=i));
    }
    SecretString::from(String::from_utf8_lossy(&chars).into_owned())
}

/// The free seats of each licence while a plan is applied: a create reserves its
/// licences' seats before it writes anything, and gives them back when it fails.
struct SeatLedger {
    free: std::sync::Mutex<std::collections::HashMap<Uuid, (String, u32)>>,
}

impl SeatLedger {
    fn new(skus: Vec<crate::model::Sku>) -> Self {
        SeatLedger {
            free: std::sync::Mutex::new(
                skus.into_iter()
                    .map(|s| (s.sku_id, (s.sku_part_number.clone(), s.free_units())))
                    .collect(),
            ),
        }
    }

    /// Takes a seat of each licence that has one; returns those taken and the names of
    /// those without a free seat.
    fn reserve(&self, wanted: &[LicenceAssignment]) -> (Vec<LicenceAssignment>, Vec<String>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        let mut missing = Vec::new();
        for l in wanted {
            match free.get_mut(&l.sku_id) {
                Some((_, n)) if *n > 0 => {
                    *n -= 1;
                    taken.push(l.clone());
                }
                Some((name, _)) => missing.push(name.clone()),
                None => missing.push(l.sku_id.to_string()),
            }
        }
        (taken, missing)
    }

    fn release(&self, taken: &[LicenceAssignment]) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        for l in taken {
            if let Some((_, n)) = free.get_mut(&l.sku_id) {
                *n = n.saturating_add(1);
            }
        }
    }
}

impl Integration {
    /// The facade over a directory, a tenant backend (accounts only: Exchange, SharePoint
    /// and domains are not available) and a store — for tests and embedders with their
    /// own backends. Programs open an integration with [`Integration::open`].
    pub fn new(dir: Arc<dyn Directory>, tenant: Arc<dyn Tenant>, store: Arc<Store>) -> Self {
        Integration::with_services(dir, Microsoft365::tenant_only(tenant), store)
    }

    /// The facade over a directory, these Microsoft 365 services and a store.
    pub fn with_services(dir: Arc<dyn Directory>, m365: Microsoft365, store: Arc<Store>) -> Self {
        let gate = Arc::new(guard::Gate::new(dir.clone(), store.clone()));
        let m365 = Self::guarded(&gate, m365);
        Integration {
            dir,
            gate,
            m365: RwLock::new(Arc::new(m365)),
            tenant_config: RwLock::new(None),
            store,
            password_key: None,
            settings: Settings::default(),
            demo: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Opens everything a configuration describes: the directory, the Microsoft 365
    /// services (one credential for Graph, Exchange and SharePoint), the state store,
    /// the password key, the DNS settings. Nothing is sent anywhere yet.
    ///
    /// ```no_run
    /// # fn demo() -> o365_essentials_core::Result<()> {
    /// use o365_essentials_core::{config::IntegrationConfig, engine::Integration};
    /// let config = IntegrationConfig::from_json(&std::fs::read_to_string("/etc/o365-essentials/config.json").unwrap())?;
    /// let integration = Integration::open(config)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] naming the setting; the store's errors
    /// ([`ErrorCode::StoreLocked`], [`ErrorCode::StoreVersionTooNew`], ...); the password
    /// key's.
    pub fn open(config: IntegrationConfig) -> Result<Integration> {
        config.check()?;
        let mut demo = None;
        let dir: Arc<dyn Directory> = match &config.directory {
            DirectoryConfig::Ldap(l) => Arc::new(crate::ldap::LdapDirectory::new(l.clone())?),
            DirectoryConfig::Demo => {
                let d = Arc::new(crate::memory::MemoryDirectory::demo_company()?);
                demo = Some(d.clone());
                d
            }
            DirectoryConfig::DemoCompany { people } => {
                let d = Arc::new(crate::memory::MemoryDirectory::demo_company_of(*people)?);
                demo = Some(d.clone());
                d
            }
            DirectoryConfig::Memory { domain } => {
                Arc::new(crate::memory::MemoryDirectory::new(domain)?)
            }
        };
        let tsig = match config.dns.as_ref().and_then(|d| d.tsig_key_file.as_ref()) {
            Some(path) => {
                crate::platform::check_secret_path(path, "TSIG key file (dns.tsig_key_file)")?;
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    Error::new(
                        ErrorCode::InvalidConfig,
                        format!(
                            "the configuration at `dns.tsig_key_file`: cannot read {}: {e}",
                            path.display()
                        ),
                    )
                })?);
                Some(TsigKey::from_bind_conf(&text).map_err(|e| {
                    e.context(format!(
                        "the configuration at `dns.tsig_key_file` ({})",
                        path.display()
                    ))
                })?)
            }
            None => None,
        };
        let m365 = Microsoft365::from_config(config.tenant.clone())?;
        let store = Arc::new(Store::open(&config.store)?);
        let key = PasswordKey::load_or_create(&config.password_key_path())?;
        let mut integration = Integration::with_services(dir, m365, store).with_password_key(key);
        *integration
            .tenant_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(config.tenant.clone());
        integration.settings = Settings {
            custom_domain: config.custom_domain.clone(),
            usage_location: config.usage_location.clone(),
            default_licences: config.default_licences.clone(),
            results_folder: Some(config.results_folder_path()),
            sync: config.sync.clone(),
            concurrency: config.concurrency,
            dns: config.dns.clone(),
            tsig,
            capture: config.password_capture.clone(),
            password_key_path: Some(config.password_key_path()),
            security_warnings: match &config.directory {
                DirectoryConfig::Ldap(l) => l.security_warnings(),
                _ => Vec::new(),
            },
        };
        integration.demo = demo;
        integration.gate.set_policy(guard::Policy {
            allow_protected: config.allow_protected.clone(),
            exclude_users: config.exclude_users.clone(),
            bind_identity: match &config.directory {
                DirectoryConfig::Ldap(l) => Some(l.bind.clone()),
                _ => None,
            },
        });
        Ok(integration)
    }

    /// The services with their tenant port behind the gate.
    fn guarded(gate: &Arc<guard::Gate>, mut m365: Microsoft365) -> Microsoft365 {
        use guard_services::{GuardedDomains, GuardedExchange, GuardedSharePoint};
        m365.tenant = Arc::new(guard::GuardedTenant::new(m365.tenant, gate.clone()));
        m365.exchange = m365.exchange.map(|inner| {
            Arc::new(GuardedExchange {
                inner,
                gate: gate.clone(),
            }) as Arc<dyn crate::ports::Exchange>
        });
        m365.sharepoint = m365.sharepoint.map(|inner| {
            Arc::new(GuardedSharePoint {
                inner,
                gate: gate.clone(),
            }) as Arc<dyn crate::ports::SharePoint>
        });
        m365.domains = m365.domains.map(|inner| {
            Arc::new(GuardedDomains {
                inner,
                gate: gate.clone(),
            }) as Arc<dyn crate::ports::Domains>
        });
        m365
    }

    /// Who may be synced: the configuration's exclusions and allow list (the bind
    /// account is taken from the directory configuration by [`Integration::open`]).
    pub fn with_policy(self, policy: guard::Policy) -> Self {
        self.gate.set_policy(policy);
        self
    }

    /// Refuses a remote write outside the tenant's ports (a DNS update of the company's
    /// zone) while the integration is disabled or not integrated: the gate's first rule.
    pub(crate) fn require_writes(&self) -> Result<()> {
        self.gate.require_enabled()
    }

    /// The rules the gate applies now.
    pub fn policy(&self) -> Arc<guard::Policy> {
        self.gate.policy()
    }

    /// Reads the date from `clock` (account expiry is decided by it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Works on at most `n` items of a bulk create at once (at least 1; 1 is one at a
    /// time). The backend still paces requests to the tenant's budget.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// The demo directory, when the integration was opened on one (to make local changes
    /// in, as an administrator would in AD).
    pub fn demo_directory(&self) -> Option<&Arc<crate::memory::MemoryDirectory>> {
        self.demo.as_ref()
    }

    /// The local directory.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.dir
    }

    /// The Microsoft 365 services now in use (they change with the credentials).
    pub fn microsoft365(&self) -> Arc<Microsoft365> {
        self.m365.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the lease of `work` for this call: at once, or waiting as `ctl` allows
    /// (polling without blocking the runtime; a cancelled call stops waiting).
    pub(crate) async fn lease(&self, work: Work, ctl: &Control) -> Result<crate::store::Lease> {
        // A wait too long for the clock (a caller's u64::MAX seconds) is no deadline at all.
        let deadline = ctl
            .lease_wait()
            .map(|w| std::time::Instant::now().checked_add(w));
        loop {
            match self.store.lease(work, None) {
                Err(e)
                    if e.code() == ErrorCode::WorkHeld
                        && deadline
                            .is_some_and(|d| d.is_none_or(|d| std::time::Instant::now() < d)) =>
                {
                    ctl.cancel
                        .sleep(std::time::Duration::from_millis(100))
                        .await?;
                }
                r => return r,
            }
        }
    }

    pub(crate) fn tenant(&self) -> Arc<dyn Tenant> {
        self.microsoft365().tenant.clone()
    }

    /// Switches Graph, Exchange and SharePoint to a new credential (and, when given, a new
    /// app registration), built on the configuration the integration was opened with,
    /// after checking it; when the check fails the old credential stays in use.
    /// Credentials are the caller's to keep: the store never holds secrets.
    ///
    /// # Errors
    /// As [`Integration::change_credentials`]; [`ErrorCode::NotSupported`] when the
    /// integration was not opened from a configuration.
    pub async fn change_credential(
        &self,
        client_id: Option<String>,
        credential: Credential,
    ) -> Result<()> {
        let mut cfg = self
            .tenant_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NotSupported,
                    "this integration was not opened from a configuration; pass the whole tenant configuration to change_credentials",
                )
            })?;
        if let Some(c) = client_id {
            cfg.client_id = c;
        }
        cfg.credential = credential;
        self.change_credentials(cfg).await
    }

    /// Switches Graph, Exchange and SharePoint together to the tenant configuration `new`
    /// after checking it (the organization and the administrators are read with it);
    /// when it fails, the old one stays in use.
    ///
    /// # Errors
    /// The new credentials' errors ([`ErrorCode::Auth`], [`ErrorCode::PermissionDenied`]);
    /// [`ErrorCode::InvalidConfig`] when they belong to another tenant or the
    /// configuration is malformed; [`ErrorCode::NotIntegrated`].
    pub async fn change_credentials(&self, new: GraphConfig) -> Result<()> {
        let status = self.status()?;
        let services = Microsoft365::from_config(new.clone()).map_err(|e| {
            e.context("the new credentials cannot be used; the old ones stay in use")
        })?;
        let org =
            services.tenant.organization().await.map_err(|e| {
                e.context("the new credentials do not work; the old ones stay in use")
            })?;
        services.tenant.admin_role_holders().await.map_err(|e| {
            e.context("the new credentials lack a permission; the old ones stay in use")
        })?;
        if org.tenant_id != status.tenant_id {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "the new credentials are for tenant {}, not the integrated {}",
                    org.tenant_id, status.tenant_id
                ),
            ));
        }
        *self.m365.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Self::guarded(&self.gate, services));
        *self
            .tenant_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(new);
        Ok(())
    }

    /// The tenant's service URLs for the dashboard's launchpad.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`].
    pub fn launchpad(&self) -> Result<crate::model::Launchpad> {
        let s = self.status()?;
        let label = s
            .initial_domain
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(crate::model::Launchpad {
            portal: "https://www.office.com".into(),
            mail: "https://outlook.office.com/mail/".into(),
            admin_centre: "https://admin.microsoft.com".into(),
            team_site: (!label.is_empty()).then(|| format!("https://{label}.sharepoint.com")),
        })
    }

    /// The launchpad with the team site's real address, read from SharePoint (a tenant
    /// may have renamed its SharePoint domain); the address guessed by
    /// [`Integration::launchpad`] when SharePoint cannot be reached, so the dashboard
    /// always has links to show.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`].
    pub async fn launchpad_from(
        &self,
        sharepoint: &dyn crate::ports::SharePoint,
    ) -> Result<crate::model::Launchpad> {
        let mut pad = self.launchpad()?;
        if let Ok(site) = sharepoint.team_site().await {
            pad.team_site = Some(site.url);
        }
        Ok(pad)
    }

    /// The launchpad with the team site read from this integration's SharePoint (see
    /// [`Integration::launchpad_from`]); the guessed address without SharePoint.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`].
    pub async fn launchpad_online(&self) -> Result<crate::model::Launchpad> {
        match self.microsoft365().sharepoint.clone() {
            Some(sp) => self.launchpad_from(sp.as_ref()).await,
            None => self.launchpad(),
        }
    }

    /// The requirements check (DESIGN.md task 1): one DC, running on it, every Microsoft
    /// 365 endpoint the integration uses reachable with the permissions it needs (Graph,
    /// the Exchange admin API, SharePoint), the custom domain (the one given, else the
    /// configured one) well formed. Never fails: problems are checks, each naming the
    /// permission or role to grant.
    pub async fn requirements(&self, custom_domain: Option<&str>) -> RequirementsReport {
        let custom_domain = custom_domain.or(self.settings.custom_domain.as_deref());
        let mut checks = Vec::new();
        match self.dir.topology().await {
            Ok(t) => {
                let n = t.domain_controllers.len();
                checks.push(check(
                    "single_domain_controller",
                    "Exactly one domain controller",
                    if n == 1 { CheckStatus::Pass } else { CheckStatus::Fail },
                    format!("the domain {} has {n} domain controller(s)", t.domain_dns_name),
                    "Integration is supported on a domain with one domain controller; remove the others or use Entra Connect.",
                ));
                checks.push(check(
                    "running_on_dc",
                    "Running on the domain controller",
                    if t.this_host_is_dc { CheckStatus::Pass } else { CheckStatus::Warn },
                    format!("connected to {}", t.connected_dc),
                    "Run o365-essentials on the domain controller itself, so password changes are seen where they happen.",
                ));
            }
            Err(e) => checks.push(check(
                "directory_reachable",
                "The directory answers",
                CheckStatus::Fail,
                e.to_string(),
                e.action(),
            )),
        }
        match self.tenant().organization().await {
            Ok(o) => checks.push(check(
                "tenant_reachable",
                "Microsoft 365 answers",
                CheckStatus::Pass,
                format!("tenant {} ({})", o.display_name, o.tenant_id),
                "",
            )),
            Err(e) => checks.push(check(
                "tenant_reachable",
                "Microsoft 365 answers",
                CheckStatus::Fail,
                e.to_string(),
                &permission_remedy(&e, "Organization.Read.All"),
            )),
        }
        let m365 = self.microsoft365();
        let graph = m365.tenant.clone();
        checks.push(endpoint_check(
            "graph_administrators",
            "Microsoft Graph: administrators can be read",
            graph
                .admin_role_holders()
                .await
                .map(|a| format!("{} administrator(s)", a.len())),
            "RoleManagement.Read.Directory",
            true,
        ));
        checks.push(endpoint_check(
            "graph_licences",
            "Microsoft Graph: licences can be read",
            graph
                .skus()
                .await
                .map(|s| format!("{} subscription(s)", s.len())),
            "Organization.Read.All",
            true,
        ));
        if let Some(ex) = &m365.exchange {
            checks.push(endpoint_check(
                "exchange_admin_api",
                "Exchange Online admin API answers",
                ex.default_access_level()
                    .await
                    .map(|l| format!("mobile devices: default access {l:?}")),
                "Exchange.ManageAsApp and the Exchange Administrator role",
                false,
            ));
        }
        if let Some(sp) = &m365.sharepoint {
            checks.push(endpoint_check(
                "sharepoint",
                "SharePoint Online answers",
                sp.team_site().await.map(|s| format!("team site {}", s.url)),
                "Sites.FullControl.All",
                false,
            ));
        }
        if let Some(d) = custom_domain {
            // The same definition of a linkable domain as the domain operations use.
            let r = crate::dns::registrable_domain(d).map(|_| ());
            checks.push(check(
                "custom_domain",
                "The custom domain is a valid name",
                if r.is_ok() {
                    CheckStatus::Pass
                } else {
                    CheckStatus::Fail
                },
                r.as_ref()
                    .err()
                    .map(|e| e.message().to_string())
                    .unwrap_or_else(|| format!("{d} is well formed")),
                "Enter the registered domain, such as contoso.com.",
            ));
        }
        if let Some(capture) = &self.settings.capture {
            checks.extend(capture::requirement_checks(capture).await);
        }
        if let Some(w) = self.key_beside_store() {
            checks.push(check(
                "password_key_location",
                "The password key is kept apart from the state store",
                CheckStatus::Warn,
                w,
                "Move the key file out of the store's folder (e.g. to /etc/o365-essentials/password.key, 0600) and set password_key to it.",
            ));
        }
        for w in &self.settings.security_warnings {
            checks.push(check(
                "directory_password_in_clear",
                "The directory's password is sent encrypted",
                CheckStatus::Warn,
                w.clone(),
                "Use an ldaps:// URL or starttls and remove allow_plain_password.",
            ));
        }
        if let Some(c) = self.credential_info() {
            let status = match (c.days_left, &c.warning) {
                (Some(d), _) if d < 0 => CheckStatus::Fail,
                (_, Some(_)) => CheckStatus::Warn,
                _ => CheckStatus::Pass,
            };
            let detail = match (&c.expires, c.days_left) {
                (Some(e), Some(d)) => {
                    format!("a {} credential, valid until {e} ({d} days)", c.kind)
                }
                _ => format!("a {} credential; its expiry is not known here", c.kind),
            };
            checks.push(check(
                "credential_expiry",
                "The app's credential stays valid",
                status,
                detail,
                c.warning.as_deref().unwrap_or(
                    "Replace the credential before it expires: `o365-essentials roll-credential` or `setup`.",
                ),
            ));
        }
        RequirementsReport { checks }
    }

    /// Integrates with the tenant: checks the credentials and permissions by reading the
    /// organization and the administrators, and records the tenant.
    ///
    /// # Errors
    /// The tenant's errors ([`ErrorCode::Auth`], [`ErrorCode::PermissionDenied`] naming
    /// what is missing); store errors.
    pub async fn integrate(&self) -> Result<IntegrationStatus> {
        let tenant = self.tenant();
        let org = tenant.organization().await?;
        tenant.admin_role_holders().await?;
        if let Some(old) = self.store.setting::<IntegrationStatus>(SETTINGS_KEY)? {
            if old.tenant_id != org.tenant_id {
                return Err(Error::new(
                    ErrorCode::InvalidConfig,
                    format!(
                        "this state store belongs to tenant {} ({}); the credentials are for {} — use the store of that tenant, or a new store path",
                        old.tenant_id, old.organization, org.tenant_id
                    ),
                ));
            }
            if !old.enabled {
                return Err(Error::new(
                    ErrorCode::IntegrationDisabled,
                    "the integration is disabled; re-enable it with `enable` (which checks every link) instead of integrating again",
                ));
            }
        }
        let status = IntegrationStatus {
            tenant_id: org.tenant_id,
            organization: org.display_name,
            initial_domain: org.initial_domain,
            verified_domains: org.verified_domains,
            integrated_at: self.now(),
            enabled: true,
            links: self.store.links()?.len(),
            password_sync: self.passwords().password_sync_state(),
            warnings: Vec::new(),
            credential: self.credential_info(),
        };
        self.store.set_setting(SETTINGS_KEY, &status)?;
        Ok(status)
    }

    /// A warning when the password key sits in the store's folder (a copy of the state
    /// folder would carry the key to its queued passwords).
    fn key_beside_store(&self) -> Option<String> {
        let key = self.settings.password_key_path.as_ref()?;
        let folder = |p: &std::path::Path| {
            p.parent()
                .map(|f| f.canonicalize().unwrap_or_else(|_| f.to_path_buf()))
        };
        (self.password_key.is_some() && folder(key) == folder(self.store.path())).then(|| {
            format!(
                "the password key {} is in the state store's folder",
                key.display()
            )
        })
    }

    /// Where the integration stands; works offline.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`]; store errors.
    pub fn status(&self) -> Result<IntegrationStatus> {
        let mut s: IntegrationStatus = self.store.setting(SETTINGS_KEY)?.ok_or_else(|| {
            Error::new(
                ErrorCode::NotIntegrated,
                "no Microsoft 365 tenant is integrated yet",
            )
        })?;
        s.links = self.store.links()?.len();
        s.password_sync = self.passwords().password_sync_state();
        s.warnings = self.key_beside_store().into_iter().collect();
        let unlicensed = self.store.setting::<usize>(UNLICENSED)?.unwrap_or(0);
        if unlicensed > 0 {
            s.warnings.push(format!(
                "{unlicensed} online account(s) were made without their licence (no free seat); the next bulk-create plan proposes it"
            ));
        }
        s.credential = self.credential_info();
        Ok(s)
    }

    /// Reads the tenant's verified domains now and records them in the status (a
    /// domain verified since integrating shows there).
    ///
    /// # Errors
    /// The tenant's errors; store errors.
    pub async fn refresh_verified_domains(&self) -> Result<Vec<String>> {
        let verified = self.tenant().organization().await?.verified_domains;
        self.note_verified_domains(&verified)?;
        Ok(verified)
    }

    fn note_verified_domains(&self, verified: &[String]) -> Result<()> {
        if let Some(mut s) = self.store.setting::<IntegrationStatus>(SETTINGS_KEY)?
            && s.verified_domains != verified
        {
            s.verified_domains = verified.to_vec();
            self.store.set_setting(SETTINGS_KEY, &s)?;
        }
        Ok(())
    }

    /// Stops propagation, locally only (works with no network); links are kept.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`]; store errors.
    pub fn disable(&self) -> Result<()> {
        let mut s = self.status()?;
        s.enabled = false;
        self.store.set_setting(SETTINGS_KEY, &s)
    }

    /// Resumes propagation after [`Integration::disable`]: every link is checked against
    /// the tenant by its anchor — an account recreated under a new id is re-linked, and
    /// what changed online meanwhile is reported as drift, not overwritten.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`]; the tenant's errors (the integration stays disabled
    /// when the tenant cannot be reached); store errors.
    pub async fn enable(&self) -> Result<DriftReport> {
        let mut s = self.status()?;
        let tenant = self.tenant();
        let mut report = DriftReport::default();
        for mut link in self.store.links()? {
            if link.state != LinkState::Active {
                continue;
            }
            let found =
                match tenant.account(&link.online_id.0).await {
                    Ok(a) => Some(a),
                    Err(e) if e.code() == ErrorCode::NotFound => {
                        tenant.find_by_anchor(&link.anchor).await?
                    }
                    Err(e) => return Err(e.context(
                        "re-enabling: the tenant could not be read; the integration stays disabled",
                    )),
                };
            match found {
                None => report.missing.push(link),
                Some(a) => {
                    if a.id != link.online_id {
                        report.relinked.push(Drift {
                            local_guid: link.local_guid,
                            kind: DriftKind::Relinked,
                            what: format!("relinked by anchor from {} to {}", link.online_id, a.id),
                        });
                        link.online_id = a.id.clone();
                    }
                    if !a
                        .user_principal_name
                        .eq_ignore_ascii_case(&link.user_principal_name)
                    {
                        report.changed.push(Drift {
                            local_guid: link.local_guid,
                            kind: DriftKind::UserNameChanged,
                            what: format!(
                                "user name changed online from {} to {}",
                                link.user_principal_name, a.user_principal_name
                            ),
                        });
                        link.user_principal_name = a.user_principal_name.clone();
                    }
                    if a.immutable_id.as_ref() != Some(&link.anchor) {
                        report.changed.push(Drift {
                            local_guid: link.local_guid,
                            kind: DriftKind::AnchorRemoved,
                            what: format!(
                                "{} no longer carries the anchor {}",
                                a.user_principal_name, link.anchor
                            ),
                        });
                    }
                    self.store.put_link(&link)?;
                }
            }
        }
        s.enabled = true;
        self.store.set_setting(SETTINGS_KEY, &s)?;
        // Leavers are not left with access until the next round: their sign-in is
        // blocked now (deletes wait for the sync round and its safety threshold).
        let now = self.now();
        let policy = self.gate.policy();
        for link in self.store.links()? {
            if link.state != LinkState::Active {
                continue;
            }
            let why = match self.dir.user(link.local_guid).await {
                Err(e) if e.code() == ErrorCode::NotFound => Some("deleted locally".to_string()),
                Err(e) => return Err(e),
                Ok(u) => match policy.local_refusal(&u) {
                    Some(r) => Some(r.message),
                    None if !u.active_at(now) => Some(format!(
                        "{} is disabled or expired locally",
                        u.sam_account_name
                    )),
                    None => None,
                },
            };
            let Some(why) = why else { continue };
            let (kind, what) = match self.tenant().set_enabled(&link.online_id, false).await {
                Ok(()) => (
                    DriftKind::Blocked,
                    format!("{}: sign-in blocked ({why})", link.user_principal_name),
                ),
                Err(e) if e.code() == ErrorCode::NotFound => continue,
                Err(e) => (
                    DriftKind::BlockFailed,
                    format!(
                        "{}: could not be blocked ({why}): {e}",
                        link.user_principal_name
                    ),
                ),
            };
            report.blocked.push(Drift {
                local_guid: link.local_guid,
                kind,
                what,
            });
        }
        Ok(report)
    }

    fn require_enabled(&self) -> Result<IntegrationStatus> {
        let s = self.status()?;
        if !s.enabled {
            return Err(Error::new(
                ErrorCode::IntegrationDisabled,
                "the integration is disabled; re-enable it to make changes",
            ));
        }
        Ok(s)
    }

    /// The domain of new online IDs when none is named: the configured custom domain once
    /// the tenant has verified it, else the tenant's initial domain.
    pub(crate) fn default_domain(&self, status: &IntegrationStatus, verified: &[String]) -> String {
        match &self.settings.custom_domain {
            Some(d) if verified.iter().any(|v| v.eq_ignore_ascii_case(d)) => d.clone(),
            _ => status.initial_domain.clone(),
        }
    }

    /// Saves a run's results, writes its results file when a folder is configured (a
    /// file that cannot be written is reported as a warning), and reports it.
    pub(crate) fn record_run(
        &self,
        run_id: Uuid,
        kind: RunKind,
        started_at: OffsetDateTime,
        items: Vec<ItemResult>,
        ctl: &Control,
    ) -> Result<RunResults> {
        let mut run = RunResults {
            run_id,
            kind,
            started_at,
            finished_at: self.now(),
            counts: RunCounts::of(&items),
            items,
            results_file: None,
            results_csv: None,
        };
        if let Some(folder) = &self.settings.results_folder {
            // A results file that cannot be written is a warning, not a failure of the
            // run: the results still go to the store and to the caller.
            match write_results(&run, folder) {
                Ok((json, csv)) => (run.results_file, run.results_csv) = (Some(json), Some(csv)),
                Err(e) => ctl.emit(Event::Warning {
                    code: e.code(),
                    message: e.to_string(),
                }),
            }
        }
        self.store.save_run(&run)?;
        let counts = run.counts;
        ctl.emit(Event::RunFinished {
            run_id,
            kind,
            counts,
        });
        Ok(run)
    }

    async fn precondition(&self, local: &LocalVersion) -> std::result::Result<(), Error> {
        let now = self
            .dir
            .user(local.guid)
            .await
            .map_err(|e| match e.code() {
                ErrorCode::NotFound => Error::new(
                    ErrorCode::PlanStale,
                    format!(
                        "{} was deleted since the plan was made",
                        local.sam_account_name
                    ),
                ),
                _ => e,
            })?;
        if now.usn_changed != local.usn_changed {
            return Err(Error::new(
                ErrorCode::PlanStale,
                format!(
                    "{} changed since the plan was made; plan again",
                    local.sam_account_name
                ),
            ));
        }
        if !now
            .sam_account_name
            .eq_ignore_ascii_case(&local.sam_account_name)
        {
            return Err(guard::Refusal {
                rule: guard::GuardRule::IdentityMismatch,
                message: format!(
                    "the plan names {} but the user {} is {}",
                    local.sam_account_name, local.guid, now.sam_account_name
                ),
            }
            .into_error());
        }
        Ok(())
    }

    /// [`Integration::precondition`] for a write that gives access: the user may also
    /// be synced now (not protected, in scope).
    async fn precondition_granting(&self, local: &LocalVersion) -> Result<()> {
        self.precondition(local).await?;
        let now = self.dir.user(local.guid).await?;
        match self.gate.policy().local_refusal(&now) {
            Some(r) => Err(r.into_error()),
            None => Ok(()),
        }
    }

    /// [`Integration::precondition`] and the anchor the item would write, which must be
    /// the user's own.
    async fn precondition_anchor(
        &self,
        local: &LocalVersion,
        anchor: &crate::model::Anchor,
    ) -> Result<()> {
        self.precondition_granting(local).await?;
        let user = self.dir.user(local.guid).await?;
        if user.anchor() != *anchor {
            return Err(guard::Refusal {
                rule: guard::GuardRule::IdentityMismatch,
                message: format!(
                    "the plan gives {} the anchor {anchor}, but its anchor is {}",
                    local.sam_account_name,
                    user.anchor()
                ),
            }
            .into_error());
        }
        Ok(())
    }

    async fn apply_item(
        &self,
        run: Uuid,
        action: &PlanAction,
        seats: &SeatLedger,
        allow_unlicensed: bool,
    ) -> Result<ItemResult> {
        let base = |local: &LocalVersion, upn: Option<&str>, action: ItemAction| ItemResult {
            password_source: None,
            local_user: local.sam_account_name.clone(),
            local_guid: local.guid,
            requested_upn: upn.map(str::to_string),
            action,
            reason: None,
            outcome: Outcome::Succeeded,
            error_code: None,
            service_message: None,
            recommended_action: None,
            online_id: None,
        };
        let fail = executor::failed_item;
        match action {
            PlanAction::CreateAccount {
                local,
                user_principal_name,
                display_name,
                mail_nickname,
                anchor,
                usage_location,
                licences,
            } => {
                let mut r = base(local, Some(user_principal_name), ItemAction::CreateAccount);
                if let Err(e) = self.precondition_anchor(local, anchor).await {
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                if let Err(e) = validate::upn(user_principal_name) {
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                // The licences' seats, reserved before anything is written.
                let (licences, unseated) = seats.reserve(licences);
                if !unseated.is_empty() && !allow_unlicensed {
                    seats.release(&licences);
                    let e = guard::Refusal {
                        rule: guard::GuardRule::LicenceUnavailable,
                        message: format!(
                            "no free seat of {} is left for {}; nothing was created (buy seats, or apply with unlicensed accounts allowed)",
                            unseated.join(", "),
                            local.sam_account_name
                        ),
                    }
                    .into_error();
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                let licences = &licences;
                let current = self.dir.user(local.guid).await.ok();
                // An expired account is created blocked, like a disabled one.
                let now = self.now();
                let enabled = current.as_ref().is_none_or(|u| u.active_at(now));
                let step = self.step(
                    run,
                    executor::StepKind::Item(ItemAction::CreateAccount),
                    &local.guid.to_string(),
                    &json!({"upn": user_principal_name, "anchor": anchor}),
                )?;
                let new = NewOnlineAccount {
                    user_principal_name: user_principal_name.clone(),
                    display_name: display_name.clone(),
                    mail_nickname: mail_nickname.clone(),
                    usage_location: usage_location.clone(),
                    immutable_id: Some(anchor.clone()),
                    account_enabled: enabled,
                    given_name: current.as_ref().and_then(|u| u.given_name.clone()),
                    surname: current.as_ref().and_then(|u| u.surname.clone()),
                };
                // The user's current password when it was captured before the account
                // existed; else a random one. The tenant refusing the current one (its
                // own policy) is a refusal before anything was made: a random one then.
                let kept = self.kept_password(local.guid).ok().flatten();
                let mut source = if kept.is_some() {
                    crate::model::PasswordSource::Current
                } else {
                    crate::model::PasswordSource::Random
                };
                let first = match &kept {
                    Some(p) => self.tenant().create_account(&new, p).await,
                    None => {
                        self.tenant()
                            .create_account(&new, &initial_password())
                            .await
                    }
                };
                let mut refused_current = None;
                let first = match first {
                    Err(e) if kept.is_some() && e.code() == ErrorCode::PasswordPolicy => {
                        source = crate::model::PasswordSource::Random;
                        refused_current = Some(e);
                        self.tenant()
                            .create_account(&new, &initial_password())
                            .await
                    }
                    other => other,
                };
                let created = match first {
                    Ok(a) => a,
                    Err(e) => {
                        seats.release(licences);
                        step.failed(&e)?;
                        return Ok(fail(r, &e, Outcome::Failed));
                    }
                };
                if kept.is_some() {
                    self.forget_kept_password(local.guid)?;
                }
                self.store.put_link(&Link {
                    local_guid: local.guid,
                    online_id: created.id.clone(),
                    anchor: anchor.clone(),
                    user_principal_name: created.user_principal_name.clone(),
                    state: LinkState::Active,
                    origin: LinkOrigin::Created,
                    linked_at: self.now(),
                })?;
                r.online_id = Some(created.id.clone());
                r.password_source = Some(source);
                if let (Some(e), Some(p)) = (&refused_current, &kept) {
                    // Never hidden: the results say so, and the password problems list
                    // it until the user's next change is delivered.
                    let why = e
                        .service()
                        .map(|s| s.message.clone())
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| e.message().to_string());
                    r.service_message = Some(format!(
                        "Microsoft 365 refused the user's current password ({why}); the account got a random one until the user's next password change"
                    ));
                    r.recommended_action = Some(
                        "Ask the user to change their password to one that meets Microsoft 365's rules.".into(),
                    );
                    self.record_refused_password(local.guid, p, e)?;
                }
                if !unseated.is_empty() {
                    r.service_message = Some(format!(
                        "created without {} (no free seat); the next plan proposes it",
                        unseated.join(", ")
                    ));
                }
                if !licences.is_empty()
                    && let Err(e) = self
                        .tenant()
                        .assign_licences(&created.id, licences, &[])
                        .await
                {
                    seats.release(licences);
                    step.failed_with(
                        &json!({"online_id": created.id, "licence": e.code().name()}),
                    )?;
                    return Ok(fail(
                        r,
                        &e.context("the account was created, but the licence"),
                        Outcome::Failed,
                    ));
                }
                step.done(&json!({"online_id": created.id}))?;
                Ok(r)
            }
            PlanAction::Link {
                local,
                online_id,
                user_principal_name,
                anchor,
                origin,
            } => {
                let mut r = base(local, Some(user_principal_name), ItemAction::Link);
                r.online_id = Some(online_id.clone());
                if let Err(e) = self.precondition_anchor(local, anchor).await {
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                // The account the plan names: its name, its anchor, and no role.
                let account = match self.tenant().account(&online_id.0).await {
                    Ok(a) => a,
                    Err(e) => return Ok(fail(r, &e, Outcome::Skipped)),
                };
                let mismatch = if !account
                    .user_principal_name
                    .eq_ignore_ascii_case(user_principal_name)
                {
                    Some(format!(
                        "the plan names {user_principal_name}, but {online_id} is {}",
                        account.user_principal_name
                    ))
                } else if account.immutable_id.as_ref().is_some_and(|a| a != anchor) {
                    Some(format!(
                        "{} carries another user's anchor",
                        account.user_principal_name
                    ))
                } else if *origin == LinkOrigin::HardMatch && account.immutable_id.is_none() {
                    Some(format!(
                        "{} carries no anchor, so it is no hard match",
                        account.user_principal_name
                    ))
                } else if self.store.link_by_online(online_id)?.is_some() {
                    Some(format!(
                        "{} is linked to another local user",
                        account.user_principal_name
                    ))
                } else {
                    None
                };
                if let Some(m) = mismatch {
                    let e = guard::Refusal {
                        rule: guard::GuardRule::IdentityMismatch,
                        message: m,
                    }
                    .into_error();
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                let admins = match self.tenant().admin_role_holders().await {
                    Ok(a) => a,
                    Err(e) => return Ok(fail(r, &e, Outcome::Failed)),
                };
                if let Some(refusal) = self.gate.policy().online_refusal(online_id, &admins) {
                    return Ok(fail(r, &refusal.into_error(), Outcome::Skipped));
                }
                let step = self.step(
                    run,
                    executor::StepKind::Item(ItemAction::Link),
                    &local.guid.to_string(),
                    &json!({"online_id": online_id, "anchor": anchor}),
                )?;
                if *origin != LinkOrigin::HardMatch
                    && let Err(e) = self
                        .tenant()
                        .update_account(
                            online_id,
                            &AccountUpdate {
                                immutable_id: Some(anchor.clone()),
                                ..Default::default()
                            },
                        )
                        .await
                {
                    step.failed(&e)?;
                    return Ok(fail(r, &e, Outcome::Failed));
                }
                let link = Link {
                    local_guid: local.guid,
                    online_id: online_id.clone(),
                    anchor: anchor.clone(),
                    user_principal_name: user_principal_name.clone(),
                    state: LinkState::Active,
                    origin: *origin,
                    linked_at: self.now(),
                };
                if let Err(e) = self.store.put_link(&link) {
                    step.failed(&e)?;
                    return Ok(fail(r, &e, Outcome::Failed));
                }
                step.done(&json!({}))?;
                Ok(r)
            }
            PlanAction::Licences {
                local_guid,
                online_id,
                add,
                remove,
            } => {
                let name = self
                    .dir
                    .user(*local_guid)
                    .await
                    .map(|u| u.sam_account_name)
                    .unwrap_or_default();
                let local = LocalVersion {
                    guid: *local_guid,
                    sam_account_name: name,
                    usn_changed: 0,
                };
                let mut r = base(&local, None, ItemAction::Licences);
                r.online_id = Some(online_id.clone());
                let (add, unseated) = seats.reserve(add);
                if !unseated.is_empty() {
                    seats.release(&add);
                    let e = guard::Refusal {
                        rule: guard::GuardRule::LicenceUnavailable,
                        message: format!("no free seat of {} is left", unseated.join(", ")),
                    }
                    .into_error();
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                let step = self.step(
                    run,
                    executor::StepKind::Item(ItemAction::Licences),
                    &local_guid.to_string(),
                    &json!({"online_id": online_id}),
                )?;
                match self.tenant().assign_licences(online_id, &add, remove).await {
                    Ok(()) => {
                        step.done(&json!({}))?;
                        Ok(r)
                    }
                    Err(e) => {
                        seats.release(&add);
                        step.failed(&e)?;
                        Ok(fail(r, &e, Outcome::Failed))
                    }
                }
            }
            other => {
                let local = LocalVersion {
                    guid: other.local_guid(),
                    sam_account_name: String::new(),
                    usn_changed: 0,
                };
                let e = Error::new(
                    ErrorCode::NotSupported,
                    "this kind of item is applied by a sync run, not by a bulk create",
                );
                Ok(fail(base(&local, None, other.kind()), &e, Outcome::Skipped))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long operations stay `Send`, so the C ABI, Python and any host can spawn them on a
    /// multi-threaded runtime (compiled, never run).
    #[allow(dead_code)]
    fn long_operations_are_send(i: &Integration, plan: &Plan, ctl: &Control) {
        fn send<T: Send>(_: T) {}
        send(i.accounts().apply(plan, ctl));
        send(i.sync().run_sync(&SyncOptions::default(), ctl));
        send(i.accounts().import_with(&ImportRequest::default(), ctl));
        send(i.passwords().deliver_passwords_with(ctl));
        send(i.call("status", serde_json::Value::Null, ctl));
    }

    #[test]
    fn initial_passwords_meet_both_policies_and_differ() {
        use secrecy::ExposeSecret;
        let a = initial_password();
        let b = initial_password();
        assert_ne!(a.expose_secret(), b.expose_secret());
        let policy = crate::model::PasswordPolicy::default();
        assert!(
            validate::password_rules_broken(
                a.expose_secret(),
                Some(&policy),
                validate::PasswordContext::default()
            )
            .is_empty()
        );
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }
}
