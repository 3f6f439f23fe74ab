//! Pure pieces of the LDAP backend: entry → model mapping, filter values, the DirSync
//! control's BER, and the LDAP result-code → [`Error`] mapping.

use std::collections::HashMap;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::error::{Error, ErrorCode, ServiceDetail};
use crate::model::{LocalGroup, LocalUser, ObjectGuid};

/// The attributes read for a user.
pub(crate) const USER_ATTRS: &[&str] = &[
    "objectGUID",
    "mS-DS-ConsistencyGuid",
    "sAMAccountName",
    "userPrincipalName",
    "givenName",
    "sn",
    "displayName",
    "mail",
    "proxyAddresses",
    "userAccountControl",
    "memberOf",
    "whenChanged",
    "uSNChanged",
    "isCriticalSystemObject",
    "accountExpires",
    "objectSid",
    "adminCount",
    "primaryGroupID",
];

/// A binary `objectSid` → its text form (`S-1-5-21-…-1104`); `None` when malformed.
pub(crate) fn sid_text(b: &[u8]) -> Option<String> {
    let (&revision, rest) = b.split_first()?;
    let (&count, rest) = rest.split_first()?;
    let authority = rest.get(0..6)?;
    let subs = rest.get(6..)?;
    if subs.len() != usize::from(count) * 4 {
        return None;
    }
    let authority = authority
        .iter()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    let mut out = format!("S-{revision}-{authority}");
    for c in subs.chunks_exact(4) {
        let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        out.push_str(&format!("-{v}"));
    }
    Some(out)
}

/// The last sub-authority of a SID in text form.
pub(crate) fn rid_of(sid: &str) -> Option<u32> {
    sid.rsplit('-').next()?.parse().ok()
}

/// The SID of the domain a user's SID belongs to (everything but the RID), for
/// domain-relative groups; `None` for a builtin SID.
pub(crate) fn domain_sid_of(sid: &str) -> Option<&str> {
    sid.strip_prefix("S-1-5-21-")?;
    sid.rsplit_once('-').map(|(d, _)| d)
}

/// `accountExpires` (a FILETIME: 100 ns ticks since 1601-01-01 UTC) as a time; 0 and
/// `0x7FFFFFFFFFFFFFFF` mean "never".
pub(crate) fn account_expires(v: &str) -> Option<time::OffsetDateTime> {
    let ticks: i64 = v.trim().parse().ok()?;
    if ticks <= 0 || ticks == i64::MAX {
        return None;
    }
    // Seconds from 1601-01-01 to 1970-01-01.
    const EPOCH_DIFF: i64 = 11_644_473_600;
    let unix = ticks / 10_000_000 - EPOCH_DIFF;
    time::OffsetDateTime::from_unix_timestamp(unix).ok()
}

/// An entry's attributes, text and binary, looked up case-insensitively.
pub(crate) struct Entry<'a> {
    pub dn: &'a str,
    attrs: &'a HashMap<String, Vec<String>>,
    bin: &'a HashMap<String, Vec<Vec<u8>>>,
}

impl<'a> Entry<'a> {
    pub(crate) fn new(
        dn: &'a str,
        attrs: &'a HashMap<String, Vec<String>>,
        bin: &'a HashMap<String, Vec<Vec<u8>>>,
    ) -> Self {
        Entry { dn, attrs, bin }
    }

    pub(crate) fn texts(&self, name: &str) -> Vec<String> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.texts(name).into_iter().next()
    }

    /// Every value as bytes, whether ldap3 filed them as text or binary.
    pub(crate) fn all_bytes(&self, name: &str) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .bin
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        out.extend(self.texts(name).into_iter().map(String::into_bytes));
        out
    }

    /// The first value as bytes, whether ldap3 filed it as text or binary.
    pub(crate) fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.bin
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().cloned())
            .or_else(|| self.text(name).map(String::into_bytes))
    }
}

