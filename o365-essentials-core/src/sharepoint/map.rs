//! Pure mappings between Graph / SharePoint REST JSON and the model, and from SharePoint
//! REST error bodies to [`Error`].

use serde_json::Value;

use crate::error::{Error, ErrorCode, Result, ServiceDetail};
use crate::json::str_field as s;
use crate::model::{Library, TeamSite};

fn unexpected(what: &str) -> Error {
    Error::new(
        ErrorCode::UnexpectedResponse,
        format!("SharePoint answered without {what}"),
    )
}

/// Graph `site` → [`TeamSite`].
pub(crate) fn site(v: &Value) -> Result<TeamSite> {
    Ok(TeamSite {
        id: s(v, "id").ok_or_else(|| unexpected("the site id"))?,
        url: s(v, "webUrl").ok_or_else(|| unexpected("the site URL"))?,
        display_name: s(v, "displayName").unwrap_or_default(),
    })
}

/// `https://contoso.sharepoint.com/sites/x` → `https://contoso.sharepoint.com`.
pub(crate) fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// A SharePoint REST error → [`Error`]. Both error shapes are read:
/// `{"odata.error":{"code","message":{"value"}}}` and `{"error":{...}}`, and the 401
/// for secret-based tokens (`x-ms-diagnostics: 3000003;reason="Unsupported app only
/// token."`) becomes [`ErrorCode::CertificateRequired`].
pub(crate) fn rest_error(
    status: u16,
    body: &Value,
    diagnostics: &str,
    request_id: Option<&str>,
    what: &str,
) -> Error {
    let err = body
        .get("odata.error")
        .or_else(|| body.get("error"))
        .unwrap_or(&Value::Null);
    let code = s(err, "code").unwrap_or_default();
    let message = err
        .get("message")
        .and_then(|m| {
            m.get("value")
                .and_then(Value::as_str)
                .or_else(|| m.as_str())
        })
        .map(str::to_string)
        .or_else(|| s(body, "error_description"))
        .unwrap_or_default();
    let lower = format!("{message} {diagnostics}").to_lowercase();
    let (ecode, text) = match status {
        401 if lower.contains("unsupported app only token") => (
            ErrorCode::CertificateRequired,
            format!(
                "{what}: SharePoint refused the app-only token made with a client secret; configure a certificate credential"
            ),
        ),
        401 => (
            ErrorCode::Auth,
            format!("{what}: SharePoint refused the access token ({message})"),
        ),
        403 => (
            ErrorCode::PermissionDenied,
            format!("{what}: the app needs the Sites.FullControl.All permission ({message})"),
        ),
        429 => (
            ErrorCode::Throttled,
            format!("{what}: SharePoint throttled the request"),
        ),
        _ if lower.contains("does not exist or is not unique") => (
            ErrorCode::NotFound,
            format!("{what}: SharePoint does not know this user"),
        ),
        404 => (ErrorCode::NotFound, format!("{what}: {message}")),
        500 | 502 | 503 => (
            ErrorCode::ServiceUnavailable,
            format!("{what}: SharePoint is unavailable ({message})"),
        ),
        504 => (ErrorCode::Timeout, format!("{what}: SharePoint timed out")),
        400 => (ErrorCode::InvalidInput, format!("{what}: {message}")),
        _ => (
            ErrorCode::UnexpectedResponse,
            format!("{what}: SharePoint answered {status} ({message})"),
        ),
    };
    Error::new(ecode, text).with_service(ServiceDetail {
        code: if code.is_empty() && !diagnostics.is_empty() {
            diagnostics.split(';').next().unwrap_or("").to_string()
        } else {
            code
        },
        message,
        request_id: request_id.map(str::to_string),
        status: Some(status),
    })
}

/// A site group → (id, title).
pub(crate) fn group_header(v: &Value) -> Result<(u32, String)> {
    let id = v
        .get("Id")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| unexpected("the group's Id"))?;
    Ok((id, s(v, "Title").unwrap_or_default()))
}

/// A group's users → their UPNs (from `UserPrincipalName`, else the claims login name).
pub(crate) fn group_users(v: &Value) -> Vec<String> {
    v.get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|u| {
            u.get("PrincipalType")
                .and_then(Value::as_u64)
                .is_none_or(|t| t == 1)
        })
        .filter_map(|u| {
            s(u, "UserPrincipalName")
                .filter(|x| !x.is_empty())
                .or_else(|| {
                    s(u, "LoginName")
                        .and_then(|l| l.rsplit_once('|').map(|(_, upn)| upn.to_string()))
                })
        })
        .collect()
}

/// `/_api/web/lists?$select=Id,EnableVersioning` → (list id, versioning).
pub(crate) fn versioning(v: &Value) -> Vec<(String, bool)> {
    v.get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                s(l, "Id")?,
                l.get("EnableVersioning").and_then(Value::as_bool)?,
            ))
        })
        .collect()
}

/// A Graph `list` → [`Library`].
pub(crate) fn library(
    v: &Value,
    drive_id: Option<String>,
    versioning: Option<bool>,
) -> Result<Library> {
    Ok(Library {
        id: s(v, "id").ok_or_else(|| unexpected("the list id"))?,
        name: s(v, "displayName").unwrap_or_default(),
        description: s(v, "description").unwrap_or_default(),
        url: s(v, "webUrl").unwrap_or_default(),
        versioning,
        drive_id,
    })
}

