//! Credentials of a HubSpot client: a static bearer token (private app, service key), or an OAuth
//! app's client id, client secret and refresh token, from which a `TokenSource` keeps a fresh
//! access token.
//!
//! The access token is refreshed ahead of its expiry (HubSpot's guidance: a 401 is not the
//! signal), when less than `refresh_margin(ttl)` of its lifetime remains. One refresh is in
//! flight at a time: callers wait on the token lock, and whoever finds the token stale refreshes
//! it for everyone. Tokens and secrets are `Secret`s, whose Debug output shows nothing.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A token or secret: readable only through `expose`, never through Debug.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme name is
/// case-insensitive (RFC 7235): `bearer`, `Bearer` and `BEARER` all name it.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `headers` carry `expected` as their bearer token, compared in constant time.
pub fn presents_bearer_token(headers: &http::HeaderMap, expected: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let presented = bearer_token(headers).unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which token endpoint refreshes the access token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpoint {
    /// `POST /oauth/v1/token`: deprecated, unsupported from 2027-02-16.
    V1,
    /// `POST /oauth/v3/token`: the same form fields and answer, parameters only in the body.
    /// The default, because v1 goes away and v3 is its documented successor (HubSpot's Python
    /// SDK 12 still calls v1; the emulator serves both).
    #[default]
    V3,
}

impl TokenEndpoint {
    pub fn path(self) -> &'static str {
        match self {
            TokenEndpoint::V1 => "/oauth/v1/token",
            TokenEndpoint::V3 => "/oauth/v3/token",
        }
    }
}

/// An OAuth app's credentials for one installation.
#[derive(Clone)]
pub struct OAuthCredentials {
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
    pub token_endpoint: TokenEndpoint,
}

impl std::fmt::Debug for OAuthCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthCredentials")
            .field("client_id", &self.client_id)
            .field("token_endpoint", &self.token_endpoint)
            .finish_non_exhaustive()
    }
}

/// Where a `TokenSource` reads the time; tests substitute a `ManualClock`.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The machine's monotonic clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock { start: Instant::now(), offset: Mutex::new(Duration::ZERO) }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().expect("clock lock")
    }
}

/// How long before expiry an access token is replaced: five minutes, or half the lifetime of
/// short-lived tokens, so that a call started with the token finishes (with retries) before it
/// expires, and a short lifetime does not make every call refresh.
pub fn refresh_margin(ttl: Duration) -> Duration {
    Duration::from_secs(300).min(ttl / 2)
}

/// The token endpoint's answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    pub expires_in: u64,
}

/// Sends a `TokenSource`'s requests to the token endpoint. The client does, so that they
/// spend the integration's budget and are retried like every call; this module knows only
/// what to ask.
pub(crate) trait TokenRequests {
    /// One `POST` of `form` to the token endpoint at `path`, without a bearer token.
    async fn request_token(&self, path: &str, form: Vec<(&'static str, String)>) -> Result<TokenResponse>;
}

struct AccessToken {
    token: Secret,
    refresh_at: Instant,
}

/// An access token just issued by the token endpoint, and how long HubSpot said it lives.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: Secret,
    pub expires_in: Duration,
}

struct TokenState {
    refresh_token: Secret,
    access: Option<AccessToken>,
}

/// Keeps an OAuth access token fresh for every clone of a client.
pub(crate) struct TokenSource {
    client_id: String,
    client_secret: Secret,
    endpoint: TokenEndpoint,
    clock: std::sync::Arc<dyn Clock>,
    // A tokio lock: it is held across the refresh call, so concurrent callers wait for that one
    // refresh instead of starting their own.
    state: tokio::sync::Mutex<TokenState>,
}

impl TokenSource {
    pub fn new(credentials: OAuthCredentials, clock: std::sync::Arc<dyn Clock>) -> Self {
        TokenSource {
            client_id: credentials.client_id,
            client_secret: credentials.client_secret,
            endpoint: credentials.token_endpoint,
            clock,
            state: tokio::sync::Mutex::new(TokenState { refresh_token: credentials.refresh_token, access: None }),
        }
    }

    /// The credentials this source was made from, with the latest refresh token.
    pub async fn credentials(&self) -> OAuthCredentials {
        OAuthCredentials {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            refresh_token: self.state.lock().await.refresh_token.clone(),
            token_endpoint: self.endpoint,
        }
    }

    /// Uses `token` (issued earlier, kept elsewhere) until `valid_for` has passed, instead of
    /// asking the token endpoint for a new one.
    pub async fn adopt(&self, token: Secret, valid_for: Duration) {
        self.state.lock().await.access = Some(AccessToken { token, refresh_at: self.clock.now() + valid_for });
    }

