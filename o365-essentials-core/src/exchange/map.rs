//! Pure mappings between the admin API's JSON and the model, and from its error bodies
//! to [`Error`].

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, ErrorCode, Result, ServiceDetail};
use crate::json::str_field as s;
use crate::model::{
    AccessLevel, AccessRule, DeviceAccessState, DeviceCharacteristic, DevicePolicy,
    DistributionGroup, Limit, MobileDevice, WipeStatus,
};

fn unexpected(what: &str) -> Error {
    Error::new(
        ErrorCode::UnexpectedResponse,
        format!("Exchange answered without {what}"),
    )
}

/// An admin API error body → [`Error`]. The service code kept is the cmdlet's exception
/// type (`Microsoft.Exchange.…ManagementObjectNotFoundException`) when there is one.
pub(crate) fn exchange_error(
    status: u16,
    body: &Value,
    request_id: Option<&str>,
    what: &str,
) -> Error {
    let err = body.get("error").unwrap_or(&Value::Null);
    let code = s(err, "code").unwrap_or_default();
    let top_message = s(err, "message").unwrap_or_default();
    let detail = err
        .get("details")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    // "Ex6F9304|Microsoft.Exchange.…Exception|The operation couldn't be performed…"
    let parts: Vec<&str> = detail.splitn(3, '|').collect();
    let (exception, text) = match parts.as_slice() {
        [_, exc, text] => (exc.to_string(), text.to_string()),
        _ if !detail.is_empty() => (String::new(), detail.to_string()),
        _ => (String::new(), top_message.clone()),
    };
    let short = exception.rsplit('.').next().unwrap_or("").to_string();
    let lower = text.to_lowercase();
    let rid = request_id.map(str::to_string).or_else(|| {
        err.get("innererror")
            .and_then(|i| {
                i.as_object().and_then(|o| {
                    o.iter()
                        .find(|(k, _)| k.ends_with(".requestId"))
                        .and_then(|(_, v)| v.as_str())
                })
            })
            .map(str::to_string)
    });
    let ecode = match status {
        401 => ErrorCode::Auth,
        403 => ErrorCode::PermissionDenied,
        429 => ErrorCode::Throttled,
        500 | 502 | 503 => ErrorCode::ServiceUnavailable,
        504 => ErrorCode::Timeout,
        _ if short.contains("NotFound") || status == 404 => ErrorCode::NotFound,
        _ if short.contains("AlreadyExists") || short.contains("ProxyAddressExists") => {
            ErrorCode::AlreadyExists
        }
        _ if short.contains("WipeAlreadyCompleted") => ErrorCode::Conflict,
        _ if lower.contains("accepted domain") => ErrorCode::DomainNotVerified,
        400 | 405 | 413 | 415 => ErrorCode::InvalidInput,
        409 => ErrorCode::Conflict,
        _ => ErrorCode::UnexpectedResponse,
    };
    let message = match ecode {
        ErrorCode::Auth => format!("{what}: Exchange refused the access token ({text})"),
        ErrorCode::PermissionDenied => format!(
            "{what}: the app needs the Exchange.ManageAsApp permission and the Exchange Administrator role ({text})"
        ),
        ErrorCode::Throttled => format!("{what}: Exchange throttled the request"),
        ErrorCode::ServiceUnavailable => format!("{what}: Exchange Online is unavailable ({text})"),
        ErrorCode::Timeout => format!("{what}: Exchange Online timed out"),
        ErrorCode::UnexpectedResponse => format!("{what}: Exchange answered {status} ({text})"),
        _ => format!("{what}: {text}"),
    };
    Error::new(ecode, message).with_service(ServiceDetail {
        code: if exception.is_empty() {
            code
        } else {
            exception
        },
        message: text,
        request_id: rid,
        status: Some(status),
    })
}

