//! The data plane: what runs in a receiver pod.
//!
//! - `server`: the HTTP listeners (HubSpot's webhooks, the ingest API, status, admin);
//! - `eventlog`: the durable log webhook events wait in until every destination has them
//!   (embedded SQLite or NATS JetStream);
//! - `sync`: HubSpot → destinations (batch reads, plans, sinks, dead letters, backfill);
//! - `reverse`: external systems → HubSpot (ingest, PostgreSQL sources, conflict policy);
//! - `timeline`: external systems' events → HubSpot records' timelines;
//! - `metrics`: what all of them count.
//!
//! Beneath them, small modules they share: `time`, `backoff`, `body_deadline` (how late a
//! request body may be), `logged` (client-sent text in log lines), `sqlite` (the stores'
//! files), `group_commit` (their writer threads), `nats` and `postgres` (settings and identifiers of those servers). Each layer uses
//! only the ones below it: `eventlog`, then `reverse`, then `timeline`, then `sync`, then
//! `server`.
//!
//! Uses `model` for its configuration and `hubspot` to talk to HubSpot.

mod backoff;
mod body_deadline;
pub mod eventlog;
mod group_commit;
mod logged;
pub mod metrics;
mod nats;
mod postgres;
pub mod reverse;
pub mod server;
mod sqlite;
pub mod sync;
#[cfg(test)]
mod test_mappings;
mod time;
pub mod timeline;

pub use server::{ListenerSettings, ServerState, router, run, serve, status_router};
