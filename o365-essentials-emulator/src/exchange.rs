//! The Exchange Online admin API: `POST /adminapi/beta/{tenant}/InvokeCommand` with the
//! cmdlets o365-essentials uses — distribution groups, the mobile device mailbox policy,
//! ActiveSync access rules, mobile devices and remote wipe — with the real parameter
//! names, validation, answers and error bodies, paging through `@odata.nextLink`, and a
//! per-app rate limit announced in `Rate-Limit-*` headers.
//!
//! Mailboxes are the tenant's users that are not deleted: their recipient identities are
//! the id, the UPN, `mail`, `mailNickname` and every `smtp:` proxy address.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Claims;
use crate::ctx::{RequestCtx, now_rfc3339, read_bytes};
use crate::state::{Directory, Emu, User};

const SERVER: &str = "AM0PR01A002.EURPRD01.PROD.OUTLOOK.COM";

/// A distribution group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub guid: String,
    pub external_id: String,
    pub name: String,
    pub alias: String,
    pub display_name: String,
    pub primary_smtp: String,
    pub security: bool,
    pub require_sender_auth: bool,
    pub join_restriction: String,
    /// Member user ids, in insertion order.
    pub members: Vec<String>,
    pub created: String,
}

/// The `Default` mobile device mailbox policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub password_enabled: bool,
    pub min_password_length: Option<i64>,
    /// `None` = Unlimited.
    pub max_password_failed_attempts: Option<i64>,
    /// Minutes; `None` = Unlimited.
    pub max_inactivity_minutes: Option<i64>,
    pub alphanumeric_required: bool,
    pub min_complex_characters: i64,
    pub password_history: i64,
    pub allow_simple_password: bool,
    pub require_device_encryption: bool,
    /// Days; `None` = Unlimited.
    pub password_expiration_days: Option<i64>,
    pub changed: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            password_enabled: false,
            min_password_length: None,
            max_password_failed_attempts: None,
            max_inactivity_minutes: None,
            alphanumeric_required: false,
            min_complex_characters: 1,
            password_history: 0,
            allow_simple_password: true,
            require_device_encryption: false,
            password_expiration_days: None,
            changed: now_rfc3339(),
        }
    }
}

/// An ActiveSync device access rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub guid: String,
    pub access_level: String,
    pub characteristic: String,
    pub query: String,
    pub created: String,
}

impl Rule {
    fn identity(&self) -> String {
        format!("{} ({})", self.query, self.characteristic)
    }
}

/// Where a device's wipe stands.
#[derive(Debug, Clone)]
pub(crate) enum Wipe {
    None,
    Pending {
        requested: String,
        at: Instant,
        account_only: bool,
    },
    Done {
        requested: String,
        acknowledged: String,
        account_only: bool,
    },
}

/// A mobile device partnership.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub guid: String,
    pub user_id: String,
    pub device_id: String,
    pub model: String,
    pub device_type: String,
    pub os: String,
    pub friendly_name: Option<String>,
    pub discovery: bool,
    pub first_sync: String,
    pub last_sync: String,
    pub wipe: Wipe,
}

/// Everything Exchange keeps.
#[derive(Debug, Default)]
pub(crate) struct ExoState {
    pub groups: Vec<Group>,
    pub policy: Policy,
    pub rules: Vec<Rule>,
    pub devices: Vec<Device>,
    /// `Allow`, `Block` or `Quarantine`.
    pub default_access_level: Option<String>,
    /// Per mailbox (user id): ActiveSync device ids allowed and blocked individually.
    pub device_lists: HashMap<String, (Vec<String>, Vec<String>)>,
    /// Per app: (requests in the window, window start).
    buckets: HashMap<String, (f64, Option<Instant>)>,
}

/// A cmdlet failure, answered in the admin API's error shape.
#[derive(Debug, Clone)]
pub(crate) struct CmdletError {
    status: StatusCode,
    code: &'static str,
    exception: &'static str,
    message: String,
}

type CmdResult<T> = Result<T, CmdletError>;

fn not_found_on(identity: &str) -> CmdletError {
    CmdletError {
        status: StatusCode::NOT_FOUND,
        code: "NotFound",
        exception: "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
        message: format!(
            "The operation couldn't be performed because object '{identity}' couldn't be found on '{SERVER}'."
        ),
    }
}

fn couldnt_find(identity: &str) -> CmdletError {
    CmdletError {
        status: StatusCode::NOT_FOUND,
        code: "NotFound",
        exception: "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
        message: format!(
            "Couldn't find object \"{identity}\". Please make sure that it was spelled correctly or specify a different object."
        ),
    }
}

fn bad(exception: &'static str, message: impl Into<String>) -> CmdletError {
    CmdletError {
        status: StatusCode::BAD_REQUEST,
        code: "BadRequest",
        exception,
        message: message.into(),
    }
}

fn binding(message: impl Into<String>) -> CmdletError {
    bad(
        "System.Management.Automation.ParameterBindingException",
        message,
    )
}

fn validation(message: impl Into<String>) -> CmdletError {
    bad("Microsoft.Exchange.Data.DataValidationException", message)
}

impl CmdletError {
    fn body(&self, request_id: &str) -> Value {
        let err_id = format!("Ex{:06X}", fxhash(self.exception) & 0xFF_FFFF);
        json!({"error": {
            "code": self.code,
            "message": "Error executing cmdlet",
            "details": [{
                "code": "Client",
                "target": "",
                "message": format!("{err_id}|{}|{}", self.exception, self.message),
            }],
            "innererror": {
                "message": format!("Error executing cmdlet {}", self.message),
                "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                "@Microsoft.Exchange.Admin.OData.Core.ODataServiceException.requestId": request_id,
                "@Microsoft.Exchange.Admin.OData.Core.ODataServiceException.ErrorCategory": "NotSpecified",
            }
        }})
    }
}

