//! Password sync through an outage and a restart: nothing lost, nothing in clear.

use std::sync::Arc;

use o365_essentials::engine::{BulkCreateRequest, Integration, PasswordKey};
use o365_essentials::graph::GraphTenant;
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::ObjectGuid;
use o365_essentials::ports::Directory;
use o365_essentials::store::Store;
use o365_essentials::{ErrorCode, SecretString};
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::graph::config_for;

fn tenant(emu: &Emulator) -> Arc<GraphTenant> {
    let mut c = config_for(emu);
    c.max_attempts = 2; // an outage is noticed quickly; the queue does the waiting
    c.request_timeout_secs = 3.0;
    Arc::new(GraphTenant::new(c).unwrap())
}

/// Integrates and creates an online account for every eligible local user.
async fn link_everyone(integration: &Integration) {
    integration.integrate().await.unwrap();
    let plan = integration
        .accounts()
        .plan_bulk_create(
            &integration.accounts().snapshot().await.unwrap(),
            &BulkCreateRequest {
                domain: "contoso.onmicrosoft.com".into(),
                ..Default::default()
            },
        )
        .unwrap();
    integration
        .accounts()
        .apply(&plan, &o365_essentials::engine::Control::none())
        .await
        .unwrap();
}

async fn matches(emu: &Emulator, online_id: &str, pw: &str) -> bool {
    let v: Value = reqwest::Client::new()
        .post(format!(
            "{}/users/{online_id}/check-password",
            emu.info().admin_url
        ))
        .json(&json!({"password": pw}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["matches"].as_bool().unwrap()
}

#[tokio::test]
async fn passwords_changed_during_an_outage_are_delivered_after_it_and_a_restart() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store_path = work.path().join("state.db");
    let key_path = work.path().join("password.key");
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let users = ["ava.adams", "ben.brooks", "chloe.carter", "daniel.diaz"];
    let mut guids: Vec<ObjectGuid> = Vec::new();
    for u in users {
        guids.push(mem.find_user(u).await.unwrap().unwrap().guid);
    }
    {
        let integration = Integration::new(
            mem.clone(),
            tenant(&emu),
            Arc::new(Store::open(&store_path).unwrap()),
        )
        .with_password_key(PasswordKey::load_or_create(&key_path).unwrap());
        link_everyone(&integration).await;

        emu.pause(); // Microsoft 365 unreachable
        let t = std::time::Instant::now();
        for (i, g) in guids.iter().enumerate() {
            assert!(
                integration
                    .passwords()
                    .password_changed(*g, &SecretString::from(format!("Outage-Passw0rd-{i}!")))
                    .unwrap()
            );
        }
        // A newer change supersedes the older one for Ava.
        assert!(
            integration
                .passwords()
                .password_changed(guids[0], &SecretString::from("Newest-Passw0rd-A!"))
                .unwrap()
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "queuing does not wait for the cloud"
        );
        let round = integration.passwords().deliver_passwords().await.unwrap();
        assert_eq!(round.delivered, 0);
        assert_eq!(round.pending, 4);
        assert!(round.refused.is_empty());
        // The process stops here (the integration and its store are dropped).
    }
    // Nothing is stored in clear.
    for f in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(work.path().join(f)).unwrap_or_default();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(
            !hay.contains("Outage-Passw0rd") && !hay.contains("Newest-Passw0rd"),
            "{f} holds a password in clear"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    emu.resume().await.unwrap();
    let integration = Integration::new(
        mem.clone(),
        tenant(&emu),
        Arc::new(Store::open(&store_path).unwrap()),
    )
    .with_password_key(PasswordKey::load_or_create(&key_path).unwrap());
    let round = integration.passwords().deliver_passwords().await.unwrap();
    assert_eq!((round.delivered, round.pending), (4, 0), "{round:?}");
    let store = Store::open_read_only(&store_path).unwrap();
    assert!(
        store.queued_passwords().unwrap().is_empty(),
        "delivered entries are erased"
    );
    for (i, g) in guids.iter().enumerate() {
        let link = store.link_by_local(*g).unwrap().unwrap();
        let expected = if i == 0 {
            "Newest-Passw0rd-A!".to_string()
        } else {
            format!("Outage-Passw0rd-{i}!")
        };
        assert!(
            matches(&emu, &link.online_id.0, &expected).await,
            "{i}: the newest password is online"
        );
    }
}

#[tokio::test]
async fn refused_passwords_become_per_user_problems_and_disabled_means_nothing_propagates() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemoryDirectory::demo_company().unwrap());
    let integration = Integration::new(
        mem.clone(),
        tenant(&emu),
        Arc::new(Store::open(work.path().join("s.db")).unwrap()),
    )
    .with_password_key(PasswordKey::load_or_create(&work.path().join("k")).unwrap());
    link_everyone(&integration).await;
    let ava = mem.find_user("ava.adams").await.unwrap().unwrap().guid;
    // The domain allowed it (7 characters), Microsoft 365 does not (8 minimum).
    assert!(
        integration
            .passwords()
            .password_changed(ava, &SecretString::from("Ab1!xyz"))
            .unwrap()
    );
    let round = integration.passwords().deliver_passwords().await.unwrap();
    assert_eq!(round.refused.len(), 1);
    assert_eq!(round.refused[0].error_code, ErrorCode::PasswordPolicy);
    assert!(!round.refused[0].message.contains("Ab1!xyz"));
    assert_eq!(
        integration.passwords().password_problems().unwrap().len(),
        1,
        "the dashboard can show it"
    );
    // A new change replaces the refused one and goes through.
    assert!(
        integration
            .passwords()
            .password_changed(ava, &SecretString::from("Better-Passw0rd!"))
            .unwrap()
    );
    assert_eq!(
        integration
            .passwords()
            .deliver_passwords()
            .await
            .unwrap()
            .delivered,
        1
    );
    assert!(
        integration
            .passwords()
            .password_problems()
            .unwrap()
            .is_empty()
    );

    let unlinked = ObjectGuid::random();
    assert!(
        !integration
            .passwords()
            .password_changed(unlinked, &SecretString::from("Whatever-2026!"))
            .unwrap(),
        "no online account, nothing queued"
    );
    integration.disable().unwrap();
    assert_eq!(
        integration
            .passwords()
            .password_changed(ava, &SecretString::from("Disabled-2026!x"))
            .unwrap_err()
            .code(),
        ErrorCode::IntegrationDisabled
    );

    // A different key cannot read the queue: a clear configuration error, nothing lost.
    let _ = integration.enable().await.unwrap();
    assert!(
        integration
            .passwords()
            .password_changed(ava, &SecretString::from("Queued-2026!xy"))
            .unwrap()
    );
    let other_key = PasswordKey::load_or_create(&work.path().join("other")).unwrap();
    drop(integration);
    let wrong = Integration::new(
        mem.clone(),
        tenant(&emu),
        Arc::new(Store::open(work.path().join("s.db")).unwrap()),
    )
    .with_password_key(other_key);
    let e = wrong.passwords().deliver_passwords().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.message().contains("password key"));
    let _ = mem.user(ava).await.unwrap();
}
