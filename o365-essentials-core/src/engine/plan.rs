//! The pure planner: from a snapshot of both sides to a reviewable [`Plan`]. No I/O.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{
    AdminRoleHolder, LicenceAssignment, Link, LinkOrigin, LocalUser, LocalUserIndex, LocalUserRef,
    LocalVersion, ObjectGuid, OnlineAccount, Plan, PlanAction, PlanItem, PlanReason, SeatCount,
    SkipReason, SkippedUser,
};
use crate::validate;

/// Both sides as they are now.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Local users (syncable or not; the planner checks).
    pub users: Vec<LocalUser>,
    /// Online accounts.
    pub accounts: Vec<OnlineAccount>,
    /// Online accounts holding administrator roles.
    pub admins: Vec<AdminRoleHolder>,
    /// Links already made.
    pub links: Vec<Link>,
    /// The tenant's verified domains, read with the accounts (a domain verified since
    /// integrating counts).
    pub verified_domains: Vec<String>,
    /// The tenant's subscriptions, for counting seats.
    pub skus: Vec<crate::model::Sku>,
    /// Who may be synced (the gate's rules, from the configuration).
    pub policy: super::guard::Policy,
}

/// The administrator's choice for one user of a bulk create, as the wizard allowed.
#[derive(
    schemars::JsonSchema, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct UserChoice {
    /// The local user: its object GUID, sAMAccountName or user principal name.
    pub user: LocalUserRef,
    /// The online ID to give instead of the suggested one (on a verified domain).
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// The licences to assign instead of the request's.
    #[serde(default)]
    pub licences: Option<Vec<LicenceAssignment>>,
}

/// What the administrator asked for in a bulk create.
#[derive(schemars::JsonSchema, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkCreateRequest {
    /// The domain of the new online IDs (a verified domain of the tenant); the
    /// configuration's custom domain, else the tenant's initial domain, when empty.
    #[serde(default)]
    pub domain: String,
    /// Only these local users, each by its object GUID, sAMAccountName or user principal
    /// name (`"ava.adams"`, `"ava.adams@contoso.com"`); every syncable user without an
    /// online account when absent.
    #[serde(default)]
    pub users: Option<Vec<LocalUserRef>>,
    /// `usageLocation` for the new accounts (needed for licences).
    #[serde(default)]
    pub usage_location: Option<String>,
    /// Licences to assign.
    #[serde(default)]
    pub licences: Vec<LicenceAssignment>,
    /// Link existing online accounts with the same user name or mail (never admins).
    #[serde(default)]
    pub allow_soft_match: bool,
    /// Create the accounts beyond a licence's free seats anyway, without that licence
    /// (the next plan proposes it); by default those items are refused when applied.
    #[serde(default)]
    pub allow_unlicensed: bool,
    /// Per-user choices of online ID and licences.
    #[serde(default)]
    pub choices: Vec<UserChoice>,
}

/// What an accented or special letter is written as in an online ID.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ä' | 'æ' => "ae",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' | 'ĝ' | 'ġ' | 'ģ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ł' => "l",
        'ñ' | 'ń' | 'ň' | 'ņ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ø' | 'ō' | 'ő' => "o",
        'ö' | 'œ' => "oe",
        'ŕ' | 'ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ß' => "ss",
        'ť' | 'ţ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ü' => "ue",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// The local part of an online ID made from a name: letters transliterated (é→e, ü→ue,
/// ß→ss, ø→o, ł→l...), spaces as dots, other characters dropped, lower case.
pub fn online_id_local_part(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '\'') {
            out.push(c);
        } else if c.is_whitespace() {
            out.push('.');
        } else if let Some(t) = transliterate(c) {
            out.push_str(t);
        }
    }
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    out.trim_matches('.').chars().take(64).collect()
}

/// The online ID suggested for a local user: the user name's allowed characters, lower
/// case, at `domain`.
pub fn suggest_upn(user: &LocalUser, domain: &str) -> String {
    let source = user
        .user_principal_name
        .as_deref()
        .and_then(|u| u.split('@').next())
        .filter(|l| !l.is_empty())
        .unwrap_or(&user.sam_account_name);
    let local = online_id_local_part(source);
    let local = if local.is_empty() {
        format!("user{}", &user.guid.to_string()[..8])
    } else {
        local
    };
    format!("{local}@{}", domain.to_ascii_lowercase())
}

