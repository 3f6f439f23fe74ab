//! The Microsoft Graph backend: online accounts, licences, organization, admin roles,
//! delta and domains — throttle-aware, batched, and exact (a create whose answer was lost
//! is found by its anchor before it is ever sent again).
//!
//! ```no_run
//! # async fn demo() -> o365_essentials_core::Result<()> {
//! use o365_essentials_core::graph::{GraphConfig, GraphTenant};
//! use o365_essentials_core::ports::Tenant;
//! let tenant = GraphTenant::new(GraphConfig::with_secret("contoso.onmicrosoft.com", "client-id", "secret"))?;
//! let org = tenant.organization().await?;
//! println!("{} has {} verified domains", org.display_name, org.verified_domains.len());
//! # Ok(()) }
//! ```

// Transport, store and demo code keep wall-clock time of their own (token expiry,
// TSIG, timestamps); only the engine must read it from its Clock.
#![allow(clippy::disallowed_methods)]

mod config;
pub(crate) mod map;
mod roles;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

pub use crate::transport::RequestCounts;
pub(crate) use config::MAX_PAGES_LIMIT;
pub use config::{Credential, GraphConfig};

use crate::error::{Error, ErrorCode, Result};
use crate::model::{
    AccountUpdate, AdminRoleHolder, Anchor, DnsRecord, Domain, DomainService, LicenceAssignment,
    NewOnlineAccount, OnlineAccount, OnlineAccountId, OnlineChange, OnlineChanges, Organization,
    RecordPurpose, Sku,
};
use crate::ports::{Domains, Tenant};
use crate::validate;
// The transport (token cache, pacer, request loop) is shared with Exchange and
// SharePoint; it lives beside this module, in `crate::transport`.
pub(crate) use crate::transport::auth;
use crate::transport::pacer::Pacer;
pub(crate) use crate::transport::{
    Answer, Counters, LoadedCredential, MAX_RETRY_AFTER, Pages, Retry, Service, TokenCache,
    backoff, foreign_link, retry_after_value, same_origin,
};

const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Characters escaped in query values and path segments.
const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ENCODE).to_string()
}

/// An OData string literal: quotes doubled.
fn odata_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

struct Inner {
    cfg: GraphConfig,
    http: reqwest::Client,
    cred: LoadedCredential,
    tokens: TokenCache,
    token_url: String,
    pacer: Pacer,
    counters: Counters,
}

#[async_trait]
impl Service for Inner {
    async fn slot(&self, write: bool) -> Option<Box<dyn Send + '_>> {
        self.pacer
            .acquire(write)
            .await
            .map(|p| Box::new(p) as Box<dyn Send + '_>)
    }

    fn answered(&self, status: u16, headers: &reqwest::header::HeaderMap, write: bool) {
        if (200..300).contains(&status) {
            let limit_pct = headers
                .get("x-ms-throttle-limit-percentage")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            self.pacer.succeeded(write, limit_pct);
        }
    }

    fn throttled(&self, after: Duration, write: bool) {
        self.pacer.throttled(after, write);
    }

    fn error(&self, a: &Answer, what: &str) -> Error {
        map::graph_error(a.status, &a.body, a.request_id.as_deref(), what)
    }
}

/// The Graph backend; cheap to clone, share one per tenant.
#[derive(Clone)]
pub struct GraphTenant {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphTenant")
            .field("tenant_id", &self.inner.cfg.tenant_id)
            .field("client_id", &self.inner.cfg.client_id)
            .field("graph_url", &self.inner.cfg.graph_url)
            .field("credential", &self.inner.cfg.credential)
            .finish()
    }
}

/// What a request returned.
pub(crate) struct Reply {
    pub(crate) body: Value,
}

/// One item of a `$batch`.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// Relative to the version root: `/users/{id}`.
    pub url: String,
    /// JSON body, if any.
    pub body: Option<Value>,
}

/// The answer to one batch item.
#[derive(Debug, Clone)]
pub struct BatchAnswer {
    /// HTTP status.
    pub status: u16,
    /// The JSON body (`Null` when none).
    pub body: Value,
}

