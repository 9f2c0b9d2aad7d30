//! The PostgreSQL destination against a real server (`HUBSPOT_OPERATOR_TEST_POSTGRES_URL`);
//! every test works in a database of its own.

mod common;

use std::collections::BTreeMap;

use common::{TestDatabase, WAIT, contacts_mapping, eventually};
use model::config::SinkConfig;
use receiver::sync::sinks::PostgresSink;
use receiver::sync::{Op, Record, Sink, SinkError};

/// A contacts record as the worker makes it: key `email`, fields `first_name` and `stage`.
fn upsert(object_id: &str, email: &str, first_name: &str, updated_at: &str) -> Record {
    let mut record = Record {
        mapping: "crm/contacts".into(),
        object_type: "contacts".into(),
        object_id: object_id.into(),
        op: Op::Upsert,
        key: Some(email.into()),
        fields: BTreeMap::from([("first_name".to_string(), Some(first_name.to_string())), ("stage".to_string(), None)]),
        updated_at: updated_at.into(),
        idempotency_key: String::new(),
        associations: BTreeMap::new(),
    };
    record.idempotency_key = receiver::sync::plan::idempotency_key(&record);
    record
}

fn delete(object_id: &str, updated_at: &str) -> Record {
    let mut record = upsert(object_id, "", "", updated_at);
    record.op = Op::Delete;
    record.key = None;
    record.fields.clear();
    record
}

fn sink(db: &TestDatabase, table: &str, create_table: bool) -> PostgresSink {
    PostgresSink::new(&db.url, table, create_table, &contacts_mapping(vec![])).unwrap()
}

async fn deliver(sink: &PostgresSink, records: &[Record]) -> Result<(), SinkError> {
    tokio::time::timeout(WAIT, sink.deliver(records)).await.expect("delivery timed out")
}

/// Every row as (email, first_name, object id, updatedAt in epoch ms, deleted), by email.
async fn rows(db: &TestDatabase, table: &str) -> Vec<(String, Option<String>, String, i64, bool)> {
    let query = format!(
        "SELECT email, first_name, hubspot_object_id, \
         (extract(epoch from hubspot_updated_at) * 1000)::bigint, deleted FROM {table} ORDER BY email"
    );
    db.client()
        .await
        .query(&query, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn row(
    email: &str,
    first_name: &str,
    object_id: &str,
    updated_at_ms: i64,
    deleted: bool,
) -> (String, Option<String>, String, i64, bool) {
    (email.into(), Some(first_name.into()), object_id.into(), updated_at_ms, deleted)
}

const T1: &str = "2026-11-26T18:00:00.000Z";
const T1_MS: i64 = 1_795_716_000_000;
const T2: &str = "2026-11-26T18:00:00.001Z";
const T3: &str = "2026-11-26T18:00:05.000Z";

#[tokio::test]
async fn upserts_keep_the_newest_state_whatever_the_order() {
    let db = TestDatabase::create().await;
    let sink = sink(&db, "contacts", true);
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T2), upsert("2", "bob@example.com", "Bob", T1)])
        .await
        .unwrap();
    assert_eq!(
        rows(&db, "contacts").await,
        [row("ada@example.com", "Ada", "1", T1_MS + 1, false), row("bob@example.com", "Bob", "2", T1_MS, false)]
    );

    // Older than the row: a late or replayed record changes nothing.
    deliver(&sink, &[upsert("1", "ada@example.com", "Old Ada", T1)]).await.unwrap();
    assert_eq!(rows(&db, "contacts").await[0], row("ada@example.com", "Ada", "1", T1_MS + 1, false));

    // The same millisecond with other values: HubSpot's second write in that millisecond applies.
    deliver(&sink, &[upsert("1", "ada@example.com", "Adeline", T2)]).await.unwrap();
    assert_eq!(rows(&db, "contacts").await[0], row("ada@example.com", "Adeline", "1", T1_MS + 1, false));

    // Newer applies; a field HubSpot has no value for is NULL.
    deliver(&sink, &[upsert("2", "bob@example.com", "Robert", T3)]).await.unwrap();
    let client = db.client().await;
    let bob =
        client.query_one("SELECT first_name, stage FROM contacts WHERE email = 'bob@example.com'", &[]).await.unwrap();
    assert_eq!((bob.get::<_, Option<String>>(0), bob.get::<_, Option<String>>(1)), (Some("Robert".into()), None));
}

