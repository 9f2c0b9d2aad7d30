//! The embedded event log against real files in temporary directories.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{WAIT, redelivery, sample_event};
use futures::FutureExt as _;
use hubspot_operator::eventlog::{AppendOutcome, EmbeddedEventLog, EventLog, StoredEvent};
use hubspot_operator::hubspot::WebhookEvent;

fn events_of(stored: &[StoredEvent]) -> Vec<WebhookEvent> {
    stored.iter().map(|s| s.event.clone()).collect()
}

#[tokio::test]
async fn open_creates_the_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/events.db");
    let log = EmbeddedEventLog::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(log.pending_count().await.unwrap(), 0);
    assert!(log.pending(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn pending_returns_unreleased_events_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap();
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

#[tokio::test]
async fn pending_returns_at_most_max() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap();
    let events: Vec<_> = (1..=7).map(|i| sample_event(i, i * 10)).collect();
    log.append(events.clone()).await.unwrap();

    assert_eq!(events_of(&log.pending(3).await.unwrap()), events[..3]);
    assert!(log.pending(0).await.unwrap().is_empty());
    assert_eq!(events_of(&log.pending(100).await.unwrap()), events);
}

#[tokio::test]
async fn duplicates_within_one_batch_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap();
    let event = sample_event(1, 100);
    let outcome = log.append(vec![event.clone(), redelivery(&event), sample_event(2, 100)]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 2, duplicates: 1 });
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![event, sample_event(2, 100)]);
}

#[tokio::test]
async fn redelivery_is_a_duplicate_across_appends_and_after_release() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap();
    let event = sample_event(1, 100);
    log.append(vec![event.clone()]).await.unwrap();
    assert_eq!(log.append(vec![redelivery(&event)]).await.unwrap(), AppendOutcome { appended: 0, duplicates: 1 });
    assert_eq!(log.pending_count().await.unwrap(), 1);

    let seqs = log.pending(10).await.unwrap().iter().map(|s| s.seq).collect();
    log.release(seqs).await.unwrap();
    assert_eq!(log.append(vec![redelivery(&event)]).await.unwrap(), AppendOutcome { appended: 0, duplicates: 1 });
    assert_eq!(log.pending_count().await.unwrap(), 0);

    // Same eventId, other object: a different delivery.
    assert_eq!(log.append(vec![sample_event(1, 101)]).await.unwrap(), AppendOutcome { appended: 1, duplicates: 0 });
}

#[tokio::test]
async fn appended_events_survive_reopening_and_stay_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let kept = sample_event(1, 100);
    let released = sample_event(2, 200);
    {
        let log = EmbeddedEventLog::open(&path).unwrap();
        log.append(vec![kept.clone(), released.clone()]).await.unwrap();
        let seq = log.pending(10).await.unwrap()[1].seq;
        log.release(vec![seq]).await.unwrap();
    }

    let log = EmbeddedEventLog::open(&path).unwrap();
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![kept.clone()]);
    let outcome = log.append(vec![redelivery(&kept), redelivery(&released)]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 0, duplicates: 2 });
}

#[tokio::test]
async fn an_answered_append_is_on_disk_without_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let crashed = EmbeddedEventLog::open(&path).unwrap();
    crashed.append(vec![sample_event(1, 100)]).await.unwrap();
    // As in a crash: no drop, no checkpoint, the writer never stops.
    std::mem::forget(crashed);

    let log = EmbeddedEventLog::open(&path).unwrap();
    assert_eq!(events_of(&log.pending(10).await.unwrap()), vec![sample_event(1, 100)]);
}

#[tokio::test]
async fn positions_are_never_reused_after_release() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let last_seq = {
        let log = EmbeddedEventLog::open(&path).unwrap();
        log.append(vec![sample_event(1, 1), sample_event(2, 2)]).await.unwrap();
        let seqs: Vec<u64> = log.pending(10).await.unwrap().iter().map(|s| s.seq).collect();
        log.release(seqs.clone()).await.unwrap();
        *seqs.last().unwrap()
    };
    let log = EmbeddedEventLog::open(&path).unwrap();
    log.append(vec![sample_event(3, 3)]).await.unwrap();
    assert!(log.pending(10).await.unwrap()[0].seq > last_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_store_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
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

#[tokio::test]
async fn notified_resolves_after_an_append_that_stored_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
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
