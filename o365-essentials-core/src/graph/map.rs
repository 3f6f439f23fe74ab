//! Pure mappings between Graph JSON and the model, and from Graph error bodies to
//! [`Error`] — one exhaustive place, unit-tested.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::error::{Error, ErrorCode, ServiceDetail};
use crate::json::str_field as s;
use crate::model::{
    AccountUpdate, AdminRoleHolder, Anchor, DnsRecord, Domain, DomainService, NewOnlineAccount,
    OnlineAccount, OnlineAccountId, Organization, RecordData, RecordPurpose, Sku,
};

/// The user properties the backend reads.
pub(crate) const USER_SELECT: &str = "id,userPrincipalName,displayName,givenName,surname,mail,mailNickname,proxyAddresses,accountEnabled,usageLocation,onPremisesImmutableId,assignedLicenses";

fn unexpected(what: &str) -> Error {
    Error::new(
        ErrorCode::UnexpectedResponse,
        format!("Graph answered without {what}"),
    )
}

/// A Graph `user` → [`OnlineAccount`].
pub(crate) fn account(v: &Value) -> Result<OnlineAccount, Error> {
    Ok(OnlineAccount {
        id: OnlineAccountId(s(v, "id").ok_or_else(|| unexpected("a user id"))?),
        user_principal_name: s(v, "userPrincipalName").unwrap_or_default(),
        display_name: s(v, "displayName").unwrap_or_default(),
        given_name: s(v, "givenName"),
        surname: s(v, "surname"),
        mail: s(v, "mail"),
        mail_nickname: s(v, "mailNickname"),
        proxy_addresses: v
            .get("proxyAddresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        account_enabled: v
            .get("accountEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        usage_location: s(v, "usageLocation"),
        immutable_id: s(v, "onPremisesImmutableId").map(Anchor),
        assigned_skus: v
            .get("assignedLicenses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("skuId").and_then(Value::as_str))
                    .filter_map(|id| Uuid::parse_str(id).ok())
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Fills what a create's answer leaves out (Graph returns the default property set)
/// from what was asked for.
pub(crate) fn complete_created(mut a: OnlineAccount, asked: &NewOnlineAccount) -> OnlineAccount {
    a.mail_nickname = a
        .mail_nickname
        .or_else(|| Some(asked.mail_nickname.clone()));
    a.account_enabled = asked.account_enabled;
    a.usage_location = a.usage_location.or_else(|| asked.usage_location.clone());
    a.immutable_id = a.immutable_id.or_else(|| asked.immutable_id.clone());
    a.given_name = a.given_name.or_else(|| asked.given_name.clone());
    a.surname = a.surname.or_else(|| asked.surname.clone());
    a
}

/// The body of `POST /users`.
pub(crate) fn new_account_body(a: &NewOnlineAccount, password: &str) -> Value {
    let mut m = Map::new();
    m.insert("accountEnabled".into(), json!(a.account_enabled));
    m.insert("displayName".into(), json!(a.display_name));
    m.insert("mailNickname".into(), json!(a.mail_nickname));
    m.insert("userPrincipalName".into(), json!(a.user_principal_name));
    m.insert(
        "passwordProfile".into(),
        json!({"password": password, "forceChangePasswordNextSignIn": false}),
    );
    if let Some(v) = &a.given_name {
        m.insert("givenName".into(), json!(v));
    }
    if let Some(v) = &a.surname {
        m.insert("surname".into(), json!(v));
    }
    if let Some(v) = &a.usage_location {
        m.insert("usageLocation".into(), json!(v));
    }
    if let Some(v) = &a.immutable_id {
        m.insert("onPremisesImmutableId".into(), json!(v.as_str()));
    }
    Value::Object(m)
}

/// The body of `PATCH /users/{id}`.
pub(crate) fn update_body(u: &AccountUpdate) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    };
    put("userPrincipalName", &u.user_principal_name);
    put("displayName", &u.display_name);
    put("givenName", &u.given_name);
    put("surname", &u.surname);
    put("mailNickname", &u.mail_nickname);
    put("usageLocation", &u.usage_location);
    put(
        "onPremisesImmutableId",
        &u.immutable_id.as_ref().map(|a| a.0.clone()),
    );
    Value::Object(m)
}

/// A `subscribedSku` → [`Sku`].
pub(crate) fn sku(v: &Value) -> Result<Sku, Error> {
    Ok(Sku {
        sku_id: s(v, "skuId")
            .and_then(|x| Uuid::parse_str(&x).ok())
            .ok_or_else(|| unexpected("a skuId"))?,
        sku_part_number: s(v, "skuPartNumber").unwrap_or_default(),
        enabled_units: v
            .pointer("/prepaidUnits/enabled")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32,
        consumed_units: v.get("consumedUnits").and_then(Value::as_u64).unwrap_or(0) as u32,
        capability_status: s(v, "capabilityStatus").unwrap_or_default(),
    })
}

fn service(name: &str) -> Option<DomainService> {
    serde_json::from_value(json!(name)).ok()
}

/// A `domain` → [`Domain`].
pub(crate) fn domain(v: &Value) -> Result<Domain, Error> {
    Ok(Domain {
        name: s(v, "id").ok_or_else(|| unexpected("a domain id"))?,
        is_verified: v
            .get("isVerified")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        is_default: v.get("isDefault").and_then(Value::as_bool).unwrap_or(false),
        is_initial: v.get("isInitial").and_then(Value::as_bool).unwrap_or(false),
        authentication_type: s(v, "authenticationType").unwrap_or_else(|| "Managed".into()),
        supported_services: v
            .get("supportedServices")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(service)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A `domainDnsRecord` (any subtype) → [`DnsRecord`]; unknown record types are skipped.
pub(crate) fn dns_record(v: &Value, purpose: RecordPurpose) -> Option<DnsRecord> {
    let label = s(v, "label")?;
    let data = match v.get("recordType").and_then(Value::as_str)? {
        "Mx" => RecordData::Mx {
            exchange: s(v, "mailExchange")?,
            preference: v.get("preference")?.as_u64()? as u16,
        },
        "Txt" => RecordData::Txt {
            text: s(v, "text")?,
        },
        "CName" => RecordData::Cname {
            target: s(v, "canonicalName")?,
        },
        "Srv" => RecordData::Srv {
            service: s(v, "service")?,
            protocol: s(v, "protocol")?,
            priority: v.get("priority")?.as_u64()? as u16,
            weight: v.get("weight")?.as_u64()? as u16,
            port: v.get("port")?.as_u64()? as u16,
            target: s(v, "nameTarget")?,
        },
        _ => return None,
    };
    let name = match &data {
        RecordData::Srv {
            service, protocol, ..
        } => format!("{service}.{protocol}.{label}"),
        _ => label,
    };
    Some(DnsRecord {
        name,
        ttl: v.get("ttl").and_then(Value::as_u64).unwrap_or(3600) as u32,
        data,
        purpose,
        supported_service: s(v, "supportedService").filter(|x| x != "None"),
        optional: v
            .get("isOptional")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// An `organization` → [`Organization`].
pub(crate) fn organization(v: &Value) -> Result<Organization, Error> {
    let domains: Vec<&Value> = v
        .get("verifiedDomains")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let name_of =
        |pred: &dyn Fn(&Value) -> bool| domains.iter().find(|d| pred(d)).and_then(|d| s(d, "name"));
    Ok(Organization {
        tenant_id: s(v, "id").ok_or_else(|| unexpected("an organization id"))?,
        display_name: s(v, "displayName").unwrap_or_default(),
        initial_domain: name_of(&|d| d.get("isInitial").and_then(Value::as_bool) == Some(true))
            .unwrap_or_default(),
        default_domain: name_of(&|d| d.get("isDefault").and_then(Value::as_bool) == Some(true))
            .unwrap_or_default(),
        verified_domains: domains.iter().filter_map(|d| s(d, "name")).collect(),
        country: s(v, "countryLetterCode"),
    })
}

/// Adds a role to the holders list.
pub(crate) fn add_role_holder(holders: &mut Vec<AdminRoleHolder>, member: &Value, role: &str) {
    let Some(id) = s(member, "id") else { return };
    match holders.iter_mut().find(|h| h.id.0 == id) {
        Some(h) => h.roles.push(role.to_string()),
        None => holders.push(AdminRoleHolder {
            id: OnlineAccountId(id),
            user_principal_name: s(member, "userPrincipalName").unwrap_or_default(),
            roles: vec![role.to_string()],
        }),
    }
}

/// Maps a Graph error answer to an [`Error`], keeping Graph's code, message and
/// request-id. `what` says what was being done, for the message.
pub(crate) fn graph_error(
    status: u16,
    body: &Value,
    request_id: Option<&str>,
    what: &str,
) -> Error {
    let err = body.get("error").unwrap_or(&Value::Null);
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let rid = request_id.map(str::to_string).or_else(|| {
        err.pointer("/innerError/request-id")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let conflict_target = err
        .get("details")
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .find(|x| x.get("code").and_then(Value::as_str) == Some("ObjectConflict"))
        })
        .and_then(|x| x.get("target").and_then(Value::as_str))
        .map(str::to_string)
        .or_else(|| {
            message
                .strip_prefix("Another object with the same value for property ")
                .and_then(|r| r.split_whitespace().next())
                .map(|p| p.to_string())
        });
    let lower = message.to_lowercase();
    let (ecode, text) = match status {
        401 => (
            ErrorCode::Auth,
            format!("{what}: Microsoft 365 refused the access token ({message})"),
        ),
        403 => (
            ErrorCode::PermissionDenied,
            format!("{what}: the app lacks a permission or directory role for this ({message})"),
        ),
        404 => (ErrorCode::NotFound, format!("{what}: not found")),
        410 => (
            ErrorCode::PreconditionFailed,
            format!("{what}: the delta link expired; a full resync is needed"),
        ),
        429 => (
            ErrorCode::Throttled,
            format!("{what}: Microsoft 365 throttled the request"),
        ),
        500 | 502 | 503 => (
            ErrorCode::ServiceUnavailable,
            format!("{what}: Microsoft 365 is unavailable ({message})"),
        ),
        504 => (
            ErrorCode::Timeout,
            format!("{what}: Microsoft 365 timed out"),
        ),
        400 if conflict_target.is_some() => {
            let t = conflict_target.clone().unwrap_or_default();
            (
                ErrorCode::AlreadyExists,
                format!("{what}: another object already has this {t}"),
            )
        }
        400 if lower.contains("password complexity") => {
            (ErrorCode::PasswordPolicy, format!("{what}: {message}"))
        }
        400 if lower.contains("domain portion of the userprincipalname") => {
            (ErrorCode::DomainNotVerified, format!("{what}: {message}"))
        }
        400 if lower.contains("userprincipalname is invalid") => {
            (ErrorCode::InvalidUpn, format!("{what}: {message}"))
        }
        400 if lower.contains("usage location") => (
            ErrorCode::InvalidUsageLocation,
            format!("{what}: {message}"),
        ),
        400 if lower.contains("available licenses") => {
            (ErrorCode::LicenceUnavailable, format!("{what}: {message}"))
        }
        400 if lower.contains("is not verified") => {
            (ErrorCode::DomainNotVerified, format!("{what}: {message}"))
        }
        400 if lower.contains("domain verification failed") => {
            (ErrorCode::DnsRecordMismatch, format!("{what}: {message}"))
        }
        400 if code == "syncStateNotFound" => (
            ErrorCode::PreconditionFailed,
            format!("{what}: the delta link is no longer valid"),
        ),
        400 | 405 | 413 | 415 => (ErrorCode::InvalidInput, format!("{what}: {message}")),
        409 if code == "nameAlreadyExists" => {
            (ErrorCode::AlreadyExists, format!("{what}: {message}"))
        }
        409 => (ErrorCode::Conflict, format!("{what}: {message}")),
        _ => (
            ErrorCode::UnexpectedResponse,
            format!("{what}: Microsoft 365 answered {status} ({message})"),
        ),
    };
    Error::new(ecode, text).with_service(ServiceDetail {
        code,
        message,
        request_id: rid,
        status: Some(status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Graph answers to `$select`: exactly the selected properties. The mapper must
    /// read nothing it did not select (a missing `id` in the select list fails here).
    #[test]
    fn the_user_mapper_reads_only_what_user_select_asks_for() {
        let full = json!({"id": "u1", "userPrincipalName": "a@b.c", "displayName": "A",
            "givenName": "Ann", "surname": "Bee", "mail": "a@b.c", "mailNickname": "a",
            "proxyAddresses": ["SMTP:a@b.c"], "accountEnabled": true, "usageLocation": "GB",
            "onPremisesImmutableId": "QQ==", "jobTitle": "not selected",
            "assignedLicenses": [{"skuId": "f245ecc8-75af-4f8e-b61f-27d8114de5f3", "disabledPlans": []}]});
        let selected: serde_json::Map<String, Value> = USER_SELECT
            .split(',')
            .filter_map(|p| full.get(p).map(|v| (p.to_string(), v.clone())))
            .collect();
        let from_select = account(&Value::Object(selected)).unwrap();
        assert_eq!(from_select, account(&full).unwrap());
        assert_eq!(from_select.id.0, "u1");
    }

    #[test]
    fn graph_errors_map_to_actionable_codes() {
        let conflict = json!({"error": {"code": "Request_BadRequest", "message": "Another object with the same value for property userPrincipalName already exists.", "details": [{"code": "ObjectConflict", "target": "userPrincipalName"}], "innerError": {"request-id": "r1"}}});
        let e = graph_error(400, &conflict, None, "creating jdoe");
        assert_eq!(e.code(), ErrorCode::AlreadyExists);
        assert!(e.message().contains("userPrincipalName"));
        assert_eq!(
            e.service().and_then(|s| s.request_id.as_deref()),
            Some("r1")
        );
        assert_eq!(
            e.service().map(|s| s.code.as_str()),
            Some("Request_BadRequest")
        );
        let cases = [
            (
                400,
                "The specified password does not comply with password complexity requirements. Please provide a different password.",
                ErrorCode::PasswordPolicy,
            ),
            (
                400,
                "Property userPrincipalName is invalid.",
                ErrorCode::InvalidUpn,
            ),
            (
                400,
                "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
                ErrorCode::DomainNotVerified,
            ),
            (
                400,
                "License assignment cannot be done for user with invalid usage location.",
                ErrorCode::InvalidUsageLocation,
            ),
            (
                400,
                "Subscription with SKU x does not have any available licenses.",
                ErrorCode::LicenceUnavailable,
            ),
            (
                403,
                "Insufficient privileges to complete the operation.",
                ErrorCode::PermissionDenied,
            ),
            (
                401,
                "Lifetime validation failed, the token is expired.",
                ErrorCode::Auth,
            ),
            (404, "Resource 'x' does not exist", ErrorCode::NotFound),
            (429, "Please retry again later.", ErrorCode::Throttled),
            (503, "unavailable", ErrorCode::ServiceUnavailable),
            (504, "timeout", ErrorCode::Timeout),
            (400, "Invalid filter clause", ErrorCode::InvalidInput),
            (418, "teapot", ErrorCode::UnexpectedResponse),
        ];
        for (status, msg, code) in cases {
            let e = graph_error(
                status,
                &json!({"error": {"code": "X", "message": msg}}),
                Some("rid"),
                "doing it",
            );
            assert_eq!(e.code(), code, "{status} {msg}");
            assert_eq!(
                e.service().and_then(|s| s.request_id.as_deref()),
                Some("rid")
            );
        }
        // A body that is not Graph's still maps by status.
        assert_eq!(
            graph_error(500, &Value::Null, None, "x").code(),
            ErrorCode::ServiceUnavailable
        );
    }

    #[test]
    fn users_and_records_map_both_ways() {
        let v = json!({"id": "u1", "userPrincipalName": "a@b.c", "displayName": "A", "accountEnabled": false, "onPremisesImmutableId": "QQ==", "assignedLicenses": [{"skuId": "f245ecc8-75af-4f8e-b61f-27d8114de5f3", "disabledPlans": []}], "proxyAddresses": ["SMTP:a@b.c"]});
        let a = account(&v).expect("account");
        assert!(!a.account_enabled);
        assert_eq!(a.immutable_id.as_ref().map(Anchor::as_str), Some("QQ=="));
        assert_eq!(a.assigned_skus.len(), 1);
        assert!(account(&json!({"displayName": "no id"})).is_err());
        let body = new_account_body(
            &NewOnlineAccount {
                user_principal_name: "a@b.c".into(),
                display_name: "A".into(),
                mail_nickname: "a".into(),
                account_enabled: true,
                immutable_id: Some(Anchor("QQ==".into())),
                ..Default::default()
            },
            "pw",
        );
        assert_eq!(
            body["passwordProfile"]["forceChangePasswordNextSignIn"],
            false
        );
        assert_eq!(body["onPremisesImmutableId"], "QQ==");
        assert!(body.get("usageLocation").is_none());
        let srv = json!({"recordType": "Srv", "label": "contoso.com", "service": "_sip", "protocol": "_tls", "priority": 100, "weight": 1, "port": 443, "nameTarget": "sipdir.online.lync.com", "ttl": 3600, "supportedService": "OfficeCommunicationsOnline", "isOptional": false});
        let r = dns_record(&srv, RecordPurpose::Service).expect("srv");
        assert_eq!(r.name, "_sip._tls.contoso.com");
        assert!(
            dns_record(
                &json!({"recordType": "Weird", "label": "x"}),
                RecordPurpose::Service
            )
            .is_none()
        );
        let txt = json!({"recordType": "Txt", "label": "contoso.com", "text": "MS=ms1", "supportedService": "None"});
        assert_eq!(
            dns_record(&txt, RecordPurpose::Verification).and_then(|r| r.supported_service),
            None
        );
    }
}
