//! Publishes one JSON message per record to a NATS subject through JetStream, and reports
//! success only once the stream has acknowledged every message. A subject no stream captures
//! is an error: a plain NATS publish would succeed with nobody storing the message.
//!
//! Each message carries the record's idempotency key as `Nats-Msg-Id`, so the stream drops a
//! redelivered record within its duplicate window.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};

use super::SinkError;
use crate::nats::{servers, validate_subject};
use crate::sync::plan::Record;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the stream may take to acknowledge a message.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A NATS JetStream subject destination.
pub struct NatsSink {
    url: String,
    subject: String,
    /// Connected on the first delivery; the client reconnects on its own after that.
    jetstream: tokio::sync::OnceCell<jetstream::Context>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink").field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Checks the URL and the subject; connects on the first delivery.
    pub fn new(url: &str, subject: &str) -> anyhow::Result<NatsSink> {
        if url.trim().is_empty() {
            anyhow::bail!("the NATS destination has no server URL");
        }
        validate_subject(subject)?;
        Ok(NatsSink { url: url.to_string(), subject: subject.to_string(), jetstream: tokio::sync::OnceCell::new() })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The servers and subject, without credentials.
    pub fn target(&self) -> String {
        let servers: Vec<String> = self.url.split(',').map(|server| without_credentials(server.trim())).collect();
        format!("{}/{}", servers.join(","), self.subject)
    }

    /// Publishes every record, then waits for every acknowledgement. A message refused for
    /// good is reported with its record's position.
    pub async fn deliver(&self, records: &[Record]) -> Result<(), SinkError> {
        let jetstream = self.jetstream.get_or_try_init(|| self.connect()).await?;
        let mut acks = Vec::with_capacity(records.len());
        for (position, record) in records.iter().enumerate() {
            let payload = serde_json::to_vec(record).map_err(|e| SinkError::Refused {
                record: position,
                reason: format!("record is not serialisable: {e}"),
            })?;
            let message = PublishMessage::build().payload(payload.into()).message_id(&record.idempotency_key);
            let ack = jetstream.send_publish(self.subject.clone(), message).await;
            acks.push(ack.map_err(|e| self.publish_error(position, e.kind()))?);
        }
        for (position, ack) in acks.into_iter().enumerate() {
            ack.await.map_err(|e| self.publish_error(position, e.kind()))?;
        }
        Ok(())
    }

    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(servers(&self.url))
            .await
            // The error's kind only: its message could name the URL and the credentials in it.
            .map_err(|e| SinkError::Retryable {
                reason: format!("connecting to NATS: {}", e.kind()),
                retry_after: None,
            })?;
        let mut context = jetstream::new(client);
        context.set_timeout(ACK_TIMEOUT);
        Ok(context)
    }

    fn publish_error(&self, position: usize, kind: PublishErrorKind) -> SinkError {
        match kind {
            // Nothing will store the messages until someone creates a stream; not the records' fault.
            PublishErrorKind::StreamNotFound => SinkError::Retryable {
                reason: format!("no JetStream stream captures subject {:?}", self.subject),
                retry_after: None,
            },
            PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence => {
                SinkError::Refused { record: position, reason: format!("JetStream refused the message: {kind}") }
            }
            _ => SinkError::Retryable { reason: format!("publishing to JetStream: {kind}"), retry_after: None },
        }
    }
}

/// `nats://user:password@host:4222` → `nats://host:4222`.
fn without_credentials(server: &str) -> String {
    let authority_start = server.find("://").map_or(0, |i| i + 3);
    match server[authority_start..].rfind('@') {
        Some(at) => format!("{}{}", &server[..authority_start], &server[authority_start + at + 1..]),
        None => server.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_leaves_credentials_out() {
        let sink = NatsSink::new("nats://user:s3cret@nats-a:4222, tls://tok@nats-b:4222", "crm.contacts").unwrap();
        assert_eq!(sink.target(), "nats://nats-a:4222,tls://nats-b:4222/crm.contacts");
        assert!(!format!("{sink:?}").contains("s3cret"));
        assert!(NatsSink::new(" ", "crm.contacts").is_err());
    }
}
