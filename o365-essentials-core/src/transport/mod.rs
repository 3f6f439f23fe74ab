//! The transport every Microsoft 365 backend (`graph/`, `exchange/`, `sharepoint/`)
//! sends through: credentials and the token cache (`auth`), the pacer that keeps writes
//! and reads within the tenant's budget (`pacer`), and the request loop (`send`: one
//! token refresh, waits on 429 with `Retry-After`, retries of transient failures, never
//! a blind resend of a create), with the helpers they share — `Retry-After` parsing,
//! back-off, the bounds on waits and answer sizes, and the origin checks of links
//! followed with a bearer token.

// The transport keeps wall-clock time of its own (token expiry, `Retry-After` dates);
// only the engine must read it from its Clock.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};

pub(crate) mod auth;
pub(crate) mod pacer;
mod send;

pub(crate) use auth::{LoadedCredential, TokenCache};
pub use send::RequestCounts;
pub(crate) use send::{Answer, Counters, Hold, Service};

pub(crate) fn transport_error(e: &reqwest::Error, what: &str) -> Error {
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        chain.push_str(&s.to_string().to_lowercase());
        chain.push(' ');
        src = s.source();
    }
    let (code, why) = if e.is_timeout() {
        (ErrorCode::Timeout, "the request timed out")
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        (
            ErrorCode::Tls,
            "the TLS connection failed (is the server's certificate trusted?)",
        )
    } else if e.is_connect() {
        (ErrorCode::Transport, "cannot connect")
    } else {
        (ErrorCode::Transport, "the connection failed")
    };
    Error::new(code, format!("{what}: {why}"))
}

/// Is the request safe to send again when its outcome is unknown?
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, PATCH, PUT: resend freely.
    Idempotent,
    /// A POST or DELETE whose effect may have happened: the caller decides (looks up).
    CallerChecks,
}

pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 0.2 * 2f64.powi(attempt.min(6) as i32);
    Duration::from_secs_f64(rand::random::<f64>() * base.min(10.0) + 0.05)
}

/// The longest wait a `Retry-After` may ask for: a hostile or broken answer cannot park
/// the service for days.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The largest answer body read from a service (Graph, Exchange, SharePoint): a page of
/// 999 accounts is about 2 MB, so 32 MiB leaves room without letting an answer exhaust
/// the memory of the domain controller.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after_value)
}

/// A `Retry-After` value: delta-seconds or an HTTP-date (RFC 9110), bounded to
/// 0..=[`MAX_RETRY_AFTER`]. A negative wait or a date in the past is no wait; a value
/// that is neither form (NaN, garbage) is `None`, so the caller backs off its own way.
pub(crate) fn retry_after_value(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() {
            return None;
        }
        return Some(Duration::from_secs_f64(
            secs.clamp(0.0, MAX_RETRY_AFTER.as_secs_f64()),
        ));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &fmt).ok()?.assume_utc();
    let wait = at - time::OffsetDateTime::now_utc();
    Some(
        Duration::try_from(wait)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The scheme, host and port of a URL: links are followed only within one origin, since
/// the bearer token goes with them.
pub(crate) fn origin(url: &str) -> Option<(String, String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    Some((
        u.scheme().to_ascii_lowercase(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?,
    ))
}

/// Whether `link` (from a service's answer) points at the same origin as `base` (from
/// the configuration).
pub(crate) fn same_origin(link: &str, base: &str) -> bool {
    matches!((origin(link), origin(base)), (Some(a), Some(b)) if a == b)
}

/// The error for a link in an answer that leads away from the configured service.
pub(crate) fn foreign_link(what: &str, service: &str, link: &str) -> Error {
    let shown: String = link.chars().take(200).collect();
    Error::new(
        ErrorCode::UntrustedResponse,
        format!(
            "{what}: {service} answered with a link to another address ({}); it was not followed, and no token was sent there",
            crate::validate::printable(&shown)
        ),
    )
}

/// Counts the pages of one listing and checks every link to the next page: same origin
/// as the configured service, and no more than the configured number of pages.
pub(crate) struct Pages {
    base: String,
    service: &'static str,
    max: u32,
    seen: u32,
}

impl Pages {
    pub(crate) fn new(base: &str, service: &'static str, max: u32) -> Pages {
        Pages {
            base: base.to_string(),
            service,
            max: max.max(1),
            seen: 1,
        }
    }

    /// The next page's link, checked; errors name the limit that was reached.
    pub(crate) fn follow(&mut self, link: &str, what: &str) -> Result<String> {
        if !same_origin(link, &self.base) {
            return Err(foreign_link(what, self.service, link));
        }
        if self.seen >= self.max {
            return Err(Error::new(
                ErrorCode::UntrustedResponse,
                format!(
                    "{what}: {} sent more than {} pages (tenant.max_pages); the listing was stopped",
                    self.service, self.max
                ),
            ));
        }
        self.seen += 1;
        Ok(link.to_string())
    }
}
