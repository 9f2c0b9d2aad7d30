//! Rendering of the receiver config.

use super::*;

#[test]
fn renders_config_with_resolved_secrets_and_only_this_integrations_mappings() {
    let i = integration();
    let mappings = [
        mapping("z-contacts", "crm", vec![http_destination(Some("sink-signing"))]),
        mapping(
            "a-file",
            "crm",
            vec![Destination { file: Some(FileDestination { path: "out.jsonl".into() }), ..Default::default() }],
        ),
        mapping("other", "another-integration", vec![]),
    ];
    let config = receiver_config(&i, &mappings, &secrets()).unwrap();
    assert_eq!(config.integration, "sales/crm");
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.status_listen.to_string(), "0.0.0.0:8081");
    assert_eq!(config.data_dir.to_str(), Some("/var/lib/hubspot-operator"));
    assert_eq!(config.hubspot.access_token, "pat-na1-token");
    assert_eq!(config.hubspot.base_url, "https://api.hubapi.com");
    assert_eq!(config.hubspot.api_version, "v3");
    assert_eq!(config.webhooks.client_secret, "client-secret-value");
    assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"));
    let names: Vec<&str> = config.mappings.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["sales/a-file", "sales/z-contacts"]);
    assert_eq!(config.mappings[0].sinks, [SinkConfig::File { path: "out.jsonl".into() }]);
    assert_eq!(
        config.mappings[1].sinks,
        [SinkConfig::Http { url: "https://crm.example.com/ingest".into(), signing_secret: Some("sign-me".into()) }]
    );
    // The rendered file is what `receiver --config` loads.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_KEY);
    std::fs::write(&path, config_yaml(&config)).unwrap();
    assert_eq!(ReceiverConfig::load(&path).unwrap(), config);
}

#[test]
fn ingest_token_and_conflict_policy_are_rendered_when_set() {
    let mut i = integration();
    let config = receiver_config(&i, &[], &secrets()).unwrap();
    assert_eq!(config.ingest, None, "the ingest API is off unless spec.receiver.ingest is set");

    i.spec.receiver.ingest = Some(model::api::integration::IngestSettings {
        token_secret_ref: SecretKeyRef { name: "sink-signing".into(), key: "key".into() },
        max_body_bytes: 65536,
    });
    let mut m = mapping("contacts", "crm", vec![]);
    let poll = PostgresPoll {
        table: Some("crm.contacts".into()),
        query: None,
        cursor_column: "updated_at".into(),
        interval_seconds: 15,
    };
    m.spec.sources = vec![model::api::mapping::Source {
        postgres: Some(model::api::mapping::PostgresSource {
            connection_secret: SecretKeyRef { name: "hubspot".into(), key: "token".into() },
            poll: poll.clone(),
        }),
    }];
    m.spec.policy.conflict_policy = model::api::mapping::ConflictPolicy::HubspotWins;
    m.spec.policy.external_timestamp_field = Some("updated_at".into());
    let mappings = [m];
    assert!(referenced_secret_names(&i, &mappings_of(&i, &mappings)).contains(&"sink-signing".to_string()));
    let config = receiver_config(&i, &mappings, &secrets()).unwrap();
    assert_eq!(config.ingest, Some(IngestConfig { token: "sign-me".into(), max_body_bytes: 65536 }));
    assert_eq!(config.mappings[0].policy.conflict_policy, model::api::mapping::ConflictPolicy::HubspotWins);
    assert_eq!(config.mappings[0].policy.external_timestamp_field.as_deref(), Some("updated_at"));
    assert_eq!(config.mappings[0].sources, [SourceConfig::Postgres { url: "pat-na1-token".into(), poll }]);

    i.spec.receiver.ingest.as_mut().unwrap().token_secret_ref.name = "absent".into();
    assert!(receiver_config(&i, &mappings, &secrets()).is_err(), "a missing token Secret is an error");
}

#[test]
fn public_url_becomes_the_base_the_receiver_prefixes_to_the_request_path() {
    assert_eq!(public_base_url("https://hooks.example.com/webhooks/hubspot"), "https://hooks.example.com");
    assert_eq!(public_base_url("https://hooks.example.com/webhooks/hubspot/"), "https://hooks.example.com");
    assert_eq!(public_base_url("https://example.com/hs/webhooks/hubspot"), "https://example.com/hs");
    assert_eq!(public_base_url("https://hooks.example.com"), "https://hooks.example.com");
}

