//! What the receiver's log may hold: names, ids, counts and HubSpot's categories, never a
//! record's values, and no line longer than a few KiB. The receiver binary runs at the most
//! verbose level with its log captured, and values carrying a marker go through every way the
//! webhook endpoint and the ingest API refuse a request, and through HubSpot refusing an
//! ingested record (HubSpot's messages quote the values they refuse).

mod common;

use common::{
    CLIENT_SECRET, ReceiverProcess, TestEmulator, WAIT, emulator_receiver_config, eventually, free_port,
    signed_request, signed_request_at, wait_ready,
};
use emulator::EmulatorConfig;
use hubspot_operator::telemetry::{CUT_MARKER, MAX_LINE_BYTES};
use model::config::{AdminConfig, IngestConfig, SinkConfig};
use serde_json::{Value, json};

/// In every value sent; never in the log.
const MARKER: &str = "zq7marker";
const INGEST_TOKEN: &str = "ingest-token-log-privacy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_values_never_reach_the_log_and_lines_stay_short() {
    let dir = tempfile::tempdir().unwrap();
    let emulator =
        TestEmulator::start(EmulatorConfig { client_secret: CLIENT_SECRET.into(), ..Default::default() }).await;
    let file = SinkConfig::File { path: "out/contacts.jsonl".into() };
    let mut config = emulator_receiver_config(dir.path(), &emulator, vec![file]);
    let (port, status_port, admin_port) = (free_port(), free_port(), free_port());
    config.listen = ([127, 0, 0, 1], port).into();
    config.status_listen = ([127, 0, 0, 1], status_port).into();
    config.admin = AdminConfig { listen: ([127, 0, 0, 1], admin_port).into(), token: None };
    config.ingest = Some(IngestConfig::new(INGEST_TOKEN.into(), 64 * 1024));
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let log_path = dir.path().join("receiver.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let receiver = ReceiverProcess::spawn_with(&config_path, &[("RUST_LOG", "trace")], log_file.into());
    let base_url = format!("http://127.0.0.1:{port}");
    wait_ready(&base_url).await;
    // A connection per request: the receiver closes the one whose body it refused unread.
    let http = reqwest::Client::builder().timeout(WAIT).pool_max_idle_per_host(0).build().unwrap();
    let webhook_url = format!("{base_url}/webhooks/hubspot");
    let ingest_url = format!("{base_url}/ingest/crm/contacts");
    let marked = |what: &str| format!("{MARKER}-{what}@example.com");

    // The webhook endpoint: a bad signature, a batch that is no batch, one too large.
    let event = json!([{"eventId": marked("event-id"), "subscriptionType": marked("type"), "objectId": 1}]);
    let body = serde_json::to_vec(&event).unwrap();
    let unsigned = http.post(&webhook_url).header("content-type", "application/json").body(body.clone());
    assert_eq!(unsigned.send().await.unwrap().status(), 401);
    let stale = signed_request_at(&http, &webhook_url, &webhook_url, body.clone(), CLIENT_SECRET, 1_000);
    assert_eq!(stale.send().await.unwrap().status(), 401);
    assert_eq!(signed_request(&http, &webhook_url, body).send().await.unwrap().status(), 400);
    let not_json = format!("[{{\"eventId\": 1, \"{}\": ", marked("key")).into_bytes();
    assert_eq!(signed_request(&http, &webhook_url, not_json).send().await.unwrap().status(), 400);
    let huge = serde_json::to_vec(&json!([{ "note": marked(&"x".repeat(2 * 1024 * 1024)) }])).unwrap();
    assert_eq!(signed_request(&http, &webhook_url, huge).send().await.unwrap().status(), 413);

    // The ingest API: no token, a wrong one, a body that is no JSON, invalid records, too much.
    let ingest = |token: &str, body: String| {
        http.post(&ingest_url).bearer_auth(token).header("content-type", "application/json").body(body)
    };
    let record = json!([{"email": marked("email"), "stage": marked("stage")}]).to_string();
    let no_token = http.post(&ingest_url).header("content-type", "application/json").body(record.clone());
    assert_eq!(no_token.send().await.unwrap().status(), 401);
    assert_eq!(ingest(&marked("token"), record.clone()).send().await.unwrap().status(), 401);
    let unreadable = format!("[{{\"email\": \"{}\"", marked("cut"));
    assert_eq!(ingest(INGEST_TOKEN, unreadable).send().await.unwrap().status(), 400);
    let invalid = json!([
        {"email": marked("a"), "first_name": marked("out-only"), "nickname": marked("unknown")},
        {"email": {"nested": marked("nested")}},
        {"phone": marked("no-key")},
    ]);
    let answer = ingest(INGEST_TOKEN, invalid.to_string()).send().await.unwrap();
    assert_eq!(answer.status(), 400);
    let too_large = json!([{"email": marked(&"y".repeat(128 * 1024))}]).to_string();
    assert_eq!(ingest(INGEST_TOKEN, too_large).send().await.unwrap().status(), 413);

    // Valid records HubSpot refuses, quoting the bad email and stage in its message.
    let refused = json!([{"email": marked("not an email"), "stage": marked("stage")}]).to_string();
    assert_eq!(ingest(INGEST_TOKEN, refused).send().await.unwrap().status(), 202);
    let rejected = || async {
        let answer = http.get(format!("{base_url}/ingest/rejected")).bearer_auth(INGEST_TOKEN).send().await;
        answer.unwrap().json::<Value>().await.unwrap()
    };
    eventually("HubSpot to refuse the ingested record", || async { rejected().await["count"] == 1 }).await;
    // HubSpot's message is kept where the records are: the rejected store quotes it.
    let rejected = rejected().await;
    assert!(rejected.to_string().contains(MARKER), "{rejected}");

    receiver.terminate();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("refused webhook request with an invalid signature"), "the log was captured:\n{log}");
    assert!(log.contains("HubSpot refused a record"), "{log}");
    for line in log.lines() {
        assert!(!line.contains(MARKER), "a value reached the log: {line}");
        assert!(line.len() <= MAX_LINE_BYTES, "a log line of {} bytes: {}…", line.len(), &line[..200]);
        // A line cut to fit is a value or a message that escaped its own cap.
        assert!(!line.contains(CUT_MARKER), "a log line was cut: {line}");
    }
    emulator.running.shutdown().await;
}
