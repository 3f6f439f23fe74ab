//! Integration tests of o365-essentials: one binary, modules per area (each extra test
//! binary costs link time on two cores).
#![allow(clippy::disallowed_methods)] // only the engine must read time from its Clock
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod canary;
mod cli;
mod crash;
mod directory_conformance;
mod dns;
mod docs;
mod doors;
mod engine;
mod exchange;
mod fixtures;
mod graph;
mod hardening;
mod ldap;
mod operations;
mod passwords;
mod processes;
mod safety;
mod samba;
mod setup;
mod sharepoint;
mod soak;
mod sync;
mod walk;
