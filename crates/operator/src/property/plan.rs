//! The pure build of a `HubSpotProperty` visit: what the spec asks of HubSpot's property
//! ([`plan`]), and what the visit writes and reports under the management policy ([`decide`]).

use hubspot::models::{Property, PropertyCreate, PropertyOption, PropertyUpdate};
use model::api::HubSpotProperty;
use model::api::property::{HubSpotPropertySpec, ManagementPolicy, PropertyType};

use crate::EventToPublish;

/// What the spec asks of HubSpot, given HubSpot's property of that name.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// No such property: create it.
    Create(PropertyCreate),
    /// The listed spec fields differ; `patch` sets exactly them.
    Update { drift: Vec<String>, patch: PropertyUpdate },
    /// Nothing to do.
    InSync,
    /// The spec asks for a change HubSpot does not allow.
    Conflict(String),
    /// HubSpot defines the property; it is never changed. `drift` lists the differences.
    HubSpotDefined { drift: Vec<String> },
}

/// The property HubSpot should have, as a create body.
pub fn desired_create(spec: &HubSpotPropertySpec) -> PropertyCreate {
    PropertyCreate {
        name: spec.name.clone(),
        label: spec.label.clone(),
        type_: spec.type_.as_str().into(),
        field_type: spec.field_type.as_str().into(),
        group_name: spec.group_name.clone(),
        description: spec.description.clone(),
        has_unique_value: spec.has_unique_value,
        options: desired_options(spec),
        hidden: spec.hidden,
        form_field: spec.form_field,
        display_order: spec.display_order,
    }
}

/// The spec's options as HubSpot stores them: an option without `displayOrder` takes its index.
fn desired_options(spec: &HubSpotPropertySpec) -> Vec<PropertyOption> {
    spec.options
        .iter()
        .enumerate()
        .map(|(i, o)| PropertyOption {
            label: o.label.clone(),
            value: o.value.clone(),
            display_order: o.display_order.unwrap_or(i as i32),
            hidden: o.hidden,
        })
        .collect()
}

/// Compares the spec with HubSpot's property. Optional spec fields that are unset are
/// HubSpot's to decide and never count as drift.
pub fn plan(spec: &HubSpotPropertySpec, existing: Option<&Property>) -> Plan {
    let Some(actual) = existing else {
        return Plan::Create(desired_create(spec));
    };
    let mut drift = Vec::new();
    let mut patch = PropertyUpdate::default();
    if spec.label != actual.label {
        drift.push("label".to_string());
        patch.label = Some(spec.label.clone());
    }
    if let Some(description) = spec.description.as_ref().filter(|d| **d != actual.description) {
        drift.push("description".into());
        patch.description = Some(description.clone());
    }
    if spec.group_name != actual.group_name {
        drift.push("groupName".into());
        patch.group_name = Some(spec.group_name.clone());
    }
    if spec.field_type.as_str() != actual.field_type {
        drift.push("fieldType".into());
        patch.field_type = Some(spec.field_type.as_str().into());
    }
    // Non-enumeration properties may carry HubSpot's own options (true/false of a
    // booleancheckbox); they are only compared when the spec lists options.
    let options = desired_options(spec);
    if (spec.type_ == PropertyType::Enumeration || !options.is_empty()) && options != actual.options {
        drift.push("options".into());
        patch.options = Some(options);
    }
    if let Some(hidden) = spec.hidden.filter(|h| *h != actual.hidden) {
        drift.push("hidden".into());
        patch.hidden = Some(hidden);
    }
    if let Some(form_field) = spec.form_field.filter(|f| *f != actual.form_field) {
        drift.push("formField".into());
        patch.form_field = Some(form_field);
    }
    if let Some(order) = spec.display_order.filter(|o| *o != actual.display_order) {
        drift.push("displayOrder".into());
        patch.display_order = Some(order);
    }

    if actual.hubspot_defined == Some(true) {
        return Plan::HubSpotDefined { drift };
    }
    if spec.type_.as_str() != actual.type_ {
        return Plan::Conflict(format!(
            "HubSpot's property {} has type {}, the spec asks for {}; HubSpot cannot change a property's type",
            actual.name,
            actual.type_,
            spec.type_.as_str()
        ));
    }
    if spec.has_unique_value != actual.has_unique_value {
        return Plan::Conflict(format!(
            "HubSpot's property {} has hasUniqueValue {}, the spec asks for {}; HubSpot cannot change it once the property exists",
            actual.name, actual.has_unique_value, spec.has_unique_value
        ));
    }
    if drift.is_empty() { Plan::InSync } else { Plan::Update { drift, patch } }
}

