//! The sync: directory changes → lifecycle propagation (disable, enable, delete, updates),
//! online changes made behind our back → drift reports, a safety threshold on
//! destructive changes, and password delivery; once, or in a loop.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::executor::{StepKind, failed_item};
use super::{
    CancelToken, Control, Drift, DriftKind, Event, Integration, PasswordDelivery,
    PasswordSyncState, RunCounts,
};
use crate::error::{Error, ErrorCode, Result};
use crate::model::{
    AccountUpdate, DirectoryChange, DirectoryChanges, DirectoryCursor, ItemAction, ItemResult,
    Link, LinkState, LocalUser, LocalVersion, ObjectGuid, OnlineAccount, OnlineChange, Outcome,
    PlanAction, PlanReason, RunKind, RunResults,
};
use crate::store::Work;

const DIRECTORY_CURSOR: &str = "directory";
const DELTA_CURSOR: &str = "graph_delta";
const TOUCHED: &str = "sync_touched";
const EXPIRING: &str = "sync_expiring";
/// Linked users whose online account is known to be blocked (so a round reads again
/// only the ones whose state may have changed).
const BLOCKED: &str = "sync_blocked";
/// The journal kinds of sync items (their actions' names), written under the sync lease.
const SYNC_KINDS: &[&str] = &[
    ItemAction::Enable.name(),
    ItemAction::Disable.name(),
    ItemAction::Update.name(),
    ItemAction::Delete.name(),
];
/// At or below this many linked accounts to look at, each is read by itself; above it
/// the account list may be read in pages of 999 instead.
const LIST_ABOVE: usize = 200;

/// How a sync run treats destructive changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncOptions {
    /// Allow more disables/deletes than the threshold in this run.
    #[serde(default)]
    pub allow_beyond_threshold: bool,
    /// The threshold as a fraction of linked accounts (10%).
    #[serde(default = "default_fraction")]
    pub threshold_fraction: f64,
    /// ... but never below this many (5).
    #[serde(default = "default_min")]
    pub threshold_min: usize,
}

fn default_fraction() -> f64 {
    0.10
}

fn default_min() -> usize {
    5
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            allow_beyond_threshold: false,
            threshold_fraction: default_fraction(),
            threshold_min: default_min(),
        }
    }
}

/// What a sync run did.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    /// Per-item results (held items have outcome `held`).
    pub results: RunResults,
    /// The destructive items held back by the safety threshold (allow them to apply).
    pub held: usize,
    /// The threshold in force.
    pub threshold: usize,
    /// Changes made online by someone else to linked accounts.
    pub drift: Vec<Drift>,
    /// Whether the directory could not continue from its cursor and was read whole.
    pub full_resync: bool,
    /// Passwords delivered in this run.
    pub passwords: PasswordDelivery,
}

/// One change a sync run would make.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncItem {
    /// Position in the plan (1-based).
    pub seq: u32,
    /// The local user (its sAMAccountName, or the online ID of a deleted one).
    pub local_user: String,
    /// What would be done.
    #[serde(flatten)]
    pub action: PlanAction,
    /// Why the plan proposes it (the difference it found between the two sides).
    pub reason: PlanReason,
    /// Whether the safety threshold would hold it.
    pub held: bool,
}

/// What a sync run would do now — reviewable; computing it writes nothing (no cursor
/// moves, no request that changes anything).
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct SyncPlan {
    /// The plan's id (the run's, when applied).
    pub id: Uuid,
    /// The tenant it was made for.
    pub tenant_id: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::json::Rfc3339")]
    pub created_at: OffsetDateTime,
    /// The directory cursor it was made from; applying refuses the plan when another run
    /// moved it since.
    #[serde(default)]
    pub from_cursor: Option<String>,
    /// Where the directory cursor goes once the plan is applied.
    pub next_cursor: String,
    /// Where the online changes cursor goes once the plan is applied.
    pub delta_link: String,
    /// Linked users with a future `accountExpires`, looked at again once it passed.
    #[serde(default)]
    pub expiring: HashMap<ObjectGuid, i64>,
    /// The changes, in the order they would be made.
    pub items: Vec<SyncItem>,
    /// How many destructive changes the threshold would hold.
    pub held: usize,
    /// The threshold in force.
    pub threshold: usize,
    /// Changes made online by someone else to linked accounts.
    pub drift: Vec<Drift>,
    /// Whether the directory would be read whole (no usable cursor).
    pub full_resync: bool,
    /// Passwords queued for delivery.
    pub passwords_queued: usize,
    /// Linked users whose online account was seen blocked when the plan was made (kept
    /// once the plan is applied, with the disables and enables it makes).
    #[serde(default)]
    pub blocked: Vec<ObjectGuid>,
    /// The engine's own-write markers this plan's drift skipped (cleared when applied).
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) own_write_markers: Vec<String>,
}

