//! Associations v4 (`/crm/v4/...`): links between records, each with one or more association
//! types. HubSpot defines the types of the standard pairs (contact→company 279 unlabelled and 1
//! "Primary", ...); a custom object's schema defines one type per associated object type.
//! Every association is stored in both directions, with the inverse type on the way back.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Emulator;
use super::auth::Caller;
use super::clock::now_ms;
use super::custom_objects::association_type_ids;
use super::error::{ApiFailure, ApiResult};
use super::routes::{MAX_BATCH_INPUTS, batch_response, json_response, param, parse_json, resolve_type};
use super::schema::ObjectType;
use super::state::{Actor, Store};
use hubspot::WebhookEvent;

/// A record: its type and id.
pub type ObjectRef = (ObjectType, u64);

/// One association from a record: to this record, of this association type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    pub to_type: ObjectType,
    pub to_id: u64,
    pub type_id: u32,
}

/// An association type between two object types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssociationType {
    pub type_id: u32,
    pub label: Option<&'static str>,
    pub category: &'static str,
    /// The type of the same association seen from the other side.
    pub inverse: u32,
}

const HUBSPOT_DEFINED: &str = "HUBSPOT_DEFINED";
const USER_DEFINED: &str = "USER_DEFINED";
/// Most associations one read answers with.
const MAX_PAGE: usize = 500;

/// HubSpot's association types between the standard objects: (from, to, type id, label,
/// inverse type id). The first of each pair is its default (unlabelled) type.
const STANDARD_TYPES: &[(ObjectType, ObjectType, u32, Option<&str>, u32)] = {
    use ObjectType::{Companies, Contacts, Deals, Tickets};
    &[
        (Contacts, Companies, 279, None, 280),
        (Contacts, Companies, 1, Some("Primary"), 2),
        (Companies, Contacts, 280, None, 279),
        (Companies, Contacts, 2, Some("Primary"), 1),
        (Deals, Contacts, 3, None, 4),
        (Contacts, Deals, 4, None, 3),
        (Deals, Companies, 341, None, 342),
        (Deals, Companies, 5, Some("Primary"), 6),
        (Companies, Deals, 342, None, 341),
        (Companies, Deals, 6, Some("Primary"), 5),
        (Tickets, Contacts, 16, None, 15),
        (Contacts, Tickets, 15, None, 16),
        (Tickets, Companies, 339, None, 340),
        (Tickets, Companies, 26, Some("Primary"), 25),
        (Companies, Tickets, 340, None, 339),
        (Companies, Tickets, 25, Some("Primary"), 26),
        (Deals, Tickets, 27, None, 28),
        (Tickets, Deals, 28, None, 27),
    ]
};

impl Store {
    /// The association types from `from` to `to`, the default one first.
    pub fn association_types(&self, from: ObjectType, to: ObjectType) -> Vec<AssociationType> {
        let standard: Vec<AssociationType> = STANDARD_TYPES
            .iter()
            .filter(|(f, t, ..)| *f == from && *t == to)
            .map(|&(_, _, type_id, label, inverse)| AssociationType {
                type_id,
                label,
                category: HUBSPOT_DEFINED,
                inverse,
            })
            .collect();
        if !standard.is_empty() {
            return standard;
        }
        // A custom type's schema names the types it associates with.
        let defined = |custom: ObjectType, other: ObjectType| match custom {
            ObjectType::Custom(n) => self
                .schemas
                .get(&n)
                .filter(|s| s.associated_objects.contains(&other.object_type_id()))
                .map(|_| association_type_ids(n, &other.object_type_id())),
            _ => None,
        };
        if let Some((forward, reverse)) = defined(from, to) {
            vec![AssociationType { type_id: forward, label: None, category: USER_DEFINED, inverse: reverse }]
        } else if let Some((forward, reverse)) = defined(to, from) {
            vec![AssociationType { type_id: reverse, label: None, category: USER_DEFINED, inverse: forward }]
        } else {
            vec![]
        }
    }

    /// Associations from `from` to records of `to_type`, by record, ordered by id.
    pub fn associations_to(&self, from: ObjectRef, to_type: ObjectType) -> BTreeMap<u64, Vec<u32>> {
        let mut by_record: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for link in self.associations.get(&from).into_iter().flatten().filter(|l| l.to_type == to_type) {
            by_record.entry(link.to_id).or_default().push(link.type_id);
        }
        by_record
    }

