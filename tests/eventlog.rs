//! The event-log contract, run against both backends: the embedded log on real files in a
//! temporary directory, and the JetStream log on a real server (`HUBSPOT_OPERATOR_TEST_NATS_URL`)
//! with streams of its own per test. Then what only one backend does.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{LogBackend, WAIT, eventually, redelivery, sample_event};
use futures::FutureExt as _;
use hubspot::WebhookEvent;
use model::config::LogLimits;
use receiver::eventlog::{AppendOutcome, EmbeddedEventLog, EventLog, EventLogError, StoredEvent};

fn events_of(stored: &[StoredEvent]) -> Vec<WebhookEvent> {
    stored.iter().map(|s| s.event.clone()).collect()
}

fn seqs_of(stored: &[StoredEvent]) -> Vec<u64> {
    stored.iter().map(|s| s.seq).collect()
}

per_backend!(
    a_new_log_is_empty,
    pending_returns_unreleased_events_oldest_first,
    pending_returns_at_most_max,
    duplicates_within_one_batch_are_stored_once,
    redelivery_is_a_duplicate_across_appends_and_after_release,
    appended_events_survive_reopening_and_stay_deduplicated,
    unreleased_events_come_back_after_a_restart,
    positions_are_never_reused_after_release,
    concurrent_appends_store_every_event_exactly_once,
    notified_resolves_after_an_append_that_stored_events,
    a_full_log_refuses_new_events_until_some_are_released,
    oldest_pending_age_follows_the_oldest_unreleased_event,
    pending_events_carry_when_the_log_stored_them,
);

async fn a_new_log_is_empty(backend: LogBackend) {
    let log = backend.open().await;
    assert_eq!(log.pending_count().await.unwrap(), 0);
    assert!(log.pending(10).await.unwrap().is_empty());
    assert_eq!(log.oldest_pending_age().await.unwrap(), None);
}

async fn pending_returns_unreleased_events_oldest_first(backend: LogBackend) {
    let log = backend.open().await;
    let first = vec![sample_event(1, 100), sample_event(2, 200)];
    let second = vec![sample_event(3, 100)];
    assert_eq!(log.append(first.clone()).await.unwrap(), AppendOutcome { appended: 2, duplicates: 0 });
    assert_eq!(log.append(second.clone()).await.unwrap(), AppendOutcome { appended: 1, duplicates: 0 });

    let pending = log.pending(10).await.unwrap();
    assert_eq!(events_of(&pending), [first.clone(), second.clone()].concat());
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log.pending_count().await.unwrap(), 3);

    log.release(vec![pending[0].seq, pending[2].seq]).await.unwrap();
    let after = log.pending(10).await.unwrap();
    assert_eq!(after, vec![pending[1].clone()]);
    assert_eq!(log.pending_count().await.unwrap(), 1);

    // Releasing what is already gone, or nothing, is harmless.
    log.release(vec![pending[0].seq, 999_999]).await.unwrap();
    log.release(vec![]).await.unwrap();
    assert_eq!(log.pending(10).await.unwrap(), vec![pending[1].clone()]);
}

async fn pending_returns_at_most_max(backend: LogBackend) {
    let log = backend.open().await;
    let events: Vec<_> = (1..=7).map(|i| sample_event(i, i * 10)).collect();
    log.append(events.clone()).await.unwrap();

    assert_eq!(events_of(&log.pending(3).await.unwrap()), events[..3]);
    assert!(log.pending(0).await.unwrap().is_empty());
    assert_eq!(events_of(&log.pending(100).await.unwrap()), events);
}

async fn duplicates_within_one_batch_are_stored_once(backend: LogBackend) {
    let log = backend.open().await;
    let event = sample_event(1, 100);
    let outcome = log.append(vec![event.clone(), redelivery(&event), sample_event(2, 100)]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 2, duplicates: 1 });
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![event, sample_event(2, 100)]);
}

