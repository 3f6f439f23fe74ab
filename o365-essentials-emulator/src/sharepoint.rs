//! SharePoint Online: the root team site through Graph (`/sites/root`, its lists and
//! drives) and through SharePoint REST under `{base}/sharepoint/_api/web` (the site
//! groups and their users, list versioning). Like the real service, SharePoint REST
//! refuses app-only tokens obtained with a client secret (401 "Unsupported app only
//! token."). A new document library's drive appears after a configurable delay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use axum::middleware::Next;
use serde_json::{Value, json};

use crate::auth::Claims;
use crate::ctx::{GraphError, json_response, no_content, now_rfc3339, read_json};
use crate::state::{Directory, Emu};
use crate::users::need;

const SITES_READ: &[&str] = &[
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
];
const SITES_MANAGE: &[&str] = &["Sites.Manage.All", "Sites.FullControl.All"];

/// A list of the team site.
#[derive(Debug, Clone)]
pub(crate) struct SpList {
    pub id: String,
    /// URL name (`Shared Documents`).
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub template: String,
    pub versioning: bool,
    pub created: String,
    pub drive_id: String,
    /// When the drive appears (`None`: already there).
    pub drive_at: Option<Instant>,
}

/// A site group.
#[derive(Debug, Clone)]
pub(crate) struct SpGroup {
    pub id: u32,
    pub title: String,
    /// Site user ids.
    pub users: Vec<u32>,
}

/// Everything SharePoint keeps.
#[derive(Debug, Default)]
pub(crate) struct SpoState {
    pub host: String,
    pub site_guid: String,
    pub web_guid: String,
    pub title: String,
    pub lists: Vec<SpList>,
    pub groups: Vec<SpGroup>,
    /// Site user id → online account id.
    pub site_users: Vec<(u32, String)>,
    pub next_user: u32,
    /// Per app: (resource units used in the window, window start).
    pub usage: HashMap<String, (u32, Option<Instant>)>,
}

impl SpoState {
    fn site_id(&self) -> String {
        format!("{},{},{}", self.host, self.site_guid, self.web_guid)
    }

    fn web_url(&self) -> String {
        format!("https://{}", self.host)
    }

    fn drive_ready(&self, l: &SpList, scale: f64, delay_ms: u64) -> bool {
        match l.drive_at {
            None => true,
            Some(at) => at.elapsed().as_secs_f64() * scale * 1000.0 >= delay_ms as f64,
        }
    }
}

fn drive_id_for(list_id: &str) -> String {
    // Real drive ids are base64 of site and list ids after `b!`; this keeps the shape.
    format!("b!{}", list_id.replace('-', ""))
}

/// Sets up the root site: its Documents library, an events list and the three groups.
pub(crate) fn init(d: &mut Directory, emu: &Emu) {
    let host = format!("{}.sharepoint.com", emu.sharepoint_tenant());
    let docs = emu.stable_id("spo:list:documents");
    let events = emu.stable_id("spo:list:events");
    let now = now_rfc3339();
    let title = emu.cfg.tenant.display_name.clone();
    d.spo = SpoState {
        host,
        site_guid: emu.stable_id("spo:site"),
        web_guid: emu.stable_id("spo:web"),
        lists: vec![
            SpList {
                id: docs.clone(),
                name: "Shared Documents".into(),
                display_name: "Documents".into(),
                description: String::new(),
                template: "documentLibrary".into(),
                versioning: true,
                created: now.clone(),
                drive_id: drive_id_for(&docs),
                drive_at: None,
            },
            SpList {
                id: events.clone(),
                name: "Events".into(),
                display_name: "Events".into(),
                description: String::new(),
                template: "events".into(),
                versioning: false,
                created: now,
                drive_id: String::new(),
                drive_at: None,
            },
        ],
        groups: vec![
            SpGroup {
                id: 3,
                title: format!("{title} Owners"),
                users: Vec::new(),
            },
            SpGroup {
                id: 4,
                title: format!("{title} Visitors"),
                users: Vec::new(),
            },
            SpGroup {
                id: 5,
                title: format!("{title} Members"),
                users: Vec::new(),
            },
        ],
        title,
        site_users: Vec::new(),
        next_user: 7,
        usage: HashMap::new(),
    };
}

