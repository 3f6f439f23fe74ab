//! Local users, online accounts, and the link between them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};

/// An Active Directory `objectGUID` (or `mS-DS-ConsistencyGuid`), in its usual string form.
///
/// AD stores GUIDs as 16 bytes with the first three fields little-endian; the text form
/// (`{xxxxxxxx-...}` without braces here) and [`ObjectGuid::to_ad_bytes`] follow AD.
#[derive(
    schemars::JsonSchema,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct ObjectGuid(pub Uuid);

impl ObjectGuid {
    /// From the 16 bytes of an LDAP `objectGUID` attribute.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`](crate::ErrorCode::InvalidInput) when not 16 bytes.
    pub fn from_ad_bytes(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| {
            Error::invalid_input(format!(
                "a GUID is 16 bytes long, this value has {}",
                bytes.len()
            ))
        })?;
        Ok(ObjectGuid(Uuid::from_bytes_le(arr)))
    }

    /// The 16 bytes as AD stores them.
    pub fn to_ad_bytes(&self) -> [u8; 16] {
        self.0.to_bytes_le()
    }

    /// A fresh random GUID (for the memory directory and tests).
    pub fn random() -> Self {
        ObjectGuid(Uuid::new_v4())
    }

    /// The [`Anchor`] Entra Connect would compute from this GUID.
    pub fn anchor(&self) -> Anchor {
        Anchor(BASE64.encode(self.to_ad_bytes()))
    }
}

impl fmt::Display for ObjectGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl std::str::FromStr for ObjectGuid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().trim_start_matches('{').trim_end_matches('}');
        Uuid::parse_str(t)
            .map(ObjectGuid)
            .map_err(|_| Error::invalid_input(format!("`{s}` is not a GUID")))
    }
}

/// A local user named the way the caller knows it: its object GUID, its sAMAccountName or
/// its user principal name (any case). Resolved against the directory when used; a name
/// that matches no user or several is [`ErrorCode::InvalidInput`](crate::ErrorCode::InvalidInput)
/// naming it.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LocalUserRef(pub String);

impl<'de> Deserialize<'de> for LocalUserRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "an empty name names no local user: give its object GUID, sAMAccountName or user principal name",
            ));
        }
        Ok(LocalUserRef(s))
    }
}

impl LocalUserRef {
    /// The one user of `users` this names (see [`LocalUserIndex`] to resolve many).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`](crate::ErrorCode::InvalidInput) naming it when no
    /// user or more than one matches.
    pub fn resolve<'a>(&self, users: &'a [LocalUser]) -> Result<&'a LocalUser> {
        LocalUserIndex::new(users).resolve(self)
    }
}

/// Local users indexed by the names a [`LocalUserRef`] may use, to resolve many names in
/// one pass over the directory.
pub struct LocalUserIndex<'a> {
    by_guid: std::collections::HashMap<ObjectGuid, &'a LocalUser>,
    /// sAMAccountNames and UPNs, lower case (ASCII), to the users they name.
    by_name: std::collections::HashMap<String, Vec<&'a LocalUser>>,
}

impl<'a> LocalUserIndex<'a> {
    /// The index of `users`.
    pub fn new(users: &'a [LocalUser]) -> Self {
        let mut by_guid = std::collections::HashMap::with_capacity(users.len());
        let mut by_name: std::collections::HashMap<String, Vec<&'a LocalUser>> =
            std::collections::HashMap::with_capacity(users.len() * 2);
        for u in users {
            by_guid.insert(u.guid, u);
            let names = std::iter::once(u.sam_account_name.as_str())
                .chain(u.user_principal_name.as_deref());
            for n in names {
                let list = by_name.entry(n.to_ascii_lowercase()).or_default();
                if !list.iter().any(|o| o.guid == u.guid) {
                    list.push(u);
                }
            }
        }
        LocalUserIndex { by_guid, by_name }
    }

