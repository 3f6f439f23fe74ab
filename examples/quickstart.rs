//! The quickstart — the project's main job: `cargo run --example quickstart`.
//!
//! With no configuration it starts the Microsoft 365 emulator in-process and a demo
//! directory (the memory backend seeded with a small company), then does what the
//! integration wizard does: requirements check → integrate → preview → bulk-create the
//! online accounts with a progress bar → the outcome and where the results file is.
//!
//! With `--config FILE` it runs against real servers: the file holds
//! `{"ldap": {...LdapConfig...}, "graph": {...GraphConfig...}, "domain": "contoso.com",
//! "usage_location": "GB", "store": "/var/lib/o365-essentials/state.db",
//! "results_folder": "...", "apply": false}`; without `"apply": true` it only previews.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use o365_essentials::engine::{
    BulkCreateRequest, Integration, PasswordKey, SyncOptions, write_results,
};
use o365_essentials::exchange::ExchangeOnline;
use o365_essentials::graph::{GraphConfig, GraphTenant};
use o365_essentials::ldap::{LdapConfig, LdapDirectory};
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::{
    CheckStatus, DevicePolicy, LicenceAssignment, Limit, NewDistributionGroup, NewLibrary, Outcome,
    PlanAction, Progress,
};
use o365_essentials::ports::{Directory, Exchange, SharePoint, Tenant};
use o365_essentials::sharepoint::SharePointOnline;
use o365_essentials::store::Store;
use o365_essentials::{Error, ErrorCode, Result};
use o365_essentials_emulator::{Emulator, EmulatorConfig};

#[derive(serde::Deserialize)]
struct RealConfig {
    ldap: LdapConfig,
    graph: GraphConfig,
    domain: String,
    #[serde(default)]
    usage_location: Option<String>,
    store: PathBuf,
    #[serde(default)]
    results_folder: Option<PathBuf>,
    #[serde(default)]
    apply: bool,
}

/// What the run works with.
struct Setup {
    dir: Arc<dyn Directory>,
    tenant: Arc<GraphTenant>,
    store_path: PathBuf,
    domain: Option<String>,
    usage: Option<String>,
    results_folder: PathBuf,
    apply: bool,
    /// In the demo: the memory directory, to make everyday changes in.
    demo_directory: Option<Arc<MemoryDirectory>>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nquickstart failed: {e}\n  what to do: {}", e.action());
            std::process::ExitCode::FAILURE
        }
    }
}

