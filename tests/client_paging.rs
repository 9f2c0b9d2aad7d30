//! The client's paging streams and search calls against the emulator: every page is read, no
//! search goes beyond HubSpot's per-second limit, and a search too broad to page through fails
//! instead of returning part of its matches.

mod common;

use common::TestEmulator;
use futures::{StreamExt, TryStreamExt};
use hubspot_operator::emulator::EmulatorConfig;
use hubspot_operator::hubspot::{Error, Filter, FilterGroup, FilterOperator, SearchRequest, SearchSort, SortDirection};

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

/// Associations v4: one batch read for every object, read on from the cursor of an object
/// with more associations than one answer holds (500); objects without any are absent.
#[tokio::test]
async fn association_batch_read_reads_on_past_a_full_page() {
    let emulator = emulator(0).await;
    let token = hubspot_operator::emulator::DEFAULT_TOKEN;
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
