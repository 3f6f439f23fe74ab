//! Client-credentials tokens: a cache per resource, refreshed before expiry, one refresh
//! in flight at a time; a refused credential is reported with the identity platform's
//! code and remembered briefly, so a bulk run asks once rather than once per account.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode, Result, ServiceDetail};
use crate::graph::Credential;

/// Refresh this long before the token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long a refused credential is remembered.
const FAILURE_MEMORY: Duration = Duration::from_secs(30);
/// The longest token lifetime believed (the identity platform issues about an hour).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What signs client assertions.
pub(crate) struct CertificateKey {
    key: ring::signature::RsaKeyPair,
    /// base64url SHA-256 of the certificate DER.
    x5t_s256: String,
}

/// The app's credential, loaded and checked.
pub(crate) enum LoadedCredential {
    Secret(SecretString),
    Certificate(Box<CertificateKey>),
}

fn bad_config(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidConfig, msg)
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| bad_config(format!("cannot read the {what} {}: {e}", path.display())))
}

fn key_from_der(der: &[u8], pkcs1: bool) -> Result<ring::signature::RsaKeyPair> {
    let r = if pkcs1 {
        ring::signature::RsaKeyPair::from_der(der)
    } else {
        ring::signature::RsaKeyPair::from_pkcs8(der)
    };
    r.map_err(|e| bad_config(format!("the private key is not a usable RSA key ({e}); Microsoft 365 needs an RSA key of 2048 bits or more")))
}

fn thumbprint(cert_der: &[u8]) -> String {
    B64URL.encode(ring::digest::digest(&ring::digest::SHA256, cert_der).as_ref())
}

impl LoadedCredential {
    pub(crate) fn load(c: &Credential) -> Result<LoadedCredential> {
        match c {
            Credential::Secret { secret } => {
                if secret.expose_secret().is_empty() {
                    return Err(bad_config("the client secret is empty"));
                }
                Ok(LoadedCredential::Secret(secret.clone()))
            }
            Credential::Certificate {
                certificate_pem,
                certificate_file,
                private_key_pem,
                private_key_file,
            } => {
                let cert_pem = match (certificate_pem, certificate_file) {
                    (Some(p), _) => p.as_bytes().to_vec(),
                    (None, Some(f)) => read_file(f, "certificate file")?,
                    (None, None) => {
                        return Err(bad_config(
                            "a certificate credential needs certificate_pem or certificate_file",
                        ));
                    }
                };
                let key_pem: zeroize::Zeroizing<Vec<u8>> =
                    zeroize::Zeroizing::new(match (private_key_pem, private_key_file) {
                        (Some(p), _) => p.expose_secret().as_bytes().to_vec(),
                        (None, Some(f)) => {
                            crate::platform::check_secret_path(
                                f,
                                "certificate's private key file",
                            )?;
                            read_file(f, "private key file")?
                        }
                        (None, None) => {
                            if let Some(f) = certificate_file {
                                crate::platform::check_secret_path(
                                    f,
                                    "certificate file (it holds the private key too)",
                                )?;
                            }
                            cert_pem.clone()
                        }
                    });
                let cert = rustls_pemfile::certs(&mut cert_pem.as_slice())
                    .next()
                    .ok_or_else(|| bad_config("no CERTIFICATE block in the certificate PEM"))?
                    .map_err(|e| bad_config(format!("the certificate PEM is malformed: {e}")))?;
                let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                    .map_err(|e| bad_config(format!("the private key PEM is malformed: {e}")))?
                    .ok_or_else(|| bad_config("no PRIVATE KEY block in the private key PEM"))?;
                let pair = match &key {
                    rustls_pki_types::PrivateKeyDer::Pkcs1(k) => {
                        key_from_der(k.secret_pkcs1_der(), true)?
                    }
                    rustls_pki_types::PrivateKeyDer::Pkcs8(k) => {
                        key_from_der(k.secret_pkcs8_der(), false)?
                    }
                    _ => return Err(bad_config("the private key must be RSA (PKCS#1 or PKCS#8)")),
                };
                Ok(LoadedCredential::Certificate(Box::new(CertificateKey {
                    key: pair,
                    x5t_s256: thumbprint(cert.as_ref()),
                })))
            }
            Credential::Pkcs12 { path, password } => {
                crate::platform::check_secret_path(path, "PKCS#12 file")?;
                let data = zeroize::Zeroizing::new(read_file(path, "PKCS#12 file")?);
                let ks = p12_keystore::KeyStore::from_pkcs12(
                    &data,
                    password.expose_secret(),
                    p12_keystore::Pkcs12ImportPolicy::default(),
                )
                .map_err(|e| {
                    bad_config(format!(
                        "cannot open the PKCS#12 file {} (wrong password?): {e}",
                        path.display()
                    ))
                })?;
                let (_, chain) = ks.private_key_chain().ok_or_else(|| {
                    bad_config(format!(
                        "the PKCS#12 file {} holds no private key with a certificate",
                        path.display()
                    ))
                })?;
                let cert = chain
                    .certs()
                    .first()
                    .ok_or_else(|| bad_config("the PKCS#12 key has no certificate"))?;
                let pair = key_from_der(chain.key().as_der(), false)?;
                Ok(LoadedCredential::Certificate(Box::new(CertificateKey {
                    key: pair,
                    x5t_s256: thumbprint(cert.as_der()),
                })))
            }
        }
    }
}

