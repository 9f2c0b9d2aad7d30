//! The JetStream event log: a NATS JetStream stream that several receiver pods share.
//!
//! - Events go to a work-queue stream on file storage (`replicas` copies in a NATS cluster),
//!   one message per event with the event's delivery identity as `Nats-Msg-Id`. `append`
//!   publishes the events of a call concurrently and returns once every PubAck is in, i.e.
//!   once the stream has stored them; a PubAck marked `duplicate` is a duplicate.
//! - JetStream's duplicate window is kept in memory and rebuilt after a server restart only
//!   from the messages still stored, and a work-queue stream deletes a message once it is
//!   released. So every newly stored event's identity is also published to a second stream
//!   (`<stream>_seen`, limits retention, kept 72 h) whose messages stay on disk: an event that
//!   the event stream takes as new but the seen stream already knows was released before and
//!   is deleted again. The seen stream is written after the event is stored, with where it was
//!   stored (event stream and sequence), and an append succeeds only once both are: when the
//!   seen stream cannot take an identity (no leader) the append fails, and HubSpot's retry,
//!   which the event stream calls a duplicate, records it. A crash in between can let a
//!   redelivery through (destinations are idempotent) but never lose one.
//! - A durable pull consumer with explicit acks hands each event to one receiver. The receiver
//!   holds it (and renews its claim with in-progress acks) until `release` acks it; what a
//!   receiver held when it died goes to another after `ackWaitSeconds`, what it held when it
//!   stopped cleanly at once (`close` naks it).
//! - The event stream refuses new messages beyond `maxPendingEvents` / `maxPendingBytes`
//!   (`DiscardPolicy::New`); `append` then fails with [`EventLogError::Full`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Subject;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{AckKind, Acker, PublishMessage};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use futures::StreamExt as _;
use futures::future::{BoxFuture, join_all};
use tokio::sync::Notify;

use super::{AppendOutcome, EncodedEvent, EventLog, EventLogError, Result, StoredEvent};
pub use crate::nats::servers;
use crate::nats::validate_subject;
use crate::time::now_ms;
use hubspot::WebhookEvent;
use model::config::{JetStreamLogConfig, LogLimits};

mod version;
pub use version::MIN_SERVER_VERSION;
use version::check_server_version;

/// How long a delivery identity is remembered, as in the embedded log.
pub const DEDUP_RETENTION: Duration = super::embedded::DEDUP_RETENTION;
/// Name of the durable consumer every receiver of an integration shares.
pub const CONSUMER: &str = "sync-worker";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to answer a request or acknowledge a message.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an append may take: the receiver must answer HubSpot within its 5 s.
const APPEND_TIMEOUT: Duration = Duration::from_secs(3);
/// Events the receivers of one integration may hold at once, together.
const MAX_HELD: i64 = 100_000;
/// Message id of the readiness probe on the seen stream; no event's identity looks like it.
const READINESS_PROBE_ID: &str = "readiness-probe";

/// Everything needed to open a JetStream event log, with the defaults filled in.
#[derive(Clone)]
pub struct Settings {
    /// Server URL, or several separated by commas ([`servers`]); may carry credentials, never
    /// logged.
    pub url: String,
    pub stream: String,
    pub subject: String,
    pub replicas: usize,
    pub limits: LogLimits,
    pub ack_wait: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("replicas", &self.replicas)
            .field("limits", &self.limits)
            .field("ack_wait", &self.ack_wait)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The settings of `config` for the integration named `namespace/name`.
    pub fn new(integration: &str, config: &JetStreamLogConfig) -> Settings {
        let (stream, subject) = default_names(integration);
        Settings {
            url: config.url.clone(),
            stream: config.stream.clone().unwrap_or(stream),
            subject: config.subject.clone().unwrap_or(subject),
            replicas: config.replicas,
            limits: config.limits(),
            ack_wait: Duration::from_secs(config.ack_wait_seconds.max(1)),
        }
    }

    fn seen_stream(&self) -> String {
        format!("{}_seen", self.stream)
    }

    fn seen_subject(&self) -> String {
        format!("{}.seen", self.subject)
    }
}

