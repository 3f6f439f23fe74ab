//! The match preview shown before the first link (pure).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::plan::{Snapshot, suggest_upn};
use crate::model::{ObjectGuid, OnlineAccountId};

/// A local user and an online account that belong together, and why.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchPair {
    /// The local user.
    pub local_guid: ObjectGuid,
    /// Its `sAMAccountName`.
    pub sam_account_name: String,
    /// The online account.
    pub online_id: OnlineAccountId,
    /// Its UPN.
    pub user_principal_name: String,
    /// `anchor`, `user name` or `mail`.
    pub basis: String,
}

/// Which side a conflict is on.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The on-premises directory.
    Local,
    /// The tenant.
    Online,
}

/// Two or more objects with the same unique value.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchConflict {
    /// Where.
    pub side: Side,
    /// `userPrincipalName` or `proxyAddress`.
    pub attribute: String,
    /// The shared value.
    pub value: String,
    /// The objects sharing it (user names).
    pub objects: Vec<String>,
}

/// What linking would do, before anything is written.
#[derive(schemars::JsonSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchPreview {
    /// Linked by anchor without asking.
    pub hard_matches: Vec<MatchPair>,
    /// Would be linked by user name or mail when soft matching is allowed.
    pub soft_candidates: Vec<MatchPair>,
    /// Candidates holding an administrator role: never linked automatically.
    pub protected: Vec<MatchPair>,
    /// Duplicate values on either side.
    pub conflicts: Vec<MatchConflict>,
}

fn duplicates(side: Side, attribute: &str, pairs: Vec<(String, String)>) -> Vec<MatchConflict> {
    let mut by: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for (value, who) in pairs {
        let e = by
            .entry(value.to_lowercase())
            .or_insert_with(|| (value.clone(), Vec::new()));
        if !e.1.contains(&who) {
            e.1.push(who);
        }
    }
    let mut out: Vec<MatchConflict> = by
        .into_values()
        .filter(|(_, objs)| objs.len() > 1)
        .map(|(value, mut objects)| {
            objects.sort();
            MatchConflict {
                side,
                attribute: attribute.into(),
                value,
                objects,
            }
        })
        .collect();
    out.sort_by(|a, b| a.value.cmp(&b.value));
    out
}

fn smtp(addr: &str) -> Option<String> {
    let (kind, rest) = addr.split_once(':')?;
    kind.eq_ignore_ascii_case("smtp").then(|| rest.to_string())
}

/// The match preview for linking local users to online accounts on `domain`.
pub fn match_preview(s: &Snapshot, domain: &str) -> MatchPreview {
    let linked: HashSet<ObjectGuid> = s.links.iter().map(|l| l.local_guid).collect();
    let admins: HashSet<&str> = s.admins.iter().map(|a| a.id.0.as_str()).collect();
    let mut p = MatchPreview::default();
    let syncable: Vec<_> = s
        .users
        .iter()
        .filter(|u| u.is_syncable() && !linked.contains(&u.guid))
        .collect();
    for u in &syncable {
        let anchor = u.anchor();
        let pair = |a: &crate::model::OnlineAccount, basis: &str| MatchPair {
            local_guid: u.guid,
            sam_account_name: u.sam_account_name.clone(),
            online_id: a.id.clone(),
            user_principal_name: a.user_principal_name.clone(),
            basis: basis.into(),
        };
        if let Some(a) = s
            .accounts
            .iter()
            .find(|a| a.immutable_id.as_ref() == Some(&anchor))
        {
            p.hard_matches.push(pair(a, "anchor"));
            continue;
        }
        let upn = suggest_upn(u, domain).to_lowercase();
        let mail = u.primary_smtp().map(|m| m.to_lowercase());
        let candidate = s
            .accounts
            .iter()
            .filter(|a| a.immutable_id.is_none())
            .find_map(|a| {
                if a.user_principal_name.to_lowercase() == upn {
                    Some((a, "user name"))
                } else if mail.as_deref().is_some_and(|m| {
                    a.mail
                        .as_deref()
                        .is_some_and(|am| am.eq_ignore_ascii_case(m))
                        || a.user_principal_name.eq_ignore_ascii_case(m)
                }) {
                    Some((a, "mail"))
                } else {
                    None
                }
            });
        if let Some((a, basis)) = candidate {
            if admins.contains(a.id.0.as_str()) {
                p.protected.push(pair(a, basis));
            } else {
                p.soft_candidates.push(pair(a, basis));
            }
        }
    }
    let local_upns = s
        .users
        .iter()
        .filter(|u| u.is_syncable())
        .filter_map(|u| {
            u.user_principal_name
                .clone()
                .map(|v| (v, u.sam_account_name.clone()))
        })
        .collect();
    p.conflicts
        .extend(duplicates(Side::Local, "userPrincipalName", local_upns));
    let local_proxies = s
        .users
        .iter()
        .filter(|u| u.is_syncable())
        .flat_map(|u| {
            u.proxy_addresses
                .iter()
                .filter_map(|a| smtp(a))
                .map(|a| (a, u.sam_account_name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    p.conflicts
        .extend(duplicates(Side::Local, "proxyAddress", local_proxies));
    let online_proxies = s
        .accounts
        .iter()
        .flat_map(|a| {
            a.proxy_addresses
                .iter()
                .filter_map(|x| smtp(x))
                .map(|x| (x, a.user_principal_name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    p.conflicts
        .extend(duplicates(Side::Online, "proxyAddress", online_proxies));
    p
}