/// A stable small hash for the `Ex…` error ids.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The parameters of one cmdlet call, with the set it accepts.
struct Params<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Params<'a> {
    fn new(map: &'a Map<String, Value>, cmdlet: &str, allowed: &[&str]) -> CmdResult<Self> {
        for k in map.keys() {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(k)) {
                return Err(binding(format!(
                    "A parameter cannot be found that matches parameter name '{k}'. ({cmdlet})"
                )));
            }
        }
        Ok(Params { map })
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn has(&self, name: &str) -> bool {
        self.map.keys().any(|k| k.eq_ignore_ascii_case(name))
    }

    fn str(&self, name: &str) -> CmdResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(binding(format!(
                "Cannot convert the value of parameter '{name}' to the type \"System.String\"."
            ))),
        }
    }

    fn required(&self, name: &str, cmdlet: &str) -> CmdResult<String> {
        match self.str(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(binding(format!(
                "Cannot bind argument to parameter '{name}' because it is null or empty. ({cmdlet} requires -{name})"
            ))),
        }
    }

    fn bool(&self, name: &str) -> CmdResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().trim_start_matches('$') {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(binding(format!(
                    "Cannot process argument transformation on parameter '{name}'. Cannot convert value \"{s}\" to type \"System.Boolean\"."
                ))),
            },
            Some(other) => Err(binding(format!(
                "Cannot process argument transformation on parameter '{name}'. Cannot convert value \"{other}\" to type \"System.Boolean\"."
            ))),
        }
    }

    /// A switch: present (and not `false`) means on.
    fn switch(&self, name: &str) -> CmdResult<bool> {
        if !self.has(name) {
            return Ok(false);
        }
        Ok(self.bool(name)?.unwrap_or(true))
    }

    fn list(&self, name: &str) -> CmdResult<Option<Vec<String>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        binding(format!(
                            "Cannot convert the value of parameter '{name}' to the type \"Microsoft.Exchange.Configuration.Tasks.RecipientWithAdUserGroupIdParameter`1[]\"."
                        ))
                    })
                })
                .collect::<CmdResult<Vec<_>>>()
                .map(Some),
            Some(_) => Err(binding(format!(
                "Cannot convert the value of parameter '{name}' to a list."
            ))),
        }
    }

    /// An integer in a range, or `Unlimited` when `unlimited` allows it (→ `None`).
    fn limit(
        &self,
        name: &str,
        min: i64,
        max: i64,
        unlimited: bool,
    ) -> CmdResult<Option<Option<i64>>> {
        let Some(v) = self
            .map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
        else {
            return Ok(None);
        };
        let n = match v {
            Value::Null => return Ok(Some(None)),
            Value::String(s) if unlimited && s.eq_ignore_ascii_case("unlimited") => {
                return Ok(Some(None));
            }
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(n) = n else {
            return Err(binding(format!(
                "Cannot process argument transformation on parameter '{name}'. Cannot convert value \"{v}\" to type \"System.Int32\"."
            )));
        };
        if n < min || n > max {
            return Err(binding(format!(
                "Cannot validate argument on parameter '{name}'. The {n} argument is {} the {} allowed range of {}. Supply an argument that is {} {} and then try the command again.",
                if n < min { "less than" } else { "greater than" },
                if n < min { "minimum" } else { "maximum" },
                if n < min { min } else { max },
                if n < min {
                    "greater than or equal to"
                } else {
                    "less than or equal to"
                },
                if n < min { min } else { max },
            )));
        }
        Ok(Some(Some(n)))
    }

    fn one_of(&self, name: &str, choices: &[&str]) -> CmdResult<Option<String>> {
        match self.str(name)? {
            None => Ok(None),
            Some(s) => choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(&s))
                .map(|c| Some((*c).to_string()))
                .ok_or_else(|| {
                    binding(format!(
                        "Cannot process argument transformation on parameter '{name}'. Cannot convert value \"{s}\" to type \"{name}\". Error: \"Unable to match the identifier name {s} to a valid enumerator name. Specify one of the following enumerator names and try again: {}\"",
                        choices.join(", ")
                    ))
                }),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn smtp_addresses(u: &User) -> Vec<String> {
    let mut v: Vec<String> = u
        .proxy_addresses
        .iter()
        .filter_map(|p| {
            let (kind, addr) = p.split_once(':')?;
            kind.eq_ignore_ascii_case("smtp").then(|| addr.to_string())
        })
        .collect();
    if let Some(m) = &u.mail {
        v.push(m.clone());
    }
    v
}

fn primary_smtp(u: &User) -> String {
    u.proxy_addresses
        .iter()
        .find_map(|p| p.strip_prefix("SMTP:").map(str::to_string))
        .or_else(|| u.mail.clone())
        .unwrap_or_else(|| u.user_principal_name.clone())
}

/// A mailbox by any of its identities.
pub(crate) fn find_recipient<'d>(d: &'d Directory, identity: &str) -> Option<&'d User> {
    let id = identity.trim();
    let id = id
        .strip_prefix("smtp:")
        .or_else(|| id.strip_prefix("SMTP:"))
        .unwrap_or(id);
    d.users.get(id).or_else(|| {
        d.users.values().find(|u| {
            u.user_principal_name.eq_ignore_ascii_case(id)
                || u.mail_nickname.eq_ignore_ascii_case(id)
                || smtp_addresses(u).iter().any(|a| a.eq_ignore_ascii_case(id))
        })
    })
}

fn find_group(x: &ExoState, identity: &str) -> Option<usize> {
    let id = identity.trim();
    x.groups.iter().position(|g| {
        g.guid.eq_ignore_ascii_case(id)
            || g.external_id.eq_ignore_ascii_case(id)
            || g.name.eq_ignore_ascii_case(id)
            || g.alias.eq_ignore_ascii_case(id)
            || g.primary_smtp.eq_ignore_ascii_case(id)
    })
}

fn recipient_json(u: &User) -> Value {
    json!({
        "Identity": u.mail_nickname,
        "Name": u.mail_nickname,
        "DisplayName": u.display_name,
        "Alias": u.mail_nickname,
        "PrimarySmtpAddress": primary_smtp(u),
        "WindowsLiveID": u.user_principal_name,
        "RecipientType": "UserMailbox",
        "RecipientTypeDetails": "UserMailbox",
        "ExternalDirectoryObjectId": u.id,
        "Guid": u.id,
    })
}

fn group_json(g: &Group) -> Value {
    json!({
        "Identity": g.name,
        "Id": g.name,
        "Name": g.name,
        "DisplayName": g.display_name,
        "Alias": g.alias,
        "PrimarySmtpAddress": g.primary_smtp,
        "EmailAddresses": [format!("SMTP:{}", g.primary_smtp)],
        "RequireSenderAuthenticationEnabled": g.require_sender_auth,
        "RecipientType": if g.security { "MailUniversalSecurityGroup" } else { "MailUniversalDistributionGroup" },
        "RecipientTypeDetails": if g.security { "MailUniversalSecurityGroup" } else { "MailUniversalDistributionGroup" },
        "GroupType": if g.security { "Universal, SecurityEnabled" } else { "Universal" },
        "MemberJoinRestriction": g.join_restriction,
        "MemberDepartRestriction": "Open",
        "ManagedBy": [],
        "ExternalDirectoryObjectId": g.external_id,
        "Guid": g.guid,
        "WhenCreatedUTC": g.created,
        "IsDirSynced": false,
    })
}

