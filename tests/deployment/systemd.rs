//! deploy/hb-server.service: `systemd-analyze verify` accepts it without a
//! warning, its limits sit above the server's own settings, and the server
//! starts with the unit's environment.

use super::common::*;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;
use tcp_heartbeat::config::parse_duration;

const UNIT: &str = include_str!("../../deploy/hb-server.service");

/// The unit's `Key=value` lines; `Environment=` ones as their own map.
fn settings() -> (
    HashMap<&'static str, &'static str>,
    HashMap<&'static str, &'static str>,
) {
    let mut keys = HashMap::new();
    let mut environment = HashMap::new();
    for line in UNIT.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "Environment" => {
                let (name, value) = value.split_once('=').expect("Environment=NAME=value");
                environment.insert(name, value);
            }
            _ => {
                keys.insert(key, value);
            }
        }
    }
    (keys, environment)
}

#[test]
fn unit_limits_are_above_the_servers_settings() {
    let (keys, env) = settings();
    let max_connections: u64 = env["HB_MAX_CONNECTIONS"].parse().unwrap();
    let nofile: u64 = keys["LimitNOFILE"].parse().unwrap();
    let tasks: u64 = keys["TasksMax"].parse().unwrap();
    assert!(
        nofile > max_connections,
        "LimitNOFILE {nofile} <= {max_connections}"
    );
    assert!(
        tasks > max_connections,
        "TasksMax {tasks} <= {max_connections}"
    );
    assert_eq!(keys["KillSignal"], "SIGTERM");
    let drain = parse_duration(env["HB_DRAIN"]).unwrap();
    let stop = parse_duration(keys["TimeoutStopSec"]).unwrap();
    assert!(
        stop > drain + Duration::from_secs(1),
        "TimeoutStopSec {stop:?} leaves no room after a drain of {drain:?}"
    );
}

#[test]
fn the_server_starts_with_the_units_environment() {
    let (_, env) = settings();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hb-server"));
    for (name, value) in &env {
        command.env(name, value);
    }
    // The unit's own address may be taken on this machine; the port is the
    // only thing changed.
    let server = ServerProcess::spawn(command, "127.0.0.1:0", &[]);
    server.wait_log("max 10000 connections");
    server.wait_log("PROXY protocol required; no per-address limit; drain over 20s");
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let test = "systemd_analyze_verify_accepts_the_unit";
    let Some(systemd_analyze) = require(test, "systemd-analyze") else {
        return;
    };
    // verify checks that ExecStart's program exists: point it at the build.
    let unit = UNIT.replace(
        "ExecStart=/usr/local/bin/hb-server",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_hb-server")),
    );
    assert_ne!(
        unit, UNIT,
        "no ExecStart=/usr/local/bin/hb-server in the unit"
    );
    let dir = std::env::temp_dir().join(format!("hb-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hb-server.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(systemd_analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    // It exits 0 on a setting it ignores (a bad value), saying so on stderr.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned: {stderr}"
    );
}
