//! The ports: one object-safe async trait per concern, used as `Arc<dyn Port>` so that the
//! bindings can choose a backend at run time.
//!
//! Every method documents its error codes. Backends map their own failures onto these
//! codes in one place, and share conformance tests so that, for example, the memory and
//! LDAP directories answer a missing user with the same [`ErrorCode::NotFound`].
//!
//! [`ErrorCode::NotFound`]: crate::ErrorCode::NotFound

use async_trait::async_trait;
use futures::stream::BoxStream;
use secrecy::SecretString;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{
    AccessLevel, AccessRule, AccountUpdate, AdminRoleHolder, DeviceAccessState, DevicePolicy,
    DirectoryChanges, DirectoryCursor, DistributionGroup, DistributionGroupUpdate, DnsRecord,
    Domain, DomainService, Library, LicenceAssignment, LocalGroup, LocalUser, MobileDevice,
    NewAccessRule, NewDistributionGroup, NewLibrary, NewLocalUser, NewOnlineAccount, ObjectGuid,
    OnlineAccount, OnlineAccountId, OnlineChanges, Organization, PasswordPolicy, RevokeOutcome,
    SiteGroup, SiteRole, Sku, TeamSite, Topology, WipeKind, WipeStatus,
};

/// The on-premises directory (Active Directory over LDAP, or the memory directory).
///
/// Errors common to every method: [`Transport`](crate::ErrorCode::Transport),
/// [`Timeout`](crate::ErrorCode::Timeout), [`Tls`](crate::ErrorCode::Tls) when the
/// server cannot be reached; [`Auth`](crate::ErrorCode::Auth) when the service account's
/// bind fails.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Every syncable user under the configured bases, streamed (never collected whole).
    /// Built-in and system accounts are left out (see [`LocalUser::is_syncable`]).
    ///
    /// # Errors
    /// Items carry the common errors; [`PermissionDenied`](crate::ErrorCode::PermissionDenied)
    /// when the account may not read the base.
    fn users(&self) -> BoxStream<'_, Result<LocalUser>>;

    /// One user by `objectGUID`, syncable or not.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) when no user has this GUID.
    async fn user(&self, guid: ObjectGuid) -> Result<LocalUser>;

    /// One user by `sAMAccountName` or `userPrincipalName` (case-insensitive), if any.
    ///
    /// # Errors
    /// Only the common errors; absence is `Ok(None)`.
    async fn find_user(&self, name: &str) -> Result<Option<LocalUser>>;

    /// Every group under the configured bases, streamed.
    ///
    /// # Errors
    /// As [`Directory::users`].
    fn groups(&self) -> BoxStream<'_, Result<LocalGroup>>;

    /// The `objectGUID`s of a group's direct members that are users.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) when the group does not exist.
    async fn group_members(&self, group: ObjectGuid) -> Result<Vec<ObjectGuid>>;

    /// Changes since `cursor` (`None`: from the beginning, reported as a full resync).
    /// Deleted users come out as tombstones with their GUID. A cursor the directory no
    /// longer accepts yields a full resync with `full_resync` set, never an error.
    ///
    /// # Errors
    /// The common errors only.
    async fn changes_since(&self, cursor: Option<&DirectoryCursor>) -> Result<DirectoryChanges>;

    /// Creates an enabled user with an initial password.
    ///
    /// # Errors
    /// [`AlreadyExists`](crate::ErrorCode::AlreadyExists) naming the clashing attribute
    /// (`sAMAccountName` or `userPrincipalName`);
    /// [`PasswordPolicy`](crate::ErrorCode::PasswordPolicy) when the domain rejects the
    /// password (the user is then not left behind);
    /// [`InvalidInput`](crate::ErrorCode::InvalidInput) for malformed names;
    /// [`PermissionDenied`](crate::ErrorCode::PermissionDenied).
    async fn create_user(&self, user: &NewLocalUser, password: &SecretString) -> Result<LocalUser>;

    /// Enables or disables a user (the UAC disable bit). Idempotent.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`PermissionDenied`](crate::ErrorCode::PermissionDenied).
    async fn set_enabled(&self, guid: ObjectGuid, enabled: bool) -> Result<()>;

    /// Deletes a user.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`PermissionDenied`](crate::ErrorCode::PermissionDenied).
    async fn delete_user(&self, guid: ObjectGuid) -> Result<()>;

    /// Sets a user's password (administrative reset).
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`PasswordPolicy`](crate::ErrorCode::PasswordPolicy);
    /// [`PermissionDenied`](crate::ErrorCode::PermissionDenied);
    /// [`NotSupported`](crate::ErrorCode::NotSupported) over a connection without TLS.
    async fn set_password(&self, guid: ObjectGuid, password: &SecretString) -> Result<()>;

    /// The user whose anchor source is `guid`: its `mS-DS-ConsistencyGuid` when set,
    /// else its `objectGUID`.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) when no user has it.
    async fn user_by_anchor(&self, guid: ObjectGuid) -> Result<LocalUser> {
        self.user(guid).await
    }

    /// Writes `mS-DS-ConsistencyGuid` (the anchor source).
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`PermissionDenied`](crate::ErrorCode::PermissionDenied).
    async fn set_consistency_guid(&self, guid: ObjectGuid, value: ObjectGuid) -> Result<()>;

    /// The domain's password policy.
    ///
    /// # Errors
    /// The common errors only.
    async fn password_policy(&self) -> Result<PasswordPolicy>;

    /// Domain controllers and where we run.
    ///
    /// # Errors
    /// The common errors only.
    async fn topology(&self) -> Result<Topology>;
}

