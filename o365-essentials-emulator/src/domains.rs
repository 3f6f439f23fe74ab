//! Graph `domains`: add, list, get, verification records, verify (through real DNS),
//! service configuration records, supported services, delete and force-delete.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use crate::auth::Claims;
use crate::ctx::{GraphError, canonical_names, json_response, no_content, read_json};
use crate::state::{Domain, Emu};
use crate::users::need;

const DOMAIN_READ: &[&str] = &[
    "Domain.Read.All",
    "Domain.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const DOMAIN_WRITE: &[&str] = &["Domain.ReadWrite.All", "Directory.ReadWrite.All"];

pub(crate) const SERVICES: &[&str] = &[
    "Email",
    "Sharepoint",
    "EmailInternalRelayOnly",
    "OfficeCommunicationsOnline",
    "SharePointDefaultDomain",
    "FullRedelegation",
    "SharePointPublic",
    "OrgIdAuthentication",
    "Yammer",
    "Intune",
];

fn domain_json(d: &Domain) -> Value {
    json!({
        "id": d.name,
        "authenticationType": "Managed",
        "availabilityStatus": null,
        "isAdminManaged": true,
        "isDefault": d.is_default,
        "isInitial": d.is_initial,
        "isRoot": true,
        "isVerified": d.verified,
        "passwordNotificationWindowInDays": 14,
        "passwordValidityPeriodInDays": 2147483647,
        "supportedServices": d.services,
        "state": null
    })
}

fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !name
            .split('.')
            .next_back()
            .unwrap_or("")
            .chars()
            .all(|c| c.is_ascii_digit())
}

fn ctx_url(emu: &Emu, frag: &str) -> String {
    format!("{}/$metadata#{frag}", emu.graph_root())
}

/// `GET /domains`.
pub(crate) async fn list(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_READ)?;
    let value: Vec<Value> = emu.dir().domains.values().map(domain_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": ctx_url(&emu, "domains"), "value": value}),
    ))
}

/// `POST /domains`.
pub(crate) async fn add(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_WRITE)?;
    let body = canonical_names(
        read_json(&headers, body, emu.cfg.max_body_bytes).await?,
        &[&["id"]],
    )?;
    for k in body.keys() {
        if k != "id" && !k.starts_with("@odata.") {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "Property '{k}' does not exist as a declared property or extension property."
                ),
            ));
        }
    }
    let name = body
        .get("id")
        .and_then(Value::as_str)
        .map(|s| s.to_ascii_lowercase())
        .ok_or_else(|| {
            GraphError::bad_request(
                "Request_BadRequest",
                "Invalid value specified for property 'id' of resource 'Domain'.",
            )
        })?;
    if !valid_name(&name) {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "Invalid value specified for property 'id' of resource 'Domain'.",
        ));
    }
    let code = emu.verification_code();
    let mut d = emu.dir();
    if d.domains.contains_key(&name) {
        return Err(GraphError::conflict("id"));
    }
    // A subdomain of a verified domain is verified at once.
    let parent_verified = d
        .domains
        .values()
        .any(|x| x.verified && name.ends_with(&format!(".{}", x.name)));
    let dom = Domain {
        name: name.clone(),
        verified: parent_verified,
        is_default: false,
        is_initial: false,
        services: Vec::new(),
        verification_code: code,
    };
    let mut out = domain_json(&dom);
    d.domains.insert(name, dom);
    drop(d);
    emu.stats.count("domain_added");
    out["@odata.context"] = json!(ctx_url(&emu, "domains/$entity"));
    Ok(json_response(StatusCode::CREATED, &out))
}

fn find(emu: &Emu, name: &str) -> Result<Domain, GraphError> {
    emu.dir()
        .domains
        .get(&name.to_ascii_lowercase())
        .cloned()
        .ok_or_else(|| GraphError::not_found(name))
}

/// `GET /domains/{id}`.
pub(crate) async fn get(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_READ)?;
    let mut out = domain_json(&find(&emu, &name)?);
    out["@odata.context"] = json!(ctx_url(&emu, "domains/$entity"));
    Ok(json_response(StatusCode::OK, &out))
}

