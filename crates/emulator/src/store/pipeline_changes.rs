//! Changes to pipelines and stages under HubSpot's rules (unique labels, a probability for
//! every deal stage, at least one pipeline per type and one stage per pipeline, deletes
//! refused on request while records use what is deleted), the options of the properties that
//! name them, and the check every record write passes: its stage belongs to its pipeline.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::pipelines::{Pipeline, PipelineInput, Stage, StageInput, pipeline_properties, stage_not_found};
use super::{Store, property_value_string};
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{ObjectType, OptionsSource, PropertyOption};

/// What a stage input becomes once checked: label, display order, metadata.
type CheckedStage = (String, i64, BTreeMap<String, String>);

/// Checks a stage input; `full` when it must name everything (create, replace) rather than
/// change some fields of `current`.
fn check_stage(t: ObjectType, input: &StageInput, current: Option<&Stage>) -> ApiResult<CheckedStage> {
    let label = match (input.label.as_deref().map(str::trim), current) {
        (Some(l), _) if !l.is_empty() => l.to_string(),
        (None, Some(stage)) => stage.label.clone(),
        _ => return Err(ApiFailure::validation("A pipeline stage needs a label.")),
    };
    let mut metadata = current.map(|s| s.metadata.clone()).unwrap_or_default();
    for (key, value) in input.metadata.iter().flatten() {
        let value = property_value_string(value)
            .ok_or_else(|| ApiFailure::validation(&format!("Stage metadata {key} must be a string or a number")))?;
        metadata.insert(key.clone(), value);
    }
    match t {
        ObjectType::Deals => {
            let probability = metadata.get("probability").and_then(|p| p.parse::<f64>().ok());
            if !probability.is_some_and(|p| (0.0..=1.0).contains(&p)) {
                return Err(ApiFailure::validation(
                    "Deal stages need metadata.probability, a number between 0.0 and 1.0",
                ));
            }
            let closed = metadata.entry("isClosed".into()).or_insert_with(|| "false".into());
            if !matches!(closed.as_str(), "true" | "false") {
                return Err(ApiFailure::validation("metadata.isClosed must be true or false"));
            }
        }
        _ => {
            let state = metadata.entry("ticketState".into()).or_insert_with(|| "OPEN".into());
            if !matches!(state.as_str(), "OPEN" | "CLOSED") {
                return Err(ApiFailure::validation("metadata.ticketState must be OPEN or CLOSED"));
            }
        }
    }
    let display_order = input.display_order.or(current.map(|s| s.display_order)).unwrap_or(0);
    Ok((label, display_order, metadata))
}

fn unique_labels<'a>(labels: impl Iterator<Item = &'a str>, what: &str) -> ApiResult<()> {
    let mut seen = BTreeSet::new();
    for label in labels {
        if !seen.insert(label.to_ascii_lowercase()) {
            return Err(ApiFailure::validation(&format!("{what} label {label} is already used")));
        }
    }
    Ok(())
}

impl Store {
    /// Records of a live type whose pipeline (and stage, when given) is this one.
    fn records_in(&self, t: ObjectType, pipeline_id: &str, stage_id: Option<&str>) -> usize {
        let Some((pipeline_property, stage_property)) = pipeline_properties(t) else { return 0 };
        let default = self.pipelines.default_for(t).map(|p| p.id.clone());
        self.of(t)
            .objects
            .values()
            .filter(|o| !o.is_archived())
            .filter(|o| {
                let pipeline = o.properties.get(pipeline_property).filter(|p| !p.is_empty()).or(default.as_ref());
                pipeline.is_some_and(|p| p == pipeline_id)
                    && stage_id.is_none_or(|s| o.properties.get(stage_property).is_some_and(|v| v == s))
            })
            .count()
    }

    fn refuse_if_used(&self, t: ObjectType, pipeline_id: &str, stage_id: Option<&str>) -> ApiResult<()> {
        match self.records_in(t, pipeline_id, stage_id) {
            0 => Ok(()),
            n => Err(ApiFailure::validation(&format!(
                "{} is in use by {n} {} records and cannot be deleted",
                stage_id.map_or_else(|| format!("Pipeline {pipeline_id}"), |s| format!("Stage {s}")),
                t.shouting().to_ascii_lowercase()
            ))),
        }
    }

