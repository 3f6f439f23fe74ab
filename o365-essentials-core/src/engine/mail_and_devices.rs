//! The mail and devices view: Exchange Online's distribution groups and mobile devices
//! (the mailbox policy, access rules, each user's devices, remote wipe). Each of the
//! table's rows for them is one call here; every write goes through the gate's guarded
//! Exchange port, as the root hands it out.

use std::sync::Arc;

use super::Integration;
use crate::error::Result;
use crate::model::{
    AccessLevel, AccessRule, DeviceAccessState, DevicePolicy, DistributionGroup,
    DistributionGroupUpdate, MobileDevice, NewAccessRule, NewDistributionGroup, WipeKind,
    WipeStatus,
};
use crate::ports::Exchange;

/// Exchange Online's distribution groups and mobile devices, seen from one integration
/// ([`Integration::mail_and_devices`]).
#[derive(Clone, Copy)]
pub struct MailAndDevicesView<'a> {
    i: &'a Integration,
}

impl Integration {
    /// The mail and devices view.
    pub fn mail_and_devices(&self) -> MailAndDevicesView<'_> {
        MailAndDevicesView { i: self }
    }
}

impl MailAndDevicesView<'_> {
    fn exchange(&self) -> Result<Arc<dyn Exchange>> {
        Ok(self.i.microsoft365().exchange()?.clone())
    }

    /// Distribution groups with their members.
    ///
    /// # Errors
    /// [`crate::ErrorCode::NotSupported`] when the integration has no Exchange; Exchange's errors.
    pub async fn distribution_groups(&self) -> Result<Vec<DistributionGroup>> {
        self.exchange()?.distribution_groups().await
    }

    /// Creates a distribution group.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn create_distribution_group(
        &self,
        group: &NewDistributionGroup,
    ) -> Result<DistributionGroup> {
        self.exchange()?.create_distribution_group(group).await
    }

    /// Adds members (online user names) to a distribution group.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn add_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.exchange()?.add_members(group, members).await
    }

    /// Removes members from a distribution group.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn remove_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.exchange()?.remove_members(group, members).await
    }

    /// Sets a distribution group's members to exactly these.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn replace_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.exchange()?.replace_members(group, members).await
    }

    /// Changes a group's display name or whether outside senders may write to it.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn update_distribution_group(
        &self,
        group: &str,
        update: &DistributionGroupUpdate,
    ) -> Result<DistributionGroup> {
        self.exchange()?
            .update_distribution_group(group, update)
            .await
    }

    /// Deletes a distribution group.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn delete_distribution_group(&self, group: &str) -> Result<()> {
        self.exchange()?.delete_distribution_group(group).await
    }

    /// The mobile device mailbox policy.
    ///
    /// # Errors
    /// Exchange's errors.
    pub async fn device_policy(&self) -> Result<DevicePolicy> {
        self.exchange()?.device_policy().await
    }

    /// Reads the mobile device mailbox policy, lets `change` make the new one from it
    /// and writes that (the fields `change` leaves alone keep their value).
    ///
    /// # Errors
    /// `change`'s errors (nothing is written then); the gate's refusals; Exchange's.
    pub async fn update_device_policy(
        &self,
        change: impl FnOnce(DevicePolicy) -> Result<DevicePolicy>,
    ) -> Result<()> {
        let exchange = self.exchange()?;
        let policy = change(exchange.device_policy().await?)?;
        exchange.set_device_policy(&policy).await
    }

    /// What happens to devices no rule names.
    ///
    /// # Errors
    /// Exchange's errors.
    pub async fn default_access_level(&self) -> Result<AccessLevel> {
        self.exchange()?.default_access_level().await
    }

    /// Sets what happens to devices no rule names.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn set_default_access_level(&self, level: AccessLevel) -> Result<()> {
        self.exchange()?.set_default_access_level(level).await
    }

    /// Device access rules (allow / block / quarantine a model, type, OS).
    ///
    /// # Errors
    /// Exchange's errors.
    pub async fn access_rules(&self) -> Result<Vec<AccessRule>> {
        self.exchange()?.access_rules().await
    }

    /// Adds a device access rule.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn add_access_rule(&self, rule: &NewAccessRule) -> Result<AccessRule> {
        self.exchange()?.add_access_rule(rule).await
    }

    /// Removes a device access rule.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn remove_access_rule(&self, id: &str) -> Result<()> {
        self.exchange()?.remove_access_rule(id).await
    }

    /// A user's mobile devices.
    ///
    /// # Errors
    /// [`crate::ErrorCode::InvalidInput`] when `user_principal_name` is not an online
    /// user name; Exchange's errors.
    pub async fn devices(&self, user_principal_name: &str) -> Result<Vec<MobileDevice>> {
        crate::validate::upn(user_principal_name)?;
        self.exchange()?.devices(user_principal_name).await
    }

    /// Allows or blocks one device on its mailbox.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn set_device_access(
        &self,
        device_id: &str,
        allow: bool,
    ) -> Result<DeviceAccessState> {
        self.exchange()?.set_device_access(device_id, allow).await
    }

    /// Wipes a lost device (full or account-only); `confirm` is the device id typed again.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn wipe_device(
        &self,
        device_id: &str,
        kind: WipeKind,
        confirm: &str,
    ) -> Result<WipeStatus> {
        self.exchange()?.wipe_device(device_id, kind, confirm).await
    }

    /// Cancels a pending wipe.
    ///
    /// # Errors
    /// The gate's refusals; Exchange's errors.
    pub async fn cancel_wipe(&self, device_id: &str) -> Result<WipeStatus> {
        self.exchange()?.cancel_wipe(device_id).await
    }

    /// Where a wipe stands.
    ///
    /// # Errors
    /// Exchange's errors.
    pub async fn wipe_status(&self, device_id: &str) -> Result<WipeStatus> {
        self.exchange()?.wipe_status(device_id).await
    }
}
