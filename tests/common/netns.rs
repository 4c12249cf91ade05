//! A private network for the fault tests: two Linux network namespaces, one
//! for the server and one for the client, joined by a veth pair, so a test
//! can cut a real link without touching any interface of the host.
//!
//! Each [`Lab`] makes its own pair of namespaces named after the test
//! process and a counter, so tests run in parallel (and beside other test
//! processes) without clashing; the addresses (10.77.0.1 and 10.77.0.2/30)
//! exist only inside them. Dropping the lab deletes both namespaces, which
//! destroys the veth pair with them, even when the test has panicked.
//!
//! Cutting the network of one side: its address is removed (and with it its
//! only route). The other side, the one that must notice, is left alone: its
//! link stays up with carrier and its neighbour entry stays valid, so its
//! packets leave as before and vanish at the far end, which no longer owns
//! the address and has no route to answer from: no RST, no ICMP, nothing
//! back, as when a cable is pulled further down the path. (Setting the far
//! veth end down instead would drop carrier on the near end too, and the
//! near kernel would then fail its own transmissions locally: data it wrote
//! after the cut would never count as in flight, and TCP would zero-window
//! probe instead of retransmitting, which is not what a cut network does.)
//!
//! This needs root and iproute2 (`ip`, `ss`). Without them a test is skipped
//! with a message on stderr saying why; under CI (`CI` set) it fails instead,
//! since CI is expected to have both.

use super::{PATIENCE, ServerProcess};
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// The server's address inside its namespace.
pub const SERVER_IP: &str = "10.77.0.1";
/// The client's address inside its namespace.
pub const CLIENT_IP: &str = "10.77.0.2";
const SERVER_IF: &str = "hb-s";
const CLIENT_IF: &str = "hb-c";
/// Prefix of every namespace these tests make, used to clean up after a
/// test process that was killed before its guards ran.
const NS_PREFIX: &str = "hbt-";

/// Which end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// Two namespaces joined by a veth pair; deleted on drop.
pub struct Lab {
    server_ns: String,
    client_ns: String,
}

/// Tells that `test` did not run and why, in a way that shows with
/// `cargo test` (direct writes to stderr are not captured, unlike
/// `eprintln!`); under CI a missing prerequisite is a failure.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: cannot run under CI: {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Whether `program` runs at all (found and executable).
pub fn have(program: &str, version_flag: &str) -> bool {
    Command::new(program)
        .arg(version_flag)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip")
}

