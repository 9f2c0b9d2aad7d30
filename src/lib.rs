//! hubspot-operator: declare a HubSpot integration as Kubernetes resources and keep it running.

pub mod api;
pub mod bench;
pub mod config;
pub mod controller;
pub mod dead_letters;
pub mod dev;
pub mod emulator;
pub mod eventlog;
pub mod hubspot;
pub mod receiver;
pub mod rejected;
pub mod reverse;
pub mod shutdown;
pub mod sync;
pub mod telemetry;
