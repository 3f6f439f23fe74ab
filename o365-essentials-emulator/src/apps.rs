//! App registrations made through Graph, as `o365-essentials setup` makes them:
//! `/applications` (create, get, list with `$filter`, update, `addKey` with a
//! proof-of-possession token, `removeKey`, delete), `/servicePrincipals` (create, get,
//! list with `$filter=appId eq '…'`, delete), admin consent as app role assignments
//! (`appRoleAssignedTo`, `appRoleAssignments`), and the resource service principals of
//! Microsoft Graph, Office 365 Exchange Online and Office 365 SharePoint Online with the
//! app roles (ids from Microsoft's Graph permissions reference) the engine asks for.
//!
//! An app created here gets client credentials tokens (certificate assertions) once
//! `identity.app_replication_delay_ms` has passed; its tokens carry exactly the app
//! roles granted on the token's resource and the directory roles assigned to its
//! service principal; an expired key credential signs nothing.
//!
//! Who may do what: app-only callers need `Application.ReadWrite.All` (or
//! `AppRoleAssignment.ReadWrite.All`, `RoleManagement.ReadWrite.Directory`); a
//! signed-in user (device code sign-in) needs the delegated scope *and* a directory
//! role: Application or Cloud Application Administrator for registrations, Privileged
//! Role Administrator for granting app roles and directory roles (a Global
//! Administrator may do all).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Response, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ring::{digest, signature};
use serde_json::{Map, Value, json};

use crate::auth::{Claims, RegisteredCert, Resource, aad_error, sign_token, verify_assertion};
use crate::ctx::{GraphError, json_response, no_content, read_json};
use crate::odata;
use crate::state::{Directory, Emu};

/// Microsoft Graph's application id.
pub(crate) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Office 365 Exchange Online's application id.
pub(crate) const EXCHANGE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
/// Office 365 SharePoint Online's application id.
pub(crate) const SHAREPOINT_APP_ID: &str = "00000003-0000-0ff1-ce00-000000000000";
/// The audience of an `addKey`/`removeKey` proof (the Azure AD Graph application id).
const PROOF_AUDIENCE: &str = "00000002-0000-0000-c000-000000000000";

/// App roles (application permissions) of the resource service principals:
/// (resource app id, role id, value). Ids: Microsoft Graph permissions reference.
const APP_ROLES: &[(&str, &str, &str)] = &[
    (
        GRAPH_APP_ID,
        "741f803b-c850-494e-b5df-cde7c675a1ca",
        "User.ReadWrite.All",
    ),
    (
        GRAPH_APP_ID,
        "df021288-bdef-4463-88db-98f22de89214",
        "User.Read.All",
    ),
    (
        GRAPH_APP_ID,
        "498476ce-e0fe-48b0-b801-37ba7e2685c6",
        "Organization.Read.All",
    ),
    (
        GRAPH_APP_ID,
        "483bed4a-2ad3-4361-a73b-c83ccdbdc53c",
        "RoleManagement.Read.Directory",
    ),
    (
        GRAPH_APP_ID,
        "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8",
        "RoleManagement.ReadWrite.Directory",
    ),
    (
        GRAPH_APP_ID,
        "cc117bb9-00cf-4eb8-b580-ea2a878fe8f7",
        "User-PasswordProfile.ReadWrite.All",
    ),
    (
        GRAPH_APP_ID,
        "7e05723c-0bb0-42da-be95-ae9f08a6e53c",
        "Domain.ReadWrite.All",
    ),
    (
        GRAPH_APP_ID,
        "a82116e5-55eb-4c41-a434-62fe8a61c773",
        "Sites.FullControl.All",
    ),
    (
        GRAPH_APP_ID,
        "5facf0c1-8979-4e95-abcf-ff3d079771c0",
        "LicenseAssignment.ReadWrite.All",
    ),
    (
        GRAPH_APP_ID,
        "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
        "Directory.Read.All",
    ),
    (
        GRAPH_APP_ID,
        "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
        "Directory.ReadWrite.All",
    ),
    (
        GRAPH_APP_ID,
        "1bfefb4e-e0b5-418b-a88f-73c6d2e60b24",
        "Application.ReadWrite.All",
    ),
    (
        EXCHANGE_APP_ID,
        "dc50a0fb-09a3-484d-be87-e023b12c6440",
        "Exchange.ManageAsApp",
    ),
    (
        EXCHANGE_APP_ID,
        "dc890d15-9560-4a4c-9b7f-a736ec74ec40",
        "full_access_as_app",
    ),
    (
        SHAREPOINT_APP_ID,
        "678536fe-1083-478a-9c59-b99265e6b0d3",
        "Sites.FullControl.All",
    ),
    (
        SHAREPOINT_APP_ID,
        "d13f72ca-a275-4b96-b789-48ebcc4da984",
        "Sites.Read.All",
    ),
    (
        SHAREPOINT_APP_ID,
        "fbcd29d2-fcca-4405-aded-518d457caae4",
        "Sites.ReadWrite.All",
    ),
];

