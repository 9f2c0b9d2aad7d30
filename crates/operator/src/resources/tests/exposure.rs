//! The receiver Ingress and HTTPRoute.

use super::*;

#[test]
fn ingress_routes_the_host_and_path_to_the_receiver_service_with_tls() {
    let mut i = integration();
    assert!(receiver_ingress(&i, &owner(&i)).is_none(), "no Ingress unless asked for");
    i.spec.receiver.ingress = Some(ingress_settings());
    let ingress = receiver_ingress(&i, &owner(&i)).unwrap();
    assert_eq!(
        serde_json::to_value(&ingress).unwrap(),
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": receiver_object_metadata(Some(serde_json::json!({ "cert-manager.io/cluster-issuer": "letsencrypt" }))),
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{
                    "host": "hooks.example.com",
                    "http": { "paths": [{
                        "path": "/webhooks/hubspot",
                        "pathType": "Prefix",
                        "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } },
                    }] },
                }],
                "tls": [{ "hosts": ["hooks.example.com"], "secretName": "hooks-tls" }],
            },
        })
    );
    let service = receiver_service(&i, &owner(&i));
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, RECEIVER_SERVICE_PORT, "the Service's port");
}

#[test]
fn a_bare_ingress_serves_every_host_of_the_default_class_without_tls() {
    let mut i = integration();
    i.spec.receiver.ingress = Some(ReceiverIngress {
        class_name: None,
        host: None,
        path: "/".into(),
        path_type: IngressPathType::ImplementationSpecific,
        tls_secret_name: None,
        annotations: BTreeMap::new(),
    });
    assert_eq!(
        serde_json::to_value(receiver_ingress(&i, &owner(&i)).unwrap()).unwrap(),
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": receiver_object_metadata(None),
            "spec": {
                "rules": [{
                    "http": { "paths": [
                        {
                            "path": "/webhooks",
                            "pathType": "ImplementationSpecific",
                            "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } },
                        },
                        {
                            "path": "/ingest",
                            "pathType": "ImplementationSpecific",
                            "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } },
                        },
                        {
                            "path": "/timeline",
                            "pathType": "ImplementationSpecific",
                            "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } },
                        },
                    ] },
                }],
            },
        })
    );
}

#[test]
fn http_route_attaches_the_receiver_service_to_its_gateways() {
    let mut i = integration();
    assert!(receiver_http_route(&i, &owner(&i)).is_none(), "no HTTPRoute unless asked for");
    let mut settings = http_route_settings();
    settings.annotations = BTreeMap::from([("team".into(), "platform".into())]);
    i.spec.receiver.http_route = Some(settings);
    assert_eq!(
        serde_json::to_value(receiver_http_route(&i, &owner(&i)).unwrap()).unwrap(),
        serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": receiver_object_metadata(Some(serde_json::json!({ "team": "platform" }))),
            "spec": {
                "parentRefs": [
                    { "name": "public", "namespace": "gateways", "sectionName": "https" },
                    { "name": "internal" },
                ],
                "hostnames": ["hooks.example.com"],
                "rules": [{
                    "matches": [{ "path": { "type": "PathPrefix", "value": "/webhooks" } }],
                    "backendRefs": [{ "name": "crm-receiver", "port": 80 }],
                }],
            },
        })
    );
    i.spec.receiver.http_route.as_mut().unwrap().hostnames.clear();
    let route = serde_json::to_value(receiver_http_route(&i, &owner(&i)).unwrap()).unwrap();
    assert!(route["spec"].get("hostnames").is_none(), "the Gateway's listeners decide: {route}");
    // `/` routes what the receiver serves outside, not its metrics and sync status.
    i.spec.receiver.http_route.as_mut().unwrap().path = "/".into();
    let route = serde_json::to_value(receiver_http_route(&i, &owner(&i)).unwrap()).unwrap();
    assert_eq!(
        route["spec"]["rules"][0]["matches"],
        serde_json::json!([
            { "path": { "type": "PathPrefix", "value": "/webhooks" } },
            { "path": { "type": "PathPrefix", "value": "/ingest" } },
            { "path": { "type": "PathPrefix", "value": "/timeline" } },
        ])
    );
}