/// What a visit did to HubSpot's property, or found of it.
#[derive(Clone, Debug, PartialEq)]
pub enum PropertyChange {
    Created,
    /// An existing property was taken over; `updated` lists the fields repaired on the way.
    Adopted {
        updated: Vec<String>,
    },
    Updated(Vec<String>),
    InSync,
    /// Drift left alone (`ObserveOnly`).
    Drifted(Vec<String>),
    /// Missing and not created (`ObserveOnly`).
    NotFound,
    HubSpotDefined {
        drift: Vec<String>,
    },
    Conflict(String),
}

/// A write to HubSpot's property.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    Create(PropertyCreate),
    /// Sets the drifted `fields` (named as in the spec) to the spec's values.
    Update {
        fields: Vec<String>,
        patch: PropertyUpdate,
    },
}

impl Write {
    /// Whether the property's group has to exist first: the property is created in it or
    /// moved to it.
    pub fn needs_group(&self) -> bool {
        match self {
            Write::Create(_) => true,
            Write::Update { patch, .. } => patch.group_name.is_some(),
        }
    }

    /// The Event announcing the write, once HubSpot took it.
    pub fn announcement(&self, spec: &HubSpotPropertySpec) -> EventToPublish {
        match self {
            Write::Create(_) => EventToPublish::normal(
                "PropertyCreated",
                format!("Created HubSpot property {} on {}", spec.name, spec.object_type),
            ),
            Write::Update { fields, .. } => EventToPublish::normal(
                "PropertyUpdated",
                format!("Updated HubSpot property {} on {}: {}", spec.name, spec.object_type, fields.join(", ")),
            ),
        }
    }
}

/// What one visit writes to HubSpot, and what it reports once the write succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub write: Option<Write>,
    pub change: PropertyChange,
}

