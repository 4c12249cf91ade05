//! The line protocol: replies do not depend on how the bytes were split,
//! and each read's replies are at most its length plus the held bytes.

use super::{config, input, reads, seeds};
use proptest::prelude::*;
use tcp_heartbeat::protocol::LineHandler;
use tcp_heartbeat::server::compat::Compat;

/// What a read's replies may add beyond its own length: the held start of
/// a line that could have been `HeartBeat\r`.
const SLACK: usize = 16;

/// The replies to `bytes` read in pieces of `reads` sizes, in turn.
fn answer(compat: Compat, bytes: &[u8], reads: &[usize]) -> (Vec<u8>, u32, u64) {
    let mut lines = LineHandler::default();
    let (mut out, mut heartbeats) = (Vec::new(), 0);
    let mut rest = bytes;
    for &size in reads.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        let before = out.len();
        heartbeats += compat.feed(&mut lines, chunk, &mut out);
        assert!(
            out.len() - before <= chunk.len() + SLACK,
            "replies past the bound"
        );
        rest = after;
    }
    let before = out.len();
    lines.finish(&mut out);
    assert!(out.len() - before <= SLACK);
    (out, heartbeats, lines.lines())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_line_protocol(bytes in input(seeds::lines()), reads in reads()) {
        let whole = answer(Compat::None, &bytes, &[bytes.len().max(1)]);
        let split = answer(Compat::None, &bytes, &reads);
        prop_assert_eq!(split, whole);
        // The seed framing depends on read boundaries by design: only the
        // bounds are checked.
        answer(Compat::Seed, &bytes, &reads);
    }
}
