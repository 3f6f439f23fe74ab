//! `cargo bench --bench bulk_create`: create and license 5,000 online accounts against the
//! emulator with the documented write quota (3,000 writes per 150 s per app, time-scaled)
//! and a realistic latency — first on the administrator's own path (`AccountsView::apply`
//! of a reviewed plan, with the journal, the store and the results file), then with the
//! backend alone driven by 96 tasks, then `AccountsView::apply` one item at a time; one
//! emulator, the quotas refilled between the runs, the figures side by side.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use o365_essentials::SecretString;
use o365_essentials::engine::{BulkCreateRequest, Control, Integration};
use o365_essentials::graph::{GraphConfig, GraphTenant};
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::{
    LicenceAssignment, NewLocalUser, NewOnlineAccount, ObjectGuid, Outcome, Plan, PlanAction,
};
use o365_essentials::ports::{Directory, Tenant};
use o365_essentials::store::Store;
use o365_essentials_emulator::config::{Delay, LatencyConfig, SeedSku};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

const ACCOUNTS: usize = 5000;
const SEQUENTIAL_ACCOUNTS: usize = 60;
const SKU: &str = "f245ecc8-75af-4f8e-b61f-27d8114de5f3";
const TIME_SCALE: f64 = 30.0;
const CONCURRENCY: usize = 96;

fn account(i: usize, prefix: &str) -> NewOnlineAccount {
    NewOnlineAccount {
        user_principal_name: format!("{prefix}{i:05}@contoso.onmicrosoft.com"),
        display_name: format!("Bulk {i}"),
        mail_nickname: format!("{prefix}{i:05}"),
        account_enabled: true,
        usage_location: Some("GB".into()),
        immutable_id: Some(ObjectGuid::random().anchor()),
        ..NewOnlineAccount::default()
    }
}

async fn create_and_license(
    t: &GraphTenant,
    a: NewOnlineAccount,
    sku: uuid::Uuid,
) -> Result<(), String> {
    let pw = SecretString::from("Bulk-Passw0rd!");
    let created = t.create_account(&a, &pw).await.map_err(|e| e.to_string())?;
    t.assign_licences(
        &created.id,
        &[LicenceAssignment {
            sku_id: sku,
            disabled_plans: vec![],
        }],
        &[],
    )
    .await
    .map_err(|e| e.to_string())
}

