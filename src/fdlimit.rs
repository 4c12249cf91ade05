//! The process's open-file limit, raised to what the system allows.
//!
//! Every connection costs one descriptor, and a common default soft limit of
//! 1,024 would refuse the server's default 10,000 connections (and the load
//! generator's 10,000+) long before memory or threads run short. The hard
//! limit is the ceiling an unprivileged process may raise itself to, so both
//! `hb-server` and `hb-bench` lift their soft limit to it at start. Windows
//! has no such per-process limit on sockets: there this does nothing.

use std::io;

/// Raises the soft RLIMIT_NOFILE to the hard limit. Returns the soft limit
/// now in force, or `None` where the OS has no such limit.
#[cfg(unix)]
pub fn raise_nofile_limit() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = ceiling(limit.rlim_max);
    if limit.rlim_cur < wanted {
        limit.rlim_cur = wanted;
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on most, not all, Unixes.
    Ok(Some(u64::from(limit.rlim_cur)))
}

/// macOS reports an unlimited hard limit but refuses a soft limit above
/// OPEN_MAX (10,240, from <sys/syslimits.h>).
#[cfg(target_os = "macos")]
fn ceiling(hard: libc::rlim_t) -> libc::rlim_t {
    hard.min(10_240)
}

#[cfg(all(unix, not(target_os = "macos")))]
fn ceiling(hard: libc::rlim_t) -> libc::rlim_t {
    hard
}

/// Windows limits sockets by memory, not by a per-process count.
#[cfg(not(unix))]
pub fn raise_nofile_limit() -> io::Result<Option<u64>> {
    Ok(None)
}
