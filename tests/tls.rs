//! TLS on hb-server (issue 19), against TLS peers no one here wrote:
//! Python's `ssl` module, `openssl s_client`, and rustls's own client in the
//! test process where timing or numbers matter. Certificates are made by
//! rcgen (tests/common/tls.rs). A test whose program is missing prints
//! `SKIPPED: <test>: <program> not found`; CI installs python3 and openssl.
//! hb-client's TLS is tested in tests/tls_client.rs.
#![cfg(unix)]

mod common;

use common::scrape::{metrics_addr, samples, scrape_text};
use common::tls::*;
use common::*;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Slack past a configured timeout before a close counts as late: a loaded
/// 2-core machine's scheduling, as in tests/server.rs.
const LATE_TOLERANCE: Duration = Duration::from_millis(250);

/// A Python TLS client: connects, sends argv[4] (with `\n` escapes), reads
/// until as many lines came back (at least one read), prints the TLS
/// version and the reply.
/// argv: host port cafile request [certfile keyfile] [tls1.2]. Exits 1 with
/// the error on stdout when the handshake or the exchange fails.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
host, port, cafile, request = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
request = request.encode().decode("unicode_escape").encode()
ctx = ssl.create_default_context(cafile=cafile)
extra = sys.argv[5:]
if extra and extra[-1] == "tls1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    extra = extra[:-1]
if extra:
    ctx.load_cert_chain(extra[0], extra[1])
