//! `cargo bench --bench emulator`: how many simple Graph requests per second the emulator
//! serves with throttling and latency off, load generated on the same machine (in the
//! same process, over loopback TCP, keep-alive connections).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use o365_essentials_emulator::{Emulator, EmulatorConfig};

const CONNECTIONS: usize = 32;
const DURATION: Duration = Duration::from_secs(4);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = EmulatorConfig::default();
        cfg.throttling.enabled = false;
        let emu = Emulator::start(cfg).await.unwrap();
        let info = emu.info().clone();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()
            .unwrap();
        let token: serde_json::Value = http
            .post(emu.token_url())
            .form(&[
                ("client_id", info.client_id.as_str()),
                ("client_secret", info.client_secret.as_deref().unwrap()),
                ("scope", "https://graph.microsoft.com/.default"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = Arc::new(token["access_token"].as_str().unwrap().to_string());
        let url = Arc::new(format!("{}/organization", info.graph_url));
        // Warm up the connections.
        for _ in 0..CONNECTIONS {
            assert!(
                http.get(url.as_str())
                    .bearer_auth(token.as_str())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .is_success()
            );
        }
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (http, url, token, done, failed) = (
                http.clone(),
                url.clone(),
                token.clone(),
                done.clone(),
                failed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < DURATION {
                    match http
                        .get(url.as_str())
                        .bearer_auth(token.as_str())
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!("requests: {n}");
        println!("failed_requests: {}", failed.load(Ordering::Relaxed));
        println!("seconds: {secs:.2}");
        println!("connections: {CONNECTIONS}");
        println!("requests_per_second: {:.0}", n as f64 / secs);
    });
}
