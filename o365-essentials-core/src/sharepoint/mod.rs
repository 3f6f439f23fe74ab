//! SharePoint Online: the root team site, its document libraries (through Graph) and its
//! owners / members / visitors groups (through SharePoint REST). Implements
//! [`SharePoint`].
//!
//! ```no_run
//! # async fn demo() -> o365_essentials_core::Result<()> {
//! use o365_essentials_core::graph::GraphConfig;
//! use o365_essentials_core::model::{NewLibrary, SiteRole};
//! use o365_essentials_core::ports::SharePoint;
//! use o365_essentials_core::sharepoint::SharePointOnline;
//!
//! let spo = SharePointOnline::new(GraphConfig::with_secret("contoso.onmicrosoft.com", "client-id", "secret"))?;
//! println!("team site: {}", spo.team_site().await?.url);
//! spo.create_library(&NewLibrary { name: "Contracts".into(), ..NewLibrary::default() }).await?;
//! # Ok(()) }
//! ```
//!
//! SharePoint REST takes app-only tokens only when they were obtained with a certificate:
//! with a client secret the service answers 401, reported as
//! [`ErrorCode::CertificateRequired`]. Operations that need REST (site groups, grant,
//! revoke, turning versioning off) check the credential before any request.

pub(crate) mod map;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};
use crate::graph::{GraphConfig, GraphTenant, enc};
use crate::model::{Library, NewLibrary, RevokeOutcome, SiteGroup, SiteRole, TeamSite};
use crate::ports::SharePoint;
use crate::transport::{Answer, Counters, Hold, Retry, Service, TokenCache, backoff};

/// How long [`SharePoint::create_library`] waits for the new library's drive by default.
pub const DRIVE_WAIT: Duration = Duration::from_secs(60);

/// Attempts of a write whose outcome is checked before it is repeated.
const WRITE_ATTEMPTS: u32 = 6;

/// The site's REST base, the token cache of its resource and its pacing.
struct Rest {
    base: String,
    tokens: TokenCache,
    hold: Hold,
    counters: Counters,
}

#[async_trait]
impl Service for Rest {
    async fn slot(&self, _write: bool) -> Option<Box<dyn Send + '_>> {
        self.hold.wait().await;
        None
    }

    fn answered(&self, _status: u16, headers: &reqwest::header::HeaderMap, _write: bool) {
        self.hold
            .hold_if_spent(headers, "ratelimit-remaining", "ratelimit-reset");
    }

    fn throttled(&self, after: Duration, _write: bool) {
        self.hold.extend(after);
    }

    fn error(&self, a: &Answer, what: &str) -> Error {
        let diagnostics = a
            .headers
            .get("x-ms-diagnostics")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        map::rest_error(
            a.status,
            &a.body,
            diagnostics,
            a.request_id.as_deref(),
            what,
        )
    }
}

struct Inner {
    graph: GraphTenant,
    /// Milliseconds [`SharePoint::create_library`] waits for the drive.
    drive_wait_ms: std::sync::atomic::AtomicU64,
    site: tokio::sync::OnceCell<TeamSite>,
    rest: tokio::sync::OnceCell<Rest>,
}

/// The SharePoint Online backend; cheap to clone.
#[derive(Clone)]
pub struct SharePointOnline {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharePointOnline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharePointOnline")
            .field("graph", &self.inner.graph)
            .field("site", &self.inner.site.get().map(|s| s.url.clone()))
            .finish()
    }
}

fn role_path(role: SiteRole) -> &'static str {
    match role {
        SiteRole::Owner => "associatedownergroup",
        SiteRole::Member => "associatedmembergroup",
        SiteRole::Visitor => "associatedvisitorgroup",
    }
}

fn role_name(role: SiteRole) -> &'static str {
    match role {
        SiteRole::Owner => "owners",
        SiteRole::Member => "members",
        SiteRole::Visitor => "visitors",
    }
}