const RESOURCES: &[(&str, &str)] = &[
    (GRAPH_APP_ID, "Microsoft Graph"),
    (EXCHANGE_APP_ID, "Office 365 Exchange Online"),
    (SHAREPOINT_APP_ID, "Office 365 SharePoint Online"),
];

const APP_READ: &[&str] = &[
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Application.ReadWrite.OwnedBy",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const APP_WRITE: &[&str] = &["Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"];
const GRANT_WRITE: &[&str] = &["AppRoleAssignment.ReadWrite.All"];
const ROLE_WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
const APP_ADMINS: &[&str] = &[
    "Application Administrator",
    "Cloud Application Administrator",
];
const ROLE_ADMINS: &[&str] = &["Privileged Role Administrator"];

/// A key credential (certificate) of an application.
#[derive(Debug, Clone)]
pub(crate) struct KeyCredential {
    pub key_id: String,
    pub display_name: String,
    pub start: i64,
    pub end: i64,
    pub cert: RegisteredCert,
}

/// An application object made through Graph.
#[derive(Debug, Clone)]
pub(crate) struct Application {
    pub id: String,
    pub app_id: String,
    pub display_name: String,
    pub sign_in_audience: String,
    pub keys: Vec<KeyCredential>,
    pub required_resource_access: Value,
    pub created: i64,
    /// Milliseconds since the epoch of its creation (for the replication delay).
    pub created_ms: i64,
    pub notes: Option<String>,
}

/// A service principal: a resource's (seeded) or a created app's.
#[derive(Debug, Clone)]
pub(crate) struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub display_name: String,
    /// (id, value) of its app roles.
    pub app_roles: Vec<(String, String)>,
    pub created: i64,
}

/// An app role granted to a service principal (admin consent).
#[derive(Debug, Clone)]
pub(crate) struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: String,
    pub principal_id: String,
    pub resource_id: String,
    pub created: i64,
}

/// The registrations of the tenant.
#[derive(Debug, Default)]
pub(crate) struct AppsState {
    pub applications: Vec<Application>,
    pub service_principals: Vec<ServicePrincipal>,
    pub assignments: Vec<AppRoleAssignment>,
}

/// Seeds the resource service principals.
pub(crate) fn init(d: &mut Directory, emu: &Emu) {
    for (app_id, name) in RESOURCES {
        d.apps.service_principals.push(ServicePrincipal {
            id: emu.stable_id(&format!("resource-sp:{app_id}")),
            app_id: (*app_id).into(),
            display_name: (*name).into(),
            app_roles: APP_ROLES
                .iter()
                .filter(|(a, _, _)| a == app_id)
                .map(|(_, id, v)| ((*id).into(), (*v).into()))
                .collect(),
            created: 0,
        });
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn parse_time(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The scope and, for a signed-in user, one of `roles`.
fn require(claims: &Claims, scopes: &[&str], roles: &[&str]) -> Result<(), GraphError> {
    crate::users::need(claims, scopes)?;
    if claims.is_delegated() && !roles.iter().any(|r| claims.has_role(r)) {
        return Err(GraphError::forbidden());
    }
    Ok(())
}

fn invalid(prop: &str, resource: &str) -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        format!("Invalid value specified for property '{prop}' of resource '{resource}'."),
    )
}

/// Parses a `keyCredential` of a request: an X.509 certificate, base64 DER in `key`.
fn key_credential(v: &Value) -> Result<KeyCredential, GraphError> {
    let o = v
        .as_object()
        .ok_or_else(|| invalid("keyCredentials", "Application"))?;
    if o.get("type").and_then(Value::as_str) != Some("AsymmetricX509Cert")
        || o.get("usage").and_then(Value::as_str) != Some("Verify")
    {
        return Err(GraphError::bad_request(
            "KeyCredentialsInvalidValue",
            "Key credential type must be AsymmetricX509Cert with usage Verify.",
        ));
    }
    let der = o
        .get("key")
        .and_then(Value::as_str)
        .and_then(|k| B64.decode(k.trim()).ok())
        .ok_or_else(|| {
            GraphError::bad_request(
                "KeyCredentialsInvalidValue",
                "Key credential key is not a base64 encoded certificate.",
            )
        })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| {
        GraphError::bad_request(
            "KeyCredentialsInvalidValue",
            "Key credential key is not a valid X.509 certificate.",
        )
    })?;
    let validity = cert.validity();
    let start = o
        .get("startDateTime")
        .and_then(parse_time)
        .unwrap_or(validity.not_before.timestamp());
    let end = o
        .get("endDateTime")
        .and_then(parse_time)
        .unwrap_or(validity.not_after.timestamp());
    if end > validity.not_after.timestamp() || start < validity.not_before.timestamp() - 86_400 {
        return Err(GraphError::bad_request(
            "KeyCredentialsInvalidEndDate",
            "Key credential end date is invalid: it lies outside the certificate's validity.",
        ));
    }
    let reg = RegisteredCert {
        sha256: digest::digest(&digest::SHA256, &der).as_ref().to_vec(),
        sha1: digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der)
            .as_ref()
            .to_vec(),
        rsa_public_key: cert.public_key().subject_public_key.data.to_vec(),
    };
    Ok(KeyCredential {
        key_id: o
            .get("keyId")
            .and_then(Value::as_str)
            .and_then(|k| uuid::Uuid::parse_str(k).ok())
            .unwrap_or_else(uuid::Uuid::new_v4)
            .to_string(),
        display_name: o
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        start,
        end,
        cert: reg,
    })
}

