//! Password sync: a local password change is queued at once, encrypted (AES-256-GCM with
//! a key kept in its own 0600 file, outside the database), and delivered to the tenant by
//! [`PasswordsView::deliver_passwords`], which keeps retrying through outages. A newer
//! change for the same user supersedes an undelivered older one; a password the tenant
//! refuses becomes a per-user error the dashboard can show.

use std::io::{Read, Write};
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::Integration;
use crate::error::{Error, ErrorCode, Result};
use crate::model::ObjectGuid;
use crate::store::Work;

/// The key that encrypts queued passwords.
pub struct PasswordKey(LessSafeKey);

impl std::fmt::Debug for PasswordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordKey(<redacted>)")
    }
}

impl PasswordKey {
    /// Loads the key from `path`, creating it (32 random bytes, mode 0600) when absent.
    /// Keep it outside the state store's folder backups, or the queue is only obscured.
    ///
    /// # Errors
    /// [`ErrorCode::StoreIo`] when it cannot be read or created;
    /// [`ErrorCode::InvalidConfig`] when the file is not a key.
    pub fn load_or_create(path: &Path) -> Result<PasswordKey> {
        let io = |e: std::io::Error| {
            Error::new(
                ErrorCode::StoreIo,
                format!("the password key file {}: {e}", path.display()),
            )
        };
        // Written whole to a temporary file, then linked into place (which fails when the
        // key exists): a process starting at the same moment reads a complete key or
        // none, never a half-written one.
        if !path.exists() {
            let mut k = zeroize::Zeroizing::new([0u8; 32]);
            SystemRandom::new()
                .fill(k.as_mut())
                .map_err(|_| Error::internal("no randomness for the password key"))?;
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".new-{}", std::process::id()));
            let tmp = std::path::PathBuf::from(tmp);
            // A leftover of a crashed start is removed; the new file is created exclusively
            // (O_EXCL, O_NOFOLLOW): nothing planted at that name receives the key.
            let _ = std::fs::remove_file(&tmp);
            let written = crate::platform::private_file(&tmp, crate::platform::Create::New)
                .and_then(|mut f| {
                    f.write_all(k.as_ref())?;
                    f.sync_all()
                });
            let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        if path.is_dir() {
            return Err(io(std::io::Error::other("it is a folder, not a key file")));
        }
        crate::platform::check_secret_path(path, "password key file")?;
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        std::fs::File::open(path)
            .map_err(io)?
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("{} is not a 32-byte password key", path.display()),
            )
        })?;
        Ok(PasswordKey(LessSafeKey::new(key)))
    }

    fn seal(&self, user: ObjectGuid, password: &SecretString) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::internal("no randomness for a nonce"))?;
        // The plaintext is encrypted in place: this buffer holds the ciphertext after.
        let mut data = password.expose_secret().as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user.to_ad_bytes()),
                &mut data,
            )
            .map_err(|_| Error::internal("encrypting a queued password failed"))?;
        Ok((nonce.to_vec(), data))
    }

    fn open(&self, user: ObjectGuid, nonce: &[u8], ciphertext: &[u8]) -> Result<SecretString> {
        let bad = || {
            Error::new(
                ErrorCode::InvalidConfig,
                "a queued password cannot be decrypted: the password key file does not match the state store",
            )
        };
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        // Decrypted in place: wiped when dropped, whatever happens after.
        let mut data = zeroize::Zeroizing::new(ciphertext.to_vec());
        let plain = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user.to_ad_bytes()),
                &mut data,
            )
            .map_err(|_| bad())?;
        let text = std::str::from_utf8(plain).map_err(|_| bad())?;
        Ok(SecretString::from(text.to_string()))
    }
}

/// A password that could not be delivered, for the dashboard.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordProblem {
    /// The local user.
    pub local_guid: ObjectGuid,
    /// Why the tenant refused it (`password_policy` when its rules did).
    pub error_code: ErrorCode,
    /// The message (never the password).
    pub message: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// Whether password sync can work.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSyncState {
    /// A password key is configured: changes are queued and delivered.
    Ready,
    /// No password key: password changes can be neither queued nor delivered (configure
    /// `password_key`, or open the integration from a configuration).
    #[default]
    NoKey,
}

