//! The quickstart: the project's main job, run with `cargo run --example quickstart`.
//!
//! With no configuration it uses a demo directory (the memory backend seeded with a
//! small company) and a state store in a temporary folder. It reads the directory the
//! way the integration wizard does — which users can get an online account, which are
//! left out and why, the anchor each will carry, the password rules that apply — and
//! records the links-to-be in the state store.
#![allow(clippy::print_stdout)]

use futures::TryStreamExt;
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::LocalUser;
use o365_essentials::ports::Directory;
use o365_essentials::store::Store;
use o365_essentials::{Result, validate};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}\n  what to do: {}", e.action());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    println!(
        "o365-essentials {} — quickstart (demo directory)\n",
        o365_essentials::VERSION
    );
    let dir = MemoryDirectory::demo_company()?;
    let topology = dir.topology().await?;
    println!(
        "Domain {} — {} domain controller(s); this host is the DC: {}",
        topology.domain_dns_name,
        topology.domain_controllers.len(),
        topology.this_host_is_dc
    );
    let policy = dir.password_policy().await?;
    println!(
        "Password policy: at least {} characters, complexity {}, {} remembered; Microsoft 365 adds 8–256 characters, 3 of 4 classes\n",
        policy.min_length,
        if policy.complexity { "on" } else { "off" },
        policy.history_length
    );

    let mut users: Vec<LocalUser> = dir.users().try_collect().await?;
    users.sort_by(|a, b| a.sam_account_name.cmp(&b.sam_account_name));
    let domain = "contoso.com";
    println!(
        "{} local users can get an online account on {domain}:",
        users.len()
    );
    println!(
        "  {:<16} {:<28} {:<8} anchor (onPremisesImmutableId)",
        "user", "suggested online ID", "state"
    );
    for u in &users {
        let upn = format!("{}@{domain}", u.sam_account_name);
        let ok = validate::upn(&upn)
            .map(|()| upn.clone())
            .unwrap_or_else(|e| format!("({})", e.message()));
        println!(
            "  {:<16} {:<28} {:<8} {}",
            u.sam_account_name,
            ok,
            if u.enabled() { "enabled" } else { "disabled" },
            u.anchor()
        );
    }
    for sam in ["Administrator", "Guest", "krbtgt"] {
        if let Some(u) = dir.find_user(sam).await? {
            println!(
                "  left out: {sam} — {}",
                u.exclusion_reason().unwrap_or("excluded")
            );
        }
    }

    let folder =
        std::env::temp_dir().join(format!("o365-essentials-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&folder).map_err(|e| {
        o365_essentials::Error::new(
            o365_essentials::ErrorCode::StoreIo,
            format!("cannot create {}: {e}", folder.display()),
        )
    })?;
    let store = Store::open(folder.join("state.db"))?;
    let changes = dir.changes_since(None).await?;
    store.set_cursor("directory", &changes.cursor.0)?;
    println!(
        "\nState store {} (schema {}) holds the directory cursor; the next run reads only changes.",
        store.path().display(),
        store.schema_version()?
    );
    Ok(())
}
