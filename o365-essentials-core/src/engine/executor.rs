//! The executor: how every multi-step write is made, recorded and repaired.
//!
//! Bulk create, import, assign, unassign, create-user-with-account and sync items each
//! change more than one place (the directory, the tenant, the store) one step after the
//! other, so a process can die between two of them. Every such write goes through the
//! same four pieces here:
//!
//! * [`Integration::step`] journals a step's intent *before* the remote call is made
//!   ([`StepKind`] names it; the intent never holds a secret). [`Step::progress`] notes
//!   how far it got (the GUID of the local user its first half made), and
//!   [`Step::done`] / [`Step::failed`] finish it exactly once.
//! * [`failed_item`] is the one way a failed or refused item is written into a run's
//!   results, and so into its results file.
//! * [`Step::rolled_back`] finishes a step whose later half failed after its earlier
//!   half was undone, and returns the error the caller sees: it says whether the undo
//!   worked, and what is left to remove by hand when it did not.
//! * Entries a dead process left pending are settled by the next run of the same work,
//!   holding that work's lease (so no live run has entries in flight): bulk create's and
//!   sync's are marked interrupted and decided again from the directory and the tenant
//!   by the next plan; the manual links' ([`Integration::settle_links`]) are repaired
//!   here, because no plan would look at them again.

use serde_json::{Value, json};
use uuid::Uuid;

use super::Integration;
use crate::error::{Error, Result};
use crate::model::{
    ItemAction, ItemResult, LicenceAssignment, Link, LinkOrigin, LinkState, Outcome,
};
use crate::model::{ObjectGuid, OnlineAccountId};
use crate::store::{JournalEntry, JournalState, Store};

/// What a journaled step does: its journal entry's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// An item of a plan (bulk create, import, sync): the item's action.
    Item(ItemAction),
    /// A manual link of an existing online account to an existing local user.
    Assign,
    /// Releasing a linked account's licences and blocking its sign-in.
    Unassign,
    /// A local user and its online account made in one call.
    CreateUserWithAccount,
}

impl StepKind {
    /// The journal's name of the kind (an item's is its action's name).
    pub(crate) fn name(self) -> &'static str {
        match self {
            StepKind::Item(a) => a.name(),
            StepKind::Assign => "assign",
            StepKind::Unassign => "unassign",
            StepKind::CreateUserWithAccount => "create_user_with_account",
        }
    }
}

/// The kinds settled by [`Integration::settle_links`], under the links lease.
const LINK_KINDS: [StepKind; 3] = [
    StepKind::Assign,
    StepKind::Unassign,
    StepKind::CreateUserWithAccount,
];

/// A journaled step in flight: its entry is pending until [`Step::done`],
/// [`Step::failed`] or [`Step::rolled_back`] finishes it. A step dropped unfinished (an
/// error of the store, a panic, a dead process) stays pending for the next run to settle.
#[must_use = "a step is finished with done, failed or rolled_back"]
pub(crate) struct Step<'a> {
    store: &'a Store,
    id: i64,
}

impl Integration {
    /// Journals the intent of a step of `run` on `subject` before it is made.
    ///
    /// # Errors
    /// [`crate::ErrorCode::StoreIo`]: nothing is written remotely then.
    pub(crate) fn step(
        &self,
        run: Uuid,
        kind: StepKind,
        subject: &str,
        intent: &Value,
    ) -> Result<Step<'_>> {
        let id = self
            .store
            .journal_begin(run, kind.name(), subject, intent)?;
        Ok(Step {
            store: &self.store,
            id,
        })
    }
}

