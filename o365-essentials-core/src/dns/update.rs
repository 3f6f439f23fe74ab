//! Automatic apply: RFC 2136 dynamic updates signed with TSIG (hmac-sha256, RFC 8945),
//! for a zone the company's own DNS server hosts. Idempotent (records already there are
//! left as they are) and conservative: records it did not create are never removed,
//! except the old SPF record when asked to replace it with the merged one.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, MX, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::check::{RecordStatus, check_records, merge_spf};
use crate::error::{Error, ErrorCode, Result};
use crate::model::{DnsRecord, RecordData};

/// A TSIG key (hmac-sha256), as `tsig-keygen` prints it.
#[derive(Clone)]
pub struct TsigKey {
    /// The key's name.
    pub name: String,
    /// The base64 secret.
    pub secret: SecretString,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    /// Reads `key "name" { algorithm hmac-sha256; secret "..."; };`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] when it is not such a key.
    pub fn from_bind_conf(text: &str) -> Result<TsigKey> {
        let bad = |m: &str| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("not a TSIG key definition: {m}"),
            )
        };
        let quoted = |after: &str| -> Option<String> {
            let i = text.find(after)? + after.len();
            let rest = &text[i..];
            let start = rest.find('"')? + 1;
            let end = start + rest[start..].find('"')?;
            Some(rest[start..end].to_string())
        };
        let name = quoted("key").ok_or_else(|| bad("no key name"))?;
        if !text.contains("hmac-sha256") {
            return Err(bad("only hmac-sha256 keys are supported"));
        }
        let secret = quoted("secret").ok_or_else(|| bad("no secret"))?;
        BASE64
            .decode(secret.trim())
            .map_err(|_| bad("the secret is not base64"))?;
        Ok(TsigKey {
            name,
            secret: SecretString::from(secret),
        })
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// Records added.
    pub added: Vec<DnsRecord>,
    /// Records already in place (nothing done).
    pub already_present: Vec<DnsRecord>,
    /// Records not applied, with why (something else is there and was not ours).
    pub left_alone: Vec<(DnsRecord, String)>,
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend(label.to_ascii_lowercase().as_bytes());
    }
    out.push(0);
    out
}

