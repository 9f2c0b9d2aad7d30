//! Deal and ticket pipelines and their stages: the records' `pipeline` / `hs_pipeline` and
//! `dealstage` / `hs_pipeline_stage` hold their ids. Every account starts with HubSpot's default
//! sales pipeline (`default`) and support pipeline (`0`) with HubSpot's default stage ids; more
//! are created through `/crm/v3/pipelines/{objectType}`. Archived pipelines and stages stay
//! stored (HubSpot reads them back with `archived`), but no record can be moved into them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::iso8601;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;

/// The first id of a pipeline or stage created through the API; HubSpot's are large numbers.
const FIRST_CREATED_ID: u64 = 1_000_001;

/// One pipeline as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    pub stages: Vec<Stage>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub archived_at_ms: Option<i64>,
}

/// One stage of a pipeline as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    /// `probability` and `isClosed` for deals, `ticketState` for tickets, as strings.
    pub metadata: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub archived_at_ms: Option<i64>,
}

/// A stage in a create or replace body, or the fields of a stage update.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageInput {
    pub label: Option<String>,
    pub display_order: Option<i64>,
    pub metadata: Option<BTreeMap<String, Value>>,
    pub archived: Option<bool>,
}

/// A pipeline create or replace body, or the fields of a pipeline update.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineInput {
    pub label: Option<String>,
    pub display_order: Option<i64>,
    pub stages: Option<Vec<StageInput>>,
    pub archived: Option<bool>,
}

/// The pipelines of the object types that have them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipelines {
    deals: Vec<Pipeline>,
    tickets: Vec<Pipeline>,
    next_id: u64,
}

fn archived_json(v: &mut Value, archived_at_ms: Option<i64>) {
    v["archived"] = json!(archived_at_ms.is_some());
    if let Some(at) = archived_at_ms {
        v["archivedAt"] = json!(iso8601(at));
    }
}

impl Stage {
    pub fn is_live(&self) -> bool {
        self.archived_at_ms.is_none()
    }

    /// HubSpot's JSON for a stage (`PipelineStage`).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "label": self.label,
            "displayOrder": self.display_order,
            "metadata": self.metadata,
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
            "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        });
        archived_json(&mut v, self.archived_at_ms);
        v
    }
}

impl Pipeline {
    pub fn is_live(&self) -> bool {
        self.archived_at_ms.is_none()
    }

    /// HubSpot's JSON for a pipeline (`Pipeline`), with its live stages in display order.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "label": self.label,
            "displayOrder": self.display_order,
            "stages": self.live_stages().map(Stage::to_json).collect::<Vec<_>>(),
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
        });
        archived_json(&mut v, self.archived_at_ms);
        v
    }

    /// The live stages, in display order (ties by label, as HubSpot sorts them).
    pub fn live_stages(&self) -> impl Iterator<Item = &Stage> {
        let mut stages: Vec<&Stage> = self.stages.iter().filter(|s| s.is_live()).collect();
        stages.sort_by(|a, b| (a.display_order, &a.label).cmp(&(b.display_order, &b.label)));
        stages.into_iter()
    }

    pub fn has_live_stage(&self, stage_id: &str) -> bool {
        self.stages.iter().any(|s| s.id == stage_id && s.is_live())
    }
}

/// `(id, label, probability)` of HubSpot's default sales pipeline's stages.
const DEFAULT_DEAL_STAGES: [(&str, &str, &str); 7] = [
    ("appointmentscheduled", "Appointment Scheduled", "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4"),
    ("presentationscheduled", "Presentation Scheduled", "0.6"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
    ("contractsent", "Contract Sent", "0.9"),
    ("closedwon", "Closed Won", "1.0"),
    ("closedlost", "Closed Lost", "0.0"),
];

/// `(id, label, ticketState)` of HubSpot's default support pipeline's stages.
const DEFAULT_TICKET_STAGES: [(&str, &str, &str); 4] = [
    ("1", "New", "OPEN"),
    ("2", "Waiting on contact", "OPEN"),
    ("3", "Waiting on us", "OPEN"),
    ("4", "Closed", "CLOSED"),
];

/// The pipeline records of a type are in when they name none.
pub fn default_pipeline_id(t: ObjectType) -> Option<&'static str> {
    match t {
        ObjectType::Deals => Some("default"),
        ObjectType::Tickets => Some(crate::schema::DEFAULT_TICKET_PIPELINE),
        _ => None,
    }
}

