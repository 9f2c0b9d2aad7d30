//! Kubernetes Events announcing what happened to an object.

use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};

use crate::{Context, FIELD_MANAGER};

/// A Kubernetes Event to publish on an object: something that happened to it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventToPublish {
    /// A Warning (something needs attention) rather than a Normal event.
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl EventToPublish {
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        Self { warning: false, reason, note: note.into() }
    }

    pub fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Self { warning: true, reason, note: note.into() }
    }
}

/// Publishes each of `changes` as an Event on `object`. Events are informative: a failure to
/// publish one is logged, not retried.
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, changes: &[EventToPublish]) {
    if changes.is_empty() {
        return;
    }
    let recorder = Recorder::new(ctx.client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
    let reference = object.object_ref(&());
    for change in changes {
        let event = KubeEvent {
            type_: if change.warning { EventType::Warning } else { EventType::Normal },
            reason: change.reason.into(),
            // Event notes are limited to 1 kB.
            note: Some(change.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(reason = change.reason, error = %e, "could not publish a Kubernetes Event");
        }
    }
}