fn login_name(upn: &str) -> String {
    format!("i:0#.f|membership|{upn}")
}

fn is_unknown_outcome(e: &Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::ServiceUnavailable | ErrorCode::Transport | ErrorCode::Timeout
    )
}

/// Checks a library name the way SharePoint does, before any request.
///
/// # Errors
/// [`ErrorCode::InvalidInput`] naming the rule broken.
pub fn check_library_name(name: &str) -> Result<()> {
    let name_t = name.trim();
    if name_t.is_empty() {
        return Err(Error::invalid_input("the library name is empty"));
    }
    if name_t.chars().count() > 255 {
        return Err(Error::invalid_input(format!(
            "the library name `{name_t}` is longer than 255 characters"
        )));
    }
    if let Some(c) = name_t
        .chars()
        .find(|c| "\"*:<>?/\\|#%".contains(*c) || c.is_control())
    {
        return Err(Error::invalid_input(format!(
            "the library name may not contain `{}` (nor any of \" * : < > ? / \\ | # %)",
            c.escape_default()
        )));
    }
    Ok(())
}

impl SharePointOnline {
    /// Builds the backend from the tenant's configuration. Makes no request.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] as [`GraphTenant::new`].
    pub fn new(cfg: GraphConfig) -> Result<SharePointOnline> {
        Ok(SharePointOnline::with_graph(GraphTenant::new(cfg)?))
    }

