//! # o365-essentials-emulator
//!
//! An offline Microsoft 365 for tests, examples, benchmarks and integrators' dashboards:
//! the identity platform's token endpoint, Graph v1.0's directory (users, delta,
//! licences, organization, roles, domains, `$batch`), with the real wire formats,
//! validation rules, throttling and error bodies, plus injected faults and a latency
//! model. Run it in-process ([`Emulator::start`]) or as the `o365-essentials-emulator`
//! binary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), o365_essentials_emulator::EmulatorError> {
//! use o365_essentials_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! println!("Graph at {}", emu.info().graph_url);
//! # Ok(()) }
//! ```
#![allow(clippy::disallowed_methods)] // only the engine must read time from its Clock

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

mod admin;
mod apps;
mod auth;
mod batch;
pub mod config;
mod ctx;
mod devicecode;
mod dns;
mod domains;
mod edge;
mod exchange;
mod input;
mod odata;
mod org;
mod roles;
mod route;
mod sharepoint;
mod state;
mod throttle;
mod users;

#[cfg(test)]
mod fuzz_tests;

pub use config::{EmulatorConfig, PublicUrls};

use auth::Resource;
use state::Emu;

/// Why the emulator could not start.
#[derive(Debug)]
pub struct EmulatorError(String);

impl std::fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmulatorError {}

/// Where a running emulator answers, and the credentials of its first app. Its `Debug`
/// leaves the secret out (the JSON line the binary prints carries it, for the client).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorInfo {
    /// Identity platform base (`{login_url}/{tenant}/oauth2/v2.0/token`).
    pub login_url: String,
    /// Graph base, with the version (`.../v1.0`).
    pub graph_url: String,
    /// Exchange admin API base.
    pub exchange_url: String,
    /// SharePoint base.
    pub sharepoint_url: String,
    /// The admin endpoint (`/_emulator`).
    pub admin_url: String,
    /// Tenant id.
    pub tenant_id: String,
    /// The first app's client id.
    pub client_id: String,
    /// The first app's client secret.
    pub client_secret: Option<String>,
    /// The CA certificate to trust, when serving HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The socket address it listens on.
    pub listen: SocketAddr,
    /// The URLs its answers name when clients reach it under other names (a proxy, or
    /// Microsoft's host names resolved to `listen`); see [`PublicUrls`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<PublicUrls>,
}

impl std::fmt::Debug for EmulatorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorInfo")
            .field("login_url", &self.login_url)
            .field("graph_url", &self.graph_url)
            .field("exchange_url", &self.exchange_url)
            .field("sharepoint_url", &self.sharepoint_url)
            .field("admin_url", &self.admin_url)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_file", &self.ca_file)
            .field("listen", &self.listen)
            .field("public", &self.public)
            .finish()
    }
}

/// A running emulator; dropping it stops it.
pub struct Emulator {
    info: EmulatorInfo,
    emu: Arc<Emu>,
    task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    hosts: Arc<route::PublicHosts>,
    _ca_dir: Option<tempdir::TempDir>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("listen", &self.info.listen)
            .finish()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

/// Accepts connections until aborted; aborting drops the listener and every connection.
fn spawn_accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    hosts: Arc<route::PublicHosts>,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let acceptor = acceptor.clone();
            let hosts = hosts.clone();
            conns.spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(stream).await {
                            serve_connection(tls, router, hosts).await;
                        }
                    }
                    None => serve_connection(stream, router, hosts).await,
                }
            });
            while conns.try_join_next().is_some() {}
        }
    })
    .abort_handle()
}