fn version(u: &LocalUser) -> LocalVersion {
    LocalVersion {
        guid: u.guid,
        sam_account_name: u.sam_account_name.clone(),
        usn_changed: u.usn_changed,
    }
}

/// Plans a bulk create: a hard match links on the anchor, an optional soft match links on
/// user name or mail (never onto an administrator), everyone else gets a new online
/// account. Users that cannot be handled are listed as skipped, with the reason.
pub fn plan_bulk_create(
    s: &Snapshot,
    r: &BulkCreateRequest,
    id: Uuid,
    now: OffsetDateTime,
    tenant_id: &str,
) -> Plan {
    let linked_local: HashSet<ObjectGuid> = s.links.iter().map(|l| l.local_guid).collect();
    let linked_online: HashSet<&str> = s.links.iter().map(|l| l.online_id.0.as_str()).collect();
    let protected_online = super::guard::protected_online(&s.policy, &s.admins);
    let admins: HashSet<&str> = protected_online.iter().map(String::as_str).collect();
    let by_anchor: HashMap<&str, &OnlineAccount> = s
        .accounts
        .iter()
        .filter_map(|a| a.immutable_id.as_ref().map(|i| (i.as_str(), a)))
        .collect();
    let by_upn: HashMap<String, &OnlineAccount> = s
        .accounts
        .iter()
        .map(|a| (a.user_principal_name.to_ascii_lowercase(), a))
        .collect();
    let by_mail: HashMap<String, &OnlineAccount> = s
        .accounts
        .iter()
        .filter_map(|a| a.mail.as_ref().map(|m| (m.to_ascii_lowercase(), a)))
        .collect();
    let index = LocalUserIndex::new(&s.users);
    // Names that name no user (or several) were refused before planning; here they
    // choose no one.
    let chosen: Option<HashSet<ObjectGuid>> = r.users.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|n| index.resolve(n).ok().map(|u| u.guid))
            .collect()
    });
    let mut users: Vec<&LocalUser> = s
        .users
        .iter()
        .filter(|u| chosen.as_ref().is_none_or(|c| c.contains(&u.guid)))
        .collect();
    users.sort_by(|a, b| {
        a.sam_account_name
            .to_lowercase()
            .cmp(&b.sam_account_name.to_lowercase())
            .then(a.guid.cmp(&b.guid))
    });
    let choices: HashMap<ObjectGuid, &super::plan::UserChoice> = r
        .choices
        .iter()
        .filter_map(|c| index.resolve(&c.user).ok().map(|u| (u.guid, c)))
        .collect();
    let verified = |upn: &str| {
        let domain = upn.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        s.verified_domains.is_empty()
            || s.verified_domains
                .iter()
                .any(|v| v.eq_ignore_ascii_case(domain))
    };
    let mut planned_upns: HashSet<String> = HashSet::new();
    let mut taken_online: HashSet<&str> = HashSet::new();
    let mut items: Vec<(PlanAction, PlanReason, String)> = Vec::new();
    let mut skipped = Vec::new();
    let skip = |u: &LocalUser, reason: SkipReason, message: String, out: &mut Vec<SkippedUser>| {
        out.push(SkippedUser {
            guid: u.guid,
            sam_account_name: u.sam_account_name.clone(),
            reason,
            rule: None,
            message,
        })
    };
    for u in users {
        if let Some(refusal) = s.policy.local_refusal(u) {
            use super::guard::GuardRule as G;
            let reason = match refusal.rule {
                G::ComputerOrTrustAccount
                | G::BuiltInAccount
                | G::CriticalSystemObject
                | G::ReservedRid => SkipReason::NeverSynced,
                G::OutOfScope => SkipReason::OutOfScope,
                _ => SkipReason::Protected,
            };
            skipped.push(SkippedUser {
                guid: u.guid,
                sam_account_name: u.sam_account_name.clone(),
                reason,
                rule: Some(refusal.rule),
                message: format!("never synced: {}", refusal.message),
            });
            continue;
        }
        let allowed_note = if s.policy.allowed_privileged(u) {
            format!(
                " — {} is privileged and synced only because allow_protected names it",
                u.sam_account_name
            )
        } else {
            String::new()
        };
        if linked_local.contains(&u.guid) {
            // A linked account left without a licence (no free seat when it was made)
            // gets it proposed again.
            let licences = choices
                .get(&u.guid)
                .and_then(|c| c.licences.clone())
                .unwrap_or_else(|| r.licences.clone());
            let unlicensed = s
                .links
                .iter()
                .find(|l| l.local_guid == u.guid && l.state == crate::model::LinkState::Active)
                .and_then(|l| s.accounts.iter().find(|a| a.id == l.online_id))
                .filter(|a| a.assigned_skus.is_empty() && !admins.contains(a.id.0.as_str()));
            if let (Some(acc), false) = (unlicensed, licences.is_empty()) {
                items.push((
                    PlanAction::Licences {
                        local_guid: u.guid,
                        online_id: acc.id.clone(),
                        add: licences,
                        remove: Vec::new(),
                    },
                    PlanReason::Unlicensed,
                    format!("{} has no licence yet", acc.user_principal_name),
                ));
                continue;
            }
            skip(
                u,
                SkipReason::AlreadyLinked,
                "already has an online account".into(),
                &mut skipped,
            );
            continue;
        }
        let anchor = u.anchor();
        if let Some(acc) = by_anchor.get(anchor.as_str()) {
            if admins.contains(acc.id.0.as_str()) {
                skip(
                    u,
                    SkipReason::AdministratorAccount,
                    format!(
                        "{} carries this user's anchor but holds a directory role; it is never linked automatically",
                        acc.user_principal_name
                    ),
                    &mut skipped,
                );
            } else if linked_online.contains(acc.id.0.as_str())
                || !taken_online.insert(acc.id.0.as_str())
            {
                skip(
                    u,
                    SkipReason::AnchorOnLinkedAccount,
                    format!(
                        "its anchor is on {}, which is linked to another local user",
                        acc.user_principal_name
                    ),
                    &mut skipped,
                );
            } else {
                items.push((
                    PlanAction::Link {
                        local: version(u),
                        online_id: acc.id.clone(),
                        user_principal_name: acc.user_principal_name.clone(),
                        anchor,
                        origin: LinkOrigin::HardMatch,
                    },
                    PlanReason::HardMatch,
                    format!(
                        "{} already carries this user's anchor (hard match){allowed_note}",
                        acc.user_principal_name
                    ),
                ));
            }
            continue;
        }
        let choice = choices.get(&u.guid);
        let chosen_upn = choice.and_then(|c| c.user_principal_name.clone());
        let upn = chosen_upn
            .clone()
            .map(|c| c.to_ascii_lowercase())
            .unwrap_or_else(|| suggest_upn(u, &r.domain));
        let candidate = by_upn
            .get(&upn.to_ascii_lowercase())
            .or_else(|| {
                u.primary_smtp()
                    .filter(|_| chosen_upn.is_none())
                    .and_then(|m| by_mail.get(&m.to_ascii_lowercase()))
            })
            .copied();
        if let Some(acc) = candidate {
            if !r.allow_soft_match {
                skip(
                    u,
                    SkipReason::OnlineIdTaken,
                    format!(
                        "the online ID {} is already used by an online account; link it by soft match or choose another ID",
                        acc.user_principal_name
                    ),
                    &mut skipped,
                );
            } else if admins.contains(acc.id.0.as_str()) {
                skip(
                    u,
                    SkipReason::AdministratorAccount,
                    format!(
                        "{} holds an administrator role and is never matched automatically; link it by hand",
                        acc.user_principal_name
                    ),
                    &mut skipped,
                );
            } else if acc.immutable_id.is_some()
                || linked_online.contains(acc.id.0.as_str())
                || !taken_online.insert(acc.id.0.as_str())
            {
                skip(
                    u,
                    SkipReason::LinkedToAnotherUser,
                    format!(
                        "{} is already linked to another local user",
                        acc.user_principal_name
                    ),
                    &mut skipped,
                );
            } else {
                items.push((
                    PlanAction::Link {
                        local: version(u),
                        online_id: acc.id.clone(),
                        user_principal_name: acc.user_principal_name.clone(),
                        anchor,
                        origin: LinkOrigin::SoftMatch,
                    },
                    PlanReason::SoftMatch,
                    format!(
                        "{} has the same user name or mail (soft match){allowed_note}",
                        acc.user_principal_name
                    ),
                ));
            }
            continue;
        }
        if let Err(e) = validate::upn(&upn) {
            skip(
                u,
                SkipReason::InvalidOnlineId,
                format!("no valid online ID can be made: {}", e.message()),
                &mut skipped,
            );
            continue;
        }
        if !verified(&upn) {
            skip(
                u,
                SkipReason::InvalidOnlineId,
                format!(
                    "{upn} is not on a verified domain of the tenant (verified: {})",
                    s.verified_domains.join(", ")
                ),
                &mut skipped,
            );
            continue;
        }
        let mut upn = upn;
        let mut message = "no online account yet".to_string();
        if planned_upns.contains(&upn) {
            if chosen_upn.is_some() {
                skip(
                    u,
                    SkipReason::InvalidOnlineId,
                    format!("{upn} was chosen for another user of this plan too"),
                    &mut skipped,
                );
                continue;
            }
            let wanted = upn.clone();
            upn = unique_upn(&upn, &|c| {
                planned_upns.contains(c) || by_upn.contains_key(c)
            });
            message = format!(
                "no online account yet; {wanted} goes to another user of this plan, so {upn} is suggested"
            );
        }
        planned_upns.insert(upn.clone());
        message.push_str(&allowed_note);
        let nickname = upn.split('@').next().unwrap_or_default().to_string();
        items.push((
            PlanAction::CreateAccount {
                local: version(u),
                user_principal_name: upn,
                display_name: u.friendly_name(),
                mail_nickname: nickname,
                anchor,
                usage_location: r.usage_location.clone(),
                licences: choice
                    .and_then(|c| c.licences.clone())
                    .unwrap_or_else(|| r.licences.clone()),
            },
            PlanReason::NoOnlineAccount,
            message,
        ));
    }
    let mut items: Vec<PlanItem> = items
        .into_iter()
        .enumerate()
        .map(|(i, (action, reason, message))| PlanItem {
            seq: i as u32 + 1,
            action,
            reason,
            message,
            licence_short: false,
        })
        .collect();
    let seats = count_seats(&mut items, &s.skus, r.allow_unlicensed);
    Plan {
        id,
        created_at: now,
        tenant_id: tenant_id.to_string(),
        items,
        skipped,
        seats,
        allow_unlicensed: r.allow_unlicensed,
    }
}

