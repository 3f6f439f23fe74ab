//! Where the engine reads the time from: the system's, or a test's. The engine never
//! reads the system's time itself (clippy's `disallowed-methods` refuses
//! `OffsetDateTime::now_utc` there); it asks its [`Clock`], which tests move.

use time::OffsetDateTime;

/// Where the engine reads the time from: the system's ([`SystemClock`]), or a test's.
pub trait Clock: Send + Sync {
    /// The current time, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock: the one place the engine's time comes from the system. Setup also
/// reads it directly for the assertions and proofs Entra checks against its own clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
