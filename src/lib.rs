//! hubspot-operator's command line beyond the libraries it runs: `dev` mode, the benchmarks,
//! the dead-letter and rejected-record tools, logging and trace export, and graceful shutdown.
//!
//! The layers below, each a crate of this workspace that uses only those under it:
//! `operator` (the controller) → `receiver` (the data plane) → `model` (resources, receiver
//! config, wire contract) → `hubspot` (the API client); `emulator` uses `hubspot` only, and
//! `test-support` (a fake Kubernetes API server) nothing of ours.

pub mod bench;
pub mod dead_letters;
pub mod dev;
pub mod rejected;
pub mod shutdown;
pub mod telemetry;
