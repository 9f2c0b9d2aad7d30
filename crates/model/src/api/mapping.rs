//! `PropertyMapping`: which HubSpot properties of one object type sync to which external fields.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// Condition types set on a `PropertyMapping`.
pub mod condition_types {
    pub const READY: &str = "Ready";
    pub const INTEGRATION_FOUND: &str = "IntegrationFound";
    pub const PROPERTIES_EXIST: &str = "PropertiesExist";
    /// Whether the integration's receivers sync the mapping without error (see
    /// [`MappingSync`](super::MappingSync)).
    pub const SYNCED: &str = "Synced";
}

/// Maps HubSpot properties of one object type to fields of external destinations.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "hubspot.io",
    version = "v1alpha1",
    kind = "PropertyMapping",
    namespaced,
    status = "PropertyMappingStatus",
    shortname = "hspm",
    category = "hubspot",
    printcolumn = r#"{"name":"Integration","type":"string","jsonPath":".spec.integrationRef.name"}"#,
    printcolumn = r#"{"name":"Object","type":"string","jsonPath":".spec.objectType"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.sync.lagSeconds","priority":1}"#,
    printcolumn = r#"{"name":"Dead Letters","type":"integer","jsonPath":".status.sync.deadLetters","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new(
        "!has(self.externalTimestampField) || \
         (self.externalTimestampField != self.matchKey.externalField && \
          self.fields.all(f, f.externalField != self.externalTimestampField))"
    ).message("externalTimestampField must not be the match key's or a mapped field's externalField"),
    validation = Rule::new(
        "!has(self.associations) || self.associations.all(a, a.field != self.matchKey.externalField && \
         self.fields.all(f, f.externalField != a.field) && \
         (!has(self.externalTimestampField) || a.field != self.externalTimestampField))"
    ).message("an association's field must not be the match key's, a mapped field's or the timestamp's externalField"),
)]
#[serde(rename_all = "camelCase")]
pub struct PropertyMappingSpec {
    /// The `HubSpotIntegration` (same namespace) whose receiver runs this mapping. Immutable:
    /// to move a mapping to another integration, create a new one.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "integrationRef is immutable: create a new mapping for another integration"
    }]))]
    pub integration_ref: IntegrationRef,
    /// What syncs: the object type, the match key and the mapped fields.
    #[serde(flatten)]
    pub records: MappedRecords,
    /// Associations delivered with each record: per entry, the ids of the `toObjectType`
    /// records the object is associated with, as the array field `field`. They are read from
    /// HubSpot (Associations v4) whenever the object is, and when HubSpot reports an
    /// association change. At most 10, each `toObjectType` and each `field` once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "self.all(a, self.exists_one(b, b.toObjectType == a.toObjectType))",
            "message": "each toObjectType may be listed only once"
        },
        {
            "rule": "self.all(a, self.exists_one(b, b.field == a.field))",
            "message": "each association field may be listed only once"
        }
    ]))]
    pub associations: Vec<AssociationMapping>,
    /// Where mapped records are delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Destination>,
    /// How it syncs: backfill, conflicts, the external records' timestamp.
    #[serde(flatten)]
    pub policy: SyncPolicy,
    /// Systems the receiver polls for records to write to HubSpot, besides the ingest API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
}

impl PropertyMappingSpec {
    /// `records` synced by the integration `integration`, with the default policy and without
    /// associations, destinations or sources.
    pub fn new(integration: impl Into<String>, records: MappedRecords) -> Self {
        PropertyMappingSpec {
            integration_ref: IntegrationRef { name: integration.into() },
            records,
            associations: vec![],
            destinations: vec![],
            policy: SyncPolicy::default(),
            sources: vec![],
        }
    }
}

fn default_backfill() -> bool {
    true
}