try:
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(request)
            reply = b""
            while not reply or reply.count(b"\n") < request.count(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            print(s.version(), reply)
except Exception as e:
    print("error:", e)
    sys.exit(1)
"#;

/// Runs [`PYTHON_CLIENT`], or `None` after saying SKIPPED.
fn python_client(test: &str, server: &ServerProcess, pki: &Pki, args: &[&str]) -> Option<Output> {
    let python = require(test, "python3")?;
    let output = Command::new(python)
        .args(["-c", PYTHON_CLIENT, "127.0.0.1"])
        .arg(server.addr.port().to_string())
        .arg(&pki.ca)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    Some(output)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn tls_server(pki: &Pki, extra: &[&str]) -> ServerProcess {
    let mut args = pki.server_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(&args)
}

#[test]
fn python_ssl_gets_echo_and_heartbeat_replies_over_tls_1_3_and_1_2() {
    let test = "python_ssl_gets_echo_and_heartbeat_replies_over_tls_1_3_and_1_2";
    let pki = Pki::new("python CA");
    let server = tls_server(&pki, &[]);
    let request = r"hello tls\nHeartBeat\n";
    let Some(output) = python_client(test, &server, &pki, &[request]) else {
        return;
    };
    assert!(output.status.success(), "{}", stdout(&output));
    assert_eq!(stdout(&output), "TLSv1.3 b'HELLO TLS\\nOK\\n'\n");
    let output = python_client(test, &server, &pki, &[request, "tls1.2"]).unwrap();
    assert_eq!(stdout(&output), "TLSv1.2 b'HELLO TLS\\nOK\\n'\n");
}

#[test]
fn compat_seed_answers_an_unterminated_heartbeat_inside_tls() {
    let test = "compat_seed_answers_an_unterminated_heartbeat_inside_tls";
    let pki = Pki::new("seed CA");
    let server = tls_server(&pki, &["--compat", "seed"]);
    let Some(output) = python_client(test, &server, &pki, &["HeartBeat"]) else {
        return;
    };
    assert_eq!(stdout(&output), "TLSv1.3 b'OK'\n");
}

#[test]
fn openssl_s_client_gets_echo_and_heartbeat_replies() {
    let test = "openssl_s_client_gets_echo_and_heartbeat_replies";
    let Some(openssl) = require(test, "openssl") else {
        return;
    };
    let pki = Pki::new("openssl CA");
    let server = tls_server(&pki, &[]);
    let mut s_client = Command::new(openssl)
        .args(["s_client", "-quiet", "-verify_return_error"])
        .args([
            "-connect",
            &server.addr.to_string(),
            "-servername",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(&pki.ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let mut stdin = s_client.stdin.take().unwrap();
    stdin.write_all(b"from openssl\nHeartBeat\n").unwrap();
    stdin.flush().unwrap();
    let replies = lines_of(s_client.stdout.take().unwrap());
    for expected in ["FROM OPENSSL", "OK"] {
        let line = replies
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("s_client printed no {expected:?}"));
        assert_eq!(line, expected);
    }
    server.wait_log("connected");
    let _ = s_client.kill();
    let _ = s_client.wait();
}

/// An RSA-4096 key's handshake (a TLS 1.3 PSS signature) with a client
/// certificate goes deeper on the connection thread's stack than ECDSA: in
/// a debug build it overflowed the plain connection's 64 KiB stack and
/// aborted the server.
#[test]
fn an_rsa_4096_handshake_with_a_client_certificate_fits_the_connection_stack() {
    let test = "an_rsa_4096_handshake_with_a_client_certificate_fits_the_connection_stack";
    let Some(openssl) = require(test, "openssl") else {
        return;
    };
    let pki = Pki::new("rsa CA");
    let (cert, key) = (pki.dir.join("rsa.pem"), pki.dir.join("rsa.key"));
    let made = Command::new(&openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl req");
    assert!(made.status.success(), "{made:?}");
    let ca = arg_path(&pki.ca);
    let (cert_arg, key_arg) = (arg_path(&cert), arg_path(&key));
    let server = ServerProcess::start(&[
        "--tls-cert",
        &cert_arg,
        "--tls-key",
        &key_arg,
        "--tls-client-ca",
        &ca,
    ]);
    for version in ["-tls1_3", "-tls1_2"] {
        let output = Command::new(&openssl)
            .args(["s_client", "-quiet", "-verify_return_error", version])
            .args([
                "-connect",
                &server.addr.to_string(),
                "-servername",
                "localhost",
            ])
            .arg("-CAfile")
            .arg(&cert)
            .arg("-cert")
            .arg(&pki.client_cert)
            .arg("-key")
            .arg(&pki.client_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_client");
        let mut s_client = output;
        s_client.stdin.take().unwrap().write_all(b"rsa\n").unwrap();
        let replies = lines_of(s_client.stdout.take().unwrap());
        let line = replies.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "{version}: no reply; server log: {:?}",
                server.log.try_iter().collect::<Vec<_>>()
            )
        });
        assert_eq!(line, "RSA", "{version}");
        let _ = s_client.kill();
        let _ = s_client.wait();
    }
}

#[test]
fn plain_tcp_and_silent_clients_are_refused_at_the_handshake_deadline_and_counted() {
    let pki = Pki::new("refusal CA");
    let timeout = Duration::from_secs(1);
    let server = tls_server(
        &pki,
        &["--idle-timeout", "1s", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&server);
    // A plain-TCP client gets no echo: the handshake fails on its line.
    let mut plain = connect(server.addr);
    plain.write_all(b"hello\n").unwrap();
    let answer = read_to_eof(&mut plain);
    assert!(!answer.starts_with(b"HELLO"), "answered in the clear");
    server.wait_log("refused: TLS handshake failed: not a TLS peer");
    // A silent client is closed at the handshake deadline: the idle timeout,
    // as it is shorter than 10 s.
    // Taken before the connect: the server's clock starts at its accept.
    let start = Instant::now();
    let mut silent = connect(server.addr);
    assert_eq!(read_to_eof(&mut silent), b"");
    let waited = start.elapsed();
    assert!(waited >= timeout, "closed early, after {waited:?}");
    assert!(
        waited <= timeout + LATE_TOLERANCE,
        "closed late, after {waited:?}"
    );
    server.wait_log("refused: TLS handshake failed: timed out");
    let page = samples(&scrape_text(metrics));
    let refused =
        |reason: &str| page[&format!("hb_connections_refused_total{{reason=\"{reason}\"}}")];
    assert_eq!(refused("tls_handshake"), 2.0);
    assert_eq!(page["hb_connections_accepted_total"], 0.0);
    // A client that does speak TLS is still served.
    let mut good = tls_connect(server.addr, &client_config(&pki.ca, None));
    tls_round_trip(&mut good, b"after\n", b"AFTER\n");
}

#[cfg(target_os = "linux")]
#[test]
fn the_reaper_closes_idle_tls_connections_on_time_and_threads_return_to_baseline() {
    let pki = Pki::new("reaper CA");
    let timeout = Duration::from_secs(1);
    let server = tls_server(&pki, &["--idle-timeout", "1s", "-q"]);
    let pid = server.pid();
    let threads = proc_status(pid, "Threads");
    let config = client_config(&pki.ca, None);
    let mut clients: Vec<_> = (0..20)
        .map(|_| {
            let mut c = tls_connect(server.addr, &config);
            // Taken before the send, as the server stamps its read after it.
            let last_activity = Instant::now();
            tls_round_trip(&mut c, b"HeartBeat\n", b"OK\n");
            (c, last_activity)
        })
        .collect();
    assert!(proc_status(pid, "Threads") >= threads + 20);
    for (c, last_activity) in &mut clients {
        let mut rest = Vec::new();
        // EOF without close_notify (the reaper shuts the socket down from
        // its own thread): rustls reports it as UnexpectedEof.
        let ended = c.read_to_end(&mut rest);
        let idle = last_activity.elapsed();
        assert!(
            ended.is_ok() || ended.unwrap_err().kind() == std::io::ErrorKind::UnexpectedEof,
            "the close was not an EOF"
        );
        assert_eq!(rest, b"");
        assert!(idle >= timeout, "closed early, after {idle:?}");
        assert!(
            idle <= timeout + LATE_TOLERANCE * 2,
            "closed late, after {idle:?}"
        );
    }
    wait_for("the thread count to return to its baseline", || {
        proc_status(pid, "Threads") == threads
    });
}

#[test]
fn client_certificates_are_required_and_name_the_client() {
    let test = "client_certificates_are_required_and_name_the_client";
    let pki = Pki::new("device CA");
    let ca = arg_path(&pki.ca);
    let server = tls_server(
        &pki,
        &["--tls-client-ca", &ca, "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&server);
    let cert = pki.client_cert.display().to_string();
    let key = pki.client_key.display().to_string();
    let Some(output) = python_client(test, &server, &pki, &[r"hi\n", &cert, &key]) else {
        return;
    };
    assert_eq!(stdout(&output), "TLSv1.3 b'HI\\n'\n");
    let line = server.wait_log("connected");
    assert!(
        line.contains(&format!("({CLIENT_NAME}) connected")),
        "the connect line does not name the client: {line}"
    );
    // Without a certificate: refused, and nothing echoed.
    let output = python_client(test, &server, &pki, &[r"hi\n"]).unwrap();
    assert!(!stdout(&output).contains("HI"), "{}", stdout(&output));
    server.wait_log("refused: TLS handshake failed: no client certificate presented");
    // A certificate from another CA: refused too.
    let stranger = Pki::new("stranger CA");
    let config = client_config(&pki.ca, Some((&stranger.client_cert, &stranger.client_key)));
    let mut c = tls_connect(server.addr, &config);
    let _ = c.write_all(b"hi\n");
    let mut rest = Vec::new();
    assert!(c.read_to_end(&mut rest).is_err() || rest.is_empty());
    server.wait_log("refused: TLS handshake failed: certificate not signed by a trusted CA");
    let page = samples(&scrape_text(metrics));
    assert_eq!(
        page["hb_connections_refused_total{reason=\"tls_handshake\"}"],
        2.0
    );
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_a_bad_reload_keeps_the_last_good() {
    let first = Pki::new("first CA");
    let second = Pki::new("second CA");
    let server = tls_server(&first, &[]);
    let trusts_first = client_config(&first.ca, None);
    let trusts_second = client_config(&second.ca, None);
    let mut open = tls_connect(server.addr, &trusts_first);
    tls_round_trip(&mut open, b"before\n", b"BEFORE\n");
    // Rotate: the second CA's certificate into the files the server reads.
    second.issue_server("rotated", &first.server_cert, &first.server_key);
    server.signal("HUP");
    server.wait_log("SIGHUP: reloaded the TLS certificate");
    let mut new = tls_connect(server.addr, &trusts_second);
    tls_round_trip(&mut new, b"rotated\n", b"ROTATED\n");
    let mut stale = tls_connect(server.addr, &trusts_first);
    assert!(
        stale
            .write_all(b"x\n")
            .and_then(|()| stale.flush())
            .is_err()
            || stale.read(&mut [0; 8]).is_err(),
        "a client trusting only the old CA was served after the reload"
    );
    tls_round_trip(&mut open, b"still open\n", b"STILL OPEN\n");
    // A bad reload: a key that does not match the certificate.
    std::fs::write(
        &first.server_key,
        std::fs::read(&second.client_key).unwrap(),
    )
    .unwrap();
    server.signal("HUP");
    let error = server.wait_log("TLS reload failed");
    assert!(error.contains("ERROR"), "not logged as an error: {error}");
    let mut after = tls_connect(server.addr, &trusts_second);
    tls_round_trip(&mut after, b"last good\n", b"LAST GOOD\n");
    // Unreadable files too.
    std::fs::remove_file(&first.server_cert).unwrap();
    server.signal("HUP");
    server.wait_log("TLS reload failed");
    let mut after = tls_connect(server.addr, &trusts_second);
    tls_round_trip(&mut after, b"still good\n", b"STILL GOOD\n");
}

#[test]
fn unusable_tls_files_are_a_usage_error() {
    let pki = Pki::new("usage CA");
    let other = Pki::new("other CA");
    let cert = pki.server_cert.display().to_string();
    let key = pki.server_key.display().to_string();
    let wrong_key = other.server_key.display().to_string();
    let missing = pki.dir.join("missing.pem").display().to_string();
    for (args, message) in [
        (vec!["--tls-cert", &cert, "--tls-key", &wrong_key], "key"),
        (
            vec!["--tls-cert", &missing, "--tls-key", &key],
            "missing.pem",
        ),
        (vec!["--tls-cert", &key, "--tls-key", &key], "CERTIFICATE"),
        (vec!["--tls-cert", &cert, "--tls-key", &cert], "private key"),
        (vec!["--tls-cert", &cert], "--tls-key"),
        (vec!["--tls-key", &key], "--tls-cert"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_hb-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run hb-server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn the_proxy_header_comes_before_the_handshake() {
    let pki = Pki::new("proxy CA");
    let server = tls_server(&pki, &["--proxy-protocol"]);
    let mut socket = connect(server.addr);
    socket
        .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 54321 5005\r\n")
        .unwrap();
    let mut c = tls_over(socket, &client_config(&pki.ca, None));
    tls_round_trip(&mut c, b"behind a balancer\n", b"BEHIND A BALANCER\n");
    let line = server.wait_log("connected");
    assert!(
        line.contains("from 192.0.2.7:54321 connected via"),
        "{line}"
    );
}

/// Reads `c` to its end, which must be clean: nothing more, close_notify,
/// then EOF.
fn assert_ends_with_close_notify(c: &mut TlsStream) {
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("a clean end: close_notify, then EOF");
    assert_eq!(rest, b"");
}

#[test]
fn shutdown_closes_tls_connections_with_close_notify() {
    let pki = Pki::new("shutdown CA");
    let mut server = tls_server(&pki, &[]);
    let mut c = tls_connect(server.addr, &client_config(&pki.ca, None));
    tls_round_trip(&mut c, b"x\n", b"X\n");
    server.signal("TERM");
    assert_ends_with_close_notify(&mut c);
    assert!(server.wait_exit(PATIENCE).success());
}

#[test]
fn a_drain_closes_tls_connections_one_by_one_with_close_notify() {
    let pki = Pki::new("drain CA");
    let mut server = tls_server(&pki, &["--drain", "1s"]);
    let config = client_config(&pki.ca, None);
    let mut clients: Vec<_> = (0..3)
        .map(|i| {
            let mut c = tls_connect(server.addr, &config);
            let line = format!("drain {i}\n");
            tls_round_trip(&mut c, line.as_bytes(), line.to_uppercase().as_bytes());
            c
        })
        .collect();
    server.signal("TERM");
    server.wait_log("draining 3 connections over 1s");
    for c in &mut clients {
        assert_ends_with_close_notify(c);
    }
    assert!(server.wait_exit(PATIENCE).success());
}

#[test]
fn a_half_closed_tls_client_gets_every_reply() {
    let pki = Pki::new("half-close CA");
    let server = tls_server(&pki, &[]);
    let mut c = tls_connect(server.addr, &client_config(&pki.ca, None));
    c.write_all(b"one\nHeartBeat\ntwo\n").unwrap();
    c.conn.send_close_notify();
    c.flush().unwrap();
    c.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut replies = Vec::new();
    c.read_to_end(&mut replies)
        .expect("replies, then close_notify");
    assert_eq!(replies, b"ONE\nOK\nTWO\n");
}

// hb-client over TLS, against hb-server over TLS.

/// hb-client trusting `pki`'s CA, plus `extra` flags.
fn tls_client(server: &ServerProcess, pki: &Pki, extra: &[&str]) -> ClientProcess {
    let ca = arg_path(&pki.ca);
    let mut args = vec!["--tls-ca", ca.as_str()];
    args.extend_from_slice(extra);
    ClientProcess::start(server.addr, &args)
}

/// Waits for `client` to exit 1 having logged `needle`.
fn assert_fails_with(client: &mut ClientProcess, needle: &str) {
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "{:?}", client.logged);
    assert!(
        client.has_logged(needle),
        "no {needle:?} in {:?}",
        client.logged
    );
}

#[test]
fn hb_client_echoes_and_its_heartbeats_keep_a_tls_connection_past_the_idle_timeout() {
    let pki = Pki::new("hb-client CA");
    let server = tls_server(&pki, &["--idle-timeout", "1s"]);
    let start = Instant::now();
    let mut client = tls_client(&server, &pki, &["--heartbeat-idle", "300ms", "-v"]);
    client.send(b"over tls\n");
    client.wait_output(b"OVER TLS\n");
    while start.elapsed() < Duration::from_millis(1500) {
        client.wait_log("heartbeat answered");
    }
    client.send(b"still here\n");
    client.wait_output(b"OVER TLS\nSTILL HERE\n");
    client.close_stdin();
    assert!(client.wait_exit(PATIENCE).success(), "{:?}", client.logged);
    assert_eq!(
        client.output, b"OVER TLS\nSTILL HERE\n",
        "heartbeat replies shown"
    );
    let closed = server.wait_log("closed:");
    assert!(closed.ends_with("closed: peer_closed"), "{closed}");
}

#[test]
fn hb_client_refuses_an_unverifiable_server_and_sends_it_nothing() {
    let pki = Pki::new("server's CA");
    let other = Pki::new("client's CA");
    let server = tls_server(&pki, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let mut client = tls_client(&server, &other, &[]);
    client.send(b"secret\n");
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "{:?}", client.logged);
    assert_eq!(client.logged.len(), 1, "{:?}", client.logged);
    assert!(
        client.logged[0].contains("certificate"),
        "{:?}",
        client.logged
    );
    server.wait_log("refused: TLS handshake failed");
    let page = samples(&scrape_text(metrics));
    assert_eq!(page["hb_received_bytes_total"], 0.0, "something was sent");
    assert_eq!(page["hb_connections_accepted_total"], 0.0);
    // The wrong name: a certificate for localhost, checked against another.
    let mut client = tls_client(&server, &pki, &["--tls-server-name", "example.com"]);
    assert_fails_with(&mut client, "certificate not valid for \"example.com\"");
}

#[test]
fn hb_client_presents_its_certificate_and_is_named() {
    let pki = Pki::new("fleet CA");
    let ca = arg_path(&pki.ca);
    let server = tls_server(&pki, &["--tls-client-ca", &ca]);
    let (cert, key) = (arg_path(&pki.client_cert), arg_path(&pki.client_key));
    let mut client = tls_client(&server, &pki, &["--tls-cert", &cert, "--tls-key", &key]);
    client.send(b"device\n");
    client.wait_output(b"DEVICE\n");
    let line = server.wait_log("connected");
    assert!(
        line.contains(&format!("({CLIENT_NAME}) connected")),
        "{line}"
    );
    // Without one, the server refuses it and the client says so.
    let mut anonymous = tls_client(&server, &pki, &[]);
    anonymous.send(b"anonymous\n");
    assert_fails_with(&mut anonymous, "CertificateRequired");
    server.wait_log("refused: TLS handshake failed: no client certificate presented");
}

#[test]
fn hb_client_reads_a_plain_text_refusal_in_place_of_a_handshake() {
    let pki = Pki::new("full CA");
    let server = tls_server(&pki, &["--max-connections", "1"]);
    let mut first = tls_client(&server, &pki, &[]);
    first.send(b"first\n");
    first.wait_output(b"FIRST\n");
    let mut second = tls_client(&server, &pki, &[]);
    assert_fails_with(&mut second, "refused by the server: server full");
}

#[test]
fn hb_client_reconnects_over_tls() {
    let pki = Pki::new("reconnect CA");
    let server = tls_server(&pki, &["--idle-timeout", "500ms"]);
    let mut client = tls_client(
        &server,
        &pki,
        &[
            "--reconnect",
            "--reconnect-min",
            "100ms",
            "--heartbeat-idle",
            "0",
        ],
    );
    client.send(b"one\n");
    client.wait_output(b"ONE\n");
    client.wait_log("reconnected to");
    client.send(b"two\n");
    client.wait_output(b"ONE\nTWO\n");
}

#[test]
fn hb_client_with_tls_against_a_plain_server_fails_the_handshake() {
    let server = ServerProcess::start(&[]);
    let pki = Pki::new("plain CA");
    let mut client = tls_client(&server, &pki, &[]);
    assert_fails_with(&mut client, "not a TLS peer");
}

#[test]
fn hb_client_gives_up_on_a_frozen_tls_server_within_its_bound() {
    // heartbeat-idle + retries x interval, and 1 s of tolerance, as in
    // tests/portable.rs: heartbeats go out while the reader is blocked.
    const GIVE_UP: Duration = Duration::from_secs(1 + 3);
    const BOUND: Duration = Duration::from_secs(1 + 3 + 1);
    let pki = Pki::new("frozen CA");
    let server = tls_server(&pki, &[]);
    let flags = [
        "--heartbeat-idle",
        "1s",
        "--heartbeat-interval",
        "1s",
        "--heartbeat-retries",
        "3",
    ];
    let mut client = tls_client(&server, &pki, &flags);
    client.send(b"hi\n");
    client.wait_output(b"HI\n");
    let answered = Instant::now();
    server.signal("STOP");
    let status = client.wait_exit(BOUND);
    let took = answered.elapsed();
    server.signal("CONT");
    assert_eq!(status.code(), Some(3), "{:?}", client.logged);
    assert!(took >= GIVE_UP, "gave up early, after {took:?}");
    assert!(
        client.has_logged("server unresponsive"),
        "{:?}",
        client.logged
    );
}

#[test]
fn the_connect_timeout_bounds_a_handshake_the_server_never_answers() {
    let timeout = Duration::from_millis(500);
    // A listener that never accepts: the kernel completes the TCP
    // handshake, and the ClientHello waits in its queue unanswered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pki = Pki::new("silent CA");
    let start = Instant::now();
    let mut client = ClientProcess::start(
        silent.local_addr().unwrap(),
        &["--tls-ca", &arg_path(&pki.ca), "--connect-timeout", "500ms"],
    );
    assert_fails_with(&mut client, "failed: timed out");
    let took = start.elapsed();
    assert!(took >= timeout, "gave up early, after {took:?}");
    assert!(
        took <= timeout + PATIENCE / 2,
        "gave up late, after {took:?}"
    );
}

#[test]
fn hb_client_tls_trusts_the_systems_roots() {
    let pki = Pki::new("system CA");
    let server = tls_server(&pki, &[]);
    // rustls-native-certs reads SSL_CERT_FILE in place of the system's store
    // when it is set, as OpenSSL does: the CA stands in for the OS's roots.
    let mut client = Command::new(env!("CARGO_BIN_EXE_hb-client"))
        .args(["--connect", &server.addr.to_string(), "--tls"])
        .env("SSL_CERT_FILE", &pki.ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hb-client");
    client.stdin.take().unwrap().write_all(b"system\n").unwrap();
    let output = client.wait_with_output().expect("hb-client's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(output.stdout, b"SYSTEM\n");
    assert!(
        stderr.contains("signed by the system's root CAs"),
        "{stderr}"
    );
}

#[test]
fn hb_client_check_makes_its_round_trip_inside_tls() {
    let pki = Pki::new("check CA");
    let server = tls_server(&pki, &[]);
    let check = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hb-client"))
            .args(["--connect", &server.addr.to_string(), "--check"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run hb-client --check")
    };
    let ca = arg_path(&pki.ca);
    let passed = check(&["--tls-ca", &ca]);
    assert!(passed.status.success(), "{passed:?}");
    assert_eq!(passed.stdout, b"");
    let stranger = Pki::new("stranger CA");
    let failed = check(&["--tls-ca", &arg_path(&stranger.ca)]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("check failed: TLS handshake"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

/// `--find-idle-timeout`'s probes connect as the session does, so through
/// TLS too: a TLS server's own idle timeout is bracketed.
#[test]
fn find_idle_timeout_probes_over_tls() {
    let pki = Pki::new("probe CA");
    let server = tls_server(&pki, &["--idle-timeout", "3s", "-q"]);
    let mut client = tls_client(&server, &pki, &["--find-idle-timeout"]);
    let status = client.wait_exit(Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&client.output).into_owned();
    assert!(status.success(), "{stdout:?}; {:?}", client.logged);
    // `idle timeout of the path: between 2.8s and 3.1s`
    let (held, failed) = stdout
        .trim_end()
        .strip_prefix("idle timeout of the path: between ")
        .and_then(|r| r.split_once(" and "))
        .unwrap_or_else(|| panic!("unexpected stdout {stdout:?}"));
    let secs = |s: &str| -> f64 { s.trim_end_matches('s').parse().expect("seconds") };
    let (held, failed) = (secs(held), secs(failed));
    // As tests/idle_timeout.rs allows: the reaper is never early, the close
    // is rounded up to the search's 100 ms grid.
    assert!(
        held < 3.0 && (2.9..3.6).contains(&failed),
        "{held} .. {failed}"
    );
}
