//! The gate in front of Exchange Online, SharePoint Online and the tenant's domains: the
//! engine holds these ports only through it, so no operation writes to them while the
//! integration is disabled (or before it is integrated). Reads pass through. The rules
//! about *accounts* live in [`super::guard`]; these services write no account.

use std::sync::Arc;

use async_trait::async_trait;

use super::guard::Gate;
use crate::error::Result;
use crate::model::{
    AccessLevel, AccessRule, DeviceAccessState, DevicePolicy, DistributionGroup,
    DistributionGroupUpdate, DnsRecord, Domain, DomainService, Library, MobileDevice,
    NewAccessRule, NewDistributionGroup, NewLibrary, RevokeOutcome, SiteGroup, SiteRole, TeamSite,
    WipeKind, WipeStatus,
};
use crate::ports::{Domains, Exchange, SharePoint};

/// Exchange Online behind the gate.
pub(crate) struct GuardedExchange {
    pub(crate) inner: Arc<dyn Exchange>,
    pub(crate) gate: Arc<Gate>,
}

/// SharePoint Online behind the gate.
pub(crate) struct GuardedSharePoint {
    pub(crate) inner: Arc<dyn SharePoint>,
    pub(crate) gate: Arc<Gate>,
}

/// The tenant's domains behind the gate.
pub(crate) struct GuardedDomains {
    pub(crate) inner: Arc<dyn Domains>,
    pub(crate) gate: Arc<Gate>,
}

#[async_trait]
impl Exchange for GuardedExchange {
    async fn distribution_groups(&self) -> Result<Vec<DistributionGroup>> {
        self.inner.distribution_groups().await
    }

    async fn create_distribution_group(
        &self,
        group: &NewDistributionGroup,
    ) -> Result<DistributionGroup> {
        self.gate.require_enabled()?;
        self.inner.create_distribution_group(group).await
    }

    async fn add_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.add_members(group, members).await
    }

    async fn remove_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.remove_members(group, members).await
    }

    async fn replace_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.replace_members(group, members).await
    }

    async fn update_distribution_group(
        &self,
        group: &str,
        update: &DistributionGroupUpdate,
    ) -> Result<DistributionGroup> {
        self.gate.require_enabled()?;
        self.inner.update_distribution_group(group, update).await
    }

    async fn delete_distribution_group(&self, group: &str) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.delete_distribution_group(group).await
    }

    async fn device_policy(&self) -> Result<DevicePolicy> {
        self.inner.device_policy().await
    }

    async fn set_device_policy(&self, policy: &DevicePolicy) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.set_device_policy(policy).await
    }

    async fn default_access_level(&self) -> Result<AccessLevel> {
        self.inner.default_access_level().await
    }

    async fn set_default_access_level(&self, level: AccessLevel) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.set_default_access_level(level).await
    }

    async fn access_rules(&self) -> Result<Vec<AccessRule>> {
        self.inner.access_rules().await
    }

    async fn add_access_rule(&self, rule: &NewAccessRule) -> Result<AccessRule> {
        self.gate.require_enabled()?;
        self.inner.add_access_rule(rule).await
    }

    async fn remove_access_rule(&self, id: &str) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.remove_access_rule(id).await
    }

    async fn devices(&self, user_principal_name: &str) -> Result<Vec<MobileDevice>> {
        self.inner.devices(user_principal_name).await
    }

    async fn set_device_access(&self, device_id: &str, allow: bool) -> Result<DeviceAccessState> {
        self.gate.require_enabled()?;
        self.inner.set_device_access(device_id, allow).await
    }

    async fn wipe_device(
        &self,
        device_id: &str,
        kind: WipeKind,
        confirm: &str,
    ) -> Result<WipeStatus> {
        self.gate.require_enabled()?;
        self.inner.wipe_device(device_id, kind, confirm).await
    }

    async fn cancel_wipe(&self, device_id: &str) -> Result<WipeStatus> {
        self.gate.require_enabled()?;
        self.inner.cancel_wipe(device_id).await
    }

    async fn wipe_status(&self, device_id: &str) -> Result<WipeStatus> {
        self.inner.wipe_status(device_id).await
    }
}

#[async_trait]
impl SharePoint for GuardedSharePoint {
    async fn team_site(&self) -> Result<TeamSite> {
        self.inner.team_site().await
    }

    async fn libraries(&self) -> Result<Vec<Library>> {
        self.inner.libraries().await
    }

    async fn create_library(&self, library: &NewLibrary) -> Result<Library> {
        self.gate.require_enabled()?;
        self.inner.create_library(library).await
    }

    async fn delete_library(&self, id: &str) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.delete_library(id).await
    }

    async fn site_groups(&self) -> Result<Vec<SiteGroup>> {
        self.inner.site_groups().await
    }

    async fn grant(&self, user_principal_name: &str, role: SiteRole) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.grant(user_principal_name, role).await
    }

    async fn revoke(&self, user_principal_name: &str, role: SiteRole) -> Result<RevokeOutcome> {
        self.gate.require_enabled()?;
        self.inner.revoke(user_principal_name, role).await
    }
}

#[async_trait]
impl Domains for GuardedDomains {
    async fn add_domain(&self, name: &str) -> Result<Domain> {
        self.gate.require_enabled()?;
        self.inner.add_domain(name).await
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        self.inner.domains().await
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        self.inner.domain(name).await
    }

    async fn verification_records(&self, name: &str) -> Result<Vec<DnsRecord>> {
        self.inner.verification_records(name).await
    }

    async fn verify(&self, name: &str) -> Result<Domain> {
        self.gate.require_enabled()?;
        self.inner.verify(name).await
    }

    async fn service_records(&self, name: &str) -> Result<Vec<DnsRecord>> {
        self.inner.service_records(name).await
    }

    async fn set_supported_services(&self, name: &str, services: &[DomainService]) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.set_supported_services(name, services).await
    }

    async fn remove_domain(&self, name: &str) -> Result<()> {
        self.gate.require_enabled()?;
        self.inner.remove_domain(name).await
    }
}
