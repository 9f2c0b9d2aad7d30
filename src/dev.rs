//! Standalone mode: the whole system on one machine with no cluster. Manifests (CRs and
//! Secrets) are read from files, reconciled against HubSpot (the built-in emulator unless a
//! real API is given), and the receiver and worker run in-process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;

use kube::ResourceExt;

use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};
use hubspot::HubSpotClient;
use model::api::integration::CredentialKind;
use model::api::integration::condition_types as integration_conditions;
use model::api::mapping::condition_types as mapping_conditions;
use model::api::timeline::{Carrier, HubSpotTimelineEventTypeStatus};
use model::api::{HubSpotIntegration, HubSpotTimelineEventType, PropertyMapping, is_paused};
use operator::receiver_reports::{self, ReceiverReports};
use operator::resources;
use operator::secrets::SecretStore;
use operator::status::{self, Authentication, PropertyLookup, ReceiverRollout};
use receiver::metrics::{Metrics, OutcomeLabels, SinkLabels};

/// `hubspot-operator dev` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct DevArgs {
    /// Manifest files or directories (non-recursive) with HubSpotIntegration, PropertyMapping and
    /// Secret resources.
    #[arg(short = 'f', long = "filename", default_value = "examples")]
    pub files: Vec<PathBuf>,
    /// The HubSpotIntegration to run, when the manifests hold several.
    #[arg(long)]
    pub integration: Option<String>,
    /// Call this HubSpot API (for example <https://api.hubapi.com>) instead of the built-in emulator.
    /// HubSpot must be able to reach the receiver for webhooks.
    #[arg(long, env = "HUBSPOT_BASE_URL")]
    pub hubspot_url: Option<String>,
    /// Token for --hubspot-url, instead of the one in the manifests' Secret.
    #[arg(long, env = "HUBSPOT_TOKEN", hide_env_values = true, requires = "hubspot_url")]
    pub token: Option<String>,
    /// Address of the built-in HubSpot emulator.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub emulator_listen: SocketAddr,
    /// Contacts the emulator starts with.
    #[arg(long, default_value_t = 25)]
    pub seed: u32,
    /// Address of the webhook receiver (webhooks and the ingest API).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the receiver's /metrics and /sync/status.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub status_listen: SocketAddr,
    /// Address of the receiver's admin API (`hubspot-operator dead-letters --receiver`).
    #[arg(long, default_value = model::config::DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Directory for the event log, checkpoints and file destinations.
    #[arg(long, default_value = "dev-data")]
    pub data_dir: PathBuf,
    /// How often the resources are reconciled against HubSpot again.
    #[arg(long, default_value = "30s", value_parser = parse_seconds)]
    pub resync: Duration,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let number = text.strip_suffix('s').unwrap_or(text);
    number.parse::<u64>().map(Duration::from_secs).map_err(|_| format!("{text:?} is not a number of seconds"))
}

