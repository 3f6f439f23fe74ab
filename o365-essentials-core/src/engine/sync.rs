//! The sync: directory changes → lifecycle propagation (disable, enable, delete, updates),
//! online changes made behind our back → drift reports, a safety threshold on
//! destructive changes, and password delivery; once, or in a loop.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Drift, Integration, PasswordDelivery};
use crate::error::{Error, ErrorCode, Result};
use crate::model::{
    AccountUpdate, DirectoryChange, DirectoryCursor, ItemResult, Link, LinkState, LocalUser,
    LocalVersion, ObjectGuid, OnlineAccount, OnlineChange, Outcome, PlanAction, RunResults,
};
use crate::store::JournalState;

const DIRECTORY_CURSOR: &str = "directory";
const DELTA_CURSOR: &str = "graph_delta";
const TOUCHED: &str = "sync_touched";

/// How a sync run treats destructive changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
) -> Vec<(PlanAction, String)> {
    let mut items = Vec::new();
    for u in upserted {
        let Some(link) = links.get(&u.guid).filter(|l| l.state == LinkState::Active) else {
            continue;
        };
        let Some(acc) = online.get(&link.online_id.0) else {
            continue;
        };
        if u.enabled() != acc.account_enabled {
            let action = if u.enabled() {
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
            items.push((
                action,
                if u.enabled() {
                    "enabled locally".into()
                } else {
                    "disabled locally".into()
                },
            ));
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
                "changed locally".into(),
            ));
        }
    }
    for g in deleted {
        if let Some(link) = links.get(g).filter(|l| l.state == LinkState::Active) {
            items.push((
                PlanAction::Delete {
                    local_guid: *g,
                    online_id: link.online_id.clone(),
                },
                "deleted locally".into(),
            ));
        }
    }
    items
}

/// A running sync loop; [`SyncLoop::stop`] ends it cleanly after the current run.
pub struct SyncLoop {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<Result<SyncReport>>>,
}

impl SyncLoop {
    /// Stops after the current run and returns every run's report.
    ///
    /// # Errors
    /// [`ErrorCode::Internal`] if the loop's task panicked.
    pub async fn stop(self) -> Result<Vec<Result<SyncReport>>> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| Error::internal(format!("the sync loop failed: {e}")))
    }
}