fn key_json(k: &KeyCredential) -> Value {
    json!({
        "customKeyIdentifier": B64.encode(&k.cert.sha1),
        "displayName": k.display_name,
        "endDateTime": rfc3339(k.end),
        "key": null,
        "keyId": k.key_id,
        "startDateTime": rfc3339(k.start),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    })
}

fn app_json(a: &Application) -> Map<String, Value> {
    let v = json!({
        "id": a.id,
        "appId": a.app_id,
        "displayName": a.display_name,
        "signInAudience": a.sign_in_audience,
        "createdDateTime": rfc3339(a.created),
        "notes": a.notes,
        "keyCredentials": a.keys.iter().map(key_json).collect::<Vec<_>>(),
        "passwordCredentials": [],
        "requiredResourceAccess": a.required_resource_access,
        "publisherDomain": null,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn sp_json(sp: &ServicePrincipal) -> Map<String, Value> {
    let roles: Vec<Value> = sp
        .app_roles
        .iter()
        .map(|(id, value)| {
            json!({
                "allowedMemberTypes": ["Application"],
                "description": format!("Allows the app {value} without a signed-in user."),
                "displayName": value,
                "id": id,
                "isEnabled": true,
                "origin": "Application",
                "value": value,
            })
        })
        .collect();
    let v = json!({
        "id": sp.id,
        "appId": sp.app_id,
        "displayName": sp.display_name,
        "accountEnabled": true,
        "servicePrincipalType": "Application",
        "appRoles": roles,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn assignment_json(d: &Directory, a: &AppRoleAssignment) -> Value {
    let name = |id: &str| {
        d.apps
            .service_principals
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.display_name.clone())
    };
    json!({
        "id": a.id,
        "appRoleId": a.app_role_id,
        "createdDateTime": rfc3339(a.created),
        "deletedDateTime": null,
        "principalDisplayName": name(&a.principal_id),
        "principalId": a.principal_id,
        "principalType": "ServicePrincipal",
        "resourceDisplayName": name(&a.resource_id),
        "resourceId": a.resource_id,
    })
}

const APP_SCHEMA: odata::Schema<'static> = odata::Schema {
    type_name: "microsoft.graph.application",
    resource: "applications",
    properties: &[
        "id",
        "appId",
        "displayName",
        "signInAudience",
        "createdDateTime",
        "notes",
        "keyCredentials",
        "passwordCredentials",
        "requiredResourceAccess",
        "publisherDomain",
    ],
    filterable: &["id", "appId", "displayName"],
};

const SP_SCHEMA: odata::Schema<'static> = odata::Schema {
    type_name: "microsoft.graph.servicePrincipal",
    resource: "servicePrincipals",
    properties: &[
        "id",
        "appId",
        "displayName",
        "accountEnabled",
        "servicePrincipalType",
        "appRoles",
    ],
    filterable: &["id", "appId", "displayName"],
};

fn select(obj: Map<String, Value>, select: Option<&[String]>) -> Value {
    match select {
        None => Value::Object(obj),
        Some(props) => {
            let mut out = Map::new();
            for p in props {
                if let Some((k, v)) = obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(p)) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Value::Object(out)
        }
    }
}

fn list_answer(emu: &Emu, set: &str, items: Vec<Value>) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("{}/$metadata#{set}", emu.graph_root()),
            "value": items,
        }),
    )
}

/// An application by object id, or by `appId=…` (`applications(appId='…')`).
fn find_app<'a>(d: &'a mut Directory, id: &str) -> Result<&'a mut Application, GraphError> {
    let by_app_id = id.strip_prefix("appId=");
    d.apps
        .applications
        .iter_mut()
        .find(|a| match by_app_id {
            Some(app_id) => a.app_id.eq_ignore_ascii_case(app_id),
            None => a.id.eq_ignore_ascii_case(id),
        })
        .ok_or_else(|| GraphError::not_found(id))
}

/// The path's service principal key as an id (`appId=…` resolved; others as given).
fn resolve_sp(emu: &Emu, id: String) -> String {
    let d = emu.dir();
    sp_id(&d, &id).unwrap_or(id)
}

