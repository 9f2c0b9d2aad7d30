//! What the operator and the receivers it runs agree on: the paths a receiver serves.

/// Path HubSpot delivers webhook batches to.
pub const WEBHOOK_PATH: &str = "/webhooks/hubspot";

/// Path prefixes of what the receiver serves to the outside: HubSpot's webhooks, the ingest
/// API and the timeline API. The probes share the public port (cloud load balancers health-check the port they send
/// traffic to) but are not routed; `/metrics` and `/sync/status` are not on that port at all.
pub const PUBLIC_PATH_PREFIXES: [&str; 3] = ["/webhooks", "/ingest", "/timeline"];

/// Path external systems POST records for HubSpot to: `/ingest/{namespace}/{mapping}`.
pub const INGEST_PATH: &str = "/ingest/{namespace}/{mapping}";

/// Path external systems POST occurrences of a timeline event type to:
/// `/timeline/{namespace}/{name}`.
pub const TIMELINE_PATH: &str = "/timeline/{namespace}/{name}";
