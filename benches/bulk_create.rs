//! `cargo bench --bench bulk_create`: create and license 5,000 online accounts against the
//! emulator with the documented write quota (3,000 writes per 150 s per app, time-scaled)
//! and a realistic latency; then the same work one request at a time, on the same
//! emulator in the same run, for the speedup.
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
use o365_essentials::graph::{GraphConfig, GraphTenant};
use o365_essentials::model::{LicenceAssignment, NewOnlineAccount, ObjectGuid};
use o365_essentials::ports::Tenant;
use o365_essentials_emulator::config::{Delay, LatencyConfig, SeedSku};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

const ACCOUNTS: usize = 5000;
const SEQUENTIAL_ACCOUNTS: usize = 60;
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
            enabled: 10_000,
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
        let sku = uuid::Uuid::parse_str("f245ecc8-75af-4f8e-b61f-27d8114de5f3").unwrap();

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
        let (requests, throttled, retries) = t.request_counts();

        // The same work one request at a time.
        let mut seq_cfg = gc.clone();
        seq_cfg.max_concurrency = 1;
        let seq = GraphTenant::new(seq_cfg).unwrap();
        seq.check_credentials().await.unwrap();
        let s0 = Instant::now();
        for i in 0..SEQUENTIAL_ACCOUNTS {
            create_and_license(&seq, account(i, "seq"), sku)
                .await
                .unwrap();
        }
        let seq_rate = SEQUENTIAL_ACCOUNTS as f64 / s0.elapsed().as_secs_f64();
        let bulk_rate = ACCOUNTS as f64 / bulk_secs;

        println!("accounts: {ACCOUNTS}");
        println!("failed: {failed}");
        println!("bulk_seconds: {bulk_secs:.2}");
        println!("writes: {writes}");
        println!("quota_writes_allowed: {allowed:.0}");
        println!(
            "write_rate_fraction_of_quota: {:.3}",
            writes as f64 / allowed
        );
        println!("duplicates: {duplicates}");
        println!("lost: {lost}");
        println!("requests: {requests}");
        println!("throttled_answers: {throttled}");
        println!("retries: {retries}");
        println!("final_write_rate_per_second: {:.0}", t.write_rate());
        println!("bulk_accounts_per_second: {bulk_rate:.1}");
        println!("sequential_accounts_per_second: {seq_rate:.2}");
        println!("speedup_vs_sequential: {:.1}", bulk_rate / seq_rate);
    });
}
