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
//! - Tickets and custom object types (`/crm/v3/schemas`, `custom_objects.rs`) alongside the
//!   types below; associations v4 (`associations.rs`); merges (`merge.rs`); the webhooks
//!   management API with the developer API key (`webhook_settings.rs`); timeline templates and
//!   events and app events (`timeline.rs`); `--state FILE` persistence (`persist.rs`);
//!   fixtures (`fixtures.rs`, `--fixtures` and `/_emulator/fixtures`).
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
//! - `POST /_emulator/fixtures` (YAML or JSON), `POST /_emulator/reset`, `GET|PUT
//!   /_emulator/search` `{indexingLagMs}`, `GET|POST /_emulator/app-event-types`.
//! - `POST /_emulator/oauth/codes` `{clientId, redirectUri?}` → `{code}`; `POST
//!   /_emulator/oauth/refresh-tokens` `{clientId, refreshToken?}` → `{refreshToken}`.
//! - `POST /_emulator/clock/advance` `{"seconds"}` moves token expiry's clock; `GET
//!   /_emulator/clock` shows it.
//! - `GET /_emulator/webhooks`: `{pending, delivered, failedAttempts, abandoned, log}`;
//!   `pending` counts events not yet acknowledged (queued, in flight or awaiting a retry),
//!   `delivered` acknowledged batch deliveries (duplicates included), `log` one entry per
//!   attempt `{batchSize, attemptNumber, status}` where `status` is the HTTP status, `"timeout"`
//!   or `"error"`.

mod admin;
mod associations;
mod auth;
mod clock;
mod custom_objects;
mod error;
mod faults;
mod fixtures;
mod merge;
mod oauth;
mod persist;
mod routes;
mod schema;
mod search;
mod seed;
mod state;
mod timeline;
mod webhook_settings;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use hubspot::Tier;

pub use auth::all_scopes;
pub use faults::FaultPlan;
pub use oauth::{DEFAULT_ACCESS_TOKEN_TTL_SECS, OAuthApp, RefreshTokenGrant};

/// A token the emulator accepts: `VALUE` (every scope) or `VALUE=scope1,scope2`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token: String,
    /// `None`: every scope.
    pub scopes: Option<Vec<String>>,
}

/// Tokens and secrets never reach logs: Debug shows only their length.
struct Redacted<'a>(&'a str);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} characters>", self.0.len())
    }
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant").field("token", &Redacted(&self.token)).field("scopes", &self.scopes).finish()
    }
}

impl FromStr for TokenGrant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (token, scopes) = match s.split_once('=') {
            Some((token, scopes)) => {
                (token, Some(scopes.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()))
            }
            None => (s, None),
        };
        if token.trim().is_empty() {
            return Err("a token must not be empty".into());
        }
        Ok(TokenGrant { token: token.trim().to_string(), scopes })
    }
}

/// A webhook subscription: `contact.creation`, `deal.propertyChange`, or one property's
/// changes, `contact.propertyChange:email`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub subscription_type: String,
    /// For `propertyChange`: only this property's changes.
    pub property_name: Option<String>,
}

impl Subscription {
    /// Whether an event of this type (about this property) is subscribed to.
    pub fn covers(&self, subscription_type: &str, property: Option<&str>) -> bool {
        self.subscription_type == subscription_type
            && self.property_name.as_deref().is_none_or(|wanted| property == Some(wanted))
    }
}

impl FromStr for Subscription {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (subscription_type, property_name) = match s.split_once(':') {
            Some((t, p)) => (t.trim(), Some(p.trim().to_string())),
            None => (s.trim(), None),
        };
        // `object.*`: the generic events, which custom objects' changes come as. HubSpot takes
        // subscriptions to restores and contacts' privacy deletions too, which the emulator
        // never has occasion to send.
        let known = ["contact", "company", "deal", "ticket", "object"]
            .iter()
            .flat_map(|o| {
                ["creation", "deletion", "propertyChange", "associationChange", "merge", "restore"]
                    .map(|a| format!("{o}.{a}"))
            })
            .chain(["contact.privacyDeletion".to_string()])
            .any(|t| t == subscription_type);
        if !known {
            return Err(format!(
                "unknown subscription type {subscription_type:?}: expected {{contact,company,deal,ticket,object}}.{{creation,deletion,propertyChange,associationChange,merge,restore}} or contact.privacyDeletion"
            ));
        }
        if property_name.is_some() && !subscription_type.ends_with(".propertyChange") {
            return Err("only propertyChange subscriptions name a property".into());
        }
        if property_name.as_deref() == Some("") {
            return Err("the property name after ':' must not be empty".into());
        }
        Ok(Subscription { subscription_type: subscription_type.to_string(), property_name })
    }
}

