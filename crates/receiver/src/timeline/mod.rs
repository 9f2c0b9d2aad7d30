//! Timeline events, external systems → HubSpot records' timelines: the timeline API takes
//! occurrences of the receiver's timeline event types, checks them against their type and
//! keeps them durably (once per id); the timeline worker sends them to HubSpot by the type's
//! carrier (legacy timeline events, app events or custom events) and keeps what HubSpot
//! refuses, to be listed, resent or discarded.

pub mod api;
pub mod store;
pub mod validate;
pub mod worker;

pub use api::TimelineApi;
pub use store::{OccurrenceFilter, RejectedOccurrence, TimelineStore};
pub use worker::TimelineWorker;
