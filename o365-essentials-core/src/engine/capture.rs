//! Passwords captured on a Samba DC: `samba-tool user syncpasswords --script` runs a hook
//! for each changed account with the account's LDIF on stdin; [`PasswordsView::capture_password`]
//! reads it, recognises repeated calls, obtains the cleartext and queues it.
//!
//! The cleartext comes from `virtualSambaGPG` (Samba encrypts every password set to the
//! OpenPGP key named by `password hash gpg key ids`), decrypted here with the private key
//! in the integration's own keyring ([`CaptureSettings::gnupg_home`]) by `gpg`; Samba's
//! keyring holds only the public key. `virtualClearTextUTF8` (what `--decrypt-samba-gpg`
//! gives, with the private key in Samba's keyring) is taken when it is what arrives.

use std::path::PathBuf;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::model::{LinkState, ObjectGuid};

use super::PasswordsView;

/// The configuration of password capture on a Samba DC (`password_capture`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaptureSettings {
    /// The integration's own GnuPG home (0700) with the private key that decrypts
    /// `virtualSambaGPG`.
    pub gnupg_home: PathBuf,
    /// The key's fingerprint, as in smb.conf's `password hash gpg key ids` (the
    /// requirements check compares them).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Samba's GnuPG home (the public key must be there, or every password set on the DC
    /// fails); `/root/.gnupg` when unset.
    #[serde(default)]
    pub samba_gnupg_home: Option<PathBuf>,
    /// Samba's configuration file; `/etc/samba/smb.conf` when unset.
    #[serde(default)]
    pub smb_conf: Option<PathBuf>,
    /// The `gpg` program; `gpg` on the PATH when unset.
    #[serde(default)]
    pub gpg: Option<PathBuf>,
    /// Days a captured password is kept for a user who has no online account yet (so a
    /// bulk create can give it to the new account); 7 when unset, 0 keeps none.
    #[serde(default = "default_keep_days")]
    pub keep_days: u32,
}

/// The default of [`CaptureSettings::keep_days`].
pub(crate) const DEFAULT_KEEP_DAYS: u32 = 7;

fn default_keep_days() -> u32 {
    DEFAULT_KEEP_DAYS
}

/// One account as the hook receives it.
pub struct HookEntry {
    /// `objectGUID`.
    pub guid: ObjectGuid,
    /// `sAMAccountName`, when sent.
    pub sam_account_name: Option<String>,
    /// `isDeleted` (or `isRecycled`) is set.
    pub deleted: bool,
    /// `msDS-KeyVersionNumber`: rises by one with each password set.
    pub key_version: Option<u64>,
    /// `virtualSambaGPG`: the ASCII-armored OpenPGP message.
    pub samba_gpg: Option<SecretString>,
    /// `virtualClearTextUTF8`: the password itself.
    pub cleartext: Option<SecretString>,
}

impl std::fmt::Debug for HookEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookEntry")
            .field("guid", &self.guid)
            .field("sam_account_name", &self.sam_account_name)
            .field("deleted", &self.deleted)
            .field("key_version", &self.key_version)
            .field(
                "password",
                &(self.samba_gpg.is_some() || self.cleartext.is_some()),
            )
            .finish()
    }
}

fn bad(what: String) -> Error {
    Error::new(
        ErrorCode::InvalidInput,
        format!("the account's LDIF from samba-tool: {what}"),
    )
}

