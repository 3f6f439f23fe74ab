//! Who may exist online, on Samba and the emulator: protected local users (privileged by
//! SID, nested and primary groups, the bind account, configured exclusions, scope) and
//! online role holders (any role, eligible, through role-assignable groups) are never
//! planned, created, linked, captured or synced; a hand-edited plan meets the same gate;
//! leavers are found every round; kept passwords only for those who belong online.

use std::sync::Arc;

use o365_essentials::config::{DirectoryConfig, IntegrationConfig};
use o365_essentials::engine::guard::GuardRule;
use o365_essentials::engine::{BulkCreateRequest, Control, Integration, SyncOptions};
use o365_essentials::ldap::LdapDirectory;
use o365_essentials::model::{
    ItemAction, LinkState, LocalUser, NewLocalUser, Outcome, PlanAction, PlanReason, SkipReason,
};
use o365_essentials::ports::{Directory, Tenant};
use o365_essentials::{ErrorCode, SecretString};
use o365_essentials_emulator::config::{SeedRoleGroup, SeedUser};
use o365_essentials_emulator::{Emulator, EmulatorConfig};

use crate::samba::{BASE_DN, REALM, Samba};

const PASSWORD: &str = "Zebra-Safe-2026!";

/// An OU of the shared DC (made once per name) and users in it.
fn ou(samba: &Samba, name: &str) -> String {
    let dn = format!("OU={name},{BASE_DN}");
    let mut c = samba.samba_tool(&["ou", "create", &dn]);
    let _ = c.output();
    dn
}