    /// The one user `name` names: by object GUID, else by sAMAccountName or UPN (any
    /// case).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`](crate::ErrorCode::InvalidInput) naming it when no
    /// user or more than one matches.
    pub fn resolve(&self, name: &LocalUserRef) -> Result<&'a LocalUser> {
        let t = name.0.trim();
        if let Some(u) = t
            .parse::<ObjectGuid>()
            .ok()
            .and_then(|g| self.by_guid.get(&g))
        {
            return Ok(u);
        }
        match self.by_name.get(&t.to_ascii_lowercase()).map(Vec::as_slice) {
            Some([u]) => Ok(u),
            Some([a, b, ..]) => Err(Error::invalid_input(format!(
                "`{}` names more than one local user ({} and {}): name the user by its object GUID",
                name.0, a.guid, b.guid
            ))),
            _ => Err(Error::invalid_input(format!(
                "no local user is `{}`: name users by their object GUID, sAMAccountName or user principal name",
                name.0
            ))),
        }
    }
}

impl From<ObjectGuid> for LocalUserRef {
    fn from(g: ObjectGuid) -> Self {
        LocalUserRef(g.to_string())
    }
}

impl From<&str> for LocalUserRef {
    fn from(s: &str) -> Self {
        LocalUserRef(s.to_owned())
    }
}

impl fmt::Display for LocalUserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The source anchor: `onPremisesImmutableId` = base64 of the consistency GUID (or
/// objectGUID) bytes — the same value Entra Connect writes, so a later move to Connect
/// hard-matches instead of duplicating.
#[derive(
    schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Anchor(pub String);

impl Anchor {
    /// The anchor as sent to Graph.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The GUID this anchor encodes, when it is a base64 16-byte value.
    pub fn guid(&self) -> Option<ObjectGuid> {
        let bytes = BASE64.decode(self.0.as_bytes()).ok()?;
        ObjectGuid::from_ad_bytes(&bytes).ok()
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bits of `userAccountControl` the engine cares about.
pub mod uac {
    /// The account is disabled.
    pub const ACCOUNTDISABLE: u32 = 0x0002;
    /// A normal user account.
    pub const NORMAL_ACCOUNT: u32 = 0x0200;
    /// An interdomain trust account.
    pub const INTERDOMAIN_TRUST_ACCOUNT: u32 = 0x0800;
    /// A computer account of a workstation or member server.
    pub const WORKSTATION_TRUST_ACCOUNT: u32 = 0x1000;
    /// A domain controller's computer account.
    pub const SERVER_TRUST_ACCOUNT: u32 = 0x2000;
    /// The password never expires.
    pub const DONT_EXPIRE_PASSWORD: u32 = 0x10000;
}

/// A user of the on-premises directory.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUser {
    /// `objectGUID`: never changes, survives renames and moves.
    pub guid: ObjectGuid,
    /// `mS-DS-ConsistencyGuid`, when set (preferred over `guid` for the anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_guid: Option<ObjectGuid>,
    /// The distinguished name at the time of reading.
    pub dn: String,
    /// `sAMAccountName` (pre-Windows 2000 logon name).
    pub sam_account_name: String,
    /// `userPrincipalName`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    /// `givenName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// `sn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `mail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// `proxyAddresses` (`SMTP:` primary, `smtp:` secondary).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_addresses: Vec<String>,
    /// `userAccountControl`.
    pub user_account_control: u32,
    /// DNs of the groups the user is a direct member of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
    /// `whenChanged`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<crate::json::Rfc3339>")]
    pub when_changed: Option<OffsetDateTime>,
    /// `uSNChanged`: grows with every change of the object on its DC.
    #[serde(default)]
    pub usn_changed: u64,
    /// `isCriticalSystemObject`.
    #[serde(default)]
    pub critical_system_object: bool,
    /// `accountExpires`, when the account has an end date (`None` = never expires).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<crate::json::Rfc3339>")]
    pub account_expires: Option<OffsetDateTime>,
    /// What the directory says about the account's privileges and scope, read with it;
    /// [`crate::engine::guard`] decides from it who is protected.
    #[serde(default)]
    pub standing: LocalStanding,
}

/// What the directory says about a local user's privileges and scope. The engine's gate
/// ([`crate::engine::guard`]) turns it into a decision; backends only report it.
#[derive(schemars::JsonSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalStanding {
    /// The relative identifier (the last part of `objectSid`); below 1000 for the
    /// accounts the domain made itself (Administrator 500, Guest 501, krbtgt 502).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<u32>,
    /// `adminCount = 1`: the account is or was in a protected group (AdminSDHolder).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_count: bool,
    /// The privileged well-known groups the user is in, nested and primary group
    /// included, as `name (SID)` — Domain Admins, Administrators, Backup Operators ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileged_groups: Vec<String>,
    /// Outside the configured bases or not matching the configured user filter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub out_of_scope: bool,
}

impl LocalUser {
    /// Whether the account is enabled (UAC disable bit clear). An enabled account can
    /// still have expired: see [`LocalUser::active_at`].
    pub fn enabled(&self) -> bool {
        self.user_account_control & uac::ACCOUNTDISABLE == 0
    }

    /// Whether the account can sign in at `now`: enabled and not expired. An expired
    /// account is treated like a disabled one online (sign-in blocked).
    pub fn active_at(&self, now: OffsetDateTime) -> bool {
        self.enabled() && self.account_expires.is_none_or(|t| t > now)
    }

    /// Whether the account had expired at `now` (`accountExpires` in the past).
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.account_expires.is_some_and(|t| t <= now)
    }

    /// The anchor: consistency GUID if set, else objectGUID.
    pub fn anchor(&self) -> Anchor {
        self.consistency_guid.unwrap_or(self.guid).anchor()
    }

    /// A name for people: display name, else given + surname, else sAMAccountName.
    pub fn friendly_name(&self) -> String {
        if let Some(d) = self
            .display_name
            .as_deref()
            .filter(|d| !d.trim().is_empty())
        {
            return d.to_string();
        }
        let parts: Vec<&str> = [self.given_name.as_deref(), self.surname.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect();
        if parts.is_empty() {
            self.sam_account_name.clone()
        } else {
            parts.join(" ")
        }
    }

    /// The primary SMTP address (`SMTP:` proxy address, else `mail`).
    pub fn primary_smtp(&self) -> Option<String> {
        self.proxy_addresses
            .iter()
            .find_map(|p| p.strip_prefix("SMTP:").map(str::to_string))
            .or_else(|| self.mail.clone())
    }

    /// Why this account must never be synced, or `None` when it may be.
    ///
    /// Built-in and system accounts (Administrator, Guest, krbtgt, computer and trust
    /// accounts, critical system objects) are excluded whatever the filter says.
    pub fn exclusion_reason(&self) -> Option<ExclusionReason> {
        let sam = self.sam_account_name.to_ascii_lowercase();
        if sam.ends_with('$')
            || self.user_account_control
                & (uac::WORKSTATION_TRUST_ACCOUNT
                    | uac::SERVER_TRUST_ACCOUNT
                    | uac::INTERDOMAIN_TRUST_ACCOUNT)
                != 0
        {
            return Some(ExclusionReason::ComputerOrTrust);
        }
        match sam.as_str() {
            "administrator" | "guest" | "krbtgt" | "defaultaccount" | "wdagutilityaccount" => {
                Some(ExclusionReason::BuiltIn)
            }
            _ if sam.starts_with("krbtgt_") => Some(ExclusionReason::BuiltIn),
            _ if self.critical_system_object => Some(ExclusionReason::CriticalSystemObject),
            _ => None,
        }
    }

    /// Whether the account may be offered for syncing.
    pub fn is_syncable(&self) -> bool {
        self.exclusion_reason().is_none()
    }
}

/// Why an account is never synced whatever the filter says (see
/// [`LocalUser::exclusion_reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExclusionReason {
    /// A computer or trust account (`$` at the end of its name, or a trust flag).
    ComputerOrTrust,
    /// A built-in account (Administrator, Guest, krbtgt, DefaultAccount...).
    BuiltIn,
    /// Marked `isCriticalSystemObject`.
    CriticalSystemObject,
}