impl GraphTenant {
    /// Checks the configuration, loads the credential and builds the HTTP client. Makes
    /// no request.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] naming the setting to fix (empty ids, unreadable
    /// certificate, bad CA bundle or proxy, page size out of range).
    pub fn new(cfg: GraphConfig) -> Result<GraphTenant> {
        let bad = |m: String| Error::new(ErrorCode::InvalidConfig, m);
        if cfg.tenant_id.trim().is_empty() {
            return Err(bad("tenant_id is empty".into()));
        }
        if cfg.client_id.trim().is_empty() {
            return Err(bad("client_id is empty".into()));
        }
        if !(1..=999).contains(&cfg.page_size) {
            return Err(bad(format!("page_size {} is outside 1–999", cfg.page_size)));
        }
        let mut urls = vec![
            ("login_url", &cfg.login_url),
            ("graph_url", &cfg.graph_url),
            ("exchange_url", &cfg.exchange_url),
        ];
        if let Some(sp) = &cfg.sharepoint_url {
            urls.push(("sharepoint_url", sp));
        }
        for (name, url) in urls {
            reqwest::Url::parse(url)
                .map_err(|e| bad(format!("{name} `{url}` is not a URL: {e}")))?;
        }
        crate::validate::seconds(
            "connect_timeout_secs",
            cfg.connect_timeout_secs,
            crate::validate::MAX_TIMEOUT_SECS,
        )
        .map_err(|e| bad(e.message().to_string()))?;
        crate::validate::seconds(
            "request_timeout_secs",
            cfg.request_timeout_secs,
            crate::validate::MAX_TIMEOUT_SECS,
        )
        .map_err(|e| bad(e.message().to_string()))?;
        if !(1..=config::MAX_PAGES_LIMIT).contains(&cfg.max_pages) {
            return Err(bad(format!(
                "max_pages {} is outside 1–{}",
                cfg.max_pages,
                config::MAX_PAGES_LIMIT
            )));
        }
        let cred = LoadedCredential::load(&cfg.credential)?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs_f64(cfg.connect_timeout_secs))
            .timeout(Duration::from_secs_f64(cfg.request_timeout_secs))
            .pool_max_idle_per_host(cfg.max_concurrency.max(1))
            .user_agent(concat!("o365-essentials/", env!("CARGO_PKG_VERSION")));
        let ca_pem = match (&cfg.ca_bundle_pem, &cfg.ca_bundle_file) {
            (Some(p), _) => Some(p.as_bytes().to_vec()),
            (None, Some(f)) => Some(
                std::fs::read(f)
                    .map_err(|e| bad(format!("cannot read ca_bundle_file {}: {e}", f.display())))?,
            ),
            (None, None) => None,
        };
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("the CA bundle is not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(bad("the CA bundle holds no certificate".into()));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if let Some(p) = &cfg.proxy {
            builder = builder.proxy(
                reqwest::Proxy::all(p)
                    .map_err(|e| bad(format!("proxy `{p}` is not usable: {e}")))?,
            );
        }
        let http = builder
            .build()
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        let token_url = format!(
            "{}/{}/oauth2/v2.0/token",
            cfg.login_url.trim_end_matches('/'),
            cfg.tenant_id
        );
        let pacer = Pacer::new(cfg.max_concurrency);
        Ok(GraphTenant {
            inner: Arc::new(Inner {
                http,
                cred,
                tokens: TokenCache::new(GRAPH_SCOPE),
                token_url,
                pacer,
                counters: Counters::default(),
                cfg,
            }),
        })
    }

    /// Requests sent so far (each retry counts), throttled answers received, retries made.
    pub fn request_counts(&self) -> RequestCounts {
        self.inner.counters.get()
    }

    /// The configuration it was built from.
    pub(crate) fn config(&self) -> &GraphConfig {
        &self.inner.cfg
    }

    /// The shared HTTP client.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Whether the credential is a client secret (SharePoint REST refuses those).
    pub(crate) fn uses_secret(&self) -> bool {
        matches!(self.inner.cred, LoadedCredential::Secret(_))
    }

    /// A token from another resource's cache, with this tenant's credential.
    pub(crate) async fn token_from(&self, cache: &TokenCache) -> Result<auth::Token> {
        let i = &self.inner;
        cache
            .get(&i.http, &i.token_url, &i.cfg.client_id, &i.cred)
            .await
    }

    /// The write rate the pacer has settled on (writes per second).
    pub fn write_rate(&self) -> f64 {
        self.inner.pacer.write_rate()
    }

    /// The URL of a request: a path under the configured Graph base, or a link from an
    /// answer (`@odata.nextLink`, a stored `@odata.deltaLink`), which must stay on the
    /// configured Graph origin since the token goes with it.
    fn url(&self, path: &str, what: &str) -> Result<String> {
        if path.contains("://") {
            if !same_origin(path, &self.inner.cfg.graph_url) {
                return Err(foreign_link(what, "Microsoft Graph", path));
            }
            Ok(path.to_string())
        } else {
            Ok(format!(
                "{}{path}",
                self.inner.cfg.graph_url.trim_end_matches('/')
            ))
        }
    }

    /// A page counter for one Graph listing.
    pub(crate) fn pages(&self) -> Pages {
        Pages::new(
            &self.inner.cfg.graph_url,
            "Microsoft Graph",
            self.inner.cfg.max_pages,
        )
    }

    /// Gets a token (checks the credential) without doing anything else.
    ///
    /// # Errors
    /// [`ErrorCode::Auth`] with the identity platform's code; transport errors.
    pub async fn check_credentials(&self) -> Result<()> {
        let i = &self.inner;
        i.tokens
            .get(&i.http, &i.token_url, &i.cfg.client_id, &i.cred)
            .await
            .map(|_| ())
    }

    /// Sends one Graph request (see [`GraphTenant::send`]).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
        what: &str,
    ) -> Result<Reply> {
        let i = &*self.inner;
        let write = method != Method::GET;
        let url = self.url(path, what)?;
        let build = |http: &reqwest::Client| {
            let req = http.request(method.clone(), &url);
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        };
        let answer = self
            .send(i, &i.tokens, &i.counters, &build, write, retry, what)
            .await?;
        Ok(Reply { body: answer.body })
    }

    pub(crate) async fn get(&self, path: &str, what: &str) -> Result<Value> {
        Ok(self
            .call(Method::GET, path, None, Retry::Idempotent, what)
            .await?
            .body)
    }

    fn user_path(&self, id_or_upn: &str) -> String {
        format!("/users/{}", enc(id_or_upn))
    }

    /// Finds an account by anchor, or else by UPN — how a create whose answer was lost is
    /// recognised.
    async fn find_created(&self, a: &NewOnlineAccount) -> Result<Option<OnlineAccount>> {
        if let Some(anchor) = &a.immutable_id {
            return self.find_by_anchor(anchor).await;
        }
        match self.account(&a.user_principal_name).await {
            Ok(acc) => Ok(Some(acc)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends up to 20 requests per `$batch`, retrying only the items that were throttled
    /// or failed transiently and are safe to resend (reads, PATCH); answers in input order.
    ///
    /// # Errors
    /// Only when a whole batch request fails after its retries (auth, transport).
    pub async fn batch(&self, items: &[BatchItem]) -> Result<Vec<BatchAnswer>> {
        let mut answers: Vec<Option<BatchAnswer>> = vec![None; items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let max = self.inner.cfg.max_attempts.max(1);
        for attempt in 0..max {
            if pending.is_empty() {
                break;
            }
            let mut still = Vec::new();
            for chunk in pending.chunks(20) {
                let requests: Vec<Value> = chunk
                    .iter()
                    .map(|&n| {
                        let it = &items[n];
                        let mut r =
                            json!({"id": n.to_string(), "method": it.method, "url": it.url});
                        if let Some(b) = &it.body {
                            r["body"] = b.clone();
                            r["headers"] = json!({"Content-Type": "application/json"});
                        }
                        r
                    })
                    .collect();
                let reply = self
                    .call(
                        Method::POST,
                        "/$batch",
                        Some(&json!({"requests": requests})),
                        Retry::Idempotent,
                        "sending a batch",
                    )
                    .await?;
                let mut longest_wait = Duration::ZERO;
                let mut throttled_items = 0u32;
                for r in reply
                    .body
                    .get("responses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(n) = r
                        .get("id")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    if n >= items.len() {
                        continue;
                    }
                    let status = r.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
                    let body = r.get("body").cloned().unwrap_or(Value::Null);
                    let resend_ok = items[n].method.eq_ignore_ascii_case("GET")
                        || items[n].method.eq_ignore_ascii_case("PATCH");
                    let retry_item =
                        status == 429 || (matches!(status, 500 | 502 | 503 | 504) && resend_ok);
                    if retry_item && attempt + 1 < max {
                        if status == 429 {
                            self.inner
                                .counters
                                .throttled
                                .fetch_add(1, Ordering::Relaxed);
                            let after = r
                                .pointer("/headers/Retry-After")
                                .and_then(|v| match v {
                                    Value::String(s) => retry_after_value(s),
                                    Value::Number(n) => retry_after_value(&n.to_string()),
                                    _ => None,
                                })
                                .unwrap_or_else(|| backoff(attempt));
                            longest_wait = longest_wait.max(after);
                            throttled_items += 1;
                            self.inner.pacer.throttled(after, !resend_ok);
                        }
                        still.push(n);
                    } else {
                        answers[n] = Some(BatchAnswer { status, body });
                    }
                }
                for &n in chunk {
                    if answers[n].is_none() && !still.contains(&n) {
                        still.push(n); // Missing from the answer: ask again.
                    }
                }
                if !longest_wait.is_zero() {
                    // Retry-After is the wait for one more request; these need that many.
                    tokio::time::sleep(
                        longest_wait
                            .saturating_mul(throttled_items.max(1))
                            .min(MAX_RETRY_AFTER),
                    )
                    .await;
                }
            }
            pending = still;
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or(BatchAnswer { status: 503, body: json!({"error": {"code": "ServiceUnavailable", "message": "no answer after retries"}}) }))
            .collect())
    }

    /// Reads many accounts by id with `$batch` (20 per request).
    ///
    /// # Errors
    /// As [`GraphTenant::batch`]; per-account failures are in the results.
    pub async fn accounts_by_id(
        &self,
        ids: &[OnlineAccountId],
    ) -> Result<Vec<Result<OnlineAccount>>> {
        let items: Vec<BatchItem> = ids
            .iter()
            .map(|id| BatchItem {
                method: "GET".into(),
                url: format!("/users/{}?$select={}", enc(&id.0), map::USER_SELECT),
                body: None,
            })
            .collect();
        let answers = self.batch(&items).await?;
        Ok(answers
            .iter()
            .zip(ids)
            .map(|(a, id)| {
                if a.status == 200 {
                    map::account(&a.body)
                } else {
                    Err(map::graph_error(
                        a.status,
                        &a.body,
                        None,
                        &format!("reading online account {id}"),
                    ))
                }
            })
            .collect())
    }

    async fn delta_round(&self, start: &str) -> Result<OnlineChanges> {
        const WHAT: &str = "reading account changes";
        let mut url = start.to_string();
        let mut changes = Vec::new();
        let mut pages = self.pages();
        loop {
            let page = self.get(&url, WHAT).await?;
            for v in page
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(removed) = v.get("@removed") {
                    changes.push(OnlineChange::Removed {
                        id: OnlineAccountId(
                            v.get("id")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        ),
                        reason: removed
                            .get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("deleted")
                            .to_string(),
                    });
                } else {
                    changes.push(OnlineChange::Changed {
                        account: Box::new(map::account(v)?),
                    });
                }
            }
            if let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) {
                url = pages.follow(next, WHAT)?;
            } else if let Some(delta) = page.get("@odata.deltaLink").and_then(Value::as_str) {
                // Kept for the next round: it must lead back to Graph, like the pages.
                if !same_origin(delta, &self.inner.cfg.graph_url) {
                    return Err(foreign_link(WHAT, "Microsoft Graph", delta));
                }
                return Ok(OnlineChanges {
                    changes,
                    delta_link: delta.to_string(),
                    full_resync: false,
                });
            } else {
                return Err(Error::new(
                    ErrorCode::UnexpectedResponse,
                    "a delta page had neither a nextLink nor a deltaLink",
                ));
            }
        }
    }
}

