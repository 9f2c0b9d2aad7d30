//! HubSpot's endpoints and the emulator's own admin API, one module per family. Handlers check
//! scopes first, then parse, then touch the store under its lock.

pub mod admin;
pub mod associations;
pub mod custom_objects;
pub mod oauth;
pub mod objects;
pub mod owners;
pub mod pipelines;
pub mod properties;
pub mod timeline;
pub mod webhook_settings;
