//! Checks the records in DNS before the tenant is asked to verify: each present, missing
//! or different (with what was found), SPF merged into an existing SPF record rather than
//! a second one, a warning when another MX exists, a conflict when a CNAME sits where a
//! TXT is needed.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::model::{DnsRecord, RecordData};

/// Where a record stands in DNS.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RecordStatus {
    /// Exactly as required.
    Present,
    /// Nothing of this kind at the name.
    Missing,
    /// Something else is there.
    Different {
        /// What DNS answered.
        found: Vec<String>,
    },
}

/// The check of one record, with advice when it is not present.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCheck {
    /// The record required.
    pub record: DnsRecord,
    /// What DNS says.
    #[serde(flatten)]
    pub status: RecordStatus,
    /// What to do (empty when present and nothing to warn about).
    pub advice: String,
}

/// The DNS servers of `/etc/resolv.conf` (the system resolver).
///
/// # Errors
/// [`ErrorCode::InvalidConfig`] when it lists none.
pub fn system_resolvers() -> Result<Vec<SocketAddr>> {
    let servers = crate::platform::system_dns_servers();
    if servers.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidConfig,
            "/etc/resolv.conf lists no DNS server; choose one",
        ));
    }
    Ok(servers)
}

async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Result<Vec<RData>> {
    let what = || format!("asking {server} for {rtype} {name}");
    let qname = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|_| {
        Error::new(
            ErrorCode::InvalidDomainName,
            format!("`{name}` is not a DNS name"),
        )
    })?;
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(qname, rtype));
    let bytes = msg
        .to_vec()
        .map_err(|_| Error::internal("a DNS query could not be encoded"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| Error::new(ErrorCode::Transport, format!("{}: {e}", what())))?;
    let mut last = None;
    for _ in 0..3 {
        sock.send_to(&bytes, server)
            .await
            .map_err(|e| Error::new(ErrorCode::Transport, format!("{}: {e}", what())))?;
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(1500), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                let resp = Message::from_vec(&buf[..n]).map_err(|_| {
                    Error::new(
                        ErrorCode::UnexpectedResponse,
                        format!("{}: an undecodable answer", what()),
                    )
                })?;
                if resp.id() != msg.id() {
                    continue;
                }
                return match resp.response_code() {
                    ResponseCode::NoError | ResponseCode::NXDomain => {
                        Ok(resp.answers().iter().map(|r| r.data().clone()).collect())
                    }
                    other => Err(Error::new(
                        ErrorCode::ServiceUnavailable,
                        format!("{}: the server answered {other}", what()),
                    )),
                };
            }
            Ok(Err(e)) => last = Some(Error::new(ErrorCode::Transport, format!("{}: {e}", what()))),
            Err(_) => {
                last = Some(Error::new(
                    ErrorCode::Transport,
                    format!("{}: no answer (is the DNS server up?)", what()),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorCode::Transport, what())))
}

fn txt_of(d: &RData) -> Option<String> {
    match d {
        RData::TXT(t) => Some(
            t.txt_data()
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
        ),
        _ => None,
    }
}