/// The HubSpot records a mapping syncs and how they match external records: one part of both
/// the `PropertyMapping` spec and the receiver config's mapping, flattened into each. Two parts
/// ([`SyncPolicy`] is the other) rather than one, because their keys sit apart in the receiver
/// config and that file's bytes are hashed into the receiver pods' template: one part would
/// reorder its keys and roll every receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappedRecords {
    /// HubSpot object type: contacts, companies, deals, tickets and the other standard object
    /// names, or a custom object type id (`2-123456`).
    #[schemars(length(min = 1, max = 100))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([a-z][a-z0-9_]*|[0-9]+-[0-9]+)$')",
        "message": "objectType must be an object name such as contacts, or a custom object type id such as 2-123456"
    }]))]
    pub object_type: String,
    /// How a HubSpot record is identified in the external system.
    pub match_key: MatchKey,
    /// The properties that sync (at most 100). Only these are ever read from HubSpot. Each
    /// `hubspotProperty` and each `externalField` appears once.
    #[schemars(length(min = 1, max = 100))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "self.all(f, self.exists_one(g, g.hubspotProperty == f.hubspotProperty))",
            "message": "each hubspotProperty may be mapped only once"
        },
        {
            "rule": "self.all(f, self.exists_one(g, g.externalField == f.externalField))",
            "message": "each externalField may be mapped only once"
        }
    ]))]
    pub fields: Vec<FieldMapping>,
}

impl MappedRecords {
    /// Records of `object_type` matched on `match_key`, mapped as `fields` say.
    pub fn new(object_type: impl Into<String>, match_key: MatchKey, fields: Vec<FieldMapping>) -> Self {
        MappedRecords { object_type: object_type.into(), match_key, fields }
    }
}

/// How a mapping's records sync, besides where they go: the other part (see [`MappedRecords`])
/// of both the `PropertyMapping` spec and the receiver config's mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Deliver the records that existed before the mapping, and catch up on changes made while
    /// the receiver was down: at each receiver start, HubSpot is searched for objects modified
    /// since the mapping last caught up (every object the first time). Destinations skip what
    /// they already have. Turn it off to deliver only changes from now on.
    #[serde(default = "default_backfill")]
    pub backfill: bool,
    /// Which side wins when a field changed both in HubSpot and in the external system since it
    /// last synced: `newestWins` (default: the later change, by the external record's timestamp
    /// and HubSpot's modification time of the property), `hubspotWins` or `externalWins`.
    /// Only fields flowing to HubSpot (`ToHubSpot`, `Both`) can conflict.
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    /// External field of ingested records that holds when the record last changed (RFC 3339 or
    /// epoch milliseconds). `newestWins` compares it with HubSpot's modification time; without
    /// it, the time the receiver accepted the record is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_timestamp_field: Option<String>,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            backfill: default_backfill(),
            conflict_policy: ConflictPolicy::default(),
            external_timestamp_field: None,
        }
    }
}

/// One source of records for HubSpot; exactly one of the fields is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Poll a PostgreSQL table or query for rows changed since the last poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSource>,
}

/// A PostgreSQL table or query polled for changed rows. Each row is a record keyed by column
/// names (the match key's `externalField`, fields flowing to HubSpot, `externalTimestampField`;
/// other columns are ignored). Rows whose cursor column is above the last value read are taken,
/// in cursor order; rows with a NULL cursor are never taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.table) != has(self.query)",
    "message": "set exactly one of table and query"
}]))]
pub struct PostgresSource {
    /// Secret key holding the connection string, e.g. `postgres://user:password@host:5432/db`.
    pub connection_secret: SecretKeyRef,
    /// What is read and how often.
    #[serde(flatten)]
    pub poll: PostgresPoll,
}

/// What a PostgreSQL source reads and how often: the same in the `PropertyMapping` and in the
/// receiver config, whose source holds the connection string instead of its Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresPoll {
    /// Table to read, optionally schema-qualified (`crm.contacts`). Set this or `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"))]
    pub table: Option<String>,
    /// A `SELECT` whose rows are the records. Set this or `table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Column that grows whenever a row changes (an `updated_at` timestamp or a sequence).
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"))]
    pub cursor_column: String,
    /// Seconds between polls.
    #[serde(default = "default_poll_interval_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: u32,
}

fn default_poll_interval_seconds() -> u32 {
    30
}

/// Which side wins a conflict: a field changed on both sides since it last synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConflictPolicy {
    /// The later change wins (external record timestamp vs. HubSpot's property modification
    /// time); a tie goes to the external change, which arrived last.
    #[default]
    NewestWins,
    /// HubSpot's value is kept; the external change to that field is dropped.
    HubspotWins,
    /// The external value is written whatever changed in HubSpot.
    ExternalWins,
}

