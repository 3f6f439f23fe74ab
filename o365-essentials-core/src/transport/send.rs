//! The one request loop every Microsoft 365 backend uses (Graph, the Exchange admin API,
//! SharePoint REST): a token from the resource's cache, pacing, one token refresh after
//! a 401, waits on 429 and retries of transient failures — only for requests that are
//! safe to resend. What differs between the services (pacing, error bodies) is a
//! [`Service`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use secrecy::ExposeSecret;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{Retry, TokenCache, backoff, retry_after, transport_error};
use crate::error::{Error, ErrorCode, Result};
use crate::graph::GraphTenant;

/// One answer, read.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) request_id: Option<String>,
    /// The JSON body (`Null` when empty or not JSON).
    pub(crate) body: Value,
}

/// Counters of what a client did.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// What a client (Graph, Exchange or SharePoint) sent and met, for benchmarks, tests and
/// the operator's curiosity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests sent (each retry and each page counts).
    pub requests: u64,
    /// Throttled answers received (429, 503 with `Retry-After`).
    pub throttled: u64,
    /// Requests sent again after a throttled or transient answer.
    pub retries: u64,
    /// Waits made before sending because the service's announced budget was spent
    /// (Exchange's `Rate-Limit-Remaining`, SharePoint's resource-unit window; Graph
    /// paces instead and counts none).
    pub budget_waits: u64,
}

impl Counters {
    pub(crate) fn get(&self) -> RequestCounts {
        RequestCounts {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            budget_waits: 0,
        }
    }
}

/// "No request before this instant", shared by a client's callers.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    until: std::sync::Mutex<Option<Instant>>,
    waits: AtomicU64,
}

impl Hold {
    /// Pushes the hold out to `d` from now (never pulls it in).
    pub(crate) fn extend(&self, d: Duration) {
        let Some(until) = Instant::now().checked_add(d.min(super::MAX_RETRY_AFTER)) else {
            return;
        };
        let mut h = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_none_or(|t| t < until) {
            *h = Some(until);
        }
    }

    /// Waits out the hold, if any.
    pub(crate) async fn wait(&self) {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                self.waits.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(t - now).await;
            }
        }
    }

    /// Holds until the window resets when an answer says its budget is spent
    /// (`remaining` header 0; `reset` header in seconds or an RFC 3339 instant).
    pub(crate) fn hold_if_spent(&self, headers: &HeaderMap, remaining: &str, reset: &str) {
        let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let left = get(remaining).and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(0), Some(reset)) = (left, get(reset).and_then(reset_in)) {
            // A little past the reset, so the next call lands in the new window.
            self.extend(reset.min(Duration::from_secs(300)) + Duration::from_millis(25));
        }
    }

    /// How many times a caller waited.
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