async fn redelivery_is_a_duplicate_across_appends_and_after_release(backend: LogBackend) {
    let log = backend.open().await;
    let event = sample_event(1, 100);
    log.append(vec![event.clone()]).await.unwrap();
    assert_eq!(log.append(vec![redelivery(&event)]).await.unwrap(), AppendOutcome { appended: 0, duplicates: 1 });
    assert_eq!(log.pending_count().await.unwrap(), 1);

    let seqs = seqs_of(&log.pending(10).await.unwrap());
    log.release(seqs).await.unwrap();
    assert_eq!(log.append(vec![redelivery(&event)]).await.unwrap(), AppendOutcome { appended: 0, duplicates: 1 });
    assert_eq!(log.pending_count().await.unwrap(), 0);

    // Same eventId, other object: a different delivery.
    assert_eq!(log.append(vec![sample_event(1, 101)]).await.unwrap(), AppendOutcome { appended: 1, duplicates: 0 });
}

async fn appended_events_survive_reopening_and_stay_deduplicated(backend: LogBackend) {
    let kept = sample_event(1, 100);
    let released = sample_event(2, 200);
    {
        let log = backend.open().await;
        log.append(vec![kept.clone(), released.clone()]).await.unwrap();
        let seq = log.pending(10).await.unwrap()[1].seq;
        log.release(vec![seq]).await.unwrap();
        log.close().await;
    }

    let log = backend.open().await;
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![kept.clone()]);
    let outcome = log.append(vec![redelivery(&kept), redelivery(&released)]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 0, duplicates: 2 });
}

/// A receiver that stops with events it took but did not release: the next one gets them.
async fn unreleased_events_come_back_after_a_restart(backend: LogBackend) {
    let events: Vec<_> = (1..=3).map(|i| sample_event(i, 100 + i)).collect();
    {
        let log = backend.open().await;
        log.append(events.clone()).await.unwrap();
        let taken = log.pending(10).await.unwrap();
        assert_eq!(events_of(&taken), events);
        log.release(vec![taken[1].seq]).await.unwrap();
        log.close().await;
    }
    let log = backend.open().await;
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![events[0].clone(), events[2].clone()]);
    assert_eq!(log.pending_count().await.unwrap(), 2);
}

async fn positions_are_never_reused_after_release(backend: LogBackend) {
    let last_seq = {
        let log = backend.open().await;
        log.append(vec![sample_event(1, 1), sample_event(2, 2)]).await.unwrap();
        let seqs = seqs_of(&log.pending(10).await.unwrap());
        log.release(seqs.clone()).await.unwrap();
        log.close().await;
        *seqs.last().unwrap()
    };
    let log = backend.open().await;
    log.append(vec![sample_event(3, 3)]).await.unwrap();
    assert!(log.pending(10).await.unwrap()[0].seq > last_seq);
}

async fn concurrent_appends_store_every_event_exactly_once(backend: LogBackend) {
    let log = backend.open().await;
    // 50 tasks of 4 events each; tasks 2k and 2k+1 send the same deliveries, as HubSpot does
    // when it retries a batch it did not see answered.
    let tasks: Vec<_> = (0..50u64)
        .map(|task| {
            let log = log.clone();
            let pair = task / 2;
            let batch: Vec<_> = (0..4).map(|i| sample_event(pair * 10 + i, 1000 + pair)).collect();
            tokio::spawn(async move { log.append(batch).await.unwrap() })
        })
        .collect();
    let mut total = AppendOutcome::default();
    for task in tasks {
        let outcome = tokio::time::timeout(WAIT, task).await.expect("append did not finish").unwrap();
        total.appended += outcome.appended;
        total.duplicates += outcome.duplicates;
    }
    assert_eq!(total, AppendOutcome { appended: 100, duplicates: 100 });

    let pending = log.pending(1000).await.unwrap();
    assert_eq!(pending.len(), 100);
    let keys: HashSet<String> = pending.iter().map(|s| s.event.dedup_key()).collect();
    assert_eq!(keys.len(), 100);
    let expected: HashSet<String> =
        (0..25u64).flat_map(|pair| (0..4).map(move |i| sample_event(pair * 10 + i, 1000 + pair).dedup_key())).collect();
    assert_eq!(keys, expected);
}

async fn notified_resolves_after_an_append_that_stored_events(backend: LogBackend) {
    let log = backend.open().await;
    let waiter = tokio::spawn({
        let log = log.clone();
        async move { log.notified().await }
    });
    log.append(vec![sample_event(1, 100)]).await.unwrap();
    tokio::time::timeout(WAIT, waiter).await.expect("no notification after append").unwrap();

    // A consumer that starts waiting only after the append (it was busy reading) still wakes.
    // First take any wake-up left over from the first append, so only the next one counts.
    let _ = log.notified().now_or_never();
    log.append(vec![sample_event(2, 100)]).await.unwrap();
    tokio::time::timeout(WAIT, log.notified()).await.expect("append notification was lost");
}