fn tool(samba: &Samba, args: &[&str]) {
    let out = samba.samba_tool(args).output().unwrap();
    assert!(
        out.status.success(),
        "samba-tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn user(dir: &LdapDirectory, sam: &str, ou: Option<&str>) -> LocalUser {
    dir.create_user(
        &NewLocalUser {
            sam_account_name: sam.into(),
            user_principal_name: format!("{sam}@{REALM}"),
            display_name: format!("Safe {sam}"),
            given_name: Some("Safe".into()),
            surname: Some(sam.into()),
            ou: ou.map(str::to_string),
            ..Default::default()
        },
        &SecretString::from(PASSWORD),
    )
    .await
    .unwrap()
}

struct Opened {
    emu: Emulator,
    _tmp: tempfile::TempDir,
    integration: Integration,
    dir: Arc<LdapDirectory>,
}

/// An integration of `samba` (scoped to `base`, bound as `bind`) with a fresh emulator.
async fn open(
    samba: &Samba,
    emu_cfg: EmulatorConfig,
    bind: Option<(&str, &str)>,
    base: Option<&str>,
    exclude: &[&str],
) -> Opened {
    let mut ldap = samba.config();
    if let Some((b, p)) = bind {
        ldap.bind = b.into();
        ldap.password = SecretString::from(p.to_string());
    }
    ldap.base_dns = base.map(|b| vec![b.to_string()]).unwrap_or_default();
    let dir = Arc::new(LdapDirectory::new(ldap.clone()).unwrap());
    let emu = Emulator::start(emu_cfg).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = IntegrationConfig {
        directory: DirectoryConfig::Ldap(ldap),
        tenant: crate::graph::config_for(&emu),
        store: tmp.path().join("state.db"),
        password_key: Some(tmp.path().join("keys").join("password.key")),
        results_folder: Some(tmp.path().to_path_buf()),
        custom_domain: None,
        usage_location: Some("GB".into()),
        default_licences: vec![],
        sync: Default::default(),
        dns: None,
        concurrency: 4,
        password_capture: None,
        exclude_users: exclude.iter().map(|s| s.to_string()).collect(),
        allow_protected: Vec::new(),
    };
    std::fs::create_dir_all(tmp.path().join("keys")).unwrap();
    let integration = Integration::open(config).unwrap();
    integration.integrate().await.unwrap();
    Opened {
        emu,
        _tmp: tmp,
        integration,
        dir,
    }
}

impl Opened {
    async fn online_upns(&self) -> Vec<String> {
        let state = crate::graph::admin(&self.emu, "GET", "/state", None).await;
        state["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
            .collect()
    }

    async fn anchors_online(&self) -> Vec<String> {
        let state = crate::graph::admin(&self.emu, "GET", "/state", None).await;
        state["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u["onPremisesImmutableId"].as_str().map(str::to_string))
            .collect()
    }

    async fn enabled_online(&self, upn: &str) -> bool {
        crate::graph::tenant_for(&self.emu)
            .account(upn)
            .await
            .unwrap()
            .account_enabled
    }

    async fn link_state(&self, sam: &str) -> Option<LinkState> {
        self.integration
            .accounts()
            .linked_users(Some(sam))
            .await
            .ok()
            .and_then(|v| v.first().map(|l| l.link.state))
    }

    async fn sync(&self) -> o365_essentials::engine::SyncReport {
        self.integration
            .sync()
            .run_sync_once(&SyncOptions::default())
            .await
            .unwrap()
    }
}

/// The hook's LDIF for a password change of `u` (as `samba-tool user syncpasswords`
/// hands it over, with the cleartext attribute).
fn hook_ldif(u: &LocalUser, version: u64, password: &str) -> SecretString {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(password);
    SecretString::from(format!(
        "dn: {}\nobjectGUID: {}\nsAMAccountName: {}\nmsDS-KeyVersionNumber: {version}\nvirtualClearTextUTF8:: {b64}\n",
        u.dn, u.guid, u.sam_account_name
    ))
}

#[tokio::test]
async fn protected_and_out_of_scope_users_are_never_planned_created_or_captured_on_samba() {
    let samba = crate::samba::shared();
    let staff = ou(samba, "SafeStaff");
    let admin_dir = LdapDirectory::new(samba.config()).unwrap();
    let ann = user(&admin_dir, "safe.ann", Some(&staff)).await;
    let carl = user(&admin_dir, "safe.carl", Some(&staff)).await;
    let bob = user(&admin_dir, "safe.bob", Some(&staff)).await;
    let nest = user(&admin_dir, "safe.nest", Some(&staff)).await;
    let svc = user(&admin_dir, "safe.svc", Some(&staff)).await;
    let kiosk = user(&admin_dir, "safe.kiosk", Some(&staff)).await;
    let outside = user(&admin_dir, "safe.out", None).await;
    // bob in Domain Admins; nest through a group nested in Backup Operators; the bind
    // account in Domain Admins, as docs once suggested.
    tool(
        samba,
        &["group", "addmembers", "Domain Admins", "safe.bob,safe.svc"],
    );
    tool(samba, &["group", "add", "safe-backup-team"]);
    tool(
        samba,
        &[
            "group",
            "addmembers",
            "Backup Operators",
            "safe-backup-team",
        ],
    );
    tool(
        samba,
        &["group", "addmembers", "safe-backup-team", "safe.nest"],
    );

    let o = open(
        samba,
        EmulatorConfig::default(),
        Some((&format!("safe.svc@{REALM}"), PASSWORD)),
        Some(&staff),
        &["safe.kiosk"],
    )
    .await;
    // What the directory says, read by the engine.
    let bob_now = o.dir.user(bob.guid).await.unwrap();
    assert!(
        bob_now
            .standing
            .privileged_groups
            .iter()
            .any(|g| g.starts_with("Domain Admins (S-1-5-21-") && g.ends_with("-512)")),
        "{:?}",
        bob_now.standing
    );
    let nest_now = o.dir.user(nest.guid).await.unwrap();
    assert!(
        nest_now
            .standing
            .privileged_groups
            .iter()
            .any(|g| g == "Backup Operators (S-1-5-32-551)"),
        "nested membership counts: {:?}",
        nest_now.standing
    );
    assert!(
        o.dir
            .user(outside.guid)
            .await
            .unwrap()
            .standing
            .out_of_scope
    );
    let admin = o.dir.find_user("Administrator").await.unwrap().unwrap();
    assert_eq!(
        o.dir.user(admin.guid).await.unwrap().standing.rid,
        Some(500)
    );

    // The preview: only ann and carl; each protected user with its rule.
    let snapshot = o.integration.accounts().snapshot().await.unwrap();
    let listed: Vec<&str> = snapshot
        .users
        .iter()
        .map(|u| u.sam_account_name.as_str())
        .collect();
    assert!(!listed.contains(&"safe.out"), "out of scope: {listed:?}");
    let plan = o
        .integration
        .accounts()
        .plan_bulk_create(&snapshot, &BulkCreateRequest::default())
        .unwrap();
    let planned: Vec<&str> = plan
        .items
        .iter()
        .map(|i| match &i.action {
            PlanAction::CreateAccount { local, .. } => local.sam_account_name.as_str(),
            _ => "",
        })
        .collect();
    assert_eq!(planned, ["safe.ann", "safe.carl"], "{plan:#?}");
    let rule_of = |sam: &str| {
        plan.skipped
            .iter()
            .find(|s| s.sam_account_name == sam)
            .map(|s| (s.reason, s.rule))
    };
    let protected = |r: GuardRule| Some((SkipReason::Protected, Some(r)));
    assert_eq!(rule_of("safe.bob"), protected(GuardRule::PrivilegedGroup));
    assert_eq!(rule_of("safe.nest"), protected(GuardRule::PrivilegedGroup));
    assert_eq!(rule_of("safe.svc"), protected(GuardRule::BindAccount));
    assert_eq!(
        rule_of("safe.kiosk"),
        protected(GuardRule::ExcludedByConfiguration)
    );

    // The attack: the domain Administrator's GUID, anchor, sAMAccountName and current
    // uSNChanged swapped into ann's item. Then each other field edited, item by item.
    let item_of = |sam: &str| {
        plan.items
            .iter()
            .find(|i| matches!(&i.action, PlanAction::CreateAccount { local, .. } if local.sam_account_name == sam))
            .unwrap()
            .clone()
    };
    let swap = |item: &mut o365_essentials::model::PlanItem, who: &LocalUser| {
        if let PlanAction::CreateAccount { local, anchor, .. } = &mut item.action {
            local.guid = who.guid;
            local.sam_account_name = who.sam_account_name.clone();
            local.usn_changed = who.usn_changed;
            *anchor = who.anchor();
        }
    };
    let mut edited = plan.clone();
    edited.items.clear();
    let mut attack = item_of("safe.ann");
    swap(&mut attack, &o.dir.user(admin.guid).await.unwrap());
    edited.items.push(attack);
    for who in [&bob, &svc, &kiosk, &outside] {
        let mut i = item_of("safe.ann");
        swap(&mut i, &o.dir.user(who.guid).await.unwrap());
        edited.items.push(i);
    }
    let mut wrong_anchor = item_of("safe.ann");
    if let PlanAction::CreateAccount { anchor, .. } = &mut wrong_anchor.action {
        *anchor = carl.anchor();
    }
    edited.items.push(wrong_anchor);
    let mut wrong_name = item_of("safe.carl");
    if let PlanAction::CreateAccount { local, .. } = &mut wrong_name.action {
        local.sam_account_name = "safe.ann".into();
    }
    edited.items.push(wrong_name);
    let mut old_usn = item_of("safe.carl");
    if let PlanAction::CreateAccount { local, .. } = &mut old_usn.action {
        local.usn_changed -= 1;
    }
    edited.items.push(old_usn);
    let mut bad_upn = item_of("safe.carl");
    if let PlanAction::CreateAccount {
        user_principal_name,
        ..
    } = &mut bad_upn.action
    {
        *user_principal_name = "admin@contoso.onmicrosoft.com".into();
    }
    edited.items.push(bad_upn);
    for (n, i) in edited.items.iter_mut().enumerate() {
        i.seq = n as u32 + 1;
    }
    let before = o.online_upns().await.len();
    let results = o
        .integration
        .accounts()
        .apply(&edited, &Control::none())
        .await
        .unwrap();
    let codes: Vec<(Outcome, Option<ErrorCode>)> = results
        .items
        .iter()
        .map(|i| (i.outcome, i.error_code))
        .collect();
    use ErrorCode::*;
    let skipped = |c| (Outcome::Skipped, Some(c));
    assert_eq!(
        codes,
        [
            skipped(ProtectedAccount),              // the Administrator
            skipped(ProtectedAccount),              // a Domain Admin
            skipped(ProtectedAccount),              // the bind account
            skipped(ProtectedAccount),              // excluded
            skipped(OutOfScope),                    // outside the synced OU
            skipped(PlanStale),                     // another user's anchor
            skipped(PlanStale),                     // a name that is not the user's
            skipped(PlanStale),                     // changed since planning
            (Outcome::Failed, Some(AlreadyExists)), // a taken online ID
        ],
        "{results:#?}"
    );
    assert!(
        results.items[0]
            .service_message
            .as_deref()
            .unwrap()
            .contains("refused (built_in_account)")
            || results.items[0]
                .service_message
                .as_deref()
                .unwrap()
                .contains("refused (reserved_rid)"),
        "{:?}",
        results.items[0]
    );
    assert_eq!(o.online_upns().await.len(), before, "nothing was written");
    assert!(!o.anchors_online().await.contains(&admin.anchor().0));

    // The plan as made: ann and carl get accounts.
    let made = o
        .integration
        .accounts()
        .apply(&plan, &Control::none())
        .await
        .unwrap();
    assert_eq!(made.count(Outcome::Succeeded), 2, "{made:#?}");

    // A Domain Admin's and an out-of-scope user's password changes are neither queued
    // nor kept; an ordinary unlinked user's is kept (for the account a bulk create makes).
    for (who, expect) in [
        (&bob, "protected"),
        (&outside, "protected"),
        (&svc, "protected"),
        (&ann, "queued"),
    ] {
        let r = o
            .integration
            .passwords()
            .capture_password(&hook_ldif(who, 7, "Autumn-Safe-2027!"))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(r.outcome).unwrap(),
            expect,
            "{}",
            who.sam_account_name
        );
    }
    let kept = o.integration.passwords().kept_password_users().unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    assert!(
        o.integration
            .passwords()
            .password_problems()
            .unwrap()
            .iter()
            .all(|p| p.local_guid == ann.guid)
    );

    // Leavers, found by the round whatever the cursor says.
    // carl is deleted before the first sync round: his account is deleted at it.
    admin_dir.delete_user(carl.guid).await.unwrap();
    // ann joins Domain Admins: her account is blocked, her link suspended.
    tool(samba, &["group", "addmembers", "Domain Admins", "safe.ann"]);
    let first = o.sync().await;
    let did = |g, a: ItemAction| {
        first
            .results
            .items
            .iter()
            .any(|i| i.local_guid == g && i.action == a && i.outcome == Outcome::Succeeded)
    };
    assert!(
        did(carl.guid, ItemAction::Delete),
        "{:#?}",
        first.results.items
    );
    assert!(
        did(ann.guid, ItemAction::Disable),
        "{:#?}",
        first.results.items
    );
    assert!(
        first
            .results
            .items
            .iter()
            .any(|i| i.reason == Some(PlanReason::ProtectedLocally))
    );
    let ann_upn = "safe.ann@contoso.onmicrosoft.com".to_string();
    assert!(!o.enabled_online(&ann_upn).await);
    assert_eq!(o.link_state("safe.ann").await, Some(LinkState::Suspended));
    // While protected, nothing of hers is sent, and no round repeats the block.
    let r = o
        .integration
        .passwords()
        .capture_password(&hook_ldif(&ann, 8, "Winter-Safe-2027!"))
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(r.outcome).unwrap(), "protected");
    assert!(o.sync().await.results.items.is_empty());
    // She leaves Domain Admins: her account is open again.
    tool(
        samba,
        &["group", "removemembers", "Domain Admins", "safe.ann"],
    );
    let back = o.sync().await;
    assert!(
        back.results
            .items
            .iter()
            .any(|i| i.local_guid == ann.guid && i.action == ItemAction::Enable),
        "{:#?}",
        back.results.items
    );
    assert!(o.enabled_online(&ann_upn).await);
    assert_eq!(o.link_state("safe.ann").await, Some(LinkState::Active));
    // She moves out of the synced OU: blocked again, as out of scope.
    samba.ldif(
        "ldapmodify",
        &format!(
            "dn: {}\nchangetype: modrdn\nnewrdn: CN=Safe safe.ann\ndeleteoldrdn: 1\nnewsuperior: CN=Users,{BASE_DN}\n",
            o.dir.user(ann.guid).await.unwrap().dn
        ),
    );
    let moved = o.sync().await;
    assert!(
        moved.results.items.iter().any(|i| i.local_guid == ann.guid
            && i.reason == Some(PlanReason::OutOfScopeLocally)
            && i.outcome == Outcome::Succeeded),
        "{:#?}",
        moved.results.items
    );
    assert!(!o.enabled_online(&ann_upn).await);
}

#[tokio::test]
async fn online_role_holders_are_never_matched_linked_or_written_whatever_the_role_is_called() {
    let samba = crate::samba::shared();
    let staff = ou(samba, "SafeRoles");
    let admin_dir = LdapDirectory::new(samba.config()).unwrap();
    // Local users whose names match online accounts holding roles in different ways.
    let names = ["role.reader", "role.eligible", "role.grouped", "role.plain"];
    let mut locals = Vec::new();
    for n in names {
        locals.push(user(&admin_dir, n, Some(&staff)).await);
    }
    let mut cfg = EmulatorConfig::default();
    let seed = |n: &str, roles: &[&str], eligible: &[&str]| SeedUser {
        user_principal_name: format!("{n}@contoso.onmicrosoft.com"),
        display_name: format!("Online {n}"),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        eligible_roles: eligible.iter().map(|r| r.to_string()).collect(),
        usage_location: Some("GB".into()),
        ..Default::default()
    };
    cfg.seed
        .users
        .push(seed("role.reader", &["Global Reader"], &[]));
    cfg.seed
        .users
        .push(seed("role.eligible", &[], &["Global Administrator"]));
    cfg.seed.users.push(seed("role.grouped", &[], &[]));
    cfg.seed.users.push(seed("role.plain", &[], &[]));
    cfg.seed.role_groups.push(SeedRoleGroup {
        display_name: "Helpdesk team".into(),
        members: vec!["role.grouped@contoso.onmicrosoft.com".into()],
        roles: vec![],
    });
    cfg.seed.role_groups.push(SeedRoleGroup {
        display_name: "IT".into(),
        members: vec!["Helpdesk team".into()],
        roles: vec!["Helpdesk Administrator".into()],
    });
    // More role holders than a page, so the last ones are on a later page.
    for i in 0..120 {
        cfg.seed
            .users
            .push(seed(&format!("filler{i}"), &["Reports Reader"], &[]));
    }
    let o = open(samba, cfg, None, Some(&staff), &[]).await;
    let admins = o
        .integration
        .microsoft365()
        .tenant
        .admin_role_holders()
        .await
        .unwrap();
    let holder = |n: &str| {
        admins
            .iter()
            .find(|a| a.user_principal_name.starts_with(n))
            .map(|a| a.roles.clone())
    };
    assert_eq!(holder("role.reader"), Some(vec!["Global Reader".into()]));
    assert_eq!(
        holder("role.eligible"),
        Some(vec!["Global Administrator".into()])
    );
    assert_eq!(
        holder("role.grouped"),
        Some(vec!["Helpdesk Administrator".into()])
    );
    assert_eq!(holder("role.plain"), None);
    assert!(admins.len() >= 123, "all pages read: {}", admins.len());

    let plan = o
        .integration
        .accounts()
        .plan_bulk_create(
            &o.integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                domain: "contoso.onmicrosoft.com".into(),
                allow_soft_match: true,
                ..Default::default()
            },
        )
        .unwrap();
    for n in ["role.reader", "role.eligible", "role.grouped"] {
        assert!(
            plan.skipped
                .iter()
                .any(|s| s.sam_account_name == n && s.reason == SkipReason::AdministratorAccount),
            "{n}: {plan:#?}"
        );
    }
    assert_eq!(plan.items.len(), 1, "only the plain one is soft-matched");
    // By hand too: assign refuses, and a plan edited to link a role holder is refused.
    let reader = crate::graph::tenant_for(&o.emu)
        .account("role.reader@contoso.onmicrosoft.com")
        .await
        .unwrap();
    let e = o
        .integration
        .accounts()
        .assign(locals[0].guid, &reader.id)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ProtectedAccount, "{e}");
    let mut edited = plan.clone();
    if let PlanAction::Link {
        online_id,
        user_principal_name,
        ..
    } = &mut edited.items[0].action
    {
        *online_id = reader.id.clone();
        *user_principal_name = reader.user_principal_name.clone();
    }
    let r = o
        .integration
        .accounts()
        .apply(&edited, &Control::none())
        .await
        .unwrap();
    assert_eq!(
        (r.items[0].outcome, r.items[0].error_code),
        (Outcome::Skipped, Some(ErrorCode::ProtectedAccount)),
        "{r:#?}"
    );
    assert!(
        crate::graph::tenant_for(&o.emu)
            .account("role.reader@contoso.onmicrosoft.com")
            .await
            .unwrap()
            .immutable_id
            .is_none(),
        "nothing written to the role holder"
    );
}

