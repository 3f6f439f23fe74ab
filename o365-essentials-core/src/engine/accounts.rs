//! The accounts view ([`AccountsView`]): reading both sides, the bulk plan and its
//! apply, manual links (assign, unassign), the one-step create of a local user with its
//! online account, importing local users from existing online accounts, the link list.

use std::io::Write;
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use uuid::Uuid;

use super::executor::{StepKind, failed_item};
use super::{
    BulkCreateRequest, Control, Event, Integration, MatchPreview, Plan, SeatLedger, Snapshot,
    UNLICENSED, cancelled_run, initial_password, not_started, plan_bulk_create,
};
use crate::error::{Error, ErrorCode, Result};
use crate::model::PlanAction;
use crate::model::{
    AccountUpdate, ItemAction, ItemResult, LicenceAssignment, Link, LinkOrigin, LinkState,
    LocalUser, NewLocalUser, NewOnlineAccount, ObjectGuid, OnlineAccount, OnlineAccountId, Outcome,
    RunKind, RunResults,
};
use crate::store::Work;
use crate::validate;
use time::OffsetDateTime;

/// Which online accounts to import, and where the local users go.
#[derive(schemars::JsonSchema, Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// These accounts; every unlinked, non-administrator account when `None`.
    #[serde(default)]
    pub online_ids: Option<Vec<OnlineAccountId>>,
    /// The OU for the new local users (the directory's default when unset).
    #[serde(default)]
    pub ou: Option<String>,
    /// Also write `user name,online ID,initial password` lines to this new file (mode
    /// 0600). The passwords are otherwise only in the returned list.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// A local user made from an online account, with its initial password — handed back
/// once, never logged or stored.
pub struct ImportedUser {
    /// The new local user.
    pub local: LocalUser,
    /// The online account it is linked to.
    pub online_id: OnlineAccountId,
    /// The initial local password.
    pub initial_password: SecretString,
}

impl std::fmt::Debug for ImportedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedUser")
            .field("sam_account_name", &self.local.sam_account_name)
            .field("online_id", &self.online_id)
            .field("initial_password", &"<redacted>")
            .finish()
    }
}

/// A sAMAccountName from an online ID: its name part, allowed characters, at most 20.
fn sam_for(upn: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let base: String = upn
        .split('@')
        .next()
        .unwrap_or(upn)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(20)
        .collect::<String>()
        .trim_end_matches('.')
        .to_string();
    let base = if base.is_empty() {
        "user".to_string()
    } else {
        base
    };
    if !taken(&base) {
        return base;
    }
    for n in 2..10_000 {
        let suffix = n.to_string();
        let cut: String = base.chars().take(20 - suffix.len()).collect();
        let candidate = format!("{cut}{suffix}");
        if !taken(&candidate) {
            return candidate;
        }
    }
    format!("user{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// An account whose local user is ready to be made.
struct Prepared<'a> {
    account: &'a OnlineAccount,
    new: NewLocalUser,
    password: SecretString,
    item: ItemResult,
}

/// One account of an import, finished.
enum ImportDone {
    Item(ItemResult),
    Imported(Box<ImportedUser>, ItemResult),
}

fn cancelled_item(mut item: ItemResult) -> ItemResult {
    item.outcome = Outcome::Cancelled;
    item.error_code = Some(ErrorCode::Cancelled);
    item
}

/// A local user and the online account it is linked to (`list_links`).
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct LinkedUser {
    /// The local user's sAMAccountName (empty when it is gone from the directory).
    pub local_user: String,
    /// The link.
    #[serde(flatten)]
    pub link: crate::model::Link,
}

/// The accounts view: reading both sides, the bulk plan and its apply, manual links
/// (assign, unassign), the one-step create of a local user with its online account,
/// importing local users from online accounts, and the link list. Each of the table's
/// rows for it is one call here ([`Integration::accounts`]).
#[derive(Clone, Copy)]
pub struct AccountsView<'a> {
    i: &'a Integration,
}

impl Integration {
    /// The accounts view.
    pub fn accounts(&self) -> AccountsView<'_> {
        AccountsView { i: self }
    }
}

