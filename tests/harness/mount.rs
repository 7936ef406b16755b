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
    /// Mounts a tmpfs of `size_kib` at `path` (created if missing). Needs CAP_SYS_ADMIN: root,
    /// or a user and mount namespace (`just test` runs the tests in one for a normal user);
    /// the panic says so clearly where neither is available.
    pub fn new(path: &Path, size_kib: u64) -> TmpfsMount {
        std::fs::create_dir_all(path).expect("create mount point");
        run_mount(&["-t", "tmpfs", "-o", &format!("size={size_kib}k,mode=0700"), "tmpfs", &path.display().to_string()]);
        TmpfsMount { path: path.to_owned() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the mount read-only (files stay readable; writes fail with EROFS). A bind
    /// remount changes only this mount's flag, which a user namespace may do too.
    pub fn remount_read_only(&self) {
        run_mount(&["-o", "remount,bind,ro", &self.path.display().to_string()]);
    }

    /// Makes it writable again.
    pub fn remount_read_write(&self) {
        run_mount(&["-o", "remount,bind,rw", &self.path.display().to_string()]);
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
        "mount {args:?} failed (these database fault tests need CAP_SYS_ADMIN to make a small filesystem: \
         run them as root, or through `./just test`, which uses a user namespace for a normal user): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
