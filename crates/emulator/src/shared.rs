//! What every request handler shares: the emulator's settings, its store, and the state of
//! authentication, rate limits, faults, webhook delivery and the request log.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::auth::oauth::OAuthState;
use crate::auth::{RateLimiter, SearchLimiter, Tokens};
use crate::clock::Clock;
use crate::config::EmulatorConfig;
use crate::faults::Faults;
use crate::request_log::RequestLog;
use crate::store::Store;
use crate::webhooks::DeliveryStats;
use crate::webhooks::settings::SharedWebhooks;

/// Everything the handlers share.
pub struct Emulator {
    pub config: EmulatorConfig,
    pub store: Mutex<Store>,
    pub tokens: Tokens,
    pub limiter: Mutex<RateLimiter>,
    pub search_limiter: Mutex<SearchLimiter>,
    pub requests: Mutex<RequestLog>,
    pub faults: Mutex<Faults>,
    pub webhooks: Arc<DeliveryStats>,
    pub oauth: Mutex<OAuthState>,
    /// Time as token expiry sees it; `/_emulator/clock/advance` moves it.
    pub clock: Clock,
    /// The app's webhook settings and subscriptions (`/webhooks/v3/{appId}/...`).
    pub app_webhooks: SharedWebhooks,
    /// Search indexing lag in milliseconds; `/_emulator/search` changes it.
    pub search_lag_ms: AtomicU64,
}