fn check_new_account(a: &NewOnlineAccount, password: &SecretString) -> Result<()> {
    validate::upn(&a.user_principal_name)?;
    validate::mail_nickname(&a.mail_nickname)?;
    validate::display_name(&a.display_name)?;
    if let Some(l) = &a.usage_location {
        validate::usage_location(l)?;
    }
    if let Some(anchor) = &a.immutable_id
        && (anchor.0.is_empty() || anchor.0.contains('$') || anchor.0.contains('_'))
    {
        return Err(Error::invalid_input(format!(
            "the anchor `{anchor}` may not be empty or contain $ or _"
        )));
    }
    validate::password(
        password.expose_secret(),
        None,
        validate::PasswordContext::default(),
    )
}

#[async_trait]
impl Tenant for GraphTenant {
    fn accounts(&self) -> BoxStream<'_, Result<OnlineAccount>> {
        let first = format!(
            "/users?$top={}&$select={}",
            self.inner.cfg.page_size,
            map::USER_SELECT
        );
        const WHAT: &str = "listing online accounts";
        futures::stream::try_unfold(
            (Some(first), self.pages()),
            move |(next, mut pages)| async move {
                let Some(url) = next else { return Ok(None) };
                let page = self.get(&url, WHAT).await?;
                let mut items = Vec::new();
                for v in page
                    .get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    items.push(map::account(v));
                }
                let next = match page.get("@odata.nextLink").and_then(Value::as_str) {
                    Some(link) => match pages.follow(link, WHAT) {
                        Ok(l) => Some(l),
                        Err(e) => {
                            // The accounts of this page, then the refusal.
                            items.push(Err(e));
                            None
                        }
                    },
                    None => None,
                };
                Ok::<_, Error>(Some((futures::stream::iter(items), (next, pages))))
            },
        )
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn account(&self, id_or_upn: &str) -> Result<OnlineAccount> {
        if id_or_upn.trim().is_empty() {
            return Err(Error::invalid_input(
                "an online account id or user name is needed",
            ));
        }
        let path = format!("{}?$select={}", self.user_path(id_or_upn), map::USER_SELECT);
        let v = self
            .get(&path, &format!("reading online account {id_or_upn}"))
            .await?;
        map::account(&v)
    }

    async fn find_by_anchor(&self, anchor: &Anchor) -> Result<Option<OnlineAccount>> {
        let filter = format!("onPremisesImmutableId eq {}", odata_str(anchor.as_str()));
        let path = format!(
            "/users?$filter={}&$select={}",
            enc(&filter),
            map::USER_SELECT
        );
        let v = self
            .get(&path, &format!("looking up the anchor {anchor}"))
            .await?;
        v.get("value")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map(map::account)
            .transpose()
    }

    async fn create_account(
        &self,
        account: &NewOnlineAccount,
        password: &SecretString,
    ) -> Result<OnlineAccount> {
        check_new_account(account, password)?;
        let what = format!(
            "creating the online account {}",
            account.user_principal_name
        );
        let body = map::new_account_body(account, password.expose_secret());
        let max = self.inner.cfg.max_attempts.max(1);
        let mut last = None;
        for attempt in 0..max {
            match self
                .call(
                    Method::POST,
                    "/users",
                    Some(&body),
                    Retry::CallerChecks,
                    &what,
                )
                .await
            {
                // Graph answers a create with the default property set only.
                Ok(r) => return map::account(&r.body).map(|a| map::complete_created(a, account)),
                Err(e) if e.is_transient() => {
                    // The create may have happened: look before sending it again.
                    if let Some(found) = self.find_created(account).await? {
                        return Ok(found);
                    }
                    last = Some(e);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) if e.code() == ErrorCode::AlreadyExists => {
                    // Ours already (an earlier attempt whose answer was lost)? Same anchor = same account.
                    if let Some(anchor) = &account.immutable_id
                        && let Some(found) = self.find_by_anchor(anchor).await?
                        && found
                            .user_principal_name
                            .eq_ignore_ascii_case(&account.user_principal_name)
                    {
                        return Ok(found);
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorCode::ServiceUnavailable, what)))
    }

    async fn update_account(&self, id: &OnlineAccountId, update: &AccountUpdate) -> Result<()> {
        if update.is_empty() {
            return Ok(());
        }
        if let Some(u) = &update.user_principal_name {
            validate::upn(u)?;
        }
        if let Some(n) = &update.mail_nickname {
            validate::mail_nickname(n)?;
        }
        if let Some(d) = &update.display_name {
            validate::display_name(d)?;
        }
        if let Some(l) = &update.usage_location {
            validate::usage_location(l)?;
        }
        let path = self.user_path(&id.0);
        self.call(
            Method::PATCH,
            &path,
            Some(&map::update_body(update)),
            Retry::Idempotent,
            &format!("updating online account {id}"),
        )
        .await?;
        Ok(())
    }

    async fn set_password(&self, id: &OnlineAccountId, password: &SecretString) -> Result<()> {
        validate::password(
            password.expose_secret(),
            None,
            validate::PasswordContext::default(),
        )?;
        let body = json!({"passwordProfile": {"password": password.expose_secret(), "forceChangePasswordNextSignIn": false}});
        let path = self.user_path(&id.0);
        self.call(Method::PATCH, &path, Some(&body), Retry::Idempotent, &format!("setting the password of online account {id}")).await.map_err(|e| {
            if e.code() == ErrorCode::PermissionDenied {
                let hinted = Error::new(
                    ErrorCode::PermissionDenied,
                    format!("{}; resetting passwords needs the User Administrator role (Privileged Authentication Administrator for administrators)", e.message()),
                );
                match e.service() {
                    Some(s) => hinted.with_service(s.clone()),
                    None => hinted,
                }
            } else {
                e
            }
        })?;
        Ok(())
    }

    async fn set_enabled(&self, id: &OnlineAccountId, enabled: bool) -> Result<()> {
        let path = self.user_path(&id.0);
        let what = if enabled {
            format!("enabling online account {id}")
        } else {
            format!("disabling online account {id}")
        };
        self.call(
            Method::PATCH,
            &path,
            Some(&json!({"accountEnabled": enabled})),
            Retry::Idempotent,
            &what,
        )
        .await?;
        if !enabled {
            self.call(
                Method::POST,
                &format!("{path}/revokeSignInSessions"),
                Some(&json!({})),
                Retry::Idempotent,
                &format!("revoking the sessions of {id}"),
            )
            .await?;
        }
        Ok(())
    }

    async fn delete_account(&self, id: &OnlineAccountId) -> Result<()> {
        let path = self.user_path(&id.0);
        let what = format!("deleting online account {id}");
        let mut uncertain = false;
        for attempt in 0..self.inner.cfg.max_attempts.max(1) {
            match self
                .call(Method::DELETE, &path, None, Retry::CallerChecks, &what)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == ErrorCode::NotFound && uncertain => return Ok(()),
                Err(e) if e.is_transient() => {
                    uncertain = true;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::ServiceUnavailable, what))
    }

    async fn restore_account(&self, id: &OnlineAccountId) -> Result<OnlineAccount> {
        let what = format!("restoring online account {id}");
        for attempt in 0..self.inner.cfg.max_attempts.max(1) {
            match self
                .call(
                    Method::POST,
                    &format!("/directory/deletedItems/{}/restore", enc(&id.0)),
                    Some(&json!({})),
                    Retry::CallerChecks,
                    &what,
                )
                .await
            {
                Ok(r) => return map::account(&r.body),
                Err(e) if e.is_transient() => {
                    if let Ok(acc) = self.account(&id.0).await {
                        return Ok(acc);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::ServiceUnavailable, what))
    }

    async fn skus(&self) -> Result<Vec<Sku>> {
        let v = self
            .get("/subscribedSkus", "reading the subscribed licences")
            .await?;
        v.get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(map::sku)
            .collect()
    }

    async fn assign_licences(
        &self,
        id: &OnlineAccountId,
        add: &[LicenceAssignment],
        remove: &[Uuid],
    ) -> Result<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let body = json!({
            "addLicenses": add.iter().map(|l| json!({"skuId": l.sku_id, "disabledPlans": l.disabled_plans})).collect::<Vec<_>>(),
            "removeLicenses": remove,
        });
        let what = format!("changing the licences of online account {id}");
        let path = format!("{}/assignLicense", self.user_path(&id.0));
        for attempt in 0..self.inner.cfg.max_attempts.max(1) {
            match self
                .call(Method::POST, &path, Some(&body), Retry::CallerChecks, &what)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() => {
                    // Done already? The account shows the licences we asked for.
                    if let Ok(acc) = self.account(&id.0).await {
                        let added = add.iter().all(|l| acc.assigned_skus.contains(&l.sku_id));
                        let removed = remove.iter().all(|r| !acc.assigned_skus.contains(r));
                        if added && removed {
                            return Ok(());
                        }
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::ServiceUnavailable, what))
    }

    async fn organization(&self) -> Result<Organization> {
        let v = self
            .get("/organization", "reading the organization")
            .await?;
        let org = v
            .get("value")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UnexpectedResponse,
                    "Graph returned no organization",
                )
            })?;
        map::organization(org)
    }

    async fn admin_role_holders(&self) -> Result<Vec<AdminRoleHolder>> {
        self.role_holders().await
    }

    async fn changes(&self, delta_link: Option<&str>) -> Result<OnlineChanges> {
        let fresh = format!("/users/delta?$select={}", map::USER_SELECT);
        match delta_link {
            None => {
                let mut r = self.delta_round(&fresh).await?;
                r.full_resync = true;
                Ok(r)
            }
            Some(link) => {
                let base = &self.inner.cfg.graph_url;
                let own = same_origin(link, base) && link.starts_with(base.trim_end_matches('/'));
                if !own {
                    return Err(Error::invalid_input(
                        "the delta link does not belong to this tenant's Graph URL",
                    ));
                }
                match self.delta_round(link).await {
                    Err(e) if e.code() == ErrorCode::PreconditionFailed => {
                        let mut r = self.delta_round(&fresh).await?;
                        r.full_resync = true;
                        Ok(r)
                    }
                    other => other,
                }
            }
        }
    }

    async fn changes_from_now(&self) -> Result<String> {
        let r = self
            .delta_round(&format!(
                "/users/delta?$select={}&$deltatoken=latest",
                map::USER_SELECT
            ))
            .await?;
        Ok(r.delta_link)
    }
}