    /// Shares a Graph backend's HTTP client, credential and throttling.
    pub fn with_graph(graph: GraphTenant) -> SharePointOnline {
        SharePointOnline {
            inner: Arc::new(Inner {
                graph,
                drive_wait_ms: std::sync::atomic::AtomicU64::new(DRIVE_WAIT.as_millis() as u64),
                site: tokio::sync::OnceCell::new(),
                rest: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Sets how long [`SharePoint::create_library`] waits for a new library's drive
    /// (default [`DRIVE_WAIT`]); after that the library is returned without a drive id.
    pub fn set_drive_wait(&self, wait: Duration) {
        self.inner.drive_wait_ms.store(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// SharePoint REST calls sent (each retry counts), throttled answers, and waits made
    /// for the app's resource-unit window. Graph calls are counted by the Graph backend.
    pub fn request_counts(&self) -> crate::graph::RequestCounts {
        match self.inner.rest.get() {
            Some(r) => crate::graph::RequestCounts {
                budget_waits: r.hold.waits(),
                ..r.counters.get()
            },
            None => crate::graph::RequestCounts::default(),
        }
    }

    async fn site(&self) -> Result<&TeamSite> {
        self.inner
            .site
            .get_or_try_init(|| async {
                let v = self
                    .inner
                    .graph
                    .get(
                        "/sites/root?$select=id,webUrl,displayName,siteCollection",
                        "finding the root team site",
                    )
                    .await?;
                map::site(&v)
            })
            .await
    }

    fn require_certificate(&self, what: &str) -> Result<()> {
        if self.inner.graph.uses_secret() {
            return Err(Error::new(
                ErrorCode::CertificateRequired,
                format!(
                    "{what}: SharePoint accepts app-only calls only from a certificate credential; add a certificate to the app registration and configure it instead of the client secret"
                ),
            ));
        }
        Ok(())
    }

    async fn rest(&self) -> Result<&Rest> {
        let site = self.site().await?;
        self.inner
            .rest
            .get_or_try_init(|| async {
                let origin = map::origin(&site.url).ok_or_else(|| {
                    Error::new(
                        ErrorCode::UnexpectedResponse,
                        format!("the team site's URL `{}` has no host", site.url),
                    )
                })?;
                let base = match &self.inner.graph.config().sharepoint_url {
                    Some(u) => u.trim_end_matches('/').to_string(),
                    None => site.url.trim_end_matches('/').to_string(),
                };
                Ok::<_, Error>(Rest {
                    base,
                    tokens: TokenCache::new(format!("{origin}/.default")),
                    hold: Hold::default(),
                    counters: Counters::default(),
                })
            })
            .await
    }

    /// One SharePoint REST call with token refresh and retries of throttled and
    /// transient answers (for [`Retry::CallerChecks`] a transient failure is returned).
    async fn rest_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
        what: &str,
    ) -> Result<Value> {
        self.require_certificate(what)?;
        let rest = self.rest().await?;
        let url = format!("{}{path}", rest.base);
        let merge = method == Method::POST && path.starts_with("/_api/web/lists(");
        let build = |http: &reqwest::Client| {
            let mut req = http
                .request(method.clone(), &url)
                .header(reqwest::header::ACCEPT, "application/json;odata=nometadata");
            if let Some(b) = body {
                req = req
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/json;odata=nometadata",
                    )
                    .body(b.to_string());
            }
            if merge {
                req = req.header("X-HTTP-Method", "MERGE").header("IF-MATCH", "*");
            }
            req
        };
        let write = method != Method::GET;
        let answer = self
            .inner
            .graph
            .send(
                rest,
                &rest.tokens,
                &rest.counters,
                &build,
                write,
                retry,
                what,
            )
            .await?;
        Ok(answer.body)
    }

    async fn group_id(&self, role: SiteRole) -> Result<(u32, String)> {
        let v = self
            .rest_call(
                Method::GET,
                &format!("/_api/web/{}", role_path(role)),
                None,
                Retry::Idempotent,
                &format!("finding the site's {} group", role_name(role)),
            )
            .await?;
        map::group_header(&v)
    }

    async fn group_members(&self, id: u32, role: SiteRole) -> Result<Vec<String>> {
        let v = self
            .rest_call(
                Method::GET,
                &format!("/_api/web/sitegroups/GetById({id})/users"),
                None,
                Retry::Idempotent,
                &format!("listing the site's {}", role_name(role)),
            )
            .await?;
        Ok(map::group_users(&v))
    }

    /// The online account's UPN as Graph has it; NotFound naming it when there is none.
    async fn account_upn(&self, user_principal_name: &str) -> Result<String> {
        crate::validate::upn(user_principal_name)?;
        match self
            .inner
            .graph
            .get(
                &format!(
                    "/users/{}?$select=id,userPrincipalName",
                    enc(user_principal_name)
                ),
                &format!("looking up {user_principal_name}"),
            )
            .await
        {
            Ok(v) => Ok(v
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .unwrap_or(user_principal_name)
                .to_string()),
            Err(e) if e.code() == ErrorCode::NotFound => Err(Error::not_found(format!(
                "there is no online account {user_principal_name}; create it first"
            ))),
            Err(e) => Err(e),
        }
    }

    async fn find_library(&self, site: &TeamSite, name: &str) -> Result<Option<Value>> {
        let lists = self.lists(site).await?;
        Ok(lists.into_iter().find(|l| {
            l.get("displayName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name.trim()))
        }))
    }

    async fn lists(&self, site: &TeamSite) -> Result<Vec<Value>> {
        let mut next = Some(format!(
            "/sites/{}/lists?$select=id,name,displayName,description,webUrl,list",
            site.id
        ));
        const WHAT: &str = "listing the team site's lists";
        let mut out = Vec::new();
        let mut pages = self.inner.graph.pages();
        while let Some(url) = next {
            let page = self.inner.graph.get(&url, WHAT).await?;
            out.extend(
                page.get("value")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            next = page
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .map(|link| pages.follow(link, WHAT))
                .transpose()?;
        }
        Ok(out)
    }

    /// Versioning of every library by list id, when SharePoint REST is usable.
    async fn versioning(&self) -> Result<Option<Vec<(String, bool)>>> {
        if self.inner.graph.uses_secret() {
            return Ok(None);
        }
        let v = self
            .rest_call(
                Method::GET,
                "/_api/web/lists?$select=Id,EnableVersioning&$filter=BaseTemplate%20eq%20101",
                None,
                Retry::Idempotent,
                "reading library versioning",
            )
            .await?;
        Ok(Some(map::versioning(&v)))
    }

    async fn wait_for_drive(&self, site: &TeamSite, list_id: &str) -> Result<Option<String>> {
        let started = Instant::now();
        let limit = Duration::from_millis(
            self.inner
                .drive_wait_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let mut pause = Duration::from_millis(100);
        loop {
            match self
                .inner
                .graph
                .get(
                    &format!("/sites/{}/lists/{}/drive?$select=id", site.id, enc(list_id)),
                    "waiting for the new library's drive",
                )
                .await
            {
                Ok(v) => return Ok(v.get("id").and_then(Value::as_str).map(str::to_string)),
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
            if started.elapsed() + pause > limit {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(3));
        }
    }
}

#[async_trait]
impl SharePoint for SharePointOnline {
    async fn team_site(&self) -> Result<TeamSite> {
        self.site().await.cloned()
    }

    async fn libraries(&self) -> Result<Vec<Library>> {
        let site = self.site().await?.clone();
        let lists = self.lists(&site).await?;
        let drives = self
            .inner
            .graph
            .get(
                &format!("/sites/{}/drives?$select=id,webUrl", site.id),
                "listing the team site's drives",
            )
            .await?;
        let versioning = self.versioning().await?;
        Ok(map::libraries(&lists, &drives, versioning.as_deref()))
    }

    async fn create_library(&self, library: &NewLibrary) -> Result<Library> {
        check_library_name(&library.name)?;
        if library.description.chars().count() > 4000 {
            return Err(Error::invalid_input(
                "the library description is longer than 4,000 characters",
            ));
        }
        let name = library.name.trim().to_string();
        let what = format!("creating library {name}");
        if !library.versioning {
            self.require_certificate(&format!("{what} with versioning off"))?;
        }
        let site = self.site().await?.clone();
        let body = json!({
            "displayName": name,
            "description": library.description,
            "list": {"template": "documentLibrary"},
        });
        let path = format!("/sites/{}/lists", site.id);
        let mut created = None;
        let mut sent = false;
        for attempt in 0..WRITE_ATTEMPTS {
            match self
                .inner
                .graph
                .call(Method::POST, &path, Some(&body), Retry::CallerChecks, &what)
                .await
            {
                Ok(r) => {
                    created = Some(r.body);
                    break;
                }
                // A repeat after a lost answer: the first one created it.
                Err(e) if e.code() == ErrorCode::AlreadyExists && sent => {
                    created = self.find_library(&site, &name).await?;
                    break;
                }
                Err(e) if is_unknown_outcome(&e) && attempt + 1 < WRITE_ATTEMPTS => {
                    sent = true;
                    if let Some(l) = self.find_library(&site, &name).await? {
                        created = Some(l);
                        break;
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) if e.code() == ErrorCode::AlreadyExists => {
                    return Err(Error::new(
                        ErrorCode::AlreadyExists,
                        format!(
                            "the team site already has a list or library called `{name}`; choose another name"
                        ),
                    )
                    .with_service(e.service().cloned().unwrap_or_default()));
                }
                Err(e) => return Err(e),
            }
        }
        let created = created.ok_or_else(|| {
            Error::new(
                ErrorCode::UnexpectedResponse,
                format!("{what}: Graph answered without the new list"),
            )
        })?;
        let mut lib = map::library(&created, None, Some(true))?;
        if !library.versioning {
            self.rest_call(
                Method::POST,
                &format!("/_api/web/lists(guid'{}')", lib.id),
                Some(&json!({"EnableVersioning": false})),
                Retry::Idempotent,
                &format!("turning versioning off for {name}"),
            )
            .await?;
            lib.versioning = Some(false);
        }
        lib.drive_id = self.wait_for_drive(&site, &lib.id).await?;
        Ok(lib)
    }

    async fn delete_library(&self, id: &str) -> Result<()> {
        if Uuid::parse_str(id.trim()).is_err() {
            return Err(Error::invalid_input(format!(
                "`{id}` is not a library id (a GUID from the library list)"
            )));
        }
        let site = self.site().await?.clone();
        let path = format!("/sites/{}/lists/{}", site.id, id.trim());
        let what = format!("deleting library {id}");
        let mut sent = false;
        for attempt in 0..WRITE_ATTEMPTS {
            match self
                .inner
                .graph
                .call(Method::DELETE, &path, None, Retry::CallerChecks, &what)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == ErrorCode::NotFound && sent => return Ok(()),
                Err(e) if e.code() == ErrorCode::NotFound => {
                    return Err(Error::not_found(format!(
                        "the team site has no library with id {id}"
                    ))
                    .with_service(e.service().cloned().unwrap_or_default()));
                }
                Err(e) if is_unknown_outcome(&e) => {
                    sent = true;
                    match self.inner.graph.get(&path, &what).await {
                        Err(e) if e.code() == ErrorCode::NotFound => return Ok(()),
                        Err(e) => return Err(e),
                        Ok(_) => tokio::time::sleep(backoff(attempt)).await,
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorCode::ServiceUnavailable,
            format!("{what}: Graph did not answer; the library is still there"),
        ))
    }

    async fn site_groups(&self) -> Result<Vec<SiteGroup>> {
        self.require_certificate("reading the team site's groups")?;
        let mut out = Vec::new();
        for role in [SiteRole::Owner, SiteRole::Member, SiteRole::Visitor] {
            let (id, title) = self.group_id(role).await?;
            let members = self.group_members(id, role).await?;
            out.push(SiteGroup {
                id,
                role,
                title,
                members,
            });
        }
        Ok(out)
    }

    async fn grant(&self, user_principal_name: &str, role: SiteRole) -> Result<()> {
        let what = format!(
            "adding {user_principal_name} to the site's {}",
            role_name(role)
        );
        self.require_certificate(&what)?;
        let upn = self.account_upn(user_principal_name).await?;
        let (id, _) = self.group_id(role).await?;
        // Adding someone who is already in the group changes nothing: safe to resend.
        self.rest_call(
            Method::POST,
            &format!("/_api/web/sitegroups/GetById({id})/users"),
            Some(&json!({"LoginName": login_name(&upn)})),
            Retry::Idempotent,
            &what,
        )
        .await
        .map(|_| ())
    }

    async fn revoke(&self, user_principal_name: &str, role: SiteRole) -> Result<RevokeOutcome> {
        let what = format!(
            "removing {user_principal_name} from the site's {}",
            role_name(role)
        );
        self.require_certificate(&what)?;
        let upn = self.account_upn(user_principal_name).await?;
        let (id, _) = self.group_id(role).await?;
        let members = self.group_members(id, role).await?;
        if !members.iter().any(|m| m.eq_ignore_ascii_case(&upn)) {
            return Ok(RevokeOutcome::NothingToRevoke);
        }
        let login = login_name(&upn).replace('\'', "''");
        let path = format!(
            "/_api/web/sitegroups/GetById({id})/users/removeByLoginName(@v)?@v={}",
            enc(&format!("'{login}'"))
        );
        match self
            .rest_call(Method::POST, &path, None, Retry::Idempotent, &what)
            .await
        {
            Ok(_) => Ok(RevokeOutcome::Revoked),
            // Gone by the time of a repeat (the first answer was lost): revoked.
            Err(e) if e.code() == ErrorCode::NotFound => {
                let now = self.group_members(id, role).await?;
                if now.iter().any(|m| m.eq_ignore_ascii_case(&upn)) {
                    Err(e)
                } else {
                    Ok(RevokeOutcome::Revoked)
                }
            }
            Err(e) => Err(e),
        }
    }
}