mod tempdir {
    /// A directory removed on drop (for the generated CA file).
    #[derive(Debug)]
    pub(crate) struct TempDir(pub std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub(crate) use route::normalize_uri;

fn graph_router(emu: &Arc<Emu>) -> Router<Arc<Emu>> {
    let auth_state = (emu.clone(), Resource::Graph);
    Router::new()
        .route("/v1.0/users", get(users::list).post(users::create))
        .route("/v1.0/users/delta", get(users::delta))
        .route(
            "/v1.0/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route(
            "/v1.0/users/{id}/revokeSignInSessions",
            post(users::revoke_sessions),
        )
        .route(
            "/v1.0/users/{id}/assignLicense",
            post(users::assign_license),
        )
        .route(
            "/v1.0/users/{id}/licenseDetails",
            get(users::license_details),
        )
        .route(
            "/v1.0/users/{id}/licenseDetails/{detail}",
            get(users::license_detail),
        )
        .route(
            "/v1.0/directory/deletedItems/user",
            get(users::list_deleted),
        )
        .route(
            "/v1.0/directory/deletedItems/{id}",
            get(users::get_deleted).delete(users::purge),
        )
        .route(
            "/v1.0/directory/deletedItems/{id}/restore",
            post(users::restore),
        )
        .route("/v1.0/subscribedSkus", get(org::subscribed_skus))
        .route("/v1.0/organization", get(org::organization))
        .route("/v1.0/directoryRoles", get(org::directory_roles))
        .route("/v1.0/directoryRoles/{id}/members", get(org::role_members))
        .route(
            "/v1.0/roleManagement/directory/roleDefinitions",
            get(roles::role_definitions),
        )
        .route(
            "/v1.0/roleManagement/directory/roleAssignments",
            get(roles::role_assignments).post(apps::assign_role),
        )
        .route(
            "/v1.0/roleManagement/directory/roleAssignments/{id}",
            axum::routing::delete(apps::unassign_role),
        )
        .route("/v1.0/me", get(apps::me))
        .route(
            "/v1.0/applications",
            get(apps::list_apps).post(apps::create_app),
        )
        .route(
            "/v1.0/applications/{id}",
            get(apps::get_app)
                .patch(apps::update_app)
                .delete(apps::delete_app),
        )
        .route("/v1.0/applications/{id}/addKey", post(apps::add_key))
        .route("/v1.0/applications/{id}/removeKey", post(apps::remove_key))
        .route(
            "/v1.0/servicePrincipals",
            get(apps::list_sps).post(apps::create_sp),
        )
        .route(
            "/v1.0/servicePrincipals/{id}",
            get(apps::get_sp).delete(apps::delete_sp),
        )
        .route(
            "/v1.0/servicePrincipals/{id}/appRoleAssignedTo",
            get(apps::assigned_to).post(apps::grant),
        )
        .route(
            "/v1.0/servicePrincipals/{id}/appRoleAssignedTo/{assignment}",
            axum::routing::delete(apps::revoke),
        )
        .route(
            "/v1.0/servicePrincipals/{id}/appRoleAssignments",
            get(apps::assignments).post(apps::grant),
        )
        .route(
            "/v1.0/servicePrincipals/{id}/appRoleAssignments/{assignment}",
            axum::routing::delete(apps::revoke),
        )
        .route(
            "/v1.0/roleManagement/directory/roleEligibilitySchedules",
            get(roles::role_eligibility),
        )
        .route(
            "/v1.0/groups/{id}/transitiveMembers",
            get(roles::transitive_members),
        )
        .route(
            "/v1.0/groups/{id}/transitiveMembers/user",
            get(roles::transitive_members),
        )
        .route("/v1.0/domains", get(domains::list).post(domains::add))
        .route(
            "/v1.0/domains/{id}",
            get(domains::get)
                .patch(domains::update)
                .delete(domains::delete),
        )
        .route(
            "/v1.0/domains/{id}/verificationDnsRecords",
            get(domains::verification_records),
        )
        .route(
            "/v1.0/domains/{id}/serviceConfigurationRecords",
            get(domains::service_records),
        )
        .route("/v1.0/domains/{id}/verify", post(domains::verify))
        .route(
            "/v1.0/domains/{id}/forceDelete",
            post(domains::force_delete),
        )
        .route("/v1.0/sites/{id}", get(sharepoint::get_site))
        .route(
            "/v1.0/sites/{id}/lists",
            get(sharepoint::get_lists).post(sharepoint::create_list),
        )
        .route(
            "/v1.0/sites/{id}/lists/{list}",
            get(sharepoint::get_list).delete(sharepoint::delete_list),
        )
        .route(
            "/v1.0/sites/{id}/lists/{list}/drive",
            get(sharepoint::get_list_drive),
        )
        .route("/v1.0/sites/{id}/drives", get(sharepoint::get_drives))
        .route("/v1.0/$batch", post(batch::batch))
        .route("/v1.0", axum::routing::any(graph_fallback))
        .route("/v1.0/{*rest}", axum::routing::any(graph_fallback))
        .layer(axum::middleware::from_fn_with_state(
            emu.clone(),
            throttle::throttle_layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth_state,
            auth::require_token,
        ))
}

fn exchange_router(emu: &Arc<Emu>) -> Router<Arc<Emu>> {
    Router::new()
        .route(
            "/adminapi/beta/{tenant}/InvokeCommand",
            post(exchange::invoke),
        )
        .layer(axum::middleware::from_fn_with_state(
            (emu.clone(), Resource::Exchange),
            auth::require_token,
        ))
}

fn sharepoint_router(emu: &Arc<Emu>) -> Router<Arc<Emu>> {
    Router::new()
        .route("/sharepoint/_api/web", get(sharepoint::web))
        .route(
            "/sharepoint/_api/web/{which}",
            get(sharepoint::associated_group).post(sharepoint::merge_list),
        )
        .route(
            "/sharepoint/_api/web/sitegroups/{seg}",
            get(sharepoint::site_group),
        )
        .route(
            "/sharepoint/_api/web/sitegroups/{seg}/users",
            get(sharepoint::group_users).post(sharepoint::add_group_user),
        )
        .route(
            "/sharepoint/_api/web/sitegroups/{seg}/users/{call}",
            post(sharepoint::remove_group_user),
        )
        .layer(axum::middleware::from_fn_with_state(
            emu.clone(),
            sharepoint::app_only_rules,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (emu.clone(), Resource::SharePoint),
            auth::require_token,
        ))
}

async fn graph_fallback(uri: axum::http::Uri) -> ctx::GraphError {
    let seg = route::unknown_segment(uri.path());
    if seg.is_empty() {
        return ctx::GraphError::bad_request("BadRequest", "Invalid version.");
    }
    // Graph names the segment it could not resolve, not the first one.
    ctx::GraphError::bad_request(
        "BadRequest",
        format!("Resource not found for the segment '{seg}'."),
    )
}

async fn not_found(uri: axum::http::Uri) -> ctx::GraphError {
    ctx::GraphError::new(
        axum::http::StatusCode::NOT_FOUND,
        "NotFound",
        format!("No such endpoint: {}", uri.path()),
    )
}

fn build_router(emu: &Arc<Emu>) -> Router {
    let admin = Router::new()
        .route("/_emulator/state", get(admin::state))
        .route("/_emulator/stats", get(admin::stats))
        .route("/_emulator/seed", post(admin::seed))
        .route(
            "/_emulator/faults",
            axum::routing::put(admin::set_faults).delete(admin::clear_faults),
        )
        .route(
            "/_emulator/throttling",
            axum::routing::put(admin::set_throttling).get(admin::throttling),
        )
        .route("/_emulator/latency", axum::routing::put(admin::set_latency))
        .route("/_emulator/dns", axum::routing::put(admin::set_dns))
        .route(
            "/_emulator/users/{id}/check-password",
            post(admin::check_password),
        )
        .route("/_emulator/delta/expire", post(admin::expire_delta))
        .route("/_emulator/devicecode", get(devicecode::pending))
        .route("/_emulator/devicecode/approve", post(devicecode::approve))
        .route("/_emulator/devicecode/expire", post(devicecode::expire));
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token_endpoint))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(devicecode::authorize),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(auth::openid_configuration),
        )
        .merge(admin)
        .merge(graph_router(emu))
        .merge(exchange_router(emu))
        .merge(sharepoint_router(emu))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            emu.clone(),
            edge::edge,
        ))
        .with_state(emu.clone())
}

