//! Graph `users`: create (with the real validation), get, list with paging, update,
//! delete into deleted items, restore, permanent delete, revoke sessions, assign
//! licences, and `users/delta`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Map, Value, json};

use crate::auth::Claims;
use crate::ctx::{GraphError, canonical_names, json_response, no_content, now_rfc3339, read_json};
use crate::odata::{self, Query, Schema};
use crate::state::{Directory, Emu, USER_EXTRA_STRINGS, USER_PROPERTIES, User, hash_password};

pub(crate) const READ_USERS: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
pub(crate) const WRITE_USERS: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
const PASSWORD_PERMS: &[&str] = &[
    "User-PasswordProfile.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const LICENCE_PERMS: &[&str] = &[
    "LicenseAssignment.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];

const FILTERABLE: &[&str] = &[
    "id",
    "userPrincipalName",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "mailNickname",
    "onPremisesImmutableId",
    "accountEnabled",
    "usageLocation",
    "proxyAddresses",
    "assignedLicenses/skuId",
    "jobTitle",
    "department",
    // Graph documents `$filter` (eq, ne, not, in) on userType; the CLI for Microsoft 365
    // lists members with `$filter=userType eq 'Member'`.
    "userType",
];

pub(crate) const USER_SCHEMA: Schema<'static> = Schema {
    type_name: "microsoft.graph.user",
    resource: "User",
    properties: USER_PROPERTIES,
    filterable: FILTERABLE,
};

pub(crate) fn need(claims: &Claims, perms: &[&str]) -> Result<(), GraphError> {
    if claims.has_any_permission(perms) {
        Ok(())
    } else {
        Err(GraphError::forbidden())
    }
}

fn invalid_value(prop: &str) -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        format!("Invalid value specified for property '{prop}' of resource 'User'."),
    )
}

fn upn_invalid() -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        "Property userPrincipalName is invalid.",
    )
}

/// Entra's password rule: 8–256 characters, three of four classes.
pub(crate) fn password_complex(pw: &str) -> bool {
    let n = pw.chars().count();
    let classes = [
        pw.chars().any(|c| c.is_ascii_uppercase()),
        pw.chars().any(|c| c.is_ascii_lowercase()),
        pw.chars().any(|c| c.is_ascii_digit()),
        pw.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    (8..=256).contains(&n) && classes >= 3 && pw.is_ascii()
}

fn weak_password() -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        "The specified password does not comply with password complexity requirements. Please provide a different password.",
    )
}

fn check_upn(d: &Directory, upn: &str) -> Result<(), GraphError> {
    let Some((local, domain)) = upn.rsplit_once('@') else {
        return Err(upn_invalid());
    };
    let ok_char = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '\'' | '.' | '-' | '_' | '!' | '#' | '^' | '~')
    };
    if local.is_empty()
        || local.chars().count() > 64
        || upn.chars().count() > 113
        || !local.chars().all(ok_char)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(upn_invalid());
    }
    if !d.verified_domain(domain) {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
    Ok(())
}

fn check_nickname(n: &str) -> Result<(), GraphError> {
    let ok = !n.is_empty()
        && n.chars().count() <= 64
        && n.chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control() && !"@()\\[]\";:<>, ".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid_value("mailNickname"))
    }
}

fn check_immutable_id(v: &str) -> Result<(), GraphError> {
    if v.is_empty() || v.contains('$') || v.contains('_') || v.len() > 256 {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "Property onPremisesImmutableId is invalid.",
        ));
    }
    Ok(())
}

fn check_usage_location(v: &str) -> Result<(), GraphError> {
    if v.len() == 2 && v.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid_value("usageLocation"))
    }
}

fn str_prop(body: &Map<String, Value>, prop: &str) -> Result<Option<String>, GraphError> {
    match body.get(prop) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_value(prop)),
    }
}

/// Writable properties besides the simple strings of [`USER_EXTRA_STRINGS`].
const WRITABLE: &[&str] = &[
    "accountEnabled",
    "displayName",
    "givenName",
    "surname",
    "mailNickname",
    "userPrincipalName",
    "passwordProfile",
    "usageLocation",
    "onPremisesImmutableId",
    "mail",
    "businessPhones",
    "otherMails",
];

