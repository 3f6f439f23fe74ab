//! The admin endpoint (`/_emulator/...`): seed the tenant, dump its state for
//! assertions, change faults, throttling, latency and DNS while running. Local only, no
//! authentication — the emulator listens on loopback addresses alone.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{FaultRule, LatencyConfig, Seed};
use crate::ctx::{GraphError, json_response, no_content, read_json};
use crate::state::{Emu, hash_password};

/// An admin body, field names in either case (`time_scale` or `timeScale`).
fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, GraphError> {
    crate::input::read(v)
        .map_err(|e| GraphError::bad_request("BadRequest", format!("Invalid admin request: {e}")))
}

/// The sections of a seed. `POST /_emulator/seed` adds exactly what it names: a section
/// left out adds nothing (in the configuration, a section left out keeps its default).
const SEED_SECTIONS: [&str; 5] = ["users", "skus", "domains", "devices", "role_groups"];

/// `GET /_emulator/state`: users (without passwords), deleted users, SKUs, domains, roles.
pub(crate) async fn state(State(emu): State<Arc<Emu>>) -> Response<Body> {
    let d = emu.dir();
    let users: Vec<Value> = d
        .users
        .values()
        .map(|u| {
            let mut m = u.to_json();
            m.insert("hasPassword".into(), json!(u.password_hash.is_some()));
            m.insert(
                "forceChangePasswordNextSignIn".into(),
                json!(u.force_change_password),
            );
            Value::Object(m)
        })
        .collect();
    let deleted: Vec<Value> = d
        .deleted
        .values()
        .map(|u| Value::Object(u.to_json()))
        .collect();
    let skus: Vec<Value> = d
        .skus
        .iter()
        .map(|s| json!({"skuId": s.sku_id, "skuPartNumber": s.part_number, "enabled": s.enabled, "consumed": d.consumed(&s.sku_id)}))
        .collect();
    let domains: Vec<Value> = d
        .domains
        .values()
        .map(|x| json!({"name": x.name, "verified": x.verified, "services": x.services, "verificationCode": x.verification_code}))
        .collect();
    let roles: Vec<Value> = d
        .roles
        .iter()
        .map(|r| json!({"id": r.id, "displayName": r.display_name, "roleTemplateId": r.template_id, "members": r.members}))
        .collect();
    let body = json!({"users": users, "deletedUsers": deleted, "skus": skus, "domains": domains, "roles": roles, "changeSeq": d.seq, "exchange": crate::exchange::state_json(&d), "sharepoint": crate::sharepoint::state_json(&d)});
    drop(d);
    json_response(StatusCode::OK, &body)
}

/// `GET /_emulator/stats`.
pub(crate) async fn stats(State(emu): State<Arc<Emu>>) -> Response<Body> {
    json_response(StatusCode::OK, &emu.stats.snapshot())
}

/// `POST /_emulator/seed`: adds users, SKUs, domains, role groups and devices, all or
/// nothing; answers `{"userIds": [...]}` in the order of `users`.
pub(crate) async fn seed(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let seed_error =
        |e: String| GraphError::bad_request("BadRequest", format!("Invalid seed: {e}"));
    let shape_error = |e: String| seed_error(crate::input::camel_fields(&e, true));
    let mut body = crate::input::snake_keys(Value::Object(body), "")
        .map_err(|e| seed_error(crate::input::camel_fields(&e, false)))?;
    if let Value::Object(m) = &mut body {
        for section in SEED_SECTIONS {
            m.entry(section).or_insert_with(|| json!([]));
        }
    }
    let seed: Seed = crate::input::read(body).map_err(shape_error)?;
    let ids = emu.apply_seed(&seed).map_err(seed_error)?;
    Ok(json_response(StatusCode::OK, &json!({"userIds": ids})))
}

/// `PUT /_emulator/faults` `{"rules": [...]}`; `DELETE` clears them.
pub(crate) async fn set_faults(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    // A rule's kind is flattened into it, which serde cannot check for unknown fields:
    // the keys a rule may have are checked here.
    const RULE_KEYS: [&str; 7] = [
        "path",
        "method",
        "probability",
        "limit",
        "kind",
        "status",
        "ms",
    ];
    for rule in body
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = rule
            .as_object()
            .and_then(|o| o.keys().find(|k| !RULE_KEYS.contains(&k.as_str())))
        {
            return Err(GraphError::bad_request(
                "BadRequest",
                format!(
                    "Invalid admin request: unknown field `{k}` in a fault rule, expected one of {}",
                    RULE_KEYS.join(", ")
                ),
            ));
        }
    }
    let rules = from_value::<FaultsBody>(Value::Object(body))?.rules;
    if let Some(r) = rules.iter().find(|r| !(0.0..=1.0).contains(&r.probability)) {
        return Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "probability {} of rule {} is not between 0 and 1",
                r.probability, r.path
            ),
        ));
    }
    emu.runtime().faults = rules.into_iter().map(|r| (r, 0)).collect();
    Ok(no_content())
}

/// `DELETE /_emulator/faults`.
pub(crate) async fn clear_faults(State(emu): State<Arc<Emu>>) -> Response<Body> {
    emu.runtime().faults.clear();
    no_content()
}