impl ExclusionReason {
    /// The reason in words, as refusals and warnings say it.
    pub fn message(self) -> &'static str {
        match self {
            ExclusionReason::ComputerOrTrust => "the account is a computer or trust account",
            ExclusionReason::BuiltIn => "the account is a built-in account",
            ExclusionReason::CriticalSystemObject => "the account is a critical system object",
        }
    }
}

impl std::fmt::Display for ExclusionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// What is needed to create a local user.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewLocalUser {
    /// `sAMAccountName` (at most 20 characters).
    pub sam_account_name: String,
    /// `userPrincipalName`.
    pub user_principal_name: String,
    /// `givenName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// `sn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// `displayName` (also the `cn`).
    pub display_name: String,
    /// `mail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// The OU (DN) to create the user in; the backend's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou: Option<String>,
}

/// A local group and its direct members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalGroup {
    /// `objectGUID`.
    pub guid: ObjectGuid,
    /// Distinguished name.
    pub dn: String,
    /// `sAMAccountName`.
    pub sam_account_name: String,
    /// `displayName` or `cn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `mail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
}

/// The id Graph assigns to an online account (`id`, a GUID string).
#[derive(
    schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct OnlineAccountId(pub String);

impl fmt::Display for OnlineAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Microsoft 365 (Entra ID) user.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineAccount {
    /// Graph `id`.
    pub id: OnlineAccountId,
    /// `userPrincipalName`.
    pub user_principal_name: String,
    /// `displayName`.
    pub display_name: String,
    /// `givenName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// `surname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// `mail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// `mailNickname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_nickname: Option<String>,
    /// `proxyAddresses`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_addresses: Vec<String>,
    /// `accountEnabled`.
    pub account_enabled: bool,
    /// `usageLocation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
    /// `onPremisesImmutableId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_id: Option<Anchor>,
    /// SKU ids of the assigned licences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assigned_skus: Vec<Uuid>,
}

