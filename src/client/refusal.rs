//! Telling a server's refusal from its replies.
//!
//! A server that will not serve a connection sends one line, `ERR ` and its
//! reason (`ERR server full`), and closes. That line is not a reply to
//! anything the user sent, so it must not reach stdout (a script reading
//! hb-client's output would take it for data), and it is not a sign of a
//! working connection, so it must not reset `--reconnect`'s backoff.
//!
//! A refusal is the server's first line, beginning with `ERR `. The one
//! thing it could be confused with is the echo of a user line that began
//! with `err ` (echoes are uppercased). An echo can only come once a line
//! has been sent, and it never holds a lower-case ASCII letter, while every
//! refusal's reason is written in lower case (docs/protocol.md says so). So
//! the first line is a refusal if it begins with `ERR ` and either no line
//! has been sent, or it holds a lower-case letter.
//!
//! [`FirstLine`] is pure: it is fed the bytes as they come and says when it
//! knows. It holds back at most [`MAX_REFUSAL`] bytes, and only while they
//! can still be a refusal.

/// What begins a refusal.
pub const PREFIX: &[u8] = b"ERR ";
/// The longest line taken for a refusal; a longer first line is a reply.
pub const MAX_REFUSAL: usize = 1024;

/// The decision about a connection's first line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not known yet: the bytes so far are held back.
    Undecided,
    /// A refusal, with the server's reason (the words after `ERR `).
    Refused(String),
    /// Not a refusal: these bytes (the held-back ones with the new ones)
    /// are the server's replies, and so is everything after them.
    Replies(Vec<u8>),
}

/// Watches a connection's first line for a refusal.
#[derive(Debug, Default)]
pub struct FirstLine {
    held: Vec<u8>,
    decided: bool,
}

impl FirstLine {
    /// Whether the first line has been judged (replies from then on).
    pub fn is_decided(&self) -> bool {
        self.decided
    }

    /// Takes the next bytes from the server. `line_sent`: whether a user
    /// line has been sent on this connection, so that an echo may come.
    pub fn feed(&mut self, bytes: &[u8], line_sent: bool) -> Verdict {
        if self.decided {
            return Verdict::Replies(bytes.to_vec());
        }
        self.held.extend_from_slice(bytes);
        let start = &self.held[..self.held.len().min(PREFIX.len())];
        if !PREFIX.starts_with(start) {
            return self.replies();
        }
        match memchr::memchr(b'\n', &self.held) {
            Some(end) if is_refusal(&self.held[..end], line_sent) => {
                Verdict::Refused(reason(&self.held[..end]))
            }
            Some(_) => self.replies(),
            None if self.held.len() > MAX_REFUSAL => self.replies(),
            None => Verdict::Undecided,
        }
    }

    /// The server closed: what was held back is a refusal without its line
    /// end, or replies.
    pub fn closed(&mut self, line_sent: bool) -> Verdict {
        if self.decided || self.held.is_empty() {
            return Verdict::Replies(Vec::new());
        }
        if self.held.starts_with(PREFIX) && is_refusal(&self.held, line_sent) {
            return Verdict::Refused(reason(&self.held));
        }
        self.replies()
    }

    fn replies(&mut self) -> Verdict {
        self.decided = true;
        Verdict::Replies(std::mem::take(&mut self.held))
    }
}

fn is_refusal(line: &[u8], line_sent: bool) -> bool {
    line.starts_with(PREFIX) && (!line_sent || line.iter().any(u8::is_ascii_lowercase))
}

/// The words after `ERR `, without the line end, as text.
fn reason(line: &[u8]) -> String {
    let words = line[PREFIX.len()..]
        .strip_suffix(b"\r")
        .unwrap_or(&line[PREFIX.len()..]);
    String::from_utf8_lossy(words).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_err_line_is_a_refusal_whatever_the_pieces() {
        let mut first = FirstLine::default();
        assert_eq!(first.feed(b"E", false), Verdict::Undecided);
        assert_eq!(first.feed(b"RR server ", false), Verdict::Undecided);
        assert_eq!(
            first.feed(b"full\n", false),
            Verdict::Refused("server full".into())
        );
    }

    #[test]
    fn an_echo_of_a_line_that_began_with_err_is_a_reply() {
        let mut first = FirstLine::default();
        assert_eq!(
            first.feed(b"ERR SERVER FULL\nMORE\n", true),
            Verdict::Replies(b"ERR SERVER FULL\nMORE\n".to_vec())
        );
        assert_eq!(
            first.feed(b"ERR x\n", false),
            Verdict::Replies(b"ERR x\n".to_vec()),
            "only the first line can be a refusal"
        );
    }

    #[test]
    fn a_refusal_is_told_from_an_echo_by_its_lower_case() {
        let mut first = FirstLine::default();
        assert_eq!(
            first.feed(b"ERR too many connections from your address\r\n", true),
            Verdict::Refused("too many connections from your address".into())
        );
    }

    #[test]
    fn other_first_lines_are_passed_on_at_once() {
        for reply in [&b"OK\n"[..], b"E", b"ER!", b"ERROR\n", b"HELLO"] {
            let mut first = FirstLine::default();
            let verdict = first.feed(reply, false);
            if reply.len() < PREFIX.len() && PREFIX.starts_with(reply) {
                assert_eq!(verdict, Verdict::Undecided);
            } else {
                assert_eq!(verdict, Verdict::Replies(reply.to_vec()), "{reply:?}");
            }
        }
    }

    #[test]
    fn a_long_first_line_is_not_held_back_past_the_bound() {
        let mut first = FirstLine::default();
        let long = [b"ERR ".as_slice(), &[b'x'; MAX_REFUSAL]].concat();
        assert_eq!(first.feed(&long, false), Verdict::Replies(long.clone()));
    }

    #[test]
    fn a_refusal_without_its_line_end_is_found_at_the_close() {
        let mut first = FirstLine::default();
        assert_eq!(first.feed(b"ERR server busy", false), Verdict::Undecided);
        assert_eq!(first.closed(false), Verdict::Refused("server busy".into()));
        let mut first = FirstLine::default();
        assert_eq!(first.feed(b"ER", false), Verdict::Undecided);
        assert_eq!(first.closed(false), Verdict::Replies(b"ER".to_vec()));
    }
}
