//! The data plane: what runs in a receiver pod.
//!
//! - `server`: the HTTP listeners (HubSpot's webhooks, the ingest API, status, admin);
//! - `eventlog`: the durable log webhook events wait in until every destination has them
//!   (embedded SQLite or NATS JetStream);
//! - `sync`: HubSpot → destinations (batch reads, plans, sinks, dead letters, backfill);
//! - `reverse`: external systems → HubSpot (ingest, PostgreSQL sources, conflict policy);
//! - `metrics`: what all of them count.
//!
//! Uses `model` for its configuration and `hubspot` to talk to HubSpot.

pub mod eventlog;
pub mod metrics;
pub mod reverse;
pub mod server;
pub mod sync;

pub use server::{ReceiverState, router, run, serve, status_router};
