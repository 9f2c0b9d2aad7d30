//! The writer thread the receiver's queue stores share: it takes every write request waiting,
//! commits them together (group commit) and answers each only once the commit is on disk; reads
//! use a second, read-only connection (WAL mode) and never wait for the writer.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context as _;
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Commits a group of writes on the writer's connection, in one transaction; what each affected,
/// in order.
pub type CommitGroup<W, A> = Box<dyn FnMut(&mut Connection, &[W]) -> anyhow::Result<Vec<A>> + Send>;

struct Request<W, A> {
    write: W,
    done: oneshot::Sender<anyhow::Result<A>>,
}

/// One store's writer thread and reader connection.
pub struct GroupCommit<W, A> {
    writes: mpsc::Sender<Request<W, A>>,
    /// Taken only by `Drop`.
    writer: Option<JoinHandle<()>>,
    reader: Arc<Mutex<Connection>>,
    /// Names the store in errors and the thread's name.
    what: &'static str,
}

impl<W: Send + 'static, A: Send + 'static> GroupCommit<W, A> {
    /// Starts the writer thread on `writer`, committing with `commit`; `reader` serves reads.
    pub fn start(
        what: &'static str,
        writer: Connection,
        reader: Connection,
        commit: CommitGroup<W, A>,
    ) -> anyhow::Result<GroupCommit<W, A>> {
        reader.pragma_update(None, "query_only", true)?;
        let (writes, requests) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(what.replace(' ', "-"))
            .spawn(move || run_writer(what, writer, requests, commit))
            .with_context(|| format!("starting the {what} writer thread"))?;
        Ok(GroupCommit { writes, writer: Some(thread), reader: Arc::new(Mutex::new(reader)), what })
    }

    /// Commits `write` (with whatever else is waiting); what it affected, once on disk.
    pub async fn submit(&self, write: W) -> anyhow::Result<A> {
        let (done, answer) = oneshot::channel();
        self.writes.send(Request { write, done }).map_err(|_| anyhow::anyhow!("{} writer has stopped", self.what))?;
        answer.await.map_err(|_| anyhow::anyhow!("{} writer stopped before committing", self.what))?
    }

    /// Runs `read` on the reader connection on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        if self.writer.as_ref().is_none_or(|writer| writer.is_finished()) {
            anyhow::bail!("{} writer has stopped", self.what);
        }
        let reader = self.reader.clone();
        let what = self.what;
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| anyhow::anyhow!("{what} reader poisoned"))?;
            read(&conn)
        })
        .await
        .with_context(|| format!("{what} read task failed"))?
    }
}

impl<W, A> Drop for GroupCommit<W, A> {
    fn drop(&mut self) {
        // The writer commits what it holds, then stops; the file is closed when this returns.
        drop(std::mem::replace(&mut self.writes, mpsc::channel().0));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: group commits until every sender is gone.
fn run_writer<W, A>(
    what: &str,
    mut conn: Connection,
    requests: mpsc::Receiver<Request<W, A>>,
    mut commit: CommitGroup<W, A>,
) {
    while let Ok(first) = requests.recv() {
        let group: Vec<Request<W, A>> = std::iter::once(first).chain(requests.try_iter()).collect();
        let (writes, answers): (Vec<W>, Vec<_>) = group.into_iter().map(|r| (r.write, r.done)).unzip();
        match commit(&mut conn, &writes) {
            Ok(affected) => {
                for (done, affected) in answers.into_iter().zip(affected) {
                    let _ = done.send(Ok(affected));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = answers.len(), "{what} commit failed");
                for done in answers {
                    let _ = done.send(Err(anyhow::anyhow!("{what} commit failed: {e}")));
                }
            }
        }
    }
}