/// What `PUT /_emulator/throttling` may change; every field is optional, any other field
/// is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottlingUpdate {
    enabled: Option<bool>,
    time_scale: Option<f64>,
    app_tenant_writes: Option<u32>,
    app_tenant_write_window_secs: Option<f64>,
    tenant_writes: Option<u32>,
    tenant_write_window_secs: Option<f64>,
    resource_units: Option<u32>,
    resource_unit_window_secs: Option<f64>,
}

fn positive(name: &str, v: Option<f64>) -> Result<(), GraphError> {
    match v {
        Some(s) if s <= 0.0 || !s.is_finite() => Err(GraphError::bad_request(
            "BadRequest",
            format!("{name} must be a positive number"),
        )),
        _ => Ok(()),
    }
}

/// `PUT /_emulator/throttling`: `enabled`, `time_scale`, and the quotas and windows
/// (`app_tenant_writes`, `app_tenant_write_window_secs`, `tenant_writes`,
/// `tenant_write_window_secs`, `resource_units`, `resource_unit_window_secs`). Changed
/// quotas start from full buckets.
pub(crate) async fn set_throttling(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let u: ThrottlingUpdate = from_value(Value::Object(body))?;
    positive("time_scale", u.time_scale)?;
    positive(
        "app_tenant_write_window_secs",
        u.app_tenant_write_window_secs,
    )?;
    positive("tenant_write_window_secs", u.tenant_write_window_secs)?;
    positive("resource_unit_window_secs", u.resource_unit_window_secs)?;
    let quotas_changed = u.app_tenant_writes.is_some()
        || u.app_tenant_write_window_secs.is_some()
        || u.tenant_writes.is_some()
        || u.tenant_write_window_secs.is_some()
        || u.resource_units.is_some()
        || u.resource_unit_window_secs.is_some();
    if quotas_changed {
        let mut t = emu.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let mut q = t.config.clone();
        q.app_tenant_writes = u.app_tenant_writes.unwrap_or(q.app_tenant_writes);
        q.app_tenant_write_window_secs = u
            .app_tenant_write_window_secs
            .unwrap_or(q.app_tenant_write_window_secs);
        q.tenant_writes = u.tenant_writes.unwrap_or(q.tenant_writes);
        q.tenant_write_window_secs = u
            .tenant_write_window_secs
            .unwrap_or(q.tenant_write_window_secs);
        q.resource_units = u.resource_units.or(q.resource_units);
        q.resource_unit_window_secs = u
            .resource_unit_window_secs
            .unwrap_or(q.resource_unit_window_secs);
        t.set_quotas(q);
    }
    let mut rt = emu.runtime();
    if let Some(e) = u.enabled {
        rt.throttling_enabled = e;
    }
    if let Some(s) = u.time_scale {
        rt.time_scale = s;
    }
    Ok(no_content())
}

/// `GET /_emulator/throttling`: the quotas in force.
pub(crate) async fn throttling(State(emu): State<Arc<Emu>>) -> Response<Body> {
    let q = emu
        .throttle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .config
        .clone();
    let rt = emu.runtime();
    let mut v = serde_json::to_value(&q).unwrap_or_default();
    v["enabled"] = json!(rt.throttling_enabled);
    v["time_scale"] = json!(rt.time_scale);
    json_response(StatusCode::OK, &v)
}

/// `PUT /_emulator/faults` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    #[serde(default)]
    rules: Vec<FaultRule>,
}

/// `PUT /_emulator/dns` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsBody {
    /// An `address:port` string, or null to forget the server.
    #[serde(default)]
    server: Option<Value>,
    #[serde(default)]
    verify_without_dns: Option<bool>,
}

/// `POST /_emulator/users/{id}/check-password` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

/// `PUT /_emulator/latency` (a latency configuration).
pub(crate) async fn set_latency(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let l: LatencyConfig = from_value(Value::Object(body))?;
    emu.runtime().latency = l;
    Ok(no_content())
}

/// `PUT /_emulator/dns` `{"server": "127.0.0.1:15353", "verify_without_dns": false}`.
pub(crate) async fn set_dns(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let b: DnsBody = from_value(Value::Object(body))?;
    let mut rt = emu.runtime();
    if let Some(s) = b.server {
        rt.dns_server = match s {
            Value::Null => None,
            Value::String(s) => Some(s.parse().map_err(|_| {
                GraphError::bad_request("BadRequest", format!("`{s}` is not an address:port"))
            })?),
            _ => {
                return Err(GraphError::bad_request(
                    "BadRequest",
                    "server must be a string or null",
                ));
            }
        };
    }
    if let Some(v) = b.verify_without_dns {
        rt.verify_without_dns = v;
    }
    Ok(no_content())
}

/// `POST /_emulator/users/{id}/check-password` `{"password": "..."}` → `{"matches": bool}`.
pub(crate) async fn check_password(
    State(emu): State<Arc<Emu>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let b: PasswordBody = from_value(Value::Object(body))?;
    let pw = b.password.as_str();
    let d = emu.dir();
    let u = d.find_user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let matches = u.password_hash.as_deref() == Some(hash_password(pw).as_slice());
    Ok(json_response(
        StatusCode::OK,
        &json!({"matches": matches, "forceChangePasswordNextSignIn": u.force_change_password}),
    ))
}

/// `POST /_emulator/delta/expire`: every delta token issued so far expires.
pub(crate) async fn expire_delta(State(emu): State<Arc<Emu>>) -> Response<Body> {
    let mut d = emu.dir();
    d.delta_floor = d.seq + 1;
    d.changes.clear();
    no_content()
}