/// A service principal's id from its id or `appId=…` (`servicePrincipals(appId='…')`).
fn sp_id(d: &Directory, id: &str) -> Option<String> {
    let by_app_id = id.strip_prefix("appId=");
    d.apps
        .service_principals
        .iter()
        .find(|s| match by_app_id {
            Some(app_id) => s.app_id.eq_ignore_ascii_case(app_id),
            None => s.id.eq_ignore_ascii_case(id),
        })
        .map(|s| s.id.clone())
}

fn required_resource_access(v: Option<&Value>) -> Result<Value, GraphError> {
    match v {
        None | Some(Value::Null) => Ok(json!([])),
        Some(Value::Array(items)) => {
            for i in items {
                let ok = i.get("resourceAppId").and_then(Value::as_str).is_some()
                    && i.get("resourceAccess").and_then(Value::as_array).is_some();
                if !ok {
                    return Err(invalid("requiredResourceAccess", "Application"));
                }
            }
            Ok(Value::Array(items.clone()))
        }
        Some(_) => Err(invalid("requiredResourceAccess", "Application")),
    }
}

fn key_list(v: Option<&Value>) -> Result<Vec<KeyCredential>, GraphError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(key_credential).collect(),
        Some(_) => Err(invalid("keyCredentials", "Application")),
    }
}

/// `POST /applications`.
pub(crate) async fn create_app(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    require(&claims, APP_WRITE, APP_ADMINS)?;
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let name = body
        .get("displayName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty() && s.chars().count() <= 256)
        .ok_or_else(|| invalid("displayName", "Application"))?
        .to_string();
    let audience = match body.get("signInAudience") {
        None | Some(Value::Null) => "AzureADMyOrg".to_string(),
        Some(Value::String(s))
            if [
                "AzureADMyOrg",
                "AzureADMultipleOrgs",
                "AzureADandPersonalMicrosoftAccount",
                "PersonalMicrosoftAccount",
            ]
            .contains(&s.as_str()) =>
        {
            s.clone()
        }
        Some(_) => return Err(invalid("signInAudience", "Application")),
    };
    let app = Application {
        id: uuid::Uuid::new_v4().to_string(),
        app_id: uuid::Uuid::new_v4().to_string(),
        display_name: name,
        sign_in_audience: audience,
        keys: key_list(body.get("keyCredentials"))?,
        required_resource_access: required_resource_access(body.get("requiredResourceAccess"))?,
        created: now(),
        created_ms: now_ms(),
        notes: body
            .get("notes")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let mut out = app_json(&app);
    out.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/$metadata#applications/$entity",
            emu.graph_root()
        )),
    );
    emu.dir().apps.applications.push(app);
    Ok(json_response(StatusCode::CREATED, &Value::Object(out)))
}

/// `GET /applications` (`$filter` on `displayName`, `appId`; `$select`).
pub(crate) async fn list_apps(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    crate::users::need(&claims, APP_READ)?;
    let q = odata::parse_query(
        raw.as_deref(),
        &["filter", "select", "top", "count"],
        Some(&APP_SCHEMA),
    )?;
    let d = emu.dir();
    let items: Vec<Value> = d
        .apps
        .applications
        .iter()
        .map(app_json)
        .filter(|o| q.filter.as_ref().is_none_or(|f| odata::matches(f, o)))
        .map(|o| select(o, q.select.as_deref()))
        .collect();
    drop(d);
    Ok(list_answer(&emu, "applications", items))
}

/// `GET /applications/{id}`.
pub(crate) async fn get_app(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    let q = odata::parse_query(raw.as_deref(), &["select"], Some(&APP_SCHEMA))?;
    let mut d = emu.dir();
    let app = find_app(&mut d, &id)?;
    if !claims.appid.eq_ignore_ascii_case(&app.app_id) {
        crate::users::need(&claims, APP_READ)?;
    }
    let out = select(app_json(app), q.select.as_deref());
    Ok(json_response(StatusCode::OK, &out))
}

/// `PATCH /applications/{id}`: `displayName`, `notes`, `requiredResourceAccess`,
/// `keyCredentials` (replacing them all).
pub(crate) async fn update_app(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    require(&claims, APP_WRITE, APP_ADMINS)?;
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    for k in body.keys() {
        if ![
            "displayName",
            "notes",
            "requiredResourceAccess",
            "keyCredentials",
        ]
        .contains(&k.as_str())
        {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "Property '{k}' does not exist on type 'microsoft.graph.application' or cannot be updated here."
                ),
            ));
        }
    }
    let name = match body.get("displayName") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(invalid("displayName", "Application")),
    };
    let rra = match body.get("requiredResourceAccess") {
        None => None,
        v => Some(required_resource_access(v)?),
    };
    let keys = match body.get("keyCredentials") {
        None => None,
        v => Some(key_list(v)?),
    };
    let mut d = emu.dir();
    let app = find_app(&mut d, &id)?;
    if let Some(n) = name {
        app.display_name = n;
    }
    if let Some(r) = rra {
        app.required_resource_access = r;
    }
    if let Some(k) = keys {
        app.keys = k;
    }
    if let Some(n) = body.get("notes") {
        app.notes = n.as_str().map(str::to_string);
    }
    Ok(no_content())
}

