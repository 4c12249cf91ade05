//! The metrics request reader: it reads at most 8 KiB, and decides the
//! same whatever the split.

use super::{config, input, reads, seeds};
use proptest::prelude::*;
use std::io::{self, ErrorKind};
use tcp_heartbeat::server::metrics_http::{self, MAX_REQUEST_HEAD, Route};

/// Reads `bytes` in reads of `reads` sizes; the route (or the error's kind)
/// and how many bytes were read.
fn read(bytes: &[u8], reads: &[usize]) -> (Result<Route, ErrorKind>, usize) {
    let mut fed = 0;
    let mut sizes = reads.iter().cycle();
    let route = metrics_http::read_request(|space| {
        let n = space
            .len()
            .min(*sizes.next().unwrap())
            .min(bytes.len() - fed);
        space[..n].copy_from_slice(&bytes[fed..fed + n]);
        fed += n;
        Ok::<_, io::Error>(n)
    });
    (route.map_err(|e| e.kind()), fed)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_metrics_request_reader(bytes in input(seeds::requests()), reads in reads()) {
        let (split, fed) = read(&bytes, &reads);
        prop_assert!(fed <= MAX_REQUEST_HEAD);
        let (whole, _) = read(&bytes, &[MAX_REQUEST_HEAD]);
        prop_assert_eq!(split, whole);
        prop_assert_eq!(metrics_http::route(&bytes[..fed]), split.unwrap_or(Route::Incomplete));
    }
}