/// Reference to a `HubSpotIntegration` in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IntegrationRef {
    /// Name of the `HubSpotIntegration`.
    pub name: String,
}

/// The pair of keys that identify one record on both sides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "size(self.hubspotProperty) > 0 && size(self.externalField) > 0",
    "message": "matchKey.hubspotProperty and matchKey.externalField must not be empty"
}]))]
pub struct MatchKey {
    /// HubSpot property whose value identifies the record (for example `email` or `hs_object_id`).
    pub hubspot_property: String,
    /// External field holding the same value.
    pub external_field: String,
}

impl MatchKey {
    pub fn new(hubspot_property: impl Into<String>, external_field: impl Into<String>) -> Self {
        MatchKey { hubspot_property: hubspot_property.into(), external_field: external_field.into() }
    }
}

/// One HubSpot property and the external field it maps to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldMapping {
    /// Internal name of the HubSpot property.
    #[schemars(length(min = 1, max = 100))]
    pub hubspot_property: String,
    /// Name of the field in the external record.
    #[schemars(length(min = 1, max = 100))]
    pub external_field: String,
    /// Which way values flow.
    #[serde(default)]
    pub direction: Direction,
}

impl FieldMapping {
    pub fn new(hubspot_property: impl Into<String>, external_field: impl Into<String>, direction: Direction) -> Self {
        FieldMapping { hubspot_property: hubspot_property.into(), external_field: external_field.into(), direction }
    }
}

/// Associations of the mapped object to records of another type, delivered as one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssociationMapping {
    /// The associated object type: contacts, companies, deals, tickets or another object
    /// name, or a custom object type id (`2-123456`).
    #[schemars(length(min = 1, max = 100))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([a-z][a-z0-9_]*|[0-9]+-[0-9]+)$')",
        "message": "toObjectType must be an object name such as companies, or a custom object type id such as 2-123456"
    }]))]
    pub to_object_type: String,
    /// Name of the field in the external record: an array of the associated records' ids,
    /// ascending, empty when there are none.
    #[schemars(length(min = 1, max = 100))]
    pub field: String,
}

/// Which way a field's values flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Direction {
    /// HubSpot to the destinations.
    #[default]
    ToExternal,
    /// External sources to HubSpot.
    ToHubSpot,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether values of this field are read from HubSpot and delivered to destinations.
    pub fn to_external(self) -> bool {
        matches!(self, Direction::ToExternal | Direction::Both)
    }

    /// Whether external systems may write values of this field to HubSpot.
    pub fn to_hubspot(self) -> bool {
        matches!(self, Direction::ToHubSpot | Direction::Both)
    }
}

/// One destination of mapped records; exactly one of the fields is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.http), has(self.file), has(self.postgres), has(self.nats)].filter(x, x).size() == 1",
    "message": "set exactly one of http, file, postgres and nats"
}]))]
pub struct Destination {
    /// POST batches of records as JSON to an HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpDestination>,
    /// Append records as JSON lines to a file on the receiver's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileDestination>,
    /// Upsert records into a PostgreSQL table, guarded by HubSpot's `updatedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresDestination>,
    /// Publish one message per record change to a NATS JetStream subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsDestination>,
}

/// An HTTP endpoint that accepts batches of records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpDestination {
    /// URL the batches are POSTed to.
    pub url: String,
    /// Secret key used to HMAC-sign each request, so the endpoint can verify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SecretKeyRef>,
}

/// A JSON-lines file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDestination {
    /// Path of the file; relative paths are under the receiver's data directory.
    pub path: String,
}

/// A PostgreSQL table with one row per match key. Its columns: the match key's `externalField`
/// (primary key), every field's `externalField` that flows to external systems, and
/// `hubspot_object_id`, `hubspot_updated_at` (timestamptz) and `deleted` (boolean). A row is
/// only written when the record is at least as new as the row (`hubspot_updated_at`), so
/// replays and late records never overwrite newer data. Deletions set `deleted = true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresDestination {
    /// Secret key holding the connection string, e.g. `postgres://user:password@host:5432/db`.
    pub connection_secret: SecretKeyRef,
    /// Table name, optionally schema-qualified (`crm.contacts`); used exactly as written (quoted).
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"))]
    pub table: String,
    /// Create the table (text columns) and an index on `hubspot_object_id` if the table is missing.
    #[serde(default)]
    pub create_table: bool,
}

