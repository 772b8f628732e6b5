//! A small tmpfs mounted for one test: a disk that fills up after a few hundred KiB.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size mounted on a fresh temporary directory, unmounted on drop.
///
/// Needs root (the fault tests run as root on the development and CI machines); a failed
/// mount panics, so a test that needs a full disk never passes without one.
#[derive(Debug)]
pub struct Tmpfs {
    /// The mount point.
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_kib` KiB.
    #[track_caller]
    pub fn mount(size_kib: u64) -> Tmpfs {
        let base = std::env::temp_dir().join(crate::unique("floe_tmpfs"));
        std::fs::create_dir_all(&base).expect("create the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(&base)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs failed ({status}): the fault tests need root"
        );
        Tmpfs { dir: base }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills the file system with one file until it is full; returns the file, whose removal
    /// frees the space again.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        // A last partial block fills what the 4 KiB chunks left.
        while f.write_all(&[0u8]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process a test killed may still hold files open for a moment.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