#[tokio::test]
async fn deletions_are_tombstones_that_late_records_cannot_revive() {
    let db = TestDatabase::create().await;
    let sink = sink(&db, "contacts", true);
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T1), upsert("2", "bob@example.com", "Bob", T1)])
        .await
        .unwrap();
    // Deletions rarely know the key; the object id finds the row.
    deliver(&sink, &[delete("1", T2)]).await.unwrap();
    assert_eq!(
        rows(&db, "contacts").await,
        [row("ada@example.com", "Ada", "1", T1_MS + 1, true), row("bob@example.com", "Bob", "2", T1_MS, false)]
    );

    // A late upsert from before the deletion, and one from the same instant: the deletion stands.
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T1)]).await.unwrap();
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T2)]).await.unwrap();
    assert!(rows(&db, "contacts").await[0].4, "row revived");
    // A late deletion does not remove a newer row either.
    deliver(&sink, &[upsert("2", "bob@example.com", "Bob", T3), delete("2", T2)]).await.unwrap();
    assert!(!rows(&db, "contacts").await[1].4, "newer row deleted");

    // Restored in HubSpot: a newer upsert brings the row back.
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T3)]).await.unwrap();
    assert_eq!(rows(&db, "contacts").await[0], row("ada@example.com", "Ada", "1", T1_MS + 5000, false));
}

#[tokio::test]
async fn a_changed_or_removed_key_retires_the_old_row() {
    let db = TestDatabase::create().await;
    let sink = sink(&db, "contacts", true);
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T1)]).await.unwrap();
    deliver(&sink, &[upsert("1", "ada@new.example.com", "Ada", T2)]).await.unwrap();
    assert_eq!(
        rows(&db, "contacts").await,
        [row("ada@example.com", "Ada", "1", T1_MS + 1, true), row("ada@new.example.com", "Ada", "1", T1_MS + 1, false)]
    );
    // No key value any more: the object keeps no live row.
    let mut keyless = upsert("1", "", "Ada", T3);
    keyless.key = None;
    deliver(&sink, &[keyless]).await.unwrap();
    assert!(rows(&db, "contacts").await.iter().all(|r| r.4), "{:?}", rows(&db, "contacts").await);
}

/// A merge in one batch, at one instant: the old ids are deleted (delivered first, as the
/// worker orders them) and the new record takes the primary's key. The new record's row stands.
#[tokio::test]
async fn a_key_taken_over_by_a_merged_record_in_one_batch_stays_live() {
    let db = TestDatabase::create().await;
    let sink = sink(&db, "contacts", true);
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T1), upsert("2", "ada.l@example.com", "Ada L", T1)])
        .await
        .unwrap();
    deliver(&sink, &[delete("1", T2), delete("2", T2), upsert("3", "ada@example.com", "Ada", T2)]).await.unwrap();
    assert_eq!(
        rows(&db, "contacts").await,
        [row("ada.l@example.com", "Ada L", "2", T1_MS + 1, true), row("ada@example.com", "Ada", "3", T1_MS + 1, false)]
    );
}