/// What one delivery round did.
#[derive(schemars::JsonSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordDelivery {
    /// Passwords set online.
    pub delivered: usize,
    /// Still queued because the tenant could not be reached (retried next round).
    pub pending: usize,
    /// Refused for good (until the user changes the password again).
    pub refused: Vec<PasswordProblem>,
    /// Whether delivery could run at all (a sync run reports `no_key` instead of failing,
    /// so the dashboard can show it).
    #[serde(default)]
    pub state: PasswordSyncState,
}

/// A captured password kept for a user without an online account, sealed.
#[derive(Serialize, Deserialize)]
struct KeptPassword {
    nonce: String,
    ciphertext: String,
    /// When it was kept (Unix seconds); a kept password expires after
    /// `password_capture.keep_days`. Older entries without it count as expired.
    #[serde(default)]
    kept_at: i64,
}

const KEPT_PREFIX: &str = "capture.kept.";

fn kept_key(local: ObjectGuid) -> String {
    format!("{KEPT_PREFIX}{local}")
}

fn permanent(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::PasswordPolicy
            | ErrorCode::ProtectedAccount
            | ErrorCode::OutOfScope
            | ErrorCode::PlanStale
            | ErrorCode::PermissionDenied
            | ErrorCode::NotFound
            | ErrorCode::InvalidConfig
            | ErrorCode::InvalidInput
    )
}

/// The passwords view: the password queue (changes kept for delivery, delivery,
/// problems) and the capture hook. Each of the table's rows for it is one call here
/// ([`Integration::passwords`]).
#[derive(Clone, Copy)]
pub struct PasswordsView<'a> {
    pub(super) i: &'a Integration,
}

impl Integration {
    /// The passwords view.
    pub fn passwords(&self) -> PasswordsView<'_> {
        PasswordsView { i: self }
    }
}

impl Integration {
    /// Uses this key for the password queue (see [`PasswordKey::load_or_create`]).
    pub fn with_password_key(mut self, key: PasswordKey) -> Self {
        self.password_key = Some(key);
        self
    }

    /// Keeps a captured password for a local user who has no online account yet,
    /// encrypted like the queue, so that the account a bulk create makes for them gets it
    /// (the newest replaces an older one).
    pub(super) fn keep_password(&self, local: ObjectGuid, password: &SecretString) -> Result<()> {
        use base64::Engine as _;
        let (nonce, ciphertext) = self.passwords().key()?.seal(local, password)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        // Sealed with the key held outside the store: not a secret in the clear.
        self.store.set_setting(
            &kept_key(local),
            &KeptPassword {
                nonce: b64.encode(nonce),
                ciphertext: b64.encode(ciphertext),
                kept_at: self.now().unix_timestamp(),
            },
        )
    }

    /// How long a captured password is kept for a user without an online account.
    pub(super) fn keep_for(&self) -> time::Duration {
        let days = self
            .settings
            .capture
            .as_ref()
            .map(|c| c.keep_days)
            .unwrap_or(super::capture::DEFAULT_KEEP_DAYS);
        time::Duration::days(i64::from(days))
    }

