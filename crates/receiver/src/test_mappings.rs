//! Mappings for the unit tests.

use model::api::mapping::{Direction, FieldMapping, MatchKey};
use model::config::MappingConfig;

/// A field flowing `direction` between a HubSpot property and an external field.
pub fn field(hubspot_property: &str, external_field: &str, direction: Direction) -> FieldMapping {
    FieldMapping { hubspot_property: hubspot_property.into(), external_field: external_field.into(), direction }
}

/// Mapping `name` of `object_type`, matched on `key` (HubSpot property, external field), with
/// `fields` and a backfill; no destinations, sources, associations or timestamp field.
pub fn mapping(name: &str, object_type: &str, key: (&str, &str), fields: Vec<FieldMapping>) -> MappingConfig {
    MappingConfig {
        backfill: true,
        name: name.into(),
        object_type: object_type.into(),
        match_key: MatchKey { hubspot_property: key.0.into(), external_field: key.1.into() },
        fields,
        sinks: vec![],
        conflict_policy: Default::default(),
        external_timestamp_field: None,
        sources: vec![],
        associations: vec![],
    }
}