/// The members of `passwordProfile` (CSDL `microsoft.graph.passwordProfile`).
const PASSWORD_PROFILE: &[&str] = &[
    "forceChangePasswordNextSignIn",
    "forceChangePasswordNextSignInWithMfa",
    "password",
];

/// A create or update body with its property names spelled as declared (Graph matches
/// them ignoring case), `passwordProfile`'s members included.
fn user_body(body: Map<String, Value>) -> Result<Map<String, Value>, GraphError> {
    let mut body = canonical_names(body, &[WRITABLE, USER_EXTRA_STRINGS, USER_PROPERTIES])?;
    match body.remove("passwordProfile") {
        Some(Value::Object(p)) => {
            let p = canonical_names(p, &[PASSWORD_PROFILE])?;
            body.insert("passwordProfile".into(), Value::Object(p));
        }
        Some(other) => {
            body.insert("passwordProfile".into(), other);
        }
        None => {}
    }
    Ok(body)
}

fn check_known_properties(body: &Map<String, Value>) -> Result<(), GraphError> {
    for k in body.keys() {
        if k.starts_with("@odata.") {
            continue;
        }
        if !WRITABLE.contains(&k.as_str()) && !USER_EXTRA_STRINGS.contains(&k.as_str()) {
            if USER_PROPERTIES.contains(&k.as_str()) {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    format!("Property '{k}' is read-only and cannot be set."),
                ));
            }
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "Property '{k}' does not exist as a declared property or extension property."
                ),
            ));
        }
    }
    Ok(())
}

/// Applies the simple string and list properties of a create or update.
fn apply_simple(u: &mut User, body: &Map<String, Value>) -> Result<(), GraphError> {
    for k in USER_EXTRA_STRINGS {
        match body.get(*k) {
            None => {}
            Some(Value::Null) => {
                u.extra.remove(*k);
            }
            Some(Value::String(s)) => {
                u.extra.insert((*k).into(), json!(s));
            }
            Some(_) => return Err(invalid_value(k)),
        }
    }
    for k in ["businessPhones", "otherMails"] {
        match body.get(k) {
            None => {}
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                u.extra.insert(k.into(), Value::Array(a.clone()));
            }
            Some(_) => return Err(invalid_value(k)),
        }
    }
    if let Some(v) = body.get("givenName") {
        u.given_name = v.as_str().map(str::to_string);
    }
    if let Some(v) = body.get("surname") {
        u.surname = v.as_str().map(str::to_string);
    }
    if body.contains_key("mail") {
        u.mail = str_prop(body, "mail")?;
    }
    Ok(())
}

fn context(emu: &Emu, fragment: &str) -> String {
    format!("{}/$metadata#{fragment}", emu.graph_root())
}

fn select_fragment(q: &Query) -> String {
    match &q.raw_select {
        Some(s) => format!("users({s})"),
        None => "users".into(),
    }
}

