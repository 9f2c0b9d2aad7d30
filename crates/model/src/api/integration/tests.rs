use std::collections::BTreeMap;

use super::*;
use crate::api::SecretKeyRef;

fn integration(edit: impl FnOnce(&mut HubSpotIntegrationSpec)) -> HubSpotIntegration {
    let mut spec = HubSpotIntegrationSpec {
        portal_id: Some(62515),
        api: ApiSettings::default(),
        credentials: Credentials {
            private_app_token: Some(SecretKeyRef { name: "hubspot".into(), key: "token".into() }),
            oauth: None,
        },
        required_scopes: vec!["crm.objects.contacts.read".into()],
        webhooks: None,
        receiver: ReceiverSettings::default(),
    };
    edit(&mut spec);
    HubSpotIntegration::new("crm", spec)
}

fn cel_errors(object: &HubSpotIntegration, old: Option<&HubSpotIntegration>) -> String {
    let outcome = match old {
        None => kube::core::cel::validate_cel(object),
        Some(old) => kube::core::cel::validate_cel_update(object, old),
    };
    outcome.err().map(|e| format!("{e:?}")).unwrap_or_default()
}

#[test]
fn cel_keeps_the_portal_id_once_set() {
    let unset = integration(|s| s.portal_id = None);
    let set = integration(|_| {});
    assert_eq!(cel_errors(&set, Some(&unset)), "", "setting it later is allowed");
    assert_eq!(cel_errors(&integration(|s| s.required_scopes.clear()), Some(&set)), "");
    let other = integration(|s| s.portal_id = Some(1));
    assert!(cel_errors(&other, Some(&set)).contains("portalId is immutable once set"));
    assert!(cel_errors(&unset, Some(&set)).contains("portalId is immutable once set"));
}

#[test]
fn cel_wants_at_least_one_receiver_and_keeps_its_storage() {
    assert_eq!(cel_errors(&integration(|s| s.receiver.replicas = 2), None), "");
    let none = integration(|s| s.receiver.replicas = 0);
    assert!(cel_errors(&none, None).contains("replicas must be at least 1"));
    let old = integration(|_| {});
    let bigger = integration(|s| s.receiver.storage.size = "2Gi".into());
    assert!(cel_errors(&bigger, Some(&old)).contains("storage is immutable"));
}

#[test]
fn cel_exposes_the_admin_api_only_with_a_token_and_admits_peers_only_when_exposed() {
    use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
    let with_admin = |token: bool, exposed: bool, allowed_from: Vec<NetworkPolicyPeer>| {
        integration(|s| {
            s.receiver.admin = Some(AdminSettings {
                token_secret_ref: token.then(|| SecretKeyRef { name: "admin".into(), key: "token".into() }),
                exposed,
                allowed_from,
            })
        })
    };
    let operators = NetworkPolicyPeer {
        namespace_selector: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), "operators".into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(cel_errors(&with_admin(false, false, vec![]), None), "", "the default: loopback, no token");
    assert_eq!(cel_errors(&with_admin(true, false, vec![]), None), "", "a token on loopback");
    assert_eq!(cel_errors(&with_admin(true, true, vec![]), None), "", "exposed to nobody: port-forward only");
    assert_eq!(cel_errors(&with_admin(true, true, vec![operators.clone()]), None), "");

    let open = cel_errors(&with_admin(false, true, vec![operators.clone()]), None);
    assert!(open.contains("exposed needs tokenSecretRef"), "{open}");
    assert!(cel_errors(&with_admin(false, true, vec![]), None).contains("exposed needs tokenSecretRef"));
    let peers_on_loopback = cel_errors(&with_admin(true, false, vec![operators]), None);
    assert!(peers_on_loopback.contains("allowedFrom needs exposed: true"), "{peers_on_loopback}");

    let parsed: AdminSettings = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(parsed, AdminSettings::default(), "not exposed unless asked");
    assert!(!parsed.exposed);
}

fn ingress(path: &str, path_type: IngressPathType) -> ReceiverIngress {
    ReceiverIngress {
        class_name: None,
        host: Some("hooks.example.com".into()),
        path: path.into(),
        path_type,
        tls_secret_name: None,
        annotations: BTreeMap::new(),
    }
}

fn http_route(path: &str) -> ReceiverHttpRoute {
    ReceiverHttpRoute {
        parent_refs: vec![GatewayParentRef { name: "public".into(), namespace: None, section_name: None }],
        hostnames: vec!["hooks.example.com".into()],
        path: path.into(),
        annotations: BTreeMap::new(),
    }
}

#[test]
fn cel_takes_an_ingress_or_an_http_route_but_not_both() {
    let with_ingress = integration(|s| s.receiver.ingress = Some(ingress("/webhooks/hubspot", Default::default())));
    assert_eq!(cel_errors(&with_ingress, None), "");
    let with_route = integration(|s| s.receiver.http_route = Some(http_route("/")));
    assert_eq!(cel_errors(&with_route, None), "");
    let both = integration(|s| {
        s.receiver.ingress = Some(ingress("/", Default::default()));
        s.receiver.http_route = Some(http_route("/"));
    });
    assert!(cel_errors(&both, None).contains("set at most one of ingress and httpRoute"));
}

