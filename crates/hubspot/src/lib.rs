//! Everything about talking to HubSpot: the API client with its request budget, the models of
//! HubSpot's JSON, webhook events and their signatures.
//!
//! The bottom layer of the workspace: it uses no other crate of ours. Whoever keeps metrics of
//! its calls implements [`CallObserver`], or embeds the Prometheus families of `metrics`
//! (cargo feature `prometheus`).
//!
//! The client is layered: one transport makes every request (budget, retries, error mapping,
//! observer), and each HubSpot API family (objects, search, associations, properties, timeline,
//! webhooks, OAuth) is a module of calls built on it.

pub mod auth;
pub mod budget;
pub mod client;
pub mod error;
#[cfg(feature = "prometheus")]
pub mod metrics;
pub mod models;
pub mod observer;
pub mod signature;
pub mod webhook;

pub use auth::{OAuthCredentials, Secret, TokenEndpoint, bearer_token, presents_bearer_token};
pub use budget::{RequestBudget, Tier};
pub use client::{ClientSettings, HubSpotClient, IsolatedBatch, isolate_bad_inputs};
pub use error::{ApiError, Error};
pub use models::*;
pub use observer::CallObserver;
pub use signature::SignatureVerifier;
pub use webhook::{DeliveryIdentity, WebhookEvent};