    /// Adds associations of the given types between two live records (and their inverses).
    /// A "Primary" type moves: the record's previous primary association of it is dropped.
    pub fn associate(&mut self, from: ObjectRef, to: ObjectRef, type_ids: &[u32], actor: Actor) -> ApiResult<()> {
        self.require_live(from)?;
        self.require_live(to)?;
        let known = self.association_types(from.0, to.0);
        let mut chosen = vec![];
        for id in type_ids {
            let t = known.iter().find(|t| t.type_id == *id).ok_or_else(|| {
                ApiFailure::validation(&format!(
                    "associationTypeId {id} is not a valid association type from {} to {}",
                    from.0.object_type_id(),
                    to.0.object_type_id()
                ))
            })?;
            chosen.push(*t);
        }
        for t in chosen {
            if t.label == Some("Primary") {
                let previous: Vec<Link> = self
                    .associations
                    .get(&from)
                    .into_iter()
                    .flatten()
                    .filter(|l| l.to_type == to.0 && l.type_id == t.type_id && l.to_id != to.1)
                    .copied()
                    .collect();
                for link in previous {
                    self.unlink(from, (link.to_type, link.to_id), link.type_id, t.inverse);
                }
            }
            let forward = Link { to_type: to.0, to_id: to.1, type_id: t.type_id };
            let inserted = self.associations_mut().entry(from).or_default().insert(forward);
            self.associations_mut().entry(to).or_default().insert(Link {
                to_type: from.0,
                to_id: from.1,
                type_id: t.inverse,
            });
            if inserted {
                self.emit_association_change(from, to, false, actor);
            }
        }
        Ok(())
    }

    /// Removes every association between two records; whether there was any.
    pub fn dissociate(&mut self, from: ObjectRef, to: ObjectRef, actor: Actor) -> bool {
        let had = |store: &mut Store, a: ObjectRef, b: ObjectRef| {
            let links = store.associations_mut().entry(a).or_default();
            let before = links.len();
            links.retain(|l| (l.to_type, l.to_id) != b);
            before != links.len()
        };
        let removed = had(self, from, to);
        had(self, to, from);
        if removed {
            self.emit_association_change(from, to, true, actor);
        }
        removed
    }

    /// Drops every association of a record that is gone.
    pub fn remove_associations_of(&mut self, record: ObjectRef) {
        for link in self.associations_mut().remove(&record).unwrap_or_default() {
            if let Some(back) = self.associations_mut().get_mut(&(link.to_type, link.to_id)) {
                back.retain(|l| (l.to_type, l.to_id) != record);
            }
        }
    }

    fn unlink(&mut self, from: ObjectRef, to: ObjectRef, type_id: u32, inverse: u32) {
        if let Some(links) = self.associations_mut().get_mut(&from) {
            links.remove(&Link { to_type: to.0, to_id: to.1, type_id });
        }
        if let Some(links) = self.associations_mut().get_mut(&to) {
            links.remove(&Link { to_type: from.0, to_id: from.1, type_id: inverse });
        }
    }

    fn require_live(&self, (t, id): ObjectRef) -> ApiResult<()> {
        if self.of(t).objects.get(&id).is_some_and(|o| !o.is_archived()) {
            Ok(())
        } else {
            Err(ApiFailure::not_found(&format!("resource not found: {} {id} does not exist", t.shouting())))
        }
    }

    /// `{type}.associationChange`, once from each side, as HubSpot sends them.
    fn emit_association_change(&mut self, a: ObjectRef, b: ObjectRef, removed: bool, actor: Actor) {
        let occurred_at = now_ms();
        for (from, to) in [(a, b), (b, a)] {
            let event = WebhookEvent {
                occurred_at,
                association_type: Some(format!("{}_TO_{}", from.0.shouting(), to.0.shouting())),
                from_object_id: Some(from.1),
                to_object_id: Some(to.1),
                association_removed: Some(removed),
                ..Default::default()
            };
            self.emit_event(from.0, "associationChange", actor, event);
        }
    }
}

