//! cargo-afl target: `checks::lines` on one input.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let (reads, bytes) = tcp_heartbeat_fuzz::split_reads(data);
        tcp_heartbeat_fuzz::checks::lines(bytes, &reads);
    });
}