/// Stream and subject of the integration `namespace/name`: `hubspot_<namespace>_<name>` and
/// `hubspot.<namespace>.<name>.events` (dots in names become `_`, as neither may hold them).
pub fn default_names(integration: &str) -> (String, String) {
    let (namespace, name) = integration.split_once('/').unwrap_or(("default", integration));
    let token = |s: &str| s.replace(['.', ' ', '*', '>', '/', '\\'], "_");
    (
        format!("hubspot_{}_{}", token(namespace), token(name)),
        format!("hubspot.{}.{}.events", token(namespace), token(name)),
    )
}

/// JetStream event log, see the module documentation.
pub struct JetStreamEventLog {
    jetstream: jetstream::Context,
    stream: String,
    seen_stream: String,
    subject: Subject,
    seen_subject: Subject,
    consumer: PullConsumer,
    /// Events this instance took and has not released, by stream sequence.
    held: Arc<Mutex<BTreeMap<u64, Held>>>,
    appended: Notify,
    /// Renews the claim on held events; stopped on drop.
    renewer: tokio::task::JoinHandle<()>,
    /// When the event stream was created (ns since the epoch), part of each recorded identity.
    event_stream_created: i128,
}

struct Held {
    event: WebhookEvent,
    /// When the stream stored the message (epoch milliseconds).
    stored_at_ms: i64,
    /// Where acknowledgements of this delivery go.
    reply: Subject,
}

