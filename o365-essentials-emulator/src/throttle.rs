//! Throttling as documented for Microsoft Graph identity and access: a resource-unit
//! token bucket per app and tenant (budget by tenant size), write quotas per app and
//! tenant and per tenant, costs per request type, and the 429 answer with a fractional
//! `Retry-After` and the `x-ms-throttle-*` headers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use axum::middleware::Next;
use serde_json::json;

use crate::auth::Claims;
use crate::config::{EmulatorConfig, TenantSize, ThrottleConfig};
use crate::ctx::{RequestCtx, json_response, now_rfc3339};
use crate::state::Emu;

/// Resource-unit window in seconds.

#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    /// Tokens per second at time scale 1.
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(capacity: f64, window_secs: f64) -> Self {
        Bucket {
            capacity,
            tokens: capacity,
            rate: capacity / window_secs.max(1e-9),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant, scale: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate * scale).min(self.capacity);
        self.last = now;
    }

    /// Seconds until `n` tokens are there (0 when they are).
    fn wait_for(&self, n: f64, scale: f64) -> f64 {
        if self.tokens >= n {
            0.0
        } else {
            (n - self.tokens) / (self.rate * scale)
        }
    }

    fn used_fraction(&self) -> f64 {
        1.0 - self.tokens / self.capacity
    }
}

/// The outcome of asking the throttle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Go ahead; `used_percent` is the most used budget.
    Allowed { cost: u32, used_percent: f64 },
    /// 429.
    Throttled {
        retry_after: f64,
        scope: String,
        information: &'static str,
    },
}

/// All the buckets.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// The quotas in force (changeable at run time).
    pub(crate) config: ThrottleConfig,
    size: TenantSize,
    ru_capacity: f64,
    ru_window: f64,
    app_write_capacity: f64,
    app_write_window: f64,
    ru: HashMap<String, Bucket>,
    app_writes: HashMap<String, Bucket>,
    tenant_writes: Bucket,
}

impl Throttle {
    pub(crate) fn new(cfg: &EmulatorConfig) -> Self {
        Throttle::with_quotas(cfg.throttling.clone(), cfg.tenant.size)
    }

    /// Buckets for these quotas, full.
    pub(crate) fn with_quotas(t: ThrottleConfig, size: TenantSize) -> Self {
        let ru = t.resource_units.unwrap_or(match size {
            TenantSize::Small => 3500,
            TenantSize::Medium => 5000,
            TenantSize::Large => 8000,
        });
        Throttle {
            ru_capacity: ru as f64,
            ru_window: t.resource_unit_window_secs,
            app_write_capacity: t.app_tenant_writes as f64,
            app_write_window: t.app_tenant_write_window_secs,
            ru: HashMap::new(),
            app_writes: HashMap::new(),
            tenant_writes: Bucket::new(t.tenant_writes as f64, t.tenant_write_window_secs),
            config: t,
            size,
        }
    }

    /// Changes the quotas; the buckets start again full.
    pub(crate) fn set_quotas(&mut self, t: ThrottleConfig) {
        *self = Throttle::with_quotas(t, self.size);
    }

    /// Takes `cost` resource units (and one write when `write`) for `app`, or says how
    /// long to wait. Nothing is taken when the answer is 429.
    pub(crate) fn check(
        &mut self,
        tenant: &str,
        app: &str,
        cost: u32,
        write: bool,
        scale: f64,
    ) -> Verdict {
        let now = Instant::now();
        let (ru_cap, ru_win, aw_cap, aw_win) = (
            self.ru_capacity,
            self.ru_window,
            self.app_write_capacity,
            self.app_write_window,
        );
        let ru = self
            .ru
            .entry(app.to_string())
            .or_insert_with(|| Bucket::new(ru_cap, ru_win));
        ru.refill(now, scale);
        let ru_wait = ru.wait_for(cost as f64, scale);
        let aw = self
            .app_writes
            .entry(app.to_string())
            .or_insert_with(|| Bucket::new(aw_cap, aw_win));
        aw.refill(now, scale);
        self.tenant_writes.refill(now, scale);
        let (aw_wait, tw_wait) = if write {
            (
                aw.wait_for(1.0, scale),
                self.tenant_writes.wait_for(1.0, scale),
            )
        } else {
            (0.0, 0.0)
        };
        if ru_wait > 0.0 || aw_wait > 0.0 || tw_wait > 0.0 {
            let (retry_after, scope, information) = if tw_wait >= aw_wait && tw_wait >= ru_wait {
                (
                    tw_wait,
                    format!("Tenant/ReadWrite/{tenant}"),
                    "WriteLimitExceeded",
                )
            } else if aw_wait >= ru_wait {
                (
                    aw_wait,
                    format!("Tenant_Application/ReadWrite/{tenant}/{app}"),
                    "WriteLimitExceeded",
                )
            } else {
                (
                    ru_wait,
                    format!("Tenant_Application/ReadWrite/{tenant}/{app}"),
                    "ResourceUnitLimitExceeded",
                )
            };
            return Verdict::Throttled {
                retry_after,
                scope,
                information,
            };
        }
        ru.tokens -= cost as f64;
        let mut used = ru.used_fraction();
        if write {
            aw.tokens -= 1.0;
            self.tenant_writes.tokens -= 1.0;
            used = used
                .max(aw.used_fraction())
                .max(self.tenant_writes.used_fraction());
        }
        Verdict::Allowed {
            cost,
            used_percent: used * 100.0,
        }
    }
}

