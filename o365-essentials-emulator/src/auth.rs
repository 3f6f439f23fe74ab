//! The identity platform: the client-credentials token endpoint (secret or certificate
//! assertion), the access tokens it issues, and their validation on every API call.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::{digest, hmac, signature};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ctx::{GraphError, now_rfc3339, read_bytes};
use crate::state::Emu;

/// Well-known directory role template ids.
pub(crate) const ROLE_TEMPLATES: &[(&str, &str)] = &[
    (
        "Global Administrator",
        "62e90394-69f5-4237-9190-012177145e10",
    ),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    (
        "Privileged Authentication Administrator",
        "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    ),
    (
        "Exchange Administrator",
        "29232cdf-9323-42fd-ade2-1d097af3e4de",
    ),
    (
        "SharePoint Administrator",
        "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    ),
    (
        "License Administrator",
        "4d6ac14f-3453-41d0-bef9-a3e0c569773a",
    ),
    (
        "Helpdesk Administrator",
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    ),
    (
        "Authentication Administrator",
        "c4e39bd9-1100-46d3-8c65-fb160da0071f",
    ),
    (
        "Domain Name Administrator",
        "8329153b-31d0-4727-b945-745eb3bc5f31",
    ),
    (
        "Billing Administrator",
        "b0f54661-2d74-4c50-afa3-1ec803f12efe",
    ),
    (
        "Application Administrator",
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    ),
    (
        "Cloud Application Administrator",
        "158c047a-c907-4556-b7ef-446551a6b5f7",
    ),
    (
        "Privileged Role Administrator",
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
    ),
    // Roles whose names lack "Administrator": holding any role protects an account.
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
    ("Security Reader", "5d6b6bb7-de71-4623-b4af-96380a352509"),
    ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf"),
];

pub(crate) fn role_template(name: &str) -> Option<&'static str> {
    ROLE_TEMPLATES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, id)| *id)
}

/// The resources tokens can be issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Resource {
    Graph,
    Exchange,
    SharePoint,
}

/// A registered certificate: its thumbprints and RSA public key.
#[derive(Debug, Clone)]
pub(crate) struct RegisteredCert {
    pub sha256: Vec<u8>,
    pub sha1: Vec<u8>,
    /// PKCS#1 RSAPublicKey DER.
    pub rsa_public_key: Vec<u8>,
}

pub(crate) fn parse_certificate(pem: &str) -> Result<RegisteredCert, String> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let der = rustls_pemfile::certs(&mut reader)
        .next()
        .ok_or_else(|| "no CERTIFICATE block in the PEM".to_string())?
        .map_err(|e| format!("bad PEM: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("bad certificate: {e}"))?;
    let spki = cert.public_key();
    Ok(RegisteredCert {
        sha256: digest::digest(&digest::SHA256, der.as_ref())
            .as_ref()
            .to_vec(),
        sha1: digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_ref())
            .as_ref()
            .to_vec(),
        rsa_public_key: spki.subject_public_key.data.to_vec(),
    })
}

/// The claims of an access token we issue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: String,
    pub appid: String,
    pub app_displayname: String,
    /// "1": client secret, "2": certificate.
    pub appidacr: String,
    pub idtyp: String,
    pub oid: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub wids: Vec<String>,
    pub uti: String,
    pub ver: String,
    /// Delegated scopes (space separated) of a token issued to a signed-in user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
}

impl Claims {
    pub(crate) fn has_any_permission(&self, perms: &[&str]) -> bool {
        self.roles
            .iter()
            .any(|r| perms.iter().any(|p| r.eq_ignore_ascii_case(p)))
            || self.scp.as_deref().is_some_and(|scp| {
                scp.split_whitespace()
                    .any(|s| perms.iter().any(|p| s.eq_ignore_ascii_case(p)))
            })
    }

    /// Whether a signed-in user (not an app) holds this token.
    pub(crate) fn is_delegated(&self) -> bool {
        self.idtyp == "user"
    }

    pub(crate) fn has_role(&self, name: &str) -> bool {
        role_template(name).is_some_and(|t| self.wids.iter().any(|w| w == t))
            || self
                .wids
                .iter()
                .any(|w| w == role_template("Global Administrator").unwrap_or(""))
    }
}

