//! Custom object types (`/crm/v3/schemas`, which HubSpot's SDKs call as
//! `/crm-object-schemas/v3/schemas`): define, list, read, update and archive schemas. Objects of
//! a custom type are then served by every object, batch, search and property endpoint under
//! its objectTypeId (`2-<n>`), fullyQualifiedName (`p{portalId}_{name}`) or name.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Params, Shared, bool_param, json_response, parse_json};
use crate::auth::Caller;
use crate::clock::{iso8601, now_ms};
use crate::error::{ApiFailure, ApiResult};
use crate::schema::builtin::CUSTOM_OBJECT_GROUP;
use crate::schema::{self, ObjectType, PropertyCreateBody, PropertyDef};
use crate::store::Store;
use crate::store::custom_schema::{CustomSchema, FIRST_TYPE_NUMBER, association_type_ids};

const READ_SCOPE: &str = "crm.schemas.custom.read";
const WRITE_SCOPE: &str = "crm.schemas.custom.write";

/// HubSpot's ObjectSchema: the definition with its properties and associations.
fn schema_json(schema: &CustomSchema, store: &Store) -> Value {
    let mut v = schema.definition_json(store.portal_id());
    let properties: Vec<Value> =
        store.of(schema.object_type()).properties.values().filter(|p| !p.archived).map(PropertyDef::to_json).collect();
    v["properties"] = Value::Array(properties);
    let from = schema.object_type().object_type_id();
    let at = iso8601(schema.created_at_ms);
    v["associations"] =
        schema.associated_objects.iter().map(|to| association_json(schema.id, &from, to, &at)).collect();
    v
}

/// HubSpot's AssociationDefinition of a custom type's association with another type.
fn association_json(custom: u32, from: &str, to: &str, at: &str) -> Value {
    json!({
        "id": association_type_ids(custom, to).0.to_string(),
        "fromObjectTypeId": from,
        "toObjectTypeId": to,
        "createdAt": at,
        "updatedAt": at,
    })
}

fn require(caller: &Caller, scope: &str) -> ApiResult<()> {
    caller.require_any(&[scope.to_string()])
}

pub async fn list_schemas(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Query(params): Params,
) -> ApiResult<Response> {
    require(&caller, READ_SCOPE)?;
    let archived = bool_param(&params, "archived");
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> =
        store.schemas.values().filter(|c| c.archived == archived).map(|c| schema_json(c, &store)).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

/// The live schema a path names, by objectTypeId, fullyQualifiedName or name.
fn find_schema<'a>(store: &'a Store, t: &str) -> ApiResult<&'a CustomSchema> {
    match store.resolve_type(t) {
        Ok(ObjectType::Custom(n)) => Ok(&store.schemas[&n]),
        _ => Err(ApiFailure::not_found(&format!("Unable to find object type {t}"))),
    }
}

pub async fn get_schema(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
) -> ApiResult<Response> {
    require(&caller, READ_SCOPE)?;
    let store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::OK, schema_json(find_schema(&store, &t)?, &store)))
}

