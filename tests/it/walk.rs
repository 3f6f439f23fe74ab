//! The safety invariants, checked by a model-based walk on Samba and the emulator.
//!
//! A seeded random sequence of real changes — users created, disabled, enabled,
//! deleted, renamed, moved out of the synced OU and back, added to and removed from
//! Domain Admins, passwords changed (through the hook's operation), plans edited by hand,
//! licences exhausted, the service stopped and opened again, faults injected — each
//! followed by a sync round; after every round the invariants are checked against the
//! directory and the tenant as they are:
//!
//! 1. no protected or out-of-scope local user has an active link or an enabled online
//!    account carrying its anchor;
//! 2. every in-scope, enabled, unprotected linked user's online account is enabled;
//! 3. every disabled, expired, deleted or out-of-scope linked user's online account is
//!    blocked or deleted;
//! 4. no duplicate: one online account per anchor, one link per online account;
//! 5. no kept password for a protected or out-of-scope user, or one who is gone;
//! 6. the results files agree with the tenant (every account a run says it created
//!    exists, with the anchor of the user it names).
//!
//! The suite walks seed 20261206 for 24 steps; `O365_WALK_SEED` walks another (the seed is
//! printed at the start), `O365_WALK_STEPS` sets the length (RELIABILITY.md has the
//! figures of long runs).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use o365_essentials::SecretString;
use o365_essentials::config::{DirectoryConfig, IntegrationConfig};
use o365_essentials::engine::{BulkCreateRequest, Control, Integration, SyncOptions};
use o365_essentials::ldap::LdapDirectory;
use o365_essentials::model::{
    LicenceAssignment, LinkState, LocalUser, NewLocalUser, ObjectGuid, Outcome, PlanAction,
    RunResults,
};
use o365_essentials::ports::Directory;
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::samba::{BASE_DN, REALM, Samba};

const PASSWORD: &str = "Zebra-Walk-2026!";

struct World {
    samba: &'static Samba,
    /// Bound as the administrator, scope-free: the walk's own hands in the directory.
    hands: LdapDirectory,
    ou: String,
    emu: Emulator,
    config: IntegrationConfig,
    integration: Integration,
    made: Vec<ObjectGuid>,
    next_user: usize,
    results: Vec<PathBuf>,
    rng: rand_chacha::ChaCha8Rng,
    tag: String,
}

impl World {
    fn ldif(&self, text: &str) {
        self.samba.ldif("ldapmodify", text);
    }

    async fn local(&self, g: ObjectGuid) -> Option<LocalUser> {
        match self.hands.user(g).await {
            Ok(u) => Some(u),
            Err(e) if e.code() == o365_essentials::ErrorCode::NotFound => None,
            Err(e) => panic!("{e}"),
        }
    }

    async fn alive(&self) -> Vec<LocalUser> {
        let mut out = Vec::new();
        for g in &self.made {
            if let Some(u) = self.local(*g).await {
                out.push(u);
            }
        }
        out
    }

