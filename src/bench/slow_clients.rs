//! Clients that hold connections to the receiver mid-request for a benchmark's whole run: half
//! send part of their headers and stop, half announce a body and never send it. When the
//! receiver cuts one off (its read timeouts), it connects again at once, as an attacker would.
//! `bench ingest --slow-connections N` runs them beside HubSpot-shaped load, whose latency
//! figures then show what they cost.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Headers cut off before their end.
const PARTIAL_HEADERS: &[u8] = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: receiver\r\nContent-Type: appl";
/// Complete headers announcing 1 MiB of body, of which two bytes come.
const ANNOUNCED_BODY: &[u8] =
    b"POST /webhooks/hubspot HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n[{";

/// `count` stalled clients of the receiver at `authority`, until they are stopped.
pub struct SlowClients {
    tasks: JoinSet<()>,
}

impl SlowClients {
    /// Opens them; returns once each has sent its bytes once, so the load that follows meets
    /// all of them.
    pub async fn start(authority: &str, count: usize, until: Instant) -> anyhow::Result<SlowClients> {
        let mut tasks = JoinSet::new();
        for i in 0..count {
            let bytes = if i % 2 == 0 { PARTIAL_HEADERS } else { ANNOUNCED_BODY };
            let mut stream = stalled(authority, bytes).await?;
            let authority = authority.to_string();
            tasks.spawn(async move {
                loop {
                    // Whatever the receiver answers (408 or nothing), it ends with a close.
                    let mut sink = Vec::new();
                    let closed = tokio::time::timeout_at(until.into(), stream.read_to_end(&mut sink)).await;
                    if closed.is_err() {
                        return;
                    }
                    match stalled(&authority, bytes).await {
                        Ok(again) => stream = again,
                        Err(_) => return,
                    }
                }
            });
        }
        Ok(SlowClients { tasks })
    }

    /// Closes them.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn stalled(authority: &str, bytes: &[u8]) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(authority).await?;
    stream.write_all(bytes).await?;
    Ok(stream)
}