/// Counts the seats each licence of the plan's new accounts takes against the free
/// seats, in plan order, and marks the items beyond them.
fn count_seats(
    items: &mut [PlanItem],
    skus: &[crate::model::Sku],
    allow_unlicensed: bool,
) -> Vec<SeatCount> {
    let mut seats: Vec<SeatCount> = Vec::new();
    for item in items.iter_mut() {
        let licences = match &item.action {
            PlanAction::CreateAccount { licences, .. }
            | PlanAction::Licences { add: licences, .. } => licences,
            _ => continue,
        };
        let mut short = Vec::new();
        for l in licences {
            let i = match seats.iter().position(|c| c.sku_id == l.sku_id) {
                Some(i) => i,
                None => {
                    let sku = skus.iter().find(|k| k.sku_id == l.sku_id);
                    seats.push(SeatCount {
                        sku_id: l.sku_id,
                        sku_part_number: sku.map(|k| k.sku_part_number.clone()).unwrap_or_default(),
                        free: sku.map(crate::model::Sku::free_units).unwrap_or(0),
                        planned: 0,
                        short: 0,
                    });
                    seats.len() - 1
                }
            };
            let c = &mut seats[i];
            c.planned += 1;
            if c.planned > c.free {
                c.short += 1;
                short.push(if c.sku_part_number.is_empty() {
                    c.sku_id.to_string()
                } else {
                    c.sku_part_number.clone()
                });
            }
        }
        if !short.is_empty() {
            item.licence_short = true;
            item.message.push_str(&format!(
                "; no free seat of {} is left for it ({})",
                short.join(", "),
                if allow_unlicensed {
                    "it would be created without that licence"
                } else {
                    "applied, it is refused unless the plan allows unlicensed accounts"
                }
            ));
        }
    }
    seats
}

