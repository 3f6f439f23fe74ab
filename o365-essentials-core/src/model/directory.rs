//! What a directory reports besides users: changes, password policy, topology.

use serde::{Deserialize, Serialize};

use super::identity::{LocalUser, ObjectGuid};

/// An opaque position in a directory's change stream, persisted by the caller.
///
/// For AD it wraps the DirSync cookie (or a uSN); for the memory directory a counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DirectoryCursor(pub String);

/// One change of a local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectoryChange {
    /// Created or changed: the user as it is now.
    Upserted {
        /// The user now.
        user: Box<LocalUser>,
    },
    /// Deleted (a tombstone): only the GUID survives.
    Deleted {
        /// The deleted user's `objectGUID`.
        guid: ObjectGuid,
    },
}

/// The changes since a cursor, and the cursor to ask from next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryChanges {
    /// Changes, oldest first. Only syncable users are reported as upserted.
    pub changes: Vec<DirectoryChange>,
    /// Where the next call should continue.
    pub cursor: DirectoryCursor,
    /// The given cursor was not accepted (or none was given): `changes` holds every
    /// current user, and users missing from it must be treated as deleted.
    pub full_resync: bool,
}

/// The domain's password policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    /// `minPwdLength`.
    pub min_length: u32,
    /// `pwdProperties` bit 1: complexity required.
    pub complexity: bool,
    /// `pwdHistoryLength`.
    pub history_length: u32,
}

impl Default for PasswordPolicy {
    /// AD's out-of-the-box policy: 7 characters, complexity on, 24 remembered.
    fn default() -> Self {
        PasswordPolicy {
            min_length: 7,
            complexity: true,
            history_length: 24,
        }
    }
}

/// The domain's topology, for the requirements check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// DNS host names of the domain controllers.
    pub domain_controllers: Vec<String>,
    /// The DC this connection talks to (rootDSE `dnsHostName`).
    pub connected_dc: String,
    /// Whether this host is that DC.
    pub this_host_is_dc: bool,
    /// `domainFunctionality` of rootDSE (e.g. 7 = Windows Server 2016).
    pub domain_functional_level: u32,
    /// The DNS name of the domain (e.g. `essentials.test`).
    pub domain_dns_name: String,
    /// The NetBIOS name of the domain, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netbios_name: Option<String>,
}