// ---------------------------------------------------------------- Graph: sites, lists

fn site_json(emu: &Emu, s: &SpoState) -> Value {
    json!({
        "@odata.context": format!("{}/$metadata#sites/$entity", emu.graph_root()),
        "createdDateTime": "2024-01-01T00:00:00Z",
        "description": "",
        "id": s.site_id(),
        "lastModifiedDateTime": now_rfc3339(),
        "name": "",
        "webUrl": s.web_url(),
        "displayName": s.title,
        "root": {},
        "siteCollection": {"hostname": s.host},
    })
}

fn list_web_url(s: &SpoState, l: &SpList) -> String {
    format!("{}/{}", s.web_url(), l.name.replace(' ', "%20"))
}

fn list_json(s: &SpoState, l: &SpList) -> Value {
    json!({
        "@odata.etag": format!("\"{},1\"", l.id),
        "createdDateTime": l.created,
        "description": l.description,
        "eTag": format!("\"{},1\"", l.id),
        "id": l.id,
        "lastModifiedDateTime": l.created,
        "name": l.name,
        "webUrl": list_web_url(s, l),
        "displayName": l.display_name,
        "parentReference": {"siteId": s.site_id()},
        "list": {"contentTypesEnabled": false, "hidden": false, "template": l.template},
    })
}

fn drive_json(s: &SpoState, l: &SpList) -> Value {
    json!({
        "createdDateTime": l.created,
        "description": l.description,
        "id": l.drive_id,
        "lastModifiedDateTime": l.created,
        "name": l.display_name,
        "webUrl": list_web_url(s, l),
        "driveType": "documentLibrary",
    })
}

fn check_site(s: &SpoState, id: &str) -> Result<(), GraphError> {
    if id == "root" || id.eq_ignore_ascii_case(&s.site_id()) || id.eq_ignore_ascii_case(&s.host) {
        Ok(())
    } else {
        Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "Requested site could not be found",
        ))
    }
}

fn list_not_found() -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "itemNotFound",
        "The specified list was not found",
    )
}

/// `GET /sites/{id}` (and `/sites/root`).
pub(crate) async fn get_site(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SITES_READ)?;
    let d = emu.dir();
    check_site(&d.spo, &id)?;
    Ok(json_response(StatusCode::OK, &site_json(&emu, &d.spo)))
}

/// `GET /sites/{id}/lists`.
pub(crate) async fn get_lists(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SITES_READ)?;
    let d = emu.dir();
    check_site(&d.spo, &id)?;
    let value: Vec<Value> = d.spo.lists.iter().map(|l| list_json(&d.spo, l)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": format!("{}/$metadata#sites('{}')/lists", emu.graph_root(), id), "value": value}),
    ))
}

const TEMPLATES: &[&str] = &[
    "documentLibrary",
    "genericList",
    "events",
    "tasks",
    "contacts",
    "links",
    "announcements",
];

