//! The names of HubSpot's properties per integration and object type, shared by every
//! `PropertyMapping` reconcile. Listing an object type's properties is one large read (every
//! property of the type, with its options); done per mapping and per visit it cost a read per
//! mapping, and with 1,000 mappings due at once, 1,000 copies of the listing in memory. One
//! catalogue per integration and object type is listed at most once per drift interval; the
//! `HubSpotProperty` reconciler keeps it current with what it creates and archives.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubspot::{self, HubSpotClient};

/// Names of the live properties of one object type.
pub type PropertyNames = HashSet<String>;

/// How long a listing serves lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// A listing that holds every property asked for: the drift interval.
    pub complete: Duration,
    /// A listing that lacks some of them, or a failed listing: so that a property made in
    /// HubSpot by someone else is seen soon, yet the many mappings waiting for it share one
    /// read per period.
    pub incomplete: Duration,
}

/// The catalogue of one integration's object type.
#[derive(Default)]
pub struct PropertyCatalogue {
    /// Held across the listing, so that lookups arriving meanwhile wait for its answer instead
    /// of listing too.
    listing: tokio::sync::Mutex<Option<Listing>>,
}

struct Listing {
    at: Instant,
    outcome: Result<Arc<PropertyNames>, hubspot::Error>,
}

impl PropertyCatalogue {
    /// The names of `object_type`'s properties, listed from `hubspot` when the last listing is
    /// no longer fresh for a lookup of `required` (see [`Freshness`]), or when `refresh` asks
    /// for a new one (a reconcile request).
    pub async fn lookup(
        &self,
        hubspot: &HubSpotClient,
        object_type: &str,
        required: &[String],
        freshness: Freshness,
        refresh: bool,
    ) -> Result<Arc<PropertyNames>, hubspot::Error> {
        let mut listing = self.listing.lock().await;
        if let Some(last) = listing.as_ref().filter(|_| !refresh) {
            let complete = matches!(&last.outcome, Ok(names) if required.iter().all(|n| names.contains(n)));
            let fresh_for = if complete { freshness.complete } else { freshness.incomplete };
            if last.at.elapsed() < fresh_for {
                return last.outcome.clone();
            }
        }
        let outcome = hubspot.list_property_names(object_type).await.map(|names| Arc::new(names.into_iter().collect()));
        *listing = Some(Listing { at: Instant::now(), outcome: outcome.clone() });
        outcome
    }

    /// Records that the property `name` now exists in HubSpot (created, adopted, seen) or no
    /// longer does (archived, not found). A catalogue not listed yet, or whose last listing
    /// failed, is left for the next lookup to list.
    pub async fn record(&self, name: &str, exists: bool) {
        let mut listing = self.listing.lock().await;
        let Some(Listing { outcome: Ok(names), .. }) = listing.as_mut() else { return };
        if names.contains(name) != exists {
            let names = Arc::make_mut(names);
            if exists {
                names.insert(name.to_string());
            } else {
                names.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{emulator_client, hubspot, hubspot_calls};
    use emulator::RunningEmulator;

    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
    const LIST: &str = "/crm/v3/properties/contacts";
    const FRESHNESS: Freshness = Freshness { complete: Duration::from_secs(300), incomplete: Duration::from_secs(30) };

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// An emulator whose token has `scopes`, a client of it, and a catalogue not listed yet.
    async fn empty_catalogue(scopes: &[&str]) -> (RunningEmulator, HubSpotClient, PropertyCatalogue) {
        let hubspot = hubspot(&[(TOKEN, scopes)]).await;
        let client = emulator_client(&hubspot, TOKEN);
        (hubspot, client, PropertyCatalogue::default())
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_listing_until_it_is_stale() {
        let (hubspot, client, catalogue) = empty_catalogue(&["crm.schemas.contacts.read"]).await;
        let required = names(&["email", "firstname"]);
        let lookups = (0..20).map(|_| catalogue.lookup(&client, "contacts", &required, FRESHNESS, false));
        for names in futures::future::join_all(lookups).await {
            assert!(names.unwrap().contains("firstname"));
        }
        assert_eq!(hubspot_calls(&hubspot).await, [LIST]);

        // A reconcile request lists again; an expired listing too.
        catalogue.lookup(&client, "contacts", &required, FRESHNESS, true).await.unwrap();
        let expired = Freshness { complete: Duration::ZERO, ..FRESHNESS };
        catalogue.lookup(&client, "contacts", &required, expired, false).await.unwrap();
        assert_eq!(hubspot_calls(&hubspot).await, [LIST, LIST, LIST]);
    }

    #[tokio::test]
    async fn a_listing_lacking_a_property_is_fresh_for_the_shorter_period() {
        let (hubspot, client, catalogue) = empty_catalogue(&["crm.schemas.contacts.read"]).await;
        let missing = names(&["loyalty_tier"]);
        assert!(
            !catalogue.lookup(&client, "contacts", &missing, FRESHNESS, false).await.unwrap().contains("loyalty_tier")
        );
        catalogue.lookup(&client, "contacts", &missing, FRESHNESS, false).await.unwrap();
        assert_eq!(hubspot_calls(&hubspot).await, [LIST], "within the shorter period");
        let soon = Freshness { incomplete: Duration::ZERO, ..FRESHNESS };
        catalogue.lookup(&client, "contacts", &names(&["email"]), soon, false).await.unwrap();
        assert_eq!(hubspot_calls(&hubspot).await, [LIST], "a complete lookup keeps the longer period");
        catalogue.lookup(&client, "contacts", &missing, soon, false).await.unwrap();
        assert_eq!(hubspot_calls(&hubspot).await, [LIST, LIST]);
    }

    #[tokio::test]
    async fn recorded_properties_are_found_without_listing_again() {
        let (hubspot, client, catalogue) = empty_catalogue(&["crm.schemas.contacts.read"]).await;
        // Nothing listed yet: nothing to keep current.
        catalogue.record("loyalty_tier", true).await;
        let required = names(&["loyalty_tier"]);
        let listed = catalogue.lookup(&client, "contacts", &required, FRESHNESS, false).await.unwrap();
        assert!(!listed.contains("loyalty_tier"));
        catalogue.record("loyalty_tier", true).await;
        assert!(
            catalogue.lookup(&client, "contacts", &required, FRESHNESS, false).await.unwrap().contains("loyalty_tier")
        );
        catalogue.record("loyalty_tier", false).await;
        assert!(
            !catalogue.lookup(&client, "contacts", &required, FRESHNESS, false).await.unwrap().contains("loyalty_tier")
        );
        assert_eq!(hubspot_calls(&hubspot).await, [LIST]);
        assert!(!listed.contains("loyalty_tier"), "a listing handed out is not changed under its holder");
    }

    #[tokio::test]
    async fn a_failed_listing_is_shared_for_the_shorter_period() {
        let (hubspot, client, catalogue) = empty_catalogue(&["crm.objects.deals.read"]).await;
        let required = names(&["email"]);
        for _ in 0..3 {
            let error = catalogue.lookup(&client, "contacts", &required, FRESHNESS, false).await.unwrap_err();
            assert_eq!(error.status(), Some(403));
        }
        assert_eq!(hubspot_calls(&hubspot).await, [LIST]);
    }
}