fn record(emu: &Emu, kind: &str, label: &str, service: &str, ttl: u32, extra: Value) -> Value {
    let record_type = match kind {
        "Mx" => "Mx",
        "Txt" => "Txt",
        "CName" => "CName",
        _ => "Srv",
    };
    let odata = match kind {
        "Mx" => "#microsoft.graph.domainDnsMxRecord",
        "Txt" => "#microsoft.graph.domainDnsTxtRecord",
        "CName" => "#microsoft.graph.domainDnsCnameRecord",
        _ => "#microsoft.graph.domainDnsSrvRecord",
    };
    let mut v = json!({
        "@odata.type": odata,
        "id": emu.stable_id(&format!("rec:{kind}:{label}:{service}:{extra}")),
        "isOptional": false,
        "label": label,
        "recordType": record_type,
        "supportedService": service,
        "ttl": ttl
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

/// `GET /domains/{id}/verificationDnsRecords`.
pub(crate) async fn verification_records(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_READ)?;
    let dom = find(&emu, &name)?;
    let value = if dom.is_initial {
        Vec::new()
    } else {
        vec![
            record(
                &emu,
                "Txt",
                &dom.name,
                "None",
                3600,
                json!({"text": format!("MS={}", dom.verification_code)}),
            ),
            record(
                &emu,
                "Mx",
                &dom.name,
                "None",
                3600,
                json!({"mailExchange": format!("{}.msv1.invalid", dom.verification_code), "preference": 32767}),
            ),
        ]
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": ctx_url(&emu, &format!("domains('{name}')/verificationDnsRecords")), "value": value}),
    ))
}

/// The records each supported service needs, as the tenant answers them.
fn service_records_of(emu: &Emu, dom: &Domain) -> Vec<Value> {
    let n = &dom.name;
    let mut v = Vec::new();
    if dom.services.iter().any(|s| s == "Email") {
        let mx = format!("{}.mail.protection.outlook.com", n.replace('.', "-"));
        v.push(record(
            emu,
            "Mx",
            n,
            "Email",
            3600,
            json!({"mailExchange": mx, "preference": 0}),
        ));
        v.push(record(
            emu,
            "CName",
            &format!("autodiscover.{n}"),
            "Email",
            3600,
            json!({"canonicalName": "autodiscover.outlook.com"}),
        ));
        v.push(record(
            emu,
            "Txt",
            n,
            "Email",
            3600,
            json!({"text": "v=spf1 include:spf.protection.outlook.com -all"}),
        ));
    }
    if dom
        .services
        .iter()
        .any(|s| s == "OfficeCommunicationsOnline")
    {
        v.push(record(emu, "Srv", n, "OfficeCommunicationsOnline", 3600, json!({"nameTarget": "sipdir.online.lync.com", "port": 443, "priority": 100, "protocol": "_tls", "service": "_sip", "weight": 1})));
        v.push(record(emu, "Srv", n, "OfficeCommunicationsOnline", 3600, json!({"nameTarget": "sipfed.online.lync.com", "port": 5061, "priority": 100, "protocol": "_tcp", "service": "_sipfederationtls", "weight": 1})));
        v.push(record(
            emu,
            "CName",
            &format!("sip.{n}"),
            "OfficeCommunicationsOnline",
            3600,
            json!({"canonicalName": "sipdir.online.lync.com"}),
        ));
        v.push(record(
            emu,
            "CName",
            &format!("lyncdiscover.{n}"),
            "OfficeCommunicationsOnline",
            3600,
            json!({"canonicalName": "webdir.online.lync.com"}),
        ));
    }
    if dom.services.iter().any(|s| s == "Intune") {
        v.push(record(
            emu,
            "CName",
            &format!("enterpriseregistration.{n}"),
            "Intune",
            3600,
            json!({"canonicalName": "enterpriseregistration.windows.net"}),
        ));
        v.push(record(
            emu,
            "CName",
            &format!("enterpriseenrollment.{n}"),
            "Intune",
            3600,
            json!({"canonicalName": "enterpriseenrollment-s.manage.microsoft.com"}),
        ));
    }
    v
}

/// `GET /domains/{id}/serviceConfigurationRecords`.
pub(crate) async fn service_records(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_READ)?;
    let dom = find(&emu, &name)?;
    let value = service_records_of(&emu, &dom);
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": ctx_url(&emu, &format!("domains('{name}')/serviceConfigurationRecords")), "value": value}),
    ))
}

/// `POST /domains/{id}/verify`.
pub(crate) async fn verify(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_WRITE)?;
    let dom = find(&emu, &name)?;
    if !dom.verified {
        let (skip, server) = {
            let rt = emu.runtime();
            (rt.verify_without_dns, rt.dns_server)
        };
        let expected_txt = format!("MS={}", dom.verification_code);
        let expected_mx = format!("{}.msv1.invalid", dom.verification_code);
        let found = if skip {
            true
        } else if let Some(server) = server {
            crate::dns::has_verification_record(server, &dom.name, &expected_txt, &expected_mx)
                .await
        } else {
            false
        };
        if !found {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "Domain verification failed. The DNS record {expected_txt} (TXT) or {expected_mx} (MX) was not found at {}.",
                    dom.name
                ),
            ));
        }
        let mut d = emu.dir();
        if let Some(x) = d.domains.get_mut(&dom.name) {
            x.verified = true;
            x.services = vec!["Email".into(), "OfficeCommunicationsOnline".into()];
        }
        emu.stats.count("domain_verified");
    }
    let mut out = domain_json(&find(&emu, &name)?);
    out["@odata.context"] = json!(ctx_url(&emu, "domains/$entity"));
    Ok(json_response(StatusCode::OK, &out))
}

