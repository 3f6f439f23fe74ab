//! Exchange Online through its admin API (`InvokeCommand`): distribution groups, the
//! mobile device mailbox policy, ActiveSync access rules, mobile devices and remote
//! wipe. Implements [`Exchange`].
//!
//! ```no_run
//! # async fn demo() -> o365_essentials_core::Result<()> {
//! use o365_essentials_core::exchange::ExchangeOnline;
//! use o365_essentials_core::graph::GraphConfig;
//! use o365_essentials_core::ports::Exchange;
//!
//! let exo = ExchangeOnline::new(GraphConfig::with_secret("contoso.onmicrosoft.com", "client-id", "secret"))?;
//! for g in exo.distribution_groups().await? {
//!     println!("{} <{}>: {} members", g.display_name, g.primary_smtp_address, g.members.len());
//! }
//! # Ok(()) }
//! ```
//!
//! Every cmdlet is one `POST {exchange_url}/{tenant}/InvokeCommand` with the Exchange
//! resource's token. Reads follow `@odata.nextLink`; the `Rate-Limit-*` headers and
//! `Retry-After` pace the calls. Writes whose outcome is unknown (a lost answer) are
//! checked before they are repeated, so nothing is created twice. Cmdlet errors keep the
//! exception name (`…ManagementObjectNotFoundException`) as the service code.

pub(crate) mod map;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode, Result};
use crate::graph::{GraphConfig, GraphTenant};
use crate::model::{
    AccessLevel, AccessRule, DeviceAccessState, DevicePolicy, DistributionGroup,
    DistributionGroupUpdate, Limit, MobileDevice, NewAccessRule, NewDistributionGroup, WipeKind,
    WipeStatus,
};
use crate::ports::Exchange;
use crate::transport::{Answer, Counters, Hold, Retry, Service, TokenCache, backoff};

/// The Exchange Online resource's scope.
pub const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";

/// The system mailbox the admin API routes app-only calls by.
const ANCHOR_MAILBOX: &str = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}";

/// Attempts of a write whose outcome is checked before it is repeated.
const WRITE_ATTEMPTS: u32 = 6;

struct Inner {
    graph: GraphTenant,
    tokens: TokenCache,
    url: String,
    anchor: String,
    /// No request before the window resets once its budget is spent, or after a 429.
    hold: Hold,
    counters: Counters,
}

#[async_trait]
impl Service for Inner {
    async fn slot(&self, _write: bool) -> Option<Box<dyn Send + '_>> {
        self.hold.wait().await;
        None
    }

    fn answered(&self, _status: u16, headers: &reqwest::header::HeaderMap, _write: bool) {
        self.hold
            .hold_if_spent(headers, "rate-limit-remaining", "rate-limit-reset");
    }

    fn throttled(&self, after: Duration, _write: bool) {
        self.hold.extend(after);
    }

    fn error(&self, a: &Answer, what: &str) -> Error {
        map::exchange_error(a.status, &a.body, a.request_id.as_deref(), what)
    }
}

/// The Exchange Online backend; cheap to clone.
#[derive(Clone)]
pub struct ExchangeOnline {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExchangeOnline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeOnline")
            .field("url", &self.inner.url)
            .field("graph", &self.inner.graph)
            .finish()
    }
}

/// What one page of a cmdlet's answer held.
struct Page {
    rows: Vec<Value>,
    next: Option<String>,
}

fn is_unknown_outcome(e: &Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::ServiceUnavailable | ErrorCode::Transport | ErrorCode::Timeout
    )
}

fn exception_is(e: &Error, name: &str) -> bool {
    e.service().is_some_and(|s| s.code.ends_with(name))
}

fn check_text(what: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid_input(format!("{what} is empty")));
    }
    if value.chars().count() > max {
        return Err(Error::invalid_input(format!(
            "{what} `{value}` is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid_input(format!(
            "{what} contains a control character"
        )));
    }
    Ok(())
}