/// The Microsoft 365 tenant's directory: online accounts, licences, organization.
///
/// Errors common to every method: [`Auth`](crate::ErrorCode::Auth) (token refused),
/// [`PermissionDenied`](crate::ErrorCode::PermissionDenied) (missing permission or role,
/// named), [`Throttled`](crate::ErrorCode::Throttled) (retries exhausted, with the
/// retry-after), [`ServiceUnavailable`](crate::ErrorCode::ServiceUnavailable),
/// [`Transport`](crate::ErrorCode::Transport), [`Timeout`](crate::ErrorCode::Timeout),
/// [`UnexpectedResponse`](crate::ErrorCode::UnexpectedResponse).
#[async_trait]
pub trait Tenant: Send + Sync {
    /// Every online account, streamed page by page.
    ///
    /// # Errors
    /// The common errors, as stream items.
    fn accounts(&self) -> BoxStream<'_, Result<OnlineAccount>>;

    /// One account by id or UPN.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn account(&self, id_or_upn: &str) -> Result<OnlineAccount>;

    /// The account whose `onPremisesImmutableId` is `anchor`, if any.
    ///
    /// # Errors
    /// The common errors only.
    async fn find_by_anchor(&self, anchor: &crate::model::Anchor) -> Result<Option<OnlineAccount>>;

    /// Creates an account. Never duplicated: a create whose response was lost is found by
    /// its anchor (or UPN) before any retry.
    ///
    /// # Errors
    /// [`AlreadyExists`](crate::ErrorCode::AlreadyExists) naming the property;
    /// [`PasswordPolicy`](crate::ErrorCode::PasswordPolicy);
    /// [`InvalidUpn`](crate::ErrorCode::InvalidUpn);
    /// [`DomainNotVerified`](crate::ErrorCode::DomainNotVerified).
    async fn create_account(
        &self,
        account: &NewOnlineAccount,
        password: &SecretString,
    ) -> Result<OnlineAccount>;

    /// Updates properties.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`AlreadyExists`](crate::ErrorCode::AlreadyExists)
    /// for a taken UPN; [`InvalidUsageLocation`](crate::ErrorCode::InvalidUsageLocation).
    async fn update_account(&self, id: &OnlineAccountId, update: &AccountUpdate) -> Result<()>;

    /// Sets the password, without forcing a change at next sign-in.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`PasswordPolicy`](crate::ErrorCode::PasswordPolicy);
    /// [`PermissionDenied`](crate::ErrorCode::PermissionDenied) naming the role needed.
    async fn set_password(&self, id: &OnlineAccountId, password: &SecretString) -> Result<()>;

    /// Allows sign-in (`enabled`), or blocks it and revokes every session.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn set_enabled(&self, id: &OnlineAccountId, enabled: bool) -> Result<()>;

    /// Deletes the account (soft: restorable for 30 days).
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn delete_account(&self, id: &OnlineAccountId) -> Result<()>;

    /// Restores a soft-deleted account.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) when not in deleted items;
    /// [`AlreadyExists`](crate::ErrorCode::AlreadyExists) when its UPN was reused.
    async fn restore_account(&self, id: &OnlineAccountId) -> Result<OnlineAccount>;

    /// The subscribed SKUs with their seat counts.
    ///
    /// # Errors
    /// The common errors only.
    async fn skus(&self) -> Result<Vec<Sku>>;

