//! The emulator's shared state: configuration, the tenant's directory, and counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ring::{digest, hmac};
use serde_json::{Map, Value, json};

use crate::auth::{RegisteredCert, Resource, parse_certificate};
use crate::config::{AppConfig, EmulatorConfig, FaultRule, LatencyConfig, SeedUser};
use crate::ctx::now_rfc3339;
use crate::throttle::Throttle;

/// An online account as the emulator keeps it.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub user_principal_name: String,
    pub display_name: String,
    pub mail_nickname: String,
    pub account_enabled: bool,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub usage_location: Option<String>,
    pub immutable_id: Option<String>,
    pub proxy_addresses: Vec<String>,
    /// (skuId, disabledPlans)
    pub assigned_licenses: Vec<(String, Vec<String>)>,
    /// SHA-256 of the password; never returned.
    pub password_hash: Option<Vec<u8>>,
    pub force_change_password: bool,
    pub created: String,
    pub last_password_change: Option<String>,
    pub sessions_valid_from: String,
    pub deleted: Option<String>,
    /// Other simple string properties (jobTitle, department, ...).
    pub extra: Map<String, Value>,
}

/// Every property a `user` returns, with its CSDL name.
pub(crate) const USER_PROPERTIES: &[&str] = &[
    "id",
    "accountEnabled",
    "assignedLicenses",
    "businessPhones",
    "city",
    "companyName",
    "country",
    "createdDateTime",
    "deletedDateTime",
    "department",
    "displayName",
    "employeeId",
    "givenName",
    "jobTitle",
    "lastPasswordChangeDateTime",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesImmutableId",
    "onPremisesSyncEnabled",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "postalCode",
    "preferredLanguage",
    "proxyAddresses",
    "signInSessionsValidFromDateTime",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

/// The properties returned when no `$select` is given (Graph v1.0's default set).
pub(crate) const USER_DEFAULT_SELECT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Simple string properties kept in [`User::extra`].
pub(crate) const USER_EXTRA_STRINGS: &[&str] = &[
    "city",
    "companyName",
    "country",
    "department",
    "employeeId",
    "jobTitle",
    "mobilePhone",
    "officeLocation",
    "passwordPolicies",
    "postalCode",
    "preferredLanguage",
    "state",
    "streetAddress",
];

pub(crate) fn hash_password(pw: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, pw.as_bytes())
        .as_ref()
        .to_vec()
}

impl User {
    pub(crate) fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let opt = |v: &Option<String>| v.as_ref().map_or(Value::Null, |s| json!(s));
        m.insert("id".into(), json!(self.id));
        m.insert("accountEnabled".into(), json!(self.account_enabled));
        m.insert(
            "assignedLicenses".into(),
            Value::Array(
                self.assigned_licenses
                    .iter()
                    .map(|(sku, disabled)| json!({"disabledPlans": disabled, "skuId": sku}))
                    .collect(),
            ),
        );
        m.insert(
            "businessPhones".into(),
            self.extra
                .get("businessPhones")
                .cloned()
                .unwrap_or_else(|| json!([])),
        );
        for k in USER_EXTRA_STRINGS {
            m.insert(
                (*k).into(),
                self.extra.get(*k).cloned().unwrap_or(Value::Null),
            );
        }
        m.insert("createdDateTime".into(), json!(self.created));
        m.insert("deletedDateTime".into(), opt(&self.deleted));
        m.insert("displayName".into(), json!(self.display_name));
        m.insert("givenName".into(), opt(&self.given_name));
        m.insert(
            "lastPasswordChangeDateTime".into(),
            opt(&self.last_password_change),
        );
        m.insert("mail".into(), opt(&self.mail));
        m.insert("mailNickname".into(), json!(self.mail_nickname));
        m.insert("onPremisesImmutableId".into(), opt(&self.immutable_id));
        m.insert(
            "onPremisesSyncEnabled".into(),
            if self.immutable_id.is_some() {
                json!(false)
            } else {
                Value::Null
            },
        );
        m.insert(
            "otherMails".into(),
            self.extra
                .get("otherMails")
                .cloned()
                .unwrap_or_else(|| json!([])),
        );
        m.insert("passwordProfile".into(), Value::Null);
        m.insert("proxyAddresses".into(), json!(self.proxy_addresses));
        m.insert(
            "signInSessionsValidFromDateTime".into(),
            json!(self.sessions_valid_from),
        );
        m.insert("surname".into(), opt(&self.surname));
        m.insert("usageLocation".into(), opt(&self.usage_location));
        m.insert("userPrincipalName".into(), json!(self.user_principal_name));
        m.insert("userType".into(), json!("Member"));
        m
    }

    /// `$select` as a user get or list answers it: exactly the properties asked for
    /// (Graph documents `GET /users/{id}?$select=displayName` without an `id`).
    pub(crate) fn select_only(&self, select: Option<&[String]>) -> Map<String, Value> {
        let mut out = self.select(select);
        if let Some(props) = select
            && !props.iter().any(|p| p.eq_ignore_ascii_case("id"))
        {
            out.remove("id");
        }
        out
    }

    /// `$select` as delta answers it: the id always comes along (a change must name its
    /// object).
    pub(crate) fn select(&self, select: Option<&[String]>) -> Map<String, Value> {
        let all = self.to_json();
        let mut out = Map::new();
        match select {
            Some(props) => {
                // Delta always returns the id.
                if !props.iter().any(|p| p == "id") {
                    out.insert("id".into(), json!(self.id));
                }
                for p in props {
                    if let Some((k, v)) = all
                        .get_key_value(p.as_str())
                        .or_else(|| all.iter().find(|(k, _)| k.eq_ignore_ascii_case(p)))
                    {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            None => {
                for p in USER_DEFAULT_SELECT {
                    if let Some(v) = all.get(*p) {
                        out.insert((*p).into(), v.clone());
                    }
                }
            }
        }
        out
    }
}

/// A subscribed SKU.
#[derive(Debug, Clone)]
pub(crate) struct Sku {
    pub sku_id: String,
    pub part_number: String,
    pub enabled: u32,
}

/// A domain of the tenant.
#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub name: String,
    pub verified: bool,
    pub is_default: bool,
    pub is_initial: bool,
    pub services: Vec<String>,
    /// `ms12345678`.
    pub verification_code: String,
}

/// A directory role with its user members.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub id: String,
    pub template_id: String,
    pub display_name: String,
    pub members: Vec<String>,
    /// Role-assignable groups holding the role (their members hold it transitively).
    pub groups: Vec<String>,
    /// Users eligible for the role (PIM), not active.
    pub eligible: Vec<String>,
}

