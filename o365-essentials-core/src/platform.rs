//! What differs between operating systems, in one place: files only the owner may read,
//! the system's DNS resolvers. A port to another system replaces this module's insides;
//! nothing else in the engine names an operating system. (The store's file lock uses
//! `std::fs::File::try_lock`, which is portable.)

use std::fs::{File, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// How [`private_file`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Create it; fail with `AlreadyExists` when it is there (never overwrite).
    New,
    /// Create it or truncate the one there.
    Truncate,
    /// Open it for reading and writing, creating it when absent; keep its content.
    Keep,
}

/// Opens `path` for writing, created readable and writable by its owner only (0600 on
/// Unix).
///
/// # Errors
/// The operating system's error.
///
/// A symbolic link at `path` is never followed (`O_NOFOLLOW`): a link planted in a
/// writable folder cannot redirect a lock, lease or key file onto another file.
pub fn private_file(path: &Path, how: Create) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true);
    match how {
        Create::New => o.create_new(true),
        Create::Truncate => o.create(true).truncate(true),
        Create::Keep => o.read(true).create(true).truncate(false),
    };
    #[cfg(unix)]
    {
        o.mode(0o600);
        o.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    o.open(path)
}

/// Sets the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)` on Linux): no core file
/// holds its passwords and keys, and other processes of the same user cannot attach a
/// debugger or read `/proc/<pid>/mem`. Elsewhere it does nothing.
///
/// # Errors
/// The operating system's error.
pub fn set_non_dumpable() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

/// Checks a file or folder that holds a secret the way ssh checks a private key: it
/// must belong to the user this process runs as (or root) and be neither group- nor
/// world-accessible.
///
/// # Errors
/// [`ErrorCode::InvalidConfig`](crate::ErrorCode::InvalidConfig) naming `what`, the path
/// and the exact `chmod`/`chown` to run; the file's absence or unreadability is left
/// to the reader.
pub fn check_secret_path(path: &Path, what: &str) -> crate::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(());
        };
        let shown = crate::validate::printable(&path.display().to_string()).into_owned();
        let quoted = shell_quote(&shown);
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me && meta.uid() != 0 {
            let user = user_name(me).unwrap_or_else(|| me.to_string());
            return Err(crate::Error::new(
                crate::ErrorCode::InvalidConfig,
                format!(
                    "the {what} {shown} belongs to uid {}, not to the user o365-essentials runs as ({user}); another user could change it. Run: chown {user} {quoted}",
                    meta.uid()
                ),
            ));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            let want = if meta.is_dir() { "700" } else { "600" };
            return Err(crate::Error::new(
                crate::ErrorCode::InvalidConfig,
                format!(
                    "the {what} {shown} can be read by others (mode {mode:04o}); it holds a secret. Run: chmod {want} {quoted}"
                ),
            ));
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = (path, what);
        Ok(())
    }
}

/// A path as a shell word (single-quoted when it needs quoting).
#[cfg(unix)]
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The name of user `uid` from `/etc/passwd`, for the `chown` to suggest.
#[cfg(unix)]
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// Whether someone other than the owner may read or write `path`.
///
/// # Errors
/// The operating system's error.
pub fn readable_by_others(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}

/// Makes `path` readable and writable by its owner only.
///
/// # Errors
/// The operating system's error.
pub fn restrict_to_owner(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// The system resolver's DNS servers (`/etc/resolv.conf` on Unix); empty when none are
/// listed.
pub fn system_dns_servers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_others_can_read_are_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("password key");
        std::fs::write(&p, [0u8; 32]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_secret_path(&p, "password key file").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidConfig);
        assert!(e.message().contains("mode 0644"), "{e}");
        assert!(
            e.message()
                .contains(&format!("chmod 600 '{}'", p.display())),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(check_secret_path(&p, "x").is_err(), "group-readable too");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_secret_path(&p, "x").unwrap();
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_secret_path(&home, "GnuPG home").unwrap_err();
        assert!(e.message().contains("chmod 700"), "{e}");
        // Absent: the reader says so.
        check_secret_path(&dir.path().join("none"), "x").unwrap();
    }

    #[test]
    fn a_symlink_is_never_followed_when_a_private_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("store.db.lease-sync");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for how in [Create::New, Create::Truncate, Create::Keep] {
            assert!(private_file(&link, how).is_err(), "{how:?}");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn private_files_are_owner_only_and_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        private_file(&p, Create::New).unwrap();
        assert!(!readable_by_others(&p).unwrap());
        let e = private_file(&p, Create::New).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&p).unwrap());
        restrict_to_owner(&p).unwrap();
        assert!(!readable_by_others(&p).unwrap());
    }
}
