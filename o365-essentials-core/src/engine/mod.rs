//! The integration engine: the [`Integration`] facade over a directory, a tenant and the
//! state store — requirements check, integrate / status / disable / re-enable, and
//! plan → apply for bulk-creating online accounts, with a journal, progress reports and
//! a results file.
//!
//! ```no_run
//! # async fn demo(integration: o365_essentials_core::engine::Integration) -> o365_essentials_core::Result<()> {
//! use o365_essentials_core::engine::BulkCreateRequest;
//! let snapshot = integration.snapshot().await?;
//! let plan = integration.plan_bulk_create(&snapshot, &BulkCreateRequest { domain: "contoso.com".into(), ..Default::default() })?;
//! let results = integration.apply(&plan, &|p| println!("{}/{}", p.done, p.total)).await?;
//! # Ok(()) }
//! ```

mod links;
mod passwords;
mod plan;
mod preview;
mod results;
mod sync;

use std::sync::Arc;

use futures::TryStreamExt;
use rand::Rng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

pub use links::{ImportRequest, ImportedUser};
pub use passwords::{PasswordDelivery, PasswordKey, PasswordProblem};
pub use plan::{BulkCreateRequest, Snapshot, plan_bulk_create, suggest_upn};
pub use preview::{MatchConflict, MatchPair, MatchPreview, Side, match_preview};
pub use results::{failed_users, to_csv, write_results};
pub use sync::{SyncLoop, SyncOptions, SyncReport, plan_sync};

use crate::error::{Error, ErrorCode, Result};
use crate::model::{
    AccountUpdate, CheckStatus, ItemResult, Link, LinkOrigin, LinkState, LocalVersion,
    NewOnlineAccount, Outcome, Plan, PlanAction, Progress, RequirementCheck, RequirementsReport,
    RunResults,
};
use crate::ports::{Directory, Tenant};
use crate::store::{JournalState, Store};
use crate::validate;

const SETTINGS_KEY: &str = "integration";

/// Where the integration stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub integrated_at: OffsetDateTime,
    /// Whether changes propagate (false after [`Integration::disable`]).
    pub enabled: bool,
    /// Links recorded.
    #[serde(default)]
    pub links: usize,
}

/// One difference found between a link and the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// The local user.
    pub local_guid: crate::model::ObjectGuid,
    /// What differs.
    pub what: String,
}

/// What re-enabling found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Links whose online account is gone (not found by id nor anchor).
    pub missing: Vec<Link>,
    /// Links moved to the account now carrying their anchor.
    pub relinked: Vec<Drift>,
    /// Changes made online while disabled (reported, not overwritten).
    pub changed: Vec<Drift>,
}

/// The facade the bindings expose.
pub struct Integration {
    dir: Arc<dyn Directory>,
    tenant: std::sync::RwLock<Arc<dyn Tenant>>,
    store: Arc<Store>,
    password_key: Option<PasswordKey>,
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

impl Integration {
    /// The facade over these ports and store.
    pub fn new(dir: Arc<dyn Directory>, tenant: Arc<dyn Tenant>, store: Arc<Store>) -> Self {
        Integration {
            dir,
            tenant: std::sync::RwLock::new(tenant),
            store,
            password_key: None,
        }
    }