/// The local part an online ID would get from a local user now.
fn local_part(u: &LocalUser) -> String {
    super::suggest_upn(u, "x.invalid")
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn version(u: &LocalUser) -> LocalVersion {
    LocalVersion {
        guid: u.guid,
        sam_account_name: u.sam_account_name.clone(),
        usn_changed: u.usn_changed,
    }
}

/// Pure: the items that bring linked online accounts in line with these local users.
pub fn plan_sync(
    upserted: &[LocalUser],
    deleted: &[ObjectGuid],
    links: &HashMap<ObjectGuid, Link>,
    online: &HashMap<String, OnlineAccount>,
    now: OffsetDateTime,
) -> Vec<(PlanAction, PlanReason)> {
    plan_sync_with(
        upserted,
        deleted,
        links,
        online,
        now,
        &super::guard::Policy::default(),
    )
}

/// [`plan_sync`] under the gate's rules: a linked user who is protected or out of
/// scope gets only a block, never an update or an enable.
pub fn plan_sync_with(
    upserted: &[LocalUser],
    deleted: &[ObjectGuid],
    links: &HashMap<ObjectGuid, Link>,
    online: &HashMap<String, OnlineAccount>,
    now: OffsetDateTime,
    policy: &super::guard::Policy,
) -> Vec<(PlanAction, PlanReason)> {
    let mut items = Vec::new();
    for u in upserted {
        if let Some(refusal) = policy.local_refusal(u) {
            let Some(link) = links
                .get(&u.guid)
                .filter(|l| matches!(l.state, LinkState::Active | LinkState::Suspended))
            else {
                continue;
            };
            let enabled_online = online
                .get(&link.online_id.0)
                .is_none_or(|a| a.account_enabled);
            if enabled_online || link.state == LinkState::Active {
                items.push((
                    PlanAction::Disable {
                        local: version(u),
                        online_id: link.online_id.clone(),
                    },
                    if refusal.rule == super::guard::GuardRule::OutOfScope {
                        PlanReason::OutOfScopeLocally
                    } else {
                        PlanReason::ProtectedLocally
                    },
                ));
            }
            continue;
        }
        let Some(link) = links
            .get(&u.guid)
            .filter(|l| matches!(l.state, LinkState::Active | LinkState::Suspended))
        else {
            continue;
        };
        let Some(acc) = online.get(&link.online_id.0) else {
            continue;
        };
        let active = u.active_at(now);
        if active != acc.account_enabled {
            let action = if active {
                PlanAction::Enable {
                    local: version(u),
                    online_id: acc.id.clone(),
                }
            } else {
                PlanAction::Disable {
                    local: version(u),
                    online_id: acc.id.clone(),
                }
            };
            let reason = if active {
                PlanReason::EnabledLocally
            } else if u.enabled() && u.expired_at(now) {
                PlanReason::ExpiredLocally
            } else {
                PlanReason::DisabledLocally
            };
            items.push((action, reason));
        }
        let mut update = AccountUpdate::default();
        let name = u.friendly_name();
        if name != acc.display_name {
            update.display_name = Some(name);
        }
        if u.given_name.is_some() && u.given_name != acc.given_name {
            update.given_name = u.given_name.clone();
        }
        if u.surname.is_some() && u.surname != acc.surname {
            update.surname = u.surname.clone();
        }
        let want = local_part(u);
        let (have, domain) = acc
            .user_principal_name
            .split_once('@')
            .unwrap_or((acc.user_principal_name.as_str(), ""));
        if !want.is_empty() && !want.eq_ignore_ascii_case(have) && !domain.is_empty() {
            update.user_principal_name = Some(format!("{want}@{domain}"));
            update.mail_nickname = Some(want);
        }
        if !update.is_empty() {
            items.push((
                PlanAction::Update {
                    local: version(u),
                    online_id: acc.id.clone(),
                    update,
                },
                PlanReason::ChangedLocally,
            ));
        }
    }
    let mut seen = HashSet::new();
    for g in deleted {
        if !seen.insert(*g) {
            continue;
        }
        if let Some(link) = links
            .get(g)
            .filter(|l| matches!(l.state, LinkState::Active | LinkState::Suspended))
        {
            items.push((
                PlanAction::Delete {
                    local_guid: *g,
                    online_id: link.online_id.clone(),
                },
                PlanReason::DeletedLocally,
            ));
        }
    }
    items
}

/// A running sync loop; [`SyncLoop::stop`] ends it within one item.
pub struct SyncLoop {
    cancel: CancelToken,
    done: std::sync::mpsc::Receiver<usize>,
    thread: Option<std::thread::JoinHandle<()>>,
    task: Option<tokio::task::JoinHandle<usize>>,
}

impl std::fmt::Debug for SyncLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncLoop").finish_non_exhaustive()
    }
}

impl SyncLoop {
    /// Stops the loop (the round under way stops at its next item boundary) and returns
    /// how many rounds ran. Each round was reported as an event; the loop keeps no
    /// history. Blocking: call it from a thread that is not a runtime worker, or use
    /// [`SyncLoop::stop_async`].
    pub fn stop(mut self) -> usize {
        self.cancel.cancel();
        let rounds = self.done.recv().unwrap_or(0);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        rounds
    }