impl CertificateKey {
    /// A PS256 client assertion for `token_url`, valid for 10 minutes.
    fn assertion(&self, client_id: &str, token_url: &str) -> Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256});
        let claims = json!({"aud": token_url, "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(), "nbf": now, "iat": now, "exp": now + 600});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PSS_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| Error::internal("signing the client assertion failed"))?;
        Ok(format!("{input}.{}", B64URL.encode(sig)))
    }
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: SecretString,
    refresh_at: Instant,
}

enum Cached {
    Empty,
    Valid(Token),
    Refused(Error, Instant),
}

/// The token cache of one resource.
pub(crate) struct TokenCache {
    scope: String,
    state: tokio::sync::Mutex<Cached>,
}

impl TokenCache {
    pub(crate) fn new(scope: impl Into<String>) -> Self {
        TokenCache {
            scope: scope.into(),
            state: tokio::sync::Mutex::new(Cached::Empty),
        }
    }

    /// Forgets the token (after a 401 for an expired one).
    pub(crate) async fn invalidate(&self) {
        let mut s = self.state.lock().await;
        if matches!(*s, Cached::Valid(_)) {
            *s = Cached::Empty;
        }
    }

    /// A valid token; fetches one when needed. The lock is held while fetching, so
    /// concurrent callers wait for one refresh instead of starting their own.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        token_url: &str,
        client_id: &str,
        cred: &LoadedCredential,
    ) -> Result<Token> {
        let mut s = self.state.lock().await;
        match &*s {
            Cached::Valid(t) if Instant::now() < t.refresh_at => return Ok(t.clone()),
            Cached::Refused(e, at) if at.elapsed() < FAILURE_MEMORY => return Err(clone_error(e)),
            _ => {}
        }
        match fetch(http, token_url, client_id, cred, &self.scope).await {
            Ok(t) => {
                *s = Cached::Valid(t.clone());
                Ok(t)
            }
            Err(e) => {
                if matches!(
                    e.code(),
                    ErrorCode::Auth | ErrorCode::PermissionDenied | ErrorCode::InvalidConfig
                ) {
                    *s = Cached::Refused(clone_error(&e), Instant::now());
                }
                Err(e)
            }
        }
    }
}

fn clone_error(e: &Error) -> Error {
    let mut c = Error::new(e.code(), e.message());
    if let Some(s) = e.service() {
        c = c.with_service(s.clone());
    }
    c
}