fn timespan(minutes: Option<i64>) -> Value {
    match minutes {
        None => json!("Unlimited"),
        Some(m) => json!(format!("{:02}:{:02}:00", m / 60, m % 60)),
    }
}

fn policy_json(p: &Policy) -> Value {
    json!({
        "Identity": "Default",
        "Name": "Default",
        "IsDefault": true,
        "PasswordEnabled": p.password_enabled,
        "MinPasswordLength": p.min_password_length,
        "MaxPasswordFailedAttempts": p.max_password_failed_attempts.map_or(json!("Unlimited"), |n| json!(n.to_string())),
        "MaxInactivityTimeLock": timespan(p.max_inactivity_minutes),
        "AlphanumericPasswordRequired": p.alphanumeric_required,
        "MinPasswordComplexCharacters": p.min_complex_characters,
        "PasswordHistory": p.password_history,
        "AllowSimplePassword": p.allow_simple_password,
        "RequireDeviceEncryption": p.require_device_encryption,
        "PasswordExpiration": p.password_expiration_days.map_or(json!("Unlimited"), |d| json!(format!("{d}.00:00:00"))),
        "AllowNonProvisionableDevices": true,
        "DevicePolicyRefreshInterval": "Unlimited",
        "WhenChangedUTC": p.changed,
    })
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "Identity": r.identity(),
        "Name": r.identity(),
        "QueryString": r.query,
        "Characteristic": r.characteristic,
        "AccessLevel": r.access_level,
        "Guid": r.guid,
        "WhenCreatedUTC": r.created,
    })
}

/// The access state of a device: the most specific matching rule (model, then OS,
/// then type), else the organisation's default.
fn access_state(x: &ExoState, dev: &Device) -> (String, String, Option<String>) {
    // The mailbox's own lists come first: blocked, then allowed.
    if let Some((allowed, blocked)) = x.device_lists.get(&dev.user_id) {
        if blocked
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&dev.device_id))
        {
            return ("Blocked".into(), "Individual".into(), None);
        }
        if allowed
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&dev.device_id))
        {
            return ("Allowed".into(), "Individual".into(), None);
        }
    }
    for (ch, value) in [
        ("DeviceModel", &dev.model),
        ("DeviceOS", &dev.os),
        ("DeviceType", &dev.device_type),
    ] {
        if let Some(r) = x
            .rules
            .iter()
            .find(|r| r.characteristic == ch && r.query.eq_ignore_ascii_case(value))
        {
            let state = match r.access_level.as_str() {
                "Block" => "Blocked",
                "Quarantine" => "Quarantined",
                _ => "Allowed",
            };
            return (state.into(), "DeviceRule".into(), Some(r.identity()));
        }
    }
    if dev.discovery {
        return ("DeviceDiscovery".into(), "Global".into(), None);
    }
    let state = match x.default_access_level.as_deref() {
        Some("Block") => "Blocked",
        Some("Quarantine") => "Quarantined",
        _ => "Allowed",
    };
    (state.into(), "Global".into(), None)
}

fn device_identity(d: &Directory, dev: &Device) -> String {
    let alias = d
        .users
        .get(&dev.user_id)
        .map_or("unknown", |u| u.mail_nickname.as_str());
    format!(
        "{alias}\\ExchangeActiveSyncDevices\\{}§{}",
        dev.device_type, dev.device_id
    )
}

fn device_json(d: &Directory, x: &ExoState, dev: &Device) -> Value {
    let (state, reason, rule) = access_state(x, dev);
    let user = d.users.get(&dev.user_id);
    json!({
        "Identity": device_identity(d, dev),
        "Guid": dev.guid,
        "DeviceId": dev.device_id,
        "DeviceModel": dev.model,
        "DeviceType": dev.device_type,
        "DeviceOS": dev.os,
        "FriendlyName": dev.friendly_name,
        "DeviceAccessState": state,
        "DeviceAccessStateReason": reason,
        "DeviceAccessControlRule": rule,
        "UserDisplayName": user.map(|u| u.display_name.clone()),
        "ClientType": "EAS",
        "FirstSyncTime": dev.first_sync,
        "IsManaged": false,
    })
}

fn stats_json(d: &Directory, x: &ExoState, dev: &Device) -> Value {
    let (state, _, _) = access_state(x, dev);
    let (status, requested, acknowledged, account_only) = match &dev.wipe {
        Wipe::None => ("DeviceOk", None, None, false),
        Wipe::Pending {
            requested,
            account_only,
            ..
        } => (
            "DeviceWipePending",
            Some(requested.clone()),
            None,
            *account_only,
        ),
        Wipe::Done {
            requested,
            acknowledged,
            account_only,
        } => (
            "DeviceWipeSucceeded",
            Some(requested.clone()),
            Some(acknowledged.clone()),
            *account_only,
        ),
    };
    json!({
        "Identity": device_identity(d, dev),
        "Guid": dev.guid,
        "DeviceId": dev.device_id,
        "DeviceModel": dev.model,
        "DeviceType": dev.device_type,
        "DeviceOS": dev.os,
        "DeviceFriendlyName": dev.friendly_name,
        "DeviceAccessState": state,
        "Status": status,
        "DeviceWipeRequestTime": if account_only { None } else { requested.clone() },
        "DeviceWipeSentTime": if account_only { None } else { requested.clone() },
        "DeviceWipeAckTime": if account_only { None } else { acknowledged.clone() },
        "AccountOnlyDeviceWipeRequestTime": if account_only { requested.clone() } else { None },
        "AccountOnlyDeviceWipeSentTime": if account_only { requested } else { None },
        "AccountOnlyDeviceWipeAckTime": if account_only { acknowledged } else { None },
        "LastSuccessSync": dev.last_sync,
        "LastSyncAttemptTime": dev.last_sync,
        "FirstSyncTime": dev.first_sync,
        "IsRemoteWipeSupported": true,
    })
}

fn find_device(d: &Directory, x: &ExoState, identity: &str) -> Option<usize> {
    let id = identity.trim();
    x.devices.iter().position(|dev| {
        dev.guid.eq_ignore_ascii_case(id)
            || dev.device_id.eq_ignore_ascii_case(id)
            || device_identity(d, dev).eq_ignore_ascii_case(id)
    })
}