/// What is needed to create an online account. The password travels separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewOnlineAccount {
    /// `userPrincipalName` on a verified domain.
    pub user_principal_name: String,
    /// `displayName`.
    pub display_name: String,
    /// `mailNickname`.
    pub mail_nickname: String,
    /// `givenName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// `surname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// `usageLocation` (needed before a licence can be assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
    /// `onPremisesImmutableId` — the anchor; also how a lost create is found again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_id: Option<Anchor>,
    /// `accountEnabled`.
    pub account_enabled: bool,
}

/// A partial update of an online account; `None` leaves a property as it is.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AccountUpdate {
    /// New `userPrincipalName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    /// New `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// New `givenName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// New `surname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// New `mailNickname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_nickname: Option<String>,
    /// New `usageLocation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
    /// New `onPremisesImmutableId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_id: Option<Anchor>,
}

impl AccountUpdate {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == AccountUpdate::default()
    }
}

/// The state of a link between a local user and an online account.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Linked and propagating.
    Active,
    /// Unassigned: licence released, sign-in blocked, mapping kept.
    Unassigned,
    /// The local user was deleted; the online account was deleted (soft) or is pending.
    Deleted,
    /// The local user became protected (privileged, excluded) or left the configured
    /// scope: sign-in is blocked and nothing propagates; the link becomes active again
    /// when the user may be synced again.
    Suspended,
}

/// How a link was established.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOrigin {
    /// The online account was created by o365-essentials for the local user.
    Created,
    /// Matched on the anchor (`onPremisesImmutableId`).
    HardMatch,
    /// Matched on UPN or primary SMTP, on request.
    SoftMatch,
    /// The administrator assigned the online account to the user by hand.
    Manual,
    /// The local user was created from the online account (import).
    Imported,
}