/// `20261126060745.0Z` → a time.
pub(crate) fn generalized_time(s: &str) -> Option<OffsetDateTime> {
    let d = s.get(0..14)?;
    let n = |r: std::ops::Range<usize>| d.get(r).and_then(|x| x.parse::<u32>().ok());
    let date = Date::from_calendar_date(
        n(0..4)? as i32,
        Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(PrimitiveDateTime::new(date, t).assume_utc())
}

fn corrupt(dn: &str, what: &str) -> Error {
    Error::new(
        ErrorCode::UnexpectedResponse,
        format!("the directory entry {dn} has {what}"),
    )
}

/// A user entry → [`LocalUser`].
pub(crate) fn user(e: &Entry<'_>) -> Result<LocalUser, Error> {
    let guid = ObjectGuid::from_ad_bytes(
        &e.bytes("objectGUID")
            .ok_or_else(|| corrupt(e.dn, "no objectGUID"))?,
    )?;
    let consistency_guid = match e.bytes("mS-DS-ConsistencyGuid") {
        Some(b) => Some(
            ObjectGuid::from_ad_bytes(&b)
                .map_err(|_| corrupt(e.dn, "an mS-DS-ConsistencyGuid that is not 16 bytes"))?,
        ),
        None => None,
    };
    Ok(LocalUser {
        guid,
        consistency_guid,
        dn: e.dn.to_string(),
        sam_account_name: e
            .text("sAMAccountName")
            .ok_or_else(|| corrupt(e.dn, "no sAMAccountName"))?,
        user_principal_name: e.text("userPrincipalName"),
        given_name: e.text("givenName"),
        surname: e.text("sn"),
        display_name: e.text("displayName"),
        mail: e.text("mail"),
        proxy_addresses: e.texts("proxyAddresses"),
        user_account_control: e
            .text("userAccountControl")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v as u32)
            .unwrap_or(0),
        member_of: e.texts("memberOf"),
        when_changed: e.text("whenChanged").as_deref().and_then(generalized_time),
        usn_changed: e
            .text("uSNChanged")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        critical_system_object: e
            .text("isCriticalSystemObject")
            .is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
        account_expires: e
            .text("accountExpires")
            .as_deref()
            .and_then(account_expires),
        standing: crate::model::LocalStanding {
            rid: e
                .bytes("objectSid")
                .as_deref()
                .and_then(sid_text)
                .as_deref()
                .and_then(rid_of),
            admin_count: e
                .text("adminCount")
                .is_some_and(|v| v.trim().parse::<i64>().is_ok_and(|n| n != 0)),
            privileged_groups: Vec::new(),
            out_of_scope: false,
        },
    })
}

/// The privileged groups a listed user is in: its `memberOf` groups and its primary
/// group, each with what it amounts to through nesting (`closure`: privileged groups by
/// group DN, group DNs by SID).
pub(crate) fn privileged_groups(
    e: &Entry<'_>,
    u: &LocalUser,
    closure: &(HashMap<String, Vec<String>>, HashMap<String, String>),
) -> Vec<String> {
    let (by_dn, by_sid) = closure;
    let primary = e
        .text("primaryGroupID")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .and_then(|rid| {
            let sid = e.bytes("objectSid").as_deref().and_then(sid_text)?;
            let domain = domain_sid_of(&sid)?;
            by_sid.get(&format!("{domain}-{rid}")).cloned()
        });
    let mut out: Vec<String> = u
        .member_of
        .iter()
        .map(|m| m.to_ascii_lowercase())
        .chain(primary)
        .filter_map(|dn| by_dn.get(&dn))
        .flatten()
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The SIDs in a `tokenGroups` answer (binary values), as text.
pub(crate) fn token_group_sids(e: &Entry<'_>) -> Vec<String> {
    e.all_bytes("tokenGroups")
        .iter()
        .filter_map(|b| sid_text(b))
        .collect()
}

/// A group entry → [`LocalGroup`].
pub(crate) fn group(e: &Entry<'_>) -> Result<LocalGroup, Error> {
    Ok(LocalGroup {
        guid: ObjectGuid::from_ad_bytes(
            &e.bytes("objectGUID")
                .ok_or_else(|| corrupt(e.dn, "no objectGUID"))?,
        )?,
        dn: e.dn.to_string(),
        sam_account_name: e.text("sAMAccountName").unwrap_or_default(),
        display_name: e.text("displayName").or_else(|| e.text("cn")),
        mail: e.text("mail"),
    })
}

/// `(objectGUID=\01\02...)` for a GUID.
pub(crate) fn guid_filter(g: ObjectGuid) -> String {
    let mut s = String::from("(objectGUID=");
    for b in g.to_ad_bytes() {
        s.push_str(&format!("\\{b:02x}"));
    }
    s.push(')');
    s
}

/// `unicodePwd`: UTF-16LE of the password in double quotes.
pub(crate) fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

// ---- BER for the DirSync control ----

fn ber_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn ber_int(v: i64, out: &mut Vec<u8>) {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    out.push(0x02);
    ber_len(8 - start, out);
    out.extend_from_slice(&bytes[start..]);
}

/// The DirSync request value: SEQUENCE { flags, maxBytes, cookie }.
pub(crate) fn dirsync_request(flags: i64, max_bytes: i64, cookie: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    ber_int(flags, &mut body);
    ber_int(max_bytes, &mut body);
    body.push(0x04);
    ber_len(cookie.len(), &mut body);
    body.extend_from_slice(cookie);
    let mut out = vec![0x30];
    ber_len(body.len(), &mut out);
    out.extend(body);
    out
}

fn read_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 8 {
            return None;
        }
        let mut len = 0usize;
        for b in buf.get(2..2 + n)? {
            len = len.checked_mul(256)?.checked_add(*b as usize)?;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, buf.get(header..end)?, buf.get(end..)?))
}

