//! `--compat seed`: the heartbeat framing of the article's C++ client, on
//! top of the line protocol, with no I/O.
//!
//! The article's client sends `HeartBeat` with no line end, in one `write`,
//! and compares one `read`'s worth of reply with exactly `OK` (no line end).
//! Its framing is "a message is whatever one `read` returns" — the bug the
//! line protocol fixes — so it is never the default. In seed mode a read that
//! is exactly the 9 bytes `HeartBeat`, arriving when no partial line is
//! pending, is a heartbeat and is answered `OK` with no line end; every other
//! read goes through the line protocol unchanged.
//!
//! The weakness is the article's own: a heartbeat split over two reads, or
//! coalesced with other bytes in one, is not recognised (it becomes the start
//! of a line); and a line client whose line starts with `HeartBeat` and
//! happens to be cut right after those 9 bytes gets `OK` for them. For
//! `HeartBeat\n` and `HeartBeat\r\n` cut there, the bytes answered are the
//! same as in line mode (`OK` + the ending echoed).

use crate::protocol::{HEARTBEAT, HEARTBEAT_REPLY, LineHandler};

/// Which framings the server accepts besides lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compat {
    /// The line protocol only (docs/protocol.md).
    #[default]
    None,
    /// Also the article's unterminated `HeartBeat`, one read at a time.
    Seed,
}

impl Compat {
    /// Appends the replies to one read's bytes, `read`, to `out`, and returns
    /// how many heartbeats it answered. Must be called once per read, with
    /// exactly the bytes that read returned: seed framing is defined by read
    /// boundaries.
    pub fn feed(self, lines: &mut LineHandler, read: &[u8], out: &mut Vec<u8>) -> u32 {
        if self == Compat::Seed && read == HEARTBEAT && lines.at_line_start() {
            out.extend_from_slice(HEARTBEAT_REPLY);
            return 1;
        }
        lines.feed(read, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replies to `reads`, one feed per read, and the heartbeats counted.
    fn replies(compat: Compat, reads: &[&[u8]]) -> (Vec<u8>, u32) {
        let mut lines = LineHandler::default();
        let mut out = Vec::new();
        let heartbeats = reads
            .iter()
            .map(|r| compat.feed(&mut lines, r, &mut out))
            .sum();
        lines.finish(&mut out);
        (out, heartbeats)
    }

    #[test]
    fn a_read_of_exactly_heartbeat_is_answered_ok_without_line_end() {
        let (out, heartbeats) = replies(Compat::Seed, &[b"HeartBeat", b"HeartBeat"]);
        assert_eq!((out.as_slice(), heartbeats), (b"OKOK".as_slice(), 2));
    }

    #[test]
    fn lines_around_seed_heartbeats_are_the_line_protocol() {
        let reads: &[&[u8]] = &[b"hello\n", b"HeartBeat", b"two\n", b"HeartBeat\n"];
        let (out, heartbeats) = replies(Compat::Seed, reads);
        assert_eq!(String::from_utf8_lossy(&out), "HELLO\nOKTWO\nOK\n");
        assert_eq!(heartbeats, 2);
    }

    #[test]
    fn without_seed_an_unterminated_heartbeat_is_the_start_of_a_line() {
        let (out, heartbeats) = replies(Compat::None, &[b"HeartBeat", b"two\n"]);
        assert_eq!(
            (out.as_slice(), heartbeats),
            (b"HEARTBEATTWO\n".as_slice(), 0)
        );
    }

    #[test]
    fn split_or_coalesced_seed_heartbeats_are_not_recognised() {
        assert_eq!(replies(Compat::Seed, &[b"Heart", b"Beat"]).1, 0);
        assert_eq!(replies(Compat::Seed, &[b"HeartBeatHeartBeat"]).1, 0);
        let (out, heartbeats) = replies(Compat::Seed, &[b"abc", b"HeartBeat", b"\n"]);
        assert_eq!(
            (out.as_slice(), heartbeats),
            (b"ABCHEARTBEAT\n".as_slice(), 0)
        );
    }

    #[test]
    fn a_heartbeat_while_a_line_start_is_held_is_not_recognised() {
        // "Heart" is held as a possible heartbeat line start: a partial line.
        let (out, heartbeats) = replies(Compat::Seed, &[b"Heart", b"HeartBeat", b"\n"]);
        assert_eq!(
            (out.as_slice(), heartbeats),
            (b"HEARTHEARTBEAT\n".as_slice(), 0)
        );
    }

    #[test]
    fn a_line_heartbeat_cut_after_nine_bytes_gets_the_same_bytes() {
        for ending in [&b"\n"[..], b"\r\n"] {
            let seed = replies(Compat::Seed, &[b"HeartBeat", ending]).0;
            let line = replies(Compat::None, &[&[&b"HeartBeat"[..], ending].concat()]).0;
            assert_eq!(seed, line);
        }
    }
}
