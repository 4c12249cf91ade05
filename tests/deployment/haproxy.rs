//! A real HAProxy started from deploy/haproxy.cfg (or deploy/haproxy-tls.cfg,
//! TLS passed through), for the tests: the file as shipped with only its
//! addresses, its stats socket's path and (where the machine's hard
//! open-file limit is lower than HAProxy needs for it) its `maxconn`
//! changed.

use super::common::PATIENCE;
use super::common::require;
use super::support::free_port;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const SHIPPED: &str = include_str!("../../deploy/haproxy.cfg");
const SHIPPED_TLS: &str = include_str!("../../deploy/haproxy-tls.cfg");

/// Which PROXY protocol version HAProxy sends the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// `send-proxy`: the text header.
    V1,
    /// `send-proxy-v2`, as shipped.
    V2,
}

pub struct Haproxy {
    child: Child,
    dir: PathBuf,
    /// Where clients connect.
    pub frontend: SocketAddr,
    stats: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in front of `backends` (hb1, hb2) and waits until it
    /// accepts and both backends are UP. `None` (after the SKIPPED line)
    /// when haproxy is not installed.
    pub fn start(test: &str, backends: [SocketAddr; 2], version: ProxyVersion) -> Option<Haproxy> {
        Self::start_from(test, SHIPPED, backends, version)
    }

    /// As [`start`](Self::start), from deploy/haproxy-tls.cfg: TLS passed
    /// through to backends that terminate it, checked over TLS.
    pub fn start_tls(test: &str, backends: [SocketAddr; 2]) -> Option<Haproxy> {
        Self::start_from(test, SHIPPED_TLS, backends, ProxyVersion::V2)
    }

    fn start_from(
        test: &str,
        shipped: &str,
        backends: [SocketAddr; 2],
        version: ProxyVersion,
    ) -> Option<Haproxy> {
        let program = require(test, "haproxy")?;
        let dir =
            std::env::temp_dir().join(format!("hb-haproxy-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("create HAProxy's directory");
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stats = dir.join("admin.sock");
        let config = adapt(shipped, frontend, backends, &stats, version);
        let config_path = dir.join("haproxy.cfg");
        std::fs::write(&config_path, config).expect("write HAProxy's configuration");
        // HAProxy's alerts and warnings, for failure messages.
        let stderr = std::fs::File::create(dir.join("stderr")).expect("create HAProxy's log");
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn haproxy");
        let haproxy = Haproxy {
            child,
            dir,
            frontend,
            stats,
        };
        haproxy.wait_status("hb1", "UP");
        haproxy.wait_status("hb2", "UP");
        Some(haproxy)
    }

    /// `show stat` on the stats socket: one CSV line per proxy and server.
    pub fn show_stat(&self) -> Option<String> {
        let mut socket = UnixStream::connect(&self.stats).ok()?;
        socket.set_read_timeout(Some(PATIENCE)).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut out = String::new();
        socket.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// A backend server's status in `show stat` (UP, DOWN, "UP 1/2", ...).
    pub fn status(&self, server: &str) -> Option<String> {
        self.stat_field(server, "status")
    }

    /// A backend server's current sessions (`scur`).
    pub fn sessions(&self, server: &str) -> Option<u64> {
        self.stat_field(server, "scur")?.parse().ok()
    }

    /// A column of `server`'s line in `show stat`.
    fn stat_field(&self, server: &str, name: &str) -> Option<String> {
        let stat = self.show_stat()?;
        let header = stat.lines().next()?;
        let column = header
            .trim_start_matches("# ")
            .split(',')
            .position(|field| field == name)?;
        stat.lines()
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"hb_servers") && fields.get(1) == Some(&server))
            .and_then(|fields| Some(fields.get(column)?.to_string()))
    }

    /// Waits until `server`'s status is exactly `status`; returns when.
    pub fn wait_status(&self, server: &str, status: &str) -> Instant {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = Instant::now();
            let current = self.status(server);
            if current.as_deref() == Some(status) {
                return now;
            }
            assert!(
                now < deadline,
                "HAProxy's {server} is {current:?}, not {status}, after {PATIENCE:?}; its stderr: {}",
                std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shipped configuration with the test's addresses.
fn adapt(
    shipped: &str,
    frontend: SocketAddr,
    backends: [SocketAddr; 2],
    stats: &std::path::Path,
    version: ProxyVersion,
) -> String {
    let mut config = shipped
        .replace("bind 127.0.0.1:5005", &format!("bind {frontend}"))
        .replace("bind 127.0.0.1:5443", &format!("bind {frontend}"))
        .replace("hb1 127.0.0.1:5006", &format!("hb1 {}", backends[0]))
        .replace("hb2 127.0.0.1:5007", &format!("hb2 {}", backends[1]))
        .replace("/run/haproxy/hb-admin.sock", &stats.display().to_string());
    if version == ProxyVersion::V1 {
        config = config.replace("send-proxy-v2 ", "send-proxy ");
    }
    // HAProxy needs two descriptors per connection and refuses to start
    // when it cannot have them; a test holds a few hundred at most.
    if let Some(hard) = hard_nofile_limit() {
        let maxconn = (hard.saturating_sub(100) / 2).min(20_000);
        config = config.replace("maxconn 20000", &format!("maxconn {maxconn}"));
    }
    for (needle, what) in [
        (&format!("bind {frontend}"), "the frontend"),
        (&format!("hb1 {}", backends[0]), "backend hb1"),
        (&stats.display().to_string(), "the stats socket"),
    ] {
        assert!(
            config.contains(needle.as_str()),
            "deploy/haproxy.cfg: {what} not found"
        );
    }
    config
}

fn hard_nofile_limit() -> Option<u64> {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}
