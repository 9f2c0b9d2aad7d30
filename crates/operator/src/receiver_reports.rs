//! Reads what an integration's receiver pods report of their mappings' sync
//! (`GET /sync/status` on their status port, see [`model::report`]), for the
//! `PropertyMapping` status. The pods are found through the receiver Service's EndpointSlices,
//! so each ready pod is asked, whatever the number of replicas, and a pod that is not ready is
//! not waited for.

use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::resources::receiver_name;
use model::api::HubSpotIntegration;
use model::api::conditions::find;
use model::api::integration::condition_types::RECEIVER_AVAILABLE;
use model::report::{SYNC_STATUS_PATH, SyncReport};

/// How long one pod may take to answer; a reconcile does not wait longer for a report.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Name of the receiver Service's port (and so of its EndpointSlice port) that serves the report.
const STATUS_PORT_NAME: &str = "metrics";
/// The port receiver pods from before the status port served the report on. Their container
/// has no `metrics` port, so the EndpointSlices put them in slices without one; during a
/// rollout they are still asked.
const LEGACY_PORT_NAME: &str = "http";

/// What the controller learnt of an integration's receivers.
#[derive(Clone, Debug, PartialEq)]
pub enum ReceiverReports {
    /// No receiver to ask: the integration is absent or its receiver is not available.
    NotRunning { reason: String, message: String },
    /// `ready` pods were asked: the reports of those that answered, the errors of the others.
    Read { ready: usize, reports: Vec<SyncReport>, errors: Vec<String> },
}

impl ReceiverReports {
    pub fn integration_not_found() -> ReceiverReports {
        ReceiverReports::NotRunning {
            reason: "IntegrationNotFound".into(),
            message: "The sync is reported once the integration's receiver runs".into(),
        }
    }

    /// The integration's status does not say its receiver is available (yet).
    pub fn not_available() -> ReceiverReports {
        ReceiverReports::NotRunning {
            reason: "ReceiverNotAvailable".into(),
            message: "The integration's receiver is not available yet".into(),
        }
    }
}

/// Asks each ready receiver pod of `integration` for its report. Kubernetes API errors fail the
/// reconcile (it is retried); a pod that does not answer is an error among the reports.
pub async fn read(
    client: &Client,
    http: &reqwest::Client,
    integration: &HubSpotIntegration,
) -> Result<ReceiverReports, kube::Error> {
    let available = integration.status.as_ref().and_then(|s| find(&s.conditions, RECEIVER_AVAILABLE));
    match available {
        Some(c) if c.status == model::api::conditions::TRUE => {}
        Some(c) => return Ok(ReceiverReports::NotRunning { reason: c.reason.clone(), message: c.message.clone() }),
        None => return Ok(ReceiverReports::not_available()),
    }
    let namespace = integration.namespace().unwrap_or_default();
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={}", receiver_name(integration))))
        .await?;
    Ok(ask(http, &report_urls(&slices.items)).await)
}

/// Asks each of `urls` (of receiver pods that are ready) for its report, all at once.
pub async fn ask(http: &reqwest::Client, urls: &[String]) -> ReceiverReports {
    let answers = futures::future::join_all(urls.iter().map(|url| fetch(http, url))).await;
    let (mut reports, mut errors) = (Vec::new(), Vec::new());
    for answer in answers {
        match answer {
            Ok(report) => reports.push(report),
            Err(e) => errors.push(e),
        }
    }
    ReceiverReports::Read { ready: urls.len(), reports, errors }
}

/// The report URL of a receiver listening on `address`.
pub fn report_url(address: std::net::SocketAddr) -> String {
    format!("http://{address}{SYNC_STATUS_PATH}")
}

/// The report URL of every ready endpoint of `slices`.
fn report_urls(slices: &[EndpointSlice]) -> Vec<String> {
    let mut urls = Vec::new();
    for slice in slices {
        let port_named = |name: &str| slice.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name));
        let Some(port) = port_named(STATUS_PORT_NAME).or_else(|| port_named(LEGACY_PORT_NAME)).and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // Kubernetes leaves `ready` unset when it does not know; such an endpoint counts as ready.
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            if let Some(address) = endpoint.addresses.first() {
                let host = if slice.address_type == "IPv6" { format!("[{address}]") } else { address.clone() };
                urls.push(format!("http://{host}:{port}{SYNC_STATUS_PATH}"));
            }
        }
    }
    urls
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<SyncReport, String> {
    let answer = async {
        let response = http.get(url).timeout(REPORT_TIMEOUT).send().await?.error_for_status()?;
        response.json::<SyncReport>().await
    };
    answer.await.map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(address_type: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "crm-receiver-abcde" },
            "addressType": address_type,
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    /// The ports of a receiver Service with the admin API exposed, as its EndpointSlices name them.
    fn receiver_ports() -> serde_json::Value {
        serde_json::json!([
            { "name": "admin", "port": 8082 },
            { "name": "http", "port": 8080 },
            { "name": "metrics", "port": 8081 },
        ])
    }

    #[test]
    fn every_ready_endpoint_is_asked_on_the_metrics_port() {
        let slices = [
            slice(
                "IPv4",
                receiver_ports(),
                serde_json::json!([
                    { "addresses": ["10.0.0.7"], "conditions": { "ready": true } },
                    { "addresses": ["10.0.0.8"], "conditions": { "ready": false } },
                    { "addresses": ["10.0.0.9"] },
                ]),
            ),
            slice(
                "IPv6",
                receiver_ports(),
                serde_json::json!([{ "addresses": ["fd00::7"], "conditions": { "ready": true } }]),
            ),
        ];
        assert_eq!(
            report_urls(&slices),
            [
                "http://10.0.0.7:8081/sync/status",
                "http://10.0.0.9:8081/sync/status",
                "http://[fd00::7]:8081/sync/status",
            ]
        );
    }

    /// Mid-rollout, pods of the earlier version sit in a slice of their own without a
    /// `metrics` port, and report on `http`.
    #[test]
    fn pods_without_a_metrics_port_are_asked_on_the_http_port() {
        let ready = |address: &str| serde_json::json!([{ "addresses": [address], "conditions": { "ready": true } }]);
        let slices = [
            slice("IPv4", receiver_ports(), ready("10.0.0.7")),
            slice(
                "IPv4",
                serde_json::json!([{ "name": "admin", "port": 8082 }, { "name": "http", "port": 8080 }]),
                ready("10.0.0.8"),
            ),
            slice("IPv4", serde_json::json!([{ "name": "admin", "port": 8082 }]), ready("10.0.0.9")),
        ];
        assert_eq!(report_urls(&slices), ["http://10.0.0.7:8081/sync/status", "http://10.0.0.8:8080/sync/status"]);
    }
}