    /// Assigns and removes licences in one call.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`LicenceUnavailable`](crate::ErrorCode::LicenceUnavailable)
    /// when no seat is free; [`InvalidUsageLocation`](crate::ErrorCode::InvalidUsageLocation)
    /// when the account has none.
    async fn assign_licences(
        &self,
        id: &OnlineAccountId,
        add: &[LicenceAssignment],
        remove: &[Uuid],
    ) -> Result<()>;

    /// The organization, with its verified domains.
    ///
    /// # Errors
    /// The common errors only.
    async fn organization(&self) -> Result<Organization>;

    /// Accounts holding an administrator role (protected from soft matching).
    ///
    /// # Errors
    /// The common errors only.
    async fn admin_role_holders(&self) -> Result<Vec<AdminRoleHolder>>;

    /// Account changes since `delta_link` (`None`: start, a full listing).
    ///
    /// # Errors
    /// The common errors; an expired link is a full resync, not an error.
    async fn changes(&self, delta_link: Option<&str>) -> Result<OnlineChanges>;

    /// A delta link from now on, without listing what is there (Graph's
    /// `$deltatoken=latest`): where a sync that read everything itself starts watching.
    ///
    /// # Errors
    /// The common errors.
    async fn changes_from_now(&self) -> Result<String> {
        Ok(self.changes(None).await?.delta_link)
    }
}

/// The tenant's domains.
///
/// Errors common to every method: as [`Tenant`].
#[async_trait]
pub trait Domains: Send + Sync {
    /// Adds an unverified domain.
    ///
    /// # Errors
    /// [`InvalidDomainName`](crate::ErrorCode::InvalidDomainName);
    /// [`AlreadyExists`](crate::ErrorCode::AlreadyExists).
    async fn add_domain(&self, name: &str) -> Result<Domain>;

    /// Every domain of the tenant.
    ///
    /// # Errors
    /// The common errors only.
    async fn domains(&self) -> Result<Vec<Domain>>;

    /// One domain.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn domain(&self, name: &str) -> Result<Domain>;

    /// The records that prove ownership (TXT `MS=ms...`, MX).
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn verification_records(&self, name: &str) -> Result<Vec<DnsRecord>>;

    /// Asks the tenant to verify the domain.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound);
    /// [`DnsRecordMismatch`](crate::ErrorCode::DnsRecordMismatch) when the tenant found no
    /// verification record.
    async fn verify(&self, name: &str) -> Result<Domain>;

    /// The records each supported service needs.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`DomainNotVerified`](crate::ErrorCode::DomainNotVerified).
    async fn service_records(&self, name: &str) -> Result<Vec<DnsRecord>>;

    /// Sets the services the domain is used for.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`DomainNotVerified`](crate::ErrorCode::DomainNotVerified).
    async fn set_supported_services(&self, name: &str, services: &[DomainService]) -> Result<()>;

    /// Removes the domain.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`Conflict`](crate::ErrorCode::Conflict)
    /// when accounts still use it.
    async fn remove_domain(&self, name: &str) -> Result<()>;
}

/// Exchange Online: distribution groups and mobile devices.
///
/// Errors common to every method: as [`Tenant`].
#[async_trait]
pub trait Exchange: Send + Sync {
    /// Every distribution group.
    ///
    /// # Errors
    /// The common errors only.
    async fn distribution_groups(&self) -> Result<Vec<DistributionGroup>>;

    /// Creates a distribution group.
    ///
    /// # Errors
    /// [`InvalidInput`](crate::ErrorCode::InvalidInput) (name over 64 characters, bad alias);
    /// [`AlreadyExists`](crate::ErrorCode::AlreadyExists);
    /// [`DomainNotVerified`](crate::ErrorCode::DomainNotVerified);
    /// [`NotFound`](crate::ErrorCode::NotFound) naming members that do not exist.
    async fn create_distribution_group(
        &self,
        group: &NewDistributionGroup,
    ) -> Result<DistributionGroup>;