#[tokio::test]
async fn a_table_made_by_hand_gets_values_converted_to_its_column_types() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE SCHEMA crm; CREATE TABLE crm.people (email text PRIMARY KEY, first_name varchar(20), \
             stage integer CHECK (stage >= 0), hubspot_object_id bigint NOT NULL, \
             hubspot_updated_at timestamptz, deleted boolean NOT NULL DEFAULT false)",
        )
        .await
        .unwrap();
    let sink = sink(&db, "crm.people", false);
    let mut numeric = upsert("7", "cy@example.com", "Cy", T1);
    numeric.fields.insert("stage".into(), Some("3".into()));
    deliver(&sink, &[numeric]).await.unwrap();
    let cy = client.query_one("SELECT stage, hubspot_object_id FROM crm.people", &[]).await.unwrap();
    assert_eq!((cy.get::<_, i32>(0), cy.get::<_, i64>(1)), (3, 7));

    // A value the column cannot hold fails the whole batch: nothing of it is written.
    let mut not_a_number = upsert("8", "dee@example.com", "Dee", T1);
    not_a_number.fields.insert("stage".into(), Some("lead".into()));
    let error = deliver(&sink, &[upsert("9", "eve@example.com", "Eve", T1), not_a_number]).await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert!(error.to_string().contains("22P02"), "{error}");
    assert!(!error.to_string().contains("lead"), "the value stays out of the reason: {error}");
    // A constraint violation is permanent too.
    let mut negative = upsert("9", "eve@example.com", "Eve", T1);
    negative.fields.insert("stage".into(), Some("-1".into()));
    let error = deliver(&sink, &[negative]).await.unwrap_err();
    assert!(error.is_permanent() && error.to_string().contains("23514"), "{error}");
    let count: i64 = client.query_one("SELECT count(*) FROM crm.people", &[]).await.unwrap().get(0);
    assert_eq!(count, 1);
    // Nothing stuck: the connection is usable for the next batch.
    deliver(&sink, &[upsert("9", "eve@example.com", "Eve", T1)]).await.unwrap();
}

#[tokio::test]
async fn missing_table_or_column_is_permanent() {
    let db = TestDatabase::create().await;
    let error = deliver(&sink(&db, "contacts", false), &[upsert("1", "ada@example.com", "Ada", T1)]).await.unwrap_err();
    assert!(error.is_permanent() && error.to_string().contains("42P01"), "{error}");

    db.client()
        .await
        .batch_execute(
            "CREATE TABLE contacts (email text PRIMARY KEY, first_name text, hubspot_object_id text, \
             hubspot_updated_at timestamptz, deleted boolean)",
        )
        .await
        .unwrap();
    let error = deliver(&sink(&db, "contacts", false), &[upsert("1", "ada@example.com", "Ada", T1)]).await.unwrap_err();
    assert!(error.is_permanent() && error.to_string().contains("42703"), "{error}");
    assert!(error.to_string().contains("stage"), "{error}");
}

#[tokio::test]
async fn unreachable_server_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://postgres:pw-not-shown@{}/test?connect_timeout=5", listener.local_addr().unwrap());
    drop(listener);
    let sink = PostgresSink::new(&url, "contacts", true, &contacts_mapping(vec![])).unwrap();
    let error = tokio::time::timeout(WAIT, sink.deliver(&[upsert("1", "a@b.c", "A", T1)])).await.unwrap().unwrap_err();
    assert!(matches!(error, SinkError::Retryable { .. }), "{error:?}");
    assert!(!error.to_string().contains("pw-not-shown"), "{error}");
}

