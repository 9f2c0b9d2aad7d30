//! The receiver's SQLite stores share how their files are opened (WAL, every commit fsync'd),
//! how older files gain the columns added since, and a connection a store's clones share, used
//! on the blocking threads.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::Connection;

/// Opens (or creates, with its parent directory) the store file at `path`; `what` names the
/// store in errors.
pub fn open(path: &Path, what: &str) -> anyhow::Result<Connection> {
    open_file(path, what, None)
}

/// [`open`], giving a file not yet written `page_size`; an older file keeps the page size it
/// was made with.
pub fn open_with_page_size(path: &Path, what: &str, page_size: i64) -> anyhow::Result<Connection> {
    open_file(path, what, Some(page_size))
}

fn open_file(path: &Path, what: &str, page_size: Option<i64>) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let conn = Connection::open(path).with_context(|| format!("opening {what} {}", path.display()))?;
    if let Some(page_size) = page_size {
        // Only a file not yet written takes it (switching to WAL below writes the header).
        conn.pragma_update(None, "page_size", page_size)?;
    }
    // WAL: readers never wait for the writer, and a commit is one append to the log.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "{what} {} cannot use WAL mode (got {mode})", path.display());
    // FULL: every commit is fsync'd, so whatever a store answered as stored survives a crash or
    // power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Adds `column` (of `definition`, e.g. `INTEGER`) to `table` of a file written before the
/// column existed.
pub fn add_column(conn: &Connection, table: &str, column: &str, definition: &str) -> rusqlite::Result<()> {
    let has_column: bool =
        conn.query_row("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2", [table, column], |row| {
            row.get::<_, i64>(0).map(|n| n > 0)
        })?;
    if !has_column {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
    }
    Ok(())
}

/// Rows of `table` (a store table with a `mapping` column) by mapping.
pub fn rows_by_mapping(conn: &Connection, table: &str) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT mapping, count(*) FROM {table} GROUP BY mapping"))?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

/// A store's one connection, shared by the store's clones: work on it runs one piece at a time.
#[derive(Clone)]
pub struct SharedConnection {
    conn: Arc<Mutex<Connection>>,
    /// Names the store in errors.
    what: &'static str,
}

impl SharedConnection {
    pub fn new(conn: Connection, what: &'static str) -> SharedConnection {
        SharedConnection { conn: Arc::new(Mutex::new(conn)), what }
    }

    /// Runs `work` on the connection on a blocking thread, off the async ones.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.run_blocking(work))
            .await
            .with_context(|| format!("{} task failed", self.what))?
    }

    /// Runs `work` on the connection on this thread.
    pub fn run_blocking<T>(&self, work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        // A panic elsewhere leaves the connection as usable as SQLite left it: every change is
        // a transaction or a single statement.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut conn).with_context(|| format!("{} query failed", self.what))
    }
}
