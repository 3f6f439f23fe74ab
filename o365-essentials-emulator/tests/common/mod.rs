//! Helpers shared by the emulator's tests: a small Graph client, tokens, certificates.
#![allow(dead_code)]

pub mod bind;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use o365_essentials_emulator::Emulator;
use o365_essentials_emulator::config::AppConfig;
use serde_json::{Value, json};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub async fn token_response(
    http: &reqwest::Client,
    emu: &Emulator,
    client_id: &str,
    secret: Option<&str>,
    scope: &str,
) -> (u16, Value) {
    let mut form = vec![
        ("client_id", client_id.to_string()),
        ("scope", scope.to_string()),
        ("grant_type", "client_credentials".into()),
    ];
    if let Some(s) = secret {
        form.push(("client_secret", s.to_string()));
    }
    let r = http.post(emu.token_url()).form(&form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub async fn assertion_response(
    http: &reqwest::Client,
    emu: &Emulator,
    client_id: &str,
    assertion: &str,
) -> (u16, Value) {
    let form = [
        ("client_id", client_id),
        ("scope", GRAPH_SCOPE),
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    let r = http.post(emu.token_url()).form(&form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub async fn token_for(http: &reqwest::Client, emu: &Emulator, scope: &str) -> String {
    let info = emu.info();
    let (status, body) = token_response(
        http,
        emu,
        &info.client_id,
        info.client_secret.as_deref(),
        scope,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

pub fn decode_jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap()
}

/// A minimal Graph client over reqwest.
pub struct Graph {
    pub http: reqwest::Client,
    pub token: String,
    pub base: String,
}

impl Graph {
    pub async fn connect(emu: &Emulator) -> Graph {
        let http = reqwest::Client::new();
        let token = token_for(&http, emu, GRAPH_SCOPE).await;
        Graph {
            http,
            token,
            base: emu.info().graph_url.clone(),
        }
    }

    pub async fn connect_as(emu: &Emulator, client_id: &str) -> Graph {
        let http = reqwest::Client::new();
        let secret = AppConfig::default().client_secret;
        let (status, body) =
            token_response(&http, emu, client_id, secret.as_deref(), GRAPH_SCOPE).await;
        assert_eq!(status, 200, "{body}");
        Graph {
            http,
            token: body["access_token"].as_str().unwrap().to_string(),
            base: emu.info().graph_url.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(r: reqwest::Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_abs(&self.url(path)).await
    }

    pub async fn get_abs(&self, url: &str) -> (u16, Value) {
        Self::answer(
            self.http
                .get(url)
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut r = self.http.get(url).bearer_auth(&self.token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::answer(r.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(
            self.http
                .patch(self.url(path))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

pub fn new_user(nick: &str, password: &str) -> Value {
    json!({
        "accountEnabled": true,
        "displayName": format!("User {nick}"),
        "mailNickname": nick,
        "userPrincipalName": format!("{nick}@contoso.onmicrosoft.com"),
        "passwordProfile": {"password": password, "forceChangePasswordNextSignIn": false}
    })
}

pub async fn admin_get(emu: &Emulator, path: &str) -> Value {
    reqwest::get(format!("{}{path}", emu.info().admin_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn admin_post(emu: &Emulator, path: &str, body: &Value) -> reqwest::Response {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", emu.info().admin_url))
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r
}

pub async fn admin_put(emu: &Emulator, path: &str, body: &Value) {
    let r = reqwest::Client::new()
        .put(format!("{}{path}", emu.info().admin_url))
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

pub async fn check_password(emu: &Emulator, id: &str, pw: &str) -> bool {
    let r = admin_post(
        emu,
        &format!("/users/{id}/check-password"),
        &json!({"password": pw}),
    )
    .await;
    r.json::<Value>().await.unwrap()["matches"]
        .as_bool()
        .unwrap()
}

/// An RSA certificate and its PKCS#8 key (DER), made with the openssl command.
pub fn make_rsa_certificate(dir: &std::path::Path, name: &str) -> (String, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command (scripts/setup installs it)");
    assert!(status.success());
    let key_pem = std::fs::read(&key).unwrap();
    let der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .unwrap()
        .unwrap();
    (
        std::fs::read_to_string(&cert).unwrap(),
        der.secret_der().to_vec(),
    )
}

pub fn sha256_thumbprint(cert_pem: &str) -> String {
    let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    B64URL.encode(ring::digest::digest(&ring::digest::SHA256, der.as_ref()).as_ref())
}

pub fn sign_assertion(key_pkcs8: &[u8], alg: &str, thumb: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "x5t#S256": thumb});
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let key = ring::signature::RsaKeyPair::from_pkcs8(key_pkcs8).unwrap();
    let padding: &dyn ring::signature::RsaEncoding = if alg == "PS256" {
        &ring::signature::RSA_PSS_SHA256
    } else {
        &ring::signature::RSA_PKCS1_SHA256
    };
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        padding,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", B64URL.encode(sig))
}
