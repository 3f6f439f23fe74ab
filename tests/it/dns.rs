//! Domain records as BIND reads them.

use o365_essentials::dns::{records_file_text, registrable_domain, zone_fragment};
use o365_essentials::model::{DnsRecord, RecordData, RecordPurpose};

fn records() -> Vec<DnsRecord> {
    let r = |name: &str, data: RecordData| DnsRecord {
        name: name.into(),
        ttl: 3600,
        data,
        purpose: RecordPurpose::Service,
        supported_service: None,
        optional: false,
    };
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
