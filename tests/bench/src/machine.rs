//! Facts about the machine a run happened on (for `meta` and the top of the
//! table), and the CPU time a process has used so far.
//!
//! Everything is read from procfs or derived from the clock, so that a
//! report says where its numbers come from: the kernel
//! (`/proc/sys/kernel/osrelease`, what `uname -r` prints), the CPU model
//! (the first `model name` of `/proc/cpuinfo`), the vCPUs (its `processor`
//! lines), the total memory (`MemTotal` of `/proc/meminfo`), the commit
//! (`git rev-parse --short HEAD` in this package's directory, "unknown"
//! without git) and the date (UTC, from the system clock).
//!
//! CPU time is the `utime + stime` of `/proc/<pid>/stat`: user and system
//! time of every thread of the process, the ones that have already ended
//! included, in clock ticks of `getconf CLK_TCK` (100 Hz on Linux, used when
//! `getconf` is missing).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where a run happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The CPU model (`/proc/cpuinfo`'s `model name`).
    pub cpu_model: String,
    /// vCPUs the kernel shows (`processor` lines of `/proc/cpuinfo`).
    pub vcpus: u64,
    /// Total memory (`MemTotal`), MiB.
    pub memory_mib: u64,
    /// The commit of the benchmarked tree (`git rev-parse --short HEAD`),
    /// or "unknown".
    pub git_commit: String,
    /// When the run started, UTC, ISO 8601 (`2025-01-31T12:00:00Z`).
    pub date: String,
}

impl Machine {
    /// The facts of this machine, now.
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let vcpus = match cpuinfo_processors(&cpuinfo) {
            0 => std::thread::available_parallelism().map_or(0, |n| n.get() as u64),
            n => n,
        };
        Machine {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            cpu_model: cpuinfo_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
            vcpus,
            memory_mib: meminfo_total_kib(&meminfo).map_or(0, |k| k / 1024),
            git_commit: git_commit(),
            date: iso_date(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            ),
        }
    }

    /// One line for the top of the table.
    pub fn describe(&self) -> String {
        format!(
            "machine: kernel {}, {}, {} vCPUs, {:.1} GiB; commit {}; {}",
            self.kernel,
            self.cpu_model,
            self.vcpus,
            self.memory_mib as f64 / 1024.0,
            self.git_commit,
            self.date
        )
    }
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn cpuinfo_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// How many `processor` entries a `/proc/cpuinfo` text has.
pub fn cpuinfo_processors(cpuinfo: &str) -> u64 {
    cpuinfo
        .lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count() as u64
}

/// `MemTotal` of a `/proc/meminfo` text, KiB.
pub fn meminfo_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn git_commit() -> String {
    Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `secs` after the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn iso_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's days-to-civil: eras of 400 years from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`getconf
/// CLK_TCK`; 100, Linux's value, when that cannot be run).
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// User + system CPU time of process `pid` so far, in clock ticks; `None`
/// when it cannot be read (no procfs, the process is gone).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// second field, the command name in parentheses, may hold spaces and
/// parentheses itself, so fields are counted from its last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_texts() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 123 0 0 0 \
                    250 37 5 6 20 0 9 0 1234 5678 90 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(287));
        assert_eq!(stat_cpu_ticks("1 (x) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
        // This very process: some CPU has been used, and it only grows.
        let me = std::process::id();
        let before = cpu_ticks(me).unwrap();
        assert!(cpu_ticks(me).unwrap() >= before);

        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpuinfo_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpuinfo_processors(cpuinfo), 2);
        assert_eq!(cpuinfo_model("processor : 0\n"), None);
        assert_eq!(
            meminfo_total_kib("MemTotal:       24683584 kB\nMemFree: 1 kB\n"),
            Some(24_683_584)
        );

        let here = Machine::here();
        assert!(here.vcpus > 0 && here.memory_mib > 0, "{here:?}");
        assert!(here.describe().starts_with("machine: kernel "));
        assert!(clk_tck() > 0);
    }

    #[test]
    fn dates() {
        assert_eq!(iso_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_date(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso_date(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