/// `DELETE /applications/{id}`: the app, its service principal and their grants.
pub(crate) async fn delete_app(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    require(&claims, APP_WRITE, APP_ADMINS)?;
    let mut d = emu.dir();
    let app_id = find_app(&mut d, &id)?.app_id.clone();
    d.apps
        .applications
        .retain(|a| !a.id.eq_ignore_ascii_case(&id));
    let sps: Vec<String> = d
        .apps
        .service_principals
        .iter()
        .filter(|s| s.app_id.eq_ignore_ascii_case(&app_id))
        .map(|s| s.id.clone())
        .collect();
    for sp in &sps {
        remove_sp(&mut d, sp);
    }
    Ok(no_content())
}

fn remove_sp(d: &mut Directory, sp: &str) {
    d.apps.service_principals.retain(|s| s.id != sp);
    d.apps
        .assignments
        .retain(|a| a.principal_id != sp && a.resource_id != sp);
    for r in &mut d.roles {
        r.members.retain(|m| m != sp);
    }
}

/// Verifies an `addKey`/`removeKey` proof: a JWT signed by one of the app's current
/// certificates, `aud` `00000002-0000-0000-c000-000000000000`, `iss` the application's
/// object id, lasting at most 10 minutes.
fn verify_proof(app: &Application, proof: &str, now: i64) -> Result<(), GraphError> {
    let bad = |why: &str| {
        GraphError::bad_request(
            "Authorization_RequestDenied",
            format!("The proof of possession token is invalid: {why}."),
        )
    };
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a JWT"));
    };
    let header: Value = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("unreadable header"))?;
    let claims: Value = B64URL
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("unreadable claims"))?;
    let sig = B64URL.decode(s).map_err(|_| bad("unreadable signature"))?;
    let alg: &dyn signature::VerificationAlgorithm = match header["alg"].as_str() {
        Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => &signature::RSA_PSS_2048_8192_SHA256,
        _ => return Err(bad("the algorithm must be RS256 or PS256")),
    };
    let signed = format!("{h}.{p}");
    let valid = app
        .keys
        .iter()
        .filter(|k| k.start <= now + 300 && now < k.end)
        .any(|k| {
            signature::UnparsedPublicKey::new(alg, &k.cert.rsa_public_key)
                .verify(signed.as_bytes(), &sig)
                .is_ok()
        });
    if !valid {
        return Err(bad(
            "it is not signed by a current certificate of the application",
        ));
    }
    if claims["aud"].as_str() != Some(PROOF_AUDIENCE) {
        return Err(bad("aud must be 00000002-0000-0000-c000-000000000000"));
    }
    if !claims["iss"]
        .as_str()
        .is_some_and(|i| i.eq_ignore_ascii_case(&app.id))
    {
        return Err(bad("iss must be the application's object id"));
    }
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_i64(), claims["exp"].as_i64()) else {
        return Err(bad("nbf and exp are required"));
    };
    if exp - nbf > 600 {
        return Err(bad("it may last at most 10 minutes"));
    }
    if nbf > now + 300 || exp <= now - 300 {
        return Err(bad("it is not valid now"));
    }
    Ok(())
}

/// The app itself (its own token) or a caller allowed to write applications.
fn may_roll(claims: &Claims, app: &Application) -> Result<(), GraphError> {
    if !claims.is_delegated() && claims.appid.eq_ignore_ascii_case(&app.app_id) {
        return Ok(());
    }
    require(claims, APP_WRITE, APP_ADMINS)
}

/// `POST /applications/{id}/addKey` `{keyCredential, passwordCredential, proof}`.
pub(crate) async fn add_key(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let key = key_credential(body.get("keyCredential").unwrap_or(&Value::Null))?;
    let proof = body
        .get("proof")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("proof", "Application"))?
        .to_string();
    let mut d = emu.dir();
    let app = find_app(&mut d, &id)?;
    may_roll(&claims, app)?;
    verify_proof(app, &proof, now())?;
    let out = key_json(&key);
    app.keys.push(key);
    Ok(json_response(StatusCode::OK, &out))
}

/// `POST /applications/{id}/removeKey` `{keyId, proof}`.
pub(crate) async fn remove_key(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let key_id = body
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("keyId", "Application"))?
        .to_string();
    let proof = body
        .get("proof")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("proof", "Application"))?
        .to_string();
    let mut d = emu.dir();
    let app = find_app(&mut d, &id)?;
    may_roll(&claims, app)?;
    verify_proof(app, &proof, now())?;
    let before = app.keys.len();
    app.keys.retain(|k| !k.key_id.eq_ignore_ascii_case(&key_id));
    if app.keys.len() == before {
        return Err(GraphError::not_found(&key_id));
    }
    Ok(no_content())
}