impl JetStreamEventLog {
    /// Connects, creates the streams and the consumer or brings their settings up to date.
    pub async fn open(settings: &Settings) -> anyhow::Result<JetStreamEventLog> {
        validate(settings)?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(servers(&settings.url))
            .await
            // The error's kind only: its message could name the URL and the credentials in it.
            .map_err(|e| anyhow::anyhow!("connecting to NATS for the event log: {}", e.kind()))?;
        check_server_version(&client.server_info().version)?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(REQUEST_TIMEOUT);

        let events = stream::Config {
            name: settings.stream.clone(),
            subjects: vec![settings.subject.clone()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: DEDUP_RETENTION,
            max_messages: limit(settings.limits.max_pending_events),
            max_bytes: limit(settings.limits.max_pending_bytes),
            discard: DiscardPolicy::New,
            ..Default::default()
        };
        let seen = stream::Config {
            name: settings.seen_stream(),
            subjects: vec![settings.seen_subject()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: DEDUP_RETENTION,
            max_age: DEDUP_RETENTION,
            discard: DiscardPolicy::Old,
            ..Default::default()
        };
        let mut created = Vec::new();
        for config in [events, seen] {
            let name = config.name.clone();
            let info =
                jetstream.create_or_update_stream(config).await.with_context(|| format!("setting up stream {name}"))?;
            created.push(info.created);
        }
        // Sequences start again in a stream made anew: the event stream's creation time tells
        // its messages from those of an earlier stream of the same name.
        let event_stream_created = created[0].unix_timestamp_nanos();
        let consumer: PullConsumer = jetstream
            .get_stream_no_info(&settings.stream)
            .await
            .with_context(|| format!("opening stream {}", settings.stream))?
            .create_consumer(pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_ack_pending: MAX_HELD,
                ..Default::default()
            })
            .await
            .with_context(|| format!("setting up consumer {CONSUMER} of stream {}", settings.stream))?;

        let held: Arc<Mutex<BTreeMap<u64, Held>>> = Arc::default();
        let renewer = tokio::spawn(renew_claims(jetstream.clone(), Arc::downgrade(&held), settings.ack_wait / 4));
        Ok(JetStreamEventLog {
            jetstream,
            stream: settings.stream.clone(),
            seen_stream: settings.seen_stream(),
            subject: settings.subject.clone().into(),
            seen_subject: settings.seen_subject().into(),
            consumer,
            held,
            appended: Notify::new(),
            renewer,
            event_stream_created,
        })
    }

    /// Publishes one message per event to `subject`, all before awaiting any PubAck.
    async fn publish_all(
        &self,
        subject: &Subject,
        messages: Vec<(String, bytes::Bytes)>,
    ) -> Vec<Result<jetstream::publish::PublishAck, async_nats::jetstream::context::PublishError>> {
        let mut pending = Vec::with_capacity(messages.len());
        for (id, payload) in messages {
            let message = PublishMessage::build().payload(payload).message_id(id);
            pending.push(self.jetstream.send_publish(subject.clone(), message).await);
        }
        join_all(pending.into_iter().map(|sent| async move { sent?.await })).await
    }

    /// Publishes `events`, then records the identities of those stored for the first time.
    async fn store(&self, events: Vec<EncodedEvent>) -> Result<AppendOutcome> {
        let encoded: Vec<(String, bytes::Bytes)> =
            events.into_iter().map(|event| (event.identity.key(), event.json)).collect();
        let keys: Vec<String> = encoded.iter().map(|(key, _)| key.clone()).collect();
        let stored = self.publish_all(&self.subject, encoded).await;

        let mut outcome = AppendOutcome::default();
        let mut failure: Option<EventLogError> = None;
        let mut fresh = Vec::new();
        let mut repeated = Vec::new();
        for (key, result) in keys.into_iter().zip(stored) {
            match result {
                Ok(ack) if ack.duplicate => {
                    outcome.duplicates += 1;
                    repeated.push((key, ack.sequence));
                }
                Ok(ack) => fresh.push((key, ack.sequence)),
                Err(e) => {
                    let error = publish_failure(&self.stream, &e);
                    // A full stream says more about what to do than any other failure.
                    if !matches!(failure, Some(EventLogError::Full { .. })) {
                        failure = Some(error);
                    }
                }
            }
        }

        // An identity is recorded, with the event stream's sequence of its event, before the
        // append succeeds: when the seen stream cannot take it (no leader, say) the append
        // fails, and the retry, which the event stream calls a duplicate, records it (the
        // seen stream takes each identity once).
        let identities = fresh.iter().chain(&repeated);
        let mut remembered = self
            .publish_all(
                &self.seen_subject,
                identities.map(|(key, sequence)| (key.clone(), self.stored_at(*sequence))).collect(),
            )
            .await;
        let remembered_again = remembered.split_off(fresh.len());
        let mut unrecorded = remembered_again.iter().filter(|result| result.is_err()).count();
        let events = self.jetstream.get_stream_no_info(&self.stream).await;
        for ((_, sequence), result) in fresh.into_iter().zip(remembered) {
            match result {
                // Recorded for this very message by a concurrent append of the same delivery.
                Ok(ack) if ack.duplicate && self.recorded_for(ack.sequence, sequence).await => outcome.appended += 1,
                Ok(ack) if ack.duplicate => {
                    // Released before and forgotten by the event stream since (a server
                    // restart): not a new event.
                    let deleted = match &events {
                        Ok(events) => events.delete_message(sequence).await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = deleted {
                        tracing::warn!(stream = %self.stream, sequence, error = %e, "could not delete a redelivered event; it will be delivered again");
                    }
                    outcome.duplicates += 1;
                }
                Ok(_) => outcome.appended += 1,
                Err(_) => {
                    // Stored, so delivered whatever the answer; the failed append makes HubSpot
                    // retry, and the retry records the identity.
                    outcome.appended += 1;
                    unrecorded += 1;
                }
            }
        }
        if unrecorded > 0 && failure.is_none() {
            tracing::warn!(stream = %self.seen_stream, identities = unrecorded, "could not record delivery identities; the append fails so that it is retried");
            failure = Some(EventLogError::storage(
                format!("recording delivery identities in stream {}", self.seen_stream),
                format!("{unrecorded} identities not recorded"),
            ));
        }
        if outcome.appended > 0 {
            self.appended.notify_waiters();
            self.appended.notify_one();
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(outcome),
        }
    }

    /// What a recorded identity says of where its event was stored: the event stream (by its
    /// creation time) and the sequence in it.
    fn stored_at(&self, event_sequence: u64) -> bytes::Bytes {
        bytes::Bytes::from(format!("{}:{event_sequence}", self.event_stream_created))
    }

    /// Whether the seen stream's message `seen_sequence` records the event stored at
    /// `event_sequence` (identities recorded before sequences were kept record none).
    async fn recorded_for(&self, seen_sequence: u64, event_sequence: u64) -> bool {
        let message = match self.jetstream.get_stream_no_info(&self.seen_stream).await {
            Ok(seen) => seen.get_raw_message(seen_sequence).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match message {
            Ok(message) => message.payload == self.stored_at(event_sequence),
            Err(e) => {
                tracing::warn!(stream = %self.seen_stream, seen_sequence, error = %e, "could not read a recorded identity");
                false
            }
        }
    }

    fn acker(&self, reply: Subject) -> Acker {
        Acker::new(self.jetstream.clone(), Some(reply))
    }

    /// The consumer's view of the log: what it has not delivered (`num_pending`) and what it
    /// delivered that is not yet acknowledged (`num_ack_pending`), and its ack floor. The
    /// stream's own message count is no measure: a server restarted after a crash can keep
    /// messages the consumer already acknowledged, which nothing will ever deliver again.
    async fn consumer_state(&self) -> Result<async_nats::jetstream::consumer::Info> {
        self.consumer
            .get_info()
            .await
            .map_err(|e| EventLogError::storage(format!("reading consumer {CONSUMER} of stream {}", self.stream), e))
    }

    /// Takes up to `max` events no instance holds.
    async fn take(&self, max: usize) -> Result<()> {
        // A fetch has no expiry of its own: one whose request or answer was lost with the
        // connection would wait forever, and the worker with it. What arrived before the
        // timeout is held; the rest comes back after the ack wait.
        tokio::time::timeout(REQUEST_TIMEOUT, self.fetch_into_held(max)).await.map_err(|_| {
            EventLogError::Unavailable(format!("fetching from consumer {CONSUMER} of stream {} timed out", self.stream))
        })?
    }

    async fn fetch_into_held(&self, max: usize) -> Result<()> {
        let mut batch = self.consumer.fetch().max_messages(max).messages().await.map_err(|e| {
            EventLogError::storage(format!("fetching from consumer {CONSUMER} of stream {}", self.stream), e)
        })?;
        while let Some(message) = batch.next().await {
            let message =
                message.map_err(|e| EventLogError::storage(format!("fetching from stream {}", self.stream), e))?;
            let info = message.info().map_err(|e| EventLogError::storage("reading message metadata", e))?;
            let (sequence, stored_at_ms) =
                (info.stream_sequence, (info.published.unix_timestamp_nanos() / 1_000_000) as i64);
            let Some(reply) = message.message.reply.clone() else { continue };
            match serde_json::from_slice::<WebhookEvent>(&message.message.payload) {
                Ok(event) => {
                    self.held.lock().expect("held events lock").insert(sequence, Held { event, stored_at_ms, reply });
                }
                Err(e) => {
                    // Not written by a receiver (only encoded events are): redelivering it
                    // would stop every receiver at the same message forever.
                    tracing::error!(stream = %self.stream, sequence, error = %e, "dropping a message that is not a webhook event");
                    let _ = self.acker(reply).ack_with(AckKind::Term).await;
                }
            }
        }
        Ok(())
    }
}

impl Drop for JetStreamEventLog {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl EventLog for JetStreamEventLog {
    fn append_encoded(&self, events: Vec<EncodedEvent>) -> BoxFuture<'_, Result<AppendOutcome>> {
        Box::pin(async move {
            // HubSpot gives up on a webhook call after 5 s and then sees a failure, not the 503
            // that tells it to retry later. Without a connection a publish would wait out the
            // request timeout; a connection lost mid-append would too.
            if self.jetstream.client().connection_state() != async_nats::connection::State::Connected {
                return Err(EventLogError::Unavailable(format!(
                    "not connected to NATS; stream {} is out of reach",
                    self.stream
                )));
            }
            tokio::time::timeout(APPEND_TIMEOUT, self.store(events)).await.map_err(|_| {
                EventLogError::Unavailable(format!(
                    "stream {} did not confirm the events within {}s",
                    self.stream,
                    APPEND_TIMEOUT.as_secs()
                ))
            })?
        })
    }

    fn pending(&self, max: usize) -> BoxFuture<'_, Result<Vec<StoredEvent>>> {
        Box::pin(async move {
            let held = self.held.lock().expect("held events lock").len();
            if held < max {
                self.take(max - held).await?;
            }
            let held = self.held.lock().expect("held events lock");
            Ok(held
                .iter()
                .take(max)
                .map(|(&seq, h)| StoredEvent { seq, event: h.event.clone(), appended_at_ms: Some(h.stored_at_ms) })
                .collect())
        })
    }

    fn release(&self, seqs: Vec<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let replies: Vec<(u64, Subject)> = {
                let held = self.held.lock().expect("held events lock");
                seqs.iter().filter_map(|seq| Some((*seq, held.get(seq)?.reply.clone()))).collect()
            };
            // Confirmed acks: a released event must not come back after a restart.
            let acks = join_all(
                replies
                    .into_iter()
                    .map(|(seq, reply)| async move { (seq, self.acker(reply).double_ack_with(AckKind::Ack).await) }),
            )
            .await;
            let mut failed = 0;
            {
                let mut held = self.held.lock().expect("held events lock");
                for (seq, result) in acks {
                    match result {
                        Ok(()) => {
                            held.remove(&seq);
                        }
                        Err(_) => failed += 1,
                    }
                }
            }
            if failed > 0 {
                return Err(EventLogError::Unavailable(format!(
                    "stream {} did not confirm the release of {failed} events",
                    self.stream
                )));
            }
            Ok(())
        })
    }

