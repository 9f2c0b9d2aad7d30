//! `hubspot-operator dead-letters`: the command-line client of a receiver's admin API
//! (`crates/receiver/src/server/admin.rs`). Reach a receiver in a cluster with
//! `kubectl port-forward pod/<integration>-receiver-0 8082`, or, when its integration sets
//! `spec.receiver.admin.exposed`, at port 8082 of the receiver Service with `--token`.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use receiver::sync::DeadLetter;

#[derive(Args, Debug)]
pub struct DeadLettersArgs {
    #[command(flatten)]
    pub admin: AdminConnection,
    #[command(subcommand)]
    pub command: DeadLettersCommand,
}

/// How to reach a receiver's admin API, and how to print its answers.
#[derive(Args, Debug)]
pub struct AdminConnection {
    /// Base URL of the receiver's admin API.
    #[arg(long, global = true, env = "HUBSPOT_OPERATOR_RECEIVER", default_value = "http://127.0.0.1:8082")]
    pub receiver: String,
    /// Bearer token, when the receiver's config sets `admin.token`.
    #[arg(long, global = true, env = "HUBSPOT_OPERATOR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table or summary.
    #[arg(long, global = true)]
    pub json: bool,
}

impl AdminConnection {
    pub(crate) fn client(&self) -> AdminClient {
        AdminClient {
            http: reqwest::Client::new(),
            base: self.receiver.trim_end_matches('/').into(),
            token: self.token.clone(),
        }
    }

    /// Prints the API's JSON with `--json`, else `text`.
    pub(crate) fn print(&self, output: &Value, text: &str) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(output)?);
        } else {
            println!("{text}");
        }
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
pub enum DeadLettersCommand {
    /// List dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = receiver::server::admin::DEFAULT_LIST_LIMIT)]
        limit: usize,
    },
    /// Show one dead letter with its record.
    Show { id: i64 },
    /// Deliver dead letters again, with their objects' current state read from HubSpot.
    Redrive(Selection),
    /// Remove dead letters without delivering them.
    Discard(Selection),
    /// Send again to a destination every object it took at or after a time, current state.
    Replay {
        /// RFC 3339 time, e.g. 2026-11-26T18:00:00Z.
        #[arg(long)]
        since: String,
        /// The mapping (`namespace/name`).
        #[arg(long)]
        mapping: String,
        /// The destination (`http-0`); every destination of the mapping when left out.
        #[arg(long)]
        sink: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Only this mapping (`namespace/name`).
    #[arg(long)]
    pub mapping: Option<String>,
    /// Only this destination (`http-0`, as in metrics).
    #[arg(long)]
    pub sink: Option<String>,
}

#[derive(Args, Debug)]
pub struct Selection {
    /// Dead letter ids.
    pub ids: Vec<i64>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Every dead letter.
    #[arg(long, conflicts_with_all = ["ids", "mapping", "sink"])]
    pub all: bool,
}

impl Selection {
    fn body(&self) -> Value {
        json!({ "ids": self.ids, "mapping": self.filter.mapping, "sink": self.filter.sink, "all": self.all })
    }
}

pub async fn run(args: DeadLettersArgs) -> anyhow::Result<()> {
    let client = args.admin.client();
    let (output, table) = match &args.command {
        DeadLettersCommand::List { filter, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(filter.mapping.clone().map(|m| ("mapping", m)));
            query.extend(filter.sink.clone().map(|s| ("sink", s)));
            let listed = client.send(reqwest::Method::GET, "/admin/dead-letters", &query, None).await?;
            let table = list_table(&listed)?;
            (listed, table)
        }
        DeadLettersCommand::Show { id } => {
            let shown = client.send(reqwest::Method::GET, &format!("/admin/dead-letters/{id}"), &[], None).await?;
            let pretty = serde_json::to_string_pretty(&shown)?;
            (shown, pretty)
        }
        DeadLettersCommand::Redrive(selection) => {
            let path = "/admin/dead-letters/redrive";
            let report = client.send(reqwest::Method::POST, path, &[], Some(selection.body())).await?;
            let summary = summary(&report, &["selected", "delivered", "alreadyDelivered", "refused", "failed"]);
            (report, summary)
        }
        DeadLettersCommand::Discard(selection) => {
            let path = "/admin/dead-letters/discard";
            let report = client.send(reqwest::Method::POST, path, &[], Some(selection.body())).await?;
            let summary = summary(&report, &["discarded"]);
            (report, summary)
        }
        DeadLettersCommand::Replay { since, mapping, sink } => {
            let body = json!({ "since": since, "mapping": mapping, "sink": sink });
            let report = client.send(reqwest::Method::POST, "/admin/replay", &[], Some(body)).await?;
            let summary = summary(&report, &["delivered", "refused"]);
            (report, summary)
        }
    };
    args.admin.print(&output, &table)
}

