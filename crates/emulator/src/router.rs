//! The route table: which handler answers each path. HubSpot's CRM surfaces are served under
//! both their versioned (`v3`, `v4`) and date-versioned (`2026-03`) prefixes, and behind the
//! authentication middleware; every call but the admin API's is recorded.

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, patch, post, put};

use crate::error::ApiFailure;
use crate::handlers::objects::{self, batch, merge};
use crate::handlers::timeline::{app_events, custom_events, events, templates};
use crate::handlers::{admin, associations, custom_objects, oauth, owners, pipelines, properties, webhook_settings};
use crate::middleware::{authenticate, record_request};
use crate::shared::Emulator;

pub fn router(emulator: Arc<Emulator>) -> Router {
    let crm = Router::new()
        .nest("/crm/v3/objects", object_routes())
        .nest("/crm/objects/2026-03", object_routes())
        .nest("/crm/v3/properties", property_routes())
        .nest("/crm/properties/2026-03", property_routes())
        .nest("/crm/v3/pipelines", pipeline_routes())
        .nest("/crm/pipelines/2026-03", pipeline_routes())
        .nest("/crm/v3/schemas", schema_routes())
        .nest("/crm/v4", association_routes())
        // HubSpot's SDKs call the list with a trailing slash, its documentation without.
        .route("/crm/v3/owners", get(owners::list_owners))
        .route("/crm/v3/owners/", get(owners::list_owners))
        .route("/crm/v3/owners/{owner_id}", get(owners::get_owner))
        .nest("/crm-object-schemas/v3/schemas", schema_routes())
        .nest("/crm/v3/timeline", timeline_event_routes())
        .nest("/integrators/timeline/v3", timeline_event_routes())
        .nest("/integrators/timeline/v4", app_event_routes())
        .nest("/integrators/timeline/2026-03", app_event_routes())
        .nest("/events/v3", custom_event_routes())
        .route_layer(middleware::from_fn_with_state(emulator.clone(), authenticate));
    Router::new()
        .merge(crm)
        .route("/oauth/v2/private-apps/get/access-token-info", post(oauth::private_app_token_info))
        .nest("/webhooks/v3", webhook_settings_routes())
        .nest("/webhooks/2026-03", webhook_settings_routes())
        .nest("/crm/v3/timeline", timeline_template_routes())
        .nest("/integrators/timeline/v3", timeline_template_routes())
        .route("/oauth/v1/token", post(oauth::token))
        .route("/oauth/v3/token", post(oauth::token))
        .route("/oauth/2026-03/token", post(oauth::token))
        .route("/oauth/v3/token/introspect", post(oauth::introspect))
        .route("/oauth/2026-03/token/introspect", post(oauth::introspect))
        .route("/oauth/v1/access-tokens/{token}", get(oauth::access_token_info))
        .route("/oauth/v1/refresh-tokens/{token}", get(oauth::refresh_token_info).delete(oauth::revoke_refresh_token))
        .fallback(|| async { ApiFailure::route_not_found() })
        .layer(middleware::from_fn_with_state(emulator.clone(), record_request))
        .nest("/_emulator", admin_routes())
        .with_state(emulator)
}

/// CRM objects of a type `{t}`.
fn object_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/{t}", get(objects::list_objects).post(objects::create_object))
        .route("/{t}/{id}", get(objects::get_object).patch(objects::update_object).delete(objects::archive_object))
        .route("/{t}/search", post(objects::search_objects))
        .route("/{t}/merge", post(merge::merge_objects))
        .route("/{t}/batch/read", post(batch::batch_read))
        .route("/{t}/batch/create", post(batch::batch_create))
        .route("/{t}/batch/update", post(batch::batch_update))
        .route("/{t}/batch/upsert", post(batch::batch_upsert))
        .route("/{t}/batch/archive", post(batch::batch_archive))
}

/// Properties and property groups of a type `{t}`.
fn property_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/{t}", get(properties::list_properties).post(properties::create_property))
        .route(
            "/{t}/{name}",
            get(properties::get_property).patch(properties::update_property).delete(properties::archive_property),
        )
        .route("/{t}/batch/read", post(properties::batch_read_properties))
        .route("/{t}/batch/create", post(properties::batch_create_properties))
        .route("/{t}/batch/archive", post(properties::batch_archive_properties))
        .route("/{t}/groups", get(properties::list_groups).post(properties::create_group))
        .route(
            "/{t}/groups/{name}",
            get(properties::get_group).patch(properties::update_group).delete(properties::archive_group),
        )
}

/// Pipelines and their stages of a type `{t}`.
fn pipeline_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/{t}", get(pipelines::list_pipelines).post(pipelines::create_pipeline))
        .route(
            "/{t}/{id}",
            get(pipelines::get_pipeline)
                .put(pipelines::replace_pipeline)
                .patch(pipelines::update_pipeline)
                .delete(pipelines::archive_pipeline),
        )
        .route("/{t}/{id}/stages", get(pipelines::list_stages).post(pipelines::create_stage))
        .route(
            "/{t}/{id}/stages/{stage_id}",
            get(pipelines::get_stage)
                .put(pipelines::replace_stage)
                .patch(pipelines::update_stage)
                .delete(pipelines::archive_stage),
        )
}

/// Custom object schemas.
fn schema_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/", get(custom_objects::list_schemas).post(custom_objects::create_schema))
        .route(
            "/{t}",
            get(custom_objects::get_schema).patch(custom_objects::update_schema).delete(custom_objects::archive_schema),
        )
        .route("/{t}/associations", post(custom_objects::create_association))
        .route("/{t}/associations/{association_id}", delete(custom_objects::archive_association))
}

