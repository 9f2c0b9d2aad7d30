//! The receiver Service and NetworkPolicy.

use super::*;

#[test]
fn network_policy_admits_the_receiver_and_status_ports_and_leaves_egress_open() {
    let i = integration();
    let policy = receiver_network_policy(&i, &owner(&i));
    assert_eq!(policy.metadata.name.as_deref(), Some("crm-receiver"));
    let spec = policy.spec.unwrap();
    let sts = receiver_statefulset(&i, &owner(&i), "img", "h", &[]).spec.unwrap();
    assert_eq!(spec.pod_selector.unwrap().match_labels, sts.selector.match_labels, "selects the receiver pods");
    assert_eq!(spec.policy_types.as_deref().unwrap(), ["Ingress"], "egress is not restricted");
    assert_eq!(spec.egress, None);
    let rules = spec.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].from, None,
        "from anywhere: HubSpot comes through the cluster's ingress, Prometheus and the controller from other namespaces"
    );
    let ports: Vec<_> = rules[0].ports.iter().flatten().map(|p| (p.port.clone(), p.protocol.as_deref())).collect();
    assert_eq!(ports, [(Some(IntOrString::Int(8080)), Some("TCP")), (Some(IntOrString::Int(8081)), Some("TCP"))]);
}

#[test]
fn service_and_secret_shapes() {
    let i = integration();
    let o = owner(&i);
    let svc = receiver_service(&i, &o);
    assert_eq!(svc.metadata.name.as_deref(), Some("crm-receiver"));
    let ports = svc.spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!((ports[0].port, ports[0].target_port.clone()), (80, Some(IntOrString::String("http".into()))));
    assert_eq!((ports[1].port, ports[1].target_port.clone()), (8081, Some(IntOrString::String("metrics".into()))));
    let secret = config_secret(&i, &o, "listen: 0.0.0.0:8080\n");
    assert_eq!(secret.metadata.name.as_deref(), Some("crm-receiver-config"));
    assert_eq!(secret.data.unwrap()["config.yaml"].0, b"listen: 0.0.0.0:8080\n");
    assert_eq!(receiver_url(&i), "http://crm-receiver.sales.svc/webhooks/hubspot");
}

#[test]
fn service_has_an_admin_port_only_when_the_admin_api_is_exposed() {
    let service = |i: &HubSpotIntegration, ports: serde_json::Value| {
        assert_eq!(
            serde_json::to_value(receiver_service(i, &owner(i))).unwrap(),
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": receiver_object_metadata(None),
                "spec": {
                    "selector": { "app.kubernetes.io/instance": "crm", "app.kubernetes.io/name": "hubspot-operator" },
                    "ports": ports,
                },
            })
        )
    };
    let http = serde_json::json!({ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" });
    let metrics = serde_json::json!({ "name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP" });
    let admin = serde_json::json!({ "name": "admin", "port": 8082, "targetPort": "admin", "protocol": "TCP" });
    service(&integration(), serde_json::json!([http, metrics]));
    service(&with_admin(false, vec![]), serde_json::json!([http, metrics]));
    service(&with_admin(true, vec![]), serde_json::json!([http, metrics, admin]));
}

#[test]
fn network_policy_admits_the_admin_port_only_from_the_listed_peers() {
    let policy = |i: &HubSpotIntegration, rules: serde_json::Value| {
        assert_eq!(
            serde_json::to_value(receiver_network_policy(i, &owner(i))).unwrap(),
            serde_json::json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": receiver_object_metadata(None),
                "spec": {
                    "podSelector": {
                        "matchLabels": { "app.kubernetes.io/instance": "crm", "app.kubernetes.io/name": "hubspot-operator" },
                    },
                    "policyTypes": ["Ingress"],
                    "ingress": rules,
                },
            })
        )
    };
    let receiver =
        serde_json::json!({ "ports": [{ "port": 8080, "protocol": "TCP" }, { "port": 8081, "protocol": "TCP" }] });
    policy(&integration(), serde_json::json!([receiver]));
    // No peers: no rule, since a rule without peers would admit everyone.
    policy(&with_admin(true, vec![]), serde_json::json!([receiver]));
    // Peers of an admin API on loopback (which the schema refuses) open nothing.
    policy(&with_admin(false, vec![ops_console()]), serde_json::json!([receiver]));
    policy(
        &with_admin(true, vec![ops_console()]),
        serde_json::json!([receiver, {
            "from": [{
                "namespaceSelector": { "matchLabels": { "team": "operators" } },
                "podSelector": { "matchLabels": { "app": "ops-console" } },
            }],
            "ports": [{ "port": 8082, "protocol": "TCP" }],
        }]),
    );
}
