//! The line handling of wire protocol v1 (docs/protocol.md), with no I/O.
//!
//! The server is a streaming transformer: bytes in, reply bytes out, in order.
//! A line is everything up to and including LF. The line `HeartBeat` (with an
//! optional CR before the LF) is answered `OK` with the same ending; every
//! other byte comes back ASCII-uppercased. To keep memory bounded however long
//! a line is, [`LineHandler`] never holds a line: it holds at most the few
//! bytes at the start of a line that could still turn out to be `HeartBeat\r`,
//! and streams everything else through as it arrives.

/// The heartbeat line's content, exactly and case-sensitively.
pub const HEARTBEAT: &[u8] = b"HeartBeat";
/// The reply to a heartbeat line, sent with the heartbeat's own line ending.
pub const HEARTBEAT_REPLY: &[u8] = b"OK";

/// The longest line start that may still be a heartbeat: `HeartBeat\r`.
const HELD_MAX: usize = HEARTBEAT.len() + 1;

/// Turns a connection's incoming bytes into its reply bytes.
#[derive(Debug, Default)]
pub struct LineHandler {
    /// Bytes at the start of the current line that are a prefix of
    /// `HeartBeat\r`; not yet answered because the line may be a heartbeat.
    held: [u8; HELD_MAX],
    held_len: usize,
    /// True once the current line is known not to be a heartbeat: its bytes
    /// stream straight through until its LF.
    mid_line: bool,
    /// Lines answered so far that were not heartbeats, for the server's
    /// `hb_lines_total`: counted here, where lines end, so nobody scans the
    /// input twice.
    lines: u64,
}

impl LineHandler {
    /// Appends the replies to `input` to `out` and returns how many heartbeats
    /// it answered. `out` grows by at most `input.len()` plus a few bytes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> u32 {
        let mut heartbeats = 0;
        let mut rest = input;
        while !rest.is_empty() {
            if self.mid_line {
                rest = self.stream_line(rest, out);
                continue;
            }
            let byte = rest[0];
            rest = &rest[1..];
            if byte == b'\n' {
                heartbeats += u32::from(self.end_held_line(out));
            } else if self.could_hold(byte) {
                self.held[self.held_len] = byte;
                self.held_len += 1;
            } else {
                push_uppercased(out, &self.held[..self.held_len]);
                push_uppercased(out, &[byte]);
                self.held_len = 0;
                self.mid_line = true;
            }
        }
        heartbeats
    }

    /// Whether no partial line is pending: the next byte starts a line.
    pub fn at_line_start(&self) -> bool {
        self.held_len == 0 && !self.mid_line
    }

    /// Appends the reply to a final line that has no LF (the peer finished
    /// sending): uppercased, with no line ending added. Such a line is never
    /// a heartbeat, since a heartbeat is a whole line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.mid_line || self.held_len > 0 {
            self.lines += 1;
        }
        push_uppercased(out, &self.held[..self.held_len]);
        self.held_len = 0;
        self.mid_line = false;
    }

    /// Lines answered so far other than heartbeats: each one ended by LF, and
    /// the final one without LF that [`finish`](Self::finish) answered.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Streams `input` up to and including the next LF; returns the rest.
    fn stream_line<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        match memchr::memchr(b'\n', input) {
            Some(end) => {
                push_uppercased(out, &input[..=end]);
                self.mid_line = false;
                self.lines += 1;
                &input[end + 1..]
            }
            None => {
                push_uppercased(out, input);
                &[]
            }
        }
    }

    /// Whether `byte` extends the held bytes to a longer prefix of
    /// `HeartBeat\r`.
    fn could_hold(&self, byte: u8) -> bool {
        match HEARTBEAT.get(self.held_len) {
            Some(&expected) => byte == expected,
            None => self.held_len == HEARTBEAT.len() && byte == b'\r',
        }
    }

    /// Answers the held line at its LF; returns whether it was a heartbeat.
    fn end_held_line(&mut self, out: &mut Vec<u8>) -> bool {
        let held = &self.held[..self.held_len];
        let (body, ending): (&[u8], &[u8]) = match held {
            [body @ .., b'\r'] => (body, b"\r\n"),
            _ => (held, b"\n"),
        };
        let heartbeat = body == HEARTBEAT;
        if heartbeat {
            out.extend_from_slice(HEARTBEAT_REPLY);
        } else {
            push_uppercased(out, body);
            self.lines += 1;
        }
        out.extend_from_slice(ending);
        self.held_len = 0;
        heartbeat
    }
}

