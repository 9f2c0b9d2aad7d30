//! `hubspot-operator rejected`: lists, resends and discards the records bound for HubSpot that
//! HubSpot refused, and with `--timeline` the refused timeline occurrences, through a receiver's
//! admin API (`crates/receiver/src/server/admin.rs`).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::dead_letters::{AdminConnection, summary, table};
use receiver::reverse::StoredRejection;
use receiver::timeline::RejectedOccurrence;

#[derive(Args, Debug)]
pub struct RejectedArgs {
    #[command(flatten)]
    pub admin: AdminConnection,
    #[command(subcommand)]
    pub command: RejectedCommand,
}

#[derive(Subcommand, Debug)]
pub enum RejectedCommand {
    /// List rejected records, oldest first, with HubSpot's reasons.
    List {
        /// Only this mapping (`namespace/name`).
        #[arg(long, conflicts_with = "timeline")]
        mapping: Option<String>,
        /// Timeline occurrences instead of records.
        #[arg(long)]
        timeline: bool,
        /// Only occurrences of this timeline event type (`namespace/name`).
        #[arg(long, requires = "timeline")]
        event_type: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = receiver::server::admin::DEFAULT_LIST_LIMIT)]
        limit: usize,
    },
    /// Queue rejected records to be written to HubSpot again, once the cause is fixed (for
    /// example a missing enumeration option added to the property). Each keeps its original
    /// change time, so the mapping's conflict policy judges it as it was.
    Resend(Selection),
    /// Remove rejected records without writing them.
    Discard(Selection),
}

#[derive(Args, Debug)]
pub struct Selection {
    /// Rejected record (or, with `--timeline`, occurrence) ids.
    pub ids: Vec<i64>,
    /// Only this mapping (`namespace/name`).
    #[arg(long, conflicts_with = "timeline")]
    pub mapping: Option<String>,
    /// Timeline occurrences instead of records.
    #[arg(long)]
    pub timeline: bool,
    /// Only occurrences of this timeline event type (`namespace/name`).
    #[arg(long, requires = "timeline")]
    pub event_type: Option<String>,
    /// Every rejected record (or occurrence).
    #[arg(long, conflicts_with_all = ["ids", "mapping", "event_type"])]
    pub all: bool,
}

impl Selection {
    fn body(&self) -> Value {
        if self.timeline {
            json!({ "ids": self.ids, "eventType": self.event_type, "all": self.all })
        } else {
            json!({ "ids": self.ids, "mapping": self.mapping, "all": self.all })
        }
    }

    /// The admin path of `operation` for what is selected.
    fn path(&self, operation: &str) -> String {
        let records = if self.timeline { "/admin/rejected/timeline" } else { "/admin/rejected" };
        format!("{records}/{operation}")
    }
}

pub async fn run(args: RejectedArgs) -> anyhow::Result<()> {
    let client = args.admin.client();
    let (output, text) = match &args.command {
        RejectedCommand::List { mapping, limit, timeline: false, .. } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(mapping.clone().map(|m| ("mapping", m)));
            let listed = client.send(reqwest::Method::GET, "/admin/rejected", &query, None).await?;
            let text = list_table(&listed)?;
            (listed, text)
        }
        RejectedCommand::List { limit, timeline: true, event_type, .. } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(event_type.clone().map(|t| ("eventType", t)));
            let listed = client.send(reqwest::Method::GET, "/admin/rejected/timeline", &query, None).await?;
            let text = occurrence_table(&listed)?;
            (listed, text)
        }
        RejectedCommand::Resend(selection) => {
            let path = selection.path("resend");
            let report = client.send(reqwest::Method::POST, &path, &[], Some(selection.body())).await?;
            let text = summary(&report, &["resent", "notResendable"]);
            (report, text)
        }
        RejectedCommand::Discard(selection) => {
            let path = selection.path("discard");
            let report = client.send(reqwest::Method::POST, &path, &[], Some(selection.body())).await?;
            let text = summary(&report, &["discarded"]);
            (report, text)
        }
    };
    args.admin.print(&output, &text)
}

/// One line per rejected record.
fn list_table(listed: &Value) -> anyhow::Result<String> {
    let rejected: Vec<StoredRejection> =
        serde_json::from_value(listed["rejected"].clone()).context("reading the listed rejected records")?;
    let mut rows = vec![["ID", "MAPPING", "KEY", "REJECTED", "STATUS", "CATEGORY", "MESSAGE"].map(String::from)];
    for stored in &rejected {
        let r = &stored.rejection;
        rows.push([
            stored.id.to_string(),
            r.mapping.clone(),
            r.key.clone(),
            receiver::sync::plan::format_ms(r.rejected_at),
            r.status.to_string(),
            r.category.clone(),
            r.message.clone(),
        ]);
    }
    let total = listed["total"].as_i64().unwrap_or_default();
    Ok(table(&rows, &format!("{} of {total} rejected records", rejected.len())))
}

/// One line per refused timeline occurrence.
fn occurrence_table(listed: &Value) -> anyhow::Result<String> {
    let rejected: Vec<RejectedOccurrence> =
        serde_json::from_value(listed["rejected"].clone()).context("reading the listed rejected occurrences")?;
    let mut rows =
        vec![["ID", "EVENT TYPE", "OCCURRENCE", "REJECTED", "STATUS", "CATEGORY", "MESSAGE"].map(String::from)];
    for r in &rejected {
        rows.push([
            r.id.to_string(),
            r.occurrence.event_type.clone(),
            r.occurrence.id.clone(),
            receiver::sync::plan::format_ms(r.rejected_at),
            r.refusal.status.to_string(),
            r.refusal.category.clone(),
            r.refusal.message.clone(),
        ]);
    }
    let total = listed["total"].as_i64().unwrap_or_default();
    Ok(table(&rows, &format!("{} of {total} rejected timeline occurrences", rejected.len())))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RejectedArgs,
    }

    #[test]
    fn selections_name_ids_a_mapping_or_all() {
        let cli = Cli::try_parse_from(["rejected", "resend", "3", "4"]).unwrap();
        assert!(matches!(cli.args.command, RejectedCommand::Resend(Selection { ref ids, .. }) if *ids == [3, 4]));
        let cli = Cli::try_parse_from(["rejected", "discard", "--mapping", "crm/contacts", "--json"]).unwrap();
        assert!(cli.args.admin.json);
        assert!(Cli::try_parse_from(["rejected", "resend", "3", "--all"]).is_err());
        assert!(Cli::try_parse_from(["rejected", "discard", "--sink", "http-0"]).is_err(), "no destination here");
        let cli = Cli::try_parse_from(["rejected", "resend", "--timeline", "--event-type", "crm/used"]).unwrap();
        let RejectedCommand::Resend(selection) = &cli.args.command else { panic!("a resend") };
        assert_eq!(selection.path("resend"), "/admin/rejected/timeline/resend");
        assert_eq!(selection.body(), json!({"ids": [], "eventType": "crm/used", "all": false}));
        assert!(Cli::try_parse_from(["rejected", "list", "--event-type", "crm/used"]).is_err(), "needs --timeline");
        assert!(Cli::try_parse_from(["rejected", "list", "--timeline", "--mapping", "crm/contacts"]).is_err());
    }
}