    async fn pick(&mut self) -> Option<LocalUser> {
        let alive = self.alive().await;
        if alive.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..alive.len());
        Some(alive[i].clone())
    }

    async fn new_user(&mut self) -> LocalUser {
        self.next_user += 1;
        let sam = format!("w{}u{}", self.tag, self.next_user);
        let u = self
            .hands
            .create_user(
                &NewLocalUser {
                    sam_account_name: sam.clone(),
                    user_principal_name: format!("{sam}@{REALM}"),
                    display_name: format!("Walker {sam}"),
                    given_name: Some("Walker".into()),
                    surname: Some(sam.clone()),
                    ou: Some(self.ou.clone()),
                    ..Default::default()
                },
                &SecretString::from(PASSWORD),
            )
            .await
            .unwrap();
        self.made.push(u.guid);
        u
    }

    fn sku(&self) -> uuid::Uuid {
        "4b585984-651b-448a-9e53-3b10f069cf7f".parse().unwrap()
    }

    /// A bulk create for everyone without an account, with the small licence.
    async fn bulk_create(&mut self, allow_unlicensed: bool) {
        let plan = self
            .integration
            .accounts()
            .plan_bulk_create(
                &self.integration.accounts().snapshot().await.unwrap(),
                &BulkCreateRequest {
                    domain: "contoso.onmicrosoft.com".into(),
                    licences: vec![LicenceAssignment {
                        sku_id: self.sku(),
                        disabled_plans: vec![],
                    }],
                    allow_unlicensed,
                    ..Default::default()
                },
            )
            .unwrap();
        self.apply(&plan).await;
    }

    async fn apply(&mut self, plan: &o365_essentials::model::Plan) {
        match self
            .integration
            .accounts()
            .apply(plan, &Control::none())
            .await
        {
            Ok(r) => self.keep_results(&r),
            Err(e) => eprintln!("walk: apply failed as a whole: {e}"),
        }
    }

    fn keep_results(&mut self, r: &RunResults) {
        let folder = self.config.results_folder.clone().unwrap();
        let (json, _) = o365_essentials::engine::write_results(r, &folder).unwrap();
        self.results.push(json);
    }

    /// A sync round that may meet faults: retried until one goes through.
    async fn round(&mut self) {
        let options = SyncOptions {
            allow_beyond_threshold: true,
            ..Default::default()
        };
        for attempt in 0..6 {
            match self.integration.sync().run_sync_once(&options).await {
                Ok(r) if r.results.items.iter().all(|i| i.outcome != Outcome::Failed) => return,
                Ok(r) => eprintln!(
                    "walk: round {attempt} had failures: {:?}",
                    r.results
                        .items
                        .iter()
                        .filter(|i| i.outcome == Outcome::Failed)
                        .map(|i| (&i.local_user, i.error_code, &i.service_message))
                        .collect::<Vec<_>>()
                ),
                Err(e) => eprintln!("walk: round {attempt} failed: {e}"),
            }
        }
        panic!("six sync rounds in a row failed");
    }

    async fn check(&self, step: usize) {
        let policy = self.integration.policy();
        let state = crate::graph::admin(&self.emu, "GET", "/state", None).await;
        let online: Vec<&Value> = state["users"].as_array().unwrap().iter().collect();
        let mut by_anchor: HashMap<String, Vec<&Value>> = HashMap::new();
        for a in &online {
            if let Some(x) = a["onPremisesImmutableId"].as_str() {
                by_anchor.entry(x.to_string()).or_default().push(a);
            }
        }
        for (anchor, accounts) in &by_anchor {
            assert_eq!(
                accounts.len(),
                1,
                "step {step}: two accounts carry {anchor}"
            );
        }
        let links = self
            .integration
            .accounts()
            .linked_users(None)
            .await
            .unwrap();
        let mut linked_online = HashSet::new();
        for l in &links {
            assert!(
                linked_online.insert(l.link.online_id.0.clone()),
                "step {step}: {} is linked twice",
                l.link.online_id
            );
        }
        let now = time::OffsetDateTime::now_utc();
        let kept: HashSet<ObjectGuid> = self
            .integration
            .passwords()
            .kept_password_users()
            .unwrap()
            .into_iter()
            .collect();
        for g in &self.made {
            let local = match self.local(*g).await {
                // The gate's view: scope as the integration's directory sees it.
                Some(_) => Some(self.integration.directory().user(*g).await.unwrap()),
                None => None,
            };
            let link = links
                .iter()
                .find(|l| l.link.local_guid == *g)
                .map(|l| &l.link);
            let account = link
                .and_then(|l| online.iter().find(|a| a["id"] == json!(l.online_id.0)))
                .or_else(|| {
                    local
                        .as_ref()
                        .and_then(|u| by_anchor.get(&u.anchor().0))
                        .and_then(|v| v.first())
                });
            let enabled_online = account.is_some_and(|a| a["accountEnabled"] == json!(true));
            let who = local
                .as_ref()
                .map(|u| u.sam_account_name.clone())
                .unwrap_or_else(|| g.to_string());
            match &local {
                None => {
                    assert!(
                        account.is_none() || !enabled_online,
                        "step {step}: {who} was deleted locally but its account is open"
                    );
                    assert!(
                        !kept.contains(g),
                        "step {step}: a password is kept for {who}, gone"
                    );
                }
                Some(u) => {
                    let refused = policy.local_refusal(u);
                    if let Some(r) = &refused {
                        assert!(
                            !enabled_online,
                            "step {step}: {who} is protected ({}) but its account is open",
                            r.message
                        );
                        assert!(
                            link.is_none_or(|l| l.state != LinkState::Active),
                            "step {step}: {who} is protected but its link is active"
                        );
                        assert!(
                            !kept.contains(g),
                            "step {step}: a password is kept for {who}, protected"
                        );
                    } else if link.is_some_and(|l| l.state == LinkState::Suspended) {
                        assert!(
                            !u.active_at(now),
                            "step {step}: {who} may be synced and is active, but its link stays suspended"
                        );
                    } else if let Some(l) = link.filter(|l| l.state == LinkState::Active) {
                        assert!(
                            account.is_some(),
                            "step {step}: {who}'s linked account is gone"
                        );
                        assert_eq!(
                            enabled_online,
                            u.active_at(now),
                            "step {step}: {who} is {} locally, {} online",
                            if u.active_at(now) {
                                "active"
                            } else {
                                "disabled"
                            },
                            if enabled_online { "open" } else { "blocked" }
                        );
                        let _ = l;
                    }
                }
            }
        }
        // Results files agree with the tenant.
        for file in &self.results {
            let r: RunResults =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            for i in r.items.iter().filter(|i| {
                i.outcome == Outcome::Succeeded
                    && i.action == o365_essentials::model::ItemAction::CreateAccount
            }) {
                let id = i.online_id.as_ref().unwrap();
                let deleted_since = self.local(i.local_guid).await.is_none();
                let found = online.iter().find(|a| a["id"] == json!(id.0));
                assert!(
                    found.is_some() || deleted_since,
                    "step {step}: {} says {} was created, the tenant has no such account",
                    file.display(),
                    i.local_user
                );
                if let Some(a) = found {
                    assert_eq!(
                        a["onPremisesImmutableId"],
                        json!(i.local_guid.anchor().0),
                        "step {step}: the results file names another user's account"
                    );
                }
            }
        }
    }
}

