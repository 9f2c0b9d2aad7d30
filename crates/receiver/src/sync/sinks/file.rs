//! Appends one JSON line per record to a file and fsyncs it before reporting success.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::SinkError;
use crate::sync::plan::Record;

/// A JSON-lines file destination.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn deliver(&self, records: &[Record]) -> Result<(), SinkError> {
        let mut lines = Vec::new();
        for record in records {
            serde_json::to_writer(&mut lines, record)
                .map_err(|e| SinkError::Permanent { reason: format!("record is not serialisable: {e}") })?;
            lines.push(b'\n');
        }
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || append_durably(&path, &lines)).await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                Err(SinkError::Retryable { reason: format!("writing {}: {e}", self.path.display()), retry_after: None })
            }
            Err(e) => Err(SinkError::Retryable { reason: format!("file write task failed: {e}"), retry_after: None }),
        }
    }
}

/// One `write_all` of every line, then `sync_data`: the lines are on disk when this returns.
fn append_durably(path: &Path, lines: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(lines)?;
    file.sync_data()
}