#[test]
fn missing_destination_secret_or_webhooks_prevent_rendering() {
    let i = integration();
    let mappings = [mapping("contacts", "crm", vec![http_destination(Some("absent"))])];
    let err = receiver_config(&i, &mappings, &secrets()).unwrap_err();
    assert_eq!(err.reason(), "SecretNotFound");
    assert_eq!(err.to_string(), r#"Secret "absent" not found"#);

    let mut no_webhooks = integration();
    no_webhooks.spec.webhooks = None;
    let err = receiver_config(&no_webhooks, &[], &secrets()).unwrap_err();
    assert_eq!(err, ConfigError::WebhooksNotConfigured);
}

#[test]
fn postgres_and_nats_destinations_resolve_their_secrets() {
    let mut store = secrets();
    store.insert_values(
        "warehouse",
        BTreeMap::from([
            ("dsn".into(), "postgres://sync:pw@db:5432/crm\n".into()),
            ("nats-url".into(), "nats://user:pw@nats:4222".into()),
        ]),
    );
    let postgres = PostgresDestination {
        connection_secret: SecretKeyRef { name: "warehouse".into(), key: "dsn".into() },
        table: "crm.contacts".into(),
        create_table: true,
    };
    let nats = |url: Option<&str>, secret: Option<&str>| NatsDestination {
        url: url.map(Into::into),
        url_secret: secret.map(|key| SecretKeyRef { name: "warehouse".into(), key: key.into() }),
        subject: "crm.contacts".into(),
    };
    let m = mapping(
        "contacts",
        "crm",
        vec![
            Destination { postgres: Some(postgres), ..Default::default() },
            Destination { nats: Some(nats(None, Some("nats-url"))), ..Default::default() },
            Destination { nats: Some(nats(Some("nats://nats:4222"), None)), ..Default::default() },
        ],
    );
    assert_eq!(referenced_secret_names(&integration(), &[&m]), ["hubspot", "warehouse"]);
    let config = mapping_config(&m, &store).unwrap();
    assert_eq!(
        config.sinks,
        [
            SinkConfig::Postgres {
                url: "postgres://sync:pw@db:5432/crm".into(),
                table: "crm.contacts".into(),
                create_table: true,
            },
            SinkConfig::Nats { url: "nats://user:pw@nats:4222".into(), subject: "crm.contacts".into() },
            SinkConfig::Nats { url: "nats://nats:4222".into(), subject: "crm.contacts".into() },
        ]
    );
    // Connection strings stay out of debug output.
    assert!(!format!("{config:?}").contains("pw"), "{config:?}");

    let missing = mapping(
        "contacts",
        "crm",
        vec![Destination { nats: Some(nats(None, Some("absent-key"))), ..Default::default() }],
    );
    assert_eq!(mapping_config(&missing, &store).unwrap_err().reason(), "SecretKeyMissing");
}

#[test]
fn sync_batch_wait_renders_from_the_receiver_settings() {
    let i = integration();
    let config = receiver_config(&i, &[], &secrets()).unwrap();
    assert_eq!(config.sync, model::config::SyncConfig::default());

    let mut eager = integration();
    eager.spec.receiver.sync = Some(model::api::integration::SyncSettings { max_batch_wait_milliseconds: Some(0) });
    let config = receiver_config(&eager, &[], &secrets()).unwrap();
    assert_eq!(config.sync.max_batch_wait_milliseconds, 0);
    let read_back: ReceiverConfig = serde_yaml::from_str(&config_yaml(&config)).unwrap();
    assert_eq!(read_back.sync, config.sync);
}

#[test]
fn http_limits_render_from_the_receiver_settings() {
    let config = receiver_config(&integration(), &[], &secrets()).unwrap();
    assert_eq!(config.http, model::config::HttpLimits::default());

    let mut patient = integration();
    patient.spec.receiver.http = Some(model::api::integration::HttpSettings {
        header_read_timeout_seconds: Some(3),
        body_read_timeout_seconds: None,
        max_connections: Some(500),
    });
    let config = receiver_config(&patient, &[], &secrets()).unwrap();
    let expected =
        model::config::HttpLimits { header_read_timeout_seconds: 3, max_connections: 500, ..Default::default() };
    assert_eq!(config.http, expected);
    let read_back: ReceiverConfig = serde_yaml::from_str(&config_yaml(&config)).unwrap();
    assert_eq!(read_back.http, config.http);
}

#[test]
fn event_log_renders_embedded_by_default_and_jetstream_with_its_secret() {
    let i = integration();
    let config = receiver_config(&i, &[], &secrets()).unwrap();
    assert_eq!(config.event_log, EventLogConfig::Embedded(LogLimits::default()));

    let mut limited = integration();
    limited.spec.receiver.event_log = Some(EventLogSettings {
        embedded: Some(EmbeddedLogSettings { max_pending_events: Some(10), max_pending_bytes: None }),
        jetstream: None,
    });
    let config = receiver_config(&limited, &[], &secrets()).unwrap();
    assert_eq!(
        config.event_log,
        EventLogConfig::Embedded(LogLimits {
            max_pending_events: 10,
            max_pending_bytes: LogLimits::default().max_pending_bytes
        })
    );

    let mut shared = integration();
    shared.spec.receiver.replicas = 3;
    shared.spec.receiver.event_log = Some(EventLogSettings {
        embedded: None,
        jetstream: Some(JetStreamLogSettings {
            url_secret: Some(SecretKeyRef { name: "nats".into(), key: "url".into() }),
            replicas: Some(3),
            max_pending_bytes: Some(1 << 30),
            ..Default::default()
        }),
    });
    assert_eq!(referenced_secret_names(&shared, &[]), ["hubspot", "nats"]);
    let missing = receiver_config(&shared, &[], &secrets()).unwrap_err();
    assert_eq!(missing.reason(), "SecretNotFound");

    let mut store = secrets();
    store.insert_values("nats", BTreeMap::from([("url".into(), "nats://sync:pw@nats:4222".into())]));
    let config = receiver_config(&shared, &[], &store).unwrap();
    assert_eq!(
        config.event_log,
        EventLogConfig::JetStream(JetStreamLogConfig {
            url: "nats://sync:pw@nats:4222".into(),
            stream: None,
            subject: None,
            replicas: 3,
            max_pending_events: LogLimits::default().max_pending_events,
            max_pending_bytes: 1 << 30,
            ack_wait_seconds: JetStreamLogConfig::DEFAULT_ACK_WAIT_SECONDS,
        })
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_KEY);
    std::fs::write(&path, config_yaml(&config)).unwrap();
    assert_eq!(ReceiverConfig::load(&path).unwrap(), config);
}

fn secrets_with_admin_token(token: &str) -> SecretStore {
    let mut store = secrets();
    store.insert_values("admin", BTreeMap::from([("token".into(), token.into())]));
    store
}

/// The `admin` section of the config file `receiver_config` renders, as YAML.
fn rendered_admin(i: &HubSpotIntegration, store: &SecretStore) -> serde_yaml::Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(&config_yaml(&receiver_config(i, &[], store).unwrap())).unwrap();
    yaml["admin"].clone()
}