/// How far apart webhook retries are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrySchedule {
    /// 1 s, 2 s, 4 s, ... at most 30 s: every attempt within about 4 minutes.
    #[default]
    Compressed,
    /// HubSpot's: 10 attempts over 24 hours.
    Realtime,
}

/// Which legacy scheme goes in `X-HubSpot-Signature`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LegacySignatureVersion {
    /// hex(sha256(secret + body)).
    #[default]
    V1,
    /// hex(sha256(secret + method + URL + body)).
    V2,
}

/// Runs a local HubSpot API emulator.
#[derive(clap::Args, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090", env = "EMULATOR_LISTEN")]
    pub listen: SocketAddr,
    /// An accepted bearer token: `VALUE` grants every scope, `VALUE=scope1,scope2` only those.
    /// Repeatable; each token is its own private app (app ids counting up from --app-id).
    /// Default: one token `emulator-token` with every scope.
    #[arg(long = "token", value_name = "VALUE[=SCOPES]")]
    pub tokens: Vec<TokenGrant>,
    /// Where webhook batches are POSTed; without it no webhooks are sent.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The app's client secret, which signs webhook requests.
    #[arg(long, default_value = "emulator-client-secret", env = "EMULATOR_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// Portal (hub) id reported by introspection and in webhook events.
    #[arg(long, default_value_t = 62515)]
    pub portal_id: u64,
    /// App id of the first token, reported in webhook events.
    #[arg(long, default_value_t = 54321)]
    pub app_id: u64,
    /// Number of realistic contacts to create at start (deterministic; no webhooks for them).
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Subscription tier, which sizes the rate limits: free, starter, professional, enterprise, addon.
    #[arg(long, default_value = "professional")]
    pub tier: Tier,
    /// Probability (0.0 to 1.0) that a delivered webhook batch is delivered a second time.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub duplicate_rate: f64,
    /// Shuffle events inside each webhook batch and let batches overtake each other.
    #[arg(long)]
    pub reorder: bool,
    /// Which scheme goes in X-HubSpot-Signature (v3 is always sent as well).
    #[arg(long, value_enum, default_value = "v1")]
    pub legacy_signature_version: LegacySignatureVersion,
    /// A webhook subscription, as in the app's settings: `contact.creation`, `deal.deletion`,
    /// `company.propertyChange` or one property's changes (`contact.propertyChange:email`).
    /// Repeatable. Default: every event.
    #[arg(long = "subscription", value_name = "TYPE[:PROPERTY]")]
    pub subscriptions: Vec<Subscription>,
    /// An OAuth (public) app installed in the account: `CLIENT_ID:CLIENT_SECRET` grants every
    /// scope, `CLIENT_ID:CLIENT_SECRET=scope1,scope2` only those. Repeatable; app ids follow
    /// the private apps' (see --token).
    #[arg(long = "oauth-app", value_name = "CLIENT_ID:CLIENT_SECRET[=SCOPES]")]
    pub oauth_apps: Vec<OAuthApp>,
    /// A refresh token valid from the start: `REFRESH_TOKEN=CLIENT_ID`. Repeatable.
    #[arg(long = "refresh-token", value_name = "REFRESH_TOKEN=CLIENT_ID")]
    pub refresh_tokens: Vec<RefreshTokenGrant>,
    /// Lifetime of issued OAuth access tokens, in seconds (HubSpot's: 30 minutes).
    #[arg(long, default_value_t = DEFAULT_ACCESS_TOKEN_TTL_SECS, value_name = "SECONDS")]
    pub access_token_ttl: u64,
    /// The developer API key (`?hapikey=`) the webhooks management API accepts.
    #[arg(
        long,
        default_value = DEFAULT_DEVELOPER_API_KEY,
        env = "EMULATOR_DEVELOPER_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub developer_api_key: String,
    /// Keep the emulator's data in this file: loaded at start (when it exists), saved shortly
    /// after each change and at shutdown. `--seed` applies only when the file does not exist yet.
    #[arg(long = "state", value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Load this fixture file (YAML or JSON: property groups, properties, objects,
    /// associations, app event types) at start, without webhooks. Repeatable.
    #[arg(long = "fixtures", value_name = "FILE")]
    pub fixtures: Vec<PathBuf>,
    /// How long a write takes to show in search results (HubSpot's indexing lag), in
    /// milliseconds; `/_emulator/search` changes it at runtime.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub search_lag_ms: u64,
    /// Webhook retry timing: `compressed` (1 s doubling to 30 s, about 4 minutes in all) or
    /// `realtime` (HubSpot's: 10 attempts spread over 24 hours).
    #[arg(long, value_enum, default_value = "compressed")]
    pub webhook_retry_schedule: RetrySchedule,
    /// A share of API calls (0 to 1) answered with a 5xx status, as HubSpot under load:
    /// `0.05` for 5% 503s, `0.05:502` for another status.
    #[arg(long = "fault-5xx-rate", value_name = "P[:STATUS]", value_parser = parse_server_errors)]
    pub fault_server_errors: Option<FaultPlan>,
    /// Every API call answered this many milliseconds late.
    #[arg(long, value_name = "MS")]
    pub fault_latency_ms: Option<u64>,
    /// A share of API calls (0 to 1) whose connection is closed with no answer.
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub fault_drop_rate: Option<f64>,
    /// 429 storms: every EVERY seconds, LASTING seconds in which every call answers 429
    /// `TEN_SECONDLY_ROLLING` (`60:5`).
    #[arg(long = "fault-429-storm", value_name = "EVERY:LASTING", value_parser = parse_storm)]
    pub fault_rate_limit_storms: Option<FaultPlan>,
}

