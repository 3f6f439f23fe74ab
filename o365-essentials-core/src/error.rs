//! The one public error type of the engine and its stable error codes.
//!
//! Every fallible operation in the core, the C ABI and the Python package reports an
//! [`Error`] carrying an [`ErrorCode`]. The numbers are part of the public contract: they
//! are grouped in ranges by [`ErrorFamily`], only ever appended, and never renumbered. The
//! C header and the Python exception classes are generated from, and tested against,
//! [`ErrorCode::ALL`].

use std::fmt;
use std::time::Duration;

/// The coarse group an [`ErrorCode`] belongs to: it tells the caller what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorFamily {
    /// 100–199: the caller passed something that cannot work; fix the input.
    Input,
    /// 200–299: credentials, roles or permissions; fix the configuration or the grants.
    Auth,
    /// 300–399: the object is missing or clashes with another; look at the objects named.
    Object,
    /// 400–499: the service or the network failed; usually worth retrying later.
    Service,
    /// 500–599: a Microsoft 365 or directory policy refused the value; change the value.
    Policy,
    /// 600–699: the local state store; check the file and the process holding it.
    Store,
    /// 700–799: the integration engine refused to act; read the reason and decide.
    Engine,
    /// 800–899: DNS checks and updates.
    Dns,
    /// 900–999: the operation stopped for a reason of its own — cancelled by the caller,
    /// not supported here, or a bug; nothing about the input is wrong.
    Operation,
}

impl ErrorFamily {
    /// Every family, in range order.
    pub const ALL: [ErrorFamily; 9] = [
        ErrorFamily::Input,
        ErrorFamily::Auth,
        ErrorFamily::Object,
        ErrorFamily::Service,
        ErrorFamily::Policy,
        ErrorFamily::Store,
        ErrorFamily::Engine,
        ErrorFamily::Dns,
        ErrorFamily::Operation,
    ];

