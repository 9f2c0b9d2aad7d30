//! Cursor paging, as HubSpot's list and search endpoints page (`paging.next.after`), and how
//! far HubSpot pages a search.

use futures::{Stream, TryStreamExt, stream};

use crate::error::{Error, Result};

/// Largest page of a search.
pub const SEARCH_PAGE_LIMIT: u32 = 200;
/// HubSpot pages through at most this many results of one search.
pub const SEARCH_RESULTS_CAP: u64 = 10_000;

/// Items of consecutive pages: `fetch(after)` returns a page's items and the cursor of the next
/// page, `None` on the last. Pages are fetched only as the stream is consumed.
pub(super) fn pages<'a, T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T>> + Send + 'a
where
    T: Send + 'a,
    F: Fn(Option<String>) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>> + Send + 'a,
{
    // `None`: the last page was taken; `Some(after)`: the cursor of the next.
    stream::try_unfold((fetch, Some(None::<String>)), |(fetch, cursor)| async move {
        let Some(after) = cursor else { return Ok::<_, Error>(None) };
        let (items, next) = fetch(after).await?;
        Ok(Some((stream::iter(items.into_iter().map(Ok::<T, Error>)), (fetch, next.map(Some)))))
    })
    .try_flatten()
}
