//! How the receiver is exposed outside the cluster: an Ingress or a Gateway API HTTPRoute.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The receiver's Ingress. Requests reach the receiver with their path unchanged, so the path
/// must route `/webhooks/hubspot`; HubSpot's target URL is `https://<host>/webhooks/hubspot`
/// (`http://` without `tlsSecretName`) unless `spec.webhooks.publicUrl` says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.pathType != 'Exact' || self.path == '/webhooks/hubspot'",
    "message": "an Exact path must be the receiver's webhook path /webhooks/hubspot"
}]))]
pub struct ReceiverIngress {
    /// IngressClass that serves the Ingress (`spec.ingressClassName`); the cluster's default
    /// class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Host name HubSpot calls, for example `hooks.example.com`. Unset: every host the ingress
    /// controller serves, and no public URL is derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path routed to the receiver: `/webhooks/hubspot` (the default), `/webhooks`, or `/` to
    /// also expose the ingest API (the Ingress then routes `/webhooks` and `/ingest`, never
    /// the receiver's `/metrics` or `/sync/status`).
    #[serde(default = "default_receiver_path")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "'/webhooks/hubspot/'.startsWith(self.endsWith('/') ? self : self + '/')",
        "message": "path must lead to the receiver's webhook path: /, /webhooks or /webhooks/hubspot"
    }]))]
    pub path: String,
    /// How `path` matches: `Prefix` (the default), `Exact` or `ImplementationSpecific`.
    #[serde(default)]
    pub path_type: IngressPathType,
    /// Secret (type `kubernetes.io/tls`, in this namespace) with the certificate for `host`.
    /// When set the Ingress terminates TLS and the derived public URL is `https://`. A
    /// certificate controller such as cert-manager can fill it from an annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Annotations of the Ingress, for the ingress controller or a certificate controller (for
    /// example `cert-manager.io/cluster-issuer`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An Ingress path's `pathType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IngressPathType {
    /// The request path starts with `path`, element by element.
    #[default]
    Prefix,
    /// The request path is `path`.
    Exact,
    /// Whatever the IngressClass makes of it.
    ImplementationSpecific,
}

impl IngressPathType {
    /// The value of the Ingress's `pathType`.
    pub fn as_str(self) -> &'static str {
        match self {
            IngressPathType::Prefix => "Prefix",
            IngressPathType::Exact => "Exact",
            IngressPathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// The receiver's HTTPRoute: one rule matching the path prefix, backed by the receiver Service.
/// Requests reach the receiver with their path unchanged; HubSpot's target URL is
/// `https://<first hostname>/webhooks/hubspot` unless `spec.webhooks.publicUrl` says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverHttpRoute {
    /// The Gateways (or their listeners) the route attaches to. A Gateway in another namespace
    /// must allow routes from this one (`allowedRoutes`).
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<GatewayParentRef>,
    /// Host names the route answers, for example `hooks.example.com`. Empty: those of the
    /// Gateway's listeners, and no public URL is derived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub hostnames: Vec<String>,
    /// Path prefix routed to the receiver: `/webhooks/hubspot` (the default), `/webhooks`, or
    /// `/` to also expose the ingest API (the route then matches `/webhooks` and `/ingest`,
    /// never the receiver's `/metrics` or `/sync/status`).
    #[serde(default = "default_receiver_path")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "'/webhooks/hubspot/'.startsWith(self.endsWith('/') ? self : self + '/')",
        "message": "path must lead to the receiver's webhook path: /, /webhooks or /webhooks/hubspot"
    }]))]
    pub path: String,
    /// Annotations of the HTTPRoute.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A Gateway the receiver's HTTPRoute attaches to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace of the Gateway; this integration's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Gateway listener to attach to; every listener that allows the route when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

fn default_receiver_path() -> String {
    crate::contract::WEBHOOK_PATH.into()
}
