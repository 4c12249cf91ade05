//! Configuration errors: every bad flag, value or address is one clear line
//! on stderr and exit code 2, never a panic or a backtrace; for hb-client
//! too, whose unusable address is a connect error (exit 1).

use std::net::TcpListener;
use std::process::{Command, Output};

fn run_server(args: &[&str], env: &[(&str, &str)]) -> Output {
    run(env!("CARGO_BIN_EXE_hb-server"), args, env)
}

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        // A panic would print a backtrace with this set; none may happen.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run the binary")
}

/// Checks that `args` (with `env`) exits 2 with one line on stderr that
/// starts `hb-server: ` and contains `needle`.
fn assert_usage_error(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let output = run_server(args, env);
    assert_one_line_error(
        &output,
        "hb-server",
        2,
        &format!("{args:?} {env:?}"),
        needle,
    );
}

/// Checks that `output` is exit `code` with nothing on stdout and one line
/// on stderr that starts `program: ` and contains `needle`.
fn assert_one_line_error(output: &Output, program: &str, code: i32, what: &str, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("{program} {what} printed {stderr:?}");
    assert_eq!(output.status.code(), Some(code), "{context}");
    assert!(
        output.stdout.is_empty(),
        "{context}; stdout {:?}",
        output.stdout
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {context}");
    assert!(stderr.starts_with(&format!("{program}: ")), "{context}");
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
        (&["--compat", "article"], "--compat"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["-v", "-q"], "cannot be used with"),
    ];
    for (args, needle) in cases {
        assert_usage_error(args, &[], needle);
    }
}

#[test]
fn bad_environment_values_are_usage_errors() {
    assert_usage_error(&[], &[("HB_MAX_CONNECTIONS", "lots")], "HB_MAX_CONNECTIONS");
    assert_usage_error(&[], &[("HB_IDLE_TIMEOUT", "100y")], "too long");
    assert_usage_error(&[], &[("HB_COMPAT", "SEED!")], "HB_COMPAT");
}

/// A bad value from the environment is reported under the variable's name
/// (where to fix it), not the flag's; the flag, when given, wins and is
/// named.
#[test]
fn a_bad_environment_value_names_the_variable() {
    let env = [("HB_IDLE_TIMEOUT", "abc")];
    let output = run_server(&[], &env);
    assert_one_line_error(
        &output,
        "hb-server",
        2,
        "HB_IDLE_TIMEOUT=abc",
        "HB_IDLE_TIMEOUT",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("--idle-timeout"), "{stderr:?}");
    let output = run_server(&["--idle-timeout", "soon"], &env);
    assert_one_line_error(&output, "hb-server", 2, "both", "--idle-timeout");
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"soon\""));
}

/// `abc` is not a duration; humantime's "expected number at 0" (a byte
/// offset) must not reach the user.
#[test]
fn a_bad_duration_says_so_without_the_parser_position() {
    for (args, program) in [
        (
            &["--idle-timeout", "abc"][..],
            env!("CARGO_BIN_EXE_hb-server"),
        ),
        (
            &["--connect", "127.0.0.1:1", "--heartbeat-idle", "abc"][..],
            env!("CARGO_BIN_EXE_hb-client"),
        ),
        (
            &["--keepalive-idle", "1x!"][..],
            env!("CARGO_BIN_EXE_hb-server"),
        ),
    ] {
        let output = run(program, args, &[]);
        let name = if program.ends_with("hb-server") {
            "hb-server"
        } else {
            "hb-client"
        };
        assert_one_line_error(&output, name, 2, &format!("{args:?}"), "is not a duration");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains(" at "),
            "parser position leaked: {stderr:?}"
        );
    }
}

/// An address without a port says that the port is missing, on both sides.
#[test]
fn an_address_without_a_port_says_the_port_is_missing() {
    for addr in ["127.0.0.1", "[::1]", "localhost"] {
        assert_usage_error(&["--listen", addr], &[], "the port is missing");
        let output = run(env!("CARGO_BIN_EXE_hb-client"), &["--connect", addr], &[]);
        assert_one_line_error(&output, "hb-client", 1, addr, "the port is missing");
    }
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

#[test]
fn client_bad_flags_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--heartbeat-idle", "-3"], "must not be negative"),
        (&["--heartbeat-idle", "100y"], "too long"),
        (&["--heartbeat-idle", "soon"], "--heartbeat-idle"),
        (&["--heartbeat-interval", "0"], "must be more than 0"),
        (&["--heartbeat-retries", "0"], "--heartbeat-retries"),
        (&["--heartbeat-retries", "-1"], "--heartbeat-retries"),
        (&["--heartbeat-retries", "1001"], "--heartbeat-retries"),
        (&["--keepalive-count", "0"], "--keepalive-count"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        // Nothing listens on port 1: a flag accepted by mistake would show
        // as a connect error (exit 1) instead of exit 2.
        let mut all = vec!["--connect", "127.0.0.1:1"];
        all.extend_from_slice(args);
        let output = run(env!("CARGO_BIN_EXE_hb-client"), &all, &[]);
        assert_one_line_error(&output, "hb-client", 2, &format!("{args:?}"), needle);
    }
}

/// The client resolves its address only when it connects, so an address it
/// cannot use is a connect error, exit 1, like an unknown host or a refusal.
#[test]
fn client_bad_addresses_are_one_line_connect_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "nonsense",
            "cannot connect to nonsense: invalid socket address",
        ),
        ("", "cannot connect to : invalid socket address"),
        (
            "127.0.0.1:99999",
            "cannot connect to 127.0.0.1:99999: invalid port value",
        ),
    ];
    for (addr, needle) in cases {
        let output = run(env!("CARGO_BIN_EXE_hb-client"), &["--connect", addr], &[]);
        assert_one_line_error(
            &output,
            "hb-client",
            1,
            &format!("--connect {addr:?}"),
            needle,
        );
    }
}
