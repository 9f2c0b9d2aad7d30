//! `--state FILE`: the emulator's data survives a restart. The store (objects, properties,
//! schemas, associations, id counters) and the app's webhook settings and subscriptions are
//! saved shortly after they change and at shutdown, and loaded at start. Each save replaces
//! the file atomically (write a temporary file, fsync it, rename it over the old one, fsync
//! the directory), so a crash leaves either the old state or the new one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::shared::Emulator;
use crate::store::StoreSnapshot;
use crate::webhooks::settings::AppWebhooks;

/// How long changes gather before they are saved.
const SAVE_DELAY: Duration = Duration::from_millis(200);
const FORMAT_VERSION: u64 = 1;

/// A state file's contents.
#[derive(Deserialize)]
pub struct Saved {
    pub store: StoreSnapshot,
    pub webhooks: AppWebhooks,
}

/// The saved state, or `None` when the file does not exist yet. A file that cannot be read is
/// an error: starting empty would overwrite it at the first save.
pub fn load(path: &Path) -> anyhow::Result<Option<Saved>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read the emulator state {}: {e}", path.display()),
    };
    #[derive(Deserialize)]
    struct Versioned {
        version: u64,
    }
    let version: Versioned = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not an emulator state file: {e}", path.display()))?;
    if version.version != FORMAT_VERSION {
        anyhow::bail!("{} has state format {}, this emulator reads {FORMAT_VERSION}", path.display(), version.version);
    }
    let saved = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not an emulator state file: {e}", path.display()))?;
    Ok(Some(saved))
}

/// What was saved last, to tell whether there is anything new.
#[derive(Default, PartialEq)]
struct Saw {
    revision: Option<u64>,
    webhooks: Option<AppWebhooks>,
}

/// Saves the state when it has changed since `last`.
fn save_if_changed(emu: &Emulator, path: &Path, last: &mut Saw) -> anyhow::Result<()> {
    let webhooks = emu.app_webhooks.lock().expect("webhook settings lock").clone();
    let (revision, store) = {
        let store = emu.store.lock().expect("store lock");
        if last.revision == Some(store.revision()) && last.webhooks.as_ref() == Some(&webhooks) {
            return Ok(());
        }
        (store.revision(), store.snapshot()?)
    };
    let bytes = serde_json::to_vec(&json!({ "version": FORMAT_VERSION, "store": store, "webhooks": webhooks }))?;
    write_atomically(path, &bytes)?;
    *last = Saw { revision: Some(revision), webhooks: Some(webhooks) };
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Saves changes as they happen until stopped; `finish` saves what is left.
pub struct Saver {
    emu: Arc<Emulator>,
    path: PathBuf,
    task: JoinHandle<()>,
    last: Arc<std::sync::Mutex<Saw>>,
}

impl Saver {
    pub fn start(emu: Arc<Emulator>, path: PathBuf) -> Saver {
        let last = Arc::new(std::sync::Mutex::new(Saw::default()));
        let task = tokio::spawn({
            let (emu, path, last) = (emu.clone(), path.clone(), last.clone());
            async move {
                loop {
                    tokio::time::sleep(SAVE_DELAY).await;
                    let (emu, path, last) = (emu.clone(), path.clone(), last.clone());
                    let saved = tokio::task::spawn_blocking(move || {
                        save_if_changed(&emu, &path, &mut last.lock().expect("saver lock"))
                    })
                    .await;
                    if let Ok(Err(e)) = saved {
                        // Kept in memory; the next round tries again.
                        tracing::error!(error = %e, "cannot save the emulator state");
                    }
                }
            }
        });
        Saver { emu, path, task, last }
    }

    /// Stops saving in the background and saves the latest state.
    pub async fn finish(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let (emu, path, last) = (self.emu.clone(), self.path.clone(), self.last.clone());
        let saved =
            tokio::task::spawn_blocking(move || save_if_changed(&emu, &path, &mut last.lock().expect("saver lock")))
                .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save the emulator state at shutdown"),
            Err(e) => tracing::error!(error = %e, "saving the emulator state at shutdown failed"),
        }
    }

    fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.abort();
    }
}
