//! What a request's URL means before the router sees it: the spellings the real services
//! accept for one resource (OData keys in parentheses, `microsoft.graph.` prefixes, the
//! case of SharePoint REST paths), the public host a request came in under, and which
//! segment of an unknown Graph path Graph names in its error. Pure functions over
//! strings; nothing here panics, whatever the input.

/// Rewrites a path and query (`/v1.0/users('a@b.c')?$select=id`) to the one form the
/// router knows.
///
/// - Graph (`/v1.0/...`): empty segments are dropped (`/v1.0//users`); `microsoft.graph.` is dropped from action segments and `()` from
///   function calls, so `/users/microsoft.graph.delta()` is `/users/delta`; an OData key in
///   parentheses, `users('a@b.c')` or `domains('contoso.com')`, is the key as a segment,
///   `users/a@b.c` (OData 4.01 URL conventions §4.3.1 and §4.3.6: both address the
///   entity; Graph's own `@odata.context` URLs use the parentheses).
/// - SharePoint REST (`/sharepoint/_api/...`): lower case up to each call's parentheses,
///   whose arguments stay as they came; `sitegroups(5)` is `sitegroups/getbyid(5)`.
///   SharePoint's `_api` URLs are case-insensitive (Microsoft's own reference writes
///   `sitegroups/getById(id)` and `SiteGroups.GetById`; the CLI for Microsoft 365 sends
///   `SiteGroups/GetById(5)`).
pub(crate) fn normalize_uri(uri: &str) -> String {
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    let path = if starts_with_ci(path, "/sharepoint/_api") {
        sharepoint_path(path)
    } else if path.starts_with("/v1.0/") {
        graph_path(path)
    } else {
        path.to_string()
    };
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

fn graph_path(path: &str) -> String {
    let mut out: Vec<String> = vec![String::new()];
    // Empty segments are dropped: msgraph-sdk (Python, 1.x with kiota-http) with its
    // default base URL asks for `https://graph.microsoft.com/v1.0//users`, and that is
    // the SDK's documented first call, so Graph serves it.
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let s = seg.strip_prefix("microsoft.graph.").unwrap_or(seg);
        let s = s.strip_suffix("()").unwrap_or(s);
        match key_in_parentheses(s) {
            Some((name, key)) => {
                out.push(name.to_string());
                out.push(key);
            }
            None => out.push(s.to_string()),
        }
    }
    out.join("/")
}

/// `users('a@b.c')` → (`users`, `a@b.c`); `users(%27x%27)` too; a GUID may come unquoted.
/// A doubled quote inside the literal is one quote (OData's escape). Calls with named
/// parameters (`delta(token='x')`) are not keys.
fn key_in_parentheses(seg: &str) -> Option<(&str, String)> {
    let open = seg.find('(')?;
    let name = &seg[..open];
    let inner = seg[open + 1..].strip_suffix(')')?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    // The alternate key of applications and service principals:
    // `applications(appId='…')` is `applications/appId=…`.
    if let Some(rest) = inner.strip_prefix("appId=") {
        let (_, key) = key_in_parentheses(&format!("x({rest})"))?;
        return Some((name, format!("appId={key}")));
    }
    let quoted = inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| {
            inner
                .strip_prefix("%27")
                .and_then(|s| s.strip_suffix("%27"))
        });
    let key = match quoted {
        Some(q) => q.replace("''", "'").replace("%27%27", "'"),
        None if is_guid(inner) => inner.to_string(),
        None => return None,
    };
    if key.is_empty() {
        return None;
    }
    // A `/` inside the key would split it into two segments.
    Some((name, key.replace('/', "%2F")))
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn sharepoint_path(path: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        let (name, args) = match seg.find('(') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let name = name.to_ascii_lowercase();
        if name == "sitegroups" && !args.is_empty() && args != "()" {
            // `sitegroups(5)`: the collection's key, the same group as getbyid(5).
            out.push(name);
            out.push(format!("getbyid{args}"));
        } else {
            out.push(format!("{name}{args}"));
        }
    }
    out.join("/")
}

