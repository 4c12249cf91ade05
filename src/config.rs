//! Command-line values shared by `hb-server` and `hb-client`: durations and
//! the TCP keepalive / user-timeout flags, with their limits.
//!
//! Durations take humantime forms (`500ms`, `25s`, `2m`) or a bare number of
//! seconds. Limits turn absurd values into clear errors at parse time rather
//! than failures (or panics on `Instant` overflow) later.

use crate::sockopt::{Keepalive, SocketOptions};
use std::io::{self, ErrorKind};
use std::net::IpAddr;
use std::time::Duration;

/// The longest timeout any flag accepts: a week. Longer is surely a typo,
/// and `Instant` arithmetic stays far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Linux's bounds for TCP_KEEPIDLE / TCP_KEEPINTVL (seconds) and
/// TCP_KEEPCNT; the kernel rejects values outside them.
const MAX_KEEPALIVE_SECS: u64 = 32_767;
pub const MAX_KEEPALIVE_COUNT: u32 = 127;

/// TCP_USER_TIMEOUT is an int of milliseconds.
const MAX_USER_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Parses `500ms`, `25s`, `2m`, or a bare number of seconds, up to a week.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err("must not be negative".to_string());
    }
    let duration = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| "number too large".to_string())?;
        Duration::from_secs(secs)
    } else {
        humantime::parse_duration(text).map_err(|e| {
            format!(
                "{} (expected e.g. 500ms, 25s, 2m, or seconds)",
                explain_duration_error(text, &e)
            )
        })?
    };
    if duration > MAX_DURATION {
        return Err(format!(
            "{text} is too long (at most {})",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(duration)
}

/// A duration for messages: rounded to milliseconds and written in seconds
/// (`50s`, `1.3s`, `0.25s`), not humantime's `50s 92us 578ns`.
pub fn display_duration(duration: Duration) -> String {
    let millis = (duration.as_nanos() + 500_000) / 1_000_000;
    let (secs, fraction) = (millis / 1000, millis % 1000);
    if fraction == 0 {
        return format!("{secs}s");
    }
    let digits = format!("{fraction:03}");
    format!("{secs}.{}s", digits.trim_end_matches('0'))
}

/// humantime's message, without the byte offsets it gives for a bad
/// character or a missing number (`expected number at 0`), which say
/// nothing to someone who typed `abc`.
fn explain_duration_error(text: &str, error: &humantime::DurationError) -> String {
    use humantime::DurationError::{InvalidCharacter, NumberExpected};
    match error {
        InvalidCharacter(_) | NumberExpected(_) => format!("{text:?} is not a duration"),
        other => other.to_string(),
    }
}

/// Says that the port is missing when `addr` has none: std reports
/// `127.0.0.1`, `[::1]` or `localhost` only as "invalid socket address".
/// Other errors pass unchanged.
pub fn explain_address_error(addr: &str, error: io::Error) -> io::Error {
    let lacks_port = addr.parse::<IpAddr>().is_ok()
        || (addr.starts_with('[') && addr.ends_with(']'))
        || !addr.contains(':');
    if error.kind() != ErrorKind::InvalidInput || !lacks_port {
        return error;
    }
    io::Error::new(
        ErrorKind::InvalidInput,
        format!("{error}: the port is missing (expected HOST:PORT, e.g. 127.0.0.1:5005)"),
    )
}

/// A keepalive time: whole seconds from 1s to 32767s, since that is what the
/// kernel takes.
pub fn parse_keepalive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.subsec_nanos() != 0 || !(1..=MAX_KEEPALIVE_SECS).contains(&duration.as_secs()) {
        return Err(format!(
            "must be whole seconds from 1s to {MAX_KEEPALIVE_SECS}s"
        ));
    }
    Ok(duration)
}

/// A user timeout: 0 turns it off; otherwise up to i32::MAX milliseconds.
pub fn parse_user_timeout(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration > MAX_USER_TIMEOUT {
        return Err(format!(
            "must be at most {}",
            humantime::format_duration(MAX_USER_TIMEOUT)
        ));
    }
    Ok(duration)
}

/// The keepalive and user-timeout flags, identical in both binaries.
///
/// The defaults catch a dead network on an idle connection in
/// 10s + 3 x 5s = 25s, well inside the server's 60s idle timeout, so a cut
/// network is told apart from a hung peer.
#[derive(Debug, Clone, clap::Args)]
pub struct KeepaliveArgs {
    /// Idle time before the first TCP keepalive probe (whole seconds)
    #[arg(long, env = "HB_KEEPALIVE_IDLE", default_value = "10s", value_name = "DUR",
          allow_negative_numbers = true, value_parser = parse_keepalive_duration)]
    pub keepalive_idle: Duration,

    /// Time between TCP keepalive probes (whole seconds)
    #[arg(long, env = "HB_KEEPALIVE_INTERVAL", default_value = "5s", value_name = "DUR",
          allow_negative_numbers = true, value_parser = parse_keepalive_duration)]
    pub keepalive_interval: Duration,

    /// Unanswered probes before the connection is dropped
    #[arg(long, env = "HB_KEEPALIVE_COUNT", default_value_t = 3, value_name = "N",
          allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_KEEPALIVE_COUNT)))]
    pub keepalive_count: u32,

    /// Turn TCP keepalive off (and the default user timeout with it)
    #[arg(long, env = "HB_NO_KEEPALIVE")]
    pub no_keepalive: bool,

    /// TCP_USER_TIMEOUT (Linux): drop a connection whose sent data stays
    /// unacknowledged this long [default: keepalive idle + interval x count,
    /// off with --no-keepalive; 0 turns it off]
    #[arg(long, env = "HB_USER_TIMEOUT", value_name = "DUR", allow_negative_numbers = true,
          value_parser = parse_user_timeout)]
    pub user_timeout: Option<Duration>,
}

