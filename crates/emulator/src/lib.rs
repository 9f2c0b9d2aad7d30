//! The HubSpot API emulator: a local stand-in for HubSpot that serves the API surfaces the
//! operator uses with HubSpot's real paths, status codes, JSON shapes, headers, paging, batch
//! semantics, scope checks and rate limits, and sends real signed webhook batches when its
//! objects change. Users run it in CI (`hubspot-operator emulator`); `dev` mode embeds it.
//!
//! ```text
//! hubspot-operator emulator --listen 127.0.0.1:8090 --seed 50 --tier free \
//!     --token pat-na1-ci --token readonly=crm.objects.contacts.read \
//!     --webhook-url http://127.0.0.1:8080/webhooks --client-secret ci-secret
//! curl -H 'Authorization: Bearer pat-na1-ci' 'http://127.0.0.1:8090/crm/v3/objects/contacts?limit=5'
//! ```
//!
//! Flags, admin API and fidelity limits for users: `docs/emulator.md`.
//!
//! # HubSpot surfaces
//! - `POST /oauth/v2/private-apps/get/access-token-info` `{"tokenKey"}` → `{userId, hubId,
//!   appId, scopes}`.
//! - OAuth apps (`--oauth-app`): `POST /oauth/v1/token` and `/oauth/v3/token` (grants
//!   `refresh_token`, `authorization_code`, `client_credentials`), `GET
//!   /oauth/v1/access-tokens/{token}`, `GET|DELETE /oauth/v1/refresh-tokens/{token}`, `POST
//!   /oauth/v3/token/introspect`. Access tokens live `--access-token-ttl` seconds on the clock
//!   `/_emulator/clock/advance` moves, then answer 401 `EXPIRED_AUTHENTICATION`; OAuth apps
//!   have their own ten-second window (110) and no daily limit.
//! - Tickets and custom object types (`/crm/v3/schemas`, `handlers/custom_objects.rs`) alongside
//!   the types below; associations v4 (`handlers/associations.rs`); merges
//!   (`handlers/objects/merge.rs`); the webhooks management API with the developer API key
//!   (`handlers/webhook_settings.rs`); timeline templates and events and app events
//!   (`handlers/timeline/`); custom events, a private app's way onto a timeline: definitions at
//!   `/events/v3/event-definitions`, occurrences sent to `/events/v3/send[/batch]` and read from
//!   `/events/v3/events` (`handlers/timeline/custom_events.rs`); `--state FILE` persistence (`persist.rs`); fixtures (`fixtures.rs`,
//!   `--fixtures` and `/_emulator/fixtures`).
//! - CRM objects (`contacts`, `companies`, `deals`) under `/crm/v3/objects/{t}` and
//!   `/crm/objects/2026-03/{t}`: list, create, get/update/archive by id or `?idProperty=`, and
//!   `batch/{read,create,update,upsert,archive}` (at most 100 inputs; reads with
//!   `propertiesWithHistory` at most 50, each value with its timestamp and source). A batch fails as a whole
//!   when one input fails, unless its inputs carry `objectWriteTraceId`: then the good inputs are
//!   written and the others come back as `errors` with HTTP 207.
//! - Search at `.../{t}/search`: filter groups, one sort, `query`, `after`/`limit` (≤200), at
//!   most 10,000 results deep; limited to 5 requests per second per account, counted apart from
//!   the other limits, and its answers carry no rate-limit headers. With `--search-lag-ms` (or
//!   `/_emulator/search`) results show objects as they were that long ago, as HubSpot's index
//!   lags behind writes.
//! - HubSpot's standard properties per type, as data (`schema/standard_properties.json`).
//! - Owners at `GET /crm/v3/owners[/{ownerId}]` (`handlers/owners.rs`; `hubspot_owner_id`
//!   takes an active owner's id) and deal and ticket pipelines with their stages at
//!   `/crm/v3/pipelines/{t}` (`handlers/pipelines.rs`; stage values are checked against the
//!   record's pipeline on every write).
//! - Properties under `/crm/v3/properties/{t}` and `/crm/properties/2026-03/{t}`: list, get,
//!   create, update, archive (refused while a schema, a timeline token or a declared workflow
//!   uses the property); groups at `.../{t}/groups[/{name}]` (list, create, get, update,
//!   archive once no live property is in the group).
//!
//! Every call needs `Authorization: Bearer <token>` (except token introspection, which names
//! its token in the body) and the scopes HubSpot requires. Each configured token is its own
//! private app: the first has `--app-id`, the next ones the following ids; the ten-second
//! window is counted per app, the daily limit for the whole account (reset at midnight UTC).
//!
//! # Webhooks
//! Every change becomes events (`{contact,company,deal}.creation`, one `.propertyChange` per
//! changed property, `.deletion`; only the subscribed ones when `--subscription` is given);
//! API writes carry `changeSource: INTEGRATION` and `sourceId`
//! = the writing app's id, admin writes `CRM_UI` and `sourceId: userId:N`. With `--webhook-url`
//! set, events are sent in batches of at most 100 after a short flush delay, signed (v1 or v2
//! in `X-HubSpot-Signature`, v3 in `X-HubSpot-Signature-v3`), at most 10 requests in flight,
//! 5 s timeout; failures (non-2xx, timeout, connection error) are retried with growing delays
//! (1 s, 2 s, 4 s, ... at most 30 s) up to 10 attempts, then logged as abandoned.
//!
//! # Admin API (no authentication)
//! - `POST /_emulator/objects/{t}` `{"properties":{...}}`: create as a HubSpot user (201).
//! - `PATCH /_emulator/objects/{t}/{id}` `{"properties":{...}}`: update as a user.
//! - `DELETE /_emulator/objects/{t}/{id}`: archive as a user (204; 404 when not live).
//! - `GET /_emulator/objects/{t}/{id}`: the stored object with every property, archived or not.
//! - `GET /_emulator/objects/{t}`: every stored object of the type, archived ones included.
//! - `GET /_emulator/requests`: the API calls received, oldest first (the last 10,000), as
//!   `[{method, path, query, body, status}]`; tokens are never recorded. `DELETE` clears it.
//! - `GET /_emulator/requests/counts`: every API call since the start (or the last `DELETE`),
//!   `{calls: [{method, path, status, count}], rateLimited, injectedFaults}`: the 429s the rate
//!   limits answered apart from the injected faults.
//! - `PUT /_emulator/faults` `{status?, policyName?, delayMs?, count?, pathPrefix?,
//!   dropConnection?}`: the next `count` authenticated API calls (all until cleared when `count`
//!   is absent) whose path starts with `pathPrefix` wait `delayMs`, then answer `status` (429
//!   with HubSpot's rate-limit body and `policyName` TEN_SECONDLY_ROLLING or DAILY, 423, or a
//!   5xx), get their connection closed with no answer (`dropConnection`), or are served late.
//!   `GET` shows the plan (`null` when none), `DELETE` clears it.
//! - `GET|POST /_emulator/owners`, `PATCH /_emulator/owners/{ownerId}`: owners as HubSpot
//!   users are added, changed and deactivated.
//! - `POST /_emulator/fixtures` (YAML or JSON), `POST /_emulator/reset`, `GET|PUT
//!   /_emulator/search` `{indexingLagMs}`, `GET|POST /_emulator/app-event-types`.
//! - `GET /_emulator/timeline/{t}/{id}`: the record's timeline events and app events, newest
//!   first, each with its `source` and its `header` and `detail` rendered from its template.
//! - `POST /_emulator/oauth/codes` `{clientId, redirectUri?}` → `{code}`; `POST
//!   /_emulator/oauth/refresh-tokens` `{clientId, refreshToken?}` → `{refreshToken}`.
//! - `POST /_emulator/clock/advance` `{"seconds"}` moves token expiry's clock; `GET
//!   /_emulator/clock` shows it.
//! - `GET /_emulator/webhooks`: `{pending, delivered, failedAttempts, abandoned, log}`;
//!   `pending` counts events not yet acknowledged (queued, in flight or awaiting a retry),
//!   `delivered` acknowledged batch deliveries (duplicates included), `log` one entry per
//!   attempt `{batchSize, attemptNumber, status}` where `status` is the HTTP status, `"timeout"`
//!   or `"error"`.
//!
//! # Modules
//! Imports point one way, from the route table down to time and errors: `router` →
//! `middleware` and `handlers` (one module per family of endpoints) → `api` (what every
//! endpoint shares) → `shared` (the state handlers share) → `store`, `auth`, `webhooks`,
//! `request_log` → `schema`, `config`, `faults` → `error`, `clock`. `search`, `fixtures` and
//! `seed` work on the store; `persist` saves what `shared` holds; this file starts and stops
//! the server.