/// `PATCH /domains/{id}` (supportedServices, isDefault).
pub(crate) async fn update(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_WRITE)?;
    let body = canonical_names(
        read_json(&headers, body, emu.cfg.max_body_bytes).await?,
        &[&["isDefault", "supportedServices"]],
    )?;
    let dom = find(&emu, &name)?;
    let mut services = None;
    let mut make_default = None;
    for (k, v) in &body {
        match k.as_str() {
            "supportedServices" => {
                let list = v.as_array().ok_or_else(|| GraphError::bad_request("Request_BadRequest", "Invalid value specified for property 'supportedServices' of resource 'Domain'."))?;
                let mut out = Vec::new();
                for s in list {
                    let s = s.as_str().unwrap_or("");
                    let canon = SERVICES.iter().find(|x| x.eq_ignore_ascii_case(s)).ok_or_else(|| {
                        GraphError::bad_request("Request_BadRequest", format!("Invalid value specified for property 'supportedServices' of resource 'Domain': unknown service '{s}'."))
                    })?;
                    out.push((*canon).to_string());
                }
                services = Some(out);
            }
            "isDefault" => {
                make_default = Some(v.as_bool().ok_or_else(|| {
                    GraphError::bad_request(
                        "Request_BadRequest",
                        "Invalid value specified for property 'isDefault' of resource 'Domain'.",
                    )
                })?)
            }
            k if k.starts_with("@odata.") => {}
            other => {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    format!(
                        "Property '{other}' does not exist as a declared property or extension property."
                    ),
                ));
            }
        }
    }
    if !dom.verified {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            format!(
                "Domain '{}' is not verified; verify it before changing its settings.",
                dom.name
            ),
        ));
    }
    let mut d = emu.dir();
    if make_default == Some(true) {
        for x in d.domains.values_mut() {
            x.is_default = false;
        }
    }
    if let Some(x) = d.domains.get_mut(&dom.name) {
        if let Some(s) = services {
            x.services = s;
        }
        if make_default == Some(true) {
            x.is_default = true;
        }
    }
    Ok(no_content())
}

fn users_on(emu: &Emu, name: &str) -> Vec<String> {
    let suffix = format!("@{name}");
    emu.dir()
        .users
        .values()
        .filter(|u| {
            u.user_principal_name
                .to_ascii_lowercase()
                .ends_with(&suffix)
        })
        .map(|u| u.id.clone())
        .collect()
}

/// `DELETE /domains/{id}`.
pub(crate) async fn delete(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_WRITE)?;
    let dom = find(&emu, &name)?;
    if dom.is_initial || dom.is_default {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            format!(
                "The domain '{}' is the initial or default domain and cannot be removed.",
                dom.name
            ),
        ));
    }
    let users = users_on(&emu, &dom.name);
    if !users.is_empty() {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            format!(
                "Domain '{}' has {} user(s) referencing it; change their user names or use forceDelete.",
                dom.name,
                users.len()
            ),
        ));
    }
    emu.dir().domains.remove(&dom.name);
    Ok(no_content())
}

/// `POST /domains/{id}/forceDelete`: users move to the initial domain.
pub(crate) async fn force_delete(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    need(&claims, DOMAIN_WRITE)?;
    let body = canonical_names(
        read_json(&headers, body, emu.cfg.max_body_bytes).await?,
        &[&["disableUserAccounts"]],
    )?;
    let disable = body
        .get("disableUserAccounts")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let dom = find(&emu, &name)?;
    if dom.is_initial || dom.is_default {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            format!(
                "The domain '{}' is the initial or default domain and cannot be removed.",
                dom.name
            ),
        ));
    }
    let initial = emu.cfg.tenant.initial_domain.to_ascii_lowercase();
    let ids = users_on(&emu, &dom.name);
    let mut d = emu.dir();
    for id in ids {
        if let Some(u) = d.users.get_mut(&id) {
            let local = u
                .user_principal_name
                .split('@')
                .next()
                .unwrap_or("")
                .to_string();
            u.user_principal_name = format!("{local}@{initial}");
            if disable {
                u.account_enabled = false;
            }
        }
        d.touch(&id, emu.cfg.delta_retention_changes);
    }
    d.domains.remove(&dom.name);
    Ok(no_content())
}
