//! The gate every remote write passes through.
//!
//! Who may exist online is decided here and nowhere else. A local user is *protected*
//! when it is a computer or trust account, a built-in or critical system object, has a
//! relative id below 1000, carries `adminCount = 1`, is (nested or by its primary group)
//! in a privileged well-known group — decided by SID, never by name — is the
//! integration's own bind account, or the configuration excludes it. An online account is
//! protected when it holds any directory role (assigned or eligible, directly or through
//! a role-assignable group). A user outside the configured bases or filter is *out of
//! scope*. Protected and out-of-scope users are never planned, matched, linked, created,
//! captured or synced; an administrator who really wants a privileged one linked names it
//! in `allow_protected`.
//!
//! The planner asks [`Gate::local_refusal`] to leave such users out of a preview, but
//! nothing relies on the planner: the engine reaches the tenant only through
//! [`GuardedTenant`], which decides each write again from the live directory, the store
//! and the tenant at the moment it is made — so a hand-edited plan, a file, an old
//! journal entry or a front door meets the same refusal, naming its rule.
//!
//! Writes that only take access away (block sign-in, remove licences, delete) are allowed
//! for protected local users — that is how a user who became a Domain Admin loses the
//! online account — but never on an online account that holds a directory role.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};
use crate::model::{
    AccountUpdate, AdminRoleHolder, Anchor, LicenceAssignment, LocalUser, NewOnlineAccount,
    OnlineAccount, OnlineAccountId, OnlineChanges, Organization, Sku,
};
use crate::ports::{Directory, Tenant};
use crate::store::Store;

/// A privileged well-known group: builtin (`S-1-5-32-<rid>`) or relative to the domain
/// (`<domain SID>-<rid>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnownGroup {
    /// `S-1-5-32-<rid>`.
    Builtin(u32),
    /// `<domain SID>-<rid>`.
    Domain(u32),
}

/// The privileged groups, by SID (names are localised and can be renamed; SIDs cannot).
pub const PRIVILEGED_GROUPS: &[(WellKnownGroup, &str)] = &[
    (WellKnownGroup::Builtin(544), "Administrators"),
    (WellKnownGroup::Builtin(548), "Account Operators"),
    (WellKnownGroup::Builtin(549), "Server Operators"),
    (WellKnownGroup::Builtin(550), "Print Operators"),
    (WellKnownGroup::Builtin(551), "Backup Operators"),
    (WellKnownGroup::Builtin(552), "Replicator"),
    (WellKnownGroup::Domain(512), "Domain Admins"),
    (WellKnownGroup::Domain(516), "Domain Controllers"),
    (WellKnownGroup::Domain(517), "Cert Publishers"),
    (WellKnownGroup::Domain(518), "Schema Admins"),
    (WellKnownGroup::Domain(519), "Enterprise Admins"),
    (WellKnownGroup::Domain(520), "Group Policy Creator Owners"),
    (WellKnownGroup::Domain(521), "Read-only Domain Controllers"),
    (WellKnownGroup::Domain(526), "Key Admins"),
    (WellKnownGroup::Domain(527), "Enterprise Key Admins"),
];

/// Relative ids below this one are the accounts and groups the domain made itself.
pub const FIRST_ORDINARY_RID: u32 = 1000;

/// `name (SID)` when `sid` is one of [`PRIVILEGED_GROUPS`] (of any domain), else `None`.
pub fn privileged_group(sid: &str) -> Option<String> {
    let (prefix, rid) = sid.rsplit_once('-')?;
    let rid: u32 = rid.parse().ok()?;
    let builtin = prefix == "S-1-5-32";
    let domain = prefix.starts_with("S-1-5-21-");
    PRIVILEGED_GROUPS.iter().find_map(|(g, name)| {
        let hit = match g {
            WellKnownGroup::Builtin(r) => builtin && *r == rid,
            WellKnownGroup::Domain(r) => domain && *r == rid,
        };
        hit.then(|| format!("{name} ({sid})"))
    })
}

