//! What `/proc` says about the processes under test: CPU time, peak resident memory, and
//! whether a build is competing for the cores.

use std::{collections::BTreeSet, time::Duration};

/// Clock ticks per second of `/proc/<pid>/stat` and `/proc/stat`. Linux exposes USER_HZ,
/// which is 100 on every architecture keyward runs on.
const TICKS_PER_S: f64 = 100.0;

/// User + system CPU time of a process (all its threads), or `None` if it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / TICKS_PER_S))
}

/// Busy and total CPU time of the whole machine, summed over its cores.
pub fn machine_time() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let secs = |t: u64| Duration::from_secs_f64(t as f64 / TICKS_PER_S);
    Some((secs(total - idle), secs(total)))
}

/// Number of CPUs the kernel accounts in `/proc/stat`.
pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| {
            stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count()
        })
        .unwrap_or(0)
        .max(1)
}

/// Peak resident set size (`VmHWM`) in MiB, or `None` if the process is gone.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_kib(pid, "VmHWM:").map(|kib| kib as f64 / 1024.0)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, key)
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Compilers and build tools running on the machine, other than this process's own
/// ancestors (`cargo bench` itself): `"pid name"` each. Numbers measured next to one of them
/// are not comparable.
pub fn competing_builds() -> Vec<String> {
    const BUILDERS: [&str; 5] = ["rustc", "cargo", "cc1", "cc1plus", "ld"];
    let ancestors = ancestors();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if ancestors.contains(&pid) {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let comm = comm.trim();
        if BUILDERS.contains(&comm) {
            found.push(format!("{pid} {comm}"));
        }
    }
    found
}

fn ancestors() -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && set.insert(pid) {
        match parent(pid) {
            Some(p) => pid = p,
            None => break,
        }
    }
    set
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

/// CPU used by a set of processes and by the machine over one measured window.
#[derive(Debug, Clone)]
pub struct CpuProbe {
    pids: Vec<(String, u32)>,
    start: Vec<Option<Duration>>,
    machine: Option<(Duration, Duration)>,
    began: std::time::Instant,
}

/// CPU use over a window: each process's share of one core, and the machine's busy share.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuUse {
    /// Process name → CPU seconds per wall second (1.0 = one full core).
    pub cores: Vec<(String, f64)>,
    /// Fraction of all cores that were busy (1.0 = every core).
    pub machine_busy: f64,
    /// Cores used by everything else (the machine's busy time minus the probed processes):
    /// anything well above zero means something else competed for the CPU.
    pub other_cores: f64,
}

impl CpuProbe {
    pub fn start(pids: &[(&str, u32)]) -> Self {
        let pids: Vec<(String, u32)> = pids.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect();
        let start = pids.iter().map(|(_, pid)| cpu_time(*pid)).collect();
        CpuProbe { pids, start, machine: machine_time(), began: std::time::Instant::now() }
    }

    pub fn finish(&self) -> CpuUse {
        let wall = self.began.elapsed().as_secs_f64().max(1e-9);
        let cores: Vec<(String, f64)> = self
            .pids
            .iter()
            .zip(&self.start)
            .map(|((name, pid), start)| {
                let used = match (start, cpu_time(*pid)) {
                    (Some(a), Some(b)) => b.saturating_sub(*a).as_secs_f64() / wall,
                    _ => f64::NAN,
                };
                (name.clone(), used)
            })
            .collect();
        let machine_busy = match (self.machine, machine_time()) {
            (Some((busy_a, total_a)), Some((busy_b, total_b))) => {
                let total = total_b.saturating_sub(total_a).as_secs_f64();
                if total > 0.0 { busy_b.saturating_sub(busy_a).as_secs_f64() / total } else { f64::NAN }
            }
            _ => f64::NAN,
        };
        let ours: f64 = cores.iter().map(|(_, c)| *c).filter(|c| c.is_finite()).sum();
        let other_cores = (machine_busy * cpu_count() as f64 - ours).max(0.0);
        CpuUse { cores, machine_busy, other_cores }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(peak_rss_mib(me).is_some_and(|m| m > 0.0));
        assert!(machine_time().is_some_and(|(busy, total)| busy <= total));
        assert!(!ancestors().is_empty());
        assert!(cpu_count() >= 1);
        assert_eq!(cpu_time(u32::MAX), None, "a missing process is None, not zero");
    }

    #[test]
    fn parses_status_lines() {
        let status = "Name:\tenclave\nVmPeak:\t  900 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }
}