    /// Removes kept passwords that expired, and those of users who were deleted, became
    /// protected or left the scope, or got an online account some other way. Returns
    /// how many were removed. Run by every sync round.
    pub(super) async fn sweep_kept_passwords(&self) -> Result<usize> {
        let policy = self.gate.policy();
        let oldest = (self.now() - self.keep_for()).unix_timestamp();
        let mut removed = 0;
        for guid in self.passwords().kept_password_users()? {
            let expired = self
                .store
                .setting::<KeptPassword>(&kept_key(guid))?
                .is_none_or(|k| k.kept_at < oldest);
            let unwanted = expired
                || self.store.link_by_local(guid)?.is_some()
                || match self.dir.user(guid).await {
                    Ok(u) => policy.local_refusal(&u).is_some(),
                    Err(e) if e.code() == ErrorCode::NotFound => true,
                    Err(e) => return Err(e),
                };
            if unwanted {
                self.forget_kept_password(guid)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The password kept for `local` by [`Integration::keep_password`], if any (one the
    /// key cannot open counts as none: the account then gets a random one).
    pub(super) fn kept_password(&self, local: ObjectGuid) -> Result<Option<SecretString>> {
        use base64::Engine as _;
        let Some(kept) = self.store.setting::<KeptPassword>(&kept_key(local))? else {
            return Ok(None);
        };
        if kept.kept_at < (self.now() - self.keep_for()).unix_timestamp() {
            self.forget_kept_password(local)?;
            return Ok(None);
        }
        let Ok(key) = self.passwords().key() else {
            return Ok(None);
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(nonce), Ok(ciphertext)) = (b64.decode(&kept.nonce), b64.decode(&kept.ciphertext))
        else {
            return Ok(None);
        };
        Ok(key.open(local, &nonce, &ciphertext).ok())
    }

    /// The user's current password, refused by the tenant when its account was made:
    /// queued, and marked refused with the tenant's reason, so the password problems
    /// list it until the user's next change replaces it.
    pub(super) fn record_refused_password(
        &self,
        local: ObjectGuid,
        password: &SecretString,
        refusal: &Error,
    ) -> Result<()> {
        if !self.passwords().password_changed(local, password)? {
            return Ok(());
        }
        if let Some(q) = self
            .store
            .queued_passwords()?
            .into_iter()
            .find(|q| q.local_guid == local)
        {
            self.store.password_attempt_failed(local, q.seq, refusal)?;
        }
        Ok(())
    }

    /// Forgets the password kept for `local` (its online account has it now).
    pub(super) fn forget_kept_password(&self, local: ObjectGuid) -> Result<()> {
        self.store.remove_setting(&kept_key(local))
    }
}

impl<'a> PasswordsView<'a> {
    fn key(&self) -> Result<&'a PasswordKey> {
        self.i.password_key.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidConfig,
                "no password key is configured, so passwords cannot be synced: set `password_key` in the configuration (Integration::with_password_key in Rust)",
            )
        })
    }

    /// Whether password sync can work (shown in [`Integration::status`]).
    pub fn password_sync_state(&self) -> PasswordSyncState {
        if self.i.password_key.is_some() {
            PasswordSyncState::Ready
        } else {
            PasswordSyncState::NoKey
        }
    }

    /// A local password changed: queue it for the user's online account and return at
    /// once. Returns `false` when the user has no online account (nothing to do).
    ///
    /// # Errors
    /// [`ErrorCode::IntegrationDisabled`] (nothing propagates while disabled);
    /// [`ErrorCode::InvalidConfig`] without a password key; store errors.
    pub fn password_changed(&self, local: ObjectGuid, password: &SecretString) -> Result<bool> {
        self.i.require_enabled()?;
        let key = self.key()?;
        if self.i.store.link_by_local(local)?.is_none() {
            return Ok(false);
        }
        let (nonce, ciphertext) = key.seal(local, password)?;
        self.i.store.enqueue_password(local, &nonce, &ciphertext)?;
        Ok(true)
    }

    /// The users with a kept password (for the sweep and the invariant checks).
    ///
    /// # Errors
    /// Store errors.
    pub fn kept_password_users(&self) -> Result<Vec<ObjectGuid>> {
        Ok(self
            .i
            .store
            .setting_keys(KEPT_PREFIX)?
            .iter()
            .filter_map(|k| k.strip_prefix(KEPT_PREFIX)?.parse().ok())
            .collect())
    }

    /// Delivers queued passwords. A transient failure (outage, throttling) leaves the rest
    /// queued for the next round; a refusal is recorded for the dashboard and not retried
    /// until a newer change arrives. Delivered entries are erased.
    ///
    /// # Errors
    /// [`ErrorCode::IntegrationDisabled`]; [`ErrorCode::InvalidConfig`] without a key or
    /// with the wrong key; store errors.
    pub async fn deliver_passwords(&self) -> Result<PasswordDelivery> {
        self.deliver_passwords_with(&super::Control::none()).await
    }

