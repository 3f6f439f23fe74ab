//! JSON in and out with typed errors — the shape every binding uses for rich data.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Serialises a value to JSON.
///
/// # Errors
/// [`ErrorCode::Internal`](crate::ErrorCode::Internal) if the value cannot be represented
/// (a bug: every model type serialises).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::internal(format!("cannot serialise to JSON: {e}")))
}

/// Converts a value to a JSON value.
///
/// # Errors
/// [`ErrorCode::Internal`](crate::ErrorCode::Internal) if the value cannot be represented.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::internal(format!("cannot serialise to JSON: {e}")))
}

/// Parses a value from JSON.
///
/// # Errors
/// [`ErrorCode::InvalidInput`](crate::ErrorCode::InvalidInput) naming the line, column and
/// what was wrong.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::invalid_input(format!("invalid JSON: {e}")))
}

/// A string property of a service's JSON object, if it is one.
pub(crate) fn str_field(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// The JSON Schema of a time written as RFC 3339 text (`time::serde::rfc3339`): a string
/// of format `date-time`, which the bindings read as their language's time.
pub(crate) struct Rfc3339;

impl schemars::JsonSchema for Rfc3339 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DateTime".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}