/// `POST /users`.
pub(crate) async fn create(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    need(&claims, WRITE_USERS)?;
    let body = user_body(read_json(&headers, body, emu.cfg.max_body_bytes).await?)?;
    check_known_properties(&body)?;
    let enabled = match body.get("accountEnabled") {
        Some(Value::Bool(b)) => *b,
        _ => return Err(invalid_value("accountEnabled")),
    };
    let display = str_prop(&body, "displayName")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid_value("displayName"))?;
    if display.chars().count() > 256 {
        return Err(invalid_value("displayName"));
    }
    let nick = str_prop(&body, "mailNickname")?.ok_or_else(|| invalid_value("mailNickname"))?;
    check_nickname(&nick)?;
    let upn = str_prop(&body, "userPrincipalName")?.ok_or_else(upn_invalid)?;
    let password = match body.get("passwordProfile") {
        Some(Value::Object(p)) => match p.get("password") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    "A password must be specified to create a new user.",
                ));
            }
        },
        _ => {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "A password must be specified to create a new user.",
            ));
        }
    };
    let force_change = body
        .get("passwordProfile")
        .and_then(|p| p.get("forceChangePasswordNextSignIn"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let usage = str_prop(&body, "usageLocation")?;
    if let Some(u) = &usage {
        check_usage_location(u)?;
    }
    let immutable = str_prop(&body, "onPremisesImmutableId")?;
    if let Some(i) = &immutable {
        check_immutable_id(i)?;
    }
    let mut d = emu.dir();
    check_upn(&d, &upn)?;
    if !password_complex(&password) {
        return Err(weak_password());
    }
    if d.find_user(&upn).is_some() {
        return Err(GraphError::conflict("userPrincipalName"));
    }
    if d.users
        .values()
        .any(|u| u.mail_nickname.eq_ignore_ascii_case(&nick))
    {
        return Err(GraphError::conflict("mailNickname"));
    }
    if let Some(i) = &immutable
        && d.users
            .values()
            .chain(d.deleted.values())
            .any(|u| u.immutable_id.as_deref() == Some(i.as_str()))
    {
        return Err(GraphError::conflict("onPremisesImmutableId"));
    }
    let now = now_rfc3339();
    let mut user = User {
        id: uuid::Uuid::new_v4().to_string(),
        user_principal_name: upn,
        display_name: display,
        mail_nickname: nick,
        account_enabled: enabled,
        given_name: None,
        surname: None,
        mail: None,
        usage_location: usage,
        immutable_id: immutable,
        proxy_addresses: Vec::new(),
        assigned_licenses: Vec::new(),
        password_hash: Some(hash_password(&password)),
        force_change_password: force_change,
        created: now.clone(),
        last_password_change: Some(now.clone()),
        sessions_valid_from: now,
        deleted: None,
        extra: Map::new(),
    };
    apply_simple(&mut user, &body)?;
    let id = user.id.clone();
    let mut out = user.select(None);
    d.users.insert(id.clone(), user);
    d.touch(&id, emu.cfg.delta_retention_changes);
    drop(d);
    emu.stats.count("user_created");
    out.insert(
        "@odata.context".into(),
        json!(context(&emu, "users/$entity")),
    );
    let mut resp = json_response(StatusCode::CREATED, &Value::Object(reorder_context(out)));
    if let Ok(v) = header::HeaderValue::from_str(&format!(
        "{}/directoryObjects/{id}/Microsoft.DirectoryServices.User",
        emu.graph_root()
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Puts `@odata.context` first, as Graph does.
fn reorder_context(m: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(c) = m.get("@odata.context") {
        out.insert("@odata.context".into(), c.clone());
    }
    for (k, v) in m {
        if k != "@odata.context" {
            out.insert(k, v);
        }
    }
    out
}

/// `GET /users/{id | userPrincipalName}`.
pub(crate) async fn get(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, READ_USERS)?;
    let q = odata::parse_query(raw.as_deref(), &["select", "expand"], Some(&USER_SCHEMA))?;
    let d = emu.dir();
    let u = d.find_user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let mut out = u.select_only(q.select.as_deref());
    drop(d);
    out.insert(
        "@odata.context".into(),
        json!(context(&emu, &format!("{}/$entity", select_fragment(&q)))),
    );
    Ok(json_response(
        StatusCode::OK,
        &Value::Object(reorder_context(out)),
    ))
}

/// One `licenseDetails` per assigned SKU (CSDL `microsoft.graph.licenseDetails`: `id`,
/// `servicePlans`, `skuId`, `skuPartNumber`).
fn license_details_of(emu: &Emu, d: &Directory, u: &User) -> Vec<Value> {
    u.assigned_licenses
        .iter()
        .map(|(sku, disabled)| {
            let part = d
                .skus
                .iter()
                .find(|s| s.sku_id.eq_ignore_ascii_case(sku))
                .map(|s| s.part_number.clone());
            // Graph's ids here are opaque base64 strings, stable per user and SKU.
            let id = B64URL.encode(format!("{}:{sku}", u.id));
            json!({
                "id": id,
                "servicePlans": crate::org::service_plans(emu, sku, disabled),
                "skuId": sku,
                "skuPartNumber": part,
            })
        })
        .collect()
}

/// `GET /users/{id}/licenseDetails`.
pub(crate) async fn license_details(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, READ_USERS)?;
    let q = odata::parse_query(raw.as_deref(), &["select", "top", "count"], None)?;
    let d = emu.dir();
    let u = d.find_user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let uid = u.id.clone();
    let mut value = license_details_of(&emu, &d, u);
    drop(d);
    if let Some(props) = &q.select {
        for v in &mut value {
            if let Value::Object(m) = v {
                m.retain(|k, _| props.iter().any(|p| p.eq_ignore_ascii_case(k)));
            }
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "@odata.context": context(&emu, &format!("users('{uid}')/licenseDetails")),
            "value": value,
        }),
    ))
}

