//! The app's webhook configuration: the settings and subscriptions an integration wants (pure),
//! rendered as a project app's `webhooks-hsmeta.json` or applied through HubSpot's webhooks
//! management API (legacy public apps), and the `WebhooksReady` condition saying which.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{Value, json};

use super::resources::{HSMETA_KEY, receiver_public_url};
use super::secrets::SecretError;
use super::status::{hubspot_error_reason, required_properties};
use hubspot::{self, AppWebhookSettings, AppWebhookSubscription, HubSpotClient, Secret, WebhookThrottling};
use model::api::conditions::condition;
use model::api::integration::WebhookSubscription;
use model::api::integration::condition_types::WEBHOOKS_READY;
use model::api::{HubSpotIntegration, PropertyMapping};
use model::contract::WEBHOOK_PATH;

/// HubSpot's default `maxConcurrentRequests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 10;
/// Most subscriptions one app may have.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Events subscribed to per mapped object type when `subscriptions` is empty, besides the
/// propertyChange of each mapped property.
const DERIVED_EVENTS: [&str; 4] = ["creation", "deletion", "merge", "restore"];

/// The webhook settings and subscriptions an integration wants HubSpot to have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredWebhooks {
    pub settings: AppWebhookSettings,
    /// Sorted by event type and property, without repeats.
    pub subscriptions: Vec<WebhookSubscription>,
}

/// Why no webhook configuration can be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhooksError {
    #[error(
        "spec.webhooks.publicUrl is not set, nor a host of spec.receiver.ingress or httpRoute: HubSpot needs the public URL of the receiver as the target URL"
    )]
    PublicUrlMissing,
    #[error("{0} subscriptions wanted, but HubSpot allows at most {MAX_SUBSCRIPTIONS} per app")]
    TooManySubscriptions(usize),
}

impl WebhooksError {
    pub fn reason(&self) -> &'static str {
        match self {
            WebhooksError::PublicUrlMissing => "PublicUrlMissing",
            WebhooksError::TooManySubscriptions(_) => "TooManySubscriptions",
        }
    }
}

/// The legacy object name of a mapping's object type (`contacts` → `contact`); `None` for types
/// the legacy subscriptions do not cover (custom objects and the other standard ones).
fn legacy_object(object_type: &str) -> Option<&'static str> {
    match object_type {
        "contacts" | "contact" | "0-1" => Some("contact"),
        "companies" | "company" | "0-2" => Some("company"),
        "deals" | "deal" | "0-3" => Some("deal"),
        "tickets" | "ticket" | "0-5" => Some("ticket"),
        _ => None,
    }
}

/// What `integration` wants HubSpot to send: the receiver's public URL (its webhook path
/// appended when missing) and its subscriptions, or those derived from `mappings`. `None` when
/// the integration has no `spec.webhooks`.
pub fn desired_webhooks(
    integration: &HubSpotIntegration,
    mappings: &[&PropertyMapping],
) -> Option<Result<DesiredWebhooks, WebhooksError>> {
    let webhooks = integration.spec.webhooks.as_ref()?;
    Some((|| {
        let public_url = receiver_public_url(integration).ok_or(WebhooksError::PublicUrlMissing)?;
        let base = public_url.trim_end_matches('/');
        let target_url = match base.ends_with(WEBHOOK_PATH) {
            true => base.to_string(),
            false => format!("{base}{WEBHOOK_PATH}"),
        };
        let mut subscriptions = match webhooks.subscriptions.is_empty() {
            true => derived_subscriptions(mappings),
            false => webhooks.subscriptions.clone(),
        };
        subscriptions.sort_by(|a, b| (&a.event_type, &a.property_name).cmp(&(&b.event_type, &b.property_name)));
        subscriptions.dedup_by(|a, b| a.event_type == b.event_type && a.property_name == b.property_name);
        if subscriptions.len() > MAX_SUBSCRIPTIONS {
            return Err(WebhooksError::TooManySubscriptions(subscriptions.len()));
        }
        let max_concurrent_requests = webhooks.max_concurrent_requests.unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS);
        let settings = AppWebhookSettings { target_url, throttling: WebhookThrottling { max_concurrent_requests } };
        Ok(DesiredWebhooks { settings, subscriptions })
    })())
}