/// The rule a refused write broke (in results files, errors and previews).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardRule {
    /// A computer or trust account.
    ComputerOrTrustAccount,
    /// One of the domain's built-in accounts (Administrator, Guest, krbtgt ...).
    BuiltInAccount,
    /// `isCriticalSystemObject = TRUE`.
    CriticalSystemObject,
    /// A relative id below 1000 (made by the domain itself).
    ReservedRid,
    /// `adminCount = 1`: in a protected group now or before.
    AdminCount,
    /// In a privileged well-known group (nested or primary included).
    PrivilegedGroup,
    /// The account o365-essentials binds to the directory with.
    BindAccount,
    /// Named in the configuration's `exclude_users`.
    ExcludedByConfiguration,
    /// Outside the configured bases or user filter.
    OutOfScope,
    /// The online account holds a directory role.
    DirectoryRole,
    /// The integration is disabled (or not integrated): nothing propagates.
    IntegrationDisabled,
    /// No local user carries the anchor or owns the link the write is for.
    NoLocalUser,
    /// What the plan says of the user no longer matches the directory.
    IdentityMismatch,
    /// No free seat of the licence.
    LicenceUnavailable,
}

impl GuardRule {
    /// The error code a refusal under this rule carries.
    pub fn code(self) -> ErrorCode {
        match self {
            GuardRule::OutOfScope => ErrorCode::OutOfScope,
            GuardRule::IntegrationDisabled => ErrorCode::IntegrationDisabled,
            GuardRule::NoLocalUser | GuardRule::IdentityMismatch => ErrorCode::PlanStale,
            GuardRule::LicenceUnavailable => ErrorCode::LicenceUnavailable,
            _ => ErrorCode::ProtectedAccount,
        }
    }

    /// Whether `allow_protected` can lift the rule (only the privilege rules: never a
    /// built-in, system, bind, excluded or out-of-scope account).
    pub fn allowable(self) -> bool {
        matches!(
            self,
            GuardRule::AdminCount | GuardRule::PrivilegedGroup | GuardRule::DirectoryRole
        )
    }
}

/// A write the gate refused: the rule and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule.
    pub rule: GuardRule,
    /// What was found, for people ("ann is in Domain Admins (S-1-5-21-…-512)").
    pub message: String,
}

impl Refusal {
    fn new(rule: GuardRule, message: impl Into<String>) -> Self {
        Refusal {
            rule,
            message: message.into(),
        }
    }

    /// The refusal as the engine's error (its code from [`GuardRule::code`]; the rule's
    /// name leads the message so results files and logs can be grepped for it).
    pub fn into_error(self) -> Error {
        let rule = serde_json::to_value(self.rule)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Error::new(
            self.rule.code(),
            format!("refused ({rule}): {}", self.message),
        )
    }
}

/// What the configuration says about who may be synced.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Privileged users an administrator wants linked anyway (sAMAccountName, UPN or
    /// objectGUID; online UPNs for role holders).
    pub allow_protected: Vec<String>,
    /// Users never synced (sAMAccountName, UPN or objectGUID).
    pub exclude_users: Vec<String>,
    /// The identity the directory is bound with (a DN, a UPN or `DOMAIN\name`).
    pub bind_identity: Option<String>,
}

fn names_user(list: &[String], user: &LocalUser) -> bool {
    list.iter().any(|n| {
        let n = n.trim();
        n.eq_ignore_ascii_case(&user.sam_account_name)
            || user
                .user_principal_name
                .as_deref()
                .is_some_and(|u| n.eq_ignore_ascii_case(u))
            || n.eq_ignore_ascii_case(&user.guid.to_string())
            || n.eq_ignore_ascii_case(&user.dn)
    })
}