pub(crate) fn sign_token(key: &hmac::Key, claims: &Claims) -> String {
    let header = B64URL.encode(br#"{"typ":"JWT","alg":"HS256","kid":"o365-essentials-emulator"}"#);
    let payload = B64URL.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{header}.{payload}");
    let sig = hmac::sign(key, input.as_bytes());
    format!("{input}.{}", B64URL.encode(sig.as_ref()))
}

pub(crate) enum TokenProblem {
    Malformed,
    Expired,
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn verify_token(key: &hmac::Key, token: &str, now: i64) -> Result<Claims, TokenProblem> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenProblem::Malformed);
    };
    let sig = B64URL.decode(s).map_err(|_| TokenProblem::Malformed)?;
    hmac::verify(key, format!("{h}.{p}").as_bytes(), &sig).map_err(|_| TokenProblem::Malformed)?;
    let claims: Claims = B64URL
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenProblem::Malformed)?;
    if claims.exp <= now || claims.nbf > now + 300 {
        return Err(TokenProblem::Expired);
    }
    Ok(claims)
}

pub(crate) fn aad_error(
    status: StatusCode,
    error: &str,
    code: u32,
    description: &str,
) -> Response<Body> {
    let trace = uuid::Uuid::new_v4();
    let correlation = uuid::Uuid::new_v4();
    let ts = now_rfc3339();
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}"),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace.to_string(),
        "correlation_id": correlation.to_string(),
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    let mut resp = crate::ctx::json_response(status, &body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`: what MSAL reads before asking
/// for a token.
pub(crate) async fn openid_configuration(
    State(emu): State<Arc<Emu>>,
    Path(tenant): Path<String>,
) -> Response<Body> {
    let b = &emu.urls.login;
    let t = &emu.cfg.tenant.id;
    let known = tenant.eq_ignore_ascii_case(t)
        || emu
            .tenant_domain_names()
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&tenant));
    if !known {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    crate::ctx::json_response(
        StatusCode::OK,
        &json!({
            "token_endpoint": format!("{b}/{tenant}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{b}/{t}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{b}/{tenant}/v2.0"),
            "request_uri_parameter_supported": false,
            "authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("{b}/{tenant}/oauth2/v2.0/logout"),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com"
        }),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token_endpoint(
    State(emu): State<Arc<Emu>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let Ok(bytes) = read_bytes(body, 64 * 1024).await else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&bytes).into_owned().collect();
    emu.stats.count("token");
    let tenant_ok = tenant.eq_ignore_ascii_case(&emu.cfg.tenant.id)
        || emu
            .tenant_domain_names()
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&tenant));
    if !tenant_ok {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(crate::devicecode::GRANT_TYPE) => {
            return crate::devicecode::poll(&emu, &tenant, &form);
        }
        Some("password") => {
            return crate::devicecode::password_grant(&emu, &tenant, &form);
        }
        Some(other) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
        None => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
    }
    let Some(client_id) = form.get("client_id") else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if emu.app(client_id).is_none()
        && let Some(resp) = crate::apps::client_credentials(&emu, &tenant, &form, client_id)
    {
        return resp;
    }
    let Some(app) = emu.app(client_id) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                emu.cfg.tenant.display_name
            ),
        );
    };
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    let Some((resource, aud)) = emu.resource_for_scope(scope) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let appidacr = if let Some(secret) = form.get("client_secret") {
        let ok = app
            .client_secret
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()));
        if !ok {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
        "1"
    } else if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90027,
                "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        let auds = emu.token_audiences(&tenant);
        if let Err((code, msg)) = verify_assertion(
            assertion,
            client_id,
            &auds,
            &emu.certificates(client_id),
            now,
        ) {
            return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", code, &msg);
        }
        "2"
    } else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    let lifetime = emu.cfg.token_lifetime_secs as i64;
    let claims = Claims {
        aud,
        iss: format!("https://sts.windows.net/{}/", emu.cfg.tenant.id),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        tid: emu.cfg.tenant.id.clone(),
        appid: app.client_id.clone(),
        app_displayname: app.display_name.clone(),
        appidacr: appidacr.into(),
        idtyp: "app".into(),
        oid: emu.service_principal_id(&app.client_id),
        roles: app.permissions.clone(),
        wids: app
            .directory_roles
            .iter()
            .filter_map(|r| role_template(r))
            .map(str::to_string)
            .collect(),
        uti: B64URL.encode(uuid::Uuid::new_v4().as_bytes()),
        ver: "1.0".into(),
        scp: None,
    };
    let _ = resource;
    let token = sign_token(&emu.token_key, &claims);
    emu.stats.count("token_issued");
    crate::ctx::json_response(
        StatusCode::OK,
        &json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
    )
}

pub(crate) fn verify_assertion(
    assertion: &str,
    client_id: &str,
    audiences: &[String],
    certs: &[RegisteredCert],
    now: i64,
) -> Result<(), (u32, String)> {
    let malformed = || (50027, "JWT token is invalid or malformed.".to_string());
    let mut parts = assertion.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let header: Value = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let claims: Value = B64URL
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let sig = B64URL.decode(s).map_err(|_| malformed())?;
    let alg = header["alg"].as_str().unwrap_or("");
    let algorithm: &dyn signature::VerificationAlgorithm = match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        other => {
            return Err((
                5002738,
                format!(
                    "The algorithm '{other}' is not supported for client assertions; use PS256 or RS256."
                ),
            ));
        }
    };
    let thumb256 = header["x5t#S256"]
        .as_str()
        .and_then(|t| B64URL.decode(t).ok());
    let thumb1 = header["x5t"].as_str().and_then(|t| B64URL.decode(t).ok());
    let cert = certs.iter().find(|c| {
        thumb256.as_deref() == Some(c.sha256.as_slice())
            || thumb1.as_deref() == Some(c.sha1.as_slice())
    });
    let Some(cert) = cert else {
        let shown = header["x5t#S256"]
            .as_str()
            .or(header["x5t"].as_str())
            .unwrap_or("");
        return Err((
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{shown}']"
            ),
        ));
    };
    signature::UnparsedPublicKey::new(algorithm, &cert.rsa_public_key)
        .verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| {
            (
                700027,
                "Client assertion failed signature validation.".to_string(),
            )
        })?;
    let aud = claims["aud"].as_str().unwrap_or("");
    if !audiences.iter().any(|a| a == aud) {
        return Err((
            700212,
            format!(
                "The audience '{aud}' of the client assertion is not the token endpoint; expected '{}'.",
                audiences.first().map(String::as_str).unwrap_or("")
            ),
        ));
    }
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err((
            700021,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter ('{client_id}'): iss and sub must both be the client id."
            ),
        ));
    }
    let exp = claims["exp"]
        .as_i64()
        .ok_or((700024, "Client assertion has no exp claim.".to_string()))?;
    let nbf = claims["nbf"].as_i64().unwrap_or(now);
    let skew = 300;
    if exp <= now - skew || nbf > now + skew {
        return Err((
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}."
            ),
        ));
    }
    if exp - nbf > 600 + skew {
        return Err((
            700024,
            "Client assertion lifetime is longer than 10 minutes.".to_string(),
        ));
    }
    Ok(())
}

/// Validates the bearer token of Graph, Exchange and SharePoint calls and puts the
/// [`Claims`] in the request's extensions.
pub(crate) async fn require_token(
    State((emu, resource)): State<(Arc<Emu>, Resource)>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let unauthorized = |msg: &str| {
        GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg)
            .with_header(
                header::WWW_AUTHENTICATE,
                format!(
                    "Bearer realm=\"\", authorization_uri=\"{}/{}/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                    emu.urls.login, emu.cfg.tenant.id
                ),
            )
            .into_response()
    };
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = auth.and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
    }) else {
        return unauthorized("Access token is empty.");
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = match verify_token(&emu.token_key, token.trim(), now) {
        Ok(c) => c,
        Err(TokenProblem::Expired) => {
            return unauthorized("Lifetime validation failed, the token is expired.");
        }
        Err(TokenProblem::Malformed) => {
            return unauthorized("IDX14100: JWT is not well formed, there are no dots (.).");
        }
    };
    if claims.aud != emu.audience(resource) {
        return unauthorized("Access token validation failure. Invalid audience.");
    }
    req.extensions_mut().insert(claims);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_expire() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let c = Claims {
            aud: "https://graph.microsoft.com".into(),
            iss: "i".into(),
            iat: 100,
            nbf: 100,
            exp: 200,
            tid: "t".into(),
            appid: "a".into(),
            app_displayname: "d".into(),
            appidacr: "1".into(),
            idtyp: "app".into(),
            oid: "o".into(),
            roles: vec!["User.Read.All".into()],
            wids: vec![],
            uti: "u".into(),
            ver: "1.0".into(),
            scp: None,
        };
        let t = sign_token(&key, &c);
        assert!(verify_token(&key, &t, 150).is_ok());
        assert!(matches!(
            verify_token(&key, &t, 200),
            Err(TokenProblem::Expired)
        ));
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert!(matches!(
            verify_token(&other, &t, 150),
            Err(TokenProblem::Malformed)
        ));
        assert!(matches!(
            verify_token(&key, "a.b", 150),
            Err(TokenProblem::Malformed)
        ));
        let tampered = t.replacen('.', ".x", 1);
        assert!(verify_token(&key, &tampered, 150).is_err());
    }
}