    fn pending_count(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let state = self.consumer_state().await?;
            Ok(state.num_pending + state.num_ack_pending as u64)
        })
    }

    fn oldest_pending_age(&self) -> BoxFuture<'_, Result<Option<Duration>>> {
        Box::pin(async move {
            let state = self.consumer_state().await?;
            if state.num_pending + state.num_ack_pending as u64 == 0 {
                return Ok(None);
            }
            // The oldest unreleased event is the first message above the consumer's ack floor.
            let first_unreleased = self
                .jetstream
                .get_stream_no_info(&self.stream)
                .await
                .map_err(|e| EventLogError::storage(format!("opening stream {}", self.stream), e))?
                .raw_message_builder()
                .sequence(state.ack_floor.stream_sequence + 1)
                .next_by_subject(self.subject.to_string())
                .send()
                .await;
            let oldest = match first_unreleased {
                Ok(message) => message,
                // Released since the consumer was asked: nothing older is pending.
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    return Ok(None);
                }
                Err(e) => return Err(EventLogError::storage(format!("reading stream {}", self.stream), e)),
            };
            let oldest_ms = (oldest.time.unix_timestamp_nanos() / 1_000_000) as i64;
            Ok(Some(Duration::from_millis(now_ms().saturating_sub(oldest_ms).max(0) as u64)))
        })
    }

    fn check_writable(&self) -> BoxFuture<'_, Result<()>> {
        // A stored write needs the stream's leader and a quorum of its replicas. The probe goes
        // to the seen stream, with one fixed message id: after the first, each is a duplicate
        // the leader answers without storing, and no sync worker ever sees it.
        Box::pin(async move {
            let probe = PublishMessage::build().payload(bytes::Bytes::new()).message_id(READINESS_PROBE_ID);
            let ack = self.jetstream.send_publish(self.seen_subject.clone(), probe).await;
            match ack {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            }
            .map_err(|e| publish_failure(&self.seen_stream, &e))
        })
    }

    fn notified(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.appended.notified())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let held: Vec<Subject> = std::mem::take(&mut *self.held.lock().expect("held events lock"))
                .into_values()
                .map(|h| h.reply)
                .collect();
            let naks = join_all(
                held.into_iter()
                    .map(|reply| async move { self.acker(reply).double_ack_with(AckKind::Nak(None)).await }),
            )
            .await;
            let failed = naks.iter().filter(|r| r.is_err()).count();
            if failed > 0 {
                tracing::warn!(stream = %self.stream, failed, "some held events go to another receiver only after the ack wait");
            }
        })
    }
}

