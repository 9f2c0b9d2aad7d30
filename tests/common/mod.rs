//! Fixtures shared by the integration tests: sample webhook events, receiver configs, signed
//! webhook requests and a running receiver.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hubspot_operator::config::{HubSpotConnection, ReceiverConfig, WebhookConfig};
use hubspot_operator::eventlog::EventLog;
use hubspot_operator::hubspot::WebhookEvent;
use hubspot_operator::hubspot::signature::{HEADER_SIGNATURE_V3, HEADER_TIMESTAMP, sign_v3};
use hubspot_operator::receiver::{ReceiverState, router, serve};
use hubspot_operator::telemetry::Metrics;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CLIENT_SECRET: &str = "test-client-secret-0000";

/// Bound for every wait in a test; generous, because a failing test is the only one to hit it.
pub const WAIT: Duration = Duration::from_secs(20);

/// A `contact.propertyChange` event of portal 62515; `event_id` and `object_id` tell events
/// apart.
pub fn sample_event(event_id: u64, object_id: u64) -> WebhookEvent {
    WebhookEvent {
        event_id,
        subscription_id: 12345,
        portal_id: 62515,
        app_id: 54321,
        occurred_at: 1_764_000_000_000 + event_id as i64,
        subscription_type: "contact.propertyChange".into(),
        attempt_number: 0,
        object_id,
        change_source: Some("CRM".into()),
        change_flag: None,
        source_id: None,
        property_name: Some("email".into()),
        property_value: Some(format!("user{object_id}@example.com")),
        object_type_id: None,
        primary_object_id: None,
        merged_object_ids: None,
        new_object_id: None,
        ..Default::default()
    }
}

/// The same delivery again, as HubSpot retries it.
pub fn redelivery(event: &WebhookEvent) -> WebhookEvent {
    WebhookEvent { attempt_number: event.attempt_number + 1, ..event.clone() }
}

pub fn receiver_config(data_dir: &Path) -> ReceiverConfig {
    ReceiverConfig {
        integration: "default/test".into(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        hubspot: HubSpotConnection {
            base_url: "http://127.0.0.1:9".into(),
            api_version: "v3".into(),
            access_token: "pat-na1-test".into(),
            tier: Default::default(),
        },
        webhooks: WebhookConfig {
            client_secret: CLIENT_SECRET.into(),
            public_url: None,
            accept_legacy_signatures: false,
            max_body_bytes: 1024 * 1024,
        },
        mappings: vec![],
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A POST of `body` to `url`, signed with v3 over `signed_uri` (the URL HubSpot believes it
/// calls) at `timestamp_ms`.
pub fn signed_request_at(
    client: &reqwest::Client,
    url: &str,
    signed_uri: &str,
    body: Vec<u8>,
    secret: &str,
    timestamp_ms: i64,
) -> reqwest::RequestBuilder {
    let signature = sign_v3(secret, "POST", signed_uri, &body, timestamp_ms);
    client
        .post(url)
        .header("content-type", "application/json")
        .header(HEADER_SIGNATURE_V3, signature)
        .header(HEADER_TIMESTAMP, timestamp_ms.to_string())
        .body(body)
}

/// A POST of `body` to `url` signed with v3 over `url` itself, now, with `CLIENT_SECRET`.
pub fn signed_request(client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    signed_request_at(client, url, url, body, CLIENT_SECRET, now_ms())
}

pub fn batch_body(events: &[WebhookEvent]) -> Vec<u8> {
    serde_json::to_vec(events).unwrap()
}

/// A receiver serving on an ephemeral port of 127.0.0.1.
pub struct RunningReceiver {
    pub base_url: String,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl RunningReceiver {
    pub async fn start(config: &ReceiverConfig, log: Arc<dyn EventLog>) -> RunningReceiver {
        let metrics = Arc::new(Metrics::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(ReceiverState::new(config, log, metrics.clone()));
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, async move {
            let _ = stop.await;
        }));
        RunningReceiver { base_url, metrics, shutdown: Some(shutdown), server }
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks/hubspot", self.base_url)
    }

    /// Stops accepting connections and waits until the server has finished.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.server).await.expect("server did not shut down").unwrap()
    }
}
