//! Small filesystems for database fault tests: a size-limited tmpfs (a full disk) that can be
//! remounted read-only. Unmounted on drop, also when the test fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Debug)]
pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_kib` at `path` (created if missing). Needs CAP_SYS_ADMIN,
    /// which the test machines have; the panic says so clearly where they do not.
    pub fn new(path: &Path, size_kib: u64) -> TmpfsMount {
        std::fs::create_dir_all(path).expect("create mount point");
        run_mount(&["-t", "tmpfs", "-o", &format!("size={size_kib}k,mode=0700"), "tmpfs", &path.display().to_string()]);
        TmpfsMount { path: path.to_owned() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the filesystem read-only (files stay readable).
    pub fn remount_read_only(&self) {
        run_mount(&["-o", "remount,ro", &self.path.display().to_string()]);
    }

    /// Makes it writable again.
    pub fn remount_read_write(&self) {
        run_mount(&["-o", "remount,rw", &self.path.display().to_string()]);
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn run_mount(args: &[&str]) {
    let output = Command::new("mount").args(args).output().expect("run mount");
    assert!(
        output.status.success(),
        "mount {args:?} failed (these database fault tests need CAP_SYS_ADMIN to make a small filesystem): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