/// A role-assignable security group (`isAssignableToRole`): users and nested groups.
#[derive(Debug, Clone)]
pub(crate) struct RoleGroup {
    pub id: String,
    pub display_name: String,
    pub members: Vec<String>,
}

/// The tenant's directory.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub users: BTreeMap<String, User>,
    pub deleted: BTreeMap<String, User>,
    pub skus: Vec<Sku>,
    pub domains: BTreeMap<String, Domain>,
    pub roles: Vec<Role>,
    /// Role-assignable groups.
    pub role_groups: Vec<RoleGroup>,
    /// (seq, user id) of every change, for delta.
    pub changes: Vec<(u64, String)>,
    pub seq: u64,
    /// Delta tokens below this are expired.
    pub delta_floor: u64,
    /// Ids deleted for good (delta reports them as `deleted`).
    pub purged: Vec<String>,
    /// Exchange Online.
    pub exo: crate::exchange::ExoState,
    /// SharePoint Online.
    pub spo: crate::sharepoint::SpoState,
    /// App registrations and service principals made through Graph.
    pub apps: crate::apps::AppsState,
    /// Device codes of the device authorization grant.
    pub device_codes: crate::devicecode::DeviceCodes,
}

impl Directory {
    pub(crate) fn touch(&mut self, id: &str, retention: u64) {
        self.seq += 1;
        self.changes.push((self.seq, id.to_string()));
        if self.changes.len() as u64 > retention {
            let cut = self.changes.len() - retention as usize;
            self.delta_floor = self.changes[cut - 1].0;
            self.changes.drain(..cut);
        }
    }

    /// By id (a GUID, in any case) or userPrincipalName (ignoring case).
    pub(crate) fn find_user(&self, id_or_upn: &str) -> Option<&User> {
        self.users.get(id_or_upn).or_else(|| {
            self.users.values().find(|u| {
                u.user_principal_name.eq_ignore_ascii_case(id_or_upn)
                    || u.id.eq_ignore_ascii_case(id_or_upn)
            })
        })
    }

    pub(crate) fn find_user_id(&self, id_or_upn: &str) -> Option<String> {
        self.find_user(id_or_upn).map(|u| u.id.clone())
    }

    pub(crate) fn consumed(&self, sku_id: &str) -> u32 {
        self.users
            .values()
            .filter(|u| {
                u.assigned_licenses
                    .iter()
                    .any(|(s, _)| s.eq_ignore_ascii_case(sku_id))
            })
            .count() as u32
    }

    pub(crate) fn verified_domain(&self, name: &str) -> bool {
        self.domains
            .get(&name.to_ascii_lowercase())
            .is_some_and(|d| d.verified)
    }

