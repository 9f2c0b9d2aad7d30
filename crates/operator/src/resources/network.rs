//! How the receiver pods are reached inside the cluster: the Service and the NetworkPolicy.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use model::api::HubSpotIntegration;

use super::*;

/// The ClusterIP Service in front of the receiver pods: port 80 to the container's `http` port
/// (what the Ingress and HTTPRoute route to), port 8081 to its `metrics` port (Prometheus, and
/// the EndpointSlices the controller finds the pods' sync reports by), and with the admin API
/// exposed, port 8082 to its `admin` port.
pub fn receiver_service(integration: &HubSpotIntegration, owner: &OwnerReference) -> Service {
    let service_port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let admin = admin_exposed(integration).then(|| service_port("admin", ADMIN_PORT.into()));
    Service {
        metadata: child_metadata(integration, receiver_name(integration), owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(integration)),
            ports: Some(
                [service_port("http", RECEIVER_SERVICE_PORT), service_port("metrics", STATUS_PORT.into())]
                    .into_iter()
                    .chain(admin)
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// The receiver's NetworkPolicy: ingress to the receiver port from anywhere, since HubSpot's
/// requests arrive through whatever ingress or gateway the cluster runs, and to the status port
/// from anywhere, since Prometheus and the controller (`/sync/status`) run in namespaces of
/// their own; to an exposed admin port only from the peers `spec.receiver.admin.allowedFrom`
/// lists. Egress stays open: the receiver calls the HubSpot API and the mappings'
/// destinations, which can be anywhere.
pub fn receiver_network_policy(integration: &HubSpotIntegration, owner: &OwnerReference) -> NetworkPolicy {
    let tcp_port = |port: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let receiver_rule =
        NetworkPolicyIngressRule { from: None, ports: Some(vec![tcp_port(RECEIVER_PORT), tcp_port(STATUS_PORT)]) };
    // A rule with no peers would admit everyone, so without peers there is no admin rule at
    // all: nothing reaches the port from the network (port-forward does not pass the policy).
    let admin_peers = integration.spec.receiver.admin.as_ref().map(|a| &a.allowed_from).filter(|p| !p.is_empty());
    let admin_rule = admin_peers
        .filter(|_| admin_exposed(integration))
        .map(|peers| NetworkPolicyIngressRule { from: Some(peers.clone()), ports: Some(vec![tcp_port(ADMIN_PORT)]) });
    NetworkPolicy {
        metadata: child_metadata(integration, receiver_name(integration), owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(integration)),
                ..Default::default()
            }),
            // Only `Ingress` is listed, so the policy leaves egress alone.
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(std::iter::once(receiver_rule).chain(admin_rule).collect()),
            ..Default::default()
        }),
    }
}
