//! A throwaway BIND9 (`named`) serving one zone on 127.0.0.1 and a free port, for the
//! tests of DNS-backed domain verification. Fails loudly when `named` is missing.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Bind {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // Bound on both protocols so the port is free for named's UDP and TCP listeners.
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Bind {
    /// Serves `zone` with the given records (zone-file lines after the SOA and NS).
    pub fn start(zone: &str, records: &[String]) -> Bind {
        Bind::start_with_key(zone, records, None)
    }

    /// As [`Bind::start`], accepting RFC 2136 updates signed with this hmac-sha256 TSIG
    /// key `(name, base64 secret)`.
    pub fn start_with_key(zone: &str, records: &[String], key: Option<(&str, &str)>) -> Bind {
        let named = ["/usr/sbin/named", "/usr/bin/named"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let named = named.unwrap_or_else(|| {
            panic!("BIND9's named is not installed: run scripts/setup (apt package bind9)")
        });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let key_clause = key
            .map(|(n, k)| format!("key \"{n}\" {{ algorithm hmac-sha256; secret \"{k}\"; }};\n"))
            .unwrap_or_default();
        let update = key
            .map(|(n, _)| format!("allow-update {{ key \"{n}\"; }};"))
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("named.conf"),
            format!(
                "options {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; \
                 recursion no; dnssec-validation no; allow-query {{ any; }}; }};\n\
                 controls {{ }};\n\
                 {key_clause}\
                 zone \"{zone}\" {{ type master; file \"{d}/zone.db\"; {update} }};\n"
            ),
        )
        .unwrap();
        let mut z = format!(
            "$TTL 300\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"
        );
        for r in records {
            z.push_str(r);
            z.push('\n');
        }
        std::fs::write(dir.path().join("zone.db"), z).unwrap();
        let child = Command::new(named)
            .args(["-g", "-c"])
            .arg(dir.path().join("named.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start named");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let bind = Bind {
            child,
            addr,
            _dir: dir,
        };
        bind.wait_ready(zone);
        bind
    }

    /// The size of the zone's journal: it grows with every dynamic update the server
    /// took (0 before the first).
    pub fn journal_len(&self) -> u64 {
        std::fs::metadata(self._dir.path().join("zone.db.jnl"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn wait_ready(&self, zone: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = Command::new("dig")
                .args([
                    "+short",
                    "+time=1",
                    "+tries=1",
                    "-p",
                    &self.addr.port().to_string(),
                    "@127.0.0.1",
                    zone,
                    "SOA",
                ])
                .output();
            if let Ok(o) = out
                && o.status.success()
                && !o.stdout.is_empty()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("named did not answer on {} within 10 s", self.addr);
    }
}
