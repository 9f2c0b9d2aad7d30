//! Destinations of mapped records. A sink reports success only once the destination has the
//! records (HTTP 2xx, the file fsync'd, the PostgreSQL transaction committed, every JetStream
//! publish acknowledged); the worker releases events only after that.

pub mod file;
pub mod http;
pub mod nats;
pub mod postgres;

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use file::FileSink;
pub use http::HttpSink;
pub use nats::NatsSink;
pub use postgres::PostgresSink;

use super::plan::Record;
use model::config::{MappingConfig, SinkConfig};

/// Why a delivery failed. Either way nothing is dropped: the records are offered again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The destination may take the records later (5xx, 429, timeout, connection error, I/O,
    /// a serialization failure, no stream for a subject).
    #[error("destination temporarily unavailable: {reason}")]
    Retryable { reason: String, retry_after: Option<Duration> },
    /// The destination refused the records (4xx other than 429, a constraint, an undefined
    /// column); retrying as-is is unlikely to help.
    #[error("destination refused the records: {reason}")]
    Permanent { reason: String },
    /// The destination refused the record at position `record` of the batch and says so; the
    /// others may be offered again (destinations drop repeats by their idempotency key).
    #[error("destination refused a record: {reason}")]
    Refused { record: usize, reason: String },
}

impl SinkError {
    /// How long the destination asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Retryable { retry_after, .. } => *retry_after,
            SinkError::Permanent { .. } | SinkError::Refused { .. } => None,
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkError::Permanent { .. } | SinkError::Refused { .. })
    }
}

/// A configured destination.
#[derive(Debug)]
pub enum Sink {
    Http(HttpSink),
    File(FileSink),
    // Boxed: their connection state makes them several times the others' size.
    Postgres(Box<PostgresSink>),
    Nats(Box<NatsSink>),
}

impl Sink {
    /// Builds the destination `config` describes for `mapping` (whose fields name a table's
    /// columns); relative file paths are under `data_dir`. Connections open on first delivery.
    pub fn from_config(config: &SinkConfig, mapping: &MappingConfig, data_dir: &Path) -> anyhow::Result<Sink> {
        Ok(match config {
            SinkConfig::Http { url, signing_secret } => Sink::Http(HttpSink::new(url, signing_secret.as_deref())?),
            SinkConfig::File { path } => Sink::File(FileSink::new(data_dir.join(path))),
            SinkConfig::Postgres { url, table, create_table } => {
                Sink::Postgres(Box::new(PostgresSink::new(url, table, *create_table, mapping)?))
            }
            SinkConfig::Nats { url, subject } => Sink::Nats(Box::new(NatsSink::new(url, subject)?)),
        })
    }

    /// Delivers `records`; `Ok` means the destination has them.
    pub async fn deliver(&self, records: &[Record]) -> Result<(), SinkError> {
        match self {
            Sink::Http(sink) => sink.deliver(records).await,
            Sink::File(sink) => sink.deliver(records).await,
            Sink::Postgres(sink) => sink.deliver(records).await,
            Sink::Nats(sink) => sink.deliver(records).await,
        }
    }

    /// A stable identity of the destination (kind and target, hashed so that no URL with
    /// credentials in it is stored), for delivered checkpoints.
    pub fn checkpoint_id(&self) -> String {
        let (kind, target) = match self {
            Sink::Http(sink) => ("http", sink.url().to_string()),
            Sink::File(sink) => ("file", sink.path().display().to_string()),
            Sink::Postgres(sink) => ("postgres", sink.target()),
            Sink::Nats(sink) => ("nats", sink.target()),
        };
        let digest = Sha256::new().chain_update(kind).chain_update([0u8]).chain_update(target).finalize();
        format!("{kind}-{}", hex::encode(&digest[..8]))
    }
}
