//! systemd's notification protocol (`sd_notify`), written out: one datagram of
//! `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for
//! an abstract socket). `READY=1` for `Type=notify`, `WATCHDOG=1` for `WatchdogSec=`,
//! `STOPPING=1` and `STATUS=…`. Without `$NOTIFY_SOCKET` (not under systemd) every call
//! does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where to send notifications, when systemd asked for them.
pub(crate) struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// The notifier of `$NOTIFY_SOCKET`; a socket that cannot be used is treated as
    /// none (the service still runs, systemd's timeout says the rest).
    pub(crate) fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let name = name.to_str()?.to_string();
            let addr = if let Some(abstract_name) = name.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&name).ok()?
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Notifier { socket }
    }

    /// Sends `state` (`READY=1`, `WATCHDOG=1`, ...); errors are ignored, as
    /// `sd_notify` callers do.
    pub(crate) fn send(&self, state: &str) {
        if let Some((s, addr)) = &self.socket {
            let _ = s.send_to_addr(state.as_bytes(), addr);
        }
    }

    /// The watchdog period systemd expects a `WATCHDOG=1` within (`$WATCHDOG_USEC`, when
    /// it is meant for this process), or `None`.
    pub(crate) fn watchdog() -> Option<Duration> {
        if let Some(pid) = std::env::var_os("WATCHDOG_PID")
            && pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec))
    }
}
