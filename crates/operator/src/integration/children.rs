//! The controller's caches of what it owns and reads: its children (by the managed-by label)
//! and the `PropertyMapping`s. The apply step reads them to skip server-side applies that would
//! change nothing, and the dereference step reads the mappings from them instead of listing.
//!
//! A server-side apply that changes nothing is still an API write: it costs the API server a
//! request and an admission pass, and with 1,000 integrations visited every few minutes those
//! add up. Skipping it loses nothing: a child someone changes is both a watch event (which
//! reconciles its integration) and a mismatch with what is desired (which applies it again).

use std::fmt::Debug;
use std::sync::Mutex;

use futures::{FutureExt, Stream};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use model::api::{HubSpotTimelineEventType, PropertyMapping};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::kube_api::{apply, scoped_api};
use crate::{Context, Error, resources};

/// Annotation of every child the apply step writes: a hash of the object as last applied. A
/// subset check alone cannot see a field the operator stopped setting (the live object still
/// has it); a new hash can, and makes the apply go ahead so the API server drops the field.
pub const APPLIED_HASH_ANNOTATION: &str = "hubspot.io/applied-hash";

/// Reflector stores of the integration controller's watches.
pub struct ChildCaches {
    pub secrets: Store<Secret>,
    pub statefulsets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub budgets: Store<PodDisruptionBudget>,
    pub network_policies: Store<NetworkPolicy>,
    pub ingresses: Store<Ingress>,
    pub config_maps: Store<ConfigMap>,
    pub mappings: Store<PropertyMapping>,
    /// Event types with their status (the receiver config takes those HubSpot knows).
    pub event_types: Store<HubSpotTimelineEventType>,
    /// The writing ends, until the controller takes them for its watches.
    writers: Mutex<Option<ChildWriters>>,
}

pub(crate) struct ChildWriters {
    pub secrets: Writer<Secret>,
    pub statefulsets: Writer<StatefulSet>,
    pub services: Writer<Service>,
    pub budgets: Writer<PodDisruptionBudget>,
    pub network_policies: Writer<NetworkPolicy>,
    pub ingresses: Writer<Ingress>,
    pub config_maps: Writer<ConfigMap>,
    pub mappings: Writer<PropertyMapping>,
    pub event_types: Writer<HubSpotTimelineEventType>,
}

impl Default for ChildCaches {
    fn default() -> Self {
        let (secrets, secret_writer) = reflector::store();
        let (statefulsets, statefulset_writer) = reflector::store();
        let (services, service_writer) = reflector::store();
        let (budgets, budget_writer) = reflector::store();
        let (network_policies, network_policy_writer) = reflector::store();
        let (ingresses, ingress_writer) = reflector::store();
        let (config_maps, config_map_writer) = reflector::store();
        let (mappings, mapping_writer) = reflector::store();
        let (event_types, event_type_writer) = reflector::store();
        let writers = ChildWriters {
            secrets: secret_writer,
            statefulsets: statefulset_writer,
            services: service_writer,
            budgets: budget_writer,
            network_policies: network_policy_writer,
            ingresses: ingress_writer,
            config_maps: config_map_writer,
            mappings: mapping_writer,
            event_types: event_type_writer,
        };
        Self {
            secrets,
            statefulsets,
            services,
            budgets,
            network_policies,
            ingresses,
            config_maps,
            mappings,
            event_types,
            writers: Mutex::new(Some(writers)),
        }
    }
}

impl ChildCaches {
    /// The writing ends of the stores; `None` once taken (one controller fills them).
    pub(crate) fn take_writers(&self) -> Option<ChildWriters> {
        self.writers.lock().expect("child writers lock").take()
    }
}

/// The operator's own children of kind `K` in `namespace` (all namespaces when unset), kept in
/// `writer`'s store; the stream yields each child that changed or went away.
pub(crate) fn reflected<K>(
    writer: Writer<K>,
    client: Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let own = watcher::Config::default().labels(&format!("{}={}", resources::MANAGED_BY_LABEL, resources::MANAGED_BY));
    // managedFields are often most of an object and nothing here reads them.
    let children = watcher::watcher(scoped_api::<K>(client, namespace), own)
        .default_backoff()
        .modify(|child| child.managed_fields_mut().clear());
    reflector::reflector(writer, children).touched_objects()
}

/// `store` once it holds a complete listing; `None` before, when it cannot be trusted to show
/// an object's absence or its current state.
pub fn ready_store<K>(store: &Store<K>) -> Option<&Store<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))).then_some(store)
}

/// Server-side applies `desired` (with [`APPLIED_HASH_ANNOTATION`]) unless `store` shows the API
/// server already holds it; what the API server holds afterwards. Without a synced cache, or
/// with the child absent from it, the apply goes ahead as it would without a cache.
pub(crate) async fn apply_unless_held<K>(ctx: &Context, store: &Store<K>, desired: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + 'static,
{
    let desired = with_applied_hash(desired);
    let namespace = desired.namespace().unwrap_or_default();
    let key = ObjectRef::<K>::new(&desired.name_any()).within(&namespace);
    if let Some(live) = ready_store(store).and_then(|s| s.get(&key))
        && holds(&to_value(live.as_ref()), &to_value(&desired))
    {
        return Ok(live.as_ref().clone());
    }
    apply(&Api::<K>::namespaced(ctx.client.clone(), &namespace), &desired).await
}

/// `desired` annotated with the hash of itself.
pub fn with_applied_hash<K: Resource + Serialize + Clone>(desired: &K) -> K {
    let hash = resources::config_hash(&serde_json::to_string(&to_value(desired)).expect("JSON values serialise"));
    let mut annotated = desired.clone();
    annotated.meta_mut().annotations.get_or_insert_with(Default::default).insert(APPLIED_HASH_ANNOTATION.into(), hash);
    annotated
}

fn to_value(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("Kubernetes objects serialise")
}

/// Whether `live` holds every field of `desired`: objects key by key (the API server adds
/// metadata, defaults and status), arrays element by element and of the same length, anything
/// else equal. A Secret's `stringData` is compared with the `data` the API server turns it into.
pub fn holds(live: &Value, desired: &Value) -> bool {
    is_subset(&string_data_as_data(desired), live)
}

fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(desired), Value::Object(live)) => desired.iter().all(|(key, value)| match live.get(key) {
            Some(live) => is_subset(value, live),
            // The API server drops nulls and empty collections.
            None => is_empty(value),
        }),
        (Value::Array(desired), Value::Array(live)) => {
            desired.len() == live.len() && desired.iter().zip(live).all(|(d, l)| is_subset(d, l))
        }
        (desired, live) => desired == live,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// `object` with its `stringData` entries moved into `data`, base64-encoded, as the API server
/// stores them.
fn string_data_as_data(object: &Value) -> Value {
    use base64::Engine;
    let mut object = object.clone();
    let Some(Value::Object(string_data)) = object.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return object;
    };
    let data =
        object.as_object_mut().expect("an object").entry("data").or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(data) = data {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, Value::String(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
    object
}
