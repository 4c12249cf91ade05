//! Bad input: random bytes, NUL, invalid UTF-8, near-heartbeats, a line in
//! 1-byte writes, and lines far longer than any buffer. The server must echo
//! each exactly as the protocol model says and hold no more than a chunk.

use crate::common::*;
use crate::support::{Rng, exchange, model};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

/// Pieces the random input is built from: the interesting tokens appear
/// often enough for every seed to exercise them.
const TOKENS: &[&[u8]] = &[
    b"HeartBeat\n",
    b"HeartBeat\r\n",
    b"HeartBeat",
    b"HeartBeatX\n",
    b"HeartBea\n",
    b"heartbeat\n",
    b"HeartBeat \n",
    b"HeartBeat\r\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\xff\xfe\xc3",
];

/// About `len` bytes: random runs mixed with the tokens above.
fn random_input(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut input = Vec::with_capacity(len + 64);
    while input.len() < len {
        if rng.below(2) == 0 {
            input.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
        } else {
            let run = rng.below(64);
            input.extend(rng.bytes(run));
        }
    }
    input
}

/// Cuts `input` into chunks of 1 to `max` bytes.
fn random_chunks(rng: &mut Rng, input: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at((1 + rng.below(max)).min(rest.len()));
        chunks.push(chunk.to_vec());
        rest = tail;
    }
    chunks
}

#[test]
fn random_bytes_in_random_chunks_match_the_model() {
    let server = start_server(None, 10);
    let mut expected_heartbeats = 0;
    for seed in 1..=4 {
        let mut rng = Rng::new(seed);
        let input = random_input(&mut rng, 256 * 1024);
        let chunks = random_chunks(&mut rng, &input, 8192);
        let expected = model(&input);
        expected_heartbeats += input
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| *l == b"HeartBeat\n" || *l == b"HeartBeat\r\n")
            .count() as u64;
        let reply = exchange(connect(server.local_addr()), chunks);
        assert!(
            reply == expected,
            "seed {seed}: reply differs from the model at byte {:?}",
            reply.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
    let summary = server.shutdown();
    assert_eq!(summary.heartbeats, expected_heartbeats);
}

#[test]
fn nul_and_invalid_utf8_pass_through() {
    let server = start_server(None, 10);
    let mut c = connect(server.local_addr());
    round_trip(&mut c, b"\0\n", b"\0\n");
    round_trip(&mut c, b"\0\0\0abc\0\n", b"\0\0\0ABC\0\n");
    round_trip(
        &mut c,
        b"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\x28\n",
        b"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\x28\n",
    );
    round_trip(
        &mut c,
        b"\xed\xa0\x80 surrogate\n",
        b"\xed\xa0\x80 SURROGATE\n",
    );
    round_trip(&mut c, b"Heart\0Beat\n", b"HEART\0BEAT\n");
    round_trip(&mut c, b"\0HeartBeat\n", b"\0HEARTBEAT\n");
    round_trip(&mut c, b"HeartBeat\n", b"OK\n");
}

#[test]
fn near_heartbeats_are_echoed_not_answered() {
    let server = start_server(None, 10);
    let mut c = connect(server.local_addr());
    let cases: &[(&[u8], &[u8])] = &[
        (b"HeartBeatX\n", b"HEARTBEATX\n"),
        (b"HeartBea\n", b"HEARTBEA\n"),
        (b"heartbeat\n", b"HEARTBEAT\n"),
        (b"HEARTBEAT\n", b"HEARTBEAT\n"),
        (b"HeartBeat \n", b"HEARTBEAT \n"),
        (b" HeartBeat\n", b" HEARTBEAT\n"),
        (b"HeartBeat\r\r\n", b"HEARTBEAT\r\r\n"),
        (b"HeartBeat\rX\n", b"HEARTBEAT\rX\n"),
        (b"HeartBeatHeartBeat\n", b"HEARTBEATHEARTBEAT\n"),
        (b"\rHeartBeat\n", b"\rHEARTBEAT\n"),
    ];
    for (request, reply) in cases {
        round_trip(&mut c, request, reply);
    }
    assert_eq!(server.shutdown().heartbeats, 0);
}

#[test]
fn a_line_in_one_byte_writes() {
    let server = start_server(None, 10);
    let c = connect(server.local_addr());
    c.set_nodelay(true).expect("set TCP_NODELAY");
    let mut input = b"HeartBeat\r\n".to_vec();
    input.extend((0..4000).map(|i| b"abcdefghij\xff\0"[i % 12]));
    input.extend_from_slice(b"\nHeartBeat\n");
    let chunks = input.chunks(1).map(<[u8]>::to_vec).collect();
    assert_eq!(exchange(c, chunks), model(&input));
    assert_eq!(server.shutdown().heartbeats, 2);
}

/// Sends one line of `size` bytes with no LF, reads the echo as it streams
/// and checks it; returns how long it took and how far the server's RSS rose
/// above its level before the line (kB).
#[cfg(target_os = "linux")]
fn stream_one_long_line(size: usize) -> (Duration, u64) {
    const CHUNK: usize = 64 * 1024;
    // Every byte value but LF, so uppercasing is checked on all of them.
    let pattern: Vec<u8> = (0..=255u8)
        .filter(|&b| b != b'\n')
        .cycle()
        .take(CHUNK)
        .collect();
    let expected: Vec<u8> = pattern.iter().map(u8::to_ascii_uppercase).collect();
    let server = ServerProcess::start(&["-q"]);
    let mut c = connect(server.addr);
    round_trip(&mut c, b"warm up\n", b"WARM UP\n");
    let rss_before = proc_status(server.pid(), "VmRSS");
    let start = Instant::now();
    let mut writer = c.try_clone().expect("clone client socket");
    let sender = thread::Builder::new()
        .name("test-sender".into())
        .spawn(move || {
            for _ in 0..size / CHUNK {
                writer.write_all(&pattern).expect("send chunk");
            }
            writer.shutdown(Shutdown::Write).expect("half-close");
        })
        .expect("spawn sender");
    let mut received = 0;
    let mut peak_rss = rss_before;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = c.read(&mut buf).expect("read echo");
        if n == 0 {
            break;
        }
        for (i, &byte) in buf[..n].iter().enumerate() {
            let at = received + i;
            assert_eq!(byte, expected[at % CHUNK], "echo differs at byte {at}");
        }
        received += n;
        peak_rss = peak_rss.max(proc_status(server.pid(), "VmRSS"));
    }
    sender.join().expect("sender panicked");
    assert_eq!(received, size / CHUNK * CHUNK, "echo is short");
    (start.elapsed(), peak_rss - rss_before)
}

/// Full size in CI too: about 2 s in a debug build.
#[cfg(target_os = "linux")]
#[test]
fn a_100_mb_line_streams_through_in_bounded_memory() {
    let (took, growth_kb) = stream_one_long_line(100 << 20);
    eprintln!("100 MiB line: echoed in {took:?}, server RSS grew {growth_kb} kB");
    // Bounded: the server holds a 4 KiB chunk, never the line.
    assert!(growth_kb < 1024, "server RSS grew by {growth_kb} kB");
}
