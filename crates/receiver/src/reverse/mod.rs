//! Reverse sync, external systems → HubSpot: the ingest API takes records keyed by external
//! field names and queues them durably (as does the PostgreSQL source, polling a table); the reverse worker merges them per match key, applies
//! the mapping's conflict policy and writes HubSpot with batch upserts by the match key's
//! property, isolating the records HubSpot refuses. What it writes is remembered so that the
//! forward worker recognises the webhooks those writes cause and does not deliver them back
//! to the destinations as new changes.

pub mod conflict;
pub mod ingest;
pub mod postgres_poller;
pub mod store;
pub mod worker;

pub use conflict::{FieldChange, Resolution, resolve};
pub use ingest::IngestState;
pub use postgres_poller::PostgresPoller;
pub use store::{
    INVALID_RECORD, IngestRecord, RejectedSummary, Rejection, RejectionFilter, ResendReport, ReverseStore,
    StoredRejection,
};
pub use worker::ReverseWorker;
