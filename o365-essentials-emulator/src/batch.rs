//! Graph JSON `$batch`: up to 20 requests, `dependsOn`, 424 for failed dependencies,
//! responses out of order, each item authorised and throttled on its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::ctx::{GraphError, Internal, json_response, read_json};
use crate::state::Emu;

const MAX_REQUESTS: usize = 20;

#[derive(Debug)]
struct Item {
    id: String,
    method: Method,
    url: String,
    headers: Map<String, Value>,
    body: Option<Value>,
    depends_on: Vec<String>,
}

fn bad(msg: impl Into<String>) -> GraphError {
    GraphError::bad_request("BadRequest", msg)
}

fn parse_items(body: &Map<String, Value>) -> Result<Vec<Item>, GraphError> {
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid batch payload format: a 'requests' array is required."))?;
    if requests.is_empty() {
        return Err(bad(
            "Invalid batch payload format: the 'requests' array is empty.",
        ));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(bad(format!(
            "Number of batch request steps exceeds the maximum of {MAX_REQUESTS}."
        )));
    }
    let mut items = Vec::new();
    let mut ids = HashSet::new();
    for r in requests {
        let o = r
            .as_object()
            .ok_or_else(|| bad("Invalid batch payload format: each request must be an object."))?;
        let id = match o.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(bad(
                    "Invalid batch payload format: every request needs an 'id'.",
                ));
            }
        };
        if !ids.insert(id.clone()) {
            return Err(bad(format!(
                "Batch request contains duplicate request id '{id}'."
            )));
        }
        let method = o
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .ok_or_else(|| bad(format!("Request '{id}' has no valid 'method'.")))?;
        let url = o
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("Request '{id}' has no 'url'.")))?
            .to_string();
        let headers = match o.get("headers") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(h)) => h.clone(),
            Some(_) => return Err(bad(format!("Request '{id}': 'headers' must be an object."))),
        };
        let body = o.get("body").filter(|b| !b.is_null()).cloned();
        if body.is_some()
            && !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
        {
            return Err(bad(format!(
                "Request '{id}': a Content-Type header is required when the request has a body."
            )));
        }
        // `dependsOn` only; Graph ignores unknown members such as `depends_on`.
        let depends_on = match o.get("dependsOn") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect(),
            Some(_) => {
                return Err(bad(format!(
                    "Request '{id}': 'dependsOn' must be an array of ids."
                )));
            }
        };
        items.push(Item {
            id,
            method,
            url,
            headers,
            body,
            depends_on,
        });
    }
    for it in &items {
        for dep in &it.depends_on {
            if !ids.contains(dep) {
                return Err(bad(format!(
                    "Request '{}' depends on unknown request '{dep}'.",
                    it.id
                )));
            }
        }
    }
    Ok(items)
}

/// For the property tests: parse and order, discarding the result.
#[cfg(test)]
pub(crate) fn parse_for_test(body: &Map<String, Value>) -> bool {
    parse_items(body)
        .map(|items| execution_order(&items).is_some())
        .unwrap_or(false)
}

/// Orders items so that each comes after its dependencies; `None` on a cycle.
fn execution_order(items: &[Item]) -> Option<Vec<usize>> {
    let mut done: HashSet<&str> = HashSet::new();
    let mut order = Vec::new();
    while order.len() < items.len() {
        let before = order.len();
        for (i, it) in items.iter().enumerate() {
            if !done.contains(it.id.as_str())
                && it.depends_on.iter().all(|d| done.contains(d.as_str()))
            {
                order.push(i);
                done.insert(&it.id);
            }
        }
        if order.len() == before {
            return None;
        }
    }
    Some(order)
}