/// Graph lists and drives (+ versioning by list id) → the document libraries.
pub(crate) fn libraries(
    lists: &[Value],
    drives: &Value,
    versioning: Option<&[(String, bool)]>,
) -> Vec<Library> {
    let drives: Vec<(String, String)> = drives
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| Some((s(d, "id")?, s(d, "webUrl")?)))
        .collect();
    lists
        .iter()
        .filter(|l| {
            let info = l.get("list");
            info.and_then(|i| i.get("template")).and_then(Value::as_str) == Some("documentLibrary")
                && !info
                    .and_then(|i| i.get("hidden"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
        })
        .filter_map(|l| {
            let url = s(l, "webUrl").unwrap_or_default();
            let drive = drives
                .iter()
                .find(|(_, u)| u.eq_ignore_ascii_case(&url))
                .map(|(id, _)| id.clone());
            let id = s(l, "id")?;
            let ver = versioning.map(|v| {
                v.iter()
                    .find(|(x, _)| x.eq_ignore_ascii_case(&id))
                    .is_some_and(|(_, on)| *on)
            });
            library(l, drive, ver).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rest_errors_map() {
        let e = rest_error(
            401,
            &json!({"error_description": "Unsupported app only token."}),
            "3000003;reason=\"Unsupported app only token.\";category=\"invalid_client\"",
            None,
            "adding x",
        );
        assert_eq!(e.code(), ErrorCode::CertificateRequired);
        assert!(e.message().contains("certificate"));
        assert_eq!(e.service().unwrap().code, "3000003");
        let nf = rest_error(
            400,
            &json!({"odata.error": {"code": "-2146232832, Microsoft.SharePoint.SPException", "message": {"lang": "en-US", "value": "The user does not exist or is not unique."}}}),
            "",
            Some("r1"),
            "adding x",
        );
        assert_eq!(nf.code(), ErrorCode::NotFound);
        assert_eq!(nf.service().unwrap().request_id.as_deref(), Some("r1"));
        assert_eq!(
            rest_error(401, &Value::Null, "", None, "x").code(),
            ErrorCode::Auth
        );
        assert_eq!(
            rest_error(403, &Value::Null, "", None, "x").code(),
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            rest_error(503, &Value::Null, "", None, "x").code(),
            ErrorCode::ServiceUnavailable
        );
        assert_eq!(
            rest_error(
                400,
                &json!({"error": {"code": "x", "message": "bad"}}),
                "",
                None,
                "x"
            )
            .code(),
            ErrorCode::InvalidInput
        );
    }

    #[test]
    fn libraries_join_lists_drives_and_versioning() {
        let lists = vec![
            json!({"id": "l1", "displayName": "Documents", "webUrl": "https://c.sharepoint.com/Shared%20Documents", "list": {"template": "documentLibrary"}}),
            json!({"id": "l2", "displayName": "Events", "webUrl": "https://c.sharepoint.com/Events", "list": {"template": "events"}}),
            json!({"id": "l3", "displayName": "Hidden", "webUrl": "https://c.sharepoint.com/H", "list": {"template": "documentLibrary", "hidden": true}}),
            json!({"id": "l4", "displayName": "New", "webUrl": "https://c.sharepoint.com/New", "list": {"template": "documentLibrary"}}),
        ];
        let drives = json!({"value": [{"id": "b!1", "webUrl": "https://c.sharepoint.com/Shared%20Documents"}]});
        let libs = libraries(
            &lists,
            &drives,
            Some(&[("l1".into(), true), ("l4".into(), false)]),
        );
        assert_eq!(libs.len(), 2);
        assert_eq!(libs[0].drive_id.as_deref(), Some("b!1"));
        assert_eq!(libs[0].versioning, Some(true));
        assert_eq!(libs[1].drive_id, None);
        assert_eq!(libs[1].versioning, Some(false));
        assert_eq!(libraries(&lists, &drives, None)[0].versioning, None);
        assert_eq!(
            origin("https://c.sharepoint.com/sites/x").as_deref(),
            Some("https://c.sharepoint.com")
        );
        assert_eq!(
            group_users(
                &json!({"value": [{"LoginName": "i:0#.f|membership|a@b.c", "PrincipalType": 1}, {"LoginName": "c:0(.s|true", "PrincipalType": 4}]})
            ),
            vec!["a@b.c"]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        #[test]
        fn answers_never_panic(v in crate::testing::json_with_keys(&[
            "odata.error", "error", "code", "message", "value", "error_description", "Id",
            "Title", "LoginName", "UserPrincipalName", "PrincipalType", "EnableVersioning",
            "id", "webUrl", "displayName", "list", "template", "hidden",
        ]), status in 100u16..600, diag in ".{0,40}") {
            let e = rest_error(status, &v, &diag, None, "x");
            proptest::prop_assert!(e.message().starts_with('x'));
            let _ = site(&v);
            let _ = group_header(&v);
            let _ = group_users(&v);
            let _ = versioning(&v);
            let _ = library(&v, None, None);
            let items = v.as_array().cloned().unwrap_or_default();
            let _ = libraries(&items, &v, Some(&[]));
            let _ = origin(v.as_str().unwrap_or(""));
        }
    }
}
