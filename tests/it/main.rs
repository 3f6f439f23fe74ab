//! Integration tests of o365-essentials: one binary, modules per area (each extra test
//! binary costs link time on two cores).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod canary;
mod cli;
mod crash;
mod directory_conformance;
mod dns;
mod doors;
mod engine;
mod exchange;
mod fixtures;
mod graph;
mod ldap;
mod operations;
mod passwords;
mod processes;
mod samba;
mod setup;
mod sharepoint;
mod soak;
mod sync;
