//! `hubspot-operator dev` as a user runs it: the examples against the built-in emulator; the
//! seeded contacts are backfilled and a change made in the emulator reaches the file
//! destination within seconds.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{eventually, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_the_emulator_reaches_the_file_destination() {
    let data_dir = tempfile::tempdir().unwrap();
    let (emulator_port, receiver_port, admin_port) = (free_port(), free_port(), free_port());
    let mut dev = Command::new(env!("CARGO_BIN_EXE_hubspot-operator"))
        .args(["dev", "-f", "examples", "--seed", "5"])
        .args(["--emulator-listen", &format!("127.0.0.1:{emulator_port}")])
        .args(["--listen", &format!("127.0.0.1:{receiver_port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let shown = Arc::new(Mutex::new(String::new()));
    let mut stdout = dev.stdout.take().unwrap();
    let collected = shown.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    let http = reqwest::Client::new();
    let emulator = format!("http://127.0.0.1:{emulator_port}");
    let contact = format!("{emulator}/_emulator/objects/contacts/1");
    eventually("the emulator to answer", || async { http.get(&contact).send().await.is_ok() }).await;

    let patched = http.patch(&contact).json(&serde_json::json!({"properties": {"firstname": "Augusta Ada"}})).send();
    assert!(patched.await.unwrap().status().is_success());
    let file = data_dir.path().join("contacts.jsonl");
    let records = || -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    };
    eventually("the record in the file destination", || async {
        records().iter().any(|r| r["objectId"] == "1" && r["fields"]["first_name"] == "Augusta Ada")
    })
    .await;
    eventually("every seeded contact, backfilled", || async {
        let ids: std::collections::BTreeSet<String> =
            records().iter().map(|r| r["objectId"].as_str().unwrap().to_string()).collect();
        ids.len() == 5
    })
    .await;

    // Contact 1 arrives once or twice (its seeded state may be delivered before the change).
    eventually("the status display to show the deliveries", || async {
        let shown = shown.lock().unwrap();
        ["5", "6"].iter().any(|n| shown.contains(&format!("default/contacts → file-0: {n} delivered")))
    })
    .await;
    // The admin API is up beside the receiver, with nothing refused.
    let listed: serde_json::Value = http
        .get(format!("http://127.0.0.1:{admin_port}/admin/dead-letters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    dev.kill().unwrap();
    dev.wait().unwrap();
    let shown = shown.lock().unwrap();
    assert!(shown.contains("HubSpotIntegration  default/crm"), "{shown}");
    assert!(shown.contains("Ready=True (Ready)  Authenticated=True"), "{shown}");
}
