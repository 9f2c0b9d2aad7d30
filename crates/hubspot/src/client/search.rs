//! The CRM search API: one page of a search, or every match page by page. Searches spend their
//! own budget (see `SEARCH_OPERATION`).

use futures::Stream;
use reqwest::Method;

use super::HubSpotClient;
use super::paging::{SEARCH_PAGE_LIMIT, SEARCH_RESULTS_CAP, pages};
use super::transport::SEARCH_OPERATION;
use crate::error::{Error, Result};
use crate::models::{CrmObject, SearchPage, SearchRequest};

impl HubSpotClient {
    /// One page of `POST /crm/v3/objects/{t}/search`, on the search budget.
    pub async fn search(&self, object_type: &str, request: &SearchRequest) -> Result<SearchPage> {
        self.send(SEARCH_OPERATION, Method::POST, self.objects_path(object_type, "/search"), &[], Some(request)).await
    }

    /// Every match of `request`, page by page (200 at a time). Fails with
    /// `Error::SearchCapped` before the first result when the search matches more than HubSpot
    /// pages through, so a caller never takes a truncated result for the whole.
    pub fn search_all<'a>(
        &'a self,
        object_type: &'a str,
        request: SearchRequest,
    ) -> impl Stream<Item = Result<CrmObject>> + Send + 'a {
        pages(move |after| {
            let mut request = request.clone();
            async move {
                request.limit = Some(request.limit.unwrap_or(SEARCH_PAGE_LIMIT).min(SEARCH_PAGE_LIMIT));
                let first = after.is_none();
                request.after = after;
                let page = self.search(object_type, &request).await?;
                if first && page.total > SEARCH_RESULTS_CAP {
                    return Err(Error::SearchCapped { total: page.total });
                }
                let next = page.next_after().map(str::to_string);
                Ok((page.results, next))
            }
        })
    }
}
