//! The durable app table: one versioned JSON file in the edge's state
//! directory, replaced atomically.
//!
//! A write goes to a temporary file in the same directory, is fsynced,
//! renamed over the old file, and the directory is fsynced, so after a
//! crash at any point the file is either the previous version or the new
//! one, never a mix. The caller acknowledges a change only after
//! [`save`] returns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AppSpec;

/// File name of the app table inside the state directory.
pub const APPS_FILE: &str = "apps.json";

/// What is stored: the table and its version (incremented per change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppTable {
    pub version: u64,
    pub apps: Vec<AppSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a valid app table: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the state directory (mode 0700) if needed.
pub fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// The stored table, or `None` on first start.
pub fn load(dir: &Path) -> Result<Option<AppTable>, StoreError> {
    load_json(dir, APPS_FILE)
}

/// Replaces the stored table atomically and durably.
pub fn save(dir: &Path, table: &AppTable) -> Result<(), StoreError> {
    save_json(dir, APPS_FILE, table)
}

/// Reads `dir/file` as JSON, or `None` if it does not exist.
pub fn load_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    file: &str,
) -> Result<Option<T>, StoreError> {
    let path = dir.join(file);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path,
            reason: e.to_string(),
        })
}

/// Replaces `dir/file` with `value` as JSON: temporary file, fsync,
/// rename, fsync of the directory.
pub fn save_json<T: Serialize>(dir: &Path, file: &str, value: &T) -> Result<(), StoreError> {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    let data = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // A failed write (a full disk) must not leave its partial copy taking
    // the space the next attempt needs.
    let written = write_durably(&tmp, &data).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io {
            path: path.clone(),
            source: e,
        });
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Set while a new edge process takes this one's place: the state
/// directory is then the new process's to load and write.
static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Holds (or releases) every state write of this process: a held write
/// fails with an error that says why, and nothing reaches the disk.
pub fn hold_writes(held: bool) {
    HELD.store(held, std::sync::atomic::Ordering::SeqCst);
}

/// Whether state writes are held ([`hold_writes`]).
pub fn writes_held() -> bool {
    HELD.load(std::sync::atomic::Ordering::SeqCst)
}

/// Writes a file and fsyncs it (mode 0600: the table names internal hosts).
pub fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    if writes_held() {
        return Err(io::Error::other(
            "this edge process is handing over to a new one, which owns the state directory now; retry the change there",
        ));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_first_start() {
        let dir = std::env::temp_dir().join(format!("postern-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        ensure_dir(&dir).unwrap();
        assert_eq!(load(&dir).unwrap(), None);
        let spec: AppSpec = serde_json::from_str(
            r#"{"name":"a","external_url":"https://a.example.com/","internal_url":"http://a.corp/","preauth":"passthrough"}"#,
        )
        .unwrap();
        let table = AppTable {
            version: 7,
            apps: vec![spec],
        };
        save(&dir, &table).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(table));
        fs::write(dir.join(APPS_FILE), b"{\"version\": 1, \"apps\": [").unwrap();
        assert!(matches!(load(&dir), Err(StoreError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&dir);
    }
}