/// The link between a local user and an online account.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The local user's `objectGUID`.
    pub local_guid: ObjectGuid,
    /// The online account's Graph id.
    pub online_id: OnlineAccountId,
    /// The anchor written to `onPremisesImmutableId`.
    pub anchor: Anchor,
    /// The online account's UPN when last seen.
    pub user_principal_name: String,
    /// Active, unassigned or deleted.
    pub state: LinkState,
    /// How the link came to be.
    pub origin: LinkOrigin,
    /// When the link was made.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::json::Rfc3339")]
    pub linked_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_named_by_guid_sam_account_name_or_upn_and_only_unambiguously() {
        let mut ava = user("ava.adams", uac::NORMAL_ACCOUNT);
        ava.user_principal_name = Some("Ava.Adams@contoso.com".into());
        let mut ben = user("ben", uac::NORMAL_ACCOUNT);
        ben.user_principal_name = Some("ben@contoso.com".into());
        // A second user whose UPN is another's sAMAccountName-like name, differently
        // cased: a name both could mean is refused, not guessed.
        let mut twin = user("ben2", uac::NORMAL_ACCOUNT);
        twin.user_principal_name = Some("BEN".into());
        let users = vec![ava.clone(), ben.clone(), twin];
        let index = LocalUserIndex::new(&users);
        let found = |n: &str| index.resolve(&LocalUserRef::from(n)).map(|u| u.guid);
        assert_eq!(found("AVA.ADAMS").ok(), Some(ava.guid));
        assert_eq!(found("ava.adams@CONTOSO.com").ok(), Some(ava.guid));
        assert_eq!(found(&format!("{{{}}}", ava.guid)).ok(), Some(ava.guid));
        assert_eq!(found(" ben@contoso.com ").ok(), Some(ben.guid));
        let e = found("nobody").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidInput);
        assert!(e.message().contains("`nobody`"), "{e}");
        let e = found("ben").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidInput);
        assert!(e.message().contains("more than one"), "{e}");
        assert!(found(&ObjectGuid::random().to_string()).is_err());
    }

    fn user(sam: &str, uac_bits: u32) -> LocalUser {
        LocalUser {
            guid: ObjectGuid::random(),
            consistency_guid: None,
            dn: format!("CN={sam},CN=Users,DC=essentials,DC=test"),
            sam_account_name: sam.into(),
            user_principal_name: None,
            given_name: None,
            surname: None,
            display_name: None,
            mail: None,
            proxy_addresses: vec![],
            user_account_control: uac_bits,
            member_of: vec![],
            when_changed: None,
            usn_changed: 0,
            critical_system_object: false,
            account_expires: None,
            standing: LocalStanding::default(),
        }
    }

    #[test]
    fn anchor_is_base64_of_ad_byte_order_and_round_trips() {
        // objectGUID bytes as LDAP returns them for {01020304-0506-0708-090a-0b0c0d0e0f10}.
        let raw = [4u8, 3, 2, 1, 6, 5, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16];
        let g = ObjectGuid::from_ad_bytes(&raw).expect("16 bytes");
        assert_eq!(g.to_string(), "01020304-0506-0708-090a-0b0c0d0e0f10");
        assert_eq!(g.anchor().as_str(), "BAMCAQYFCAcJCgsMDQ4PEA==");
        assert_eq!(g.anchor().guid(), Some(g));
        assert!(!g.anchor().as_str().contains('$') && !g.anchor().as_str().contains('_'));
        assert!(ObjectGuid::from_ad_bytes(&raw[..15]).is_err());
        assert_eq!(
            "{01020304-0506-0708-090A-0B0C0D0E0F10}"
                .parse::<ObjectGuid>()
                .expect("braced GUID"),
            g
        );
    }

    #[test]
    fn consistency_guid_wins_for_the_anchor() {
        let mut u = user("jdoe", uac::NORMAL_ACCOUNT);
        let cg = ObjectGuid::random();
        assert_eq!(u.anchor(), u.guid.anchor());
        u.consistency_guid = Some(cg);
        assert_eq!(u.anchor(), cg.anchor());
    }

    #[test]
    fn system_accounts_are_never_syncable() {
        for sam in ["Administrator", "Guest", "krbtgt", "krbtgt_12345"] {
            assert!(!user(sam, uac::NORMAL_ACCOUNT).is_syncable(), "{sam}");
        }
        assert!(!user("DC1$", uac::SERVER_TRUST_ACCOUNT).is_syncable());
        assert!(!user("PC1", uac::WORKSTATION_TRUST_ACCOUNT).is_syncable());
        let mut crit = user("svc", uac::NORMAL_ACCOUNT);
        crit.critical_system_object = true;
        assert!(!crit.is_syncable());
        assert!(user("jdoe", uac::NORMAL_ACCOUNT).is_syncable());
        assert!(user("jdoe", uac::NORMAL_ACCOUNT | uac::ACCOUNTDISABLE).is_syncable());
    }

    #[test]
    fn names_and_addresses() {
        let mut u = user("jdoe", uac::NORMAL_ACCOUNT | uac::ACCOUNTDISABLE);
        assert!(!u.enabled());
        assert_eq!(u.friendly_name(), "jdoe");
        u.given_name = Some("Jane".into());
        u.surname = Some("Doe".into());
        assert_eq!(u.friendly_name(), "Jane Doe");
        u.display_name = Some("Jane D.".into());
        assert_eq!(u.friendly_name(), "Jane D.");
        u.mail = Some("jane@old.test".into());
        assert_eq!(u.primary_smtp().as_deref(), Some("jane@old.test"));
        u.proxy_addresses = vec!["smtp:x@y.test".into(), "SMTP:jane@new.test".into()];
        assert_eq!(u.primary_smtp().as_deref(), Some("jane@new.test"));
    }
}