fn bar(p: &Progress) {
    let width = 30;
    let filled = if p.total == 0 {
        width
    } else {
        (p.done as usize * width) / p.total as usize
    };
    print!(
        "\r  [{}{}] {:>3}/{:<3} {:<24}",
        "#".repeat(filled),
        " ".repeat(width - filled),
        p.done,
        p.total,
        p.current.as_deref().unwrap_or("")
    );
    let _ = std::io::stdout().flush();
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config_file = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1));
    let _emulator;
    let setup = match config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::new(ErrorCode::InvalidConfig, format!("cannot read {path}: {e}"))
            })?;
            let c: RealConfig = o365_essentials::json::from_str(&text).map_err(|e| {
                Error::new(ErrorCode::InvalidConfig, format!("{path}: {}", e.message()))
            })?;
            println!(
                "o365-essentials {} — quickstart against {} and tenant {}",
                o365_essentials::VERSION,
                c.ldap.url,
                c.graph.tenant_id
            );
            let folder = c
                .results_folder
                .clone()
                .unwrap_or_else(|| c.store.parent().map(PathBuf::from).unwrap_or_default());
            Setup {
                dir: Arc::new(LdapDirectory::new(c.ldap)?),
                tenant: Arc::new(GraphTenant::new(c.graph)?),
                store_path: c.store,
                domain: Some(c.domain),
                usage: c.usage_location,
                results_folder: folder,
                apply: c.apply,
                demo_directory: None,
            }
        }
        None => {
            println!(
                "o365-essentials {} — quickstart (demo directory, Microsoft 365 emulator)",
                o365_essentials::VERSION
            );
            let emu = Emulator::start(EmulatorConfig::default())
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorCode::Internal,
                        format!("the emulator did not start: {e}"),
                    )
                })?;
            let info = emu.info().clone();
            let mut g = GraphConfig::with_secret(
                &info.tenant_id,
                &info.client_id,
                info.client_secret.clone().unwrap_or_default(),
            );
            g.login_url = info.login_url.clone();
            g.graph_url = info.graph_url.clone();
            g.exchange_url = info.exchange_url.clone();
            g.sharepoint_url = Some(info.sharepoint_url.clone());
            _emulator = emu;
            let folder = std::env::temp_dir()
                .join(format!("o365-essentials-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&folder).map_err(|e| {
                Error::new(
                    ErrorCode::StoreIo,
                    format!("cannot create {}: {e}", folder.display()),
                )
            })?;
            let demo = Arc::new(MemoryDirectory::demo_company()?);
            Setup {
                dir: demo.clone(),
                tenant: Arc::new(GraphTenant::new(g)?),
                store_path: folder.join("state.db"),
                domain: None,
                usage: Some("GB".into()),
                results_folder: folder,
                apply: true,
                demo_directory: Some(demo),
            }
        }
    };
    let Setup {
        dir,
        tenant,
        store_path,
        domain,
        usage,
        results_folder,
        apply,
        demo_directory,
    } = setup;
    let store = Arc::new(Store::open(&store_path)?);
    // The password queue's key lives in its own file, not in the state store.
    let key = PasswordKey::load_or_create(&store_path.with_extension("key"))?;
    let integration = Integration::new(dir.clone(), tenant.clone(), store).with_password_key(key);

    println!("\n1. Requirements check");
    let report = integration.requirements(domain.as_deref()).await;
    for c in &report.checks {
        let mark = match c.status {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
        };
        println!("  [{mark}] {} — {}", c.title, c.detail);
        if !c.remedy.is_empty() {
            println!("         {}", c.remedy);
        }
    }
    if !report.can_integrate() {
        return Err(Error::new(
            ErrorCode::PreconditionFailed,
            "a requirement failed; fix it and run again",
        ));
    }

    println!("\n2. Integrate");
    let status = integration.integrate().await?;
    println!(
        "  tenant {} ({}), initial domain {}",
        status.organization, status.tenant_id, status.initial_domain
    );
    let domain = domain.unwrap_or(status.initial_domain.clone());

    println!("\n3. Preview");
    let snapshot = integration.snapshot().await?;
    let licences: Vec<LicenceAssignment> = tenant
        .skus()
        .await?
        .into_iter()
        .filter(|s| s.free_units() > 0)
        .take(1)
        .map(|s| LicenceAssignment {
            sku_id: s.sku_id,
            disabled_plans: vec![],
        })
        .collect();
    let request = BulkCreateRequest {
        domain,
        usage_location: usage,
        licences,
        ..Default::default()
    };
    let plan = integration.plan_bulk_create(&snapshot, &request)?;
    for item in &plan.items {
        match &item.action {
            PlanAction::CreateAccount {
                local,
                user_principal_name,
                ..
            } => println!(
                "  create {:<24} → {user_principal_name}",
                local.sam_account_name
            ),
            PlanAction::Link {
                local,
                user_principal_name,
                ..
            } => println!(
                "  link   {:<24} → {user_principal_name} ({})",
                local.sam_account_name, item.reason
            ),
            _ => {}
        }
    }
    for s in &plan.skipped {
        println!("  skip   {:<24} — {}", s.sam_account_name, s.reason);
    }
    if !apply {
        println!(
            "\nPreview only (set \"apply\": true in the configuration to create the accounts)."
        );
        return Ok(());
    }

    println!("\n4. Bulk create ({} online accounts)", plan.items.len());
    let results = integration.apply(&plan, &|p| bar(&p)).await?;
    println!();
    let (json, csv) = write_results(&results, &results_folder)?;
    println!(
        "\nDone: {} succeeded, {} failed, {} skipped.",
        results.count(Outcome::Succeeded),
        results.count(Outcome::Failed),
        results.count(Outcome::Skipped)
    );
    for i in results
        .items
        .iter()
        .filter(|i| i.outcome != Outcome::Succeeded)
    {
        println!(
            "  {} {:?}: {} — {}",
            i.local_user,
            i.outcome,
            i.service_message.as_deref().unwrap_or(""),
            i.recommended_action.as_deref().unwrap_or("")
        );
    }
    println!(
        "Results file: {}\n              {}",
        json.display(),
        csv.display()
    );
    println!("State store:  {}", store_path.display());
    if let Some(demo) = demo_directory {
        lifecycle(&integration, &demo, &tenant).await?;
        email_and_files(&integration, &demo, &tenant).await?;
    }
    Ok(())
}