    /// [`PasswordsView::deliver_passwords`], reporting each delivery and refusal as an event
    /// and stopping between two passwords when cancelled (the rest stay queued).
    ///
    /// # Errors
    /// As [`PasswordsView::deliver_passwords`]; [`ErrorCode::Cancelled`] with the round's
    /// [`PasswordDelivery`] as the partial result.
    pub async fn deliver_passwords_with(&self, ctl: &super::Control) -> Result<PasswordDelivery> {
        self.i.require_enabled()?;
        let key = self.key()?;
        // One delivery round at a time across every process on this store, so no password
        // is set twice.
        let _lease = self.i.lease(Work::Passwords, ctl).await?;
        let tenant = self.i.tenant();
        let mut out = PasswordDelivery {
            state: PasswordSyncState::Ready,
            ..Default::default()
        };
        let queue = self.i.store.queued_passwords()?;
        let mut outage = false;
        for q in &queue {
            if q.last_error_code.is_some_and(permanent) {
                out.refused.push(PasswordProblem {
                    local_guid: q.local_guid,
                    error_code: q.last_error_code.unwrap_or(ErrorCode::Internal),
                    message: q.last_error.clone().unwrap_or_default(),
                    attempts: q.attempts,
                });
                continue;
            }
            if outage || ctl.is_cancelled() {
                out.pending += 1;
                continue;
            }
            let Some(link) = self.i.store.link_by_local(q.local_guid)? else {
                let e = Error::not_found(format!(
                    "local user {} no longer has an online account",
                    q.local_guid
                ));
                self.i
                    .store
                    .password_attempt_failed(q.local_guid, q.seq, &e)?;
                out.refused.push(PasswordProblem {
                    local_guid: q.local_guid,
                    error_code: e.code(),
                    message: e.message().to_string(),
                    attempts: q.attempts + 1,
                });
                continue;
            };
            let password = key.open(q.local_guid, &q.nonce, &q.ciphertext)?;
            match tenant.set_password(&link.online_id, &password).await {
                Ok(()) => {
                    self.i.store.password_delivered(q.local_guid, q.seq)?;
                    out.delivered += 1;
                    ctl.emit(super::Event::PasswordDelivered {
                        local_guid: q.local_guid,
                    });
                }
                Err(e) if permanent(e.code()) => {
                    self.i
                        .store
                        .password_attempt_failed(q.local_guid, q.seq, &e)?;
                    ctl.emit(super::Event::PasswordRefused {
                        local_guid: q.local_guid,
                        error_code: e.code(),
                    });
                    out.refused.push(PasswordProblem {
                        local_guid: q.local_guid,
                        error_code: e.code(),
                        message: e.to_string(),
                        attempts: q.attempts + 1,
                    });
                }
                Err(e) => {
                    self.i
                        .store
                        .password_attempt_failed(q.local_guid, q.seq, &e)?;
                    out.pending += 1;
                    outage = true;
                }
            }
        }
        if ctl.is_cancelled() && out.pending > 0 {
            return Err(Error::new(
                ErrorCode::Cancelled,
                format!(
                    "cancelled: {} password(s) delivered, {} still queued for the next round",
                    out.delivered, out.pending
                ),
            )
            .with_partial(crate::json::to_value(&out)?));
        }
        Ok(out)
    }

    /// Passwords the tenant refused, for the dashboard.
    ///
    /// # Errors
    /// Store errors.
    pub fn password_problems(&self) -> Result<Vec<PasswordProblem>> {
        Ok(self
            .i
            .store
            .queued_passwords()?
            .into_iter()
            .filter_map(|q| {
                let code = q.last_error_code?;
                Some(PasswordProblem {
                    local_guid: q.local_guid,
                    error_code: code,
                    message: q.last_error.unwrap_or_default(),
                    attempts: q.attempts,
                })
            })
            .collect())
    }
}
