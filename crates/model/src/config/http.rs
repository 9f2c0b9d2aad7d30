//! How long the receiver's listeners wait for a client, and how many clients they hold.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::integration::ReceiverSettings;

/// Limits every listener of the receiver (public, status, admin) puts on its clients, so that
/// slow or silent clients cannot hold the public port that HubSpot must reach (HubSpot gives
/// up on a webhook request after 5 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpLimits {
    /// Seconds a client has to send a request's headers, counted from when the connection
    /// is ready for a request (opened, or its last answer sent); the connection is closed
    /// after that. This also closes keep-alive connections idle that long.
    #[serde(default = "default_read_timeout_seconds")]
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole body once its headers are in; answered
    /// 408 and closed after that.
    #[serde(default = "default_read_timeout_seconds")]
    pub body_read_timeout_seconds: u64,
    /// Connections each listener keeps open at most; one beyond them is closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl HttpLimits {
    pub const DEFAULT_READ_TIMEOUT_SECONDS: u64 = 10;
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
    /// Longer than this, a timeout no longer protects the listener.
    pub const MAX_READ_TIMEOUT_SECONDS: u64 = 300;

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_seconds)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, seconds) in [
            ("http.headerReadTimeoutSeconds", self.header_read_timeout_seconds),
            ("http.bodyReadTimeoutSeconds", self.body_read_timeout_seconds),
        ] {
            anyhow::ensure!(
                (1..=Self::MAX_READ_TIMEOUT_SECONDS).contains(&seconds),
                "{name} {seconds} is not between 1 and {}",
                Self::MAX_READ_TIMEOUT_SECONDS
            );
        }
        anyhow::ensure!(self.max_connections > 0, "http.maxConnections must be at least 1");
        Ok(())
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout_seconds: default_read_timeout_seconds(),
            body_read_timeout_seconds: default_read_timeout_seconds(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_read_timeout_seconds() -> u64 {
    HttpLimits::DEFAULT_READ_TIMEOUT_SECONDS
}

fn default_max_connections() -> usize {
    HttpLimits::DEFAULT_MAX_CONNECTIONS
}

/// The `http` section of a receiver's config: what its `spec.receiver.http` sets, defaults for
/// the rest.
impl From<&ReceiverSettings> for HttpLimits {
    fn from(receiver: &ReceiverSettings) -> Self {
        let mut limits = HttpLimits::default();
        if let Some(http) = &receiver.http {
            limits.header_read_timeout_seconds =
                http.header_read_timeout_seconds.unwrap_or(limits.header_read_timeout_seconds);
            limits.body_read_timeout_seconds =
                http.body_read_timeout_seconds.unwrap_or(limits.body_read_timeout_seconds);
            limits.max_connections = http.max_connections.map_or(limits.max_connections, |n| n as usize);
        }
        limits
    }
}