fn is_bind_account(bind: &str, user: &LocalUser) -> bool {
    let bind = bind.trim();
    if bind.is_empty() {
        return false;
    }
    let sam = bind.rsplit_once('\\').map(|(_, s)| s).unwrap_or(bind);
    bind.eq_ignore_ascii_case(&user.dn)
        || user
            .user_principal_name
            .as_deref()
            .is_some_and(|u| bind.eq_ignore_ascii_case(u))
        || sam.eq_ignore_ascii_case(&user.sam_account_name)
}

impl Policy {
    /// Why `user` must never be synced, or `None` when it may be. The one place the
    /// rules are written; the planner, the gate, the hook and the sync all ask it.
    pub fn local_refusal(&self, user: &LocalUser) -> Option<Refusal> {
        let name = &user.sam_account_name;
        if let Some(why) = user.exclusion_reason() {
            use crate::model::ExclusionReason;
            let rule = match why {
                ExclusionReason::ComputerOrTrust => GuardRule::ComputerOrTrustAccount,
                ExclusionReason::CriticalSystemObject => GuardRule::CriticalSystemObject,
                ExclusionReason::BuiltIn => GuardRule::BuiltInAccount,
            };
            return Some(Refusal::new(rule, format!("{name}: {why}")));
        }
        if let Some(rid) = user.standing.rid.filter(|r| *r < FIRST_ORDINARY_RID) {
            return Some(Refusal::new(
                GuardRule::ReservedRid,
                format!("{name} has the relative id {rid}: an account the domain made itself"),
            ));
        }
        if let Some(bind) = &self.bind_identity
            && is_bind_account(bind, user)
        {
            return Some(Refusal::new(
                GuardRule::BindAccount,
                format!("{name} is the account o365-essentials reads the directory with"),
            ));
        }
        if names_user(&self.exclude_users, user) {
            return Some(Refusal::new(
                GuardRule::ExcludedByConfiguration,
                format!("{name} is listed in the configuration's exclude_users"),
            ));
        }
        if user.standing.out_of_scope {
            return Some(Refusal::new(
                GuardRule::OutOfScope,
                format!("{name} is outside the configured bases or user filter"),
            ));
        }
        let allowed = names_user(&self.allow_protected, user);
        if !allowed {
            if let Some(g) = user.standing.privileged_groups.first() {
                return Some(Refusal::new(
                    GuardRule::PrivilegedGroup,
                    format!("{name} is in the privileged group {g}"),
                ));
            }
            if user.standing.admin_count {
                return Some(Refusal::new(
                    GuardRule::AdminCount,
                    format!("{name} has adminCount = 1 (it is or was in a protected group)"),
                ));
            }
        }
        None
    }

    /// Whether the preview should say a privileged user is synced only because
    /// `allow_protected` names it.
    pub fn allowed_privileged(&self, user: &LocalUser) -> bool {
        (user.standing.admin_count || !user.standing.privileged_groups.is_empty())
            && names_user(&self.allow_protected, user)
    }

    /// Why the online account `id` must never be written to, or `None`.
    pub fn online_refusal(
        &self,
        id: &OnlineAccountId,
        admins: &[AdminRoleHolder],
    ) -> Option<Refusal> {
        let holder = admins.iter().find(|a| a.id == *id)?;
        let allowed = self
            .allow_protected
            .iter()
            .any(|n| n.trim().eq_ignore_ascii_case(&holder.user_principal_name));
        (!allowed).then(|| {
            Refusal::new(
                GuardRule::DirectoryRole,
                format!(
                    "{} holds the directory role(s) {}",
                    holder.user_principal_name,
                    holder.roles.join(", ")
                ),
            )
        })
    }
}

fn own_write_key(id: &OnlineAccountId) -> String {
    format!("{OWN_WRITE_PREFIX}{}", id.0)
}

const OWN_WRITE_PREFIX: &str = "own_write.";