#[test]
fn admin_config_is_loopback_without_a_token_unless_the_spec_asks() {
    let store = secrets_with_admin_token("admin-s3cret\n");
    let yaml = |text: &str| serde_yaml::from_str::<serde_yaml::Value>(text).unwrap();
    assert_eq!(rendered_admin(&integration(), &store), yaml("listen: 127.0.0.1:8082"));
    assert_eq!(
        rendered_admin(&with_admin(false, vec![]), &store),
        yaml("{listen: 127.0.0.1:8082, token: admin-s3cret}")
    );
    assert_eq!(rendered_admin(&with_admin(true, vec![]), &store), yaml("{listen: 0.0.0.0:8082, token: admin-s3cret}"));
    assert_eq!(AdminConfig::default().listen.port(), ADMIN_PORT, "port-forward 8082 reaches it either way");
    assert_eq!(referenced_secret_names(&with_admin(true, vec![]), &[]), ["hubspot", "admin"]);

    // What the controller writes, the receiver loads: `AdminConfig::validate` passes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_KEY);
    for i in [integration(), with_admin(false, vec![]), with_admin(true, vec![ops_console()])] {
        let config = receiver_config(&i, &[], &store).unwrap();
        std::fs::write(&path, config_yaml(&config)).unwrap();
        let loaded = ReceiverConfig::load(&path).unwrap();
        loaded.admin.validate().unwrap();
        assert_eq!(loaded, config);
    }
}