/// Reads the LDIF of one account (RFC 2849: `name: value`, `name:: base64`, folded lines
/// starting with a space; `#` comments). Values of password attributes never appear in
/// an error.
///
/// # Errors
/// [`ErrorCode::InvalidInput`] for text that is not one account's LDIF (no `objectGUID`,
/// a GUID that is not one, base64 that does not decode).
pub fn parse_hook_ldif(text: &str) -> Result<HookEntry> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.lines() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix(' ') {
            match lines.last_mut() {
                Some(last) => last.push_str(rest),
                None => return Err(bad("it starts with a continuation line".into())),
            }
        } else if !raw.starts_with('#') && !raw.trim().is_empty() {
            lines.push(raw.to_string());
        }
    }
    let mut guid = None;
    let mut entry = HookEntry {
        guid: ObjectGuid(uuid::Uuid::nil()),
        sam_account_name: None,
        deleted: false,
        key_version: None,
        samba_gpg: None,
        cleartext: None,
    };
    for line in &lines {
        let Some((name, rest)) = line.split_once(':') else {
            return Err(bad(format!(
                "a line without `name: value` ({} characters)",
                line.len()
            )));
        };
        let secret = matches!(
            name.to_ascii_lowercase().as_str(),
            "virtualsambagpg" | "virtualcleartextutf8" | "virtualcleartextutf16" | "unicodepwd"
        );
        let value: Vec<u8> = if let Some(b64) = rest.strip_prefix(':') {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| bad(format!("`{name}` is not base64: {e}")))?
        } else if rest.starts_with('<') {
            return Err(bad(format!("`{name}` refers to a URL, which is not read")));
        } else {
            rest.trim_start().as_bytes().to_vec()
        };
        let text = || {
            String::from_utf8(value.clone()).map_err(|_| {
                if secret {
                    bad(format!("`{name}` is not UTF-8"))
                } else {
                    bad(format!("`{name}` is not UTF-8 text"))
                }
            })
        };
        match name.to_ascii_lowercase().as_str() {
            "objectguid" => {
                let parsed = if value.len() == 16 {
                    ObjectGuid::from_ad_bytes(&value).ok()
                } else {
                    let t = String::from_utf8_lossy(&value);
                    t.trim().trim_matches(['{', '}']).parse::<ObjectGuid>().ok()
                };
                guid = Some(parsed.ok_or_else(|| {
                    bad(format!(
                        "`objectGUID` {:?} is not a GUID",
                        String::from_utf8_lossy(&value)
                    ))
                })?);
            }
            "samaccountname" => entry.sam_account_name = Some(text()?),
            "isdeleted" | "isrecycled" => {
                entry.deleted |= text()?.trim().eq_ignore_ascii_case("TRUE")
            }
            "msds-keyversionnumber" => {
                let t = text()?;
                entry.key_version =
                    Some(t.trim().parse().map_err(|_| {
                        bad(format!("`msDS-KeyVersionNumber` {t:?} is not a number"))
                    })?);
            }
            "virtualsambagpg" => entry.samba_gpg = Some(SecretString::from(text()?)),
            "virtualcleartextutf8" => entry.cleartext = Some(SecretString::from(text()?)),
            _ => {}
        }
    }
    entry.guid = guid.ok_or_else(|| bad("it has no `objectGUID`".into()))?;
    Ok(entry)
}

/// What the hook did with one account.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureOutcome {
    /// The password is queued for the user's online account.
    Queued,
    /// This password version was queued before (samba-tool calls twice for a create and
    /// again on a rename, disable or enable).
    Repeated,
    /// The account was deleted: nothing to send.
    Deleted,
    /// The account came without a password (set before the key was active, or none).
    NoPassword,
    /// The local user has no online account and is not one a bulk create makes an
    /// account for (a system account): nothing to send.
    NotLinked,
    /// The local user has no online account yet: the password is kept (encrypted) for
    /// the account a bulk create makes, so it starts with the user's current password.
    Kept,
    /// The integration is disabled: nothing propagates (the change is not sent later).
    Disabled,
    /// The user is protected (privileged, built-in, the bind account, excluded) or
    /// outside the configured scope: the password is neither sent nor kept.
    Protected,
}

/// The answer of [`Integration::capture_password`].
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct CaptureReport {
    /// What was done.
    pub outcome: CaptureOutcome,
    /// The account.
    pub local_guid: ObjectGuid,
    /// `sAMAccountName`, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sam_account_name: Option<String>,
    /// The password version (`msDS-KeyVersionNumber`), when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u64>,
}

fn version_key(guid: ObjectGuid) -> String {
    format!("capture.key_version.{guid}")
}

async fn run_tool(program: &std::path::Path, args: &[&std::ffi::OsStr]) -> Option<(bool, String)> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