impl KeepaliveArgs {
    /// The socket options these flags ask for.
    pub fn socket_options(&self) -> SocketOptions {
        let keepalive = (!self.no_keepalive).then_some(Keepalive {
            idle: self.keepalive_idle,
            interval: self.keepalive_interval,
            count: self.keepalive_count,
        });
        let user_timeout = match self.user_timeout {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => keepalive.map(|k| k.detection_time()),
        };
        SocketOptions {
            keepalive,
            user_timeout,
        }
    }
}

/// Describes socket options for the start-up log line.
pub fn describe(options: &SocketOptions) -> String {
    let keepalive = match options.keepalive {
        Some(k) => format!(
            "keepalive idle {} interval {} count {} (dead network noticed after {})",
            humantime::format_duration(k.idle),
            humantime::format_duration(k.interval),
            k.count,
            humantime::format_duration(k.detection_time())
        ),
        None => "keepalive off".to_string(),
    };
    let user_timeout = match options.user_timeout {
        Some(_) if !crate::sockopt::USER_TIMEOUT_SUPPORTED => {
            "user timeout unsupported on this OS (not set)".to_string()
        }
        Some(d) => format!("user timeout {}", humantime::format_duration(d)),
        None => "user timeout off".to_string(),
    };
    format!("{keepalive}; {user_timeout}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        keepalive: KeepaliveArgs,
    }

    fn options(args: &[&str]) -> SocketOptions {
        let argv = std::iter::once("test").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .unwrap()
            .keepalive
            .socket_options()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_duration("-5s"),
            Err("must not be negative".to_string())
        );
        assert!(parse_duration("100y").unwrap_err().contains("too long"));
        assert!(parse_duration("99999999999999999999999").is_err());
    }

    #[test]
    fn durations_are_displayed_to_the_millisecond() {
        let show = |nanos: u64| display_duration(Duration::from_nanos(nanos));
        assert_eq!(show(50_000_092_578), "50s");
        assert_eq!(show(1_300_000_000), "1.3s");
        assert_eq!(show(250_400_000), "0.25s");
        assert_eq!(show(1_999_600_000), "2s");
        assert_eq!(show(10_012_000_000), "10.012s");
        assert_eq!(show(0), "0s");
    }

    #[test]
    fn keepalive_durations_are_whole_seconds_in_kernel_range() {
        assert!(parse_keepalive_duration("0").is_err());
        assert!(parse_keepalive_duration("1500ms").is_err());
        assert!(parse_keepalive_duration("32768").is_err());
        assert_eq!(
            parse_keepalive_duration("32767"),
            Ok(Duration::from_secs(32767))
        );
    }

    #[test]
    fn default_user_timeout_follows_keepalive() {
        let o = options(&[]);
        assert_eq!(
            o.keepalive.unwrap().detection_time(),
            Duration::from_secs(25)
        );
        assert_eq!(o.user_timeout, Some(Duration::from_secs(25)));
        assert_eq!(options(&["--user-timeout", "0"]).user_timeout, None);
        let off = options(&["--no-keepalive"]);
        assert_eq!((off.keepalive, off.user_timeout), (None, None));
        let explicit = options(&["--no-keepalive", "--user-timeout", "3s"]);
        assert_eq!(explicit.user_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn keepalive_count_must_be_in_range() {
        let parse = |n: &str| Cli::try_parse_from(["test", "--keepalive-count", n]).is_ok();
        assert!(!parse("0"));
        assert!(parse("1"));
        assert!(parse("127"));
        assert!(!parse("128"));
    }
}
