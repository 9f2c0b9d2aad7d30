use super::*;
use hubspot::WebhookEvent;

/// Commits `writes` without limits, as the log of an empty file would.
fn commit(conn: &mut Connection, writes: &[Write], now_ms: i64) -> Vec<AppendOutcome> {
    let limits = LogLimits { max_pending_events: u64::MAX, max_pending_bytes: u64::MAX };
    let mut occupancy = Occupancy::read(conn).unwrap();
    commit_group(conn, writes, now_ms, &limits, &mut occupancy).unwrap().into_iter().map(Result::unwrap).collect()
}

/// An event known by a name; its event id is the name's letter.
fn event(name: &str) -> EncodedEvent {
    EncodedEvent { identity: identity(name, 0), json: "{}".into() }
}

fn identity(name: &str, occurred_at: i64) -> DeliveryIdentity {
    DeliveryIdentity {
        portal_id: 62515,
        subscription_id: 3,
        event_id: u64::from(name.as_bytes()[0]),
        object_id: 9,
        occurred_at,
        association: None,
    }
}

fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    conn.prepare(sql).unwrap().query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn key_known(conn: &Connection, name: &str) -> bool {
    conn.query_row("SELECT 1 FROM seen_deliveries WHERE event_id = ?1", [i64::from(name.as_bytes()[0])], |_| Ok(()))
        .optional()
        .unwrap()
        .is_some()
}

#[test]
fn a_refused_append_leaves_nothing_behind_and_the_rest_of_its_group_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("events.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let limits = LogLimits { max_pending_events: 3, max_pending_bytes: 0 };
    let mut occupancy = Occupancy::default();
    let writes = [
        Write::Append(vec![event("a"), event("b")]),
        // "c" would fit, "d" not: the append is refused whole.
        Write::Append(vec![event("c"), event("d")]),
        Write::Append(vec![event("e")]),
    ];
    let outcomes = commit_group(&mut conn, &writes, 1_000, &limits, &mut occupancy).unwrap();

    assert_eq!(outcomes[0].as_ref().unwrap(), &AppendOutcome { appended: 2, duplicates: 0 });
    assert!(outcomes[1].is_err());
    assert_eq!(outcomes[2].as_ref().unwrap(), &AppendOutcome { appended: 1, duplicates: 0 });
    assert_eq!(occupancy, Occupancy { events: 3, bytes: 6 });
    assert_eq!(Occupancy::read(&conn).unwrap(), occupancy);
    for (name, known) in [("a", true), ("b", true), ("c", false), ("d", false), ("e", true)] {
        assert_eq!(key_known(&conn, name), known, "{name}");
    }
}

#[test]
fn prune_forgets_only_identities_older_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("events.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    commit(&mut conn, &[Write::Append(vec![event("old")])], 1_000);
    commit(&mut conn, &[Write::Append(vec![event("new")])], 5_000);

    assert_eq!(prune_seen(&mut conn, 5_000).unwrap(), 1);
    assert!(!key_known(&conn, "old"));
    assert!(key_known(&conn, "new"));

    // A forgotten identity is stored again; a remembered one is still a duplicate.
    let outcomes = commit(&mut conn, &[Write::Append(vec![event("old")]), Write::Append(vec![event("new")])], 6_000);
    assert_eq!(outcomes[0], AppendOutcome { appended: 1, duplicates: 0 });
    assert_eq!(outcomes[1], AppendOutcome { appended: 0, duplicates: 1 });
}

#[test]
fn prune_keeps_an_identity_until_both_its_occurrence_and_its_sighting_are_past_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("events.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let at = |name: &str, occurred_at| EncodedEvent { identity: identity(name, occurred_at), json: "{}".into() };
    // Occurred long before it was seen (a late first delivery): kept for its sighting.
    commit(&mut conn, &[Write::Append(vec![at("l", 100)])], 9_000);
    // Occurred after the cutoff though seen before it (the sender's clock runs ahead): kept.
    commit(&mut conn, &[Write::Append(vec![at("f", 9_500)])], 1_000);
    commit(&mut conn, &[Write::Append(vec![at("o", 100)])], 1_000);

    assert_eq!(prune_seen(&mut conn, 5_000).unwrap(), 1);
    assert!(key_known(&conn, "l") && key_known(&conn, "f"));
    assert!(!key_known(&conn, "o"));
}

