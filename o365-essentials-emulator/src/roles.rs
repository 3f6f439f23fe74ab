//! Graph's unified role management: `roleManagement/directory/roleDefinitions`,
//! `roleAssignments` and `roleEligibilitySchedules` (with `$expand=principal`), and the
//! transitive members of role-assignable groups. Answers are paged with `$top` and
//! `$skiptoken`, as Graph pages them, so a client that reads only the first page misses
//! role holders — as it would against Microsoft 365.
//!
//! Shapes: Graph v1.0 `unifiedRoleAssignment` (`id`, `principalId`, `roleDefinitionId`,
//! `directoryScopeId`) and `unifiedRoleEligibilitySchedule` (plus `memberType`,
//! `status`, `scheduleInfo`), per the published schema.

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

/// Reading role assignments and eligibility (Graph accepts `RoleManagement.Read.Directory`
/// for both; `RoleEligibilitySchedule.Read.Directory` for the schedules).
const ROLE_READ: &[&str] = &[
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "RoleManagement.Read.All",
    "RoleEligibilitySchedule.Read.Directory",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// Graph's default page for role management lists (it pages them; a client must follow
/// `@odata.nextLink`).
const DEFAULT_PAGE: usize = 100;

fn page_of(
    emu: &Emu,
    path: &str,
    extra: &[(&str, &str)],
    all: Vec<Value>,
    raw: Option<&str>,
) -> Result<Value, GraphError> {
    let q = odata::parse_query(
        raw,
        &["top", "skiptoken", "expand", "select", "filter"],
        None,
    )?;
    let top = q.top.map(|t| t as usize).unwrap_or(DEFAULT_PAGE).max(1);
    let from: usize = match &q.skiptoken {
        Some(t) => t
            .parse()
            .map_err(|_| GraphError::bad_request("Request_BadRequest", "Invalid skip token."))?,
        None => 0,
    };
    let rest: Vec<Value> = all.iter().skip(from).take(top).cloned().collect();
    let mut out = json!({
        "@odata.context": format!("{}/$metadata#{}", emu.graph_root(), path.trim_start_matches('/')),
        "value": rest,
    });
    if from + top < all.len() {
        let token = (from + top).to_string();
        let top = top.to_string();
        let mut params: Vec<(&str, &str)> = extra.to_vec();
        params.push(("$top", &top));
        params.push(("$skiptoken", &token));
        let query: String = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        out["@odata.nextLink"] = json!(format!("{}{path}?{query}", emu.graph_root()));
    }
    Ok(out)
}

fn expands_principal(raw: Option<&str>) -> bool {
    raw.unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| {
            k.eq_ignore_ascii_case("$expand")
                && v.split(',')
                    .any(|e| e.trim().eq_ignore_ascii_case("principal"))
        })
}

fn principal(d: &Directory, id: &str) -> Value {
    if let Some(u) = d.users.get(id) {
        return json!({
            "@odata.type": "#microsoft.graph.user",
            "id": u.id,
            "displayName": u.display_name,
            "userPrincipalName": u.user_principal_name,
        });
    }
    if let Some(g) = d.role_groups.iter().find(|g| g.id == id) {
        return json!({
            "@odata.type": "#microsoft.graph.group",
            "id": g.id,
            "displayName": g.display_name,
            "isAssignableToRole": true,
        });
    }
    if let Some(sp) = crate::apps::principal_json(d, id) {
        return sp;
    }
    json!({"@odata.type": "#microsoft.graph.directoryObject", "id": id})
}

/// `GET /roleManagement/directory/roleDefinitions`.
pub(crate) async fn role_definitions(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, ROLE_READ)?;
    let d = emu.dir();
    let all: Vec<Value> = d
        .roles
        .iter()
        .map(|r| {
            json!({
                "id": r.template_id,
                "templateId": r.template_id,
                "displayName": r.display_name,
                "isBuiltIn": true,
                "isEnabled": true,
            })
        })
        .collect();
    drop(d);
    let page = page_of(
        &emu,
        "/roleManagement/directory/roleDefinitions",
        &[],
        all,
        raw.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, &page))
}