/// Runs one integration from manifests until Ctrl-C: emulator (unless a real HubSpot is given),
/// reconcile, receiver and worker, and a status display that prints whenever something changed.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let manifests = Manifests::load(&args.files)?;
    let mut integration = pick_integration(&manifests, args.integration.as_deref())?;
    let namespace = integration.namespace().unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let secrets = manifests.secrets_of(&namespace);
    let token = match &args.token {
        Some(token) => token.clone(),
        None => match integration.spec.credentials.kind()? {
            CredentialKind::PrivateAppToken(reference) => secrets.value(reference)?,
            CredentialKind::OAuth(_) => bail!(
                "HubSpotIntegration {namespace}/{} uses OAuth credentials; dev mode needs a static token: pass --token",
                integration.name_any()
            ),
        },
    };
    let client_secret = match &integration.spec.webhooks {
        Some(webhooks) => secrets.value(&webhooks.client_secret)?,
        None => bail!("HubSpotIntegration {namespace}/{} has no spec.webhooks", integration.name_any()),
    };

    let receiver_listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the receiver", args.listen))?;
    let webhook_url = format!("http://{}{}", receiver_listener.local_addr()?, model::contract::WEBHOOK_PATH);
    let emulator = match &args.hubspot_url {
        Some(url) => {
            integration.spec.api.base_url = url.clone();
            None
        }
        None => {
            let listener = tokio::net::TcpListener::bind(args.emulator_listen)
                .await
                .with_context(|| format!("cannot listen on {} for the emulator", args.emulator_listen))?;
            let emulator = RunningEmulator::start(
                EmulatorConfig {
                    tokens: vec![TokenGrant { token: token.clone(), scopes: None }],
                    webhook_url: Some(webhook_url.clone()),
                    client_secret: client_secret.clone(),
                    portal_id: integration.spec.portal_id.unwrap_or(EmulatorConfig::default().portal_id),
                    seed: args.seed,
                    tier: integration.spec.api.tier,
                    ..Default::default()
                },
                listener,
            )
            .await?;
            integration.spec.api.base_url = emulator.base_url();
            Some(emulator)
        }
    };

    let mut config = resources::receiver_config(&integration, &manifests.mappings, &secrets)?;
    config.hubspot.access_token = token.clone();
    config.hubspot.access_token_file = None;
    config.listen = receiver_listener.local_addr()?;
    config.status_listen = args.status_listen;
    config.data_dir = args.data_dir.clone();
    config.admin.listen = args.admin_listen;
    let metrics = Arc::new(Metrics::default());
    let client = HubSpotClient::new(config.hubspot.client_settings()).with_observer(metrics.clone());
    let event_types = register_event_types(&client, &integration, &manifests.event_types).await;
    config.timeline_event_types = resources::timeline_event_types_of(&integration, &event_types);

    println!("hubspot-operator dev: {} manifests from {}", manifests.len(), display_paths(&args.files));
    match &emulator {
        Some(emulator) => {
            let base = emulator.base_url();
            println!("  HubSpot emulator  {base} ({} seeded contacts)", args.seed);
            println!("  webhook receiver  {webhook_url}");
            println!("  status            http://{}/metrics, /sync/status", args.status_listen);
            println!("  admin API         http://{} (hubspot-operator dead-letters)", args.admin_listen);
            if config.ingest.is_some() {
                for mapping in &config.mappings {
                    println!("  ingest API        http://{}/ingest/{}", config.listen, mapping.name);
                }
                for event_type in &config.timeline_event_types {
                    println!("  timeline API      http://{}/timeline/{}", config.listen, event_type.qualified_name());
                }
            }
            println!("  data              {}/", args.data_dir.display());
            println!("Change a contact as a HubSpot user would:");
            println!(
                "  curl -s -X PATCH {base}/_emulator/objects/contacts/1 -H 'content-type: application/json' \\\n    -d '{{\"properties\":{{\"firstname\":\"Augusta Ada\"}}}}'"
            );
        }
        None => println!("  HubSpot {}; point your app's webhooks at {webhook_url}", integration.spec.api.base_url),
    }

    let http = reqwest::Client::new();
    let receiver = tokio::spawn(receiver::run(config.clone(), receiver_listener, metrics.clone(), async {
        crate::shutdown::signal().await;
    }));
    let mut display = StatusDisplay::default();
    let mut statuses = reconcile(&client, &integration, &manifests.mappings, &http, config.status_listen).await;
    let mut next_resync = tokio::time::Instant::now() + args.resync;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut receiver = std::pin::pin!(receiver);
    loop {
        tokio::select! {
            finished = &mut receiver => {
                if let Some(emulator) = emulator {
                    emulator.shutdown().await;
                }
                return finished?;
            }
            _ = tick.tick() => {}
        }
        if tokio::time::Instant::now() >= next_resync {
            statuses = reconcile(&client, &integration, &manifests.mappings, &http, config.status_listen).await;
            next_resync = tokio::time::Instant::now() + args.resync;
        }
        display.show(&statuses, &sync_counters(&metrics, &config));
    }
}

