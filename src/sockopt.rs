//! TCP keepalive, TCP_USER_TIMEOUT and TCP_NODELAY, set the same way on every
//! OS, and never fatal when the OS refuses one.
//!
//! Keepalive lets the kernel judge the network: after `idle` without traffic
//! it probes every `interval`, and closes the connection after `count`
//! unanswered probes (on Windows, socket2 sets idle and interval through
//! SIO_KEEPALIVE_VALS and the count through TCP_KEEPCNT). Keepalive is silent
//! while data is unacknowledged, so TCP_USER_TIMEOUT bounds how long sent
//! data may stay unacknowledged before the kernel gives up. Only Linux has
//! it; elsewhere it is reported as unsupported at start and not set.
//!
//! Not every OS takes every option: TCP_KEEPCNT is missing before Windows 10
//! 1703 (Server 2016, 1607) and in Wine, which refuse it with WSAENOPROTOOPT.
//! So each option is set on its own, a refused one is skipped, and the first
//! refusal of each option is logged once per process (not per connection)
//! with what the OS uses instead. A connection is never lost over one.

use socket2::{SockRef, TcpKeepalive};
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// TCP keepalive probing: first probe after `idle`, then every `interval`,
/// close after `count` unanswered probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Keepalive {
    /// How long a dead network stays unnoticed on an idle connection.
    pub fn detection_time(&self) -> Duration {
        self.idle + self.interval * self.count
    }
}

/// The socket options applied to every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketOptions {
    /// `None` leaves keepalive off.
    pub keepalive: Option<Keepalive>,
    /// `None` leaves TCP_USER_TIMEOUT at the OS default (off).
    pub user_timeout: Option<Duration>,
}

/// Whether this OS supports TCP_USER_TIMEOUT.
pub const USER_TIMEOUT_SUPPORTED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Windows' keepalive probe count where TCP_KEEPCNT cannot be set. The
/// SIO_KEEPALIVE_VALS documentation: "On Windows Vista and later, the number
/// of keep-alive probes (data retransmissions) is set to 10 and cannot be
/// changed" (TCP_KEEPCNT, from Windows 10 1703, changes it after all).
pub const WINDOWS_DEFAULT_KEEPALIVE_COUNT: u32 = 10;

/// An option the OS may refuse, each warned about once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockOption {
    NoDelay,
    Keepalive,
    KeepaliveTimes,
    KeepaliveCount,
    UserTimeout,
}

impl fmt::Display for SockOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoDelay => "TCP_NODELAY",
            Self::Keepalive => "TCP keepalive (SO_KEEPALIVE)",
            Self::KeepaliveTimes => "keepalive idle and interval",
            Self::KeepaliveCount => "keepalive probe count (TCP_KEEPCNT)",
            Self::UserTimeout => "TCP_USER_TIMEOUT",
        })
    }
}

/// An option the OS refused, and why.
#[derive(Debug)]
pub struct Refusal {
    pub option: SockOption,
    pub error: io::Error,
}

/// Sets TCP_NODELAY on `stream`, warning once per process if refused.
pub fn set_nodelay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        let refusal = Refusal {
            option: SockOption::NoDelay,
            error,
        };
        warn_once(&refusal, &SocketOptions::default());
    }
}

/// Applies what the OS accepts of `options` to `stream`, warning once per
/// process about each option it refuses. Returns the refusals.
pub fn apply(stream: &TcpStream, options: &SocketOptions) -> Vec<Refusal> {
    let refused = try_apply(&SockRef::from(stream), options);
    for refusal in &refused {
        warn_once(refusal, options);
    }
    refused
}

fn try_apply(socket: &SockRef<'_>, options: &SocketOptions) -> Vec<Refusal> {
    let mut refused = Vec::new();
    let mut refuse = |option, result: io::Result<()>| {
        if let Err(error) = result {
            refused.push(Refusal { option, error });
        }
    };
    if let Some(k) = options.keepalive {
        let times = TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval);
        match socket.set_tcp_keepalive(&times) {
            // Sets the times again along with the count: socket2 has no
            // setter for the count alone.
            Ok(()) => refuse(
                SockOption::KeepaliveCount,
                socket.set_tcp_keepalive(&times.with_retries(k.count)),
            ),
            Err(e) => match socket.set_keepalive(true) {
                Ok(()) => refuse(SockOption::KeepaliveTimes, Err(e)),
                Err(e) => refuse(SockOption::Keepalive, Err(e)),
            },
        }
    }
    if let Some(timeout) = options.user_timeout {
        refuse(SockOption::UserTimeout, set_user_timeout(socket, timeout));
    }
    refused
}