async fn a_full_log_refuses_new_events_until_some_are_released(backend: LogBackend) {
    let log = backend.open_with(LogLimits { max_pending_events: 3, max_pending_bytes: 0 }).await;
    let stored: Vec<_> = (1..=3).map(|i| sample_event(i, 100)).collect();
    assert_eq!(log.append(stored.clone()).await.unwrap().appended, 3);

    let error = log.append(vec![sample_event(4, 100)]).await.unwrap_err();
    assert!(matches!(error, EventLogError::Full { .. }), "{error:#}");
    assert_eq!(log.pending_count().await.unwrap(), 3);
    // A redelivery of what is stored is still recognised.
    assert_eq!(log.append(vec![redelivery(&stored[0])]).await.unwrap(), AppendOutcome { appended: 0, duplicates: 1 });

    let first = log.pending(1).await.unwrap();
    log.release(seqs_of(&first)).await.unwrap();
    // The refused event was not remembered as seen: its retry is stored.
    assert_eq!(log.append(vec![sample_event(4, 100)]).await.unwrap(), AppendOutcome { appended: 1, duplicates: 0 });

    let bytes = backend.open_with(LogLimits { max_pending_events: 0, max_pending_bytes: 1 }).await;
    let error = bytes.append(vec![sample_event(5, 100)]).await.unwrap_err();
    assert!(matches!(error, EventLogError::Full { .. }), "{error:#}");
}

async fn oldest_pending_age_follows_the_oldest_unreleased_event(backend: LogBackend) {
    let log = backend.open().await;
    log.append(vec![sample_event(1, 100)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    log.append(vec![sample_event(2, 100)]).await.unwrap();
    let age = log.oldest_pending_age().await.unwrap().expect("an event is pending");
    assert!(age >= Duration::from_secs(1), "{age:?}");

    let pending = log.pending(10).await.unwrap();
    log.release(vec![pending[0].seq]).await.unwrap();
    let age = log.oldest_pending_age().await.unwrap().expect("an event is pending");
    assert!(age < Duration::from_secs(1), "now the second event is the oldest: {age:?}");

    log.release(vec![pending[1].seq]).await.unwrap();
    assert_eq!(log.oldest_pending_age().await.unwrap(), None);
}

/// The sync worker times its batching from this, so it must be the time of the append.
async fn pending_events_carry_when_the_log_stored_them(backend: LogBackend) {
    let log = backend.open().await;
    let before = common::now_ms();
    log.append(vec![sample_event(1, 100), sample_event(2, 200)]).await.unwrap();
    let after = common::now_ms();
    let pending = log.pending(10).await.unwrap();
    assert_eq!(pending.len(), 2);
    for event in &pending {
        let at = event.appended_at_ms.expect("the log knows when it stored the event");
        // The NATS server stamps messages with its clock, on this host; 1 ms for rounding.
        assert!((before - 1..=after + 1).contains(&at), "{before} <= {at} <= {after}");
    }
    // Taken again, the events keep their time.
    assert_eq!(log.pending(10).await.unwrap(), pending);
}

// What only the embedded log does.

#[tokio::test]
async fn embedded_open_creates_the_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/events.db");
    let log = EmbeddedEventLog::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(log.pending_count().await.unwrap(), 0);
}

#[tokio::test]
async fn embedded_answered_append_is_on_disk_without_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let crashed = EmbeddedEventLog::open(&path).unwrap();
    crashed.append(vec![sample_event(1, 100)]).await.unwrap();
    // As in a crash: no drop, no checkpoint, the writer never stops.
    std::mem::forget(crashed);

    let log = EmbeddedEventLog::open(&path).unwrap();
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![sample_event(1, 100)]);
}

// What only the JetStream log does: several receivers share it.

fn ids(stored: &[StoredEvent]) -> HashSet<u64> {
    stored.iter().map(|s| s.event.event_id).collect()
}

