//! Checks for what Microsoft 365 and Active Directory reject, run before any request.
//!
//! Each check returns an [`Error`] whose code names the kind of value and whose message
//! names the exact rule broken, so a dashboard can show it next to the field.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::model::PasswordPolicy;

/// Longest UPN Entra ID accepts (64 for the name, `@`, 48 for the domain).
pub const UPN_MAX_LEN: usize = 113;
/// Longest part before `@` in a UPN.
pub const UPN_LOCAL_MAX_LEN: usize = 64;
/// Longest mail nickname.
pub const MAIL_NICKNAME_MAX_LEN: usize = 64;
/// Longest display name.
pub const DISPLAY_NAME_MAX_LEN: usize = 256;
/// Microsoft 365's shortest password.
pub const M365_PASSWORD_MIN_LEN: usize = 8;
/// Microsoft 365's longest password.
pub const M365_PASSWORD_MAX_LEN: usize = 256;

fn upn_local_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '\'' | '.' | '-' | '_' | '!' | '#' | '^' | '~')
}

/// Checks a user principal name against Entra ID's rules (characters, lengths, dots,
/// domain syntax). Whether the domain is verified is the tenant's check.
///
/// # Errors
/// [`ErrorCode::InvalidUpn`] naming the broken rule.
pub fn upn(value: &str) -> Result<()> {
    let bad = |rule: String| {
        Err(Error::new(
            ErrorCode::InvalidUpn,
            format!("user name `{value}`: {rule}"),
        ))
    };
    if value.is_empty() {
        return bad("it is empty; give a name like jane.doe@contoso.com".into());
    }
    if value.chars().count() > UPN_MAX_LEN {
        return bad(format!("it is longer than {UPN_MAX_LEN} characters"));
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return bad("it has no @domain part".into());
    };
    if local.is_empty() {
        return bad("the part before @ is empty".into());
    }
    if local.contains('@') {
        return bad("it contains more than one @".into());
    }
    if local.chars().count() > UPN_LOCAL_MAX_LEN {
        return bad(format!(
            "the part before @ is longer than {UPN_LOCAL_MAX_LEN} characters"
        ));
    }
    if let Some(c) = local.chars().find(|c| !upn_local_char_ok(*c)) {
        return bad(format!(
            "the character `{c}` is not allowed before @ (allowed: A-Z a-z 0-9 ' . - _ ! # ^ ~)"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') {
        return bad("the part before @ may not start or end with a period".into());
    }
    if local.contains("..") {
        return bad("the part before @ may not contain two periods in a row".into());
    }
    domain_name(domain).map_err(|e| {
        Error::new(
            ErrorCode::InvalidUpn,
            format!("user name `{value}`: {}", e.message()),
        )
    })
}

/// Checks a mail nickname (Exchange alias).
///
/// # Errors
/// [`ErrorCode::InvalidMailNickname`] naming the broken rule.
pub fn mail_nickname(value: &str) -> Result<()> {
    let bad = |rule: String| {
        Err(Error::new(
            ErrorCode::InvalidMailNickname,
            format!("alias `{value}`: {rule}"),
        ))
    };
    if value.is_empty() {
        return bad("it is empty".into());
    }
    if value.chars().count() > MAIL_NICKNAME_MAX_LEN {
        return bad(format!(
            "it is longer than {MAIL_NICKNAME_MAX_LEN} characters"
        ));
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '!' | '#'
                    | '$'
                    | '%'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '/'
                    | '='
                    | '?'
                    | '^'
                    | '_'
                    | '`'
                    | '{'
                    | '|'
                    | '}'
                    | '~'
                    | '.'
            )
    };
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return bad(format!(
            "the character `{}` is not allowed (letters, digits and ! # $ % & ' * + - / = ? ^ _ ` {{ | }} ~ . only)",
            c.escape_default()
        ));
    }
    if value.starts_with('.') || value.ends_with('.') || value.contains("..") {
        return bad("periods may not lead, trail, or stand two in a row".into());
    }
    Ok(())
}

