//! The one table of operations: every task of the engine as an operation with a stable
//! name, a parameters shape and a result shape (serde), dispatched by
//! [`Integration::call`]. The C ABI, the Python package and the command line translate
//! this table; they add nothing. Each row is one call on one view of the integration
//! (`i.accounts().assign(..)`), or on the root for integration control
//! (`i.status()`); a unit test keeps it so. Wire rules: unknown parameter fields are
//! [`ErrorCode::UnknownField`] naming the field; results only ever gain fields.
//!
//! ```no_run
//! # async fn demo(integration: o365_essentials_core::engine::Integration) -> o365_essentials_core::Result<()> {
//! use o365_essentials_core::engine::Control;
//! let status = integration.call("status", serde_json::json!({}), &Control::none()).await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::from_value_strict;
use crate::engine::{BulkCreateRequest, Control, ImportRequest, Integration, SyncOptions};
pub use crate::engine::{LinkedUser, RecordsFile, ZoneFragment};
use crate::error::{Error, ErrorCode, Result};
use crate::graph::Credential;
use crate::model::{
    AccessLevel, DevicePolicy, DistributionGroupUpdate, DomainService, LicenceAssignment,
    LocalUser, NewAccessRule, NewDistributionGroup, NewLibrary, NewLocalUser, ObjectGuid,
    OnlineAccount, OnlineAccountId, Plan, SiteRole, WipeKind,
};

/// One operation of the table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OperationInfo {
    /// The stable name (`plan_bulk_create`).
    pub name: &'static str,
    /// The Rust type of its parameters (a JSON object).
    pub params: &'static str,
    /// The Rust type of its result.
    pub result: &'static str,
    /// Whether it is long work: it takes cancellation and reports events.
    pub long_running: bool,
    /// What it does.
    pub summary: &'static str,
    /// The names of its parameter fields (read from the parameters type).
    #[serde(skip)]
    pub field_names: fn() -> &'static [&'static str],
    /// Adds the JSON Schema of its result to a generator and returns it (a reference
    /// into the generator's definitions for named types).
    #[serde(skip)]
    pub result_schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// The same for its parameters (as they are read).
    #[serde(skip)]
    pub params_schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl OperationInfo {
    /// The names of its parameter fields, in declaration order.
    pub fn fields(&self) -> &'static [&'static str] {
        (self.field_names)()
    }
}

/// The field names of a struct type, read from its `Deserialize` implementation (empty
/// for a type that is not a plain struct).
pub fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};
    use std::cell::Cell;
    struct Probe<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(
            self,
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(Self::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let cell = Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&cell));
    cell.get()
}

/// The table as JSON: for each operation its name, parameters type and fields, result
/// type, whether it is long work, and what it does. What the C ABI's
/// `o365_operations_json` and the bindings' generators read.
pub fn operations_json() -> Value {
    Value::Array(
        OPERATIONS
            .iter()
            .map(|o| {
                serde_json::json!({
                    "name": o.name,
                    "params": o.params.replace(' ', "").replace("crate::", ""),
                    "fields": o.fields(),
                    "result": o.result.replace(' ', "").replace("crate::", ""),
                    "long_running": o.long_running,
                    "summary": o.summary,
                })
            })
            .collect(),
    )
}

/// The JSON Schema (2020-12) of every operation's parameters, as read:
/// `{"$defs": {...}, "params": {"<operation>": <schema>}}`. What the command line reads
/// to know which options take text, numbers, lists or objects.
pub fn params_schemas_json() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let params: serde_json::Map<String, Value> = OPERATIONS
        .iter()
        .map(|o| {
            (
                o.name.to_owned(),
                (o.params_schema)(&mut generator).to_value(),
            )
        })
        .collect();
    let defs: serde_json::Map<String, Value> =
        generator.take_definitions(true).into_iter().collect();
    serde_json::json!({ "$defs": defs, "params": params })
}

/// The JSON Schema (2020-12) of every operation's result, as serialized:
/// `{"$defs": {...}, "results": {"<operation>": <schema>}}`. What the bindings'
/// generators read to give results their types (the Python package's dataclasses).
pub fn result_schemas_json() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let results: serde_json::Map<String, Value> = OPERATIONS
        .iter()
        .map(|o| {
            (
                o.name.to_owned(),
                (o.result_schema)(&mut generator).to_value(),
            )
        })
        .collect();
    let defs: serde_json::Map<String, Value> =
        generator.take_definitions(true).into_iter().collect();
    serde_json::json!({ "$defs": defs, "results": results })
}

fn schema_of<T: schemars::JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// No parameters: `{}` (or `null`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

