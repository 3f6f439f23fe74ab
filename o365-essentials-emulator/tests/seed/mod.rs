//! The emulator as a tool for users' own tests: the seed (atomic, additive, either
//! case), checking a password, the configuration file and the documentation of both.

use crate::common::*;
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

async fn post_seed(emu: &Emulator, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/seed", emu.info().admin_url))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const ADMIN: &str = "admin@contoso.onmicrosoft.com";

#[tokio::test]
async fn a_seed_with_any_error_changes_nothing_and_names_every_field_at_fault() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let before = admin_get(&emu, "/state").await;
    // Valid users, SKUs and domains first; the faults are in later sections and later
    // fields, so a seed applied as it is read would have changed the tenant.
    let bad = json!({
        "domains": [{"name": "fabrikam.com", "verified": true}, {"name": "not a domain"}],
        "skus": [{"skuId": "06ebc4ee-1bb5-47dd-8120-11324bc54e06", "skuPartNumber": "SPE_E5", "enabled": 5}],
        "users": [
            {"userPrincipalName": "ava@contoso.onmicrosoft.com", "displayName": "Ava", "licences": ["SPE_E5"]},
            {"userPrincipalName": "ben@contoso.onmicrosoft.com", "displayName": "Ben", "licences": ["SPE_E3"], "roles": ["Global Admin"]},
            {"userPrincipalName": "no-at-sign", "displayName": "?"},
            {"userPrincipalName": "ava@contoso.onmicrosoft.com", "displayName": "Ava again"}
        ],
        "roleGroups": [{"displayName": "Helpdesk", "members": ["ava@contoso.onmicrosoft.com", "nobody@contoso.onmicrosoft.com"], "roles": ["Helpdesk Administrator"]}],
        "devices": [{"user": "ava@contoso.onmicrosoft.com", "model": "iPhone15,2"}, {"user": "zoe@contoso.onmicrosoft.com", "model": "Pixel 8"}]
    });
    let (status, body) = post_seed(&emu, &bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "BadRequest");
    let msg = message(&body);
    assert!(msg.contains("nothing changed"), "{msg}");
    for field in [
        "domains[1].name",
        "users[1].licences[0]: no SKU `SPE_E3`",
        "users[1].roles[0]: no directory role `Global Admin`; use one of",
        "users[2].userPrincipalName",
        "users[3].userPrincipalName: ava@contoso.onmicrosoft.com is seeded twice",
        "roleGroups[0].members[1]",
        "devices[1].user: no user `zoe@contoso.onmicrosoft.com`",
    ] {
        assert!(msg.contains(field), "{field} missing from: {msg}");
    }
    // The valid parts name each other (a licence of a SKU in the same seed, a device of
    // a user in the same seed): those are not reported.
    assert!(!msg.contains("users[0]"), "{msg}");
    assert!(!msg.contains("devices[0]"), "{msg}");
    let after = admin_get(&emu, "/state").await;
    assert_eq!(before, after, "a refused seed changed the state");

    // A fault in the last section alone: still nothing applied.
    let (status, body) = post_seed(
        &emu,
        &json!({"users": [{"userPrincipalName": "cal@contoso.onmicrosoft.com", "displayName": "Cal"}],
                 "devices": [{"user": "dee@contoso.onmicrosoft.com"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(admin_get(&emu, "/state").await, before);

    // A malformed field is refused before anything is applied too, named by its path.
    let (status, body) = post_seed(
        &emu,
        &json!({"users": [{"userPrincipalName": "cal@contoso.onmicrosoft.com", "accountEnabled": "yes"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("users[0].accountEnabled: invalid type"),
        "{body}"
    );
    assert_eq!(admin_get(&emu, "/state").await, before);

    // The same seed without its faults applies whole, and the devices and role groups
    // find the users seeded with them.
    let good = json!({
        "domains": [{"name": "fabrikam.com", "verified": true}],
        "skus": [{"skuId": "06ebc4ee-1bb5-47dd-8120-11324bc54e06", "skuPartNumber": "SPE_E5", "enabled": 5}],
        "users": [{"userPrincipalName": "ava@contoso.onmicrosoft.com", "displayName": "Ava", "usageLocation": "GB", "licences": ["SPE_E5"]}],
        "roleGroups": [{"displayName": "Helpdesk", "members": ["ava@contoso.onmicrosoft.com"], "roles": ["Helpdesk Administrator"]}],
        "devices": [{"user": "ava@contoso.onmicrosoft.com", "deviceId": "AVA1", "model": "iPhone15,2", "deviceType": "iPhone", "os": "iOS 17.1"}]
    });
    let (status, body) = post_seed(&emu, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userIds"].as_array().unwrap().len(), 1);
    let state = admin_get(&emu, "/state").await;
    assert_eq!(state["users"].as_array().unwrap().len(), 2);
    assert_eq!(state["skus"].as_array().unwrap().len(), 3);
    assert_eq!(state["exchange"]["devices"].as_array().unwrap().len(), 1);
    assert!(
        state["domains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "fabrikam.com" && d["verified"] == true)
    );
}

#[tokio::test]
async fn seeding_adds_what_it_names_and_never_duplicates() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let skus = |s: &Value| s["skus"].as_array().unwrap().len();
    let before = admin_get(&emu, "/state").await;
    assert_eq!(skus(&before), 2);
    // Devices alone: the default SKUs and admin are not added again.
    let (status, body) = post_seed(
        &emu,
        &json!({"devices": [{"user": ADMIN, "model": "iPhone15,2", "deviceType": "iPhone", "os": "iOS 17.1"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userIds"], json!([]));
    let state = admin_get(&emu, "/state").await;
    assert_eq!(skus(&state), 2, "{}", state["skus"]);
    assert_eq!(state["users"].as_array().unwrap().len(), 1);
    assert_eq!(state["exchange"]["devices"].as_array().unwrap().len(), 1);
    // An empty seed adds nothing.
    let (status, _) = post_seed(&emu, &json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = post_seed(&emu, &json!({"roleGroups": [{"displayName": "Readers", "members": [ADMIN], "roles": ["Global Reader"]}]})).await;
    assert_eq!(status, 200);
    let now = admin_get(&emu, "/state").await;

    // Whatever the tenant has already is refused, section by section, naming the fix.
    for (seed, field) in [
        (
            json!({"skus": [{"skuId": "f245ecc8-75af-4f8e-b61f-27d8114de5f3", "skuPartNumber": "O365_BUSINESS_PREMIUM", "enabled": 25}]}),
            "skus[0].skuId: the tenant already has SKU",
        ),
        (
            json!({"skus": [{"skuId": "11111111-2222-4333-8444-555555555555", "skuPartNumber": "o365_business_premium", "enabled": 1}]}),
            "skus[0].skuPartNumber: the tenant already has",
        ),
        (
            json!({"skus": [{"skuId": "11111111-2222-4333-8444-555555555555", "skuPartNumber": "A", "enabled": 1},
                            {"skuId": "11111111-2222-4333-8444-555555555555", "skuPartNumber": "B", "enabled": 1}]}),
            "skus[1].skuId: 11111111-2222-4333-8444-555555555555 is seeded twice",
        ),
        (
            json!({"skus": [{"skuId": "SPE_E5", "skuPartNumber": "SPE_E5", "enabled": 1}]}),
            "skus[0].skuId: `SPE_E5` is not a GUID",
        ),
        (
            json!({"users": [{"userPrincipalName": "ADMIN@contoso.onmicrosoft.com"}]}),
            "users[0].userPrincipalName: the tenant already has a user",
        ),
        (
            json!({"users": [{"userPrincipalName": "x@contoso.onmicrosoft.com", "roles": ["User Administrator", "user administrator"]}]}),
            "users[0].roles[1]: `user administrator` is listed twice",
        ),
        (
            json!({"users": [{"userPrincipalName": "x@contoso.onmicrosoft.com", "licences": ["O365_BUSINESS_PREMIUM", "O365_BUSINESS_PREMIUM"]}]}),
            "users[0].licences[1]",
        ),
        (
            json!({"users": [{"userPrincipalName": "x@contoso.onmicrosoft.com", "usageLocation": "Britain"}]}),
            "users[0].usageLocation",
        ),
        (
            json!({"domains": [{"name": "contoso.onmicrosoft.com"}]}),
            "domains[0].name: the tenant already has the domain",
        ),
        (
            json!({"roleGroups": [{"displayName": "readers", "members": [], "roles": []}]}),
            "roleGroups[0].displayName: the tenant already has a role group",
        ),
        (
            json!({"roleGroups": [{"displayName": "Two", "members": [ADMIN, ADMIN], "roles": []}]}),
            "roleGroups[0].members[1]",
        ),
        (
            json!({"devices": [{"user": ADMIN, "deviceId": "D1"}, {"user": ADMIN, "deviceId": "d1"}]}),
            "devices[1].deviceId: d1 is seeded twice",
        ),
    ] {
        let (status, body) = post_seed(&emu, &seed).await;
        assert_eq!(status, 400, "{seed} was accepted");
        assert!(message(&body).contains(field), "{seed}: {body}");
        assert_eq!(
            admin_get(&emu, "/state").await,
            now,
            "{seed} changed the state"
        );
    }
    let (status, _) = post_seed(
        &emu,
        &json!({"devices": [{"user": ADMIN, "deviceId": "D1"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post_seed(
        &emu,
        &json!({"devices": [{"user": ADMIN, "deviceId": "D1"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("devices[0].deviceId: the tenant already has a device D1"),
        "{body}"
    );
}

#[tokio::test]
async fn the_seed_takes_the_states_camel_case_and_snake_case_alike() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (status, body) = post_seed(
        &emu,
        &json!({
            "users": [
                {"userPrincipalName": "camel@contoso.onmicrosoft.com", "displayName": "Camel", "usageLocation": "GB",
                 "accountEnabled": false, "onPremisesImmutableId": "Y2FtZWw=", "eligibleRoles": ["User Administrator"]},
                {"user_principal_name": "snake@contoso.onmicrosoft.com", "display_name": "Snake", "usage_location": "GB",
                 "account_enabled": false, "on_premises_immutable_id": "c25ha2U=", "eligible_roles": ["User Administrator"]}
            ],
            "role_groups": [{"display_name": "Snakes", "members": ["snake@contoso.onmicrosoft.com"], "roles": []}],
            "roleGroups": []
        }),
    )
    .await;
    // `role_groups` and `roleGroups` together name one field twice.
    assert_eq!(status, 400, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("`roleGroups` and `role_groups` name the same field"),
        "{msg}"
    );

    let (status, body) = post_seed(
        &emu,
        &json!({
            "users": [
                {"userPrincipalName": "camel@contoso.onmicrosoft.com", "displayName": "Camel", "usageLocation": "GB",
                 "accountEnabled": false, "onPremisesImmutableId": "Y2FtZWw=", "eligibleRoles": ["User Administrator"]},
                {"user_principal_name": "snake@contoso.onmicrosoft.com", "display_name": "Snake", "usage_location": "GB",
                 "account_enabled": false, "on_premises_immutable_id": "c25ha2U=", "eligible_roles": ["User Administrator"]}
            ],
            "role_groups": [{"display_name": "Snakes", "members": ["snake@contoso.onmicrosoft.com"], "roles": []}]
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let state = admin_get(&emu, "/state").await;
    let user = |upn: &str| {
        state["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["userPrincipalName"] == upn)
            .cloned()
            .unwrap()
    };
    let (c, s) = (
        user("camel@contoso.onmicrosoft.com"),
        user("snake@contoso.onmicrosoft.com"),
    );
    for k in ["usageLocation", "accountEnabled"] {
        assert_eq!(c[k], s[k], "{k}");
    }
    assert_eq!(c["accountEnabled"], false);
    assert_eq!(c["onPremisesImmutableId"], "Y2FtZWw=");
    assert_eq!(s["onPremisesImmutableId"], "c25ha2U=");

    // A user as the state shows it can be seeded back under another name: the fields a
    // seed user has are spelt as the state spells them.
    let mut copy = serde_json::Map::new();
    for k in [
        "displayName",
        "givenName",
        "surname",
        "usageLocation",
        "accountEnabled",
        "proxyAddresses",
    ] {
        if !c[k].is_null() {
            copy.insert(k.into(), c[k].clone());
        }
    }
    copy.insert(
        "userPrincipalName".into(),
        json!("copy@contoso.onmicrosoft.com"),
    );
    copy.insert(
        "proxyAddresses".into(),
        json!(["SMTP:copy@contoso.onmicrosoft.com"]),
    );
    let (status, body) = post_seed(&emu, &json!({"users": [copy]})).await;
    assert_eq!(status, 200, "{body}");

    // Unknown fields are named in the seed's spelling.
    let (status, body) = post_seed(
        &emu,
        &json!({"users": [{"userPrincipalName": "x@contoso.onmicrosoft.com", "colour": "red"}]}),
    )
    .await;
    assert_eq!(status, 400);
    let msg = message(&body);
    assert!(msg.contains("users[0]: unknown field `colour`"), "{msg}");
    assert!(msg.contains("`userPrincipalName`"), "{msg}");
}

#[tokio::test]
async fn a_password_is_checked_without_being_revealed() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (status, body) = post_seed(
        &emu,
        &json!({"users": [{"userPrincipalName": "pat@contoso.onmicrosoft.com", "displayName": "Pat", "password": "Correct-Horse-7"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["userIds"][0].as_str().unwrap().to_string();
    assert!(check_password(&emu, "pat@contoso.onmicrosoft.com", "Correct-Horse-7").await);
    assert!(check_password(&emu, &id, "Correct-Horse-7").await);
    assert!(!check_password(&emu, &id, "correct-horse-7").await);
    assert!(check_password(&emu, ADMIN, "Admin-Passw0rd!").await);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/users/nobody@contoso.onmicrosoft.com/check-password",
            emu.info().admin_url
        ))
        .json(&json!({"password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A password set through Graph is checked the same way.
    let g = Graph::connect(&emu).await;
    let (status, _) = g
        .patch(
            &format!("/users/{id}"),
            &json!({"passwordProfile": {"password": "New-Passw0rd-8", "forceChangePasswordNextSignIn": true}}),
        )
        .await;
    assert_eq!(status, 204);
    let r: Value = admin_post(
        &emu,
        &format!("/users/{id}/check-password"),
        &json!({"password": "New-Passw0rd-8"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        r,
        json!({"matches": true, "forceChangePasswordNextSignIn": true})
    );
    // The state says a password is set, and nothing that reveals it.
    let state = admin_get(&emu, "/state").await.to_string();
    for secret in ["Correct-Horse-7", "New-Passw0rd-8", "Admin-Passw0rd!"] {
        assert!(!state.contains(secret), "{secret} in the state dump");
    }
    assert!(state.contains("\"hasPassword\":true"));
}

fn run_with_config(text: &str) -> (Option<i32>, String, String) {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_o365-essentials-emulator");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emulator.json");
    std::fs::write(&path, text).unwrap();
    let mut child = std::process::Command::new(bin)
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.is_empty() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        if line.is_empty() {
            out.status.code()
        } else {
            Some(0)
        },
        line,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_configuration_file_takes_either_case_and_its_errors_name_the_field() {
    // camelCase and snake_case in one file; a seed section left out keeps its default
    // (the two SKUs the seeded licence names).
    let (code, line, err) = run_with_config(
        r#"{"tenant": {"displayName": "Fabrikam", "initial_domain": "fabrikam.onmicrosoft.com", "id": "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"},
            "tokenLifetimeSecs": 600, "throttling": {"enabled": false},
            "seed": {"users": [{"userPrincipalName": "admin@fabrikam.onmicrosoft.com", "displayName": "Admin",
                                "usageLocation": "GB", "licences": ["O365_BUSINESS_PREMIUM"], "roles": ["Global Administrator"]}]}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    let info: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(info["tenant_id"], "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d");

    for (text, status, field) in [
        (
            r#"{"tenant": {"id": "contoso"}}"#,
            2,
            "tenant.id: `contoso` is not a GUID",
        ),
        (
            r#"{"throttling": {"time_scale": 0}}"#,
            2,
            "throttling.time_scale",
        ),
        (
            r#"{"throttling": {"timeScale": "fast"}}"#,
            2,
            "throttling.time_scale: invalid type",
        ),
        (
            r#"{"faults": [{"path": "/v1.0/users*", "kind": "status", "status": 503, "probability": 2}]}"#,
            2,
            "faults[0].probability",
        ),
        (
            r#"{"apps": []}"#,
            2,
            "apps: the configuration needs at least one app",
        ),
        (
            r#"{"seed": {"users": [{"userPrincipalName": "a@contoso.onmicrosoft.com", "colour": 1}]}}"#,
            2,
            "seed.users[0]: unknown field `colour`",
        ),
        (
            r#"{"seed": {"users": [{"userPrincipalName": "a@contoso.onmicrosoft.com", "user_principal_name": "b@contoso.onmicrosoft.com"}]}}"#,
            2,
            "seed.users[0]: `userPrincipalName` and `user_principal_name`",
        ),
        (r#"{"tenant": 5}"#, 2, "tenant: invalid type"),
        ("[]", 2, "one JSON object"),
        ("{", 2, "not JSON"),
        // Well-formed, but the seed does not apply: the start fails, naming the field.
        (
            r#"{"seed": {"users": [{"userPrincipalName": "a@contoso.onmicrosoft.com", "licences": ["SPE_E5"]}]}}"#,
            1,
            "users[0].licences[0]: no SKU `SPE_E5`",
        ),
    ] {
        let (code, line, err) = run_with_config(text);
        assert_eq!(code, Some(status), "{text}: {line}{err}");
        assert!(err.contains(field), "{text}: {err}");
    }
}

/// Every field of the configuration and every seed field, from the types themselves:
/// docs/EMULATOR.md documents each (seed fields in camelCase), `--help` names each
/// configuration section and seed section.
#[test]
fn the_guide_and_help_document_every_configuration_and_seed_field() {
    use o365_essentials_emulator::config::{SeedDevice, SeedRoleGroup, SeedUser};
    let bin = env!("CARGO_BIN_EXE_o365-essentials-emulator");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/EMULATOR.md"))
            .unwrap();
    let camel = |k: &str| {
        let mut out = String::new();
        let mut up = false;
        for c in k.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.push(c.to_ascii_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    fn keys(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    out.push(k.clone());
                    keys(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
            _ => {}
        }
    }
    let mut cfg = serde_json::to_value(EmulatorConfig::default()).unwrap();
    let seed = cfg.as_object_mut().unwrap().remove("seed").unwrap();
    let top: Vec<String> = cfg.as_object().unwrap().keys().cloned().collect();
    let mut all = Vec::new();
    keys(&cfg, &mut all);
    // Fields absent from the defaults' JSON (empty lists, enum variants).
    all.extend(
        [
            "fixed_ms",
            "jitter_ms",
            "kind",
            "ms",
            "status",
            "limit",
            "method",
            "probability",
            "path",
        ]
        .map(String::from),
    );
    for k in &all {
        assert!(
            guide.contains(&format!("`{k}`")),
            "docs/EMULATOR.md does not document the configuration field `{k}`"
        );
    }
    for k in &top {
        assert!(
            help.contains(k.as_str()),
            "--help does not name the configuration field {k}"
        );
    }
    let mut seed_fields: Vec<String> = seed.as_object().unwrap().keys().cloned().collect();
    for section in &seed_fields {
        assert!(
            help.contains(&camel(section)),
            "--help does not name the seed section {section}"
        );
    }
    for v in [
        serde_json::to_value(SeedUser::default()).unwrap(),
        serde_json::to_value(SeedDevice::default()).unwrap(),
        serde_json::to_value(SeedRoleGroup::default()).unwrap(),
        seed["skus"][0].clone(),
        seed["domains"]
            .get(0)
            .cloned()
            .unwrap_or(json!({"name": "", "verified": false})),
    ] {
        seed_fields.extend(v.as_object().unwrap().keys().cloned());
    }
    for k in &seed_fields {
        let c = camel(k);
        assert!(
            guide.contains(&format!("`{c}`")),
            "docs/EMULATOR.md does not document the seed field `{c}`"
        );
        assert!(help.contains(&c), "--help does not name the seed field {c}");
    }
    for needle in ["check-password", "/_emulator/seed", "/_emulator/state"] {
        assert!(guide.contains(needle), "docs/EMULATOR.md lacks {needle}");
    }
    assert!(help.contains("check-password"));
}

/// Every `sh` example of docs/EMULATOR.md, run as written (bash, `-e`, with the built
/// binary first on PATH, in a directory of its own), ends with status 0 within a minute
/// and leaves no process behind (each stops its emulator on exit; the example's process
/// group is killed should it hang).
#[test]
fn the_guides_shell_examples_run() {
    use std::os::unix::process::CommandExt;
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/EMULATOR.md"))
            .unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_o365-essentials-emulator"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in guide.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 5, "the guide's examples were not found");
    for block in blocks {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .current_dir(dir.path())
            .env("PATH", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if started.elapsed() > std::time::Duration::from_secs(60) {
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        // Whatever the example left in its group (nothing, when it went well).
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(std::process::Stdio::null())
            .status();
        let out = child.wait_with_output().unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "this example of docs/EMULATOR.md failed ({status:?}):\n{block}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A password proven as a client of a real tenant would: the resource owner password
/// grant of a public client answers the user's token, or Entra's `invalid_grant`.
#[tokio::test]
async fn the_password_grant_proves_a_password_as_a_real_tenant_would() {
    const CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (status, body) = post_seed(
        &emu,
        &json!({"users": [
            {"userPrincipalName": "pat@contoso.onmicrosoft.com", "displayName": "Pat", "password": "Correct-Horse-7"},
            {"userPrincipalName": "off@contoso.onmicrosoft.com", "displayName": "Off", "password": "Correct-Horse-7", "accountEnabled": false}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let http = reqwest::Client::new();
    let grant = |client: &str, user: &str, pw: &str| {
        http.post(emu.token_url())
            .form(&[
                ("grant_type", "password"),
                ("client_id", client),
                ("username", user),
                ("password", pw),
                (
                    "scope",
                    "https://graph.microsoft.com/User.Read openid profile",
                ),
            ])
            .send()
    };
    let r = grant(CLI, "PAT@contoso.onmicrosoft.com", "Correct-Horse-7")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = decode_jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["idtyp"], "user");
    let me: Value = http
        .get(format!("{}/me", emu.info().graph_url))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["userPrincipalName"], "pat@contoso.onmicrosoft.com");
    for (client, user, pw, error, code) in [
        (
            CLI,
            "pat@contoso.onmicrosoft.com",
            "wrong",
            "invalid_grant",
            50126,
        ),
        (
            CLI,
            "nobody@contoso.onmicrosoft.com",
            "x",
            "invalid_grant",
            50034,
        ),
        (
            CLI,
            "off@contoso.onmicrosoft.com",
            "Correct-Horse-7",
            "invalid_grant",
            50057,
        ),
        (
            "0e8b5a3c-1d2f-4b6a-8c9d-7e5f4a3b2c1d",
            "pat@contoso.onmicrosoft.com",
            "Correct-Horse-7",
            "unauthorized_client",
            700016,
        ),
    ] {
        let r = grant(client, user, pw).await.unwrap();
        assert_eq!(r.status(), 400, "{user} {pw}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("Correct-Horse-7"),
            "the password is echoed: {text}"
        );
        let b: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (
                b["error"].as_str().unwrap(),
                b["error_codes"][0].as_u64().unwrap()
            ),
            (error, code),
            "{text}"
        );
    }
    // A password an administrator set with "change at next sign-in" must be changed first.
    let g = Graph::connect(&emu).await;
    let (status, _) = g
        .patch(
            "/users/pat@contoso.onmicrosoft.com",
            &json!({"passwordProfile": {"password": "Temp-Passw0rd-1", "forceChangePasswordNextSignIn": true}}),
        )
        .await;
    assert_eq!(status, 204);
    let b: Value = grant(CLI, "pat@contoso.onmicrosoft.com", "Temp-Passw0rd-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["error_codes"][0], 50055, "{b}");
}