/// A NATS subject bound to a JetStream stream: one JSON message per record, with the record's
/// idempotency key as `Nats-Msg-Id` so the stream drops replays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.url) != has(self.urlSecret)",
    "message": "set exactly one of url and urlSecret"
}]))]
pub struct NatsDestination {
    /// Server URL, e.g. `nats://nats.messaging:4222` (comma-separate several). Set this or
    /// `urlSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret key holding the server URL, for URLs that carry credentials (`nats://user:password@host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<SecretKeyRef>,
    /// Subject the messages are published to; a JetStream stream must capture it.
    pub subject: String,
}

/// Observed state of a `PropertyMapping`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PropertyMappingStatus {
    /// `Ready`, `IntegrationFound`, `PropertiesExist` and `Synced`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Mapped HubSpot properties that do not exist in the portal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_properties: Vec<String>,
    /// The last `hubspot.io/reconcile-requested-at` value a full reconcile handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// What the integration's receivers report of this mapping, refreshed about every minute;
    /// absent while no receiver answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<MappingSync>,
}

/// The mapping's sync, added up over the receiver pods that answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingSync {
    /// Receiver pods that answered, of those ready, as `answered/ready`.
    pub receivers: String,
    /// Records delivered to destinations (one per destination) since the receivers started.
    pub records_delivered: u64,
    /// Records written to HubSpot since the receivers started.
    pub records_written: u64,
    /// Records a destination refused, kept in the dead-letter store
    /// (`hubspot-operator dead-letters list`).
    pub dead_letters: u64,
    /// Records HubSpot refused, kept for resending (`hubspot-operator rejected list`).
    pub rejected_records: u64,
    /// Records waiting to be written to HubSpot.
    pub queued_for_hubspot: u64,
    /// The integration's webhook events not yet delivered everywhere (every mapping of the
    /// integration shows the same figure).
    pub pending_events: u64,
    /// Seconds the oldest of those has waited: how far the integration's sync is behind.
    pub lag_seconds: u64,
    /// When the mapping's last sync step completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    /// The mapping's last error; it is retried, and `Synced` is `False` while it is newer than
    /// `lastSuccessTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(hubspot: &str, external: &str) -> FieldMapping {
        FieldMapping {
            hubspot_property: hubspot.into(),
            external_field: external.into(),
            direction: Direction::ToExternal,
        }
    }

    fn file() -> Destination {
        Destination { file: Some(FileDestination { path: "contacts.jsonl".into() }), ..Default::default() }
    }

    fn mapping(edit: impl FnOnce(&mut PropertyMappingSpec)) -> PropertyMapping {
        let records = MappedRecords::new(
            "contacts",
            MatchKey::new("email", "email"),
            vec![field("firstname", "first_name"), field("lastname", "last_name")],
        );
        let mut spec = PropertyMappingSpec { destinations: vec![file()], ..PropertyMappingSpec::new("crm", records) };
        edit(&mut spec);
        PropertyMapping::new("contacts", spec)
    }

    fn cel_errors(object: &PropertyMapping, old: Option<&PropertyMapping>) -> String {
        let outcome = match old {
            None => kube::core::cel::validate_cel(object),
            Some(old) => kube::core::cel::validate_cel_update(object, old),
        };
        outcome.err().map(|e| format!("{e:?}")).unwrap_or_default()
    }

    #[test]
    fn cel_accepts_a_valid_mapping_and_custom_object_types() {
        assert_eq!(cel_errors(&mapping(|_| {}), None), "");
        for object_type in ["companies", "line_items", "2-123456", "p62515_cars"] {
            assert_eq!(cel_errors(&mapping(|s| s.records.object_type = object_type.into()), None), "", "{object_type}");
        }
        assert_eq!(cel_errors(&mapping(|s| s.destinations.clear()), None), "");
    }

    #[test]
    fn cel_refuses_a_destination_without_exactly_one_kind() {
        let none = mapping(|s| s.destinations = vec![Destination::default()]);
        assert!(cel_errors(&none, None).contains("set exactly one of http, file, postgres and nats"));
        let two = mapping(|s| {
            s.destinations[0].http = Some(HttpDestination { url: "https://example.com".into(), signing_secret: None })
        });
        assert!(cel_errors(&two, None).contains("set exactly one of http, file, postgres and nats"));
    }

    #[test]
    fn cel_refuses_a_property_or_external_field_mapped_twice() {
        let twice = mapping(|s| s.records.fields.push(field("firstname", "given_name")));
        let errors = cel_errors(&twice, None);
        assert!(errors.contains("each hubspotProperty may be mapped only once"), "{errors}");
        assert!(!errors.contains("each externalField"), "{errors}");
        let twice = mapping(|s| s.records.fields.push(field("nickname", "first_name")));
        let errors = cel_errors(&twice, None);
        assert!(errors.contains("each externalField may be mapped only once"), "{errors}");
        assert!(!errors.contains("each hubspotProperty"), "{errors}");
    }

    #[test]
    fn cel_refuses_an_empty_match_key_and_a_malformed_object_type() {
        let empty = mapping(|s| s.records.match_key.external_field.clear());
        assert!(
            cel_errors(&empty, None).contains("matchKey.hubspotProperty and matchKey.externalField must not be empty")
        );
        let empty = mapping(|s| s.records.match_key.hubspot_property.clear());
        assert!(
            cel_errors(&empty, None).contains("matchKey.hubspotProperty and matchKey.externalField must not be empty")
        );
        for object_type in ["Contacts", "contacts/1", "../deals", "2-"] {
            let bad = mapping(|s| s.records.object_type = object_type.into());
            assert!(cel_errors(&bad, None).contains("objectType must be an object name"), "{object_type}");
        }
    }

    #[test]
    fn cel_keeps_the_integration_ref_immutable() {
        let old = mapping(|_| {});
        assert_eq!(cel_errors(&mapping(|s| s.destinations.clear()), Some(&old)), "");
        let moved = mapping(|s| s.integration_ref.name = "billing".into());
        assert!(cel_errors(&moved, Some(&old)).contains("integrationRef is immutable"));
    }

    fn two_way(timestamp_field: Option<&str>) -> PropertyMapping {
        mapping(|s| {
            s.records.fields = vec![FieldMapping {
                hubspot_property: "phone".into(),
                external_field: "phone".into(),
                direction: Direction::ToHubSpot,
            }];
            s.destinations.clear();
            s.policy.external_timestamp_field = timestamp_field.map(str::to_string);
        })
    }

    #[test]
    fn cel_wants_exactly_one_of_table_and_query_in_a_postgres_source() {
        let source = |table: Option<&str>, query: Option<&str>| {
            let mut m = two_way(None);
            m.spec.sources = vec![Source {
                postgres: Some(PostgresSource {
                    connection_secret: SecretKeyRef { name: "db".into(), key: "url".into() },
                    poll: PostgresPoll {
                        table: table.map(str::to_string),
                        query: query.map(str::to_string),
                        cursor_column: "updated_at".into(),
                        interval_seconds: 30,
                    },
                }),
            }];
            cel_errors(&m, None)
        };
        assert_eq!(source(Some("crm.contacts"), None), "");
        assert_eq!(source(None, Some("SELECT * FROM contacts")), "");
        assert!(source(Some("contacts"), Some("SELECT 1")).contains("set exactly one of table and query"));
        assert!(source(None, None).contains("set exactly one of table and query"));
    }

    #[test]
    fn cel_keeps_the_timestamp_field_apart_from_mapped_fields() {
        assert_eq!(cel_errors(&two_way(None), None), "");
        assert_eq!(cel_errors(&two_way(Some("updated_at")), None), "");
        for taken in ["email", "phone"] {
            assert!(cel_errors(&two_way(Some(taken)), None).contains("externalTimestampField must not be"), "{taken}");
        }
    }
}
