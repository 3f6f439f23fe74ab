//! The outermost layer: request ids, statistics, the latency model and injected faults.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode};
use axum::middleware::Next;

use crate::config::{Delay, FaultKind, FaultRule};
use crate::ctx::{DropConnection, GraphError, Internal, PendingError, RequestCtx};
use crate::state::Emu;

/// `*` matches any run of characters; everything else literally.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn rule_matches(rule: &FaultRule, method: &Method, path: &str) -> bool {
    glob(&rule.path, path)
        && rule
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
}

/// Draws the fault for this request, if any (seeded, so runs are reproducible).
fn pick_fault(emu: &Emu, method: &Method, path: &str) -> Option<FaultKind> {
    let candidates: Vec<usize> = {
        let rt = emu.runtime();
        rt.faults
            .iter()
            .enumerate()
            .filter(|(_, (r, used))| {
                rule_matches(r, method, path) && r.limit.is_none_or(|l| *used < l)
            })
            .map(|(i, _)| i)
            .collect()
    };
    for i in candidates {
        let p = emu
            .runtime()
            .faults
            .get(i)
            .map(|(r, _)| r.probability)
            .unwrap_or(0.0);
        if emu.random_f64() < p {
            let mut rt = emu.runtime();
            if let Some((rule, used)) = rt.faults.get_mut(i) {
                *used += 1;
                return Some(rule.kind.clone());
            }
        }
    }
    None
}

fn delay_of(emu: &Emu, d: Delay) -> Duration {
    let jitter = if d.jitter_ms > 0 {
        emu.random_u64(d.jitter_ms + 1)
    } else {
        0
    };
    Duration::from_millis(d.fixed_ms + jitter)
}

fn fault_status(status: u16, ctx: &RequestCtx, scale: f64) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::TOO_MANY_REQUESTS {
        let after = (1.0 / scale).max(0.001);
        return crate::throttle::too_many_requests(
            Some(ctx),
            after,
            "Tenant_Application/ReadWrite",
            "ResourceUnitLimitExceeded",
        );
    }
    let (c, m) = match status {
        500 => ("InternalServerError", "An internal server error occurred."),
        502 => ("BadGateway", "The gateway received an invalid response."),
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable. Please retry later.",
        ),
        504 => (
            "GatewayTimeout",
            "The gateway did not receive a response in time.",
        ),
        _ => ("UnknownError", "An injected fault."),
    };
    let mut resp = GraphError::new(code, c, m).into_response_with(Some(ctx));
    if status == 503 {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn dropped() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    r.extensions_mut().insert(DropConnection);
    r
}

/// The edge middleware.
pub(crate) async fn edge(
    State(emu): State<Arc<Emu>>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let internal = req.extensions().get::<Internal>().is_some();
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let ctx = RequestCtx {
        request_id,
        client_request_id,
    };
    req.extensions_mut().insert(ctx.clone());
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let mut lost = false;
    let mut after_write = std::time::Duration::ZERO;
    if !internal {
        emu.stats.requests.fetch_add(1, Ordering::Relaxed);
        let admin = path.starts_with("/_emulator");
        let (latency, scale) = {
            let rt = emu.runtime();
            (rt.latency, rt.time_scale)
        };
        if !admin {
            let d = if path.ends_with("/oauth2/v2.0/token") {
                latency.token
            } else if method == Method::GET {
                latency.read
            } else {
                latency.write
            };
            let wait = delay_of(&emu, d);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if method != Method::GET && !path.ends_with("/oauth2/v2.0/token") {
                after_write = delay_of(&emu, latency.write_response);
            }
            match pick_fault(&emu, &method, &path) {
                None => {}
                Some(FaultKind::Status { status }) => {
                    emu.stats.count("fault_status");
                    return with_ids(fault_status(status, &ctx, scale), &ctx);
                }
                Some(FaultKind::Reset) => {
                    emu.stats.count("fault_reset");
                    return dropped();
                }
                Some(FaultKind::Delay { ms }) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await
                }
                Some(FaultKind::LostResponse) => lost = true,
            }
        }
    }
    let mut resp = next.run(req).await;
    if !after_write.is_zero() {
        tokio::time::sleep(after_write).await;
    }
    if lost {
        emu.stats.count("fault_lost_response");
        return dropped();
    }
    if let Some(PendingError(e)) = resp.extensions_mut().remove::<PendingError>() {
        let extra = resp.headers().clone();
        let mut fresh = e.into_response_with(Some(&ctx));
        for (k, v) in &extra {
            if k != "content-length" && k != "content-type" {
                fresh.headers_mut().insert(k.clone(), v.clone());
            }
        }
        resp = fresh;
    }
    if resp.status().as_u16() >= 400 && !is_json(&resp) {
        resp = graph_shaped(resp, &ctx).await;
    }
    with_ids(resp, &ctx)
}

fn is_json(resp: &Response<Body>) -> bool {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Framework rejections (405, undecodable paths...) answered in Graph's error shape.
async fn graph_shaped(resp: Response<Body>, ctx: &RequestCtx) -> Response<Body> {
    use http_body_util::BodyExt;
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.".to_string(),
        ),
        StatusCode::NOT_FOUND => ("NotFound", "The resource was not found.".to_string()),
        _ => (
            "BadRequest",
            String::from_utf8_lossy(&text)
                .trim()
                .chars()
                .take(300)
                .collect(),
        ),
    };
    GraphError::new(status, code, message).into_response_with(Some(ctx))
}

fn with_ids(mut resp: Response<Body>, ctx: &RequestCtx) -> Response<Body> {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.client_request_id) {
        h.insert("client-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches() {
        assert!(glob("/v1.0/users*", "/v1.0/users/abc"));
        assert!(glob("/v1.0/users*", "/v1.0/users"));
        assert!(!glob("/v1.0/users*", "/v1.0/domains"));
        assert!(glob("*", "/anything"));
        assert!(glob("/v1.0/*/verify", "/v1.0/domains/x.com/verify"));
        assert!(glob("/exact", "/exact"));
        assert!(!glob("/exact", "/exactly"));
    }
}