#[tokio::test]
async fn serialization_failure_is_retryable_and_the_retry_applies() {
    let db = TestDatabase::create().await;
    let sink = sink(&db, "contacts", true);
    deliver(&sink, &[upsert("1", "ada@example.com", "Ada", T1)]).await.unwrap();
    // New connections of this database run REPEATABLE READ: a row changed under a waiting
    // transaction fails it with SQLSTATE 40001.
    let client = db.client().await;
    client
        .batch_execute(&format!("ALTER DATABASE \"{}\" SET default_transaction_isolation = 'repeatable read'", db.name))
        .await
        .unwrap();
    let sink = std::sync::Arc::new(self::sink(&db, "contacts", false));

    client
        .batch_execute("BEGIN; UPDATE contacts SET first_name = 'Locked' WHERE email = 'ada@example.com'")
        .await
        .unwrap();
    let writer = tokio::spawn({
        let sink = sink.clone();
        async move { deliver(&sink, &[upsert("1", "ada@example.com", "Adeline", T2)]).await }
    });
    let watcher = db.client().await;
    eventually("the sink to wait for the row lock", || async {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        waiting > 0
    })
    .await;
    client.batch_execute("COMMIT").await.unwrap();

    let error = tokio::time::timeout(WAIT, writer).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(error, SinkError::Retryable { .. }) && error.to_string().contains("40001"), "{error}");
    deliver(&sink, &[upsert("1", "ada@example.com", "Adeline", T2)]).await.unwrap();
    assert_eq!(rows(&db, "contacts").await, [row("ada@example.com", "Adeline", "1", T1_MS + 1, false)]);
}

#[tokio::test]
async fn bad_identifiers_are_refused_when_the_sink_is_built() {
    // Nothing listens here: a refusal can only come from checking the configuration.
    let url = "postgres://postgres@127.0.0.1:9/test";
    let config = |table: &str| SinkConfig::Postgres { url: url.into(), table: table.into(), create_table: true };
    let dir = tempfile::tempdir().unwrap();
    let mapping = contacts_mapping(vec![]);
    for table in ["contacts; DROP TABLE x", "\"contacts\"", "a.b.c", "1st", ""] {
        let error = Sink::from_config(&config(table), &mapping, dir.path()).unwrap_err();
        assert!(error.to_string().contains("invalid PostgreSQL"), "{table:?}: {error}");
    }
    let mut bad_column = contacts_mapping(vec![]);
    bad_column.records.fields[0].external_field = "first name".into();
    assert!(Sink::from_config(&config("contacts"), &bad_column, dir.path()).is_err());
    let mut reserved = contacts_mapping(vec![]);
    reserved.records.fields[0].external_field = "hubspot_updated_at".into();
    assert!(Sink::from_config(&config("contacts"), &reserved, dir.path()).is_err());
    assert!(Sink::from_config(&config("crm.contacts"), &mapping, dir.path()).is_ok());
    let bad_url = SinkConfig::Postgres {
        url: "postgres://x:secret@h:notaport/db".into(),
        table: "t".into(),
        create_table: false,
    };
    let error = Sink::from_config(&bad_url, &mapping, dir.path()).unwrap_err();
    assert!(!format!("{error:#}").contains("secret"), "{error:#}");
}

/// Association fields are `text[]` columns: the ids arrive as an array, an empty one clears
/// them, and a same-millisecond state with other associations applies.
#[tokio::test]
async fn associations_are_stored_as_text_arrays() {
    let db = TestDatabase::create().await;
    let mut mapping = contacts_mapping(vec![]);
    mapping.associations = vec![model::api::mapping::AssociationMapping {
        to_object_type: "companies".into(),
        field: "company_ids".into(),
    }];
    let sink = PostgresSink::new(&db.url, "contacts", true, &mapping).unwrap();
    let with_companies = |ids: &[&str]| {
        let mut record = upsert("1", "ada@example.com", "Ada", T1);
        record.associations = BTreeMap::from([("company_ids".into(), ids.iter().map(|id| id.to_string()).collect())]);
        record.idempotency_key = receiver::sync::plan::idempotency_key(&record);
        record
    };
    let companies = || async {
        let row = db.client().await.query_one("SELECT company_ids FROM contacts", &[]).await.unwrap();
        row.get::<_, Vec<String>>(0)
    };

    deliver(&sink, &[with_companies(&["5", "40"])]).await.unwrap();
    assert_eq!(companies().await, ["5", "40"]);
    deliver(&sink, &[with_companies(&["41"])]).await.unwrap();
    assert_eq!(companies().await, ["41"]);
    deliver(&sink, &[with_companies(&[])]).await.unwrap();
    assert!(companies().await.is_empty());
}