macro_rules! params {
    ($( $(#[$doc:meta])* $name:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* $(,)? } )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
            #[serde(deny_unknown_fields)]
            pub struct $name {
                $( $(#[$fdoc])* pub $field: $ty, )*
            }
        )*
    };
}

params! {
    /// `requirements`.
    RequirementsParams {
        /// The custom domain to check (the configured one when absent).
        #[serde(default)]
        custom_domain: Option<String>,
    }
    /// `change_credentials`.
    ChangeCredentialsParams {
        /// A new app registration's client id (the current one when absent).
        #[serde(default)]
        client_id: Option<String>,
        /// The new credential.
        credential: Credential,
    }
    /// `match_preview`.
    MatchPreviewParams {
        /// The domain new online IDs would get (the configured or initial one when absent).
        #[serde(default)]
        domain: Option<String>,
    }
    /// `apply_plan`.
    ApplyPlanParams {
        /// The plan, as `plan_bulk_create` returned it.
        plan: Plan,
    }
    /// `plan_retry`.
    PlanRetryParams {
        /// A results file (JSON) of an earlier run: its failed users are planned again.
        results_file: PathBuf,
        /// The request's other choices (domain, licences...).
        #[serde(default)]
        request: Option<BulkCreateRequest>,
    }
    /// `assign`.
    AssignParams {
        /// The local user.
        local_guid: ObjectGuid,
        /// The online account.
        online_id: OnlineAccountId,
    }
    /// `list_links`.
    ListLinksParams {
        /// Only this local user (sAMAccountName, any case).
        #[serde(default)]
        local_user: Option<String>,
    }
    /// `unassign`.
    UnassignParams {
        /// The local user.
        local_guid: ObjectGuid,
    }
    /// `create_user_with_account`.
    CreateUserParams {
        /// The new local user.
        user: NewLocalUser,
        /// Its password (local and online).
        #[schemars(with = "String")]
        password: SecretString,
        /// The domain of its online ID (the configured or initial one when absent).
        #[serde(default)]
        domain: Option<String>,
        /// Its usage location (the configured one when absent).
        #[serde(default)]
        usage_location: Option<String>,
        /// Licences (the configured defaults when absent).
        #[serde(default)]
        licences: Option<Vec<LicenceAssignment>>,
    }
    /// `online_user_names`.
    OnlineUserNamesParams {
        /// Local users.
        local_guids: Vec<ObjectGuid>,
    }
    /// `sync_once` and `plan_sync`.
    SyncParams {
        /// Allow more disables/deletes than the threshold in this run only.
        #[serde(default)]
        allow_beyond_threshold: bool,
    }
    /// The sync loop (started by `Integration::start_sync_loop_with`, not an operation).
    SyncLoopParams {
        /// Seconds between rounds (the configuration's when absent); 1 or more.
        #[serde(default)]
        interval_secs: Option<u64>,
        /// Allow more disables/deletes than the threshold in the first round only.
        #[serde(default)]
        allow_beyond_threshold: bool,
    }
    /// `apply_sync_plan`.
    ApplySyncPlanParams {
        /// The plan, as `plan_sync` returned it.
        plan: crate::engine::SyncPlan,
    }
    /// `password_changed`.
    PasswordChangedParams {
        /// The local user.
        local_guid: ObjectGuid,
        /// The new password.
        #[schemars(with = "String")]
        password: SecretString,
    }
    /// `capture_password`.
    CapturePasswordParams {
        /// One account's LDIF as `samba-tool user syncpasswords --script` hands it to
        /// the hook on stdin.
        #[schemars(with = "String")]
        ldif: SecretString,
    }
    /// Operations on one distribution group.
    GroupParams {
        /// The group (identity, name or address).
        group: String,
    }
    /// Member changes.
    GroupMembersParams {
        /// The group.
        group: String,
        /// Online user names or addresses.
        members: Vec<String>,
    }
    /// `update_distribution_group`.
    GroupUpdateParams {
        /// The group.
        group: String,
        /// What to change.
        update: DistributionGroupUpdate,
    }
    /// `set_device_policy`: the fields to change; fields not given keep their current
    /// value. Limits take a number, `{"value": n}` or `"unlimited"`.
    DevicePolicyParams {
        /// `PasswordEnabled`.
        #[serde(default)]
        password_enabled: Option<bool>,
        /// `MinPasswordLength`, 1–16.
        #[serde(default)]
        min_password_length: Option<u8>,
        /// `MaxPasswordFailedAttempts`, 4–16 or `"unlimited"`.
        #[serde(default)]
        max_password_failed_attempts: Option<crate::model::Limit<u8>>,
        /// `MaxInactivityTimeLock` in minutes, 1–60 or `"unlimited"`.
        #[serde(default)]
        max_inactivity_lock_minutes: Option<crate::model::Limit<u8>>,
        /// `AlphanumericPasswordRequired`.
        #[serde(default)]
        alphanumeric_password_required: Option<bool>,
    }
    /// `set_default_access_level`.
    AccessLevelParams {
        /// The level.
        level: AccessLevel,
    }
    /// Operations on one item by id.
    IdParams {
        /// Its id.
        id: String,
    }
    /// `list_devices`.
    DevicesParams {
        /// The mailbox's online user name.
        user_principal_name: String,
    }
    /// Operations on one device.
    DeviceParams {
        /// The device.
        device_id: String,
    }
    /// `set_device_access`.
    DeviceAccessParams {
        /// The device.
        device_id: String,
        /// Allow (true) or block (false).
        allow: bool,
    }
    /// `wipe_device`.
    WipeParams {
        /// The device.
        device_id: String,
        /// Full or account-only.
        kind: WipeKind,
        /// The device id typed again.
        confirm: String,
    }
    /// `link_domain`.
    LinkDomainParams {
        /// The domain (the configured custom domain when absent).
        #[serde(default)]
        domain: Option<String>,
        /// The services (Email when absent).
        #[serde(default)]
        services: Option<Vec<DomainService>>,
        /// Give Microsoft 365's MX the best preference even when the domain has other
        /// mail servers (mail moves at once); otherwise it is published after them.
        #[serde(default)]
        take_over_mail: bool,
    }
    /// Operations on one domain.
    DomainParams {
        /// The domain (the configured custom domain when absent).
        #[serde(default)]
        domain: Option<String>,
    }
    /// `write_records_file`.
    RecordsFileParams {
        /// The domain (the configured custom domain when absent).
        #[serde(default)]
        domain: Option<String>,
        /// The folder (the results folder when absent).
        #[serde(default)]
        folder: Option<PathBuf>,
    }
    /// `apply_records`.
    ApplyRecordsParams {
        /// The domain (the configured custom domain when absent).
        #[serde(default)]
        domain: Option<String>,
        /// Replace an existing SPF record instead of merging into it.
        #[serde(default)]
        replace_spf: bool,
    }
    /// `grant_site_access` and `revoke_site_access`.
    SiteAccessParams {
        /// The online user name.
        user_principal_name: String,
        /// Owners, members or visitors.
        role: SiteRole,
    }
}

/// The local and online account `create_user_with_account` made.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct CreatedUser {
    /// The local user.
    pub local: LocalUser,
    /// Its online account.
    pub online: OnlineAccount,
}

/// A local user `import_users` made, with its initial password: handed back once, in this
/// result only — never logged or stored.
#[derive(schemars::JsonSchema, Clone, Serialize, Deserialize)]
pub struct ImportedAccount {
    /// The new local user.
    pub local: LocalUser,
    /// The linked online account.
    pub online_id: OnlineAccountId,
    /// The initial local password.
    pub initial_password: String,
}

impl std::fmt::Debug for ImportedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedAccount")
            .field("sam_account_name", &self.local.sam_account_name)
            .field("online_id", &self.online_id)
            .field("initial_password", &"<redacted>")
            .finish()
    }
}

