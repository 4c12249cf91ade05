//! cargo-afl target: `checks::request` on one input.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let (reads, bytes) = tcp_heartbeat_fuzz::split_reads(data);
        tcp_heartbeat_fuzz::checks::request(bytes, &reads);
    });
}