#[test]
fn cel_wants_a_path_that_reaches_the_webhook_endpoint() {
    let webhook_path = crate::contract::WEBHOOK_PATH;
    for path in ["/", "/webhooks", "/webhooks/", webhook_path, "/webhooks/hubspot/"] {
        let i = integration(|s| s.receiver.ingress = Some(ingress(path, IngressPathType::Prefix)));
        assert_eq!(cel_errors(&i, None), "", "{path}");
        let r = integration(|s| s.receiver.http_route = Some(http_route(path)));
        assert_eq!(cel_errors(&r, None), "", "{path}");
    }
    for path in ["/web", "/ingest", "/webhooks/hubspot/extra", "/webhooks/hub"] {
        let i = integration(|s| s.receiver.ingress = Some(ingress(path, IngressPathType::Prefix)));
        assert!(cel_errors(&i, None).contains("path must lead to the receiver's webhook path"), "{path}");
        let r = integration(|s| s.receiver.http_route = Some(http_route(path)));
        assert!(cel_errors(&r, None).contains("path must lead to the receiver's webhook path"), "{path}");
    }
    let exact = integration(|s| s.receiver.ingress = Some(ingress(webhook_path, IngressPathType::Exact)));
    assert_eq!(cel_errors(&exact, None), "");
    let exact_root = integration(|s| s.receiver.ingress = Some(ingress("/", IngressPathType::Exact)));
    assert!(cel_errors(&exact_root, None).contains("an Exact path must be the receiver's webhook path"));
}

#[test]
fn ingress_and_http_route_default_to_the_webhook_path() {
    let spec: ReceiverSettings = serde_json::from_value(serde_json::json!({
        "ingress": { "host": "hooks.example.com" }
    }))
    .unwrap();
    let ingress = spec.ingress.unwrap();
    assert_eq!((ingress.path.as_str(), ingress.path_type), ("/webhooks/hubspot", IngressPathType::Prefix));
    let spec: ReceiverSettings =
        serde_json::from_value(serde_json::json!({ "httpRoute": { "parentRefs": [{ "name": "public" }] } })).unwrap();
    assert_eq!(spec.http_route.unwrap().path, "/webhooks/hubspot");
}

fn oauth() -> OAuthSettings {
    OAuthSettings {
        client_id: "client-1".into(),
        client_secret: SecretKeyRef { name: "hubspot-app".into(), key: "client-secret".into() },
        refresh_token: SecretKeyRef { name: "hubspot-app".into(), key: "refresh-token".into() },
        token_endpoint: None,
    }
}

#[test]
fn cel_wants_exactly_one_credential_kind() {
    let oauth_only = integration(|s| {
        s.credentials.private_app_token = None;
        s.credentials.oauth = Some(oauth());
    });
    assert_eq!(cel_errors(&oauth_only, None), "");
    assert!(matches!(oauth_only.spec.credentials.kind(), Ok(CredentialKind::OAuth(_))));
    let both = integration(|s| s.credentials.oauth = Some(oauth()));
    assert!(cel_errors(&both, None).contains("exactly one credential kind"));
    assert_eq!(both.spec.credentials.kind(), Err(CredentialsError));
    let neither = integration(|s| s.credentials.private_app_token = None);
    assert!(cel_errors(&neither, None).contains("exactly one credential kind"));
    assert_eq!(neither.spec.credentials.kind(), Err(CredentialsError));
}

#[test]
fn token_endpoint_is_v1_or_v3() {
    let parsed: OAuthSettings = serde_json::from_value(serde_json::json!({
        "clientId": "client-1",
        "clientSecret": { "name": "app", "key": "secret" },
        "refreshToken": { "name": "app", "key": "refresh" },
        "tokenEndpoint": "v1"
    }))
    .unwrap();
    assert_eq!(parsed.token_endpoint, Some(hubspot::auth::TokenEndpoint::V1));
    let wrong = serde_json::json!({
        "clientId": "c", "clientSecret": { "name": "a", "key": "b" },
        "refreshToken": { "name": "a", "key": "b" }, "tokenEndpoint": "v2"
    });
    assert!(serde_json::from_value::<OAuthSettings>(wrong).is_err());
}

#[test]
fn cel_wants_a_property_exactly_for_property_changes() {
    let with = |subscriptions: Vec<WebhookSubscription>| {
        integration(|s| {
            s.webhooks = Some(WebhookSettings {
                client_secret: SecretKeyRef { name: "hubspot".into(), key: "client-secret".into() },
                public_url: Some("https://hooks.example.com".into()),
                subscriptions,
                max_concurrent_requests: None,
                management: None,
            })
        })
    };
    let sub = |event_type: &str, property_name: Option<&str>| WebhookSubscription {
        event_type: event_type.into(),
        property_name: property_name.map(Into::into),
        active: true,
    };
    let fine = with(vec![sub("contact.propertyChange", Some("email")), sub("deal.creation", None)]);
    assert_eq!(cel_errors(&fine, None), "");
    let bare = with(vec![sub("contact.propertyChange", None)]);
    assert!(cel_errors(&bare, None).contains("propertyChange subscriptions need propertyName"));
    let named = with(vec![sub("contact.creation", Some("email"))]);
    assert!(cel_errors(&named, None).contains("only propertyChange subscriptions name a property"));
    let active: WebhookSubscription = serde_json::from_str(r#"{"eventType":"deal.creation"}"#).unwrap();
    assert!(active.active, "active defaults to true");
}
