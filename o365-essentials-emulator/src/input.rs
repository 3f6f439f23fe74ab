//! Reading the emulator's own inputs (the configuration file, `POST /_emulator/seed` and
//! the other admin bodies): field names in either case, errors that name the field.
//!
//! The Rust types spell their fields in snake_case (`user_principal_name`); the state
//! dump answers in Graph's camelCase (`userPrincipalName`). Both spellings are accepted
//! on input: keys are turned into snake_case before the types read them, and a key given
//! in both spellings is refused rather than one silently winning.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// `userPrincipalName` → `user_principal_name`; snake_case keys are unchanged.
pub(crate) fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every object key under `v` in snake_case. `where_` names `v` in errors (`users[2]`).
///
/// # Errors
/// When one object names the same field twice (`userPrincipalName` and
/// `user_principal_name`).
pub(crate) fn snake_keys(v: Value, where_: &str) -> Result<Value, String> {
    match v {
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            let mut given: Vec<(String, String)> = Vec::with_capacity(m.len());
            for (k, val) in m {
                let s = snake_case(&k);
                if let Some((_, first)) = given.iter().find(|(n, _)| *n == s) {
                    // camelCase first, whichever came first in the object.
                    let (a, b) = if first.chars().any(|c| c.is_ascii_uppercase()) {
                        (first.as_str(), k.as_str())
                    } else {
                        (k.as_str(), first.as_str())
                    };
                    return Err(format!(
                        "{}: `{a}` and `{b}` name the same field; give it once",
                        if where_.is_empty() {
                            "(top level)"
                        } else {
                            where_
                        }
                    ));
                }
                let path = if where_.is_empty() {
                    s.clone()
                } else {
                    format!("{where_}.{s}")
                };
                let val = snake_keys(val, &path)?;
                given.push((s.clone(), k));
                out.insert(s, val);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, x)| snake_keys(x, &format!("{where_}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

/// Reads `T` from JSON whose keys may be in either case; an error names the field
/// (`users[0].account_enabled: invalid type: string "yes", expected a boolean`).
///
/// # Errors
/// A message naming the field and what it expected.
pub(crate) fn read<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    let v = snake_keys(v, "")?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // An unknown field's path ends with the field itself: name the object holding it.
        if let Some(field) = inner
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            && let Some(parent) = path.strip_suffix(field)
        {
            path = parent.trim_end_matches('.').to_string();
        }
        if path.is_empty() || path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// `user_principal_name` → `userPrincipalName`.
pub(crate) fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A serde message about the seed with its field names spelt as the seed documents
/// them, in camelCase: the path before the first `: ` (`users[0].account_enabled` →
/// `users[0].accountEnabled`) and every name alone in backquotes (`` `eligible_roles` ``
/// → `` `eligibleRoles` ``) when `quoted_names`. Values are left alone.
pub(crate) fn camel_fields(msg: &str, quoted_names: bool) -> String {
    let is_name = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let (path, rest) = match msg.split_once(": ") {
        Some((p, r))
            if p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c)) =>
        {
            let p: Vec<String> = p
                .split('.')
                .map(|seg| match seg.split_once('[') {
                    Some((name, idx)) => format!("{}[{idx}", camel_case(name)),
                    None => camel_case(seg),
                })
                .collect();
            (format!("{}: ", p.join(".")), r)
        }
        _ => (String::new(), msg),
    };
    let mut out = path;
    for (i, part) in rest.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if quoted_names && i % 2 == 1 && is_name(part) {
            out.push_str(&camel_case(part));
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_case_keys_become_snake_case_and_both_at_once_are_refused() {
        assert_eq!(snake_case("userPrincipalName"), "user_principal_name");
        assert_eq!(snake_case("user_principal_name"), "user_principal_name");
        assert_eq!(snake_case("skuId"), "sku_id");
        assert_eq!(snake_case("ms"), "ms");
        let v = snake_keys(
            json!({"users": [{"userPrincipalName": "a@b.c", "eligibleRoles": []}]}),
            "",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"users": [{"user_principal_name": "a@b.c", "eligible_roles": []}]})
        );
        let e = snake_keys(
            json!({"users": [{"skuId": 1}, {"userPrincipalName": "a", "user_principal_name": "b"}]}),
            "",
        )
        .unwrap_err();
        assert!(e.starts_with("users[1]: "), "{e}");
        assert!(
            e.contains("`userPrincipalName` and `user_principal_name`"),
            "{e}"
        );
    }

    #[test]
    fn seed_messages_name_fields_in_camel_case_and_leave_values_alone() {
        assert_eq!(camel_case("user_principal_name"), "userPrincipalName");
        assert_eq!(camel_case("ms"), "ms");
        assert_eq!(
            camel_fields(
                "users[0].account_enabled: invalid type: string \"yes\", expected a boolean",
                true
            ),
            "users[0].accountEnabled: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            camel_fields(
                "role_groups[1]: unknown field `colour`, expected one of `display_name`, `members`",
                true
            ),
            "roleGroups[1]: unknown field `colour`, expected one of `displayName`, `members`"
        );
        assert_eq!(
            camel_fields("users[0]: no user `ava_adams@x.com`", true),
            "users[0]: no user `ava_adams@x.com`"
        );
    }
}
