//! What many tests set up the same way: the configuration of an integration between a
//! Samba DC and the emulator, a PKCS#12 credential, a TSIG key file, the syncpasswords
//! cache that runs the password hook.

use std::path::{Path, PathBuf};
use std::process::Command;

use o365_essentials_emulator::EmulatorInfo;
use serde_json::{Value, json};

use crate::samba::{ADMIN_PASSWORD, Samba};

/// The configuration (as JSON) of an integration between `samba`, bound as its
/// administrator, and the emulator's tenant with its client secret; its store and
/// results in `dir`, new accounts in Great Britain. [`merged`] adds to it.
pub(crate) fn config(samba: &Samba, emu: &EmulatorInfo, dir: &Path) -> Value {
    let ldap = samba.config();
    json!({
        "directory": {"ldap": {"url": ldap.url, "bind": ldap.bind,
            "password": ADMIN_PASSWORD, "ca_file": ldap.ca_file,
            "host_name": ldap.host_name}},
        "tenant": {"tenant_id": emu.tenant_id, "client_id": emu.client_id,
            "credential": {"kind": "secret", "secret": emu.client_secret},
            "login_url": emu.login_url, "graph_url": emu.graph_url,
            "exchange_url": emu.exchange_url, "sharepoint_url": emu.sharepoint_url},
        "store": dir.join("state.db"),
        "results_folder": dir,
        "usage_location": "GB"
    })
}

/// `base` with `extra` laid over it: objects merged key by key, anything else replaced
/// (so a different credential is set by assignment, not merged into the secret one).
pub(crate) fn merged(mut base: Value, extra: Value) -> Value {
    merge(&mut base, extra);
    base
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The `password_capture` part of a configuration for `samba`'s capture key.
pub(crate) fn password_capture(samba: &Samba) -> Value {
    json!({"password_capture": {"gnupg_home": samba.capture_gnupg, "key_id": samba.key_id,
        "samba_gnupg_home": samba.samba_gnupg, "smb_conf": samba.dir.join("etc/smb.conf")}})
}

/// `value` written as JSON to `dir/name`, readable by its owner only (a configuration
/// holding a secret must be, as ssh wants of a key); its path.
pub(crate) fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    write_private(&path, value.to_string());
    path
}

/// Writes `contents` to `path` with mode 0600 (created or truncated): how an
/// administrator keeps a configuration or a key file o365-essentials will accept.
pub(crate) fn write_private(path: &Path, contents: impl AsRef<[u8]>) {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    f.write_all(contents.as_ref()).unwrap();
}

/// A certificate credential in `dir`: the self-signed certificate, its key, and both in
/// a PKCS#12 file under `passphrase` (`dir/<name>.pfx`).
pub(crate) fn pkcs12(dir: &Path, name: &str, passphrase: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (cert, key) = crate::graph::self_signed_rsa(dir, name);
    let pfx = dir.join(format!("{name}.pfx"));
    let made = Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-passout",
            "env:PFX_PASSPHRASE",
            "-inkey",
        ])
        .arg(&key)
        .arg("-in")
        .arg(&cert)
        .arg("-out")
        .arg(&pfx)
        .env("PFX_PASSPHRASE", passphrase)
        .status()
        .unwrap();
    assert!(made.success(), "openssl pkcs12 -export");
    std::fs::set_permissions(&pfx, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (cert, key, pfx)
}

/// A BIND key file for the key `o365-update` with this (base64) secret.
pub(crate) fn tsig_key_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    write_private(
        &path,
        format!("key \"o365-update\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    );
    path
}

/// The password hook as the syncpasswords unit runs it: the program linked under the
/// hook's name in `dir`, and a syncpasswords cache in `dir` initialised to run it for
/// `samba` (the attributes SAMBA-SERVER.md gives). The cache's path.
pub(crate) fn syncpasswords_cache(samba: &Samba, program: &Path, dir: &Path) -> PathBuf {
    let hook = dir.join("o365-essentials-samba-hook");
    std::os::unix::fs::symlink(program, &hook).unwrap();
    let cache = dir.join("syncpasswords-cache.ldb");
    let init = samba
        .samba_tool(&["user", "syncpasswords", "--cache-ldb-initialize"])
        .arg(format!("--cache-ldb={}", cache.display()))
        .arg("--attributes=objectGUID,sAMAccountName,userAccountControl,msDS-KeyVersionNumber,virtualSambaGPG")
        .arg(format!("--script={}", hook.display()))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "samba-tool user syncpasswords --cache-ldb-initialize: {}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
    cache
}

/// `cargo` as `scripts/test` runs it, for a test that builds: without the variables cargo
/// sets for a running test. ring's build script reruns when `CARGO_MANIFEST_DIR`
/// changes, so with them the whole tree would be built again — and the running test
/// binary relinked under it.
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        let set_by_cargo_for_the_test = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
                "LD_LIBRARY_PATH",
            ]
            .contains(&name.as_ref());
        if set_by_cargo_for_the_test {
            c.env_remove(&k);
        }
    }
    c
}
