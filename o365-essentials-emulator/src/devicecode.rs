//! The OAuth 2.0 device authorization grant (RFC 8628) as the Microsoft identity
//! platform answers it: `POST /{tenant}/oauth2/v2.0/devicecode` hands out a device code
//! and a user code; the client polls the token endpoint with
//! `grant_type=urn:ietf:params:oauth:grant-type:device_code` and hears
//! `authorization_pending`, `slow_down`, `authorization_declined`, `expired_token` or
//! `bad_verification_code` until the user signs in. Here the admin endpoint
//! (`POST /_emulator/devicecode/approve`) plays the user: it approves (or declines) a
//! pending code as a seeded user, whose directory roles then decide what the delegated
//! token may do.
//!
//! Tokens issued this way carry `idtyp: user`, the user's object id in `oid`, the
//! delegated scopes in `scp` and the user's directory roles in `wids`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Claims, Resource, aad_error, sign_token};
use crate::ctx::{GraphError, json_response, read_bytes, read_json};
use crate::state::Emu;

/// The grant type of a device code poll.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Delegated Graph scopes a `.default` request gets (what an administrator consented to
/// for the public client).
const DEFAULT_SCOPES: &[&str] = &[
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "User.Read",
];

/// Scopes that name no resource and do not go into `scp`.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "offline_access", "email"];

/// Where a device code stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodeState {
    Pending,
    Approved(String),
    Declined,
    /// Its token was handed out; a device code is good for one token.
    Redeemed,
}

/// A device code handed out and not yet forgotten.
#[derive(Debug, Clone)]
pub(crate) struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub client_id: String,
    /// Delegated Graph scopes asked for (short names).
    pub scopes: Vec<String>,
    pub expires_at: i64,
    pub interval: i64,
    /// Milliseconds since the epoch of the last poll.
    pub last_poll_ms: Option<i64>,
    pub state: CodeState,
}

/// The device codes of the tenant.
#[derive(Debug, Default)]
pub(crate) struct DeviceCodes {
    pub codes: Vec<DeviceCode>,
}

fn now_ms() -> i64 {
    let t = time::OffsetDateTime::now_utc();
    t.unix_timestamp() * 1000 + i64::from(t.millisecond())
}

fn tenant_known(emu: &Emu, tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case(&emu.cfg.tenant.id)
        || tenant.eq_ignore_ascii_case("organizations")
        || emu
            .tenant_domain_names()
            .iter()
            .any(|d| d.eq_ignore_ascii_case(tenant))
}

