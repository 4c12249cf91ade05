//! The PROXY header reader: its buffer never passes 4 KiB, and a header
//! split over reads is decided as the whole bytes are.

use super::{config, input, reads, seeds};
use proptest::prelude::*;
use tcp_heartbeat::server::proxy_header::{self, Decision, HeaderReader, MAX_HEADER};

/// Feeds `bytes` to a reader in reads of `reads` sizes, in turn, until it
/// decides or the bytes run out; how many bytes it took, and its decision.
fn read(bytes: &[u8], reads: &[usize]) -> (usize, Decision) {
    let mut reader = HeaderReader::default();
    let mut fed = 0;
    for &size in reads.iter().cycle() {
        let space = reader.space();
        assert!(!space.is_empty(), "no space left while undecided");
        let n = space.len().min(size).min(bytes.len() - fed);
        if n == 0 {
            return (fed, Ok(None));
        }
        space[..n].copy_from_slice(&bytes[fed..fed + n]);
        fed += n;
        let decision = reader.filled(n);
        assert!(
            reader.capacity() <= MAX_HEADER,
            "buffer of {}",
            reader.capacity()
        );
        if !matches!(decision, Ok(None)) {
            return (fed, decision);
        }
    }
    unreachable!("reads cycle until a decision or the end of the bytes")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_proxy_header_reader(bytes in input(seeds::headers()), reads in reads()) {
        let (fed, decision) = read(&bytes, &reads);
        let taken = &bytes[..fed];
        match (decision, proxy_header::parse(taken)) {
            (Ok(Some((source, early))), Ok(Some(header))) => {
                prop_assert_eq!(source, header.source);
                prop_assert_eq!(&early[..], &taken[header.len..]);
            }
            (Ok(None), Ok(None)) => prop_assert_eq!(fed, bytes.len()),
            (Err(_), Err(_)) => {}
            (split, whole) => prop_assert!(false, "split {:?}, whole {:?}", split, whole),
        }
    }
}