/// Every `interval`, tells the server that the held events are still being worked on, so that
/// they are not handed to another receiver while this one holds them.
async fn renew_claims(
    jetstream: jetstream::Context,
    held: std::sync::Weak<Mutex<BTreeMap<u64, Held>>>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        let Some(held) = held.upgrade() else { return };
        let replies: Vec<Subject> = held.lock().expect("held events lock").values().map(|h| h.reply.clone()).collect();
        drop(held);
        for reply in replies {
            if let Err(e) = Acker::new(jetstream.clone(), Some(reply)).ack_with(AckKind::Progress).await {
                tracing::warn!(error = %e, "could not renew the claim on a held event");
            }
        }
    }
}

/// `0` (none) as JetStream's "unlimited".
fn limit(value: u64) -> i64 {
    if value == 0 { -1 } else { i64::try_from(value).unwrap_or(-1) }
}

/// What a failed publish means for the receiver: [`EventLogError::Full`] when the stream
/// refused the message for its limits, unavailable when the server did not answer, else a
/// storage failure.
fn publish_failure(stream: &str, error: &async_nats::jetstream::context::PublishError) -> EventLogError {
    match (error.kind(), store_refusal(error)) {
        (PublishErrorKind::Other, Some(server)) => {
            // The server's description ("maximum messages exceeded", "maximum bytes exceeded")
            // names the limit; other store failures (a full disk) are as good as full too.
            EventLogError::Full { reason: format!("stream {stream}: {server}") }
        }
        (kind @ (PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe), _) => {
            EventLogError::Unavailable(format!("publishing to stream {stream}: {kind}"))
        }
        (kind, _) => EventLogError::storage(format!("publishing to stream {stream}"), kind.to_string()),
    }
}