/// The documented resource-unit cost of a request.
pub(crate) fn resource_units(method: &Method, path: &str, query: Option<&str>) -> u32 {
    let p = path.trim_end_matches('/').to_ascii_lowercase();
    let segments: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != "v1.0")
        .collect();
    let base: i32 = if *method != Method::GET {
        1
    } else {
        match segments.as_slice() {
            ["users"] | ["users", _] => 2,
            ["subscribedskus"] => 3,
            ["groups", _, "members"] => 3,
            [.., "transitivemembers"] => 5,
            [.., "memberof"] | [.., "licensedetails"] => 2,
            _ => 1,
        }
    };
    let mut cost = base;
    if let Some(q) = query {
        let mut select = false;
        let mut expand = false;
        let mut small_top = false;
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "$select" => select = true,
                "$expand" => expand = true,
                "$top" => small_top = v.parse::<u32>().is_ok_and(|n| n < 20),
                _ => {}
            }
        }
        cost += i32::from(expand) - i32::from(select) - i32::from(small_top);
    }
    cost.max(1) as u32
}

/// 429 exactly as Graph sends it.
pub(crate) fn too_many_requests(
    ctx: Option<&RequestCtx>,
    retry_after: f64,
    scope: &str,
    information: &str,
) -> Response<Body> {
    let rid = ctx.map(|c| c.request_id.clone()).unwrap_or_default();
    let body = json!({
        "error": {
            "code": "TooManyRequests",
            "innerError": {
                "code": "429",
                "date": now_rfc3339(),
                "message": "Please retry after",
                "request-id": rid,
                "status": "429"
            },
            "message": "Please retry again later."
        }
    });
    let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
    let h = resp.headers_mut();
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&format_retry_after(retry_after))
            .unwrap_or(HeaderValue::from_static("1")),
    );
    if let Ok(v) = HeaderValue::from_str(scope) {
        h.insert("x-ms-throttle-scope", v);
    }
    if let Ok(v) = HeaderValue::from_str(information) {
        h.insert("x-ms-throttle-information", v);
    }
    resp
}

/// `Retry-After` as HTTP defines it: an HTTP-date or `delta-seconds`, a non-negative
/// integer (RFC 9110 §10.2.3), and Graph sends whole seconds. Rounded up, so a client
/// that waits what it is told finds the budget there, and never 0: `0` (or `0.4` read
/// by `parseInt`) sends a client straight back into the 429 in a loop. Capped at a day.
pub(crate) fn format_retry_after(secs: f64) -> String {
    let whole = if secs.is_finite() {
        secs.ceil().clamp(1.0, 86_400.0)
    } else {
        1.0
    };
    format!("{}", whole as u64)
}