/// One page of role grants: each `(role, principal)` pair `grants` yields, as
/// `shape(role, principal)` plus the principal when `$expand=principal` is asked for.
fn grants_page(
    emu: &Emu,
    raw: Option<&str>,
    path: &str,
    grants: impl Fn(&crate::state::Role) -> Vec<String>,
    shape: impl Fn(&crate::state::Role, &str) -> Value,
) -> Result<Response<Body>, GraphError> {
    let expand = expands_principal(raw);
    let d = emu.dir();
    let mut all = Vec::new();
    for r in &d.roles {
        for p in grants(r) {
            let mut a = shape(r, &p);
            if expand {
                a["principal"] = principal(&d, &p);
            }
            all.push(a);
        }
    }
    drop(d);
    let extra: &[(&str, &str)] = if expand {
        &[("$expand", "principal")]
    } else {
        &[]
    };
    let page = page_of(emu, path, extra, all, raw)?;
    Ok(json_response(StatusCode::OK, &page))
}

/// `GET /roleManagement/directory/roleAssignments` (active assignments, `$expand=principal`).
pub(crate) async fn role_assignments(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, ROLE_READ)?;
    grants_page(
        &emu,
        raw.as_deref(),
        "/roleManagement/directory/roleAssignments",
        |r| r.members.iter().chain(&r.groups).cloned().collect(),
        |r, p| {
            json!({
                "id": format!("{}_{p}", r.template_id),
                "principalId": p,
                "roleDefinitionId": r.template_id,
                "directoryScopeId": "/",
            })
        },
    )
}

/// `GET /roleManagement/directory/roleEligibilitySchedules` (PIM eligible assignments).
pub(crate) async fn role_eligibility(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, ROLE_READ)?;
    grants_page(
        &emu,
        raw.as_deref(),
        "/roleManagement/directory/roleEligibilitySchedules",
        |r| r.eligible.clone(),
        |r, p| {
            json!({
                "id": format!("eligible_{}_{p}", r.template_id),
                "principalId": p,
                "roleDefinitionId": r.template_id,
                "directoryScopeId": "/",
                "memberType": "Direct",
                "status": "Provisioned",
                "scheduleInfo": {"startDateTime": "2026-01-01T00:00:00Z", "expiration": {"type": "noExpiration"}},
            })
        },
    )
}

/// `GET /groups/{id}/transitiveMembers` (and `…/microsoft.graph.user`): the users in a
/// role-assignable group, nested groups included.
pub(crate) async fn transitive_members(
    State(emu): State<Arc<Emu>>,
    Extension(claims): Extension<Claims>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response<Body>, GraphError> {
    need(&claims, ROLE_READ)?;
    let d = emu.dir();
    if !d.role_groups.iter().any(|g| g.id == id) {
        return Err(GraphError::not_found(&id));
    }
    let mut users = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![id.clone()];
    while let Some(g) = todo.pop() {
        if !seen.insert(g.clone()) {
            continue;
        }
        let Some(group) = d.role_groups.iter().find(|x| x.id == g) else {
            continue;
        };
        for m in &group.members {
            if d.role_groups.iter().any(|x| x.id == *m) {
                todo.push(m.clone());
            } else if let Some(u) = d.users.get(m)
                && !users.iter().any(|x: &Value| x["id"] == json!(u.id))
            {
                users.push(json!({
                    "@odata.type": "#microsoft.graph.user",
                    "id": u.id,
                    "displayName": u.display_name,
                    "userPrincipalName": u.user_principal_name,
                }));
            }
        }
    }
    drop(d);
    let path = format!("/groups/{id}/transitiveMembers");
    let page = page_of(&emu, &path, &[], users, raw.as_deref())?;
    Ok(json_response(StatusCode::OK, &page))
}
