//! The tenant: organization, licences (subscribed SKUs), domains and service URLs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::identity::{OnlineAccount, OnlineAccountId};

/// A licence product the tenant subscribes to (Graph `subscribedSku`).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    /// `skuId` — what `assignLicense` takes.
    pub sku_id: Uuid,
    /// `skuPartNumber`, e.g. `O365_BUSINESS_PREMIUM`.
    pub sku_part_number: String,
    /// `prepaidUnits.enabled`.
    pub enabled_units: u32,
    /// `consumedUnits`.
    pub consumed_units: u32,
    /// `capabilityStatus` (`Enabled`, `Warning`, `Suspended`, ...).
    pub capability_status: String,
}

impl Sku {
    /// Seats still free to assign.
    pub fn free_units(&self) -> u32 {
        self.enabled_units.saturating_sub(self.consumed_units)
    }
}

/// A licence to assign: a SKU and the service plans to leave off.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceAssignment {
    /// `skuId`.
    pub sku_id: Uuid,
    /// `disabledPlans`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_plans: Vec<Uuid>,
}

/// The tenant's organization object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Tenant id.
    pub tenant_id: String,
    /// `displayName`.
    pub display_name: String,
    /// The initial `*.onmicrosoft.com` domain.
    pub initial_domain: String,
    /// The default domain for new accounts.
    pub default_domain: String,
    /// Every verified domain.
    pub verified_domains: Vec<String>,
    /// `countryLetterCode`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A service a domain can be used for (`supportedServices`).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DomainService {
    /// Exchange Online mail.
    Email,
    /// SharePoint.
    Sharepoint,
    /// Internal relay only.
    EmailInternalRelayOnly,
    /// Skype/Teams.
    OfficeCommunicationsOnline,
    /// SharePoint default domain.
    SharePointDefaultDomain,
    /// Full redelegation.
    FullRedelegation,
    /// Public SharePoint site.
    SharePointPublic,
    /// Sign-in (user names).
    OrgIdAuthentication,
    /// Yammer.
    Yammer,
    /// Intune device management.
    Intune,
}

impl DomainService {
    /// The Graph string.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainService::Email => "Email",
            DomainService::Sharepoint => "Sharepoint",
            DomainService::EmailInternalRelayOnly => "EmailInternalRelayOnly",
            DomainService::OfficeCommunicationsOnline => "OfficeCommunicationsOnline",
            DomainService::SharePointDefaultDomain => "SharePointDefaultDomain",
            DomainService::FullRedelegation => "FullRedelegation",
            DomainService::SharePointPublic => "SharePointPublic",
            DomainService::OrgIdAuthentication => "OrgIdAuthentication",
            DomainService::Yammer => "Yammer",
            DomainService::Intune => "Intune",
        }
    }
}

/// A domain of the tenant (Graph `domain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The domain name (`id`).
    pub name: String,
    /// `isVerified`.
    pub is_verified: bool,
    /// `isDefault`.
    pub is_default: bool,
    /// `isInitial`.
    pub is_initial: bool,
    /// `authenticationType` (`Managed` / `Federated`).
    pub authentication_type: String,
    /// `supportedServices`.
    #[serde(default)]
    pub supported_services: Vec<DomainService>,
}

/// An online account that holds an administrator directory role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRoleHolder {
    /// The account's id.
    pub id: OnlineAccountId,
    /// The account's UPN.
    pub user_principal_name: String,
    /// Display names of the roles held (`Global Administrator`, ...).
    pub roles: Vec<String>,
}

/// A change of an online account reported by Graph delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OnlineChange {
    /// Created or changed; the properties as now.
    Changed {
        /// The account now.
        account: Box<OnlineAccount>,
    },
    /// Removed: soft-deleted (`deleted`) or otherwise gone (`changed`).
    Removed {
        /// The account's id.
        id: OnlineAccountId,
        /// `@removed.reason`.
        reason: String,
    },
}

/// One round of Graph delta: the changes and the link to ask for the next round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineChanges {
    /// Changes since the previous delta link.
    pub changes: Vec<OnlineChange>,
    /// The `@odata.deltaLink` to persist for next time.
    pub delta_link: String,
    /// Whether the previous link had expired and this is a full resync.
    pub full_resync: bool,
}

/// The tenant's service URLs for the dashboard's launchpad.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launchpad {
    /// The Microsoft 365 portal.
    pub portal: String,
    /// Outlook on the web.
    pub mail: String,
    /// The Microsoft 365 admin centre.
    pub admin_centre: String,
    /// The root team site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_site: Option<String>,
}
