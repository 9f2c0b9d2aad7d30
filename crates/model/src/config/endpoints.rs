//! The external systems a mapping's records go to and come from, with their Secrets resolved,
//! and how the `PropertyMapping`'s destinations and sources become them: each kind's fields
//! and Secret keys are listed here once for the receiver config and the Secrets to read.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::api::SecretKeyRef;
use crate::api::mapping::{Destination, PostgresPoll, Source};

/// A destination with its Secrets resolved. `Debug` leaves out secrets and connection URLs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum SinkConfig {
    /// POST JSON batches, HMAC-signed when a secret is given.
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_secret: Option<String>,
    },
    /// Append JSON lines to a file (relative paths are under `dataDir`).
    File { path: PathBuf },
    /// Upsert into a PostgreSQL table, guarded by HubSpot's `updatedAt`.
    #[serde(rename_all = "camelCase")]
    Postgres {
        /// Connection string (`postgres://user:password@host/db` or `host=... dbname=...`).
        url: String,
        /// Table, optionally schema-qualified (`crm.contacts`).
        table: String,
        /// Create the table (and its index on `hubspot_object_id`) when it does not exist.
        #[serde(default)]
        create_table: bool,
    },
    /// Publish one message per record to a NATS JetStream subject.
    Nats { url: String, subject: String },
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkConfig::Http { url, signing_secret } => f
                .debug_struct("Http")
                .field("url", url)
                .field("signed", &signing_secret.is_some())
                .finish_non_exhaustive(),
            SinkConfig::File { path } => f.debug_struct("File").field("path", path).finish(),
            SinkConfig::Postgres { table, create_table, .. } => f
                .debug_struct("Postgres")
                .field("table", table)
                .field("create_table", create_table)
                .finish_non_exhaustive(),
            SinkConfig::Nats { subject, .. } => {
                f.debug_struct("Nats").field("subject", subject).finish_non_exhaustive()
            }
        }
    }
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Http { .. } => "http",
            SinkConfig::File { .. } => "file",
            SinkConfig::Postgres { .. } => "postgres",
            SinkConfig::Nats { .. } => "nats",
        }
    }

    /// The destination's `sink` label in metrics and logs: its kind and position, `http-0`.
    pub fn label(&self, index: usize) -> String {
        format!("{}-{index}", self.kind())
    }
}

impl SinkConfig {
    /// The destinations the receiver runs for `destination`, with the Secret keys it references
    /// read by `secret`: one, since the API server takes exactly one kind per entry.
    pub fn resolve<E>(
        destination: &Destination,
        secret: impl Fn(&SecretKeyRef) -> Result<String, E>,
    ) -> Result<Vec<SinkConfig>, E> {
        // Destructured, so that a new kind of destination cannot be left out here.
        let Destination { http, file, postgres, nats } = destination;
        let mut sinks = Vec::new();
        if let Some(http) = http {
            let signing_secret = http.signing_secret.as_ref().map(&secret).transpose()?;
            sinks.push(SinkConfig::Http { url: http.url.clone(), signing_secret });
        }
        if let Some(file) = file {
            sinks.push(SinkConfig::File { path: file.path.clone().into() });
        }
        if let Some(postgres) = postgres {
            sinks.push(SinkConfig::Postgres {
                url: secret(&postgres.connection_secret)?,
                table: postgres.table.clone(),
                create_table: postgres.create_table,
            });
        }
        if let Some(nats) = nats {
            // The CRD requires exactly one of the two; without either the receiver refuses the
            // empty URL when it starts.
            let url = match &nats.url_secret {
                Some(reference) => secret(reference)?,
                None => nats.url.clone().unwrap_or_default(),
            };
            sinks.push(SinkConfig::Nats { url, subject: nats.subject.clone() });
        }
        Ok(sinks)
    }
}

impl Destination {
    /// The Secret keys `SinkConfig::resolve` reads for this destination.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let Destination { http, file: _, postgres, nats } = self;
        let signing = http.iter().filter_map(|h| h.signing_secret.as_ref());
        let connection = postgres.iter().map(|p| &p.connection_secret);
        let url = nats.iter().filter_map(|n| n.url_secret.as_ref());
        signing.chain(connection).chain(url).collect()
    }
}

/// A source of records for HubSpot, with its Secrets resolved. `Debug` leaves out the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum SourceConfig {
    /// Poll a PostgreSQL table or query for rows whose cursor column grew.
    #[serde(rename_all = "camelCase")]
    Postgres {
        /// Connection string.
        url: String,
        #[serde(flatten)]
        poll: PostgresPoll,
    },
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceConfig::Postgres { poll, .. } => f
                .debug_struct("Postgres")
                .field("table", &poll.table)
                .field("query", &poll.query)
                .field("cursor_column", &poll.cursor_column)
                .field("interval_seconds", &poll.interval_seconds)
                .finish_non_exhaustive(),
        }
    }
}

impl SourceConfig {
    /// The sources the receiver polls for `source`, with the Secret keys it references read by
    /// `secret`: one, since the API server takes exactly one kind per entry.
    pub fn resolve<E>(
        source: &Source,
        secret: impl Fn(&SecretKeyRef) -> Result<String, E>,
    ) -> Result<Vec<SourceConfig>, E> {
        let Source { postgres } = source;
        let mut sources = Vec::new();
        if let Some(postgres) = postgres {
            sources.push(SourceConfig::Postgres {
                url: secret(&postgres.connection_secret)?,
                poll: postgres.poll.clone(),
            });
        }
        Ok(sources)
    }
}

impl Source {
    /// The Secret keys `SourceConfig::resolve` reads for this source.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let Source { postgres } = self;
        postgres.iter().map(|p| &p.connection_secret).collect()
    }
}