mod api;
mod auth;
mod clock;
mod config;
mod error;
mod faults;
mod fixtures;
mod handlers;
mod middleware;
mod persist;
mod request_log;
mod router;
mod schema;
mod search;
mod seed;
mod shared;
mod store;
mod webhooks;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use auth::oauth::OAuthState;
use shared::Emulator;
use store::{EventSink, Store, StoreSnapshot};
use webhooks::settings::AppWebhooks;
use webhooks::{DeliverySettings, DeliveryStats, EventQueue};

pub use auth::all_scopes;
pub use config::{
    DEFAULT_ACCESS_TOKEN_TTL_SECS, DEFAULT_DEVELOPER_API_KEY, DEFAULT_TOKEN, EmulatorArgs, EmulatorConfig,
    LegacySignatureVersion, OAuthApp, RefreshTokenGrant, RetrySchedule, Subscription, TokenGrant,
};
pub use faults::FaultPlan;

/// An emulator serving on a listener, with its webhook delivery running.
pub struct RunningEmulator {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    delivery: Option<JoinHandle<()>>,
    saver: Option<persist::Saver>,
}

impl RunningEmulator {
    /// Serves the emulator on `listener` until `shutdown` (or drop).
    pub async fn start(config: EmulatorConfig, listener: TcpListener) -> anyhow::Result<RunningEmulator> {
        let addr = listener.local_addr()?;
        let tokens = config.effective_tokens();
        // OAuth apps' ids follow the private apps'.
        let first_oauth_app_id = config.app_id + tokens.len() as u64;
        let oauth = OAuthState::new(
            &config.oauth_apps,
            &config.refresh_tokens,
            config.access_token_ttl_secs,
            first_oauth_app_id,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        if let Some(url) = &config.webhook_url {
            reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("--webhook-url {url:?} is not a URL: {e}"))?;
        }
        let saved = match &config.state_file {
            Some(path) => persist::load(path)?,
            None => None,
        };
        let stats = Arc::new(DeliveryStats::default());
        let app_webhooks = Arc::new(Mutex::new(initial_webhooks(&config, saved.as_ref().map(|s| &s.webhooks))));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = EventSink {
            queue: EventQueue::new(tx, stats.clone()),
            portal_id: config.portal_id,
            app_id: config.app_id,
            webhooks: app_webhooks.clone(),
        };
        let settings = DeliverySettings::from_config(&config);
        let delivery = Some(tokio::spawn(webhooks::run(settings, app_webhooks.clone(), rx, stats.clone())));
        let mut store = Store::new(config.portal_id, Some(sink));
        fill_store(&mut store, &config, saved.map(|s| s.store))?;
        let config_state_file = config.state_file.clone();
        let emulator = Arc::new(Emulator {
            tokens: auth::Tokens::new(&tokens, config.app_id),
            oauth: Mutex::new(oauth),
            clock: clock::Clock::default(),
            limiter: Mutex::new(auth::RateLimiter::new(config.tier)),
            search_limiter: Mutex::new(auth::SearchLimiter::default()),
            store: Mutex::new(store),
            requests: Mutex::new(request_log::RequestLog::default()),
            faults: Mutex::new(faults::Faults::with_standing(config.faults.clone())),
            webhooks: stats,
            app_webhooks,
            search_lag_ms: AtomicU64::new(config.search_lag_ms),
            config,
        });
        let saver = config_state_file.map(|path| persist::Saver::start(emulator.clone(), path));
        let (stop, server) = serve(listener, router::router(emulator));
        Ok(RunningEmulator { addr, stop: Some(stop), server: Some(server), delivery, saver })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and delivering webhooks.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(delivery) = self.delivery.take() {
            delivery.abort();
            let _ = delivery.await;
        }
        if let Some(mut server) = self.server.take() {
            // Graceful shutdown waits for open connections, which keep-alive clients may hold
            // open indefinitely: give them a moment, then stop anyway.
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut server).await.is_err() {
                server.abort();
                let _ = server.await;
            }
        }
        if let Some(saver) = self.saver.take() {
            saver.finish().await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(delivery) = self.delivery.take() {
            delivery.abort();
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// `hubspot-operator emulator`: serves on `--listen` until `shutdown` resolves.
pub async fn run_cli(args: EmulatorArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(args.listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let config = EmulatorConfig::from(args);
    let token_count = config.effective_tokens().len();
    let webhooks = config.webhook_url.clone();
    let emulator = RunningEmulator::start(config, listener).await?;
    tracing::info!(
        url = %emulator.base_url(),
        tokens = token_count,
        webhook_url = webhooks.as_deref().unwrap_or("(none)"),
        "HubSpot emulator listening"
    );
    shutdown.await;
    tracing::info!("HubSpot emulator stopping");
    emulator.shutdown().await;
    Ok(())
}

/// The app's webhook settings at start. The flags give the initial ones, which the management
/// API changes; saved settings win, except that an explicit --webhook-url names the target.
fn initial_webhooks(config: &EmulatorConfig, saved: Option<&AppWebhooks>) -> AppWebhooks {
    match saved {
        Some(saved) => {
            let mut webhooks = saved.clone();
            if config.webhook_url.is_some() {
                webhooks.target_url = config.webhook_url.clone();
            }
            webhooks
        }
        None => AppWebhooks::new(config.webhook_url.clone(), &config.subscriptions, clock::now_ms()),
    }
}

/// The data the store starts with: the saved state, or else the seeded contacts and owners and
/// the fixture files.
fn fill_store(store: &mut Store, config: &EmulatorConfig, saved: Option<StoreSnapshot>) -> anyhow::Result<()> {
    if let Some(saved) = saved {
        store.restore(saved);
        return Ok(());
    }
    seed::seed_contacts(store, config.seed);
    if config.seed > 0 {
        seed::seed_owners(store);
    }
    for path in &config.fixtures {
        let bytes =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read the fixture {}: {e}", path.display()))?;
        fixtures::parse(&bytes)
            .and_then(|document| fixtures::load(store, document))
            .map_err(|e| anyhow::anyhow!("fixture {}: {}", path.display(), e.message()))?;
    }
    Ok(())
}

/// Serves `app` on `listener` until the returned sender fires (or is dropped).
fn serve(listener: TcpListener, app: Router) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "emulator server failed");
        }
    });
    (stop, server)
}