/// The properties holding a record's pipeline and stage, for the types with pipelines.
pub fn pipeline_properties(t: ObjectType) -> Option<(&'static str, &'static str)> {
    match t {
        ObjectType::Deals => Some(("pipeline", "dealstage")),
        ObjectType::Tickets => Some(("hs_pipeline", "hs_pipeline_stage")),
        _ => None,
    }
}

fn default_stage(order: usize, id: &str, label: &str, metadata: &[(&str, &str)]) -> Stage {
    Stage {
        id: id.into(),
        label: label.into(),
        display_order: order as i64,
        metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        // HubSpot's default pipelines and their stages carry the epoch as their creation time.
        created_at_ms: 0,
        updated_at_ms: 0,
        archived_at_ms: None,
    }
}

impl Default for Pipelines {
    /// HubSpot's default sales and support pipelines.
    fn default() -> Self {
        let deal_stages = DEFAULT_DEAL_STAGES
            .iter()
            .enumerate()
            .map(|(i, (id, label, probability))| {
                let closed = if matches!(*id, "closedwon" | "closedlost") { "true" } else { "false" };
                default_stage(i, id, label, &[("isClosed", closed), ("probability", probability)])
            })
            .collect();
        let ticket_stages = DEFAULT_TICKET_STAGES
            .iter()
            .enumerate()
            .map(|(i, (id, label, state))| default_stage(i, id, label, &[("ticketState", state)]))
            .collect();
        let pipeline = |id: &str, label: &str, stages| Pipeline {
            id: id.into(),
            label: label.into(),
            display_order: 0,
            stages,
            created_at_ms: 0,
            updated_at_ms: 0,
            archived_at_ms: None,
        };
        Self {
            deals: vec![pipeline("default", "Sales Pipeline", deal_stages)],
            tickets: vec![pipeline(crate::schema::DEFAULT_TICKET_PIPELINE, "Support Pipeline", ticket_stages)],
            next_id: FIRST_CREATED_ID,
        }
    }
}

impl Pipelines {
    /// The pipelines of a type, archived ones included; HubSpot's 400 for a type without any.
    pub fn of(&self, t: ObjectType) -> ApiResult<&Vec<Pipeline>> {
        match t {
            ObjectType::Deals => Ok(&self.deals),
            ObjectType::Tickets => Ok(&self.tickets),
            _ => Err(no_pipelines(t)),
        }
    }

    pub(super) fn of_mut(&mut self, t: ObjectType) -> ApiResult<&mut Vec<Pipeline>> {
        match t {
            ObjectType::Deals => Ok(&mut self.deals),
            ObjectType::Tickets => Ok(&mut self.tickets),
            _ => Err(no_pipelines(t)),
        }
    }

    /// The live pipelines of a type in display order (ties by label); none for other types.
    pub fn live(&self, t: ObjectType) -> Vec<&Pipeline> {
        let mut live: Vec<&Pipeline> =
            self.of(t).map(|all| all.iter().filter(|p| p.is_live()).collect()).unwrap_or_default();
        live.sort_by(|a, b| (a.display_order, &a.label).cmp(&(b.display_order, &b.label)));
        live
    }

    /// A pipeline by id, archived or not.
    pub fn find(&self, t: ObjectType, id: &str) -> ApiResult<&Pipeline> {
        self.of(t)?.iter().find(|p| p.id == id).ok_or_else(|| pipeline_not_found(id))
    }

    /// The pipeline a record without one is in: HubSpot's default one while it lives, else the
    /// first live pipeline.
    pub fn default_for(&self, t: ObjectType) -> Option<&Pipeline> {
        let live = self.live(t);
        let named = default_pipeline_id(t).and_then(|id| live.iter().find(|p| p.id == id).copied());
        named.or_else(|| live.first().copied())
    }

    pub(super) fn next_id(&mut self) -> String {
        let id = self.next_id;
        self.next_id += 1;
        id.to_string()
    }
}

fn no_pipelines(t: ObjectType) -> ApiFailure {
    ApiFailure::validation(&format!("Pipelines are not supported for object type {}", t.shouting()))
}

pub fn pipeline_not_found(id: &str) -> ApiFailure {
    ApiFailure::not_found(&format!("Unable to find pipeline {id}"))
}

pub fn stage_not_found(pipeline_id: &str, stage_id: &str) -> ApiFailure {
    ApiFailure::not_found(&format!("Unable to find stage {stage_id} in pipeline {pipeline_id}"))
}
