//! The malformed (and a few valid) inputs the other tests already send,
//! as fuzz seeds.

/// The line protocol's: tests/hardening/input.rs, tests/heartbeat_replies.rs.
pub fn lines() -> Vec<Vec<u8>> {
    let seeds: &[&[u8]] = &[
        b"HeartBeat\n",
        b"HeartBeat\r\n",
        b"HeartBeat",
        b"HeartBeatX\n",
        b"HeartBea\n",
        b"heartbeat\n",
        b"HEARTBEAT\n",
        b"HeartBeat \n",
        b" HeartBeat\n",
        b"HeartBeat\r\r\n",
        b"HeartBeat\rX\n",
        b"\n",
        b"\r",
        b"\0",
        b"\xff\xfe\xc3",
        b"\0\0\0abc\0\n",
        b"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\x28\n",
        b"\xed\xa0\x80 surrogate\n",
        b"Heart\0Beat\n",
        b"\0HeartBeat\n",
        b"hello\nHeartBeat\nsame segment\n",
    ];
    seeds.iter().map(|s| s.to_vec()).collect()
}

/// A version 2 header: `command` (0 LOCAL, 1 PROXY), `family`, and what
/// follows the fixed part.
pub fn v2(command: u8, family: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(rest);
    h
}

/// The PROXY header reader's: src/server/proxy_header.rs' unit tests,
/// tests/deployment/proxy.rs, tests/trust.
pub fn headers() -> Vec<Vec<u8>> {
    let v4 = [10, 0, 0, 7, 10, 0, 0, 1, 0xd4, 0x31, 0x13, 0x8d];
    let mut v6 = [0u8; 36];
    v6[0] = 0x20;
    v6[1] = 0x01;
    let mut tlv = v4.to_vec();
    tlv.extend_from_slice(&[0xE0, 0x03, 0xFD]);
    tlv.extend_from_slice(&[b'x'; 1021]);
    let mut oversized = v2(1, 0x11, &v4);
    oversized[14..16].copy_from_slice(&60_000u16.to_be_bytes());
    let mut seeds: Vec<Vec<u8>> = [
        &b"PROXY TCP4 192.0.2.7 198.51.100.1 54321 5005\r\nHeartBeat\n"[..],
        b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 5005\r\n",
        b"PROXY TCP6 ::ffff:192.0.2.9 2001:db8::100 1001 5005\r\n",
        b"PROXY UNKNOWN\r\n",
        b"PROXY TCP4 not-an-address 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",
        b"PROXY TCP4 192.0.2.7",
        b"PROXY TCP4 nonsense\r\n",
        b"HeartBeat\n",
        b"GET / HTTP/1.1\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c",
        // What the fuzzers found (docs/hardening.md).
        b"PROXY TCP4 1111111111\x00111\r\n\r\n\0\r\nQUIT\n!!\0$ \x01\0\0\0\0\0\0\0\0\0\0",
        b"PROXY\rTCP4 111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111",
        b"P\rP\r\n\r@OP\x06\x0ff\xffRR 192.0RRR\x12=RRRRR\0\x7fRbbbbbbbb\x06\x0fOPROXY TC>\xff 1bbb\x0fOPR 1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    seeds.extend([
        v2(1, 0x11, &v4),
        v2(1, 0x21, &v6),
        v2(0, 0x00, &[]),
        v2(1, 0x11, &tlv),
        oversized,
        [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat(),
    ]);
    seeds
}

/// The metrics request reader's: src/server/metrics_http.rs' unit tests,
/// tests/metrics.rs.
pub fn requests() -> Vec<Vec<u8>> {
    let seeds: &[&[u8]] = &[
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.0\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        b"GET /metr",
        b"GET /metrics HTTP/1.1\r\nX-Slow: ",
        b"\x16\x03\x01\x02\x00",
        b"HeartBeat\n",
    ];
    let mut seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
    let many: String = (0..=32).map(|i| format!("X-{i}: y\r\n")).collect();
    seeds.push(format!("GET /metrics HTTP/1.1\r\n{many}\r\n").into_bytes());
    seeds.push(format!("GET /{} HTTP/1.1", "a".repeat(8200)).into_bytes());
    seeds
}