/// `POST /servicePrincipals` `{appId}`.
pub(crate) async fn create_sp(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    require(&claims, APP_WRITE, APP_ADMINS)?;
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let app_id = body
        .get("appId")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("appId", "ServicePrincipal"))?
        .to_string();
    let mut d = emu.dir();
    let name = d
        .apps
        .applications
        .iter()
        .find(|a| a.app_id.eq_ignore_ascii_case(&app_id))
        .map(|a| a.display_name.clone())
        .ok_or_else(|| {
            GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "The appId '{app_id}' of the service principal does not reference a valid application object."
                ),
            )
        })?;
    if d.apps
        .service_principals
        .iter()
        .any(|s| s.app_id.eq_ignore_ascii_case(&app_id))
    {
        return Err(GraphError::conflict("appId"));
    }
    let sp = ServicePrincipal {
        id: uuid::Uuid::new_v4().to_string(),
        app_id,
        display_name: name,
        app_roles: Vec::new(),
        created: now(),
    };
    let mut out = sp_json(&sp);
    out.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/$metadata#servicePrincipals/$entity",
            emu.graph_root()
        )),
    );
    d.apps.service_principals.push(sp);
    Ok(json_response(StatusCode::CREATED, &Value::Object(out)))
}

/// `GET /servicePrincipals` (`$filter=appId eq '…'`, `$select`).
pub(crate) async fn list_sps(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    crate::users::need(&claims, APP_READ)?;
    let q = odata::parse_query(
        raw.as_deref(),
        &["filter", "select", "top", "count"],
        Some(&SP_SCHEMA),
    )?;
    let d = emu.dir();
    let items: Vec<Value> = d
        .apps
        .service_principals
        .iter()
        .map(sp_json)
        .filter(|o| q.filter.as_ref().is_none_or(|f| odata::matches(f, o)))
        .map(|o| select(o, q.select.as_deref()))
        .collect();
    drop(d);
    Ok(list_answer(&emu, "servicePrincipals", items))
}

/// `GET /servicePrincipals/{id}`.
pub(crate) async fn get_sp(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    crate::users::need(&claims, APP_READ)?;
    let d = emu.dir();
    let found = sp_id(&d, &id).ok_or_else(|| GraphError::not_found(&id))?;
    let sp = d
        .apps
        .service_principals
        .iter()
        .find(|s| s.id == found)
        .ok_or_else(|| GraphError::not_found(&id))?;
    Ok(json_response(StatusCode::OK, &Value::Object(sp_json(sp))))
}

/// `DELETE /servicePrincipals/{id}`.
pub(crate) async fn delete_sp(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    let id = resolve_sp(&emu, id);
    require(&claims, APP_WRITE, APP_ADMINS)?;
    let mut d = emu.dir();
    let sp = d
        .apps
        .service_principals
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&id) && s.created > 0)
        .map(|s| s.id.clone())
        .ok_or_else(|| GraphError::not_found(&id))?;
    remove_sp(&mut d, &sp);
    Ok(no_content())
}

/// `POST /servicePrincipals/{resource}/appRoleAssignedTo` (and the same body on
/// `/servicePrincipals/{principal}/appRoleAssignments`): admin consent to one app role.
pub(crate) async fn grant(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let id = resolve_sp(&emu, id);
    require(&claims, GRANT_WRITE, ROLE_ADMINS)?;
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| invalid(k, "AppRoleAssignment"))
    };
    let (principal, resource, role) = (
        field("principalId")?,
        field("resourceId")?,
        field("appRoleId")?,
    );
    let mut d = emu.dir();
    if !d
        .apps
        .service_principals
        .iter()
        .any(|s| s.id.eq_ignore_ascii_case(&id))
    {
        return Err(GraphError::not_found(&id));
    }
    if !id.eq_ignore_ascii_case(&resource) && !id.eq_ignore_ascii_case(&principal) {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "The resourceId (or principalId) of the body must be the service principal of the path.",
        ));
    }
    let res = d
        .apps
        .service_principals
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&resource))
        .ok_or_else(|| GraphError::not_found(&resource))?;
    if !res
        .app_roles
        .iter()
        .any(|(r, _)| r.eq_ignore_ascii_case(&role))
    {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "Permission being assigned was not found on application",
        ));
    }
    if !d
        .apps
        .service_principals
        .iter()
        .any(|s| s.id.eq_ignore_ascii_case(&principal))
    {
        return Err(GraphError::not_found(&principal));
    }
    if d.apps
        .assignments
        .iter()
        .any(|a| a.principal_id == principal && a.resource_id == resource && a.app_role_id == role)
    {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "Permission being assigned already exists on the object",
        ));
    }
    let a = AppRoleAssignment {
        id: B64URL.encode(uuid::Uuid::new_v4().as_bytes()),
        app_role_id: role,
        principal_id: principal,
        resource_id: resource,
        created: now(),
    };
    let out = assignment_json(&d, &a);
    d.apps.assignments.push(a);
    Ok(json_response(StatusCode::CREATED, &out))
}

