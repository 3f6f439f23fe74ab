//! `cargo bench --bench ldap_read`: a full read of 10,000 users from Samba AD through the
//! LDAP backend, against `ldapsearch -E pr=500` on the same server with the same attribute
//! list, in the same run; and the process's peak memory, to show the read is streamed.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/samba.rs"]
mod samba;

use std::time::Instant;

use futures::StreamExt;
use o365_essentials::ldap::LdapDirectory;
use o365_essentials::ports::Directory;

const USERS: usize = 10_000;
const ROUNDS: usize = 3;
const ATTRS: &[&str] = o365_essentials::ldap::USER_ATTRIBUTES;

fn rss_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let s = samba::Samba::start("bench");
    let mut ldif = String::with_capacity(USERS * 300);
    for i in 0..USERS {
        ldif.push_str(&format!(
            "dn: CN=Bench User {i:05},CN=Users,{base}\nobjectClass: user\nsAMAccountName: bench{i:05}\nuserPrincipalName: bench{i:05}@{realm}\ngivenName: Bench\nsn: User {i:05}\ndisplayName: Bench User {i:05}\nmail: bench{i:05}@{realm}\n\n",
            base = samba::BASE_DN,
            realm = samba::REALM
        ));
    }
    let t = Instant::now();
    s.ldif("ldapadd", &ldif);
    drop(ldif);
    println!("load_seconds: {:.1}", t.elapsed().as_secs_f64());

    let filter = "(&(objectCategory=person)(objectClass=user)(!(isCriticalSystemObject=TRUE)))";
    let mut ldapsearch_best = f64::MAX;
    let mut ours_best = f64::MAX;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = LdapDirectory::new(s.config()).unwrap();
    let rss_before = rss_kb("VmRSS:");
    let mut count = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out = std::process::Command::new("ldapsearch")
            .env("LDAPTLS_CACERT", &s.ca_file)
            .args([
                "-H",
                &format!("ldaps://{}", s.ip),
                "-x",
                "-D",
                &format!("Administrator@{}", samba::REALM),
                "-w",
                samba::ADMIN_PASSWORD,
            ])
            .args(["-E", "pr=500/noprompt", "-b", samba::BASE_DN, filter])
            .args(ATTRS)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
        ldapsearch_best = ldapsearch_best.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        count = rt.block_on(async {
            let mut n = 0usize;
            let mut stream = dir.users();
            while let Some(u) = stream.next().await {
                u.unwrap();
                n += 1;
            }
            n
        });
        ours_best = ours_best.min(t.elapsed().as_secs_f64());
    }
    assert!(count >= USERS, "read {count} users");
    println!("users_read: {count}");
    println!("ldapsearch_seconds: {ldapsearch_best:.3}");
    println!("backend_seconds: {ours_best:.3}");
    println!("ratio_vs_ldapsearch: {:.3}", ours_best / ldapsearch_best);
    println!("rss_before_read_mb: {:.1}", rss_before as f64 / 1024.0);
    println!("peak_rss_mb: {:.1}", rss_kb("VmHWM:") as f64 / 1024.0);
    s.stop();
}