/// Moves pending wipes the devices acknowledged by now to `Done`.
fn advance_wipes(x: &mut ExoState, delay_ms: u64, scale: f64) {
    for dev in &mut x.devices {
        if let Wipe::Pending {
            requested,
            at,
            account_only,
        } = &dev.wipe
            && at.elapsed().as_secs_f64() * scale * 1000.0 >= delay_ms as f64
        {
            let ack = OffsetDateTime::now_utc();
            dev.last_sync = rfc3339(ack);
            dev.wipe = Wipe::Done {
                requested: requested.clone(),
                acknowledged: rfc3339(ack),
                account_only: *account_only,
            };
        }
    }
}

fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 64
        && !a.starts_with('.')
        && !a.ends_with('.')
        && !a.contains("..")
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
}

fn address_in_use(d: &Directory, x: &ExoState, addr: &str) -> Option<String> {
    if let Some(g) = x
        .groups
        .iter()
        .find(|g| g.primary_smtp.eq_ignore_ascii_case(addr))
    {
        return Some(g.name.clone());
    }
    d.users
        .values()
        .find(|u| {
            smtp_addresses(u)
                .iter()
                .any(|a| a.eq_ignore_ascii_case(addr))
        })
        .map(|u| u.mail_nickname.clone())
}

fn resolve_members(d: &Directory, names: &[String]) -> CmdResult<Vec<String>> {
    let mut ids = Vec::new();
    for n in names {
        let u = find_recipient(d, n).ok_or_else(|| couldnt_find(n))?;
        if !ids.contains(&u.id) {
            ids.push(u.id.clone());
        }
    }
    Ok(ids)
}

struct Call<'a> {
    emu: &'a Emu,
    cmdlet: String,
    params: Map<String, Value>,
}