async fn stats(emu: &Emulator) -> Value {
    reqwest::get(format!("{}/stats", emu.info().admin_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Refills the throttling buckets (same quotas), so each run starts as the first did.
async fn refill(emu: &Emulator, writes: u32, window: f64) {
    let r = reqwest::Client::new()
        .put(format!("{}/throttling", emu.info().admin_url))
        .json(&serde_json::json!({"app_tenant_writes": writes, "app_tenant_write_window_secs": window}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

fn writes_so_far(s: &Value) -> u64 {
    s["user_created"].as_u64().unwrap_or(0) + s["licence_assigned"].as_u64().unwrap_or(0)
}

/// A directory of `n` users `{prefix}NNNNN`, and an integration over it, integrated.
async fn integration_with(
    gc: &GraphConfig,
    n: usize,
    prefix: &str,
    store: &std::path::Path,
    concurrency: usize,
) -> (Integration, Plan) {
    let dir = Arc::new(MemoryDirectory::new("essentials.test").unwrap());
    for i in 0..n {
        dir.create_user(
            &NewLocalUser {
                sam_account_name: format!("{prefix}{i:05}"),
                user_principal_name: format!("{prefix}{i:05}@essentials.test"),
                display_name: format!("Person {i}"),
                ..Default::default()
            },
            &SecretString::from("Quiet-Harbour-Wide!"),
        )
        .await
        .unwrap();
    }
    let integration = Integration::new(
        dir,
        Arc::new(GraphTenant::new(gc.clone()).unwrap()),
        Arc::new(Store::open(store).unwrap()),
    )
    .with_concurrency(concurrency);
    integration.integrate().await.unwrap();
    let request = BulkCreateRequest {
        usage_location: Some("GB".into()),
        licences: vec![LicenceAssignment {
            sku_id: uuid::Uuid::parse_str(SKU).unwrap(),
            disabled_plans: vec![],
        }],
        ..Default::default()
    };
    let snapshot = integration.accounts().snapshot().await.unwrap();
    let mut plan = integration
        .accounts()
        .plan_bulk_create(&snapshot, &request)
        .unwrap();
    plan.items
        .retain(|i| matches!(&i.action, PlanAction::CreateAccount { local, .. } if local.sam_account_name.starts_with(prefix)));
    (integration, plan)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = EmulatorConfig::default();
        cfg.throttling.time_scale = TIME_SCALE;
        cfg.latency = LatencyConfig {
            read: Delay {
                fixed_ms: 30,
                jitter_ms: 20,
            },
            write: Delay {
                fixed_ms: 60,
                jitter_ms: 40,
            },
            token: Delay {
                fixed_ms: 80,
                jitter_ms: 20,
            },
            write_response: Delay::default(),
        };
        cfg.seed.skus = vec![SeedSku {
            sku_id: "f245ecc8-75af-4f8e-b61f-27d8114de5f3".into(),
            sku_part_number: "O365_BUSINESS_PREMIUM".into(),
            enabled: 20_000,
        }];
        let quota = (
            cfg.throttling.app_tenant_writes as f64,
            cfg.throttling.app_tenant_write_window_secs,
        );
        let emu = Emulator::start(cfg).await.unwrap();
        let info = emu.info().clone();
        let mut gc = GraphConfig::with_secret(
            &info.tenant_id,
            &info.client_id,
            info.client_secret.clone().unwrap(),
        );
        gc.login_url = info.login_url.clone();
        gc.graph_url = info.graph_url.clone();
        gc.max_concurrency = CONCURRENCY;
        gc.max_attempts = 30;
        let t = Arc::new(GraphTenant::new(gc.clone()).unwrap());
        t.check_credentials().await.unwrap();
        let sku = uuid::Uuid::parse_str(SKU).unwrap();
        let tmp = tempfile::tempdir().unwrap();

        // The administrator's path: a reviewed plan applied by AccountsView::apply.
        let (user, plan) =
            integration_with(&gc, ACCOUNTS, "user", &tmp.path().join("u.db"), 96).await;
        assert_eq!(plan.items.len(), ACCOUNTS);
        refill(&emu, quota.0 as u32, quota.1).await;
        let before = stats(&emu).await;
        let start = Instant::now();
        let results = user
            .accounts()
            .apply(&plan, &Control::none())
            .await
            .unwrap();
        let user_secs = start.elapsed().as_secs_f64();
        let user_writes = writes_so_far(&stats(&emu).await) - writes_so_far(&before);
        let user_allowed = quota.0 + quota.0 / quota.1 * TIME_SCALE * user_secs;
        let user_failed = results.count(Outcome::Failed) + results.count(Outcome::Skipped);
        let user_state: Value = reqwest::get(format!("{}/state", info.admin_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut user_upns: HashMap<String, usize> = HashMap::new();
        for u in user_state["users"].as_array().unwrap() {
            let upn = u["userPrincipalName"].as_str().unwrap_or_default();
            if upn.starts_with("user") {
                *user_upns.entry(upn.to_string()).or_default() += 1;
            }
        }
        let user_duplicates: usize = user_upns.values().map(|n| n - 1).sum();
        let user_lost = ACCOUNTS - user_upns.len();
        drop(user);
        refill(&emu, quota.0 as u32, quota.1).await;

        let before = stats(&emu).await;
        let writes_before = before["user_created"].as_u64().unwrap_or(0)
            + before["licence_assigned"].as_u64().unwrap_or(0);
        let start = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = Vec::with_capacity(ACCOUNTS);
        let mut anchors = Vec::with_capacity(ACCOUNTS);
        for i in 0..ACCOUNTS {
            let a = account(i, "bulk");
            anchors.push(a.immutable_id.clone().unwrap());
            let (t, sem) = (t.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                create_and_license(&t, a, sku).await
            }));
        }
        let mut failed = 0;
        for task in tasks {
            if let Err(e) = task.await.unwrap() {
                failed += 1;
                if failed <= 3 {
                    eprintln!("failed: {e}");
                }
            }
        }
        let bulk_secs = start.elapsed().as_secs_f64();
        let after = stats(&emu).await;
        let writes = after["user_created"].as_u64().unwrap_or(0)
            + after["licence_assigned"].as_u64().unwrap_or(0)
            - writes_before;
        // What the quota allowed in that time: the full bucket at the start plus the refill.
        let allowed = quota.0 + quota.0 / quota.1 * TIME_SCALE * bulk_secs;

        // Exactness: every anchor once, licensed.
        let state: Value = reqwest::get(format!("{}/state", info.admin_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut by_anchor: HashMap<&str, (usize, bool)> = HashMap::new();
        for u in state["users"].as_array().unwrap() {
            if let Some(a) = u["onPremisesImmutableId"].as_str() {
                let e = by_anchor.entry(a).or_default();
                e.0 += 1;
                e.1 |= !u["assignedLicenses"].as_array().unwrap().is_empty();
            }
        }
        let duplicates: usize = anchors
            .iter()
            .map(|a| {
                by_anchor
                    .get(a.as_str())
                    .map_or(0, |e| e.0.saturating_sub(1))
            })
            .sum();
        let lost = anchors
            .iter()
            .filter(|a| by_anchor.get(a.as_str()).is_none_or(|e| e.0 == 0 || !e.1))
            .count();
        let o365_essentials::graph::RequestCounts {
            requests,
            throttled,
            retries,
            ..
        } = t.request_counts();

        // AccountsView::apply one item at a time, as before this engine applied items
        // concurrently.
        refill(&emu, quota.0 as u32, quota.1).await;
        let (seq, seq_plan) =
            integration_with(&gc, SEQUENTIAL_ACCOUNTS, "seq", &tmp.path().join("s.db"), 1).await;
        let s0 = Instant::now();
        let seq_results = seq
            .accounts()
            .apply(&seq_plan, &Control::none())
            .await
            .unwrap();
        assert_eq!(seq_results.count(Outcome::Succeeded), SEQUENTIAL_ACCOUNTS);
        let seq_rate = SEQUENTIAL_ACCOUNTS as f64 / s0.elapsed().as_secs_f64();
        let bulk_rate = ACCOUNTS as f64 / bulk_secs;
        let user_rate = ACCOUNTS as f64 / user_secs;

        println!("accounts: {ACCOUNTS}");
        println!("user_path_seconds: {user_secs:.2}");
        println!("user_path_writes: {user_writes}");
        println!("user_path_failed: {user_failed}");
        println!(
            "user_path_fraction_of_quota: {:.3}",
            user_writes as f64 / user_allowed
        );
        println!("user_path_vs_backend: {:.2}", user_secs / bulk_secs);
        println!("user_path_duplicates: {user_duplicates}");
        println!("user_path_lost: {user_lost}");
        println!("user_path_accounts_per_second: {user_rate:.1}");
        println!(
            "user_path_speedup_vs_sequential: {:.1}",
            user_rate / seq_rate
        );
        println!("failed: {failed}");
        println!("backend_seconds: {bulk_secs:.2}");
        println!("writes: {writes}");
        println!("quota_writes_allowed: {allowed:.0}");
        println!("backend_fraction_of_quota: {:.3}", writes as f64 / allowed);
        println!("duplicates: {duplicates}");
        println!("lost: {lost}");
        println!("requests: {requests}");
        println!("throttled_answers: {throttled}");
        println!("retries: {retries}");
        println!("final_write_rate_per_second: {:.0}", t.write_rate());
        println!("backend_accounts_per_second: {bulk_rate:.1}");
        println!("sequential_apply_accounts_per_second: {seq_rate:.2}");
    });
}