/// Appends a TSIG record (RFC 8945) to an encoded message.
fn sign(mut msg: Vec<u8>, key: &TsigKey, now: u64) -> Result<Vec<u8>> {
    let secret = BASE64
        .decode(key.secret.expose_secret().trim())
        .map_err(|_| Error::new(ErrorCode::InvalidConfig, "the TSIG secret is not base64"))?;
    let hkey = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let key_name = wire_name(&key.name);
    let alg = wire_name("hmac-sha256");
    let time = &now.to_be_bytes()[2..8];
    let fudge = 300u16.to_be_bytes();
    let mut vars = Vec::new();
    vars.extend(&key_name);
    vars.extend([0x00, 0xFF]); // class ANY
    vars.extend([0, 0, 0, 0]); // TTL
    vars.extend(&alg);
    vars.extend(time);
    vars.extend(fudge);
    vars.extend([0, 0]); // error
    vars.extend([0, 0]); // other len
    let mut ctx = ring::hmac::Context::with_key(&hkey);
    ctx.update(&msg);
    ctx.update(&vars);
    let mac = ctx.sign();
    let id = [
        msg.first().copied().unwrap_or(0),
        msg.get(1).copied().unwrap_or(0),
    ];
    let mut rdata = Vec::new();
    rdata.extend(&alg);
    rdata.extend(time);
    rdata.extend(fudge);
    rdata.extend((mac.as_ref().len() as u16).to_be_bytes());
    rdata.extend(mac.as_ref());
    rdata.extend(id);
    rdata.extend([0, 0, 0, 0]); // error, other len
    msg.extend(&key_name);
    msg.extend([0x00, 0xFA, 0x00, 0xFF, 0, 0, 0, 0]); // type TSIG, class ANY, TTL 0
    msg.extend((rdata.len() as u16).to_be_bytes());
    msg.extend(rdata);
    if msg.len() < 12 {
        return Err(Error::internal("a DNS message shorter than its header"));
    }
    let arcount = u16::from_be_bytes([msg[10], msg[11]]).saturating_add(1);
    msg[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(msg)
}

fn name(n: &str) -> Result<Name> {
    Name::from_ascii(format!("{}.", n.trim_end_matches('.'))).map_err(|_| {
        Error::new(
            ErrorCode::InvalidDomainName,
            format!("`{n}` is not a DNS name"),
        )
    })
}

fn to_record(r: &DnsRecord) -> Result<Record> {
    let rdata = match &r.data {
        RecordData::Txt { text } => RData::TXT(TXT::new(
            text.as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect(),
        )),
        RecordData::Mx {
            exchange,
            preference,
        } => RData::MX(MX::new(*preference, name(exchange)?)),
        RecordData::Cname { target } => RData::CNAME(CNAME(name(target)?)),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
            ..
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
    };
    Ok(Record::from_rdata(name(&r.name)?, r.ttl, rdata))
}

/// Adds the missing records to `zone` on `server` with one signed UPDATE.
///
/// # Errors
/// [`ErrorCode::Auth`] when the server rejects the TSIG key;
/// [`ErrorCode::DnsUpdateRefused`] when it refuses updates for the zone;
/// [`ErrorCode::Transport`] when it does not answer.
pub async fn apply_records(
    server: SocketAddr,
    zone: &str,
    key: &TsigKey,
    records: &[DnsRecord],
    replace_spf: bool,
) -> Result<ApplyOutcome> {
    let checks = check_records(server, records).await?;
    let mut out = ApplyOutcome::default();
    let mut adds = Vec::new();
    let mut deletes = Vec::new();
    for c in checks {
        match (&c.status, &c.record.data) {
            (RecordStatus::Present, _) => out.already_present.push(c.record),
            (RecordStatus::Missing, _) => adds.push(c.record),
            (RecordStatus::Different { found }, RecordData::Txt { text })
                if text.starts_with("v=spf1") && found.iter().all(|f| f.starts_with("v=spf1")) =>
            {
                if replace_spf {
                    let old = found.first().cloned().unwrap_or_default();
                    let mut merged = c.record.clone();
                    merged.data = RecordData::Txt {
                        text: merge_spf(&old, text),
                    };
                    let mut gone = c.record.clone();
                    gone.data = RecordData::Txt { text: old };
                    deletes.push(gone);
                    adds.push(merged);
                } else {
                    out.left_alone.push((c.record, c.advice));
                }
            }
            (RecordStatus::Different { .. }, RecordData::Txt { .. } | RecordData::Mx { .. })
                if !c.advice.contains("CNAME") =>
            {
                adds.push(c.record)
            }
            (RecordStatus::Different { .. }, _) => out.left_alone.push((c.record, c.advice)),
        }
    }
    if adds.is_empty() && deletes.is_empty() {
        return Ok(out);
    }
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(name(zone)?)
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    msg.add_query(zq);
    for d in &deletes {
        let mut rec = to_record(d)?;
        rec.set_dns_class(DNSClass::NONE).set_ttl(0);
        msg.add_name_server(rec);
    }
    for a in &adds {
        msg.add_name_server(to_record(a)?);
    }
    let bytes = msg
        .to_vec()
        .map_err(|_| Error::internal("the DNS UPDATE could not be encoded"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let signed = sign(bytes, key, now)?;
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(|e| {
        Error::new(
            ErrorCode::Transport,
            format!("updating {zone} on {server}: {e}"),
        )
    })?;
    sock.send_to(&signed, server).await.map_err(|e| {
        Error::new(
            ErrorCode::Transport,
            format!("updating {zone} on {server}: {e}"),
        )
    })?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .map_err(|_| {
            Error::new(
                ErrorCode::Transport,
                format!("updating {zone}: {server} did not answer"),
            )
        })?
        .map_err(|e| {
            Error::new(
                ErrorCode::Transport,
                format!("updating {zone} on {server}: {e}"),
            )
        })?;
    let resp = Message::from_vec(&buf[..n]).map_err(|_| {
        Error::new(
            ErrorCode::UnexpectedResponse,
            "an undecodable DNS UPDATE answer",
        )
    })?;
    match resp.response_code() {
        ResponseCode::NoError => {
            out.added = adds;
            Ok(out)
        }
        ResponseCode::NotAuth => Err(Error::new(
            ErrorCode::Auth,
            format!(
                "{server} rejected the TSIG key `{}` for {zone} (NOTAUTH): check the key name and secret",
                key.name
            ),
        )),
        ResponseCode::Refused => Err(Error::new(
            ErrorCode::DnsUpdateRefused,
            format!(
                "{server} refused updates for {zone}: allow-update must name the key `{}`",
                key.name
            ),
        )),
        other => Err(Error::new(
            ErrorCode::DnsUpdateRefused,
            format!("{server} answered {other} to the update of {zone}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_tsig_keygen_output_and_hide_their_secret() {
        let k = TsigKey::from_bind_conf("key \"o365-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\";\n};\n").expect("key");
        assert_eq!(k.name, "o365-update");
        assert!(!format!("{k:?}").contains("c2VjcmV0"));
        assert!(
            TsigKey::from_bind_conf("key \"x\" { algorithm hmac-md5; secret \"YQ==\"; };").is_err()
        );
        assert!(TsigKey::from_bind_conf("nonsense").is_err());
    }

    #[test]
    fn signing_appends_one_tsig_record() {
        let key = TsigKey {
            name: "k".into(),
            secret: SecretString::from("c2VjcmV0"),
        };
        let header = vec![0x12, 0x34, 0x28, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let signed = sign(header.clone(), &key, 1_700_000_000).expect("sign");
        assert_eq!(&signed[10..12], &[0, 1], "ARCOUNT counts the TSIG record");
        assert!(signed.len() > header.len() + 32 + 20);
        assert_eq!(&signed[12..15], &[1, b'k', 0]);
    }
}
