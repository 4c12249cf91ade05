//! The line protocol's proptest target (the property: checks::lines).

use super::{checks, config, input, reads, seeds};
use proptest::prelude::*;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_line_protocol(bytes in input(seeds::lines()), reads in reads()) {
        checks::lines(&bytes, &reads);
    }
}