/// What the controller would register of the integration's timeline event types: a private
/// app's custom event definitions, kept in HubSpot (the emulator); each type so registered comes
/// back with the status that puts it into the receiver's config. App events and legacy
/// templates need an OAuth app, which dev mode does not run.
async fn register_event_types(
    client: &HubSpotClient,
    integration: &HubSpotIntegration,
    event_types: &[HubSpotTimelineEventType],
) -> Vec<HubSpotTimelineEventType> {
    let mut registered = Vec::new();
    let of_integration = event_types
        .iter()
        .filter(|e| e.namespace() == integration.namespace() && e.spec.integration_ref.name == integration.name_any());
    for event_type in of_integration.filter(|e| !is_paused(*e)) {
        let name = format!("{}/{}", event_type.namespace().unwrap_or_default(), event_type.name_any());
        let carrier = operator::timeline::build::carrier(integration, &event_type.spec);
        if carrier != Carrier::CustomEvents {
            eprintln!(
                "dev: HubSpotTimelineEventType {name} needs an OAuth app ({carrier:?}); dev mode sends custom events only"
            );
            continue;
        }
        match operator::timeline::keep_definition(&event_type.spec, client, &mut Vec::new()).await {
            operator::timeline::Visit::Registered { hubspot_name, .. } => {
                let mut event_type = event_type.clone();
                event_type.status = Some(HubSpotTimelineEventTypeStatus {
                    carrier: Some(carrier),
                    hubspot_name: Some(hubspot_name),
                    ..Default::default()
                });
                registered.push(event_type);
            }
            other => eprintln!("dev: HubSpotTimelineEventType {name} not registered: {other:?}"),
        }
    }
    registered
}

