//! Batch calls: HubSpot's limit on inputs per call, and how a batch is split to tell the inputs
//! HubSpot refuses from the ones it accepts.

use crate::error::{ApiError, Error, Result};

/// HubSpot accepts at most this many inputs per batch call.
pub const BATCH_LIMIT: usize = 100;

/// HubSpot accepts at most this many inputs per batch read with `propertiesWithHistory`.
pub const BATCH_WITH_HISTORY_LIMIT: usize = 50;

/// What a batch call made of each input once the inputs HubSpot refuses were isolated.
#[derive(Debug)]
pub struct IsolatedBatch<T> {
    /// Results of the calls HubSpot accepted (in HubSpot's order, which need not be the inputs').
    pub results: Vec<T>,
    /// Positions of the inputs HubSpot accepted.
    pub accepted: Vec<usize>,
    /// Inputs HubSpot refused on their own, with its answer.
    pub rejected: Vec<(usize, ApiError)>,
    /// Why the inputs in neither list were not settled: a retryable failure that outlasted the
    /// retries, or a refusal that is not about the inputs (authentication, scopes, daily limit).
    pub failure: Option<Error>,
}

/// Whether HubSpot refused a batch for what some input holds (a validation error, a conflict,
/// a missing record), so that splitting the batch can tell the bad inputs from the good ones.
fn refuses_inputs(error: &Error) -> bool {
    matches!(error, Error::Api(e) if matches!(e.status, 400 | 404 | 409 | 422) && e.category != "MISSING_SCOPES")
}

/// Runs a batch call over `inputs` in chunks of at most `BATCH_LIMIT`. When HubSpot refuses a
/// whole chunk for its inputs' content (400, 404, 409, 422: without `objectWriteTraceId` one bad
/// input fails the whole batch), the chunk is split in halves and each half is tried again,
/// until every refused input stands alone and is reported with HubSpot's answer; the rest are
/// written. Any other failure stops the run: the inputs not yet settled are left to the caller
/// to retry. Every call goes through `call`, so through the client's budget and retries.
pub async fn isolate_bad_inputs<'a, I, T, F, Fut>(inputs: &'a [I], mut call: F) -> IsolatedBatch<T>
where
    F: FnMut(&'a [I]) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    let mut batch = IsolatedBatch { results: Vec::new(), accepted: Vec::new(), rejected: Vec::new(), failure: None };
    // Ranges still to send, the next one last.
    let mut todo: Vec<std::ops::Range<usize>> = (0..inputs.len())
        .step_by(BATCH_LIMIT)
        .map(|start| start..(start + BATCH_LIMIT).min(inputs.len()))
        .rev()
        .collect();
    while let Some(range) = todo.pop() {
        match call(&inputs[range.clone()]).await {
            Ok(results) => {
                batch.results.extend(results);
                batch.accepted.extend(range);
            }
            Err(error) if refuses_inputs(&error) => {
                if range.len() == 1 {
                    let Error::Api(api) = error else { unreachable!("refuses_inputs matches API errors only") };
                    batch.rejected.push((range.start, api));
                } else {
                    let middle = range.start + range.len() / 2;
                    todo.push(middle..range.end);
                    todo.push(range.start..middle);
                }
            }
            Err(error) => {
                batch.failure = Some(error);
                break;
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(status: u16, category: &str) -> Error {
        Error::Api(ApiError {
            status,
            category: category.into(),
            message: "m".into(),
            correlation_id: "c".into(),
            required_scopes: vec![],
            policy_name: None,
        })
    }

    #[tokio::test]
    async fn isolation_reports_each_refused_input_and_keeps_the_rest() {
        let inputs: Vec<u32> = (0..250).collect();
        let mut calls: Vec<usize> = Vec::new();
        let batch = isolate_bad_inputs(&inputs, |chunk: &[u32]| {
            calls.push(chunk.len());
            let refused = chunk.iter().any(|i| *i == 7 || *i == 130);
            let answer = if refused { Err(api_error(400, "VALIDATION_ERROR")) } else { Ok(chunk.to_vec()) };
            async move { answer }
        })
        .await;
        assert!(batch.failure.is_none());
        assert_eq!(batch.rejected.iter().map(|(i, e)| (*i, e.status)).collect::<Vec<_>>(), vec![(7, 400), (130, 400)]);
        let mut accepted = batch.accepted.clone();
        accepted.sort();
        assert_eq!(accepted, (0..250).filter(|i| *i != 7 && *i != 130).map(|i| i as usize).collect::<Vec<_>>());
        assert_eq!(batch.results.len(), 248);
        assert!(calls.iter().all(|n| *n <= BATCH_LIMIT), "{calls:?}");
    }

    #[tokio::test]
    async fn failures_not_about_inputs_stop_and_leave_the_rest_unsettled() {
        let inputs: Vec<u32> = (0..250).collect();
        for error in [|| api_error(503, "UNKNOWN"), || api_error(403, "MISSING_SCOPES"), || api_error(401, "X")] {
            let mut call_count = 0;
            let batch = isolate_bad_inputs(&inputs, |chunk: &[u32]| {
                call_count += 1;
                let answer = if call_count == 2 { Err(error()) } else { Ok(chunk.to_vec()) };
                async move { answer }
            })
            .await;
            assert_eq!(batch.accepted, (0..100).collect::<Vec<_>>());
            assert!(batch.rejected.is_empty());
            assert!(batch.failure.is_some());
            assert_eq!(call_count, 2);
        }
    }
}