/// A `Get-DistributionGroup` row (members are filled in separately).
pub(crate) fn group(v: &Value) -> Result<DistributionGroup> {
    Ok(DistributionGroup {
        id: s(v, "Guid")
            .or_else(|| s(v, "ExternalDirectoryObjectId"))
            .ok_or_else(|| unexpected("a group's Guid"))?,
        name: s(v, "Name").unwrap_or_default(),
        alias: s(v, "Alias").unwrap_or_default(),
        display_name: s(v, "DisplayName").unwrap_or_default(),
        primary_smtp_address: s(v, "PrimarySmtpAddress").unwrap_or_default(),
        allow_external_senders: !v
            .get("RequireSenderAuthenticationEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        members: Vec::new(),
        member_user_names: Vec::new(),
    })
}

fn limit_u8(v: Option<&Value>, what: &str) -> Result<Limit<u8>> {
    match v {
        None | Some(Value::Null) => Ok(Limit::Unlimited),
        Some(Value::String(x)) if x.eq_ignore_ascii_case("unlimited") => Ok(Limit::Unlimited),
        Some(Value::String(x)) => x
            .trim()
            .parse::<u8>()
            .map(Limit::Value)
            .map_err(|_| unexpected(&format!("a number for {what} (got `{x}`)"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .map(Limit::Value)
            .ok_or_else(|| unexpected(&format!("a small number for {what}"))),
        Some(_) => Err(unexpected(&format!("a value for {what}"))),
    }
}

/// `"00:15:00"` or `"Unlimited"` → minutes.
fn timespan_minutes(v: Option<&Value>) -> Result<Limit<u8>> {
    match v {
        None | Some(Value::Null) => Ok(Limit::Unlimited),
        Some(Value::String(x)) if x.eq_ignore_ascii_case("unlimited") => Ok(Limit::Unlimited),
        Some(Value::String(x)) => {
            let parts: Vec<&str> = x.split(':').collect();
            let parsed = match parts.as_slice() {
                [h, m, sec] => match (h.parse::<u32>(), m.parse::<u32>(), sec.parse::<f64>()) {
                    (Ok(h), Ok(m), Ok(_)) => u8::try_from(h * 60 + m).ok(),
                    _ => None,
                },
                _ => None,
            };
            parsed.map(Limit::Value).ok_or_else(|| {
                unexpected(&format!(
                    "a time span for MaxInactivityTimeLock (got `{x}`)"
                ))
            })
        }
        Some(_) => Err(unexpected("a time span for MaxInactivityTimeLock")),
    }
}

fn flag(v: &Value, k: &str) -> bool {
    match v.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(x)) => x.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A `Get-MobileDeviceMailboxPolicy` row.
pub(crate) fn policy(v: &Value) -> Result<DevicePolicy> {
    if !v.is_object() {
        return Err(unexpected("the Default policy"));
    }
    let min = match v.get("MinPasswordLength") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Some(Value::String(x)) => x.trim().parse().ok(),
        Some(_) => None,
    };
    Ok(DevicePolicy {
        password_enabled: flag(v, "PasswordEnabled"),
        min_password_length: min,
        max_password_failed_attempts: limit_u8(
            v.get("MaxPasswordFailedAttempts"),
            "MaxPasswordFailedAttempts",
        )?,
        max_inactivity_lock_minutes: timespan_minutes(v.get("MaxInactivityTimeLock"))?,
        alphanumeric_password_required: flag(v, "AlphanumericPasswordRequired"),
    })
}

pub(crate) fn characteristic_name(c: DeviceCharacteristic) -> &'static str {
    match c {
        DeviceCharacteristic::DeviceModel => "DeviceModel",
        DeviceCharacteristic::DeviceType => "DeviceType",
        DeviceCharacteristic::DeviceOs => "DeviceOS",
        DeviceCharacteristic::UserAgent => "UserAgent",
        DeviceCharacteristic::XmsWlHeader => "XMSWLHeader",
    }
}

pub(crate) fn access_level_name(l: AccessLevel) -> &'static str {
    match l {
        AccessLevel::Allow => "Allow",
        AccessLevel::Block => "Block",
        AccessLevel::Quarantine => "Quarantine",
    }
}

fn access_level(v: &str) -> Option<AccessLevel> {
    [
        AccessLevel::Allow,
        AccessLevel::Block,
        AccessLevel::Quarantine,
    ]
    .into_iter()
    .find(|l| access_level_name(*l).eq_ignore_ascii_case(v))
}

/// A `Get-ActiveSyncOrganizationSettings` row → its default access level.
pub(crate) fn default_access_level(v: &Value) -> Result<AccessLevel> {
    let level = s(v, "DefaultAccessLevel").ok_or_else(|| unexpected("DefaultAccessLevel"))?;
    access_level(&level).ok_or_else(|| unexpected(&format!("a known access level (got `{level}`)")))
}

/// A `Get-ActiveSyncDeviceAccessRule` row.
pub(crate) fn rule(v: &Value) -> Result<AccessRule> {
    let ch = s(v, "Characteristic").unwrap_or_default();
    let characteristic = [
        DeviceCharacteristic::DeviceModel,
        DeviceCharacteristic::DeviceType,
        DeviceCharacteristic::DeviceOs,
        DeviceCharacteristic::UserAgent,
        DeviceCharacteristic::XmsWlHeader,
    ]
    .into_iter()
    .find(|c| characteristic_name(*c).eq_ignore_ascii_case(&ch))
    .ok_or_else(|| unexpected(&format!("a known rule characteristic (got `{ch}`)")))?;
    let level = s(v, "AccessLevel").unwrap_or_default();
    let access_level = [
        AccessLevel::Allow,
        AccessLevel::Block,
        AccessLevel::Quarantine,
    ]
    .into_iter()
    .find(|l| access_level_name(*l).eq_ignore_ascii_case(&level))
    .ok_or_else(|| unexpected(&format!("a known access level (got `{level}`)")))?;
    Ok(AccessRule {
        id: s(v, "Guid")
            .or_else(|| s(v, "Identity"))
            .ok_or_else(|| unexpected("a rule's Guid"))?,
        access_level,
        characteristic,
        query_string: s(v, "QueryString").unwrap_or_default(),
    })
}

/// `Status` of `Get-MobileDeviceStatistics` → where the wipe stands.
pub(crate) fn wipe_status(v: &Value) -> WipeStatus {
    match s(v, "Status").as_deref() {
        Some(x) if x.eq_ignore_ascii_case("DeviceWipePending") => WipeStatus::Pending,
        Some(x) if x.eq_ignore_ascii_case("DeviceWipeSucceeded") => WipeStatus::Succeeded,
        _ => WipeStatus::None,
    }
}

fn access_state(v: &str) -> DeviceAccessState {
    match v {
        x if x.eq_ignore_ascii_case("Allowed") => DeviceAccessState::Allowed,
        x if x.eq_ignore_ascii_case("Blocked") => DeviceAccessState::Blocked,
        x if x.eq_ignore_ascii_case("Quarantined") => DeviceAccessState::Quarantined,
        _ => DeviceAccessState::DeviceDiscovery,
    }
}

/// A `Get-MobileDevice` row → (the owner's mailbox, the ActiveSync `DeviceId`). The
/// mailbox is the first part of the device's `Identity`
/// (`alex\ExchangeActiveSyncDevices\iPhone§F4…`).
pub(crate) fn device_owner(d: &Value) -> Option<(String, String)> {
    let identity = s(d, "Identity")?;
    let mailbox = identity
        .split('\\')
        .next()
        .filter(|m| !m.is_empty() && *m != identity)?;
    Some((
        mailbox.to_string(),
        s(d, "DeviceId").filter(|x| !x.is_empty())?,
    ))
}

/// A `Get-MobileDevice` row with its statistics row.
pub(crate) fn device(d: &Value, stats: Option<&Value>, upn: &str) -> Result<MobileDevice> {
    let last_sync = stats
        .and_then(|st| s(st, "LastSuccessSync"))
        .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok());
    Ok(MobileDevice {
        id: s(d, "Guid").ok_or_else(|| unexpected("a device's Guid"))?,
        user_principal_name: upn.to_string(),
        model: s(d, "DeviceModel").unwrap_or_default(),
        device_type: s(d, "DeviceType").unwrap_or_default(),
        os: s(d, "DeviceOS").unwrap_or_default(),
        friendly_name: s(d, "FriendlyName").filter(|x| !x.is_empty()),
        access_state: access_state(&s(d, "DeviceAccessState").unwrap_or_default()),
        wipe_status: stats.map_or(WipeStatus::None, wipe_status),
        last_sync,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cmdlet_errors_map_by_exception() {
        let body = |exc: &str, msg: &str| json!({"error": {"code": "BadRequest", "message": "Error executing cmdlet", "details": [{"code": "Client", "target": "", "message": format!("Ex1A2B3C|{exc}|{msg}")}], "innererror": {"@Microsoft.Exchange.Admin.OData.Core.ODataServiceException.requestId": "rid-1"}}});
        let cases = [
            (
                404,
                "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
                "The operation couldn't be performed because object 'x' couldn't be found on 'S'.",
                ErrorCode::NotFound,
            ),
            (
                400,
                "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
                "The name \"Sales\" is already being used.",
                ErrorCode::AlreadyExists,
            ),
            (
                400,
                "Microsoft.Exchange.Data.Directory.ProxyAddressExistsException",
                "The proxy address is already being used",
                ErrorCode::AlreadyExists,
            ),
            (
                400,
                "Microsoft.Exchange.Configuration.Tasks.RecipientTaskException",
                "The domain 'x.com' isn't an accepted domain for your organization.",
                ErrorCode::DomainNotVerified,
            ),
            (
                400,
                "System.Management.Automation.ParameterBindingException",
                "Cannot validate argument on parameter 'Name'.",
                ErrorCode::InvalidInput,
            ),
            (
                400,
                "Microsoft.Exchange.Management.Tasks.MobileDeviceWipeAlreadyCompletedException",
                "already acknowledged",
                ErrorCode::Conflict,
            ),
            (
                403,
                "Microsoft.Exchange.Configuration.Tasks.AuthorizationFailedException",
                "no role",
                ErrorCode::PermissionDenied,
            ),
            (503, "X", "down", ErrorCode::ServiceUnavailable),
            (418, "X", "teapot", ErrorCode::UnexpectedResponse),
        ];
        for (status, exc, msg, want) in cases {
            let e = exchange_error(status, &body(exc, msg), None, "doing it");
            assert_eq!(e.code(), want, "{exc}");
            let sd = e.service().unwrap();
            assert_eq!(sd.code, exc);
            assert_eq!(sd.request_id.as_deref(), Some("rid-1"));
            assert!(e.message().starts_with("doing it"));
        }
        let bare = exchange_error(500, &json!("not json"), Some("r"), "x");
        assert_eq!(bare.code(), ErrorCode::ServiceUnavailable);
    }

    #[test]
    fn policies_and_devices_map() {
        let p = policy(&json!({"PasswordEnabled": true, "MinPasswordLength": 6, "MaxPasswordFailedAttempts": "8", "MaxInactivityTimeLock": "00:15:00", "AlphanumericPasswordRequired": false})).unwrap();
        assert_eq!(p.min_password_length, Some(6));
        assert_eq!(p.max_password_failed_attempts, Limit::Value(8));
        assert_eq!(p.max_inactivity_lock_minutes, Limit::Value(15));
        let u = policy(&json!({"PasswordEnabled": false, "MinPasswordLength": null, "MaxPasswordFailedAttempts": "Unlimited", "MaxInactivityTimeLock": "01:00:00"})).unwrap();
        assert_eq!(u.max_password_failed_attempts, Limit::Unlimited);
        assert_eq!(u.max_inactivity_lock_minutes, Limit::Value(60));
        assert!(policy(&json!({"MaxInactivityTimeLock": "soon"})).is_err());
        assert!(policy(&Value::Null).is_err());
        let d = device(
            &json!({"Guid": "g1", "DeviceModel": "iPhone15,2", "DeviceType": "iPhone", "DeviceOS": "iOS 17", "DeviceAccessState": "Blocked"}),
            Some(&json!({"Guid": "g1", "Status": "DeviceWipePending", "LastSuccessSync": "2026-11-26T08:00:00Z"})),
            "a@b.c",
        )
        .unwrap();
        assert_eq!(d.access_state, DeviceAccessState::Blocked);
        assert_eq!(d.wipe_status, WipeStatus::Pending);
        assert!(d.last_sync.is_some());
        assert_eq!(
            device_owner(
                &json!({"Identity": "alex\\ExchangeActiveSyncDevices\\iPhone§A1", "DeviceId": "A1"})
            ),
            Some(("alex".to_string(), "A1".to_string()))
        );
        assert_eq!(
            device_owner(&json!({"Identity": "no-backslash", "DeviceId": "A1"})),
            None
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        #[test]
        fn answers_never_panic(v in crate::testing::json_with_keys(&[
            "error", "code", "message", "details", "innererror", "value", "Guid", "Name",
            "Status", "DeviceAccessState", "MinPasswordLength", "MaxPasswordFailedAttempts",
            "MaxInactivityTimeLock", "PasswordEnabled", "Characteristic", "AccessLevel",
            "LastSuccessSync", "RequireSenderAuthenticationEnabled", "QueryString",
        ]), status in 100u16..600) {
            let e = exchange_error(status, &v, None, "x");
            proptest::prop_assert!(e.message().starts_with('x'));
            let _ = group(&v);
            let _ = policy(&v);
            let _ = rule(&v);
            let _ = default_access_level(&v);
            let _ = wipe_status(&v);
            let _ = device(&v, Some(&v), "u@x.y");
            let _ = device_owner(&v);
        }
    }
}