/// `GET /users/{id}/licenseDetails/{licenseDetailsId}`.
pub(crate) async fn license_detail(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path((id, detail)): Path<(String, String)>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, READ_USERS)?;
    let d = emu.dir();
    let u = d.find_user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let uid = u.id.clone();
    let found = license_details_of(&emu, &d, u)
        .into_iter()
        .find(|v| v["id"].as_str() == Some(detail.as_str()));
    drop(d);
    let Some(Value::Object(mut m)) = found else {
        return Err(GraphError::not_found(&detail));
    };
    m.insert(
        "@odata.context".into(),
        json!(context(
            &emu,
            &format!("users('{uid}')/licenseDetails/$entity")
        )),
    );
    Ok(json_response(
        StatusCode::OK,
        &Value::Object(reorder_context(m)),
    ))
}

fn encode_token(v: &Value) -> String {
    B64URL.encode(v.to_string())
}

fn decode_token(s: &str) -> Option<Value> {
    B64URL
        .decode(s.trim())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Characters escaped in query values of the links we hand out (`$` stays in keys).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b',')
    .remove(b'/');

fn link(emu: &Emu, path: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, QUERY_VALUE)
            )
        })
        .collect();
    format!("{}{path}?{}", emu.graph_root(), query.join("&"))
}

/// `GET /users`.
pub(crate) async fn list(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, READ_USERS)?;
    let q = odata::parse_query(
        raw.as_deref(),
        &["select", "filter", "top", "skiptoken", "count"],
        Some(&USER_SCHEMA),
    )?;
    let page = q.top.unwrap_or(100) as usize;
    let after = match &q.skiptoken {
        None => None,
        Some(t) => Some(
            decode_token(t)
                .and_then(|v| v["after"].as_str().map(str::to_string))
                .ok_or_else(|| {
                    GraphError::bad_request("Request_BadRequest", "The skip token is invalid.")
                })?,
        ),
    };
    let d = emu.dir();
    let mut value = Vec::new();
    let mut last = None;
    let mut more = false;
    let range = match &after {
        Some(a) => d
            .users
            .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
        None => d.users.range::<String, _>(..),
    };
    for (id, u) in range {
        if let Some(f) = &q.filter
            && !odata::matches(f, &u.to_json())
        {
            continue;
        }
        if value.len() == page {
            more = true;
            break;
        }
        value.push(Value::Object(u.select_only(q.select.as_deref())));
        last = Some(id.clone());
    }
    drop(d);
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(context(&emu, &select_fragment(&q))),
    );
    if more {
        let token = encode_token(&json!({"after": last}));
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &q.raw_select {
            params.push(("$select", s));
        }
        if let Some(f) = &q.raw_filter {
            params.push(("$filter", f));
        }
        let top = q.top.map(|t| t.to_string());
        if let Some(t) = &top {
            params.push(("$top", t));
        }
        params.push(("$skiptoken", &token));
        out.insert(
            "@odata.nextLink".into(),
            json!(link(&emu, "/users", &params)),
        );
    }
    out.insert("value".into(), Value::Array(value));
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}