impl AccountsView<'_> {
    async fn admin_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .i
            .tenant()
            .admin_role_holders()
            .await?
            .into_iter()
            .map(|a| a.id.0)
            .collect())
    }

    /// The online user names (UPNs, as Microsoft 365 has them now) of local users — how
    /// the dashboard adds local users to distribution groups or grants them team-site
    /// access.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`]; [`ErrorCode::NotFound`] naming every local user
    /// without an active online account (nothing is returned then).
    pub async fn online_user_names(&self, local: &[ObjectGuid]) -> Result<Vec<String>> {
        self.i.status()?;
        let mut names = Vec::with_capacity(local.len());
        let mut missing = Vec::new();
        for guid in local {
            let account = match self.i.store.link_by_local(*guid)? {
                Some(link) if link.state == LinkState::Active => {
                    match self.i.tenant().account(&link.online_id.0).await {
                        Ok(a) => Some(a),
                        Err(e) if e.code() == ErrorCode::NotFound => None,
                        Err(e) => return Err(e),
                    }
                }
                _ => None,
            };
            match account {
                Some(a) => names.push(a.user_principal_name),
                None => missing.push(match self.i.dir.user(*guid).await {
                    Ok(u) => u.sam_account_name,
                    Err(_) => guid.to_string(),
                }),
            }
        }
        if missing.is_empty() {
            Ok(names)
        } else {
            Err(Error::not_found(format!(
                "no online account for {}; create or assign one first",
                missing.join(", ")
            )))
        }
    }

    /// Links an existing online account to an existing local user by hand: the account
    /// gets the user's anchor.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] for either side; [`ErrorCode::Conflict`] when one of them
    /// is linked already or the account carries another user's anchor;
    /// [`ErrorCode::ProtectedAccount`] for an administrator's account.
    pub async fn assign(&self, local: ObjectGuid, online: &OnlineAccountId) -> Result<Link> {
        self.i.require_enabled()?;
        let run = Uuid::new_v4();
        let _lease = self.links_lease(run).await?;
        let user = self.i.dir.user(local).await?;
        if let Some(refusal) = self.i.gate.policy().local_refusal(&user) {
            return Err(refusal.into_error());
        }
        let account = self.i.tenant().account(&online.0).await?;
        if self.i.store.link_by_local(local)?.is_some() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "{} already has an online account; unassign it first",
                    user.sam_account_name
                ),
            ));
        }
        if self.i.store.link_by_online(online)?.is_some() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "{} is already linked to another local user",
                    account.user_principal_name
                ),
            ));
        }
        if self.admin_ids().await?.contains(&online.0) {
            return Err(Error::new(
                ErrorCode::ProtectedAccount,
                format!(
                    "{} holds an administrator role; o365-essentials does not take over administrator accounts",
                    account.user_principal_name
                ),
            ));
        }
        let anchor = user.anchor();
        if let Some(a) = account.immutable_id.as_ref().filter(|a| **a != anchor) {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "{} carries the anchor of another local user ({a})",
                    account.user_principal_name
                ),
            ));
        }
        // Journaled before the anchor is written: a process killed between the anchor
        // and the link leaves an entry the next links call settles by linking.
        let step = self.i.step(
            run,
            StepKind::Assign,
            &local.to_string(),
            &json!({"online_id": online, "anchor": anchor}),
        )?;
        if account.immutable_id.is_none()
            && let Err(e) = self
                .i
                .tenant()
                .update_account(
                    online,
                    &AccountUpdate {
                        immutable_id: Some(anchor.clone()),
                        ..Default::default()
                    },
                )
                .await
        {
            step.failed(&e)?;
            return Err(e);
        }
        let link = Link {
            local_guid: local,
            online_id: online.clone(),
            anchor,
            user_principal_name: account.user_principal_name,
            state: LinkState::Active,
            origin: LinkOrigin::Manual,
            linked_at: self.i.now(),
        };
        self.i.store.put_link(&link)?;
        step.done(&json!({}))?;
        Ok(link)
    }

    /// Takes the links lease for `run` (waiting up to a minute for another assign,
    /// unassign or create-user-with-account to finish) and settles what a dead process
    /// left half-done.
    async fn links_lease(&self, run: Uuid) -> Result<crate::store::Lease> {
        let ctl = super::Control::none().with_lease_wait(std::time::Duration::from_secs(60));
        let lease = self.i.lease(Work::Links, &ctl).await?;
        self.i.settle_links(run).await?;
        Ok(lease)
    }

    /// Unassigns: the licences are released and sign-in is blocked (sessions revoked); the
    /// link is kept, marked unassigned.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] when the user has no online account; the tenant's errors.
    pub async fn unassign(&self, local: ObjectGuid) -> Result<Link> {
        self.i.require_enabled()?;
        let run = Uuid::new_v4();
        let _lease = self.links_lease(run).await?;
        let mut link =
            self.i.store.link_by_local(local)?.ok_or_else(|| {
                Error::not_found(format!("local user {local} has no online account"))
            })?;
        let tenant = self.i.tenant();
        let account = tenant.account(&link.online_id.0).await?;
        let step = self.i.step(
            run,
            StepKind::Unassign,
            &local.to_string(),
            &json!({"online_id": link.online_id}),
        )?;
        let made = async {
            if !account.assigned_skus.is_empty() {
                tenant
                    .assign_licences(&link.online_id, &[], &account.assigned_skus)
                    .await?;
            }
            tenant.set_enabled(&link.online_id, false).await
        }
        .await;
        if let Err(e) = made {
            step.failed(&e)?;
            return Err(e);
        }
        link.state = LinkState::Unassigned;
        self.i.store.put_link(&link)?;
        step.done(&json!({}))?;
        Ok(link)
    }

    /// Creates a local user and its online account in one step, with the same password
    /// (checked against the domain's policy and Microsoft 365's first).
    ///
    /// # Errors
    /// [`ErrorCode::PasswordPolicy`] listing every rule broken;
    /// [`ErrorCode::AlreadyExists`] when a local user of that name exists; the
    /// directory's and tenant's errors. When the online account cannot be made, the local
    /// user is removed again, so nothing is left half-done (the error says when removing
    /// it failed too); a process killed half-way is settled the same way by the next
    /// assign, unassign or create-user-with-account.
    pub async fn create_user_with_account(
        &self,
        user: &NewLocalUser,
        password: &SecretString,
        domain: &str,
        usage_location: Option<&str>,
        licences: &[LicenceAssignment],
    ) -> Result<(LocalUser, OnlineAccount)> {
        self.i.require_enabled()?;
        let policy = self.i.dir.password_policy().await?;
        validate::password(
            password.expose_secret(),
            Some(&policy),
            validate::PasswordContext {
                sam_account_name: Some(&user.sam_account_name),
                display_name: Some(&user.display_name),
            },
        )?;
        let run = Uuid::new_v4();
        let _lease = self.links_lease(run).await?;
        // Checked free first, so a user of this name found when settling a killed call is
        // the one that call made.
        if self
            .i
            .dir
            .find_user(&user.sam_account_name)
            .await?
            .is_some()
        {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "a local user named {} exists already; choose another name",
                    user.sam_account_name
                ),
            ));
        }
        // One journal entry for the multi-step write; its progress names the local user
        // once made, so a process killed between the local create and the online one
        // leaves an entry the next links call settles.
        let step = self.i.step(
            run,
            StepKind::CreateUserWithAccount,
            &user.sam_account_name,
            &json!({"domain": domain, "licences": licences}),
        )?;
        let local = match self.i.dir.create_user(user, password).await {
            Ok(u) => u,
            Err(e) => {
                step.failed(&e)?;
                return Err(e);
            }
        };
        step.progress(&json!({"local": local.guid}))?;
        let upn = super::suggest_upn(&local, domain);
        let new = NewOnlineAccount {
            user_principal_name: upn.clone(),
            display_name: local.friendly_name(),
            mail_nickname: upn.split('@').next().unwrap_or_default().to_string(),
            given_name: local.given_name.clone(),
            surname: local.surname.clone(),
            usage_location: usage_location.map(str::to_string),
            immutable_id: Some(local.anchor()),
            account_enabled: true,
        };
        // The gate decides the online account like any other: a user created where the
        // integration does not sync (outside the bases) gets none.
        let mut online = match self.i.tenant().create_account(&new, password).await {
            Ok(a) => a,
            Err(e) => {
                let undo = self.i.dir.delete_user(local.guid).await;
                return Err(step.rolled_back(
                    e,
                    undo,
                    &format!(
                        "the online account for {} could not be created",
                        local.sam_account_name
                    ),
                    "the local user was removed again",
                    "removing the local user again",
                )?);
            }
        };
        self.i.store.put_link(&Link {
            local_guid: local.guid,
            online_id: online.id.clone(),
            anchor: local.anchor(),
            user_principal_name: online.user_principal_name.clone(),
            state: LinkState::Active,
            origin: LinkOrigin::Created,
            linked_at: self.i.now(),
        })?;
        if !licences.is_empty() {
            if let Err(e) = self
                .i
                .tenant()
                .assign_licences(&online.id, licences, &[])
                .await
            {
                step.failed_with(&json!({"online_id": online.id, "licence": e.code().name()}))?;
                return Err(e.context(format!(
                    "{} and the online account {} were made and linked, but the licence",
                    local.sam_account_name, online.user_principal_name
                )));
            }
            online.assigned_skus = licences.iter().map(|l| l.sku_id).collect();
        }
        step.done(&json!({"online_id": online.id}))?;
        Ok((local, online))
    }

    /// Creates local users for existing online accounts (chosen, or every unlinked
    /// non-administrator account), each with an initial password meeting the domain's
    /// policy, and links them. The passwords are returned once (and written to the
    /// optional 0600 file); they are never logged or stored.
    ///
    /// # Errors
    /// [`ErrorCode::AlreadyExists`] when the password file exists (it is never
    /// overwritten); [`ErrorCode::WorkHeld`] when another import runs on this store;
    /// the directory's and tenant's errors for reading. Per-account failures are in the
    /// results.
    pub async fn import(&self, request: &ImportRequest) -> Result<(Vec<ImportedUser>, RunResults)> {
        self.import_with(request, &super::Control::none()).await
    }

    /// [`AccountsView::import`], reporting progress as events and stopping between two
    /// accounts when cancelled: the accounts not started are `cancelled` in the results,
    /// and the users already made come back with their passwords as usual (so none is
    /// lost).
    ///
    /// # Errors
    /// As [`AccountsView::import`].
    pub async fn import_with(
        &self,
        request: &ImportRequest,
        ctl: &super::Control,
    ) -> Result<(Vec<ImportedUser>, RunResults)> {
        self.i.require_enabled()?;
        // One import at a time across every process on this store: two at once would
        // both see an account unlinked and both make it a local user.
        let _lease = self.i.lease(Work::Import, ctl).await?;
        let run = Uuid::new_v4();
        // Steps of an import that died between intent and answer: their account is
        // decided again below (linked by then, or not, or anchored and left to a plan).
        self.i
            .store
            .journal_settle(&[StepKind::Item(ItemAction::Import).name()], run)?;
        let file = match &request.password_file {
            Some(p) => Some(
                crate::platform::private_file(p, crate::platform::Create::New).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Error::new(ErrorCode::AlreadyExists, format!("the password file {} exists; choose a new name (it is never overwritten)", p.display()))
                    } else {
                        Error::new(ErrorCode::StoreIo, format!("cannot create the password file {}: {e}", p.display()))
                    }
                })?,
            ),
            None => None,
        };
        let tenant = self.i.tenant();
        let admins = self.admin_ids().await?;
        let linked: Vec<String> = self
            .i
            .store
            .links()?
            .into_iter()
            .map(|l| l.online_id.0)
            .collect();
        let accounts: Vec<OnlineAccount> = tenant.accounts().try_collect().await?;
        let chosen: Vec<&OnlineAccount> = match &request.online_ids {
            Some(ids) => {
                let mut v = Vec::new();
                for id in ids {
                    v.push(
                        accounts
                            .iter()
                            .find(|a| a.id == *id)
                            .ok_or_else(|| Error::not_found(format!("no online account {id}")))?,
                    );
                }
                v
            }
            None => accounts
                .iter()
                .filter(|a| !linked.contains(&a.id.0) && !admins.contains(&a.id.0))
                .collect(),
        };
        let policy = self.i.dir.password_policy().await?;
        let started_at = self.i.now();
        let total = chosen.len() as u64;
        ctl.emit(super::Event::Progress {
            run_id: run,
            done: 0,
            total,
            current: None,
        });
        // Names are chosen first, one account after the other, so two accounts that would
        // get the same sAMAccountName (jane@ and jane@ of two domains) get two names; the
        // local users are then made concurrently, each to its end once started.
        let mut reserved: Vec<String> = Vec::new();
        let mut prepared: Vec<std::result::Result<Prepared<'_>, ItemResult>> =
            Vec::with_capacity(chosen.len());
        for a in chosen {
            let item = ItemResult {
                password_source: None,
                local_user: String::new(),
                local_guid: ObjectGuid(Uuid::nil()),
                requested_upn: Some(a.user_principal_name.clone()),
                action: ItemAction::Import,
                reason: None,
                outcome: Outcome::Succeeded,
                error_code: None,
                service_message: None,
                recommended_action: None,
                online_id: Some(a.id.clone()),
            };
            if admins.contains(&a.id.0) || linked.contains(&a.id.0) || a.immutable_id.is_some() {
                let e = Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "{} is linked already or holds an administrator role",
                        a.user_principal_name
                    ),
                );
                prepared.push(Err(failed_item(item, &e, Outcome::Skipped)));
                continue;
            }
            if ctl.is_cancelled() {
                prepared.push(Err(cancelled_item(item)));
                continue;
            }
            let mut taken = Vec::new();
            let sam = loop {
                let s = sam_for(&a.user_principal_name, &|c| {
                    taken.iter().any(|t: &String| t.eq_ignore_ascii_case(c))
                        || reserved.iter().any(|t| t.eq_ignore_ascii_case(c))
                });
                match self.i.dir.find_user(&s).await? {
                    Some(_) => taken.push(s),
                    None => break s,
                }
            };
            reserved.push(sam.clone());
            let display = if a.display_name.trim().is_empty() {
                sam.clone()
            } else {
                a.display_name.clone()
            };
            let password = loop {
                let p = initial_password();
                let who = validate::PasswordContext {
                    sam_account_name: Some(&sam),
                    display_name: Some(&display),
                };
                if validate::password_rules_broken(p.expose_secret(), Some(&policy), who).is_empty()
                {
                    break p;
                }
            };
            let mut item = item;
            item.local_user = sam.clone();
            prepared.push(Ok(Prepared {
                account: a,
                new: NewLocalUser {
                    sam_account_name: sam,
                    user_principal_name: a.user_principal_name.clone(),
                    given_name: a.given_name.clone(),
                    surname: a.surname.clone(),
                    display_name: display,
                    mail: a.mail.clone(),
                    ou: request.ou.clone(),
                },
                password,
                item,
            }));
        }
        let file = std::sync::Mutex::new(file);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let work: Vec<futures::future::BoxFuture<'_, Result<ImportDone>>> = prepared
            .into_iter()
            .map(|p| {
                let (file, failed) = (&file, &failed);
                Box::pin(async move {
                    let p = match p {
                        Ok(p) => p,
                        Err(item) => return Ok(ImportDone::Item(item)),
                    };
                    if ctl.is_cancelled() || failed.load(std::sync::atomic::Ordering::SeqCst) {
                        return Ok(ImportDone::Item(cancelled_item(p.item)));
                    }
                    let r = self.import_one(run, p, file).await;
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    r
                }) as futures::future::BoxFuture<'_, Result<ImportDone>>
            })
            .collect();
        let mut done = futures::StreamExt::buffered(
            futures::stream::iter(work),
            self.i.settings.concurrency.max(1),
        );
        let mut imported = Vec::new();
        let mut items = Vec::new();
        let mut first_error = None;
        while let Some(r) = futures::StreamExt::next(&mut done).await {
            let item = match r {
                Ok(ImportDone::Item(item)) => item,
                Ok(ImportDone::Imported(user, item)) => {
                    imported.push(*user);
                    item
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            if item.outcome != Outcome::Cancelled {
                ctl.emit(super::Event::Progress {
                    run_id: run,
                    done: items.len() as u64 + 1,
                    total,
                    current: item.requested_upn.clone(),
                });
            }
            items.push(item);
        }
        drop(done);
        if let Some(e) = first_error {
            // The users made are in the password file (when asked for) and the journal.
            return Err(e);
        }
        let results = self
            .i
            .record_run(run, RunKind::Import, started_at, items, ctl)?;
        Ok((imported, results))
    }

    /// Makes one local user for an online account and links them, journaled: a failure
    /// online removes the local user again.
    async fn import_one(
        &self,
        run: Uuid,
        p: Prepared<'_>,
        file: &std::sync::Mutex<Option<std::fs::File>>,
    ) -> Result<ImportDone> {
        let Prepared {
            account: a,
            new,
            password,
            mut item,
        } = p;
        let step = self.i.step(
            run,
            StepKind::Item(ItemAction::Import),
            &a.id.0,
            &json!({"sam": new.sam_account_name, "upn": a.user_principal_name}),
        )?;
        let local = match self.i.dir.create_user(&new, &password).await {
            Ok(u) => u,
            Err(e) => {
                step.failed(&e)?;
                return Ok(ImportDone::Item(failed_item(item, &e, Outcome::Failed)));
            }
        };
        item.local_guid = local.guid;
        if let Err(e) = self
            .i
            .tenant()
            .update_account(
                &a.id,
                &AccountUpdate {
                    immutable_id: Some(local.anchor()),
                    ..Default::default()
                },
            )
            .await
        {
            let undo = self.i.dir.delete_user(local.guid).await;
            let undo_failed = undo.is_err();
            let e = step.rolled_back(
                e,
                undo,
                &format!(
                    "{} could not be given the anchor of {}",
                    a.user_principal_name, local.sam_account_name
                ),
                "the local user was removed again",
                "removing the local user again",
            )?;
            let mut item = failed_item(item, &e, Outcome::Failed);
            if undo_failed {
                // What is left to remove by hand outranks what the service said.
                item.service_message = Some(e.message().to_string());
            }
            return Ok(ImportDone::Item(item));
        }
        self.i.store.put_link(&Link {
            local_guid: local.guid,
            online_id: a.id.clone(),
            anchor: local.anchor(),
            user_principal_name: a.user_principal_name.clone(),
            state: LinkState::Active,
            origin: LinkOrigin::Imported,
            linked_at: self.i.now(),
        })?;
        step.done(&json!({"local": local.guid}))?;
        {
            let mut f = file
                .lock()
                .map_err(|_| Error::internal("the password file's lock was poisoned"))?;
            if let Some(f) = f.as_mut() {
                writeln!(
                    f,
                    "{},{},{}",
                    local.sam_account_name,
                    a.user_principal_name,
                    password.expose_secret()
                )
                .and_then(|()| f.flush())
                .map_err(|e| {
                    Error::new(
                        ErrorCode::StoreIo,
                        format!("cannot write the password file: {e}"),
                    )
                })?;
            }
        }
        Ok(ImportDone::Imported(
            Box::new(ImportedUser {
                local,
                online_id: a.id.clone(),
                initial_password: password,
            }),
            item,
        ))
    }

    /// The links of the store with their local users' names, by name; only `local_user`'s
    /// when given.
    ///
    /// # Errors
    /// The store's and the directory's errors.
    pub async fn linked_users(&self, local_user: Option<&str>) -> Result<Vec<LinkedUser>> {
        use futures::TryStreamExt;
        let links = self.i.store.links()?;
        let names: std::collections::HashMap<ObjectGuid, String> = match local_user {
            Some(name) => match self.i.directory().find_user(name).await? {
                Some(u) => [(u.guid, u.sam_account_name)].into_iter().collect(),
                None => Default::default(),
            },
            None => {
                self.i
                    .directory()
                    .users()
                    .map_ok(|u| (u.guid, u.sam_account_name))
                    .try_collect()
                    .await?
            }
        };
        let mut out: Vec<LinkedUser> = links
            .into_iter()
            .filter_map(|link| {
                let name = names.get(&link.local_guid).cloned();
                match (local_user, name) {
                    (Some(_), None) => None,
                    (_, name) => Some(LinkedUser {
                        local_user: name.unwrap_or_default(),
                        link,
                    }),
                }
            })
            .collect();
        out.sort_by(|a, b| a.local_user.cmp(&b.local_user));
        Ok(out)
    }
}