    pub(crate) fn is_admin(&self, user_id: &str) -> bool {
        self.roles.iter().any(|r| {
            r.members.iter().chain(&r.eligible).any(|m| m == user_id)
                || r.groups.iter().any(|g| self.in_role_group(g, user_id, 0))
        })
    }

    fn in_role_group(&self, group: &str, user_id: &str, depth: u32) -> bool {
        depth < 16
            && self.role_groups.iter().any(|g| {
                g.id == group
                    && g.members
                        .iter()
                        .any(|m| m == user_id || self.in_role_group(m, user_id, depth + 1))
            })
    }
}

/// Request counters for assertions and benchmarks.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    counters: Mutex<HashMap<String, u64>>,
    pub requests: AtomicU64,
}

impl Stats {
    pub(crate) fn count(&self, what: &str) {
        self.add(what, 1);
    }

    pub(crate) fn add(&self, what: &str, n: u64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(what.to_string()).or_default() += n;
        }
    }

    pub(crate) fn snapshot(&self) -> Value {
        let c = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let mut m: BTreeMap<String, u64> = c.into_iter().collect();
        m.insert("requests".into(), self.requests.load(Ordering::Relaxed));
        json!(m)
    }
}

/// Settings an admin call can change while running.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    pub throttling_enabled: bool,
    pub time_scale: f64,
    pub latency: LatencyConfig,
    pub faults: Vec<(FaultRule, u64)>,
    pub verify_without_dns: bool,
    pub dns_server: Option<std::net::SocketAddr>,
}

/// The base URLs the emulator writes into its answers: the public ones when configured,
/// else the listen address's.
#[derive(Debug, Clone)]
pub(crate) struct Urls {
    /// The identity platform (`{login}/{tenant}/oauth2/v2.0/token`).
    pub login: String,
    /// Graph without the version.
    pub graph: String,
    /// The Exchange admin API host (`{exchange}/adminapi/beta`).
    pub exchange: String,
    /// SharePoint REST's site (`{sharepoint}/_api/web`).
    pub sharepoint: String,
}

impl Urls {
    pub(crate) fn new(base: &str, public: &crate::config::PublicUrls) -> Result<Urls, String> {
        let pick = |name: &str, v: &Option<String>, default: String| -> Result<String, String> {
            match v {
                None => Ok(default),
                Some(u) => {
                    let u = u.trim_end_matches('/');
                    if crate::route::split_url(u).is_none() || u.contains(['?', '#', ' ']) {
                        return Err(format!("public.{name} `{u}` is not an http(s) base URL"));
                    }
                    Ok(u.to_string())
                }
            }
        };
        Ok(Urls {
            login: pick("login_url", &public.login_url, base.to_string())?,
            graph: pick("graph_url", &public.graph_url, base.to_string())?,
            exchange: pick("exchange_url", &public.exchange_url, base.to_string())?,
            sharepoint: pick(
                "sharepoint_url",
                &public.sharepoint_url,
                format!("{base}/sharepoint"),
            )?,
        })
    }
}

/// Everything the handlers share.
pub(crate) struct Emu {
    pub cfg: EmulatorConfig,
    /// The listen address's base URL (`https://127.0.0.1:PORT`).
    pub base_url: String,
    /// The base URLs answers name.
    pub urls: Urls,
    pub token_key: hmac::Key,
    pub dir: Mutex<Directory>,
    pub runtime: Mutex<Runtime>,
    pub rng: Mutex<ChaCha8Rng>,
    pub throttle: Mutex<Throttle>,
    pub stats: Stats,
    certs: HashMap<String, Vec<RegisteredCert>>,
    /// Distinguishes this instance's delta and skip tokens from another's.
    epoch: String,
    /// The router, for `$batch` to dispatch sub-requests through.
    pub router: std::sync::OnceLock<axum::Router>,
}

