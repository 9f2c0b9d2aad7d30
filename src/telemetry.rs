//! Logging setup shared by every subcommand.

/// Installs the tracing subscriber: human-readable, or JSON lines when `json` is set.
/// `RUST_LOG` overrides the default `info` level.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
