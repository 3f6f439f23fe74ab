//! Plans, their items, requirement reports and run results.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::identity::{AccountUpdate, Anchor, LinkOrigin, ObjectGuid, OnlineAccountId};
use super::tenant::LicenceAssignment;
use crate::error::ErrorCode;

/// What the local user looked like when the plan was made; `apply` refuses an item whose
/// user changed since (a newer `uSNChanged`) or whose UPN got taken meanwhile.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalVersion {
    /// The local user's GUID.
    pub guid: ObjectGuid,
    /// `sAMAccountName`, for people reading the plan.
    pub sam_account_name: String,
    /// `uSNChanged` when planned.
    pub usn_changed: u64,
}

/// One thing a plan will do.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PlanAction {
    /// Create an online account for a local user and link it.
    CreateAccount {
        /// The local user.
        local: LocalVersion,
        /// UPN to create.
        user_principal_name: String,
        /// `displayName`.
        display_name: String,
        /// `mailNickname`.
        mail_nickname: String,
        /// The anchor to write.
        anchor: Anchor,
        /// `usageLocation`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage_location: Option<String>,
        /// Licences to assign after creating.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        licences: Vec<LicenceAssignment>,
    },
    /// Link an existing online account to a local user.
    Link {
        /// The local user.
        local: LocalVersion,
        /// The online account.
        online_id: OnlineAccountId,
        /// Its UPN when planned.
        user_principal_name: String,
        /// The anchor to write (if not yet set).
        anchor: Anchor,
        /// Hard match, soft match or manual.
        origin: LinkOrigin,
    },
    /// Update properties of a linked online account.
    Update {
        /// The local user.
        local: LocalVersion,
        /// The online account.
        online_id: OnlineAccountId,
        /// What changes.
        update: AccountUpdate,
    },
    /// Block sign-in and revoke sessions.
    Disable {
        /// The local user.
        local: LocalVersion,
        /// The online account.
        online_id: OnlineAccountId,
    },
    /// Allow sign-in again.
    Enable {
        /// The local user.
        local: LocalVersion,
        /// The online account.
        online_id: OnlineAccountId,
    },
    /// Delete the online account (soft: restorable for 30 days).
    Delete {
        /// The deleted local user's GUID.
        local_guid: ObjectGuid,
        /// The online account.
        online_id: OnlineAccountId,
    },
    /// Set the online password (delivered from the password queue, never in the plan).
    SetPassword {
        /// The local user.
        local_guid: ObjectGuid,
        /// The online account.
        online_id: OnlineAccountId,
    },
    /// Assign and/or remove licences.
    Licences {
        /// The local user.
        local_guid: ObjectGuid,
        /// The online account.
        online_id: OnlineAccountId,
        /// Licences to add.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        add: Vec<LicenceAssignment>,
        /// SKU ids to remove.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remove: Vec<Uuid>,
    },
}

impl PlanAction {
    /// Whether the action takes something away (counted by the safety threshold).
    pub fn is_destructive(&self) -> bool {
        match self {
            PlanAction::Disable { .. } | PlanAction::Delete { .. } => true,
            PlanAction::Licences { remove, .. } => !remove.is_empty(),
            _ => false,
        }
    }

    /// The local user the action is about.
    pub fn local_guid(&self) -> ObjectGuid {
        match self {
            PlanAction::CreateAccount { local, .. }
            | PlanAction::Link { local, .. }
            | PlanAction::Update { local, .. }
            | PlanAction::Disable { local, .. }
            | PlanAction::Enable { local, .. } => local.guid,
            PlanAction::Delete { local_guid, .. }
            | PlanAction::SetPassword { local_guid, .. }
            | PlanAction::Licences { local_guid, .. } => *local_guid,
        }
    }
}

/// An item of a plan: an action and the reason for it.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanItem {
    /// Position in the plan, from 1.
    pub seq: u32,
    /// What to do.
    #[serde(flatten)]
    pub action: PlanAction,
    /// Why, as a stable name a dashboard can branch on and translate.
    pub reason: PlanReason,
    /// The same in words for the administrator (never read by code).
    pub message: String,
    /// Beyond the free seats of a licence it would get: applied, it is refused (or
    /// created unlicensed when the plan allows it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub licence_short: bool,
}

