//! The server process seen from outside: resident memory, threads, CPU time
//! and context switches, read from /proc (Linux only).
//!
//! Context switches are per thread in Linux (`/proc/<pid>/status` shows only
//! the main thread's), so they are summed over `/proc/<pid>/task/*`. Threads
//! that end between two samples take their counts with them: samples are
//! taken while the measured connections are open.

use serde_json::{Value, json};
use std::io;

/// One look at the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// VmRSS, KiB.
    pub rss_kib: u64,
    pub threads: u64,
    /// Summed over the live threads.
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// User plus system CPU time, microseconds.
    pub cpu_micros: u64,
}

impl Sample {
    /// What happened between `self` and the `later` sample, per `per` events
    /// (messages, say).
    pub fn delta_json(&self, later: &Sample, per: u64) -> Value {
        let per = per.max(1) as f64;
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / per;
        json!({
            "rss_kib": later.rss_kib,
            "threads": later.threads,
            "voluntary_switches_per_event":
                round3(d(self.voluntary_switches, later.voluntary_switches)),
            "involuntary_switches_per_event":
                round3(d(self.involuntary_switches, later.involuntary_switches)),
            "cpu_us_per_event": round3(d(self.cpu_micros, later.cpu_micros)),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Reads the process's current numbers.
#[cfg(target_os = "linux")]
pub fn sample(pid: u32) -> io::Result<Sample> {
    use std::fs;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut sample = Sample {
        rss_kib: field(&status, "VmRSS")?,
        threads: field(&status, "Threads")?,
        cpu_micros: cpu_micros(&fs::read_to_string(format!("/proc/{pid}/stat"))?)?,
        ..Sample::default()
    };
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended since the listing has nothing left to count.
        let Ok(status) = fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        sample.voluntary_switches += field(&status, "voluntary_ctxt_switches")?;
        sample.involuntary_switches += field(&status, "nonvoluntary_ctxt_switches")?;
    }
    Ok(sample)
}

#[cfg(not(target_os = "linux"))]
pub fn sample(_pid: u32) -> io::Result<Sample> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "process statistics need Linux's /proc",
    ))
}

/// A numeric field of a /proc status file (`VmRSS:   1234 kB`).
#[cfg(target_os = "linux")]
fn field(status: &str, name: &str) -> io::Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {name} field")))
}

/// utime + stime of `/proc/<pid>/stat` (fields 14 and 15), in microseconds.
#[cfg(target_os = "linux")]
fn cpu_micros(stat: &str) -> io::Result<u64> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/<pid>/stat");
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let rest = stat.rsplit_once(')').ok_or_else(bad)?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<u64> {
        fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(bad)
    };
    // Fields after ')' start at field 3 (state): utime is index 11.
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(bad)?;
    Ok(total * 1_000_000 / per_second)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("sample self");
        assert!(s.rss_kib > 0 && s.threads >= 1, "{s:?}");
    }
}