/// Checks DNS syntax of a domain name: at most 253 characters, labels of 1–63 letters,
/// digits and hyphens not starting or ending with a hyphen, at least two labels, a
/// non-numeric top-level label, lower case, no trailing dot, not an IP address.
/// Whether the name is registrable (public-suffix aware) is the DNS module's check.
///
/// # Errors
/// [`ErrorCode::InvalidDomainName`] naming the broken rule.
pub fn domain_name(value: &str) -> Result<()> {
    let bad = |rule: String| {
        Err(Error::new(
            ErrorCode::InvalidDomainName,
            format!("domain `{value}`: {rule}"),
        ))
    };
    if value.is_empty() {
        return bad("it is empty".into());
    }
    if value.len() > 253 {
        return bad("it is longer than 253 characters".into());
    }
    if value.ends_with('.') {
        return bad("remove the trailing dot".into());
    }
    if value.parse::<std::net::IpAddr>().is_ok() {
        return bad("an IP address is not a domain name".into());
    }
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        return bad(format!("use lower case: `{}`", value.to_ascii_lowercase()));
    }
    let labels: Vec<&str> = value.split('.').collect();
    if labels.len() < 2 {
        return bad("it needs at least two labels, such as contoso.com".into());
    }
    for label in &labels {
        if label.is_empty() {
            return bad("it contains an empty label (two dots in a row)".into());
        }
        if label.len() > 63 {
            return bad(format!("the label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return bad(format!(
                "the character `{}` is not allowed (letters, digits and hyphens only; \
                 internationalised names must be given in punycode, xn--...)",
                c.escape_default()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!(
                "the label `{label}` may not start or end with a hyphen"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return bad("the top-level label may not be all digits".into());
    }
    Ok(())
}

/// Checks an ISO 3166-1 alpha-2 usage location (two upper-case letters).
///
/// # Errors
/// [`ErrorCode::InvalidUsageLocation`].
pub fn usage_location(value: &str) -> Result<()> {
    if value.len() == 2 && value.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::InvalidUsageLocation,
            format!(
                "usage location `{value}` is not a two-letter upper-case country code (ISO 3166-1 alpha-2, e.g. US, GB, DE)"
            ),
        ))
    }
}

/// Checks a display name (1–256 characters, not only blanks).
///
/// # Errors
/// [`ErrorCode::InvalidInput`].
pub fn display_name(value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid_input("the display name is empty"));
    }
    if value.chars().count() > DISPLAY_NAME_MAX_LEN {
        return Err(Error::invalid_input(format!(
            "the display name is longer than {DISPLAY_NAME_MAX_LEN} characters"
        )));
    }
    Ok(())
}

/// A password rule a password breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum PasswordRule {
    /// Shorter than the minimum of `source`.
    TooShort {
        /// The minimum.
        min: usize,
        /// `directory` or `microsoft365`.
        source: RuleSource,
    },
    /// Longer than Microsoft 365's maximum.
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// Fewer character classes than required.
    TooFewCharacterClasses {
        /// Classes required.
        required: usize,
        /// Classes found.
        found: usize,
        /// `directory` or `microsoft365`.
        source: RuleSource,
    },
    /// A character Microsoft 365 does not accept in passwords.
    DisallowedCharacter {
        /// Which character (position not given, to keep the password secret).
        description: String,
    },
    /// Contains the account name or part of the person's name (AD complexity).
    ContainsAccountName,
}

impl PasswordRule {
    /// Whether the rule is the on-premises domain's (as opposed to Microsoft 365's).
    pub fn is_directory_rule(&self) -> bool {
        match self {
            PasswordRule::TooShort { source, .. }
            | PasswordRule::TooFewCharacterClasses { source, .. } => {
                *source == RuleSource::Directory
            }
            PasswordRule::ContainsAccountName => true,
            PasswordRule::TooLong { .. } | PasswordRule::DisallowedCharacter { .. } => false,
        }
    }
}