/// The checks of password capture on a Samba DC: smb.conf names the key, Samba's keyring
/// has its public half (without it every password set on the DC fails), the
/// integration's keyring has its private half, and `samba-tool user syncpasswords` runs.
pub(crate) async fn requirement_checks(s: &CaptureSettings) -> Vec<crate::model::RequirementCheck> {
    use crate::model::{CheckStatus, RequirementCheck};
    let check = |id: &str, title: &str, status, detail: String, remedy: &str| RequirementCheck {
        id: id.into(),
        title: title.into(),
        status,
        detail,
        remedy: if status == CheckStatus::Pass {
            String::new()
        } else {
            remedy.into()
        },
    };
    let gpg = s.gpg.clone().unwrap_or_else(|| PathBuf::from("gpg"));
    let smb_conf = s
        .smb_conf
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/samba/smb.conf"));
    let mut out = Vec::new();
    let configured = run_tool(
        std::path::Path::new("testparm"),
        &[
            "-s".as_ref(),
            "--parameter-name=password hash gpg key ids".as_ref(),
            smb_conf.as_os_str(),
        ],
    )
    .await;
    let key = s.key_id.clone().unwrap_or_default().to_ascii_uppercase();
    out.push(match configured {
        Some((true, text)) => {
            let listed = text.lines().next().unwrap_or("").trim().to_ascii_uppercase();
            let ok = !listed.is_empty() && (key.is_empty() || listed.contains(&key));
            check(
                "samba_capture_key_configured",
                "Samba encrypts password changes to the capture key",
                if ok { CheckStatus::Pass } else { CheckStatus::Fail },
                if listed.is_empty() {
                    format!("{} sets no `password hash gpg key ids`", smb_conf.display())
                } else {
                    format!("password hash gpg key ids = {listed}")
                },
                "Add `password hash gpg key ids = <fingerprint>` to smb.conf's [global] and restart samba (docs/SAMBA-SERVER.md).",
            )
        }
        other => check(
            "samba_capture_key_configured",
            "Samba encrypts password changes to the capture key",
            CheckStatus::Fail,
            format!(
                "testparm could not read {}: {}",
                smb_conf.display(),
                other.map(|(_, t)| t.lines().next().unwrap_or("").to_string()).unwrap_or_else(|| "testparm is not installed".into())
            ),
            "Install Samba's tools (testparm) and point password_capture.smb_conf at the DC's smb.conf.",
        ),
    });
    let samba_home = s
        .samba_gnupg_home
        .clone()
        .unwrap_or_else(|| PathBuf::from("/root/.gnupg"));
    for (id, title, home, secret, remedy) in [
        (
            "samba_capture_key_in_samba_keyring",
            "Samba's keyring has the capture key's public half",
            &samba_home,
            false,
            "Import the public key into Samba's GnuPG home; while it is missing every password set on the DC fails.",
        ),
        (
            "capture_private_key",
            "The integration's keyring can decrypt captured passwords",
            &s.gnupg_home,
            true,
            "Put the private key of the capture key into password_capture.gnupg_home (0700, only the integration reads it).",
        ),
    ] {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["--batch".as_ref(), "--homedir".as_ref(), home.as_os_str()];
        args.push(if secret {
            "--list-secret-keys".as_ref()
        } else {
            "--list-keys".as_ref()
        });
        if !key.is_empty() {
            args.push(key.as_ref());
        }
        let found = run_tool(&gpg, &args).await;
        let ok = matches!(&found, Some((true, t)) if !t.trim().is_empty());
        out.push(check(
            id,
            title,
            if ok {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            },
            if ok {
                format!(
                    "{} holds the key {}",
                    home.display(),
                    if key.is_empty() { "(any)" } else { &key }
                )
            } else {
                format!(
                    "{} does not hold the key {}",
                    home.display(),
                    if key.is_empty() { "(any)" } else { &key }
                )
            },
            remedy,
        ));
    }
    let running = syncpasswords_loop_running(&smb_conf);
    out.push(check(
        "samba_syncpasswords_running",
        "samba-tool user syncpasswords runs",
        if running { CheckStatus::Pass } else { CheckStatus::Warn },
        if running {
            format!("the syncpasswords loop runs for {}", smb_conf.display())
        } else {
            format!(
                "no `samba-tool user syncpasswords` loop runs for {}: changed passwords wait until it runs",
                smb_conf.display()
            )
        },
        "Enable the syncpasswords service: systemctl enable --now o365-essentials-syncpasswords.service (docs/SAMBA-SERVER.md).",
    ));
    out
}

