//! Reconcilers of the operator: one per kind, each going dereference (read Secrets and related
//! objects) → client-free build of desired objects and status → apply → status patch.
//!
//! The deciding parts are pure and public ([`resources`], [`status`], [`secrets`]) so `dev` mode
//! can run them on manifests without a cluster.
//!
//! Uses `model` for the resources and the receiver config it renders, `hubspot` for HubSpot's
//! management APIs, and `receiver` for its metrics.

mod args;
pub mod catalogue;
mod context;
mod error;
mod events;
pub mod integration;
pub mod integration_cache;
mod kube_api;
pub mod leader;
pub mod mapping;
mod metrics;
pub mod property;
pub mod receiver_reports;
pub mod resources;
mod run;
pub mod secrets;
pub mod status;
pub mod timeline;
pub mod trace_env;
mod watches;
pub mod webhooks;

#[cfg(test)]
mod fixtures;

use std::time::Duration;

pub use args::ControllerArgs;
pub use context::{Context, error_policy};
pub use error::Error;
pub use events::EventToPublish;
pub use metrics::{ControllerLabels, ControllerMetrics, NameLabels, ObjectLabels, ResultLabels, instrumented};
pub use run::run;
pub use watches::OfIntegration;

/// Field manager of every server-side apply and status patch.
pub const FIELD_MANAGER: &str = "hubspot-operator";
/// Receiver image used when an integration does not name one.
pub const DEFAULT_RECEIVER_IMAGE: &str =
    concat!("ghcr.io/hubspot-operator/hubspot-operator:", env!("CARGO_PKG_VERSION"));
/// How often a healthy object is checked again (HubSpot changes are not watched).
pub const HEALTHY_REQUEUE: Duration = Duration::from_secs(5 * 60);
/// How soon an object that is not ready is checked again.
pub const UNHEALTHY_REQUEUE: Duration = Duration::from_secs(30);

/// How often a ready mapping reads its receivers' sync reports again. The HubSpot property
/// listing it also checks is cached for [`HEALTHY_REQUEUE`], so this costs no HubSpot calls.
pub const SYNC_REFRESH: Duration = Duration::from_secs(60);
/// Reconciles of one controller that run at once, unless told otherwise. Each waits mostly on
/// HubSpot, whose request budget (about 19 calls per second on Professional) sets the pace
/// anyway; more at once would only hold more answers in memory while they wait for it.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 10;