/// Whose rule a [`PasswordRule`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// The on-premises domain's password policy.
    Directory,
    /// Microsoft 365's (Entra ID's) policy.
    Microsoft365,
}

impl fmt::Display for PasswordRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = |s: &RuleSource| match s {
            RuleSource::Directory => "the domain's policy",
            RuleSource::Microsoft365 => "Microsoft 365",
        };
        match self {
            PasswordRule::TooShort { min, source } => {
                write!(f, "{} requires at least {min} characters", src(source))
            }
            PasswordRule::TooLong { max } => {
                write!(f, "Microsoft 365 allows at most {max} characters")
            }
            PasswordRule::TooFewCharacterClasses {
                required,
                found,
                source,
            } => write!(
                f,
                "{} requires {required} of: upper case, lower case, digits, symbols (found {found})",
                src(source)
            ),
            PasswordRule::DisallowedCharacter { description } => {
                write!(
                    f,
                    "Microsoft 365 does not accept {description} in passwords"
                )
            }
            PasswordRule::ContainsAccountName => f.write_str(
                "the domain's policy forbids the account name or parts of the person's name",
            ),
        }
    }
}

/// Who the password is for, for AD's "no account name in the password" rule.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordContext<'a> {
    /// `sAMAccountName`.
    pub sam_account_name: Option<&'a str>,
    /// `displayName`.
    pub display_name: Option<&'a str>,
}

fn m365_symbol(c: char) -> bool {
    matches!(
        c,
        '@' | '#'
            | '$'
            | '%'
            | '^'
            | '&'
            | '*'
            | '-'
            | '_'
            | '!'
            | '+'
            | '='
            | '['
            | ']'
            | '{'
            | '}'
            | '|'
            | '\\'
            | ':'
            | '\''
            | ','
            | '.'
            | '?'
            | '/'
            | '`'
            | '~'
            | '"'
            | '('
            | ')'
            | ';'
            | '<'
            | '>'
            | ' '
    )
}

/// Every rule the password breaks, of the domain's `policy` (if given) and of
/// Microsoft 365. Empty when the password is acceptable to both.
pub fn password_rules_broken(
    password: &str,
    policy: Option<&PasswordPolicy>,
    who: PasswordContext<'_>,
) -> Vec<PasswordRule> {
    let mut broken = Vec::new();
    let len = password.chars().count();
    let upper = password.chars().any(|c| c.is_uppercase());
    let lower = password.chars().any(|c| c.is_lowercase());
    let digit = password.chars().any(|c| c.is_ascii_digit());
    let symbol = password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_control());
    let other_alpha = password
        .chars()
        .any(|c| c.is_alphabetic() && !c.is_uppercase() && !c.is_lowercase());
    let m365_classes = [upper, lower, digit, symbol].iter().filter(|b| **b).count();

    if let Some(p) = policy {
        if len < p.min_length as usize {
            broken.push(PasswordRule::TooShort {
                min: p.min_length as usize,
                source: RuleSource::Directory,
            });
        }
        if p.complexity {
            let ad_classes = m365_classes + usize::from(other_alpha);
            if ad_classes < 3 {
                broken.push(PasswordRule::TooFewCharacterClasses {
                    required: 3,
                    found: ad_classes,
                    source: RuleSource::Directory,
                });
            }
            if contains_account_name(password, who) {
                broken.push(PasswordRule::ContainsAccountName);
            }
        }
    }
    if len < M365_PASSWORD_MIN_LEN {
        broken.push(PasswordRule::TooShort {
            min: M365_PASSWORD_MIN_LEN,
            source: RuleSource::Microsoft365,
        });
    }
    if len > M365_PASSWORD_MAX_LEN {
        broken.push(PasswordRule::TooLong {
            max: M365_PASSWORD_MAX_LEN,
        });
    }
    if m365_classes < 3 {
        broken.push(PasswordRule::TooFewCharacterClasses {
            required: 3,
            found: m365_classes,
            source: RuleSource::Microsoft365,
        });
    }
    if !password.is_ascii() {
        broken.push(PasswordRule::DisallowedCharacter {
            description: "non-ASCII (Unicode) characters".into(),
        });
    } else if password
        .chars()
        .any(|c| !c.is_ascii_alphanumeric() && !m365_symbol(c))
    {
        broken.push(PasswordRule::DisallowedCharacter {
            description: "control characters such as tabs or line breaks".into(),
        });
    }
    broken
}