fn parse_server_errors(s: &str) -> Result<FaultPlan, String> {
    let (rate, status) = s.split_once(':').unwrap_or((s, "503"));
    let status: u16 = status.parse().map_err(|_| format!("{status:?} is not a status code"))?;
    let plan = FaultPlan::server_errors(parse_probability(rate)?, status);
    plan.validate().map_err(|e| e.message().to_string())?;
    Ok(plan)
}

fn parse_storm(s: &str) -> Result<FaultPlan, String> {
    let seconds = |v: &str| v.trim().parse::<u64>().map_err(|_| format!("{v:?} is not a number of seconds"));
    let (every, lasting) = s.split_once(':').ok_or("expected EVERY:LASTING in seconds, such as 60:5")?;
    let plan = FaultPlan::rate_limit_storms(
        std::time::Duration::from_secs(seconds(every)?),
        std::time::Duration::from_secs(seconds(lasting)?),
    );
    plan.validate().map_err(|e| e.message().to_string())?;
    Ok(plan)
}

fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&p) { Ok(p) } else { Err(format!("{p} is not between 0.0 and 1.0")) }
}

/// Settings of one emulator.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Accepted tokens; when empty, `emulator-token` with every scope.
    pub tokens: Vec<TokenGrant>,
    pub webhook_url: Option<String>,
    pub client_secret: String,
    pub portal_id: u64,
    pub app_id: u64,
    pub seed: u32,
    pub tier: Tier,
    pub duplicate_rate: f64,
    pub reorder: bool,
    pub legacy_signature_version: LegacySignatureVersion,
    /// Webhook subscriptions; empty: every event.
    pub subscriptions: Vec<Subscription>,
    pub oauth_apps: Vec<OAuthApp>,
    /// Refresh tokens valid from the start.
    pub refresh_tokens: Vec<RefreshTokenGrant>,
    pub access_token_ttl_secs: u64,
    /// The developer API key of the webhooks management API.
    pub developer_api_key: String,
    /// Where the data is kept across restarts; in memory only when absent.
    pub state_file: Option<PathBuf>,
    /// Fixture files loaded at start (after `--state`, not when a saved state was loaded).
    pub fixtures: Vec<PathBuf>,
    /// Search indexing lag, in milliseconds.
    pub search_lag_ms: u64,
    pub webhook_retry_schedule: RetrySchedule,
    /// Standing faults, from the `--fault-*` flags.
    pub faults: Vec<FaultPlan>,
}