    /// The family's stable name (`input`, `auth`, ...), as used by the bindings.
    pub fn name(self) -> &'static str {
        match self {
            ErrorFamily::Input => "input",
            ErrorFamily::Auth => "auth",
            ErrorFamily::Object => "object",
            ErrorFamily::Service => "service",
            ErrorFamily::Policy => "policy",
            ErrorFamily::Store => "store",
            ErrorFamily::Engine => "engine",
            ErrorFamily::Dns => "dns",
            ErrorFamily::Operation => "operation",
        }
    }

    /// The range of code numbers reserved for this family.
    pub fn range(self) -> std::ops::RangeInclusive<u32> {
        match self {
            ErrorFamily::Input => 100..=199,
            ErrorFamily::Auth => 200..=299,
            ErrorFamily::Object => 300..=399,
            ErrorFamily::Service => 400..=499,
            ErrorFamily::Policy => 500..=599,
            ErrorFamily::Store => 600..=699,
            ErrorFamily::Engine => 700..=799,
            ErrorFamily::Dns => 800..=899,
            ErrorFamily::Operation => 900..=999,
        }
    }

    /// The family a code number falls in, if any.
    pub fn of_number(n: u32) -> Option<ErrorFamily> {
        ErrorFamily::ALL
            .into_iter()
            .find(|f| f.range().contains(&n))
    }
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $num:literal, $name:literal, $action:literal; )*) => {
        /// A stable, append-only error number. See the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant = $num, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The code's stable snake_case name (e.g. `not_found`).
            pub fn name(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// What a person should do about an error with this code.
            pub fn action(self) -> &'static str {
                match self { $( ErrorCode::$variant => $action, )* }
            }

            /// The code with this number, if it exists.
            pub fn from_number(n: u32) -> Option<ErrorCode> {
                match n { $( $num => Some(ErrorCode::$variant), )* _ => None }
            }

            /// The code with this stable name, if it exists.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name { $( $name => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

error_codes! {
    /// A parameter is missing, malformed or out of range.
    InvalidInput = 100, "invalid_input", "Correct the value named in the message and try again.";
    /// The configuration (JSON or struct) is incomplete or inconsistent.
    InvalidConfig = 101, "invalid_config", "Fix the configuration setting named in the message.";
    /// A required argument was NULL (C) or missing.
    NullArgument = 102, "null_argument", "Pass a value for the argument named in the message.";
    /// Text that must be UTF-8 is not.
    InvalidUtf8 = 103, "invalid_utf8", "Pass the text encoded as UTF-8.";
    /// A JSON text does not parse.
    MalformedJson = 104, "malformed_json", "Fix the JSON syntax at the line and column given.";
    /// A JSON object has a field the operation does not take.
    UnknownField = 105, "unknown_field", "Remove or correct the field named; the message lists the fields allowed.";
    /// No operation has this name.
    UnknownOperation = 106, "unknown_operation", "Use one of the operations of the table (OPERATIONS, o365_operations_json).";
    /// A handle that was freed, or never opened, was passed.
    InvalidHandle = 107, "invalid_handle", "Use a handle that is open; this one was freed or never opened.";
    /// A user principal name breaks Microsoft 365's rules.
    InvalidUpn = 110, "invalid_upn", "Choose a user name of allowed characters on a verified domain.";
    /// A mail nickname (alias) breaks Exchange's rules.
    InvalidMailNickname = 111, "invalid_mail_nickname", "Choose an alias of at most 64 allowed characters.";
    /// A domain name is not valid DNS syntax or not a registrable name.
    InvalidDomainName = 112, "invalid_domain_name", "Enter a registered domain such as contoso.com.";
    /// A usage location is not an ISO 3166 alpha-2 country code.
    InvalidUsageLocation = 113, "invalid_usage_location", "Use a two-letter country code such as US or GB.";

    /// Sign-in failed: wrong secret, certificate, password or expired credentials.
    Auth = 200, "auth", "Check the credentials (client secret, certificate or service account password).";
    /// Signed in, but the account lacks a permission or role for this operation.
    PermissionDenied = 201, "permission_denied", "Grant the permission or directory role named in the message.";
    /// The service accepts only certificate credentials for this resource.
    CertificateRequired = 202, "certificate_required", "Configure a certificate credential for the app registration.";
    /// The administrator who signed in lacks a directory role the operation needs.
    AdminRoleMissing = 203, "admin_role_missing", "Sign in as a Global Administrator, or as an Application Administrator who is also a Privileged Role Administrator.";

    /// The object does not exist.
    NotFound = 300, "not_found", "Check the name or id; the object may have been deleted.";
    /// An object with the same unique value already exists.
    AlreadyExists = 301, "already_exists", "Choose another value for the property named, or link the existing object.";
    /// The object is in a state that conflicts with the operation.
    Conflict = 302, "conflict", "Resolve the conflict described, then retry.";

    /// The service throttled the request and retries were exhausted.
    Throttled = 400, "throttled", "Wait for the retry-after period, then run again.";
    /// The service answered with a temporary failure (5xx).
    ServiceUnavailable = 401, "service_unavailable", "Microsoft 365 is unavailable; retry later.";
    /// The network failed: connection refused, reset or unreachable.
    Transport = 402, "transport", "Check the network connection and the server address.";
    /// The request timed out.
    Timeout = 403, "timeout", "Retry; if it persists, check the network or raise the timeout.";
    /// The service answered in a way that was not expected.
    UnexpectedResponse = 404, "unexpected_response", "Retry; if it persists, report the request-id to support.";
    /// TLS failed: certificate not trusted, wrong host name, or handshake error.
    Tls = 405, "tls", "Check the server certificate or configure the CA that issued it.";
    /// A service's answer broke a safety limit: a link to another address than the
    /// configured service, more pages than allowed, or a larger body than allowed. Nothing
    /// was sent to the other address.
    UntrustedResponse = 406, "untrusted_response", "Check for a proxy or device rewriting the service's answers; raise the limit named if the data really is that large.";

    /// A password breaks the directory's or Microsoft 365's password rules.
    PasswordPolicy = 500, "password_policy", "Choose a password meeting every rule listed in the message.";
    /// A licence has no free seats, or cannot be assigned.
    LicenceUnavailable = 501, "licence_unavailable", "Buy more seats or free one, or pick another licence.";
    /// The domain is not verified in the tenant.
    DomainNotVerified = 502, "domain_not_verified", "Verify the domain first, or choose a verified domain.";
    /// The service refused the value under one of its policies.
    PolicyViolation = 503, "policy_violation", "Change the value as the service's message says.";

    /// The state store file is damaged or is not a state store.
    StoreCorrupt = 600, "store_corrupt", "Restore the state store from a backup or move it aside; it was not changed.";
    /// The state store was written by a newer version of o365-essentials.
    StoreVersionTooNew = 601, "store_version_too_new", "Upgrade o365-essentials to the version that wrote the store.";
    /// Another process holds the state store.
    StoreLocked = 602, "store_locked", "Stop the other process using the store, or use another store path.";
    /// The state store could not be read or written (disk, permissions).
    StoreIo = 603, "store_io", "Check the path, the free space and the file permissions.";

    /// More destructive changes than the safety threshold allows.
    SafetyThreshold = 700, "safety_threshold", "Review the held changes and allow them for this run if intended.";
    /// The integration is disabled; nothing propagates.
    IntegrationDisabled = 701, "integration_disabled", "Re-enable the integration to resume propagation.";
    /// No tenant is integrated yet.
    NotIntegrated = 702, "not_integrated", "Integrate with a Microsoft 365 tenant first.";
    /// The plan no longer matches the world it was computed on.
    PlanStale = 703, "plan_stale", "Compute a new plan, review it, and apply that one.";
    /// The account is protected (a built-in, privileged or excluded local user, or an
    /// online account holding a directory role): the gate refused the write, naming its rule.
    ProtectedAccount = 704, "protected_account", "Leave the account local; name it in allow_protected only if it really must be synced.";
    /// A state the operation relies on no longer holds (the world changed since planning).
    PreconditionFailed = 705, "precondition_failed", "Review the current state (plan again) and retry.";
    /// Another process (or another call) is doing this work now: a sync run, a password
    /// round, applying a plan, the domain flow.
    WorkHeld = 706, "work_held", "Wait for the holder named in the message to finish, then run again.";
    /// The local user is outside the configured bases or user filter: it is not synced.
    OutOfScope = 707, "out_of_scope", "Move the user into a synced OU (or the user filter), or leave it local.";

    /// A DNS record is missing or differs from the expected value.
    DnsRecordMismatch = 800, "dns_record_mismatch", "Create or correct the DNS record shown, then check again.";
    /// The DNS server refused the dynamic update.
    DnsUpdateRefused = 801, "dns_update_refused", "Allow updates for the TSIG key on the zone, or add the records by hand.";

    /// The operation was cancelled by the caller; what was done is kept and reported.
    Cancelled = 900, "cancelled", "Nothing to fix; run the operation again to finish the rest.";
    /// The operation is not supported by this backend, configuration or state.
    NotSupported = 901, "not_supported", "Use another backend or operation, or configure the service it needs.";
    /// A bug in o365-essentials: an internal invariant broke.
    Internal = 902, "internal", "Report this as a bug with the message; the operation did not complete.";
    /// A blocking call was made from a thread of the library's own async runtime (from
    /// inside an event callback's async work, for example).
    RuntimeContext = 903, "runtime_context", "Make blocking calls from a thread of your own, or use the async variant.";
    /// The call was made in a child process after fork(): the library's threads did not
    /// survive it.
    ForkedProcess = 904, "forked_process", "Load the library in the child anew (exec), or make the calls in the parent.";
}

impl ErrorCode {
    /// The code's stable number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The family (range) the code belongs to.
    pub fn family(self) -> ErrorFamily {
        // Every number is declared inside a family range; the enumeration test checks it.
        ErrorFamily::of_number(self.number()).unwrap_or(ErrorFamily::Operation)
    }

    /// Whether retrying the same operation later may succeed without changing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::Throttled
                | ErrorCode::ServiceUnavailable
                | ErrorCode::Transport
                | ErrorCode::Timeout
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl schemars::JsonSchema for ErrorCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        schemars::json_schema!({
            "description": "A stable error code (its name).",
            "type": "string",
            "enum": names,
        })
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ErrorCode::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{name}`")))
    }
}

/// What a remote service said about a failure, kept verbatim so support can trace it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceDetail {
    /// The service's own error code (`Request_BadRequest`, `invalid_client`, LDAP result code...).
    pub code: String,
    /// The service's message.
    pub message: String,
    /// The request id the service assigned, for support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The HTTP status (or protocol result code) of the failed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every fallible o365-essentials operation.
///
/// It carries a stable [`ErrorCode`], a message a person can act on, optionally what the
/// remote service said ([`ServiceDetail`]) and how long to wait before retrying. The
/// underlying cause, if any, is reachable through [`std::error::Error::source`] only;
/// dependency error types never appear in this API.
pub struct Error {
    code: ErrorCode,
    message: String,
    service: Option<Box<ServiceDetail>>,
    retry_after: Option<Duration>,
    source: Option<Source>,
    partial: Option<Box<serde_json::Value>>,
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error with a code and a message saying what went wrong and what to fix.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            service: None,
            retry_after: None,
            source: None,
            partial: None,
        }
    }

    /// Attaches what an operation did before it stopped (a cancelled run's results), as
    /// the operation's result shape in JSON.
    pub fn with_partial(mut self, partial: serde_json::Value) -> Self {
        self.partial = Some(Box::new(partial));
        self
    }

    /// What the operation did before it stopped, when it reports that (a cancelled bulk
    /// create, import or sync run: its results, with the items not started as
    /// `cancelled`).
    pub fn partial(&self) -> Option<&serde_json::Value> {
        self.partial.as_deref()
    }

    /// Shorthand for [`ErrorCode::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidInput, message)
    }

    /// Shorthand for [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::NotFound, message)
    }

    /// Shorthand for [`ErrorCode::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Internal, message)
    }

    /// Attaches what the service said.
    pub fn with_service(mut self, detail: ServiceDetail) -> Self {
        self.service = Some(Box::new(detail));
        self
    }

    /// Attaches the time the service asked us to wait.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Attaches the underlying cause (reachable through `source()` only).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message, without the service detail.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the remote service said, if the error came from one.
    pub fn service(&self) -> Option<&ServiceDetail> {
        self.service.as_deref()
    }

    /// How long the service asked to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// What a person should do (the code's recommended action).
    pub fn action(&self) -> &'static str {
        self.code.action()
    }

    /// Whether retrying later may succeed unchanged.
    pub fn is_transient(&self) -> bool {
        self.code.is_transient()
    }

    /// Prefixes the message with context ("creating the online account for jdoe: ...").
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.service {
            write!(f, " (service said {}", s.code)?;
            if !s.message.is_empty() && !self.message.contains(&s.message) {
                write!(f, ": {}", s.message)?;
            }
            if let Some(id) = &s.request_id {
                write!(f, "; request-id {id}")?;
            }
            f.write_str(")")?;
        }
        if let Some(after) = self.retry_after {
            write!(f, " (retry after {:.1} s)", after.as_secs_f64())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("code", &self.code)
            .field("number", &self.code.number())
            .field("message", &self.message);
        if let Some(s) = &self.service {
            d.field("service", s);
        }
        if let Some(r) = &self.retry_after {
            d.field("retry_after", r);
        }
        if let Some(s) = &self.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The published table. Append here when a code is added; never change a line.
    const PUBLISHED: &[(u32, &str)] = &[
        (100, "invalid_input"),
        (101, "invalid_config"),
        (102, "null_argument"),
        (103, "invalid_utf8"),
        (104, "malformed_json"),
        (105, "unknown_field"),
        (106, "unknown_operation"),
        (107, "invalid_handle"),
        (110, "invalid_upn"),
        (111, "invalid_mail_nickname"),
        (112, "invalid_domain_name"),
        (113, "invalid_usage_location"),
        (200, "auth"),
        (201, "permission_denied"),
        (202, "certificate_required"),
        (203, "admin_role_missing"),
        (300, "not_found"),
        (301, "already_exists"),
        (302, "conflict"),
        (400, "throttled"),
        (401, "service_unavailable"),
        (402, "transport"),
        (403, "timeout"),
        (404, "unexpected_response"),
        (405, "tls"),
        (406, "untrusted_response"),
        (500, "password_policy"),
        (501, "licence_unavailable"),
        (502, "domain_not_verified"),
        (503, "policy_violation"),
        (600, "store_corrupt"),
        (601, "store_version_too_new"),
        (602, "store_locked"),
        (603, "store_io"),
        (700, "safety_threshold"),
        (701, "integration_disabled"),
        (702, "not_integrated"),
        (703, "plan_stale"),
        (704, "protected_account"),
        (705, "precondition_failed"),
        (706, "work_held"),
        (707, "out_of_scope"),
        (800, "dns_record_mismatch"),
        (801, "dns_update_refused"),
        (900, "cancelled"),
        (901, "not_supported"),
        (902, "internal"),
        (903, "runtime_context"),
        (904, "forked_process"),
    ];

    #[test]
    fn every_code_is_published_with_its_number_and_name() {
        let actual: Vec<(u32, &str)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.number(), c.name()))
            .collect();
        assert_eq!(
            actual, PUBLISHED,
            "error codes are append-only: never renumber"
        );
    }

    #[test]
    fn codes_are_unique_sorted_in_their_family_range_and_round_trip() {
        let mut numbers = HashSet::new();
        let mut names = HashSet::new();
        let mut last = 0;
        for &c in ErrorCode::ALL {
            assert!(c.number() > last, "{c} out of order");
            last = c.number();
            assert!(numbers.insert(c.number()));
            assert!(names.insert(c.name()));
            let fam = ErrorFamily::of_number(c.number()).expect("number in a family range");
            assert_eq!(c.family(), fam);
            assert_eq!(ErrorCode::from_number(c.number()), Some(c));
            assert_eq!(ErrorCode::from_name(c.name()), Some(c));
            assert!(c.action().ends_with('.'), "{c}: action is a sentence");
            let json = serde_json::to_string(&c).expect("serialise");
            assert_eq!(json, format!("\"{}\"", c.name()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).expect("parse"), c);
        }
        assert_eq!(ErrorCode::from_number(0), None);
        assert_eq!(ErrorCode::from_number(999), None);
    }

    #[test]
    fn display_names_service_code_request_id_and_retry_after() {
        let e = Error::new(
            ErrorCode::AlreadyExists,
            "userPrincipalName jdoe@contoso.com is taken",
        )
        .with_service(ServiceDetail {
            code: "Request_BadRequest".into(),
            message:
                "Another object with the same value for property userPrincipalName already exists."
                    .into(),
            request_id: Some("abc-123".into()),
            status: Some(400),
        })
        .with_retry_after(Duration::from_millis(1500));
        let s = e.to_string();
        assert!(s.starts_with("userPrincipalName jdoe@contoso.com is taken"));
        assert!(s.contains("Request_BadRequest"));
        assert!(s.contains("request-id abc-123"));
        assert!(s.contains("retry after 1.5 s"));
        assert_eq!(e.code().family(), ErrorFamily::Object);
        assert!(!e.is_transient());
        assert!(Error::new(ErrorCode::Throttled, "x").is_transient());
    }

    #[test]
    fn source_is_kept_but_not_in_display() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::new(ErrorCode::StoreIo, "cannot write the state store").with_source(io);
        assert_eq!(e.to_string(), "cannot write the state store");
        let src = std::error::Error::source(&e).expect("source");
        assert_eq!(src.to_string(), "disk on fire");
    }
}