fn contains_account_name(password: &str, who: PasswordContext<'_>) -> bool {
    let pw = password.to_lowercase();
    if let Some(sam) = who.sam_account_name
        && sam.chars().count() >= 3
        && pw.contains(&sam.to_lowercase())
    {
        return true;
    }
    if let Some(name) = who.display_name {
        return name
            .split([',', '.', '-', '_', ' ', '#', '\t'])
            .filter(|t| t.chars().count() >= 3)
            .any(|t| pw.contains(&t.to_lowercase()));
    }
    false
}

/// [`password_rules_broken`] as a `Result`: the error lists every rule broken, and never
/// the password.
///
/// # Errors
/// [`ErrorCode::PasswordPolicy`].
pub fn password(
    password: &str,
    policy: Option<&PasswordPolicy>,
    who: PasswordContext<'_>,
) -> Result<()> {
    let broken = password_rules_broken(password, policy, who);
    if broken.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = broken.iter().map(ToString::to_string).collect();
    Err(Error::new(
        ErrorCode::PasswordPolicy,
        format!("the password is not accepted: {}", list.join("; ")),
    ))
}

/// The longest timeout a configuration may set, in seconds (one hour): longer is a typo,
/// and values like `1e300` do not fit a duration at all.
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// Checks a duration setting in seconds: finite, above zero, at most `max`.
///
/// # Errors
/// [`ErrorCode::InvalidConfig`] naming `field` and the range.
pub fn seconds(field: &str, value: f64, max: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::InvalidConfig,
            format!("{field} {value} is outside the range (0, {max}] seconds"),
        ))
    }
}