    fn tenant(&self) -> Arc<dyn Tenant> {
        self.tenant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches to new administrator credentials (a tenant backend built with them) after
    /// checking them; when they fail, the old ones stay in use. Credentials are the
    /// caller's to keep: the store never holds secrets.
    ///
    /// # Errors
    /// The new credentials' errors ([`ErrorCode::Auth`], [`ErrorCode::PermissionDenied`]);
    /// [`ErrorCode::InvalidConfig`] when they belong to another tenant;
    /// [`ErrorCode::NotIntegrated`].
    pub async fn change_credentials(&self, new: Arc<dyn Tenant>) -> Result<()> {
        let status = self.status()?;
        let org = new
            .organization()
            .await
            .map_err(|e| e.context("the new credentials do not work; the old ones stay in use"))?;
        new.admin_role_holders().await.map_err(|e| {
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
        *self.tenant.write().unwrap_or_else(|p| p.into_inner()) = new;
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

    /// The requirements check (DESIGN.md task 1): one DC, running on it, the tenant
    /// reachable, the custom domain well formed. Never fails: problems are checks.
    pub async fn requirements(&self, custom_domain: Option<&str>) -> RequirementsReport {
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
                e.action(),
            )),
        }
        if let Some(d) = custom_domain {
            let r = validate::domain_name(d);
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
        let status = IntegrationStatus {
            tenant_id: org.tenant_id,
            organization: org.display_name,
            initial_domain: org.initial_domain,
            verified_domains: org.verified_domains,
            integrated_at: OffsetDateTime::now_utc(),
            enabled: true,
            links: self.store.links()?.len(),
        };
        self.store.set_setting(SETTINGS_KEY, &status)?;
        Ok(status)
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
        Ok(s)
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

    /// Reads both sides.
    ///
    /// # Errors
    /// The directory's and the tenant's errors.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let tenant = self.tenant();
        Ok(Snapshot {
            users: self.dir.users().try_collect().await?,
            accounts: tenant.accounts().try_collect().await?,
            admins: tenant.admin_role_holders().await?,
            links: self.store.links()?,
        })
    }

    /// Plans a bulk create on a snapshot (pure; nothing is written).
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`]; [`ErrorCode::InvalidDomainName`],
    /// [`ErrorCode::DomainNotVerified`] for the chosen domain;
    /// [`ErrorCode::InvalidUsageLocation`].
    pub fn plan_bulk_create(
        &self,
        snapshot: &Snapshot,
        request: &BulkCreateRequest,
    ) -> Result<Plan> {
        let status = self.status()?;
        validate::domain_name(&request.domain.to_ascii_lowercase())?;
        if !status
            .verified_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&request.domain))
        {
            return Err(Error::new(
                ErrorCode::DomainNotVerified,
                format!(
                    "{} is not a verified domain of the tenant (verified: {})",
                    request.domain,
                    status.verified_domains.join(", ")
                ),
            ));
        }
        if let Some(l) = &request.usage_location {
            validate::usage_location(l)?;
        }
        Ok(plan_bulk_create(
            snapshot,
            request,
            Uuid::new_v4(),
            OffsetDateTime::now_utc(),
            &status.tenant_id,
        ))
    }

    /// Applies exactly `plan`, refusing items whose local user changed since planning.
    /// Each remote step is journaled before and after; a rerun after a crash creates
    /// nothing twice (creates are found by their anchor).
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`], [`ErrorCode::IntegrationDisabled`],
    /// [`ErrorCode::PlanStale`] for a plan of another tenant; store errors. Per-item
    /// failures are in the results.
    pub async fn apply(
        &self,
        plan: &Plan,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RunResults> {
        let status = self.require_enabled()?;
        if plan.tenant_id != status.tenant_id {
            return Err(Error::new(
                ErrorCode::PlanStale,
                format!(
                    "the plan was made for tenant {}, not {}",
                    plan.tenant_id, status.tenant_id
                ),
            ));
        }
        let started_at = OffsetDateTime::now_utc();
        let total = plan.items.len() as u64;
        let mut items = Vec::with_capacity(plan.items.len());
        for (n, item) in plan.items.iter().enumerate() {
            let local = match &item.action {
                PlanAction::CreateAccount { local, .. } | PlanAction::Link { local, .. } => {
                    Some(local)
                }
                _ => None,
            };
            progress(Progress {
                done: n as u64,
                total,
                current: local.map(|l| l.sam_account_name.clone()),
            });
            items.push(self.apply_item(plan.id, &item.action).await?);
        }
        progress(Progress {
            done: total,
            total,
            current: None,
        });
        let run = RunResults {
            run_id: plan.id,
            kind: "bulk_create".into(),
            started_at,
            finished_at: OffsetDateTime::now_utc(),
            items,
        };
        self.store.save_run(&run)?;
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
        Ok(())
    }

    async fn apply_item(&self, run: Uuid, action: &PlanAction) -> Result<ItemResult> {
        let base = |local: &LocalVersion, upn: Option<&str>, action: &str| ItemResult {
            local_user: local.sam_account_name.clone(),
            local_guid: local.guid,
            requested_upn: upn.map(str::to_string),
            action: action.into(),
            outcome: Outcome::Succeeded,
            error_code: None,
            service_message: None,
            recommended_action: None,
            online_id: None,
        };
        let fail = |mut r: ItemResult, e: &Error, outcome: Outcome| {
            r.outcome = outcome;
            r.error_code = Some(e.code());
            r.service_message = Some(
                e.service()
                    .map(|s| s.message.clone())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| e.message().to_string()),
            );
            r.recommended_action = Some(e.action().to_string());
            r
        };
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
                let r = base(local, Some(user_principal_name), "create_account");
                if let Err(e) = self.precondition(local).await {
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                let current = self.dir.user(local.guid).await.ok();
                let enabled = current.as_ref().is_none_or(|u| u.enabled());
                let entry = self.store.journal_begin(
                    run,
                    "create_account",
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
                let created = match self
                    .tenant()
                    .create_account(&new, &initial_password())
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        self.store.journal_failed(entry, &e)?;
                        return Ok(fail(r, &e, Outcome::Failed));
                    }
                };
                self.store.put_link(&Link {
                    local_guid: local.guid,
                    online_id: created.id.clone(),
                    anchor: anchor.clone(),
                    user_principal_name: created.user_principal_name.clone(),
                    state: LinkState::Active,
                    origin: LinkOrigin::Created,
                    linked_at: OffsetDateTime::now_utc(),
                })?;
                let mut r = r;
                r.online_id = Some(created.id.clone());
                if !licences.is_empty()
                    && let Err(e) = self
                        .tenant()
                        .assign_licences(&created.id, licences, &[])
                        .await
                {
                    self.store.journal_finish(
                        entry,
                        JournalState::Failed,
                        &json!({"online_id": created.id, "licence": e.code().name()}),
                    )?;
                    return Ok(fail(
                        r,
                        &e.context("the account was created, but the licence"),
                        Outcome::Failed,
                    ));
                }
                self.store.journal_finish(
                    entry,
                    JournalState::Done,
                    &json!({"online_id": created.id}),
                )?;
                Ok(r)
            }
            PlanAction::Link {
                local,
                online_id,
                user_principal_name,
                anchor,
                origin,
            } => {
                let mut r = base(local, Some(user_principal_name), "link");
                r.online_id = Some(online_id.clone());
                if let Err(e) = self.precondition(local).await {
                    return Ok(fail(r, &e, Outcome::Skipped));
                }
                let entry = self.store.journal_begin(
                    run,
                    "link",
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
                    self.store.journal_failed(entry, &e)?;
                    return Ok(fail(r, &e, Outcome::Failed));
                }
                let link = Link {
                    local_guid: local.guid,
                    online_id: online_id.clone(),
                    anchor: anchor.clone(),
                    user_principal_name: user_principal_name.clone(),
                    state: LinkState::Active,
                    origin: *origin,
                    linked_at: OffsetDateTime::now_utc(),
                };
                if let Err(e) = self.store.put_link(&link) {
                    self.store.journal_failed(entry, &e)?;
                    return Ok(fail(r, &e, Outcome::Failed));
                }
                self.store
                    .journal_finish(entry, JournalState::Done, &json!({}))?;
                Ok(r)
            }
            other => {
                let local = LocalVersion {
                    guid: other.local_guid(),
                    sam_account_name: String::new(),
                    usn_changed: 0,
                };
                let e = Error::new(
                    ErrorCode::NotSupported,
                    "this kind of item is applied by the sync (part 2), not by a bulk create",
                );
                Ok(fail(base(&local, None, "other"), &e, Outcome::Skipped))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