/// Random characters from `alphabet`.
fn random_string(emu: &Emu, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| {
            let i = emu.random_u64(alphabet.len() as u64) as usize;
            char::from(alphabet.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

/// The delegated Graph scopes of a request's `scope`, or why they are refused.
fn graph_scopes(emu: &Emu, scope: &str) -> Result<Vec<String>, String> {
    let graph = emu.audience(Resource::Graph);
    let mut out: Vec<String> = Vec::new();
    for s in scope.split_whitespace() {
        if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            continue;
        }
        let short = if let Some(rest) = s
            .get(..graph.len())
            .filter(|p| p.eq_ignore_ascii_case(&graph))
            .and_then(|_| s.get(graph.len()..))
        {
            rest.trim_start_matches('/')
        } else if let Some(rest) = s.strip_prefix("00000003-0000-0000-c000-000000000000/") {
            rest
        } else if s.contains("://") || s.contains('/') {
            return Err(format!(
                "The scope '{s}' names a resource this sign-in cannot reach; ask for Microsoft Graph scopes."
            ));
        } else {
            s
        };
        if short.eq_ignore_ascii_case(".default") {
            for d in DEFAULT_SCOPES {
                if !out.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                    out.push((*d).to_string());
                }
            }
        } else if !short.is_empty() && !out.iter().any(|x| x.eq_ignore_ascii_case(short)) {
            out.push(short.to_string());
        }
    }
    if out.is_empty() {
        return Err("The request must name at least one Microsoft Graph scope.".into());
    }
    Ok(out)
}

/// `POST /{tenant}/oauth2/v2.0/devicecode` (form: `client_id`, `scope`).
pub(crate) async fn authorize(
    State(emu): State<Arc<Emu>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(bytes) = read_bytes(body, 64 * 1024).await else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&bytes).into_owned().collect();
    emu.stats.count("devicecode");
    if !tenant_known(&emu, &tenant) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let Some(client_id) = form.get("client_id").filter(|c| !c.is_empty()) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if !emu
        .cfg
        .identity
        .public_clients
        .iter()
        .any(|c| c.eq_ignore_ascii_case(client_id))
    {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}', or is not a public client.",
                emu.cfg.tenant.display_name
            ),
        );
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    let scopes = match graph_scopes(&emu, scope) {
        Ok(s) => s,
        Err(msg) => {
            return aad_error(StatusCode::BAD_REQUEST, "invalid_scope", 70011, &msg);
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expires = emu.cfg.identity.device_code_expires_secs.max(1) as i64;
    let interval = emu.cfg.identity.device_code_interval_secs.max(1) as i64;
    let device_code = random_string(
        &emu,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        64,
    );
    let user_code = random_string(&emu, b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 9);
    let verification_uri = format!("{}/devicelogin", emu.urls.login);
    {
        let mut d = emu.dir();
        d.device_codes
            .codes
            .retain(|c| c.expires_at + 3600 > now && c.state != CodeState::Redeemed);
        d.device_codes.codes.push(DeviceCode {
            device_code: device_code.clone(),
            user_code: user_code.clone(),
            client_id: client_id.clone(),
            scopes,
            expires_at: now + expires,
            interval,
            last_poll_ms: None,
            state: CodeState::Pending,
        });
    }
    json_response(
        StatusCode::OK,
        &json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": verification_uri,
            "expires_in": expires,
            "interval": interval,
            "message": format!("To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."),
        }),
    )
}

/// A poll of the token endpoint with a device code.
pub(crate) fn poll(emu: &Emu, tenant: &str, form: &HashMap<String, String>) -> Response<Body> {
    let Some(code) = form.get("device_code").filter(|c| !c.is_empty()) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'device_code'.",
        );
    };
    let client_id = form.get("client_id").map(String::as_str).unwrap_or("");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let now_ms = now_ms();
    let mut d = emu.dir();
    let Some(dc) = d
        .device_codes
        .codes
        .iter_mut()
        .find(|c| c.device_code == *code && c.client_id.eq_ignore_ascii_case(client_id))
    else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "bad_verification_code",
            70000,
            "The provided value for the input parameter 'device_code' is not valid.",
        );
    };
    if now >= dc.expires_at {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "expired_token",
            70019,
            "Verification code expired.",
        );
    }
    // RFC 8628 §3.5: polling faster than `interval` earns `slow_down`. Half the
    // interval of slack keeps clients that poll on time out of it.
    let too_fast = dc
        .last_poll_ms
        .is_some_and(|last| now_ms - last < dc.interval * 500);
    dc.last_poll_ms = Some(now_ms);
    match dc.state.clone() {
        CodeState::Redeemed => aad_error(
            StatusCode::BAD_REQUEST,
            "bad_verification_code",
            70000,
            "The provided value for the input parameter 'device_code' was already redeemed.",
        ),
        CodeState::Declined => aad_error(
            StatusCode::BAD_REQUEST,
            "authorization_declined",
            70000,
            "The user declined to authenticate.",
        ),
        CodeState::Pending if too_fast => aad_error(
            StatusCode::BAD_REQUEST,
            "slow_down",
            70016,
            "OAuth 2.0 device flow error. Polling too fast: wait the interval between requests.",
        ),
        CodeState::Pending => aad_error(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            70016,
            "The provided request has not yet been authorized by the user. The user must input their code.",
        ),
        CodeState::Approved(user_id) => {
            dc.state = CodeState::Redeemed;
            let scopes = dc.scopes.clone();
            let client = dc.client_id.clone();
            let Some(user) = d.users.get(&user_id).cloned() else {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    50034,
                    "The user account does not exist in the directory.",
                );
            };
            let wids: Vec<String> = d
                .roles
                .iter()
                .filter(|r| r.members.contains(&user.id))
                .map(|r| r.template_id.clone())
                .collect();
            drop(d);
            delegated_token(emu, tenant, &client, &user, &scopes, wids, form)
        }
    }
}

