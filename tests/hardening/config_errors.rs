//! Configuration errors: every bad flag, value or address is one clear line
//! on stderr and exit code 2, never a panic or a backtrace.

use std::net::TcpListener;
use std::process::{Command, Output};

fn run_server(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hb-server"))
        .args(args)
        .envs(env.iter().copied())
        // A panic would print a backtrace with this set; none may happen.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run hb-server")
}

/// Checks that `args` (with `env`) exits 2 with one line on stderr that
/// starts `hb-server: ` and contains `needle`.
fn assert_usage_error(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let output = run_server(args, env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("hb-server {args:?} {env:?} printed {stderr:?}");
    assert_eq!(output.status.code(), Some(2), "{context}");
    assert!(
        output.stdout.is_empty(),
        "{context}; stdout {:?}",
        output.stdout
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {context}");
    assert!(stderr.starts_with("hb-server: "), "{context}");
    assert!(stderr.contains(needle), "no {needle:?}: {context}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{context}"
    );
}

#[test]
fn zero_negative_and_absurd_values_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--keepalive-count", "0"], "--keepalive-count"),
        (&["--keepalive-count", "1000"], "--keepalive-count"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--max-connections", "-5"], "--max-connections"),
        (&["--max-connections", "99999999999"], "--max-connections"),
        (&["--idle-timeout", "100y"], "too long"),
        (&["--idle-timeout", "-1"], "must not be negative"),
        (&["--idle-timeout", "soon"], "--idle-timeout"),
        (
            &["--idle-timeout", "99999999999999999999999"],
            "--idle-timeout",
        ),
        (&["--keepalive-idle", "0"], "whole seconds"),
        (&["--keepalive-interval", "1500ms"], "whole seconds"),
        (&["--user-timeout", "30days"], "too long"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["-v", "-q"], "cannot be used with"),
    ];
    for (args, needle) in cases {
        assert_usage_error(args, &[], needle);
    }
}

#[test]
fn bad_environment_values_are_usage_errors() {
    assert_usage_error(&[], &[("HB_MAX_CONNECTIONS", "lots")], "--max-connections");
    assert_usage_error(&[], &[("HB_IDLE_TIMEOUT", "100y")], "too long");
}

#[test]
fn bad_addresses_are_usage_errors() {
    let cases: &[(&str, &str)] = &[
        ("nonsense", "invalid socket address"),
        ("", "cannot listen on"),
        ("127.0.0.1", "cannot listen on 127.0.0.1"),
        ("127.0.0.1:99999", "invalid port"),
        ("[::1]", "cannot listen on [::1]"),
        // TEST-NET-3: not an address of this machine.
        ("203.0.113.1:5005", "cannot listen on 203.0.113.1:5005"),
    ];
    for (addr, needle) in cases {
        assert_usage_error(&["--listen", addr], &[], needle);
    }
}

#[test]
fn a_port_in_use_is_a_one_line_usage_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let addr = taken.local_addr().expect("local address").to_string();
    assert_usage_error(&["--listen", &addr], &[], "in use");
}

#[test]
fn help_and_version_still_exit_0() {
    for flag in ["--help", "--version"] {
        let output = run_server(&[flag], &[]);
        assert_eq!(output.status.code(), Some(0), "hb-server {flag}");
        assert!(
            !output.stdout.is_empty(),
            "hb-server {flag} printed nothing"
        );
    }
}
