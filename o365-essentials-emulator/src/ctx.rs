//! Per-request context, Graph-shaped error responses and request body parsing.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What every handler knows about the request it serves.
#[derive(Debug, Clone)]
pub(crate) struct RequestCtx {
    /// The `request-id` we assign.
    pub request_id: String,
    /// The caller's `client-request-id`, echoed back (ours when absent).
    pub client_request_id: String,
}

/// Marks a response whose connection must be dropped instead of answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A Graph error, answered as `{"error":{"code","message","innerError":{...}}}`.
#[derive(Debug, Clone)]
pub(crate) struct GraphError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Vec<Value>,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl GraphError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        GraphError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(id: &str) -> Self {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub(crate) fn forbidden() -> Self {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    pub(crate) fn conflict(property: &str) -> Self {
        let mut e = GraphError::bad_request(
            "Request_BadRequest",
            format!("Another object with the same value for property {property} already exists."),
        );
        e.details
            .push(json!({"code": "ObjectConflict", "target": property}));
        e
    }

    pub(crate) fn with_header(
        mut self,
        name: header::HeaderName,
        value: impl Into<String>,
    ) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(&self, ctx: Option<&RequestCtx>) -> Value {
        let mut inner = json!({"date": now_rfc3339()});
        if let Some(c) = ctx {
            inner["request-id"] = json!(c.request_id);
            inner["client-request-id"] = json!(c.client_request_id);
        }
        let mut err = json!({"code": self.code, "message": self.message, "innerError": inner});
        if !self.details.is_empty() {
            err["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": err })
    }

    pub(crate) fn into_response_with(self, ctx: Option<&RequestCtx>) -> Response<Body> {
        let body = self.body(ctx).to_string();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().insert(name.clone(), v);
            }
        }
        resp
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response<Body> {
        // The context middleware re-renders it with the request's ids (innerError).
        let mut resp = self.clone().into_response_with(None);
        resp.extensions_mut().insert(PendingError(self));
        resp
    }
}

/// A Graph error waiting for the context middleware to add the request ids.
#[derive(Debug, Clone)]
pub(crate) struct PendingError(pub GraphError);

/// JSON response with the Graph content type.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"),
    );
    resp
}

pub(crate) fn no_content() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// Reads a request body with Graph's rules: bounded size, a JSON content type, valid
/// JSON, an object at the top.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Map<String, Value>, GraphError> {
    let bytes = read_bytes(body, limit).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.is_empty() {
        return Err(GraphError::bad_request(
            "BadRequest",
            "Write requests (excluding DELETE) must contain the Content-Type header declaration.",
        ));
    }
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(GraphError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BadRequest",
            format!(
                "A supported MIME type could not be found that matches the content type of the response. None of the supported type(s) 'application/json' matches the content type '{ct}'."
            ),
        ));
    }
    parse_json_object(&bytes)
}

pub(crate) fn parse_json_object(
    bytes: &[u8],
) -> Result<serde_json::Map<String, Value>, GraphError> {
    let unreadable = || {
        GraphError::bad_request(
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) | Err(_) => Err(unreadable()),
    }
}

pub(crate) async fn read_bytes(body: Body, limit: usize) -> Result<Bytes, GraphError> {
    let too_large = || {
        GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("The request body is larger than the maximum of {limit} bytes."),
        )
    };
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(_) => Err(GraphError::bad_request(
            "BadRequest",
            "The request body could not be read.",
        )),
    }
}

/// Marks a `$batch` sub-request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Internal;

/// Renames a request body's property names to their declared spelling, ignoring case,
/// as Graph's directory endpoints do: `mailNickName` is `mailNickname` and `surName` is
/// `surname` (the CLI for Microsoft 365's `m365 entra user add` sends both, and the real
/// service creates the user). Names not in `declared` stay as they came, for the caller
/// to refuse; instance annotations (`@odata.type`, `x@odata.bind`) stay untouched. A
/// property given twice under two spellings is refused rather than guessed.
pub(crate) fn canonical_names(
    body: serde_json::Map<String, Value>,
    declared: &[&[&str]],
) -> Result<serde_json::Map<String, Value>, GraphError> {
    let mut out = serde_json::Map::new();
    for (k, v) in body {
        let name = if k.contains('@') {
            k
        } else {
            declared
                .iter()
                .flat_map(|list| list.iter())
                .find(|d| d.eq_ignore_ascii_case(&k))
                .map_or(k, |d| (*d).to_string())
        };
        if out.contains_key(&name) {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                format!("The property '{name}' was given more than once."),
            ));
        }
        out.insert(name, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: Value, declared: &[&str]) -> Result<Vec<String>, GraphError> {
        let m = v.as_object().cloned().unwrap_or_default();
        canonical_names(m, &[declared]).map(|m| {
            let mut k: Vec<String> = m.keys().cloned().collect();
            k.sort();
            k
        })
    }

    #[test]
    fn property_names_are_matched_ignoring_case_as_graph_does() {
        // What `m365 entra user add` (pnp/cli-microsoft365, user-add.ts) sends.
        let got = names(
            json!({"mailNickName": "a", "surName": "b", "GIVENNAME": "c", "@odata.type": "#x", "unknown": 1}),
            &["mailNickname", "surname", "givenName"],
        )
        .unwrap_or_default();
        assert_eq!(
            got,
            vec![
                "@odata.type",
                "givenName",
                "mailNickname",
                "surname",
                "unknown"
            ]
        );
        let twice = names(json!({"surname": "a", "surName": "b"}), &["surname"]);
        assert!(twice.is_err());
    }
}