fn check_domain(name: &str) -> Result<()> {
    validate::domain_name(name)
}

#[async_trait]
impl Domains for GraphTenant {
    async fn add_domain(&self, name: &str) -> Result<Domain> {
        check_domain(name)?;
        let what = format!("adding the domain {name}");
        for attempt in 0..self.inner.cfg.max_attempts.max(1) {
            match self
                .call(
                    Method::POST,
                    "/domains",
                    Some(&json!({"id": name})),
                    Retry::CallerChecks,
                    &what,
                )
                .await
            {
                Ok(r) => return map::domain(&r.body),
                Err(e) if e.is_transient() => {
                    if let Ok(d) = self.domain(name).await {
                        return Ok(d);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::ServiceUnavailable, what))
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        let v = self.get("/domains", "listing the domains").await?;
        v.get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(map::domain)
            .collect()
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        check_domain(name)?;
        map::domain(
            &self
                .get(
                    &format!("/domains/{}", enc(name)),
                    &format!("reading the domain {name}"),
                )
                .await?,
        )
    }

    async fn verification_records(&self, name: &str) -> Result<Vec<DnsRecord>> {
        check_domain(name)?;
        let v = self
            .get(
                &format!("/domains/{}/verificationDnsRecords", enc(name)),
                &format!("reading the verification records of {name}"),
            )
            .await?;
        let records: Vec<DnsRecord> = v
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| map::dns_record(r, RecordPurpose::Verification))
            .collect();
        crate::dns::validate_records(name, &records)?;
        Ok(records)
    }

    async fn verify(&self, name: &str) -> Result<Domain> {
        check_domain(name)?;
        let r = self
            .call(
                Method::POST,
                &format!("/domains/{}/verify", enc(name)),
                Some(&json!({})),
                Retry::Idempotent,
                &format!("verifying the domain {name}"),
            )
            .await?;
        map::domain(&r.body)
    }

    async fn service_records(&self, name: &str) -> Result<Vec<DnsRecord>> {
        check_domain(name)?;
        let v = self
            .get(
                &format!("/domains/{}/serviceConfigurationRecords", enc(name)),
                &format!("reading the service records of {name}"),
            )
            .await?;
        let records: Vec<DnsRecord> = v
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| map::dns_record(r, RecordPurpose::Service))
            .collect();
        crate::dns::validate_records(name, &records)?;
        Ok(records)
    }