/// Two receiver replicas on one stream: each event is held by one of them, also after the ack
/// wait has passed several times (the holder renews its claim), and a replica's events go to
/// the other when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_two_replicas_never_hold_the_same_event() {
    let backend = LogBackend::jetstream_with_ack_wait(Duration::from_secs(1));
    let (a, b) = (backend.open().await, backend.open().await);
    let events: Vec<_> = (1..=20).map(|i| sample_event(i, 100 + i)).collect();
    // Each replica takes part of HubSpot's traffic; a retry reaching the other one is a duplicate.
    a.append(events[..10].to_vec()).await.unwrap();
    b.append(events[10..].to_vec()).await.unwrap();
    assert_eq!(b.append(vec![redelivery(&events[0])]).await.unwrap(), AppendOutcome { appended: 0, duplicates: 1 });

    let held_by_a = ids(&a.pending(8).await.unwrap());
    let held_by_b = ids(&b.pending(8).await.unwrap());
    assert_eq!((held_by_a.len(), held_by_b.len()), (8, 8));
    assert!(held_by_a.is_disjoint(&held_by_b), "{held_by_a:?} {held_by_b:?}");
    let held_by_a = ids(&a.pending(100).await.unwrap());
    assert_eq!(held_by_a.len(), 12);
    assert!(held_by_a.is_disjoint(&held_by_b));

    // Three ack waits later, each still holds its own, and nobody else got them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ids(&a.pending(100).await.unwrap()), held_by_a);
    assert_eq!(ids(&b.pending(100).await.unwrap()), held_by_b);
    assert_eq!(a.pending_count().await.unwrap(), 20);

    // A delivers its events; B stops without delivering: A gets B's.
    let a_seqs = seqs_of(&a.pending(100).await.unwrap());
    a.release(a_seqs).await.unwrap();
    b.close().await;
    assert_eq!(ids(&a.pending(100).await.unwrap()), held_by_b);
    assert_eq!(a.pending_count().await.unwrap(), 8);
}

/// A receiver that dies (no `close`) keeps its events only for the ack wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_events_of_a_dead_receiver_go_to_another_after_the_ack_wait() {
    let backend = LogBackend::jetstream_with_ack_wait(Duration::from_secs(1));
    let survivor = backend.open().await;
    {
        let dead = backend.open().await;
        dead.append(vec![sample_event(1, 100), sample_event(2, 100)]).await.unwrap();
        assert_eq!(dead.pending(10).await.unwrap().len(), 2);
        assert!(survivor.pending(10).await.unwrap().is_empty(), "held by the other replica");
    }
    eventually("the dead receiver's events to be redelivered", || {
        let survivor = survivor.clone();
        async move { survivor.pending(10).await.unwrap().len() == 2 }
    })
    .await;
    assert_eq!(ids(&survivor.pending(10).await.unwrap()), HashSet::from([1, 2]));
}

/// JetStream forgets the identities of released messages when the server restarts; the log's
/// seen stream does not. Recreating the event stream loses its duplicate window the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_duplicate_detection_outlives_the_event_streams_memory() {
    let backend = LogBackend::jetstream();
    let LogBackend::JetStream(streams) = &backend else { unreachable!() };
    let event = sample_event(1, 100);
    {
        let log = backend.open().await;
        log.append(vec![event.clone()]).await.unwrap();
        let seqs = seqs_of(&log.pending(10).await.unwrap());
        log.release(seqs).await.unwrap();
    }
    let jetstream = common::nats_jetstream(&streams.settings.url).await;
    jetstream.delete_stream(&streams.settings.stream).await.unwrap();

    let log = backend.open().await;
    let outcome = log.append(vec![redelivery(&event), sample_event(2, 100)]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 1, duplicates: 1 });
    assert_eq!(log.pending_count().await.unwrap(), 1);
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![sample_event(2, 100)]);
}

