//! Looks up a domain's verification record in a real DNS server (the tests' BIND9), the
//! way the tenant does before it verifies a domain.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let qname = Name::from_ascii(format!("{name}.")).ok()?;
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(qname, rtype));
    let bytes = msg.to_vec().ok()?;
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().ok()?
    } else {
        "[::1]:0".parse().ok()?
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.send_to(&bytes, server).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    let resp = Message::from_vec(&buf[..n]).ok()?;
    (resp.id() == msg.id()).then_some(resp)
}

/// Whether `name` has the TXT `expected_txt` or an MX pointing at `expected_mx`.
pub(crate) async fn has_verification_record(
    server: SocketAddr,
    name: &str,
    expected_txt: &str,
    expected_mx: &str,
) -> bool {
    if let Some(resp) = query(server, name, RecordType::TXT).await {
        for rec in resp.answers() {
            if let RData::TXT(txt) = rec.data() {
                let text: String = txt
                    .txt_data()
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect();
                if text == expected_txt {
                    return true;
                }
            }
        }
    }
    if let Some(resp) = query(server, name, RecordType::MX).await {
        for rec in resp.answers() {
            if let RData::MX(mx) = rec.data()
                && mx
                    .exchange()
                    .to_ascii()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(expected_mx)
            {
                return true;
            }
        }
    }
    false
}
