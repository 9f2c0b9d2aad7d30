//! Whether a cached child already holds what is desired.

use super::*;
use crate::integration::children::with_applied_hash;

#[test]
fn a_live_object_holds_the_desired_one_despite_what_the_api_server_adds() {
    let desired = json!({
        "metadata": { "name": "crm-receiver", "labels": { "a": "1" } },
        "spec": { "ports": [{ "port": 80 }, { "port": 8081 }], "selector": { "app": "x" }, "args": [] }
    });
    let live = json!({
        "metadata": { "name": "crm-receiver", "labels": { "a": "1" }, "uid": "u", "resourceVersion": "7",
                      "managedFields": [{ "manager": "hubspot-operator" }] },
        "spec": { "ports": [{ "port": 80, "protocol": "TCP" }, { "port": 8081, "protocol": "TCP" }],
                  "selector": { "app": "x" }, "clusterIP": "10.0.0.1" },
        "status": { "loadBalancer": {} }
    });
    assert!(holds(&live, &desired));

    let mut changed = live.clone();
    changed["spec"]["ports"][1]["port"] = json!(9000);
    assert!(!holds(&changed, &desired), "a changed element");
    let mut fewer = live.clone();
    fewer["spec"]["ports"].as_array_mut().unwrap().pop();
    assert!(!holds(&fewer, &desired), "a missing element");
    let mut more = live.clone();
    more["spec"]["ports"].as_array_mut().unwrap().push(json!({ "port": 1 }));
    assert!(!holds(&more, &desired), "an extra element");
    let mut relabelled = live;
    relabelled["metadata"]["labels"]["a"] = json!("2");
    assert!(!holds(&relabelled, &desired), "a changed label");
}

#[test]
fn secret_data_is_compared_encoded_and_string_data_as_the_data_it_becomes() {
    let live = json!({ "metadata": { "name": "s" }, "data": { "config.yaml": "YQ==" }, "type": "Opaque" });
    assert!(holds(&live, &json!({ "metadata": { "name": "s" }, "data": { "config.yaml": "YQ==" } })));
    assert!(!holds(&live, &json!({ "metadata": { "name": "s" }, "data": { "config.yaml": "Yg==" } })));
    assert!(holds(&live, &json!({ "metadata": { "name": "s" }, "stringData": { "config.yaml": "a" } })));
    assert!(!holds(&live, &json!({ "metadata": { "name": "s" }, "stringData": { "config.yaml": "b" } })));
}

#[test]
fn a_field_no_longer_desired_changes_the_applied_hash_so_the_apply_removes_it() {
    let with_tls = exposed("http://127.0.0.1:9", Some(ReceiverExposureKind::Ingress));
    let mut without_tls = with_tls.clone();
    without_tls.spec.receiver.ingress.as_mut().unwrap().tls_secret_name = None;
    let ingress = |integration: &HubSpotIntegration| {
        let Exposure::Ingress(ingress) = receiver_objects(integration, &[token_secret(TOKEN)]).exposure else {
            panic!("an Ingress")
        };
        to_json(&with_applied_hash(ingress.as_ref()))
    };
    let (live, desired) = (ingress(&with_tls), ingress(&without_tls));
    assert!(holds(&live, &live));
    // The live Ingress still has every field desired, and more (its TLS section)...
    let mut unannotated = desired.clone();
    unannotated["metadata"]["annotations"].as_object_mut().unwrap().remove(APPLIED_HASH_ANNOTATION);
    assert!(holds(&live, &unannotated));
    // ...but not the hash of what is desired now.
    assert!(!holds(&live, &desired));
}