/// The server's answer to a publish when it refused to store the message. async-nats gives
/// this refusal no `PublishErrorKind` of its own: the server's error, with its code, is only
/// the publish error's source, so this is the one place the data plane looks into an error's
/// source for its type.
fn store_refusal(error: &async_nats::jetstream::context::PublishError) -> Option<&jetstream::Error> {
    use std::error::Error as _;
    let server = error.source()?.downcast_ref::<jetstream::Error>()?;
    (server.error_code() == ErrorCode::STREAM_STORE_FAILED).then_some(server)
}

fn validate(settings: &Settings) -> anyhow::Result<()> {
    if settings.url.trim().is_empty() {
        anyhow::bail!("the JetStream event log has no server URL");
    }
    let stream_ok = !settings.stream.is_empty()
        && !settings.stream.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
    if !stream_ok {
        anyhow::bail!("invalid stream name {:?}: no dots, wildcards, slashes or spaces", settings.stream);
    }
    validate_subject(&settings.subject)?;
    if !matches!(settings.replicas, 1..=5) {
        anyhow::bail!("stream replicas must be 1 to 5, not {}", settings.replicas);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_integration() {
        assert_eq!(
            default_names("crm-team/contacts.v2"),
            ("hubspot_crm-team_contacts_v2".to_string(), "hubspot.crm-team.contacts_v2.events".to_string())
        );
    }

    #[test]
    fn settings_are_checked_and_the_url_is_not_shown() {
        let config: JetStreamLogConfig = serde_yaml::from_str("url: 'nats://u:pw-do-not-print@nats:4222'").unwrap();
        let settings = Settings::new("ns/crm", &config);
        assert!(validate(&settings).is_ok());
        assert!(!format!("{settings:?}").contains("pw-do-not-print"));
        for bad in [
            Settings { stream: "a.b".into(), ..settings.clone() },
            Settings { stream: String::new(), ..settings.clone() },
            Settings { subject: "a.>".into(), ..settings.clone() },
            Settings { replicas: 0, ..settings.clone() },
            Settings { url: " ".into(), ..settings.clone() },
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zero_means_unlimited() {
        assert_eq!(limit(0), -1);
        assert_eq!(limit(10), 10);
        assert_eq!(limit(u64::MAX), -1);
    }
}