impl Step<'_> {
    /// Notes how far the step got; the entry stays pending.
    pub(crate) fn progress(&self, note: &Value) -> Result<()> {
        self.store.journal_progress(self.id, note)
    }

    /// Finishes the step as done, with what it made.
    pub(crate) fn done(self, outcome: &Value) -> Result<()> {
        self.store
            .journal_finish(self.id, JournalState::Done, outcome)
    }

    /// Finishes the step as failed with the error's code (never its message, which may
    /// quote what the service said).
    pub(crate) fn failed(self, e: &Error) -> Result<()> {
        self.store.journal_failed(self.id, e)
    }

    /// Finishes the step as failed with a fuller outcome (what was made before the
    /// failure).
    pub(crate) fn failed_with(self, outcome: &Value) -> Result<()> {
        self.store
            .journal_finish(self.id, JournalState::Failed, outcome)
    }

    /// Finishes a step whose later half failed with `failure` after its earlier half was
    /// undone with the result `undo`. `what` says what failed ("the online account for
    /// jane could not be created"), `undone` what the undo did ("the local user was
    /// removed again"), `undoing` what it tried ("removing the local user again"). The
    /// error returned keeps `failure`'s code and says whether the undo worked; when it did
    /// not, the journal entry records its code and the message says to finish by hand.
    pub(crate) fn rolled_back(
        self,
        failure: Error,
        undo: Result<()>,
        what: &str,
        undone: &str,
        undoing: &str,
    ) -> Result<Error> {
        let code = failure.code().name();
        match undo {
            Ok(()) => {
                self.failed_with(&json!({"code": code, "rolled_back": true}))?;
                Ok(failure.context(format!("{what}, so {undone}")))
            }
            Err(u) => {
                self.failed_with(&json!({"code": code, "rollback_failed": u.code().name()}))?;
                Ok(failure.context(format!(
                    "{what}, and {undoing} failed too ({}): finish it by hand",
                    u.message()
                )))
            }
        }
    }
}

/// The one way a failed (or refused, or skipped) item is recorded in a run's results and
/// results file: its outcome, the error's code, what the service said when it said
/// something (else the error's message), and what to do about it.
pub(crate) fn failed_item(mut item: ItemResult, e: &Error, outcome: Outcome) -> ItemResult {
    item.outcome = outcome;
    item.error_code = Some(e.code());
    item.service_message = Some(
        e.service()
            .map(|s| s.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| e.message().to_string()),
    );
    item.recommended_action = Some(e.action().to_string());
    item
}

/// What settling an interrupted manual link found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The step had made nothing remote (or its result was recorded already).
    NothingLeft,
    /// The remote half was made but not recorded: the link was recorded now.
    Linked,
    /// Only the local user of a create-user-with-account was made: it was removed
    /// again, as a failed call would have.
    LocalUserRemoved,
}

impl Settled {
    fn name(self) -> &'static str {
        match self {
            Settled::NothingLeft => "nothing_left",
            Settled::Linked => "linked",
            Settled::LocalUserRemoved => "local_user_removed",
        }
    }
}

impl Integration {
    /// Settles the assign, unassign and create-user-with-account steps that processes
    /// other than `by`'s run left pending (they died between intent and outcome): an
    /// online account made or anchored but not linked is linked now; a local user made
    /// without its online account is removed again; an unassign is left for the caller to
    /// repeat (it is idempotent). Call it holding the links lease. Returns how many were
    /// settled.
    ///
    /// # Errors
    /// The directory's, tenant's and store's errors; entries not settled stay pending
    /// for the next call.
    pub(crate) async fn settle_links(&self, by: Uuid) -> Result<usize> {
        let kinds = LINK_KINDS.map(StepKind::name);
        let pending = self.store.journal_interrupted(&kinds, by)?;
        for entry in &pending {
            let settled = match entry.kind.as_str() {
                k if k == StepKind::Assign.name() => self.settle_assign(entry).await,
                k if k == StepKind::CreateUserWithAccount.name() => {
                    self.settle_created_user(entry).await
                }
                _ => Ok(Settled::NothingLeft),
            }
            .map_err(|e| {
                e.context(format!(
                    "settling the {} of {} an earlier process left unfinished",
                    entry.kind, entry.subject
                ))
            })?;
            let state = if settled == Settled::Linked {
                JournalState::Done
            } else {
                JournalState::Failed
            };
            self.store.journal_finish(
                entry.id,
                state,
                &json!({"interrupted": true, "settled_by": by, "settled": settled.name()}),
            )?;
        }
        Ok(pending.len())
    }