async fn fetch(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    cred: &LoadedCredential,
    scope: &str,
) -> Result<Token> {
    let mut form: Vec<(&str, String)> = vec![
        ("client_id", client_id.to_string()),
        ("scope", scope.to_string()),
        ("grant_type", "client_credentials".into()),
    ];
    match cred {
        LoadedCredential::Secret(s) => form.push(("client_secret", s.expose_secret().to_string())),
        LoadedCredential::Certificate(k) => {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push(("client_assertion", k.assertion(client_id, token_url)?));
        }
    }
    let started = Instant::now();
    let resp = http
        .post(token_url)
        .form(&form)
        .send()
        .await
        .map_err(|e| super::transport_error(&e, "asking the identity platform for a token"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200 {
        let value = body["access_token"].as_str().ok_or_else(|| {
            Error::new(
                ErrorCode::UnexpectedResponse,
                "the token response has no access_token",
            )
        })?;
        return Ok(Token {
            value: SecretString::from(value.to_string()),
            refresh_at: refresh_at(started, &body["expires_in"]),
        });
    }
    Err(token_error(status, &body))
}

/// When to fetch a new token: 5 minutes before it expires, or at 80% of a short
/// lifetime. `expires_in` comes from the network: a number or a numeric string, bounded
/// to a day (a larger, negative or missing value is not trusted), so the arithmetic
/// cannot overflow.
fn refresh_at(started: Instant, expires_in: &Value) -> Instant {
    let secs = match expires_in {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .map_or(3599, |s| s.min(MAX_TOKEN_LIFETIME.as_secs_f64()) as u64);
    let lifetime = Duration::from_secs(secs);
    let margin = REFRESH_MARGIN.min(lifetime / 5);
    started
        .checked_add(lifetime.saturating_sub(margin))
        .unwrap_or(started)
}

/// Maps an identity platform error (`invalid_client`, `AADSTS7000215`...) to an [`Error`].
pub(crate) fn token_error(status: u16, body: &Value) -> Error {
    let error = body["error"].as_str().unwrap_or("unknown_error");
    let description = body["error_description"].as_str().unwrap_or("");
    let aadsts = description
        .split(':')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let first_line = description
        .split(" Trace ID:")
        .next()
        .unwrap_or(description)
        .trim()
        .to_string();
    let (code, what) = match (status, error) {
        (_, "invalid_client") | (_, "unauthorized_client") => {
            (ErrorCode::Auth, "the app's credentials were refused")
        }
        (_, "invalid_scope") => (ErrorCode::InvalidConfig, "the requested scope is not valid"),
        (_, "invalid_request") if aadsts == "AADSTS90002" => {
            (ErrorCode::InvalidConfig, "the tenant does not exist")
        }
        (429, _) => (
            ErrorCode::Throttled,
            "the identity platform throttled the token request",
        ),
        (500..=599, _) => (
            ErrorCode::ServiceUnavailable,
            "the identity platform is unavailable",
        ),
        _ => (ErrorCode::Auth, "the token request was refused"),
    };
    let code_text = if aadsts.starts_with("AADSTS") {
        format!("{error} ({aadsts})")
    } else {
        error.to_string()
    };
    Error::new(code, format!("{what}: {first_line}")).with_service(ServiceDetail {
        code: code_text,
        message: first_line,
        request_id: body["trace_id"].as_str().map(str::to_string),
        status: Some(status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_errors_map_to_auth_with_the_code() {
        let body = json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: t Correlation ID: c Timestamp: x", "trace_id": "t"});
        let e = token_error(401, &body);
        assert_eq!(e.code(), ErrorCode::Auth);
        assert_eq!(
            e.service().map(|s| s.code.as_str()),
            Some("invalid_client (AADSTS7000215)")
        );
        assert!(e.message().contains("Invalid client secret provided."));
        assert!(!e.message().contains("Trace ID"));
        let e = token_error(
            400,
            &json!({"error": "invalid_request", "error_description": "AADSTS90002: Tenant 'x' not found."}),
        );
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert_eq!(
            token_error(503, &Value::Null).code(),
            ErrorCode::ServiceUnavailable
        );
    }

    #[test]
    fn token_lifetimes_from_the_network_never_overflow() {
        let now = Instant::now();
        for v in [
            json!(u64::MAX),
            json!(1e300),
            json!(-5),
            json!("18446744073709551615"),
            json!("NaN"),
            json!(null),
            json!({"x": 1}),
        ] {
            let at = refresh_at(now, &v);
            assert!(at <= now + MAX_TOKEN_LIFETIME, "{v}");
        }
        assert_eq!(
            refresh_at(now, &json!(3600)),
            now + Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_at(now, &json!("100")),
            now + Duration::from_secs(80)
        );
    }

    #[test]
    fn credentials_are_checked_when_loaded() {
        let e = LoadedCredential::load(&Credential::Secret {
            secret: SecretString::from(""),
        })
        .err()
        .expect("empty secret");
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        let e = LoadedCredential::load(&Credential::Certificate {
            certificate_pem: Some("garbage".into()),
            certificate_file: None,
            private_key_pem: None,
            private_key_file: None,
        })
        .err()
        .expect("garbage");
        assert!(e.message().contains("CERTIFICATE"));
        let e = LoadedCredential::load(&Credential::Pkcs12 {
            path: "/nonexistent.pfx".into(),
            password: SecretString::from("x"),
        })
        .err()
        .expect("missing");
        assert!(e.message().contains("/nonexistent.pfx"));
    }
}