impl Call<'_> {
    fn p(&self, allowed: &[&str]) -> CmdResult<Params<'_>> {
        Params::new(&self.params, &self.cmdlet, allowed)
    }

    fn run(&self) -> CmdResult<Vec<Value>> {
        let scale = self.emu.runtime().time_scale;
        let mut guard = self.emu.dir();
        let d = &mut *guard;
        advance_wipes(&mut d.exo, self.emu.cfg.exchange.wipe_ack_delay_ms, scale);
        let name = self.cmdlet.to_ascii_lowercase();
        match name.as_str() {
            "get-distributiongroup" => self.get_groups(d),
            "get-recipient" => {
                let p = self.p(&["Identity", "ResultSize"])?;
                match p.str("Identity")? {
                    Some(id) => {
                        if let Some(u) = find_recipient(d, &id) {
                            Ok(vec![recipient_json(u)])
                        } else if let Some(i) = find_group(&d.exo, &id) {
                            Ok(vec![group_json(&d.exo.groups[i])])
                        } else {
                            Err(couldnt_find(&id))
                        }
                    }
                    None => Ok(d
                        .users
                        .values()
                        .map(recipient_json)
                        .chain(d.exo.groups.iter().map(group_json))
                        .collect()),
                }
            }
            "new-distributiongroup" => self.new_group(d),
            "get-distributiongroupmember" => self.get_members(d),
            "add-distributiongroupmember" => self.add_member(d),
            "remove-distributiongroupmember" => self.remove_member(d),
            "update-distributiongroupmember" => self.update_members(d),
            "remove-distributiongroup" => self.remove_group(d),
            "set-distributiongroup" => self.set_group(d),
            "get-mobiledevicemailboxpolicy" => self.get_policy(d),
            "set-mobiledevicemailboxpolicy" => self.set_policy(d),
            "get-activesyncdeviceaccessrule" => self.get_rules(d),
            "new-activesyncdeviceaccessrule" => self.new_rule(d),
            "remove-activesyncdeviceaccessrule" => self.remove_rule(d),
            "get-activesyncorganizationsettings" => {
                self.p(&["Identity"])?;
                Ok(vec![json!({
                    "Identity": "Mobile Mailbox Settings",
                    "DefaultAccessLevel": d.exo.default_access_level.clone().unwrap_or_else(|| "Allow".into()),
                })])
            }
            "set-activesyncorganizationsettings" => {
                let p = self.p(&["DefaultAccessLevel", "Confirm"])?;
                if let Some(l) =
                    p.one_of("DefaultAccessLevel", &["Allow", "Block", "Quarantine"])?
                {
                    d.exo.default_access_level = Some(l);
                }
                Ok(vec![])
            }
            "get-casmailbox" => self.get_cas_mailbox(d),
            "set-casmailbox" => self.set_cas_mailbox(d),
            "get-mobiledevice" => self.get_devices(d, false),
            "get-mobiledevicestatistics" => self.get_devices(d, true),
            "clear-mobiledevice" => self.clear_device(d),
            _ => Err(bad(
                "System.Management.Automation.CommandNotFoundException",
                format!(
                    "The term '{}' is not recognized as a name of a cmdlet, function, script file, or executable program.",
                    self.cmdlet
                ),
            )),
        }
    }

    fn get_groups(&self, d: &Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Identity", "ResultSize"])?;
        match p.str("Identity")? {
            Some(id) => {
                let i = find_group(&d.exo, &id).ok_or_else(|| couldnt_find(&id))?;
                Ok(vec![group_json(&d.exo.groups[i])])
            }
            None => Ok(d.exo.groups.iter().map(group_json).collect()),
        }
    }

    fn new_group(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&[
            "Name",
            "Alias",
            "DisplayName",
            "Type",
            "Members",
            "ManagedBy",
            "PrimarySmtpAddress",
            "RequireSenderAuthenticationEnabled",
            "MemberJoinRestriction",
            "MemberDepartRestriction",
            "Notes",
            "Confirm",
        ])?;
        let name = p.required("Name", &self.cmdlet)?;
        if name.chars().count() > 64 {
            return Err(binding(format!(
                "Cannot validate argument on parameter 'Name'. The character length of the {} argument is too long. Shorten the character length of the argument so it is fewer than or equal to \"64\" characters, and then try the command again.",
                name.chars().count()
            )));
        }
        let alias = match p.str("Alias")? {
            Some(a) => a,
            None => name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-' || *c == '_')
                .collect(),
        };
        if !valid_alias(&alias) {
            return Err(validation(format!(
                "The value \"{alias}\" of property \"Alias\" is invalid. Alias may contain letters, digits and !, #, $, %, &, ', *, +, -, /, =, ?, ^, _, `, {{, |, }} or ~; periods are allowed but not at the start or end or twice in a row; at most 64 characters."
            )));
        }
        let display_name = p.str("DisplayName")?.unwrap_or_else(|| name.clone());
        if display_name.chars().count() > 256 {
            return Err(binding(
                "Cannot validate argument on parameter 'DisplayName'. The argument is longer than 256 characters.",
            ));
        }
        let security =
            p.one_of("Type", &["Distribution", "Security"])?.as_deref() == Some("Security");
        let initial = self.emu.cfg.tenant.initial_domain.to_ascii_lowercase();
        let default_domain = d
            .domains
            .values()
            .find(|x| x.is_default)
            .map_or(initial, |x| x.name.clone());
        let smtp = p
            .str("PrimarySmtpAddress")?
            .unwrap_or_else(|| format!("{alias}@{default_domain}"));
        let Some((local, domain)) = smtp.rsplit_once('@') else {
            return Err(validation(format!(
                "The email address \"{smtp}\" isn't correct. Please use this format: user name, the @ sign, followed by the domain name. For example, tonysmith@contoso.com or tony.smith@contoso.com."
            )));
        };
        if local.is_empty() || !valid_alias(local) || domain.is_empty() || !domain.contains('.') {
            return Err(validation(format!(
                "The email address \"{smtp}\" isn't correct. Please use this format: user name, the @ sign, followed by the domain name. For example, tonysmith@contoso.com or tony.smith@contoso.com."
            )));
        }
        if !d.verified_domain(domain) {
            return Err(bad(
                "Microsoft.Exchange.Configuration.Tasks.RecipientTaskException",
                format!(
                    "The domain '{domain}' of the email address \"{smtp}\" isn't an accepted domain for your organization."
                ),
            ));
        }
        let join = p
            .one_of(
                "MemberJoinRestriction",
                &["Open", "Closed", "ApprovalRequired"],
            )?
            .unwrap_or_else(|| "Closed".into());
        let require_auth = p
            .bool("RequireSenderAuthenticationEnabled")?
            .unwrap_or(true);
        let members = resolve_members(d, &p.list("Members")?.unwrap_or_default())?;
        if let Some(m) = p.list("ManagedBy")? {
            resolve_members(d, &m)?;
        }
        if d.exo
            .groups
            .iter()
            .any(|g| g.name.eq_ignore_ascii_case(&name))
        {
            return Err(bad(
                "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
                format!("The name \"{name}\" is already being used. Please try another name."),
            ));
        }
        if let Some(holder) = address_in_use(d, &d.exo, &smtp) {
            return Err(bad(
                "Microsoft.Exchange.Data.Directory.ProxyAddressExistsException",
                format!(
                    "The proxy address \"SMTP:{smtp}\" is already being used by the proxy addresses or LegacyExchangeDN of \"{holder}\". Please choose another proxy address."
                ),
            ));
        }
        let g = Group {
            guid: uuid::Uuid::new_v4().to_string(),
            external_id: uuid::Uuid::new_v4().to_string(),
            name,
            alias,
            display_name,
            primary_smtp: smtp,
            security,
            require_sender_auth: require_auth,
            join_restriction: join,
            members,
            created: now_rfc3339(),
        };
        let out = group_json(&g);
        d.exo.groups.push(g);
        Ok(vec![out])
    }

    fn group_index(&self, d: &Directory, p: &Params<'_>) -> CmdResult<usize> {
        let id = p.required("Identity", &self.cmdlet)?;
        find_group(&d.exo, &id).ok_or_else(|| not_found_on(&id))
    }

    fn get_members(&self, d: &Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Identity", "ResultSize"])?;
        let i = self.group_index(d, &p)?;
        Ok(d.exo.groups[i]
            .members
            .iter()
            .filter_map(|m| d.users.get(m))
            .map(recipient_json)
            .collect())
    }

    /// `-Identity` and `-Member` of Add-/Remove-DistributionGroupMember: the group's
    /// index, the member as given and its user id.
    fn member_call(&self, d: &Directory) -> CmdResult<(usize, String, String)> {
        let p = self.p(&[
            "Identity",
            "Member",
            "BypassSecurityGroupManagerCheck",
            "Confirm",
        ])?;
        let i = self.group_index(d, &p)?;
        let member = p.required("Member", &self.cmdlet)?;
        let u = find_recipient(d, &member).ok_or_else(|| couldnt_find(&member))?;
        Ok((i, member, u.id.clone()))
    }

    fn add_member(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let (i, member, uid) = self.member_call(d)?;
        let g = &mut d.exo.groups[i];
        if g.members.contains(&uid) {
            return Err(bad(
                "Microsoft.Exchange.Management.Tasks.MemberAlreadyExistsException",
                format!(
                    "The recipient \"{member}\" is already a member of the group \"{}\".",
                    g.name
                ),
            ));
        }
        g.members.push(uid);
        Ok(vec![])
    }

    fn remove_member(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let (i, member, uid) = self.member_call(d)?;
        let g = &mut d.exo.groups[i];
        let Some(pos) = g.members.iter().position(|m| *m == uid) else {
            return Err(bad(
                "Microsoft.Exchange.Management.Tasks.MemberNotFoundException",
                format!(
                    "The recipient \"{member}\" isn't a member of the group \"{}\".",
                    g.name
                ),
            ));
        };
        g.members.remove(pos);
        Ok(vec![])
    }

    fn update_members(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&[
            "Identity",
            "Members",
            "BypassSecurityGroupManagerCheck",
            "Confirm",
        ])?;
        let i = self.group_index(d, &p)?;
        let members = resolve_members(d, &p.list("Members")?.unwrap_or_default())?;
        d.exo.groups[i].members = members;
        Ok(vec![])
    }

    fn set_group(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&[
            "Identity",
            "DisplayName",
            "RequireSenderAuthenticationEnabled",
            "MemberJoinRestriction",
            "BypassSecurityGroupManagerCheck",
            "Confirm",
        ])?;
        let i = self.group_index(d, &p)?;
        let display = p.str("DisplayName")?;
        if let Some(n) = &display
            && (n.trim().is_empty() || n.chars().count() > 256)
        {
            return Err(binding(
                "Cannot validate argument on parameter 'DisplayName'. The argument is empty or longer than 256 characters.",
            ));
        }
        let auth = p.bool("RequireSenderAuthenticationEnabled")?;
        let join = p.one_of(
            "MemberJoinRestriction",
            &["Open", "Closed", "ApprovalRequired"],
        )?;
        let g = &mut d.exo.groups[i];
        if let Some(n) = display {
            g.display_name = n;
        }
        if let Some(a) = auth {
            g.require_sender_auth = a;
        }
        if let Some(j) = join {
            g.join_restriction = j;
        }
        Ok(vec![])
    }

    fn remove_group(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Identity", "BypassSecurityGroupManagerCheck", "Confirm"])?;
        let i = self.group_index(d, &p)?;
        d.exo.groups.remove(i);
        Ok(vec![])
    }

    fn get_policy(&self, d: &Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Identity"])?;
        if let Some(id) = p.str("Identity")?
            && !id.eq_ignore_ascii_case("Default")
        {
            return Err(couldnt_find(&id));
        }
        Ok(vec![policy_json(&d.exo.policy)])
    }

    fn set_policy(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&[
            "Identity",
            "PasswordEnabled",
            "MinPasswordLength",
            "MaxPasswordFailedAttempts",
            "MaxInactivityTimeLock",
            "AlphanumericPasswordRequired",
            "MinPasswordComplexCharacters",
            "PasswordHistory",
            "AllowSimplePassword",
            "RequireDeviceEncryption",
            "PasswordExpiration",
            "IsDefault",
            "Confirm",
        ])?;
        let id = p.required("Identity", &self.cmdlet)?;
        if !id.eq_ignore_ascii_case("Default") {
            return Err(not_found_on(&id));
        }
        // Validate everything before changing anything.
        let mut next = d.exo.policy.clone();
        if let Some(b) = p.bool("PasswordEnabled")? {
            next.password_enabled = b;
        }
        if let Some(v) = p.limit("MinPasswordLength", 1, 16, false)? {
            next.min_password_length = v;
        }
        if let Some(v) = p.limit("MaxPasswordFailedAttempts", 4, 16, true)? {
            next.max_password_failed_attempts = v;
        }
        if p.has("MaxInactivityTimeLock") {
            next.max_inactivity_minutes = match p.get("MaxInactivityTimeLock") {
                None => None,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("unlimited") => None,
                Some(v) => {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    let minutes = parse_timespan_minutes(&text).ok_or_else(|| {
                        binding(format!(
                            "Cannot process argument transformation on parameter 'MaxInactivityTimeLock'. Cannot convert value \"{text}\" to type \"Microsoft.Exchange.Data.Unlimited`1[System.TimeSpan]\"."
                        ))
                    })?;
                    if !(1..=60).contains(&minutes) {
                        return Err(validation(format!(
                            "The value of property 'MaxInactivityTimeLock' must be between 00:01:00 and 01:00:00, or Unlimited; {text} is outside that range."
                        )));
                    }
                    Some(minutes)
                }
            };
        }
        if let Some(b) = p.bool("AlphanumericPasswordRequired")? {
            next.alphanumeric_required = b;
        }
        if let Some(Some(v)) = p.limit("MinPasswordComplexCharacters", 1, 4, false)? {
            next.min_complex_characters = v;
        }
        if let Some(Some(v)) = p.limit("PasswordHistory", 0, 50, false)? {
            next.password_history = v;
        }
        if let Some(b) = p.bool("AllowSimplePassword")? {
            next.allow_simple_password = b;
        }
        if let Some(b) = p.bool("RequireDeviceEncryption")? {
            next.require_device_encryption = b;
        }
        if let Some(v) = p.limit("PasswordExpiration", 1, 730, true)? {
            next.password_expiration_days = v;
        }
        next.changed = now_rfc3339();
        d.exo.policy = next;
        Ok(vec![])
    }

    fn get_rules(&self, d: &Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Identity"])?;
        match p.str("Identity")? {
            Some(id) => {
                let r = d
                    .exo
                    .rules
                    .iter()
                    .find(|r| {
                        r.guid.eq_ignore_ascii_case(&id) || r.identity().eq_ignore_ascii_case(&id)
                    })
                    .ok_or_else(|| couldnt_find(&id))?;
                Ok(vec![rule_json(r)])
            }
            None => Ok(d.exo.rules.iter().map(rule_json).collect()),
        }
    }

    fn new_rule(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["QueryString", "Characteristic", "AccessLevel", "Confirm"])?;
        let query = p.required("QueryString", &self.cmdlet)?;
        let ch = p
            .one_of(
                "Characteristic",
                &[
                    "DeviceType",
                    "DeviceModel",
                    "DeviceOS",
                    "UserAgent",
                    "XMSWLHeader",
                ],
            )?
            .ok_or_else(|| {
                binding("Cannot bind argument to parameter 'Characteristic' because it is null.")
            })?;
        let level = p
            .one_of("AccessLevel", &["Allow", "Block", "Quarantine"])?
            .ok_or_else(|| {
                binding("Cannot bind argument to parameter 'AccessLevel' because it is null.")
            })?;
        if d.exo
            .rules
            .iter()
            .any(|r| r.characteristic == ch && r.query.eq_ignore_ascii_case(&query))
        {
            return Err(bad(
                "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
                format!(
                    "An Exchange ActiveSync device access rule for \"{query} ({ch})\" already exists."
                ),
            ));
        }
        let r = Rule {
            guid: uuid::Uuid::new_v4().to_string(),
            access_level: level,
            characteristic: ch,
            query,
            created: now_rfc3339(),
        };
        let out = rule_json(&r);
        d.exo.rules.push(r);
        Ok(vec![out])
    }

    fn remove_rule(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Identity", "Confirm"])?;
        let id = p.required("Identity", &self.cmdlet)?;
        let pos = d
            .exo
            .rules
            .iter()
            .position(|r| {
                r.guid.eq_ignore_ascii_case(&id) || r.identity().eq_ignore_ascii_case(&id)
            })
            .ok_or_else(|| not_found_on(&id))?;
        d.exo.rules.remove(pos);
        Ok(vec![])
    }

    fn cas_json(d: &Directory, u: &User) -> Value {
        let (allowed, blocked) = d.exo.device_lists.get(&u.id).cloned().unwrap_or_default();
        json!({
            "Identity": u.mail_nickname,
            "Name": u.mail_nickname,
            "PrimarySmtpAddress": primary_smtp(u),
            "ActiveSyncEnabled": true,
            "ActiveSyncAllowedDeviceIDs": allowed,
            "ActiveSyncBlockedDeviceIDs": blocked,
            "ExternalDirectoryObjectId": u.id,
            "Guid": u.id,
        })
    }

    fn get_cas_mailbox(&self, d: &Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Identity", "ResultSize"])?;
        match p.str("Identity")? {
            Some(id) => {
                let u = find_recipient(d, &id).ok_or_else(|| couldnt_find(&id))?;
                Ok(vec![Self::cas_json(d, u)])
            }
            None => Ok(d.users.values().map(|u| Self::cas_json(d, u)).collect()),
        }
    }

    /// `-ActiveSyncAllowedDeviceIDs` / `-ActiveSyncBlockedDeviceIDs`: a list replaces,
    /// `{"add": [...], "remove": [...]}` (a PowerShell hashtable) changes.
    fn set_cas_mailbox(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&[
            "Identity",
            "ActiveSyncAllowedDeviceIDs",
            "ActiveSyncBlockedDeviceIDs",
            "Confirm",
        ])?;
        let id = p.required("Identity", &self.cmdlet)?;
        let uid = find_recipient(d, &id)
            .ok_or_else(|| not_found_on(&id))?
            .id
            .clone();
        let change = |name: &str, current: &[String]| -> CmdResult<Vec<String>> {
            let strings = |v: &Value| -> CmdResult<Vec<String>> {
                match v {
                    Value::Null => Ok(Vec::new()),
                    Value::String(s) => Ok(vec![s.clone()]),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| {
                            x.as_str().map(str::to_string).ok_or_else(|| {
                                binding(format!("Cannot convert the value of parameter '{name}' to a list of strings."))
                            })
                        })
                        .collect(),
                    _ => Err(binding(format!(
                        "Cannot convert the value of parameter '{name}' to a list of strings."
                    ))),
                }
            };
            match p.get(name) {
                None => Ok(current.to_vec()),
                Some(Value::Object(m)) => {
                    let mut out = current.to_vec();
                    for (k, v) in m {
                        match k.to_ascii_lowercase().as_str() {
                            "add" => {
                                for x in strings(v)? {
                                    if !out.iter().any(|o| o.eq_ignore_ascii_case(&x)) {
                                        out.push(x);
                                    }
                                }
                            }
                            "remove" => {
                                let gone = strings(v)?;
                                out.retain(|o| !gone.iter().any(|g| g.eq_ignore_ascii_case(o)));
                            }
                            k if k.starts_with("@odata") => {}
                            _ => {
                                return Err(binding(format!(
                                    "Cannot process argument transformation on parameter '{name}': the hashtable key '{k}' is not add or remove."
                                )));
                            }
                        }
                    }
                    Ok(out)
                }
                Some(v) => strings(v),
            }
        };
        let (allowed, blocked) = d.exo.device_lists.get(&uid).cloned().unwrap_or_default();
        let allowed = change("ActiveSyncAllowedDeviceIDs", &allowed)?;
        let blocked = change("ActiveSyncBlockedDeviceIDs", &blocked)?;
        d.exo.device_lists.insert(uid, (allowed, blocked));
        Ok(vec![])
    }

    fn get_devices(&self, d: &Directory, stats: bool) -> CmdResult<Vec<Value>> {
        let p = self.p(&["Mailbox", "Identity", "ResultSize"])?;
        let selected: Vec<&Device> = if let Some(id) = p.str("Identity")? {
            let i = find_device(d, &d.exo, &id).ok_or_else(|| couldnt_find(&id))?;
            vec![&d.exo.devices[i]]
        } else if let Some(mb) = p.str("Mailbox")? {
            let u = find_recipient(d, &mb).ok_or_else(|| couldnt_find(&mb))?;
            d.exo.devices.iter().filter(|x| x.user_id == u.id).collect()
        } else if stats {
            return Err(binding(
                "Parameter set cannot be resolved using the specified named parameters. Get-MobileDeviceStatistics needs -Identity or -Mailbox.",
            ));
        } else {
            d.exo.devices.iter().collect()
        };
        Ok(selected
            .into_iter()
            .map(|dev| {
                if stats {
                    stats_json(d, &d.exo, dev)
                } else {
                    device_json(d, &d.exo, dev)
                }
            })
            .collect())
    }

    fn clear_device(&self, d: &mut Directory) -> CmdResult<Vec<Value>> {
        let p = self.p(&[
            "Identity",
            "AccountOnly",
            "Cancel",
            "Confirm",
            "NotificationEmailAddresses",
        ])?;
        let id = p.required("Identity", &self.cmdlet)?;
        let i = find_device(d, &d.exo, &id).ok_or_else(|| not_found_on(&id))?;
        let cancel = p.switch("Cancel")?;
        let account_only = p.switch("AccountOnly")?;
        let dev = &mut d.exo.devices[i];
        if cancel {
            match &dev.wipe {
                Wipe::Done { .. } => {
                    return Err(bad(
                        "Microsoft.Exchange.Management.Tasks.MobileDeviceWipeAlreadyCompletedException",
                        format!(
                            "The device '{id}' has already acknowledged the wipe request; it can't be canceled."
                        ),
                    ));
                }
                Wipe::Pending { .. } => dev.wipe = Wipe::None,
                Wipe::None => {}
            }
        } else if !matches!(dev.wipe, Wipe::Pending { .. }) {
            dev.wipe = Wipe::Pending {
                requested: now_rfc3339(),
                at: Instant::now(),
                account_only,
            };
        }
        Ok(vec![])
    }
}

