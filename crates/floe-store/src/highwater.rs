//! The high-water mark in a file under the data directory.
//!
//! Each write goes to a temporary file that is fsynced and renamed over the mark, then the
//! directory is fsynced, so a crash leaves either the old or the new mark, never a torn one.
//! An advisory lock on a separate lock file, held for the life of the value, keeps two
//! processes from sharing one data directory (they would issue the same IDs).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use floe_core::{HighWater, HighWaterError};
use serde::{Deserialize, Serialize};

/// File name of the mark inside the data directory.
pub const MARK_FILE: &str = "highwater.json";
/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "floe.lock";

/// What the mark file holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mark {
    /// Format version, for future changes.
    version: u32,
    /// No issued ID has a time at or after this instant (Unix ms).
    unix_ms: u64,
}

/// A high-water mark stored in `<dir>/highwater.json`, locked by `<dir>/floe.lock`.
#[derive(Debug)]
pub struct FileHighWater {
    /// The directory holding the mark.
    dir: PathBuf,
    /// The lock file, kept open so its advisory lock lasts as long as this value.
    _lock: File,
}

fn err(what: String, source: impl std::error::Error + Send + Sync + 'static) -> HighWaterError {
    HighWaterError::new(what, Some(Box::new(source)))
}

impl FileHighWater {
    /// Opens (creating if needed) the data directory and takes its lock.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileHighWater, HighWaterError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| err(format!("directory {} cannot be created", dir.display()), e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(format!("lock {} cannot be opened", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(HighWaterError::new(
                    format!(
                        "directory {} is in use by another Floe process (lock {} is held); give each process its own data directory",
                        dir.display(),
                        lock_path.display()
                    ),
                    None,
                ))
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(err(format!("lock {} cannot be taken", lock_path.display()), e))
            }
        }
        Ok(FileHighWater { dir, _lock: lock })
    }

    /// Path of the mark file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(MARK_FILE)
    }
}

impl HighWater for FileHighWater {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(format!("file {} cannot be read", path.display()), e)),
        };
        let mark: Mark = serde_json::from_str(&text).map_err(|e| {
            err(
                format!(
                    "file {} is corrupt (expected {{\"version\":1,\"unix_ms\":N}}); if no Floe ran with this data directory after the time you trust, remove it",
                    path.display()
                ),
                e,
            )
        })?;
        if mark.version != 1 {
            return Err(HighWaterError::new(
                format!(
                    "file {} has version {}, this Floe reads version 1",
                    path.display(),
                    mark.version
                ),
                None,
            ));
        }
        Ok(Some(mark.unix_ms))
    }

    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{MARK_FILE}.tmp"));
        let body = serde_json::to_vec(&Mark {
            version: 1,
            unix_ms,
        })
        .expect("a mark serialises");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // The rename is durable only once the directory entry is.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| err(format!("file {} cannot be written", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        assert_eq!(hw.load().unwrap(), None);
        hw.store(1_795_000_000_000).unwrap();
        hw.store(1_795_000_002_000).unwrap();
        drop(hw);
        let hw = FileHighWater::open(dir.path()).unwrap();
        assert_eq!(hw.load().unwrap(), Some(1_795_000_002_000));
        assert!(!dir.path().join("highwater.json.tmp").exists());
    }

    #[test]
    fn second_process_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileHighWater::open(dir.path()).unwrap();
        let e = FileHighWater::open(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("in use by another Floe process"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MARK_FILE), "{\"version\":1,\"unix_ms\":").unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        let e = hw.load().unwrap_err();
        assert!(e.to_string().contains("is corrupt"), "{e}");
        fs::write(dir.path().join(MARK_FILE), "{\"version\":2,\"unix_ms\":5}").unwrap();
        assert!(hw.load().unwrap_err().to_string().contains("version 2"));
    }
}