    fn new_stages(&mut self, t: ObjectType, inputs: &[StageInput], now_ms: i64) -> ApiResult<Vec<Stage>> {
        if inputs.is_empty() {
            return Err(ApiFailure::validation("A pipeline needs at least one stage."));
        }
        let checked = inputs.iter().map(|s| check_stage(t, s, None)).collect::<ApiResult<Vec<_>>>()?;
        unique_labels(checked.iter().map(|(l, _, _)| l.as_str()), "Stage")?;
        Ok(checked
            .into_iter()
            .map(|(label, display_order, metadata)| Stage {
                id: self.pipelines.next_id(),
                label,
                display_order,
                metadata,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                archived_at_ms: None,
            })
            .collect())
    }

    fn check_pipeline_label(&self, t: ObjectType, label: Option<&str>, except: Option<&str>) -> ApiResult<String> {
        let label = label.map(str::trim).filter(|l| !l.is_empty());
        let label = label.ok_or_else(|| ApiFailure::validation("A pipeline needs a label."))?;
        let taken =
            self.pipelines.live(t).iter().any(|p| Some(p.id.as_str()) != except && p.label.eq_ignore_ascii_case(label));
        if taken {
            return Err(ApiFailure::validation(&format!("Pipeline label {label} is already used")));
        }
        Ok(label.to_string())
    }

    /// Creates a pipeline with its stages; its JSON.
    pub fn create_pipeline(&mut self, t: ObjectType, input: PipelineInput, now_ms: i64) -> ApiResult<Value> {
        self.pipelines.of(t)?;
        let label = self.check_pipeline_label(t, input.label.as_deref(), None)?;
        let stages = self.new_stages(t, input.stages.as_deref().unwrap_or_default(), now_ms)?;
        let pipeline = Pipeline {
            id: self.pipelines.next_id(),
            label,
            display_order: input.display_order.unwrap_or(0),
            stages,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            archived_at_ms: None,
        };
        let created = pipeline.to_json();
        self.pipelines.of_mut(t)?.push(pipeline);
        self.pipelines_changed();
        Ok(created)
    }

    /// Replaces a pipeline's label, order and stages (a stage keeps its id when its label
    /// stays); its JSON.
    pub fn replace_pipeline(
        &mut self,
        t: ObjectType,
        id: &str,
        input: PipelineInput,
        validate: bool,
        now_ms: i64,
    ) -> ApiResult<Value> {
        let current = self.pipelines.find(t, id)?.clone();
        let label = self.check_pipeline_label(t, input.label.as_deref(), Some(id))?;
        let inputs = input.stages.unwrap_or_default();
        let mut stages = self.new_stages(t, &inputs, now_ms)?;
        for stage in &mut stages {
            if let Some(kept) = current.live_stages().find(|s| s.label == stage.label) {
                stage.id = kept.id.clone();
                stage.created_at_ms = kept.created_at_ms;
            }
        }
        let mut removed: Vec<Stage> =
            current.live_stages().filter(|s| !stages.iter().any(|n| n.id == s.id)).cloned().collect();
        if validate {
            for stage in &removed {
                self.refuse_if_used(t, id, Some(&stage.id))?;
            }
        }
        for stage in &mut removed {
            stage.archived_at_ms = Some(now_ms);
        }
        let pipeline = self.pipeline_mut(t, id)?;
        pipeline.label = label;
        pipeline.display_order = input.display_order.unwrap_or(pipeline.display_order);
        pipeline.stages.retain(|s| !s.is_live());
        pipeline.stages.extend(stages);
        pipeline.stages.extend(removed);
        pipeline.updated_at_ms = now_ms;
        let replaced = pipeline.to_json();
        self.pipelines_changed();
        Ok(replaced)
    }

