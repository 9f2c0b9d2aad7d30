//! Watches of the kinds a controller follows besides its own, filtered to the changes it acts on.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use model::api::conditions::is_true;
use model::api::integration::condition_types::AUTHENTICATED;
use model::api::{HubSpotIntegration, HubSpotProperty, HubSpotTimelineEventType, PropertyMapping};
use serde::de::DeserializeOwned;

use crate::kube_api::{object_key, scoped_api};

/// A kind whose objects belong to one `HubSpotIntegration` of their namespace.
pub trait OfIntegration {
    fn integration_name(&self) -> &str;
}

impl OfIntegration for PropertyMapping {
    fn integration_name(&self) -> &str {
        &self.spec.integration_ref.name
    }
}

impl OfIntegration for HubSpotProperty {
    fn integration_name(&self) -> &str {
        &self.spec.integration_ref.name
    }
}

impl OfIntegration for HubSpotTimelineEventType {
    fn integration_name(&self) -> &str {
        &self.spec.integration_ref.name
    }
}

/// The objects in `store` that belong to `integration`: those to reconcile when it changes.
pub(crate) fn objects_of<K>(store: &Store<K>, integration: &HubSpotIntegration) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + OfIntegration + Clone + 'static,
{
    let (namespace, name) = (integration.namespace(), integration.name_any());
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace() == namespace && o.integration_name() == name)
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// The objects of `events` whose `used` part changed, that appeared or that were deleted. A
/// watch reports every write of an object, each status write too, while a controller watching
/// another kind acts only on what it uses of it: without this filter every status write of a
/// watched object reconciles each object it maps to. An object recreated under the same name (a
/// new uid) is new. Errors pass through, for the controller's backoff.
pub(crate) fn changes_in<K, V>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    used: impl Fn(&K) -> V,
) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Resource,
    V: PartialEq,
{
    let mut seen: HashMap<String, (Option<String>, V)> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    events.filter_map(move |event| {
        if let Ok(watcher::Event::InitApply(object)) = &event {
            listed.insert(object_key(object));
        }
        let passed = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                let current = (object.meta().uid.clone(), used(&object));
                let changed = seen.get(&object_key(&object)) != Some(&current);
                seen.insert(object_key(&object), current);
                changed.then_some(Ok(object))
            }
            Ok(watcher::Event::Delete(object)) => {
                seen.remove(&object_key(&object));
                Some(Ok(object))
            }
            Ok(watcher::Event::Init) => {
                listed.clear();
                None
            }
            // The watch broke and listed again: forget the objects deleted meanwhile, which no
            // Delete event reported.
            Ok(watcher::Event::InitDone) => {
                seen.retain(|key, _| listed.contains(key));
                None
            }
            Err(e) => Some(Err(e)),
        };
        std::future::ready(passed)
    })
}

/// The spec changes ([`changes_in`] of `metadata.generation`), creations and deletions of the
/// `K` objects in `namespace`.
pub(crate) fn spec_changes<K>(
    client: Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + 'static,
{
    changes_in(watcher(scoped_api::<K>(client, namespace), watcher::Config::default()), |object: &K| {
        object.meta().generation
    })
}

/// The changes of the integrations in `namespace` that concern their mappings and properties
/// ([`changes_in`] of [`integration_as_used`]), creations and deletions.
pub(crate) fn integration_changes(
    client: Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<HubSpotIntegration, watcher::Error>> + Send + use<> {
    let api = scoped_api::<HubSpotIntegration>(client, namespace);
    changes_in(watcher(api, watcher::Config::default()), integration_as_used)
}

/// What the mapping and property reconcilers use of their integration: its spec (generation),
/// and whether HubSpot accepts its credentials. With OAuth they call HubSpot with the access
/// token the integration reconciler keeps in a Secret, which is there once `Authenticated`
/// turns True.
fn integration_as_used(integration: &HubSpotIntegration) -> (Option<i64>, bool) {
    let conditions = integration.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    (integration.metadata.generation, is_true(conditions, AUTHENTICATED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// `uid generation` of each object [`changes_in`] passes on from `events`, filtering by
    /// generation.
    async fn passed_on(events: Vec<Result<watcher::Event<PropertyMapping>, watcher::Error>>) -> Vec<String> {
        changes_in(futures::stream::iter(events), |m: &PropertyMapping| m.metadata.generation)
            .map(|passed| match passed {
                Ok(m) => format!("{} {}", m.metadata.uid.unwrap(), m.metadata.generation.unwrap()),
                Err(_) => "an error".to_string(),
            })
            .collect()
            .await
    }

    /// The `contacts` mapping with `uid`, at `generation`, its status listing `missing`.
    fn contacts(uid: &str, generation: i64, missing: &[&str]) -> PropertyMapping {
        let mut mapping = fixtures::mapping("crm", &["firstname"]);
        mapping.metadata.uid = Some(uid.into());
        mapping.metadata.generation = Some(generation);
        mapping.status = Some(model::api::PropertyMappingStatus {
            missing_properties: missing.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        });
        mapping
    }

    #[tokio::test]
    async fn watched_objects_are_passed_on_when_their_spec_changes_or_they_come_or_go_but_not_on_status_writes() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let events = vec![
            Ok(Init),
            Ok(InitApply(contacts("a", 1, &[]))),
            Ok(InitDone),
            // The mapping reconciler writes the status.
            Ok(Apply(contacts("a", 1, &["firstname"]))),
            // A new spec.
            Ok(Apply(contacts("a", 2, &["firstname"]))),
            Ok(Apply(contacts("a", 2, &[]))),
            Ok(Delete(contacts("a", 2, &[]))),
            // Created again under the same name: generation 1 again, a new uid.
            Ok(Apply(contacts("b", 1, &[]))),
            Err(watcher::Error::NoResourceVersion),
            // The watch broke and lists again: nothing new, but for an object deleted and
            // created meanwhile.
            Ok(Init),
            Ok(InitApply(contacts("b", 1, &["firstname"]))),
            Ok(InitDone),
            Ok(Init),
            Ok(InitApply(contacts("c", 1, &[]))),
            Ok(InitDone),
        ];
        assert_eq!(passed_on(events).await, ["a 1", "a 2", "a 2", "b 1", "an error", "c 1"]);
    }

    #[test]
    fn mappings_and_properties_use_their_integrations_spec_and_whether_its_credentials_work() {
        use model::api::conditions::condition;
        use model::api::integration::condition_types::RECEIVER_AVAILABLE;
        let integration = fixtures::integration("http://127.0.0.1:9", &[]);
        let with = |conditions: Vec<_>| {
            let mut i = integration.clone();
            i.status = Some(model::api::HubSpotIntegrationStatus { conditions, ..Default::default() });
            i
        };
        let unknown = integration_as_used(&integration);
        let receiver_up = with(vec![condition(RECEIVER_AVAILABLE, Some(true), "Available", "up", Some(1))]);
        assert_eq!(integration_as_used(&receiver_up), unknown, "a status write about the receiver concerns them not");
        let refused = with(vec![condition(AUTHENTICATED, Some(false), "Unauthorized", "no", Some(1))]);
        assert_eq!(integration_as_used(&refused), unknown);
        let accepted = with(vec![condition(AUTHENTICATED, Some(true), "TokenValid", "yes", Some(1))]);
        assert_ne!(integration_as_used(&accepted), unknown, "with OAuth the access token is there now");
        let mut edited = integration.clone();
        edited.metadata.generation = Some(2);
        assert_ne!(integration_as_used(&edited), unknown);
    }
}