fn tls_err(e: &dyn std::fmt::Display) -> EmulatorError {
    EmulatorError(format!("cannot make the TLS certificate: {e}"))
}

/// A certificate for `names` (DNS names and IP addresses) signed by a CA made for this
/// instance, whose certificate is written to `ca_path` for clients to trust.
fn generated_tls(
    ca_path: &std::path::Path,
    names: Vec<String>,
) -> Result<tokio_rustls::TlsAcceptor, EmulatorError> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let err = tls_err;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Each instance's CA has a name of its own: a client trusting two emulators at once
    // (two tests, two tenants) must find the right issuer for each certificate.
    let instance = uuid::Uuid::new_v4().simple().to_string();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("o365-essentials emulator CA {}", &instance[..12]),
    );
    let ca_key = KeyPair::generate().map_err(|e| err(&e))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| err(&e))?;
    let mut params = CertificateParams::new(names).map_err(|e| err(&e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "o365-essentials emulator");
    let key = KeyPair::generate().map_err(|e| err(&e))?;
    let cert = params.signed_by(&key, &ca).map_err(|e| err(&e))?;
    std::fs::write(ca_path, ca.pem()).map_err(|e| {
        EmulatorError(format!(
            "cannot write the CA file {}: {e}",
            ca_path.display()
        ))
    })?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    acceptor_for(vec![cert.der().clone()], key_der)
}