impl Integration {
    /// Starts a loop running [`Integration::run_sync_once`] every `interval`.
    pub fn spawn_sync_loop(self: Arc<Self>, interval: Duration, options: SyncOptions) -> SyncLoop {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut reports = Vec::new();
            loop {
                reports.push(self.run_sync_once(&options).await);
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = rx.changed() => break,
                }
                if *rx.borrow() {
                    break;
                }
            }
            reports
        });
        SyncLoop { stop: tx, task }
    }

    async fn online_drift(&self, touched: &HashSet<String>) -> Result<Vec<Drift>> {
        let tenant = self.tenant();
        let link = self.store.cursor(DELTA_CURSOR)?;
        let round = tenant.changes(link.as_deref()).await?;
        let mut drift = Vec::new();
        if link.is_some() && !round.full_resync {
            for c in &round.changes {
                let (id, what) = match c {
                    OnlineChange::Changed { account } => (
                        account.id.clone(),
                        format!("{} was changed online", account.user_principal_name),
                    ),
                    OnlineChange::Removed { id, reason } => {
                        (id.clone(), format!("{id} was removed online ({reason})"))
                    }
                };
                if touched.contains(&id.0) {
                    continue;
                }
                if let Some(l) = self.store.link_by_online(&id)? {
                    drift.push(Drift {
                        local_guid: l.local_guid,
                        what,
                    });
                }
            }
        }
        self.store.set_cursor(DELTA_CURSOR, &round.delta_link)?;
        Ok(drift)
    }

    /// One incremental run: directory changes since the stored cursor are propagated to
    /// the linked online accounts, online changes made by others are reported as drift,
    /// destructive changes beyond the threshold are held (the cursor then stays, so they
    /// come back until allowed), queued passwords are delivered, and the run is recorded.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`], [`ErrorCode::IntegrationDisabled`]; the directory's
    /// and tenant's errors when they cannot be read; store errors.
    pub async fn run_sync_once(&self, options: &SyncOptions) -> Result<SyncReport> {
        self.require_enabled()?;
        let started_at = OffsetDateTime::now_utc();
        let run = Uuid::new_v4();
        let tenant = self.tenant();
        let touched: HashSet<String> = self.store.setting(TOUCHED)?.unwrap_or_default();
        let drift = self.online_drift(&touched).await?;

        let cursor = self.store.cursor(DIRECTORY_CURSOR)?.map(DirectoryCursor);
        let changes = self.dir.changes_since(cursor.as_ref()).await?;
        let links: HashMap<ObjectGuid, Link> = self
            .store
            .links()?
            .into_iter()
            .map(|l| (l.local_guid, l))
            .collect();
        let mut upserted = Vec::new();
        let mut deleted = Vec::new();
        for c in &changes.changes {
            match c {
                DirectoryChange::Upserted { user } => upserted.push((**user).clone()),
                DirectoryChange::Deleted { guid } => deleted.push(*guid),
            }
        }
        if changes.full_resync && cursor.is_some() {
            // Read whole: linked users missing from it were deleted.
            let present: HashSet<ObjectGuid> = upserted.iter().map(|u| u.guid).collect();
            deleted.extend(links.keys().filter(|g| !present.contains(g)).copied());
        }
        let mut online = HashMap::new();
        for u in &upserted {
            if let Some(l) = links.get(&u.guid).filter(|l| l.state == LinkState::Active) {
                match tenant.account(&l.online_id.0).await {
                    Ok(a) => {
                        online.insert(a.id.0.clone(), a);
                    }
                    Err(e) if e.code() == ErrorCode::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let items = plan_sync(&upserted, &deleted, &links, &online);
        let active = links
            .values()
            .filter(|l| l.state == LinkState::Active)
            .count();
        let threshold = options
            .threshold_min
            .max((active as f64 * options.threshold_fraction).ceil() as usize);
        let destructive = items.iter().filter(|(a, _)| a.is_destructive()).count();
        let hold = destructive > threshold && !options.allow_beyond_threshold;
        let mut results = Vec::new();
        let mut now_touched = HashSet::new();
        for (action, reason) in &items {
            // A deleted user is known by its online ID (the local object is gone).
            let sam = upserted
                .iter()
                .find(|u| u.guid == action.local_guid())
                .map(|u| u.sam_account_name.clone())
                .or_else(|| {
                    links
                        .get(&action.local_guid())
                        .map(|l| l.user_principal_name.clone())
                })
                .unwrap_or_default();
            let mut r = ItemResult {
                local_user: sam,
                local_guid: action.local_guid(),
                requested_upn: None,
                action: serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v["action"].as_str().map(str::to_string))
                    .unwrap_or_default(),
                outcome: Outcome::Succeeded,
                error_code: None,
                service_message: Some(reason.clone()),
                recommended_action: None,
                online_id: None,
            };
            if hold && action.is_destructive() {
                r.outcome = Outcome::Held;
                r.error_code = Some(ErrorCode::SafetyThreshold);
                r.recommended_action = Some(format!(
                    "{destructive} disables/deletes exceed the threshold of {threshold}; review them and run with allow_beyond_threshold"
                ));
                results.push(r);
                continue;
            }
            let entry = self.store.journal_begin(
                run,
                &r.action,
                &action.local_guid().to_string(),
                &json!({"reason": reason}),
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
                    Ok(()) => {
                        if let Some(mut l) = links.get(local_guid).cloned() {
                            l.state = LinkState::Deleted;
                            self.store.put_link(&l)?;
                        }
                        Ok(Some(online_id))
                    }
                    Err(e) => Err(e),
                },
                _ => Ok(None),
            };
            match outcome {
                Ok(id) => {
                    if let Some(id) = id {
                        now_touched.insert(id.0.clone());
                        r.online_id = Some(id.clone());
                    }
                    if let (PlanAction::Update { update, .. }, Some(l)) =
                        (action, links.get(&action.local_guid()))
                        && let Some(upn) = &update.user_principal_name
                    {
                        let mut l = l.clone();
                        l.user_principal_name = upn.clone();
                        self.store.put_link(&l)?;
                    }
                    self.store
                        .journal_finish(entry, JournalState::Done, &json!({}))?;
                }
                Err(e) => {
                    self.store.journal_failed(entry, &e)?;
                    r.outcome = Outcome::Failed;
                    r.error_code = Some(e.code());
                    r.service_message = Some(e.to_string());
                    r.recommended_action = Some(e.action().to_string());
                }
            }
            results.push(r);
        }
        // Keep the cursor when something must come back next run: held items, and items
        // that failed transiently (the plan is recomputed from state, so what did succeed
        // is not repeated).
        let retry = results.iter().any(|r| {
            r.outcome == Outcome::Failed && r.error_code.is_some_and(ErrorCode::is_transient)
        });
        if !hold && !retry {
            self.store.set_cursor(DIRECTORY_CURSOR, &changes.cursor.0)?;
        }
        self.store.set_setting(TOUCHED, &now_touched)?;
        let passwords = if self.password_key.is_some() {
            self.deliver_passwords().await?
        } else {
            PasswordDelivery::default()
        };
        let results = RunResults {
            run_id: run,
            kind: "sync".into(),
            started_at,
            finished_at: OffsetDateTime::now_utc(),
            items: results,
        };
        self.store.save_run(&results)?;
        Ok(SyncReport {
            held: if hold { destructive } else { 0 },
            threshold,
            drift,
            full_resync: changes.full_resync && cursor.is_some(),
            passwords,
            results,
        })
    }
}