/// What `import_users` did.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct ImportResult {
    /// The local users made.
    pub imported: Vec<ImportedAccount>,
    /// Per-account results.
    pub results: crate::model::RunResults,
}

impl DevicePolicyParams {
    /// The policy `current` with the fields given here changed.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`] when no field is given.
    pub fn apply_to(self, mut current: DevicePolicy) -> Result<DevicePolicy> {
        let DevicePolicyParams {
            password_enabled,
            min_password_length,
            max_password_failed_attempts,
            max_inactivity_lock_minutes,
            alphanumeric_password_required,
        } = self;
        let mut given = false;
        if let Some(v) = password_enabled {
            (current.password_enabled, given) = (v, true);
        }
        if let Some(v) = min_password_length {
            (current.min_password_length, given) = (Some(v), true);
        }
        if let Some(v) = max_password_failed_attempts {
            (current.max_password_failed_attempts, given) = (v, true);
        }
        if let Some(v) = max_inactivity_lock_minutes {
            (current.max_inactivity_lock_minutes, given) = (v, true);
        }
        if let Some(v) = alphanumeric_password_required {
            (current.alphanumeric_password_required, given) = (v, true);
        }
        if !given {
            return Err(Error::invalid_input(format!(
                "`set_device_policy` changes the fields it is given and none was: give one or more of {}",
                fields_of::<DevicePolicyParams>().join(", ")
            )));
        }
        Ok(current)
    }
}