    /// Waits until the loop ends by itself, which it never does before it is stopped
    /// unless something broke (a panic in a round): returns why. Cancel-safe: after a
    /// `select!` chose another branch the loop can still be stopped. A loop on a
    /// runtime of its own (no `runtime` given) is never reported.
    pub async fn ended(&mut self) -> String {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let r = task.await;
        self.task = None;
        match r {
            Ok(rounds) => format!("the sync loop ended after {rounds} rounds"),
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                format!("the sync loop panicked: {why}")
            }
            Err(e) => format!("the sync loop's task ended: {e}"),
        }
    }

    /// [`SyncLoop::stop`] for async callers.
    pub async fn stop_async(mut self) -> usize {
        self.cancel.cancel();
        match self.task.take() {
            Some(t) => t.await.unwrap_or(0),
            None => tokio::task::spawn_blocking(move || self.stop())
                .await
                .unwrap_or(0),
        }
    }
}

impl Drop for SyncLoop {
    fn drop(&mut self) {
        // A loop nobody stops ends with its owner.
        self.cancel.cancel();
    }
}

/// The sync view: planning, running and applying sync rounds (the loop, which holds an
/// `Arc<Integration>`, is started on the root). Each of the table's rows for it is
/// one call here ([`Integration::sync`]).
#[derive(Clone, Copy)]
pub struct SyncView<'a> {
    i: &'a Integration,
}

impl Integration {
    /// The sync view.
    pub fn sync(&self) -> SyncView<'_> {
        SyncView { i: self }
    }
}

impl Integration {
    /// Starts the sync loop: a round ([`SyncView::run_sync`]) every `interval` (the
    /// configuration's when `None`; after a failed round sooner, backing off from 5 s), each reported as [`Event::SyncRoundFinished`] to
    /// `ctl`'s observer. It runs on `runtime` when given, else on a runtime of its own in
    /// a thread of its own, so it works from programs that are not on tokio. Allowing
    /// changes beyond the safety threshold (in `options`) applies to the first round only.
    pub fn start_sync_loop(
        self: Arc<Self>,
        interval: Option<Duration>,
        options: SyncOptions,
        ctl: Control,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Result<SyncLoop> {
        let interval =
            interval.unwrap_or_else(|| Duration::from_secs(self.settings.sync.interval_secs));
        let cancel = ctl.cancel.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let body = {
            let cancel = cancel.clone();
            async move {
                let mut options = options;
                let mut rounds = 0usize;
                let mut failures = 0u32;
                while !cancel.is_cancelled() {
                    let r = self.sync().run_sync(&options, &ctl).await;
                    rounds += 1;
                    options.allow_beyond_threshold = false;
                    ctl.emit(round_event(&r));
                    // After a failed round (the tenant or the DC away) the next comes
                    // sooner, backing off: 5 s, 10 s, 20 s ... up to the interval.
                    let wait = match &r {
                        Ok(_) => {
                            failures = 0;
                            interval
                        }
                        Err(_) => {
                            failures = failures.saturating_add(1);
                            let backoff = Duration::from_secs(5)
                                .saturating_mul(1u32 << (failures - 1).min(16));
                            backoff.min(interval)
                        }
                    };
                    if cancel.sleep(wait).await.is_err() {
                        break;
                    }
                }
                // Every event is delivered before `stop` returns: the observer's sink
                // drains and ends with the loop's control.
                drop(ctl);
                let _ = tx.send(rounds);
                rounds
            }
        };
        match runtime {
            Some(h) => {
                let task = h.spawn(body);
                Ok(SyncLoop {
                    cancel,
                    done: rx,
                    thread: None,
                    task: Some(task),
                })
            }
            None => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Error::internal(format!("cannot start the sync loop's runtime: {e}"))
                    })?;
                let thread = std::thread::Builder::new()
                    .name("o365-sync-loop".into())
                    .spawn(move || {
                        rt.block_on(body);
                    })
                    .map_err(|e| Error::internal(format!("cannot start the sync loop: {e}")))?;
                Ok(SyncLoop {
                    cancel,
                    done: rx,
                    thread: Some(thread),
                    task: None,
                })
            }
        }
    }

    /// Starts the loop on the current tokio runtime with the configuration's interval
    /// and no observer.
    ///
    /// # Errors
    /// [`ErrorCode::Internal`] when no runtime is current.
    pub fn spawn_sync_loop(
        self: Arc<Self>,
        interval: Duration,
        options: SyncOptions,
    ) -> Result<SyncLoop> {
        let h = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::internal("spawn_sync_loop needs a tokio runtime; use start_sync_loop")
        })?;
        self.start_sync_loop(Some(interval), options, Control::none(), Some(h))
    }
}

