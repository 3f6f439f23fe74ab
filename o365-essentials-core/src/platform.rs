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
pub fn private_file(path: &Path, how: Create) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true);
    match how {
        Create::New => o.create_new(true),
        Create::Truncate => o.create(true).truncate(true),
        Create::Keep => o.read(true).create(true).truncate(false),
    };
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)
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
