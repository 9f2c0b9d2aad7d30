//! Fixture files: data an account has before a test starts, in YAML or JSON, loaded at start
//! (`--fixtures FILE`) or at runtime (`POST /_emulator/fixtures`). Nothing in a fixture sends
//! webhooks, and a fixture loads whole or not at all.
//!
//! ```yaml
//! propertyGroups:
//!   contacts: [{name: loyalty, label: Loyalty}]
//! properties:
//!   contacts:
//!     - {name: tier, label: Tier, type: enumeration, fieldType: select, groupName: loyalty,
//!        options: [{label: Gold, value: gold}]}
//! objects:
//!   contacts:
//!     - ref: alice                       # names the record for `associations`
//!       properties: {email: alice@example.com, tier: gold}
//!   companies:
//!     - {ref: acme, properties: {name: Acme, domain: acme.example}}
//! associations:
//!   - {from: contacts/alice, to: companies/acme}   # HubSpot's default association type
//! owners:                                # users records can be assigned to
//!   - {email: grace@example.com, firstName: Grace, lastName: Hopper}
//! appEventTypes:
//!   - {uid: login, type: app-event, config: {name: Login, objectType: contacts, properties: []}}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::FIRST_USER_ID;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{GroupCreateBody, ObjectType, PropertyCreateBody};
use crate::store::owners::OwnerInput;
use crate::store::timeline::AppEventType;
use crate::store::{Actor, Store, StoreSnapshot, Write, parse_properties};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    property_groups: BTreeMap<String, Vec<GroupCreateBody>>,
    #[serde(default)]
    properties: BTreeMap<String, Vec<PropertyCreateBody>>,
    #[serde(default)]
    objects: BTreeMap<String, Vec<FixtureObject>>,
    #[serde(default)]
    associations: Vec<FixtureAssociation>,
    #[serde(default)]
    owners: Vec<OwnerInput>,
    #[serde(default)]
    app_event_types: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureObject {
    #[serde(rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    properties: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureAssociation {
    from: String,
    to: String,
}

/// Reads a fixture document: YAML, or JSON (which YAML reads too).
pub fn parse(bytes: &[u8]) -> ApiResult<Value> {
    serde_yaml::from_slice(bytes).map_err(|e| ApiFailure::validation(&format!("Invalid fixture: {e}")))
}

/// Loads a fixture into the store; what was created: `{propertyGroups, properties, objects:
/// {type: [{ref, id}]}, associations, owners: [id], appEventTypes}`. On any error the store is left as it was.
pub fn load(store: &mut Store, document: Value) -> ApiResult<Value> {
    let fixture: Fixture =
        serde_json::from_value(document).map_err(|e| ApiFailure::validation(&format!("Invalid fixture: {e}")))?;
    let before = store.snapshot().map_err(|e| ApiFailure::validation(&format!("cannot keep the state: {e}")))?;
    let loaded = store.without_webhooks(|store| apply(store, fixture));
    if loaded.is_err() {
        let before: StoreSnapshot = serde_json::from_value(before).expect("a snapshot reads back");
        store.restore(before);
    }
    loaded
}

fn apply(store: &mut Store, fixture: Fixture) -> ApiResult<Value> {
    let actor = Actor::User { user_id: FIRST_USER_ID };
    let context =
        |what: &str, failure: ApiFailure| ApiFailure::validation(&format!("Fixture {what}: {}", failure.message()));
    // Owners first: the objects may name them in `hubspot_owner_id`.
    let mut owners = vec![];
    for input in fixture.owners {
        let owner = store.add_owner(input, now_ms()).map_err(|f| context("owner", f))?;
        owners.push(owner["id"].clone());
    }
    let mut groups = 0;
    for (t, bodies) in fixture.property_groups {
        let t = store.resolve_type(&t)?;
        for body in bodies {
            store.add_group(t, body).map_err(|f| context("property group", f))?;
            groups += 1;
        }
    }
    let mut properties = 0;
    for (t, bodies) in fixture.properties {
        let t = store.resolve_type(&t)?;
        for body in bodies {
            store.add_property(t, body).map_err(|f| context("property", f))?;
            properties += 1;
        }
    }
    let mut refs: BTreeMap<String, (ObjectType, u64)> = BTreeMap::new();
    let mut created = serde_json::Map::new();
    for (type_name, objects) in fixture.objects {
        let t = store.resolve_type(&type_name)?;
        let mut ids = vec![];
        for object in objects {
            let values = parse_properties(Some(&object.properties))?;
            let id = store
                .apply_all(t, vec![Write::Create { properties: values }], actor)
                .map_err(|f| context(&format!("object of {type_name}"), f))?[0]
                .id;
            if let Some(reference) = &object.reference
                && refs.insert(format!("{type_name}/{reference}"), (t, id)).is_some()
            {
                return Err(ApiFailure::validation(&format!("Fixture ref {type_name}/{reference} is used twice")));
            }
            ids.push(json!({ "ref": object.reference, "id": id.to_string() }));
        }
        created.insert(type_name, Value::Array(ids));
    }
    let find = |name: &str| {
        refs.get(name).copied().ok_or_else(|| {
            ApiFailure::validation(&format!("Fixture association names {name}, which no object's type/ref is"))
        })
    };
    for association in &fixture.associations {
        let (from, to) = (find(&association.from)?, find(&association.to)?);
        let default = store.default_association_type(from.0, to.0)?;
        store.associate(from, to, &[default.type_id], actor).map_err(|f| context("association", f))?;
    }
    let portal_id = store.portal_id();
    for definition in &fixture.app_event_types {
        let event_type = AppEventType::from_definition(definition, portal_id)?;
        store.timeline_mut().define_app_event_type(event_type)?;
    }
    Ok(json!({
        "propertyGroups": groups,
        "properties": properties,
        "objects": created,
        "associations": fixture.associations.len(),
        "owners": owners,
        "appEventTypes": fixture.app_event_types.len(),
    }))
}
