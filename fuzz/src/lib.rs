//! What the cargo-afl targets share: the checks and seeds of `tests/fuzz`
//! (the same properties the proptest targets check), and how one afl input
//! becomes read sizes and bytes.

#[path = "../../tests/fuzz/checks.rs"]
pub mod checks;
#[path = "../../tests/fuzz/seeds.rs"]
pub mod seeds;

/// Read sizes from an input's first three bytes (1 to 80 each) and the
/// bytes to feed: afl mutates both through one input.
pub fn split_reads(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let (sizes, bytes) = data.split_at(data.len().min(3));
    let mut reads: Vec<usize> = sizes.iter().map(|&b| 1 + usize::from(b) % 80).collect();
    if reads.is_empty() {
        reads.push(1);
    }
    (reads, bytes)
}

/// The read sizes a seed is written with: three prefix bytes giving reads
/// of 7, 16 and 80 bytes.
pub const SEED_READS: [u8; 3] = [6, 15, 79];