/// An association type as HubSpot's `AssociationSpecWithLabel`: an unlabelled type has no
/// `label` (the published description allows leaving it out, not null).
fn type_json(t: &AssociationType) -> Value {
    let mut spec = json!({ "category": t.category, "typeId": t.type_id });
    if let Some(label) = &t.label {
        spec["label"] = json!(label);
    }
    spec
}

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/objects/{from}/{id}/associations/default/{to}/{to_id}", put(associate_default))
        .route("/objects/{from}/{id}/associations/{to}/{to_id}", put(associate_labelled).delete(archive_pair))
        .route("/objects/{from}/{id}/associations/{to}", get(list_associations))
        .route("/associations/{from}/{to}/labels", get(list_labels))
        .route("/associations/{from}/{to}/batch/create", post(batch_create))
        .route("/associations/{from}/{to}/batch/associate/default", post(batch_associate_default))
        .route("/associations/{from}/{to}/batch/read", post(batch_read))
        .route("/associations/{from}/{to}/batch/archive", post(batch_archive))
}

/// Both object types of a call, with the caller's scopes checked: reads need read access to
/// both; writes need write access to the `from` type and read access to the other.
fn pair(emu: &Emulator, caller: &Caller, from: &str, to: &str, write: bool) -> ApiResult<(ObjectType, ObjectType)> {
    let (from, to) = (resolve_type(emu, from)?, resolve_type(emu, to)?);
    caller.require_any(&[if write { from.write_scope() } else { from.read_scope() }])?;
    caller.require_any(&[to.read_scope()])?;
    Ok((from, to))
}

fn record_id(id: &str) -> ApiResult<u64> {
    id.parse().map_err(|_| ApiFailure::validation(&format!("{id} is not a valid object id")))
}

pub(super) fn default_type(store: &Store, from: ObjectType, to: ObjectType) -> ApiResult<AssociationType> {
    store.association_types(from, to).first().copied().ok_or_else(|| {
        ApiFailure::validation(&format!(
            "There are no association types from {} to {}",
            from.object_type_id(),
            to.object_type_id()
        ))
    })
}

fn default_association_json(from_id: u64, to_id: u64, t: &AssociationType) -> Value {
    json!({
        "from": { "id": from_id.to_string() },
        "to": { "id": to_id.to_string() },
        "associationSpec": { "associationCategory": t.category, "associationTypeId": t.type_id },
    })
}

async fn associate_default(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let (id, to_id) = (record_id(&id)?, record_id(&to_id)?);
    let mut store = emu.store.lock().expect("store lock");
    let t = default_type(&store, from, to)?;
    store.associate((from, id), (to, to_id), &[t.type_id], Actor::Integration { app_id: caller.app_id })?;
    Ok(batch_response(StatusCode::OK, started, vec![default_association_json(id, to_id, &t)], vec![]))
}

/// One `{associationCategory, associationTypeId}` of a labelled create.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociationSpec {
    association_category: String,
    association_type_id: u32,
}

/// The type ids of `specs`, each checked against the category HubSpot files it under.
fn spec_type_ids(store: &Store, from: ObjectType, to: ObjectType, specs: &[AssociationSpec]) -> ApiResult<Vec<u32>> {
    let known = store.association_types(from, to);
    specs
        .iter()
        .map(|s| match known.iter().find(|t| t.type_id == s.association_type_id) {
            Some(t) if t.category == s.association_category => Ok(t.type_id),
            Some(t) => Err(ApiFailure::validation(&format!(
                "associationTypeId {} is in category {}, not {}",
                t.type_id, t.category, s.association_category
            ))),
            None => Ok(s.association_type_id),
        })
        .collect()
}

/// `LabelsBetweenObjectPair`: the labels of the associations now between two records.
fn labels_json(store: &Store, from: ObjectRef, to: ObjectRef) -> Value {
    let types = store.association_types(from.0, to.0);
    let ids = store.associations_to(from, to.0).remove(&to.1).unwrap_or_default();
    let labels: Vec<&str> = ids.iter().filter_map(|id| types.iter().find(|t| t.type_id == *id)?.label).collect();
    json!({
        "fromObjectTypeId": from.0.object_type_id(),
        "fromObjectId": from.1,
        "toObjectTypeId": to.0.object_type_id(),
        "toObjectId": to.1,
        "labels": labels,
    })
}