pub(crate) struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    /// Sends one request; a non-2xx answer is an error carrying the API's message.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!("calling the receiver's admin API at {url} (in a cluster, is `kubectl port-forward` running?)")
        })?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let message = body["error"].as_str().map_or_else(|| body.to_string(), str::to_string);
            anyhow::bail!("{url}: {status}: {message}");
        }
        Ok(body)
    }
}

/// One line per dead letter.
fn list_table(listed: &Value) -> anyhow::Result<String> {
    let letters: Vec<DeadLetter> =
        serde_json::from_value(listed["deadLetters"].clone()).context("reading the listed dead letters")?;
    let mut rows =
        vec![["ID", "MAPPING", "SINK", "OBJECT", "OP", "ATTEMPTS", "LAST FAILURE", "REASON"].map(String::from)];
    for letter in &letters {
        let op = serde_json::to_value(letter.record.op)?.as_str().unwrap_or_default().to_string();
        rows.push([
            letter.id.to_string(),
            letter.mapping.clone(),
            letter.sink.clone(),
            letter.object_id.clone(),
            op,
            letter.attempts.to_string(),
            receiver::sync::plan::format_ms(letter.last_failed_at_ms),
            letter.reason.clone(),
        ]);
    }
    let total = listed["total"].as_i64().unwrap_or_default();
    Ok(table(&rows, &format!("{} of {total} dead letters", letters.len())))
}

/// `rows` in left-aligned columns, then `footer`.
pub(crate) fn table<const N: usize>(rows: &[[String; N]], footer: &str) -> String {
    let widths: Vec<usize> = (0..N).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let lines = rows.iter().map(|row| {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        cells.join("  ").trim_end().to_string()
    });
    lines.chain(std::iter::once(footer.to_string())).collect::<Vec<_>>().join("\n")
}

/// `delivered: 3, refused: 1` and any errors, one per line.
pub(crate) fn summary(report: &Value, fields: &[&str]) -> String {
    let counts: Vec<String> = fields.iter().map(|f| format!("{f}: {}", report[*f])).collect();
    let errors = report["errors"].as_array().into_iter().flatten().filter_map(Value::as_str);
    std::iter::once(counts.join(", ")).chain(errors.map(|e| format!("error: {e}"))).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DeadLettersArgs,
    }

    #[test]
    fn calls_the_default_admin_address_unless_told_otherwise() {
        let cli = Cli::try_parse_from(["dead-letters", "list"]).unwrap();
        assert_eq!(cli.args.admin.receiver, format!("http://{}", model::config::DEFAULT_ADMIN_LISTEN));
        let cli = Cli::try_parse_from(["dead-letters", "redrive", "3", "4", "--json"]).unwrap();
        assert!(cli.args.admin.json);
        assert!(matches!(cli.args.command, DeadLettersCommand::Redrive(Selection { ref ids, .. }) if *ids == [3, 4]));
        assert!(Cli::try_parse_from(["dead-letters", "discard", "3", "--all"]).is_err());
        assert!(Cli::try_parse_from(["dead-letters", "replay", "--mapping", "a/b"]).is_err(), "--since is required");
    }
}