fn push_uppercased(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(bytes.iter().map(u8::to_ascii_uppercase));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reply(chunks: &[&[u8]]) -> (Vec<u8>, u32) {
        let mut handler = LineHandler::default();
        let mut out = Vec::new();
        let heartbeats = chunks.iter().map(|c| handler.feed(c, &mut out)).sum();
        handler.finish(&mut out);
        (out, heartbeats)
    }

    /// The plain model of the protocol: a-z uppercased, every exact
    /// `HeartBeat` line (LF or CRLF) replaced by `OK`.
    fn model(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in input.split_inclusive(|&b| b == b'\n') {
            let (body, ending): (&[u8], &[u8]) = match line {
                [body @ .., b'\r', b'\n'] if body == HEARTBEAT => (b"OK", b"\r\n"),
                [body @ .., b'\n'] if body == HEARTBEAT => (b"OK", b"\n"),
                _ => (line, b""),
            };
            push_uppercased(&mut out, body);
            out.extend_from_slice(ending);
        }
        out
    }

    /// Every line that is not a heartbeat counts once, however it is split
    /// and whichever way it starts, and so does a last line without LF.
    #[test]
    fn counts_the_lines_that_are_not_heartbeats() {
        let mut handler = LineHandler::default();
        let mut out = Vec::new();
        handler.feed(b"Heart", &mut out);
        handler.feed(b"Beat\nHeartBeatX\nhel", &mut out);
        handler.feed(b"lo\n\nHeartBeat\r\nHea", &mut out);
        assert_eq!(handler.lines(), 3);
        handler.finish(&mut out);
        assert_eq!(handler.lines(), 4);
        handler.finish(&mut out);
        assert_eq!(handler.lines(), 4, "nothing held, nothing counted");
    }

    #[test]
    fn uppercases_and_keeps_line_endings() {
        assert_eq!(reply(&[b"hello\nWorld\r\n"]).0, b"HELLO\nWORLD\r\n");
    }

    #[test]
    fn answers_heartbeats_with_their_ending() {
        assert_eq!(
            reply(&[b"HeartBeat\nHeartBeat\r\n"]),
            (b"OK\nOK\r\n".to_vec(), 2)
        );
    }

    #[test]
    fn near_heartbeats_are_echoed() {
        let input: &[u8] = b"HeartBeatX\nHeartBea\nheartbeat\nHeartBeat \nHeartBeat\r\r\n";
        let expected: &[u8] = b"HEARTBEATX\nHEARTBEA\nHEARTBEAT\nHEARTBEAT \nHEARTBEAT\r\r\n";
        assert_eq!(reply(&[input]), (expected.to_vec(), 0));
    }

    #[test]
    fn heartbeat_split_across_chunks() {
        assert_eq!(reply(&[b"Hear", b"tBe", b"at\r", b"\n"]).0, b"OK\r\n");
    }

    #[test]
    fn binary_passes_through() {
        let input = b"a\0\xff\xfe\xc3\xa9z\n";
        assert_eq!(reply(&[input]).0, b"A\0\xff\xfe\xc3\xa9Z\n");
    }

    #[test]
    fn final_line_without_lf_is_flushed_at_finish() {
        assert_eq!(reply(&[b"abc\nHeart"]).0, b"ABC\nHEART");
        assert_eq!(reply(&[b"HeartBeat"]).0, b"HEARTBEAT");
    }

    #[test]
    fn output_is_bounded_by_input() {
        let mut handler = LineHandler::default();
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.clear();
            handler.feed(&[b'x'; 4096], &mut out);
            assert_eq!(out.len(), 4096);
        }
    }

    /// How many exact `HeartBeat` lines (LF or CRLF) `input` holds.
    fn model_heartbeats(input: &[u8]) -> u32 {
        let lines = input.split_inclusive(|&b| b == b'\n');
        lines
            .filter(|l| *l == b"HeartBeat\n" || *l == b"HeartBeat\r\n")
            .count() as u32
    }

    /// Cuts `input` at `cuts` (any positions, repeats give empty chunks).
    fn cut<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&input[start..p]);
            start = p;
        }
        chunks.push(&input[start..]);
        chunks
    }

    /// Inputs built from heartbeats, near-heartbeats, line endings, NUL,
    /// invalid UTF-8 and short runs of arbitrary bytes, so that the cases
    /// the handler must tell apart are frequent.
    fn tricky_input() -> impl Strategy<Value = Vec<u8>> {
        let part = prop_oneof![
            Just(b"HeartBeat".to_vec()),
            Just(b"HeartBea".to_vec()),
            Just(b"heartbeat".to_vec()),
            Just(b"HeartBeat ".to_vec()),
            Just(b"HeartBeatX".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"\xff\xfe".to_vec()),
            proptest::collection::vec(any::<u8>(), 1..4),
        ];
        proptest::collection::vec(part, 0..40).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn matches_model_for_tricky_bytes_and_any_chunking(
            input in tricky_input(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let (out, heartbeats) = reply(&cut(&input, &cuts));
            prop_assert_eq!(out, model(&input));
            prop_assert_eq!(heartbeats, model_heartbeats(&input));
        }

        #[test]
        fn matches_model_for_arbitrary_bytes_and_any_chunking(
            input in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..64),
        ) {
            prop_assert_eq!(reply(&cut(&input, &cuts)).0, model(&input));
        }

        #[test]
        fn matches_model_fed_one_byte_at_a_time(input in tricky_input()) {
            let chunks: Vec<&[u8]> = input.chunks(1).collect();
            let (out, heartbeats) = reply(&chunks);
            prop_assert_eq!(out, model(&input));
            prop_assert_eq!(heartbeats, model_heartbeats(&input));
        }

        #[test]
        fn each_feed_replies_at_most_its_input_plus_a_held_line(
            input in tricky_input(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut handler = LineHandler::default();
            for chunk in cut(&input, &cuts) {
                let mut out = Vec::new();
                handler.feed(chunk, &mut out);
                prop_assert!(out.len() <= chunk.len() + HELD_MAX);
            }
        }
    }
}
