//! Domain records as BIND reads them.

use o365_essentials::dns::{records_file_text, registrable_domain, zone_fragment};
use o365_essentials::model::{DnsRecord, RecordData, RecordPurpose};

/// A Microsoft 365 service record with a one-hour TTL.
fn service_record(name: &str, data: RecordData) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        ttl: 3600,
        data,
        purpose: RecordPurpose::Service,
        supported_service: None,
        optional: false,
    }
}

fn records() -> Vec<DnsRecord> {
    let r = service_record;
    vec![
        r(
            "contoso.co.uk",
            RecordData::Txt {
                text: "MS=ms12345678".into(),
            },
        ),
        r(
            "contoso.co.uk",
            RecordData::Mx {
                exchange: "contoso-co-uk.mail.protection.outlook.com".into(),
                preference: 0,
            },
        ),
        r(
            "contoso.co.uk",
            RecordData::Txt {
                text: format!(
                    "v=spf1 include:spf.protection.outlook.com -all \"quoted\" {}",
                    "y".repeat(300)
                ),
            },
        ),
        r(
            "autodiscover.contoso.co.uk",
            RecordData::Cname {
                target: "autodiscover.outlook.com".into(),
            },
        ),
        r(
            "_sip._tls.contoso.co.uk",
            RecordData::Srv {
                service: "_sip".into(),
                protocol: "_tls".into(),
                priority: 100,
                weight: 1,
                port: 443,
                target: "sipdir.online.lync.com".into(),
            },
        ),
        r(
            "_sipfederationtls._tcp.contoso.co.uk",
            RecordData::Srv {
                service: "_sipfederationtls".into(),
                protocol: "_tcp".into(),
                priority: 100,
                weight: 1,
                port: 5061,
                target: "sipfed.online.lync.com".into(),
            },
        ),
    ]
}

