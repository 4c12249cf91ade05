//! What the deployment tests share beyond tests/common: sockets from a
//! chosen loopback address, EOF watchers, and finding a program.

use socket2::{Domain, Socket, Type};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// A connection to `target` from `source_ip` (any 127.x.y.z works on
/// Linux's loopback), so tests can play clients with distinct addresses.
pub fn connect_from(source_ip: &str, target: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source_ip}:0").parse().expect("source address");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket
        .connect_timeout(&target.into(), Duration::from_secs(5))
        .expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(super::common::PATIENCE))
        .unwrap();
    stream
}

/// Reads `stream` to EOF (or error) in a named thread and sends the moment
/// it ended on `ended`.
pub fn watch_eof(mut stream: TcpStream, ended: crossbeam::channel::Sender<Instant>) {
    thread::Builder::new()
        .name("test-eof".into())
        .spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(1..) = stream.read(&mut buf) {}
            let _ = ended.send(Instant::now());
        })
        .expect("spawn EOF watcher");
}

/// A free port on 127.0.0.1 (bound, read and let go; the kernel does not
/// hand it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