/// `PATCH /users/{id}`.
pub(crate) async fn update(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    need(&claims, WRITE_USERS)?;
    let body = user_body(read_json(&headers, body, emu.cfg.max_body_bytes).await?)?;
    check_known_properties(&body)?;
    let mut d = emu.dir();
    let uid = d
        .find_user_id(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let target_is_admin = d.is_admin(&uid);
    let mut u = d
        .users
        .get(&uid)
        .cloned()
        .ok_or_else(|| GraphError::not_found(&id))?;
    if let Some(v) = body.get("accountEnabled") {
        u.account_enabled = v.as_bool().ok_or_else(|| invalid_value("accountEnabled"))?;
    }
    if let Some(v) = str_prop(&body, "displayName")? {
        if v.trim().is_empty() || v.chars().count() > 256 {
            return Err(invalid_value("displayName"));
        }
        u.display_name = v;
    }
    if let Some(n) = str_prop(&body, "mailNickname")? {
        check_nickname(&n)?;
        if d.users
            .values()
            .any(|o| o.id != uid && o.mail_nickname.eq_ignore_ascii_case(&n))
        {
            return Err(GraphError::conflict("mailNickname"));
        }
        u.mail_nickname = n;
    }
    if let Some(upn) = str_prop(&body, "userPrincipalName")? {
        check_upn(&d, &upn)?;
        if d.users
            .values()
            .any(|o| o.id != uid && o.user_principal_name.eq_ignore_ascii_case(&upn))
        {
            return Err(GraphError::conflict("userPrincipalName"));
        }
        u.user_principal_name = upn;
    }
    if body.contains_key("usageLocation") {
        let v = str_prop(&body, "usageLocation")?;
        if let Some(l) = &v {
            check_usage_location(l)?;
        }
        u.usage_location = v;
    }
    if body.contains_key("onPremisesImmutableId") {
        let v = str_prop(&body, "onPremisesImmutableId")?;
        if let Some(i) = &v {
            check_immutable_id(i)?;
            if d.users
                .values()
                .chain(d.deleted.values())
                .any(|o| o.id != uid && o.immutable_id.as_deref() == Some(i.as_str()))
            {
                return Err(GraphError::conflict("onPremisesImmutableId"));
            }
        }
        u.immutable_id = v;
    }
    if let Some(p) = body.get("passwordProfile") {
        let p = p
            .as_object()
            .ok_or_else(|| invalid_value("passwordProfile"))?;
        if !claims.has_any_permission(PASSWORD_PERMS) {
            return Err(GraphError::forbidden());
        }
        let role_ok = if target_is_admin {
            claims.has_role("Privileged Authentication Administrator")
        } else {
            claims.has_role("User Administrator")
                || claims.has_role("Privileged Authentication Administrator")
                || claims.has_role("Helpdesk Administrator")
                || claims.has_role("Authentication Administrator")
        };
        if !role_ok {
            return Err(GraphError::forbidden());
        }
        if let Some(pw) = p.get("password") {
            let pw = pw
                .as_str()
                .ok_or_else(|| invalid_value("passwordProfile"))?;
            if !password_complex(pw) {
                return Err(weak_password());
            }
            u.password_hash = Some(hash_password(pw));
            u.last_password_change = Some(now_rfc3339());
        }
        if let Some(f) = p.get("forceChangePasswordNextSignIn") {
            u.force_change_password = f
                .as_bool()
                .ok_or_else(|| invalid_value("passwordProfile"))?;
        }
    }
    apply_simple(&mut u, &body)?;
    d.users.insert(uid.clone(), u);
    d.touch(&uid, emu.cfg.delta_retention_changes);
    emu.stats.count("user_updated");
    Ok(no_content())
}

/// `DELETE /users/{id}`: into deleted items for 30 days.
pub(crate) async fn delete(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, WRITE_USERS)?;
    let mut d = emu.dir();
    let uid = d
        .find_user_id(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    if let Some(mut u) = d.users.remove(&uid) {
        u.deleted = Some(now_rfc3339());
        d.deleted.insert(uid.clone(), u);
        d.touch(&uid, emu.cfg.delta_retention_changes);
    }
    emu.stats.count("user_deleted");
    Ok(no_content())
}

/// `POST /users/{id}/revokeSignInSessions`.
pub(crate) async fn revoke_sessions(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(
        &claims,
        &[
            "User.RevokeSessions.All",
            "User.ReadWrite.All",
            "Directory.ReadWrite.All",
        ],
    )?;
    let mut d = emu.dir();
    let uid = d
        .find_user_id(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    if let Some(u) = d.users.get_mut(&uid) {
        u.sessions_valid_from = now_rfc3339();
    }
    emu.stats.count("sessions_revoked");
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": context(&emu, "Edm.Boolean"), "value": true}),
    ))
}