fn pick_integration(manifests: &Manifests, name: Option<&str>) -> anyhow::Result<HubSpotIntegration> {
    let names = || manifests.integrations.iter().map(|i| i.name_any()).collect::<Vec<_>>().join(", ");
    match (name, manifests.integrations.as_slice()) {
        (_, []) => bail!("the manifests hold no HubSpotIntegration"),
        (None, [only]) => Ok(only.clone()),
        (None, _) => {
            bail!("the manifests hold several HubSpotIntegrations ({}): choose one with --integration", names())
        }
        (Some(name), all) => all
            .iter()
            .find(|i| i.name_any() == name)
            .cloned()
            .with_context(|| format!("no HubSpotIntegration {name:?} in the manifests ({})", names())),
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Each resource's name and conditions after one reconcile.
struct ResourceStatus {
    kind: &'static str,
    name: String,
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

/// What the controller would decide, with the in-process receiver standing in for the
/// StatefulSet. Paused objects are not checked, as the controller leaves them alone.
async fn reconcile(
    client: &HubSpotClient,
    integration: &HubSpotIntegration,
    mappings: &[PropertyMapping],
    http: &reqwest::Client,
    status_address: std::net::SocketAddr,
) -> Vec<ResourceStatus> {
    let integration_conditions = if is_paused(integration) {
        paused_conditions(integration, integration_conditions::READY)
    } else {
        let auth = match client.introspect_token().await {
            Ok(info) => Authentication::Succeeded(info),
            Err(e) => Authentication::Failed(e),
        };
        let receiver = ReceiverRollout::Deployed { available_replicas: 1, desired_replicas: 1 };
        status::integration_status(integration, &auth, &receiver, None, None, None).conditions
    };
    let qualified = |r: &dyn Fn() -> (Option<String>, String)| {
        let (namespace, name) = r();
        format!("{}/{name}", namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into()))
    };
    let mut statuses = vec![ResourceStatus {
        kind: "HubSpotIntegration",
        name: qualified(&|| (integration.namespace(), integration.name_any())),
        conditions: integration_conditions,
    }];
    for mapping in mappings {
        let conditions = if is_paused(mapping) {
            paused_conditions(mapping, mapping_conditions::READY)
        } else {
            let lookup = if resources::mappings_of(integration, [mapping]).is_empty() {
                PropertyLookup::IntegrationNotFound
            } else {
                match client.list_property_names(&mapping.spec.records.object_type).await {
                    Ok(names) => PropertyLookup::Listed(std::sync::Arc::new(names.into_iter().collect())),
                    Err(e) => PropertyLookup::Failed(e),
                }
            };
            let receivers = match lookup {
                PropertyLookup::IntegrationNotFound => ReceiverReports::integration_not_found(),
                _ => receiver_reports::ask(http, &[receiver_reports::report_url(status_address)]).await,
            };
            status::mapping_status(mapping, &lookup, &receivers).conditions
        };
        statuses.push(ResourceStatus {
            kind: "PropertyMapping",
            name: qualified(&|| (mapping.namespace(), mapping.name_any())),
            conditions,
        });
    }
    statuses
}

/// The conditions of an object paused by its `hubspot.io/paused` annotation: `type_` Unknown
/// with reason `Paused`, as the controller writes it. Nothing was observed, so nothing else.
fn paused_conditions(
    object: &impl kube::Resource,
    type_: &str,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let mut conditions = Vec::new();
    status::mark_paused(&mut conditions, type_, object.meta().generation);
    conditions
}

fn sync_counters(metrics: &Metrics, config: &model::config::ReceiverConfig) -> String {
    let requests =
        |outcome: &str| metrics.webhook_requests.get_or_create(&OutcomeLabels { outcome: outcome.into() }).get();
    let events = |outcome: &str| metrics.webhook_events.get_or_create(&OutcomeLabels { outcome: outcome.into() }).get();
    let rejected: u64 = ["unauthorized", "malformed", "too_large", "unavailable"].iter().map(|o| requests(o)).sum();
    let mut line = format!(
        "webhooks {} accepted, {rejected} rejected; events {} stored, {} duplicate, {} ignored, {} pending",
        requests("accepted"),
        events("appended"),
        events("duplicate"),
        events("ignored"),
        metrics.events_pending.get(),
    );
    let dead_letters = metrics.dead_letters.get();
    if dead_letters > 0 {
        line.push_str(&format!("; {dead_letters} dead letters (`hubspot-operator dead-letters list`)"));
    }
    for mapping in &config.mappings {
        for (index, sink) in mapping.sinks.iter().enumerate() {
            let labels = SinkLabels { mapping: mapping.name.clone(), sink: sink.label(index) };
            line.push_str(&format!(
                "\n    {} → {}: {} delivered, {} failed attempts, {} dead-lettered",
                mapping.name,
                labels.sink,
                metrics.records_delivered.get_or_create(&labels).get(),
                metrics.sink_failures.get_or_create(&labels).get(),
                metrics.records_dead_lettered.get_or_create(&labels).get()
            ));
        }
    }
    line
}

/// Prints the status block whenever it differs from the last one printed.
#[derive(Default)]
struct StatusDisplay {
    last: String,
}

impl StatusDisplay {
    fn show(&mut self, statuses: &[ResourceStatus], counters: &str) {
        let mut block = String::new();
        for resource in statuses {
            let summary: Vec<String> =
                resource.conditions.iter().map(|c| format!("{}={} ({})", c.type_, c.status, c.reason)).collect();
            block.push_str(&format!("  {:<19} {:<24} {}\n", resource.kind, resource.name, summary.join("  ")));
            for c in
                resource.conditions.iter().filter(|c| c.status != model::api::conditions::TRUE && c.type_ != "Ready")
            {
                block.push_str(&format!("      {}: {}\n", c.type_, c.message));
            }
        }
        block.push_str(&format!("  sync: {counters}\n"));
        if block != self.last {
            let now = k8s_openapi::jiff::Timestamp::now().strftime("%H:%M:%S");
            println!("\n[{now}]\n{block}");
            self.last = block;
        }
    }
}

/// The resources of a set of manifest files.
#[derive(Debug, Default)]
pub struct Manifests {
    pub integrations: Vec<HubSpotIntegration>,
    pub mappings: Vec<PropertyMapping>,
    pub event_types: Vec<HubSpotTimelineEventType>,
    pub secrets: Vec<Secret>,
}

/// Namespace given to manifests that name none, as `kubectl apply` would.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Manifests {
    /// Number of resources read.
    pub fn len(&self) -> usize {
        self.integrations.len() + self.mappings.len() + self.event_types.len() + self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads every `.yaml`/`.yml` file in `paths` (files, or directories read non-recursively).
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut manifests = Manifests::default();
        for path in paths {
            if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                    .collect();
                files.sort();
                for file in files {
                    manifests.load_file(&file)?;
                }
            } else {
                manifests.load_file(path)?;
            }
        }
        Ok(manifests)
    }

    fn load_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
                .with_context(|| format!("{}: document {} is not YAML", path.display(), index + 1))?;
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
            let at = || format!("{}: document {} ({kind})", path.display(), index + 1);
            match kind.as_str() {
                "HubSpotIntegration" => {
                    self.integrations.push(with_namespace(serde_yaml::from_value(value).with_context(at)?))
                }
                "PropertyMapping" => {
                    self.mappings.push(with_namespace(serde_yaml::from_value(value).with_context(at)?))
                }
                // Read so mistakes are named, but not reconciled: dev mode does not manage
                // HubSpot properties yet (the controller does).
                "HubSpotProperty" => {
                    serde_yaml::from_value::<model::api::HubSpotProperty>(value).with_context(at)?;
                }
                "HubSpotTimelineEventType" => {
                    self.event_types.push(with_namespace(serde_yaml::from_value(value).with_context(at)?))
                }
                "Secret" => {
                    self.secrets.push(with_namespace(serde_yaml::from_value::<Secret>(value).with_context(at)?));
                }
                "" => bail!("{}: missing `kind`", at()),
                other => bail!("{}: kind {other} is not used by hubspot-operator", at()),
            }
        }
        Ok(())
    }

    /// The Secrets of `namespace`, as the controller would read them.
    pub fn secrets_of(&self, namespace: &str) -> SecretStore {
        SecretStore::new(self.secrets.iter().filter(|s| s.metadata.namespace.as_deref() == Some(namespace)).cloned())
    }
}

