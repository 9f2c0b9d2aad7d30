//! The CRM associations API (v4).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;

use super::HubSpotClient;
use super::batch::BATCH_LIMIT;
use crate::error::Result;
use crate::models::{AssociationsOf, BatchResponse};

impl HubSpotClient {
    /// `POST /crm/v4/associations/{from}/{to}/batch/read` in chunks of 100: per object of `ids`
    /// that has any, the ids of the `to_type` records it is associated with, ascending. HubSpot
    /// answers objects without associations as errors of the batch; they are absent here. An
    /// object with more associations than one answer holds is read on from its cursor.
    pub async fn batch_read_associations(
        &self,
        from_type: &str,
        to_type: &str,
        ids: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let path = format!("/crm/v4/associations/{from_type}/{to_type}/batch/read");
        let mut associated: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let mut inputs: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({ "id": id })).collect();
        while !inputs.is_empty() {
            let mut read_on = Vec::new();
            for chunk in inputs.chunks(BATCH_LIMIT) {
                let body = serde_json::json!({ "inputs": chunk });
                let page: BatchResponse<AssociationsOf> =
                    self.send("batch_read_associations", Method::POST, path.clone(), &[], Some(&body)).await?;
                for result in page.results {
                    if let Some(next) = result.paging.as_ref().and_then(|p| p.next.as_ref()) {
                        read_on.push(serde_json::json!({ "id": result.from.id, "after": next.after }));
                    }
                    associated.entry(result.from.id).or_default().extend(result.to.iter().map(|to| to.to_object_id));
                }
            }
            inputs = read_on;
        }
        Ok(associated.into_iter().map(|(id, to)| (id, to.iter().map(u64::to_string).collect())).collect())
    }
}