/// A reviewable, serialisable set of changes; `apply` executes exactly this.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Plan id (journal entries refer to it).
    pub id: Uuid,
    /// When it was computed.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::json::Rfc3339")]
    pub created_at: OffsetDateTime,
    /// The tenant it was computed for.
    pub tenant_id: String,
    /// The items, in execution order.
    pub items: Vec<PlanItem>,
    /// Users considered but left alone, with why (excluded, already linked...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedUser>,
    /// Seats per licence the plan's new accounts take, against the free seats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<SeatCount>,
    /// Create accounts whose licence has no free seat anyway, unlicensed (the next plan
    /// proposes the licence); otherwise such items are refused when applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unlicensed: bool,
}

/// A local user a plan leaves alone, with the reason.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedUser {
    /// The local user.
    pub guid: ObjectGuid,
    /// `sAMAccountName`.
    pub sam_account_name: String,
    /// Why, as a stable name.
    pub reason: SkipReason,
    /// The gate's rule, when the user is protected or out of scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<crate::engine::guard::GuardRule>,
    /// The same in words for the administrator (never read by code).
    pub message: String,
}

/// Seats of one licence across a plan: how many are free now and how many the plan's
/// new accounts would take.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatCount {
    /// `skuId`.
    pub sku_id: Uuid,
    /// `skuPartNumber` (empty when the tenant has no such subscription).
    pub sku_part_number: String,
    /// Seats free when the plan was made.
    pub free: u32,
    /// Seats the plan would take.
    pub planned: u32,
    /// Items beyond the free seats (they would be left without this licence).
    pub short: u32,
}

/// Outcome of one check of the requirements report.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Pass,
    /// Works, but worth attention.
    Warn,
    /// Blocks integration.
    Fail,
}

/// One check of the requirements report.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequirementCheck {
    /// Stable id (`single_domain_controller`, `tenant_reachable`, ...).
    pub id: String,
    /// Short title.
    pub title: String,
    /// Pass, warn or fail.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when it passed).
    #[serde(default)]
    pub remedy: String,
}

/// The requirements report shown before integrating.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RequirementsReport {
    /// Every check made.
    pub checks: Vec<RequirementCheck>,
}

impl RequirementsReport {
    /// Whether no check failed.
    pub fn can_integrate(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }
}

/// How one item of a run ended.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Made as asked: the change is online and recorded.
    Succeeded,
    /// Failed; see the error code and message.
    Failed,
    /// Not attempted (precondition failed, excluded).
    Skipped,
    /// Held back by the safety threshold.
    Held,
    /// Not started: the run was cancelled first (a rerun does it).
    Cancelled,
}

/// Why an item is in a plan.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanReason {
    /// The local user has no online account yet.
    NoOnlineAccount,
    /// An online account already carries the user's anchor (hard match).
    HardMatch,
    /// An online account has the same user name or mail (soft match, when asked).
    SoftMatch,
    /// The local account was enabled.
    EnabledLocally,
    /// The local account was disabled.
    DisabledLocally,
    /// The local account expired (`accountExpires` passed): blocked like a disabled one.
    ExpiredLocally,
    /// Names or the user name changed locally.
    ChangedLocally,
    /// The local user was deleted.
    DeletedLocally,
    /// The linked online account has no licence (none was free when it was made).
    Unlicensed,
    /// The local user became protected (privileged, excluded) or left the scope: its
    /// online account is blocked.
    ProtectedLocally,
    /// The local user is no longer in the configured bases or user filter.
    OutOfScopeLocally,
}

/// Why a local user is not in a bulk-create plan.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A built-in, service, computer or critical-system account: never synced.
    NeverSynced,
    /// The local user already has an online account.
    AlreadyLinked,
    /// Its anchor is on an online account linked to another local user.
    AnchorOnLinkedAccount,
    /// The online ID is used by an existing account (link it by soft match or choose
    /// another ID).
    OnlineIdTaken,
    /// The matching online account holds an administrator role (never matched
    /// automatically).
    AdministratorAccount,
    /// The matching online account is linked to another local user.
    LinkedToAnotherUser,
    /// No valid online ID can be made (or the one chosen is invalid).
    InvalidOnlineId,
    /// A protected user (privileged, the bind account, or excluded by the
    /// configuration): never synced unless `allow_protected` names it.
    Protected,
    /// Outside the configured bases or user filter.
    OutOfScope,
}