fn round_event(r: &Result<SyncReport>) -> Event {
    match r {
        Ok(rep) => Event::SyncRoundFinished {
            run_id: rep.results.run_id,
            counts: RunCounts::of(&rep.results.items),
            passwords_delivered: rep.passwords.delivered,
            error_code: None,
            error: None,
        },
        Err(e) => {
            let partial: Option<SyncReport> = e
                .partial()
                .and_then(|p| serde_json::from_value(p.clone()).ok());
            Event::SyncRoundFinished {
                run_id: partial
                    .as_ref()
                    .map(|p| p.results.run_id)
                    .unwrap_or_default(),
                counts: partial
                    .as_ref()
                    .map(|p| RunCounts::of(&p.results.items))
                    .unwrap_or_default(),
                passwords_delivered: partial.map(|p| p.passwords.delivered).unwrap_or(0),
                error_code: Some(e.code()),
                error: Some(e.to_string()),
            }
        }
    }
}

impl SyncView<'_> {
    /// The options of a run from the configuration's threshold.
    pub fn sync_options(&self) -> SyncOptions {
        SyncOptions {
            allow_beyond_threshold: false,
            threshold_fraction: self.i.settings.sync.threshold_fraction,
            threshold_min: self.i.settings.sync.threshold_min,
        }
    }

    /// The configuration's options, allowing changes beyond the safety threshold in this
    /// run only when `allow_beyond_threshold`.
    pub fn options(&self, allow_beyond_threshold: bool) -> SyncOptions {
        SyncOptions {
            allow_beyond_threshold,
            ..self.sync_options()
        }
    }

    /// Online changes since the stored delta link, less the engine's own writes (their
    /// markers are returned, for the run that moves the delta link to clear).
    async fn online_drift(
        &self,
        touched: &HashSet<String>,
    ) -> Result<(Vec<Drift>, String, Vec<String>)> {
        let (own, markers) = super::guard::own_writes(&self.i.store)?;
        let (drift, link) = self.online_drift_skipping(touched, &own).await?;
        Ok((drift, link, markers))
    }

    async fn online_drift_skipping(
        &self,
        touched: &HashSet<String>,
        own: &HashSet<String>,
    ) -> Result<(Vec<Drift>, String)> {
        let tenant = self.i.tenant();
        let Some(link) = self.i.store.cursor(DELTA_CURSOR)? else {
            // The first run reads every linked account itself: the delta starts now.
            return Ok((Vec::new(), tenant.changes_from_now().await?));
        };
        let link = Some(link);
        let round = tenant.changes(link.as_deref()).await?;
        let mut drift = Vec::new();
        if link.is_some() && !round.full_resync {
            for c in &round.changes {
                let (id, kind, what) = match c {
                    OnlineChange::Changed { account } => (
                        account.id.clone(),
                        DriftKind::ChangedOnline,
                        format!("{} was changed online", account.user_principal_name),
                    ),
                    OnlineChange::Removed { id, reason } => (
                        id.clone(),
                        DriftKind::RemovedOnline,
                        format!("{id} was removed online ({reason})"),
                    ),
                };
                if touched.contains(&id.0) || own.contains(&id.0) {
                    continue;
                }
                if let Some(l) = self.i.store.link_by_online(&id)? {
                    drift.push(Drift {
                        local_guid: l.local_guid,
                        kind,
                        what,
                    });
                }
            }
        }
        Ok((drift, round.delta_link))
    }

    async fn decide(&self, options: &SyncOptions) -> Result<SyncPlan> {
        let status = self.i.require_enabled()?;
        let now = self.i.now();
        let touched: HashSet<String> = self.i.store.setting(TOUCHED)?.unwrap_or_default();
        let (drift, delta_link, own_write_markers) = self.online_drift(&touched).await?;

        let cursor = self.i.store.cursor(DIRECTORY_CURSOR)?.map(DirectoryCursor);
        let DirectoryChanges {
            changes,
            cursor: next_cursor,
            full_resync,
        } = self.i.dir.changes_since(cursor.as_ref()).await?;
        let links = self.links_by_local()?;
        let mut upserted = Vec::with_capacity(changes.len());
        let mut deleted = Vec::new();
        for c in changes {
            match c {
                DirectoryChange::Upserted { user } => upserted.push(*user),
                DirectoryChange::Deleted { guid } => deleted.push(guid),
            }
        }
        if full_resync && cursor.is_some() {
            // Read whole: linked users missing from it were deleted.
            let present: HashSet<ObjectGuid> = upserted.iter().map(|u| u.guid).collect();
            deleted.extend(links.keys().filter(|g| !present.contains(g)).copied());
        }
        // Accounts that expire change nothing in the directory when the day comes: the
        // ones seen with a future end date are looked at again once it has passed.
        let mut expiring: HashMap<ObjectGuid, OffsetDateTime> =
            self.i.store.setting(EXPIRING)?.unwrap_or_default();
        for u in &upserted {
            match u.account_expires {
                Some(t) if t > now => {
                    expiring.insert(u.guid, t);
                }
                _ => {
                    expiring.remove(&u.guid);
                }
            }
        }
        let read: HashSet<ObjectGuid> = upserted.iter().map(|u| u.guid).collect();
        let due: Vec<ObjectGuid> = expiring
            .iter()
            .filter(|(g, t)| **t <= now && !read.contains(g))
            .map(|(g, _)| *g)
            .collect();
        for g in due {
            expiring.remove(&g);
            match self.i.dir.user(g).await {
                Ok(u) => upserted.push(u),
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        // Every round, the links against the directory itself (one listing), not only the
        // change cursor: a leaver is never missed — deleted before the first round, while
        // the service was down, after a lost cursor, or moved out of scope. Only users
        // whose state may differ online are looked at further.
        let policy = self.i.gate.policy();
        let blocked: HashSet<ObjectGuid> = self.i.store.setting(BLOCKED)?.unwrap_or_default();
        let listed: HashMap<ObjectGuid, LocalUser> = self
            .i
            .dir
            .users()
            .map_ok(|u| (u.guid, u))
            .try_collect()
            .await?;
        let gone: HashSet<ObjectGuid> = deleted.iter().copied().collect();
        let mut at: HashMap<ObjectGuid, usize> = upserted
            .iter()
            .enumerate()
            .map(|(i, u)| (u.guid, i))
            .collect();
        for link in links
            .values()
            .filter(|l| matches!(l.state, LinkState::Active | LinkState::Suspended))
        {
            let g = link.local_guid;
            if gone.contains(&g) {
                continue;
            }
            let user = match listed.get(&g) {
                Some(u) => u.clone(),
                // Not listed: out of scope, no longer syncable, or gone.
                None => match self.i.dir.user(g).await {
                    Ok(u) => u,
                    Err(e) if e.code() == ErrorCode::NotFound => {
                        deleted.push(g);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let refused = policy.local_refusal(&user).is_some();
            // Looked at further: a user to block or to open again, or whose online state
            // may not match (active locally but last seen blocked, or the reverse).
            let look = if refused {
                link.state == LinkState::Active
            } else {
                link.state == LinkState::Suspended || user.active_at(now) == blocked.contains(&g)
            };
            match at.get(&g) {
                // A change the cursor reported: the listing's copy carries the standing.
                Some(i) => upserted[*i] = user,
                None if look => {
                    at.insert(g, upserted.len());
                    upserted.push(user);
                }
                None => {}
            }
        }
        let online = self.linked_accounts(&upserted, &links).await?;
        let mut now_blocked: HashSet<ObjectGuid> = blocked.difference(&gone).copied().collect();
        for u in &upserted {
            if let Some(a) = links.get(&u.guid).and_then(|l| online.get(&l.online_id.0)) {
                if a.account_enabled {
                    now_blocked.remove(&u.guid);
                } else {
                    now_blocked.insert(u.guid);
                }
            }
        }
        let planned = plan_sync_with(&upserted, &deleted, &links, &online, now, &policy);
        let active = links
            .values()
            .filter(|l| l.state == LinkState::Active)
            .count();
        let threshold = options
            .threshold_min
            .max((active as f64 * options.threshold_fraction).ceil() as usize);
        let destructive = planned.iter().filter(|(a, _)| a.is_destructive()).count();
        let hold = destructive > threshold && !options.allow_beyond_threshold;
        let names: HashMap<ObjectGuid, &str> = upserted
            .iter()
            .map(|u| (u.guid, u.sam_account_name.as_str()))
            .collect();
        let items = planned
            .into_iter()
            .enumerate()
            .map(|(i, (action, reason))| {
                // A deleted user is known by its online ID (the local object is gone).
                let local_user = names
                    .get(&action.local_guid())
                    .map(|n| (*n).to_string())
                    .or_else(|| {
                        links
                            .get(&action.local_guid())
                            .map(|l| l.user_principal_name.clone())
                    })
                    .unwrap_or_default();
                SyncItem {
                    seq: i as u32 + 1,
                    local_user,
                    held: hold && action.is_destructive(),
                    action,
                    reason,
                }
            })
            .collect();
        Ok(SyncPlan {
            id: Uuid::new_v4(),
            tenant_id: status.tenant_id,
            created_at: now,
            from_cursor: cursor.as_ref().map(|c| c.0.clone()),
            next_cursor: next_cursor.0,
            delta_link,
            expiring: expiring
                .into_iter()
                .map(|(g, t)| (g, t.unix_timestamp()))
                .collect(),
            items,
            held: if hold { destructive } else { 0 },
            threshold,
            drift,
            full_resync: full_resync && cursor.is_some(),
            passwords_queued: self.i.store.queued_passwords()?.len(),
            blocked: now_blocked.into_iter().collect(),
            own_write_markers,
        })
    }

    /// What a sync run would do now, without doing any of it: nothing is written to the
    /// tenant, the directory or the store (cursors stay where they are).
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`], [`ErrorCode::IntegrationDisabled`]; the directory's
    /// and tenant's errors when they cannot be read; store errors.
    pub async fn plan_sync_run(&self, options: &SyncOptions) -> Result<SyncPlan> {
        self.decide(options).await
    }

    /// [`SyncView::run_sync`] with no cancellation and no observer.
    ///
    /// # Errors
    /// As [`SyncView::run_sync`].
    pub async fn run_sync_once(&self, options: &SyncOptions) -> Result<SyncReport> {
        self.run_sync(options, &Control::none()).await
    }

    /// One incremental run: directory changes since the stored cursor are propagated to
    /// the linked online accounts, online changes made by others are reported as drift,
    /// destructive changes beyond the threshold are held (the cursor then stays, so they
    /// come back until allowed), queued passwords are delivered, and the run is recorded.
    /// Cancelled, it stops between two items; what was not started is `cancelled` and the
    /// cursor stays, so the next run does it.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`], [`ErrorCode::IntegrationDisabled`]; the directory's
    /// and tenant's errors when they cannot be read; store errors;
    /// [`ErrorCode::Cancelled`] with the [`SyncReport`] as the partial result.
    pub async fn run_sync(&self, options: &SyncOptions, ctl: &Control) -> Result<SyncReport> {
        // Held from planning to the end, so no other run moves the cursors in between.
        let lease = self.i.lease(Work::Sync, ctl).await?;
        let plan = self.decide(options).await?;
        self.apply_sync_plan_leased(&plan, ctl, lease).await
    }

    /// Applies exactly a reviewed [`SyncPlan`] (from [`SyncView::plan_sync_run`]): an
    /// item whose local user changed since planning is skipped as `plan_stale` (plan
    /// again to pick the change up), and the whole plan is refused when another run
    /// applied changes since it was made.
    ///
    /// # Errors
    /// [`ErrorCode::PlanStale`] for a plan of another tenant or one overtaken by another
    /// run; otherwise as [`SyncView::run_sync`].
    pub async fn apply_sync_plan(&self, plan: &SyncPlan, ctl: &Control) -> Result<SyncReport> {
        let lease = self.i.lease(Work::Sync, ctl).await?;
        self.apply_sync_plan_leased(plan, ctl, lease).await
    }

    async fn apply_sync_plan_leased(
        &self,
        plan: &SyncPlan,
        ctl: &Control,
        _lease: crate::store::Lease,
    ) -> Result<SyncReport> {
        let status = self.i.require_enabled()?;
        if plan.tenant_id != status.tenant_id {
            return Err(Error::new(
                ErrorCode::PlanStale,
                format!(
                    "the sync plan was made for tenant {}, not {}",
                    plan.tenant_id, status.tenant_id
                ),
            ));
        }
        if self.i.store.cursor(DIRECTORY_CURSOR)? != plan.from_cursor {
            return Err(Error::new(
                ErrorCode::PlanStale,
                "another sync run applied changes since this plan was made; plan again",
            ));
        }
        let started_at = self.i.now();
        let run = plan.id;
        // Steps of a run that died between intent and answer: this run decides them
        // again (the cursor did not move past their changes).
        self.i.store.journal_settle(SYNC_KINDS, run)?;
        let tenant = self.i.tenant();
        let directory_cursor = plan.next_cursor.clone();
        let expiring: HashMap<ObjectGuid, OffsetDateTime> = plan
            .expiring
            .iter()
            .filter_map(|(g, t)| {
                OffsetDateTime::from_unix_timestamp(*t)
                    .ok()
                    .map(|t| (*g, t))
            })
            .collect();
        self.i.store.set_cursor(DELTA_CURSOR, &plan.delta_link)?;
        for k in &plan.own_write_markers {
            self.i.store.remove_setting(k)?;
        }
        let links = self.links_by_local()?;
        let total = plan.items.len() as u64;
        ctl.emit(Event::Progress {
            run_id: run,
            done: 0,
            total,
            current: None,
        });
        // Items run concurrently under the backend's pacer, each to its end once started;
        // results come back in plan order. A store failure stops new items; those in
        // flight finish, then it is returned.
        let failed = std::sync::atomic::AtomicBool::new(false);
        // Boxed so the run's future stays `Send` for any caller that spawns it.
        let items: Vec<futures::future::BoxFuture<'_, Result<ItemResult>>> = plan
            .items
            .iter()
            .map(|item| {
                let (tenant, links, failed, plan) = (&tenant, &links, &failed, &plan);
                Box::pin(async move {
                    let r = self
                        .sync_item(run, item, plan, tenant, links, ctl, failed)
                        .await;
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    r
                }) as futures::future::BoxFuture<'_, Result<ItemResult>>
            })
            .collect();
        let mut stream = futures::stream::iter(items).buffered(self.i.settings.concurrency.max(1));
        let mut results: Vec<ItemResult> = Vec::with_capacity(plan.items.len());
        let mut first_error = None;
        while let Some(r) = stream.next().await {
            match r {
                Ok(r) => {
                    let item = &plan.items[results.len()];
                    if !matches!(r.outcome, Outcome::Cancelled | Outcome::Held) {
                        ctl.emit(Event::Progress {
                            run_id: run,
                            done: results.len() as u64 + 1,
                            total,
                            current: Some(item.local_user.clone()),
                        });
                        ctl.emit(Event::ItemFinished {
                            run_id: run,
                            seq: item.seq,
                            item: Box::new(r.clone()),
                        });
                    }
                    results.push(r);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        drop(stream);
        if let Some(e) = first_error {
            return Err(e);
        }
        let now_touched: HashSet<String> = results
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded)
            .filter_map(|r| r.online_id.as_ref().map(|id| id.0.clone()))
            .collect();
        // Keep the cursor when something must come back next run: held items, items that
        // failed transiently and items not started (the plan is recomputed from state, so
        // what did succeed is not repeated).
        let retry = results.iter().any(|r| {
            r.outcome == Outcome::Cancelled
                || (r.outcome == Outcome::Failed
                    && r.error_code.is_some_and(ErrorCode::is_transient))
        });
        if plan.held == 0 && !retry {
            self.i
                .store
                .set_cursor(DIRECTORY_CURSOR, &directory_cursor)?;
            self.i.store.set_setting(EXPIRING, &expiring)?;
        }
        self.i.store.set_setting(TOUCHED, &now_touched)?;
        let mut blocked: HashSet<ObjectGuid> = plan.blocked.iter().copied().collect();
        for (item, r) in plan.items.iter().zip(&results) {
            if r.outcome != Outcome::Succeeded {
                continue;
            }
            match &item.action {
                PlanAction::Disable { local, .. } => {
                    blocked.insert(local.guid);
                }
                PlanAction::Enable { local, .. } => {
                    blocked.remove(&local.guid);
                }
                PlanAction::Delete { local_guid, .. } => {
                    blocked.remove(local_guid);
                }
                _ => {}
            }
        }
        self.i.store.set_setting(BLOCKED, &blocked)?;
        // Passwords kept for users without an account: expired ones, and those of users
        // who left or became protected, are removed every round.
        self.i.sweep_kept_passwords().await?;
        let passwords = if self.i.password_key.is_none() {
            if plan.passwords_queued > 0
                || self
                    .i
                    .store
                    .links()?
                    .iter()
                    .any(|l| l.state == LinkState::Active)
            {
                ctl.emit(Event::Warning {
                    code: ErrorCode::InvalidConfig,
                    message: "no password key is configured, so passwords are not synced".into(),
                });
            }
            PasswordDelivery {
                state: PasswordSyncState::NoKey,
                ..Default::default()
            }
        } else if ctl.is_cancelled() {
            PasswordDelivery {
                state: PasswordSyncState::Ready,
                pending: plan.passwords_queued,
                ..Default::default()
            }
        } else {
            match self.i.passwords().deliver_passwords_with(ctl).await {
                Ok(d) => d,
                Err(e) if e.code() == ErrorCode::Cancelled => e
                    .partial()
                    .and_then(|p| serde_json::from_value(p.clone()).ok())
                    .unwrap_or_default(),
                Err(e) => return Err(e),
            }
        };
        let cancelled = results
            .iter()
            .filter(|r| r.outcome == Outcome::Cancelled)
            .count();
        let results = RunResults {
            run_id: run,
            kind: RunKind::Sync,
            started_at,
            finished_at: self.i.now(),
            counts: crate::engine::RunCounts::of(&results),
            items: results,
            results_file: None,
            results_csv: None,
        };
        self.i.store.save_run(&results)?;
        let report = SyncReport {
            held: plan.held,
            threshold: plan.threshold,
            drift: plan.drift.clone(),
            full_resync: plan.full_resync,
            passwords,
            results,
        };
        if cancelled > 0 {
            return Err(Error::new(
                ErrorCode::Cancelled,
                format!("the sync run was cancelled with {cancelled} change(s) not made; the next run makes them"),
            )
            .with_partial(crate::json::to_value(&report)?));
        }
        Ok(report)
    }

    /// One item of a sync run: held, not started (cancelled or stopped by a failure), or
    /// done with its journal entry.
    #[allow(clippy::too_many_arguments)]
    async fn sync_item(
        &self,
        run: Uuid,
        item: &SyncItem,
        plan: &SyncPlan,
        tenant: &Arc<dyn crate::ports::Tenant>,
        links: &HashMap<ObjectGuid, Link>,
        ctl: &Control,
        failed: &std::sync::atomic::AtomicBool,
    ) -> Result<ItemResult> {
        let action = &item.action;
        let mut r = ItemResult {
            password_source: None,
            local_user: item.local_user.clone(),
            local_guid: action.local_guid(),
            requested_upn: None,
            action: action.kind(),
            reason: Some(item.reason),
            outcome: Outcome::Succeeded,
            error_code: None,
            service_message: None,
            recommended_action: None,
            online_id: None,
        };
        if item.held {
            r.outcome = Outcome::Held;
            r.error_code = Some(ErrorCode::SafetyThreshold);
            r.recommended_action = Some(format!(
                "{} disables/deletes exceed the threshold of {}; review them and run with allow_beyond_threshold",
                plan.held, plan.threshold
            ));
            return Ok(r);
        }
        if ctl.is_cancelled() || failed.load(std::sync::atomic::Ordering::SeqCst) {
            r.outcome = Outcome::Cancelled;
            r.error_code = Some(ErrorCode::Cancelled);
            return Ok(r);
        }
        let check = match action {
            // Taking access away needs only the user to be as planned.
            PlanAction::Disable { local, .. } => Some(self.i.precondition(local).await),
            PlanAction::Enable { local, .. } | PlanAction::Update { local, .. } => {
                Some(self.i.precondition_granting(local).await)
            }
            _ => None,
        };
        if let Some(Err(e)) = check {
            return Ok(failed_item(r, &e, Outcome::Skipped));
        }
        let step = self.i.step(
            run,
            StepKind::Item(action.kind()),
            &action.local_guid().to_string(),
            &json!({"reason": item.reason}),
        )?;
        let outcome = match action {
            PlanAction::Disable { online_id, .. } => tenant
                .set_enabled(online_id, false)
                .await
                .map(|_| Some(online_id)),
            PlanAction::Enable { online_id, .. } => tenant
                .set_enabled(online_id, true)
                .await
                .map(|_| Some(online_id)),
            PlanAction::Update {
                online_id, update, ..
            } => tenant
                .update_account(online_id, update)
                .await
                .map(|_| Some(online_id)),
            PlanAction::Delete {
                online_id,
                local_guid,
            } => match tenant.delete_account(online_id).await {
                // Gone already: deleted online, or an earlier delete's answer was lost.
                Err(e) if e.code() != ErrorCode::NotFound => Err(e),
                _ => {
                    if let Some(mut l) = links.get(local_guid).cloned() {
                        l.state = LinkState::Deleted;
                        self.i.store.put_link(&l)?;
                    }
                    Ok(Some(online_id))
                }
            },
            _ => Ok(None),
        };
        match outcome {
            Ok(id) => {
                r.online_id = id.cloned();
                // A protected or out-of-scope user's link is suspended once blocked; it
                // is active again once the user may be synced and is enabled again.
                let state = match (action, item.reason) {
                    (
                        PlanAction::Disable { .. },
                        PlanReason::ProtectedLocally | PlanReason::OutOfScopeLocally,
                    ) => Some(LinkState::Suspended),
                    (PlanAction::Enable { .. }, _) => Some(LinkState::Active),
                    _ => None,
                };
                if let (Some(state), Some(l)) = (state, links.get(&action.local_guid()))
                    && l.state != state
                {
                    let mut l = l.clone();
                    l.state = state;
                    self.i.store.put_link(&l)?;
                }
                if let (PlanAction::Update { update, .. }, Some(l)) =
                    (action, links.get(&action.local_guid()))
                    && let Some(upn) = &update.user_principal_name
                {
                    let mut l = l.clone();
                    l.user_principal_name = upn.clone();
                    self.i.store.put_link(&l)?;
                }
                step.done(&json!({}))?;
                Ok(r)
            }
            Err(e) => {
                step.failed(&e)?;
                Ok(failed_item(r, &e, Outcome::Failed))
            }
        }
    }

    /// Every link, by its local user.
    /// The online accounts linked to these users, keyed by online ID. Few are read one
    /// by one, concurrently; many (a first or full run) are read in pages of the whole
    /// list, which costs a fraction of the resource units.
    async fn linked_accounts(
        &self,
        users: &[LocalUser],
        links: &HashMap<ObjectGuid, Link>,
    ) -> Result<HashMap<String, OnlineAccount>> {
        let tenant = self.i.tenant();
        let wanted: HashSet<&str> = users
            .iter()
            .filter_map(|u| links.get(&u.guid))
            .filter(|l| matches!(l.state, LinkState::Active | LinkState::Suspended))
            .map(|l| l.online_id.0.as_str())
            .collect();
        let mut online = HashMap::with_capacity(wanted.len());
        // Listing costs a request per 999 accounts, one after the other; reading each
        // costs a request per account, `concurrency` at a time. List when that is
        // clearly cheaper.
        let active = links
            .values()
            .filter(|l| l.state == LinkState::Active)
            .count();
        let pages = active.div_ceil(999).max(1);
        if wanted.len() > LIST_ABOVE.max(pages * self.i.settings.concurrency.max(1) / 2) {
            let mut pages = tenant.accounts();
            while let Some(a) = pages.try_next().await? {
                if wanted.contains(a.id.0.as_str()) {
                    online.insert(a.id.0.clone(), a);
                }
            }
            return Ok(online);
        }
        let reads: Vec<futures::future::BoxFuture<'_, Result<Option<OnlineAccount>>>> = wanted
            .into_iter()
            .map(|id| {
                let tenant = tenant.clone();
                Box::pin(async move {
                    match tenant.account(id).await {
                        Ok(a) => Ok(Some(a)),
                        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
                }) as futures::future::BoxFuture<'_, Result<Option<OnlineAccount>>>
            })
            .collect();
        let mut reads =
            futures::stream::iter(reads).buffer_unordered(self.i.settings.concurrency.max(1));
        while let Some(a) = reads.try_next().await? {
            if let Some(a) = a {
                online.insert(a.id.0.clone(), a);
            }
        }
        Ok(online)
    }

    fn links_by_local(&self) -> Result<HashMap<ObjectGuid, Link>> {
        Ok(self
            .i
            .store
            .links()?
            .into_iter()
            .map(|l| (l.local_guid, l))
            .collect())
    }
}
