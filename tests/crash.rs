//! Acknowledged means durable: the receiver binary is killed with SIGKILL right after it
//! answered 2xx, before any destination took the records, and again and again while HubSpot
//! keeps sending; after each restart every acknowledged event still reaches the destination.

mod common;

use std::sync::Arc;

use common::{
    CLIENT_SECRET, ChangeSender, ReceiverProcess, TestDestination, TestEmulator, applied_contacts, batch_body,
    emulator_receiver_config, eventually, eventually_equal, expected_contacts, free_port, receiver_config,
    sample_event, signed_request, wait_ready,
};
use emulator::{EmulatorConfig, TokenGrant};
use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::{MappingConfig, ReceiverConfig, SinkConfig};
use serde_json::json;

const TOKEN: &str = "pat-na1-crash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let emulator = TestEmulator::start(EmulatorConfig {
        tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            emulator.create_contact(json!({"email": format!("k{i}@example.com"), "firstname": format!("K{i}")})).await,
        );
    }
    // The destination is down while the receiver acknowledges: nothing can leave the log.
    let destination = TestDestination::start(vec![]).await;
    destination.answer(503);

    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let mut config: ReceiverConfig = receiver_config(data_dir.path());
    config.listen = ([127, 0, 0, 1], port).into();
    config.hubspot.base_url = emulator.running.base_url();
    config.hubspot.access_token = TOKEN.into();
    let records = MappedRecords::new(
        "contacts",
        MatchKey::new("email", "email"),
        vec![FieldMapping::new("firstname", "first_name", Direction::ToExternal)],
    );
    config.mappings = vec![MappingConfig {
        sinks: vec![SinkConfig::Http { url: destination.url.clone(), signing_secret: None }],
        ..MappingConfig::new("crm/contacts", records)
    }];
    assert_eq!(config.webhooks.client_secret, CLIENT_SECRET);
    let config_path = data_dir.path().join("config.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();

    let receiver = ReceiverProcess::spawn(&config_path);
    wait_ready(&base_url).await;
    let http = reqwest::Client::new();
    let webhook_url = format!("{base_url}/webhooks/hubspot");
    let mut acknowledged = Vec::new();
    for (batch, chunk) in ids.chunks(8).enumerate() {
        let events: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| sample_event((batch * 8 + i) as u64 + 1, id.parse().unwrap()))
            .collect();
        let response = signed_request(&http, &webhook_url, batch_body(&events)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        acknowledged.extend(chunk.iter().cloned());
    }
    receiver.kill();
    assert!(destination.delivered().is_empty(), "the destination refused everything so far");

    destination.answer(200);
    let _receiver = ReceiverProcess::spawn(&config_path);
    wait_ready(&base_url).await;
    eventually("every acknowledged event to reach the destination", || async {
        let delivered: std::collections::BTreeSet<String> =
            destination.delivered().into_iter().map(|r| r.object_id).collect();
        acknowledged.iter().all(|id| delivered.contains(id))
    })
    .await;
    for record in destination.delivered() {
        let i: usize = acknowledged.iter().position(|id| *id == record.object_id).unwrap();
        assert_eq!(record.fields["first_name"].as_deref(), Some(format!("K{i}").as_str()));
    }
}

/// Five SIGKILLs while HubSpot keeps changing contacts and sending their events: whatever was
/// acknowledged before a kill is delivered after a restart, and the destination ends equal to
/// HubSpot for every contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkills_under_load_lose_no_acknowledged_event() {
    let emulator = Arc::new(TestEmulator::start(EmulatorConfig::default()).await);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(emulator.create_contact(json!({"email": format!("r{i}@example.com"), "firstname": "new"})).await);
    }
    let destination = TestDestination::start(vec![]).await;
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let sinks = vec![SinkConfig::Http { url: destination.url.clone(), signing_secret: None }];
    let mut config = emulator_receiver_config(data_dir.path(), &emulator, sinks);
    config.listen = ([127, 0, 0, 1], port).into();
    config.sync.max_batch_wait_milliseconds = 50;
    let config_path = data_dir.path().join("config.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();

    let mut receiver = ReceiverProcess::spawn(&config_path);
    wait_ready(&base_url).await;
    let sender = ChangeSender::start(emulator.clone(), format!("{base_url}/webhooks/hubspot"), ids.clone(), 4);
    for _ in 0..5 {
        sender.wait_for_more(3).await;
        receiver.kill();
        receiver = ReceiverProcess::spawn(&config_path);
    }
    sender.wait_for_more(3).await;
    let attempts = sender.finish().await;
    assert!(attempts.iter().any(|a| a.status.is_none()), "no batch went out while the receiver was down");
    // The last batches may still be in the log only.
    receiver.kill();
    let receiver = ReceiverProcess::spawn(&config_path);

    let expected = expected_contacts(&emulator, &ids).await;
    assert!(expected.values().all(|state| state.as_ref().is_some_and(|(_, name)| name.contains(" round "))));
    eventually_equal("the destination to equal HubSpot", &expected, || async {
        applied_contacts(&destination.delivered())
    })
    .await;
    drop(receiver);
}