/// Whether a `samba-tool user syncpasswords` loop (not a `--no-wait` pass) runs for the
/// DC of `smb_conf` (its `--configfile`, or `-s`; Samba's default file when it names
/// none), read from the processes' command lines in `/proc`.
fn syncpasswords_loop_running(smb_conf: &std::path::Path) -> bool {
    let default = std::path::Path::new("/etc/samba/smb.conf");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let Ok(raw) = std::fs::read(p.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let tool = args.iter().position(|a| a.ends_with("samba-tool"));
        let Some(t) = tool else { return false };
        if args.get(t + 1).map(String::as_str) != Some("user")
            || args.get(t + 2).map(String::as_str) != Some("syncpasswords")
            || args
                .iter()
                .any(|a| a == "--no-wait" || a == "--cache-ldb-initialize")
        {
            return false;
        }
        let mut conf: Option<&str> = None;
        for (k, a) in args.iter().enumerate() {
            if let Some(v) = a.strip_prefix("--configfile=") {
                conf = Some(v);
            } else if a == "--configfile" || a == "-s" {
                conf = args.get(k + 1).map(String::as_str);
            }
        }
        let conf = conf.map(std::path::Path::new).unwrap_or(default);
        conf == smb_conf || std::fs::canonicalize(conf).ok() == std::fs::canonicalize(smb_conf).ok()
    })
}

