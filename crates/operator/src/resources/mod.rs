//! Pure desired-state builders: the receiver config an integration renders to, and the
//! Secret, StatefulSet, Service, PodDisruptionBudget, NetworkPolicy and optional Ingress or
//! HTTPRoute that run and expose it. No I/O here; the reconciler applies the results.

mod config;
mod exposure;
mod files;
mod names;
mod network;
mod secret_refs;
mod statefulset;

#[cfg(test)]
mod tests;

pub use config::*;
pub use exposure::*;
pub use files::*;
pub use names::*;
pub use network::*;
pub use secret_refs::*;
pub use statefulset::*;

/// Where the receiver keeps its event log and file destinations.
pub const DATA_DIR: &str = "/var/lib/hubspot-operator";
/// Directory the config Secret is mounted at.
pub const CONFIG_DIR: &str = "/etc/hubspot-operator";
/// Key of the rendered config in the config Secret.
pub const CONFIG_KEY: &str = "config.yaml";
/// Port the receiver listens on inside the pod for webhooks and the ingest API (named `http`).
pub const RECEIVER_PORT: u16 = 8080;
/// Port of the receiver's `/metrics` and `/sync/status`, inside the pod and on the receiver
/// Service (named `metrics`). The Ingress and HTTPRoute never route it.
pub const STATUS_PORT: u16 = 8081;
/// Port of the receiver Service, which its Ingress and HTTPRoute send requests to.
pub const RECEIVER_SERVICE_PORT: i32 = 80;
/// Port of the admin API inside the pod, and of the receiver Service when it is exposed. It is
/// the port of the default loopback address too, so `kubectl port-forward <pod> 8082` and the
/// admin CLI's default reach it either way.
pub const ADMIN_PORT: u16 = 8082;