    /// A new access token from the token endpoint, whatever the state of the current one.
    pub async fn renew(&self, client: &impl TokenRequests) -> Result<IssuedToken> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state, client).await
    }

    /// A fresh access token, refreshed first when it is missing or near its expiry.
    pub async fn access_token(&self, client: &impl TokenRequests) -> Result<Secret> {
        let mut state = self.state.lock().await;
        if let Some(access) = &state.access
            && self.clock.now() < access.refresh_at
        {
            return Ok(access.token.clone());
        }
        Ok(self.refresh(&mut state, client).await?.token)
    }

    /// HubSpot refused `rejected` as expired (our clock and HubSpot's disagree): a new token,
    /// unless another caller has already replaced it.
    pub async fn replace_expired(&self, client: &impl TokenRequests, rejected: &Secret) -> Result<Secret> {
        let mut state = self.state.lock().await;
        if let Some(access) = &state.access
            && &access.token != rejected
        {
            return Ok(access.token.clone());
        }
        Ok(self.refresh(&mut state, client).await?.token)
    }

    async fn refresh(&self, state: &mut TokenState, client: &impl TokenRequests) -> Result<IssuedToken> {
        let form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", self.client_id.clone()),
            ("client_secret", self.client_secret.expose().to_string()),
            ("refresh_token", state.refresh_token.expose().to_string()),
        ];
        let requested_at = self.clock.now();
        let answer = client.request_token(self.endpoint.path(), form).await?;
        let ttl = Duration::from_secs(answer.expires_in);
        if let Some(rotated) = answer.refresh_token {
            state.refresh_token = Secret(rotated);
        }
        let token = Secret(answer.access_token);
        // Counted from when the request was sent: HubSpot's lifetime started no earlier.
        state.access = Some(AccessToken { token: token.clone(), refresh_at: requested_at + ttl - refresh_margin(ttl) });
        tracing::debug!(expires_in_s = answer.expires_in, "HubSpot access token refreshed");
        Ok(IssuedToken { token, expires_in: ttl })
    }
}

/// An access token that something else keeps fresh in a file: the operator's managed Secret,
/// mounted in the receiver pod, whose file the kubelet replaces when the Secret changes.
///
/// The file is read for every request. It is a few bytes on a local (tmpfs) volume, next to an
/// HTTPS round trip to HubSpot, and reading it every time means a replaced token is used from
/// the very next request, without watching the file or guessing from a 401.
#[derive(Debug)]
pub(crate) struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> Self {
        TokenFile { path }
    }

    /// The token now in the file, without surrounding whitespace.
    // The client's own error, which every request returns.
    #[allow(clippy::result_large_err)]
    pub fn read(&self) -> Result<Secret> {
        // A transport error: like an unreachable HubSpot, the call cannot be made now and may
        // succeed later (the operator has not yet written the token, or the volume is
        // remounting), so callers retry instead of giving up on the record.
        let unreadable = |why: String| Error::Transport(format!("access token file {}: {why}", self.path.display()));
        let text = std::fs::read_to_string(&self.path).map_err(|e| unreadable(e.to_string()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(unreadable("empty".into()));
        }
        Ok(Secret(token.to_string()))
    }
}

/// How a client authenticates.
pub(crate) enum Credentials {
    Static(Secret),
    OAuth(TokenSource),
    /// An OAuth access token read from a file (see `TokenFile`).
    File(TokenFile),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_five_minutes_or_half_a_short_lifetime() {
        assert_eq!(refresh_margin(Duration::from_secs(1800)), Duration::from_secs(300));
        assert_eq!(refresh_margin(Duration::from_secs(120)), Duration::from_secs(60));
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn debug_shows_no_secret() {
        let credentials = OAuthCredentials {
            client_id: "client-1".into(),
            client_secret: Secret::new("s3cr3t-value"),
            refresh_token: Secret::new("na1-refresh-value"),
            token_endpoint: TokenEndpoint::default(),
        };
        let shown = format!("{credentials:?} {:?}", credentials.refresh_token);
        assert!(shown.contains("client-1") && shown.contains("V3"), "{shown}");
        assert!(!shown.contains("s3cr3t-value") && !shown.contains("na1-refresh-value"), "{shown}");
    }

    #[test]
    fn token_file_is_read_afresh_and_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let file = TokenFile::new(path.clone());
        let missing = file.read().unwrap_err().to_string();
        assert!(
            missing.starts_with(&format!("HubSpot request failed: access token file {}: ", path.display())),
            "{missing}"
        );
        std::fs::write(&path, "").unwrap();
        assert!(file.read().unwrap_err().to_string().ends_with(": empty"));
        std::fs::write(&path, "CJT-first\n").unwrap();
        assert_eq!(file.read().unwrap().expose(), "CJT-first");
        std::fs::write(&path, "CJT-second").unwrap();
        assert_eq!(file.read().unwrap().expose(), "CJT-second");
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let clock = ManualClock::default();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now() - t0, Duration::from_secs(90));
    }
}