#[tokio::test]
async fn text_identities_of_an_older_log_still_make_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let plain = WebhookEvent {
        event_id: 7,
        subscription_id: 3,
        portal_id: 62515,
        object_id: 9,
        occurred_at: 1_700_000_000_000,
        ..Default::default()
    };
    let association =
        WebhookEvent { object_id: 0, from_object_id: Some(123), to_object_id: Some(456), ..plain.clone() };
    {
        let conn = open_connection(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, appended_at INTEGER);
             CREATE TABLE seen (key TEXT PRIMARY KEY, seen_at INTEGER NOT NULL) WITHOUT ROWID;
             CREATE INDEX seen_by_time ON seen (seen_at);",
        )
        .unwrap();
        for key in [plain.dedup_key(), association.dedup_key(), "not a key".to_string()] {
            conn.execute("INSERT INTO seen VALUES (?1, ?2)", rusqlite::params![key, now_ms()]).unwrap();
        }
    }

    let log = EmbeddedEventLog::open(&path).unwrap();
    let mut fresh = plain.clone();
    fresh.event_id = 8;
    let outcome = log.append(vec![plain, association, fresh]).await.unwrap();
    assert_eq!(outcome, AppendOutcome { appended: 1, duplicates: 2 });
    drop(log);
    let conn = open_connection(&path).unwrap();
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('seen', 'seen_by_time')", [], |row| row.get(0))
        .unwrap();
    assert_eq!(tables, 0, "the text table is gone");
}

#[test]
fn text_identities_move_in_slices_and_ties_at_a_slice_end_move_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("events.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE seen (key TEXT PRIMARY KEY, seen_at INTEGER NOT NULL) WITHOUT ROWID;
         CREATE INDEX seen_by_time ON seen (seen_at);",
    )
    .unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let tx = conn.transaction().unwrap();
    // 45,000 identities; those around the first slice's end (20,000) share a first-seen time.
    for n in 0..45_000i64 {
        let seen_at = if (19_990..20_010).contains(&n) { 19_990 } else { n };
        let key = identity("a", n).key();
        tx.execute("INSERT INTO seen VALUES (?1, ?2)", rusqlite::params![key, seen_at]).unwrap();
    }
    tx.commit().unwrap();

    move_text_identities(&mut conn).unwrap();
    let moved: Vec<i64> = column(&conn, "SELECT seen_at FROM seen_deliveries ORDER BY occurred_at");
    let expected: Vec<i64> = (0..45_000).map(|n| if (19_990..20_010).contains(&n) { 19_990 } else { n }).collect();
    assert_eq!(moved, expected);
    let left: Vec<String> = column(&conn, "SELECT name FROM sqlite_master WHERE name LIKE 'seen%'");
    assert_eq!(left, vec!["seen_deliveries".to_string()]);
}

#[tokio::test]
async fn a_new_log_has_the_larger_pages_and_an_older_one_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let page_size =
        |path: &Path| open_connection(path).unwrap().query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap();
    let new = dir.path().join("new.db");
    drop(EmbeddedEventLog::open(&new).unwrap());
    assert_eq!(page_size(&new), PAGE_SIZE);

    let older = dir.path().join("older.db");
    {
        let conn = Connection::open(&older).unwrap();
        conn.pragma_update(None, "page_size", 4096).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(SCHEMA).unwrap();
    }
    let log = EmbeddedEventLog::open(&older).unwrap();
    let event = WebhookEvent { event_id: 1, portal_id: 62515, occurred_at: 1_700_000_000_000, ..Default::default() };
    assert_eq!(log.append(vec![event]).await.unwrap(), AppendOutcome { appended: 1, duplicates: 0 });
    assert_eq!(log.pending(10).await.unwrap().len(), 1);
    drop(log);
    assert_eq!(page_size(&older), 4096);
}