macro_rules! operations {
    ($( $name:literal, $params:ty => $result:ty, $long:literal, $summary:literal,
        |$i:ident, $p:ident, $c:ident| $body:expr; )*) => {
        /// Every operation, in the order of the tasks.
        pub const OPERATIONS: &[OperationInfo] = &[
            $( OperationInfo {
                name: $name,
                params: stringify!($params),
                result: stringify!($result),
                long_running: $long,
                summary: $summary,
                field_names: fields_of::<$params>,
                result_schema: schema_of::<$result>,
                params_schema: schema_of::<$params>,
            }, )*
        ];

        /// Each row's body as written, for the test that keeps a row one call.
        #[cfg(test)]
        const ROW_BODIES: &[(&str, &str)] = &[$( ($name, stringify!($body)), )*];

        /// Reads the parameters of the operation `name` from JSON text without running
        /// it: what a front door (or a fuzzer) checks before a call.
        ///
        /// # Errors
        /// [`ErrorCode::UnknownOperation`]; [`ErrorCode::MalformedJson`] or
        /// [`ErrorCode::InvalidInput`] as [`Integration::call_json`] would return them.
        pub fn check_params(name: &str, params: &str) -> Result<()> {
            let params = match params.trim() {
                "" | "null" => "{}",
                p => p,
            };
            match name {
                $( $name => {
                    let _: $params = crate::config::parse_strict(
                        params,
                        ErrorCode::InvalidInput,
                        concat!("the parameters of `", $name, "`"),
                    )?;
                    Ok(())
                } )*
                other => Err(Error::new(
                    ErrorCode::UnknownOperation,
                    format!("there is no operation `{other}`; the operations are listed by OPERATIONS"),
                )),
            }
        }

        impl Integration {
            /// Runs the operation `name` with JSON `params` (an object; `null` for none)
            /// and returns its result as JSON. Long operations take `ctl`'s
            /// cancellation and report events to its observer.
            ///
            /// # Errors
            /// [`ErrorCode::NotFound`] for an operation that does not exist;
            /// [`ErrorCode::InvalidInput`] naming a missing, mistyped or unknown
            /// parameter field; the operation's own errors.
            pub async fn call(&self, name: &str, params: Value, ctl: &Control) -> Result<Value> {
                let params = if params.is_null() { Value::Object(Default::default()) } else { params };
                match name {
                    $( $name => {
                        #[allow(unused_variables)]
                        let $p: $params = from_value_strict(
                            params,
                            ErrorCode::InvalidInput,
                            concat!("the parameters of `", $name, "`"),
                        )?;
                        #[allow(unused_variables)]
                        let $i = self;
                        #[allow(unused_variables)]
                        let $c = ctl;
                        let out: $result = $body;
                        crate::json::to_value(&out)
                    } )*
                    other => Err(Error::new(
                        ErrorCode::UnknownOperation,
                        format!("there is no operation `{other}`; the operations are listed by OPERATIONS"),
                    )),
                }
            }

            /// [`Integration::call`] from JSON text to JSON text, as the C ABI and the
            /// other front doors hold them: the parameters are read straight into their
            /// type and the result written straight out (no `Value` in between). Empty
            /// text or `null` is `{}`.
            ///
            /// # Errors
            /// [`ErrorCode::MalformedJson`] for text that is not JSON; otherwise as
            /// [`Integration::call`].
            pub async fn call_json(&self, name: &str, params: &str, ctl: &Control) -> Result<String> {
                let params = match params.trim() {
                    "" | "null" => "{}",
                    p => p,
                };
                match name {
                    $( $name => {
                        #[allow(unused_variables)]
                        let $p: $params = crate::config::parse_strict(
                            params,
                            ErrorCode::InvalidInput,
                            concat!("the parameters of `", $name, "`"),
                        )?;
                        #[allow(unused_variables)]
                        let $i = self;
                        #[allow(unused_variables)]
                        let $c = ctl;
                        let out: $result = $body;
                        crate::json::to_string(&out)
                    } )*
                    other => Err(Error::new(
                        ErrorCode::UnknownOperation,
                        format!("there is no operation `{other}`; the operations are listed by OPERATIONS"),
                    )),
                }
            }
        }
    };
}

impl Integration {
    /// Where results files (and records files) go: the configured folder, else the
    /// system's temporary folder.
    pub fn results_folder(&self) -> PathBuf {
        self.settings
            .results_folder
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    }