#[test]
fn a_missing_or_empty_admin_token_renders_no_config_and_a_rotated_one_rolls_the_pods() {
    let exposed = with_admin(true, vec![]);
    let missing = receiver_config(&exposed, &[], &secrets()).unwrap_err();
    assert_eq!((missing.reason(), missing.to_string()), ("SecretNotFound", r#"Secret "admin" not found"#.into()));
    let mut wrong_key = secrets();
    wrong_key.insert_values("admin", BTreeMap::from([("other".into(), "x".into())]));
    assert_eq!(receiver_config(&exposed, &[], &wrong_key).unwrap_err().reason(), "SecretKeyMissing");
    let empty = receiver_config(&exposed, &[], &secrets_with_admin_token(" \n")).unwrap_err();
    assert_eq!(
        (empty.reason(), empty.to_string()),
        ("AdminTokenEmpty", r#"the admin API token, key "token" of Secret "admin", is empty"#.into())
    );

    let hash = |token: &str| {
        config_hash(&config_yaml(&receiver_config(&exposed, &[], &secrets_with_admin_token(token)).unwrap()))
    };
    assert_eq!(hash("first"), hash("first"));
    assert_ne!(hash("first"), hash("rotated"), "the config hash, and so the pod template, follows the token");
}

#[test]
fn config_secret_is_exactly_the_rendered_config_and_holds_the_admin_token() {
    use base64::Engine;
    let i = with_admin(true, vec![]);
    let yaml = config_yaml(&receiver_config(&i, &[], &secrets_with_admin_token("admin-s3cret")).unwrap());
    assert!(yaml.contains("token: admin-s3cret"), "{yaml}");
    let mut metadata = receiver_object_metadata(None);
    metadata["name"] = "crm-receiver-config".into();
    assert_eq!(
        serde_json::to_value(config_secret(&i, &owner(&i), &yaml)).unwrap(),
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": { "config.yaml": base64::engine::general_purpose::STANDARD.encode(&yaml) },
        })
    );
}

fn cel_errors(integration: &HubSpotIntegration) -> String {
    kube::core::cel::validate_cel(integration).err().map(|e| format!("{e:?}")).unwrap_or_default()
}

#[test]
fn cel_wants_exactly_one_event_log_and_one_nats_url() {
    let with_log = |event_log: EventLogSettings| {
        let mut i = integration();
        i.spec.receiver.event_log = Some(event_log);
        i
    };
    let jetstream = |url: Option<&str>, secret: bool| JetStreamLogSettings {
        url: url.map(Into::into),
        url_secret: secret.then(|| SecretKeyRef { name: "nats".into(), key: "url".into() }),
        ..Default::default()
    };
    assert_eq!(cel_errors(&integration()), "");
    let embedded = EventLogSettings { embedded: Some(Default::default()), jetstream: None };
    assert_eq!(cel_errors(&with_log(embedded)), "");
    let by_url = EventLogSettings { embedded: None, jetstream: Some(jetstream(Some("nats://nats:4222"), false)) };
    assert_eq!(cel_errors(&with_log(by_url)), "");

    let neither = EventLogSettings::default();
    assert!(cel_errors(&with_log(neither)).contains("set exactly one of embedded and jetstream"));
    let both = EventLogSettings { embedded: Some(Default::default()), jetstream: Some(jetstream(None, true)) };
    assert!(cel_errors(&with_log(both)).contains("set exactly one of embedded and jetstream"));
    for (url, secret) in [(None, false), (Some("nats://nats:4222"), true)] {
        let log = EventLogSettings { embedded: None, jetstream: Some(jetstream(url, secret)) };
        assert!(cel_errors(&with_log(log)).contains("set exactly one of url and urlSecret"), "{url:?} {secret}");
    }
}

/// An integration that sets every part of the receiver config: a private app token, a public URL,
/// a JetStream log from a Secret, ingest, batching, an exposed admin API, and a mapping with
/// every kind of destination, a source, associations and a conflict policy.
fn fully_featured() -> (HubSpotIntegration, PropertyMapping, SecretStore) {
    let mut i = with_admin(true, vec![]);
    i.spec.receiver.replicas = 3;
    i.spec.receiver.event_log = Some(EventLogSettings {
        embedded: None,
        jetstream: Some(JetStreamLogSettings {
            url_secret: Some(SecretKeyRef { name: "warehouse".into(), key: "nats-url".into() }),
            stream: Some("crm-events".into()),
            subject: Some("crm.events".into()),
            replicas: Some(3),
            max_pending_events: Some(5000),
            max_pending_bytes: None,
            ..Default::default()
        }),
    });
    i.spec.receiver.ingest = Some(model::api::integration::IngestSettings {
        token_secret_ref: SecretKeyRef { name: "sink-signing".into(), key: "key".into() },
        max_body_bytes: 65536,
    });
    i.spec.receiver.sync = Some(model::api::integration::SyncSettings { max_batch_wait_milliseconds: Some(250) });

    let mut m = mapping(
        "contacts",
        "crm",
        vec![
            http_destination(Some("sink-signing")),
            Destination { file: Some(FileDestination { path: "contacts.jsonl".into() }), ..Default::default() },
            Destination {
                postgres: Some(PostgresDestination {
                    connection_secret: SecretKeyRef { name: "warehouse".into(), key: "dsn".into() },
                    table: "crm.contacts".into(),
                    create_table: true,
                }),
                ..Default::default()
            },
            Destination {
                nats: Some(NatsDestination {
                    url: None,
                    url_secret: Some(SecretKeyRef { name: "warehouse".into(), key: "nats-url".into() }),
                    subject: "crm.contacts".into(),
                }),
                ..Default::default()
            },
        ],
    );
    m.spec.records.fields.push(FieldMapping::new("phone", "phone", Direction::Both));
    m.spec.associations = vec![model::api::mapping::AssociationMapping {
        to_object_type: "companies".into(),
        field: "company_ids".into(),
    }];
    m.spec.policy.backfill = false;
    m.spec.policy.conflict_policy = model::api::mapping::ConflictPolicy::ExternalWins;
    m.spec.policy.external_timestamp_field = Some("updated_at".into());
    m.spec.sources = vec![model::api::mapping::Source {
        postgres: Some(model::api::mapping::PostgresSource {
            connection_secret: SecretKeyRef { name: "warehouse".into(), key: "dsn".into() },
            poll: PostgresPoll {
                table: None,
                query: Some("SELECT * FROM crm.contacts_out".into()),
                cursor_column: "updated_at".into(),
                interval_seconds: 15,
            },
        }),
    }];

    let mut store = secrets_with_admin_token("admin-s3cret");
    store.insert_values(
        "warehouse",
        BTreeMap::from([
            ("dsn".into(), "postgres://sync:pw@db:5432/crm".into()),
            ("nats-url".into(), "nats://user:pw@nats:4222".into()),
        ]),
    );
    (i, m, store)
}

/// The file a fully featured integration renders, byte for byte: its hash rolls the receiver
/// pods, so a change of key order or of a default is a restart of every receiver.
#[test]
fn a_fully_featured_integration_renders_the_same_file() {
    let (i, m, store) = fully_featured();
    let yaml = config_yaml(&receiver_config(&i, [&m, &mapping("plain", "crm", vec![])], &store).unwrap());
    assert_eq!(yaml, include_str!("full_config.yaml"));
}

#[test]
fn the_integrations_event_types_hubspot_knows_are_rendered_sorted_by_name() {
    use model::api::HubSpotTimelineEventType;
    use model::api::timeline::{
        Carrier, HubSpotTimelineEventTypeSpec, HubSpotTimelineEventTypeStatus, IntegrationRef, Registration,
        TimelineObjectType,
    };
    let i = integration();
    let event_type = |name: &str, integration: &str, known_as: Option<&str>| {
        let spec = HubSpotTimelineEventTypeSpec {
            integration_ref: IntegrationRef { name: integration.into() },
            object_type: TimelineObjectType::Contacts,
            name: name.replace('-', "_"),
            label: name.into(),
            header_template: None,
            detail_template: None,
            tokens: vec![],
            registration: Registration::Rendered,
            legacy_app: None,
            deletion_policy: Default::default(),
        };
        let mut e = HubSpotTimelineEventType::new(name, spec);
        e.metadata.namespace = i.metadata.namespace.clone();
        e.status = Some(HubSpotTimelineEventTypeStatus {
            carrier: Some(Carrier::CustomEvents),
            hubspot_name: known_as.map(String::from),
            ..Default::default()
        });
        e
    };
    let all = [
        event_type("z-invoice-paid", "crm", Some("pe1_z_invoice_paid")),
        event_type("feature-used", "crm", Some("pe1_feature_used")),
        event_type("not-yet-known", "crm", None),
        event_type("elsewhere", "another-integration", Some("pe1_elsewhere")),
    ];
    let rendered = timeline_event_types_of(&i, &all);
    let names: Vec<(&str, &str)> = rendered.iter().map(|e| (e.name.as_str(), e.hubspot_name.as_str())).collect();
    assert_eq!(names, [("feature-used", "pe1_feature_used"), ("z-invoice-paid", "pe1_z_invoice_paid")]);
    assert_eq!(rendered[0].qualified_name(), "sales/feature-used");
    let reversed: Vec<HubSpotTimelineEventType> = all.iter().rev().cloned().collect();
    assert_eq!(timeline_event_types_of(&i, &reversed), rendered, "the same set renders the same config");
}