impl Emu {
    pub(crate) fn new(cfg: EmulatorConfig, base_url: String) -> Result<Emu, String> {
        let mut key = [0u8; 32];
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.random_seed);
        rand::rng().fill(&mut key);
        let mut certs = HashMap::new();
        for app in &cfg.apps {
            let mut list = Vec::new();
            for pem in &app.certificates {
                list.push(
                    parse_certificate(pem).map_err(|e| format!("app {}: {e}", app.client_id))?,
                );
            }
            certs.insert(app.client_id.to_ascii_lowercase(), list);
        }
        let runtime = Runtime {
            throttling_enabled: cfg.throttling.enabled,
            time_scale: cfg.throttling.time_scale.max(1e-6),
            latency: cfg.latency,
            faults: cfg.faults.iter().cloned().map(|f| (f, 0)).collect(),
            verify_without_dns: cfg.dns.verify_without_dns,
            dns_server: cfg.dns.server,
        };
        let throttle = Throttle::new(&cfg);
        let urls = Urls::new(&base_url, &cfg.public)?;
        let emu = Emu {
            urls,
            dir: Mutex::new(Directory::default()),
            runtime: Mutex::new(runtime),
            throttle: Mutex::new(throttle),
            stats: Stats::default(),
            token_key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            router: std::sync::OnceLock::new(),
            base_url,
            certs,
            cfg,
            rng: Mutex::new({
                let _ = rng.random::<u64>();
                rng
            }),
        };
        emu.seed()?;
        Ok(emu)
    }

    fn seed(&self) -> Result<(), String> {
        let mut d = self.dir();
        let initial = self.cfg.tenant.initial_domain.to_ascii_lowercase();
        d.domains.insert(
            initial.clone(),
            Domain {
                name: initial.clone(),
                verified: true,
                is_default: true,
                is_initial: true,
                services: vec!["Email".into(), "OfficeCommunicationsOnline".into()],
                verification_code: String::new(),
            },
        );
        crate::sharepoint::init(&mut d, self);
        crate::apps::init(&mut d, self);
        for (name, template) in crate::auth::ROLE_TEMPLATES {
            d.roles.push(Role {
                id: self.stable_id(&format!("role:{template}")),
                template_id: (*template).into(),
                display_name: (*name).into(),
                members: Vec::new(),
                groups: Vec::new(),
                eligible: Vec::new(),
            });
        }
        drop(d);
        self.apply_seed(&self.cfg.seed.clone())
            .map_err(|e| format!("seed (of the configuration): {e}"))?;
        Ok(())
    }

    /// Adds a seed's domains, SKUs, users (with their roles), role groups and devices;
    /// returns the user ids. Atomic: the whole seed is checked first ([`check_seed`]),
    /// and should applying it fail all the same, what it added is taken back.
    pub(crate) fn apply_seed(&self, seed: &crate::config::Seed) -> Result<Vec<String>, String> {
        let mut d = self.dir();
        check_seed(&d, seed)?;
        let mark = SeedMark::take(&d);
        match self.apply_checked_seed(&mut d, seed) {
            Ok(ids) => {
                let retention = self.cfg.delta_retention_changes;
                for id in &ids {
                    d.touch(id, retention);
                }
                Ok(ids)
            }
            Err(e) => {
                mark.restore(&mut d);
                Err(e)
            }
        }
    }

    fn apply_checked_seed(
        &self,
        d: &mut Directory,
        seed: &crate::config::Seed,
    ) -> Result<Vec<String>, String> {
        for sd in &seed.domains {
            let code = self.verification_code();
            d.domains.insert(
                sd.name.to_ascii_lowercase(),
                Domain {
                    name: sd.name.to_ascii_lowercase(),
                    verified: sd.verified,
                    is_default: false,
                    is_initial: false,
                    services: if sd.verified {
                        vec!["Email".into()]
                    } else {
                        vec![]
                    },
                    verification_code: code,
                },
            );
        }
        for s in &seed.skus {
            d.skus.push(Sku {
                sku_id: s.sku_id.to_ascii_lowercase(),
                part_number: s.sku_part_number.clone(),
                enabled: s.enabled,
            });
        }
        let mut ids = Vec::new();
        for su in &seed.users {
            let u = self.seed_user(su, d)?;
            let id = u.id.clone();
            for role in &su.roles {
                let r = d
                    .roles
                    .iter_mut()
                    .find(|r| r.display_name.eq_ignore_ascii_case(role))
                    .ok_or_else(|| format!("unknown directory role `{role}`"))?;
                r.members.push(id.clone());
            }
            for role in &su.eligible_roles {
                let r = d
                    .roles
                    .iter_mut()
                    .find(|r| r.display_name.eq_ignore_ascii_case(role))
                    .ok_or_else(|| format!("unknown directory role `{role}`"))?;
                r.eligible.push(id.clone());
            }
            d.users.insert(id.clone(), u);
            ids.push(id);
        }
        for g in &seed.role_groups {
            let gid = self.stable_id(&format!("role-group:{}", g.display_name));
            let mut members = Vec::new();
            for m in &g.members {
                let id = d
                    .find_user_id(m)
                    .or_else(|| {
                        d.role_groups
                            .iter()
                            .find(|x| x.display_name.eq_ignore_ascii_case(m))
                            .map(|x| x.id.clone())
                    })
                    .ok_or_else(|| {
                        format!("role group {}: unknown member `{m}`", g.display_name)
                    })?;
                members.push(id);
            }
            for role in &g.roles {
                let r = d
                    .roles
                    .iter_mut()
                    .find(|r| r.display_name.eq_ignore_ascii_case(role))
                    .ok_or_else(|| format!("unknown directory role `{role}`"))?;
                r.groups.push(gid.clone());
            }
            d.role_groups.push(crate::state::RoleGroup {
                id: gid,
                display_name: g.display_name.clone(),
                members,
            });
        }
        crate::exchange::seed_devices(d, &seed.devices)?;
        Ok(ids)
    }

    pub(crate) fn seed_user(&self, su: &SeedUser, d: &Directory) -> Result<User, String> {
        let upn = su.user_principal_name.clone();
        let nick = su
            .mail_nickname
            .clone()
            .unwrap_or_else(|| upn.split('@').next().unwrap_or(&upn).to_string());
        let mut licences = Vec::new();
        for part in &su.licences {
            let sku = d
                .skus
                .iter()
                .find(|s| s.part_number.eq_ignore_ascii_case(part))
                .ok_or_else(|| format!("seed user {upn}: unknown SKU {part}"))?;
            licences.push((sku.sku_id.clone(), Vec::new()));
        }
        let now = now_rfc3339();
        Ok(User {
            id: su
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            user_principal_name: upn.clone(),
            display_name: su.display_name.clone(),
            mail_nickname: nick,
            account_enabled: su.account_enabled.unwrap_or(true),
            given_name: su.given_name.clone(),
            surname: su.surname.clone(),
            mail: su.mail.clone().or_else(|| Some(upn.clone())),
            usage_location: su.usage_location.clone(),
            immutable_id: su.on_premises_immutable_id.clone(),
            proxy_addresses: if su.proxy_addresses.is_empty() {
                vec![format!("SMTP:{upn}")]
            } else {
                su.proxy_addresses.clone()
            },
            assigned_licenses: licences,
            password_hash: su.password.as_deref().map(hash_password),
            force_change_password: false,
            created: now.clone(),
            last_password_change: Some(now.clone()),
            sessions_valid_from: now,
            deleted: None,
            extra: Map::new(),
        })
    }

    pub(crate) fn epoch(&self) -> String {
        self.epoch.clone()
    }

    pub(crate) fn dir(&self) -> MutexGuard<'_, Directory> {
        self.dir.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn random_f64(&self) -> f64 {
        self.rng
            .lock()
            .map(|mut r| r.random::<f64>())
            .unwrap_or(0.5)
    }

    pub(crate) fn random_u64(&self, below: u64) -> u64 {
        if below == 0 {
            return 0;
        }
        self.rng
            .lock()
            .map(|mut r| r.random_range(0..below))
            .unwrap_or(0)
    }

    pub(crate) fn verification_code(&self) -> String {
        format!("ms{:08}", self.random_u64(100_000_000))
    }

    /// A deterministic GUID-shaped id from a name (stable across runs of one config).
    pub(crate) fn stable_id(&self, name: &str) -> String {
        let d = digest::digest(
            &digest::SHA256,
            format!("{}:{name}", self.cfg.tenant.id).as_bytes(),
        );
        let mut b = [0u8; 16];
        b.copy_from_slice(&d.as_ref()[..16]);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }

    pub(crate) fn app(&self, client_id: &str) -> Option<&AppConfig> {
        self.cfg
            .apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    pub(crate) fn certificates(&self, client_id: &str) -> Vec<RegisteredCert> {
        self.certs
            .get(&client_id.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn service_principal_id(&self, client_id: &str) -> String {
        self.stable_id(&format!("sp:{}", client_id.to_ascii_lowercase()))
    }

    pub(crate) fn tenant_domain_names(&self) -> Vec<String> {
        self.dir().domains.keys().cloned().collect()
    }

    /// The SharePoint host label: `contoso` of `contoso.onmicrosoft.com`.
    pub(crate) fn sharepoint_tenant(&self) -> String {
        self.cfg.sharepoint_label()
    }

    pub(crate) fn audience(&self, r: Resource) -> String {
        match r {
            Resource::Graph => "https://graph.microsoft.com".into(),
            Resource::Exchange => "https://outlook.office365.com".into(),
            Resource::SharePoint => format!("https://{}.sharepoint.com", self.sharepoint_tenant()),
        }
    }

    pub(crate) fn resource_for_scope(&self, scope: &str) -> Option<(Resource, String)> {
        // MSAL may add openid, profile and offline_access; the .default scope decides.
        let defaults: Vec<&str> = scope
            .split_whitespace()
            .filter(|s| s.ends_with("/.default"))
            .collect();
        let [s] = defaults.as_slice() else {
            return None;
        };
        let resource = s.strip_suffix("/.default")?;
        let resource = resource.trim_end_matches('/');
        for r in [Resource::Graph, Resource::Exchange, Resource::SharePoint] {
            if resource.eq_ignore_ascii_case(&self.audience(r)) {
                return Some((r, self.audience(r)));
            }
        }
        if resource == "00000003-0000-0000-c000-000000000000" {
            return Some((Resource::Graph, self.audience(Resource::Graph)));
        }
        None
    }

    /// What a client assertion's `aud` may be.
    pub(crate) fn token_audiences(&self, tenant_in_path: &str) -> Vec<String> {
        let mut v = Vec::new();
        for t in [tenant_in_path, self.cfg.tenant.id.as_str()] {
            v.push(format!("{}/{t}/oauth2/v2.0/token", self.base_url));
            v.push(format!("{}/{t}/oauth2/v2.0/token", self.urls.login));
            v.push(format!(
                "https://login.microsoftonline.com/{t}/oauth2/v2.0/token"
            ));
        }
        v
    }

    /// Graph's versioned root as clients name it (`https://graph.microsoft.com/v1.0`).
    pub(crate) fn graph_root(&self) -> String {
        format!("{}/v1.0", self.urls.graph)
    }
}

/// What a seed may add to, measured before it is applied, to take a failed seed back.
struct SeedMark {
    skus: usize,
    role_groups: usize,
    devices: usize,
    users: std::collections::BTreeSet<String>,
    domains: std::collections::BTreeSet<String>,
    /// (members, eligible, groups) of each role.
    roles: Vec<(usize, usize, usize)>,
}

impl SeedMark {
    fn take(d: &Directory) -> SeedMark {
        SeedMark {
            skus: d.skus.len(),
            role_groups: d.role_groups.len(),
            devices: d.exo.devices.len(),
            users: d.users.keys().cloned().collect(),
            domains: d.domains.keys().cloned().collect(),
            roles: d
                .roles
                .iter()
                .map(|r| (r.members.len(), r.eligible.len(), r.groups.len()))
                .collect(),
        }
    }

    fn restore(self, d: &mut Directory) {
        d.skus.truncate(self.skus);
        d.role_groups.truncate(self.role_groups);
        d.exo.devices.truncate(self.devices);
        d.users.retain(|k, _| self.users.contains(k));
        d.domains.retain(|k, _| self.domains.contains(k));
        for (r, (m, e, g)) in d.roles.iter_mut().zip(self.roles) {
            r.members.truncate(m);
            r.eligible.truncate(e);
            r.groups.truncate(g);
        }
    }
}

/// The problems of a seed, checked against the tenant before anything is applied: every
/// field that is malformed, names something unknown, or would add something the tenant
/// (or the seed itself) already has. Seeding adds; it never replaces or duplicates.
/// Fields are named as the seed documents them (camelCase), e.g.
/// `users[2].licences[0]: no SKU `SPE_E5` ...`.
///
/// # Errors
/// Every problem found (at most 20), one per line.
pub(crate) fn check_seed(d: &Directory, seed: &crate::config::Seed) -> Result<(), String> {
    use std::collections::HashSet;
    let mut bad: Vec<String> = Vec::new();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let known_role = |name: &str| d.roles.iter().any(|r| eq(&r.display_name, name));
    let role_hint = || {
        let mut names: Vec<&str> = d.roles.iter().map(|r| r.display_name.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    };
    let is_guid = |v: &str| uuid::Uuid::try_parse(v).is_ok();
    let dup_in = |list: &[String], field: &str, bad: &mut Vec<String>| {
        let mut seen = HashSet::new();
        for (j, x) in list.iter().enumerate() {
            if !seen.insert(x.to_ascii_lowercase()) {
                bad.push(format!("{field}[{j}]: `{x}` is listed twice; list it once"));
            }
        }
    };

    // Domains.
    let mut domains = HashSet::new();
    for (i, sd) in seed.domains.iter().enumerate() {
        let f = format!("domains[{i}].name");
        let name = sd.name.to_ascii_lowercase();
        let well_formed = name.contains('.')
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !well_formed {
            bad.push(format!(
                "{f}: `{}` is not a domain name (letters, digits, hyphens and dots, e.g. fabrikam.com)",
                sd.name
            ));
        } else if d.domains.contains_key(&name) {
            bad.push(format!(
                "{f}: the tenant already has the domain {name}; leave it out (seeding adds, it does not replace)"
            ));
        } else if !domains.insert(name.clone()) {
            bad.push(format!("{f}: {name} is seeded twice; seed it once"));
        }
    }

    // SKUs.
    let mut sku_ids = HashSet::new();
    let mut sku_parts = HashSet::new();
    for (i, s) in seed.skus.iter().enumerate() {
        let id = s.sku_id.to_ascii_lowercase();
        if !is_guid(&id) {
            bad.push(format!(
                "skus[{i}].skuId: `{}` is not a GUID (Microsoft's SKU ids are, e.g. 06ebc4ee-1bb5-47dd-8120-11324bc54e06 for SPE_E5)",
                s.sku_id
            ));
        } else if let Some(x) = d.skus.iter().find(|x| eq(&x.sku_id, &id)) {
            bad.push(format!(
                "skus[{i}].skuId: the tenant already has SKU {id} ({}); leave it out (seeding adds, it does not replace)",
                x.part_number
            ));
        } else if !sku_ids.insert(id.clone()) {
            bad.push(format!(
                "skus[{i}].skuId: {id} is seeded twice; seed it once"
            ));
        }
        let part = s.sku_part_number.trim();
        if part.is_empty() {
            bad.push(format!(
                "skus[{i}].skuPartNumber: empty; give the SKU's part number (e.g. SPE_E5), which users' licences name"
            ));
        } else if d.skus.iter().any(|x| eq(&x.part_number, part)) {
            bad.push(format!(
                "skus[{i}].skuPartNumber: the tenant already has a SKU {part}; leave it out, or give the new SKU another part number"
            ));
        } else if !sku_parts.insert(part.to_ascii_lowercase()) {
            bad.push(format!(
                "skus[{i}].skuPartNumber: {part} is seeded twice; seed it once"
            ));
        }
    }
    let known_sku = |part: &str| {
        d.skus.iter().any(|x| eq(&x.part_number, part))
            || seed.skus.iter().any(|x| eq(&x.sku_part_number, part))
    };

    // Users. Names taken, read once: seeding a large tenant stays linear.
    let taken: HashSet<String> = d
        .users
        .values()
        .chain(d.deleted.values())
        .map(|u| u.user_principal_name.to_ascii_lowercase())
        .collect();
    let mut upns = HashSet::new();
    let mut ids = HashSet::new();
    for (i, su) in seed.users.iter().enumerate() {
        let upn = su.user_principal_name.as_str();
        let f = format!("users[{i}].userPrincipalName");
        let well_formed = match upn.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.contains('@')
                    && !upn.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if upn.is_empty() {
            bad.push(format!(
                "{f}: missing; every user needs one (alias@domain, e.g. ava@contoso.onmicrosoft.com)"
            ));
        } else if !well_formed {
            bad.push(format!(
                "{f}: `{upn}` is not alias@domain (e.g. ava@contoso.onmicrosoft.com)"
            ));
        } else if taken.contains(&upn.to_ascii_lowercase()) {
            bad.push(format!(
                "{f}: the tenant already has a user {upn}; leave it out or pick another name"
            ));
        } else if !upns.insert(upn.to_ascii_lowercase()) {
            bad.push(format!("{f}: {upn} is seeded twice; seed it once"));
        }
        if let Some(id) = &su.id {
            let f = format!("users[{i}].id");
            if !is_guid(id) {
                bad.push(format!(
                    "{f}: `{id}` is not a GUID; leave it out to have one generated"
                ));
            } else if d.users.contains_key(id)
                || d.deleted.contains_key(id)
                || d.users.keys().chain(d.deleted.keys()).any(|k| eq(k, id))
            {
                bad.push(format!(
                    "{f}: the tenant already has an object {id}; leave it out to have one generated"
                ));
            } else if !ids.insert(id.to_ascii_lowercase()) {
                bad.push(format!("{f}: {id} is given to two users"));
            }
        }
        if su
            .mail_nickname
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            bad.push(format!(
                "users[{i}].mailNickname: empty; leave it out to take the UPN's alias"
            ));
        }
        if let Some(loc) = &su.usage_location
            && !(loc.len() == 2 && loc.chars().all(|c| c.is_ascii_alphabetic()))
        {
            bad.push(format!(
                "users[{i}].usageLocation: `{loc}` is not a two-letter country code (ISO 3166-1, e.g. GB)"
            ));
        }
        for (field, list) in [("roles", &su.roles), ("eligibleRoles", &su.eligible_roles)] {
            let f = format!("users[{i}].{field}");
            for (j, role) in list.iter().enumerate() {
                if !known_role(role) {
                    bad.push(format!(
                        "{f}[{j}]: no directory role `{role}`; use one of {}",
                        role_hint()
                    ));
                }
            }
            dup_in(list, &f, &mut bad);
        }
        for (j, part) in su.licences.iter().enumerate() {
            if !known_sku(part) {
                let mut parts: Vec<&str> = d
                    .skus
                    .iter()
                    .map(|x| x.part_number.as_str())
                    .chain(seed.skus.iter().map(|x| x.sku_part_number.as_str()))
                    .collect();
                parts.sort_unstable();
                bad.push(format!(
                    "users[{i}].licences[{j}]: no SKU `{part}` (licences name a SKU's skuPartNumber); use one of {} or seed it under skus",
                    if parts.is_empty() { "none yet".to_string() } else { parts.join(", ") }
                ));
            }
        }
        dup_in(&su.licences, &format!("users[{i}].licences"), &mut bad);
    }
    let seeded_user = |name: &str| {
        let name = name.trim();
        let name = name
            .strip_prefix("smtp:")
            .or_else(|| name.strip_prefix("SMTP:"))
            .unwrap_or(name);
        seed.users.iter().any(|u| {
            let alias = u.mail_nickname.clone().unwrap_or_else(|| {
                u.user_principal_name
                    .split('@')
                    .next()
                    .unwrap_or("")
                    .to_string()
            });
            eq(&u.user_principal_name, name)
                || u.id.as_deref().is_some_and(|id| eq(id, name))
                || eq(&alias, name)
                || u.mail.as_deref().is_some_and(|m| eq(m, name))
                || u.proxy_addresses
                    .iter()
                    .any(|p| p.split_once(':').is_some_and(|(_, a)| eq(a, name)))
        })
    };

    // Role groups.
    let mut groups: Vec<String> = Vec::new();
    for (i, g) in seed.role_groups.iter().enumerate() {
        let name = g.display_name.trim();
        if name.is_empty() {
            bad.push(format!(
                "roleGroups[{i}].displayName: missing; every role group needs a name"
            ));
        } else if d.role_groups.iter().any(|x| eq(&x.display_name, name)) {
            bad.push(format!(
                "roleGroups[{i}].displayName: the tenant already has a role group {name}; leave it out or pick another name"
            ));
        } else if groups.iter().any(|x| eq(x, name)) {
            bad.push(format!(
                "roleGroups[{i}].displayName: {name} is seeded twice; seed it once"
            ));
        }
        for (j, m) in g.members.iter().enumerate() {
            // As applying resolves them: a user by UPN or id, or a role group by name.
            let known = d.find_user_id(m).is_some()
                || seed.users.iter().any(|u| {
                    eq(&u.user_principal_name, m) || u.id.as_deref().is_some_and(|id| eq(id, m))
                })
                || d.role_groups.iter().any(|x| eq(&x.display_name, m))
                || groups.iter().any(|x| eq(x, m));
            if !known {
                bad.push(format!(
                    "roleGroups[{i}].members[{j}]: `{m}` is neither a user (UPN or id) nor a role group seeded before this one"
                ));
            }
        }
        dup_in(&g.members, &format!("roleGroups[{i}].members"), &mut bad);
        for (j, role) in g.roles.iter().enumerate() {
            if !known_role(role) {
                bad.push(format!(
                    "roleGroups[{i}].roles[{j}]: no directory role `{role}`; use one of {}",
                    role_hint()
                ));
            }
        }
        dup_in(&g.roles, &format!("roleGroups[{i}].roles"), &mut bad);
        groups.push(name.to_string());
    }

    // Devices.
    let mut device_ids = HashSet::new();
    for (i, s) in seed.devices.iter().enumerate() {
        if s.user.trim().is_empty() {
            bad.push(format!(
                "devices[{i}].user: missing; name the owner's UPN (a user already there or seeded with the device)"
            ));
        } else if crate::exchange::find_recipient(d, &s.user).is_none() && !seeded_user(&s.user) {
            bad.push(format!(
                "devices[{i}].user: no user `{}`; seed the user (in this seed or before) or name an existing one by UPN",
                s.user
            ));
        }
        if !s.device_id.is_empty() {
            let id = s.device_id.to_ascii_lowercase();
            if d.exo.devices.iter().any(|x| eq(&x.device_id, &id)) {
                bad.push(format!(
                    "devices[{i}].deviceId: the tenant already has a device {}; leave it out to have one generated",
                    s.device_id
                ));
            } else if !device_ids.insert(id) {
                bad.push(format!(
                    "devices[{i}].deviceId: {} is seeded twice; give each device its own",
                    s.device_id
                ));
            }
        }
    }

    if bad.is_empty() {
        Ok(())
    } else {
        let more = bad.len().saturating_sub(20);
        bad.truncate(20);
        if more > 0 {
            bad.push(format!("... and {more} more"));
        }
        Err(format!(
            "the seed was not applied (nothing changed): {}",
            bad.join("; ")
        ))
    }
}