/// `POST /users/{id}/assignLicense`.
pub(crate) async fn assign_license(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    need(&claims, LICENCE_PERMS)?;
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let mut body = canonical_names(body, &[&["addLicenses", "removeLicenses"]])?;
    if let Some(Value::Array(items)) = body.get_mut("addLicenses") {
        for item in items.iter_mut() {
            if let Value::Object(m) = item {
                *m = canonical_names(std::mem::take(m), &[&["disabledPlans", "skuId"]])?;
            }
        }
    }
    let bad = |m: &str| GraphError::bad_request("Request_BadRequest", m.to_string());
    let add = body
        .get("addLicenses")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid value specified for property 'addLicenses'."))?;
    let remove = body
        .get("removeLicenses")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid value specified for property 'removeLicenses'."))?;
    let mut d = emu.dir();
    let uid = d
        .find_user_id(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let mut u = d
        .users
        .get(&uid)
        .cloned()
        .ok_or_else(|| GraphError::not_found(&id))?;
    let mut adds = Vec::new();
    for a in add {
        let sku = a
            .get("skuId")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Invalid value specified for property 'skuId'."))?
            .to_ascii_lowercase();
        let disabled: Vec<String> = a
            .get("disabledPlans")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !d.skus.iter().any(|s| s.sku_id == sku) {
            return Err(bad(&format!(
                "License {sku} does not correspond to a valid company License."
            )));
        }
        adds.push((sku, disabled));
    }
    let mut removes = Vec::new();
    for r in remove {
        let sku = r
            .as_str()
            .ok_or_else(|| bad("Invalid value specified for property 'removeLicenses'."))?
            .to_ascii_lowercase();
        if !u.assigned_licenses.iter().any(|(s, _)| *s == sku) {
            return Err(bad(&format!(
                "User does not have a corresponding license {sku}."
            )));
        }
        removes.push(sku);
    }
    if !adds.is_empty() && u.usage_location.is_none() {
        return Err(bad(
            "License assignment cannot be done for user with invalid usage location.",
        ));
    }
    for (sku, _) in &adds {
        let already = u.assigned_licenses.iter().any(|(s, _)| s == sku);
        if already {
            continue;
        }
        let s = d
            .skus
            .iter()
            .find(|s| s.sku_id == *sku)
            .map(|s| s.enabled)
            .unwrap_or(0);
        if d.consumed(sku) >= s {
            return Err(bad(&format!(
                "Subscription with SKU {sku} does not have any available licenses."
            )));
        }
    }
    u.assigned_licenses.retain(|(s, _)| !removes.contains(s));
    for (sku, disabled) in adds {
        match u.assigned_licenses.iter_mut().find(|(s, _)| *s == sku) {
            Some(existing) => existing.1 = disabled,
            None => u.assigned_licenses.push((sku, disabled)),
        }
    }
    if !u.assigned_licenses.is_empty() && u.mail.is_none() {
        // Exchange provisions a mailbox: mail and the primary proxy address appear.
        u.mail = Some(u.user_principal_name.clone());
        u.proxy_addresses = vec![format!("SMTP:{}", u.user_principal_name)];
    }
    let mut out = u.select(None);
    d.users.insert(uid.clone(), u);
    d.touch(&uid, emu.cfg.delta_retention_changes);
    drop(d);
    emu.stats.count("licence_assigned");
    out.insert(
        "@odata.context".into(),
        json!(context(&emu, "users/$entity")),
    );
    Ok(json_response(
        StatusCode::OK,
        &Value::Object(reorder_context(out)),
    ))
}

fn deleted_user_json(emu: &Emu, u: &User) -> Map<String, Value> {
    let mut m = u.select(None);
    m.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    m.insert("deletedDateTime".into(), json!(u.deleted));
    let _ = emu;
    m
}

/// `GET /directory/deletedItems/microsoft.graph.user`.
pub(crate) async fn list_deleted(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, READ_USERS)?;
    let d = emu.dir();
    let value: Vec<Value> = d
        .deleted
        .values()
        .map(|u| Value::Object(deleted_user_json(&emu, u)))
        .collect();
    drop(d);
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": context(&emu, "users"), "value": value}),
    ))
}

