//! Reading the receiver config: defaults, refusals and what `Debug` leaves out.

use super::*;

/// A config with only what is required.
const MINIMAL: &str = "integration: ns/crm
dataDir: /data
hubspot: {baseUrl: 'http://h', accessToken: t}
webhooks: {clientSecret: s}
";

#[test]
fn debug_output_hides_secrets() {
    let config: ReceiverConfig = serde_yaml::from_str(
        "integration: ns/crm
dataDir: /data
hubspot: {baseUrl: 'http://h', accessToken: pat-na1-do-not-print}
webhooks: {clientSecret: client-secret-do-not-print}
admin: {token: admin-token-do-not-print}
ingest: {token: ingest-token-do-not-print}
",
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("do-not-print"), "{shown}");
    assert!(shown.contains("http://h"));
}

#[test]
fn admin_api_stays_on_loopback_unless_it_has_a_token() {
    let admin: AdminConfig = serde_yaml::from_str("{}").unwrap();
    assert!(admin.listen.ip().is_loopback());
    admin.validate().unwrap();
    let open: AdminConfig = serde_yaml::from_str("listen: 0.0.0.0:8082").unwrap();
    let error = open.validate().unwrap_err().to_string();
    assert!(error.contains("admin.token"), "{error}");
    let guarded: AdminConfig = serde_yaml::from_str("{listen: '0.0.0.0:8082', token: s3cret}").unwrap();
    guarded.validate().unwrap();
    let blank: AdminConfig = serde_yaml::from_str("{token: ' '}").unwrap();
    assert!(blank.validate().is_err());
}

#[test]
fn event_log_defaults_to_embedded_and_reads_jetstream() {
    let base = MINIMAL;
    let config: ReceiverConfig = serde_yaml::from_str(base).unwrap();
    assert_eq!(config.event_log, EventLogConfig::Embedded(LogLimits::default()));

    let config: ReceiverConfig = serde_yaml::from_str(&format!(
        "{base}eventLog: {{type: jetstream, url: 'nats://u:pw-do-not-print@nats:4222', replicas: 3, maxPendingEvents: 10}}\n"
    ))
    .unwrap();
    let EventLogConfig::JetStream(jetstream) = &config.event_log else { panic!("{config:?}") };
    assert_eq!((jetstream.replicas, jetstream.max_pending_events), (3, 10));
    assert_eq!(jetstream.max_pending_bytes, default_max_pending_bytes());
    assert_eq!(jetstream.stream, None);
    assert!(!format!("{config:?}").contains("pw-do-not-print"));
    // What the controller writes, the receiver reads back.
    let again: ReceiverConfig = serde_yaml::from_str(&serde_yaml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);

    for bad in ["{type: jetstream}", "{type: kafka}", "{type: embedded, url: 'nats://x'}"] {
        assert!(serde_yaml::from_str::<ReceiverConfig>(&format!("{base}eventLog: {bad}\n")).is_err(), "{bad}");
    }
}

