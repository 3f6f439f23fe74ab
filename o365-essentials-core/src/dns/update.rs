//! Automatic apply: RFC 2136 dynamic updates signed with TSIG (hmac-sha256, RFC 8945),
//! for a zone the company's own DNS server hosts. Idempotent (records already there are
//! left as they are) and conservative: records it did not create are never removed,
//! except the old SPF record when asked to replace it with the merged one.

// Transport, store and demo code keep wall-clock time of their own (token expiry,
// TSIG, timestamps); only the engine must read it from its Clock.
#![allow(clippy::disallowed_methods)]

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
#[derive(schemars::JsonSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

const HMAC_SHA256: &str = "hmac-sha256";
const TSIG_TYPE: u16 = 250;

fn hmac_key(key: &TsigKey) -> Result<ring::hmac::Key> {
    let secret = BASE64
        .decode(key.secret.expose_secret().trim())
        .map_err(|_| Error::new(ErrorCode::InvalidConfig, "the TSIG secret is not base64"))?;
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
}

/// The TSIG variables (RFC 8945 §4.3.3): key name, class ANY, TTL 0, algorithm, time,
/// fudge, error, other data.
fn tsig_variables(key_name: &[u8], time: &[u8], fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
    let mut vars = Vec::new();
    vars.extend(key_name);
    vars.extend([0x00, 0xFF]); // class ANY
    vars.extend([0, 0, 0, 0]); // TTL
    vars.extend(wire_name(HMAC_SHA256));
    vars.extend(time);
    vars.extend(fudge.to_be_bytes());
    vars.extend(error.to_be_bytes());
    vars.extend((other.len() as u16).to_be_bytes());
    vars.extend(other);
    vars
}

