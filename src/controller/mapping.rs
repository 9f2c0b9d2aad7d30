//! The `PropertyMapping` reconciler: checks that the referenced integration exists and that
//! every mapped property exists in HubSpot, and reports conditions.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::status::{PropertyLookup, mapping_status};
use super::{Context, Error, HEALTHY_REQUEUE, UNHEALTHY_REQUEUE, patch_status, read_secrets, scoped_api};
use crate::api::conditions::is_true;
use crate::api::mapping::condition_types::READY;
use crate::api::{HubSpotIntegration, PropertyMapping};

/// The mapping controller: reconciles on changes of mappings and of the integrations they
/// reference (an integration appearing, or its API settings changing).
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<PropertyMapping> {
    let controller =
        Controller::new(scoped_api::<PropertyMapping>(client.clone(), namespace), watcher::Config::default());
    let mappings = controller.store();
    controller.watches(
        scoped_api::<HubSpotIntegration>(client, namespace),
        watcher::Config::default(),
        move |integration| {
            let (namespace, name) = (integration.namespace(), integration.name_any());
            mappings
                .state()
                .into_iter()
                .filter(|m| m.namespace() == namespace && m.spec.integration_ref.name == name)
                .map(|m| ObjectRef::from_obj(m.as_ref()))
                .collect::<Vec<_>>()
        },
    )
}

/// One reconcile of `mapping`.
pub async fn reconcile(mapping: Arc<PropertyMapping>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = mapping.namespace().ok_or_else(|| Error::MissingObjectKey(mapping.name_any(), "namespace"))?;
    let name = mapping.name_any();

    let integrations = Api::<HubSpotIntegration>::namespaced(ctx.client.clone(), &namespace);
    let lookup = match integrations.get_opt(&mapping.spec.integration_ref.name).await? {
        None => PropertyLookup::IntegrationNotFound,
        Some(integration) => {
            let token_ref = &integration.spec.credentials.private_app_token;
            let secrets = read_secrets(&ctx.client, &namespace, std::slice::from_ref(&token_ref.name)).await?;
            match secrets.value(token_ref) {
                Err(e) => PropertyLookup::TokenUnavailable(e),
                Ok(token) => {
                    match ctx.hubspot_client(&integration, token).list_properties(&mapping.spec.object_type).await {
                        Ok(properties) => PropertyLookup::Listed(properties),
                        Err(e) => PropertyLookup::Failed(e),
                    }
                }
            }
        }
    };

    let status = mapping_status(&mapping, &lookup);
    let api = Api::<PropertyMapping>::namespaced(ctx.client.clone(), &namespace);
    patch_status(&api, &name, mapping.status.as_ref(), &status).await?;
    ctx.succeeded(mapping.as_ref());

    let ready = is_true(&status.conditions, READY);
    tracing::info!(mapping = %format!("{namespace}/{name}"), ready, "reconciled PropertyMapping");
    Ok(Action::requeue(if ready { HEALTHY_REQUEUE } else { UNHEALTHY_REQUEUE }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::controller::fixtures::*;

    const INTEGRATION: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/hubspotintegrations/crm";
    const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/contacts/status";

    #[tokio::test]
    async fn mapping_of_an_absent_integration_is_not_ready() {
        let mapping = mapping("crm", &["firstname"]);
        let (ctx, api) = test_context();
        let object = to_json(&mapping);
        let action = run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.get(INTEGRATION, None).await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "IntegrationFound"), ("False".into(), "IntegrationNotFound".into()));
            assert_eq!(
                condition(&patch, "IntegrationFound")["message"],
                r#"HubSpotIntegration "crm" not found in namespace "default""#
            );
            assert_eq!(condition_state(&patch, "PropertiesExist"), ("Unknown".into(), "IntegrationNotFound".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "IntegrationNotFound".into()));
            assert_eq!(patch["status"]["observedGeneration"], 4);
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
    }
}
