//! The high-water mark in files under the data directory.
//!
//! Three witnesses hold the mark, so that losing or rolling back one file never lets a restart
//! repeat IDs:
//! - `highwater.json`, the mark;
//! - `highwater.json.next`, the spare file each write goes to before it atomically trades names
//!   with the mark (`renameat2(RENAME_EXCHANGE)`), which then holds the mark before;
//! - `floe.lock`, which holds a copy of the mark besides its lock.
//!
//! Every write goes to files that are already open (`pwrite`, `fsync`, a rename and the
//! directory's `fsync`), so a node whose file descriptors are used up by clients still extends
//! its mark and keeps issuing. A crash leaves either the old or the new mark in each file, never
//! a torn one; on open the largest mark the witnesses hold is the one trusted. A directory that
//! shows an earlier run (a lock file or a segment database) but has no readable mark is refused:
//! IDs of that run could be repeated.
//!
//! Two processes must never share a directory (they would issue the same IDs): the directory
//! itself is locked (`flock` on its descriptor, which no `rm` can take away), and before every
//! write the node checks that the directory and the lock file are still the ones it locked. If
//! either was removed or replaced, writes fail from then on, so the node stops issuing once its
//! persisted window runs out.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use floe_core::{HighWater, HighWaterError};
use serde::{Deserialize, Serialize};

/// File name of the mark inside the data directory.
pub const MARK_FILE: &str = "highwater.json";
/// File name of the spare mark file, which holds the previous mark.
pub const SPARE_FILE: &str = "highwater.json.next";
/// File name of the lock inside the data directory; it also holds a copy of the mark.
pub const LOCK_FILE: &str = "floe.lock";
/// Files whose presence shows that Floe ran with this directory before.
const EARLIER_RUN: [&str; 4] = [MARK_FILE, LOCK_FILE, SPARE_FILE, "floe.db"];
/// The copy in the lock file is padded to this length, so a shorter mark never leaves the tail
/// of a longer one behind (the copy is rewritten in place, not truncated).
const LOCK_COPY_LEN: usize = 64;

/// What the mark files hold.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mark {
    /// Format version, for future changes.
    version: u32,
    /// No issued ID has a time at or after this instant (Unix ms).
    unix_ms: u64,
}

/// Device and inode: what a path pointed to when it was locked.
type FileId = (u64, u64);

fn id_of(meta: &fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// The two open mark files; a write goes to `spare`, then the two trade names and places.
#[derive(Debug)]
struct Files {
    /// The file named `highwater.json`, if it exists.
    mark: Option<File>,
    /// The file named `highwater.json.next`.
    spare: File,
    /// The last mark written, to tell a lowering write (graceful shutdown) from a raising one.
    last: Option<u64>,
    /// Set once the directory was found taken over: every later write fails with this.
    lost: Option<String>,
}

/// A high-water mark stored in `<dir>/highwater.json` (with two more witnesses), locked by a
/// lock on `<dir>` and on `<dir>/floe.lock`.
#[derive(Debug)]
pub struct FileHighWater {
    /// The directory holding the mark.
    dir: PathBuf,
    /// The directory, open: locked, and fsynced after each rename.
    dir_file: File,
    /// The directory's identity when it was locked.
    dir_id: FileId,
    /// The lock file, kept open so its lock lasts as long as this value; holds a mark copy.
    lock: File,
    /// The lock file's identity when it was locked.
    lock_id: FileId,
    /// Whether the directory showed an earlier run when it was opened.
    earlier_run: bool,
    /// The open mark files.
    files: Mutex<Files>,
}

fn err(what: String, source: std::io::Error) -> HighWaterError {
    // The OS cause (ENOSPC, EROFS, EMFILE) is part of the message: it is what an operator acts on.
    HighWaterError::new(format!("{what}: {source}"), None)
}

fn in_use(dir: &Path, held: &Path) -> HighWaterError {
    HighWaterError::new(
        format!(
            "directory {} is in use by another Floe process ({} is locked); give each process its own data directory",
            dir.display(),
            held.display()
        ),
        None,
    )
}

fn take_lock(file: &File, dir: &Path, path: &Path) -> Result<(), HighWaterError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => Err(in_use(dir, path)),
        Err(fs::TryLockError::Error(e)) => {
            Err(err(format!("lock {} cannot be taken", path.display()), e))
        }
    }
}

