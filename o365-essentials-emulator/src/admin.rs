//! The admin endpoint (`/_emulator/...`): seed the tenant, dump its state for
//! assertions, change faults, throttling, latency and DNS while running. Local only, no
//! authentication — the emulator listens on loopback addresses alone.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use crate::config::{FaultRule, LatencyConfig, Seed};
use crate::ctx::{GraphError, json_response, no_content, read_json};
use crate::state::{Emu, hash_password};

fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, GraphError> {
    serde_json::from_value(v)
        .map_err(|e| GraphError::bad_request("BadRequest", format!("Invalid admin request: {e}")))
}

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

/// `POST /_emulator/seed`: adds users, SKUs and domains.
pub(crate) async fn seed(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let seed: Seed = from_value(Value::Object(body))?;
    let ids = emu
        .apply_seed(&seed)
        .map_err(|e| GraphError::bad_request("BadRequest", e))?;
    Ok(json_response(StatusCode::OK, &json!({"userIds": ids})))
}

/// `PUT /_emulator/faults` `{"rules": [...]}`; `DELETE` clears them.
pub(crate) async fn set_faults(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let rules: Vec<FaultRule> = from_value(body.get("rules").cloned().unwrap_or(json!([])))?;
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

/// `PUT /_emulator/throttling` `{"enabled": bool, "time_scale": f64}`.
pub(crate) async fn set_throttling(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let mut rt = emu.runtime();
    if let Some(e) = body.get("enabled").and_then(Value::as_bool) {
        rt.throttling_enabled = e;
    }
    if let Some(s) = body.get("time_scale").and_then(Value::as_f64) {
        if s <= 0.0 || !s.is_finite() {
            return Err(GraphError::bad_request(
                "BadRequest",
                "time_scale must be a positive number",
            ));
        }
        rt.time_scale = s;
    }
    Ok(no_content())
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
    let mut rt = emu.runtime();
    if let Some(s) = body.get("server") {
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
    if let Some(v) = body.get("verify_without_dns").and_then(Value::as_bool) {
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
    let pw = body
        .get("password")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("BadRequest", "password is required"))?;
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
