//! Catch-up through the receiver: a new mapping gets the records that existed before it, and
//! changes made while the receiver was down (webhooks never sent) arrive after a restart, with
//! one search and one batch read per 100 objects, and nothing delivered twice.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Reply, TestDestination, TestEmulator, contacts_mapping, eventually, receiver_config};
use emulator::EmulatorConfig;
use model::config::{ReceiverConfig, SinkConfig};
use receiver::metrics::Metrics;
use serde_json::json;

const SEARCH_PATH: &str = "/crm/v3/objects/contacts/search";

/// Runs a receiver until the returned sender is dropped or fired.
async fn start_receiver(config: ReceiverConfig) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        receiver::run(config, listener, Arc::new(Metrics::default()), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (stop, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_records_and_changes_made_while_down_are_caught_up() {
    let data_dir = tempfile::tempdir().unwrap();
    // The first delivery is answered only after the receiver was told to stop: a graceful stop
    // settles the step under way, so nothing is read or delivered again at the next start.
    let destination =
        TestDestination::start(vec![Reply { delay: Duration::from_millis(500), ..Reply::from(200) }]).await;
    // No webhook URL: HubSpot tells the receiver nothing, as when it was down for days.
    let emulator = TestEmulator::start(EmulatorConfig { seed: 30, ..Default::default() }).await;
    let mut config = receiver_config(data_dir.path());
    config.hubspot.base_url = emulator.running.base_url();
    config.hubspot.access_token = emulator::DEFAULT_TOKEN.into();
    config.mappings =
        vec![contacts_mapping(vec![SinkConfig::Http { url: destination.url.clone(), signing_secret: None }])];

    let (stop, running) = start_receiver(config.clone()).await;
    eventually("every existing contact delivered", || async {
        destination.delivered().iter().map(|r| r.object_id.clone()).collect::<BTreeSet<_>>().len() == 30
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap();
    assert_eq!(destination.delivered().len(), 30, "each record once");
    assert_eq!(emulator.requests_to(SEARCH_PATH).await.len(), 1);
    assert_eq!(emulator.batch_reads().await.len(), 1);

    for id in ["3", "7", "11"] {
        emulator.update_contact(id, json!({ "firstname": format!("Changed{id}") })).await;
    }
    let (stop, running) = start_receiver(config).await;
    eventually("the changes made while down", || async { destination.delivered().len() == 33 }).await;
    stop.send(()).unwrap();
    running.await.unwrap();

    let caught_up: BTreeSet<(String, String)> = destination.delivered()[30..]
        .iter()
        .map(|r| (r.object_id.clone(), r.fields["first_name"].clone().unwrap_or_default()))
        .collect();
    let expected: BTreeSet<(String, String)> =
        ["3", "7", "11"].iter().map(|id| (id.to_string(), format!("Changed{id}"))).collect();
    assert_eq!(caught_up, expected);
    // The second start searched only since its cursor: the seeded contacts (modified hours
    // ago) were not read again.
    let batch_reads = emulator.batch_reads().await;
    assert_eq!(batch_reads.len(), 2);
    let reread: BTreeSet<&str> =
        batch_reads[1]["inputs"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(reread, BTreeSet::from(["3", "7", "11"]));
}