#[derive(Deserialize)]
struct Labels {
    singular: Option<String>,
    plural: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaCreateBody {
    name: Option<String>,
    labels: Option<Labels>,
    description: Option<String>,
    #[serde(default)]
    required_properties: Vec<String>,
    #[serde(default)]
    searchable_properties: Vec<String>,
    primary_display_property: Option<String>,
    #[serde(default)]
    secondary_display_properties: Vec<String>,
    #[serde(default)]
    associated_objects: Vec<String>,
    #[serde(default)]
    properties: Vec<Value>,
}

fn problem(message: String, code: &str, field: &str) -> Value {
    json!({ "message": message, "code": code, "context": { "field": [field] } })
}

fn schema_validation_failure(problems: Vec<Value>) -> ApiFailure {
    let summary: Vec<&str> = problems.iter().filter_map(|p| p["message"].as_str()).collect();
    ApiFailure::validation(&format!("Object schema is invalid: {}", summary.join("; "))).with_errors(problems)
}

/// An object type name HubSpot accepts: a letter, then letters, digits and underscores.
fn valid_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks that every named property is one the schema defines.
fn undefined_properties(names: &[String], defined: &[PropertyDef], field: &str) -> Vec<Value> {
    names
        .iter()
        .filter(|n| !defined.iter().any(|d| &d.name == *n) && !matches!(n.as_str(), "hs_object_id"))
        .map(|n| {
            problem(
                format!("{field} names {n}, which is not a property of this object type"),
                "INVALID_PROPERTY",
                field,
            )
        })
        .collect()
}

pub async fn create_schema(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    require(&caller, WRITE_SCOPE)?;
    let body: SchemaCreateBody = parse_json(&body)?;
    let now = now_ms();
    let mut problems = vec![];
    let name = body.name.unwrap_or_default();
    if name.is_empty() {
        problems.push(problem("name is required".into(), "REQUIRED_FIELD", "name"));
    } else if !valid_type_name(&name) {
        problems.push(problem(
            format!("Object type name {name} is invalid: it must start with a letter and contain only letters, numbers and underscores"),
            "INVALID_NAME",
            "name",
        ));
    }
    let (singular, plural) = body.labels.map(|l| (l.singular, l.plural)).unwrap_or_default();
    let singular = singular.filter(|s| !s.trim().is_empty());
    let plural = plural.filter(|s| !s.trim().is_empty());
    if singular.is_none() || plural.is_none() {
        problems.push(problem("labels.singular and labels.plural are required".into(), "REQUIRED_FIELD", "labels"));
    }
    let mut defs = vec![];
    for mut property in body.properties {
        if property.get("groupName").is_none() && property.is_object() {
            property["groupName"] = json!(CUSTOM_OBJECT_GROUP);
        }
        let parsed: PropertyCreateBody = serde_json::from_value(property)
            .map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: properties: {e}")))?;
        match schema::validate_create(parsed, now) {
            Ok(def) if def.group_name != CUSTOM_OBJECT_GROUP => problems.push(problem(
                format!("Property group {} does not exist on a new object type", def.group_name),
                "INVALID_GROUP",
                "properties",
            )),
            Ok(def) => defs.push(def),
            Err(failure) => problems.extend(failure.body["errors"].as_array().cloned().unwrap_or_default()),
        }
    }
    if defs.is_empty() && problems.is_empty() {
        problems.push(problem("an object type needs at least one property".into(), "REQUIRED_FIELD", "properties"));
    }
    problems.extend(undefined_properties(&body.required_properties, &defs, "requiredProperties"));
    problems.extend(undefined_properties(&body.searchable_properties, &defs, "searchableProperties"));
    problems.extend(undefined_properties(&body.secondary_display_properties, &defs, "secondaryDisplayProperties"));
    if let Some(primary) = &body.primary_display_property {
        problems.extend(undefined_properties(std::slice::from_ref(primary), &defs, "primaryDisplayProperty"));
    }
    let mut store = emu.store.lock().expect("store lock");
    let mut associated = vec![];
    for other in &body.associated_objects {
        match store.resolve_type(other) {
            Ok(t) => associated.push(t.object_type_id()),
            Err(_) => problems.push(problem(
                format!("associatedObjects names {other}, which is not an object type"),
                "INVALID_OBJECT_TYPE",
                "associatedObjects",
            )),
        }
    }
    if !problems.is_empty() {
        return Err(schema_validation_failure(problems));
    }
    // An archived type keeps its name reserved, as HubSpot does until it is purged.
    if store.schemas.values().any(|c| c.name.eq_ignore_ascii_case(&name)) {
        return Err(ApiFailure::already_exists(&format!("An object type named {name} already exists.")));
    }
    let id = store.schemas.keys().next_back().map_or(FIRST_TYPE_NUMBER, |n| n + 1);
    let schema = CustomSchema {
        id,
        name,
        singular_label: singular.unwrap_or_default(),
        plural_label: plural.unwrap_or_default(),
        description: body.description,
        required_properties: body.required_properties,
        searchable_properties: body.searchable_properties,
        primary_display_property: body.primary_display_property,
        secondary_display_properties: body.secondary_display_properties,
        associated_objects: associated,
        created_at_ms: now,
        updated_at_ms: now,
        archived: false,
    };
    store.add_custom_type(schema.clone(), defs, now);
    Ok(json_response(StatusCode::CREATED, schema_json(&schema, &store)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaPatchBody {
    labels: Option<Labels>,
    description: Option<String>,
    #[serde(default)]
    clear_description: bool,
    required_properties: Option<Vec<String>>,
    searchable_properties: Option<Vec<String>>,
    primary_display_property: Option<String>,
    secondary_display_properties: Option<Vec<String>>,
}

pub async fn update_schema(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    require(&caller, WRITE_SCOPE)?;
    let body: SchemaPatchBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let id = find_schema(&store, &t)?.id;
    let defs: Vec<PropertyDef> =
        store.of(ObjectType::Custom(id)).properties.values().filter(|p| !p.archived).cloned().collect();
    let mut problems = vec![];
    for (names, field) in [
        (&body.required_properties, "requiredProperties"),
        (&body.searchable_properties, "searchableProperties"),
        (&body.secondary_display_properties, "secondaryDisplayProperties"),
    ] {
        if let Some(names) = names {
            problems.extend(undefined_properties(names, &defs, field));
        }
    }
    if let Some(primary) = &body.primary_display_property {
        problems.extend(undefined_properties(std::slice::from_ref(primary), &defs, "primaryDisplayProperty"));
    }
    if let Some(labels) = &body.labels
        && [&labels.singular, &labels.plural].iter().any(|l| l.as_deref().is_some_and(|l| l.trim().is_empty()))
    {
        problems.push(problem("labels must not be empty".into(), "REQUIRED_FIELD", "labels"));
    }
    if !problems.is_empty() {
        return Err(schema_validation_failure(problems));
    }
    let portal_id = store.portal_id();
    let schema = store.schemas_mut().get_mut(&id).expect("found above");
    if let Some(labels) = body.labels {
        if let Some(s) = labels.singular {
            schema.singular_label = s;
        }
        if let Some(p) = labels.plural {
            schema.plural_label = p;
        }
    }
    if body.clear_description {
        schema.description = None;
    } else if let Some(d) = body.description {
        schema.description = Some(d);
    }
    if let Some(v) = body.primary_display_property {
        schema.primary_display_property = Some(v);
    }
    if let Some(v) = body.secondary_display_properties {
        schema.secondary_display_properties = v;
    }
    let required = body.required_properties.inspect(|v| schema.required_properties = v.clone());
    let searchable = body.searchable_properties.inspect(|v| schema.searchable_properties = v.clone());
    schema.updated_at_ms = now_ms();
    let answer = schema.definition_json(portal_id);
    let types = store.of_mut(ObjectType::Custom(id));
    if let Some(v) = required {
        types.required = v;
    }
    if let Some(v) = searchable {
        types.searchable = v;
    }
    Ok(json_response(StatusCode::OK, answer))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociationBody {
    from_object_type_id: Option<String>,
    to_object_type_id: Option<String>,
}

/// `POST /crm/v3/schemas/{t}/associations` `{fromObjectTypeId, toObjectTypeId}`: lets the
/// custom type's records be associated with another type's.
pub async fn create_association(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    require(&caller, WRITE_SCOPE)?;
    let body: AssociationBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let id = find_schema(&store, &t)?.id;
    let own = ObjectType::Custom(id).object_type_id();
    let (Some(from), Some(to)) = (body.from_object_type_id, body.to_object_type_id) else {
        return Err(ApiFailure::validation("fromObjectTypeId and toObjectTypeId are required"));
    };
    let (from, to) = (store.resolve_type(&from)?.object_type_id(), store.resolve_type(&to)?.object_type_id());
    let other = match (from == own, to == own) {
        (true, _) => to,
        (false, true) => from,
        (false, false) => {
            return Err(ApiFailure::validation(&format!("An association of {t} must start or end at {own}")));
        }
    };
    let now = now_ms();
    let schema = store.schemas_mut().get_mut(&id).expect("found above");
    if schema.associated_objects.contains(&other) {
        return Err(ApiFailure::conflict(&format!("{own} is already associated with {other}")));
    }
    schema.associated_objects.push(other.clone());
    schema.updated_at_ms = now;
    Ok(json_response(StatusCode::CREATED, association_json(id, &own, &other, &iso8601(now))))
}

/// `DELETE /crm/v3/schemas/{t}/associations/{associationId}`.
pub async fn archive_association(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, association_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require(&caller, WRITE_SCOPE)?;
    let mut store = emu.store.lock().expect("store lock");
    let id = find_schema(&store, &t)?.id;
    let schema = store.schemas_mut().get_mut(&id).expect("found above");
    let before = schema.associated_objects.len();
    schema.associated_objects.retain(|other| association_type_ids(id, other).0.to_string() != association_id);
    if schema.associated_objects.len() == before {
        return Err(ApiFailure::not_found(&format!("Association {association_id} not found on {t}")));
    }
    schema.updated_at_ms = now_ms();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn archive_schema(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
) -> ApiResult<StatusCode> {
    require(&caller, WRITE_SCOPE)?;
    let mut store = emu.store.lock().expect("store lock");
    let id = find_schema(&store, &t)?.id;
    if store.of(ObjectType::Custom(id)).objects.values().any(|o| !o.is_archived()) {
        return Err(ApiFailure::validation(&format!(
            "Object type {t} still has records; delete them before deleting the object type."
        )));
    }
    let schema = store.schemas_mut().get_mut(&id).expect("found above");
    schema.archived = true;
    schema.updated_at_ms = now_ms();
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn association_type_ids_are_distinct_per_pair() {
        let pairs = [
            association_type_ids(FIRST_TYPE_NUMBER, "0-1"),
            association_type_ids(FIRST_TYPE_NUMBER, "0-2"),
            association_type_ids(FIRST_TYPE_NUMBER, "2-3000002"),
            association_type_ids(FIRST_TYPE_NUMBER + 1, "0-1"),
        ];
        let ids: std::collections::BTreeSet<u32> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
        assert_eq!(ids.len(), 8);
        assert!(valid_type_name("cars_2") && !valid_type_name("2cars") && !valid_type_name("my cars"));
    }
}
