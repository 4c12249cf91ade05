//! Writes the afl targets' starting corpus: every seed of tests/fuzz, as
//! `DIR/<target>/<n>`, each after the read-size prefix.

use std::path::Path;
use tcp_heartbeat_fuzz::{SEED_READS, seeds};

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/fuzz/in".into());
    for (target, seeds) in [
        ("lines", seeds::lines()),
        ("headers", seeds::headers()),
        ("requests", seeds::requests()),
    ] {
        let target_dir = Path::new(&dir).join(target);
        std::fs::create_dir_all(&target_dir)?;
        for (n, seed) in seeds.iter().enumerate() {
            std::fs::write(
                target_dir.join(n.to_string()),
                [&SEED_READS[..], seed].concat(),
            )?;
        }
    }
    Ok(())
}
