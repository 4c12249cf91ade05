//! Matching the server's replies to what the client sent, with no I/O: the
//! server answers in request order, so a FIFO of requests tells which reply
//! line belongs to a heartbeat.
//!
//! Replies stream through byte for byte as they arrive, except a heartbeat's
//! `OK`, which is hidden. A line the user typed as `ok` is echoed `OK` too,
//! and is shown, because its request is a user line. To keep memory bounded
//! however long a reply line is, [`ReplyMatcher`] holds at most the first
//! four bytes of a heartbeat's reply line (`OK\r\n`), only until they either
//! complete the reply or turn out to be something else.

use crate::protocol::HEARTBEAT_REPLY;
use std::collections::VecDeque;

/// The longest heartbeat reply line: `OK\r\n`.
const HELD_MAX: usize = HEARTBEAT_REPLY.len() + 2;

/// A request whose reply line has not fully arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A line from the user (or its first piece); its reply is shown.
    Line,
    /// A heartbeat; its `OK` reply is hidden.
    Heartbeat,
}

/// Turns the server's bytes into the bytes to show.
#[derive(Debug, Default)]
pub struct ReplyMatcher {
    /// Requests in the order sent, each popped at its reply's LF.
    pending: VecDeque<Request>,
    /// The start of a heartbeat's reply line, while it is a prefix of
    /// `OK\r\n` or `OK\n`.
    held: [u8; HELD_MAX],
    held_len: usize,
    /// True once the current reply line is known to be shown: its bytes
    /// stream straight through until its LF.
    streaming: bool,
}

impl ReplyMatcher {
    /// Records a request just sent.
    pub fn sent(&mut self, request: Request) {
        self.pending.push_back(request);
    }

    /// User lines sent whose reply line has not fully arrived.
    pub fn unanswered_lines(&self) -> usize {
        self.pending.iter().filter(|r| **r == Request::Line).count()
    }

    /// Appends the bytes of `input` to show to `out`, and returns how many
    /// heartbeat replies it hid. `out` grows by at most `input.len()` plus
    /// the few bytes held from before.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> u32 {
        let mut answered = 0;
        let mut rest = input;
        while !rest.is_empty() {
            if self.streaming || self.pending.front() != Some(&Request::Heartbeat) {
                rest = self.stream_line(rest, out);
                continue;
            }
            let byte = rest[0];
            rest = &rest[1..];
            self.held[self.held_len] = byte;
            self.held_len += 1;
            let held = &self.held[..self.held_len];
            if held == b"OK\n" || held == b"OK\r\n" {
                self.held_len = 0;
                self.pending.pop_front();
                answered += 1;
            } else if !is_reply_prefix(held) {
                self.release_held(out);
            }
        }
        answered
    }

    /// Appends whatever is still held to `out`: the server closed in the
    /// middle of what might have been a heartbeat's reply.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.held[..self.held_len]);
        self.held_len = 0;
    }

    /// Streams `input` up to and including the next LF, which ends the
    /// current reply line; returns the rest.
    fn stream_line<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        match memchr::memchr(b'\n', input) {
            Some(end) => {
                out.extend_from_slice(&input[..=end]);
                self.streaming = false;
                self.pending.pop_front();
                &input[end + 1..]
            }
            None => {
                out.extend_from_slice(input);
                self.streaming = true;
                &[]
            }
        }
    }

    /// The held bytes are not a heartbeat's reply: show them, and the rest
    /// of their line.
    fn release_held(&mut self, out: &mut Vec<u8>) {
        let held = &self.held[..self.held_len];
        out.extend_from_slice(held);
        let ended = held.ends_with(b"\n");
        self.held_len = 0;
        if ended {
            self.pending.pop_front();
        } else {
            self.streaming = true;
        }
    }
}

/// Whether `held` can still grow into `OK\n` or `OK\r\n`.
fn is_reply_prefix(held: &[u8]) -> bool {
    b"OK\r\n".starts_with(held) || b"OK\n".starts_with(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(requests: &[Request], chunks: &[&[u8]]) -> (Vec<u8>, u32, usize) {
        let mut matcher = ReplyMatcher::default();
        requests.iter().for_each(|&r| matcher.sent(r));
        let mut out = Vec::new();
        let answered = chunks.iter().map(|c| matcher.feed(c, &mut out)).sum();
        matcher.finish(&mut out);
        (out, answered, matcher.pending.len())
    }

    use Request::{Heartbeat as H, Line as L};

    #[test]
    fn heartbeat_ok_is_hidden_and_typed_ok_is_shown() {
        assert_eq!(
            show(&[L, H, L, H], &[b"A\nOK\nOK\nOK\r\n"]),
            (b"A\nOK\n".to_vec(), 2, 0)
        );
    }

    #[test]
    fn heartbeat_reply_split_across_chunks() {
        assert_eq!(
            show(&[H, L], &[b"O", b"K", b"\r", b"\nB", b"C\n"]),
            (b"BC\n".to_vec(), 1, 0)
        );
    }

    #[test]
    fn other_reply_to_a_heartbeat_is_shown() {
        assert_eq!(
            show(&[H, H], &[b"OKAY\nO", b"X\n"]),
            (b"OKAY\nOX\n".to_vec(), 0, 0)
        );
        assert_eq!(show(&[H], &[b"OK\r\r\n"]), (b"OK\r\r\n".to_vec(), 0, 0));
        assert_eq!(show(&[H], &[b"\n"]), (b"\n".to_vec(), 0, 0));
    }

    #[test]
    fn unsolicited_data_is_shown() {
        assert_eq!(
            show(&[], &[b"ERR server full\n"]),
            (b"ERR server full\n".to_vec(), 0, 0)
        );
    }

    #[test]
    fn unanswered_lines_count_only_user_lines() {
        let mut matcher = ReplyMatcher::default();
        [L, H, L, L].iter().for_each(|&r| matcher.sent(r));
        matcher.feed(b"A\nOK\nB", &mut Vec::new());
        assert_eq!(matcher.unanswered_lines(), 2);
    }

    #[test]
    fn held_bytes_are_shown_if_the_server_closes() {
        assert_eq!(show(&[H], &[b"OK"]), (b"OK".to_vec(), 0, 1));
    }

    #[test]
    fn final_line_without_lf_stays_pending() {
        assert_eq!(show(&[L, L], &[b"A\n", b"B"]), (b"A\nB".to_vec(), 0, 1));
    }

    #[test]
    fn long_reply_line_is_streamed_in_bounded_memory() {
        let mut matcher = ReplyMatcher::default();
        matcher.sent(L);
        matcher.sent(H);
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.clear();
            matcher.feed(&[b'X'; 4096], &mut out);
            assert_eq!(out.len(), 4096);
        }
        out.clear();
        assert_eq!(matcher.feed(b"\nOK\n", &mut out), 1);
        assert_eq!(out, b"\n");
    }
}