trait Namespaced {
    fn namespace_mut(&mut self) -> &mut Option<String>;
}
impl<K: kube::Resource> Namespaced for K {
    fn namespace_mut(&mut self) -> &mut Option<String> {
        &mut self.meta_mut().namespace
    }
}

fn with_namespace<T: Namespaced>(mut resource: T) -> T {
    resource.namespace_mut().get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_load() {
        let m = Manifests::load(&[PathBuf::from("examples")]).unwrap();
        assert_eq!(m.integrations.len(), 1);
        assert_eq!(m.mappings.len(), 1);
        let integration = &m.integrations[0];
        assert_eq!(integration.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        let token_ref = integration.spec.credentials.private_app_token.as_ref().unwrap();
        let token = m.secrets_of(DEFAULT_NAMESPACE).value(token_ref).unwrap();
        assert!(token.starts_with("pat-"));
    }

    #[test]
    fn unknown_kinds_and_bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap();
        let err = Manifests::load(std::slice::from_ref(&file)).unwrap_err().to_string();
        assert!(err.contains("ConfigMap") && err.contains("bad.yaml"), "{err}");
        std::fs::write(&file, "apiVersion: hubspot.io/v1alpha1\nkind: PropertyMapping\nmetadata: {name: x}\nspec: {objectType: contacts}\n").unwrap();
        let err = format!("{:#}", Manifests::load(&[file]).unwrap_err());
        assert!(err.contains("integrationRef"), "{err}");
    }
}