#[test]
fn appends_of_any_size_store_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("events.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let sizes = [1usize, 3, 4, 5, 17, 64, 100, 150];
    let writes: Vec<Write> = sizes
        .iter()
        .scan(0u64, |next, &size| {
            let events = (0..size)
                .map(|_| {
                    *next += 1;
                    let mut identity = identity("a", 0);
                    identity.event_id = *next;
                    EncodedEvent { identity, json: format!("{{\"n\":{next}}}").into() }
                })
                .collect();
            Some(Write::Append(events))
        })
        .collect();
    let outcomes = commit(&mut conn, &writes, 1_000);
    let appended: Vec<usize> = outcomes.iter().map(|o| o.appended).collect();
    assert_eq!(appended, sizes);
    let bodies: Vec<String> = column(&conn, "SELECT body FROM events ORDER BY seq");
    let total: usize = sizes.iter().sum();
    assert_eq!(bodies, (1..=total).map(|n| format!("{{\"n\":{n}}}")).collect::<Vec<_>>());
}

#[test]
fn one_group_answers_each_write_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("events.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let outcomes = commit(
        &mut conn,
        &[
            Write::Append(vec![event("a"), event("b"), event("a")]),
            Write::Append(vec![event("b"), event("c")]),
            Write::Release(vec![1]),
        ],
        1_000,
    );
    assert_eq!(
        outcomes,
        vec![
            AppendOutcome { appended: 2, duplicates: 1 },
            AppendOutcome { appended: 1, duplicates: 1 },
            AppendOutcome::default(),
        ]
    );
    let seqs: Vec<i64> = column(&conn, "SELECT seq FROM events ORDER BY seq");
    assert_eq!(seqs, vec![2, 3]);
}

#[test]
fn an_append_past_the_limit_stores_nothing_and_the_rest_of_the_group_applies() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("events.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let limits = LogLimits { max_pending_events: 3, max_pending_bytes: u64::MAX };
    let mut occupancy = Occupancy::default();
    let outcomes = commit_group(
        &mut conn,
        &[
            Write::Append(vec![event("a"), event("b")]),
            // Would make four: refused as a whole, its keys not remembered.
            Write::Append(vec![event("c"), event("d")]),
            Write::Append(vec![event("a"), event("e")]),
        ],
        1_000,
        &limits,
        &mut occupancy,
    )
    .unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap(), &AppendOutcome { appended: 2, duplicates: 0 });
    assert!(outcomes[1].is_err());
    assert_eq!(outcomes[2].as_ref().unwrap(), &AppendOutcome { appended: 1, duplicates: 1 });
    assert_eq!(occupancy, Occupancy::read(&conn).unwrap());
    assert_eq!(occupancy.events, 3);
    assert!(!key_known(&conn, "c") && !key_known(&conn, "d"));

    // Releasing makes room; the refused events are then stored.
    let outcomes = commit_group(
        &mut conn,
        &[Write::Release(vec![1, 2]), Write::Append(vec![event("c"), event("d")])],
        2_000,
        &limits,
        &mut occupancy,
    )
    .unwrap();
    assert_eq!(outcomes[1].as_ref().unwrap(), &AppendOutcome { appended: 2, duplicates: 0 });
    assert_eq!(occupancy, Occupancy::read(&conn).unwrap());

    let bytes = LogLimits { max_pending_events: u64::MAX, max_pending_bytes: occupancy.bytes + 2 };
    let outcomes = commit_group(&mut conn, &[Write::Append(vec![event("f")])], 3_000, &bytes, &mut occupancy).unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap().appended, 1, "2 bytes fit");
    let outcomes = commit_group(&mut conn, &[Write::Append(vec![event("g")])], 3_000, &bytes, &mut occupancy).unwrap();
    assert!(outcomes[0].is_err(), "no room for 2 more bytes");
}