/// The [`plan`] for `property` as its management policy allows it: `ObserveOnly` never
/// writes. A property found on a first visit (HubSpot never read successfully before) existed
/// before this resource, and is adopted.
pub fn decide(property: &HubSpotProperty, existing: Option<&Property>) -> Decision {
    let spec = &property.spec;
    let first_visit = property.status.as_ref().and_then(|s| s.last_sync_time.as_ref()).is_none();
    let observe_only = spec.management_policy == ManagementPolicy::ObserveOnly;
    let (write, change) = match plan(spec, existing) {
        Plan::Create(_) if observe_only => (None, PropertyChange::NotFound),
        Plan::Create(create) => (Some(Write::Create(create)), PropertyChange::Created),
        Plan::Update { drift, .. } if observe_only => (None, PropertyChange::Drifted(drift)),
        Plan::Update { drift, patch } => {
            let change = if first_visit {
                PropertyChange::Adopted { updated: drift.clone() }
            } else {
                PropertyChange::Updated(drift.clone())
            };
            (Some(Write::Update { fields: drift, patch }), change)
        }
        Plan::InSync if first_visit => (None, PropertyChange::Adopted { updated: vec![] }),
        Plan::InSync => (None, PropertyChange::InSync),
        Plan::Conflict(message) => (None, PropertyChange::Conflict(message)),
        Plan::HubSpotDefined { drift } => (None, PropertyChange::HubSpotDefined { drift }),
    };
    Decision { write, change }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::*;
    use model::api::property::FieldType;

    // ------------------------------------------------------------ pure plan

    #[test]
    fn missing_property_is_created_with_every_declared_field() {
        let Plan::Create(create) = plan(&property_spec(), None) else { panic!("expected a create") };
        assert_eq!(
            serde_json::to_value(&create).unwrap(),
            json!({
                "name": "loyalty_tier", "label": "Loyalty tier", "type": "enumeration", "fieldType": "select",
                "groupName": "loyalty", "description": "Tier in the loyalty programme", "formField": true,
                "options": [
                    {"label": "Gold", "value": "gold", "displayOrder": 0, "hidden": false},
                    {"label": "Silver", "value": "silver", "displayOrder": 1, "hidden": false}
                ]
            })
        );
    }

    #[test]
    fn matching_property_is_in_sync() {
        assert_eq!(plan(&property_spec(), Some(&hubspot_property())), Plan::InSync);
    }

    #[test]
    fn unset_optional_fields_are_hubspots_to_decide() {
        let mut spec = property_spec();
        (spec.description, spec.form_field) = (None, None);
        let mut actual = hubspot_property();
        (actual.description, actual.form_field, actual.hidden) = ("Edited in HubSpot".into(), false, true);
        assert_eq!(plan(&spec, Some(&actual)), Plan::InSync);
    }

    #[test]
    fn drift_in_label_description_and_options_patches_exactly_those() {
        let mut actual = hubspot_property();
        actual.label = "Tier".into();
        actual.description = "old".into();
        actual.options.pop();
        let Plan::Update { drift, patch } = plan(&property_spec(), Some(&actual)) else { panic!("expected an update") };
        assert_eq!(drift, ["label", "description", "options"]);
        // The whole option list is sent: HubSpot replaces it.
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({
                "label": "Loyalty tier", "description": "Tier in the loyalty programme",
                "options": [
                    {"label": "Gold", "value": "gold", "displayOrder": 0, "hidden": false},
                    {"label": "Silver", "value": "silver", "displayOrder": 1, "hidden": false}
                ]
            })
        );
    }

    #[test]
    fn type_and_uniqueness_changes_are_conflicts() {
        let mut actual = hubspot_property();
        actual.type_ = "string".into();
        let Plan::Conflict(message) = plan(&property_spec(), Some(&actual)) else { panic!("expected a conflict") };
        assert!(message.contains("has type string, the spec asks for enumeration"), "{message}");
        let mut actual = hubspot_property();
        actual.has_unique_value = true;
        let Plan::Conflict(message) = plan(&property_spec(), Some(&actual)) else { panic!("expected a conflict") };
        assert!(message.contains("hasUniqueValue true, the spec asks for false"), "{message}");
    }

    #[test]
    fn hubspot_defined_property_is_never_changed() {
        let mut actual = hubspot_property();
        actual.hubspot_defined = Some(true);
        assert_eq!(plan(&property_spec(), Some(&actual)), Plan::HubSpotDefined { drift: vec![] });
        actual.label = "Tier".into();
        actual.type_ = "string".into();
        assert_eq!(plan(&property_spec(), Some(&actual)), Plan::HubSpotDefined { drift: vec!["label".into()] });
    }

    // ------------------------------------------------------------ the decision under the policies

    /// `property_resource(property_spec())` with `policy`, read from HubSpot before or not.
    fn resource(policy: ManagementPolicy, visited_before: bool) -> HubSpotProperty {
        let mut property = property_resource(property_spec());
        property.spec.management_policy = policy;
        if visited_before {
            let status = model::api::HubSpotPropertyStatus {
                last_sync_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                )),
                ..Default::default()
            };
            property.status = Some(status);
        }
        property
    }

    fn drifted() -> Property {
        let mut actual = hubspot_property();
        actual.label = "Tier".into();
        actual
    }

    #[test]
    fn a_managed_property_is_created_or_repaired() {
        let managed = resource(ManagementPolicy::Manage, true);
        let decision = decide(&managed, None);
        assert_eq!(decision.write, Some(Write::Create(desired_create(&property_spec()))));
        assert_eq!(decision.change, PropertyChange::Created);
        let decision = decide(&managed, Some(&drifted()));
        let Some(Write::Update { fields, patch }) = decision.write else { panic!("expected an update") };
        assert_eq!((fields, patch.label.as_deref()), (vec!["label".to_string()], Some("Loyalty tier")));
        assert_eq!(decision.change, PropertyChange::Updated(vec!["label".into()]));
        let decision = decide(&managed, Some(&hubspot_property()));
        assert_eq!(decision, Decision { write: None, change: PropertyChange::InSync });
    }

    #[test]
    fn a_property_found_on_the_first_visit_is_adopted() {
        let first = resource(ManagementPolicy::Manage, false);
        let decision = decide(&first, Some(&hubspot_property()));
        assert_eq!(decision, Decision { write: None, change: PropertyChange::Adopted { updated: vec![] } });
        let decision = decide(&first, Some(&drifted()));
        assert!(matches!(decision.write, Some(Write::Update { .. })), "repaired on the way");
        assert_eq!(decision.change, PropertyChange::Adopted { updated: vec!["label".into()] });
        assert_eq!(decide(&first, None).change, PropertyChange::Created, "nothing to adopt");
    }

    #[test]
    fn observe_only_never_writes() {
        for visited_before in [false, true] {
            let observed = resource(ManagementPolicy::ObserveOnly, visited_before);
            assert_eq!(decide(&observed, None), Decision { write: None, change: PropertyChange::NotFound });
            let decision = decide(&observed, Some(&drifted()));
            assert_eq!(decision, Decision { write: None, change: PropertyChange::Drifted(vec!["label".into()]) });
        }
    }

    #[test]
    fn conflicts_and_hubspots_own_properties_are_reported_not_written() {
        let managed = resource(ManagementPolicy::Manage, true);
        let mut retyped = hubspot_property();
        retyped.type_ = "string".into();
        let decision = decide(&managed, Some(&retyped));
        assert_eq!(decision.write, None);
        assert!(matches!(decision.change, PropertyChange::Conflict(_)), "{decision:?}");
        let mut defined = drifted();
        defined.hubspot_defined = Some(true);
        let decision = decide(&managed, Some(&defined));
        assert_eq!(
            decision,
            Decision { write: None, change: PropertyChange::HubSpotDefined { drift: vec!["label".into()] } }
        );
    }

    #[test]
    fn a_write_needs_the_group_when_it_creates_or_moves_the_property_and_is_announced() {
        let spec = property_spec();
        let create = Write::Create(desired_create(&spec));
        assert!(create.needs_group());
        assert_eq!(
            create.announcement(&spec),
            EventToPublish::normal("PropertyCreated", "Created HubSpot property loyalty_tier on contacts")
        );
        let relabel = Write::Update {
            fields: vec!["label".into()],
            patch: PropertyUpdate { label: Some("Tier".into()), ..Default::default() },
        };
        assert!(!relabel.needs_group());
        assert_eq!(
            relabel.announcement(&spec),
            EventToPublish::normal("PropertyUpdated", "Updated HubSpot property loyalty_tier on contacts: label")
        );
        let regroup = Write::Update {
            fields: vec!["groupName".into()],
            patch: PropertyUpdate { group_name: Some("loyalty".into()), ..Default::default() },
        };
        assert!(regroup.needs_group());
    }

    // ------------------------------------------------------------ CRD rules (client-side CEL)

    fn object(edit: impl FnOnce(&mut HubSpotPropertySpec)) -> HubSpotProperty {
        let mut spec = property_spec();
        edit(&mut spec);
        HubSpotProperty::new("loyalty-tier", spec)
    }

    fn cel_errors(object: &HubSpotProperty, old: Option<&HubSpotProperty>) -> String {
        let outcome = match old {
            None => kube::core::cel::validate_cel(object),
            Some(old) => kube::core::cel::validate_cel_update(object, old),
        };
        outcome.err().map(|e| format!("{e:?}")).unwrap_or_default()
    }

    #[test]
    fn cel_accepts_valid_type_field_type_pairs() {
        let pairs = [
            (PropertyType::Bool, FieldType::Booleancheckbox),
            (PropertyType::Enumeration, FieldType::Radio),
            (PropertyType::Date, FieldType::Date),
            (PropertyType::Datetime, FieldType::Date),
            (PropertyType::String, FieldType::Textarea),
            (PropertyType::Number, FieldType::Number),
            (PropertyType::PhoneNumber, FieldType::Phonenumber),
        ];
        for (type_, field_type) in pairs {
            let o = object(|s| (s.type_, s.field_type) = (type_, field_type));
            assert_eq!(cel_errors(&o, None), "", "{type_:?}/{field_type:?}");
        }
    }

    #[test]
    fn cel_refuses_invalid_pairs_enumerations_without_options_and_bad_names() {
        let o = object(|s| (s.type_, s.field_type) = (PropertyType::Number, FieldType::Text));
        assert!(cel_errors(&o, None).contains("fieldType is not valid for this type"));
        let o = object(|s| s.options.clear());
        assert!(cel_errors(&o, None).contains("a property of type enumeration needs options"));
        let o = object(|s| s.name = "Loyalty Tier".into());
        assert!(cel_errors(&o, None).contains("name must start with a lowercase letter"));
        let o = object(|s| s.group.as_mut().unwrap().name = "other".into());
        assert!(cel_errors(&o, None).contains("group.name must equal groupName"));
    }

    #[test]
    fn cel_keeps_name_and_uniqueness_immutable() {
        let old = object(|_| {});
        assert_eq!(cel_errors(&object(|s| s.label = "Tier".into()), Some(&old)), "");
        assert!(cel_errors(&object(|s| s.name = "tier".into()), Some(&old)).contains("name is immutable"));
        assert!(cel_errors(&object(|s| s.has_unique_value = true), Some(&old)).contains("hasUniqueValue is immutable"));
    }
}