/// A delivery identity the seen stream cannot take (no leader; here, no stream) fails the
/// append, so that HubSpot retries; the retry, a duplicate to the event stream, records it, and
/// a redelivery is recognised even once the event stream has forgotten the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_an_identity_not_recorded_fails_the_append_and_the_retry_records_it() {
    let backend = LogBackend::jetstream();
    let LogBackend::JetStream(streams) = &backend else { unreachable!() };
    let jetstream = common::nats_jetstream(&streams.settings.url).await;
    let event = sample_event(1, 100);
    {
        let log = backend.open().await;
        jetstream.delete_stream(format!("{}_seen", streams.settings.stream)).await.unwrap();
        assert!(log.append(vec![event.clone()]).await.is_err(), "answered without its identity on disk");
        assert_eq!(log.pending_count().await.unwrap(), 1, "the event itself is stored and will be delivered");
    }
    // The seen stream is back (opening the log sets its streams up), and HubSpot retries.
    let log = backend.open().await;
    let outcome = log.append(vec![redelivery(&event)]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 0, duplicates: 1 });
    let seqs = seqs_of(&log.pending(10).await.unwrap());
    log.release(seqs).await.unwrap();
    drop(log);

    jetstream.delete_stream(&streams.settings.stream).await.unwrap();
    let log = backend.open().await;
    let outcome = log.append(vec![redelivery(&event)]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 0, duplicates: 1 }, "the recorded identity still counts");
    assert_eq!(log.pending_count().await.unwrap(), 0);
}

/// The log creates its streams as the brief of the backend says: file storage, work queue,
/// 72 h duplicate window, limits that refuse new messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_streams_are_created_as_configured() {
    use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
    let backend = LogBackend::jetstream();
    let LogBackend::JetStream(streams) = &backend else { unreachable!() };
    let _log = backend.open_with(LogLimits { max_pending_events: 500, max_pending_bytes: 1 << 20 }).await;
    let jetstream = common::nats_jetstream(&streams.settings.url).await;

    let events = jetstream.get_stream(&streams.settings.stream).await.unwrap();
    let config = &events.cached_info().config;
    assert_eq!(config.subjects, vec![streams.settings.subject.clone()]);
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.retention, RetentionPolicy::WorkQueue);
    assert_eq!(config.discard, DiscardPolicy::New);
    assert_eq!((config.max_messages, config.max_bytes), (500, 1 << 20));
    assert_eq!(config.duplicate_window, Duration::from_secs(72 * 3600));

    let seen = jetstream.get_stream(format!("{}_seen", streams.settings.stream)).await.unwrap();
    let config = &seen.cached_info().config;
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.max_age, Duration::from_secs(72 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(72 * 3600));
}

#[tokio::test]
async fn jetstream_unreachable_server_fails_to_open_without_showing_credentials() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://user:pw-not-shown@{}", listener.local_addr().unwrap());
    drop(listener);
    let settings = receiver::eventlog::jetstream::Settings {
        url,
        stream: "hsop_unreachable".into(),
        subject: "hsop.unreachable.events".into(),
        replicas: 1,
        limits: Default::default(),
        ack_wait: Duration::from_secs(60),
    };
    let open = receiver::eventlog::JetStreamEventLog::open(&settings);
    let error = tokio::time::timeout(WAIT, open).await.expect("open timed out").err().expect("no server to open");
    assert!(!format!("{error:#}").contains("pw-not-shown"), "{error:#}");
}

/// A URL setting may name several servers, as for the seeds of a cluster: one that does not
/// answer is passed over.
#[tokio::test]
async fn jetstream_opens_through_any_server_of_a_comma_separated_list() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("nats://{}", listener.local_addr().unwrap());
    drop(listener);
    let LogBackend::JetStream(streams) = LogBackend::jetstream() else { unreachable!() };
    for url in [format!("{dead}, {}", streams.settings.url), format!("{},{dead}", streams.settings.url)] {
        let settings = receiver::eventlog::jetstream::Settings { url, ..streams.settings.clone() };
        let open = receiver::eventlog::JetStreamEventLog::open(&settings);
        let log = tokio::time::timeout(WAIT, open).await.expect("open timed out").expect("one server answers");
        log.append(vec![sample_event(1, 100)]).await.unwrap();
        assert_eq!(log.pending_count().await.unwrap(), 1);
    }
}

/// `hubspot-operator bench --event-log jetstream` measures acknowledged, stored events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_bench_ingest_stores_every_acknowledged_event() {
    let backend = LogBackend::jetstream();
    let log = backend.open().await;
    let figures =
        hubspot_operator::bench::ingest::ingest(log.clone(), 10, 4, Duration::from_millis(300)).await.unwrap();
    assert!(figures.requests > 0);
    assert_eq!(log.pending_count().await.unwrap(), (figures.requests * 10) as u64);
}
