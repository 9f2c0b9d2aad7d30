//! The model of a HubSpot integration: the custom resources users apply (`api`), the
//! configuration the operator renders for a receiver from them (`config`), and what the two
//! agree on over the wire (`contract` paths, `report` of a receiver's sync).
//!
//! Uses the `hubspot` crate only, for HubSpot's own types (tiers, token endpoints).

pub mod api;
pub mod config;
pub mod contract;
pub mod report;