fn host(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

pub(crate) async fn query_txt(server: SocketAddr, name: &str) -> Result<Vec<String>> {
    Ok(query(server, name, RecordType::TXT)
        .await?
        .iter()
        .filter_map(txt_of)
        .collect())
}

pub(crate) async fn query_mx(server: SocketAddr, name: &str) -> Result<Vec<(u16, String)>> {
    Ok(query(server, name, RecordType::MX)
        .await?
        .iter()
        .filter_map(|d| {
            if let RData::MX(m) = d {
                Some((m.preference(), host(m.exchange())))
            } else {
                None
            }
        })
        .collect())
}

pub(crate) async fn query_cnames(server: SocketAddr, name: &str) -> Result<Vec<String>> {
    Ok(query(server, name, RecordType::CNAME)
        .await?
        .iter()
        .filter_map(|d| {
            if let RData::CNAME(c) = d {
                Some(host(&c.0))
            } else {
                None
            }
        })
        .collect())
}

/// The SPF record that adds `required`'s include to `existing` (one SPF per name).
pub fn merge_spf(existing: &str, required: &str) -> String {
    let includes: Vec<&str> = required
        .split_whitespace()
        .filter(|t| t.starts_with("include:"))
        .collect();
    let mut terms: Vec<&str> = existing.split_whitespace().collect();
    let all = terms.iter().position(|t| {
        t.ends_with("all") && matches!(t.chars().next(), Some('-' | '~' | '?' | '+' | 'a'))
    });
    let insert_at = all.unwrap_or(terms.len());
    for (k, inc) in includes.iter().enumerate() {
        if !terms.iter().any(|t| t.eq_ignore_ascii_case(inc)) {
            terms.insert(insert_at + k, inc);
        }
    }
    if all.is_none() {
        terms.push("-all");
    }
    terms.join(" ")
}

/// Checks each record against `server`.
///
/// # Errors
/// [`ErrorCode::Transport`] when the server does not answer (nothing is decided then).
pub async fn check_records(server: SocketAddr, records: &[DnsRecord]) -> Result<Vec<RecordCheck>> {
    let mut out = Vec::new();
    for r in records {
        let (status, advice) = match &r.data {
            RecordData::Txt { text } => {
                let found = query_txt(server, &r.name).await?;
                let cnames = query_cnames(server, &r.name).await?;
                if found.iter().any(|f| f == text) {
                    (RecordStatus::Present, String::new())
                } else if !cnames.is_empty() {
                    (
                        RecordStatus::Different {
                            found: cnames.iter().map(|c| format!("CNAME {c}")).collect(),
                        },
                        format!(
                            "{} is a CNAME to {}; a TXT record cannot sit beside it: remove the CNAME or use another name",
                            r.name,
                            cnames.join(", ")
                        ),
                    )
                } else if text.starts_with("v=spf1") {
                    let includes: Vec<&str> = text
                        .split_whitespace()
                        .filter(|t| t.starts_with("include:"))
                        .collect();
                    match found.iter().find(|f| f.starts_with("v=spf1")) {
                        // One SPF record that already includes Microsoft 365 (merged): done.
                        Some(existing)
                            if includes.iter().all(|i| {
                                existing
                                    .split_whitespace()
                                    .any(|t| t.eq_ignore_ascii_case(i))
                            }) =>
                        {
                            (RecordStatus::Present, String::new())
                        }
                        Some(existing) => (
                            RecordStatus::Different {
                                found: vec![existing.clone()],
                            },
                            format!(
                                "replace the existing SPF record with the merged one (never add a second): {}",
                                merge_spf(existing, text)
                            ),
                        ),
                        None => (
                            RecordStatus::Missing,
                            format!("add TXT `{text}` at {}", r.name),
                        ),
                    }
                } else if found.is_empty() {
                    (
                        RecordStatus::Missing,
                        format!("add TXT `{text}` at {}", r.name),
                    )
                } else {
                    (
                        RecordStatus::Different { found },
                        format!(
                            "add TXT `{text}` at {} (other TXT records may stay)",
                            r.name
                        ),
                    )
                }
            }
            RecordData::Mx {
                exchange,
                preference,
            } => {
                let found = query_mx(server, &r.name).await?;
                let ours = found
                    .iter()
                    .any(|(_, h)| h.eq_ignore_ascii_case(exchange.trim_end_matches('.')));
                let others: Vec<String> = found
                    .iter()
                    .filter(|(_, h)| !h.eq_ignore_ascii_case(exchange.trim_end_matches('.')))
                    .map(|(p, h)| format!("MX {p} {h}"))
                    .collect();
                match (ours, others.is_empty()) {
                    (true, true) => (RecordStatus::Present, String::new()),
                    (true, false) => (
                        RecordStatus::Present,
                        format!(
                            "other mail servers are still listed ({}); while mail moves, give Microsoft 365 a higher preference number than the old server, then lower it (to {preference}) and remove the old MX when the mailboxes are ready",
                            others.join(", ")
                        ),
                    ),
                    (false, true) => (
                        RecordStatus::Missing,
                        format!("add MX {preference} {exchange} at {}", r.name),
                    ),
                    (false, false) => (
                        RecordStatus::Different {
                            found: others.clone(),
                        },
                        format!(
                            "add MX {exchange}; mail still goes to {} — during a migration keep the old MX with the lower preference number until mailboxes are moved",
                            others.join(", ")
                        ),
                    ),
                }
            }
            RecordData::Cname { target } => {
                let found = query_cnames(server, &r.name).await?;
                if found
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(target.trim_end_matches('.')))
                {
                    (RecordStatus::Present, String::new())
                } else if found.is_empty() {
                    (
                        RecordStatus::Missing,
                        format!("add CNAME {} → {target}", r.name),
                    )
                } else {
                    (
                        RecordStatus::Different {
                            found: found.clone(),
                        },
                        format!("change the CNAME {} to point at {target}", r.name),
                    )
                }
            }
            RecordData::Srv {
                port,
                target,
                priority,
                weight,
                ..
            } => {
                let found: Vec<(u16, String)> = query(server, &r.name, RecordType::SRV)
                    .await?
                    .iter()
                    .filter_map(|d| {
                        if let RData::SRV(s) = d {
                            Some((s.port(), host(s.target())))
                        } else {
                            None
                        }
                    })
                    .collect();
                if found
                    .iter()
                    .any(|(p, h)| p == port && h.eq_ignore_ascii_case(target.trim_end_matches('.')))
                {
                    (RecordStatus::Present, String::new())
                } else if found.is_empty() {
                    (
                        RecordStatus::Missing,
                        format!("add SRV {} {priority} {weight} {port} {target}", r.name),
                    )
                } else {
                    (
                        RecordStatus::Different {
                            found: found.iter().map(|(p, h)| format!("{h}:{p}")).collect(),
                        },
                        format!("change SRV {} to {target}:{port}", r.name),
                    )
                }
            }
        };
        out.push(RecordCheck {
            record: r.clone(),
            status,
            advice,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::merge_spf;

    #[test]
    fn spf_is_merged_never_doubled() {
        let req = "v=spf1 include:spf.protection.outlook.com -all";
        assert_eq!(
            merge_spf("v=spf1 mx include:_spf.old.example ~all", req),
            "v=spf1 mx include:_spf.old.example include:spf.protection.outlook.com ~all"
        );
        assert_eq!(
            merge_spf("v=spf1 include:spf.protection.outlook.com -all", req),
            "v=spf1 include:spf.protection.outlook.com -all"
        );
        assert_eq!(
            merge_spf("v=spf1 a", req),
            "v=spf1 a include:spf.protection.outlook.com -all"
        );
    }
}