    async fn set_supported_services(&self, name: &str, services: &[DomainService]) -> Result<()> {
        check_domain(name)?;
        let list: Vec<&str> = services.iter().map(|s| s.as_str()).collect();
        self.call(
            Method::PATCH,
            &format!("/domains/{}", enc(name)),
            Some(&json!({"supportedServices": list})),
            Retry::Idempotent,
            &format!("setting the services of {name}"),
        )
        .await?;
        Ok(())
    }

    async fn remove_domain(&self, name: &str) -> Result<()> {
        check_domain(name)?;
        let what = format!("removing the domain {name}");
        let mut uncertain = false;
        for attempt in 0..self.inner.cfg.max_attempts.max(1) {
            match self
                .call(
                    Method::DELETE,
                    &format!("/domains/{}", enc(name)),
                    None,
                    Retry::CallerChecks,
                    &what,
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == ErrorCode::NotFound && uncertain => return Ok(()),
                Err(e) if e.code() == ErrorCode::InvalidInput => {
                    return Err(Error::new(ErrorCode::Conflict, e.message().to_string())
                        .with_service(e.service().cloned().unwrap_or_default()));
                }
                Err(e) if e.is_transient() => {
                    uncertain = true;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::ServiceUnavailable, what))
    }
}

#[cfg(test)]
mod hardening_tests {
    use super::*;

