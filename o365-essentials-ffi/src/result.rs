//! Result codes of the C ABI: the core's stable error numbers, plus `O365_OK`.
//!
//! Written out here so cbindgen can put them in the header; a test checks them against
//! the core's `ErrorCode::ALL` so the two never drift.

use std::ffi::CStr;

use o365_essentials_core::ErrorCode;

/// The result of every fallible function: `O365_OK` or an error code. The numbers are
/// stable, grouped in ranges (1xx input, 2xx auth, 3xx object, 4xx service, 5xx policy,
/// 6xx store, 7xx engine, 8xx DNS, 9xx operation) and never renumbered.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum o365_result {
    /// Success.
    O365_OK = 0,
    /// `invalid_input`: see the core's `ErrorCode::InvalidInput`.
    O365_INVALID_INPUT = 100,
    /// `invalid_config`: see the core's `ErrorCode::InvalidConfig`.
    O365_INVALID_CONFIG = 101,
    /// `null_argument`: see the core's `ErrorCode::NullArgument`.
    O365_NULL_ARGUMENT = 102,
    /// `invalid_utf8`: see the core's `ErrorCode::InvalidUtf8`.
    O365_INVALID_UTF8 = 103,
    /// `malformed_json`: see the core's `ErrorCode::MalformedJson`.
    O365_MALFORMED_JSON = 104,
    /// `unknown_field`: see the core's `ErrorCode::UnknownField`.
    O365_UNKNOWN_FIELD = 105,
    /// `unknown_operation`: see the core's `ErrorCode::UnknownOperation`.
    O365_UNKNOWN_OPERATION = 106,
    /// `invalid_handle`: see the core's `ErrorCode::InvalidHandle`.
    O365_INVALID_HANDLE = 107,
    /// `invalid_upn`: see the core's `ErrorCode::InvalidUpn`.
    O365_INVALID_UPN = 110,
    /// `invalid_mail_nickname`: see the core's `ErrorCode::InvalidMailNickname`.
    O365_INVALID_MAIL_NICKNAME = 111,
    /// `invalid_domain_name`: see the core's `ErrorCode::InvalidDomainName`.
    O365_INVALID_DOMAIN_NAME = 112,
    /// `invalid_usage_location`: see the core's `ErrorCode::InvalidUsageLocation`.
    O365_INVALID_USAGE_LOCATION = 113,
    /// `auth`: see the core's `ErrorCode::Auth`.
    O365_AUTH = 200,
    /// `permission_denied`: see the core's `ErrorCode::PermissionDenied`.
    O365_PERMISSION_DENIED = 201,
    /// `certificate_required`: see the core's `ErrorCode::CertificateRequired`.
    O365_CERTIFICATE_REQUIRED = 202,
    /// `admin_role_missing`: see the core's `ErrorCode::AdminRoleMissing`.
    O365_ADMIN_ROLE_MISSING = 203,
    /// `not_found`: see the core's `ErrorCode::NotFound`.
    O365_NOT_FOUND = 300,
    /// `already_exists`: see the core's `ErrorCode::AlreadyExists`.
    O365_ALREADY_EXISTS = 301,
    /// `conflict`: see the core's `ErrorCode::Conflict`.
    O365_CONFLICT = 302,
    /// `throttled`: see the core's `ErrorCode::Throttled`.
    O365_THROTTLED = 400,
    /// `service_unavailable`: see the core's `ErrorCode::ServiceUnavailable`.
    O365_SERVICE_UNAVAILABLE = 401,
    /// `transport`: see the core's `ErrorCode::Transport`.
    O365_TRANSPORT = 402,
    /// `timeout`: see the core's `ErrorCode::Timeout`.
    O365_TIMEOUT = 403,
    /// `unexpected_response`: see the core's `ErrorCode::UnexpectedResponse`.
    O365_UNEXPECTED_RESPONSE = 404,
    /// `tls`: see the core's `ErrorCode::Tls`.
    O365_TLS = 405,
    /// `untrusted_response`: see the core's `ErrorCode::UntrustedResponse`.
    O365_UNTRUSTED_RESPONSE = 406,
    /// `password_policy`: see the core's `ErrorCode::PasswordPolicy`.
    O365_PASSWORD_POLICY = 500,
    /// `licence_unavailable`: see the core's `ErrorCode::LicenceUnavailable`.
    O365_LICENCE_UNAVAILABLE = 501,
    /// `domain_not_verified`: see the core's `ErrorCode::DomainNotVerified`.
    O365_DOMAIN_NOT_VERIFIED = 502,
    /// `policy_violation`: see the core's `ErrorCode::PolicyViolation`.
    O365_POLICY_VIOLATION = 503,
    /// `store_corrupt`: see the core's `ErrorCode::StoreCorrupt`.
    O365_STORE_CORRUPT = 600,
    /// `store_version_too_new`: see the core's `ErrorCode::StoreVersionTooNew`.
    O365_STORE_VERSION_TOO_NEW = 601,
    /// `store_locked`: see the core's `ErrorCode::StoreLocked`.
    O365_STORE_LOCKED = 602,
    /// `store_io`: see the core's `ErrorCode::StoreIo`.
    O365_STORE_IO = 603,
    /// `safety_threshold`: see the core's `ErrorCode::SafetyThreshold`.
    O365_SAFETY_THRESHOLD = 700,
    /// `integration_disabled`: see the core's `ErrorCode::IntegrationDisabled`.
    O365_INTEGRATION_DISABLED = 701,
    /// `not_integrated`: see the core's `ErrorCode::NotIntegrated`.
    O365_NOT_INTEGRATED = 702,
    /// `plan_stale`: see the core's `ErrorCode::PlanStale`.
    O365_PLAN_STALE = 703,
    /// `protected_account`: see the core's `ErrorCode::ProtectedAccount`.
    O365_PROTECTED_ACCOUNT = 704,
    /// `precondition_failed`: see the core's `ErrorCode::PreconditionFailed`.
    O365_PRECONDITION_FAILED = 705,
    /// `work_held`: see the core's `ErrorCode::WorkHeld`.
    O365_WORK_HELD = 706,
    /// `out_of_scope`: see the core's `ErrorCode::OutOfScope`.
    O365_OUT_OF_SCOPE = 707,
    /// `dns_record_mismatch`: see the core's `ErrorCode::DnsRecordMismatch`.
    O365_DNS_RECORD_MISMATCH = 800,
    /// `dns_update_refused`: see the core's `ErrorCode::DnsUpdateRefused`.
    O365_DNS_UPDATE_REFUSED = 801,
    /// `cancelled`: see the core's `ErrorCode::Cancelled`.
    O365_CANCELLED = 900,
    /// `not_supported`: see the core's `ErrorCode::NotSupported`.
    O365_NOT_SUPPORTED = 901,
    /// `internal`: see the core's `ErrorCode::Internal`.
    O365_INTERNAL = 902,
    /// `runtime_context`: see the core's `ErrorCode::RuntimeContext`.
    O365_RUNTIME_CONTEXT = 903,
    /// `forked_process`: see the core's `ErrorCode::ForkedProcess`.
    O365_FORKED_PROCESS = 904,
}

