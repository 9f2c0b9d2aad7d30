//! The pure build: which objects, with which fields, for which spec.

use super::*;

#[test]
fn receiver_objects_carry_the_rendered_config_and_are_controlled_by_the_integration() {
    let integration = integration("https://api.hubapi.com", &[]);
    let mine = mapping("crm", &["firstname"]);
    let mut not_mine = mapping("billing", &["firstname"]);
    not_mine.metadata.name = Some("billing-contacts".into());
    let desired = built(&integration, &[mine, not_mine], &[token_secret(TOKEN)]);
    let objects = desired.receiver.expect("a rendered config");

    let secret = to_json(&objects.config_secret);
    assert_controlled_by_crm(&secret);
    assert_eq!(secret["metadata"]["name"], "crm-receiver-config");
    let (yaml, config) = config_in(&secret);
    assert_eq!(config.integration, "default/crm");
    assert_eq!(config.hubspot.access_token, TOKEN);
    assert_eq!(config.webhooks.client_secret, "s3cret");
    assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"));
    assert_eq!(config.mappings.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["default/contacts"]);
    assert_eq!(objects.config_hash, crate::resources::config_hash(&yaml));

    let statefulset = to_json(&objects.statefulset);
    assert_controlled_by_crm(&statefulset);
    assert_eq!(
        (statefulset["apiVersion"].as_str(), statefulset["kind"].as_str()),
        (Some("apps/v1"), Some("StatefulSet"))
    );
    let template = &statefulset["spec"]["template"];
    assert_eq!(template["metadata"]["annotations"]["hubspot.io/config-hash"], objects.config_hash);
    assert_eq!(template["spec"]["containers"][0]["image"], IMAGE);
    assert_eq!(template["spec"]["securityContext"]["fsGroup"], 65532);
    let claim = &statefulset["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");

    let service = to_json(&objects.service);
    assert_controlled_by_crm(&service);
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    let budget = to_json(&objects.budget);
    assert_controlled_by_crm(&budget);
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    let policy = to_json(&objects.network_policy);
    assert_controlled_by_crm(&policy);
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert!(matches!(objects.exposure, Exposure::NotRequested));
    for object in [&secret, &statefulset, &service, &budget, &policy] {
        assert_eq!(object["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hubspot-operator", "{object}");
    }
}

#[test]
fn an_unreadable_token_or_admin_token_renders_no_receiver_and_says_why() {
    let base = "http://127.0.0.1:9";
    let cases = [
        (integration(base, &[]), vec![], "SecretNotFound", r#"Secret "hubspot" not found"#),
        (
            integration(base, &[]),
            vec![hubspot_secret(&[("client-secret", "s3cret")])],
            "SecretKeyMissing",
            r#"Secret "hubspot" has no key "token""#,
        ),
        (with_exposed_admin(base), vec![token_secret(TOKEN)], "SecretNotFound", r#"Secret "crm-admin" not found"#),
        (
            with_exposed_admin(base),
            vec![token_secret(TOKEN), named_secret("crm-admin", &[("password", "x")])],
            "SecretKeyMissing",
            r#"Secret "crm-admin" has no key "token""#,
        ),
    ];
    for (integration, secrets, reason, problem) in cases {
        let error = built(&integration, &[], &secrets).receiver.expect_err("no config renders");
        assert_eq!((error.reason(), error.to_string()), (reason, problem.to_string()));
    }
}

#[test]
fn an_exposed_admin_api_gets_its_token_port_service_port_and_network_policy_rule() {
    let admin = named_secret("crm-admin", &[("token", "admin-s3cret\n")]);
    let objects = receiver_objects(&with_exposed_admin("http://127.0.0.1:9"), &[token_secret(TOKEN), admin]);
    let (yaml, config) = config_in(&to_json(&objects.config_secret));
    assert_eq!(config.admin.listen.to_string(), "0.0.0.0:8082");
    assert_eq!(config.admin.token.as_deref(), Some("admin-s3cret"));
    config.admin.validate().expect("the receiver accepts the admin section");

    let statefulset = to_json(&objects.statefulset);
    let template = &statefulset["spec"]["template"];
    assert_eq!(
        template["spec"]["containers"][0]["ports"],
        json!([
            { "name": "http", "containerPort": 8080, "protocol": "TCP" },
            { "name": "metrics", "containerPort": 8081, "protocol": "TCP" },
            { "name": "admin", "containerPort": 8082, "protocol": "TCP" },
        ])
    );
    assert_eq!(template["metadata"]["annotations"]["hubspot.io/config-hash"], crate::resources::config_hash(&yaml));
    let service = to_json(&objects.service);
    assert_eq!(
        service["spec"]["ports"],
        json!([
            { "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" },
            { "name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP" },
            { "name": "admin", "port": 8082, "targetPort": "admin", "protocol": "TCP" },
        ])
    );
    let policy = to_json(&objects.network_policy);
    assert_eq!(
        policy["spec"]["ingress"],
        json!([
            { "ports": [{ "port": 8080, "protocol": "TCP" }, { "port": 8081, "protocol": "TCP" }] },
            {
                "from": [{ "podSelector": { "matchLabels": { "app": "ops-console" } } }],
                "ports": [{ "port": 8082, "protocol": "TCP" }],
            },
        ])
    );
    for object in [&statefulset, &service, &policy, &to_json(&objects.budget)] {
        assert!(!object.to_string().contains("admin-s3cret"), "the token is only in the config Secret: {object}");
    }
}

#[test]
fn a_rotated_admin_token_is_a_new_pod_template() {
    let integration = with_exposed_admin("http://127.0.0.1:9");
    let with_admin_token = |token: &str| {
        let objects =
            receiver_objects(&integration, &[token_secret(TOKEN), named_secret("crm-admin", &[("token", token)])]);
        let template = &to_json(&objects.statefulset)["spec"]["template"];
        (objects.config_hash.clone(), template["metadata"]["annotations"]["hubspot.io/config-hash"].clone())
    };
    let (first, first_template) = with_admin_token("admin-first");
    let (rotated, rotated_template) = with_admin_token("admin-rotated");
    assert_ne!(first, rotated);
    assert_ne!(first_template, rotated_template, "a new pod template hash rolls the pods");
}

#[test]
fn an_ingress_routes_the_webhook_path_and_its_host_becomes_hubspots_target_url() {
    let integration = exposed("http://127.0.0.1:9", Some(ReceiverExposureKind::Ingress));
    let desired = built(&integration, &[], &[token_secret(TOKEN)]);
    let objects = desired.receiver.expect("a rendered config");
    // Signatures cover the URL HubSpot called, which is on the Ingress's host.
    let (_, config) = config_in(&to_json(&objects.config_secret));
    assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"));
    let Exposure::Ingress(ingress) = &objects.exposure else { panic!("an Ingress: {:?}", objects.exposure) };
    let ingress = to_json(ingress);
    assert_controlled_by_crm(&ingress);
    assert_eq!(ingress["metadata"]["name"], "crm-receiver");
    assert_eq!(ingress["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hubspot-operator");
    assert_eq!(
        ingress["spec"],
        json!({
            "ingressClassName": "nginx",
            "rules": [{
                "host": "hooks.example.com",
                "http": { "paths": [{
                    "path": "/webhooks/hubspot", "pathType": "Prefix",
                    "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } }
                }] }
            }],
            "tls": [{ "hosts": ["hooks.example.com"], "secretName": "hooks-tls" }]
        })
    );
    let Some(WebhooksPlan::ConfigMap { config_map, .. }) = &desired.webhooks else { panic!("{:?}", desired.webhooks) };
    let hsmeta: Value = serde_json::from_str(&config_map.data.as_ref().unwrap()["webhooks-hsmeta.json"]).unwrap();
    assert_eq!(hsmeta["config"]["settings"]["targetUrl"], "https://hooks.example.com/webhooks/hubspot");
}

#[test]
fn an_http_route_attaches_to_its_gateway() {
    let integration = exposed("http://127.0.0.1:9", Some(ReceiverExposureKind::HttpRoute));
    let objects = receiver_objects(&integration, &[token_secret(TOKEN)]);
    let Exposure::HttpRoute(route) = &objects.exposure else { panic!("an HTTPRoute: {:?}", objects.exposure) };
    let route = to_json(route);
    assert_controlled_by_crm(&route);
    assert_eq!(
        (route["apiVersion"].as_str(), route["kind"].as_str()),
        (Some("gateway.networking.k8s.io/v1"), Some("HTTPRoute"))
    );
    assert_eq!(
        route["spec"],
        json!({
            "parentRefs": [{ "name": "public", "namespace": "gateways" }],
            "hostnames": ["hooks.example.com"],
            "rules": [{
                "matches": [{ "path": { "type": "PathPrefix", "value": "/webhooks/hubspot" } }],
                "backendRefs": [{ "name": "crm-receiver", "port": 80 }]
            }]
        })
    );
}

#[test]
fn user_managed_webhooks_are_rendered_into_a_config_map() {
    let mut integration = integration("http://127.0.0.1:9", &[]);
    integration.spec.webhooks.as_mut().unwrap().subscriptions = vec![model::api::integration::WebhookSubscription {
        event_type: "deal.creation".into(),
        property_name: None,
        active: true,
    }];
    let desired = built(&integration, &[mapping("crm", &["firstname"])], &[token_secret(TOKEN)]);
    let Some(WebhooksPlan::ConfigMap { config_map, subscriptions }) = desired.webhooks else { panic!("a ConfigMap") };
    assert_eq!(subscriptions, 1);
    let config_map = to_json(&config_map);
    assert_controlled_by_crm(&config_map);
    assert_eq!(config_map["metadata"]["name"], "crm-webhooks-hsmeta");
    assert_eq!(config_map["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hubspot-operator");
    let file = config_map["data"]["webhooks-hsmeta.json"].as_str().expect("the file");
    let hsmeta: Value = serde_json::from_str(file).unwrap();
    assert_eq!(
        hsmeta,
        json!({
            "uid": "webhooks", "type": "webhooks",
            "config": {
                "settings": { "targetUrl": "https://hooks.example.com/webhooks/hubspot", "maxConcurrentRequests": 10 },
                "subscriptions": { "crmObjects": [{ "subscriptionType": "object.creation", "objectType": "deal", "active": true }] }
            }
        })
    );
}

#[test]
fn without_a_public_url_no_webhooks_are_rendered_and_without_webhooks_no_receiver() {
    let mut integration = integration("http://127.0.0.1:9", &[]);
    integration.spec.webhooks.as_mut().unwrap().public_url = None;
    let desired = built(&integration, &[], &[token_secret(TOKEN)]);
    assert!(matches!(desired.webhooks, Some(WebhooksPlan::NotRendered)), "{:?}", desired.webhooks);
    assert!(desired.receiver.is_ok());

    integration.spec.webhooks = None;
    let desired = built(&integration, &[], &[token_secret(TOKEN)]);
    assert!(desired.webhooks.is_none());
    assert_eq!(desired.receiver.expect_err("no receiver without webhooks").reason(), "WebhooksNotConfigured");
}

#[test]
fn api_managed_webhooks_resolve_the_developer_api_key() {
    use model::api::integration::{WebhookApiManagement, WebhookManagement};
    let mut integration = integration("http://127.0.0.1:9", &[]);
    integration.spec.webhooks.as_mut().unwrap().management = Some(WebhookManagement {
        api: Some(WebhookApiManagement {
            app_id: 54321,
            developer_api_key: model::api::SecretKeyRef { name: "developer".into(), key: "key".into() },
        }),
    });
    let key = named_secret("developer", &[("key", "dev-key")]);
    let desired = built(&integration, &[], &[token_secret(TOKEN), key]);
    let Some(WebhooksPlan::Api { app_id, api_key, desired }) = desired.webhooks else { panic!("the API") };
    assert_eq!((app_id, api_key), (54321, Ok("dev-key".to_string())));
    assert_eq!(desired.settings.target_url, "https://hooks.example.com/webhooks/hubspot");

    let without_key = built(&integration, &[], &[token_secret(TOKEN)]);
    let Some(WebhooksPlan::Api { api_key, .. }) = without_key.webhooks else { panic!("the API") };
    assert_eq!(api_key.unwrap_err().reason(), "SecretNotFound");
}

#[test]
fn the_build_is_pure_the_same_input_builds_the_same_objects() {
    let integration = with_exposed_admin("http://127.0.0.1:9");
    let secrets = [token_secret(TOKEN), named_secret("crm-admin", &[("token", "a")])];
    let (first, again) = (receiver_objects(&integration, &secrets), receiver_objects(&integration, &secrets));
    assert_eq!(first.config_hash, again.config_hash);
    assert_eq!(to_json(&first.statefulset), to_json(&again.statefulset));
    assert_eq!(to_json(&first.config_secret), to_json(&again.config_secret));
}

/// An integration using every Secret reference there is (with a private app token, or an
/// OAuth app), and a mapping with every kind of Secret-backed destination and source.
fn fully_featured(oauth: bool) -> (HubSpotIntegration, PropertyMapping, Vec<Value>) {
    let key = |name: &str| json!({ "name": name, "key": "k" });
    let mut integration = integration("http://127.0.0.1:9", &[]);
    integration.spec = serde_json::from_value(json!({
        "portalId": 62515,
        "api": { "baseUrl": "http://127.0.0.1:9" },
        "credentials": if oauth {
            json!({ "oauth": { "clientId": "c", "clientSecret": key("oauth-client"), "refreshToken": key("oauth-refresh") } })
        } else {
            json!({ "privateAppToken": key("token") })
        },
        "webhooks": {
            "clientSecret": key("client-secret"),
            "publicUrl": "https://hooks.example.com",
            "management": { "api": { "appId": 54321, "developerApiKey": key("developer") } }
        },
        "receiver": {
            "ingest": { "tokenSecretRef": key("ingest") },
            "admin": { "tokenSecretRef": key("admin"), "exposed": true },
            "eventLog": { "jetstream": { "urlSecret": key("jetstream") } }
        }
    }))
    .expect("a valid spec");
    let mut mapping = mapping("crm", &["firstname"]);
    mapping.spec.destinations = serde_json::from_value(json!([
        { "http": { "url": "https://sink.example.com", "signingSecret": key("signing") } },
        { "postgres": { "connectionSecret": key("warehouse"), "table": "contacts" } },
        { "nats": { "subject": "contacts", "urlSecret": key("nats") } },
    ]))
    .unwrap();
    mapping.spec.sources = serde_json::from_value(json!([
        { "postgres": { "connectionSecret": key("source"), "table": "crm.contacts", "cursorColumn": "updated_at" } }
    ]))
    .unwrap();
    let names = [
        "token",
        "oauth-client",
        "oauth-refresh",
        "client-secret",
        "developer",
        "ingest",
        "admin",
        "jetstream",
        "signing",
        "warehouse",
        "nats",
        "source",
        "crm-hubspot-access-token",
        "unrelated",
    ];
    let values = |name: &str| match name {
        "nats" | "jetstream" => "nats://127.0.0.1:4222",
        "warehouse" | "source" => "postgres://postgres@127.0.0.1:5432/test",
        _ => "a-value",
    };
    let secrets = names
        .iter()
        .map(|name| match *name {
            "crm-hubspot-access-token" => named_secret(name, &[("token", "issued")]),
            _ => named_secret(name, &[("k", values(name))]),
        })
        .collect();
    (integration, mapping, secrets)
}

#[test]
fn every_secret_the_build_and_authentication_read_is_dereferenced_and_no_other() {
    for oauth in [false, true] {
        let (integration, mapping, available) = fully_featured(oauth);
        let names = Dereferenced::secret_names(&integration, [&mapping]);
        assert!(!names.contains(&"unrelated".to_string()), "{names:?}");
        // The build sees only the dereferenced Secrets: one it reads without their being
        // enumerated would be missing, and the config would not render.
        let desired = built(&integration, std::slice::from_ref(&mapping), &available);
        let objects = desired.receiver.unwrap_or_else(|e| panic!("oauth {oauth}: {e}"));
        let (_, config) = config_in(&to_json(&objects.config_secret));
        assert_eq!(config.ingest.as_ref().map(|i| i.token.as_str()), Some("a-value"));
        assert_eq!(config.admin.token.as_deref(), Some("a-value"));
        let Some(WebhooksPlan::Api { api_key, .. }) = desired.webhooks else { panic!("the API") };
        assert_eq!(api_key, Ok("a-value".to_string()));
        // What authentication reads is among them too.
        let credentials: Vec<&str> =
            if oauth { vec!["oauth-client", "oauth-refresh", "crm-hubspot-access-token"] } else { vec!["token"] };
        for name in credentials {
            assert!(names.contains(&name.to_string()), "oauth {oauth}: {name} not in {names:?}");
        }
        // Every listed name is one the spec references: nothing is read for nothing.
        let dereferenced = Dereferenced::from_available(integration.clone(), vec![mapping.clone()], vec![]);
        assert_eq!(names, Dereferenced::secret_names(&dereferenced.integration, dereferenced.own_mappings()));
        assert_eq!(names.len(), if oauth { 12 } else { 10 }, "{names:?}");
    }
}