#[test]
fn the_zone_fragment_is_accepted_by_bind() {
    let domain = registrable_domain("contoso.co.uk").unwrap();
    let checker = ["/usr/bin/named-checkzone", "/usr/sbin/named-checkzone"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let checker = checker
        .unwrap_or_else(|| panic!("named-checkzone is missing: scripts/setup installs bind9"));
    let dir = tempfile::tempdir().unwrap();
    let zone = format!(
        "$TTL 3600\n@ IN SOA ns1.{domain}. hostmaster.{domain}. 1 3600 600 86400 300\n@ IN NS ns1.{domain}.\nns1 IN A 127.0.0.1\n{}",
        zone_fragment(&domain, &records())
    );
    let file = dir.path().join("zone.db");
    std::fs::write(&file, &zone).unwrap();
    let out = std::process::Command::new(checker)
        .arg("-i")
        .arg("local")
        .arg(&domain)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "BIND rejected the fragment:\n{}\n{zone}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The readable file carries the same fragment.
    assert!(records_file_text(&domain, &records()).contains("$ORIGIN contoso.co.uk."));
}

#[path = "../../o365-essentials-emulator/tests/common/bind.rs"]
#[allow(unreachable_pub, dead_code)]
pub(crate) mod bind;

#[tokio::test]
async fn records_are_checked_against_a_real_dns_server() {
    use o365_essentials::dns::{RecordStatus, check_records};
    let zone = "contoso.co.uk";
    let dns = bind::Bind::start(
        zone,
        &[
            "@ IN TXT \"MS=ms12345678\"".into(),
            "@ IN TXT \"v=spf1 mx include:_spf.old.example ~all\"".into(),
            "@ IN MX 10 mx.old.example.".into(),
            "autodiscover IN CNAME autodiscover.old.example.".into(),
            "_sip._tls IN SRV 100 1 443 sipdir.online.lync.com.".into(),
            "verify IN CNAME somewhere.example.".into(),
        ],
    );
    let r = service_record;
    let wanted = vec![
        r(
            zone,
            RecordData::Txt {
                text: "MS=ms12345678".into(),
            },
        ),
        r(
            zone,
            RecordData::Txt {
                text: "v=spf1 include:spf.protection.outlook.com -all".into(),
            },
        ),
        r(
            zone,
            RecordData::Mx {
                exchange: "contoso-co-uk.mail.protection.outlook.com".into(),
                preference: 0,
            },
        ),
        r(
            "autodiscover.contoso.co.uk",
            RecordData::Cname {
                target: "autodiscover.outlook.com".into(),
            },
        ),
        r(
            "_sip._tls.contoso.co.uk",
            RecordData::Srv {
                service: "_sip".into(),
                protocol: "_tls".into(),
                priority: 100,
                weight: 1,
                port: 443,
                target: "sipdir.online.lync.com".into(),
            },
        ),
        r(
            "lyncdiscover.contoso.co.uk",
            RecordData::Cname {
                target: "webdir.online.lync.com".into(),
            },
        ),
        r(
            "verify.contoso.co.uk",
            RecordData::Txt {
                text: "MS=ms999".into(),
            },
        ),
    ];
    let checks = check_records(dns.addr, &wanted).await.unwrap();
    assert_eq!(checks[0].status, RecordStatus::Present);
    assert!(
        matches!(&checks[1].status, RecordStatus::Different { found } if found[0].starts_with("v=spf1 mx"))
    );
    assert!(
        checks[1]
            .advice
            .contains("v=spf1 mx include:_spf.old.example include:spf.protection.outlook.com ~all"),
        "{}",
        checks[1].advice
    );
    assert!(checks[1].advice.contains("never add a second"));
    assert!(
        matches!(&checks[2].status, RecordStatus::Different { found } if found == &vec!["MX 10 mx.old.example".to_string()])
    );
    assert!(checks[2].advice.contains("preference"));
    assert!(
        matches!(&checks[3].status, RecordStatus::Different { found } if found == &vec!["autodiscover.old.example".to_string()])
    );
    assert_eq!(checks[4].status, RecordStatus::Present);
    assert_eq!(checks[5].status, RecordStatus::Missing);
    assert!(checks[6].advice.contains("CNAME"), "{}", checks[6].advice);
    let addr = dns.addr;
    drop(dns);
    let e = check_records(addr, &wanted[..1]).await.unwrap_err();
    assert_eq!(e.code(), o365_essentials::ErrorCode::Transport);
}

#[tokio::test]
async fn the_health_report_scores_mail_records_with_fixes() {
    use o365_essentials::dns::health_report;
    use o365_essentials::model::CheckStatus;
    let good = bind::Bind::start(
        "healthy.co.uk",
        &[
            "@ IN MX 0 healthy-co-uk.mail.protection.outlook.com.".into(),
            "@ IN TXT \"v=spf1 include:spf.protection.outlook.com -all\"".into(),
            "selector1._domainkey IN CNAME selector1-healthy-co-uk._domainkey.contoso.onmicrosoft.com.".into(),
            "selector2._domainkey IN CNAME selector2-healthy-co-uk._domainkey.contoso.onmicrosoft.com.".into(),
            "_dmarc IN TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@healthy.co.uk\"".into(),
            "autodiscover IN CNAME autodiscover.outlook.com.".into(),
        ],
    );
    let r = health_report(good.addr, "healthy.co.uk").await.unwrap();
    assert_eq!(r.score, 100, "{r:#?}");
    assert!(
        r.checks
            .iter()
            .all(|c| c.status == CheckStatus::Pass && c.fix.is_empty())
    );

    let poor = bind::Bind::start(
        "poorly.co.uk",
        &[
            "@ IN MX 10 mx.old.example.".into(),
            "@ IN MX 20 poorly-co-uk.mail.protection.outlook.com.".into(),
            "@ IN TXT \"v=spf1 include:spf.protection.outlook.com -all\"".into(),
            "@ IN TXT \"v=spf1 mx -all\"".into(),
            "selector1._domainkey IN CNAME selector1-poorly._domainkey.contoso.onmicrosoft.com."
                .into(),
            "_dmarc IN TXT \"v=DMARC1; p=none\"".into(),
        ],
    );
    let r = health_report(poor.addr, "poorly.co.uk").await.unwrap();
    let by = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap().clone();
    assert_eq!(by("mx").status, CheckStatus::Warn);
    assert_eq!(by("spf").status, CheckStatus::Fail);
    assert!(by("spf").fix.contains("Merge"));
    assert_eq!(by("dkim").status, CheckStatus::Warn);
    assert_eq!(by("dmarc").status, CheckStatus::Warn);
    assert_eq!(by("autodiscover").status, CheckStatus::Fail);
    assert_eq!(r.score, 30);
}

#[tokio::test]
async fn linking_a_domain_resumes_across_runs_until_every_record_is_in_dns() {
    use o365_essentials::dns::{DomainLinker, DomainStage};
    use o365_essentials::model::DomainService;
    use std::sync::Arc;
    let emu = o365_essentials_emulator::Emulator::start(
        o365_essentials_emulator::EmulatorConfig::default(),
    )
    .await
    .unwrap();
    let tenant = Arc::new(crate::graph::tenant_for(&emu));
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap());
    let set_dns = |addr: std::net::SocketAddr| {
        let url = format!("{}/dns", emu.info().admin_url);
        async move {
            reqwest::Client::new()
                .put(url)
                .json(&serde_json::json!({"server": addr.to_string()}))
                .send()
                .await
                .unwrap();
        }
    };
    let zone = "fabrikam.co.uk";
    let empty = bind::Bind::start(zone, &[]);
    set_dns(empty.addr).await;
    let e = DomainLinker::new(tenant.clone(), store.clone(), empty.addr)
        .run("marketing.fabrikam.co.uk", &[DomainService::Email])
        .await
        .unwrap_err();
    assert!(e.message().contains("add fabrikam.co.uk"));

    let first = DomainLinker::new(tenant.clone(), store.clone(), empty.addr)
        .run(zone, &[DomainService::Email])
        .await
        .unwrap();
    assert_eq!(first.stage, DomainStage::Added);
    assert!(
        first.next.contains("publish the verification record"),
        "{}",
        first.next
    );
    let code = first
        .records
        .iter()
        .find_map(|r| {
            if let RecordData::Txt { text } = &r.data {
                Some(text.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert!(code.starts_with("MS=ms"));

    // The DNS server goes away: the run fails, the stage is kept.
    let down = empty.addr;
    drop(empty);
    assert_eq!(
        DomainLinker::new(tenant.clone(), store.clone(), down)
            .run(zone, &[DomainService::Email])
            .await
            .unwrap_err()
            .code(),
        o365_essentials::ErrorCode::Transport
    );
    assert_eq!(
        DomainLinker::new(tenant.clone(), store.clone(), down)
            .stage(zone)
            .unwrap(),
        DomainStage::Added
    );

    // The admin publishes the TXT: the next run verifies and sets the services.
    let with_txt = bind::Bind::start(zone, &[format!("@ IN TXT \"{code}\"")]);
    set_dns(with_txt.addr).await;
    let second = DomainLinker::new(tenant.clone(), store.clone(), with_txt.addr)
        .run(zone, &[DomainService::Email])
        .await
        .unwrap();
    assert_eq!(second.stage, DomainStage::ServicesSet, "{}", second.next);
    assert!(
        second.next.contains("publish 3 service record"),
        "{}",
        second.next
    );
    let mx = second
        .records
        .iter()
        .find_map(|r| {
            if let RecordData::Mx { exchange, .. } = &r.data {
                Some(exchange.clone())
            } else {
                None
            }
        })
        .unwrap();

    // Then the service records: done.
    let full = bind::Bind::start(
        zone,
        &[
            format!("@ IN TXT \"{code}\""),
            format!("@ IN MX 0 {mx}."),
            "@ IN TXT \"v=spf1 include:spf.protection.outlook.com -all\"".into(),
            "autodiscover IN CNAME autodiscover.outlook.com.".into(),
        ],
    );
    let third = DomainLinker::new(tenant.clone(), store.clone(), full.addr)
        .run(zone, &[DomainService::Email])
        .await
        .unwrap();
    assert_eq!(third.stage, DomainStage::Done, "{}", third.next);
    let domain = o365_essentials::ports::Domains::domain(tenant.as_ref(), zone)
        .await
        .unwrap();
    assert!(domain.is_verified);
    assert_eq!(domain.supported_services, vec![DomainService::Email]);
}

#[tokio::test]
async fn records_are_applied_with_signed_dynamic_updates_and_the_tenant_then_verifies() {
    use o365_essentials::dns::{TsigKey, apply_records};
    use o365_essentials::ports::Domains;
    use std::sync::Arc;
    let secret = "bzM2NS1lc3NlbnRpYWxzLXRlc3Qta2V5LTMyYnl0ZXMhIQ==";
    let zone = "northwind.co.uk";
    let dns = bind::Bind::start_with_key(
        zone,
        &[
            "@ IN TXT \"v=spf1 mx ~all\"".into(),
            "@ IN MX 10 mx.old.example.".into(),
        ],
        Some(("o365-update", secret)),
    );
    let emu = o365_essentials_emulator::Emulator::start(
        o365_essentials_emulator::EmulatorConfig::default(),
    )
    .await
    .unwrap();
    reqwest::Client::new()
        .put(format!("{}/dns", emu.info().admin_url))
        .json(&serde_json::json!({"server": dns.addr.to_string()}))
        .send()
        .await
        .unwrap();
    let tenant = Arc::new(crate::graph::tenant_for(&emu));
    tenant.add_domain(zone).await.unwrap();
    let verification = tenant.verification_records(zone).await.unwrap();
    assert_eq!(
        tenant.verify(zone).await.unwrap_err().code(),
        o365_essentials::ErrorCode::DnsRecordMismatch,
        "not in DNS yet"
    );

    let key = TsigKey::from_bind_conf(&format!(
        "key \"o365-update\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};"
    ))
    .unwrap();
    let wrong = TsigKey {
        name: "o365-update".into(),
        secret: o365_essentials::SecretString::from("d3Jvbmcta2V5"),
    };
    let e = apply_records(dns.addr, zone, &wrong, &verification, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), o365_essentials::ErrorCode::Auth, "{e}");
    assert!(!e.to_string().contains(secret));

    let first = apply_records(dns.addr, zone, &key, &verification, false)
        .await
        .unwrap();
    assert_eq!(first.added.len(), 2, "{first:?}");
    assert!(
        tenant.verify(zone).await.unwrap().is_verified,
        "the tenant reads the same BIND"
    );
    let again = apply_records(dns.addr, zone, &key, &verification, false)
        .await
        .unwrap();
    assert!(
        again.added.is_empty() && again.already_present.len() == 2,
        "idempotent: {again:?}"
    );

    tenant
        .set_supported_services(zone, &[o365_essentials::model::DomainService::Email])
        .await
        .unwrap();
    let services = tenant.service_records(zone).await.unwrap();
    let applied = apply_records(dns.addr, zone, &key, &services, false)
        .await
        .unwrap();
    assert_eq!(
        applied.left_alone.len(),
        1,
        "the existing SPF is not replaced unless asked: {applied:?}"
    );
    assert!(applied.left_alone[0].1.contains("merged"));
    let merged = apply_records(dns.addr, zone, &key, &services, true)
        .await
        .unwrap();
    assert_eq!(merged.added.len(), 1);
    let checks = o365_essentials::dns::check_records(dns.addr, &services)
        .await
        .unwrap();
    assert!(
        checks
            .iter()
            .all(|c| c.status == o365_essentials::dns::RecordStatus::Present),
        "{checks:#?}"
    );
    // The old MX was not ours: it is still there.
    let out = std::process::Command::new("dig")
        .args([
            "+short",
            "-p",
            &dns.addr.port().to_string(),
            "@127.0.0.1",
            zone,
            "MX",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("mx.old.example"));
    let spf = std::process::Command::new("dig")
        .args([
            "+short",
            "-p",
            &dns.addr.port().to_string(),
            "@127.0.0.1",
            zone,
            "TXT",
        ])
        .output()
        .unwrap();
    let spf = String::from_utf8_lossy(&spf.stdout).to_string();
    assert_eq!(
        spf.matches("v=spf1").count(),
        1,
        "exactly one SPF record: {spf}"
    );
}

#[tokio::test]
async fn with_dynamic_updates_the_flow_links_a_domain_in_one_run() {
    use o365_essentials::dns::{DomainLinker, DomainStage, TsigKey};
    use std::sync::Arc;
    let secret = "bzM2NS1lc3NlbnRpYWxzLXRlc3Qta2V5LTMyYnl0ZXMhIQ==";
    let zone = "tailspin.co.uk";
    let dns = bind::Bind::start_with_key(zone, &[], Some(("o365-update", secret)));
    let emu = o365_essentials_emulator::Emulator::start(
        o365_essentials_emulator::EmulatorConfig::default(),
    )
    .await
    .unwrap();
    reqwest::Client::new()
        .put(format!("{}/dns", emu.info().admin_url))
        .json(&serde_json::json!({"server": dns.addr.to_string()}))
        .send()
        .await
        .unwrap();
    let tenant = Arc::new(crate::graph::tenant_for(&emu));
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap());
    let key = TsigKey {
        name: "o365-update".into(),
        secret: o365_essentials::SecretString::from(secret),
    };
    let linker = DomainLinker::new(tenant, store, dns.addr).with_dynamic_updates(key);
    let p = linker
        .run(
            zone,
            &[
                o365_essentials::model::DomainService::Email,
                o365_essentials::model::DomainService::OfficeCommunicationsOnline,
            ],
        )
        .await
        .unwrap();
    assert_eq!(p.stage, DomainStage::Done, "{}", p.next);
    assert!(
        p.checks
            .iter()
            .all(|c| c.status == o365_essentials::dns::RecordStatus::Present)
    );
}

/// A company that already receives mail: linking the domain publishes Microsoft 365's MX
/// after the company's own (mail keeps arriving where it does) unless taking over is
/// asked for, and removes the verification records once the tenant has verified.
#[tokio::test]
async fn linking_keeps_the_companys_mail_server_first_and_leaves_no_verification_record() {
    use o365_essentials::dns::{DomainLinker, DomainStage, TsigKey};
    use std::sync::Arc;
    let secret = "bzM2NS1lc3NlbnRpYWxzLXRlc3Qta2V5LTMyYnl0ZXMhIQ==";
    let zone = "fabrikam.co.uk";
    let dns = bind::Bind::start_with_key(
        zone,
        &[format!("@ 3600 IN MX 10 mail.{zone}.")],
        Some(("o365-update", secret)),
    );
    let emu = o365_essentials_emulator::Emulator::start(
        o365_essentials_emulator::EmulatorConfig::default(),
    )
    .await
    .unwrap();
    reqwest::Client::new()
        .put(format!("{}/dns", emu.info().admin_url))
        .json(&serde_json::json!({"server": dns.addr.to_string()}))
        .send()
        .await
        .unwrap();
    let tenant = Arc::new(crate::graph::tenant_for(&emu));
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap());
    let key = TsigKey {
        name: "o365-update".into(),
        secret: o365_essentials::SecretString::from(secret),
    };
    let p = DomainLinker::new(tenant.clone(), store.clone(), dns.addr)
        .with_dynamic_updates(key.clone())
        .run(zone, &[o365_essentials::model::DomainService::Email])
        .await
        .unwrap();
    assert_eq!(p.stage, DomainStage::Done, "{}", p.next);
    assert!(p.next.contains("after the domain's own"), "{}", p.next);
    let mx = dig(dns.addr, zone, "MX");
    assert!(
        mx.iter().any(|m| m == &format!("10 mail.{zone}.")),
        "{mx:?}"
    );
    let ms: Vec<&String> = mx
        .iter()
        .filter(|m| m.contains("mail.protection.outlook.com"))
        .collect();
    assert_eq!(ms.len(), 1, "{mx:?}");
    let pref: u16 = ms[0].split(' ').next().unwrap().parse().unwrap();
    assert!(pref > 10, "Microsoft 365's MX must not come first: {mx:?}");
    assert!(
        !mx.iter().any(|m| m.contains("msv1.invalid")),
        "the verification MX was left behind: {mx:?}"
    );
    assert!(
        !dig(dns.addr, zone, "TXT")
            .iter()
            .any(|t| t.contains("MS=ms")),
        "the verification TXT was left behind"
    );
    let health = o365_essentials::dns::health_report(dns.addr, zone)
        .await
        .unwrap();
    assert!(
        !format!("{health:?}").contains("verification_mx"),
        "{health:?}"
    );
}

/// `dig +short` answers, one a line.
fn dig(server: std::net::SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let out = std::process::Command::new("dig")
        .args([
            "+short",
            "+time=2",
            "-p",
            &server.port().to_string(),
            &format!("@{}", server.ip()),
            name,
            rtype,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The requirements check and the domain operations agree on what a linkable domain is.
#[tokio::test]
async fn requirements_refuse_a_domain_the_domain_operations_refuse() {
    use std::sync::Arc;
    let emu = o365_essentials_emulator::Emulator::start(
        o365_essentials_emulator::EmulatorConfig::default(),
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let integration = o365_essentials::engine::Integration::new(
        Arc::new(o365_essentials::memory::MemoryDirectory::demo_company().unwrap()),
        Arc::new(crate::graph::tenant_for(&emu)),
        Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap()),
    );
    for (domain, ok) in [
        ("co.uk", false),
        ("contoso.co.uk", true),
        ("github.io", false),
    ] {
        let check = integration
            .requirements(Some(domain))
            .await
            .checks
            .into_iter()
            .find(|c| c.id == "custom_domain")
            .unwrap();
        let linkable = o365_essentials::dns::registrable_domain(domain).is_ok();
        assert_eq!(linkable, ok, "{domain}");
        assert_eq!(
            check.status == o365_essentials::model::CheckStatus::Pass,
            linkable,
            "{domain}: {check:?}"
        );
    }
}

/// A verification that fails for another reason than "the record is not seen yet" (here
/// the app lost its permission) reaches the caller instead of being reported as waiting.
#[tokio::test]
async fn a_verification_refused_for_another_reason_reaches_the_caller() {
    use o365_essentials::ErrorCode;
    use o365_essentials::dns::{DomainLinker, DomainStage, TsigKey};
    use o365_essentials_emulator::config::{FaultKind, FaultRule};
    use std::sync::Arc;
    let secret = "bzM2NS1lc3NlbnRpYWxzLXRlc3Qta2V5LTMyYnl0ZXMhIQ==";
    let zone = "northwind.co.uk";
    let dns = bind::Bind::start_with_key(zone, &[], Some(("o365-update", secret)));
    let emu = o365_essentials_emulator::Emulator::start(
        o365_essentials_emulator::EmulatorConfig::default(),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    client
        .put(format!("{}/dns", emu.info().admin_url))
        .json(&serde_json::json!({"server": dns.addr.to_string()}))
        .send()
        .await
        .unwrap();
    let rules = vec![FaultRule {
        path: "/v1.0/domains/*/verify".into(),
        method: Some("POST".into()),
        probability: 1.0,
        kind: FaultKind::Status { status: 403 },
        limit: None,
    }];
    client
        .put(format!("{}/faults", emu.info().admin_url))
        .json(&serde_json::json!({ "rules": rules }))
        .send()
        .await
        .unwrap();
    let tenant = Arc::new(crate::graph::tenant_for(&emu));
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(o365_essentials::store::Store::open(tmp.path().join("s.db")).unwrap());
    let key = TsigKey {
        name: "o365-update".into(),
        secret: o365_essentials::SecretString::from(secret),
    };
    let linker = DomainLinker::new(tenant, store, dns.addr).with_dynamic_updates(key);
    let e = linker
        .run(zone, &[o365_essentials::model::DomainService::Email])
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e}");
    // The stage is kept: the next run resumes once the permission is back.
    assert_eq!(linker.stage(zone).unwrap(), DomainStage::Added);
}