/// `POST /$batch`.
pub(crate) async fn batch(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, emu.cfg.max_body_bytes).await?;
    let items = parse_items(&body)?;
    let order =
        execution_order(&items).ok_or_else(|| bad("The dependsOn references form a cycle."))?;
    let router = emu.router.get().cloned().ok_or_else(|| {
        GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is starting.",
        )
    })?;
    let auth = headers.get(header::AUTHORIZATION).cloned();
    let mut status_of: HashMap<String, u16> = HashMap::new();
    let mut responses: Vec<Value> = Vec::new();
    emu.stats.count("batch");
    for i in order {
        let it = &items[i];
        if let Some(dep) = it
            .depends_on
            .iter()
            .find(|d| status_of.get(*d).is_none_or(|s| *s >= 400))
        {
            status_of.insert(it.id.clone(), 424);
            responses.push(json!({
                "id": it.id,
                "status": 424,
                "headers": {"Content-Type": "application/json"},
                "body": {"error": {"code": "FailedDependency", "message": format!("Request '{}' depends on request '{dep}', which failed.", it.id)}}
            }));
            continue;
        }
        if !it.url.starts_with('/') {
            let segment = it
                .url
                .split('/')
                .find(|s| !s.is_empty())
                .unwrap_or(&it.url)
                .to_string();
            status_of.insert(it.id.clone(), 400);
            responses.push(json!({
                "id": it.id,
                "status": 400,
                "headers": {"Content-Type": "application/json"},
                "body": {"error": {"code": "BadRequest", "message": format!("Resource not found for the segment '{segment}'."), "innerError": {"date": crate::ctx::now_rfc3339()}}}
            }));
            continue;
        }
        let uri = crate::normalize_uri(&format!("/v1.0{}", it.url));
        let mut req = Request::builder().method(it.method.clone()).uri(uri);
        if let Some(a) = &auth {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        for (k, v) in &it.headers {
            if let Some(v) = v.as_str() {
                req = req.header(k.as_str(), v);
            }
        }
        let body = it
            .body
            .as_ref()
            .map(|b| Body::from(b.to_string()))
            .unwrap_or_else(Body::empty);
        let Ok(mut req) = req.body(body) else {
            status_of.insert(it.id.clone(), 400);
            responses.push(json!({"id": it.id, "status": 400, "body": {"error": {"code": "BadRequest", "message": "The request could not be parsed."}}}));
            continue;
        };
        req.extensions_mut().insert(Internal);
        let resp = match router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status().as_u16();
        let mut hdrs = Map::new();
        for name in [
            "content-type",
            "retry-after",
            "location",
            "x-ms-throttle-scope",
            "x-ms-throttle-information",
            "x-ms-resource-unit",
        ] {
            if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
                let key = match name {
                    "content-type" => "Content-Type",
                    "retry-after" => "Retry-After",
                    "location" => "Location",
                    other => other,
                };
                hdrs.insert(key.into(), json!(v));
            }
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        status_of.insert(it.id.clone(), status);
        let mut r = json!({"id": it.id, "status": status, "headers": hdrs});
        if !body.is_null() {
            r["body"] = body;
        }
        responses.push(r);
    }
    // Graph answers in no particular order.
    for i in (1..responses.len()).rev() {
        let j = emu.random_u64(i as u64 + 1) as usize;
        responses.swap(i, j);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"responses": responses}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: Value) -> Result<Vec<Item>, GraphError> {
        parse_items(v.as_object().expect("object"))
    }

    #[test]
    fn payload_rules() {
        assert!(items(json!({})).is_err());
        assert!(items(json!({"requests": []})).is_err());
        let many: Vec<Value> = (0..21)
            .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
            .collect();
        assert!(
            items(json!({"requests": many}))
                .expect_err("21")
                .message
                .contains("20")
        );
        let dup = json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/users"}]});
        assert!(items(dup).expect_err("dup").message.contains("duplicate"));
        let no_ct =
            json!({"requests": [{"id": "1", "method": "POST", "url": "/users", "body": {}}]});
        assert!(
            items(no_ct)
                .expect_err("ct")
                .message
                .contains("Content-Type")
        );
        let unknown_dep = json!({"requests": [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}]});
        assert!(items(unknown_dep).is_err());
        let snake = json!({"requests": [{"id": "1", "method": "GET", "url": "/users", "depends_on": ["9"]}]});
        assert!(
            items(snake).expect("depends_on is ignored")[0]
                .depends_on
                .is_empty()
        );
    }

    #[test]
    fn order_respects_dependencies_and_detects_cycles() {
        let its = items(json!({"requests": [
            {"id": "a", "method": "GET", "url": "/x", "dependsOn": ["b"]},
            {"id": "b", "method": "GET", "url": "/x"}
        ]}))
        .expect("items");
        assert_eq!(execution_order(&its), Some(vec![1, 0]));
        let cyc = items(json!({"requests": [
            {"id": "a", "method": "GET", "url": "/x", "dependsOn": ["b"]},
            {"id": "b", "method": "GET", "url": "/x", "dependsOn": ["a"]}
        ]}))
        .expect("items");
        assert_eq!(execution_order(&cyc), None);
    }
}