/// The numeric argument of `getbyid(5)` or `getbyid('5')` (SharePoint accepts a group id
/// as a number or as a string literal).
pub(crate) fn by_id_argument(seg: &str) -> Option<u32> {
    let lower = seg.to_ascii_lowercase();
    let inner = lower.strip_prefix("getbyid(")?.strip_suffix(')')?.trim();
    let inner = inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| {
            inner
                .strip_prefix("%27")
                .and_then(|s| s.strip_suffix("%27"))
        })
        .unwrap_or(inner);
    inner.trim().parse().ok()
}

/// A public base URL the emulator answers under, and where its requests go inside.
#[derive(Debug, Clone, PartialEq)]
struct PublicBase {
    /// Host name, lower case, without the port.
    host: String,
    /// The base URL's path (`""` or `/sharepoint`), without a trailing `/`.
    path: String,
    /// The internal path prefix the router knows the service under.
    internal: &'static str,
}

/// Maps requests that came in under a public host name (`contoso.sharepoint.com/_api/web`)
/// to the emulator's own paths (`/sharepoint/_api/web`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PublicHosts {
    bases: Vec<PublicBase>,
}

/// Splits `https://host:port/path` into (host, path); `None` when it is no http(s) URL.
pub(crate) fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = host_of(authority)?;
    Some((host, path.trim_end_matches('/').to_string()))
}

/// The host name of an authority (`Graph.Microsoft.com:443` → `graph.microsoft.com`).
fn host_of(authority: &str) -> Option<String> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

impl PublicHosts {
    /// From the public URLs of Graph, the identity platform, Exchange and SharePoint
    /// (each `None` when the service answers under the listen address only).
    pub(crate) fn new(
        graph: Option<&str>,
        login: Option<&str>,
        exchange: Option<&str>,
        sharepoint: Option<&str>,
    ) -> PublicHosts {
        let mut bases = Vec::new();
        for (url, internal) in [
            (sharepoint, "/sharepoint"),
            (graph, ""),
            (login, ""),
            (exchange, ""),
        ] {
            if let Some((host, path)) = url.and_then(split_url) {
                bases.push(PublicBase {
                    host,
                    path,
                    internal,
                });
            }
        }
        PublicHosts { bases }
    }

    /// The internal path and query for a request to `authority` (the `Host` header or
    /// the HTTP/2 `:authority`); `None` when it is already the internal one.
    pub(crate) fn internal(&self, authority: Option<&str>, path_and_query: &str) -> Option<String> {
        let host = host_of(authority?)?;
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        // The longest matching base path wins (SharePoint's `/sharepoint` over Graph's ``
        // when both share one host).
        let base = self
            .bases
            .iter()
            .filter(|b| b.host == host)
            .filter(|b| {
                b.path.is_empty()
                    || (starts_with_ci(path, &b.path)
                        && matches!(path.as_bytes().get(b.path.len()), None | Some(b'/')))
            })
            .max_by_key(|b| b.path.len())?;
        let rest = path.get(base.path.len()..).unwrap_or("");
        if base.internal == "/sharepoint" && !starts_with_ci(rest, "/_api") {
            return None;
        }
        let mapped = format!("{}{rest}", base.internal);
        if mapped == path {
            return None;
        }
        Some(match query {
            Some(q) => format!("{mapped}?{q}"),
            None => mapped,
        })
    }
}

/// Graph's route table as segment patterns (`{}` is a key), for naming the segment an
/// unknown path goes wrong at.
const GRAPH_ROUTES: &[&str] = &[
    "users/delta",
    "users/{}/revokeSignInSessions",
    "users/{}/assignLicense",
    "users/{}/licenseDetails/{}",
    "directory/deletedItems/user",
    "directory/deletedItems/{}/restore",
    "subscribedSkus",
    "organization",
    "directoryRoles/{}/members",
    "domains/{}/verificationDnsRecords",
    "domains/{}/serviceConfigurationRecords",
    "domains/{}/verify",
    "domains/{}/forceDelete",
    "sites/{}/lists/{}/drive",
    "sites/{}/drives",
    "$batch",
];