/// `GET /directory/deletedItems/{id}`.
pub(crate) async fn get_deleted(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, READ_USERS)?;
    let d = emu.dir();
    let u = d
        .deleted
        .get(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let mut m = deleted_user_json(&emu, u);
    drop(d);
    m.insert(
        "@odata.context".into(),
        json!(context(&emu, "directoryObjects/$entity")),
    );
    Ok(json_response(
        StatusCode::OK,
        &Value::Object(reorder_context(m)),
    ))
}

/// `POST /directory/deletedItems/{id}/restore`.
pub(crate) async fn restore(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, WRITE_USERS)?;
    let mut d = emu.dir();
    let u = d
        .deleted
        .get(&id)
        .cloned()
        .ok_or_else(|| GraphError::not_found(&id))?;
    if d.find_user(&u.user_principal_name).is_some() {
        return Err(GraphError::conflict("userPrincipalName"));
    }
    d.deleted.remove(&id);
    let mut u = u;
    u.deleted = None;
    let mut m = u.select(None);
    d.users.insert(id.clone(), u);
    d.touch(&id, emu.cfg.delta_retention_changes);
    drop(d);
    emu.stats.count("user_restored");
    m.insert(
        "@odata.context".into(),
        json!(context(&emu, "directoryObjects/$entity")),
    );
    m.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    Ok(json_response(
        StatusCode::OK,
        &Value::Object(reorder_context(m)),
    ))
}

/// `DELETE /directory/deletedItems/{id}`: gone for good.
pub(crate) async fn purge(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, WRITE_USERS)?;
    let mut d = emu.dir();
    d.deleted
        .remove(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    d.purged.push(id.clone());
    d.touch(&id, emu.cfg.delta_retention_changes);
    emu.stats.count("user_purged");
    Ok(no_content())
}

fn page_size(headers: &HeaderMap) -> usize {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix("odata.maxpagesize=")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .filter(|n| (1..=999).contains(n))
        .unwrap_or(100)
}

fn sync_state_not_found() -> GraphError {
    GraphError::bad_request(
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    )
}