/// The developer API key accepted when none is configured.
pub const DEFAULT_DEVELOPER_API_KEY: &str = "emulator-developer-api-key";

/// The token used when none is configured.
pub const DEFAULT_TOKEN: &str = "emulator-token";

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            tokens: vec![],
            webhook_url: None,
            client_secret: "emulator-client-secret".into(),
            portal_id: 62515,
            app_id: 54321,
            seed: 0,
            tier: Tier::Professional,
            duplicate_rate: 0.0,
            reorder: false,
            legacy_signature_version: LegacySignatureVersion::V1,
            subscriptions: vec![],
            oauth_apps: vec![],
            refresh_tokens: vec![],
            access_token_ttl_secs: DEFAULT_ACCESS_TOKEN_TTL_SECS,
            developer_api_key: DEFAULT_DEVELOPER_API_KEY.into(),
            state_file: None,
            fixtures: vec![],
            search_lag_ms: 0,
            webhook_retry_schedule: RetrySchedule::Compressed,
            faults: vec![],
        }
    }
}

impl std::fmt::Debug for EmulatorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorArgs")
            .field("listen", &self.listen)
            .field("config", &EmulatorConfig::from(self.clone()))
            .finish()
    }
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("tokens", &self.tokens)
            .field("webhook_url", &self.webhook_url)
            .field("client_secret", &Redacted(&self.client_secret))
            .field("portal_id", &self.portal_id)
            .field("app_id", &self.app_id)
            .field("seed", &self.seed)
            .field("tier", &self.tier)
            .field("duplicate_rate", &self.duplicate_rate)
            .field("reorder", &self.reorder)
            .field("legacy_signature_version", &self.legacy_signature_version)
            .field("subscriptions", &self.subscriptions)
            .field("oauth_apps", &self.oauth_apps)
            .field("refresh_tokens", &self.refresh_tokens)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("developer_api_key", &Redacted(&self.developer_api_key))
            .field("state_file", &self.state_file)
            .field("fixtures", &self.fixtures)
            .field("search_lag_ms", &self.search_lag_ms)
            .field("webhook_retry_schedule", &self.webhook_retry_schedule)
            .field("faults", &self.faults)
            .finish()
    }
}