#[tokio::test]
async fn a_refused_current_password_is_never_hidden_and_own_creates_are_not_drift_on_samba() {
    let samba = crate::samba::shared();
    let staff = ou(samba, "SafeDrift");
    let admin_dir = LdapDirectory::new(samba.config()).unwrap();
    let a = user(&admin_dir, "drift.a", Some(&staff)).await;
    let b = user(&admin_dir, "drift.b", Some(&staff)).await;
    let c = user(&admin_dir, "drift.c", Some(&staff)).await;
    let o = open(samba, EmulatorConfig::default(), None, Some(&staff), &[]).await;
    // drift.a is linked and the sync is running: the delta cursor exists.
    let first = o
        .integration
        .accounts()
        .plan_bulk_create(
            &o.integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                users: Some(vec![a.guid.into()]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        o.integration
            .accounts()
            .apply(&first, &Control::none())
            .await
            .unwrap()
            .count(Outcome::Succeeded),
        1
    );
    o.sync().await;
    // drift.b's password changes to one the domain takes (7 characters) and Microsoft 365
    // refuses (8 at least): kept for the account to come.
    let r = o
        .integration
        .passwords()
        .capture_password(&hook_ldif(&b, 3, "Ab1!xyz"))
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(r.outcome).unwrap(), "kept");
    let plan = o
        .integration
        .accounts()
        .plan_bulk_create(
            &o.integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest::default(),
        )
        .unwrap();
    assert_eq!(plan.items.len(), 2);
    let made = o
        .integration
        .accounts()
        .apply(&plan, &Control::none())
        .await
        .unwrap();
    assert_eq!(made.count(Outcome::Succeeded), 2, "{made:#?}");
    let b_item = made.items.iter().find(|i| i.local_guid == b.guid).unwrap();
    assert_eq!(
        b_item.password_source,
        Some(o365_essentials::model::PasswordSource::Random)
    );
    let said = b_item.service_message.as_deref().unwrap_or_default();
    assert!(
        said.contains("refused the user's current password") && said.contains("8 characters"),
        "{said}"
    );
    let problems = o.integration.passwords().password_problems().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.local_guid == b.guid && p.error_code == ErrorCode::PasswordPolicy),
        "{problems:?}"
    );
    assert!(
        o.integration
            .passwords()
            .kept_password_users()
            .unwrap()
            .is_empty()
    );
    // The round after the bulk create: the two new accounts are the engine's own work.
    let quiet = o.sync().await;
    assert!(quiet.drift.is_empty(), "{:?}", quiet.drift);
    assert_eq!(quiet.passwords.delivered, 0);
    // Someone else's change is still reported.
    let c_online = crate::graph::tenant_for(&o.emu)
        .account("drift.c@contoso.onmicrosoft.com")
        .await
        .unwrap();
    crate::graph::tenant_for(&o.emu)
        .update_account(
            &c_online.id,
            &o365_essentials::model::AccountUpdate {
                display_name: Some("Set in the portal".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let drift = o.sync().await;
    assert_eq!(drift.drift.len(), 1, "{:?}", drift.drift);
    assert_eq!(drift.drift[0].local_guid, c.guid);
    // drift.b's next change is one Microsoft 365 takes: delivered, and the problem is gone.
    let r = o
        .integration
        .passwords()
        .capture_password(&hook_ldif(&b, 4, "Longer-Safe-2027!"))
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(r.outcome).unwrap(), "queued");
    let delivered = o.sync().await;
    assert_eq!(delivered.passwords.delivered, 1);
    assert!(
        o.integration
            .passwords()
            .password_problems()
            .unwrap()
            .is_empty()
    );
}

/// The system clock moved on by whole days.
#[derive(Default)]
struct LaterClock(std::sync::atomic::AtomicI64);

impl o365_essentials::engine::Clock for LaterClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
            + time::Duration::days(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[tokio::test]
async fn kept_passwords_expire_and_enabling_blocks_leavers_at_once_on_samba() {
    let samba = crate::samba::shared();
    let staff = ou(samba, "SafeKeep");
    let admin_dir = LdapDirectory::new(samba.config()).unwrap();
    let a = user(&admin_dir, "keep.a", Some(&staff)).await;
    let b = user(&admin_dir, "keep.b", Some(&staff)).await;
    let c = user(&admin_dir, "keep.c", Some(&staff)).await;
    let Opened {
        emu,
        _tmp,
        integration,
        ..
    } = open(samba, EmulatorConfig::default(), None, Some(&staff), &[]).await;
    let clock = Arc::new(LaterClock::default());
    let integration = integration.with_clock(clock.clone());
    let plan = integration
        .accounts()
        .plan_bulk_create(
            &integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                users: Some(vec![b.guid.into(), c.guid.into()]),
                ..Default::default()
            },
        )
        .unwrap();
    let made = integration
        .accounts()
        .apply(&plan, &Control::none())
        .await
        .unwrap();
    assert_eq!(made.count(Outcome::Succeeded), 2);
    integration
        .sync()
        .run_sync_once(&SyncOptions::default())
        .await
        .unwrap();

    // keep.a has no account: the password is kept, for 7 days.
    let r = integration
        .passwords()
        .capture_password(&hook_ldif(&a, 2, "Autumn-Keep-2027!"))
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(r.outcome).unwrap(), "kept");
    assert_eq!(
        integration.passwords().kept_password_users().unwrap(),
        vec![a.guid]
    );
    clock.0.store(6, std::sync::atomic::Ordering::SeqCst);
    integration
        .sync()
        .run_sync_once(&SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(
        integration.passwords().kept_password_users().unwrap(),
        vec![a.guid]
    );
    clock.0.store(8, std::sync::atomic::Ordering::SeqCst);
    integration
        .sync()
        .run_sync_once(&SyncOptions::default())
        .await
        .unwrap();
    assert!(
        integration
            .passwords()
            .kept_password_users()
            .unwrap()
            .is_empty(),
        "expired after 7 days"
    );

    // While the integration is disabled, keep.b is deleted and keep.c disabled locally.
    integration.disable().unwrap();
    admin_dir.delete_user(b.guid).await.unwrap();
    admin_dir.set_enabled(c.guid, false).await.unwrap();
    let report = integration.enable().await.unwrap();
    let blocked: Vec<_> = report.blocked.iter().map(|d| d.local_guid).collect();
    assert!(
        blocked.contains(&b.guid) && blocked.contains(&c.guid),
        "{report:?}"
    );
    let graph = crate::graph::tenant_for(&emu);
    for nick in ["keep.b", "keep.c"] {
        assert!(
            !graph
                .account(&format!("{nick}@contoso.onmicrosoft.com"))
                .await
                .unwrap()
                .account_enabled,
            "{nick} blocked at once"
        );
    }
    // The next round deletes the account of the user who is gone.
    let r = integration
        .sync()
        .run_sync_once(&SyncOptions::default())
        .await
        .unwrap();
    assert!(
        r.results
            .items
            .iter()
            .any(|i| i.local_guid == b.guid && i.action == ItemAction::Delete),
        "{:#?}",
        r.results.items
    );
}

#[tokio::test]
async fn seats_are_counted_before_anything_is_written_on_samba() {
    let samba = crate::samba::shared();
    let staff = ou(samba, "SafeSeats");
    let admin_dir = LdapDirectory::new(samba.config()).unwrap();
    for n in ["seat.a", "seat.b", "seat.c"] {
        user(&admin_dir, n, Some(&staff)).await;
    }
    let mut cfg = EmulatorConfig::default();
    cfg.seed.skus[1].enabled = 1;
    let o = open(samba, cfg, None, Some(&staff), &[]).await;
    let sku = crate::graph::tenant_for(&o.emu)
        .skus()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.enabled_units == 1)
        .unwrap();
    let licences = vec![o365_essentials::model::LicenceAssignment {
        sku_id: sku.sku_id,
        disabled_plans: vec![],
    }];
    let request = BulkCreateRequest {
        licences: licences.clone(),
        ..Default::default()
    };
    let plan = o
        .integration
        .accounts()
        .plan_bulk_create(
            &o.integration.accounts().snapshot().await.unwrap(),
            &request,
        )
        .unwrap();
    // The preview: 3 planned, 1 free, 2 beyond.
    assert_eq!(plan.seats.len(), 1);
    assert_eq!(
        (
            plan.seats[0].free,
            plan.seats[0].planned,
            plan.seats[0].short
        ),
        (1, 3, 2)
    );
    assert_eq!(plan.items.iter().filter(|i| i.licence_short).count(), 2);
    let before = o.online_upns().await.len();
    let r = o
        .integration
        .accounts()
        .apply(&plan, &Control::none())
        .await
        .unwrap();
    assert_eq!(r.count(Outcome::Succeeded), 1, "{r:#?}");
    assert_eq!(
        r.items
            .iter()
            .filter(|i| i.error_code == Some(ErrorCode::LicenceUnavailable)
                && i.outcome == Outcome::Skipped)
            .count(),
        2
    );
    assert_eq!(
        o.online_upns().await.len(),
        before + 1,
        "no account without its licence"
    );
    // Asked to, the rest are made without it: status says so, the next plan proposes it.
    let plan = o
        .integration
        .accounts()
        .plan_bulk_create(
            &o.integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                allow_unlicensed: true,
                ..request.clone()
            },
        )
        .unwrap();
    let r = o
        .integration
        .accounts()
        .apply(&plan, &Control::none())
        .await
        .unwrap();
    assert_eq!(r.count(Outcome::Succeeded), 2, "{r:#?}");
    let status = o.integration.status().unwrap();
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("2 online account(s)")),
        "{:?}",
        status.warnings
    );
    let next = o
        .integration
        .accounts()
        .plan_bulk_create(
            &o.integration.accounts().snapshot().await.unwrap(),
            &request,
        )
        .unwrap();
    assert_eq!(
        next.items
            .iter()
            .filter(|i| matches!(i.action, PlanAction::Licences { .. }) && i.licence_short)
            .count(),
        2,
        "{next:#?}"
    );
    // A user made with an account says which licences it really got.
    let mut cfg2 = EmulatorConfig::default();
    cfg2.seed.skus[1].enabled = 5;
    let o2 = open(samba, cfg2, None, Some(&staff), &[]).await;
    let sku2 = crate::graph::tenant_for(&o2.emu).skus().await.unwrap()[1].sku_id;
    let (_, online) = o2
        .integration
        .accounts()
        .create_user_with_account(
            &NewLocalUser {
                sam_account_name: "seat.new".into(),
                user_principal_name: format!("seat.new@{REALM}"),
                display_name: "Seat New".into(),
                ou: Some(staff.clone()),
                ..Default::default()
            },
            &SecretString::from(PASSWORD),
            "contoso.onmicrosoft.com",
            Some("GB"),
            &[o365_essentials::model::LicenceAssignment {
                sku_id: sku2,
                disabled_plans: vec![],
            }],
        )
        .await
        .unwrap();
    assert_eq!(online.assigned_skus, vec![sku2]);
}
