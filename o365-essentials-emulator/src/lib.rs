//! # o365-essentials-emulator
//!
//! An offline Microsoft 365 for tests, examples and benchmarks. The emulator issue fills
//! this crate; for now it only names itself.

/// The emulator's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
