//! Exchange Online: distribution groups and ActiveSync mobile devices.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An Exchange distribution group.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionGroup {
    /// The group's identity (Exchange `Guid` or `Identity`).
    pub id: String,
    /// `Name` (at most 64 characters).
    pub name: String,
    /// `Alias`.
    pub alias: String,
    /// `DisplayName`.
    pub display_name: String,
    /// `PrimarySmtpAddress`.
    pub primary_smtp_address: String,
    /// Whether people outside the organisation may send to it
    /// (`RequireSenderAuthenticationEnabled` = false).
    pub allow_external_senders: bool,
    /// Members' primary SMTP addresses.
    #[serde(default)]
    pub members: Vec<String>,
    /// The same members' online user names (UPNs), in the same order — what members are
    /// given as, so a caller can compare what it set with what it reads.
    #[serde(default)]
    pub member_user_names: Vec<String>,
}

/// What is needed to create a distribution group.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewDistributionGroup {
    /// `Name` (at most 64 characters).
    pub name: String,
    /// `Alias`.
    pub alias: String,
    /// `DisplayName`; `name` when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `PrimarySmtpAddress` on a verified domain.
    pub primary_smtp_address: String,
    /// Allow senders outside the organisation.
    #[serde(default)]
    pub allow_external_senders: bool,
    /// Initial members (UPNs or SMTP addresses).
    #[serde(default)]
    pub members: Vec<String>,
}

/// A change to a distribution group; `None` leaves a property as it is.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DistributionGroupUpdate {
    /// A new `DisplayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Allow senders outside the organisation (`RequireSenderAuthenticationEnabled` = false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_external_senders: Option<bool>,
}

/// A limit that can also be "unlimited". Written as `"unlimited"` or `{"value": n}`; read
/// from those or from a plain number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit<T> {
    /// No limit.
    Unlimited,
    /// This value.
    Value(T),
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Limit<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        const EXPECTED: &str = "expected a number, \"unlimited\" or {\"value\": <number>}";
        let number = |v: serde_json::Value| {
            serde_json::from_value::<T>(v).map_err(|e| D::Error::custom(format!("{e}; {EXPECTED}")))
        };
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if s == "unlimited" => Ok(Limit::Unlimited),
            v @ serde_json::Value::Number(_) => number(v).map(Limit::Value),
            serde_json::Value::Object(mut m) if m.len() == 1 && m.contains_key("value") => {
                number(m.remove("value").unwrap_or_default()).map(Limit::Value)
            }
            other => Err(D::Error::custom(format!("`{other}`: {EXPECTED}"))),
        }
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Limit<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Limit".into()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        format!("{}::Limit<{}>", module_path!(), T::schema_id()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<T>();
        let mut variants = vec![
            schemars::json_schema!({
                "description": "No limit.",
                "type": "string",
                "const": "unlimited"
            }),
            schemars::json_schema!({
                "description": "This value.",
                "type": "object",
                "properties": { "value": value },
                "required": ["value"],
                "additionalProperties": false
            }),
        ];
        // Read also as a plain number; always written as `{"value": n}`.
        if matches!(
            generator.contract(),
            schemars::generate::Contract::Deserialize
        ) {
            let mut plain = generator.subschema_for::<T>();
            plain.insert(
                "description".into(),
                "This value, as a plain number.".into(),
            );
            variants.push(plain);
        }
        schemars::json_schema!({
            "description": "A limit that can also be \"unlimited\".",
            "oneOf": variants
        })
    }
}

/// The default mobile device mailbox policy (the parts the dashboard shows).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePolicy {
    /// `PasswordEnabled`.
    pub password_enabled: bool,
    /// `MinPasswordLength`, 1–16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_password_length: Option<u8>,
    /// `MaxPasswordFailedAttempts`, 4–16 or unlimited.
    pub max_password_failed_attempts: Limit<u8>,
    /// `MaxInactivityTimeLock` in minutes, 1–60 or unlimited.
    pub max_inactivity_lock_minutes: Limit<u8>,
    /// `AlphanumericPasswordRequired`.
    pub alphanumeric_password_required: bool,
}

/// What an access rule does to matching devices.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    /// Allow.
    Allow,
    /// Block.
    Block,
    /// Quarantine until an administrator decides.
    Quarantine,
}

/// Which device property an access rule matches.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceCharacteristic {
    /// `DeviceModel`.
    DeviceModel,
    /// `DeviceType`.
    DeviceType,
    /// `DeviceOS`.
    #[serde(rename = "DeviceOS")]
    DeviceOs,
    /// `UserAgent`.
    UserAgent,
    /// `XMSWLHeader`.
    #[serde(rename = "XMSWLHeader")]
    XmsWlHeader,
}

/// An ActiveSync device access rule.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    /// The rule's identity.
    pub id: String,
    /// What it does.
    pub access_level: AccessLevel,
    /// What it matches.
    pub characteristic: DeviceCharacteristic,
    /// The exact value matched.
    pub query_string: String,
}

/// A device's current access state.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceAccessState {
    /// Allowed to sync.
    Allowed,
    /// Blocked.
    Blocked,
    /// Quarantined.
    Quarantined,
    /// Not yet decided.
    DeviceDiscovery,
}

/// Where a remote wipe stands.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeStatus {
    /// No wipe requested.
    None,
    /// Requested, the device has not acknowledged.
    Pending,
    /// The device acknowledged the wipe.
    Succeeded,
    /// The request was cancelled before the device acknowledged.
    Cancelled,
}

/// What a wipe erases.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeKind {
    /// Factory reset of the whole device.
    Full,
    /// Only the mailbox data of this account (`-AccountOnly`).
    AccountOnly,
}

/// A user's mobile device.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MobileDevice {
    /// The device's identity.
    pub id: String,
    /// The owner's UPN.
    pub user_principal_name: String,
    /// `DeviceModel`.
    pub model: String,
    /// `DeviceType`.
    pub device_type: String,
    /// `DeviceOS`.
    pub os: String,
    /// `FriendlyName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// Access state.
    pub access_state: DeviceAccessState,
    /// Wipe status.
    pub wipe_status: WipeStatus,
    /// When the device last synced.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<crate::json::Rfc3339>")]
    pub last_sync: Option<OffsetDateTime>,
}

/// What is needed to add an access rule.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccessRule {
    /// What it does.
    pub access_level: AccessLevel,
    /// What it matches.
    pub characteristic: DeviceCharacteristic,
    /// The exact value matched (e.g. `iPhone15,2`).
    pub query_string: String,
}
