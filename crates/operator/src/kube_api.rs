//! Kubernetes API calls the reconcilers share: reading Secrets, server-side apply and status
//! patches.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use model::api::HubSpotIntegration;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::secrets::{SecretError, SecretStore};
use crate::{Error, FIELD_MANAGER, resources};

/// `namespace/name` of an object.
pub(crate) fn object_key<K: Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// An Api over one namespace, or all namespaces when `namespace` is unset.
pub(crate) fn scoped_api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Reads the named Secrets of `namespace`; a Secret that does not exist is simply absent.
pub(crate) async fn read_secrets(client: &Client, namespace: &str, names: &[String]) -> Result<SecretStore, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut store = SecretStore::default();
    for name in names {
        if let Some(secret) = api.get_opt(name).await? {
            store.insert(secret);
        }
    }
    Ok(store)
}

/// The token the property and mapping controllers call HubSpot with for `integration`: its
/// private app token, or for an OAuth app the access token the integration reconciler keeps in
/// its managed Secret (so only that reconciler ever uses the refresh token).
pub(crate) async fn api_token(
    client: &Client,
    integration: &HubSpotIntegration,
) -> Result<Result<String, SecretError>, Error> {
    let reference = match resources::api_token_ref(integration) {
        Ok(reference) => reference,
        Err(e) => return Ok(Err(e)),
    };
    let namespace = integration.namespace().unwrap_or_default();
    let secrets = read_secrets(client, &namespace, std::slice::from_ref(&reference.name)).await?;
    Ok(secrets.value(&reference))
}

/// Server-side apply of `object` as [`FIELD_MANAGER`], taking over conflicting fields.
pub(crate) async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.meta().name.clone().ok_or_else(|| Error::MissingObjectKey(K::kind(&()).into(), "name"))?;
    apply_named(api, &name, object).await
}

/// [`apply`] of an object whose type is only known at run time (a [`kube::api::DynamicObject`]).
pub(crate) async fn apply_named<K>(api: &Api<K>, name: &str, object: &K) -> Result<K, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    Ok(api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
}

/// Merge-patches `status` into the status subresource. A merge patch leaves keys it does not
/// mention alone, so keys the previous status had and the new one omits are sent as null.
pub(crate) async fn patch_status<K, S>(api: &Api<K>, name: &str, previous: Option<&S>, status: &S) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
    S: Serialize,
{
    let mut new = serde_json::to_value(status).expect("a status always serialises");
    if let Some(previous) = previous
        && let serde_json::Value::Object(old) = serde_json::to_value(previous).expect("a status always serialises")
        && let Some(fields) = new.as_object_mut()
    {
        for key in old.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": new });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}
