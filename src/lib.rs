//! # o365-essentials
//!
//! Links a small business's on-premises Active Directory (Windows AD or Samba AD) to its
//! Microsoft 365 tenant. This umbrella crate re-exports [`o365_essentials_core`]; the
//! examples, integration tests and benchmarks of the project live beside it.

pub use o365_essentials_core::*;

/// The README's Rust example, compiled with the doctests so it never goes stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;

/// docs/EMULATOR.md's Rust example, run with the doctests (tests/it/docs.rs runs its
/// other examples).
#[cfg(doctest)]
#[doc = include_str!("../docs/EMULATOR.md")]
struct EmulatorGuideExample;
