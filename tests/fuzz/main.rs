//! Fuzz targets for the three parsers that read what a peer sends (issue
//! 17): the line protocol, the PROXY header reader and the metrics request
//! reader. Each is fed inputs split into reads of varying sizes, and must
//! not panic, must keep its buffers within their bounds, and must decide
//! the same whatever the split (checks.rs).
//!
//! Two fuzzers run these checks. Here, proptest: random bytes, or the
//! malformed inputs the other tests already use (seeds.rs) with a few random
//! edits each; `make test` runs `HB_FUZZ_CASES` cases per target (2,000 by
//! default). And the coverage-guided one, cargo-afl (`fuzz/`, `make fuzz`,
//! CI), whose targets include checks.rs and start from seeds.rs.

mod checks;
mod headers;
mod lines;
mod requests;
pub mod seeds;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// Cases per target: `HB_FUZZ_CASES`, else 2,000 (a second or two each).
pub fn config() -> Config {
    let cases = std::env::var("HB_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        // A failure is printed with its input; nothing is written to disk.
        failure_persistence: None,
        ..Config::default()
    }
}

/// A seed with up to six random edits: a byte replaced, inserted or
/// removed, or the rest cut off.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..4), 0..6);
    (prop::sample::select(seeds), edits).prop_map(|(mut bytes, edits)| {
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len().max(1));
            match kind {
                0 if !bytes.is_empty() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                2 if !bytes.is_empty() => {
                    bytes.remove(i);
                }
                3 => bytes.truncate(i),
                _ => {}
            }
        }
        bytes
    })
}

/// Inputs for a target: mutated seeds, two seeds one after the other, or
/// random bytes.
pub fn input(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => mutated(seeds.clone()),
        1 => (mutated(seeds.clone()), mutated(seeds)).prop_map(|(a, b)| [a, b].concat()),
        2 => prop::collection::vec(any::<u8>(), 0..600),
    ]
}

/// The sizes of successive reads, used in turn.
pub fn reads() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..80, 1..6)
}