/// `GET /users/delta`.
pub(crate) async fn delta(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response<Body>, GraphError> {
    need(&claims, READ_USERS)?;
    let q = odata::parse_query(
        raw.as_deref(),
        &["select", "deltatoken", "skiptoken"],
        Some(&USER_SCHEMA),
    )?;
    let page = page_size(&headers);
    let epoch = emu.epoch();
    let d = emu.dir();
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(context(&emu, &select_fragment(&q))),
    );
    let delta_link = |seq: u64, select: &Value| {
        link(
            &emu,
            "/users/delta",
            &[(
                "$deltatoken",
                &encode_token(&json!({"e": epoch, "s": seq, "sel": select})),
            )],
        )
    };
    if q.deltatoken.as_deref() == Some("latest") {
        let sel = q.raw_select.clone().map_or(Value::Null, Value::String);
        out.insert("@odata.deltaLink".into(), json!(delta_link(d.seq, &sel)));
        out.insert("value".into(), json!([]));
        return Ok(json_response(StatusCode::OK, &Value::Object(out)));
    }
    // Decode where we are: an initial listing (after an id) or a change round (from
    // seq T up to seq S, at an offset).
    enum Phase {
        Initial {
            snapshot: u64,
            after: Option<String>,
        },
        Changes {
            from: u64,
            to: u64,
            offset: usize,
        },
    }
    let (phase, select) = if let Some(t) = &q.skiptoken {
        let v = decode_token(t).ok_or_else(sync_state_not_found)?;
        if v["e"].as_str() != Some(epoch.as_str()) {
            return Err(sync_state_not_found());
        }
        let sel = v["sel"].clone();
        match v["k"].as_str() {
            Some("init") => (
                Phase::Initial {
                    snapshot: v["s"].as_u64().unwrap_or(0),
                    after: v["a"].as_str().map(str::to_string),
                },
                sel,
            ),
            Some("chg") => (
                Phase::Changes {
                    from: v["f"].as_u64().unwrap_or(0),
                    to: v["s"].as_u64().unwrap_or(0),
                    offset: v["o"].as_u64().unwrap_or(0) as usize,
                },
                sel,
            ),
            _ => return Err(sync_state_not_found()),
        }
    } else if let Some(t) = &q.deltatoken {
        let v = decode_token(t).ok_or_else(sync_state_not_found)?;
        if v["e"].as_str() != Some(epoch.as_str()) {
            return Err(sync_state_not_found());
        }
        let from = v["s"].as_u64().ok_or_else(sync_state_not_found)?;
        if from < d.delta_floor {
            let fresh = format!("{}/users/delta", emu.graph_root());
            return Err(GraphError::new(
                StatusCode::GONE,
                "resyncRequired",
                "Resync required. Replace any local cached copies of the directory objects with the objects in the response, and re-run the delta query from the start.",
            )
            .with_header(header::LOCATION, fresh));
        }
        (
            Phase::Changes {
                from,
                to: d.seq,
                offset: 0,
            },
            v["sel"].clone(),
        )
    } else {
        (
            Phase::Initial {
                snapshot: d.seq,
                after: None,
            },
            q.raw_select.clone().map_or(Value::Null, Value::String),
        )
    };
    let sel_list: Option<Vec<String>> = select
        .as_str()
        .map(|s| s.split(',').map(|p| p.trim().to_string()).collect());
    let mut value = Vec::new();
    match phase {
        Phase::Initial { snapshot, after } => {
            let range = match &after {
                Some(a) => d
                    .users
                    .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
                None => d.users.range::<String, _>(..),
            };
            let mut last = None;
            let mut more = false;
            for (id, u) in range {
                if value.len() == page {
                    more = true;
                    break;
                }
                value.push(Value::Object(u.select(sel_list.as_deref())));
                last = Some(id.clone());
            }
            if more {
                let tok = encode_token(
                    &json!({"e": epoch, "k": "init", "s": snapshot, "a": last, "sel": select}),
                );
                out.insert(
                    "@odata.nextLink".into(),
                    json!(link(&emu, "/users/delta", &[("$skiptoken", &tok)])),
                );
            } else {
                out.insert(
                    "@odata.deltaLink".into(),
                    json!(delta_link(snapshot, &select)),
                );
            }
        }
        Phase::Changes { from, to, offset } => {
            // Each changed id once, at the position of its last change.
            let mut ids: Vec<&str> = Vec::new();
            for (seq, id) in d.changes.iter().rev() {
                if *seq <= from {
                    break;
                }
                if *seq <= to && !ids.contains(&id.as_str()) {
                    ids.push(id);
                }
            }
            ids.reverse();
            for id in ids.iter().skip(offset).take(page) {
                if let Some(u) = d.users.get(*id) {
                    value.push(Value::Object(u.select(sel_list.as_deref())));
                } else if d.deleted.contains_key(*id) {
                    value.push(json!({"id": id, "@removed": {"reason": "changed"}}));
                } else {
                    value.push(json!({"id": id, "@removed": {"reason": "deleted"}}));
                }
            }
            if offset + page < ids.len() {
                let tok = encode_token(
                    &json!({"e": epoch, "k": "chg", "f": from, "s": to, "o": offset + page, "sel": select}),
                );
                out.insert(
                    "@odata.nextLink".into(),
                    json!(link(&emu, "/users/delta", &[("$skiptoken", &tok)])),
                );
            } else {
                out.insert("@odata.deltaLink".into(), json!(delta_link(to, &select)));
            }
        }
    }
    drop(d);
    out.insert("value".into(), Value::Array(value));
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}