fn encode(unix_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&Mark {
        version: 1,
        unix_ms,
    })
    .expect("a mark serialises")
}

/// Reads one witness: `Ok(None)` when the file is missing or empty.
fn parse(path: &Path, text: &str) -> Result<Option<u64>, HighWaterError> {
    let text = text.trim_end_matches([' ', '\n', '\0']);
    if text.is_empty() {
        return Ok(None);
    }
    let mark: Mark = serde_json::from_str(text).map_err(|e| {
        HighWaterError::new(
            format!(
                "file {} is corrupt (expected {{\"version\":1,\"unix_ms\":N}}: {e})",
                path.display()
            ),
            None,
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

/// Writes the mark's copy into the lock file, in place and padded (no truncation, no new file).
fn write_copy(lock: &File, path: &Path, unix_ms: u64) -> Result<(), HighWaterError> {
    let mut copy = encode(unix_ms);
    copy.resize(LOCK_COPY_LEN - 1, b' ');
    copy.push(b'\n');
    lock.write_all_at(&copy, 0)
        .and_then(|()| lock.sync_data())
        .map_err(|e| err(format!("lock {} cannot be written", path.display()), e))
}

fn read(path: &Path) -> Result<Option<String>, HighWaterError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(format!("file {} cannot be read", path.display()), e)),
    }
}

impl FileHighWater {
    /// Opens (creating if needed) the data directory and takes its locks.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileHighWater, HighWaterError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| err(format!("directory {} cannot be created", dir.display()), e))?;
        let earlier_run = EARLIER_RUN.iter().any(|f| dir.join(f).exists());
        let dir_file = File::open(&dir)
            .map_err(|e| err(format!("directory {} cannot be opened", dir.display()), e))?;
        take_lock(&dir_file, &dir, &dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(format!("lock {} cannot be opened", lock_path.display()), e))?;
        // Still taken: an older Floe locks only the file, not the directory.
        take_lock(&lock, &dir, &lock_path)?;
        let meta = |f: &File, p: &Path| {
            f.metadata()
                .map(|m| id_of(&m))
                .map_err(|e| err(format!("{} cannot be examined", p.display()), e))
        };
        let dir_id = meta(&dir_file, &dir)?;
        let lock_id = meta(&lock, &lock_path)?;
        let open_rw = |name: &str, create: bool| {
            let path = dir.join(name);
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(&path)
                .map_err(|e| err(format!("file {} cannot be opened", path.display()), e))
        };
        let mark = match open_rw(MARK_FILE, false) {
            Ok(f) => Some(f),
            Err(_) if !dir.join(MARK_FILE).exists() => None,
            Err(e) => return Err(e),
        };
        let spare = open_rw(SPARE_FILE, true)?;
        if !earlier_run {
            // A fresh directory: the lock says "nothing issued yet", so a node that stops
            // before its first write is not taken for one whose marks were lost.
            write_copy(&lock, &lock_path, 0)?;
        }
        Ok(FileHighWater {
            dir,
            dir_file,
            dir_id,
            lock,
            lock_id,
            earlier_run,
            files: Mutex::new(Files {
                mark,
                spare,
                last: None,
                lost: None,
            }),
        })
    }

    /// Path of the mark file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(MARK_FILE)
    }

    /// Checks that the directory and the lock file are still the ones this node locked: if
    /// either was removed or replaced, another process may be issuing from the same directory.
    fn check_ownership(&self) -> Result<(), String> {
        let lock_path = self.dir.join(LOCK_FILE);
        let same = |path: &Path, id: FileId| fs::metadata(path).is_ok_and(|m| id_of(&m) == id);
        if !same(&self.dir, self.dir_id) {
            return Err(format!(
                "data directory {} was removed or replaced while this node runs; it stops issuing IDs (another process may be using the new directory); restart it once the directory is in order",
                self.dir.display()
            ));
        }
        if !same(&lock_path, self.lock_id) {
            return Err(format!(
                "lock {} was removed or replaced while this node runs; it stops issuing IDs, since another process may now share the directory; restart it once only one Floe uses {}",
                lock_path.display(),
                self.dir.display()
            ));
        }
        Ok(())
    }

    /// Writes `body` into the spare file and makes it the mark; no new file descriptor is needed
    /// once the mark file exists.
    fn write_mark(&self, files: &mut Files, body: &[u8]) -> std::io::Result<()> {
        files.spare.set_len(0)?;
        files.spare.write_all_at(body, 0)?;
        files.spare.sync_all()?;
        let exchanged = files.mark.is_some()
            && rustix::fs::renameat_with(
                &self.dir_file,
                SPARE_FILE,
                &self.dir_file,
                MARK_FILE,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .is_ok();
        if exchanged {
            let old = files.mark.take().expect("checked above");
            files.mark = Some(std::mem::replace(&mut files.spare, old));
        } else {
            // First write (or the mark was deleted): a plain rename, then a new spare file.
            fs::rename(self.dir.join(SPARE_FILE), self.path())?;
            let spare = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.dir.join(SPARE_FILE))?;
            files.mark = Some(std::mem::replace(&mut files.spare, spare));
        }
        // The rename is durable only once the directory entry is.
        self.dir_file.sync_all()
    }
}

