//! Matching the server's replies to what the client sent, with no I/O: the
//! server answers in request order, so a FIFO of requests tells which reply
//! line belongs to a heartbeat.
//!
//! Replies to the user's lines stream through byte for byte as they arrive;
//! a heartbeat's reply line is never shown, whatever it says, so stdout
//! carries exactly the answers to the user's lines. A line the user typed as
//! `ok` is echoed `OK` too, and is shown, because its request is a user line.
//! A heartbeat answered with something other than `OK` (a server that does
//! not speak this heartbeat protocol, such as the article's, which echoes
//! `HEARTBEAT`) is reported, so the caller can say so. To keep memory bounded
//! however long a reply line is, [`ReplyMatcher`] holds at most the first
//! [`PREVIEW_MAX`] bytes of a heartbeat's reply line.

use crate::protocol::HEARTBEAT_REPLY;
use std::collections::VecDeque;

/// How much of a heartbeat's reply line is kept to tell `OK` from other
/// text, and to quote the other text in a warning.
pub const PREVIEW_MAX: usize = 64;

/// A request whose reply line has not fully arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A line from the user (or its first piece); its reply is shown.
    Line,
    /// A heartbeat; its reply is hidden.
    Heartbeat,
}

/// What one [`ReplyMatcher::feed`] found about heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// Heartbeats whose reply line ended, `OK` or not.
    pub answered: u32,
    /// The first of those replies that was not `OK`: its first bytes
    /// (at most [`PREVIEW_MAX`]), without the line ending.
    pub unexpected: Option<Vec<u8>>,
}

/// Turns the server's bytes into the bytes to show.
#[derive(Debug, Default)]
pub struct ReplyMatcher {
    /// Requests in the order sent, each popped at its reply's LF.
    pending: VecDeque<Request>,
    /// The start of the heartbeat reply line being hidden.
    preview: Vec<u8>,
    /// True while a heartbeat's reply line is being hidden (its first byte
    /// has arrived, its LF not yet).
    hiding: bool,
    /// True while a reply line to be shown streams through, until its LF.
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

