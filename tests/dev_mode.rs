//! `hubspot-operator dev` as a user runs it: the examples against the built-in emulator; the
//! seeded contacts are backfilled and a change made in the emulator reaches the file
//! destination within seconds. Paused resources are not checked against HubSpot.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{eventually, free_port};

/// `hubspot-operator dev` running the manifests in `manifests` with 5 seeded contacts, and what
/// it printed so far. Killed when dropped.
struct Dev {
    process: Child,
    shown: Arc<Mutex<String>>,
    emulator: String,
    receiver: String,
    status_port: u16,
    admin_port: u16,
    data_dir: tempfile::TempDir,
}

impl Dev {
    fn start(manifests: &Path) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let (emulator_port, receiver_port, status_port, admin_port) =
            (free_port(), free_port(), free_port(), free_port());
        let mut process = Command::new(env!("CARGO_BIN_EXE_hubspot-operator"))
            .arg("dev")
            .arg("-f")
            .arg(manifests)
            .args(["--seed", "5"])
            .args(["--emulator-listen", &format!("127.0.0.1:{emulator_port}")])
            .args(["--listen", &format!("127.0.0.1:{receiver_port}")])
            .args(["--status-listen", &format!("127.0.0.1:{status_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            // The mappings' sync reports are read at each resync.
            .args(["--resync", "1s"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let shown = Arc::new(Mutex::new(String::new()));
        let mut stdout = process.stdout.take().unwrap();
        let collected = shown.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buffer) {
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Dev {
            process,
            shown,
            emulator: format!("http://127.0.0.1:{emulator_port}"),
            receiver: format!("http://127.0.0.1:{receiver_port}"),
            status_port,
            admin_port,
            data_dir,
        }
    }

    fn shown(&self) -> String {
        self.shown.lock().unwrap().clone()
    }

    /// The records in the file destination `contacts.jsonl`.
    fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.data_dir.path().join("contacts.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    async fn backfilled(&self) {
        eventually("every seeded contact, backfilled", || async {
            let ids: std::collections::BTreeSet<String> =
                self.records().iter().map(|r| r["objectId"].as_str().unwrap().to_string()).collect();
            ids.len() == 5
        })
        .await;
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_the_emulator_reaches_the_file_destination() {
    let dev = Dev::start(Path::new("examples"));
    let http = reqwest::Client::new();
    let contact = format!("{}/_emulator/objects/contacts/1", dev.emulator);
    eventually("the emulator to answer", || async { http.get(&contact).send().await.is_ok() }).await;

    let patched = http.patch(&contact).json(&serde_json::json!({"properties": {"firstname": "Augusta Ada"}})).send();
    assert!(patched.await.unwrap().status().is_success());
    eventually("the record in the file destination", || async {
        dev.records().iter().any(|r| r["objectId"] == "1" && r["fields"]["first_name"] == "Augusta Ada")
    })
    .await;
    dev.backfilled().await;

    // Contact 1 arrives once or twice (its seeded state may be delivered before the change).
    eventually("the status display to show the deliveries", || async {
        let shown = dev.shown();
        ["5", "6"].iter().any(|n| shown.contains(&format!("default/contacts → file-0: {n} delivered")))
    })
    .await;
    // The admin API is up beside the receiver, with nothing refused.
    let listed: serde_json::Value = http
        .get(format!("http://127.0.0.1:{}/admin/dead-letters", dev.admin_port))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    let status = format!("http://127.0.0.1:{}", dev.status_port);
    let metrics = http.get(format!("{status}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    // The mapping's sync, as the receiver's status port reports it.
    eventually("the mapping shown in sync", || async {
        dev.shown()
            .lines()
            .rev()
            .find(|l| l.contains("PropertyMapping     default/contacts"))
            .is_some_and(|l| l.contains("Synced=True (InSync)"))
    })
    .await;
    let shown = dev.shown();
    assert!(shown.contains(&format!("status            {status}/metrics, /sync/status")), "{shown}");
    assert!(shown.contains("HubSpotIntegration  default/crm"), "{shown}");
    assert!(shown.contains("Ready=True (Ready)  Authenticated=True"), "{shown}");
}

/// The README's timeline quick start: dev registers the example event type as a private app's
/// custom event, the occurrence lands on the contact's timeline once, and a request with an
/// invalid occurrence stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_event_type_puts_an_event_on_a_contacts_timeline_once() {
    let dev = Dev::start(Path::new("examples"));
    let http = reqwest::Client::new();
    let url = format!("{}/timeline/default/feature-used", dev.receiver);
    let send = |body: serde_json::Value| {
        http.post(&url).bearer_auth("ingest-00000000-0000-0000-0000-000000000000").json(&body).send()
    };
    let tokens =
        serde_json::json!({"feature": "export", "count": 3, "last_used": "2026-12-01T10:00:00Z", "plan": "pro"});
    let occurrence = serde_json::json!([{"id": "evt-1", "objectId": "1", "tokens": tokens}]);
    eventually("the timeline API to answer", || async { send(occurrence.clone()).await.is_ok() }).await;
    let answer = send(occurrence.clone()).await.unwrap();
    assert_eq!(answer.status(), 202);
    assert!(dev.shown().contains("timeline API      http://"), "{}", dev.shown());

    let timeline = format!("{}/_emulator/timeline/contacts/1", dev.emulator);
    let events = || async {
        let body: serde_json::Value = http.get(&timeline).send().await.unwrap().json().await.unwrap();
        body["results"].as_array().unwrap().iter().filter(|e| e["eventType"] == "pe62515_feature_used").count()
    };
    eventually("the event on contact 1's timeline", || async { events().await == 1 }).await;

    let again = send(occurrence).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["alreadyKnown"], 1);
    let mut bad_tokens = tokens.clone();
    bad_tokens["plan"] = "gold".into();
    let mixed = serde_json::json!([
        {"id": "evt-2", "objectId": "1", "tokens": tokens},
        {"id": "evt-3", "objectId": "1", "tokens": bad_tokens},
    ]);
    let refused = send(mixed).await.unwrap();
    assert_eq!(refused.status(), 400);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(refused["invalidOccurrences"][0]["index"], 1, "{refused}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(events().await, 1, "nothing of the refused request reached HubSpot");
}

/// The examples, with the integration and the mapping annotated `hubspot.io/paused: "true"`.
fn paused_examples(dir: &Path) -> PathBuf {
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut documents = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let mut value = <serde_yaml::Value as serde::Deserialize>::deserialize(document).unwrap();
            if matches!(value["kind"].as_str(), Some("HubSpotIntegration" | "PropertyMapping")) {
                let metadata = value["metadata"].as_mapping_mut().unwrap();
                let mut annotations = serde_yaml::Mapping::new();
                annotations.insert("hubspot.io/paused".into(), "true".into());
                metadata.insert("annotations".into(), annotations.into());
            }
            documents.push(serde_yaml::to_string(&value).unwrap());
        }
        std::fs::write(dir.join(path.file_name().unwrap()), documents.join("---\n")).unwrap();
    }
    dir.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_resources_are_shown_paused_and_not_checked_while_the_receiver_runs() {
    let manifests = tempfile::tempdir().unwrap();
    let dev = Dev::start(&paused_examples(manifests.path()));
    let line_of = |name: &str| dev.shown().lines().rev().find(|l| l.contains(name)).map(str::to_string);
    eventually("both shown paused", || async {
        [line_of("HubSpotIntegration  default/crm"), line_of("PropertyMapping     default/contacts")]
            .iter()
            .all(|line| line.as_deref().is_some_and(|l| l.ends_with("Ready=Unknown (Paused)")))
    })
    .await;
    // As in the cluster, where a paused integration's receiver keeps running.
    dev.backfilled().await;

    let requests: Vec<serde_json::Value> =
        reqwest::get(format!("{}/_emulator/requests", dev.emulator)).await.unwrap().json().await.unwrap();
    let checks: Vec<&str> = requests
        .iter()
        .filter_map(|r| r["path"].as_str())
        .filter(|path| path.contains("access-token-info") || path.ends_with("/properties/contacts"))
        .collect();
    assert_eq!(checks, Vec::<&str>::new(), "the token and the mapped properties were checked");
}