fn run_ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Lab {
    /// A fresh pair of namespaces with the link up, or `None` (after saying
    /// why, see [`skip`]) when this machine cannot make one.
    pub fn new(test: &str) -> Option<Lab> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            skip(test, "needs root to create network namespaces");
            return None;
        }
        if !have("ip", "-V") {
            skip(test, "needs `ip` (Debian package iproute2)");
            return None;
        }
        remove_stale_namespaces();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("{NS_PREFIX}{}-{n}", std::process::id());
        let lab = Lab {
            server_ns: format!("{base}-s"),
            client_ns: format!("{base}-c"),
        };
        let out = run(&["netns", "add", &lab.server_ns]);
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            skip(test, &format!("cannot create a namespace: {}", why.trim()));
            return None;
        }
        run_ok(&["netns", "add", &lab.client_ns]);
        run_ok(&[
            "link",
            "add",
            SERVER_IF,
            "netns",
            &lab.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            CLIENT_IF,
            "netns",
            &lab.client_ns,
        ]);
        for (ns, dev, ip) in [
            (&lab.server_ns, SERVER_IF, SERVER_IP),
            (&lab.client_ns, CLIENT_IF, CLIENT_IP),
        ] {
            run_ok(&["-n", ns, "addr", "add", &format!("{ip}/30"), "dev", dev]);
            run_ok(&["-n", ns, "link", "set", "dev", dev, "up"]);
            // Loopback too, for what a side serves to itself (metrics).
            run_ok(&["-n", ns, "link", "set", "dev", "lo", "up"]);
        }
        Some(lab)
    }

    /// A fresh lab whose client side is behind a stateful firewall that
    /// forgets an established connection after `timeout_secs` of silence
    /// and then black-holes it: conntrack's established timeout set to it,
    /// mid-stream pickup off (`nf_conntrack_tcp_loose=0`), and packets
    /// conntrack cannot place (`ct state invalid`) dropped both ways. So
    /// a packet after the silence vanishes without a word, as behind a NAT
    /// that dropped its mapping. The sysctls are the client namespace's
    /// own. Needs nft (Debian package nftables) besides what [`Lab::new`]
    /// needs; `None` after saying why when something is missing.
    pub fn with_black_hole(test: &str, timeout_secs: u32) -> Option<Lab> {
        let lab = Lab::new(test)?;
        if !have("nft", "--version") {
            skip(test, "nft not found (Debian package nftables)");
            return None;
        }
        let rules = "table inet hb_black_hole {\n\
             chain input { type filter hook input priority 0; ct state invalid drop; }\n\
             chain output { type filter hook output priority 0; ct state invalid drop; }\n\
             }\n";
        let mut nft = lab
            .command(Side::Client, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nft");
        let mut stdin = nft.stdin.take().expect("nft stdin piped");
        stdin.write_all(rules.as_bytes()).expect("write nft rules");
        drop(stdin);
        let out = nft.wait_with_output().expect("wait for nft");
        assert!(
            out.status.success(),
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        // After the rules: they load conntrack into the namespace, which
        // is what makes its sysctls exist there.
        let established =
            format!("net.netfilter.nf_conntrack_tcp_timeout_established={timeout_secs}");
        let out = lab
            .command(Side::Client, "sysctl")
            .args([
                "-q",
                "-w",
                &established,
                "net.netfilter.nf_conntrack_tcp_loose=0",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run sysctl");
        assert!(
            out.status.success(),
            "sysctl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Some(lab)
    }

    fn ns(&self, side: Side) -> &str {
        match side {
            Side::Server => &self.server_ns,
            Side::Client => &self.client_ns,
        }
    }

    /// `program` to be run inside `side`'s namespace. `ip netns exec` execs
    /// the program in place, so the child's pid is the program's.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.ns(side), program]);
        command
    }

    /// hb-server in the server's namespace, listening on [`SERVER_IP`].
    pub fn start_server(&self, args: &[&str]) -> ServerProcess {
        let command = self.command(Side::Server, env!("CARGO_BIN_EXE_hb-server"));
        ServerProcess::spawn(command, &format!("{SERVER_IP}:0"), args)
    }

    /// A connection from the client's namespace.
    pub fn connect(&self, addr: SocketAddr) -> TcpStream {
        self.connect_from(Side::Client, addr)
    }

    /// A connection from `side`'s namespace. The socket is made by a
    /// short-lived thread that has entered that namespace (setns changes
    /// only the calling thread); the socket stays there for its lifetime.
    pub fn connect_from(&self, side: Side, addr: SocketAddr) -> TcpStream {
        let path = format!("/var/run/netns/{}", self.ns(side));
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).expect("open the namespace");
                    // SAFETY: a valid descriptor of a network namespace; only
                    // this thread moves, and it ends right after connecting.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    TcpStream::connect_timeout(&addr, PATIENCE).expect("connect from namespace")
                })
                .join()
                .expect("connecting thread panicked")
        })
    }

    /// Cuts `side`'s network: from then on every packet either way is lost
    /// without a word (see the module doc for why this way).
    pub fn cut(&self, side: Side) {
        let dev = match side {
            Side::Server => SERVER_IF,
            Side::Client => CLIENT_IF,
        };
        run_ok(&["-n", self.ns(side), "addr", "flush", "dev", dev]);
    }

    /// `ss -tnoi` inside `side`'s namespace: established TCP sockets with
    /// their timers (`timer:(on,...)` is the retransmission timer,
    /// `timer:(keepalive,...)` keepalive) and retransmission counts.
    pub fn sockets(&self, side: Side) -> String {
        let out = self
            .command(side, "ss")
            .args(["-tnoiH", "state", "established"])
            .stdin(Stdio::null())
            .output()
            .expect("run ss");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of the veth pair, and with it
        // the other end. Errors are reported, never panicked on in drop.
        for ns in [&self.server_ns, &self.client_ns] {
            let out = run(&["netns", "del", ns]);
            if !out.status.success() {
                let _ = writeln!(
                    std::io::stderr(),
                    "could not delete namespace {ns}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

/// Deletes namespaces left by test processes that no longer exist (killed
/// before their guards ran), so they do not pile up.
fn remove_stale_namespaces() {
    let listing = run(&["netns", "list"]);
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["netns", "del", name]);
        }
    }
}