/// The online accounts the engine wrote itself since the markers were last cleared,
/// with the markers' keys (read before a delta round; the round skips their changes
/// and then clears exactly these markers, so a write made meanwhile keeps its own).
pub(crate) fn own_writes(store: &Store) -> Result<(HashSet<String>, Vec<String>)> {
    let keys = store.setting_keys(OWN_WRITE_PREFIX)?;
    let ids = keys
        .iter()
        .filter_map(|k| k.strip_prefix(OWN_WRITE_PREFIX).map(str::to_string))
        .collect();
    Ok((ids, keys))
}

/// How long the role holders read for the gate stay fresh.
const ADMINS_FRESH: Duration = Duration::from_secs(30);

/// The gate: the live state it decides from.
pub(crate) struct Gate {
    dir: Arc<dyn Directory>,
    store: Arc<Store>,
    policy: RwLock<Arc<Policy>>,
    admins: Mutex<Option<(Instant, Arc<Vec<AdminRoleHolder>>)>>,
}

impl Gate {
    pub(crate) fn new(dir: Arc<dyn Directory>, store: Arc<Store>) -> Self {
        Gate {
            dir,
            store,
            policy: RwLock::new(Arc::new(Policy::default())),
            admins: Mutex::new(None),
        }
    }

    pub(crate) fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the role holders read before (a run starting reads them anew).
    pub(crate) fn refresh(&self) {
        *self.admins.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn admins(&self, tenant: &dyn Tenant) -> Result<Arc<Vec<AdminRoleHolder>>> {
        if let Some((at, a)) = self
            .admins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < ADMINS_FRESH
        {
            return Ok(a.clone());
        }
        let fresh = Arc::new(tenant.admin_role_holders().await.map_err(|e| {
            e.context("the gate could not read who holds directory roles, so nothing was written")
        })?);
        *self.admins.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    pub(crate) fn require_enabled(&self) -> Result<()> {
        let status: Option<super::IntegrationStatus> = self.store.setting(super::SETTINGS_KEY)?;
        match status {
            Some(s) if s.enabled => Ok(()),
            Some(_) => Err(Refusal::new(
                GuardRule::IntegrationDisabled,
                "the integration is disabled; re-enable it to make changes",
            )
            .into_error()),
            None => Err(Error::new(
                ErrorCode::NotIntegrated,
                "no Microsoft 365 tenant is integrated yet",
            )),
        }
    }

    /// Notes that the engine itself just wrote `id`, so the next delta round does not
    /// report the change back as made online by someone else.
    fn own_write(&self, id: &OnlineAccountId) -> Result<()> {
        self.store.set_setting(&own_write_key(id), &true)
    }

    /// The local user an anchor belongs to (objectGUID or mS-DS-ConsistencyGuid).
    async fn user_by_anchor(&self, anchor: &Anchor) -> Result<LocalUser> {
        let no_user = || {
            Refusal::new(
                GuardRule::NoLocalUser,
                format!("no local user carries the anchor {anchor}"),
            )
            .into_error()
        };
        let guid = anchor.guid().ok_or_else(no_user)?;
        match self.dir.user_by_anchor(guid).await {
            Ok(u) if u.anchor() == *anchor => Ok(u),
            Ok(_) => Err(no_user()),
            Err(e) if e.code() == ErrorCode::NotFound => Err(no_user()),
            Err(e) => Err(e),
        }
    }

    fn check_local(&self, user: &LocalUser) -> Result<()> {
        match self.policy().local_refusal(user) {
            Some(r) => Err(r.into_error()),
            None => Ok(()),
        }
    }

    async fn check_online(&self, tenant: &dyn Tenant, id: &OnlineAccountId) -> Result<()> {
        let admins = self.admins(tenant).await?;
        match self.policy().online_refusal(id, &admins) {
            Some(r) => Err(r.into_error()),
            None => Ok(()),
        }
    }

    /// A write that gives access (create, link, update, enable, password, licences): the
    /// account is no role holder's, and the local user it belongs to — by its link, else
    /// by the anchor the write sets — exists, is in scope and is not protected.
    async fn check_granting(
        &self,
        tenant: &dyn Tenant,
        id: &OnlineAccountId,
        anchor: Option<&Anchor>,
    ) -> Result<()> {
        self.require_enabled()?;
        self.check_online(tenant, id).await?;
        let user = match self.store.link_by_online(id)? {
            Some(link) => match self.dir.user(link.local_guid).await {
                Ok(u) => u,
                Err(e) if e.code() == ErrorCode::NotFound => {
                    return Err(Refusal::new(
                        GuardRule::NoLocalUser,
                        format!(
                            "{} is linked to a local user that no longer exists",
                            link.user_principal_name
                        ),
                    )
                    .into_error());
                }
                Err(e) => return Err(e),
            },
            None => match anchor {
                Some(a) => self.user_by_anchor(a).await?,
                None => {
                    return Err(Refusal::new(
                        GuardRule::NoLocalUser,
                        format!("the online account {id} is not linked to a local user"),
                    )
                    .into_error());
                }
            },
        };
        if let Some(a) = anchor
            && *a != user.anchor()
        {
            return Err(Refusal::new(
                GuardRule::IdentityMismatch,
                format!(
                    "the anchor {a} is not {}'s ({})",
                    user.sam_account_name,
                    user.anchor()
                ),
            )
            .into_error());
        }
        self.check_local(&user)
    }

    /// A write that only takes access away (block, remove licences, delete).
    async fn check_restricting(&self, tenant: &dyn Tenant, id: &OnlineAccountId) -> Result<()> {
        self.require_enabled()?;
        self.check_online(tenant, id).await
    }
}

/// The tenant port the engine holds: reads pass through, every write is decided by the
/// [`Gate`] first.
pub(crate) struct GuardedTenant {
    inner: Arc<dyn Tenant>,
    gate: Arc<Gate>,
}

impl GuardedTenant {
    pub(crate) fn new(inner: Arc<dyn Tenant>, gate: Arc<Gate>) -> Self {
        GuardedTenant { inner, gate }
    }
}

#[async_trait]
impl Tenant for GuardedTenant {
    fn accounts(&self) -> BoxStream<'_, Result<OnlineAccount>> {
        self.inner.accounts()
    }

    async fn account(&self, id_or_upn: &str) -> Result<OnlineAccount> {
        self.inner.account(id_or_upn).await
    }

    async fn find_by_anchor(&self, anchor: &Anchor) -> Result<Option<OnlineAccount>> {
        self.inner.find_by_anchor(anchor).await
    }

    async fn create_account(
        &self,
        account: &NewOnlineAccount,
        password: &SecretString,
    ) -> Result<OnlineAccount> {
        self.gate.require_enabled()?;
        let anchor = account.immutable_id.as_ref().ok_or_else(|| {
            Refusal::new(
                GuardRule::NoLocalUser,
                format!(
                    "{} would have no anchor: o365-essentials only creates accounts for local users",
                    account.user_principal_name
                ),
            )
            .into_error()
        })?;
        let user = self.gate.user_by_anchor(anchor).await?;
        self.gate.check_local(&user)?;
        // A user disabled locally never gets an enabled account (expiry is the caller's
        // to decide with its clock).
        if account.account_enabled && !user.enabled() {
            return Err(Refusal::new(
                GuardRule::IdentityMismatch,
                format!(
                    "{} is disabled locally; its online account would be enabled",
                    user.sam_account_name
                ),
            )
            .into_error());
        }
        let created = self.inner.create_account(account, password).await?;
        self.gate.own_write(&created.id)?;
        Ok(created)
    }

    async fn update_account(&self, id: &OnlineAccountId, update: &AccountUpdate) -> Result<()> {
        self.gate
            .check_granting(self.inner.as_ref(), id, update.immutable_id.as_ref())
            .await?;
        self.inner.update_account(id, update).await?;
        self.gate.own_write(id)
    }

    async fn set_password(&self, id: &OnlineAccountId, password: &SecretString) -> Result<()> {
        self.gate
            .check_granting(self.inner.as_ref(), id, None)
            .await?;
        self.inner.set_password(id, password).await?;
        self.gate.own_write(id)
    }

    async fn set_enabled(&self, id: &OnlineAccountId, enabled: bool) -> Result<()> {
        if enabled {
            self.gate
                .check_granting(self.inner.as_ref(), id, None)
                .await?;
        } else {
            self.gate.check_restricting(self.inner.as_ref(), id).await?;
        }
        self.inner.set_enabled(id, enabled).await?;
        self.gate.own_write(id)
    }

    async fn delete_account(&self, id: &OnlineAccountId) -> Result<()> {
        self.gate.check_restricting(self.inner.as_ref(), id).await?;
        self.inner.delete_account(id).await?;
        self.gate.own_write(id)
    }

    async fn restore_account(&self, id: &OnlineAccountId) -> Result<OnlineAccount> {
        self.gate
            .check_granting(self.inner.as_ref(), id, None)
            .await?;
        let a = self.inner.restore_account(id).await?;
        self.gate.own_write(id)?;
        Ok(a)
    }

    async fn skus(&self) -> Result<Vec<Sku>> {
        self.inner.skus().await
    }

    async fn assign_licences(
        &self,
        id: &OnlineAccountId,
        add: &[LicenceAssignment],
        remove: &[Uuid],
    ) -> Result<()> {
        if add.is_empty() {
            self.gate.check_restricting(self.inner.as_ref(), id).await?;
        } else {
            self.gate
                .check_granting(self.inner.as_ref(), id, None)
                .await?;
        }
        self.inner.assign_licences(id, add, remove).await?;
        self.gate.own_write(id)
    }

    async fn organization(&self) -> Result<Organization> {
        self.inner.organization().await
    }

    async fn admin_role_holders(&self) -> Result<Vec<AdminRoleHolder>> {
        let a = self.inner.admin_role_holders().await?;
        *self.gate.admins.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), Arc::new(a.clone())));
        Ok(a)
    }

    async fn changes(&self, delta_link: Option<&str>) -> Result<OnlineChanges> {
        self.inner.changes(delta_link).await
    }

    async fn changes_from_now(&self) -> Result<String> {
        self.inner.changes_from_now().await
    }
}

