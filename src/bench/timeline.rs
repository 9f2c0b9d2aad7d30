//! `hubspot-operator bench timeline`: occurrences of a custom event type sent to the receiver's
//! timeline API while its worker sends them on to the emulator (in this process, enforcing
//! HubSpot's rate limits for the tier); reports occurrences/s acknowledged and delivered, and
//! HubSpot calls per 100 occurrences.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};
use hubspot::Tier;
use model::api::timeline::{Carrier, TimelineObjectType, TimelineToken, TokenType};
use model::config::{HubSpotConnection, IngestConfig, ReceiverConfig, TimelineEventTypeConfig, WebhookConfig};
use receiver::metrics::Metrics;

use super::EmulatorAdmin;

const TOKEN: &str = "pat-na1-bench-timeline";
const INGEST_TOKEN: &str = "bench-ingest-token";
const CONTACTS: usize = 100;

/// `hubspot-operator bench timeline` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct TimelineArgs {
    /// Occurrences sent in all.
    #[arg(long, default_value_t = 20_000)]
    pub occurrences: usize,
    /// Occurrences per request to the timeline API.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The tier the emulator enforces and the worker's budget is sized for.
    #[arg(long, default_value = "free")]
    pub tier: Tier,
}

pub async fn run(args: TimelineArgs) -> anyhow::Result<()> {
    let emulator = RunningEmulator::start(
        EmulatorConfig {
            tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
            tier: args.tier,
            ..Default::default()
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    )
    .await?;
    let admin = EmulatorAdmin::new(emulator.base_url());
    let mut contacts = Vec::with_capacity(CONTACTS);
    for i in 0..CONTACTS {
        let body = json!({"properties": {"email": format!("timeline-{i}@example.com")}});
        let created = admin.call(reqwest::Method::POST, "/_emulator/objects/contacts", Some(body)).await?;
        contacts.push(created["id"].as_str().context("created contact without id")?.to_string());
    }
    let http = reqwest::Client::new();
    let definition = json!({"label": "Feature used", "name": "feature_used", "primaryObject": "CONTACT",
                            "propertyDefinitions": [{"name": "feature", "label": "Feature", "type": "string"}]});
    let defined: Value = http
        .post(format!("{}/events/v3/event-definitions", emulator.base_url()))
        .bearer_auth(TOKEN)
        .json(&definition)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let hubspot_name = defined["fullyQualifiedName"].as_str().context("definition without a name")?.to_string();

    let data_dir = tempfile::tempdir()?;
    let config = receiver_config(data_dir.path(), &emulator.base_url(), args.tier, hubspot_name);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/timeline/bench/feature-used", listener.local_addr()?);
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let receiver = tokio::spawn(receiver::run(config, listener, metrics.clone(), async {
        let _ = stopped.await;
    }));
    admin.clear_requests().await?;

    let started = Instant::now();
    let batches: Vec<Vec<Value>> = (0..args.occurrences)
        .map(|n| json!({"id": format!("o-{n}"), "objectId": contacts[n % CONTACTS], "tokens": {"feature": "export"}}))
        .collect::<Vec<_>>()
        .chunks(args.batch_size.max(1))
        .map(<[Value]>::to_vec)
        .collect();
    let answers: Vec<anyhow::Result<()>> = futures::stream::iter(batches)
        .map(|batch| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let response = http.post(url).bearer_auth(INGEST_TOKEN).json(&batch).send().await?;
                anyhow::ensure!(response.status() == 202, "the timeline API answered {}", response.status());
                Ok(())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    answers.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let acknowledged = started.elapsed();
    let delivered = |m: &Metrics| {
        m.timeline_occurrences.get_or_create(&receiver::metrics::OutcomeLabels { outcome: "delivered".into() }).get()
    };
    while delivered(&metrics) < args.occurrences as u64 {
        anyhow::ensure!(!receiver.is_finished(), "the receiver stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_delivered = started.elapsed();
    let counts = admin.counts().await?;
    let _ = stop.send(());
    receiver.await??;
    emulator.shutdown().await;

    let n = args.occurrences as f64;
    println!(
        "| occurrences | per request | in flight | acknowledged/s | delivered/s | HubSpot calls | calls per 100 | 429s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {:.0} | {:.0} | {} | {:.2} | {} |",
        args.occurrences,
        args.batch_size,
        args.concurrency,
        n / acknowledged.as_secs_f64(),
        n / all_delivered.as_secs_f64(),
        counts.calls,
        counts.calls as f64 * 100.0 / n,
        counts.rate_limited,
    );
    println!(
        "\nCustom events to {CONTACTS} contacts, tier {:?} ({} requests per 10 s); delivered/s counts from the \
         first request until HubSpot held every occurrence.",
        args.tier,
        args.tier.burst_limit()
    );
    Ok(())
}

fn receiver_config(data_dir: &std::path::Path, hubspot_url: &str, tier: Tier, hubspot_name: String) -> ReceiverConfig {
    let hubspot = HubSpotConnection { tier, ..HubSpotConnection::new(hubspot_url, TOKEN) };
    let mut config = ReceiverConfig::new("bench/timeline", data_dir, hubspot, WebhookConfig::new("bench-secret"));
    config.listen = ([127, 0, 0, 1], 0).into();
    config.status_listen = ([127, 0, 0, 1], 0).into();
    config.admin.listen = ([127, 0, 0, 1], 0).into();
    config.ingest = Some(IngestConfig::new(INGEST_TOKEN.into(), 4 * 1024 * 1024));
    config.timeline_event_types = vec![TimelineEventTypeConfig {
        namespace: "bench".into(),
        name: "feature-used".into(),
        object_type: TimelineObjectType::Contacts,
        carrier: Carrier::CustomEvents,
        hubspot_name,
        tokens: vec![TimelineToken {
            name: "feature".into(),
            label: "Feature".into(),
            type_: TokenType::String,
            options: vec![],
            object_property_name: None,
        }],
    }];
    config
}
