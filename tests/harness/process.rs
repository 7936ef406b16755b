//! Child processes that are always stopped: TERM, then KILL, on drop.

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// Path of a workspace binary, built once per test process so the tests never run stale
/// binaries (`cargo build` is a no-op when they are current).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps").to_owned();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // `--workspace --all-targets` resolves features exactly like `just test` does, so this
        // is a no-op after it instead of a second build of every dependency.
        build.current_dir(workspace_root()).args(["build", "--quiet", "--workspace", "--all-targets"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build for the binaries");
        assert!(status.success(), "cargo build of the binaries failed");
        profile_dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Ports [`free_port`] hands out: below Linux's ephemeral range (32768 and up), so no port
/// the kernel picks for a connection or a `:0` bind can take one between its choice and its use.
const PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A free TCP port on 127.0.0.1, reserved for this test process: a file named after the port
/// under `$TMPDIR/keyward-test-ports` holds the pid that claimed it, so the test binaries
/// that run at the same time (faults and kms_e2e) never hand out the same port, and a
/// process never reuses one. A claim by a process that is gone is taken over.
pub fn free_port() -> u16 {
    use std::{
        io::{Read, Write},
        sync::atomic::{AtomicU32, Ordering},
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join("keyward-test-ports");
    std::fs::create_dir_all(&dir).expect("port claims directory");
    let pid = std::process::id();
    let span = PORTS.end - PORTS.start;
    let start = pid.wrapping_mul(7919);
    for _ in 0..span {
        let port = (PORTS.start + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let claim = dir.join(port.to_string());
        let claimed = match std::fs::OpenOptions::new().write(true).create_new(true).open(&claim) {
            Ok(mut file) => file.write_all(pid.to_string().as_bytes()).is_ok(),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut holder = String::new();
                let _ = File::open(&claim).and_then(|mut f| f.read_to_string(&mut holder));
                let alive = holder.trim().parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
                !alive && std::fs::write(&claim, pid.to_string()).is_ok()
            }
            Err(_) => false,
        };
        if claimed && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}

/// A started process in its own process group, logging to a file.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, program: &Path, args: &[String], envs: &[(&str, String)], log: &Path) -> Proc {
        let out = File::options().create(true).append(true).open(log).expect("open log file");
        let err = out.try_clone().expect("clone log handle");
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Proc { name: name.to_owned(), child, log: log.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL to the whole group, as a crash would.
    pub fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if self.wait_exit(grace).is_none() {
            self.kill();
        }
        // Children that ignored TERM in the group (LocalStack workers) go too.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The structured log lines (the harness runs every keyward process with
    /// `KEYWARD_LOG_FORMAT=json`) whose `event` field is `name`. Tests count events instead of
    /// searching for words someone may reword. Non-JSON lines (a crash point's abort notice)
    /// are skipped.
    pub fn events(&self, name: &str) -> Vec<serde_json::Value> {
        events_in(&self.log_text(), name)
    }

    /// Waits up to `timeout` until the log holds an `event` line (a process's start-up is
    /// asynchronous to the test); panics with the log otherwise.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> serde_json::Value {
        self.wait_events(name, 1, |_| true, timeout).pop().expect("one event")
    }

    /// Waits up to `timeout` until at least `count` `event` lines satisfy `accept` (a process
    /// logs after it acts, so a test may see the effect before the line); returns them.
    pub fn wait_events(
        &self,
        name: &str,
        count: usize,
        accept: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<_> = self.events(name).into_iter().filter(|e| accept(e)).collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} logged {} of {count} {name} within {timeout:?}:\n{}",
                self.name,
                found.len(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The JSON log lines of `text` whose `event` is `name`.
pub fn events_in(text: &str, name: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["event"] == name)
        .collect()
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}