fn parse_timespan_minutes(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return None;
    };
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    if h < 0 || !(0..60).contains(&m) || sec != 0 {
        return None;
    }
    Some(h * 60 + m)
}

/// Seeds devices for users already in the directory.
pub(crate) fn seed_devices(
    d: &mut Directory,
    devices: &[crate::config::SeedDevice],
) -> Result<(), String> {
    for s in devices {
        let user = find_recipient(d, &s.user)
            .ok_or_else(|| format!("seed device {}: no user {}", s.model, s.user))?;
        let now = now_rfc3339();
        let device_id = if s.device_id.is_empty() {
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .to_ascii_uppercase()
        } else {
            s.device_id.clone()
        };
        let dev = Device {
            guid: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            device_id,
            model: s.model.clone(),
            device_type: s.device_type.clone(),
            os: s.os.clone(),
            friendly_name: s.friendly_name.clone(),
            discovery: s.pending_discovery,
            first_sync: now.clone(),
            last_sync: now,
            wipe: Wipe::None,
        };
        d.exo.devices.push(dev);
    }
    Ok(())
}

/// Counts one request in the app's fixed window: `Ok(remaining)` or `Err(seconds until
/// the window resets)`; the second value is the seconds until the reset.
fn rate_limit(
    emu: &Emu,
    d: &mut Directory,
    app: &str,
    (enabled, scale): (bool, f64),
) -> (Result<f64, f64>, f64) {
    let cfg = &emu.cfg.exchange;
    let limit = f64::from(cfg.requests_per_window.max(1));
    let window = cfg.window_secs.max(1e-3) / scale.max(1e-9);
    let now = Instant::now();
    let entry = d
        .exo
        .buckets
        .entry(app.to_ascii_lowercase())
        .or_insert((0.0, None));
    let start = match entry.1 {
        Some(s) if now.duration_since(s).as_secs_f64() < window => s,
        _ => {
            entry.0 = 0.0;
            entry.1 = Some(now);
            now
        }
    };
    let reset_in = (window - now.duration_since(start).as_secs_f64()).max(0.0);
    if !enabled {
        return (Ok(limit), reset_in);
    }
    if entry.0 < limit {
        entry.0 += 1.0;
        (Ok(limit - entry.0), reset_in)
    } else {
        (Err(reset_in), reset_in)
    }
}

