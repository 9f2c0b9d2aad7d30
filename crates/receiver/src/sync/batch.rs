//! When the worker reads what pending events are about. Pure: no I/O, no clock.
//!
//! HubSpot's batch read takes up to 100 ids per call, and webhook requests come in small
//! batches when changes are few, so reading each request as it arrives costs a call per
//! request. Instead the objects of one type gather until they fill a batch read, which is
//! then read at once; what does not fill one is read once its oldest event has waited
//! `maxBatchWait` (Vector's `max_events` and `timeout_secs`). Events are released after the
//! delivery as before, so waiting only delays it; they are never acknowledged to the log
//! early.

use std::collections::{BTreeSet, HashMap};

use super::plan::TypePlan;
use crate::eventlog::StoredEvent;
use hubspot::client::BATCH_LIMIT;

/// The part of one type's plan to sync now, and when the rest falls due.
#[derive(Debug, Default, PartialEq)]
pub struct Due {
    /// `None` when nothing is due.
    pub now: Option<TypePlan>,
    /// When the oldest event of what waits will have waited `max_wait_ms` (epoch ms); `None`
    /// when nothing waits.
    pub next_ms: Option<i64>,
}

/// When the worker first saw each pending event (epoch ms). An event's arrival is the earlier
/// of this and the log's own time: the log's time counts the wait of events stored while a
/// step was busy, and this one bounds the wait when the log's clock (a NATS server's) is ahead.
#[derive(Default)]
pub struct Arrivals(HashMap<u64, i64>);

impl Arrivals {
    /// Notes `events`, forgets events no longer pending, and answers every event's arrival.
    pub fn note(&mut self, events: &[StoredEvent], now_ms: i64) -> HashMap<u64, i64> {
        let mut arrived = HashMap::with_capacity(events.len());
        for event in events {
            let first_seen = self.0.get(&event.seq).copied().unwrap_or(now_ms);
            arrived.insert(event.seq, event.appended_at_ms.map_or(first_seen, |at| at.min(first_seen)));
        }
        self.0 = events.iter().map(|e| (e.seq, self.0.get(&e.seq).copied().unwrap_or(now_ms))).collect();
        arrived
    }
}