/// Appends a TSIG record (RFC 8945) to an encoded message; returns it and its MAC. A
/// response is signed over the request's MAC first (`request_mac`).
fn sign(
    mut msg: Vec<u8>,
    key: &TsigKey,
    now: u64,
    request_mac: Option<&[u8]>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let hkey = hmac_key(key)?;
    let key_name = wire_name(&key.name);
    let time = &now.to_be_bytes()[2..8];
    let fudge = 300u16;
    let mut ctx = ring::hmac::Context::with_key(&hkey);
    if let Some(m) = request_mac {
        ctx.update(&(m.len() as u16).to_be_bytes());
        ctx.update(m);
    }
    ctx.update(&msg);
    ctx.update(&tsig_variables(&key_name, time, fudge, 0, &[]));
    let mac = ctx.sign().as_ref().to_vec();
    let id = [
        msg.first().copied().unwrap_or(0),
        msg.get(1).copied().unwrap_or(0),
    ];
    let mut rdata = Vec::new();
    rdata.extend(wire_name(HMAC_SHA256));
    rdata.extend(time);
    rdata.extend(fudge.to_be_bytes());
    rdata.extend((mac.len() as u16).to_be_bytes());
    rdata.extend(&mac);
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
    Ok((msg, mac))
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Reads a (possibly compressed) name: its lower-case uncompressed wire form and where
/// the name ends in the message.
fn read_name(msg: &[u8], start: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut pos = start;
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        if len == 0 {
            out.push(0);
            return Some((out, end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let target = usize::from(u16_at(msg, pos)? & 0x3FFF);
            end.get_or_insert(pos + 2);
            pos = target;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
        out.push(len);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
        pos += 1 + usize::from(len);
    }
    None
}

/// The TSIG record at the end of a received message.
struct TsigRecord {
    start: usize,
    key_name: Vec<u8>,
    algorithm: Vec<u8>,
    time: [u8; 6],
    fudge: u16,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

fn find_tsig(msg: &[u8]) -> Option<TsigRecord> {
    let count = |at| u16_at(msg, at).map(usize::from);
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let total = an + ns + ar;
    for i in 0..total {
        let start = pos;
        let (owner, p) = read_name(msg, pos)?;
        let rtype = u16_at(msg, p)?;
        let rdlen = usize::from(u16_at(msg, p + 8)?);
        let rdata = p + 10;
        let end = rdata + rdlen;
        if end > msg.len() {
            return None;
        }
        if i + 1 == total && ar > 0 && rtype == TSIG_TYPE && end == msg.len() {
            let (algorithm, q) = read_name(msg, rdata)?;
            let time: [u8; 6] = msg.get(q..q + 6)?.try_into().ok()?;
            let fudge = u16_at(msg, q + 6)?;
            let mac_len = usize::from(u16_at(msg, q + 8)?);
            let mac = msg.get(q + 10..q + 10 + mac_len)?.to_vec();
            let r = q + 10 + mac_len;
            let other_len = usize::from(u16_at(msg, r + 4)?);
            return Some(TsigRecord {
                start,
                key_name: owner,
                algorithm,
                time,
                fudge,
                mac,
                original_id: u16_at(msg, r)?,
                error: u16_at(msg, r + 2)?,
                other: msg.get(r + 6..r + 6 + other_len)?.to_vec(),
            });
        }
        pos = end;
    }
    None
}

/// Checks that a response is signed with the key over the request's MAC (RFC 8945 §5.3)
/// and was signed within its fudge of `now`.
pub(crate) fn verify_response(
    resp: &[u8],
    key: &TsigKey,
    request_mac: &[u8],
    now: u64,
) -> std::result::Result<(), &'static str> {
    let t = find_tsig(resp).ok_or("the answer carries no TSIG signature")?;
    if t.key_name != wire_name(&key.name) || t.algorithm != wire_name(HMAC_SHA256) {
        return Err("the answer is signed with another key");
    }
    let mut unsigned = resp.get(..t.start).ok_or("a truncated answer")?.to_vec();
    let arcount = u16_at(&unsigned, 10)
        .ok_or("a truncated answer")?
        .saturating_sub(1);
    unsigned[10..12].copy_from_slice(&arcount.to_be_bytes());
    unsigned[0..2].copy_from_slice(&t.original_id.to_be_bytes());
    let hkey = hmac_key(key).map_err(|_| "the TSIG secret is not base64")?;
    let mut data = Vec::with_capacity(unsigned.len() + 128);
    data.extend((request_mac.len() as u16).to_be_bytes());
    data.extend(request_mac);
    data.extend(&unsigned);
    data.extend(tsig_variables(
        &t.key_name,
        &t.time,
        t.fudge,
        t.error,
        &t.other,
    ));
    ring::hmac::verify(&hkey, &data, &t.mac).map_err(|_| "the answer's TSIG signature is wrong")?;
    let mut secs = [0u8; 8];
    secs[2..].copy_from_slice(&t.time);
    if u64::from_be_bytes(secs).abs_diff(now) > u64::from(t.fudge) {
        return Err("the answer's TSIG time is outside its fudge");
    }
    Ok(())
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
    send_update(server, zone, key, &deletes, &adds).await?;
    out.added = adds;
    Ok(out)
}

/// Removes `records` from `zone` (RFC 2136, signed with `key`) where they are present
/// (the domain's verification records, once the tenant has verified it); returns those
/// removed.
///
/// # Errors
/// As [`apply_records`].
pub async fn remove_records(
    server: SocketAddr,
    zone: &str,
    key: &TsigKey,
    records: &[DnsRecord],
) -> Result<Vec<DnsRecord>> {
    let present: Vec<DnsRecord> = check_records(server, records)
        .await?
        .into_iter()
        .filter(|c| c.status == RecordStatus::Present)
        .map(|c| c.record)
        .collect();
    if !present.is_empty() {
        send_update(server, zone, key, &present, &[]).await?;
    }
    Ok(present)
}

/// One signed DNS UPDATE of `zone`: `deletes` removed, `adds` added, atomically.
async fn send_update(
    server: SocketAddr,
    zone: &str,
    key: &TsigKey,
    deletes: &[DnsRecord],
    adds: &[DnsRecord],
) -> Result<()> {
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(name(zone)?)
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    msg.add_query(zq);
    for d in deletes {
        let mut rec = to_record(d)?;
        rec.set_dns_class(DNSClass::NONE).set_ttl(0);
        msg.add_name_server(rec);
    }
    for a in adds {
        msg.add_name_server(to_record(a)?);
    }
    let bytes = msg
        .to_vec()
        .map_err(|_| Error::internal("the DNS UPDATE could not be encoded"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let request_id = msg.id();
    let (signed, request_mac) = sign(bytes, key, now, None)?;
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
    // Only the server's answer to this update counts: datagrams from elsewhere or with
    // another id are dropped, and a success must carry the key's signature.
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let (n, resp) = loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
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
        if from != server {
            continue;
        }
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.id() == request_id && m.message_type() == MessageType::Response => {
                break (n, m);
            }
            _ => continue,
        }
    };
    match resp.response_code() {
        ResponseCode::NoError => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
            verify_response(&buf[..n], key, &request_mac, now).map_err(|why| {
                Error::new(
                    ErrorCode::UnexpectedResponse,
                    format!(
                        "{server} answered the update of {zone} with success, but {why}; the records may not have been added — check the zone"
                    ),
                )
            })?;
            Ok(())
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
        let header = vec![0x12, 0x34, 0x28, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
        let (signed, mac) = sign(header.clone(), &key, 1_700_000_000, None).expect("sign");
        assert_eq!(&signed[10..12], &[0, 1], "ARCOUNT counts the TSIG record");
        assert!(signed.len() > header.len() + 32 + 20);
        assert_eq!(&signed[12..15], &[1, b'k', 0]);
        assert_eq!(mac.len(), 32);
        let t = find_tsig(&signed).expect("our own record is found");
        assert_eq!((t.start, t.original_id, t.mac), (12, 0x1234, mac));
    }

    #[test]
    fn responses_must_be_signed_with_the_key_over_the_request() {
        let key = TsigKey {
            name: "o365-update".into(),
            secret: SecretString::from("c2VjcmV0LXNlY3JldC1zZWNyZXQ="),
        };
        let now = 1_700_000_000;
        let request = vec![0x12, 0x34, 0x28, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let (_, request_mac) = sign(request, &key, now, None).unwrap();
        // An answer: QR set, NOERROR, the zone section kept.
        let mut answer = vec![0x12, 0x34, 0xA8, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        answer.extend(wire_name("contoso.example"));
        answer.extend([0, 6, 0, 1]);
        let (signed, _) = sign(answer.clone(), &key, now + 1, Some(&request_mac)).unwrap();
        assert_eq!(
            verify_response(&signed, &key, &request_mac, now + 2),
            Ok(())
        );

        let mut tampered = signed.clone();
        tampered[3] ^= 0x05; // the rcode
        assert!(verify_response(&tampered, &key, &request_mac, now + 2).is_err());
        assert!(
            verify_response(&answer, &key, &request_mac, now).is_err(),
            "unsigned"
        );
        let other = TsigKey {
            name: "o365-update".into(),
            secret: SecretString::from("b3RoZXI="),
        };
        assert!(verify_response(&signed, &other, &request_mac, now).is_err());
        let renamed = TsigKey {
            name: "another".into(),
            secret: key.secret.clone(),
        };
        assert!(verify_response(&signed, &renamed, &request_mac, now).is_err());
        assert!(
            verify_response(&signed, &key, &[0u8; 32], now).is_err(),
            "another request"
        );
        assert!(
            verify_response(&signed, &key, &request_mac, now + 1_000).is_err(),
            "stale"
        );
        for cut in [0, 5, 12, signed.len() - 1] {
            assert!(verify_response(&signed[..cut], &key, &request_mac, now).is_err());
        }
    }
}