/// The online ids that hold a directory role (unless allowed).
pub(crate) fn protected_online(policy: &Policy, admins: &[AdminRoleHolder]) -> HashSet<String> {
    admins
        .iter()
        .filter(|a| policy.online_refusal(&a.id, admins).is_some())
        .map(|a| a.id.0.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LocalStanding, ObjectGuid, uac};

    fn user(sam: &str) -> LocalUser {
        LocalUser {
            guid: ObjectGuid::random(),
            consistency_guid: None,
            dn: format!("CN={sam},CN=Users,DC=essentials,DC=test"),
            sam_account_name: sam.into(),
            user_principal_name: Some(format!("{sam}@essentials.test")),
            given_name: None,
            surname: None,
            display_name: None,
            mail: None,
            proxy_addresses: vec![],
            user_account_control: uac::NORMAL_ACCOUNT,
            member_of: vec![],
            when_changed: None,
            usn_changed: 1,
            critical_system_object: false,
            account_expires: None,
            standing: LocalStanding {
                rid: Some(1105),
                ..Default::default()
            },
        }
    }

    fn rule(p: &Policy, u: &LocalUser) -> Option<GuardRule> {
        p.local_refusal(u).map(|r| r.rule)
    }

    #[test]
    fn each_kind_of_protected_user_is_refused_by_its_rule() {
        let p = Policy {
            bind_identity: Some("ESSENTIALS\\svc-o365".into()),
            exclude_users: vec!["kiosk".into()],
            ..Default::default()
        };
        assert_eq!(rule(&p, &user("ann")), None);
        let mut pc = user("ws01$");
        pc.user_account_control = uac::WORKSTATION_TRUST_ACCOUNT;
        assert_eq!(rule(&p, &pc), Some(GuardRule::ComputerOrTrustAccount));
        assert_eq!(
            rule(&p, &user("Administrator")),
            Some(GuardRule::BuiltInAccount)
        );
        let mut crit = user("dns-dc1");
        crit.critical_system_object = true;
        assert_eq!(rule(&p, &crit), Some(GuardRule::CriticalSystemObject));
        // Renamed built-in: its RID gives it away, whatever its name.
        let mut renamed = user("boss");
        renamed.standing.rid = Some(500);
        assert_eq!(rule(&p, &renamed), Some(GuardRule::ReservedRid));
        let mut ac = user("former-admin");
        ac.standing.admin_count = true;
        assert_eq!(rule(&p, &ac), Some(GuardRule::AdminCount));
        let mut da = user("bob");
        da.standing.privileged_groups = vec!["Domain Admins (S-1-5-21-1-2-3-512)".into()];
        assert_eq!(rule(&p, &da), Some(GuardRule::PrivilegedGroup));
        assert_eq!(rule(&p, &user("svc-o365")), Some(GuardRule::BindAccount));
        assert_eq!(
            rule(&p, &user("kiosk")),
            Some(GuardRule::ExcludedByConfiguration)
        );
        let mut out = user("contractor");
        out.standing.out_of_scope = true;
        assert_eq!(rule(&p, &out), Some(GuardRule::OutOfScope));
    }

    #[test]
    fn the_allow_list_lifts_only_the_privilege_rules() {
        let p = Policy {
            allow_protected: vec!["bob".into(), "Administrator".into()],
            ..Default::default()
        };
        let mut da = user("bob");
        da.standing.privileged_groups = vec!["Domain Admins (S-1-5-21-1-2-3-512)".into()];
        da.standing.admin_count = true;
        assert_eq!(rule(&p, &da), None);
        assert!(p.allowed_privileged(&da));
        // Never a built-in, whatever the list says.
        assert_eq!(
            rule(&p, &user("Administrator")),
            Some(GuardRule::BuiltInAccount)
        );
    }

    #[test]
    fn role_holders_are_refused_whatever_the_role_is_called() {
        let admins = vec![AdminRoleHolder {
            id: OnlineAccountId("a1".into()),
            user_principal_name: "it@contoso.com".into(),
            roles: vec!["Helpdesk Operator".into()],
        }];
        let p = Policy::default();
        let r = p
            .online_refusal(&OnlineAccountId("a1".into()), &admins)
            .expect("refused");
        assert_eq!(r.rule, GuardRule::DirectoryRole);
        assert!(
            p.online_refusal(&OnlineAccountId("a2".into()), &admins)
                .is_none()
        );
        let allowed = Policy {
            allow_protected: vec!["IT@contoso.com".into()],
            ..Default::default()
        };
        assert!(
            allowed
                .online_refusal(&OnlineAccountId("a1".into()), &admins)
                .is_none()
        );
    }

    #[test]
    fn privileged_groups_are_known_by_sid_not_name() {
        assert_eq!(
            privileged_group("S-1-5-21-11-22-33-512").as_deref(),
            Some("Domain Admins (S-1-5-21-11-22-33-512)")
        );
        assert!(privileged_group("S-1-5-32-544").is_some());
        assert!(privileged_group("S-1-5-32-545").is_none()); // Users
        assert!(privileged_group("S-1-5-21-11-22-33-513").is_none()); // Domain Users
        assert!(privileged_group("S-1-5-21-11-22-33-1512").is_none());
    }
}