fn config(
    samba: &Samba,
    emu: &Emulator,
    dir: &std::path::Path,
    ou: &str,
    exclude: &str,
) -> IntegrationConfig {
    let mut ldap = samba.config();
    ldap.base_dns = vec![ou.to_string()];
    IntegrationConfig {
        directory: DirectoryConfig::Ldap(ldap),
        tenant: crate::graph::config_for(emu),
        store: dir.join("state.db"),
        password_key: Some(dir.join("keys/password.key")),
        results_folder: Some(dir.join("results")),
        custom_domain: None,
        usage_location: Some("GB".into()),
        default_licences: vec![],
        sync: Default::default(),
        dns: None,
        concurrency: 4,
        password_capture: None,
        exclude_users: vec![exclude.to_string()],
        allow_protected: Vec::new(),
    }
}

#[tokio::test]
async fn the_safety_invariants_hold_after_every_round_of_a_random_walk() {
    let seed: u64 = std::env::var("O365_WALK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        // The suite walks one fixed seed (a failure then replays exactly); other seeds
        // are walked by hand with O365_WALK_SEED (RELIABILITY.md).
        .unwrap_or(20261206);
    let steps: usize = std::env::var("O365_WALK_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    eprintln!("walk: O365_WALK_SEED={seed} O365_WALK_STEPS={steps}");
    let samba = crate::samba::shared();
    let tag = format!("{:x}", seed % 0xfffff);
    let ou = format!("OU=Walk{tag},{BASE_DN}");
    let _ = samba.samba_tool(&["ou", "create", &ou]).output();
    let mut cfg = EmulatorConfig::default();
    // A small licence, so bulk creates run out of seats.
    cfg.seed.skus[1].enabled = 5;
    let emu = Emulator::start(cfg).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for d in ["keys", "results"] {
        std::fs::create_dir_all(tmp.path().join(d)).unwrap();
    }
    let exclude = format!("w{tag}u2");
    let config = config(samba, &emu, tmp.path(), &ou, &exclude);
    let integration = Integration::open(config.clone()).unwrap();
    integration.integrate().await.unwrap();
    let mut w = World {
        samba,
        hands: LdapDirectory::new(samba.config()).unwrap(),
        ou: ou.clone(),
        emu,
        config,
        integration,
        made: Vec::new(),
        next_user: 0,
        results: Vec::new(),
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        tag,
    };
    for _ in 0..6 {
        w.new_user().await;
    }
    w.bulk_create(true).await;
    w.round().await;
    w.check(0).await;
    let mut kinds: HashMap<&'static str, usize> = HashMap::new();
    let mut version = 10u64;
    for step in 1..=steps {
        let kind = match w.rng.random_range(0..13) {
            0 => "create",
            1 => "disable",
            2 => "enable",
            3 => "delete",
            4 => "rename",
            5 => "move_out",
            6 => "move_in",
            7 => "domain_admins",
            8 => "leave_domain_admins",
            9 => "password",
            10 => "edited_plan",
            11 => "reopen",
            _ => "faults",
        };
        *kinds.entry(kind).or_default() += 1;
        eprintln!("walk: step {step}: {kind}");
        match kind {
            "create" => {
                w.new_user().await;
                let unlicensed = w.rng.random_bool(0.5);
                w.bulk_create(unlicensed).await;
            }
            "disable" | "enable" => {
                if let Some(u) = w.pick().await {
                    w.hands.set_enabled(u.guid, kind == "enable").await.unwrap();
                }
            }
            "delete" => {
                if let Some(u) = w.pick().await {
                    w.hands.delete_user(u.guid).await.unwrap();
                }
            }
            "rename" => {
                if let Some(u) = w.pick().await {
                    w.ldif(&format!(
                        "dn: {}\nchangetype: modify\nreplace: displayName\ndisplayName: Renamed {} {step}\n",
                        u.dn, u.sam_account_name
                    ));
                }
            }
            "move_out" | "move_in" => {
                if let Some(u) = w.pick().await {
                    let to = if kind == "move_out" {
                        format!("CN=Users,{BASE_DN}")
                    } else {
                        w.ou.clone()
                    };
                    let rdn = u.dn.split(",").next().unwrap().to_string();
                    if !u.dn.ends_with(&format!(",{to}")) {
                        w.ldif(&format!(
                            "dn: {}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 1\nnewsuperior: {to}\n",
                            u.dn
                        ));
                    }
                }
            }
            "domain_admins" | "leave_domain_admins" => {
                if let Some(u) = w.pick().await {
                    let op = if kind == "domain_admins" {
                        "add"
                    } else {
                        "delete"
                    };
                    let da = format!("CN=Domain Admins,CN=Users,{BASE_DN}");
                    let member = w
                        .hands
                        .user(u.guid)
                        .await
                        .unwrap()
                        .member_of
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(&da));
                    if member == (op == "delete") {
                        w.ldif(&format!(
                            "dn: {da}\nchangetype: modify\n{op}: member\nmember: {}\n",
                            u.dn
                        ));
                    }
                }
            }
            "password" => {
                if let Some(u) = w.pick().await {
                    use base64::Engine as _;
                    version += 1;
                    let pw = format!("Walk-{step}-Pass-2027!");
                    w.hands
                        .set_password(u.guid, &SecretString::from(pw.clone()))
                        .await
                        .unwrap();
                    let ldif = format!(
                        "dn: {}\nobjectGUID: {}\nsAMAccountName: {}\nmsDS-KeyVersionNumber: {version}\nvirtualClearTextUTF8:: {}\n",
                        u.dn,
                        u.guid,
                        u.sam_account_name,
                        base64::engine::general_purpose::STANDARD.encode(&pw)
                    );
                    w.integration
                        .passwords()
                        .capture_password(&SecretString::from(ldif))
                        .await
                        .unwrap();
                }
            }
            "edited_plan" => {
                // A new user's plan, edited to create an account for someone protected
                // or out of scope (or the domain Administrator).
                w.new_user().await;
                let plan = w
                    .integration
                    .accounts()
                    .plan_bulk_create(
                        &w.integration.accounts().snapshot().await.unwrap(),
                        &BulkCreateRequest {
                            domain: "contoso.onmicrosoft.com".into(),
                            allow_unlicensed: true,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                let admin = w.hands.find_user("Administrator").await.unwrap().unwrap();
                let alive = w.alive().await;
                let mut victims: Vec<LocalUser> = vec![w.hands.user(admin.guid).await.unwrap()];
                for u in alive {
                    let seen = w.integration.directory().user(u.guid).await.unwrap();
                    if w.integration.policy().local_refusal(&seen).is_some() {
                        victims.push(seen);
                    }
                }
                let victim = victims[w.rng.random_range(0..victims.len())].clone();
                let mut edited = plan.clone();
                edited.id = uuid::Uuid::new_v4();
                for item in &mut edited.items {
                    if let PlanAction::CreateAccount { local, anchor, .. } = &mut item.action {
                        local.guid = victim.guid;
                        local.sam_account_name = victim.sam_account_name.clone();
                        local.usn_changed = victim.usn_changed;
                        *anchor = victim.anchor();
                    }
                }
                let r = w
                    .integration
                    .accounts()
                    .apply(&edited, &Control::none())
                    .await
                    .unwrap();
                for i in r
                    .items
                    .iter()
                    .filter(|i| i.action == o365_essentials::model::ItemAction::CreateAccount)
                {
                    assert_ne!(
                        i.outcome,
                        Outcome::Succeeded,
                        "step {step}: an edited plan created {}",
                        victim.sam_account_name
                    );
                }
                w.keep_results(&r);
                w.apply(&plan).await;
            }
            "reopen" => {
                // The service stops and starts again: a new engine on the same store.
                let fresh = Integration::open(w.config.clone()).unwrap();
                w.integration = fresh;
            }
            _ => {
                let rules = json!({"rules": [
                    {"path": "/v1.0/users/*", "method": "PATCH", "kind": "status", "status": 503, "limit": 2},
                    {"path": "/v1.0/users/*", "method": "DELETE", "kind": "lost_response", "limit": 1}
                ]});
                crate::graph::admin(&w.emu, "PUT", "/faults", Some(rules)).await;
            }
        }
        w.round().await;
        w.check(step).await;
    }
    eprintln!(
        "walk: seed {seed}: {steps} steps, {} users, kinds {kinds:?}",
        w.made.len()
    );
}