/// `Rate-Limit-Reset`: seconds, or the instant (RFC 3339) the window resets.
pub(crate) fn reset_in(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let at = OffsetDateTime::parse(v, &Rfc3339).ok()?;
    let d = at - OffsetDateTime::now_utc();
    Some(
        Duration::try_from(d)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

/// Reads an answer's body, at most [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES): a larger
/// one is refused before it fills the memory. A body cut off by the network reads as
/// empty, as before.
async fn read_body(mut resp: reqwest::Response, what: &str) -> Result<String> {
    let limit = super::MAX_BODY_BYTES;
    let too_large = || {
        Error::new(
            ErrorCode::UntrustedResponse,
            format!("{what}: the answer is larger than {limit} bytes; it was not read"),
        )
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len().saturating_add(chunk.len()) > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => return Ok(String::new()),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// What differs between the services around one request.
#[async_trait]
pub(crate) trait Service: Send + Sync {
    /// Waits until a request may go out; what it returns is held while it is in flight.
    async fn slot(&self, write: bool) -> Option<Box<dyn Send + '_>>;

    /// Sees every answer (pacing from its headers).
    fn answered(&self, status: u16, headers: &HeaderMap, write: bool);

    /// A 429 asked to wait this long; the next [`Service::slot`] must honour it.
    fn throttled(&self, after: Duration, write: bool);

    /// The service's error body → [`Error`].
    fn error(&self, answer: &Answer, what: &str) -> Error;

    /// Whether a 401 may be a stale token worth one refresh.
    fn refresh_on_401(&self, err: &Error) -> bool {
        err.code() == ErrorCode::Auth
    }
}

impl GraphTenant {
    /// Sends `request` (built fresh for every attempt; the bearer token and a
    /// `client-request-id` are added here) until it is answered, with pacing, one token
    /// refresh, waits on 429 and retries of transient failures. For
    /// [`Retry::CallerChecks`] a transient failure is returned instead (its outcome is
    /// unknown), except 429, which the services answer before doing anything.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send(
        &self,
        service: &dyn Service,
        tokens: &TokenCache,
        counters: &Counters,
        request: &(dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync),
        write: bool,
        retry: Retry,
        what: &str,
    ) -> Result<Answer> {
        let cfg = self.config();
        let mut auth_retried = false;
        let mut last: Option<Error> = None;
        for attempt in 0..cfg.max_attempts.max(1) {
            if attempt > 0 {
                counters.retries.fetch_add(1, Ordering::Relaxed);
            }
            let slot = service.slot(write).await;
            let token = self.token_from(tokens).await?;
            let req = request(self.http())
                .bearer_auth(token.value.expose_secret())
                .header("client-request-id", Uuid::new_v4().to_string());
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let sent = req.send().await;
            drop(slot);
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    let err = transport_error(&e, what);
                    if retry == Retry::CallerChecks || err.code() == ErrorCode::Tls {
                        return Err(err);
                    }
                    let wait = backoff(attempt);
                    log::debug!(target: "o365_essentials::retry", "{what}: retrying in {wait:?} after a transport failure ({}): {err}", err.code().name());
                    last = Some(err);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            service.answered(status, &headers, write);
            let request_id = headers
                .get("request-id")
                .or_else(|| headers.get("sprequestguid"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = read_body(resp, what).await?;
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::Null)
            };
            let answer = Answer {
                status,
                headers,
                request_id,
                body,
            };
            if (200..300).contains(&status) {
                return Ok(answer);
            }
            if status == 429 {
                counters.throttled.fetch_add(1, Ordering::Relaxed);
                let after = retry_after(&answer.headers).unwrap_or_else(|| backoff(attempt));
                log::debug!(target: "o365_essentials::throttling", "{what}: throttled (429); waiting {after:?} before attempt {}", attempt + 2);
                service.throttled(after, write);
                last = Some(service.error(&answer, what).with_retry_after(after));
                continue;
            }
            let err = service.error(&answer, what);
            if status == 401 && !auth_retried && service.refresh_on_401(&err) {
                // An expired or revoked token: fetch a new one once.
                auth_retried = true;
                tokens.invalidate().await;
                continue;
            }
            if matches!(status, 500 | 502 | 503 | 504) {
                if retry == Retry::CallerChecks {
                    return Err(err);
                }
                let wait = retry_after(&answer.headers).unwrap_or_else(|| backoff(attempt));
                log::debug!(target: "o365_essentials::retry", "{what}: the service answered {status}; retrying in {wait:?}");
                last = Some(err);
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(err);
        }
        Err(last.unwrap_or_else(|| {
            Error::new(
                ErrorCode::ServiceUnavailable,
                format!("{what}: no attempt succeeded"),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_headers_read_as_seconds_or_instants() {
        assert_eq!(reset_in("2.5"), Some(Duration::from_millis(2500)));
        assert!(reset_in("garbage").is_none());
        assert!(reset_in("-1").is_none());
        let soon = (OffsetDateTime::now_utc() + time::Duration::seconds(3))
            .format(&Rfc3339)
            .unwrap();
        let d = reset_in(&soon).unwrap();
        assert!(d > Duration::from_secs(1) && d <= Duration::from_secs(3));
        let past = (OffsetDateTime::now_utc() - time::Duration::seconds(3))
            .format(&Rfc3339)
            .unwrap();
        assert_eq!(reset_in(&past), Some(Duration::ZERO));
    }
}
