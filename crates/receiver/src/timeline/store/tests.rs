use serde_json::json;

use super::*;
use crate::timeline::validate::Identity;

fn occurrence(id: &str) -> Occurrence {
    Occurrence {
        event_type: "crm/feature-used".into(),
        id: id.into(),
        identity: Identity::Email("ada@example.com".into()),
        timestamp_ms: Some(1_000),
        tokens: [("feature".to_string(), json!("export"))].into(),
        extra_data: None,
    }
}

#[tokio::test]
async fn an_id_is_stored_once_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timeline.db");
    {
        let store = TimelineStore::open(&path).unwrap();
        assert_eq!(store.enqueue(vec![occurrence("a"), occurrence("b")]).await.unwrap(), 2);
        assert_eq!(store.enqueue(vec![occurrence("b"), occurrence("c")]).await.unwrap(), 1);
        let pending = store.pending(10).await.unwrap();
        store.attempt(vec![pending[0].seq]).await.unwrap();
        store.settle(Settled { delivered: vec![pending[1].clone()], rejected: vec![] }).await.unwrap();
    }
    let store = TimelineStore::open(&path).unwrap();
    let pending = store.pending(10).await.unwrap();
    let ids: Vec<(&str, bool)> = pending.iter().map(|q| (q.occurrence.id.as_str(), q.attempted)).collect();
    assert_eq!(ids, [("a", true), ("c", false)]);
    assert_eq!(pending[0].occurrence, occurrence("a"));
    // Delivered, the id is still known: sending it again stores nothing.
    assert_eq!(store.enqueue(vec![occurrence("b")]).await.unwrap(), 0);
}

#[tokio::test]
async fn a_refusal_is_kept_listed_resent_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = TimelineStore::open(&dir.path().join("timeline.db")).unwrap();
    store.enqueue(vec![occurrence("a"), occurrence("b")]).await.unwrap();
    let pending = store.pending(10).await.unwrap();
    let refusal = Refusal {
        status: 400,
        category: "VALIDATION_ERROR".into(),
        message: "no such option".into(),
        correlation_id: "c-1".into(),
    };
    let rejected = pending.iter().map(|q| (q.clone(), refusal.clone())).collect();
    store.settle(Settled { delivered: vec![], rejected }).await.unwrap();
    let everything = OccurrenceFilter::default();
    let (listed, total) = store.rejected(&everything, 1).await.unwrap();
    assert_eq!((listed.len(), total), (1, 2));
    assert_eq!((listed[0].occurrence.id.as_str(), &listed[0].refusal), ("a", &refusal));
    let held = store.held().await.unwrap();
    assert_eq!(held, [("crm/feature-used".to_string(), Held { pending: 0, rejected: 2 })]);

    let first = OccurrenceFilter { ids: vec![listed[0].id], event_type: None };
    assert_eq!(store.resend(first).await.unwrap(), 1);
    assert_eq!(store.pending(10).await.unwrap()[0].occurrence.id, "a");
    assert_eq!(store.discard(everything.clone()).await.unwrap(), 1);
    assert_eq!(store.rejected(&everything, 10).await.unwrap().1, 0);
    // A discarded id is forgotten, so a corrected occurrence with it is taken.
    assert_eq!(store.enqueue(vec![occurrence("b")]).await.unwrap(), 1);
    assert_eq!(store.enqueue(vec![occurrence("a")]).await.unwrap(), 0, "a is queued again, not discarded");
}