/// The names the generated certificate covers: the loopback names, the listen address,
/// and the public host names clients may reach it under.
fn certificate_names(listen: SocketAddr, public: &PublicUrls) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for n in std::iter::once(listen.ip().to_string()).chain(public.host_names()) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// A given certificate chain and key (PEM files).
fn given_tls(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, EmulatorError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| EmulatorError(format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert_file)?;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                EmulatorError(format!(
                    "{} is no PEM certificate chain: {e}",
                    cert_file.display()
                ))
            })?;
    if chain.is_empty() {
        return Err(EmulatorError(format!(
            "{} holds no certificate",
            cert_file.display()
        )));
    }
    let key_pem = read(key_file)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| EmulatorError(format!("{} is no PEM key: {e}", key_file.display())))?
        .ok_or_else(|| EmulatorError(format!("{} holds no private key", key_file.display())))?;
    acceptor_for(chain, key)
}

fn acceptor_for(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<tokio_rustls::TlsAcceptor, EmulatorError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_connection<I>(io: I, router: Router, hosts: Arc<route::PublicHosts>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        let hosts = hosts.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let path_and_query = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            // HTTP/2 names the host in `:authority`, HTTP/1.1 in `Host`.
            let authority = parts
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| {
                    parts
                        .headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                });
            let internal = hosts
                .internal(authority.as_deref(), &path_and_query)
                .unwrap_or(path_and_query);
            if let Ok(u) = normalize_uri(&internal).parse() {
                parts.uri = u;
            }
            let req = hyper::Request::from_parts(parts, Body::new(body));
            let resp = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if resp.extensions().get::<ctx::DropConnection>().is_some() {
                return Err(ConnectionDropped);
            }
            Ok::<_, ConnectionDropped>(resp)
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// An injected fault that closes the connection instead of answering.
#[derive(Debug)]
struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for ConnectionDropped {}

impl Emulator {
    /// Starts on `127.0.0.1` on an ephemeral port.
    ///
    /// # Errors
    /// When the port cannot be bound or the configuration is invalid.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        Emulator::start_on(
            "127.0.0.1:0"
                .parse()
                .map_err(|_| EmulatorError("bad address".into()))?,
            config,
        )
        .await
    }

    /// Starts on a given loopback address (`127.0.0.1:PORT`, `[::1]:PORT`).
    ///
    /// # Errors
    /// When the address is not a loopback address, cannot be bound, or the configuration
    /// is invalid.
    pub async fn start_on(
        addr: SocketAddr,
        config: EmulatorConfig,
    ) -> Result<Emulator, EmulatorError> {
        if !addr.ip().is_loopback() {
            return Err(EmulatorError(format!(
                "the emulator listens on loopback addresses only (127.0.0.0/8 or ::1), not {addr}"
            )));
        }
        config.validate().map_err(EmulatorError)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| EmulatorError(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| EmulatorError(e.to_string()))?;
        let (acceptor, ca_file, ca_dir) = match (&config.tls.cert_file, &config.tls.key_file) {
            _ if !config.tls.enabled => (None, None, None),
            (Some(cert), Some(key)) => (Some(given_tls(cert, key)?), None, None),
            (Some(_), None) | (None, Some(_)) => {
                return Err(EmulatorError(
                    "tls.cert_file and tls.key_file go together".into(),
                ));
            }
            (None, None) => {
                let (path, dir) = match &config.tls.ca_file {
                    Some(p) => (p.clone(), None),
                    None => {
                        let dir = std::env::temp_dir().join(format!(
                            "o365-emulator-{}-{}",
                            std::process::id(),
                            local.port()
                        ));
                        std::fs::create_dir_all(&dir).map_err(|e| {
                            EmulatorError(format!("cannot create {}: {e}", dir.display()))
                        })?;
                        (dir.join("ca.pem"), Some(tempdir::TempDir(dir)))
                    }
                };
                let names = certificate_names(local, &config.public);
                (Some(generated_tls(&path, names)?), Some(path), dir)
            }
        };
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{local}");
        let emu = Arc::new(Emu::new(config, base.clone()).map_err(EmulatorError)?);
        let router = build_router(&emu);
        let _ = emu.router.set(router.clone());
        let u = &emu.urls;
        let public = (emu.cfg.public != PublicUrls::default()).then(|| PublicUrls {
            login_url: Some(u.login.clone()),
            graph_url: Some(u.graph.clone()),
            exchange_url: Some(u.exchange.clone()),
            sharepoint_url: Some(u.sharepoint.clone()),
        });
        let hosts = Arc::new(route::PublicHosts::new(
            emu.cfg.public.graph_url.as_deref(),
            emu.cfg.public.login_url.as_deref(),
            emu.cfg.public.exchange_url.as_deref(),
            emu.cfg.public.sharepoint_url.as_deref(),
        ));
        let task = spawn_accept_loop(listener, router.clone(), acceptor.clone(), hosts.clone());
        let app = &emu.cfg.apps[0];
        let info = EmulatorInfo {
            login_url: base.clone(),
            graph_url: format!("{base}/v1.0"),
            exchange_url: format!("{base}/adminapi/beta"),
            sharepoint_url: format!("{base}/sharepoint"),
            admin_url: format!("{base}/_emulator"),
            tenant_id: emu.cfg.tenant.id.clone(),
            client_id: app.client_id.clone(),
            client_secret: app.client_secret.clone(),
            ca_file,
            listen: local,
            public,
        };
        Ok(Emulator {
            info,
            emu,
            task: std::sync::Mutex::new(Some(task)),
            router,
            acceptor,
            hosts,
            _ca_dir: ca_dir,
        })
    }

    /// Where it answers and the first app's credentials.
    pub fn info(&self) -> &EmulatorInfo {
        &self.info
    }

    /// The token endpoint URL.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.info.login_url, self.info.tenant_id
        )
    }

    /// Requests served so far (outer requests, not `$batch` items).
    pub fn request_count(&self) -> u64 {
        self.emu
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops it (also done on drop).
    pub fn stop(self) {
        drop(self);
    }

    /// Takes it off the network — connections refused, open ones closed — keeping the
    /// tenant's state, to test outages. [`Emulator::resume`] brings it back on the same
    /// address.
    pub fn pause(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    /// Listens again on the same address after [`Emulator::pause`].
    ///
    /// # Errors
    /// When the address cannot be bound again.
    pub async fn resume(&self) -> Result<(), EmulatorError> {
        let mut last = None;
        // The aborted listener may take a moment to release the port.
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.info.listen).await {
                Ok(listener) => {
                    let task = spawn_accept_loop(
                        listener,
                        self.router.clone(),
                        self.acceptor.clone(),
                        self.hosts.clone(),
                    );
                    *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(EmulatorError(format!(
            "cannot listen on {} again: {}",
            self.info.listen,
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}