/// Exchange and SharePoint: a distribution group of local users' accounts, the mobile
/// device policy, a document library and the launchpad.
async fn email_and_files(
    integration: &Integration,
    demo: &MemoryDirectory,
    tenant: &GraphTenant,
) -> Result<()> {
    println!("\n7. Email and files");
    let exchange = ExchangeOnline::with_graph(tenant.clone());
    let mut locals = Vec::new();
    for n in ["ava.adams", "ben.brooks"] {
        locals.push(
            demo.find_user(n)
                .await?
                .ok_or_else(|| Error::not_found(n))?
                .guid,
        );
    }
    let members = integration.online_user_names(&locals).await?;
    let group = exchange
        .create_distribution_group(&NewDistributionGroup {
            name: "All staff".into(),
            alias: "allstaff".into(),
            primary_smtp_address: "allstaff@contoso.onmicrosoft.com".into(),
            members,
            ..NewDistributionGroup::default()
        })
        .await?;
    println!(
        "  distribution group {} <{}>: {}",
        group.display_name,
        group.primary_smtp_address,
        group.members.join(", ")
    );
    let policy = DevicePolicy {
        password_enabled: true,
        min_password_length: Some(6),
        max_password_failed_attempts: Limit::Value(10),
        max_inactivity_lock_minutes: Limit::Value(15),
        alphanumeric_password_required: false,
    };
    exchange.set_device_policy(&policy).await?;
    println!("  mobile devices: a 6-character password, 10 attempts, locked after 15 minutes");
    let sharepoint = SharePointOnline::with_graph(tenant.clone());
    let library = sharepoint
        .create_library(&NewLibrary {
            name: "Contracts".into(),
            description: "Signed contracts".into(),
            ..NewLibrary::default()
        })
        .await?;
    println!("  document library {} at {}", library.name, library.url);
    let pad = integration.launchpad_from(&sharepoint).await?;
    println!(
        "  launchpad: portal {}, mail {}, team site {}",
        pad.portal,
        pad.mail,
        pad.team_site.as_deref().unwrap_or("-")
    );
    Ok(())
}

/// The everyday part: local changes in the demo directory, one sync, what propagated.
async fn lifecycle(
    integration: &Integration,
    demo: &MemoryDirectory,
    tenant: &GraphTenant,
) -> Result<()> {
    println!("\n5. Everyday changes in the directory");
    integration.run_sync_once(&SyncOptions::default()).await?; // starts the change cursor
    let user = |n: &'static str| async move {
        demo.find_user(n).await?.ok_or_else(|| Error::not_found(n))
    };
    let ava = user("ava.adams").await?;
    let ben = user("ben.brooks").await?;
    let chloe = user("chloe.carter").await?;
    let new_password = o365_essentials::SecretString::from("Spring-Meadow-2027!");
    demo.set_password(ava.guid, &new_password).await?;
    integration.password_changed(ava.guid, &new_password)?;
    println!("  ava.adams changed her password");
    demo.set_enabled(ben.guid, false).await?;
    println!("  ben.brooks was disabled");
    demo.delete_user(chloe.guid).await?;
    println!("  chloe.carter was deleted");

    println!("\n6. Sync");
    let report = integration.run_sync_once(&SyncOptions::default()).await?;
    for i in &report.results.items {
        println!("  {:<14} {:<8} {:?}", i.local_user, i.action, i.outcome);
    }
    println!("  passwords delivered: {}", report.passwords.delivered);
    let ben_online = tenant.account("ben.brooks@contoso.onmicrosoft.com").await?;
    let chloe_online = match tenant.account("chloe.carter@contoso.onmicrosoft.com").await {
        Err(e) if e.code() == ErrorCode::NotFound => "deleted (restorable for 30 days)",
        _ => "still there",
    };
    println!(
        "  online now: ben.brooks sign-in {}; chloe.carter {chloe_online}",
        if ben_online.account_enabled {
            "allowed"
        } else {
            "blocked"
        }
    );
    Ok(())
}