/// Middleware on Graph routes (after authentication).
pub(crate) async fn throttle_layer(
    State(emu): State<Arc<Emu>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let (enabled, scale) = {
        let rt = emu.runtime();
        (rt.throttling_enabled, rt.time_scale)
    };
    let path = req.uri().path().to_string();
    if !enabled || path.ends_with("/$batch") {
        return next.run(req).await;
    }
    let app = req
        .extensions()
        .get::<Claims>()
        .map(|c| c.appid.clone())
        .unwrap_or_default();
    let ctx = req.extensions().get::<RequestCtx>().cloned();
    let method = req.method().clone();
    let cost = resource_units(&method, &path, req.uri().query());
    let write = method != Method::GET && method != Method::HEAD;
    let verdict = emu
        .throttle
        .lock()
        .map(|mut t| t.check(&emu.cfg.tenant.id, &app, cost, write, scale))
        .unwrap_or(Verdict::Allowed {
            cost,
            used_percent: 0.0,
        });
    match verdict {
        Verdict::Throttled {
            retry_after,
            scope,
            information,
        } => {
            emu.stats.count("throttled");
            too_many_requests(ctx.as_ref(), retry_after, &scope, information)
        }
        Verdict::Allowed { cost, used_percent } => {
            emu.stats.add("resource_units", u64::from(cost));
            let mut resp = next.run(req).await;
            let h = resp.headers_mut();
            h.insert("x-ms-resource-unit", HeaderValue::from(cost));
            if used_percent > 80.0
                && let Ok(v) = HeaderValue::from_str(&format!("{:.1}", used_percent.min(100.0)))
            {
                h.insert("x-ms-throttle-limit-percentage", v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_the_documented_table() {
        let get = Method::GET;
        assert_eq!(resource_units(&get, "/v1.0/users", None), 2);
        assert_eq!(resource_units(&get, "/v1.0/users", Some("$select=id")), 1);
        assert_eq!(
            resource_units(&get, "/v1.0/users", Some("$select=id&$top=5")),
            1,
            "minimum 1"
        );
        assert_eq!(resource_units(&get, "/v1.0/subscribedSkus", None), 3);
        assert_eq!(
            resource_units(&get, "/v1.0/groups/x/members", Some("$expand=manager")),
            4
        );
        assert_eq!(resource_units(&get, "/v1.0/organization", None), 1);
        assert_eq!(resource_units(&Method::POST, "/v1.0/users", None), 1);
    }

    #[test]
    fn buckets_throttle_and_refill_with_the_time_scale() {
        let mut cfg = EmulatorConfig::default();
        cfg.throttling.resource_units = Some(10);
        cfg.throttling.app_tenant_writes = 3;
        let mut t = Throttle::new(&cfg);
        for _ in 0..3 {
            assert!(matches!(
                t.check("t", "a", 1, true, 1.0),
                Verdict::Allowed { .. }
            ));
        }
        match t.check("t", "a", 1, true, 1.0) {
            Verdict::Throttled {
                retry_after,
                information,
                ..
            } => {
                assert_eq!(information, "WriteLimitExceeded");
                assert!(retry_after > 40.0 && retry_after <= 50.0, "{retry_after}");
            }
            v => panic!("expected 429, got {v:?}"),
        }
        // Another app has its own budget; reads are not writes.
        assert!(matches!(
            t.check("t", "b", 1, true, 1.0),
            Verdict::Allowed { .. }
        ));
        assert!(matches!(
            t.check("t", "a", 2, false, 1.0),
            Verdict::Allowed { .. }
        ));
        // With time scale 1000 the 150 s window lasts 0.15 s.
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert!(matches!(
            t.check("t", "a", 1, true, 1000.0),
            Verdict::Allowed { .. }
        ));
    }

    /// RFC 9110 §10.2.3: `Retry-After = HTTP-date / delay-seconds`, `delay-seconds =
    /// 1*DIGIT`; Graph's throttling guidance: "wait the number of seconds specified in
    /// the Retry-After header". A fraction (`1.96`) is no valid value, and a client
    /// reading it with `parseInt` waits 1 s too little, or 0 s below one.
    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        assert_eq!(format_retry_after(1.5), "2");
        assert_eq!(format_retry_after(1.96), "2");
        assert_eq!(format_retry_after(0.0001), "1");
        assert_eq!(format_retry_after(0.0), "1");
        assert_eq!(format_retry_after(2.0), "2");
        assert_eq!(format_retry_after(f64::NAN), "1");
        assert_eq!(format_retry_after(f64::INFINITY), "1");
        assert_eq!(format_retry_after(1e12), "86400");
        for s in [0.001, 0.5, 3.2, 149.9] {
            let v = format_retry_after(s);
            assert!(v.bytes().all(|b| b.is_ascii_digit()), "{v}");
        }
    }
}