    /// Appends the bytes of `input` to show to `out`, and returns what it
    /// found about heartbeat replies. `out` grows by at most `input.len()`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Answers {
        let mut answers = Answers::default();
        let mut rest = input;
        while !rest.is_empty() {
            let heartbeat_next = self.pending.front() == Some(&Request::Heartbeat);
            rest = if self.hiding || (!self.streaming && heartbeat_next) {
                self.hide_line(rest, &mut answers)
            } else {
                self.stream_line(rest, out)
            };
        }
        answers
    }

    /// The server closed: whatever was held of a heartbeat's unfinished
    /// reply line is dropped, never shown.
    pub fn finish(&mut self) {
        self.preview.clear();
        self.hiding = false;
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

    /// Hides `input` up to and including the next LF, which ends the
    /// heartbeat's reply line, keeping its first bytes; returns the rest.
    fn hide_line<'a>(&mut self, input: &'a [u8], answers: &mut Answers) -> &'a [u8] {
        self.hiding = true;
        let (part, rest, ended) = match memchr::memchr(b'\n', input) {
            Some(end) => (&input[..end], &input[end + 1..], true),
            None => (input, &[][..], false),
        };
        let room = PREVIEW_MAX - self.preview.len();
        self.preview
            .extend_from_slice(&part[..part.len().min(room)]);
        if ended {
            self.end_heartbeat_reply(answers);
        }
        rest
    }

    fn end_heartbeat_reply(&mut self, answers: &mut Answers) {
        let body = self.preview.strip_suffix(b"\r").unwrap_or(&self.preview);
        if body != HEARTBEAT_REPLY && answers.unexpected.is_none() {
            answers.unexpected = Some(body.to_vec());
        }
        answers.answered += 1;
        self.preview.clear();
        self.hiding = false;
        self.pending.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is shown, the heartbeats answered, the first unexpected answer
    /// and the requests left pending.
    fn show(requests: &[Request], chunks: &[&[u8]]) -> (String, u32, Option<String>, usize) {
        let mut matcher = ReplyMatcher::default();
        requests.iter().for_each(|&r| matcher.sent(r));
        let mut out = Vec::new();
        let mut answered = 0;
        let mut unexpected = None;
        for chunk in chunks {
            let answers = matcher.feed(chunk, &mut out);
            answered += answers.answered;
            unexpected = unexpected.or(answers.unexpected);
        }
        matcher.finish();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            text(&out),
            answered,
            unexpected.as_deref().map(text),
            matcher.pending.len(),
        )
    }

    use Request::{Heartbeat as H, Line as L};

    #[test]
    fn heartbeat_ok_is_hidden_and_typed_ok_is_shown() {
        assert_eq!(
            show(&[L, H, L, H], &[b"A\nOK\nOK\nOK\r\n"]),
            ("A\nOK\n".into(), 2, None, 0)
        );
    }

    #[test]
    fn heartbeat_reply_split_across_chunks() {
        assert_eq!(
            show(&[H, L], &[b"O", b"K", b"\r", b"\nB", b"C\n"]),
            ("BC\n".into(), 1, None, 0)
        );
    }

    #[test]
    fn other_reply_to_a_heartbeat_is_hidden_and_reported() {
        assert_eq!(
            show(&[H, L], &[b"HEARTBEAT\nTWO\n"]),
            ("TWO\n".into(), 1, Some("HEARTBEAT".into()), 0)
        );
        assert_eq!(
            show(&[H, H], &[b"OKAY\nO", b"X\r\n"]),
            (String::new(), 2, Some("OKAY".into()), 0)
        );
        assert_eq!(
            show(&[H], &[b"OK\r\r\n"]),
            (String::new(), 1, Some("OK\r".into()), 0)
        );
        assert_eq!(
            show(&[H], &[b"\n"]),
            (String::new(), 1, Some(String::new()), 0)
        );
    }

    #[test]
    fn only_the_first_unexpected_answer_of_a_feed_is_kept() {
        assert_eq!(
            show(&[H, H, H], &[b"one\nOK\ntwo\n"]),
            (String::new(), 3, Some("one".into()), 0)
        );
    }

    #[test]
    fn a_long_unexpected_answer_is_hidden_in_bounded_memory() {
        let mut matcher = ReplyMatcher::default();
        matcher.sent(H);
        matcher.sent(L);
        let mut out = Vec::new();
        for _ in 0..1000 {
            let answers = matcher.feed(&[b'x'; 4096], &mut out);
            assert_eq!(answers, Answers::default());
            assert!(matcher.preview.len() <= PREVIEW_MAX);
        }
        let answers = matcher.feed(b"\nLINE\n", &mut out);
        assert_eq!(answers.answered, 1);
        assert_eq!(answers.unexpected, Some(vec![b'x'; PREVIEW_MAX]));
        assert_eq!(out, b"LINE\n");
    }

    #[test]
    fn unsolicited_data_is_shown() {
        assert_eq!(
            show(&[], &[b"ERR server full\n"]),
            ("ERR server full\n".into(), 0, None, 0)
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
    fn an_unfinished_heartbeat_reply_is_never_shown() {
        assert_eq!(show(&[H], &[b"OK"]), (String::new(), 0, None, 1));
        assert_eq!(show(&[H], &[b"HEART"]), (String::new(), 0, None, 1));
    }

    #[test]
    fn final_line_without_lf_stays_pending() {
        assert_eq!(show(&[L, L], &[b"A\n", b"B"]), ("A\nB".into(), 0, None, 1));
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
        assert_eq!(matcher.feed(b"\nOK\n", &mut out).answered, 1);
        assert_eq!(out, b"\n");
    }
}