/// `POST /sites/{id}/lists`.
pub(crate) async fn create_list(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SITES_MANAGE)?;
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let invalid = |m: &str| GraphError::bad_request("invalidRequest", m.to_string());
    for k in body.keys() {
        if !["displayName", "description", "list", "columns", "name"].contains(&k.as_str())
            && !k.starts_with("@odata.")
        {
            return Err(invalid(&format!(
                "The property '{k}' does not exist on type 'microsoft.graph.list'. Make sure to only use property names that are defined by the type."
            )));
        }
    }
    let display = body
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("Invalid request: displayName is required."))?
        .to_string();
    if display.chars().count() > 255
        || display
            .chars()
            .any(|c| "\"*:<>?/\\|#%".contains(c) || c.is_control())
    {
        return Err(invalid(
            "The list name is invalid: it is longer than 255 characters or contains one of \" * : < > ? / \\ | # %.",
        ));
    }
    let description = match body.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("Invalid request: description must be a string.")),
    };
    let template = body
        .get("list")
        .and_then(|l| l.get("template"))
        .and_then(Value::as_str)
        .unwrap_or("genericList");
    let Some(template) = TEMPLATES.iter().find(|t| t.eq_ignore_ascii_case(template)) else {
        return Err(invalid(&format!(
            "Invalid request: unknown list template '{template}'."
        )));
    };
    let mut d = emu.dir();
    check_site(&d.spo, &id)?;
    if d.spo.lists.iter().any(|l| {
        l.display_name.eq_ignore_ascii_case(&display) || l.name.eq_ignore_ascii_case(&display)
    }) {
        return Err(GraphError::new(
            StatusCode::CONFLICT,
            "nameAlreadyExists",
            "A list, survey, discussion board, or document library with the specified title already exists in this Web site.  Please choose another title.",
        ));
    }
    let list_id = uuid::Uuid::new_v4().to_string();
    let library = *template == "documentLibrary";
    let l = SpList {
        id: list_id.clone(),
        name: display.clone(),
        display_name: display,
        description,
        template: (*template).to_string(),
        versioning: library,
        created: now_rfc3339(),
        drive_id: if library {
            drive_id_for(&list_id)
        } else {
            String::new()
        },
        drive_at: library.then(Instant::now),
    };
    let mut out = list_json(&d.spo, &l);
    out["@odata.context"] = json!(format!(
        "{}/$metadata#sites('{}')/lists/$entity",
        emu.graph_root(),
        id
    ));
    d.spo.lists.push(l);
    let mut resp = json_response(StatusCode::CREATED, &out);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/sites/{}/lists/{}",
        emu.graph_root(),
        id,
        list_id
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /sites/{id}/lists/{list}`.
pub(crate) async fn get_list(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path((id, list)): Path<(String, String)>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SITES_READ)?;
    let d = emu.dir();
    check_site(&d.spo, &id)?;
    let l = d
        .spo
        .lists
        .iter()
        .find(|l| l.id.eq_ignore_ascii_case(&list) || l.display_name.eq_ignore_ascii_case(&list))
        .ok_or_else(list_not_found)?;
    let mut out = list_json(&d.spo, l);
    out["@odata.context"] = json!(format!(
        "{}/$metadata#sites('{}')/lists/$entity",
        emu.graph_root(),
        id
    ));
    Ok(json_response(StatusCode::OK, &out))
}

/// `DELETE /sites/{id}/lists/{list}`.
pub(crate) async fn delete_list(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path((id, list)): Path<(String, String)>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SITES_MANAGE)?;
    let mut d = emu.dir();
    check_site(&d.spo, &id)?;
    let pos = d
        .spo
        .lists
        .iter()
        .position(|l| l.id.eq_ignore_ascii_case(&list))
        .ok_or_else(list_not_found)?;
    d.spo.lists.remove(pos);
    Ok(no_content())
}

/// `GET /sites/{id}/lists/{list}/drive`.
pub(crate) async fn get_list_drive(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path((id, list)): Path<(String, String)>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SITES_READ)?;
    let scale = emu.runtime().time_scale;
    let d = emu.dir();
    check_site(&d.spo, &id)?;
    let l = d
        .spo
        .lists
        .iter()
        .find(|l| l.id.eq_ignore_ascii_case(&list))
        .ok_or_else(list_not_found)?;
    if l.drive_id.is_empty()
        || !d
            .spo
            .drive_ready(l, scale, emu.cfg.sharepoint.drive_delay_ms)
    {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "The resource could not be found.",
        ));
    }
    Ok(json_response(StatusCode::OK, &drive_json(&d.spo, l)))
}

/// `GET /sites/{id}/drives`.
pub(crate) async fn get_drives(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response<Body>, GraphError> {
    need(&claims, SITES_READ)?;
    let scale = emu.runtime().time_scale;
    let d = emu.dir();
    check_site(&d.spo, &id)?;
    let delay = emu.cfg.sharepoint.drive_delay_ms;
    let value: Vec<Value> = d
        .spo
        .lists
        .iter()
        .filter(|l| !l.drive_id.is_empty() && d.spo.drive_ready(l, scale, delay))
        .map(|l| drive_json(&d.spo, l))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"@odata.context": format!("{}/$metadata#drives", emu.graph_root()), "value": value}),
    ))
}

// ---------------------------------------------------------------- SharePoint REST

fn sp_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body =
        json!({"odata.error": {"code": code, "message": {"lang": "en-US", "value": message}}});
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;odata=nometadata;charset=utf-8"),
    );
    resp
}

fn sp_json(status: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(v.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;odata=nometadata;charset=utf-8"),
    );
    resp
}

/// The resource units a SharePoint REST call costs.
fn cost(method: &Method, path: &str) -> u32 {
    let lower = path.to_ascii_lowercase();
    if *method != Method::GET {
        if lower.contains("/sitegroups/") { 5 } else { 2 }
    } else if lower.ends_with("/users")
        || lower.ends_with("/lists")
        || lower.ends_with("/sitegroups")
    {
        2
    } else {
        1
    }
}

/// Charges the call to the app's window: `Ok((limit, remaining, reset_secs))` or
/// `Err(seconds until the window resets)`.
fn charge(emu: &Emu, app: &str, units: u32) -> Result<(u32, u32, f64), f64> {
    let (enabled, scale) = {
        let rt = emu.runtime();
        (rt.throttling_enabled, rt.time_scale)
    };
    let limit = emu.cfg.sharepoint.resource_units.max(1);
    let window = emu.cfg.sharepoint.window_secs.max(1e-3) / scale.max(1e-9);
    let mut d = emu.dir();
    let now = Instant::now();
    let entry = d
        .spo
        .usage
        .entry(app.to_ascii_lowercase())
        .or_insert((0, None));
    let start = match entry.1 {
        Some(s) if now.duration_since(s).as_secs_f64() < window => s,
        _ => {
            *entry = (0, Some(now));
            now
        }
    };
    let reset = (window - now.duration_since(start).as_secs_f64()).max(0.0);
    if !enabled {
        return Ok((limit, limit, reset));
    }
    if entry.0 + units > limit {
        return Err(reset);
    }
    entry.0 += units;
    Ok((limit, limit - entry.0, reset))
}

/// After the token check: secret-based app tokens are refused, the app needs a Sites
/// permission, and each call is charged resource units (429 when the window's are spent;
/// `RateLimit-*` headers once 80% are used, as SharePoint Online does).
pub(crate) async fn app_only_rules(
    State(emu): State<Arc<Emu>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let Some(claims) = req.extensions().get::<Claims>().cloned() else {
        return sp_error(
            StatusCode::UNAUTHORIZED,
            "-2147024891, System.UnauthorizedAccessException",
            "Access denied.",
        );
    };
    if claims.idtyp == "app" && claims.appidacr == "1" {
        let body = json!({"error_description": "Unsupported app only token."});
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            "x-ms-diagnostics",
            HeaderValue::from_static(
                "3000003;reason=\"Unsupported app only token.\";category=\"invalid_client\"",
            ),
        );
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"\",client_id=\"00000003-0000-0ff1-ce00-000000000000\"",
            ),
        );
        return resp;
    }
    let write = req.method() != Method::GET;
    let allowed = if write { SITES_MANAGE } else { SITES_READ };
    if !claims.has_any_permission(allowed) {
        return sp_error(
            StatusCode::FORBIDDEN,
            "-2147024891, System.UnauthorizedAccessException",
            "Access denied. You do not have permission to perform this action or access this resource.",
        );
    }
    let units = cost(req.method(), req.uri().path());
    match charge(&emu, &claims.appid, units) {
        Err(wait) => {
            emu.stats.count("sharepoint_throttled");
            let mut resp = sp_error(
                StatusCode::TOO_MANY_REQUESTS,
                "-2147024860, Microsoft.SharePoint.SPQueryThrottledException",
                "The request has exceeded the resource limits of the app. Wait the number of seconds given in Retry-After.",
            );
            let secs = wait.ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Ok((limit, remaining, reset)) => {
            let mut resp = next.run(req).await;
            if f64::from(remaining) <= f64::from(limit) * 0.2 {
                let h = resp.headers_mut();
                for (k, v) in [
                    ("ratelimit-limit", limit.to_string()),
                    ("ratelimit-remaining", remaining.to_string()),
                    ("ratelimit-reset", format!("{}", reset.ceil() as u64)),
                ] {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.insert(k, v);
                    }
                }
            }
            resp
        }
    }
}

fn group_json(g: &SpGroup) -> Value {
    json!({
        "Id": g.id,
        "IsHiddenInUI": false,
        "LoginName": g.title,
        "Title": g.title,
        "PrincipalType": 8,
        "AllowMembersEditMembership": false,
        "Description": null,
        "OnlyAllowMembersViewMembership": false,
        "OwnerTitle": g.title,
    })
}

fn login_name(upn: &str) -> String {
    format!("i:0#.f|membership|{upn}")
}

fn user_json(d: &Directory, site_id: u32, account_id: &str) -> Option<Value> {
    let u = d.users.get(account_id)?;
    Some(json!({
        "Id": site_id,
        "IsHiddenInUI": false,
        "LoginName": login_name(&u.user_principal_name),
        "Title": u.display_name,
        "PrincipalType": 1,
        "Email": u.mail.clone().unwrap_or_default(),
        "Expiration": "",
        "IsEmailAuthenticationGuestUser": false,
        "IsShareByEmailGuestUser": false,
        "IsSiteAdmin": false,
        "UserId": {"NameId": u.id.replace('-', ""), "NameIdIssuer": "urn:federation:microsoftonline"},
        "UserPrincipalName": u.user_principal_name,
    }))
}

/// `getbyid(3)` or `getbyid('3')` → 3 (the path is lower case by then).
fn by_id(seg: &str) -> Option<u32> {
    crate::route::by_id_argument(seg)
}

/// `GET /_api/web`.
pub(crate) async fn web(State(emu): State<Arc<Emu>>) -> Response<Body> {
    let d = emu.dir();
    sp_json(
        StatusCode::OK,
        &json!({"Id": d.spo.web_guid, "Title": d.spo.title, "Url": d.spo.web_url(), "ServerRelativeUrl": "/"}),
    )
}

/// `GET /_api/web/associated{owner,member,visitor}group`.
pub(crate) async fn associated_group(
    State(emu): State<Arc<Emu>>,
    Path(which): Path<String>,
) -> Response<Body> {
    let id = match which.to_ascii_lowercase().as_str() {
        "associatedownergroup" => 3,
        "associatedvisitorgroup" => 4,
        "associatedmembergroup" => 5,
        "sitegroups" => {
            let d = emu.dir();
            let value: Vec<Value> = d.spo.groups.iter().map(group_json).collect();
            return sp_json(StatusCode::OK, &json!({"value": value}));
        }
        "lists" => return lists(&emu),
        _ => {
            return sp_error(
                StatusCode::BAD_REQUEST,
                "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
                &format!("The expression \"web/{which}\" is not valid."),
            );
        }
    };
    let d = emu.dir();
    match d.spo.groups.iter().find(|g| g.id == id) {
        Some(g) => sp_json(StatusCode::OK, &group_json(g)),
        None => group_missing(),
    }
}

fn group_missing() -> Response<Body> {
    sp_error(
        StatusCode::NOT_FOUND,
        "-2146232832, Microsoft.SharePoint.SPException",
        "Group cannot be found.",
    )
}

fn lists(emu: &Emu) -> Response<Body> {
    let d = emu.dir();
    let value: Vec<Value> = d
        .spo
        .lists
        .iter()
        .map(|l| {
            json!({
                "Id": l.id,
                "Title": l.display_name,
                "EnableVersioning": l.versioning,
                "BaseTemplate": if l.template == "documentLibrary" { 101 } else { 100 },
                "Description": l.description,
            })
        })
        .collect();
    sp_json(StatusCode::OK, &json!({"value": value}))
}

/// `GET /_api/web/sitegroups/GetById(n)` and `.../users`.
pub(crate) async fn site_group(
    State(emu): State<Arc<Emu>>,
    Path(seg): Path<String>,
) -> Response<Body> {
    let Some(id) = by_id(&seg) else {
        return group_missing();
    };
    let d = emu.dir();
    match d.spo.groups.iter().find(|g| g.id == id) {
        Some(g) => sp_json(StatusCode::OK, &group_json(g)),
        None => group_missing(),
    }
}

pub(crate) async fn group_users(
    State(emu): State<Arc<Emu>>,
    Path(seg): Path<String>,
) -> Response<Body> {
    let Some(id) = by_id(&seg) else {
        return group_missing();
    };
    let d = emu.dir();
    let Some(g) = d.spo.groups.iter().find(|g| g.id == id) else {
        return group_missing();
    };
    let value: Vec<Value> = g
        .users
        .iter()
        .filter_map(|uid| {
            let (_, account) = d.spo.site_users.iter().find(|(s, _)| s == uid)?;
            user_json(&d, *uid, account)
        })
        .collect();
    sp_json(StatusCode::OK, &json!({"value": value}))
}

fn user_missing() -> Response<Body> {
    sp_error(
        StatusCode::BAD_REQUEST,
        "-2146232832, Microsoft.SharePoint.SPException",
        "The user does not exist or is not unique.",
    )
}

fn upn_of_login(login: &str) -> Option<&str> {
    login
        .rsplit_once('|')
        .map(|(_, upn)| upn)
        .filter(|u| !u.is_empty())
}

/// `POST /_api/web/sitegroups/GetById(n)/users` with `{"LoginName": "i:0#.f|membership|upn"}`.
pub(crate) async fn add_group_user(
    State(emu): State<Arc<Emu>>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let Some(id) = by_id(&seg) else {
        return group_missing();
    };
    let body = match read_json(&headers, body, emu.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return sp_error(
                StatusCode::BAD_REQUEST,
                "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
                "Invalid JSON. A token was not recognized in the JSON content.",
            );
        }
    };
    let Some(login) = body.get("LoginName").and_then(Value::as_str) else {
        return sp_error(
            StatusCode::BAD_REQUEST,
            "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
            "The parameter LoginName is required.",
        );
    };
    let mut guard = emu.dir();
    let d = &mut *guard;
    if !d.spo.groups.iter().any(|g| g.id == id) {
        return group_missing();
    }
    let Some(account) = upn_of_login(login).and_then(|upn| d.find_user_id(upn)) else {
        return user_missing();
    };
    let site_id = match d.spo.site_users.iter().find(|(_, a)| *a == account) {
        Some((s, _)) => *s,
        None => {
            let s = d.spo.next_user;
            d.spo.next_user += 1;
            d.spo.site_users.push((s, account.clone()));
            s
        }
    };
    if let Some(g) = d.spo.groups.iter_mut().find(|g| g.id == id)
        && !g.users.contains(&site_id)
    {
        g.users.push(site_id);
    }
    match user_json(d, site_id, &account) {
        Some(v) => sp_json(StatusCode::CREATED, &v),
        None => user_missing(),
    }
}

/// `POST /_api/web/sitegroups/GetById(n)/users/removeByLoginName(@v)?@v='…'` (or the
/// login name inline).
pub(crate) async fn remove_group_user(
    State(emu): State<Arc<Emu>>,
    Path((seg, call)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response<Body> {
    let Some(id) = by_id(&seg) else {
        return group_missing();
    };
    let Some(arg) = call
        .get(.."removebyloginname(".len())
        .filter(|p| p.eq_ignore_ascii_case("removebyloginname("))
        .and_then(|_| call.get("removebyloginname(".len()..))
        .and_then(|a| a.strip_suffix(')'))
    else {
        return sp_error(
            StatusCode::BAD_REQUEST,
            "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
            &format!("The expression \"users/{call}\" is not valid."),
        );
    };
    let literal = if let Some(alias) = arg.strip_prefix('@') {
        q.get(&format!("@{alias}")).cloned().unwrap_or_default()
    } else {
        arg.to_string()
    };
    let login = literal.trim_matches('\'').replace("''", "'");
    let mut guard = emu.dir();
    let d = &mut *guard;
    let Some(account) = upn_of_login(&login).and_then(|upn| d.find_user_id(upn)) else {
        return user_missing();
    };
    let site_id = d
        .spo
        .site_users
        .iter()
        .find(|(_, a)| *a == account)
        .map(|(s, _)| *s);
    let Some(g) = d.spo.groups.iter_mut().find(|g| g.id == id) else {
        return group_missing();
    };
    match site_id.and_then(|s| g.users.iter().position(|u| *u == s)) {
        Some(pos) => {
            g.users.remove(pos);
            sp_json(StatusCode::OK, &json!({"odata.null": true}))
        }
        None => user_missing(),
    }
}

/// `POST /_api/web/lists(guid'…')` with `X-HTTP-Method: MERGE` — `EnableVersioning`.
pub(crate) async fn merge_list(
    State(emu): State<Arc<Emu>>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let id = seg
        .get(.."lists(guid'".len())
        .filter(|p| p.eq_ignore_ascii_case("lists(guid'"))
        .and_then(|_| seg.get("lists(guid'".len()..))
        .and_then(|s| s.strip_suffix("')"))
        .map(str::to_string);
    let merge = headers
        .get("x-http-method")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.eq_ignore_ascii_case("MERGE"));
    let Some(id) = id.filter(|_| merge) else {
        return sp_error(
            StatusCode::BAD_REQUEST,
            "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
            "Only MERGE of lists(guid'…') is supported here.",
        );
    };
    let body = match read_json(&headers, body, emu.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return sp_error(
                StatusCode::BAD_REQUEST,
                "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
                "Invalid JSON. A token was not recognized in the JSON content.",
            );
        }
    };
    let mut d = emu.dir();
    let Some(l) = d
        .spo
        .lists
        .iter_mut()
        .find(|l| l.id.eq_ignore_ascii_case(&id))
    else {
        return sp_error(
            StatusCode::NOT_FOUND,
            "-1, System.ArgumentException",
            "List does not exist.\n\nThe page you selected contains a list that does not exist.  It may have been deleted by another user.",
        );
    };
    for (k, v) in &body {
        match (k.as_str(), v) {
            ("EnableVersioning", Value::Bool(b)) => l.versioning = *b,
            ("Description", Value::String(s)) => l.description = s.clone(),
            (k, _) if k.starts_with("__") || k.starts_with("@odata") => {}
            _ => {
                return sp_error(
                    StatusCode::BAD_REQUEST,
                    "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
                    &format!("The property '{k}' does not exist on type 'SP.List'."),
                );
            }
        }
    }
    no_content()
}

/// The admin view (`GET /_emulator/state` includes it).
pub(crate) fn state_json(d: &Directory) -> Value {
    json!({
        "siteId": d.spo.site_id(),
        "lists": d.spo.lists.iter().map(|l| json!({"id": l.id, "displayName": l.display_name, "template": l.template, "versioning": l.versioning, "description": l.description})).collect::<Vec<_>>(),
        "groups": d.spo.groups.iter().map(|g| json!({
            "id": g.id,
            "title": g.title,
            "members": g.users.iter().filter_map(|s| d.spo.site_users.iter().find(|(x, _)| x == s)).filter_map(|(_, a)| d.users.get(a)).map(|u| u.user_principal_name.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