/// Splits `type_plan` into full batch reads (due at once) and the rest, due once its oldest
/// event has waited `max_wait_ms`. `arrived_ms` says when each event arrived; an event it does
/// not know counts as arrived long ago. Objects are taken oldest first, so a partial batch
/// holds the youngest objects and the waiting time of any object stays bounded. Objects said
/// to be deleted are read too: HubSpot's answer confirms the deletion.
pub fn due(type_plan: &TypePlan, arrived_ms: &HashMap<u64, i64>, now_ms: i64, max_wait_ms: i64) -> Due {
    let arrived = |id: &str| {
        type_plan
            .events_by_object
            .get(id)
            .into_iter()
            .flatten()
            .map(|seq| arrived_ms.get(seq).copied().unwrap_or(i64::MIN))
            .min()
            .unwrap_or(i64::MIN)
    };
    let mut by_age: Vec<(i64, &String)> = type_plan.objects.keys().map(|id| (arrived(id), id)).collect();
    by_age.sort();

    // The objects up to the last one that completes a full batch read.
    let full_up_to = by_age.len() - by_age.len() % BATCH_LIMIT;
    let rest = &by_age[full_up_to..];
    let rest_due_at = rest.first().map(|(arrived, _)| arrived.saturating_add(max_wait_ms));
    let (take, next_ms) = match rest_due_at {
        Some(at) if at <= now_ms => (by_age.len(), None),
        waiting => (full_up_to, waiting),
    };
    let now = match take {
        0 => None,
        n if n == by_age.len() => Some(type_plan.clone()),
        n => Some(type_plan.only(&by_age[..n].iter().map(|(_, id)| (*id).clone()).collect::<BTreeSet<_>>())),
    };
    Due { now, next_ms }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::plan;
    use crate::test_mappings;
    use hubspot::WebhookEvent;
    use model::config::MappingConfig;

    const WAIT: i64 = 500;

    fn mapping() -> MappingConfig {
        let mut mapping = test_mappings::mapping("ns/contacts", "contacts", ("email", "email"), vec![]);
        mapping.policy.backfill = false;
        mapping
    }

    fn event(seq: u64, action: &str, object_id: u64) -> StoredEvent {
        StoredEvent {
            seq,
            event: WebhookEvent {
                event_id: seq,
                occurred_at: seq as i64,
                subscription_type: format!("contact.{action}"),
                object_id,
                ..Default::default()
            },
            appended_at_ms: None,
        }
    }

    /// Events `seqs` changing objects `objects` (one each), arrived at `at`.
    fn changes(events: &mut Vec<StoredEvent>, arrived: &mut HashMap<u64, i64>, objects: std::ops::Range<u64>, at: i64) {
        for object in objects {
            let seq = events.len() as u64 + 1;
            events.push(event(seq, "creation", object));
            arrived.insert(seq, at);
        }
    }

    fn contacts(events: &[StoredEvent]) -> TypePlan {
        plan(events, &[mapping()]).by_type.remove("contacts").unwrap()
    }

    #[test]
    fn a_partial_batch_waits_until_its_oldest_event_has_waited() {
        let (mut events, mut arrived) = (Vec::new(), HashMap::new());
        changes(&mut events, &mut arrived, 1..31, 1_000);
        changes(&mut events, &mut arrived, 31..41, 1_200);
        let plan = contacts(&events);

        let early = due(&plan, &arrived, 1_499, WAIT);
        assert_eq!(early, Due { now: None, next_ms: Some(1_500) });

        let late = due(&plan, &arrived, 1_500, WAIT);
        assert_eq!(late.now.as_ref(), Some(&plan), "everything, the younger events too");
        assert_eq!(late.next_ms, None);
    }

    #[test]
    fn full_batches_go_at_once_and_the_youngest_remainder_waits() {
        let (mut events, mut arrived) = (Vec::new(), HashMap::new());
        changes(&mut events, &mut arrived, 1..151, 1_000);
        changes(&mut events, &mut arrived, 151..251, 1_100);
        changes(&mut events, &mut arrived, 251..271, 1_200);
        let plan = contacts(&events);

        let Due { now, next_ms } = due(&plan, &arrived, 1_050, WAIT);
        let now = now.unwrap();
        assert_eq!(now.ids_to_fetch().len(), 200, "two full batch reads");
        // The oldest 200: all of the first arrival, half of the second.
        assert!((1..151).all(|id| now.objects.contains_key(&id.to_string())));
        assert!((251..271).all(|id| !now.objects.contains_key(&id.to_string())));
        assert_eq!(now.seqs.len(), 200);
        // The remainder's oldest event arrived at 1_100.
        assert_eq!(next_ms, Some(1_600));

        // Once that is due, the remainder goes as well.
        assert_eq!(due(&plan, &arrived, 1_600, WAIT).now.unwrap().objects.len(), 270);
    }

    #[test]
    fn a_full_batch_counts_objects_not_events_and_deletions_too() {
        let (mut events, mut arrived) = (Vec::new(), HashMap::new());
        // 150 events about 50 contacts: far from a full batch read.
        for round in 0..3 {
            changes(&mut events, &mut arrived, 1..51, 1_000 + round);
        }
        let plan = contacts(&events);
        assert_eq!(due(&plan, &arrived, 1_100, WAIT), Due { now: None, next_ms: Some(1_500) });

        // 60 deletions, read to confirm them: the oldest 100 objects fill a batch read.
        for object in 100..160 {
            let seq = events.len() as u64 + 1;
            events.push(event(seq, "deletion", object));
            arrived.insert(seq, 1_050);
        }
        let plan = contacts(&events);
        let Due { now, next_ms } = due(&plan, &arrived, 1_100, WAIT);
        let now = now.unwrap();
        assert_eq!(now.ids_to_fetch().len(), 100);
        assert_eq!(now.objects.len(), 100);
        assert_eq!(next_ms, Some(1_550), "the 10 youngest deletions wait");
    }

    #[test]
    fn arrival_is_the_earlier_of_the_logs_time_and_first_sight() {
        let mut arrivals = Arrivals::default();
        let mut stored = event(1, "creation", 1);
        stored.appended_at_ms = Some(900);
        let mut ahead = event(2, "creation", 2);
        // A log clock ahead of this one does not make the event wait longer.
        ahead.appended_at_ms = Some(5_000);
        let unknown = event(3, "creation", 3);
        let seen = arrivals.note(&[stored.clone(), ahead.clone(), unknown.clone()], 1_000);
        assert_eq!(seen, HashMap::from([(1, 900), (2, 1_000), (3, 1_000)]));

        // Seen again later: still the first sight. Event 1 was released meanwhile.
        let newcomer = event(4, "creation", 4);
        let seen = arrivals.note(&[ahead.clone(), unknown.clone(), newcomer], 1_400);
        assert_eq!(seen, HashMap::from([(2, 1_000), (3, 1_000), (4, 1_400)]));
        // Forgotten once released: back again, it is new.
        assert_eq!(arrivals.note(&[stored], 2_000), HashMap::from([(1, 900)]));
        assert_eq!(arrivals.note(&[unknown], 2_100), HashMap::from([(3, 2_100)]));
    }

    #[test]
    fn events_of_unknown_arrival_are_due_at_once() {
        let events = vec![event(1, "creation", 1)];
        let plan = contacts(&events);
        assert_eq!(due(&plan, &HashMap::new(), 0, WAIT).now, Some(plan));
    }

    #[test]
    fn no_wait_reads_at_once() {
        let (mut events, mut arrived) = (Vec::new(), HashMap::new());
        changes(&mut events, &mut arrived, 1..4, 1_000);
        let plan = contacts(&events);
        assert_eq!(due(&plan, &arrived, 1_000, 0).now, Some(plan));
    }

    #[test]
    fn an_event_about_objects_on_both_sides_stays_pending() {
        let (mut events, mut arrived) = (Vec::new(), HashMap::new());
        changes(&mut events, &mut arrived, 1..101, 1_000);
        // Later, contact 500 is merged into contact 1: contact 1 is in the full batch by its
        // older change, contact 500 waits with contact 600.
        let mut merge = event(101, "merge", 1);
        merge.event.primary_object_id = Some(1);
        merge.event.merged_object_ids = Some(vec![500]);
        events.push(merge);
        arrived.insert(101, 1_300);
        changes(&mut events, &mut arrived, 600..601, 1_300);
        let plan = contacts(&events);

        let Due { now, next_ms } = due(&plan, &arrived, 1_310, WAIT);
        let now = now.unwrap();
        assert!(now.objects.contains_key("1") && !now.objects.contains_key("500"));
        assert_eq!(now.seqs, (1..101).collect::<Vec<u64>>(), "the merge is also about contact 500, which waits");
        assert_eq!(next_ms, Some(1_800));
    }
}
