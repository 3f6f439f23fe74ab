//! DNS records a tenant asks for (verification and service records).

use serde::{Deserialize, Serialize};

/// Why a record is needed.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordPurpose {
    /// Proves ownership of the domain.
    Verification,
    /// Makes a service (mail, Teams, device enrolment...) work.
    Service,
}

/// The typed data of a DNS record.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum RecordData {
    /// Mail exchanger.
    Mx {
        /// `mailExchange` target host.
        exchange: String,
        /// `preference` (lower wins).
        preference: u16,
    },
    /// Text.
    Txt {
        /// The text.
        text: String,
    },
    /// Alias.
    Cname {
        /// `canonicalName`.
        target: String,
    },
    /// Service locator.
    Srv {
        /// `service` (e.g. `_sip`).
        service: String,
        /// `protocol` (e.g. `_tls`).
        protocol: String,
        /// `priority`.
        priority: u16,
        /// `weight`.
        weight: u16,
        /// `port`.
        port: u16,
        /// `nameTarget`.
        target: String,
    },
}

impl RecordData {
    /// The record type as in a zone file (`MX`, `TXT`, `CNAME`, `SRV`).
    pub fn type_name(&self) -> &'static str {
        match self {
            RecordData::Mx { .. } => "MX",
            RecordData::Txt { .. } => "TXT",
            RecordData::Cname { .. } => "CNAME",
            RecordData::Srv { .. } => "SRV",
        }
    }
}

/// One DNS record for a domain.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The fully qualified owner name, without a trailing dot (`autodiscover.contoso.com`).
    pub name: String,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The record data.
    #[serde(flatten)]
    pub data: RecordData,
    /// Verification or service.
    pub purpose: RecordPurpose,
    /// The service it belongs to (`Email`, `OfficeCommunicationsOnline`, ...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_service: Option<String>,
    /// `isOptional`.
    #[serde(default)]
    pub optional: bool,
}