    /// Adds members (UPNs or addresses).
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) naming the group or the missing members.
    async fn add_members(&self, group: &str, members: &[String]) -> Result<()>;

    /// Removes members.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) naming the group or the missing members.
    async fn remove_members(&self, group: &str, members: &[String]) -> Result<()>;

    /// Replaces the member list.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) naming the group or the missing members.
    async fn replace_members(&self, group: &str, members: &[String]) -> Result<()>;

    /// Changes a distribution group's display name or whether people outside the
    /// organisation may send to it; fields left `None` stay as they are.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`InvalidInput`](crate::ErrorCode::InvalidInput)
    /// for an empty change or a bad display name.
    async fn update_distribution_group(
        &self,
        group: &str,
        update: &DistributionGroupUpdate,
    ) -> Result<DistributionGroup>;

    /// Deletes a distribution group.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn delete_distribution_group(&self, group: &str) -> Result<()>;

    /// The default mobile device mailbox policy.
    ///
    /// # Errors
    /// The common errors only.
    async fn device_policy(&self) -> Result<DevicePolicy>;

    /// Sets the default policy; values are validated before any request.
    ///
    /// # Errors
    /// [`InvalidInput`](crate::ErrorCode::InvalidInput) naming the value out of range.
    async fn set_device_policy(&self, policy: &DevicePolicy) -> Result<()>;

    /// What happens to a device no access rule matches (`Allow` unless changed).
    ///
    /// # Errors
    /// The common errors only.
    async fn default_access_level(&self) -> Result<AccessLevel>;

    /// Sets what happens to a device no access rule matches — `Quarantine` holds new
    /// devices until an administrator allows them.
    ///
    /// # Errors
    /// The common errors only.
    async fn set_default_access_level(&self, level: AccessLevel) -> Result<()>;

    /// Every device access rule.
    ///
    /// # Errors
    /// The common errors only.
    async fn access_rules(&self) -> Result<Vec<AccessRule>>;

    /// Adds an access rule.
    ///
    /// # Errors
    /// [`AlreadyExists`](crate::ErrorCode::AlreadyExists) for the same characteristic and value.
    async fn add_access_rule(&self, rule: &NewAccessRule) -> Result<AccessRule>;

    /// Removes an access rule.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn remove_access_rule(&self, id: &str) -> Result<()>;

    /// A user's devices with their access and wipe state.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) when the mailbox does not exist.
    async fn devices(&self, user_principal_name: &str) -> Result<Vec<MobileDevice>>;

    /// Allows or blocks one device on its owner's mailbox, whatever the rules and the
    /// default say — how a quarantined phone is let in, or one lost phone shut out.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn set_device_access(&self, device_id: &str, allow: bool) -> Result<DeviceAccessState>;

    /// Wipes a device. `confirm` must repeat the device id, so a wipe is never sent by
    /// accident.
    ///
    /// # Errors
    /// [`InvalidInput`](crate::ErrorCode::InvalidInput) when `confirm` does not name the
    /// device; [`NotFound`](crate::ErrorCode::NotFound).
    async fn wipe_device(
        &self,
        device_id: &str,
        kind: WipeKind,
        confirm: &str,
    ) -> Result<WipeStatus>;

    /// Cancels a pending wipe.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound); [`Conflict`](crate::ErrorCode::Conflict)
    /// when the device already wiped.
    async fn cancel_wipe(&self, device_id: &str) -> Result<WipeStatus>;

    /// Where a wipe stands.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn wipe_status(&self, device_id: &str) -> Result<WipeStatus>;
}

/// SharePoint Online: the team site's libraries and permissions.
///
/// Errors common to every method: as [`Tenant`], plus
/// [`CertificateRequired`](crate::ErrorCode::CertificateRequired) for SharePoint REST
/// calls made with a client secret.
#[async_trait]
pub trait SharePoint: Send + Sync {
    /// The root team site.
    ///
    /// # Errors
    /// The common errors only.
    async fn team_site(&self) -> Result<TeamSite>;

    /// Document libraries of the team site.
    ///
    /// # Errors
    /// The common errors only.
    async fn libraries(&self) -> Result<Vec<Library>>;

    /// Creates a library and waits (bounded) until its drive exists.
    ///
    /// # Errors
    /// [`AlreadyExists`](crate::ErrorCode::AlreadyExists) for a duplicate name;
    /// [`InvalidInput`](crate::ErrorCode::InvalidInput).
    async fn create_library(&self, library: &NewLibrary) -> Result<Library>;

    /// Deletes a library.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound).
    async fn delete_library(&self, id: &str) -> Result<()>;

    /// The owners, members and visitors groups with their users.
    ///
    /// # Errors
    /// The common errors only.
    async fn site_groups(&self) -> Result<Vec<SiteGroup>>;

    /// Gives an online account a level on the team site.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) when the account does not exist.
    async fn grant(&self, user_principal_name: &str, role: SiteRole) -> Result<()>;

    /// Takes a level away; a user without it is a no-op reported as such.
    ///
    /// # Errors
    /// [`NotFound`](crate::ErrorCode::NotFound) when the account does not exist.
    async fn revoke(&self, user_principal_name: &str, role: SiteRole) -> Result<RevokeOutcome>;
}