/// `local2@domain`, `local3@domain`, ... — the first not taken (lower case).
fn unique_upn(upn: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let (local, domain) = upn.split_once('@').unwrap_or((upn, ""));
    for n in 2u32.. {
        let suffix = n.to_string();
        let cut: String = local.chars().take(64 - suffix.len()).collect();
        let candidate = format!("{cut}{suffix}@{domain}");
        if !taken(&candidate) {
            return candidate;
        }
    }
    upn.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Anchor, LinkState, OnlineAccountId, uac};

    fn user(sam: &str) -> LocalUser {
        LocalUser {
            guid: ObjectGuid::random(),
            consistency_guid: None,
            dn: format!("CN={sam},DC=x"),
            sam_account_name: sam.into(),
            user_principal_name: Some(format!("{sam}@corp.local")),
            given_name: None,
            surname: None,
            display_name: Some(format!("{sam} person")),
            mail: None,
            proxy_addresses: vec![],
            user_account_control: uac::NORMAL_ACCOUNT,
            member_of: vec![],
            when_changed: None,
            usn_changed: 10,
            critical_system_object: false,
            standing: Default::default(),
            account_expires: None,
        }
    }

    fn account(upn: &str, anchor: Option<Anchor>) -> OnlineAccount {
        OnlineAccount {
            id: OnlineAccountId(format!("id-{upn}")),
            user_principal_name: upn.into(),
            display_name: upn.into(),
            given_name: None,
            surname: None,
            mail: None,
            mail_nickname: None,
            proxy_addresses: vec![],
            account_enabled: true,
            usage_location: None,
            immutable_id: anchor,
            assigned_skus: vec![],
        }
    }

    fn req(soft: bool) -> BulkCreateRequest {
        BulkCreateRequest {
            domain: "Contoso.com".into(),
            allow_soft_match: soft,
            usage_location: Some("GB".into()),
            ..Default::default()
        }
    }

    fn plan(s: &Snapshot, r: &BulkCreateRequest) -> Plan {
        plan_bulk_create(
            s,
            r,
            Uuid::nil(),
            time::macros::datetime!(2026-11-26 10:00 UTC),
            "t",
        )
    }

    #[test]
    fn creates_hard_matches_and_skips_with_reasons() {
        let a = user("ava");
        let b = user("ben");
        let admin = user("Administrator");
        let matched = account("ben.b@contoso.com", Some(b.anchor()));
        let s = Snapshot {
            users: vec![b.clone(), a.clone(), admin],
            accounts: vec![matched.clone()],
            ..Default::default()
        };
        let p = plan(&s, &req(false));
        assert_eq!(p.items.len(), 2);
        assert!(
            matches!(&p.items[0].action, PlanAction::CreateAccount { user_principal_name, mail_nickname, .. } if user_principal_name == "ava@contoso.com" && mail_nickname == "ava")
        );
        assert!(
            matches!(&p.items[1].action, PlanAction::Link { online_id, origin: LinkOrigin::HardMatch, .. } if *online_id == matched.id)
        );
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].reason, SkipReason::NeverSynced);
        assert!(p.skipped[0].message.contains("built-in"));
        assert_eq!(
            p.items.iter().map(|i| i.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn soft_match_only_when_asked_and_never_onto_admins() {
        let a = user("ava");
        let c = user("chloe");
        let ava_online = account("ava@contoso.com", None);
        let chloe_online = account("chloe@contoso.com", None);
        let admins = vec![AdminRoleHolder {
            id: chloe_online.id.clone(),
            user_principal_name: chloe_online.user_principal_name.clone(),
            roles: vec!["Global Administrator".into()],
        }];
        let s = Snapshot {
            users: vec![a, c],
            accounts: vec![ava_online.clone(), chloe_online],
            admins,
            links: vec![],
            verified_domains: vec![],
            ..Default::default()
        };
        let off = plan(&s, &req(false));
        assert!(off.items.is_empty());
        assert!(
            off.skipped
                .iter()
                .all(|x| x.reason == SkipReason::OnlineIdTaken)
        );
        let on = plan(&s, &req(true));
        assert_eq!(on.items.len(), 1);
        assert!(
            matches!(&on.items[0].action, PlanAction::Link { origin: LinkOrigin::SoftMatch, online_id, .. } if *online_id == ava_online.id)
        );
        assert!(
            on.skipped
                .iter()
                .any(|x| x.reason == SkipReason::AdministratorAccount)
        );
    }

    #[test]
    fn already_linked_and_chosen_users() {
        let a = user("ava");
        let b = user("ben");
        let link = Link {
            local_guid: a.guid,
            online_id: OnlineAccountId("x".into()),
            anchor: a.anchor(),
            user_principal_name: "ava@contoso.com".into(),
            state: LinkState::Active,
            origin: LinkOrigin::Created,
            linked_at: time::macros::datetime!(2026-11-26 9:00 UTC),
        };
        let s = Snapshot {
            users: vec![a.clone(), b.clone()],
            links: vec![link],
            ..Default::default()
        };
        let p = plan(&s, &req(false));
        assert_eq!(p.items.len(), 1);
        assert!(
            p.skipped
                .iter()
                .any(|x| x.guid == a.guid && x.reason == SkipReason::AlreadyLinked)
        );
        let only_a = BulkCreateRequest {
            users: Some(vec![a.guid.into()]),
            ..req(false)
        };
        assert!(plan(&s, &only_a).items.is_empty());
    }

    #[test]
    fn names_with_accents_are_transliterated_not_cut() {
        let cases = [
            // French
            ("Hélène Lefèvre", "helene.lefevre"),
            ("François Cœur", "francois.coeur"),
            // German
            ("Jürgen Groß", "juergen.gross"),
            ("Jörg Bär", "joerg.baer"),
            // Nordic
            ("Søren Ærø", "soren.aero"),
            ("Åsa Þórsdóttir", "asa.thorsdottir"),
            ("Zoë", "zoe"),
            // Polish
            ("Łukasz Żółć", "lukasz.zolc"),
            ("Wojciech Ścisło", "wojciech.scislo"),
            // Spanish
            ("Íñigo Muñoz", "inigo.munoz"),
            // Czech
            ("Čeněk Říha", "cenek.riha"),
            ("Tomáš Dvořák", "tomas.dvorak"),
        ];
        for (name, want) in cases {
            let mut u = user(name);
            u.user_principal_name = None;
            assert_eq!(
                suggest_upn(&u, "Contoso.com"),
                format!("{want}@contoso.com"),
                "{name}"
            );
            assert!(
                validate::upn(&suggest_upn(&u, "contoso.com")).is_ok(),
                "{name}"
            );
        }
        let mut u = user("...");
        u.user_principal_name = None;
        assert!(suggest_upn(&u, "contoso.com").starts_with("user"));
    }

    #[test]
    fn two_users_with_one_suggested_id_both_appear_the_second_with_a_unique_one() {
        let x = user("same");
        let mut y = user("SAME");
        y.user_principal_name = None;
        let taken = account("same2@contoso.com", None);
        let s = Snapshot {
            users: vec![x, y],
            accounts: vec![taken],
            ..Default::default()
        };
        let p = plan(&s, &req(false));
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        let upns: Vec<&str> = p
            .items
            .iter()
            .filter_map(|i| match &i.action {
                PlanAction::CreateAccount {
                    user_principal_name,
                    ..
                } => Some(user_principal_name.as_str()),
                _ => None,
            })
            .collect();
        // same2 exists online, so the second user gets same3.
        assert_eq!(upns, vec!["same@contoso.com", "same3@contoso.com"]);
        assert!(p.items[1].message.contains("same3@contoso.com"));
    }

    #[test]
    fn the_administrator_chooses_an_id_and_licences_per_user() {
        let a = user("ava");
        let b = user("ben");
        let sku = Uuid::from_u128(7);
        let mut r = req(false);
        r.choices = vec![UserChoice {
            user: a.guid.into(),
            user_principal_name: Some("Ava.Adams@Contoso.com".into()),
            licences: Some(vec![LicenceAssignment {
                sku_id: sku,
                disabled_plans: vec![],
            }]),
        }];
        let s = Snapshot {
            users: vec![a, b.clone()],
            verified_domains: vec!["contoso.com".into()],
            ..Default::default()
        };
        let p = plan(&s, &r);
        assert!(
            matches!(&p.items[0].action, PlanAction::CreateAccount { user_principal_name, licences, .. }
            if user_principal_name == "ava.adams@contoso.com" && licences.len() == 1 && licences[0].sku_id == sku)
        );
        assert!(
            matches!(&p.items[1].action, PlanAction::CreateAccount { licences, .. } if licences.is_empty())
        );
        // A chosen ID on a domain the tenant has not verified is refused, with the reason.
        r.choices[0].user_principal_name = Some("ava@fabrikam.com".into());
        let p = plan(&s, &r);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].reason, SkipReason::InvalidOnlineId);
        assert!(p.skipped[0].message.contains("fabrikam.com"));
        // An invalid chosen ID too.
        r.choices[0].user_principal_name = Some("ava adams@contoso.com".into());
        assert_eq!(plan(&s, &r).skipped[0].reason, SkipReason::InvalidOnlineId);
    }

    #[test]
    fn planning_is_deterministic() {
        let users: Vec<LocalUser> = (0..50).map(|i| user(&format!("u{i:02}"))).collect();
        let s = Snapshot {
            users,
            ..Default::default()
        };
        assert_eq!(plan(&s, &req(false)), plan(&s, &req(false)));
    }
}
