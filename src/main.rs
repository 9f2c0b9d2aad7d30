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
    /// Run a local HubSpot API emulator (CRM objects, properties, scopes, rate limits, signed webhooks).
    Emulator(hubspot_operator::emulator::EmulatorArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    hubspot_operator::telemetry::init_logging(cli.log_json);
    match cli.command {
        Command::Crd => print!("{}", hubspot_operator::api::crds_yaml()),
        Command::Emulator(args) => hubspot_operator::emulator::run_cli(args).await?,
    }
    Ok(())
}
