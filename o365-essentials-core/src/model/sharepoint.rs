//! SharePoint Online: the team site, document libraries and site groups.

use serde::{Deserialize, Serialize};

/// The root team site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamSite {
    /// Graph site id (`host,siteGuid,webGuid`).
    pub id: String,
    /// `webUrl`.
    pub url: String,
    /// `displayName`.
    pub display_name: String,
}

/// A document library.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Library {
    /// List id.
    pub id: String,
    /// `displayName`.
    pub name: String,
    /// `description`.
    #[serde(default)]
    pub description: String,
    /// `webUrl`.
    pub url: String,
    /// Whether versioning is on; `None` when it could not be read (SharePoint REST
    /// needs a certificate credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<bool>,
    /// The drive id, once the drive exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_id: Option<String>,
}

/// What is needed to create a library.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLibrary {
    /// `displayName`.
    pub name: String,
    /// `description`.
    #[serde(default)]
    pub description: String,
    /// Versioning on (SharePoint Online's default) or off. Turning it off is a SharePoint
    /// REST call, which needs a certificate credential.
    #[serde(default = "versioning_default")]
    pub versioning: bool,
}

fn versioning_default() -> bool {
    true
}

impl Default for NewLibrary {
    fn default() -> Self {
        NewLibrary {
            name: String::new(),
            description: String::new(),
            versioning: true,
        }
    }
}

/// The three associated groups of a team site.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteRole {
    /// Full control.
    Owner,
    /// Edit.
    Member,
    /// Read.
    Visitor,
}

/// A site group with its members.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteGroup {
    /// SharePoint group id.
    pub id: u32,
    /// Which associated group it is.
    pub role: SiteRole,
    /// `Title`.
    pub title: String,
    /// Members' UPNs.
    #[serde(default)]
    pub members: Vec<String>,
}

/// What a revoke did.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeOutcome {
    /// The user had the access and lost it.
    Revoked,
    /// The user had no such access; nothing changed.
    NothingToRevoke,
}
