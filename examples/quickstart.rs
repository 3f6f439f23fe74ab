//! The quickstart — the project's main job: `cargo run --example quickstart`.
//!
//! With no configuration it starts the Microsoft 365 emulator in-process and opens the
//! embedded demo configuration (`examples/demo-config.json`: the demo directory, the
//! emulator's tenant), then does what the integration wizard does: requirements check →
//! integrate → preview → bulk-create the online accounts with a progress bar → the outcome
//! and where the results file is, then everyday changes, a sync, email and files.
//!
//! With `--config FILE` (an `IntegrationConfig`, see docs/CONFIGURATION.md) it runs
//! against real servers and only previews, unless `--apply` is given too.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use o365_essentials::config::IntegrationConfig;
use o365_essentials::engine::{BulkCreateRequest, CancelToken, Control, Event, Integration};
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::{
    CheckStatus, DevicePolicy, LicenceAssignment, Limit, NewDistributionGroup, NewLibrary, Outcome,
    PlanAction,
};
use o365_essentials::ports::Directory;
use o365_essentials::{Error, ErrorCode, Result};
use o365_essentials_emulator::{Emulator, EmulatorConfig};

const DEMO_CONFIG: &str = include_str!("demo-config.json");

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

/// The progress bar, drawn by the observer (on the engine's event thread).
fn bar(e: &Event) {
    let Event::Progress {
        done,
        total,
        current,
        ..
    } = e
    else {
        return;
    };
    let width = 30;
    let filled = if *total == 0 {
        width
    } else {
        (*done as usize * width) / *total as usize
    };
    print!(
        "\r  [{}{}] {:>3}/{:<3} {:<24}",
        "#".repeat(filled),
        " ".repeat(width - filled),
        done,
        total,
        current.as_deref().unwrap_or("")
    );
    let _ = std::io::stdout().flush();
}

/// Fills the embedded demo configuration with the emulator's addresses.
fn demo_config(emu: &Emulator, folder: &std::path::Path) -> Result<IntegrationConfig> {
    let info = emu.info();
    let text = DEMO_CONFIG
        .replace("{tenant_id}", &info.tenant_id)
        .replace("{client_id}", &info.client_id)
        .replace(
            "{client_secret}",
            info.client_secret.as_deref().unwrap_or_default(),
        )
        .replace("{login_url}", &info.login_url)
        .replace("{graph_url}", &info.graph_url)
        .replace("{exchange_url}", &info.exchange_url)
        .replace("{sharepoint_url}", &info.sharepoint_url)
        .replace("{folder}", &folder.display().to_string());
    IntegrationConfig::from_json(&text)
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config_file = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1));
    let mut apply = args.iter().any(|a| a == "--apply");
    let _emulator;
    let config = match config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::new(ErrorCode::InvalidConfig, format!("cannot read {path}: {e}"))
            })?;
            let c = IntegrationConfig::from_json(&text).map_err(|e| {
                Error::new(ErrorCode::InvalidConfig, format!("{path}: {}", e.message()))
            })?;
            println!(
                "o365-essentials {} — quickstart with {path} (tenant {})",
                o365_essentials::VERSION,
                c.tenant.tenant_id
            );
            c
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
            let folder = std::env::temp_dir()
                .join(format!("o365-essentials-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&folder).map_err(|e| {
                Error::new(
                    ErrorCode::StoreIo,
                    format!("cannot create {}: {e}", folder.display()),
                )
            })?;
            let c = demo_config(&emu, &folder)?;
            _emulator = emu;
            apply = true;
            c
        }
    };
    let store_path: PathBuf = config.store.clone();
    let integration = Arc::new(Integration::open(config)?);

    println!("\n1. Requirements check");
    let report = integration.requirements(None).await;
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

    println!("\n3. Preview");
    let snapshot = integration.accounts().snapshot().await?;
    let licences: Vec<LicenceAssignment> = integration
        .accounts()
        .licences()
        .await?
        .into_iter()
        .filter(|s| s.free_units() > 0)
        .take(1)
        .map(|s| LicenceAssignment {
            sku_id: s.sku_id,
            disabled_plans: vec![],
        })
        .collect();
    // The domain and usage location come from the configuration (the initial domain
    // when no custom domain is verified yet).
    let request = BulkCreateRequest {
        licences,
        ..Default::default()
    };
    let plan = integration
        .accounts()
        .plan_bulk_create(&snapshot, &request)?;
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
                local.sam_account_name, item.message
            ),
            _ => {}
        }
    }
    for s in &plan.skipped {
        println!("  skip   {:<24} — {}", s.sam_account_name, s.message);
    }
    if !apply {
        println!("\nPreview only (run again with --apply to create the accounts).");
        return Ok(());
    }

    println!("\n4. Bulk create ({} online accounts)", plan.items.len());
    let ctl = Control::with_observer(CancelToken::new(), Arc::new(bar))?;
    let results = integration.accounts().apply(&plan, &ctl).await?;
    drop(ctl); // the last progress is drawn before the summary
    println!();
    let (json, csv) =
        o365_essentials::engine::results_paths(&results, &integration.results_folder());
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
    if let Some(demo) = integration.demo_directory() {
        lifecycle(&integration, demo).await?;
        email_and_files(&integration, demo).await?;
    }
    Ok(())
}