/// `GET /servicePrincipals/{id}/appRoleAssignedTo`: the grants of this resource.
pub(crate) async fn assigned_to(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    let id = resolve_sp(&emu, id);
    crate::users::need(&claims, APP_READ)?;
    let id = id.to_ascii_lowercase();
    let d = emu.dir();
    let items: Vec<Value> = d
        .apps
        .assignments
        .iter()
        .filter(|a| a.resource_id == id)
        .map(|a| assignment_json(&d, a))
        .collect();
    drop(d);
    Ok(list_answer(&emu, "appRoleAssignments", items))
}

/// `GET /servicePrincipals/{id}/appRoleAssignments`: the grants this principal holds.
pub(crate) async fn assignments(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    let id = resolve_sp(&emu, id);
    crate::users::need(&claims, APP_READ)?;
    let id = id.to_ascii_lowercase();
    let d = emu.dir();
    let items: Vec<Value> = d
        .apps
        .assignments
        .iter()
        .filter(|a| a.principal_id == id)
        .map(|a| assignment_json(&d, a))
        .collect();
    drop(d);
    Ok(list_answer(&emu, "appRoleAssignments", items))
}

/// `DELETE /servicePrincipals/{id}/appRoleAssignedTo/{assignment}` (and
/// `…/appRoleAssignments/{assignment}`).
pub(crate) async fn revoke(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path((id, assignment)): Path<(String, String)>,
) -> Result<Response<Body>, GraphError> {
    let id = resolve_sp(&emu, id);
    require(&claims, GRANT_WRITE, ROLE_ADMINS)?;
    let id = id.to_ascii_lowercase();
    let mut d = emu.dir();
    let before = d.apps.assignments.len();
    d.apps
        .assignments
        .retain(|a| !(a.id == assignment && (a.resource_id == id || a.principal_id == id)));
    if d.apps.assignments.len() == before {
        return Err(GraphError::not_found(&assignment));
    }
    Ok(no_content())
}

/// `POST /roleManagement/directory/roleAssignments` `{principalId, roleDefinitionId,
/// directoryScopeId}`.
pub(crate) async fn assign_role(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    require(&claims, ROLE_WRITE, ROLE_ADMINS)?;
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| invalid(k, "UnifiedRoleAssignment"))
    };
    let (principal, role) = (field("principalId")?, field("roleDefinitionId")?);
    if body.get("directoryScopeId").and_then(Value::as_str) != Some("/") {
        return Err(invalid("directoryScopeId", "UnifiedRoleAssignment"));
    }
    let mut d = emu.dir();
    let known = d.users.contains_key(&principal)
        || d.find_user(&principal).is_some()
        || d.apps.service_principals.iter().any(|s| s.id == principal);
    if !known {
        return Err(GraphError::not_found(&principal));
    }
    let r = d
        .roles
        .iter_mut()
        .find(|r| r.template_id.eq_ignore_ascii_case(&role) || r.id.eq_ignore_ascii_case(&role))
        .ok_or_else(|| GraphError::not_found(&role))?;
    if r.members.iter().any(|m| m.eq_ignore_ascii_case(&principal)) {
        return Err(GraphError::conflict("roleDefinitionId"));
    }
    r.members.push(principal.clone());
    let out = json!({
        "@odata.context": format!("{}/$metadata#roleManagement/directory/roleAssignments/$entity", emu.graph_root()),
        "id": format!("{}_{principal}", r.template_id),
        "principalId": principal,
        "roleDefinitionId": r.template_id,
        "directoryScopeId": "/",
    });
    Ok(json_response(StatusCode::CREATED, &out))
}

/// `DELETE /roleManagement/directory/roleAssignments/{id}`.
pub(crate) async fn unassign_role(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    require(&claims, ROLE_WRITE, ROLE_ADMINS)?;
    let Some((template, principal)) = id.split_once('_') else {
        return Err(GraphError::not_found(&id));
    };
    let mut d = emu.dir();
    let r = d
        .roles
        .iter_mut()
        .find(|r| r.template_id.eq_ignore_ascii_case(template))
        .ok_or_else(|| GraphError::not_found(&id))?;
    let before = r.members.len();
    r.members.retain(|m| !m.eq_ignore_ascii_case(principal));
    if r.members.len() == before {
        return Err(GraphError::not_found(&id));
    }
    Ok(no_content())
}