/// What a run item did.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemAction {
    /// Created an online account.
    CreateAccount,
    /// Linked an existing online account.
    Link,
    /// Updated names or the user name online.
    Update,
    /// Blocked sign-in online.
    Disable,
    /// Allowed sign-in online.
    Enable,
    /// Deleted the online account.
    Delete,
    /// Set the password online.
    SetPassword,
    /// Changed licences.
    Licences,
    /// Made a local user from an online account.
    Import,
}

impl PlanAction {
    /// The run-item action this plan action becomes.
    pub fn kind(&self) -> ItemAction {
        match self {
            PlanAction::CreateAccount { .. } => ItemAction::CreateAccount,
            PlanAction::Link { .. } => ItemAction::Link,
            PlanAction::Update { .. } => ItemAction::Update,
            PlanAction::Disable { .. } => ItemAction::Disable,
            PlanAction::Enable { .. } => ItemAction::Enable,
            PlanAction::Delete { .. } => ItemAction::Delete,
            PlanAction::SetPassword { .. } => ItemAction::SetPassword,
            PlanAction::Licences { .. } => ItemAction::Licences,
        }
    }
}

impl ItemAction {
    /// The stable name (`create_account`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            ItemAction::CreateAccount => "create_account",
            ItemAction::Link => "link",
            ItemAction::Update => "update",
            ItemAction::Disable => "disable",
            ItemAction::Enable => "enable",
            ItemAction::Delete => "delete",
            ItemAction::SetPassword => "set_password",
            ItemAction::Licences => "licences",
            ItemAction::Import => "import",
        }
    }
}

/// What kind of run produced results.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Online accounts created (or linked) for local users.
    BulkCreate,
    /// Local users made from online accounts.
    Import,
    /// A sync run.
    Sync,
}

impl RunKind {
    /// The stable name (`bulk_create`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RunKind::BulkCreate => "bulk_create",
            RunKind::Import => "import",
            RunKind::Sync => "sync",
        }
    }
}

/// The result of one item of a run — one row of the results file.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The local user (`sAMAccountName`).
    pub local_user: String,
    /// The local user's GUID.
    pub local_guid: ObjectGuid,
    /// The UPN asked for, if the item concerned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_upn: Option<String>,
    /// The action (`create_account`, `disable`...).
    pub action: ItemAction,
    /// Why the item was planned, when it came from a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<PlanReason>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error code when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// What the service said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_message: Option<String>,
    /// What to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_action: Option<String>,
    /// The online account concerned, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_id: Option<OnlineAccountId>,
    /// For an account created: whether it got the user's current password (captured on
    /// the DC before the account existed) or a random initial one, which the user's next
    /// password change replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_source: Option<PasswordSource>,
}

/// Where a new online account's first password came from.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    /// The user's current local password: they sign in with it from day one.
    Current,
    /// A random initial password: the user's next password change replaces it.
    Random,
}

/// What a run did: per item results and totals.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResults {
    /// Run id.
    pub run_id: Uuid,
    /// What kind of run.
    pub kind: RunKind,
    /// Start time.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::json::Rfc3339")]
    pub started_at: OffsetDateTime,
    /// End time.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::json::Rfc3339")]
    pub finished_at: OffsetDateTime,
    /// One result per item.
    pub items: Vec<ItemResult>,
    /// How many items ended each way (succeeded, failed, skipped, held, cancelled).
    #[serde(default)]
    pub counts: crate::engine::RunCounts,
    /// The results file (JSON) this run wrote, for `plan_retry`'s `results_file`; absent
    /// when no results folder is configured or the file could not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_file: Option<std::path::PathBuf>,
    /// The same results as CSV (for a spreadsheet), written beside the JSON file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_csv: Option<std::path::PathBuf>,
}

impl RunResults {
    /// How many items ended with this outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.items.iter().filter(|i| i.outcome == outcome).count()
    }
}

/// A progress report: done of total, and the item being worked on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Items finished.
    pub done: u64,
    /// Items in the run.
    pub total: u64,
    /// What is being worked on (a user name), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}
