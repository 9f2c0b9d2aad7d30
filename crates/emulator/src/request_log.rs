//! The log of API calls the emulator received (the admin API shows it): the last calls, and
//! counts of every call since the start.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::{Value, json};

/// How many API calls the request log keeps.
const REQUEST_LOG_CAPACITY: usize = 10_000;

/// One API call received.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: Value,
    pub status: u16,
}

/// The last API calls, and counts of every call since the start (or the last clear), which
/// long load runs read when the log itself has long rolled over.
#[derive(Default)]
pub struct RequestLog {
    entries: VecDeque<LoggedRequest>,
    /// Calls by (method, path, status).
    counts: BTreeMap<(String, String, u16), u64>,
    /// Calls the rate limits refused (429s the emulator's limiters answered).
    rate_limited: u64,
    /// Calls answered by an injected fault (`/_emulator/faults` with a status).
    injected_faults: u64,
}

impl RequestLog {
    /// The last calls received, oldest first.
    pub fn entries(&self) -> &VecDeque<LoggedRequest> {
        &self.entries
    }

    pub fn push(&mut self, entry: LoggedRequest) {
        *self.counts.entry((entry.method.clone(), entry.path.clone(), entry.status)).or_default() += 1;
        if self.entries.len() == REQUEST_LOG_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn count_rate_limited(&mut self) {
        self.rate_limited += 1;
    }

    pub fn count_injected_fault(&mut self) {
        self.injected_faults += 1;
    }

    pub fn clear(&mut self) {
        *self = RequestLog::default();
    }

    pub fn counts_json(&self) -> Value {
        let calls: Vec<Value> = self
            .counts
            .iter()
            .map(|((method, path, status), count)| json!({"method": method, "path": path, "status": status, "count": count}))
            .collect();
        json!({"calls": calls, "rateLimited": self.rate_limited, "injectedFaults": self.injected_faults})
    }
}