/// `GET /me`: the signed-in user of a delegated token.
pub(crate) async fn me(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
) -> Result<Response<Body>, GraphError> {
    if !claims.is_delegated() {
        return Err(GraphError::bad_request(
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        ));
    }
    crate::users::need(
        &claims,
        &[
            "User.Read",
            "User.ReadWrite",
            "User.ReadBasic.All",
            "User.Read.All",
            "User.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
    )?;
    let d = emu.dir();
    let u = d
        .users
        .get(&claims.oid)
        .ok_or_else(|| GraphError::not_found(&claims.oid))?;
    let out = json!({
        "@odata.context": format!("{}/$metadata#users/$entity", emu.graph_root()),
        "id": u.id,
        "displayName": u.display_name,
        "userPrincipalName": u.user_principal_name,
        "mail": u.mail,
    });
    Ok(json_response(StatusCode::OK, &out))
}

/// The principal a role assignment names, when it is a service principal.
pub(crate) fn principal_json(d: &Directory, id: &str) -> Option<Value> {
    d.apps
        .service_principals
        .iter()
        .find(|s| s.id == id)
        .map(|s| {
            json!({
                "@odata.type": "#microsoft.graph.servicePrincipal",
                "id": s.id,
                "appId": s.app_id,
                "displayName": s.display_name,
            })
        })
}

fn resource_app_id(r: Resource) -> &'static str {
    match r {
        Resource::Graph => GRAPH_APP_ID,
        Resource::Exchange => EXCHANGE_APP_ID,
        Resource::SharePoint => SHAREPOINT_APP_ID,
    }
}

/// The client credentials grant for an app created through Graph; `None` when
/// `client_id` names no such app.
pub(crate) fn client_credentials(
    emu: &Emu,
    tenant: &str,
    form: &HashMap<String, String>,
    client_id: &str,
) -> Option<Response<Body>> {
    let now = now();
    let d = emu.dir();
    let app = d
        .apps
        .applications
        .iter()
        .find(|a| a.app_id.eq_ignore_ascii_case(client_id))?
        .clone();
    let delay_ms = emu.cfg.identity.app_replication_delay_ms as i64;
    let age_ms = now_ms() - app.created_ms;
    let sp = d
        .apps
        .service_principals
        .iter()
        .find(|s| s.app_id.eq_ignore_ascii_case(client_id))
        .cloned();
    if age_ms < delay_ms || sp.is_none() {
        return Some(aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                emu.cfg.tenant.display_name
            ),
        ));
    }
    let sp = sp?;
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    let Some((resource, aud)) = emu.resource_for_scope(scope) else {
        return Some(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    if form.contains_key("client_secret") {
        return Some(aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    let Some(assertion) = form.get("client_assertion") else {
        return Some(aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    let expired = app
        .keys
        .iter()
        .any(|k| k.end <= now && thumbprint_matches(assertion, &k.cert));
    if expired {
        return Some(aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            &format!(
                "The provided client certificate has expired. Create a new certificate for app '{client_id}'."
            ),
        ));
    }
    let certs: Vec<RegisteredCert> = app
        .keys
        .iter()
        .filter(|k| k.start <= now + 300 && now < k.end)
        .map(|k| k.cert.clone())
        .collect();
    let auds = emu.token_audiences(tenant);
    if let Err((code, msg)) = verify_assertion(assertion, client_id, &auds, &certs, now) {
        return Some(aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            &msg,
        ));
    }
    let res_app = resource_app_id(resource);
    let res_sp = d
        .apps
        .service_principals
        .iter()
        .find(|s| s.app_id == res_app);
    let roles: Vec<String> = d
        .apps
        .assignments
        .iter()
        .filter(|a| a.principal_id == sp.id && res_sp.is_some_and(|r| r.id == a.resource_id))
        .filter_map(|a| {
            res_sp.and_then(|r| {
                r.app_roles
                    .iter()
                    .find(|(id, _)| *id == a.app_role_id)
                    .map(|(_, v)| v.clone())
            })
        })
        .collect();
    let wids: Vec<String> = d
        .roles
        .iter()
        .filter(|r| r.members.contains(&sp.id))
        .map(|r| r.template_id.clone())
        .collect();
    drop(d);
    let lifetime = emu.cfg.token_lifetime_secs as i64;
    let claims = Claims {
        aud,
        iss: format!("https://sts.windows.net/{}/", emu.cfg.tenant.id),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        tid: emu.cfg.tenant.id.clone(),
        appid: app.app_id.clone(),
        app_displayname: app.display_name.clone(),
        appidacr: "2".into(),
        idtyp: "app".into(),
        oid: sp.id.clone(),
        roles,
        wids,
        uti: B64URL.encode(uuid::Uuid::new_v4().as_bytes()),
        ver: "1.0".into(),
        scp: None,
    };
    let token = sign_token(&emu.token_key, &claims);
    emu.stats.count("token_issued");
    Some(json_response(
        StatusCode::OK,
        &json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
    ))
}

/// Whether an assertion's header names this certificate's thumbprint.
fn thumbprint_matches(assertion: &str, cert: &RegisteredCert) -> bool {
    let Some(h) = assertion.split('.').next() else {
        return false;
    };
    let Some(header) = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return false;
    };
    let t256 = header["x5t#S256"]
        .as_str()
        .and_then(|t| B64URL.decode(t).ok());
    let t1 = header["x5t"].as_str().and_then(|t| B64URL.decode(t).ok());
    t256.as_deref() == Some(cert.sha256.as_slice()) || t1.as_deref() == Some(cert.sha1.as_slice())
}
