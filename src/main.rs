use clap::{Parser, Subcommand};

/// hubspot-operator: declare a HubSpot integration as Kubernetes resources and keep it running.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as YAML (pipe to `kubectl apply -f -`).
    Crd,
    /// Run the operator: reconcile HubSpotIntegrations and PropertyMappings.
    Controller(operator::ControllerArgs),
    /// Run the whole system on this machine, no cluster: HubSpot emulator, reconcile, receiver
    /// and worker, with live status.
    Dev(hubspot_operator::dev::DevArgs),
    /// Benchmarks: webhook ingress (default), HubSpot API efficiency, change lag, client soak.
    Bench(hubspot_operator::bench::BenchArgs),
    /// Run the webhook receiver and sync worker of one integration.
    Receiver {
        /// Receiver config file (YAML or JSON), as the controller renders it.
        #[arg(long, env = "HUBSPOT_OPERATOR_CONFIG")]
        config: std::path::PathBuf,
    },
    /// Inspect, redrive and discard a receiver's dead letters; replay deliveries since a time.
    DeadLetters(hubspot_operator::dead_letters::DeadLettersArgs),
    /// List, resend and discard the records bound for HubSpot that HubSpot refused.
    Rejected(hubspot_operator::rejected::RejectedArgs),
    /// Run a local HubSpot API emulator (CRM objects, properties, scopes, rate limits, signed webhooks).
    Emulator(Box<emulator::EmulatorArgs>),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let service_name = match cli.command {
        Command::Receiver { .. } => hubspot_operator::telemetry::RECEIVER_SERVICE_NAME,
        _ => hubspot_operator::telemetry::OPERATOR_SERVICE_NAME,
    };
    let telemetry = hubspot_operator::telemetry::init(cli.log_json, service_name);
    let outcome = run(cli.command).await;
    // After a graceful shutdown (or a failure), so the spans of its last moments are exported.
    telemetry.shutdown();
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // What failed and why, on one line, for the person who runs it: neither the Debug
            // form nor the backtrace that `RUST_BACKTRACE` would add to it.
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `text` with its line breaks folded into spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Crd => print!("{}", model::api::crds_yaml()),
        Command::Controller(args) => operator::run(args, hubspot_operator::shutdown::signal()).await?,
        Command::Emulator(args) => emulator::run_cli(*args, hubspot_operator::shutdown::signal()).await?,
        Command::Receiver { config } => run_receiver(&config).await?,
        Command::Dev(args) => hubspot_operator::dev::run(args).await?,
        Command::Bench(args) => hubspot_operator::bench::run(args).await?,
        Command::DeadLetters(args) => hubspot_operator::dead_letters::run(args).await?,
        Command::Rejected(args) => hubspot_operator::rejected::run(args).await?,
    }
    Ok(())
}

async fn run_receiver(path: &std::path::Path) -> anyhow::Result<()> {
    let config = model::config::ReceiverConfig::load(path)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(integration = %config.integration, listen = %config.listen, mappings = config.mappings.len(), "receiver starting");
    let metrics = std::sync::Arc::new(receiver::metrics::Metrics::default());
    receiver::run(config, listener, metrics, hubspot_operator::shutdown::signal()).await
}
