//! The client's calls against the emulator: paging streams read every page, no search goes
//! beyond HubSpot's per-second limit, a search too broad to page through fails instead of
//! returning part of its matches, a dropped connection is retried, timeline and app events
//! are sent in batches that report each refusal, and association reads page on.

mod common;

use common::TestEmulator;
use emulator::EmulatorConfig;
use futures::{StreamExt, TryStreamExt};
use hubspot::{
    AppEventInput, Error, Filter, FilterGroup, FilterOperator, SearchRequest, SearchSort, SortDirection,
    TimelineEventInput,
};
use serde_json::json;

const SEARCH_PATH: &str = "/crm/v3/objects/contacts/search";

async fn emulator(seed: u32) -> TestEmulator {
    TestEmulator::start(EmulatorConfig { seed, ..Default::default() }).await
}

fn by_email() -> Vec<SearchSort> {
    vec![SearchSort { property_name: "email".into(), direction: SortDirection::Ascending }]
}

#[tokio::test]
async fn objects_stream_reads_every_page_on_demand() {
    let emulator = emulator(250).await;
    let client = emulator.client("emulator-token");
    let properties = vec!["email".to_string()];

    let first_two: Vec<_> = client.objects("contacts", &properties).take(2).try_collect().await.unwrap();
    assert_eq!(first_two.len(), 2);
    assert_eq!(emulator.requests_to("/crm/v3/objects/contacts").await.len(), 1, "one page was enough");

    let everyone = client.list_all_objects("contacts", &properties).await.unwrap();
    assert_eq!(everyone.len(), 250);
    let mut ids: Vec<_> = everyone.iter().map(|o| o.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    assert_eq!(emulator.requests_to("/crm/v3/objects/contacts").await.len(), 1 + 3);
}

#[tokio::test]
async fn search_all_pages_through_every_match() {
    let emulator = emulator(450).await;
    let client = emulator.client("emulator-token");
    let request = SearchRequest {
        filter_groups: vec![FilterGroup { filters: vec![Filter::compare("hs_object_id", FilterOperator::Gt, "25")] }],
        sorts: by_email(),
        properties: vec!["email".into()],
        ..Default::default()
    };
    let found: Vec<_> = client.search_all("contacts", request).try_collect().await.unwrap();
    assert_eq!(found.len(), 425);
    assert!(found.windows(2).all(|w| w[0].properties["email"] <= w[1].properties["email"]), "sorted by email");
    let searches = emulator.requests_to(SEARCH_PATH).await;
    assert_eq!(searches.len(), 3, "200 results per page");
    assert!(searches.iter().all(|r| r["status"] == 200));
}

#[tokio::test]
async fn searches_stay_inside_the_per_second_limit() {
    let emulator = emulator(3).await;
    let client = emulator.client("emulator-token");
    let searches = (0..16).map(|_| {
        let client = client.clone();
        async move { client.search("contacts", &SearchRequest { limit: Some(1), ..Default::default() }).await }
    });
    let pages = futures::future::try_join_all(searches).await.unwrap();
    assert!(pages.iter().all(|p| p.total == 3));
    let statuses: Vec<_> = emulator.requests_to(SEARCH_PATH).await.into_iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses.len(), 16, "no search was refused and retried: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn too_broad_a_search_fails_before_returning_anything() {
    let emulator = emulator(10_050).await;
    let client = emulator.client("emulator-token");
    let mut matches =
        std::pin::pin!(client.search_all("contacts", SearchRequest { sorts: by_email(), ..Default::default() }));
    match matches.try_next().await {
        Err(Error::SearchCapped { total }) => assert_eq!(total, 10_050),
        other => panic!("expected SearchCapped, got {other:?}"),
    }
    assert_eq!(emulator.requests_to(SEARCH_PATH).await.len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let emulator = emulator(3).await;
    let client = emulator.client("emulator-token");
    emulator.set_faults(json!({"dropConnection": true, "count": 1, "pathPrefix": "/crm/v3/objects"})).await;
    let read = client.batch_read("contacts", &["email".into()], &["1".into(), "2".into()]).await.unwrap();
    assert_eq!(read.len(), 2);
    let statuses: Vec<u64> = emulator
        .requests_to("/crm/v3/objects/contacts/batch/read")
        .await
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![0, 200], "dropped once, then answered");
}

#[tokio::test]
async fn timeline_and_app_events_go_in_batches_that_name_each_refusal() {
    let emulator = emulator(2).await;
    let client = emulator.client("emulator-token");
    let templates = emulator.url(&format!(
        "/integrators/timeline/v3/54321/event-templates?hapikey={}",
        emulator::DEFAULT_DEVELOPER_API_KEY
    ));
    let template = json!({"name": "Order", "objectType": "contacts",
                          "tokens": [{"name": "total", "label": "Total", "type": "number"}]});
    let created: serde_json::Value =
        emulator.http.post(templates).json(&template).send().await.unwrap().json().await.unwrap();
    let template_id = created["id"].as_str().unwrap().to_string();
    let events: Vec<TimelineEventInput> = (0..150)
        .map(|n| TimelineEventInput {
            event_template_id: template_id.clone(),
            id: Some(format!("order-{n}")),
            object_id: Some("1".into()),
            tokens: [("total".to_string(), if n == 7 { "lots".to_string() } else { n.to_string() })].into(),
            ..Default::default()
        })
        .collect();
    let answers = client.create_timeline_events(&events).await.unwrap();
    assert_eq!(answers.len(), 2, "150 events take two calls of at most 100");
    assert_eq!((answers[0].results.len(), answers[0].num_errors), (99, Some(1)));
    assert_eq!(answers[1].results.len(), 50);
    assert_eq!(answers[0].results[0].tokens["total"], "0");

    let definition = json!({"uid": "signup", "config": {"name": "Signup", "objectType": "contacts", "properties": []}});
    let defined =
        emulator.http.post(emulator.url("/_emulator/app-event-types")).json(&definition).send().await.unwrap();
    assert!(defined.status().is_success());
    let app_event = AppEventInput {
        event_type_name: "ae62515_signup".into(),
        email: Some("signup@example.com".into()),
        ..Default::default()
    };
    let sent = client.send_app_events(&[app_event]).await.unwrap();
    assert_eq!((sent[0].results.len(), sent[0].num_errors), (1, None));
    assert_eq!(emulator.requests_to("/integrators/timeline/v4/events/batch/create").await.len(), 1);
}

/// Associations v4: one batch read for every object, read on from the cursor of an object
/// with more associations than one answer holds (500); objects without any are absent.
#[tokio::test]
async fn association_batch_read_reads_on_past_a_full_page() {
    let emulator = emulator(0).await;
    let token = emulator::DEFAULT_TOKEN;
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        let request = http.post(emulator.url(path)).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<serde_json::Value>().await.unwrap_or_default()
        }
    };
    let many = emulator.create_contact(serde_json::json!({"email": "many@example.com"})).await;
    let two = emulator.create_contact(serde_json::json!({"email": "two@example.com"})).await;
    let none = emulator.create_contact(serde_json::json!({"email": "none@example.com"})).await;
    let mut companies: Vec<u64> = Vec::new();
    for batch in 0..6 {
        let inputs: Vec<_> =
            (0..100).map(|i| serde_json::json!({"properties": {"name": format!("c{batch}-{i}")}})).collect();
        let created = post("/crm/v3/objects/companies/batch/create", serde_json::json!({"inputs": inputs})).await;
        companies.extend(
            created["results"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().parse::<u64>().unwrap()),
        );
    }
    companies.sort();
    let pairs = |from: &str, to: &[u64]| {
        let inputs: Vec<_> =
            to.iter().map(|id| serde_json::json!({"from": {"id": from}, "to": {"id": id.to_string()}})).collect();
        inputs
    };
    for chunk in pairs(&many, &companies[..501]).chunks(100) {
        post("/crm/v4/associations/contacts/companies/batch/associate/default", serde_json::json!({"inputs": chunk}))
            .await;
    }
    post(
        "/crm/v4/associations/contacts/companies/batch/associate/default",
        serde_json::json!({"inputs": pairs(&two, &companies[510..512])}),
    )
    .await;

    let read = emulator
        .client(token)
        .batch_read_associations("contacts", "companies", &[many.clone(), two.clone(), none.clone()])
        .await
        .unwrap();
    let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>();
    assert_eq!(read.get(&many), Some(&ids(&companies[..501])));
    assert_eq!(read.get(&two), Some(&ids(&companies[510..512])));
    assert_eq!(read.get(&none), None);
    assert_eq!(emulator.call_count("POST", "/crm/v4/associations/contacts/companies/batch/read").await, 2);
}