/// Per mapped standard object type: creation, deletion, merge, restore, the propertyChange
/// of each property the mappings read (match key and fields), and associationChange when a
/// mapping delivers associations.
fn derived_subscriptions(mappings: &[&PropertyMapping]) -> Vec<WebhookSubscription> {
    let mut subscriptions = Vec::new();
    for mapping in mappings {
        let Some(object) = legacy_object(&mapping.spec.records.object_type) else { continue };
        let whole_object = DERIVED_EVENTS.iter().map(|event| (format!("{object}.{event}"), None));
        let properties =
            required_properties(mapping).into_iter().map(|p| (format!("{object}.propertyChange"), Some(p)));
        let associations =
            (!mapping.spec.associations.is_empty()).then(|| (format!("{object}.associationChange"), None));
        for (event_type, property_name) in whole_object.chain(properties).chain(associations) {
            subscriptions.push(WebhookSubscription { event_type, property_name, active: true });
        }
    }
    subscriptions
}

/// The project app file `webhooks-hsmeta.json` describing `desired`: per subscription an
/// `object.<event>` entry with its `objectType`; `privacyDeletion`, which has no `object.` form,
/// as a legacy entry.
pub fn hsmeta_json(desired: &DesiredWebhooks) -> Value {
    let (mut crm_objects, mut legacy) = (Vec::new(), Vec::new());
    for s in &desired.subscriptions {
        let (object, event) = s.event_type.split_once('.').unwrap_or(("", &s.event_type));
        if event == "privacyDeletion" {
            legacy.push(json!({ "subscriptionType": s.event_type, "active": s.active }));
            continue;
        }
        let mut entry = json!({ "subscriptionType": format!("object.{event}"), "objectType": object });
        if let Some(property) = &s.property_name {
            entry["propertyName"] = json!(property);
        }
        entry["active"] = json!(s.active);
        crm_objects.push(entry);
    }
    let mut subscriptions = json!({ "crmObjects": crm_objects });
    if !legacy.is_empty() {
        subscriptions["legacyCrmObjects"] = json!(legacy);
    }
    json!({
        "uid": "webhooks",
        "type": "webhooks",
        "config": {
            "settings": {
                "targetUrl": desired.settings.target_url,
                "maxConcurrentRequests": desired.settings.throttling.max_concurrent_requests,
            },
            "subscriptions": subscriptions,
        }
    })
}

/// The changes that bring HubSpot's subscriptions (`current`) to `desired`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionPlan {
    /// Wanted and missing.
    pub create: Vec<WebhookSubscription>,
    /// Existing ones whose `active` differs: `(id, active)`.
    pub update: Vec<(String, bool)>,
    /// Created by the operator (`owned`) and no longer wanted.
    pub delete: Vec<String>,
    /// Owned ids that stay (still wanted and still in HubSpot).
    pub keep: Vec<String>,
}

/// Plans the subscription changes. An existing subscription to the same event (and property)
/// counts as present whoever created it; only `owned` ones are ever deleted.
pub fn plan_subscriptions(
    desired: &[WebhookSubscription],
    current: &[AppWebhookSubscription],
    owned: &[String],
) -> SubscriptionPlan {
    let mut plan = SubscriptionPlan::default();
    let same = |d: &WebhookSubscription, c: &AppWebhookSubscription| {
        d.event_type == c.event_type && d.property_name == c.property_name
    };
    for wanted in desired {
        match current.iter().find(|c| same(wanted, c)) {
            None => plan.create.push(wanted.clone()),
            Some(existing) => {
                if existing.active != wanted.active {
                    plan.update.push((existing.id.clone(), wanted.active));
                }
                if owned.contains(&existing.id) {
                    plan.keep.push(existing.id.clone());
                }
            }
        }
    }
    for existing in current {
        if owned.contains(&existing.id) && !desired.iter().any(|d| same(d, existing)) {
            plan.delete.push(existing.id.clone());
        }
    }
    plan
}

/// What applying the configuration through the API changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiSync {
    pub settings_changed: bool,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