fn read_int(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let mut n: i64 = if v[0] & 0x80 != 0 { -1 } else { 0 };
    for b in v {
        n = (n << 8) | i64::from(*b);
    }
    Some(n)
}

/// The DirSync response value: (more results, cookie). `None` when malformed.
pub(crate) fn dirsync_response(val: &[u8]) -> Option<(bool, Vec<u8>)> {
    let (tag, seq, _) = read_tlv(val)?;
    if tag != 0x30 {
        return None;
    }
    let (t1, more, rest) = read_tlv(seq)?;
    let (t2, _unused, rest) = read_tlv(rest)?;
    let (t3, cookie, _) = read_tlv(rest)?;
    if t1 != 0x02 || t2 != 0x02 || t3 != 0x04 {
        return None;
    }
    Some((read_int(more)? != 0, cookie.to_vec()))
}

// ---- errors ----

/// Maps an LDAP result code (and its diagnostic text) to an [`Error`].
pub(crate) fn result_error(rc: u32, text: &str, what: &str) -> Error {
    let lower = text.to_lowercase();
    let (code, msg) = match rc {
        49 => {
            let why = if lower.contains("data 532") {
                "the password has expired"
            } else if lower.contains("data 533") {
                "the account is disabled"
            } else if lower.contains("data 775") {
                "the account is locked out"
            } else {
                "wrong user name or password"
            };
            (
                ErrorCode::Auth,
                format!("{what}: the directory refused the service account's sign-in ({why})"),
            )
        }
        50 => (
            ErrorCode::PermissionDenied,
            format!("{what}: the service account lacks the rights for this"),
        ),
        32 => (ErrorCode::NotFound, format!("{what}: no such object")),
        68 => (
            ErrorCode::AlreadyExists,
            format!("{what}: an object with this name already exists"),
        ),
        19 if lower.contains("0000052d") => (
            ErrorCode::PasswordPolicy,
            format!(
                "{what}: the domain's password policy refused the password (length, complexity or history)"
            ),
        ),
        19 => (
            ErrorCode::Conflict,
            format!("{what}: the directory refused the change (constraint violation)"),
        ),
        8 | 13 => (
            ErrorCode::NotSupported,
            format!("{what}: the directory requires an encrypted (TLS) connection for this"),
        ),
        53 if lower.contains("0000001f") || lower.contains("password") => (
            ErrorCode::NotSupported,
            format!("{what}: the directory will not change passwords over this connection"),
        ),
        53 => (
            ErrorCode::PolicyViolation,
            format!("{what}: the directory is unwilling to perform this"),
        ),
        51 | 52 => (
            ErrorCode::ServiceUnavailable,
            format!("{what}: the directory is busy or unavailable"),
        ),
        3 => (
            ErrorCode::Timeout,
            format!("{what}: the directory's time limit was exceeded"),
        ),
        12 => (
            ErrorCode::NotSupported,
            format!("{what}: the directory does not support a control this needs"),
        ),
        21 | 34 | 64 | 65 | 16 | 17 => (
            ErrorCode::InvalidInput,
            format!("{what}: the directory rejected a value ({text})"),
        ),
        _ => (
            ErrorCode::UnexpectedResponse,
            format!("{what}: the directory answered with result code {rc}"),
        ),
    };
    Error::new(code, msg).with_service(ServiceDetail {
        code: format!("LDAP {rc}"),
        message: text.trim_end_matches('\0').to_string(),
        request_id: None,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_map_to_users_whatever_ldap3_filed_the_guid_as() {
        let guid = [4u8, 3, 2, 1, 6, 5, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16];
        let mut attrs = HashMap::new();
        attrs.insert("sAMAccountName".to_string(), vec!["jdoe".to_string()]);
        attrs.insert("userAccountControl".to_string(), vec!["514".to_string()]);
        attrs.insert(
            "whenChanged".to_string(),
            vec!["20261126060745.0Z".to_string()],
        );
        attrs.insert("uSNChanged".to_string(), vec!["4711".to_string()]);
        attrs.insert(
            "isCriticalSystemObject".to_string(),
            vec!["TRUE".to_string()],
        );
        attrs.insert(
            "proxyAddresses".to_string(),
            vec!["SMTP:a@b.c".into(), "smtp:x@b.c".into()],
        );
        let mut bin = HashMap::new();
        bin.insert("objectGUID".to_string(), vec![guid.to_vec()]);
        let e = Entry::new("CN=J,DC=x", &attrs, &bin);
        let u = user(&e).expect("user");
        assert_eq!(u.guid.to_string(), "01020304-0506-0708-090a-0b0c0d0e0f10");
        assert!(!u.enabled());
        assert!(u.critical_system_object);
        assert_eq!(u.usn_changed, 4711);
        assert_eq!(u.proxy_addresses.len(), 2);
        assert_eq!(
            u.when_changed.map(|t| t.unix_timestamp()),
            Some(1_795_673_265)
        );
        // A GUID whose bytes happen to be UTF-8 is filed as text by ldap3.
        let ascii = b"ABCDEFGHIJKLMNOP";
        attrs.insert(
            "objectGUID".to_string(),
            vec![String::from_utf8(ascii.to_vec()).expect("ascii")],
        );
        let none = HashMap::new();
        let e = Entry::new("CN=J,DC=x", &attrs, &none);
        assert_eq!(user(&e).expect("text guid").guid.to_ad_bytes(), *ascii);
        attrs.remove("objectGUID");
        let e = Entry::new("CN=J", &attrs, &none);
        assert_eq!(
            user(&e).expect_err("no guid").code(),
            ErrorCode::UnexpectedResponse
        );
    }

    #[test]
    fn dirsync_ber_round_trips_and_rejects_garbage() {
        let req = dirsync_request(0, 0, b"");
        assert_eq!(
            req,
            vec![0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00]
        );
        let big = dirsync_request(0x8000_0000, 1_048_576, &[7u8; 300]);
        assert_eq!(big[0], 0x30);
        assert_eq!(big[1], 0x82, "long-form length");
        // A response: SEQUENCE { INTEGER 1, INTEGER 0, OCTET STRING cookie }
        let resp = [
            0x30, 0x0a, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x04, 0x02, 0xAB, 0xCD,
        ];
        assert_eq!(dirsync_response(&resp), Some((true, vec![0xAB, 0xCD])));
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x02],
            &[0x04, 0x00],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(dirsync_response(bad), None);
        }
        let mut out = Vec::new();
        ber_int(-1, &mut out);
        assert_eq!(out, vec![0x02, 0x01, 0xff]);
        out.clear();
        ber_int(128, &mut out);
        assert_eq!(out, vec![0x02, 0x02, 0x00, 0x80]);
    }

    #[test]
    fn result_codes_map_to_actionable_errors() {
        assert_eq!(result_error(49, "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563", "binding").code(), ErrorCode::Auth);
        assert!(
            result_error(49, "data 533", "binding")
                .message()
                .contains("disabled")
        );
        assert_eq!(
            result_error(50, "", "x").code(),
            ErrorCode::PermissionDenied
        );
        assert_eq!(result_error(32, "", "x").code(), ErrorCode::NotFound);
        assert_eq!(result_error(68, "", "x").code(), ErrorCode::AlreadyExists);
        assert_eq!(
            result_error(19, "0000052D: Constraint violation", "x").code(),
            ErrorCode::PasswordPolicy
        );
        assert_eq!(result_error(8, "", "x").code(), ErrorCode::NotSupported);
        assert_eq!(
            result_error(99, "", "x").code(),
            ErrorCode::UnexpectedResponse
        );
        assert_eq!(
            result_error(49, "bad", "x")
                .service()
                .map(|s| s.code.as_str()),
            Some("LDAP 49")
        );
    }

    #[test]
    fn guid_filters_and_passwords() {
        let g =
            ObjectGuid::from_ad_bytes(&[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff])
                .expect("guid");
        assert_eq!(
            guid_filter(g),
            "(objectGUID=\\00\\01\\02\\03\\04\\05\\06\\07\\08\\09\\0a\\0b\\0c\\0d\\0e\\ff)"
        );
        assert_eq!(unicode_pwd("ab"), vec![b'"', 0, b'a', 0, b'b', 0, b'"', 0]);
    }
}
