//! Baseline for `make bench`: the echo protocol on tokio, the server a user
//! would likely pick instead of a thread per connection.
//!
//! One task per connection on tokio's multi-threaded runtime (one worker per
//! core), the same `LineHandler` and read chunk as hb-server, TCP_NODELAY,
//! no heartbeat tracking. Prints `listening on ADDR` like hb-server.
//!
//! `cargo run --release --example echo_tokio -- --listen 127.0.0.1:0`

use clap::Parser;
use std::io;
use std::net::SocketAddr;
use tcp_heartbeat::protocol::LineHandler;
use tcp_heartbeat::server::connection::READ_CHUNK;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:5007")]
    listen: SocketAddr,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    tcp_heartbeat::fdlimit::raise_nofile_limit()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("tokio-echo-worker")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // hb-server's bind, for the same 4096 backlog.
        let listener = TcpListener::from_std({
            let l = tcp_heartbeat::server::bind(args.listen)?;
            l.set_nonblocking(true)?;
            l
        })?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(stream));
        }
    })
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut lines = LineHandler::default();
    let mut input = vec![0u8; READ_CHUNK];
    let mut replies = Vec::with_capacity(READ_CHUNK + 16);
    loop {
        let n = stream.read(&mut input).await?;
        if n == 0 {
            break;
        }
        replies.clear();
        lines.feed(&input[..n], &mut replies);
        stream.write_all(&replies).await?;
    }
    replies.clear();
    lines.finish(&mut replies);
    stream.write_all(&replies).await
}