/// Brings the app's settings and subscriptions to `desired` through HubSpot's management API.
/// `owned` (the ids the operator created) is updated as it goes, so the ids of subscriptions
/// created before a failure are kept.
pub async fn apply_through_api(
    client: &HubSpotClient,
    app_id: u64,
    api_key: &Secret,
    desired: &DesiredWebhooks,
    owned: &mut Vec<String>,
) -> Result<ApiSync, hubspot::Error> {
    let mut sync = ApiSync::default();
    if client.get_webhook_settings(app_id, api_key).await?.as_ref() != Some(&desired.settings) {
        client.put_webhook_settings(app_id, api_key, &desired.settings).await?;
        sync.settings_changed = true;
    }
    let current = client.list_webhook_subscriptions(app_id, api_key).await?;
    let plan = plan_subscriptions(&desired.subscriptions, &current, owned);
    // Owned ids gone from HubSpot (deleted by someone else) are forgotten.
    *owned = plan.keep.clone();
    owned.extend(plan.delete.iter().cloned());
    for wanted in &plan.create {
        let created = client
            .create_webhook_subscription(
                app_id,
                api_key,
                &wanted.event_type,
                wanted.property_name.as_deref(),
                wanted.active,
            )
            .await?;
        owned.push(created.id);
        sync.created += 1;
    }
    if !plan.update.is_empty() {
        client.update_webhook_subscriptions(app_id, api_key, &plan.update).await?;
        sync.updated = plan.update.len();
    }
    for id in &plan.delete {
        client.delete_webhook_subscription(app_id, api_key, id).await?;
        owned.retain(|o| o != id);
        sync.deleted += 1;
    }
    Ok(sync)
}

/// What came of the webhook configuration in one reconcile.
#[derive(Debug)]
pub enum WebhooksOutcome {
    /// No configuration could be computed.
    Invalid(WebhooksError),
    /// Rendered into the ConfigMap; HubSpot's side is the user's.
    Rendered { config_map: String, subscriptions: usize },
    /// Nothing to render without a public URL; HubSpot's side is the user's all the same.
    NotRendered,
    /// The developer API key could not be read.
    KeyUnavailable(SecretError),
    /// Applied through the management API.
    Applied { app_id: u64, subscriptions: usize, sync: ApiSync },
    /// A management API call failed.
    Failed(hubspot::Error),
}