fn check_members(members: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for m in members {
        check_text("a member", m, 320)?;
        let m = m.trim().to_string();
        if !out.iter().any(|x| x.eq_ignore_ascii_case(&m)) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Checks a device policy against the service's ranges before any request.
///
/// # Errors
/// [`ErrorCode::InvalidInput`] naming the setting and its allowed values.
pub fn check_device_policy(p: &DevicePolicy) -> Result<()> {
    if let Some(n) = p.min_password_length
        && !(1..=16).contains(&n)
    {
        return Err(Error::invalid_input(format!(
            "minimum password length {n} is outside 1–16"
        )));
    }
    if let Limit::Value(n) = p.max_password_failed_attempts
        && !(4..=16).contains(&n)
    {
        return Err(Error::invalid_input(format!(
            "allowed failed password attempts {n} is outside 4–16 (or unlimited)"
        )));
    }
    if let Limit::Value(n) = p.max_inactivity_lock_minutes
        && !(1..=60).contains(&n)
    {
        return Err(Error::invalid_input(format!(
            "inactivity lock of {n} minutes is outside 1–60 (or unlimited)"
        )));
    }
    Ok(())
}

impl ExchangeOnline {
    /// Builds the backend from the tenant's configuration (its `exchange_url` and
    /// credential). Makes no request.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] as [`GraphTenant::new`].
    pub fn new(cfg: GraphConfig) -> Result<ExchangeOnline> {
        Ok(ExchangeOnline::with_graph(GraphTenant::new(cfg)?))
    }

    /// Shares a Graph backend's HTTP client and credential.
    pub fn with_graph(graph: GraphTenant) -> ExchangeOnline {
        let cfg = graph.config();
        let url = format!(
            "{}/{}/InvokeCommand",
            cfg.exchange_url.trim_end_matches('/'),
            crate::graph::enc(&cfg.tenant_id)
        );
        let anchor = format!("APP:{ANCHOR_MAILBOX}@{}", cfg.tenant_id);
        ExchangeOnline {
            inner: Arc::new(Inner {
                tokens: TokenCache::new(EXCHANGE_SCOPE),
                url,
                anchor,
                hold: Hold::default(),
                counters: Counters::default(),
                graph,
            }),
        }
    }

    /// Cmdlet calls sent (each retry and page counts), throttled answers, and waits made
    /// because the `Rate-Limit-Remaining` budget was spent.
    pub fn request_counts(&self) -> crate::graph::RequestCounts {
        crate::graph::RequestCounts {
            budget_waits: self.inner.hold.waits(),
            ..self.inner.counters.get()
        }
    }

    /// Sends one page request.
    async fn send(
        &self,
        url: &str,
        body: &str,
        cmdlet: &str,
        retry: Retry,
        what: &str,
    ) -> Result<Page> {
        let i = &*self.inner;
        let page_size = i.graph.config().page_size.clamp(1, 1000);
        let build = |http: &reqwest::Client| {
            http.post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .header("Prefer", format!("odata.maxpagesize={page_size}"))
                .header("X-AnchorMailbox", &i.anchor)
                .header("X-CmdletName", cmdlet)
                .header("X-ResponseFormat", "json")
                .body(body.to_string())
        };
        let answer = i
            .graph
            .send(i, &i.tokens, &i.counters, &build, true, retry, what)
            .await?;
        let Some(rows) = answer.body.get("value").and_then(Value::as_array) else {
            return Err(Error::new(
                ErrorCode::UnexpectedResponse,
                format!(
                    "{what}: Exchange answered {} without a `value` list",
                    answer.status
                ),
            ));
        };
        Ok(Page {
            rows: rows.clone(),
            next: answer
                .body
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// Runs a cmdlet and collects every page of its answer.
    async fn invoke(
        &self,
        cmdlet: &str,
        params: Value,
        retry: Retry,
        what: &str,
    ) -> Result<Vec<Value>> {
        let body = json!({"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}}).to_string();
        let base = self.inner.url.clone();
        let mut url = base.clone();
        let mut rows = Vec::new();
        // Only follow links to the same service: the token goes with them.
        let mut pages = crate::transport::Pages::new(
            &base,
            "Exchange Online",
            self.inner.graph.config().max_pages,
        );
        loop {
            let page = self.send(&url, &body, cmdlet, retry, what).await?;
            rows.extend(page.rows);
            match page.next {
                Some(next) => url = pages.follow(&next, what)?,
                _ => return Ok(rows),
            }
        }
    }

    async fn group_row(&self, identity: &str) -> Result<Option<Value>> {
        match self
            .invoke(
                "Get-DistributionGroup",
                json!({"Identity": identity}),
                Retry::Idempotent,
                &format!("looking up distribution group {identity}"),
            )
            .await
        {
            Ok(rows) => Ok(rows.into_iter().next()),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Members as (primary SMTP address, online user name); `WindowsLiveID` is the UPN of
    /// a cloud mailbox, the address stands in for recipients without one (contacts).
    async fn group_members(&self, identity: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .invoke(
                "Get-DistributionGroupMember",
                json!({"Identity": identity, "ResultSize": "Unlimited"}),
                Retry::Idempotent,
                &format!("listing the members of {identity}"),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let addr = r.get("PrimarySmtpAddress").and_then(Value::as_str)?;
                let upn = r
                    .get("WindowsLiveID")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(addr);
                Some((addr.to_string(), upn.to_string()))
            })
            .collect())
    }

    /// Checks that the group and every member exist, naming everything missing.
    async fn check_group_and_members(&self, group: &str, members: &[String]) -> Result<()> {
        check_text("the group", group, 320)?;
        if self.group_row(group).await?.is_none() {
            return Err(Error::not_found(format!(
                "there is no distribution group `{group}`"
            )));
        }
        self.check_recipients(members).await
    }

    async fn check_recipients(&self, members: &[String]) -> Result<()> {
        let mut checks = Vec::with_capacity(members.len());
        for chunk in members.chunks(4) {
            let found = futures::future::join_all(chunk.iter().map(|m| async move {
                let r = self
                    .invoke(
                        "Get-Recipient",
                        json!({"Identity": m}),
                        Retry::Idempotent,
                        &format!("looking up {m}"),
                    )
                    .await;
                (m.clone(), r)
            }))
            .await;
            checks.extend(found);
        }
        let mut missing = Vec::new();
        for (m, r) in checks {
            match r {
                Ok(_) => {}
                Err(e) if e.code() == ErrorCode::NotFound => missing.push(m),
                Err(e) => return Err(e),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "no mailbox or address for {}; create their online accounts first or correct the addresses",
                missing.join(", ")
            )))
        }
    }

    /// Runs a removing cmdlet whose answer may be lost: after an unknown outcome it asks
    /// `still_there` before sending it again, and a NotFound for a repeat means the first
    /// one worked.
    async fn remove_checked<F, Fut>(
        &self,
        cmdlet: &str,
        params: Value,
        what: &str,
        still_there: F,
    ) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let mut sent = false;
        for attempt in 0..WRITE_ATTEMPTS {
            match self
                .invoke(cmdlet, params.clone(), Retry::CallerChecks, what)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == ErrorCode::NotFound && sent => return Ok(()),
                Err(e) if is_unknown_outcome(&e) => {
                    sent = true;
                    if !still_there().await? {
                        return Ok(());
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorCode::ServiceUnavailable,
            format!("{what}: Exchange did not answer, and it is still there"),
        ))
    }

    /// Adds or removes members one by one after checking that all of them exist. A member
    /// already in (or already out of) the group is no change, so the cmdlets are safe to
    /// resend after a lost answer.
    async fn change_members(&self, group: &str, members: &[String], add: bool) -> Result<()> {
        let members = check_members(members)?;
        self.check_group_and_members(group, &members).await?;
        let (cmdlet, no_change, verb) = if add {
            (
                "Add-DistributionGroupMember",
                "MemberAlreadyExistsException",
                "adding",
            )
        } else {
            (
                "Remove-DistributionGroupMember",
                "MemberNotFoundException",
                "removing",
            )
        };
        for m in &members {
            let params = json!({"Identity": group, "Member": m, "BypassSecurityGroupManagerCheck": true, "Confirm": false});
            match self
                .invoke(
                    cmdlet,
                    params,
                    Retry::Idempotent,
                    &format!("{verb} {m} ({group})"),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if exception_is(&e, no_change) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One device's row of `Get-MobileDevice` or `Get-MobileDeviceStatistics`.
    async fn device_cmdlet_row(&self, cmdlet: &str, device_id: &str) -> Result<Value> {
        check_text("the device id", device_id, 512)?;
        let rows = self
            .invoke(
                cmdlet,
                json!({"Identity": device_id}),
                Retry::Idempotent,
                &format!("reading device {device_id}"),
            )
            .await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| Error::not_found(format!("there is no mobile device `{device_id}`")))
    }

    async fn device_row(&self, device_id: &str) -> Result<Value> {
        self.device_cmdlet_row("Get-MobileDevice", device_id).await
    }

    async fn stats_row(&self, device_id: &str) -> Result<Value> {
        self.device_cmdlet_row("Get-MobileDeviceStatistics", device_id)
            .await
    }
}

#[async_trait]
impl Exchange for ExchangeOnline {
    async fn distribution_groups(&self) -> Result<Vec<DistributionGroup>> {
        let rows = self
            .invoke(
                "Get-DistributionGroup",
                json!({"ResultSize": "Unlimited"}),
                Retry::Idempotent,
                "listing distribution groups",
            )
            .await?;
        let mut groups = rows.iter().map(map::group).collect::<Result<Vec<_>>>()?;
        let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let mut members = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(4) {
            let found =
                futures::future::join_all(chunk.iter().map(|id| self.group_members(id))).await;
            members.extend(found);
        }
        for (g, m) in groups.iter_mut().zip(members) {
            (g.members, g.member_user_names) = m?.into_iter().unzip();
        }
        Ok(groups)
    }

    async fn create_distribution_group(
        &self,
        group: &NewDistributionGroup,
    ) -> Result<DistributionGroup> {
        check_text("the group name", &group.name, 64)?;
        crate::validate::mail_nickname(&group.alias)?;
        let display = group
            .display_name
            .clone()
            .unwrap_or_else(|| group.name.clone());
        check_text("the display name", &display, 256)?;
        crate::validate::upn(&group.primary_smtp_address).map_err(|e| {
            Error::invalid_input(format!(
                "the primary SMTP address is not an address: {}",
                e.message()
            ))
        })?;
        let members = check_members(&group.members)?;
        if !members.is_empty() {
            self.check_recipients(&members).await?;
        }
        let mut params = json!({
            "Name": group.name,
            "Alias": group.alias,
            "DisplayName": display,
            "PrimarySmtpAddress": group.primary_smtp_address,
            "Type": "Distribution",
            "RequireSenderAuthenticationEnabled": !group.allow_external_senders,
        });
        if !members.is_empty() {
            params["Members"] = json!(members);
        }
        let what = format!("creating distribution group {}", group.name);
        let mut rows = None;
        for attempt in 0..WRITE_ATTEMPTS {
            match self
                .invoke(
                    "New-DistributionGroup",
                    params.clone(),
                    Retry::CallerChecks,
                    &what,
                )
                .await
            {
                Ok(r) => {
                    rows = Some(r);
                    break;
                }
                Err(e) if is_unknown_outcome(&e) && attempt + 1 < WRITE_ATTEMPTS => {
                    // The answer was lost: the group may exist. Ours if name and address
                    // match; otherwise it was not created and is sent again.
                    if let Some(row) = self.group_row(&group.primary_smtp_address).await?
                        && row
                            .get("Name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.eq_ignore_ascii_case(&group.name))
                    {
                        rows = Some(vec![row]);
                        break;
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let rows = rows.unwrap_or_default();
        let row = rows.into_iter().next().ok_or_else(|| {
            Error::new(
                ErrorCode::UnexpectedResponse,
                format!("{what}: Exchange returned no group"),
            )
        })?;
        let mut g = map::group(&row)?;
        (g.members, g.member_user_names) = self.group_members(&g.id).await?.into_iter().unzip();
        Ok(g)
    }

    async fn add_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.change_members(group, members, true).await
    }

    async fn remove_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.change_members(group, members, false).await
    }

    async fn replace_members(&self, group: &str, members: &[String]) -> Result<()> {
        let members = check_members(members)?;
        self.check_group_and_members(group, &members).await?;
        self.invoke(
            "Update-DistributionGroupMember",
            json!({"Identity": group, "Members": members, "BypassSecurityGroupManagerCheck": true, "Confirm": false}),
            Retry::Idempotent,
            &format!("replacing the members of {group}"),
        )
        .await
        .map(|_| ())
    }

    async fn delete_distribution_group(&self, group: &str) -> Result<()> {
        check_text("the group", group, 320)?;
        self.remove_checked(
            "Remove-DistributionGroup",
            json!({"Identity": group, "BypassSecurityGroupManagerCheck": true, "Confirm": false}),
            &format!("deleting distribution group {group}"),
            || async { Ok(self.group_row(group).await?.is_some()) },
        )
        .await
        .map_err(|e| {
            if e.code() == ErrorCode::NotFound {
                Error::not_found(format!("there is no distribution group `{group}`"))
                    .with_service(e.service().cloned().unwrap_or_default())
            } else {
                e
            }
        })
    }

    async fn update_distribution_group(
        &self,
        group: &str,
        update: &DistributionGroupUpdate,
    ) -> Result<DistributionGroup> {
        check_text("the group", group, 320)?;
        let mut params = json!({"Identity": group, "BypassSecurityGroupManagerCheck": true});
        if let Some(d) = &update.display_name {
            check_text("the display name", d, 256)?;
            params["DisplayName"] = json!(d);
        }
        if let Some(allow) = update.allow_external_senders {
            params["RequireSenderAuthenticationEnabled"] = json!(!allow);
        }
        if update.display_name.is_none() && update.allow_external_senders.is_none() {
            return Err(Error::invalid_input(
                "the change to the distribution group is empty",
            ));
        }
        // Setting the same values again changes nothing: safe to resend.
        self.invoke(
            "Set-DistributionGroup",
            params,
            Retry::Idempotent,
            &format!("changing distribution group {group}"),
        )
        .await
        .map_err(|e| {
            if e.code() == ErrorCode::NotFound {
                Error::not_found(format!("there is no distribution group `{group}`"))
                    .with_service(e.service().cloned().unwrap_or_default())
            } else {
                e
            }
        })?;
        let row = self
            .group_row(group)
            .await?
            .ok_or_else(|| Error::not_found(format!("there is no distribution group `{group}`")))?;
        let mut g = map::group(&row)?;
        (g.members, g.member_user_names) = self.group_members(&g.id).await?.into_iter().unzip();
        Ok(g)
    }

    async fn default_access_level(&self) -> Result<AccessLevel> {
        let rows = self
            .invoke(
                "Get-ActiveSyncOrganizationSettings",
                json!({}),
                Retry::Idempotent,
                "reading the default device access level",
            )
            .await?;
        map::default_access_level(rows.first().unwrap_or(&Value::Null))
    }

    async fn set_default_access_level(&self, level: AccessLevel) -> Result<()> {
        self.invoke(
            "Set-ActiveSyncOrganizationSettings",
            json!({"DefaultAccessLevel": map::access_level_name(level), "Confirm": false}),
            Retry::Idempotent,
            "setting the default device access level",
        )
        .await
        .map(|_| ())
    }

    async fn device_policy(&self) -> Result<DevicePolicy> {
        let rows = self
            .invoke(
                "Get-MobileDeviceMailboxPolicy",
                json!({"Identity": "Default"}),
                Retry::Idempotent,
                "reading the mobile device policy",
            )
            .await?;
        map::policy(rows.first().unwrap_or(&Value::Null))
    }

    async fn set_device_policy(&self, policy: &DevicePolicy) -> Result<()> {
        check_device_policy(policy)?;
        let params = json!({
            "Identity": "Default",
            "PasswordEnabled": policy.password_enabled,
            "MinPasswordLength": policy.min_password_length,
            "MaxPasswordFailedAttempts": match policy.max_password_failed_attempts {
                Limit::Unlimited => json!("Unlimited"),
                Limit::Value(n) => json!(n),
            },
            "MaxInactivityTimeLock": match policy.max_inactivity_lock_minutes {
                Limit::Unlimited => json!("Unlimited"),
                Limit::Value(m) => json!(format!("{:02}:{:02}:00", m / 60, m % 60)),
            },
            "AlphanumericPasswordRequired": policy.alphanumeric_password_required,
            "Confirm": false,
        });
        self.invoke(
            "Set-MobileDeviceMailboxPolicy",
            params,
            Retry::Idempotent,
            "setting the mobile device policy",
        )
        .await
        .map(|_| ())
    }

    async fn access_rules(&self) -> Result<Vec<AccessRule>> {
        let rows = self
            .invoke(
                "Get-ActiveSyncDeviceAccessRule",
                json!({}),
                Retry::Idempotent,
                "listing device access rules",
            )
            .await?;
        rows.iter().map(map::rule).collect()
    }

    async fn add_access_rule(&self, rule: &NewAccessRule) -> Result<AccessRule> {
        check_text("the rule's value", &rule.query_string, 256)?;
        let characteristic = map::characteristic_name(rule.characteristic);
        let params = json!({
            "QueryString": rule.query_string,
            "Characteristic": characteristic,
            "AccessLevel": map::access_level_name(rule.access_level),
        });
        let what = format!(
            "adding the device access rule {} ({characteristic})",
            rule.query_string
        );
        let mut rows = Vec::new();
        for attempt in 0..WRITE_ATTEMPTS {
            match self
                .invoke(
                    "New-ActiveSyncDeviceAccessRule",
                    params.clone(),
                    Retry::CallerChecks,
                    &what,
                )
                .await
            {
                Ok(r) => {
                    rows = r;
                    break;
                }
                Err(e) if is_unknown_outcome(&e) && attempt + 1 < WRITE_ATTEMPTS => {
                    if let Some(r) = self.access_rules().await?.into_iter().find(|r| {
                        r.characteristic == rule.characteristic
                            && r.query_string.eq_ignore_ascii_case(&rule.query_string)
                            && r.access_level == rule.access_level
                    }) {
                        return Ok(r);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        map::rule(rows.first().unwrap_or(&Value::Null))
    }

    async fn remove_access_rule(&self, id: &str) -> Result<()> {
        check_text("the rule id", id, 512)?;
        self.remove_checked(
            "Remove-ActiveSyncDeviceAccessRule",
            json!({"Identity": id, "Confirm": false}),
            &format!("removing device access rule {id}"),
            || async {
                Ok(self
                    .access_rules()
                    .await?
                    .iter()
                    .any(|r| r.id.eq_ignore_ascii_case(id)))
            },
        )
        .await
    }

    async fn devices(&self, user_principal_name: &str) -> Result<Vec<MobileDevice>> {
        check_text("the user", user_principal_name, 320)?;
        let what = format!("listing the mobile devices of {user_principal_name}");
        let devices = self
            .invoke(
                "Get-MobileDevice",
                json!({"Mailbox": user_principal_name, "ResultSize": "Unlimited"}),
                Retry::Idempotent,
                &what,
            )
            .await?;
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let stats = self
            .invoke(
                "Get-MobileDeviceStatistics",
                json!({"Mailbox": user_principal_name}),
                Retry::Idempotent,
                &what,
            )
            .await?;
        devices
            .iter()
            .map(|d| {
                let guid = d.get("Guid").and_then(Value::as_str).unwrap_or("");
                let st = stats
                    .iter()
                    .find(|s| s.get("Guid").and_then(Value::as_str) == Some(guid));
                map::device(d, st, user_principal_name)
            })
            .collect()
    }

    async fn set_device_access(&self, device_id: &str, allow: bool) -> Result<DeviceAccessState> {
        check_text("the device id", device_id, 512)?;
        let what = format!(
            "{} device {device_id}",
            if allow { "allowing" } else { "blocking" }
        );
        let row = self.device_row(device_id).await?;
        let (mailbox, activesync_id) = map::device_owner(&row).ok_or_else(|| {
            Error::new(
                ErrorCode::UnexpectedResponse,
                format!("{what}: Exchange did not say whose device it is"),
            )
        })?;
        let (into, out_of) = if allow {
            ("ActiveSyncAllowedDeviceIDs", "ActiveSyncBlockedDeviceIDs")
        } else {
            ("ActiveSyncBlockedDeviceIDs", "ActiveSyncAllowedDeviceIDs")
        };
        let mut params = json!({"Identity": mailbox, "Confirm": false});
        params[into] = json!({"add": [activesync_id]});
        params[out_of] = json!({"remove": [activesync_id]});
        // Adding to one list and removing from the other twice changes nothing more.
        self.invoke("Set-CASMailbox", params, Retry::Idempotent, &what)
            .await?;
        map::device(&self.device_row(device_id).await?, None, "").map(|d| d.access_state)
    }

    async fn wipe_device(
        &self,
        device_id: &str,
        kind: WipeKind,
        confirm: &str,
    ) -> Result<WipeStatus> {
        check_text("the device id", device_id, 512)?;
        if !confirm.trim().eq_ignore_ascii_case(device_id.trim()) {
            return Err(Error::invalid_input(format!(
                "a wipe erases the device: repeat its id `{device_id}` as the confirmation to send it"
            )));
        }
        let current = map::wipe_status(&self.stats_row(device_id).await?);
        if current == WipeStatus::Pending {
            return Ok(current);
        }
        let mut params = json!({"Identity": device_id, "Confirm": false});
        if kind == WipeKind::AccountOnly {
            params["AccountOnly"] = json!(true);
        }
        // Repeating a wipe request leaves one pending request: safe to resend.
        self.invoke(
            "Clear-MobileDevice",
            params,
            Retry::Idempotent,
            &format!("wiping device {device_id}"),
        )
        .await?;
        self.wipe_status(device_id).await
    }

    async fn cancel_wipe(&self, device_id: &str) -> Result<WipeStatus> {
        let current = map::wipe_status(&self.stats_row(device_id).await?);
        match current {
            WipeStatus::Succeeded => {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "device {device_id} already acknowledged the wipe; it cannot be cancelled"
                    ),
                ));
            }
            WipeStatus::None | WipeStatus::Cancelled => return Ok(WipeStatus::None),
            WipeStatus::Pending => {}
        }
        match self
            .invoke(
                "Clear-MobileDevice",
                json!({"Identity": device_id, "Cancel": true, "Confirm": false}),
                Retry::Idempotent,
                &format!("cancelling the wipe of {device_id}"),
            )
            .await
        {
            Ok(_) => Ok(WipeStatus::Cancelled),
            Err(e) if exception_is(&e, "WipeAlreadyCompletedException") => Err(Error::new(
                ErrorCode::Conflict,
                format!("device {device_id} acknowledged the wipe before it could be cancelled"),
            )
            .with_service(e.service().cloned().unwrap_or_default())),
            Err(e) => Err(e),
        }
    }

    async fn wipe_status(&self, device_id: &str) -> Result<WipeStatus> {
        Ok(map::wipe_status(&self.stats_row(device_id).await?))
    }
}