impl HighWater for FileHighWater {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        let path = self.path();
        let primary = read(&path)?.map_or(Ok(None), |t| parse(&path, &t));
        let lock_path = self.dir.join(LOCK_FILE);
        let mut copy = vec![0u8; LOCK_COPY_LEN];
        let n = self
            .lock
            .read_at(&mut copy, 0)
            .map_err(|e| err(format!("lock {} cannot be read", lock_path.display()), e))?;
        let copy = String::from_utf8_lossy(&copy[..n]).into_owned();
        // A torn copy (a crash while it was rewritten) is no witness, and no error either.
        let copy = parse(&lock_path, &copy).ok().flatten();
        let spare_path = self.dir.join(SPARE_FILE);
        let spare = read(&spare_path)?
            .map_or(Ok(None), |t| parse(&spare_path, &t))
            .ok()
            .flatten();
        // The mark and the lock copy both hold the last completed write; the spare holds the
        // write before it, which alone would be too low.
        let latest = match (&primary, copy) {
            (Ok(Some(a)), Some(b)) => Some((*a).max(b)),
            (Ok(Some(a)), None) => Some(*a),
            (_, Some(b)) => Some(b),
            (Ok(None), None) if !self.earlier_run => return Ok(None),
            (Ok(None), None) => {
                return Err(HighWaterError::new(
                    format!(
                        "file {} is missing, but directory {} shows an earlier run ({} exists): IDs that run issued could be repeated. Restore the file from a backup, or write {{\"version\":1,\"unix_ms\":N}} to it with N (Unix ms) after the last ID issued from this directory; only if no ID from this directory matters any more, remove {}, {} and {}",
                        path.display(),
                        self.dir.display(),
                        EARLIER_RUN
                            .iter()
                            .find(|f| self.dir.join(f).exists())
                            .unwrap_or(&LOCK_FILE),
                        path.display(),
                        spare_path.display(),
                        lock_path.display()
                    ),
                    None,
                ))
            }
            (Err(e), None) => {
                return Err(HighWaterError::new(
                    format!(
                        "{}; no other copy of the mark could be read. Restore it from a backup, or write {{\"version\":1,\"unix_ms\":N}} to it with N (Unix ms) after the last ID issued from this directory",
                        e.what
                    ),
                    None,
                ))
            }
        };
        let mark = latest.max(spare);
        if let (Ok(p), Some(m)) = (&primary, mark) {
            if *p != Some(m) {
                tracing::warn!(
                    "high-water mark {} reads {p:?}, another copy says {m}: using {m}, the larger",
                    path.display()
                );
            }
        }
        // 0 is the fresh directory's "nothing issued yet".
        Ok(mark.filter(|m| *m != 0))
    }

    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        let mut files = self.files.lock();
        if files.lost.is_none() {
            files.lost = self.check_ownership().err();
            if let Some(why) = &files.lost {
                tracing::error!("{why}");
            }
        }
        if let Some(why) = &files.lost {
            return Err(HighWaterError::new(why.clone(), None));
        }
        let path = self.path();
        let body = encode(unix_ms);
        let lowering = files.last.is_some_and(|last| unix_ms < last);
        // A lowered mark (graceful shutdown) is written to both files, or the spare would still
        // hold the higher mark and be the largest witness at the next start.
        for _ in 0..if lowering { 2 } else { 1 } {
            self.write_mark(&mut files, &body)
                .map_err(|e| err(format!("file {} cannot be written", path.display()), e))?;
        }
        write_copy(&self.lock, &self.dir.join(LOCK_FILE), unix_ms)?;
        files.last = Some(unix_ms);
        Ok(())
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
        let spare = fs::read_to_string(dir.path().join(SPARE_FILE)).unwrap();
        assert_eq!(spare, r#"{"version":1,"unix_ms":1795000000000}"#);
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
        // The directory lock holds even when the lock file is gone.
        fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let e = FileHighWater::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
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

    #[test]
    fn a_lost_or_rolled_back_mark_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        hw.store(1_795_000_000_000).unwrap();
        hw.store(1_795_000_005_000).unwrap();
        drop(hw);
        // Rolled back to zero, or to a year ago: the lock's copy says more.
        for old in [0, 1_763_000_000_000u64] {
            fs::write(dir.path().join(MARK_FILE), encode(old)).unwrap();
            let hw = FileHighWater::open(dir.path()).unwrap();
            assert_eq!(
                hw.load().unwrap(),
                Some(1_795_000_005_000),
                "reset to {old}"
            );
        }
        // Deleted: the lock's copy again.
        fs::remove_file(dir.path().join(MARK_FILE)).unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        assert_eq!(hw.load().unwrap(), Some(1_795_000_005_000));
        drop(hw);
        // Every copy gone but the lock file: refused, naming the file and the way out.
        fs::write(dir.path().join(LOCK_FILE), "").unwrap();
        fs::remove_file(dir.path().join(SPARE_FILE)).unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        let e = hw.load().unwrap_err().to_string();
        assert!(
            e.contains("highwater.json is missing")
                && e.contains("earlier run (floe.lock exists)")
                && e.contains("Restore the file"),
            "{e}"
        );
    }

    #[test]
    fn a_lowered_mark_lowers_every_copy() {
        let dir = tempfile::tempdir().unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        hw.store(1_795_000_009_000).unwrap();
        hw.store(1_795_000_001_000).unwrap();
        drop(hw);
        let hw = FileHighWater::open(dir.path()).unwrap();
        assert_eq!(hw.load().unwrap(), Some(1_795_000_001_000));
    }

    #[test]
    fn a_removed_lock_file_stops_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        hw.store(1_795_000_000_000).unwrap();
        fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        for _ in 0..2 {
            let e = hw.store(1_795_000_002_000).unwrap_err().to_string();
            assert!(e.contains("floe.lock was removed or replaced"), "{e}");
        }
        // Recreating it does not bring the writes back: it is not the file this node locked.
        fs::write(dir.path().join(LOCK_FILE), "").unwrap();
        assert!(hw.store(1_795_000_003_000).is_err());
    }

    #[test]
    fn writes_reuse_the_two_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let hw = FileHighWater::open(dir.path()).unwrap();
        hw.store(1_795_000_000_000).unwrap();
        let ino = |name: &str| fs::metadata(dir.path().join(name)).unwrap().ino();
        let pair = [ino(MARK_FILE), ino(SPARE_FILE)];
        // The two files trade names on every write: no file is created, so no descriptor is
        // needed (the fd-exhaustion fault test checks the same on a running node).
        for i in 1..=20u64 {
            hw.store(1_795_000_000_000 + i * 1000).unwrap();
            let expect = if i % 2 == 1 { [pair[1], pair[0]] } else { pair };
            assert_eq!([ino(MARK_FILE), ino(SPARE_FILE)], expect, "write {i}");
        }
        drop(hw);
        let hw = FileHighWater::open(dir.path()).unwrap();
        assert_eq!(hw.load().unwrap(), Some(1_795_000_020_000));
    }

    #[test]
    fn a_crash_before_the_first_write_restarts_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        drop(FileHighWater::open(dir.path()).unwrap());
        // Nothing was issued (IDs come only after a write), so the next start is a fresh one.
        let hw = FileHighWater::open(dir.path()).unwrap();
        assert_eq!(hw.load().unwrap(), None);
    }
}
