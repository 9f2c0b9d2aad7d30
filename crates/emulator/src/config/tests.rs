use super::*;

#[test]
fn token_grants_parse() {
    assert_eq!("abc".parse::<TokenGrant>().unwrap(), TokenGrant { token: "abc".into(), scopes: None });
    assert_eq!(
        "abc=crm.objects.contacts.read, crm.schemas.contacts.read".parse::<TokenGrant>().unwrap().scopes,
        Some(vec!["crm.objects.contacts.read".to_string(), "crm.schemas.contacts.read".to_string()])
    );
    assert_eq!("abc=".parse::<TokenGrant>().unwrap().scopes, Some(vec![]));
    assert!("=x".parse::<TokenGrant>().is_err());
}

#[test]
fn debug_output_hides_tokens_and_secrets() {
    let config = EmulatorConfig {
        tokens: vec!["pat-na1-secret-token".parse().unwrap()],
        client_secret: "very-secret".into(),
        developer_api_key: "dev-key-secret".into(),
        ..Default::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("pat-na1-secret-token") && !shown.contains("very-secret"), "{shown}");
    assert!(!shown.contains("dev-key-secret"), "{shown}");
    assert!(shown.contains("portal_id: 62515"));
}

#[test]
fn subscriptions_parse_and_match() {
    let email: Subscription = "contact.propertyChange:email".parse().unwrap();
    assert!(email.covers("contact.propertyChange", Some("email")));
    assert!(!email.covers("contact.propertyChange", Some("firstname")));
    assert!(!email.covers("deal.propertyChange", Some("email")));
    let creation: Subscription = "deal.creation".parse().unwrap();
    assert!(creation.covers("deal.creation", None));
    assert!("ticket.creation".parse::<Subscription>().is_ok());
    assert!("quote.creation".parse::<Subscription>().is_err());
    assert!("deal.creation:amount".parse::<Subscription>().is_err());
    assert!("deal.propertyChange:".parse::<Subscription>().is_err());
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: EmulatorArgs,
}

#[test]
fn flags_become_the_config() {
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "emulator",
        "--token",
        "a",
        "--token",
        "b=crm.objects.contacts.read",
        "--tier",
        "free",
        "--duplicate-rate",
        "0.25",
        "--reorder",
        "--legacy-signature-version",
        "v2",
        "--seed",
        "7",
        "--subscription",
        "deal.propertyChange:amount",
        "--oauth-app",
        "cid:csecret=crm.objects.deals.read",
        "--refresh-token",
        "na1-rt=cid",
        "--access-token-ttl",
        "60",
    ])
    .unwrap();
    let config = EmulatorConfig::from(cli.args);
    assert_eq!(config.tokens.len(), 2);
    assert_eq!(config.tokens[1].scopes, Some(vec!["crm.objects.contacts.read".to_string()]));
    assert_eq!((config.tier, config.duplicate_rate, config.reorder, config.seed), (Tier::Free, 0.25, true, 7));
    assert_eq!(config.legacy_signature_version, LegacySignatureVersion::V2);
    assert_eq!(config.subscriptions, vec!["deal.propertyChange:amount".parse::<Subscription>().unwrap()]);
    assert_eq!(config.oauth_apps, vec!["cid:csecret=crm.objects.deals.read".parse::<OAuthApp>().unwrap()]);
    assert_eq!(config.refresh_tokens, vec!["na1-rt=cid".parse::<RefreshTokenGrant>().unwrap()]);
    assert_eq!(config.access_token_ttl_secs, 60);
    let shown = format!("{config:?}");
    assert!(!shown.contains("csecret") && !shown.contains("na1-rt"), "{shown}");
    assert!(Cli::try_parse_from(["emulator", "--duplicate-rate", "1.5"]).is_err());
    let defaults = EmulatorConfig::from(Cli::try_parse_from(["emulator"]).unwrap().args);
    assert_eq!(defaults.effective_tokens(), vec![TokenGrant { token: DEFAULT_TOKEN.into(), scopes: None }]);
    assert_eq!((defaults.portal_id, defaults.app_id, defaults.tier), (62515, 54321, Tier::Professional));
    assert_eq!(defaults.client_secret, EmulatorConfig::default().client_secret);
    assert_eq!(defaults.access_token_ttl_secs, 1800);
    assert!(defaults.faults.is_empty());
    let faulty = EmulatorConfig::from(
        Cli::try_parse_from([
            "emulator",
            "--fault-5xx-rate",
            "0.1:502",
            "--fault-latency-ms",
            "250",
            "--fault-drop-rate",
            "0.01",
            "--fault-429-storm",
            "60:5",
        ])
        .unwrap()
        .args,
    );
    assert_eq!(
        faulty.faults,
        vec![
            FaultPlan::server_errors(0.1, 502),
            FaultPlan::latency(std::time::Duration::from_millis(250)),
            FaultPlan::dropped_connections(0.01),
            FaultPlan::rate_limit_storms(std::time::Duration::from_secs(60), std::time::Duration::from_secs(5)),
        ]
    );
    assert!(Cli::try_parse_from(["emulator", "--fault-5xx-rate", "0.1:404"]).is_err());
    assert!(Cli::try_parse_from(["emulator", "--fault-429-storm", "5:60"]).is_err());
}