    #[test]
    fn every_retry_after_is_bounded_in_both_forms() {
        assert_eq!(retry_after_value("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after_value(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(retry_after_value("-1"), Some(Duration::ZERO));
        assert_eq!(retry_after_value("1000000000"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after_value("1e300"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after_value("NaN"), None);
        assert_eq!(retry_after_value("inf"), None);
        assert_eq!(retry_after_value("soon"), None);
        // HTTP-date: the past is no wait, the far future is the cap.
        assert_eq!(
            retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after_value("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let d = retry_after_value(&soon.format(&fmt).unwrap()).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn pages_follow_only_the_configured_origin_and_stop_at_the_cap() {
        let mut p = Pages::new("https://graph.microsoft.com/v1.0", "Microsoft Graph", 3);
        assert!(
            p.follow("https://graph.microsoft.com/v1.0/users?$skiptoken=a", "x")
                .is_ok()
        );
        assert!(
            p.follow("https://GRAPH.microsoft.com:443/v1.0/users?b", "x")
                .is_ok()
        );
        let e = p
            .follow("https://graph.microsoft.com/v1.0/users?c", "x")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::UntrustedResponse);
        let mut p = Pages::new("https://graph.microsoft.com/v1.0", "Microsoft Graph", 100);
        for link in [
            "http://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com:8443/v1.0/users",
            "https://graph.microsoft.com.evil.example/v1.0/users",
            "https://evil.example/?https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com@evil.example/v1.0/users",
            "/v1.0/users",
            "not a url \u{1b}]0;title\u{7}",
        ] {
            let e = p.follow(link, "x").unwrap_err();
            assert_eq!(e.code(), ErrorCode::UntrustedResponse, "{link}");
            assert!(!e.message().contains('\u{1b}'), "{e}");
        }
    }
}