/// `text` with control characters (C0, DEL, C1 — terminal escape sequences among them)
/// written as `\u{..}` escapes, so a value from the network or a directory cannot drive
/// the reader's terminal. Tabs, newlines and carriage returns are escaped too.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_rules() {
        for ok in [
            "jdoe@contoso.com",
            "jane.o'neil@contoso.co.uk",
            "a_b-c!d#e^f~g@x-y.example",
        ] {
            assert!(upn(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "empty"),
            ("jdoe", "no @domain"),
            ("@contoso.com", "before @ is empty"),
            ("j doe@contoso.com", "character ` `"),
            ("jdoe%@contoso.com", "character `%`"),
            ("j@d@contoso.com", "more than one @"),
            (".jdoe@contoso.com", "start or end with a period"),
            ("jdoe.@contoso.com", "start or end with a period"),
            ("j..doe@contoso.com", "two periods"),
            ("jdoe@contoso", "two labels"),
            ("jdoe@Contoso.com", "lower case"),
        ];
        for (v, rule) in cases {
            let e = upn(v).expect_err(v);
            assert_eq!(e.code(), ErrorCode::InvalidUpn);
            assert!(e.message().contains(rule), "{v}: {}", e.message());
        }
        let long_local = format!("{}@contoso.com", "a".repeat(65));
        assert!(upn(&long_local).expect_err("long").message().contains("64"));
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(60));
        assert!(upn(&long).expect_err("long").message().contains("113"));
    }

    #[test]
    fn mail_nickname_rules() {
        assert!(mail_nickname("jane.doe").is_ok());
        assert!(mail_nickname("sales+eu").is_ok());
        for (v, rule) in [
            ("", "empty"),
            ("jane doe", "character ` `"),
            ("a@b", "character `@`"),
            ("(x)", "character `(`"),
            (".x", "periods"),
            ("x..y", "periods"),
        ] {
            let e = mail_nickname(v).expect_err(v);
            assert_eq!(e.code(), ErrorCode::InvalidMailNickname);
            assert!(e.message().contains(rule), "{v}: {}", e.message());
        }
        assert!(mail_nickname(&"a".repeat(65)).is_err());
        assert!(mail_nickname(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn domain_name_rules() {
        for ok in [
            "contoso.com",
            "contoso.co.uk",
            "xn--bcher-kva.example",
            "a-b.io",
        ] {
            assert!(domain_name(ok).is_ok(), "{ok}");
        }
        for (v, rule) in [
            ("contoso.com.", "trailing dot"),
            ("Contoso.com", "lower case"),
            ("192.168.1.1", "IP address"),
            ("localhost", "two labels"),
            ("a..com", "empty label"),
            ("-a.com", "hyphen"),
            ("a_b.com", "character `_`"),
            ("bücher.example", "punycode"),
            ("contoso.123", "all digits"),
        ] {
            let e = domain_name(v).expect_err(v);
            assert_eq!(e.code(), ErrorCode::InvalidDomainName);
            assert!(e.message().contains(rule), "{v}: {}", e.message());
        }
        assert!(
            domain_name(&format!("{}.com", "a".repeat(64)))
                .expect_err("label")
                .message()
                .contains("63")
        );
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(
            domain_name(&long)
                .expect_err("long")
                .message()
                .contains("253")
        );
    }

    #[test]
    fn usage_location_and_display_name() {
        assert!(usage_location("GB").is_ok());
        for v in ["gb", "GBR", "", "G1"] {
            assert_eq!(
                usage_location(v).expect_err(v).code(),
                ErrorCode::InvalidUsageLocation
            );
        }
        assert!(display_name("Jane").is_ok());
        assert!(display_name("  ").is_err());
        assert!(display_name(&"x".repeat(257)).is_err());
    }

    #[test]
    fn password_checker_reports_every_rule_of_both_policies() {
        let policy = PasswordPolicy {
            min_length: 10,
            complexity: true,
            history_length: 24,
        };
        let who = PasswordContext {
            sam_account_name: Some("jdoe"),
            display_name: Some("Jane Doe"),
        };
        assert!(password_rules_broken("Winter-2026!x", Some(&policy), who).is_empty());
        let broken = password_rules_broken("abc", Some(&policy), who);
        assert!(broken.contains(&PasswordRule::TooShort {
            min: 10,
            source: RuleSource::Directory
        }));
        assert!(broken.contains(&PasswordRule::TooShort {
            min: 8,
            source: RuleSource::Microsoft365
        }));
        assert!(broken.iter().any(|r| matches!(
            r,
            PasswordRule::TooFewCharacterClasses {
                source: RuleSource::Microsoft365,
                found: 1,
                ..
            }
        )));
        assert!(
            password_rules_broken("Jdoe-2026-xyz", Some(&policy), who)
                .contains(&PasswordRule::ContainsAccountName)
        );
        assert!(
            password_rules_broken("xDoe!2026abc", Some(&policy), who)
                .contains(&PasswordRule::ContainsAccountName)
        );
        // Without a local policy only Microsoft 365's rules apply.
        assert!(password_rules_broken("Jdoe-2026", None, who).is_empty());
        assert!(
            password_rules_broken("Äpfel-2026x", None, who)
                .iter()
                .any(|r| matches!(r, PasswordRule::DisallowedCharacter { .. }))
        );
        assert!(
            password_rules_broken("Tab\tTab123", None, who)
                .iter()
                .any(|r| matches!(r, PasswordRule::DisallowedCharacter { .. }))
        );
        assert_eq!(
            password_rules_broken(&format!("Aa1{}", "x".repeat(254)), None, who),
            vec![PasswordRule::TooLong { max: 256 }]
        );
    }

    #[test]
    fn password_error_lists_rules_and_never_the_password() {
        let e = password("hunter2", None, PasswordContext::default()).expect_err("weak");
        assert_eq!(e.code(), ErrorCode::PasswordPolicy);
        assert!(e.message().contains("at least 8"));
        assert!(e.message().contains("3 of"));
        assert!(!e.to_string().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
    }
}