async fn associate_labelled(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let (id, to_id) = (record_id(&id)?, record_id(&to_id)?);
    let specs: Vec<AssociationSpec> = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let type_ids = spec_type_ids(&store, from, to, &specs)?;
    store.associate((from, id), (to, to_id), &type_ids, Actor::Integration { app_id: caller.app_id })?;
    Ok(json_response(StatusCode::CREATED, labels_json(&store, (from, id), (to, to_id))))
}

async fn archive_pair(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let (id, to_id) = (record_id(&id)?, record_id(&to_id)?);
    emu.store.lock().expect("store lock").dissociate(
        (from, id),
        (to, to_id),
        Actor::Integration { app_id: caller.app_id },
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `{toObjectId, associationTypes: [{category, typeId, label}]}` for each associated record.
fn associated_json(store: &Store, from: ObjectRef, to_type: ObjectType, to_id: u64, type_ids: &[u32]) -> Value {
    let types = store.association_types(from.0, to_type);
    let association_types: Vec<Value> =
        type_ids.iter().filter_map(|id| types.iter().find(|t| t.type_id == *id)).map(type_json).collect();
    json!({ "toObjectId": to_id, "associationTypes": association_types })
}

/// One page of a record's associations to a type, after the `after` record id.
fn page(store: &Store, from: ObjectRef, to: ObjectType, after: u64, limit: usize) -> (Vec<Value>, Option<u64>) {
    let all = store.associations_to(from, to);
    let rest: Vec<(&u64, &Vec<u32>)> = all.range(after + 1..).collect();
    let results = rest.iter().take(limit).map(|(to_id, ids)| associated_json(store, from, to, **to_id, ids)).collect();
    let next = (rest.len() > limit).then(|| *rest[limit - 1].0);
    (results, next)
}

fn parse_after(after: Option<&str>) -> ApiResult<u64> {
    match after {
        None | Some("") => Ok(0),
        Some(a) => a.parse().map_err(|_| ApiFailure::validation(&format!("Invalid after cursor: {a}"))),
    }
}

async fn list_associations(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, id, to)): Path<(String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let (from, to) = pair(&emu, &caller, &from, &to, false)?;
    let id = record_id(&id)?;
    let limit = match param(&params, "limit") {
        None => MAX_PAGE,
        Some(l) => l.parse::<usize>().map_err(|_| ApiFailure::validation(&format!("Invalid limit: {l}")))?,
    }
    .clamp(1, MAX_PAGE);
    let after = parse_after(param(&params, "after"))?;
    let store = emu.store.lock().expect("store lock");
    store.require_live((from, id))?;
    let (results, next) = page(&store, (from, id), to, after, limit);
    let mut body = json!({ "results": results });
    if let Some(next) = next {
        body["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    Ok(json_response(StatusCode::OK, body))
}

async fn list_labels(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (from, to) = pair(&emu, &caller, &from, &to, false)?;
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> = store.association_types(from, to).iter().map(type_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

#[derive(Deserialize)]
struct IdRef {
    id: Value,
}

impl IdRef {
    fn id(&self) -> ApiResult<u64> {
        match &self.id {
            Value::String(s) => record_id(s),
            Value::Number(n) => {
                n.as_u64().ok_or_else(|| ApiFailure::validation(&format!("{n} is not a valid object id")))
            }
            other => Err(ApiFailure::validation(&format!("{other} is not a valid object id"))),
        }
    }
}

#[derive(Deserialize)]
struct Inputs<T> {
    inputs: Vec<T>,
}

fn parse_inputs<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<Vec<T>> {
    let Inputs { inputs } = parse_json(body)?;
    if inputs.len() > MAX_BATCH_INPUTS {
        return Err(ApiFailure::validation(&format!(
            "Batch input contains {} inputs; the maximum is {MAX_BATCH_INPUTS}.",
            inputs.len()
        )));
    }
    Ok(inputs)
}

#[derive(Deserialize)]
struct CreateInput {
    from: IdRef,
    to: IdRef,
    types: Vec<AssociationSpec>,
}

async fn batch_create(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let inputs: Vec<CreateInput> = parse_inputs(&body)?;
    let actor = Actor::Integration { app_id: caller.app_id };
    let mut store = emu.store.lock().expect("store lock");
    let (mut results, mut errors) = (vec![], vec![]);
    for input in inputs {
        let outcome = (|| {
            let (id, to_id) = (input.from.id()?, input.to.id()?);
            let type_ids = spec_type_ids(&store, from, to, &input.types)?;
            store.associate((from, id), (to, to_id), &type_ids, actor)?;
            Ok::<_, ApiFailure>(labels_json(&store, (from, id), (to, to_id)))
        })();
        match outcome {
            Ok(v) => results.push(v),
            Err(failure) => errors.push(failure.as_batch_error(json!({}))),
        }
    }
    Ok(batch_response(StatusCode::CREATED, started, results, errors))
}

#[derive(Deserialize)]
struct PairInput {
    from: IdRef,
    to: IdRef,
}

async fn batch_associate_default(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let inputs: Vec<PairInput> = parse_inputs(&body)?;
    let actor = Actor::Integration { app_id: caller.app_id };
    let mut store = emu.store.lock().expect("store lock");
    let t = default_type(&store, from, to)?;
    let (mut results, mut errors) = (vec![], vec![]);
    for input in inputs {
        let outcome = (|| {
            let (id, to_id) = (input.from.id()?, input.to.id()?);
            store.associate((from, id), (to, to_id), &[t.type_id], actor)?;
            Ok::<_, ApiFailure>(default_association_json(id, to_id, &t))
        })();
        match outcome {
            Ok(v) => results.push(v),
            Err(failure) => errors.push(failure.as_batch_error(json!({}))),
        }
    }
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

#[derive(Deserialize)]
struct ReadInput {
    id: Value,
    after: Option<String>,
}

async fn batch_read(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, false)?;
    let inputs: Vec<ReadInput> = parse_inputs(&body)?;
    let store = emu.store.lock().expect("store lock");
    let (mut results, mut missing) = (vec![], vec![]);
    for input in inputs {
        let id = IdRef { id: input.id.clone() }.id()?;
        let after = parse_after(input.after.as_deref())?;
        if store.require_live((from, id)).is_err() || store.associations_to((from, id), to).is_empty() {
            missing.push(id.to_string());
            continue;
        }
        let (to_records, next) = page(&store, (from, id), to, after, MAX_PAGE);
        let mut v = json!({ "from": { "id": id.to_string() }, "to": to_records });
        if let Some(next) = next {
            v["paging"] = json!({ "next": { "after": next.to_string() } });
        }
        results.push(v);
    }
    let errors = if missing.is_empty() {
        vec![]
    } else {
        vec![json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": format!("No {} is associated with {} {}.", to.shouting(), from.shouting(), missing.join(", ")),
            "context": { "fromObjectId": missing },
            "links": {},
            "errors": [],
        })]
    };
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

#[derive(Deserialize)]
struct ArchiveInput {
    from: IdRef,
    to: Vec<IdRef>,
}

async fn batch_archive(
    State(emu): State<Arc<Emulator>>,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let inputs: Vec<ArchiveInput> = parse_inputs(&body)?;
    let actor = Actor::Integration { app_id: caller.app_id };
    let mut pairs = vec![];
    for input in &inputs {
        let id = input.from.id()?;
        for to_ref in &input.to {
            pairs.push((id, to_ref.id()?));
        }
    }
    let mut store = emu.store.lock().expect("store lock");
    for (id, to_id) in pairs {
        store.dissociate((from, id), (to, to_id), actor);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_type_has_its_inverse() {
        for &(from, to, id, label, inverse) in STANDARD_TYPES {
            assert!(
                STANDARD_TYPES.iter().any(|&(f, t, i, l, inv)| f == to
                    && t == from
                    && i == inverse
                    && inv == id
                    && l == label),
                "{from:?}->{to:?} {id}"
            );
        }
        let store = Store::new(1, None);
        let types = store.association_types(ObjectType::Contacts, ObjectType::Companies);
        assert_eq!((types[0].type_id, types[0].label), (279, None));
        assert_eq!((types[1].type_id, types[1].label), (1, Some("Primary")));
    }
}
