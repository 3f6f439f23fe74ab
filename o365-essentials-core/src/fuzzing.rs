//! Entry points for coverage-guided fuzzing (`fuzz/`, cargo fuzz on the nightly
//! toolchain) and for replaying its corpus on the ordinary toolchain
//! (`tests/fuzz_corpus.rs`): each takes raw bytes from outside — a configuration, an
//! operation's parameters, an answer from Graph, Exchange or SharePoint, an LDAP entry, a
//! DNS answer, the Samba hook's LDIF, a results file — and hands them to the code that
//! reads them. None may panic; every failure is a typed error (which they drop).
//!
//! Not part of the stable API.

use std::collections::HashMap;

use serde_json::Value;

use crate::config::IntegrationConfig;

/// A fuzz target: raw bytes in, nothing out (a panic is the finding).
pub type Target = fn(&[u8]);

/// Every target: its name (the folder of its corpus) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("operation_params", operation_params),
    ("service_answer", service_answer),
    ("ldap_entry", ldap_entry),
    ("dns_answer", dns_answer),
    ("hook_ldif", hook_ldif),
    ("results_file", results_file),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A configuration (JSON text).
pub fn config(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = IntegrationConfig::from_json(t);
    }
}

/// An operation's parameters: the operation's name on the first line (an index into the
/// table when it is one byte), the parameters' JSON text after it.
pub fn operation_params(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let (name, params) = t.split_once('\n').unwrap_or((t, ""));
    let name = match name.as_bytes() {
        [b] => crate::ops::OPERATIONS[*b as usize % crate::ops::OPERATIONS.len()].name,
        _ => name,
    };
    let _ = crate::ops::check_params(name, params);
}

/// A JSON answer of Graph, Exchange's admin API or SharePoint REST, through every mapper
/// that reads one (the first byte picks the HTTP status of the error mappers).
pub fn service_answer(data: &[u8]) {
    let Some((status, rest)) = data.split_first() else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let status = 200 + u16::from(*status) * 2;
    let _ = crate::graph::map::account(&v);
    let _ = crate::graph::map::sku(&v);
    let _ = crate::graph::map::domain(&v);
    let _ = crate::graph::map::organization(&v);
    let _ = crate::graph::map::dns_record(&v, crate::model::RecordPurpose::Service);
    let _ = crate::graph::map::graph_error(status, &v, Some("req"), "fuzz");
    let _ = crate::exchange::map::group(&v);
    let _ = crate::exchange::map::policy(&v);
    let _ = crate::exchange::map::exchange_error(status, &v, None, "fuzz");
    let _ = crate::sharepoint::map::site(&v);
    let _ = crate::sharepoint::map::group_header(&v);
    let _ = crate::sharepoint::map::group_users(&v);
    let _ = crate::sharepoint::map::versioning(&v);
    let _ = crate::sharepoint::map::library(&v, None, None);
    if let Some(lists) = v.get("value").and_then(Value::as_array) {
        let _ = crate::sharepoint::map::libraries(lists, &v, None);
    }
    let _ = crate::sharepoint::map::rest_error(status, &v, "", None, "fuzz");
}

/// An LDAP entry: `name: value` lines (a value after `name:: ` is taken as raw bytes for
/// the binary attributes), read as a user and as a group.
pub fn ldap_entry(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let mut attrs: HashMap<String, Vec<String>> = HashMap::new();
    let mut bin: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for line in t.lines() {
        if let Some((name, value)) = line.split_once(":: ") {
            bin.entry(name.to_string())
                .or_default()
                .push(value.as_bytes().to_vec());
        } else if let Some((name, value)) = line.split_once(": ") {
            attrs
                .entry(name.to_string())
                .or_default()
                .push(value.to_string());
        }
    }
    let entry = crate::ldap::map::Entry::new("CN=fuzz,DC=example,DC=com", &attrs, &bin);
    let _ = crate::ldap::map::user(&entry);
    let _ = crate::ldap::map::group(&entry);
}

/// A DNS answer: decoded, and its TSIG signature verified with a fixed key.
pub fn dns_answer(data: &[u8]) {
    let _ = hickory_proto::op::Message::from_vec(data);
    let key = crate::dns::TsigKey {
        name: "o365-update".into(),
        secret: secrecy::SecretString::from("c2VjcmV0LWtleS1mb3ItZnV6emluZy0wMTIzNDU2Nzg5"),
    };
    let _ = crate::dns::update::verify_response(data, &key, &[7u8; 32], 1_800_000_000);
}

/// The Samba hook's LDIF.
pub fn hook_ldif(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = crate::engine::parse_hook_ldif(t);
    }
}

/// A results file fed back for a retry.
pub fn results_file(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = crate::engine::failed_users_in(t, "fuzz.json");
    }
}
