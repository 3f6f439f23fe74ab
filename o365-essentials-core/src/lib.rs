//! # o365-essentials-core
//!
//! The engine that links an on-premises Active Directory (Windows AD or Samba AD) to a
//! Microsoft 365 tenant: the model ([`model`]), the ports each backend implements
//! ([`ports`]), input checks ([`validate`]), the stable error codes ([`Error`],
//! [`ErrorCode`]), the in-memory directory ([`memory`]) and the state store ([`store`]).
//!
//! Data flows one way: ports feed a snapshot or changes to a pure planner, whose `Plan`
//! is reviewed and then applied exactly, with per-item results.

pub mod clock;
pub mod config;
pub mod dns;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod frontdoor;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod json;
pub mod ldap;
pub mod memory;
pub mod model;
pub mod ops;
pub mod platform;
pub mod ports;
pub mod sharepoint;
pub mod store;
mod transport;
pub mod validate;

#[cfg(test)]
mod testing;

pub use error::{Error, ErrorCode, ErrorFamily, Result, ServiceDetail};
pub use secrecy::{ExposeSecret, SecretString};

/// The version of o365-essentials (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