/// Config files written before the status listener existed still load.
#[test]
fn status_listen_has_a_default_and_is_read_back() {
    let config: ReceiverConfig = serde_yaml::from_str(MINIMAL).unwrap();
    assert_eq!(
        (config.listen.to_string(), config.status_listen.to_string()),
        ("0.0.0.0:8080".into(), "0.0.0.0:8081".into())
    );
    let config: ReceiverConfig = serde_yaml::from_str(&format!("{MINIMAL}statusListen: 127.0.0.1:9100\n")).unwrap();
    assert_eq!(config.status_listen.to_string(), "127.0.0.1:9100");
    let again: ReceiverConfig = serde_yaml::from_str(&serde_yaml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn sync_batch_wait_has_a_default_and_an_upper_bound() {
    let base = MINIMAL;
    let config: ReceiverConfig = serde_yaml::from_str(base).unwrap();
    assert_eq!(config.sync.max_batch_wait(), std::time::Duration::from_secs(1));
    let config: ReceiverConfig =
        serde_yaml::from_str(&format!("{base}sync: {{maxBatchWaitMilliseconds: 250}}\n")).unwrap();
    assert_eq!(config.sync.max_batch_wait_milliseconds, 250);
    config.sync.validate().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, format!("{base}sync: {{maxBatchWaitMilliseconds: 60001}}\n")).unwrap();
    let error = ReceiverConfig::load(&path).unwrap_err().to_string();
    assert!(error.contains("maxBatchWaitMilliseconds 60001 is above 60000"), "{error}");
    assert!(serde_yaml::from_str::<ReceiverConfig>(&format!("{base}sync: {{maxBatchWait: 1}}\n")).is_err());
}

/// A mapping's keys are read by three structs (the mapping's own, its records', its
/// policy's); a key none of them knows is still refused, not dropped.
#[test]
fn a_mapping_refuses_unknown_keys_and_defaults_its_policy() {
    let mapping = "mappings:\n- {name: ns/contacts, objectType: contacts, fields: [], \
                   matchKey: {hubspotProperty: email, externalField: email}";
    let config: ReceiverConfig = serde_yaml::from_str(&format!("{MINIMAL}{mapping}}}\n")).unwrap();
    let expected = MappingConfig::new(
        "ns/contacts",
        MappedRecords::new("contacts", crate::api::mapping::MatchKey::new("email", "email"), vec![]),
    );
    assert_eq!(config.mappings, [expected]);
    assert!(config.mappings[0].policy.backfill, "backfill is on unless turned off");
    let again: ReceiverConfig = serde_yaml::from_str(&serde_yaml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);

    for unknown in ["objectTypes: [deals]", "conflict_policy: hubspotWins", "destinations: []", "matchkey: {}"] {
        let error = serde_yaml::from_str::<ReceiverConfig>(&format!("{MINIMAL}{mapping}, {unknown}}}\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field"), "{unknown}: {error}");
    }
    let error = serde_yaml::from_str::<ReceiverConfig>(&format!("{MINIMAL}{}}}\n", mapping.replace("objectType", "x")))
        .unwrap_err()
        .to_string();
    assert!(error.contains("objectType"), "{error}");
}

#[test]
fn hubspot_takes_exactly_one_of_access_token_and_access_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let load = |hubspot: &str| {
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            format!("integration: ns/crm\ndataDir: /data\nhubspot: {hubspot}\nwebhooks: {{clientSecret: s}}\n"),
        )
        .unwrap();
        ReceiverConfig::load(&path).map_err(|e| e.to_string())
    };
    let file = load("{baseUrl: 'http://h', accessTokenFile: /var/run/token}").unwrap();
    assert_eq!(file.hubspot.access_token_file, Some(PathBuf::from("/var/run/token")));
    assert_eq!(file.hubspot.access_token, "");
    load("{baseUrl: 'http://h', accessToken: t}").unwrap();
    for bad in ["{baseUrl: 'http://h'}", "{baseUrl: 'http://h', accessToken: t, accessTokenFile: /f}"] {
        let error = load(bad).unwrap_err();
        assert!(error.contains("set exactly one of accessToken and accessTokenFile"), "{bad}: {error}");
    }
}

/// A PostgreSQL source polls every 30 seconds unless it says otherwise, as its CRD
/// counterpart does, and refuses keys it does not know.
#[test]
fn a_postgres_source_defaults_its_interval_and_refuses_unknown_keys() {
    let with_source = |source: &str| {
        format!(
            "{MINIMAL}mappings:\n- {{name: ns/contacts, objectType: contacts, fields: [], \
             matchKey: {{hubspotProperty: email, externalField: email}}, sources: [{source}]}}\n"
        )
    };
    let config: ReceiverConfig =
        serde_yaml::from_str(&with_source("{type: postgres, url: 'postgres://db', table: t, cursorColumn: c}"))
            .unwrap();
    let SourceConfig::Postgres { url, poll } = &config.mappings[0].sources[0];
    assert_eq!((url.as_str(), poll.table.as_deref(), poll.interval_seconds), ("postgres://db", Some("t"), 30));
    let again: ReceiverConfig = serde_yaml::from_str(&serde_yaml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);

    let unknown =
        with_source("{type: postgres, url: u, table: t, cursorColumn: c, connectionSecret: {name: a, key: b}}");
    let error = serde_yaml::from_str::<ReceiverConfig>(&unknown).unwrap_err().to_string();
    assert!(error.contains("unknown field"), "{error}");
}

#[test]
fn http_limits_default_within_hubspots_patience_and_refuse_nonsense() {
    let config: ReceiverConfig = serde_yaml::from_str(MINIMAL).unwrap();
    assert_eq!(config.http, HttpLimits::default());
    assert!(config.http.header_read_timeout_seconds <= 10 && config.http.body_read_timeout_seconds <= 10);
    config.http.validate().unwrap();
    let set: HttpLimits =
        serde_yaml::from_str("{headerReadTimeoutSeconds: 3, bodyReadTimeoutSeconds: 4, maxConnections: 9}").unwrap();
    assert_eq!(set.header_read_timeout(), std::time::Duration::from_secs(3));
    assert_eq!((set.body_read_timeout_seconds, set.max_connections), (4, 9));
    for bad in ["{headerReadTimeoutSeconds: 0}", "{bodyReadTimeoutSeconds: 301}", "{maxConnections: 0}"] {
        let limits: HttpLimits = serde_yaml::from_str(bad).unwrap();
        assert!(limits.validate().is_err(), "{bad}");
    }
}
