//! deploy/sysctl.d/60-hb-server.conf: every key is one this kernel has, and
//! the values hold 100,000 connections as README's Capacity table counts
//! them (a thread and a process id each, 4 memory maps per thread).

use std::collections::HashMap;
use std::path::Path;

const FILE: &str = include_str!("../../deploy/sysctl.d/60-hb-server.conf");

/// The connections the file is sized for.
const CONNECTIONS: u64 = 100_000;
/// Threads besides the connections' (README: 100,003 for 100,000).
const OWN_THREADS: u64 = 3;
/// Memory maps per connection thread (README, Capacity).
const MAPS_PER_THREAD: u64 = 4;

fn settings() -> HashMap<&'static str, u64> {
    FILE.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').expect("key = value");
            let value = value.trim().parse().expect("a number");
            (key.trim(), value)
        })
        .collect()
}

#[test]
fn sysctl_file_raises_the_limits_that_100000_connections_need() {
    let settings = settings();
    let mut keys: Vec<_> = settings.keys().copied().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["kernel.pid_max", "kernel.threads-max", "vm.max_map_count"]
    );
    let threads = CONNECTIONS + OWN_THREADS;
    assert!(settings["kernel.pid_max"] > threads);
    assert!(settings["kernel.threads-max"] > threads);
    assert!(settings["vm.max_map_count"] > threads * MAPS_PER_THREAD);
    for key in keys {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        if cfg!(target_os = "linux") {
            assert!(path.exists(), "{key}: no {}", path.display());
        }
    }
}