impl o365_result {
    /// Every result code, `O365_OK` first.
    pub const ALL: &'static [o365_result] = &[
        o365_result::O365_OK,
        o365_result::O365_INVALID_INPUT,
        o365_result::O365_INVALID_CONFIG,
        o365_result::O365_NULL_ARGUMENT,
        o365_result::O365_INVALID_UTF8,
        o365_result::O365_MALFORMED_JSON,
        o365_result::O365_UNKNOWN_FIELD,
        o365_result::O365_UNKNOWN_OPERATION,
        o365_result::O365_INVALID_HANDLE,
        o365_result::O365_INVALID_UPN,
        o365_result::O365_INVALID_MAIL_NICKNAME,
        o365_result::O365_INVALID_DOMAIN_NAME,
        o365_result::O365_INVALID_USAGE_LOCATION,
        o365_result::O365_AUTH,
        o365_result::O365_PERMISSION_DENIED,
        o365_result::O365_CERTIFICATE_REQUIRED,
        o365_result::O365_ADMIN_ROLE_MISSING,
        o365_result::O365_NOT_FOUND,
        o365_result::O365_ALREADY_EXISTS,
        o365_result::O365_CONFLICT,
        o365_result::O365_THROTTLED,
        o365_result::O365_SERVICE_UNAVAILABLE,
        o365_result::O365_TRANSPORT,
        o365_result::O365_TIMEOUT,
        o365_result::O365_UNEXPECTED_RESPONSE,
        o365_result::O365_TLS,
        o365_result::O365_UNTRUSTED_RESPONSE,
        o365_result::O365_PASSWORD_POLICY,
        o365_result::O365_LICENCE_UNAVAILABLE,
        o365_result::O365_DOMAIN_NOT_VERIFIED,
        o365_result::O365_POLICY_VIOLATION,
        o365_result::O365_STORE_CORRUPT,
        o365_result::O365_STORE_VERSION_TOO_NEW,
        o365_result::O365_STORE_LOCKED,
        o365_result::O365_STORE_IO,
        o365_result::O365_SAFETY_THRESHOLD,
        o365_result::O365_INTEGRATION_DISABLED,
        o365_result::O365_NOT_INTEGRATED,
        o365_result::O365_PLAN_STALE,
        o365_result::O365_PROTECTED_ACCOUNT,
        o365_result::O365_PRECONDITION_FAILED,
        o365_result::O365_WORK_HELD,
        o365_result::O365_OUT_OF_SCOPE,
        o365_result::O365_DNS_RECORD_MISMATCH,
        o365_result::O365_DNS_UPDATE_REFUSED,
        o365_result::O365_CANCELLED,
        o365_result::O365_NOT_SUPPORTED,
        o365_result::O365_INTERNAL,
        o365_result::O365_RUNTIME_CONTEXT,
        o365_result::O365_FORKED_PROCESS,
    ];

    /// The result code for a core error code.
    pub fn from_code(code: ErrorCode) -> o365_result {
        o365_result::from_number(code.number()).unwrap_or(o365_result::O365_INTERNAL)
    }

    /// The result code with this number.
    pub fn from_number(n: u32) -> Option<o365_result> {
        o365_result::ALL.iter().copied().find(|r| *r as u32 == n)
    }

    /// The stable name, as a static C string.
    pub fn name(self) -> &'static CStr {
        match self {
            o365_result::O365_OK => c"ok",
            o365_result::O365_INVALID_INPUT => c"invalid_input",
            o365_result::O365_INVALID_CONFIG => c"invalid_config",
            o365_result::O365_NULL_ARGUMENT => c"null_argument",
            o365_result::O365_INVALID_UTF8 => c"invalid_utf8",
            o365_result::O365_MALFORMED_JSON => c"malformed_json",
            o365_result::O365_UNKNOWN_FIELD => c"unknown_field",
            o365_result::O365_UNKNOWN_OPERATION => c"unknown_operation",
            o365_result::O365_INVALID_HANDLE => c"invalid_handle",
            o365_result::O365_INVALID_UPN => c"invalid_upn",
            o365_result::O365_INVALID_MAIL_NICKNAME => c"invalid_mail_nickname",
            o365_result::O365_INVALID_DOMAIN_NAME => c"invalid_domain_name",
            o365_result::O365_INVALID_USAGE_LOCATION => c"invalid_usage_location",
            o365_result::O365_AUTH => c"auth",
            o365_result::O365_PERMISSION_DENIED => c"permission_denied",
            o365_result::O365_CERTIFICATE_REQUIRED => c"certificate_required",
            o365_result::O365_ADMIN_ROLE_MISSING => c"admin_role_missing",
            o365_result::O365_NOT_FOUND => c"not_found",
            o365_result::O365_ALREADY_EXISTS => c"already_exists",
            o365_result::O365_CONFLICT => c"conflict",
            o365_result::O365_THROTTLED => c"throttled",
            o365_result::O365_SERVICE_UNAVAILABLE => c"service_unavailable",
            o365_result::O365_TRANSPORT => c"transport",
            o365_result::O365_TIMEOUT => c"timeout",
            o365_result::O365_UNEXPECTED_RESPONSE => c"unexpected_response",
            o365_result::O365_TLS => c"tls",
            o365_result::O365_UNTRUSTED_RESPONSE => c"untrusted_response",
            o365_result::O365_PASSWORD_POLICY => c"password_policy",
            o365_result::O365_LICENCE_UNAVAILABLE => c"licence_unavailable",
            o365_result::O365_DOMAIN_NOT_VERIFIED => c"domain_not_verified",
            o365_result::O365_POLICY_VIOLATION => c"policy_violation",
            o365_result::O365_STORE_CORRUPT => c"store_corrupt",
            o365_result::O365_STORE_VERSION_TOO_NEW => c"store_version_too_new",
            o365_result::O365_STORE_LOCKED => c"store_locked",
            o365_result::O365_STORE_IO => c"store_io",
            o365_result::O365_SAFETY_THRESHOLD => c"safety_threshold",
            o365_result::O365_INTEGRATION_DISABLED => c"integration_disabled",
            o365_result::O365_NOT_INTEGRATED => c"not_integrated",
            o365_result::O365_PLAN_STALE => c"plan_stale",
            o365_result::O365_PROTECTED_ACCOUNT => c"protected_account",
            o365_result::O365_PRECONDITION_FAILED => c"precondition_failed",
            o365_result::O365_WORK_HELD => c"work_held",
            o365_result::O365_OUT_OF_SCOPE => c"out_of_scope",
            o365_result::O365_DNS_RECORD_MISMATCH => c"dns_record_mismatch",
            o365_result::O365_DNS_UPDATE_REFUSED => c"dns_update_refused",
            o365_result::O365_CANCELLED => c"cancelled",
            o365_result::O365_NOT_SUPPORTED => c"not_supported",
            o365_result::O365_INTERNAL => c"internal",
            o365_result::O365_RUNTIME_CONTEXT => c"runtime_context",
            o365_result::O365_FORKED_PROCESS => c"forked_process",
        }
    }

    /// The family name, as a static C string.
    pub fn family(self) -> &'static CStr {
        match self as u32 {
            0 => c"ok",
            100..=199 => c"input",
            200..=299 => c"auth",
            300..=399 => c"object",
            400..=499 => c"service",
            500..=599 => c"policy",
            600..=699 => c"store",
            700..=799 => c"engine",
            800..=899 => c"dns",
            900..=999 => c"operation",
            _ => c"unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_mirror_the_core_error_codes_exactly() {
        assert_eq!(o365_result::ALL.len(), ErrorCode::ALL.len() + 1);
        assert_eq!(o365_result::ALL[0] as u32, 0);
        for (r, c) in o365_result::ALL[1..].iter().zip(ErrorCode::ALL) {
            assert_eq!(*r as u32, c.number(), "{c}");
            assert_eq!(r.name().to_str().expect("utf8"), c.name());
            assert_eq!(r.family().to_str().expect("utf8"), c.family().name());
            assert_eq!(o365_result::from_code(*c), *r);
        }
    }
}
