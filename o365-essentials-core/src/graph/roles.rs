//! Who holds a directory role, read the way Microsoft documents it: every role
//! assignment (`roleManagement/directory/roleAssignments`, all pages, principals
//! expanded), every eligible assignment (`roleEligibilitySchedules`, PIM), and the
//! members of role-assignable groups, transitively. Never by a role's display name:
//! holding any role protects an account.

use std::collections::HashMap;

use serde_json::Value;

use super::{GraphTenant, enc};
use crate::error::{Error, ErrorCode, Result};
use crate::model::AdminRoleHolder;

/// At most this many pages of one listing (100 assignments a page: far beyond any
/// tenant's role holders); a service that keeps sending next links is refused.
const MAX_PAGES: usize = 500;

fn text<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

impl GraphTenant {
    /// Every item of a paged Graph listing, following `@odata.nextLink` only within
    /// this tenant's Graph address, for at most [`MAX_PAGES`] pages.
    pub(crate) async fn all_pages(&self, first: &str, what: &str) -> Result<Vec<Value>> {
        let root = self.inner.cfg.graph_url.trim_end_matches('/').to_string();
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::new(
                    ErrorCode::UnexpectedResponse,
                    format!("{what}: Graph sent more than {MAX_PAGES} pages; stopped"),
                ));
            }
            let page = self.get(&url, what).await?;
            if let Some(items) = page.get("value").and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            if let Some(n) = page.get("@odata.nextLink").and_then(Value::as_str) {
                if !n.starts_with(&format!("{root}/")) {
                    return Err(Error::new(
                        ErrorCode::UnexpectedResponse,
                        format!("{what}: a next page link points away from {root}; not followed"),
                    ));
                }
                next = Some(n.to_string());
            }
        }
        Ok(out)
    }

    /// Every account that holds a directory role, with the roles' names.
    pub(crate) async fn role_holders(&self) -> Result<Vec<AdminRoleHolder>> {
        let names: HashMap<String, String> = self
            .all_pages(
                "/roleManagement/directory/roleDefinitions?$select=id,displayName",
                "reading the directory's role definitions",
            )
            .await?
            .iter()
            .filter_map(|d| {
                Some((
                    text(d, "id")?.to_string(),
                    text(d, "displayName")?.to_string(),
                ))
            })
            .collect();
        let mut grants = self
            .all_pages(
                "/roleManagement/directory/roleAssignments?$expand=principal",
                "reading who holds directory roles",
            )
            .await?;
        match self
            .all_pages(
                "/roleManagement/directory/roleEligibilitySchedules?$expand=principal",
                "reading who is eligible for directory roles",
            )
            .await
        {
            Ok(eligible) => grants.extend(eligible),
            // A tenant without Entra ID P2 has no eligible assignments to read (Graph
            // answers that the licence is missing): there are none.
            Err(e) if is_no_premium(&e) => {}
            Err(e) => return Err(e),
        }
        let mut holders: Vec<AdminRoleHolder> = Vec::new();
        let mut group_members: HashMap<String, Vec<Value>> = HashMap::new();
        for g in &grants {
            let role_id = text(g, "roleDefinitionId").unwrap_or_default();
            let role = names
                .get(role_id)
                .cloned()
                .unwrap_or_else(|| role_id.to_string());
            let principal = g.get("principal").cloned().unwrap_or(Value::Null);
            let kind = text(&principal, "@odata.type")
                .unwrap_or_default()
                .to_string();
            let Some(pid) = text(g, "principalId").or_else(|| text(&principal, "id")) else {
                continue;
            };
            if kind.ends_with(".group") {
                if !group_members.contains_key(pid) {
                    let members = self
                        .all_pages(
                            &format!(
                                "/groups/{}/transitiveMembers/microsoft.graph.user?$select=id,userPrincipalName",
                                enc(pid)
                            ),
                            "reading the members of a role-assignable group",
                        )
                        .await?;
                    group_members.insert(pid.to_string(), members);
                }
                for m in group_members.get(pid).into_iter().flatten() {
                    super::map::add_role_holder(&mut holders, m, &role);
                }
            } else if kind.is_empty() || kind.ends_with(".user") {
                let member = if principal.is_null() {
                    serde_json::json!({ "id": pid })
                } else {
                    principal
                };
                super::map::add_role_holder(&mut holders, &member, &role);
            }
            // Service principals hold roles too; they are not accounts the engine writes.
        }
        for h in &mut holders {
            h.roles.sort();
            h.roles.dedup();
        }
        holders.retain(|h| !h.id.0.is_empty());
        Ok(holders)
    }
}

fn is_no_premium(e: &Error) -> bool {
    let m = e
        .service()
        .map(|s| format!("{} {}", s.code, s.message))
        .unwrap_or_default()
        .to_ascii_lowercase();
    m.contains("premium") || m.contains("aadpremiumlicenserequired")
}