    /// Changes a pipeline's label or order, or restores an archived one; its JSON.
    pub fn update_pipeline(&mut self, t: ObjectType, id: &str, input: PipelineInput, now_ms: i64) -> ApiResult<Value> {
        let current = self.pipelines.find(t, id)?;
        if input.archived == Some(true) || (input.archived.is_none() && !current.is_live()) {
            return Err(ApiFailure::validation("archived may only be given as false, to restore an archived pipeline"));
        }
        let label = match input.label.as_deref() {
            Some(label) => Some(self.check_pipeline_label(t, Some(label), Some(id))?),
            None => None,
        };
        let pipeline = self.pipeline_mut(t, id)?;
        if let Some(label) = label {
            pipeline.label = label;
        }
        if let Some(order) = input.display_order {
            pipeline.display_order = order;
        }
        pipeline.archived_at_ms = None;
        pipeline.updated_at_ms = now_ms;
        let updated = pipeline.to_json();
        self.pipelines_changed();
        Ok(updated)
    }

    /// Archives a pipeline; refused for a type's last pipeline, and while records are in it
    /// when `validate` asks.
    pub fn archive_pipeline(&mut self, t: ObjectType, id: &str, validate: bool, now_ms: i64) -> ApiResult<()> {
        if !self.pipelines.find(t, id)?.is_live() {
            return Err(super::pipelines::pipeline_not_found(id));
        }
        if self.pipelines.live(t).len() == 1 {
            return Err(ApiFailure::validation(
                "An account needs at least one pipeline; the last one cannot be deleted.",
            ));
        }
        if validate {
            self.refuse_if_used(t, id, None)?;
        }
        let pipeline = self.pipeline_mut(t, id)?;
        pipeline.archived_at_ms = Some(now_ms);
        pipeline.updated_at_ms = now_ms;
        self.pipelines_changed();
        Ok(())
    }

    /// Adds a stage to a live pipeline; its JSON.
    pub fn create_stage(
        &mut self,
        t: ObjectType,
        pipeline_id: &str,
        input: StageInput,
        now_ms: i64,
    ) -> ApiResult<Value> {
        let labels: Vec<String> = self.live_pipeline(t, pipeline_id)?.live_stages().map(|s| s.label.clone()).collect();
        let mut stages = self.new_stages(t, std::slice::from_ref(&input), now_ms)?;
        let stage = stages.remove(0);
        unique_labels(labels.iter().map(String::as_str).chain([stage.label.as_str()]), "Stage")?;
        let created = stage.to_json();
        let pipeline = self.pipeline_mut(t, pipeline_id)?;
        pipeline.stages.push(stage);
        pipeline.updated_at_ms = now_ms;
        self.pipelines_changed();
        Ok(created)
    }

    /// Changes a stage: every field (`replace`, PUT) or the given ones (PATCH); its JSON.
    pub fn update_stage(
        &mut self,
        t: ObjectType,
        pipeline_id: &str,
        stage_id: &str,
        input: StageInput,
        replace: bool,
        now_ms: i64,
    ) -> ApiResult<Value> {
        let pipeline = self.live_pipeline(t, pipeline_id)?;
        let current =
            pipeline.stages.iter().find(|s| s.id == stage_id).ok_or_else(|| stage_not_found(pipeline_id, stage_id))?;
        let base = (!replace).then_some(current);
        let (label, display_order, metadata) = check_stage(t, &input, base)?;
        let others = pipeline.live_stages().filter(|s| s.id != stage_id).map(|s| s.label.as_str());
        unique_labels(others.chain([label.as_str()]), "Stage")?;
        if input.archived == Some(true) {
            return Err(ApiFailure::validation("Archive a stage with DELETE"));
        }
        let pipeline = self.pipeline_mut(t, pipeline_id)?;
        let stage = pipeline.stages.iter_mut().find(|s| s.id == stage_id).expect("found above");
        stage.label = label;
        stage.display_order = display_order;
        stage.metadata = metadata;
        stage.archived_at_ms = None;
        stage.updated_at_ms = now_ms;
        let updated = stage.to_json();
        pipeline.updated_at_ms = now_ms;
        self.pipelines_changed();
        Ok(updated)
    }