/// The resource owner password credentials grant (`grant_type=password`): a configured
/// public client sends a user's `username` (UPN) and `password` and gets the user's
/// token, as the device code flow would give it, or Entra's `invalid_grant` answer
/// (`AADSTS50034` no such user, `AADSTS50126` wrong password, `AADSTS50057` disabled,
/// `AADSTS50055` the password must be changed first). What a test needs to prove a
/// password works, the way a client of a real tenant would.
pub(crate) fn password_grant(
    emu: &Emu,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let missing = |name: &str| {
        aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{name}'."),
        )
    };
    let Some(client_id) = form.get("client_id").filter(|c| !c.is_empty()) else {
        return missing("client_id");
    };
    if !emu
        .cfg
        .identity
        .public_clients
        .iter()
        .any(|c| c.eq_ignore_ascii_case(client_id))
    {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}', or is not a public client.",
                emu.cfg.tenant.display_name
            ),
        );
    }
    let Some(username) = form.get("username").filter(|c| !c.is_empty()) else {
        return missing("username");
    };
    let Some(password) = form.get("password") else {
        return missing("password");
    };
    let scopes = match graph_scopes(emu, form.get("scope").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(msg) => return aad_error(StatusCode::BAD_REQUEST, "invalid_scope", 70011, &msg),
    };
    emu.stats.count("password_grant");
    let d = emu.dir();
    let invalid_grant =
        |code: u32, text: &str| aad_error(StatusCode::BAD_REQUEST, "invalid_grant", code, text);
    let Some(user) = d
        .users
        .values()
        .find(|u| u.user_principal_name.eq_ignore_ascii_case(username))
        .cloned()
    else {
        return invalid_grant(
            50034,
            &format!(
                "The user account {{EUII Hidden}} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                emu.cfg.tenant.id
            ),
        );
    };
    if user.password_hash.as_deref() != Some(crate::state::hash_password(password).as_slice()) {
        return invalid_grant(
            50126,
            "Error validating credentials due to invalid username or password.",
        );
    }
    if !user.account_enabled {
        return invalid_grant(50057, "The user account is disabled.");
    }
    if user.force_change_password {
        return invalid_grant(50055, "The password is expired.");
    }
    let wids: Vec<String> = d
        .roles
        .iter()
        .filter(|r| r.members.contains(&user.id))
        .map(|r| r.template_id.clone())
        .collect();
    drop(d);
    delegated_token(emu, tenant, client_id, &user, &scopes, wids, form)
}