impl AccountsView<'_> {
    /// Reads both sides.
    ///
    /// # Errors
    /// The directory's and the tenant's errors.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let tenant = self.i.tenant();
        let verified_domains = tenant.organization().await?.verified_domains;
        self.i.note_verified_domains(&verified_domains)?;
        Ok(Snapshot {
            users: self.i.dir.users().try_collect().await?,
            accounts: tenant.accounts().try_collect().await?,
            admins: tenant.admin_role_holders().await?,
            links: self.i.store.links()?,
            verified_domains,
            skus: tenant.skus().await?,
            policy: (*self.i.gate.policy()).clone(),
        })
    }

    /// Plans a bulk create on a snapshot (pure; nothing is written). Left empty, the
    /// domain is the configured custom domain when verified, else the tenant's initial
    /// domain; the usage location and licences are the configuration's defaults. The
    /// verified domains are the snapshot's, so a domain verified since integrating counts.
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`]; [`ErrorCode::InvalidDomainName`],
    /// [`ErrorCode::DomainNotVerified`] for the chosen domain;
    /// [`ErrorCode::InvalidUsageLocation`]; [`ErrorCode::InvalidInput`] for a choice
    /// naming a user twice.
    pub fn plan_bulk_create(
        &self,
        snapshot: &Snapshot,
        request: &BulkCreateRequest,
    ) -> Result<Plan> {
        let status = self.i.status()?;
        let mut request = request.clone();
        let verified = |d: &str| {
            snapshot
                .verified_domains
                .iter()
                .any(|v| v.eq_ignore_ascii_case(d))
        };
        if request.domain.trim().is_empty() {
            request.domain = self.i.default_domain(&status, &snapshot.verified_domains);
        }
        validate::domain_name(&request.domain.to_ascii_lowercase())?;
        if !verified(&request.domain) {
            return Err(Error::new(
                ErrorCode::DomainNotVerified,
                format!(
                    "{} is not a verified domain of the tenant (verified: {})",
                    request.domain,
                    snapshot.verified_domains.join(", ")
                ),
            ));
        }
        if request.usage_location.is_none() {
            request.usage_location = self.i.settings.usage_location.clone();
        }
        if let Some(l) = &request.usage_location {
            validate::usage_location(l)?;
        }
        if request.licences.is_empty() {
            request.licences = self.i.settings.default_licences.clone();
        }
        // Users named by GUID, sAMAccountName or UPN: each must name exactly one.
        let index = crate::model::LocalUserIndex::new(&snapshot.users);
        for n in request.users.iter().flatten() {
            index.resolve(n)?;
        }
        let mut seen = std::collections::HashSet::new();
        for c in &request.choices {
            let u = index.resolve(&c.user)?;
            if !seen.insert(u.guid) {
                return Err(Error::invalid_input(format!(
                    "choices name the local user {} twice",
                    u.sam_account_name
                )));
            }
        }
        Ok(plan_bulk_create(
            snapshot,
            &request,
            Uuid::new_v4(),
            self.i.now(),
            &status.tenant_id,
        ))
    }

    /// Applies exactly `plan`, refusing items whose local user changed since planning.
    /// Each remote step is journaled before and after; a rerun after a crash creates
    /// nothing twice (creates are found by their anchor).
    ///
    /// # Errors
    /// [`ErrorCode::NotIntegrated`], [`ErrorCode::IntegrationDisabled`],
    /// [`ErrorCode::PlanStale`] for a plan of another tenant; store errors. Per-item
    /// failures are in the results.
    pub async fn apply(&self, plan: &Plan, ctl: &Control) -> Result<RunResults> {
        let status = self.i.require_enabled()?;
        if plan.tenant_id != status.tenant_id {
            return Err(Error::new(
                ErrorCode::PlanStale,
                format!(
                    "the plan was made for tenant {}, not {}",
                    plan.tenant_id, status.tenant_id
                ),
            ));
        }
        // One plan applied at a time across every process on this store.
        let _lease = self.i.lease(Work::Apply, ctl).await?;
        // Steps of an apply that died between intent and answer: a create whose answer
        // never came is found by its anchor when its user is planned again.
        self.i.store.journal_settle(
            &[ItemAction::CreateAccount.name(), ItemAction::Link.name()],
            plan.id,
        )?;
        let started_at = self.i.now();
        let total = plan.items.len() as u64;
        // Seats are counted again now, not taken from the plan: each create reserves its
        // licences' seats before anything is written.
        let needs_seats = plan.items.iter().any(|i| {
            matches!(&i.action, PlanAction::CreateAccount { licences, .. } | PlanAction::Licences { add: licences, .. } if !licences.is_empty())
        });
        let seats = SeatLedger::new(if needs_seats {
            self.i.tenant().skus().await?
        } else {
            Vec::new()
        });
        let seats = &seats;
        self.i.gate.refresh();
        ctl.emit(Event::Progress {
            run_id: plan.id,
            done: 0,
            total,
            current: None,
        });
        // Items run concurrently (the backend paces them to the tenant's budget), each
        // one to its end once started: a create whose request was sent is completed and
        // recorded, so cancellation only ever falls between items. `buffered` hands the
        // results back in plan order. A store failure stops new items from starting;
        // those in flight finish, then the failure is returned.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let stopped = || ctl.is_cancelled() || failed.load(std::sync::atomic::Ordering::SeqCst);
        // Boxed so the run's future stays `Send` for any caller that spawns it.
        let work: Vec<futures::future::BoxFuture<'_, Result<ItemResult>>> = plan
            .items
            .iter()
            .map(|item| {
                let (stopped, failed) = (&stopped, &failed);
                Box::pin(async move {
                    if stopped() {
                        return Ok(not_started(&item.action, Some(item.reason)));
                    }
                    let r = self
                        .i
                        .apply_item(plan.id, &item.action, seats, plan.allow_unlicensed)
                        .await;
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    r.map(|mut r| {
                        r.reason = Some(item.reason);
                        r
                    })
                }) as futures::future::BoxFuture<'_, Result<ItemResult>>
            })
            .collect();
        let mut results = futures::stream::iter(work).buffered(self.i.settings.concurrency.max(1));
        let mut items = Vec::with_capacity(plan.items.len());
        let mut first_error = None;
        while let Some(r) = results.next().await {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let seq = plan.items[items.len()].seq;
            if r.outcome != Outcome::Cancelled {
                ctl.emit(Event::Progress {
                    run_id: plan.id,
                    done: items.len() as u64 + 1,
                    total,
                    current: Some(r.local_user.clone()),
                });
            }
            ctl.emit(Event::ItemFinished {
                run_id: plan.id,
                seq,
                item: Box::new(r.clone()),
            });
            items.push(r);
        }
        drop(results);
        if let Some(e) = first_error {
            return Err(e);
        }
        let unlicensed = items
            .iter()
            .filter(|i| {
                i.service_message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("created without"))
            })
            .count();
        let licensed = items
            .iter()
            .filter(|i| i.action == ItemAction::Licences && i.outcome == Outcome::Succeeded)
            .count();
        let before = self.i.store.setting::<usize>(UNLICENSED)?.unwrap_or(0);
        let now_unlicensed = before.saturating_sub(licensed) + unlicensed;
        if now_unlicensed != before {
            self.i.store.set_setting(UNLICENSED, &now_unlicensed)?;
        }
        self.finish_run(plan.id, RunKind::BulkCreate, started_at, items, ctl)
    }

    /// Saves a run's results (and writes its results file when a folder is configured),
    /// reports it, and turns a cancelled run into [`ErrorCode::Cancelled`] carrying the
    /// results.
    fn finish_run(
        &self,
        run_id: Uuid,
        kind: RunKind,
        started_at: OffsetDateTime,
        items: Vec<ItemResult>,
        ctl: &Control,
    ) -> Result<RunResults> {
        let run = self.i.record_run(run_id, kind, started_at, items, ctl)?;
        match cancelled_run(&run) {
            Some(e) => Err(e.with_partial(crate::json::to_value(&run)?)),
            None => Ok(run),
        }
    }
}

impl AccountsView<'_> {
    /// Candidates and conflicts between local users and online accounts for online IDs
    /// in `domain` (the configured or initial domain when `None`), before anything is
    /// written.
    ///
    /// # Errors
    /// The directory's and the tenant's errors; the store's.
    pub async fn match_preview(&self, domain: Option<String>) -> Result<MatchPreview> {
        let snapshot = self.snapshot().await?;
        let domain = match domain {
            Some(d) => d,
            None => self
                .i
                .default_domain(&self.i.status()?, &snapshot.verified_domains),
        };
        Ok(super::match_preview(&snapshot, &domain))
    }

    /// Reads both sides now and plans online accounts for local users
    /// ([`AccountsView::plan_bulk_create`] on a fresh [`AccountsView::snapshot`]).
    ///
    /// # Errors
    /// As [`AccountsView::snapshot`] and [`AccountsView::plan_bulk_create`].
    pub async fn plan_bulk_create_now(&self, request: &BulkCreateRequest) -> Result<Plan> {
        self.plan_bulk_create(&self.snapshot().await?, request)
    }

    /// Plans again the users that failed in an earlier run's results file (JSON), with
    /// `request`'s other choices; a failed user deleted since is not retried (nor an
    /// error).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`] naming the results file when it cannot be read; as
    /// [`AccountsView::plan_bulk_create_now`].
    pub async fn plan_retry(
        &self,
        results_file: &std::path::Path,
        request: Option<BulkCreateRequest>,
    ) -> Result<Plan> {
        let mut request = request.unwrap_or_default();
        let snapshot = self.snapshot().await?;
        let failed = super::failed_users(results_file)?;
        request.users = Some(
            failed
                .into_iter()
                .filter(|g| snapshot.users.iter().any(|u| u.guid == *g))
                .map(Into::into)
                .collect(),
        );
        self.plan_bulk_create(&snapshot, &request)
    }

    /// [`AccountsView::create_user_with_account`] with the configuration filling what is
    /// not given: the configured or initial domain, the configured usage location, the
    /// configured default licences.
    ///
    /// # Errors
    /// As [`AccountsView::create_user_with_account`]; the tenant's errors reading its
    /// domains.
    pub async fn create_user_with_account_as_configured(
        &self,
        user: &NewLocalUser,
        password: &SecretString,
        domain: Option<String>,
        usage_location: Option<String>,
        licences: Option<Vec<LicenceAssignment>>,
    ) -> Result<(LocalUser, OnlineAccount)> {
        let domain = match domain {
            Some(d) => d,
            None => {
                let verified = self.i.tenant().organization().await?.verified_domains;
                self.i.default_domain(&self.i.status()?, &verified)
            }
        };
        let usage = usage_location.or_else(|| self.i.settings.usage_location.clone());
        let licences = licences.unwrap_or_else(|| self.i.settings.default_licences.clone());
        self.create_user_with_account(user, password, &domain, usage.as_deref(), &licences)
            .await
    }

    /// The tenant's subscriptions (SKUs) with free and used seats.
    ///
    /// # Errors
    /// The tenant's errors.
    pub async fn licences(&self) -> Result<Vec<crate::model::Sku>> {
        self.i.tenant().skus().await
    }
}

#[cfg(test)]
mod tests {
    use super::sam_for;

    #[test]
    fn sam_account_names_from_online_ids() {
        assert_eq!(sam_for("jane.doe@contoso.com", &|_| false), "jane.doe");
        assert_eq!(
            sam_for("a-very-long-name-indeed-yes@x.com", &|_| false),
            "a-very-long-name-ind"
        );
        assert_eq!(sam_for("jane@x.com", &|s| s == "jane"), "jane2");
        assert_eq!(sam_for("###@x.com", &|_| false), "user");
        let taken = ["abcdefghijklmnopqrst".to_string()];
        assert_eq!(
            sam_for("abcdefghijklmnopqrstuvwxyz@x.com", &|s| taken
                .iter()
                .any(|t| t == s)),
            "abcdefghijklmnopqrs2"
        );
    }
}
