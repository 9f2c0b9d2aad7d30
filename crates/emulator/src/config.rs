//! The emulator's settings: the `hubspot-operator emulator` flags and the configuration they
//! become, with the tokens, OAuth apps and webhook subscriptions they name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use hubspot::Tier;

use crate::faults::FaultPlan;

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
    /// The configured tokens, or the default one when none is.
    pub fn effective_tokens(&self) -> Vec<TokenGrant> {
        if self.tokens.is_empty() {
            vec![TokenGrant { token: DEFAULT_TOKEN.into(), scopes: None }]
        } else {
            self.tokens.clone()
        }
    }
}

/// HubSpot's access token lifetime: 30 minutes.
pub const DEFAULT_ACCESS_TOKEN_TTL_SECS: u64 = 1800;

/// An OAuth app the emulator knows: `CLIENT_ID:CLIENT_SECRET` (every scope) or
/// `CLIENT_ID:CLIENT_SECRET=scope1,scope2` (the scopes its installation granted).
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// `None`: every scope.
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted(&self.client_secret))
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl FromStr for OAuthApp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (credentials, scopes) = match s.split_once('=') {
            Some((c, scopes)) => {
                (c, Some(scopes.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()))
            }
            None => (s, None),
        };
        let (client_id, client_secret) =
            credentials.split_once(':').ok_or("an OAuth app is CLIENT_ID:CLIENT_SECRET[=scope1,scope2]")?;
        let (client_id, client_secret) = (client_id.trim(), client_secret.trim());
        if client_id.is_empty() || client_secret.is_empty() {
            return Err("an OAuth app needs a client id and a client secret".into());
        }
        Ok(OAuthApp { client_id: client_id.into(), client_secret: client_secret.into(), scopes })
    }
}

/// A refresh token issued at start: `REFRESH_TOKEN=CLIENT_ID`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshTokenGrant {
    pub token: String,
    pub client_id: String,
}

impl std::fmt::Debug for RefreshTokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokenGrant")
            .field("token", &Redacted(&self.token))
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl FromStr for RefreshTokenGrant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (token, client_id) = s.split_once('=').ok_or("a refresh token is REFRESH_TOKEN=CLIENT_ID")?;
        let (token, client_id) = (token.trim(), client_id.trim());
        if token.is_empty() || client_id.is_empty() {
            return Err("a refresh token needs a value and a client id".into());
        }
        Ok(RefreshTokenGrant { token: token.into(), client_id: client_id.into() })
    }
}

#[cfg(test)]
mod tests;