/// The `WebhooksReady` condition describing `outcome`.
pub fn webhooks_condition(outcome: &WebhooksOutcome, generation: Option<i64>) -> Condition {
    let (ok, reason, message) = match outcome {
        WebhooksOutcome::Invalid(e) => (false, e.reason().to_string(), e.to_string()),
        WebhooksOutcome::Rendered { config_map, subscriptions } => (
            true,
            "ManagedByUser".into(),
            format!(
                "HubSpot's webhook settings and subscriptions are managed by you: the operator does not change them. \
                 The wanted ones ({subscriptions} subscriptions) are in ConfigMap {config_map} as {HSMETA_KEY}: \
                 deploy it with your project app, or enter them in your private app's settings"
            ),
        ),
        WebhooksOutcome::NotRendered => (
            true,
            "ManagedByUser".into(),
            "HubSpot's webhook settings and subscriptions are managed by you: the operator does not change them. \
             Set spec.webhooks.publicUrl (or an Ingress or HTTPRoute host) to have the wanted ones rendered as \
             webhooks-hsmeta.json"
                .into(),
        ),
        WebhooksOutcome::KeyUnavailable(e) => {
            (false, e.reason().to_string(), format!("Cannot read the developer API key: {e}"))
        }
        WebhooksOutcome::Applied { app_id, subscriptions, sync } => (
            true,
            "Applied".into(),
            format!(
                "{subscriptions} subscriptions of app {app_id} are as wanted (this visit: settings {}, {} created, \
                 {} changed, {} deleted)",
                if sync.settings_changed { "updated" } else { "unchanged" },
                sync.created,
                sync.updated,
                sync.deleted
            ),
        ),
        WebhooksOutcome::Failed(e) => {
            let (reason, message) = hubspot_error_reason(e);
            (false, reason, message)
        }
    };
    condition(WEBHOOKS_READY, Some(ok), &reason, message, generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{integration, mapping};
    use model::api::SecretKeyRef;
    use model::api::integration::{WebhookApiManagement, WebhookManagement};

    fn subscription(event_type: &str, property_name: Option<&str>, active: bool) -> WebhookSubscription {
        WebhookSubscription { event_type: event_type.into(), property_name: property_name.map(Into::into), active }
    }

    fn existing(id: &str, event_type: &str, property_name: Option<&str>, active: bool) -> AppWebhookSubscription {
        AppWebhookSubscription {
            id: id.into(),
            event_type: event_type.into(),
            property_name: property_name.map(Into::into),
            active,
        }
    }

    fn keys(desired: &DesiredWebhooks) -> Vec<String> {
        desired
            .subscriptions
            .iter()
            .map(|s| match &s.property_name {
                Some(p) => format!("{}:{p}:{}", s.event_type, s.active),
                None => format!("{}:{}", s.event_type, s.active),
            })
            .collect()
    }

    #[test]
    fn without_subscriptions_they_are_derived_from_the_mappings() {
        let i = integration("http://127.0.0.1:9", &[]);
        let contacts = mapping("crm", &["firstname", "email"]);
        let mut custom = mapping("crm", &["name"]);
        custom.spec.records.object_type = "2-123456".into();
        let mut deals = mapping("crm", &["amount"]);
        deals.spec.records.object_type = "deals".into();
        deals.spec.records.match_key.hubspot_property = "dealname".into();
        deals.spec.associations = vec![model::api::mapping::AssociationMapping {
            to_object_type: "companies".into(),
            field: "company_ids".into(),
        }];
        let desired = desired_webhooks(&i, &[&contacts, &custom, &deals]).unwrap().unwrap();
        assert_eq!(
            keys(&desired),
            [
                "contact.creation:true",
                "contact.deletion:true",
                "contact.merge:true",
                "contact.propertyChange:email:true",
                "contact.propertyChange:firstname:true",
                "contact.restore:true",
                "deal.associationChange:true",
                "deal.creation:true",
                "deal.deletion:true",
                "deal.merge:true",
                "deal.propertyChange:amount:true",
                "deal.propertyChange:dealname:true",
                "deal.restore:true",
            ]
        );
        assert_eq!(desired.settings.target_url, "https://hooks.example.com/webhooks/hubspot");
        assert_eq!(desired.settings.throttling.max_concurrent_requests, 10);
        assert!(desired_webhooks(&i, &[]).unwrap().unwrap().subscriptions.is_empty());
    }

    #[test]
    fn given_subscriptions_win_and_the_target_url_gets_the_webhook_path() {
        let mut i = integration("http://127.0.0.1:9", &[]);
        let webhooks = i.spec.webhooks.as_mut().unwrap();
        webhooks.public_url = Some("https://example.com/hs/".into());
        webhooks.max_concurrent_requests = Some(25);
        webhooks.subscriptions = vec![
            subscription("deal.creation", None, false),
            subscription("contact.propertyChange", Some("email"), true),
            subscription("deal.creation", None, false),
        ];
        let desired = desired_webhooks(&i, &[&mapping("crm", &["firstname"])]).unwrap().unwrap();
        assert_eq!(keys(&desired), ["contact.propertyChange:email:true", "deal.creation:false"]);
        assert_eq!(desired.settings.target_url, "https://example.com/hs/webhooks/hubspot");
        assert_eq!(desired.settings.throttling.max_concurrent_requests, 25);
    }

    #[test]
    fn a_missing_public_url_or_too_many_subscriptions_is_an_error() {
        let mut i = integration("http://127.0.0.1:9", &[]);
        i.spec.webhooks.as_mut().unwrap().public_url = None;
        let error = desired_webhooks(&i, &[]).unwrap().unwrap_err();
        assert_eq!(error, WebhooksError::PublicUrlMissing);
        assert_eq!(error.reason(), "PublicUrlMissing");

        let mut i = integration("http://127.0.0.1:9", &[]);
        i.spec.webhooks.as_mut().unwrap().subscriptions =
            (0..1001).map(|n| subscription("contact.propertyChange", Some(&format!("p{n}")), true)).collect();
        let error = desired_webhooks(&i, &[]).unwrap().unwrap_err();
        assert_eq!(error.to_string(), "1001 subscriptions wanted, but HubSpot allows at most 1000 per app");

        i.spec.webhooks = None;
        assert_eq!(desired_webhooks(&i, &[]), None, "no spec.webhooks: nothing to manage");
    }

    #[test]
    fn hsmeta_has_hubspots_project_shape() {
        let mut i = integration("http://127.0.0.1:9", &[]);
        i.spec.webhooks.as_mut().unwrap().subscriptions = vec![
            subscription("contact.propertyChange", Some("email"), true),
            subscription("deal.deletion", None, false),
            subscription("contact.privacyDeletion", None, true),
        ];
        let desired = desired_webhooks(&i, &[]).unwrap().unwrap();
        assert_eq!(
            hsmeta_json(&desired),
            json!({
                "uid": "webhooks",
                "type": "webhooks",
                "config": {
                    "settings": { "targetUrl": "https://hooks.example.com/webhooks/hubspot", "maxConcurrentRequests": 10 },
                    "subscriptions": {
                        "crmObjects": [
                            { "subscriptionType": "object.propertyChange", "objectType": "contact", "propertyName": "email", "active": true },
                            { "subscriptionType": "object.deletion", "objectType": "deal", "active": false }
                        ],
                        "legacyCrmObjects": [{ "subscriptionType": "contact.privacyDeletion", "active": true }]
                    }
                }
            })
        );
    }

    #[test]
    fn the_plan_creates_missing_flips_active_and_deletes_only_its_own() {
        let desired = [
            subscription("contact.creation", None, true),
            subscription("contact.deletion", None, false),
            subscription("contact.propertyChange", Some("email"), true),
        ];
        let current = [
            existing("1", "contact.creation", None, false),
            existing("2", "contact.deletion", None, false),
            existing("3", "contact.propertyChange", Some("firstname"), true),
            existing("4", "deal.creation", None, true),
        ];
        // "9" was created by the operator but deleted by someone else since.
        let owned = ["2".to_string(), "3".to_string(), "9".to_string()];
        let plan = plan_subscriptions(&desired, &current, &owned);
        assert_eq!(plan.create, vec![subscription("contact.propertyChange", Some("email"), true)]);
        assert_eq!(plan.update, vec![("1".to_string(), true)]);
        assert_eq!(plan.delete, vec!["3".to_string()], "deal.creation (4) is not the operator's");
        assert_eq!(plan.keep, vec!["2".to_string()]);

        let settled = [
            existing("1", "contact.creation", None, true),
            existing("2", "contact.deletion", None, false),
            existing("5", "contact.propertyChange", Some("email"), true),
        ];
        let plan = plan_subscriptions(&desired, &settled, &["2".into(), "5".into()]);
        assert_eq!(
            plan,
            SubscriptionPlan { keep: vec!["2".into(), "5".into()], ..Default::default() },
            "nothing to do"
        );
    }

    #[test]
    fn the_condition_says_who_manages_hubspots_side() {
        let rendered = WebhooksOutcome::Rendered { config_map: "crm-webhooks-hsmeta".into(), subscriptions: 3 };
        let c = webhooks_condition(&rendered, Some(2));
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("WebhooksReady", "True", "ManagedByUser")
        );
        assert!(
            c.message.starts_with("HubSpot's webhook settings and subscriptions are managed by you"),
            "{}",
            c.message
        );
        assert!(c.message.contains("ConfigMap crm-webhooks-hsmeta as webhooks-hsmeta.json"), "{}", c.message);
        assert_eq!(c.observed_generation, Some(2));

        let c = webhooks_condition(&WebhooksOutcome::NotRendered, None);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "ManagedByUser"));
        assert!(c.message.ends_with(
            "Set spec.webhooks.publicUrl (or an Ingress or HTTPRoute host) to have the wanted ones rendered as \
                 webhooks-hsmeta.json"
        ));

        let missing = WebhooksOutcome::KeyUnavailable(SecretError::NotFound { name: "dev".into() });
        let c = webhooks_condition(&missing, None);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "SecretNotFound"));
        assert_eq!(c.message, r#"Cannot read the developer API key: Secret "dev" not found"#);
    }

    #[test]
    fn the_developer_api_key_secret_is_read_with_the_others() {
        let mut i = integration("http://127.0.0.1:9", &[]);
        i.spec.webhooks.as_mut().unwrap().management = Some(WebhookManagement {
            api: Some(WebhookApiManagement {
                app_id: 54321,
                developer_api_key: SecretKeyRef { name: "developer".into(), key: "key".into() },
            }),
        });
        assert_eq!(super::super::resources::referenced_secret_names(&i, &[]), ["hubspot", "developer"]);
    }
}