/// Exchange and SharePoint: a distribution group of local users' accounts, the mobile
/// device policy, a document library and the launchpad.
async fn email_and_files(integration: &Integration, demo: &MemoryDirectory) -> Result<()> {
    println!("\n7. Email and files");
    let mail = integration.mail_and_devices();
    let mut locals = Vec::new();
    for n in ["ava.adams", "ben.brooks"] {
        locals.push(
            demo.find_user(n)
                .await?
                .ok_or_else(|| Error::not_found(n))?
                .guid,
        );
    }
    let members = integration.accounts().online_user_names(&locals).await?;
    let group = mail
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
    mail.update_device_policy(|_| Ok(policy)).await?;
    println!("  mobile devices: a 6-character password, 10 attempts, locked after 15 minutes");
    let library = integration
        .files()
        .create_library(
            &NewLibrary {
                name: "Contracts".into(),
                description: "Signed contracts".into(),
                ..NewLibrary::default()
            },
            &Control::none(),
        )
        .await?;
    println!("  document library {} at {}", library.name, library.url);
    let pad = integration.launchpad_online().await?;
    println!(
        "  launchpad: portal {}, mail {}, team site {}",
        pad.portal,
        pad.mail,
        pad.team_site.as_deref().unwrap_or("-")
    );
    Ok(())
}

/// The everyday part: local changes in the demo directory, one sync, what propagated.
async fn lifecycle(integration: &Integration, demo: &MemoryDirectory) -> Result<()> {
    println!("\n5. Everyday changes in the directory");
    let options = integration.sync().sync_options();
    integration.sync().run_sync_once(&options).await?; // starts the change cursor
    let user = |n: &'static str| async move {
        demo.find_user(n).await?.ok_or_else(|| Error::not_found(n))
    };
    let ava = user("ava.adams").await?;
    let ben = user("ben.brooks").await?;
    let chloe = user("chloe.carter").await?;
    let new_password = o365_essentials::SecretString::from("Spring-Meadow-2027!");
    demo.set_password(ava.guid, &new_password).await?;
    integration
        .passwords()
        .password_changed(ava.guid, &new_password)?;
    println!("  ava.adams changed her password");
    demo.set_enabled(ben.guid, false).await?;
    println!("  ben.brooks was disabled");
    demo.delete_user(chloe.guid).await?;
    println!("  chloe.carter was deleted");

    println!("\n6. Sync");
    let report = integration.sync().run_sync_once(&options).await?;
    for i in &report.results.items {
        println!(
            "  {:<14} {:<8} {:?}",
            i.local_user,
            i.action.name(),
            i.outcome
        );
    }
    let tenant = integration.microsoft365().tenant.clone();
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
