//! Timeline events, app events and custom events.
//!
//! - Timeline v3, for apps with event templates: templates and their tokens under
//!   `{prefix}/{appId}/event-templates[/{id}[/tokens[/{name}]]]`, managed with the developer
//!   API key (`?hapikey=`); events under `{prefix}/events` (create, `batch/create`, read,
//!   `detail`, `render`) with a bearer token holding `timeline` or the template's object type
//!   scope. `{prefix}` is `/crm/v3/timeline` (HubSpot's reference) or
//!   `/integrators/timeline/v3` (the path HubSpot's SDKs call).
//! - App events, the developer platform's successor: `POST /integrators/timeline/v4/events`
//!   (and the date-versioned `/integrators/timeline/2026-03/events`), `.../events/batch/create`,
//!   with the `timeline` scope. Their event types are defined in a project's
//!   `app-event` `*-hsmeta.json` files, which no API creates: the emulator takes them through
//!   `POST /_emulator/app-event-types` or a fixture file.
//!
//! - Custom (behavioral) events, a private app's way onto a record's timeline: definitions
//!   under `/events/v3/event-definitions`, occurrences sent to `/events/v3/send[/batch]` and
//!   read from `/events/v3/events` (`custom_events`).
//!
//! Events are immutable: a second event with the same id is refused with 409. A token with an
//! `objectPropertyName` also writes its value to that property of the record, as an update by
//! the calling app (webhooks follow). An event for a contact named by `email` creates the
//! contact when none has that email, as HubSpot does.
//!
//! Templates are in `templates`, events in `events`, app events in `app_events`; what events
//! and app events share (the record they are about, batches) in `event_input`.

pub mod app_events;
pub mod custom_events;
mod event_input;
pub mod events;
pub mod templates;
