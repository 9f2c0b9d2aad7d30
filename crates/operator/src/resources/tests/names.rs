//! Names, referenced Secrets, the public URL and ownership of the receiver's objects.

use super::*;

#[test]
fn referenced_secrets_are_listed_once_in_first_use_order() {
    let i = integration();
    let m1 = mapping("a", "crm", vec![http_destination(Some("sink-signing")), http_destination(None)]);
    let m2 = mapping("b", "crm", vec![http_destination(Some("hubspot"))]);
    assert_eq!(referenced_secret_names(&i, &[&m1, &m2]), ["hubspot", "sink-signing"]);
}

#[test]
fn public_url_comes_from_the_spec_else_the_ingress_or_http_route_host() {
    let mut i = integration();
    i.spec.receiver.ingress = Some(ingress_settings());
    assert_eq!(
        receiver_public_url(&i).as_deref(),
        Some("https://hooks.example.com/webhooks/hubspot"),
        "publicUrl wins"
    );
    i.spec.webhooks.as_mut().unwrap().public_url = Some("https://proxy.example.com/hs/webhooks/hubspot".into());
    assert_eq!(receiver_public_url(&i).as_deref(), Some("https://proxy.example.com/hs/webhooks/hubspot"));

    i.spec.webhooks.as_mut().unwrap().public_url = None;
    let ingress = i.spec.receiver.ingress.as_mut().unwrap();
    // The path only routes: requests reach the receiver unchanged, at its webhook path.
    ingress.path = "/".into();
    assert_eq!(receiver_public_url(&i).as_deref(), Some("https://hooks.example.com/webhooks/hubspot"));
    i.spec.receiver.ingress.as_mut().unwrap().tls_secret_name = None;
    assert_eq!(receiver_public_url(&i).as_deref(), Some("http://hooks.example.com/webhooks/hubspot"));
    i.spec.receiver.ingress.as_mut().unwrap().host = Some("*.example.com".into());
    assert_eq!(receiver_public_url(&i), None, "a wildcard host names no URL");
    i.spec.receiver.ingress.as_mut().unwrap().host = None;
    assert_eq!(receiver_public_url(&i), None);

    i.spec.receiver.ingress = None;
    let mut route = http_route_settings();
    route.hostnames = vec!["*.example.com".into(), "hooks.example.com".into()];
    i.spec.receiver.http_route = Some(route);
    assert_eq!(receiver_public_url(&i).as_deref(), Some("https://hooks.example.com/webhooks/hubspot"));
    let config = receiver_config(&i, &[], &secrets()).unwrap();
    assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"), "the signed base");
    i.spec.receiver.http_route.as_mut().unwrap().hostnames.clear();
    assert_eq!(receiver_public_url(&i), None);
    assert_eq!(receiver_config(&i, &[], &secrets()).unwrap().webhooks.public_url, None);
}

#[test]
fn only_objects_of_our_own_count_as_the_receivers() {
    let i = integration();
    let ours = || child_metadata(&i, receiver_name(&i), &owner(&i));
    assert!(is_own_receiver_object(&i, &ours()));

    let mut unlabelled = ours();
    unlabelled.labels.as_mut().unwrap().remove(MANAGED_BY_LABEL);
    assert!(!is_own_receiver_object(&i, &unlabelled));
    let mut managed_by_someone_else = ours();
    managed_by_someone_else.labels.as_mut().unwrap().insert(MANAGED_BY_LABEL.into(), "helm".into());
    assert!(!is_own_receiver_object(&i, &managed_by_someone_else));
    let mut other_owner = ours();
    other_owner.owner_references.as_mut().unwrap()[0].uid = "another-uid".into();
    assert!(!is_own_receiver_object(&i, &other_owner));
    let mut unowned = ours();
    unowned.owner_references = None;
    assert!(!is_own_receiver_object(&i, &unowned));
    let mut other_name = ours();
    other_name.name = Some("crm-receiver-v2".into());
    assert!(!is_own_receiver_object(&i, &other_name));
}

#[test]
fn every_child_is_controlled_by_the_integration() {
    let i = integration();
    let o = owner(&i);
    let mut exposed = i.clone();
    exposed.spec.receiver.ingress = Some(ingress_settings());
    exposed.spec.receiver.http_route = Some(http_route_settings());
    let children = [
        config_secret(&i, &o, "x").metadata,
        receiver_statefulset(&i, &o, "img", "h", &[]).metadata,
        receiver_service(&i, &o).metadata,
        receiver_pod_disruption_budget(&i, &o).metadata,
        receiver_network_policy(&i, &o).metadata,
        receiver_ingress(&exposed, &o).unwrap().metadata,
        receiver_http_route(&exposed, &o).unwrap().metadata,
    ];
    for meta in children {
        let refs = meta.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "HubSpotIntegration");
        assert_eq!(refs[0].api_version, "hubspot.io/v1alpha1");
        assert_eq!(refs[0].name, "crm");
        assert_eq!(refs[0].uid, "0b5c2a8e-1111-2222-3333-444455556666");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("sales"));
        assert_eq!(meta.labels.unwrap()[MANAGED_BY_LABEL], MANAGED_BY, "watched by the controller");
    }
}