/// Associations v4.
fn association_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/objects/{from}/{id}/associations/default/{to}/{to_id}", put(associations::associate_default))
        .route(
            "/objects/{from}/{id}/associations/{to}/{to_id}",
            put(associations::associate_labelled).delete(associations::archive_pair),
        )
        .route("/objects/{from}/{id}/associations/{to}", get(associations::list_associations))
        .route("/associations/{from}/{to}/labels", get(associations::list_labels))
        .route("/associations/{from}/{to}/batch/create", post(associations::batch_create))
        .route("/associations/{from}/{to}/batch/associate/default", post(associations::batch_associate_default))
        .route("/associations/{from}/{to}/batch/read", post(associations::batch_read))
        .route("/associations/{from}/{to}/batch/archive", post(associations::batch_archive))
}

/// Timeline event templates (developer API key) for `/crm/v3/timeline` and
/// `/integrators/timeline/v3`.
fn timeline_template_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/{app_id}/event-templates", get(templates::list_templates).post(templates::create_template))
        .route(
            "/{app_id}/event-templates/{template_id}",
            get(templates::get_template).put(templates::update_template).delete(templates::archive_template),
        )
        .route("/{app_id}/event-templates/{template_id}/tokens", post(templates::create_token))
        .route(
            "/{app_id}/event-templates/{template_id}/tokens/{token_name}",
            put(templates::update_token).delete(templates::archive_token),
        )
}

/// Timeline events (bearer token) for `/crm/v3/timeline` and `/integrators/timeline/v3`.
fn timeline_event_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/events", post(events::create_event))
        .route("/events/batch/create", post(events::create_events))
        .route("/events/{template_id}/{event_id}", get(events::get_event))
        .route("/events/{template_id}/{event_id}/detail", get(events::get_event_detail))
        .route("/events/{template_id}/{event_id}/render", get(events::render_event))
}

/// App events (bearer token) for `/integrators/timeline/v4` and `/integrators/timeline/2026-03`.
fn app_event_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/events", post(app_events::send_app_event))
        .route("/events/batch/create", post(app_events::send_app_events))
        .route("/events/{event_type_name}/{event_id}", get(app_events::get_app_event))
}

/// Custom event definitions, occurrences and their reads (bearer token) under `/events/v3`.
fn custom_event_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/event-definitions", get(custom_events::list_definitions).post(custom_events::create_definition))
        .route(
            "/event-definitions/{event_name}",
            get(custom_events::get_definition)
                .patch(custom_events::update_definition)
                .delete(custom_events::delete_definition),
        )
        .route("/event-definitions/{event_name}/property", post(custom_events::create_property))
        .route("/event-definitions/{event_name}/property/{property_name}", delete(custom_events::delete_property))
        .route("/send", post(custom_events::send))
        .route("/send/batch", post(custom_events::send_batch))
        // HubSpot's SDKs call the list with a trailing slash, its documentation without.
        .route("/events", get(custom_events::list_occurrences))
        .route("/events/", get(custom_events::list_occurrences))
        .route("/events/event-types", get(custom_events::list_event_types))
}

/// The webhooks management API (developer API key).
fn webhook_settings_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route(
            "/{app_id}/settings",
            get(webhook_settings::get_settings)
                .put(webhook_settings::put_settings)
                .delete(webhook_settings::delete_settings),
        )
        .route(
            "/{app_id}/subscriptions",
            get(webhook_settings::list_subscriptions).post(webhook_settings::create_subscription),
        )
        .route("/{app_id}/subscriptions/batch/update", post(webhook_settings::batch_update))
        .route(
            "/{app_id}/subscriptions/{id}",
            get(webhook_settings::get_subscription)
                .patch(webhook_settings::patch_subscription)
                .delete(webhook_settings::delete_subscription),
        )
}

/// The admin API under `/_emulator` (no authentication).
fn admin_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/objects/{t}", get(admin::raw_objects).post(admin::create_as_user))
        .route("/objects/{t}/{id}", get(admin::raw_object).patch(admin::update_as_user).delete(admin::archive_as_user))
        .route("/requests", get(admin::list_requests).delete(admin::clear_requests))
        .route("/requests/counts", get(admin::request_counts))
        .route("/webhooks", get(admin::webhook_status))
        .route("/faults", get(admin::show_faults).put(admin::set_faults).delete(admin::clear_faults))
        .route(
            "/faults/standing",
            get(admin::show_standing_faults).put(admin::set_standing_faults).delete(admin::clear_standing_faults),
        )
        .route("/oauth/codes", post(admin::issue_code))
        .route("/oauth/refresh-tokens", post(admin::issue_refresh_token))
        .route("/properties/{t}/{name}/used-by", put(admin::declare_property_uses))
        .route("/owners", get(owners::all_owners).post(owners::add_owner))
        .route("/owners/{owner_id}", patch(owners::update_owner))
        .route("/fixtures", post(admin::load_fixture))
        .route("/reset", post(admin::reset))
        .route("/search", get(admin::show_search).put(admin::set_search))
        .route("/app-event-types", get(admin::list_app_event_types).post(admin::define_app_event_type))
        .route("/timeline/{t}/{id}", get(admin::record_timeline))
        .route("/clock", get(admin::show_clock))
        .route("/clock/advance", post(admin::advance_clock))
}