fn delegated_token(
    emu: &Emu,
    tenant: &str,
    client_id: &str,
    user: &crate::state::User,
    scopes: &[String],
    wids: Vec<String>,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let lifetime = emu.cfg.token_lifetime_secs as i64;
    let tid = emu.cfg.tenant.id.clone();
    let claims = Claims {
        aud: emu.audience(Resource::Graph),
        iss: format!("https://sts.windows.net/{tid}/"),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        tid: tid.clone(),
        appid: client_id.to_string(),
        app_displayname: "Microsoft Graph Command Line Tools".into(),
        appidacr: "0".into(),
        idtyp: "user".into(),
        oid: user.id.clone(),
        roles: Vec::new(),
        wids,
        uti: B64URL.encode(uuid::Uuid::new_v4().as_bytes()),
        ver: "1.0".into(),
        scp: Some(scopes.join(" ")),
    };
    let token = sign_token(&emu.token_key, &claims);
    // The ID token MSAL reads to know the account (unsigned here: MSAL does not verify
    // a token it got straight from the token endpoint over TLS).
    let id_claims = json!({
        "aud": client_id,
        "iss": format!("{}/{tenant}/v2.0", emu.urls.login),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "name": user.display_name,
        "oid": user.id,
        "preferred_username": user.user_principal_name,
        "sub": user.id,
        "tid": tid,
        "ver": "2.0",
    });
    let id_token = format!(
        "{}.{}.",
        B64URL.encode(br#"{"typ":"JWT","alg":"none"}"#),
        B64URL.encode(id_claims.to_string().as_bytes())
    );
    let graph = emu.audience(Resource::Graph);
    let mut scope: Vec<String> = scopes.iter().map(|s| format!("{graph}/{s}")).collect();
    let asked = form.get("scope").map(String::as_str).unwrap_or("");
    for o in ["openid", "profile", "offline_access"] {
        if asked.split_whitespace().any(|s| s == o) || asked.is_empty() {
            scope.push(o.into());
        }
    }
    emu.stats.count("token_issued");
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "scope": scope.join(" "),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
            "refresh_token": format!("emulator-refresh-{}", uuid::Uuid::new_v4().simple()),
            "id_token": id_token,
            "client_info": B64URL.encode(json!({"uid": user.id, "utid": emu.cfg.tenant.id}).to_string().as_bytes()),
        }),
    )
}

/// Read with [`crate::input::read`]: `userCode` (as documented) or `user_code`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// The user code shown to the user (any case, dashes ignored).
    user_code: String,
    /// The signing-in user: UPN or id.
    user: String,
    /// Decline instead of approving.
    #[serde(default)]
    decline: bool,
}

/// `POST /_emulator/devicecode/approve` `{"userCode", "user", "decline"}`: the user
/// enters the code and signs in (or declines).
pub(crate) async fn approve(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, GraphError> {
    let body = read_json(&headers, body, 64 * 1024).await?;
    let b: ApproveBody = crate::input::read(Value::Object(body)).map_err(|e| {
        GraphError::bad_request("BadRequest", format!("Invalid admin request: {e}"))
    })?;
    let wanted: String = b
        .user_code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut d = emu.dir();
    let user = d
        .find_user(&b.user)
        .filter(|u| u.deleted.is_none())
        .ok_or_else(|| GraphError::not_found(&b.user))?;
    if !user.account_enabled {
        return Err(GraphError::bad_request(
            "BadRequest",
            format!("The account {} is disabled.", user.user_principal_name),
        ));
    }
    let uid = user.id.clone();
    let dc = d
        .device_codes
        .codes
        .iter_mut()
        .find(|c| c.user_code.eq_ignore_ascii_case(&wanted))
        .ok_or_else(|| GraphError::not_found(&b.user_code))?;
    if dc.state != CodeState::Pending || now >= dc.expires_at {
        return Err(GraphError::bad_request(
            "BadRequest",
            "The code is no longer pending.",
        ));
    }
    dc.state = if b.decline {
        CodeState::Declined
    } else {
        CodeState::Approved(uid)
    };
    Ok(crate::ctx::no_content())
}

/// `GET /_emulator/devicecode`: the pending user codes, newest last.
pub(crate) async fn pending(State(emu): State<Arc<Emu>>) -> Response<Body> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let d = emu.dir();
    let codes: Vec<Value> = d
        .device_codes
        .codes
        .iter()
        .filter(|c| c.state == CodeState::Pending && now < c.expires_at)
        .map(|c| json!({"userCode": c.user_code, "clientId": c.client_id, "scopes": c.scopes}))
        .collect();
    json_response(StatusCode::OK, &json!({ "value": codes }))
}

/// `POST /_emulator/devicecode/expire`: every device code handed out expires now.
pub(crate) async fn expire(State(emu): State<Arc<Emu>>) -> Response<Body> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for c in &mut emu.dir().device_codes.codes {
        c.expires_at = c.expires_at.min(now);
    }
    crate::ctx::no_content()
}
