//! Mappings for the unit tests.

use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::MappingConfig;

/// A field flowing `direction` between a HubSpot property and an external field.
pub fn field(hubspot_property: &str, external_field: &str, direction: Direction) -> FieldMapping {
    FieldMapping::new(hubspot_property, external_field, direction)
}

/// Mapping `name` of `object_type`, matched on `key` (HubSpot property, external field), with
/// `fields` and a backfill; no destinations, sources, associations or timestamp field.
pub fn mapping(name: &str, object_type: &str, key: (&str, &str), fields: Vec<FieldMapping>) -> MappingConfig {
    MappingConfig::new(name, MappedRecords::new(object_type, MatchKey::new(key.0, key.1), fields))
}