    /// Archives a stage; refused for a pipeline's last stage, and while records are in it when
    /// `validate` asks.
    pub fn archive_stage(
        &mut self,
        t: ObjectType,
        pipeline_id: &str,
        stage_id: &str,
        validate: bool,
        now_ms: i64,
    ) -> ApiResult<()> {
        let pipeline = self.live_pipeline(t, pipeline_id)?;
        if !pipeline.has_live_stage(stage_id) {
            return Err(stage_not_found(pipeline_id, stage_id));
        }
        if pipeline.live_stages().count() == 1 {
            return Err(ApiFailure::validation("A pipeline needs at least one stage; its last one cannot be deleted."));
        }
        if validate {
            self.refuse_if_used(t, pipeline_id, Some(stage_id))?;
        }
        let pipeline = self.pipeline_mut(t, pipeline_id)?;
        let stage = pipeline.stages.iter_mut().find(|s| s.id == stage_id).expect("found above");
        stage.archived_at_ms = Some(now_ms);
        stage.updated_at_ms = now_ms;
        pipeline.updated_at_ms = now_ms;
        self.pipelines_changed();
        Ok(())
    }

    fn live_pipeline(&self, t: ObjectType, id: &str) -> ApiResult<&Pipeline> {
        Some(self.pipelines.find(t, id)?)
            .filter(|p| p.is_live())
            .ok_or_else(|| super::pipelines::pipeline_not_found(id))
    }

    fn pipeline_mut(&mut self, t: ObjectType, id: &str) -> ApiResult<&mut Pipeline> {
        self.pipelines
            .of_mut(t)?
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| super::pipelines::pipeline_not_found(id))
    }

    fn pipelines_changed(&mut self) {
        self.revision += 1;
        self.refresh_pipeline_options();
    }

    /// Sets the options of the properties that name pipelines and stages: the live ones.
    pub(super) fn refresh_pipeline_options(&mut self) {
        for t in [ObjectType::Deals, ObjectType::Tickets] {
            let option = |i: usize, value: &str, label: &str| PropertyOption {
                label: label.into(),
                value: value.into(),
                description: None,
                display_order: Some(i as i64),
                hidden: false,
            };
            let live = self.pipelines.live(t);
            let pipelines: Vec<PropertyOption> =
                live.iter().enumerate().map(|(i, p)| option(i, &p.id, &p.label)).collect();
            let stages: Vec<PropertyOption> = live
                .iter()
                .flat_map(|p| p.live_stages())
                .enumerate()
                .map(|(i, s)| option(i, &s.id, &s.label))
                .collect();
            let Some(store) = self.types.get_mut(&t) else { continue };
            for def in store.properties.values_mut() {
                match def.options_from {
                    Some(OptionsSource::Pipelines) => def.options = pipelines.clone(),
                    Some(OptionsSource::PipelineStages) => def.options = stages.clone(),
                    _ => {}
                }
            }
        }
    }

    /// HubSpot's per-property error when a write leaves a record in a stage that is not one of
    /// its pipeline's: `properties` are the write's values, `existing` the record's.
    pub(super) fn stage_problem(
        &self,
        t: ObjectType,
        properties: &BTreeMap<String, String>,
        existing: Option<&BTreeMap<String, String>>,
    ) -> Option<Value> {
        let (pipeline_property, stage_property) = pipeline_properties(t)?;
        let written = |name: &str| properties.get(name).filter(|v| !v.is_empty());
        if written(pipeline_property).is_none() && written(stage_property).is_none() {
            return None;
        }
        let held = |name: &str| existing.and_then(|e| e.get(name)).filter(|v| !v.is_empty());
        let stage = written(stage_property).or_else(|| held(stage_property))?;
        let pipeline_id = match written(pipeline_property).or_else(|| held(pipeline_property)) {
            Some(id) => id.clone(),
            None => self.pipelines.default_for(t)?.id.clone(),
        };
        let pipeline = self.pipelines.find(t, &pipeline_id).ok().filter(|p| p.is_live())?;
        if pipeline.has_live_stage(stage) {
            return None;
        }
        let message = format!("{stage} is not a valid stage of pipeline {pipeline_id}");
        Some(json!({
            "isValid": false,
            "message": message,
            "error": "INVALID_OPTION",
            "name": stage_property,
            "localizedErrorMessage": message,
        }))
    }
}