impl From<EmulatorArgs> for EmulatorConfig {
    fn from(a: EmulatorArgs) -> Self {
        Self {
            tokens: a.tokens,
            webhook_url: a.webhook_url,
            client_secret: a.client_secret,
            portal_id: a.portal_id,
            app_id: a.app_id,
            seed: a.seed,
            tier: a.tier,
            duplicate_rate: a.duplicate_rate,
            reorder: a.reorder,
            legacy_signature_version: a.legacy_signature_version,
            subscriptions: a.subscriptions,
            oauth_apps: a.oauth_apps,
            refresh_tokens: a.refresh_tokens,
            access_token_ttl_secs: a.access_token_ttl,
            developer_api_key: a.developer_api_key,
            state_file: a.state_file,
            fixtures: a.fixtures,
            search_lag_ms: a.search_lag_ms,
            webhook_retry_schedule: a.webhook_retry_schedule,
            faults: [
                a.fault_server_errors,
                a.fault_latency_ms.map(|ms| FaultPlan::latency(std::time::Duration::from_millis(ms))),
                a.fault_drop_rate.map(FaultPlan::dropped_connections),
                a.fault_rate_limit_storms,
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

impl EmulatorConfig {
    fn effective_tokens(&self) -> Vec<TokenGrant> {
        if self.tokens.is_empty() {
            vec![TokenGrant { token: DEFAULT_TOKEN.into(), scopes: None }]
        } else {
            self.tokens.clone()
        }
    }
}

/// Everything the handlers share.
pub(crate) struct Emulator {
    pub config: EmulatorConfig,
    pub store: Mutex<state::Store>,
    pub tokens: auth::Tokens,
    pub limiter: Mutex<auth::RateLimiter>,
    pub search_limiter: Mutex<auth::SearchLimiter>,
    pub requests: Mutex<admin::RequestLog>,
    pub faults: Mutex<faults::Faults>,
    pub webhooks: Arc<webhooks::DeliveryStats>,
    pub oauth: Mutex<oauth::OAuthState>,
    /// Time as token expiry sees it; `/_emulator/clock/advance` moves it.
    pub clock: oauth::Clock,
    /// The app's webhook settings and subscriptions (`/webhooks/v3/{appId}/...`).
    pub app_webhooks: webhook_settings::SharedWebhooks,
    /// Search indexing lag in milliseconds; `/_emulator/search` changes it.
    pub search_lag_ms: AtomicU64,
}

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
        let oauth = oauth::OAuthState::new(
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
        let stats = Arc::new(webhooks::DeliveryStats::default());
        // The flags are the app's initial webhook settings; the management API changes them.
        // Saved settings win, except that an explicit --webhook-url names the target.
        let initial_webhooks = match &saved {
            Some(saved) => {
                let mut webhooks = saved.webhooks.clone();
                if config.webhook_url.is_some() {
                    webhooks.target_url = config.webhook_url.clone();
                }
                webhooks
            }
            None => {
                webhook_settings::AppWebhooks::new(config.webhook_url.clone(), &config.subscriptions, clock::now_ms())
            }
        };
        let app_webhooks = Arc::new(Mutex::new(initial_webhooks));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = state::EventSink {
            queue: webhooks::EventQueue::new(tx, stats.clone()),
            portal_id: config.portal_id,
            app_id: config.app_id,
            webhooks: app_webhooks.clone(),
        };
        let settings = webhooks::DeliverySettings::from_config(&config);
        let delivery = Some(tokio::spawn(webhooks::run(settings, app_webhooks.clone(), rx, stats.clone())));
        let mut store = state::Store::new(config.portal_id, Some(sink));
        match saved {
            Some(saved) => store.restore(saved.store),
            None => {
                seed::seed_contacts(&mut store, config.seed);
                for path in &config.fixtures {
                    let bytes = std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("cannot read the fixture {}: {e}", path.display()))?;
                    fixtures::parse(&bytes)
                        .and_then(|document| fixtures::load(&mut store, document))
                        .map_err(|e| anyhow::anyhow!("fixture {}: {}", path.display(), e.message()))?;
                }
            }
        }
        let config_state_file = config.state_file.clone();
        let emulator = Arc::new(Emulator {
            tokens: auth::Tokens::new(&tokens, config.app_id),
            oauth: Mutex::new(oauth),
            clock: oauth::Clock::default(),
            limiter: Mutex::new(auth::RateLimiter::new(config.tier)),
            search_limiter: Mutex::new(auth::SearchLimiter::default()),
            store: Mutex::new(store),
            requests: Mutex::new(admin::RequestLog::default()),
            faults: Mutex::new(faults::Faults::with_standing(config.faults.clone())),
            webhooks: stats,
            app_webhooks,
            search_lag_ms: AtomicU64::new(config.search_lag_ms),
            config,
        });
        let saver = config_state_file.map(|path| persist::Saver::start(emulator.clone(), path));
        let app = routes::router(emulator);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_grants_parse() {
        assert_eq!("abc".parse::<TokenGrant>().unwrap(), TokenGrant { token: "abc".into(), scopes: None });
        assert_eq!(
            "abc=crm.objects.contacts.read, crm.schemas.contacts.read".parse::<TokenGrant>().unwrap().scopes,
            Some(vec!["crm.objects.contacts.read".to_string(), "crm.schemas.contacts.read".to_string()])
        );
        assert_eq!("abc=".parse::<TokenGrant>().unwrap().scopes, Some(vec![]));
        assert!("=x".parse::<TokenGrant>().is_err());
    }

    #[test]
    fn debug_output_hides_tokens_and_secrets() {
        let config = EmulatorConfig {
            tokens: vec!["pat-na1-secret-token".parse().unwrap()],
            client_secret: "very-secret".into(),
            developer_api_key: "dev-key-secret".into(),
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("pat-na1-secret-token") && !shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("dev-key-secret"), "{shown}");
        assert!(shown.contains("portal_id: 62515"));
    }

    #[test]
    fn subscriptions_parse_and_match() {
        let email: Subscription = "contact.propertyChange:email".parse().unwrap();
        assert!(email.covers("contact.propertyChange", Some("email")));
        assert!(!email.covers("contact.propertyChange", Some("firstname")));
        assert!(!email.covers("deal.propertyChange", Some("email")));
        let creation: Subscription = "deal.creation".parse().unwrap();
        assert!(creation.covers("deal.creation", None));
        assert!("ticket.creation".parse::<Subscription>().is_ok());
        assert!("quote.creation".parse::<Subscription>().is_err());
        assert!("deal.creation:amount".parse::<Subscription>().is_err());
        assert!("deal.propertyChange:".parse::<Subscription>().is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    #[test]
    fn flags_become_the_config() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "emulator",
            "--token",
            "a",
            "--token",
            "b=crm.objects.contacts.read",
            "--tier",
            "free",
            "--duplicate-rate",
            "0.25",
            "--reorder",
            "--legacy-signature-version",
            "v2",
            "--seed",
            "7",
            "--subscription",
            "deal.propertyChange:amount",
            "--oauth-app",
            "cid:csecret=crm.objects.deals.read",
            "--refresh-token",
            "na1-rt=cid",
            "--access-token-ttl",
            "60",
        ])
        .unwrap();
        let config = EmulatorConfig::from(cli.args);
        assert_eq!(config.tokens.len(), 2);
        assert_eq!(config.tokens[1].scopes, Some(vec!["crm.objects.contacts.read".to_string()]));
        assert_eq!((config.tier, config.duplicate_rate, config.reorder, config.seed), (Tier::Free, 0.25, true, 7));
        assert_eq!(config.legacy_signature_version, LegacySignatureVersion::V2);
        assert_eq!(config.subscriptions, vec!["deal.propertyChange:amount".parse::<Subscription>().unwrap()]);
        assert_eq!(config.oauth_apps, vec!["cid:csecret=crm.objects.deals.read".parse::<OAuthApp>().unwrap()]);
        assert_eq!(config.refresh_tokens, vec!["na1-rt=cid".parse::<RefreshTokenGrant>().unwrap()]);
        assert_eq!(config.access_token_ttl_secs, 60);
        let shown = format!("{config:?}");
        assert!(!shown.contains("csecret") && !shown.contains("na1-rt"), "{shown}");
        assert!(Cli::try_parse_from(["emulator", "--duplicate-rate", "1.5"]).is_err());
        let defaults = EmulatorConfig::from(Cli::try_parse_from(["emulator"]).unwrap().args);
        assert_eq!(defaults.effective_tokens(), vec![TokenGrant { token: DEFAULT_TOKEN.into(), scopes: None }]);
        assert_eq!((defaults.portal_id, defaults.app_id, defaults.tier), (62515, 54321, Tier::Professional));
        assert_eq!(defaults.client_secret, EmulatorConfig::default().client_secret);
        assert_eq!(defaults.access_token_ttl_secs, 1800);
        assert!(defaults.faults.is_empty());
        let faulty = EmulatorConfig::from(
            Cli::try_parse_from([
                "emulator",
                "--fault-5xx-rate",
                "0.1:502",
                "--fault-latency-ms",
                "250",
                "--fault-drop-rate",
                "0.01",
                "--fault-429-storm",
                "60:5",
            ])
            .unwrap()
            .args,
        );
        assert_eq!(
            faulty.faults,
            vec![
                FaultPlan::server_errors(0.1, 502),
                FaultPlan::latency(std::time::Duration::from_millis(250)),
                FaultPlan::dropped_connections(0.01),
                FaultPlan::rate_limit_storms(std::time::Duration::from_secs(60), std::time::Duration::from_secs(5)),
            ]
        );
        assert!(Cli::try_parse_from(["emulator", "--fault-5xx-rate", "0.1:404"]).is_err());
        assert!(Cli::try_parse_from(["emulator", "--fault-429-storm", "5:60"]).is_err());
    }
}