/// Which options have been warned about, one bit each.
struct Warned(AtomicU8);

impl Warned {
    /// True the first time `option` is passed, false ever after.
    fn first(&self, option: SockOption) -> bool {
        let bit = 1 << option as u8;
        self.0.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}

/// Process-wide, as the warning is: the same refusal on every connection
/// says nothing new.
static WARNED: Warned = Warned(AtomicU8::new(0));

fn warn_once(refusal: &Refusal, options: &SocketOptions) {
    if WARNED.first(refusal.option) {
        log::warn!(
            "{} not applied: {}; {} (said once, not per connection)",
            refusal.option,
            refusal.error,
            instead(refusal.option, options)
        );
    }
}

/// What the OS does instead of a refused option.
fn instead(option: SockOption, options: &SocketOptions) -> String {
    match (option, options.keepalive) {
        (SockOption::NoDelay, _) => {
            "Nagle's algorithm stays on, so a reply may wait for the previous one's ACK".into()
        }
        (SockOption::Keepalive, _) => {
            "no TCP keepalive: a dead network is noticed only by the idle timeout or heartbeats"
                .into()
        }
        (SockOption::KeepaliveTimes, _) => {
            "the OS's keepalive idle time and interval apply (by default 2 hours, then 75 s on Linux and 1 s on Windows)".into()
        }
        (SockOption::KeepaliveCount, Some(k)) if cfg!(windows) => {
            let os = Keepalive {
                count: WINDOWS_DEFAULT_KEEPALIVE_COUNT,
                ..k
            };
            format!(
                "Windows sends {WINDOWS_DEFAULT_KEEPALIVE_COUNT} probes instead of {}, so a dead network is noticed after {} instead of {}",
                k.count,
                humantime::format_duration(os.detection_time()),
                humantime::format_duration(k.detection_time())
            )
        }
        (SockOption::KeepaliveCount, _) => {
            "the OS's probe count applies (Linux: net.ipv4.tcp_keepalive_probes, 9 by default)"
                .into()
        }
        (SockOption::UserTimeout, _) => {
            "unacknowledged data is given up on only at the OS's retransmission limit (about 15 minutes on Linux)".into()
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_user_timeout(socket: &SockRef<'_>, timeout: Duration) -> io::Result<()> {
    socket.set_tcp_user_timeout(Some(timeout))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_socket: &SockRef<'_>, _timeout: Duration) -> io::Result<()> {
    // Callers check USER_TIMEOUT_SUPPORTED and warn once at start.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn options_are_set_on_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let options = SocketOptions {
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(7),
                interval: Duration::from_secs(3),
                count: 4,
            }),
            user_timeout: Some(Duration::from_millis(2500)),
        };
        let refused = apply(&stream, &options);
        // Elsewhere an OS may refuse some (Wine: TCP_KEEPCNT), never SO_KEEPALIVE.
        if cfg!(target_os = "linux") {
            assert!(refused.is_empty(), "{refused:?}");
        }
        assert!(!refused.iter().any(|r| r.option == SockOption::Keepalive));
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        {
            assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
            assert_eq!(
                socket.tcp_keepalive_interval().unwrap(),
                Duration::from_secs(3)
            );
            assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
            assert_eq!(
                socket.tcp_user_timeout().unwrap(),
                Some(Duration::from_millis(2500))
            );
        }
    }

    #[test]
    fn each_option_is_warned_about_once() {
        let warned = Warned(AtomicU8::new(0));
        assert!(warned.first(SockOption::KeepaliveCount));
        assert!(!warned.first(SockOption::KeepaliveCount));
        assert!(warned.first(SockOption::NoDelay));
        assert!(warned.first(SockOption::UserTimeout));
        assert!(!warned.first(SockOption::NoDelay));
    }

    #[test]
    fn a_refused_probe_count_says_what_windows_uses_instead() {
        let options = SocketOptions {
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(10),
                interval: Duration::from_secs(5),
                count: 3,
            }),
            user_timeout: None,
        };
        let text = instead(SockOption::KeepaliveCount, &options);
        if cfg!(windows) {
            assert!(text.contains("10 probes instead of 3"), "{text}");
            assert!(text.contains("after 1m instead of 25s"), "{text}");
        } else {
            assert!(text.contains("tcp_keepalive_probes"), "{text}");
        }
    }
}
