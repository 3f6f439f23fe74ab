//! The DNS health report of a linked domain: MX, SPF, DKIM, DMARC, autodiscover — each
//! pass, warn or fail with the fix, and a score.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::check::{query_cnames, query_mx, query_txt};
use crate::error::Result;
use crate::model::CheckStatus;

/// One check of the health report.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `mx`, `spf`, `dkim`, `dmarc`, `autodiscover`.
    pub id: String,
    /// Pass, warn or fail.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do (empty when it passed).
    pub fix: String,
}

/// The report with a score out of 100 (pass 20, warn 10, fail 0 per check).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The domain.
    pub domain: String,
    /// The checks.
    pub checks: Vec<HealthCheck>,
    /// 0–100.
    pub score: u32,
}

fn c(id: &str, status: CheckStatus, detail: String, fix: &str) -> HealthCheck {
    HealthCheck {
        id: id.into(),
        status,
        detail,
        fix: if status == CheckStatus::Pass {
            String::new()
        } else {
            fix.into()
        },
    }
}

/// Checks `domain`'s mail records in `server`.
///
/// # Errors
/// [`ErrorCode::Transport`](crate::ErrorCode::Transport) when the server does not answer.
pub async fn health_report(server: SocketAddr, domain: &str) -> Result<HealthReport> {
    let mut checks = Vec::new();
    let all_mx = query_mx(server, domain).await?;
    // A domain verification MX left behind is no mail server: said as what it is.
    let (leftover, mx): (Vec<_>, Vec<_>) = all_mx
        .into_iter()
        .partition(|(_, h)| super::flow::verification_mx(h));
    if !leftover.is_empty() {
        checks.push(c(
            "verification_mx",
            CheckStatus::Warn,
            format!(
                "the domain verification record is still published (MX {})",
                leftover
                    .iter()
                    .map(|(_, h)| h.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "Remove the verification MX record; the domain is verified and no longer needs it.",
        ));
    }
    let ms = mx
        .iter()
        .filter(|(_, h)| h.ends_with(".mail.protection.outlook.com") || h.contains(".mx.microsoft"))
        .count();
    checks.push(match (mx.is_empty(), ms == mx.len()) {
        (true, _) => c(
            "mx",
            CheckStatus::Fail,
            "no MX record".into(),
            "Add the MX record Microsoft 365 gave for the domain.",
        ),
        (false, true) => c(
            "mx",
            CheckStatus::Pass,
            format!(
                "MX → {}",
                mx.iter()
                    .map(|(p, h)| format!("{h} ({p})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "",
        ),
        (false, false) if ms > 0 => c(
            "mx",
            CheckStatus::Warn,
            format!(
                "MX also lists {}",
                mx.iter()
                    .filter(|(_, h)| !h.contains("outlook.com"))
                    .map(|(_, h)| h.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "Remove the old mail servers once every mailbox has moved.",
        ),
        (false, false) => c(
            "mx",
            CheckStatus::Fail,
            "MX points elsewhere".into(),
            "Point the MX at Microsoft 365 when the mailboxes are ready.",
        ),
    });
    let txt = query_txt(server, domain).await?;
    let spf: Vec<&String> = txt.iter().filter(|t| t.starts_with("v=spf1")).collect();
    checks.push(match spf.as_slice() {
        [] => c(
            "spf",
            CheckStatus::Fail,
            "no SPF record".into(),
            "Add TXT `v=spf1 include:spf.protection.outlook.com -all`.",
        ),
        [one] if !one.contains("include:spf.protection.outlook.com") => c(
            "spf",
            CheckStatus::Fail,
            format!("SPF `{one}` does not include Microsoft 365"),
            "Add include:spf.protection.outlook.com to the existing SPF record.",
        ),
        [one] if one.ends_with("-all") || one.ends_with("~all") => {
            c("spf", CheckStatus::Pass, format!("SPF `{one}`"), "")
        }
        [one] => c(
            "spf",
            CheckStatus::Warn,
            format!("SPF `{one}` does not end in -all or ~all"),
            "End the SPF record with -all (or ~all while testing).",
        ),
        _ => c(
            "spf",
            CheckStatus::Fail,
            format!("{} SPF records", spf.len()),
            "Merge them into one: receivers treat two SPF records as an error.",
        ),
    });
    let mut selectors = Vec::new();
    for s in ["selector1", "selector2"] {
        if !query_cnames(server, &format!("{s}._domainkey.{domain}"))
            .await?
            .is_empty()
        {
            selectors.push(s);
        }
    }
    checks.push(match selectors.len() {
        2 => c("dkim", CheckStatus::Pass, "selector1 and selector2 published".into(), ""),
        1 => c("dkim", CheckStatus::Warn, format!("only {} published", selectors[0]), "Publish both DKIM selector CNAMEs so keys can rotate."),
        _ => c("dkim", CheckStatus::Fail, "no DKIM selector CNAME".into(), "Add the selector1/selector2 ._domainkey CNAMEs from the Microsoft 365 admin centre and enable DKIM."),
    });
    let dmarc = query_txt(server, &format!("_dmarc.{domain}"))
        .await?
        .into_iter()
        .find(|t| t.starts_with("v=DMARC1"));
    checks.push(match &dmarc {
        None => c(
            "dmarc",
            CheckStatus::Fail,
            "no DMARC record".into(),
            "Add TXT at _dmarc: `v=DMARC1; p=quarantine; rua=mailto:dmarc@<domain>`.",
        ),
        Some(d) => {
            let policy = d
                .split(';')
                .map(str::trim)
                .find_map(|t| t.strip_prefix("p="))
                .unwrap_or("none")
                .to_string();
            let rua = d.contains("rua=");
            match (policy.as_str(), rua) {
                ("reject" | "quarantine", true) => c(
                    "dmarc",
                    CheckStatus::Pass,
                    format!("DMARC p={policy} with reports"),
                    "",
                ),
                ("reject" | "quarantine", false) => c(
                    "dmarc",
                    CheckStatus::Warn,
                    format!("DMARC p={policy} without a reporting address"),
                    "Add rua=mailto:... to receive DMARC reports.",
                ),
                _ => c(
                    "dmarc",
                    CheckStatus::Warn,
                    format!("DMARC p={policy}"),
                    "Move the DMARC policy to quarantine or reject once reports look clean.",
                ),
            }
        }
    });
    let auto = query_cnames(server, &format!("autodiscover.{domain}")).await?;
    checks.push(if auto.iter().any(|t| t == "autodiscover.outlook.com") {
        c(
            "autodiscover",
            CheckStatus::Pass,
            "autodiscover → autodiscover.outlook.com".into(),
            "",
        )
    } else {
        c(
            "autodiscover",
            CheckStatus::Fail,
            if auto.is_empty() {
                "no autodiscover CNAME".into()
            } else {
                format!("autodiscover → {}", auto.join(", "))
            },
            "Point autodiscover at autodiscover.outlook.com so Outlook finds the mailbox.",
        )
    });
    let score = checks
        .iter()
        .map(|k| match k.status {
            CheckStatus::Pass => 20,
            CheckStatus::Warn => 10,
            CheckStatus::Fail => 0,
        })
        .sum();
    Ok(HealthReport {
        domain: domain.into(),
        checks,
        score,
    })
}