impl PasswordsView<'_> {
    /// Handles one account from `samba-tool user syncpasswords --script`: its LDIF as
    /// the hook read it from stdin. Deleted accounts and accounts without a password are
    /// left; a password version already queued is recognised (`objectGUID` +
    /// `msDS-KeyVersionNumber`); otherwise the cleartext is obtained and queued with
    /// [`PasswordsView::password_changed`] — which never waits for a sync run.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`] for LDIF that is not one account's;
    /// [`ErrorCode::InvalidConfig`] when a `virtualSambaGPG` arrives and
    /// `password_capture` is not configured, or `gpg` cannot decrypt it; store errors.
    /// The hook exits non-zero on an error so that samba-tool delivers the account again.
    pub async fn capture_password(&self, ldif: &SecretString) -> Result<CaptureReport> {
        let entry = parse_hook_ldif(ldif.expose_secret())?;
        let report = |outcome| CaptureReport {
            outcome,
            local_guid: entry.guid,
            sam_account_name: entry.sam_account_name.clone(),
            key_version: entry.key_version,
        };
        if entry.deleted {
            return Ok(report(CaptureOutcome::Deleted));
        }
        if entry.samba_gpg.is_none() && entry.cleartext.is_none() {
            return Ok(report(CaptureOutcome::NoPassword));
        }
        let status: Option<super::IntegrationStatus> = self.i.store.setting(super::SETTINGS_KEY)?;
        if status.as_ref().is_some_and(|s| !s.enabled) {
            return Ok(report(CaptureOutcome::Disabled));
        }
        // Only a password that belongs online is read at all: the gate's rules decide,
        // from the directory as it is now.
        let link = self.i.store.link_by_local(entry.guid)?;
        // An unassigned account keeps the user's password current (it may be assigned
        // again); a suspended (protected, out of scope) or deleted one gets nothing.
        let linked = link
            .as_ref()
            .is_some_and(|l| matches!(l.state, LinkState::Active | LinkState::Unassigned));
        let user = match self.i.dir.user(entry.guid).await {
            Ok(u) => u,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Ok(report(CaptureOutcome::NotLinked));
            }
            Err(e) => return Err(e),
        };
        if self.i.gate.policy().local_refusal(&user).is_some() {
            return Ok(report(CaptureOutcome::Protected));
        }
        if !linked {
            // Kept for a bulk create only for an enabled user who has no online account
            // at all (an unassigned or suspended one gets nothing), and only for a while.
            if link.is_some() || !user.enabled() || self.i.keep_for().is_zero() {
                return Ok(report(CaptureOutcome::NotLinked));
            }
        }
        if let Some(v) = entry.key_version {
            let seen: Option<u64> = self.i.store.setting(&version_key(entry.guid))?;
            if seen.is_some_and(|s| s >= v) {
                return Ok(report(CaptureOutcome::Repeated));
            }
        }
        let password = match (&entry.cleartext, &entry.samba_gpg) {
            (Some(clear), _) => clear.clone(),
            (None, Some(armored)) => self.decrypt_samba_gpg(armored).await?,
            (None, None) => return Ok(report(CaptureOutcome::NoPassword)),
        };
        let outcome = if linked && self.password_changed(entry.guid, &password)? {
            CaptureOutcome::Queued
        } else {
            self.i.keep_password(entry.guid, &password)?;
            CaptureOutcome::Kept
        };
        if let Some(v) = entry.key_version {
            self.i.store.set_setting(&version_key(entry.guid), &v)?;
        }
        Ok(report(outcome))
    }

    async fn decrypt_samba_gpg(&self, armored: &SecretString) -> Result<SecretString> {
        use tokio::io::AsyncWriteExt;
        let Some(settings) = self.i.settings.capture.as_ref() else {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                "a password arrived encrypted for Samba's GPG key (virtualSambaGPG), and \
                 `password_capture.gnupg_home` is not configured",
            ));
        };
        crate::platform::check_secret_path(
            &settings.gnupg_home,
            "GnuPG home (password_capture.gnupg_home)",
        )?;
        let gpg = settings.gpg.clone().unwrap_or_else(|| PathBuf::from("gpg"));
        let mut child = tokio::process::Command::new(&gpg)
            .args(["--batch", "--quiet", "--no-tty", "--yes", "--homedir"])
            .arg(&settings.gnupg_home)
            .args([
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--decrypt",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!(
                        "cannot run {} to decrypt a captured password: {e}",
                        gpg.display()
                    ),
                )
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(armored.expose_secret().as_bytes())
                .await
                .map_err(|e| Error::internal(format!("writing to gpg: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Error::internal(format!("waiting for gpg: {e}")))?;
        if !out.status.success() {
            // gpg's own words name the key it wanted; they carry no plaintext.
            let said = String::from_utf8_lossy(&out.stderr);
            let said: String = said.lines().take(3).collect::<Vec<_>>().join("; ");
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "gpg could not decrypt a captured password with the keyring {} ({}): {said}; \
                     the private key of smb.conf's `password hash gpg key ids` belongs there",
                    settings.gnupg_home.display(),
                    out.status
                ),
            ));
        }
        // The plaintext is the password in UTF-16LE.
        let bytes = out.stdout;
        if bytes.len() % 2 != 0 {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                "the decrypted password is not UTF-16 (an odd number of bytes)",
            ));
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16(&units).map_err(|_| {
            Error::new(
                ErrorCode::InvalidInput,
                "the decrypted password is not valid UTF-16",
            )
        })?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_ldif_is_read_with_folded_lines_and_base64() {
        let ldif = "# record 1\ndn: CN=Ann,CN=Users,DC=x\nobjectGUID: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\nsAMAccountName: ann\nmsDS-KeyVersionNumber: 3\nvirtualClearTextUTF8:: SGFyYm91\n ci1MaWdodHMh\n";
        let e = parse_hook_ldif(ldif).unwrap();
        assert_eq!(e.guid.to_string(), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(e.key_version, Some(3));
        assert_eq!(e.cleartext.unwrap().expose_secret(), "Harbour-Lights!");
        assert!(!e.deleted);
    }

    #[test]
    fn a_deleted_account_and_bad_ldif_are_told_apart_and_secrets_stay_out() {
        let e =
            parse_hook_ldif("objectGUID: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\nisDeleted: TRUE\n")
                .unwrap();
        assert!(e.deleted);
        let err = parse_hook_ldif("sAMAccountName: x\n").unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
        let err = parse_hook_ldif(
            "objectGUID: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\nvirtualClearTextUTF8:: !!Secret-Canary!!\n",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("Secret-Canary"), "{err}");
        let e = parse_hook_ldif(
            "objectGUID: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\nvirtualClearTextUTF8:: U2VjcmV0LUNhbmFyeQ==\n",
        )
        .unwrap();
        assert!(!format!("{e:?}").contains("Secret-Canary"));
    }
}
