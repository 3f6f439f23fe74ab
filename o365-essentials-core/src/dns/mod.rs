//! Custom domains, the pure part: which names can be linked (registrable, public-suffix
//! aware, internationalised names as punycode), and the records a tenant asks for as a
//! records file (`NewDNSRecords_<n>.txt`) and as a zone-file fragment (RFC 1035).

mod check;
mod flow;
mod health;
pub(crate) mod update;

pub use check::{RecordCheck, RecordStatus, check_records, merge_spf, system_resolvers};
pub use flow::{DomainLinker, DomainProgress, DomainStage};
pub use health::{HealthCheck, HealthReport, health_report};
pub use update::{ApplyOutcome, TsigKey, apply_records, remove_records};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};
use crate::model::{DnsRecord, RecordData, RecordPurpose};
use crate::validate;

fn invalid(msg: String) -> Error {
    Error::new(ErrorCode::InvalidDomainName, msg)
}

/// Checks that `input` is a domain the company can link: a registrable name under a
/// public suffix (contoso.com, contoso.co.uk), not a subdomain and not a suffix itself.
/// Internationalised names are accepted and returned in punycode (`bücher.de` →
/// `xn--bcher-kva.de`).
///
/// # Errors
/// [`ErrorCode::InvalidDomainName`] saying why and what to enter instead.
pub fn registrable_domain(input: &str) -> Result<String> {
    let name = input.trim();
    if name.is_empty() {
        return Err(invalid(
            "the domain is empty; enter the company's registered domain, such as contoso.com"
                .into(),
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok()
        || name
            .trim_matches(['[', ']'])
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    {
        return Err(invalid(format!(
            "{name} is an IP address; enter the company's registered domain, such as contoso.com"
        )));
    }
    let ascii = if name.is_ascii() {
        name.to_string()
    } else {
        let lower = name.to_lowercase();
        if lower != name {
            return Err(invalid(format!(
                "domain `{name}`: use lower case: `{lower}`"
            )));
        }
        idna::domain_to_ascii(name).map_err(|_| {
            invalid(format!(
                "{name} is not a valid internationalised domain name"
            ))
        })?
    };
    validate::domain_name(&ascii)?;
    let suffix = psl::suffix(ascii.as_bytes()).filter(|s| s.is_known());
    let Some(suffix) = suffix else {
        let tld = ascii.rsplit('.').next().unwrap_or_default();
        return Err(invalid(format!(
            "{ascii}: `.{tld}` is not a known top-level domain; enter a domain registered under a public suffix such as .com or .co.uk"
        )));
    };
    let suffix = std::str::from_utf8(suffix.as_bytes())
        .unwrap_or_default()
        .to_string();
    if suffix == ascii {
        return Err(invalid(format!(
            "{ascii} is a public suffix, not a domain anyone owns; enter the company's domain under it, such as contoso.{ascii}"
        )));
    }
    let registrable = psl::domain_str(&ascii)
        .ok_or_else(|| invalid(format!("{ascii} is not a registrable domain")))?;
    if registrable != ascii {
        return Err(invalid(format!(
            "{ascii} is a subdomain of {registrable}; add {registrable} (the registered domain) instead — subdomains of a verified domain are verified automatically afterwards"
        )));
    }
    Ok(ascii)
}

/// `name` relative to `domain` for a zone file (`@` for the apex).
fn relative(name: &str, domain: &str) -> String {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if n == d {
        "@".into()
    } else if let Some(r) = n.strip_suffix(&format!(".{d}")) {
        r.to_string()
    } else {
        format!("{n}.")
    }
}

/// Whether `name` is a host name a record may hold: labels of letters, digits, `-` and
/// `_` (SRV and DKIM owners), 1–63 bytes each, 253 in all, an optional final dot.
fn host_name_ok(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Checks records that came from the tenant before they reach a zone fragment, a records
/// file or a dynamic update: every owner name inside `domain`, every target a host name,
/// TXT text printable (no line breaks or control characters that would start a new
/// zone-file line), at most 4,000 bytes.
///
/// # Errors
/// [`ErrorCode::UntrustedResponse`] naming the record and the rule it breaks.
pub fn validate_records(domain: &str, records: &[DnsRecord]) -> Result<()> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    for r in records {
        let shown = crate::validate::printable(&r.name).into_owned();
        let bad = |why: &str| {
            Err(Error::new(
                ErrorCode::UntrustedResponse,
                format!(
                    "Microsoft 365 sent a {} record for `{shown}` that {why}; it was not used",
                    r.data.type_name()
                ),
            ))
        };
        let n = r.name.trim_end_matches('.').to_ascii_lowercase();
        if !host_name_ok(&n) {
            return bad("has a malformed name");
        }
        if n != d && !n.ends_with(&format!(".{d}")) {
            return bad(&format!("is outside the domain {domain}"));
        }
        match &r.data {
            RecordData::Mx { exchange: t, .. }
            | RecordData::Cname { target: t }
            | RecordData::Srv { target: t, .. } => {
                if !host_name_ok(t) {
                    return bad("points at a malformed host name");
                }
            }
            RecordData::Txt { text } => {
                if text.len() > 4000 {
                    return bad("has a text longer than 4,000 bytes");
                }
                if text.chars().any(char::is_control) {
                    return bad("has control characters in its text");
                }
            }
        }
    }
    Ok(())
}

/// A TXT string in zone-file syntax: quoted, `"` and `\` escaped, control characters
/// written as `\DDD` (so no text can start a new line of the zone), split into 255-byte
/// character-strings.
fn txt_quoted(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    for chunk in bytes.chunks(255) {
        let s: String = String::from_utf8_lossy(chunk)
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .chars()
            .map(|c| {
                if c.is_ascii_control() {
                    format!("\\{:03}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
        parts.push(format!("\"{s}\""));
    }
    if parts.is_empty() {
        parts.push("\"\"".into());
    }
    parts.join(" ")
}

fn data_text(d: &RecordData) -> String {
    match d {
        RecordData::Mx {
            exchange,
            preference,
        } => format!("{preference} {}.", exchange.trim_end_matches('.')),
        RecordData::Txt { text } => txt_quoted(text),
        RecordData::Cname { target } => format!("{}.", target.trim_end_matches('.')),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
            ..
        } => format!(
            "{priority} {weight} {port} {}.",
            target.trim_end_matches('.')
        ),
    }
}

/// The records as a zone-file fragment for `domain` (RFC 1035 syntax, `$ORIGIN` set),
/// ready to paste into the zone.
pub fn zone_fragment(domain: &str, records: &[DnsRecord]) -> String {
    let mut out = format!(
        "; Microsoft 365 records for {domain}, made by o365-essentials\n$ORIGIN {}.\n",
        domain.trim_end_matches('.')
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<40} {:>6} IN {:<5} {}",
            relative(&r.name, domain),
            r.ttl,
            r.data.type_name(),
            data_text(&r.data)
        );
    }
    out
}

/// The records file's text: a readable table and what to do with it.
pub fn records_file_text(domain: &str, records: &[DnsRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "DNS records for {domain}");
    let _ = writeln!(out, "{}", "=".repeat(16 + domain.len()));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Add these records at the company that hosts the DNS for {domain} (often the registrar),"
    );
    let _ = writeln!(
        out,
        "then return to the integration: it checks each record and asks Microsoft 365 to verify."
    );
    let _ = writeln!(
        out,
        "Verification records prove the domain is yours; service records make mail and Teams work."
    );
    let _ = writeln!(
        out,
        "Keep one SPF (v=spf1) record per name: if one exists, merge the include into it."
    );
    let _ = writeln!(out);
    for (purpose, title) in [
        (RecordPurpose::Verification, "Verification"),
        (RecordPurpose::Service, "Services"),
    ] {
        let rows: Vec<&DnsRecord> = records.iter().filter(|r| r.purpose == purpose).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}");
        let _ = writeln!(out, "  {:<6} {:<40} {:<7} Value", "Type", "Name", "TTL");
        for r in rows {
            let value = match &r.data {
                RecordData::Mx {
                    exchange,
                    preference,
                } => format!("{exchange} (priority {preference})"),
                RecordData::Txt { text } => text.clone(),
                RecordData::Cname { target } => target.clone(),
                RecordData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                    ..
                } => format!("{target} (priority {priority}, weight {weight}, port {port})"),
            };
            let optional = if r.optional { " (optional)" } else { "" };
            let _ = writeln!(
                out,
                "  {:<6} {:<40} {:<7} {value}{optional}",
                r.data.type_name(),
                relative(&r.name, domain),
                r.ttl
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Name `@` is {domain} itself. The same records in zone-file syntax:"
    );
    let _ = writeln!(out);
    out.push_str(&zone_fragment(domain, records));
    out
}

/// Writes the records file as `NewDNSRecords_<n>.txt` (random `n`, a new file) into
/// `folder`; returns its path.
///
/// # Errors
/// [`ErrorCode::StoreIo`] naming the folder.
pub fn write_records_file(folder: &Path, domain: &str, records: &[DnsRecord]) -> Result<PathBuf> {
    use std::io::Write;
    validate_records(domain, records)?;
    let text = records_file_text(domain, records);
    for _ in 0..100 {
        let n: u32 = rand::random::<u32>() % 1_000_000;
        let path = folder.join(format!("NewDNSRecords_{n}.txt"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).map_err(|e| {
                    Error::new(
                        ErrorCode::StoreIo,
                        format!("cannot write {}: {e}", path.display()),
                    )
                })?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::StoreIo,
                    format!("cannot create a records file in {}: {e}", folder.display()),
                ));
            }
        }
    }
    Err(Error::new(
        ErrorCode::StoreIo,
        format!("no free NewDNSRecords_<n>.txt name in {}", folder.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_names_only_with_advice() {
        assert_eq!(
            registrable_domain("contoso.com").expect("com"),
            "contoso.com"
        );
        assert_eq!(
            registrable_domain("contoso.co.uk").expect("co.uk"),
            "contoso.co.uk"
        );
        assert_eq!(
            registrable_domain(" contoso.com ").expect("trimmed"),
            "contoso.com"
        );
        assert_eq!(
            registrable_domain("bücher.de").expect("idn"),
            "xn--bcher-kva.de"
        );
        let cases = [
            ("marketing.contoso.com", "add contoso.com"),
            ("shop.contoso.co.uk", "add contoso.co.uk"),
            ("co.uk", "public suffix"),
            ("com", "two labels"),
            ("192.168.1.10", "IP address"),
            ("::1", "IP address"),
            ("contoso.com.", "trailing dot"),
            ("Contoso.com", "lower case"),
            ("BÜCHER.de", "lower case"),
            ("con_toso.com", "character `_`"),
            ("contoso.notarealtld", "not a known top-level domain"),
            ("", "empty"),
        ];
        for (input, expect) in cases {
            let e = registrable_domain(input).expect_err(input);
            assert_eq!(e.code(), ErrorCode::InvalidDomainName);
            assert!(e.message().contains(expect), "{input}: {}", e.message());
        }
        assert!(
            registrable_domain(&format!("{}.com", "a".repeat(64)))
                .expect_err("label")
                .message()
                .contains("63")
        );
        assert!(
            registrable_domain(&format!("{}.com", vec!["abcdefghij"; 24].join(".")))
                .expect_err("long")
                .message()
                .contains("253")
        );
    }

    fn rec(name: &str, data: RecordData, purpose: RecordPurpose) -> DnsRecord {
        DnsRecord {
            name: name.into(),
            ttl: 3600,
            data,
            purpose,
            supported_service: None,
            optional: false,
        }
    }

    pub(crate) fn sample() -> Vec<DnsRecord> {
        vec![
            rec(
                "contoso.com",
                RecordData::Txt {
                    text: "MS=ms12345678".into(),
                },
                RecordPurpose::Verification,
            ),
            rec(
                "contoso.com",
                RecordData::Mx {
                    exchange: "contoso-com.mail.protection.outlook.com".into(),
                    preference: 0,
                },
                RecordPurpose::Service,
            ),
            rec(
                "contoso.com",
                RecordData::Txt {
                    text: "v=spf1 include:spf.protection.outlook.com -all".into(),
                },
                RecordPurpose::Service,
            ),
            rec(
                "autodiscover.contoso.com",
                RecordData::Cname {
                    target: "autodiscover.outlook.com".into(),
                },
                RecordPurpose::Service,
            ),
            rec(
                "_sip._tls.contoso.com",
                RecordData::Srv {
                    service: "_sip".into(),
                    protocol: "_tls".into(),
                    priority: 100,
                    weight: 1,
                    port: 443,
                    target: "sipdir.online.lync.com".into(),
                },
                RecordPurpose::Service,
            ),
            rec(
                "contoso.com",
                RecordData::Txt {
                    text: format!("quote \" and backslash \\ {}", "x".repeat(300)),
                },
                RecordPurpose::Service,
            ),
        ]
    }

    #[test]
    fn records_from_the_tenant_are_checked_before_they_reach_a_zone() {
        let rec = |name: &str, data: RecordData| DnsRecord {
            name: name.into(),
            ttl: 3600,
            data,
            purpose: RecordPurpose::Service,
            supported_service: None,
            optional: false,
        };
        let txt = |t: &str| RecordData::Txt { text: t.into() };
        let good = [
            rec(
                "contoso.com",
                txt("v=spf1 include:spf.protection.outlook.com -all"),
            ),
            rec(
                "_sip._tls.contoso.com",
                RecordData::Srv {
                    service: "_sip".into(),
                    protocol: "_tls".into(),
                    priority: 100,
                    weight: 1,
                    port: 443,
                    target: "sipdir.online.lync.com".into(),
                },
            ),
        ];
        validate_records("contoso.com", &good).unwrap();
        for bad in [
            rec("contoso.com", txt("x\"\n@ IN NS evil.example.")),
            rec("evil.example", txt("MS=ms1")),
            rec("a b.contoso.com", txt("x")),
            rec(
                "contoso.com",
                RecordData::Mx {
                    exchange: "mx.example.\n$INCLUDE /etc/shadow".into(),
                    preference: 0,
                },
            ),
            rec(
                "www.contoso.com",
                RecordData::Cname {
                    target: "evil example".into(),
                },
            ),
        ] {
            let e = validate_records("contoso.com", std::slice::from_ref(&bad)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::UntrustedResponse, "{bad:?}");
            let dir = tempfile::tempdir().unwrap();
            assert!(write_records_file(dir.path(), "contoso.com", &[bad]).is_err());
        }
        // And the fragment itself never lets a text start a line.
        let z = zone_fragment("contoso.com", &[rec("contoso.com", txt("a\nb"))]);
        assert_eq!(z.lines().count(), 3, "{z}");
        assert!(z.contains("\"a\\010b\""), "{z}");
    }

    #[test]
    fn zone_fragment_and_records_file() {
        let z = zone_fragment("contoso.com", &sample());
        assert!(z.contains("$ORIGIN contoso.com.\n"));
        assert!(z.contains("IN MX    0 contoso-com.mail.protection.outlook.com."));
        assert!(z.contains("autodiscover "));
        assert!(z.contains("_sip._tls"));
        assert!(z.contains("IN SRV   100 1 443 sipdir.online.lync.com."));
        assert!(z.contains("\\\" and backslash \\\\"));
        let t = records_file_text("contoso.com", &sample());
        assert!(t.contains("Verification\n"));
        assert!(t.contains("MS=ms12345678"));
        assert!(t.contains("(priority 0)"));
        let dir = tempfile::tempdir().expect("tmp");
        let a = write_records_file(dir.path(), "contoso.com", &sample()).expect("write");
        let b = write_records_file(dir.path(), "contoso.com", &sample()).expect("write again");
        assert_ne!(a, b, "a new file each time");
        assert!(
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("NewDNSRecords_") && n.ends_with(".txt"))
        );
        assert_eq!(
            write_records_file(Path::new("/nonexistent-o365"), "x.com", &[])
                .unwrap_err()
                .code(),
            ErrorCode::StoreIo
        );
    }
}