    /// An interrupted assign: the account may carry the user's anchor without the link
    /// being recorded.
    async fn settle_assign(&self, entry: &JournalEntry) -> Result<Settled> {
        let Ok(local) = entry.subject.parse::<uuid::Uuid>().map(ObjectGuid) else {
            return Ok(Settled::NothingLeft);
        };
        let online: Option<OnlineAccountId> = entry
            .intent
            .get("online_id")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let Some(online) = online else {
            return Ok(Settled::NothingLeft);
        };
        if self.store.link_by_local(local)?.is_some()
            || self.store.link_by_online(&online)?.is_some()
        {
            return Ok(Settled::NothingLeft);
        }
        let account = match self.tenant().account(&online.0).await {
            Ok(a) => a,
            Err(e) if e.code() == crate::ErrorCode::NotFound => return Ok(Settled::NothingLeft),
            Err(e) => return Err(e),
        };
        let user = match self.dir.user(local).await {
            Ok(u) => u,
            Err(e) if e.code() == crate::ErrorCode::NotFound => return Ok(Settled::NothingLeft),
            Err(e) => return Err(e),
        };
        if account.immutable_id.as_ref() != Some(&user.anchor()) {
            return Ok(Settled::NothingLeft);
        }
        self.store.put_link(&Link {
            local_guid: local,
            online_id: online,
            anchor: user.anchor(),
            user_principal_name: account.user_principal_name,
            state: LinkState::Active,
            origin: LinkOrigin::Manual,
            linked_at: self.now(),
        })?;
        Ok(Settled::Linked)
    }

    /// An interrupted create-user-with-account: the local user may exist (its GUID is in
    /// the entry's progress, or only its name when the kill fell before the directory's
    /// answer was recorded), and its online account too.
    async fn settle_created_user(&self, entry: &JournalEntry) -> Result<Settled> {
        let noted: Option<ObjectGuid> = entry
            .outcome
            .as_ref()
            .and_then(|o| o.get("local"))
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let local = match noted {
            Some(guid) => match self.dir.user(guid).await {
                Ok(u) => Some(u),
                Err(e) if e.code() == crate::ErrorCode::NotFound => None,
                Err(e) => return Err(e),
            },
            // The name was checked free before the step began: a user of that name now
            // is the one the step made.
            None => self.dir.find_user(&entry.subject).await?,
        };
        let Some(local) = local else {
            return Ok(Settled::NothingLeft);
        };
        if self.store.link_by_local(local.guid)?.is_some() {
            return Ok(Settled::NothingLeft);
        }
        match self.tenant().find_by_anchor(&local.anchor()).await? {
            Some(account) => {
                self.store.put_link(&Link {
                    local_guid: local.guid,
                    online_id: account.id.clone(),
                    anchor: local.anchor(),
                    user_principal_name: account.user_principal_name.clone(),
                    state: LinkState::Active,
                    origin: LinkOrigin::Created,
                    linked_at: self.now(),
                })?;
                let licences: Vec<LicenceAssignment> = entry
                    .intent
                    .get("licences")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                if !licences.is_empty() && account.assigned_skus.is_empty() {
                    self.tenant()
                        .assign_licences(&account.id, &licences, &[])
                        .await?;
                }
                Ok(Settled::Linked)
            }
            None => {
                self.dir.delete_user(local.guid).await?;
                Ok(Settled::LocalUserRemoved)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorCode, ServiceDetail};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path().join("state.db")).expect("open");
        (dir, s)
    }