    /// Starts the sync loop from JSON parameters ([`SyncLoopParams`]), as the front doors
    /// do: `{"interval_secs": 300, "allow_beyond_threshold": false}`, both optional.
    ///
    /// # Errors
    /// [`ErrorCode::UnknownField`] / [`ErrorCode::InvalidInput`] naming the parameter;
    /// as [`Integration::start_sync_loop`].
    pub fn start_sync_loop_with(
        self: std::sync::Arc<Self>,
        params: Value,
        ctl: Control,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Result<crate::engine::SyncLoop> {
        let params = if params.is_null() {
            Value::Object(Default::default())
        } else {
            params
        };
        let p: SyncLoopParams = from_value_strict(
            params,
            ErrorCode::InvalidInput,
            "the parameters of the sync loop",
        )?;
        if p.interval_secs == Some(0) {
            return Err(Error::invalid_input(
                "the sync loop's `interval_secs` must be 1 or more",
            ));
        }
        let options = SyncOptions {
            allow_beyond_threshold: p.allow_beyond_threshold,
            ..self.sync().sync_options()
        };
        self.start_sync_loop(
            p.interval_secs.map(std::time::Duration::from_secs),
            options,
            ctl,
            runtime,
        )
    }
}

operations! {
    "setup", crate::engine::SetupParams => crate::engine::SetupReport, true,
        "Signs the administrator in with a device code, then makes or repairs the app registration, its certificate, permissions and roles, and switches to it.",
        |i, p, c| i.setup(p, c).await?;
    "teardown", crate::engine::SetupParams => crate::engine::SetupReport, true,
        "Signs the administrator in with a device code and removes the app registration setup made.",
        |i, p, c| i.teardown(p, c).await?;
    "roll_credential", NoParams => crate::engine::RollReport, false,
        "Replaces the app's certificate with a new one made here (addKey proven by the current key, the new one proven before the old is removed).",
        |i, p, c| i.roll_credential().await?;
    "requirements", RequirementsParams => crate::model::RequirementsReport, false,
        "Checks one DC, running on it, every Microsoft 365 endpoint and permission, the custom domain.",
        |i, p, c| i.requirements(p.custom_domain.as_deref()).await;
    "integrate", NoParams => crate::engine::IntegrationStatus, false,
        "Checks the credentials and permissions and records the tenant.",
        |i, p, c| i.integrate().await?;
    "status", NoParams => crate::engine::IntegrationStatus, false,
        "Where the integration stands (works offline).",
        |i, p, c| i.status()?;
    "disable", NoParams => (), false,
        "Stops propagation, locally only.",
        |i, p, c| i.disable()?;
    "enable", NoParams => crate::engine::DriftReport, false,
        "Resumes propagation, checking every link by its anchor.",
        |i, p, c| i.enable().await?;
    "change_credentials", ChangeCredentialsParams => (), false,
        "Switches Graph, Exchange and SharePoint to a new credential after checking it.",
        |i, p, c| i.change_credential(p.client_id, p.credential).await?;
    "match_preview", MatchPreviewParams => crate::engine::MatchPreview, false,
        "Candidates and conflicts between local users and online accounts, before anything is written.",
        |i, p, c| i.accounts().match_preview(p.domain).await?;
    "plan_bulk_create", BulkCreateRequest => Plan, false,
        "Plans online accounts for local users: a reviewable plan, nothing written.",
        |i, p, c| i.accounts().plan_bulk_create_now(&p).await?;
    "apply_plan", ApplyPlanParams => crate::model::RunResults, true,
        "Applies exactly a bulk-create plan, with a journal and a results file.",
        |i, p, c| i.accounts().apply(&p.plan, c).await?;
    "plan_retry", PlanRetryParams => Plan, false,
        "Plans again the users that failed in a results file.",
        |i, p, c| i.accounts().plan_retry(&p.results_file, p.request).await?;
    "import_users", ImportRequest => ImportResult, true,
        "Creates local users for existing online accounts and links them.",
        |i, p, c| {
            let (imported, results) = i.accounts().import_with(&p, c).await?;
            let cancelled = crate::engine::cancelled_run(&results);
            let out = ImportResult {
                imported: imported
                    .into_iter()
                    .map(|u| ImportedAccount {
                        initial_password: u.initial_password.expose_secret().to_string(),
                        local: u.local,
                        online_id: u.online_id,
                    })
                    .collect(),
                results,
            };
            if let Some(e) = cancelled {
                // The passwords of the users made before the cancel travel with the error.
                return Err(e.with_partial(crate::json::to_value(&out)?));
            }
            out
        };
    "assign", AssignParams => crate::model::Link, false,
        "Links an existing online account to an existing local user.",
        |i, p, c| i.accounts().assign(p.local_guid, &p.online_id).await?;
    "list_links", ListLinksParams => Vec<LinkedUser>, false,
        "The linked users: each local user with its online account, state and origin.",
        |i, p, c| i.accounts().linked_users(p.local_user.as_deref()).await?;
    "unassign", UnassignParams => crate::model::Link, false,
        "Releases the licences, blocks sign-in, keeps the link marked unassigned.",
        |i, p, c| i.accounts().unassign(p.local_guid).await?;
    "create_user_with_account", CreateUserParams => CreatedUser, false,
        "Creates a local user and its online account in one step, with the same password.",
        |i, p, c| {
            let (local, online) = i
                .accounts()
                .create_user_with_account_as_configured(&p.user, &p.password, p.domain, p.usage_location, p.licences)
                .await?;
            CreatedUser { local, online }
        };
    "online_user_names", OnlineUserNamesParams => Vec<String>, false,
        "The online user names of local users (for groups and site access).",
        |i, p, c| i.accounts().online_user_names(&p.local_guids).await?;
    "licences", NoParams => Vec<crate::model::Sku>, false,
        "The tenant's subscriptions (SKUs) with free and used seats.",
        |i, p, c| i.accounts().licences().await?;
    "sync_once", SyncParams => crate::engine::SyncReport, true,
        "One sync run: lifecycle changes, drift, threshold, password delivery.",
        |i, p, c| i.sync().run_sync(&i.sync().options(p.allow_beyond_threshold), c).await?;
    "plan_sync", SyncParams => crate::engine::SyncPlan, false,
        "What a sync run would do now; writes nothing.",
        |i, p, c| i.sync().plan_sync_run(&i.sync().options(p.allow_beyond_threshold)).await?;
    "apply_sync_plan", ApplySyncPlanParams => crate::engine::SyncReport, true,
        "Applies exactly a reviewed sync plan (items whose local user changed since are skipped).",
        |i, p, c| i.sync().apply_sync_plan(&p.plan, c).await?;
    "password_changed", PasswordChangedParams => bool, false,
        "Queues a local password change for delivery (false: the user has no online account).",
        |i, p, c| i.passwords().password_changed(p.local_guid, &p.password)?;
    "capture_password", CapturePasswordParams => crate::engine::CaptureReport, false,
        "The Samba password hook: one account's LDIF from samba-tool syncpasswords, its new password queued once.",
        |i, p, c| i.passwords().capture_password(&p.ldif).await?;
    "deliver_passwords", NoParams => crate::engine::PasswordDelivery, true,
        "Delivers queued passwords to the tenant.",
        |i, p, c| i.passwords().deliver_passwords_with(c).await?;
    "password_problems", NoParams => Vec<crate::engine::PasswordProblem>, false,
        "Passwords the tenant refused, for the dashboard.",
        |i, p, c| i.passwords().password_problems()?;
    "list_distribution_groups", NoParams => Vec<crate::model::DistributionGroup>, false,
        "Distribution groups with their members.",
        |i, p, c| i.mail_and_devices().distribution_groups().await?;
    "create_distribution_group", NewDistributionGroup => crate::model::DistributionGroup, false,
        "Creates a distribution group.",
        |i, p, c| i.mail_and_devices().create_distribution_group(&p).await?;
    "add_group_members", GroupMembersParams => (), false,
        "Adds members to a distribution group.",
        |i, p, c| i.mail_and_devices().add_members(&p.group, &p.members).await?;
    "remove_group_members", GroupMembersParams => (), false,
        "Removes members from a distribution group.",
        |i, p, c| i.mail_and_devices().remove_members(&p.group, &p.members).await?;
    "replace_group_members", GroupMembersParams => (), false,
        "Sets a distribution group's members to exactly these.",
        |i, p, c| i.mail_and_devices().replace_members(&p.group, &p.members).await?;
    "update_distribution_group", GroupUpdateParams => crate::model::DistributionGroup, false,
        "Changes a group's display name or whether outside senders may write to it.",
        |i, p, c| i.mail_and_devices().update_distribution_group(&p.group, &p.update).await?;
    "delete_distribution_group", GroupParams => (), false,
        "Deletes a distribution group.",
        |i, p, c| i.mail_and_devices().delete_distribution_group(&p.group).await?;
    "get_device_policy", NoParams => DevicePolicy, false,
        "The mobile device mailbox policy.",
        |i, p, c| i.mail_and_devices().device_policy().await?;
    "set_device_policy", DevicePolicyParams => (), false,
        "Changes the mobile device mailbox policy: the fields given; the others keep their value.",
        |i, p, c| i.mail_and_devices().update_device_policy(|current| p.apply_to(current)).await?;
    "get_default_access_level", NoParams => AccessLevel, false,
        "What happens to devices no rule names.",
        |i, p, c| i.mail_and_devices().default_access_level().await?;
    "set_default_access_level", AccessLevelParams => (), false,
        "Sets what happens to devices no rule names.",
        |i, p, c| i.mail_and_devices().set_default_access_level(p.level).await?;
    "list_access_rules", NoParams => Vec<crate::model::AccessRule>, false,
        "Device access rules (allow / block / quarantine a model, type, OS).",
        |i, p, c| i.mail_and_devices().access_rules().await?;
    "add_access_rule", NewAccessRule => crate::model::AccessRule, false,
        "Adds a device access rule.",
        |i, p, c| i.mail_and_devices().add_access_rule(&p).await?;
    "remove_access_rule", IdParams => (), false,
        "Removes a device access rule.",
        |i, p, c| i.mail_and_devices().remove_access_rule(&p.id).await?;
    "list_devices", DevicesParams => Vec<crate::model::MobileDevice>, false,
        "A user's mobile devices.",
        |i, p, c| i.mail_and_devices().devices(&p.user_principal_name).await?;
    "set_device_access", DeviceAccessParams => crate::model::DeviceAccessState, false,
        "Allows or blocks one device on its mailbox.",
        |i, p, c| i.mail_and_devices().set_device_access(&p.device_id, p.allow).await?;
    "wipe_device", WipeParams => crate::model::WipeStatus, false,
        "Wipes a lost device (full or account-only); the device id typed again confirms.",
        |i, p, c| i.mail_and_devices().wipe_device(&p.device_id, p.kind, &p.confirm).await?;
    "cancel_wipe", DeviceParams => crate::model::WipeStatus, false,
        "Cancels a pending wipe.",
        |i, p, c| i.mail_and_devices().cancel_wipe(&p.device_id).await?;
    "wipe_status", DeviceParams => crate::model::WipeStatus, false,
        "Where a wipe stands.",
        |i, p, c| i.mail_and_devices().wipe_status(&p.device_id).await?;
    "link_domain", LinkDomainParams => crate::dns::DomainProgress, true,
        "Links the custom domain as far as DNS allows (resumable): add, verify, services, records.",
        |i, p, c| i.domains().link(p.domain, p.services, p.take_over_mail, c).await?;
    "domain_stage", DomainParams => crate::dns::DomainStage, false,
        "How far the linking of a domain has come.",
        |i, p, c| i.domains().stage(p.domain)?;
    "write_records_file", RecordsFileParams => RecordsFile, false,
        "Writes the domain's DNS records as a records file (NewDNSRecords_<n>.txt).",
        |i, p, c| i.domains().write_records_file(p.domain, p.folder).await?;
    "zone_fragment", DomainParams => ZoneFragment, false,
        "The domain's DNS records as a zone-file fragment.",
        |i, p, c| i.domains().zone_fragment(p.domain).await?;
    "check_records", DomainParams => Vec<crate::dns::RecordCheck>, false,
        "Checks each of the domain's records in DNS (present / missing / different).",
        |i, p, c| i.domains().check_records(p.domain).await?;
    "health_report", DomainParams => crate::dns::HealthReport, false,
        "The domain's mail DNS health: MX, SPF, DKIM, DMARC, autodiscover.",
        |i, p, c| i.domains().health_report(p.domain).await?;
    "apply_records", ApplyRecordsParams => crate::dns::ApplyOutcome, false,
        "Publishes the missing records on the company's DNS server (RFC 2136 + TSIG).",
        |i, p, c| i.domains().apply_records(p.domain, p.replace_spf).await?;
    "list_libraries", NoParams => Vec<crate::model::Library>, false,
        "The team site's document libraries.",
        |i, p, c| i.files().libraries().await?;
    "create_library", NewLibrary => crate::model::Library, true,
        "Creates a document library (waits for its drive).",
        |i, p, c| i.files().create_library(&p, c).await?;
    "delete_library", IdParams => (), false,
        "Deletes a document library.",
        |i, p, c| i.files().delete_library(&p.id).await?;
    "list_site_groups", NoParams => Vec<crate::model::SiteGroup>, false,
        "The team site's owners, members and visitors.",
        |i, p, c| i.files().site_groups().await?;
    "grant_site_access", SiteAccessParams => (), false,
        "Adds a user to the team site's owners, members or visitors.",
        |i, p, c| i.files().grant(&p.user_principal_name, p.role).await?;
    "revoke_site_access", SiteAccessParams => crate::model::RevokeOutcome, false,
        "Removes a user from one of the team site's groups.",
        |i, p, c| i.files().revoke(&p.user_principal_name, p.role).await?;
    "launchpad", NoParams => crate::model::Launchpad, false,
        "The tenant's service URLs: portal, mail, admin centre, team site.",
        |i, p, c| i.launchpad_online().await?;
}

/// The table as a Markdown reference (`docs/OPERATIONS.md` is this text).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Operations\n\nEvery task of the engine is one operation: a stable name, a parameters \
         object and a result (JSON), the same from Rust (`Integration::call`), C, Python and \
         the command line. Unknown parameter fields are refused with their name; results only \
         ever gain fields. Long operations take a cancellation token and report events.\n\n\
         This file is generated from `o365_essentials_core::ops::OPERATIONS` (a test checks it).\n\n\
         | operation | parameters (fields) | result | long | what it does |\n|---|---|---|---|---|\n",
    );
    for o in OPERATIONS {
        out.push_str(&format!(
            "| `{}` | `{}`{} | `{}` | {} | {} |\n",
            o.name,
            o.params.replace(" ", "").replace("crate::", ""),
            if o.fields().is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    o.fields()
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            o.result.replace(" ", "").replace("crate::", ""),
            if o.long_running { "yes" } else { "" },
            o.summary
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_fields_are_read_from_the_types() {
        let by = |n: &str| OPERATIONS.iter().find(|o| o.name == n).map(|o| o.fields());
        assert_eq!(by("status"), Some(&[][..]));
        assert_eq!(
            by("wipe_device"),
            Some(&["device_id", "kind", "confirm"][..])
        );
        assert!(by("plan_bulk_create").is_some_and(|f| f.contains(&"domain")));
        let json = operations_json();
        assert_eq!(json.as_array().map(Vec::len), Some(OPERATIONS.len()));
        assert_eq!(json[0]["name"], OPERATIONS[0].name);
    }

    #[test]
    fn the_operations_reference_in_docs_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md");
        let text = reference_markdown();
        if std::env::var_os("O365_BLESS").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == text,
            "docs/OPERATIONS.md is stale: run `O365_BLESS=1 cargo test -p o365-essentials-core ops` and commit it"
        );
    }

    /// The root's own operations: integration control, on [`Integration`] itself.
    const ROOT_CALLS: &[&str] = &[
        "setup",
        "teardown",
        "roll_credential",
        "requirements",
        "integrate",
        "status",
        "disable",
        "enable",
        "change_credential",
        "launchpad_online",
    ];
    /// The views a row may call ([`Integration::accounts`] and its siblings).
    const VIEWS: &[&str] = &[
        "accounts",
        "sync",
        "passwords",
        "mail_and_devices",
        "files",
        "domains",
    ];

    /// A row of the table is one call on one view, or on the root for integration
    /// control: the logic lives in the view, and the row only reads its parameters and
    /// shapes the result for the wire.
    #[test]
    fn each_row_is_one_call_on_one_view_or_the_root() {
        assert_eq!(ROW_BODIES.len(), OPERATIONS.len());
        for (name, body) in ROW_BODIES {
            let mut used: Vec<&str> = body
                .match_indices('i')
                .filter(|(at, _)| {
                    let before = body[..*at].chars().next_back();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && body[at + 1..].trim_start().starts_with('.')
                })
                .map(|(at, _)| {
                    let rest = body[at + 1..].trim_start()[1..].trim_start();
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    &rest[..end]
                })
                .collect();
            used.sort_unstable();
            used.dedup();
            assert_eq!(
                used.len(),
                1,
                "`{name}` reaches the integration through {used:?}: {body}"
            );
            let calls = body.matches(&format!("{}(", used[0])).count();
            assert!(
                VIEWS.contains(&used[0]) || (ROOT_CALLS.contains(&used[0]) && calls == 1),
                "`{name}` calls `{}`, neither a view nor the root's integration control: {body}",
                used[0]
            );
        }
    }

    #[test]
    fn the_table_lists_each_operation_once_with_its_shapes() {
        let mut names: Vec<&str> = OPERATIONS.iter().map(|o| o.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate operation names");
        assert!(n >= 50, "{n} operations");
        for o in OPERATIONS {
            assert!(
                o.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                o.name
            );
            assert!(!o.params.is_empty() && !o.result.is_empty());
            assert!(o.summary.ends_with('.'), "{}", o.name);
        }
        for long in [
            "apply_plan",
            "import_users",
            "sync_once",
            "apply_sync_plan",
            "deliver_passwords",
            "link_domain",
            "create_library",
        ] {
            assert!(
                OPERATIONS.iter().any(|o| o.name == long && o.long_running),
                "{long}"
            );
        }
    }
}
