//! The CRM objects API: listing objects page by page, batch reads (with property history too)
//! and batch upserts.

use futures::{Stream, TryStreamExt};
use reqwest::Method;

use super::HubSpotClient;
use super::batch::{BATCH_LIMIT, BATCH_WITH_HISTORY_LIMIT, IsolatedBatch, isolate_bad_inputs};
use super::paging::pages;
use crate::error::Result;
use crate::models::{BatchResponse, CrmObject, ObjectPage, ObjectWithHistory, UpsertInput, UpsertResult};

impl HubSpotClient {
    /// One page of `GET /crm/v3/objects/{t}` with only `properties`.
    pub async fn list_objects_page(
        &self,
        object_type: &str,
        properties: &[String],
        after: Option<&str>,
        limit: u32,
    ) -> Result<ObjectPage> {
        let mut query = vec![("limit", limit.clamp(1, 100).to_string()), ("archived", "false".to_string())];
        if !properties.is_empty() {
            query.push(("properties", properties.join(",")));
        }
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        self.send::<(), _>("list_objects", Method::GET, self.objects_path(object_type, ""), &query, None).await
    }

    /// Every object of a type, page by page (`paging.next.after`) as the stream is consumed.
    pub fn objects<'a>(
        &'a self,
        object_type: &'a str,
        properties: &'a [String],
    ) -> impl Stream<Item = Result<CrmObject>> + Send + 'a {
        pages(move |after| async move {
            let page = self.list_objects_page(object_type, properties, after.as_deref(), 100).await?;
            let next = page.next_after().map(str::to_string);
            Ok((page.results, next))
        })
    }

    /// Every object of a type, collected.
    pub async fn list_all_objects(&self, object_type: &str, properties: &[String]) -> Result<Vec<CrmObject>> {
        self.objects(object_type, properties).try_collect().await
    }

    /// `POST /crm/v3/objects/{t}/batch/read` in chunks of 100; ids HubSpot does not know are absent.
    pub async fn batch_read(&self, object_type: &str, properties: &[String], ids: &[String]) -> Result<Vec<CrmObject>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_LIMIT) {
            if let Some(observer) = &self.observer {
                observer.batch_read(chunk.len());
            }
            let body = serde_json::json!({
                "properties": properties,
                "propertiesWithHistory": [],
                "inputs": chunk.iter().map(|id| serde_json::json!({ "id": id })).collect::<Vec<_>>(),
            });
            let page: BatchResponse<CrmObject> = self
                .send("batch_read", Method::POST, self.objects_path(object_type, "/batch/read"), &[], Some(&body))
                .await?;
            found.extend(page.results);
        }
        Ok(found)
    }

    /// `POST /crm/v3/objects/{t}/batch/upsert` in chunks of 100.
    pub async fn batch_upsert(&self, object_type: &str, inputs: &[UpsertInput]) -> Result<Vec<UpsertResult>> {
        let mut results = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(BATCH_LIMIT) {
            let body = serde_json::json!({ "inputs": chunk });
            let page: BatchResponse<UpsertResult> = self
                .send("batch_upsert", Method::POST, self.objects_path(object_type, "/batch/upsert"), &[], Some(&body))
                .await?;
            results.extend(page.results);
        }
        Ok(results)
    }

    /// Batch upsert that isolates the inputs HubSpot refuses (see `isolate_bad_inputs`).
    pub async fn batch_upsert_isolated(
        &self,
        object_type: &str,
        inputs: &[UpsertInput],
    ) -> IsolatedBatch<UpsertResult> {
        isolate_bad_inputs(inputs, |chunk| self.batch_upsert(object_type, chunk)).await
    }

    /// `POST /crm/v3/objects/{t}/batch/read` by `id_property` with the history of
    /// `properties`, in chunks of 50; values HubSpot holds no record for are absent. The
    /// results carry `id_property` too, so that each names the id it was read by.
    pub async fn batch_read_with_history(
        &self,
        object_type: &str,
        properties: &[String],
        id_property: &str,
        ids: &[String],
    ) -> Result<Vec<ObjectWithHistory>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_WITH_HISTORY_LIMIT) {
            let mut shown = properties.to_vec();
            shown.push(id_property.to_string());
            let body = serde_json::json!({
                "properties": shown,
                "propertiesWithHistory": properties,
                "idProperty": id_property,
                "inputs": chunk.iter().map(|id| serde_json::json!({ "id": id })).collect::<Vec<_>>(),
            });
            let page: BatchResponse<ObjectWithHistory> = self
                .send("batch_read", Method::POST, self.objects_path(object_type, "/batch/read"), &[], Some(&body))
                .await?;
            found.extend(page.results);
        }
        Ok(found)
    }

    /// The path of an objects endpoint: `v3`, or the date version the client is configured with.
    pub(super) fn objects_path(&self, object_type: &str, suffix: &str) -> String {
        match &*self.api_version {
            "v3" => format!("/crm/v3/objects/{object_type}{suffix}"),
            date => format!("/crm/objects/{date}/{object_type}{suffix}"),
        }
    }
}