/// The segment Graph names in "Resource not found for the segment '…'": the first one,
/// after the version, that no route continues with (`/v1.0/users/{id}/nope` → `nope`).
pub(crate) fn unknown_segment(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    let mut matched = 0;
    for route in GRAPH_ROUTES {
        let pattern: Vec<&str> = route.split('/').collect();
        let n = pattern
            .iter()
            .zip(&segs)
            // As the router matches: literally.
            .take_while(|(p, s)| **p == "{}" || *p == *s)
            .count();
        matched = matched.max(n);
    }
    let at = matched.min(segs.len().saturating_sub(1));
    let seg = segs.get(at).copied().unwrap_or("");
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_paths_are_normalised() {
        assert_eq!(
            normalize_uri("/v1.0/users/delta()?$select=id"),
            "/v1.0/users/delta?$select=id"
        );
        assert_eq!(
            normalize_uri("/v1.0/users/x/microsoft.graph.revokeSignInSessions"),
            "/v1.0/users/x/revokeSignInSessions"
        );
        assert_eq!(
            normalize_uri("/v1.0/directory/deletedItems/microsoft.graph.user"),
            "/v1.0/directory/deletedItems/user"
        );
        assert_eq!(normalize_uri("/v1.0/users"), "/v1.0/users");
        assert_eq!(normalize_uri("/v1.0//users?$top=2"), "/v1.0/users?$top=2");
        assert_eq!(normalize_uri("/v1.0/users/x//"), "/v1.0/users/x");
    }

    /// Graph's alternate key of applications and service principals:
    /// `applications(appId='{appId}')/addKey`, `servicePrincipals(appId='{appId}')`.
    #[test]
    fn app_id_alternate_keys_are_key_segments() {
        assert_eq!(
            normalize_uri(
                "/v1.0/applications(appId='0e8b5a3c-1d2f-4b6a-8c9d-7e5f4a3b2c1d')/addKey"
            ),
            "/v1.0/applications/appId=0e8b5a3c-1d2f-4b6a-8c9d-7e5f4a3b2c1d/addKey"
        );
        assert_eq!(
            normalize_uri(
                "/v1.0/servicePrincipals(appId=%2700000003-0000-0000-c000-000000000000%27)"
            ),
            "/v1.0/servicePrincipals/appId=00000003-0000-0000-c000-000000000000"
        );
        assert_eq!(
            normalize_uri("/v1.0/applications(appId=x)"),
            "/v1.0/applications(appId=x)"
        );
    }

    /// OData 4.01 URL conventions §4.3.1: `Products(1)` and key-as-segment `Products/1`
    /// address one entity; Graph accepts `users('{id|userPrincipalName}')` (the CLI for
    /// Microsoft 365 sends `users('{id}')/…`, and Graph's `@odata.context` writes keys so).
    #[test]
    fn odata_keys_in_parentheses_are_key_segments() {
        assert_eq!(
            normalize_uri("/v1.0/users('jane@contoso.com')?$select=id"),
            "/v1.0/users/jane@contoso.com?$select=id"
        );
        assert_eq!(
            normalize_uri("/v1.0/users(%27jane%40contoso.com%27)/licenseDetails"),
            "/v1.0/users/jane%40contoso.com/licenseDetails"
        );
        assert_eq!(
            normalize_uri("/v1.0/users('o''brien@contoso.com')"),
            "/v1.0/users/o'brien@contoso.com"
        );
        assert_eq!(
            normalize_uri("/v1.0/users(8f3c2d4e-6a1b-4c5d-9e7f-0a1b2c3d4e5f)"),
            "/v1.0/users/8f3c2d4e-6a1b-4c5d-9e7f-0a1b2c3d4e5f"
        );
        assert_eq!(
            normalize_uri("/v1.0/domains('contoso.com')/verify"),
            "/v1.0/domains/contoso.com/verify"
        );
        // Not keys: named parameters, empty or unquoted non-GUID literals.
        for kept in [
            "/v1.0/users/delta(token='x')",
            "/v1.0/users('')",
            "/v1.0/users(abc)",
            "/v1.0/users('x",
        ] {
            assert_eq!(normalize_uri(kept), kept);
        }
    }

    #[test]
    fn sharepoint_rest_paths_ignore_case_but_keep_arguments() {
        assert_eq!(
            normalize_uri("/sharepoint/_api/Web/SiteGroups/GetById(5)/Users"),
            "/sharepoint/_api/web/sitegroups/getbyid(5)/users"
        );
        assert_eq!(
            normalize_uri("/sharepoint/_API/web/sitegroups(5)/users?$top=1"),
            "/sharepoint/_api/web/sitegroups/getbyid(5)/users?$top=1"
        );
        assert_eq!(
            normalize_uri(
                "/sharepoint/_api/web/SiteGroups/GetById(3)/Users/RemoveByLoginName(@v)?@v='i:0%23.f|membership|Jane@Contoso.com'"
            ),
            "/sharepoint/_api/web/sitegroups/getbyid(3)/users/removebyloginname(@v)?@v='i:0%23.f|membership|Jane@Contoso.com'"
        );
        assert_eq!(by_id_argument("getbyid(5)"), Some(5));
        assert_eq!(by_id_argument("GetById('5')"), Some(5));
        assert_eq!(by_id_argument("getbyid(%275%27)"), Some(5));
        assert_eq!(by_id_argument("getbyid( 5 )"), Some(5));
        assert_eq!(by_id_argument("getbyid('x')"), None);
        assert_eq!(by_id_argument("getbyid(5"), None);
    }

    #[test]
    fn public_host_names_map_to_the_emulators_paths() {
        let p = PublicHosts::new(
            Some("https://graph.microsoft.com"),
            Some("https://login.microsoftonline.com"),
            Some("https://outlook.office365.com"),
            Some("https://contoso.sharepoint.com"),
        );
        assert_eq!(
            p.internal(Some("contoso.sharepoint.com"), "/_api/web?x=1"),
            Some("/sharepoint/_api/web?x=1".into())
        );
        assert_eq!(
            p.internal(Some("Contoso.SharePoint.com:443"), "/_API/web"),
            Some("/sharepoint/_API/web".into())
        );
        assert_eq!(p.internal(Some("graph.microsoft.com"), "/v1.0/users"), None);
        assert_eq!(p.internal(Some("127.0.0.1:8080"), "/_api/web"), None);
        assert_eq!(p.internal(None, "/_api/web"), None);
        // One base for everything keeps the emulator's own layout.
        let one = PublicHosts::new(
            Some("https://emu.test:8443"),
            Some("https://emu.test:8443"),
            Some("https://emu.test:8443"),
            Some("https://emu.test:8443/sharepoint"),
        );
        assert_eq!(
            one.internal(Some("emu.test:8443"), "/sharepoint/_api/web"),
            None
        );
        assert_eq!(one.internal(Some("emu.test"), "/v1.0/users"), None);
        assert_eq!(split_url("not a url"), None);
        assert_eq!(
            split_url("https://[::1]:8443/x/"),
            Some(("::1".into(), "/x".into()))
        );
    }

    /// Graph names the segment it could not resolve: `GET /v1.0/users/{id}/nope` answers
    /// "Resource not found for the segment 'nope'.", not 'users'.
    #[test]
    fn the_unknown_segment_is_the_one_named() {
        assert_eq!(unknown_segment("/v1.0/nope"), "nope");
        assert_eq!(unknown_segment("/v1.0/users/abc/nope"), "nope");
        assert_eq!(unknown_segment("/v1.0/users/abc/licenseDetails/x/y"), "y");
        assert_eq!(unknown_segment("/v1.0/domains/x.com/verify/more"), "more");
        assert_eq!(unknown_segment("/v1.0/directory/nope"), "nope");
        assert_eq!(unknown_segment("/v1.0/sites/root/lists/l/drive/x"), "x");
        assert_eq!(unknown_segment("/v1.0/caf%C3%A9"), "café");
        assert_eq!(unknown_segment("/v1.0/Users/abc/nope"), "Users");
        assert_eq!(unknown_segment("/v1.0/"), "");
    }
}
