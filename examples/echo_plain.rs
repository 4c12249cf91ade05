//! Baseline for `make bench`: the echo protocol with no heartbeat tracking.
//!
//! Thread per connection with hb-server's stack size and read chunk, the
//! same `LineHandler`, TCP_NODELAY — but no registry, no activity stamp and
//! no reaper, so hb-server's throughput against this one is what tracking
//! costs. Connection threads are detached (a baseline, not a product: it
//! runs until killed). Prints `listening on ADDR` like hb-server.
//!
//! `cargo run --release --example echo_plain -- --listen 127.0.0.1:0`

use clap::Parser;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use tcp_heartbeat::protocol::LineHandler;
use tcp_heartbeat::server;
use tcp_heartbeat::server::connection::READ_CHUNK;

/// hb-server's connection stack size, for a like-for-like comparison.
const STACK_SIZE: usize = 64 * 1024;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:5006")]
    listen: SocketAddr,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    tcp_heartbeat::fdlimit::raise_nofile_limit()?;
    let listener = server::bind(args.listen)?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let spawned = thread::Builder::new()
            .name("plain-conn".into())
            .stack_size(STACK_SIZE)
            .spawn(move || serve(stream));
        if let Err(e) = spawned {
            eprintln!("cannot start a thread: {e}");
        }
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut lines = LineHandler::default();
    let mut input = [0u8; READ_CHUNK];
    let mut replies = Vec::with_capacity(READ_CHUNK + 16);
    loop {
        let n = stream.read(&mut input)?;
        if n == 0 {
            break;
        }
        replies.clear();
        lines.feed(&input[..n], &mut replies);
        stream.write_all(&replies)?;
    }
    replies.clear();
    lines.finish(&mut replies);
    stream.write_all(&replies)
}
