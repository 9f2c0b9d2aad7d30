//! The embedded event log: one SQLite file on the receiver's volume.

/// Embedded event log.
pub struct EmbeddedEventLog;
