//! A webhook request body, as `POST /webhooks/hubspot` splits it into events once its
//! signature is checked.
//!
//! Properties: a batch that splits keeps each event as a slice of the body that reads as the
//! event and its delivery identity, within the time bounds, and every event written out
//! again reads back equal; a delivery key reads back as the identity it was written from.
//! A refused batch has a log description.
#![no_main]

use bytes::Bytes;
use hubspot::{DeliveryIdentity, WebhookEvent};
use libfuzzer_sys::fuzz_target;
use receiver::eventlog::EncodedEvent;
use serde_json::value::RawValue;

/// The end of the signature window the batches are checked against.
const LATEST: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    match EncodedEvent::split_batch(&body, LATEST) {
        Ok(events) => {
            let items: Vec<&RawValue> = serde_json::from_slice(data).expect("a split batch is a JSON array");
            assert_eq!(events.len(), items.len());
            for (encoded, item) in events.iter().zip(items) {
                assert_eq!(&encoded.json[..], item.get().as_bytes(), "an event is kept as sent");
                let event: WebhookEvent = serde_json::from_slice(&encoded.json).expect("a kept event reads back");
                assert_eq!(encoded.identity, event.delivery_identity());
                assert!((0..=LATEST).contains(&event.occurred_at));
                let key = encoded.identity.key();
                assert_eq!(DeliveryIdentity::parse_key(&key), Some(encoded.identity), "{key}");
                let again = EncodedEvent::encode(&event).expect("an event serialises");
                let reread: WebhookEvent = serde_json::from_slice(&again.json).expect("a written event reads back");
                assert_eq!(reread, event);
                assert_eq!(again.identity, encoded.identity);
                let _ = (event.object_type(), event.action(), event.associated_object_type());
            }
        }
        Err(error) => {
            assert!(!error.without_values().is_empty());
        }
    }
    // Any text as a delivery key: what reads, writes back to a key that reads the same.
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(identity) = DeliveryIdentity::parse_key(text)
    {
        assert_eq!(DeliveryIdentity::parse_key(&identity.key()), Some(identity));
    }
});
