//! A real PostgreSQL server for tests and benches: `initdb` into a temporary folder and
//! `postgres` on a free loopback port, run as an unprivileged user when the caller is root
//! (PostgreSQL refuses root). It is stopped (fast shutdown) when dropped, and can be stopped
//! and started again on the same port and data, to test what a database restart does.
//!
//! The server's default collation is ICU `en-US`, whose order differs from bytes ("B" after
//! "a"), so a test of key order proves the schema's `COLLATE "C"` rather than the server's
//! default. Set `KEYWARD_PG_BIN` to the folder holding `initdb` if it is not found.
#![allow(clippy::expect_used)]

use std::{
    io,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running PostgreSQL server, user `keyward` (trust authentication on loopback).
#[derive(Debug)]
pub struct TestServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    production: bool,
    child: Option<Child>,
}

impl TestServer {
    /// Starts a server without `fsync` (tests: speed over durability).
    pub fn start() -> io::Result<Self> {
        Self::start_with(false)
    }

    /// Starts a server; `production` as a production server runs (benches): `fsync` on and
    /// 1 GB of shared buffers (a managed server's default is a quarter of its memory), so a
    /// million keys' rows stay in the server's cache as they would there.
    pub fn start_with(production: bool) -> io::Result<Self> {
        let bin = bin_dir()?;
        let user = unprivileged_user()?;
        let dir = tempfile::Builder::new().prefix("keyward-pg-").tempdir()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let base = ["-D", path_str(&data)?, "-U", "keyward", "--auth=trust", "-E", "UTF8", "--no-sync"];
        let icu = ["--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US"];
        let with_icu = run(command(&bin, "initdb", user).args(base).args(icu))?;
        if !with_icu.status.success() {
            // A build without ICU: the default collation is then the C locale's.
            let _ = std::fs::remove_dir_all(&data);
            let plain = run(command(&bin, "initdb", user).args(base).arg("--locale=C.UTF-8"))?;
            if !plain.status.success() {
                return Err(io::Error::other(format!("initdb failed: {}", String::from_utf8_lossy(&plain.stderr))));
            }
        }
        let port = free_port()?;
        let mut server = TestServer { dir, bin, port, user, production, child: None };
        server.start_again()?;
        Ok(server)
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("postgres.log"))?;
        let data = self.dir.path().join("data");
        let port = self.port.to_string();
        let child = command(&self.bin, "postgres", self.user)
            .args(["-D", path_str(&data)?, "-p", &port, "-k", path_str(self.dir.path())?])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            .args(["-c", if self.production { "fsync=on" } else { "fsync=off" }])
            .args(["-c", if self.production { "shared_buffers=1GB" } else { "shared_buffers=128MB" }])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = run(command(&self.bin, "pg_isready", None).args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "keyward",
                "-d",
                "postgres",
            ]))?;
            if ready.status.success() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().transpose()) {
                self.child = None;
                return Err(io::Error::other(format!(
                    "postgres exited ({:?}); see {}",
                    status,
                    self.log_path().display()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "postgres did not accept connections in 30 s; see {}",
                    self.log_path().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits for it.
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
        if !interrupted.success() {
            child.kill()?;
        }
        child.wait()?;
        Ok(())
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        let port = self.port.to_string();
        let made =
            run(command(&self.bin, "createdb", None).args(["-h", "127.0.0.1", "-p", &port, "-U", "keyward", name]))?;
        if !made.status.success() {
            return Err(io::Error::other(format!("createdb {name}: {}", String::from_utf8_lossy(&made.stderr))));
        }
        Ok(self.url(name))
    }

    /// The URL of database `name` (plain TCP on loopback).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://keyward@127.0.0.1:{}/{name}?sslmode=disable", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run(command: &mut Command) -> io::Result<std::process::Output> {
    command.stdin(Stdio::null()).output()
}

fn command(bin: &Path, program: &str, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(bin.join(program));
    if let Some((uid, gid)) = user {
        command.gid(gid).uid(uid);
    }
    command.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
    command
}

fn path_str(path: &Path) -> io::Result<&str> {
    path.to_str().ok_or_else(|| io::Error::other(format!("{} is not UTF-8", path.display())))
}

/// `KEYWARD_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KEYWARD_PG_BIN") {
        return Ok(dir.into());
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| io::Error::other(format!("PostgreSQL is not installed (/usr/lib/postgresql: {e}); apt-get install postgresql, or set KEYWARD_PG_BIN")))?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| io::Error::other("no /usr/lib/postgresql/<version>/bin/initdb"))
}

/// Root runs the server as `postgres` (the Debian package's user), else `nobody`.
fn unprivileged_user() -> io::Result<Option<(u32, u32)>> {
    let me = run(Command::new("id").arg("-u"))?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Ok(None);
    }
    // Root of a user namespace (`unshare --map-root-user`) is a normal user outside, with no
    // other user to become, and PostgreSQL refuses its uid 0.
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    if map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"] {
        return Err(io::Error::other(
            "running as root of a user namespace: PostgreSQL refuses uid 0 and no other user exists here; run the PostgreSQL tests as a normal user or as real root",
        ));
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let entry = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name))
                .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
        })
    };
    entry("postgres")
        .or_else(|| entry("nobody"))
        .map(Some)
        .ok_or_else(|| io::Error::other("running as root and no postgres or nobody user"))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
