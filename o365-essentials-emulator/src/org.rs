//! Graph `organization`, `subscribedSkus` and `directoryRoles`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::auth::Claims;
use crate::ctx::{GraphError, json_response};
use crate::odata;
use crate::state::{Directory, Emu};
use crate::users::need;

const ORG_READ: &[&str] = &[
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const SKU_READ: &[&str] = &[
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "LicenseAssignment.Read.All",
    "LicenseAssignment.ReadWrite.All",
];
const ROLE_READ: &[&str] = &[
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

pub(crate) fn domain_capabilities(services: &[String]) -> String {
    if services.is_empty() {
        "None".into()
    } else {
        services.join(", ")
    }
}

fn organization_json(emu: &Emu, d: &Directory) -> Value {
    let verified: Vec<Value> = d
        .domains
        .values()
        .filter(|x| x.verified)
        .map(|x| {
            json!({
                "capabilities": domain_capabilities(&x.services),
                "isDefault": x.is_default,
                "isInitial": x.is_initial,
                "name": x.name,
                "type": "Managed"
            })
        })
        .collect();
    json!({
        "id": emu.cfg.tenant.id,
        "deletedDateTime": null,
        "businessPhones": [],
        "city": null,
        "country": null,
        "countryLetterCode": emu.cfg.tenant.country,
        "createdDateTime": "2024-01-15T09:00:00Z",
        "displayName": emu.cfg.tenant.display_name,
        "marketingNotificationEmails": [],
        "onPremisesLastSyncDateTime": null,
        "onPremisesSyncEnabled": null,
        "postalCode": null,
        "preferredLanguage": "en",
        "securityComplianceNotificationMails": [],
        "securityComplianceNotificationPhones": [],
        "state": null,
        "street": null,
        "technicalNotificationMails": [],
        "tenantType": "AAD",
        "assignedPlans": [],
        "provisionedPlans": [],
        "verifiedDomains": verified
    })
}

/// `GET /organization`.
pub(crate) async fn organization(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, ORG_READ)?;
    odata::parse_query(raw.as_deref(), &["select"], None)?;
    let org = organization_json(&emu, &emu.dir());
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": format!("{}/$metadata#organization", emu.graph_root()), "value": [org]}),
    ))
}

/// The service plans of a SKU (`servicePlanInfo`), those in `disabled` (plan ids) marked
/// `Disabled`.
pub(crate) fn service_plans(emu: &Emu, sku_id: &str, disabled: &[String]) -> Value {
    let plans = [
        ("exchange", "EXCHANGE_S_STANDARD"),
        ("sharepoint", "SHAREPOINTSTANDARD"),
    ];
    Value::Array(
        plans
            .iter()
            .map(|(key, name)| {
                let id = emu.stable_id(&format!("plan:{key}:{sku_id}"));
                let status = if disabled.iter().any(|d| d.eq_ignore_ascii_case(&id)) {
                    "Disabled"
                } else {
                    "Success"
                };
                json!({"servicePlanId": id, "servicePlanName": name, "provisioningStatus": status, "appliesTo": "User"})
            })
            .collect(),
    )
}

fn sku_json(emu: &Emu, d: &Directory, s: &crate::state::Sku) -> Value {
    json!({
        "accountId": emu.cfg.tenant.id,
        "accountName": emu.cfg.tenant.display_name,
        "appliesTo": "User",
        "capabilityStatus": "Enabled",
        "consumedUnits": d.consumed(&s.sku_id),
        "id": format!("{}_{}", emu.cfg.tenant.id, s.sku_id),
        "prepaidUnits": {"enabled": s.enabled, "lockedOut": 0, "suspended": 0, "warning": 0},
        "servicePlans": service_plans(emu, &s.sku_id, &[]),
        "skuId": s.sku_id,
        "skuPartNumber": s.part_number,
        "subscriptionIds": [emu.stable_id(&format!("subscription:{}", s.sku_id))]
    })
}

/// `GET /subscribedSkus`.
pub(crate) async fn subscribed_skus(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SKU_READ)?;
    odata::parse_query(raw.as_deref(), &["select"], None)?;
    let d = emu.dir();
    let value: Vec<Value> = d.skus.iter().map(|s| sku_json(&emu, &d, s)).collect();
    drop(d);
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": format!("{}/$metadata#subscribedSkus", emu.graph_root()), "value": value}),
    ))
}

/// `GET /directoryRoles`.
pub(crate) async fn directory_roles(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, ROLE_READ)?;
    let d = emu.dir();
    let value: Vec<Value> = d
        .roles
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "deletedDateTime": null,
                "description": format!("Members of this role are {}s.", r.display_name.to_lowercase()),
                "displayName": r.display_name,
                "roleTemplateId": r.template_id
            })
        })
        .collect();
    drop(d);
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": format!("{}/$metadata#directoryRoles", emu.graph_root()), "value": value}),
    ))
}

/// `GET /directoryRoles/{id}/members`.
pub(crate) async fn role_members(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, ROLE_READ)?;
    let d = emu.dir();
    let role = d
        .roles
        .iter()
        .find(|r| r.id == id || r.template_id == id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let value: Vec<Value> = role
        .members
        .iter()
        .filter_map(|m| d.users.get(m))
        .map(|u| {
            let mut m = u.select(None);
            m.insert("@odata.type".into(), json!("#microsoft.graph.user"));
            Value::Object(m)
        })
        .collect();
    drop(d);
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": format!("{}/$metadata#directoryObjects", emu.graph_root()), "value": value}),
    ))
}