    fn step<'a>(s: &'a Store, run: Uuid) -> Step<'a> {
        let id = s
            .journal_begin(
                run,
                StepKind::CreateUserWithAccount.name(),
                "jane",
                &json!({}),
            )
            .expect("begin");
        Step { store: s, id }
    }

    fn failure() -> Error {
        Error::new(
            ErrorCode::ServiceUnavailable,
            "Microsoft 365 is unavailable",
        )
    }

    #[test]
    fn a_rollback_that_worked_says_so_and_is_journaled() {
        let (_d, s) = store();
        let run = Uuid::new_v4();
        let e = step(&s, run)
            .rolled_back(
                failure(),
                Ok(()),
                "the online account for jane could not be created",
                "the local user was removed again",
                "removing the local user again",
            )
            .expect("journal");
        assert_eq!(e.code(), ErrorCode::ServiceUnavailable);
        assert!(
            e.message().starts_with(
                "the online account for jane could not be created, so the local user was removed again: "
            ),
            "{}",
            e.message()
        );
        let entry = &s.journal_of_run(run).expect("run")[0];
        assert_eq!(entry.state, JournalState::Failed);
        assert_eq!(
            entry.outcome,
            Some(json!({"code": "service_unavailable", "rolled_back": true}))
        );
    }

    #[test]
    fn a_rollback_that_failed_says_what_is_left_to_do_by_hand() {
        let (_d, s) = store();
        let run = Uuid::new_v4();
        let undo = Err(Error::new(
            ErrorCode::PermissionDenied,
            "insufficient access",
        ));
        let e = step(&s, run)
            .rolled_back(
                failure(),
                undo,
                "the online account for jane could not be created",
                "the local user was removed again",
                "removing the local user again",
            )
            .expect("journal");
        assert_eq!(
            e.code(),
            ErrorCode::ServiceUnavailable,
            "the first failure's code"
        );
        assert!(
            e.message().contains(
                "and removing the local user again failed too (insufficient access): finish it by hand"
            ),
            "{}",
            e.message()
        );
        assert!(!e.message().contains("was removed again"));
        let entry = &s.journal_of_run(run).expect("run")[0];
        assert_eq!(
            entry.outcome,
            Some(json!({"code": "service_unavailable", "rollback_failed": "permission_denied"}))
        );
    }

    #[test]
    fn progress_keeps_a_step_pending_for_the_next_run_to_settle() {
        let (_d, s) = store();
        let (dead, next) = (Uuid::new_v4(), Uuid::new_v4());
        let st = step(&s, dead);
        st.progress(&json!({"local": "guid-1"})).expect("progress");
        // The process dies here: the step is neither done nor failed.
        drop(st);
        let _mine = step(&s, next);
        let left = s
            .journal_interrupted(&[StepKind::CreateUserWithAccount.name()], next)
            .expect("interrupted");
        assert_eq!(
            left.len(),
            1,
            "only the dead run's step, not the live one's"
        );
        assert_eq!(left[0].run_id, dead);
        assert_eq!(left[0].outcome, Some(json!({"local": "guid-1"})));
        assert!(
            s.journal_interrupted(&[StepKind::Assign.name()], next)
                .expect("other kinds")
                .is_empty()
        );
        let done = step(&s, next);
        let id = done.id;
        done.done(&json!({})).expect("done");
        assert_eq!(
            s.journal_progress(id, &json!({}))
                .expect_err("finished")
                .code(),
            ErrorCode::NotFound,
            "a finished step takes no more progress"
        );
    }

    #[test]
    fn a_failed_item_carries_what_the_service_said_else_the_message() {
        let item = || ItemResult {
            password_source: None,
            local_user: "jane".into(),
            local_guid: ObjectGuid(Uuid::nil()),
            requested_upn: None,
            action: ItemAction::CreateAccount,
            reason: None,
            outcome: Outcome::Succeeded,
            error_code: None,
            service_message: None,
            recommended_action: None,
            online_id: None,
        };
        let plain = failed_item(item(), &failure(), Outcome::Failed);
        assert_eq!(plain.outcome, Outcome::Failed);
        assert_eq!(plain.error_code, Some(ErrorCode::ServiceUnavailable));
        assert_eq!(
            plain.service_message.as_deref(),
            Some("Microsoft 365 is unavailable")
        );
        assert_eq!(
            plain.recommended_action.as_deref(),
            Some(failure().action())
        );
        let said = failure().with_service(ServiceDetail {
            code: "serviceNotAvailable".into(),
            message: "Try again later".into(),
            request_id: None,
            status: Some(503),
        });
        let r = failed_item(item(), &said, Outcome::Skipped);
        assert_eq!(r.outcome, Outcome::Skipped);
        assert_eq!(r.service_message.as_deref(), Some("Try again later"));
    }
}