fn respond(
    status: StatusCode,
    body: &Value,
    limit: u32,
    remaining: f64,
    reset_in: f64,
) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"),
    );
    let reset =
        OffsetDateTime::now_utc() + time::Duration::seconds_f64(reset_in.clamp(0.0, 86_400.0));
    for (k, v) in [
        ("rate-limit-limit", limit.to_string()),
        (
            "rate-limit-remaining",
            (remaining.max(0.0).floor() as u64).to_string(),
        ),
        (
            "rate-limit-reset",
            reset.format(&Rfc3339).unwrap_or_default(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

/// `POST /adminapi/beta/{tenant}/InvokeCommand`.
pub(crate) async fn invoke(
    State(emu): State<Arc<Emu>>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Extension(claims): Extension<Claims>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let limit = emu.cfg.exchange.requests_per_window;
    let fail = |e: CmdletError, remaining: f64, reset: f64| {
        respond(e.status, &e.body(&ctx.request_id), limit, remaining, reset)
    };
    let known_tenant =
        tenant.eq_ignore_ascii_case(&emu.cfg.tenant.id) || emu.dir().verified_domain(&tenant);
    if !known_tenant {
        return fail(
            CmdletError {
                status: StatusCode::NOT_FOUND,
                code: "NotFound",
                exception: "Microsoft.Exchange.Admin.OData.Core.TenantNotFoundException",
                message: format!("The tenant '{tenant}' was not found."),
            },
            0.0,
            0.0,
        );
    }
    let is_admin =
        claims.has_role("Exchange Administrator") || claims.has_role("Global Administrator");
    if !claims.has_any_permission(&["Exchange.ManageAsApp"]) || !is_admin {
        let mut resp = fail(
            CmdletError {
                status: StatusCode::FORBIDDEN,
                code: "Forbidden",
                exception: "Microsoft.Exchange.Configuration.Tasks.AuthorizationFailedException",
                message: "The app needs the Exchange.ManageAsApp permission and the Exchange Administrator role to run cmdlets.".into(),
            },
            0.0,
            0.0,
        );
        *resp.status_mut() = StatusCode::FORBIDDEN;
        return resp;
    }
    let settings = {
        let rt = emu.runtime();
        (rt.throttling_enabled, rt.time_scale)
    };
    let (verdict, reset) = {
        let mut d = emu.dir();
        rate_limit(&emu, &mut d, &claims.appid, settings)
    };
    let remaining = match verdict {
        Ok(r) => r,
        Err(wait) => {
            emu.stats.count("exchange_throttled");
            let mut resp = fail(
                CmdletError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "TooManyRequests",
                    exception: "Microsoft.Exchange.Admin.OData.Core.ThrottlingException",
                    message:
                        "The request was throttled; retry after the time given in Retry-After."
                            .into(),
                },
                0.0,
                reset,
            );
            let secs = wait.ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
    };
    let bytes = match read_bytes(body, emu.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return fail(
                bad(
                    "System.ArgumentException",
                    "The request body could not be read.",
                ),
                remaining,
                reset,
            );
        }
    };
    let parsed: Option<(String, Map<String, Value>)> =
        serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
            let input = v.get("CmdletInput")?;
            let name = input.get("CmdletName")?.as_str()?.to_string();
            let params = match input.get("Parameters") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => return None,
            };
            Some((name, params))
        });
    let Some((cmdlet, params)) = parsed else {
        return fail(
            bad(
                "System.ArgumentException",
                "The request body must be {\"CmdletInput\":{\"CmdletName\":\"...\",\"Parameters\":{...}}}.",
            ),
            remaining,
            reset,
        );
    };
    emu.stats.count(&format!("exchange:{cmdlet}"));
    // App-only calls are routed by the anchor mailbox header; count the calls without it
    // (tests assert the client always sends it).
    let anchor = format!("APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{tenant}");
    let anchored = headers
        .get("x-anchormailbox")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(&anchor));
    if !anchored {
        emu.stats.count("exchange_without_anchor");
    }
    let call = Call {
        emu: &emu,
        cmdlet,
        params,
    };
    let rows = match call.run() {
        Ok(r) => r,
        Err(e) => return fail(e, remaining, reset),
    };
    // Paging: Prefer odata.maxpagesize (1000 at most), $skiptoken = offset.
    let page = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .and_then(|p| {
            p.split(',')
                .find_map(|x| x.trim().strip_prefix("odata.maxpagesize="))
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(1000)
        .clamp(1, 1000);
    let offset = match query.get("$skiptoken") {
        None => 0,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= rows.len() => n,
            _ => {
                return fail(
                    bad(
                        "System.ArgumentException",
                        format!("The skip token '{t}' is not valid."),
                    ),
                    remaining,
                    reset,
                );
            }
        },
    };
    let end = (offset + page).min(rows.len());
    let mut out = json!({
        "@odata.context": format!("{}/adminapi/beta/{tenant}/$metadata#Collection(Exchange.GenericHashTable)", emu.urls.exchange),
        "@adminapi.warnings": [],
        "value": rows[offset..end].to_vec(),
    });
    if end < rows.len() {
        out["@odata.nextLink"] = json!(format!(
            "{}/adminapi/beta/{tenant}/InvokeCommand?$skiptoken={end}",
            emu.urls.exchange
        ));
    }
    respond(StatusCode::OK, &out, limit, remaining, reset)
}

/// The admin view of Exchange (`GET /_emulator/state` includes it).
pub(crate) fn state_json(d: &Directory) -> Value {
    json!({
        "groups": d.exo.groups.iter().map(|g| {
            let mut v = group_json(g);
            v["Members"] = json!(g.members.iter().filter_map(|m| d.users.get(m)).map(primary_smtp).collect::<Vec<_>>());
            v
        }).collect::<Vec<_>>(),
        "policy": policy_json(&d.exo.policy),
        "rules": d.exo.rules.iter().map(rule_json).collect::<Vec<_>>(),
        "devices": d.exo.devices.iter().map(|dev| stats_json(d, &d.exo, dev)).collect::<Vec<_>>(),
    })
}
