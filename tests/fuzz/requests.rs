//! The metrics request reader's proptest target (the property:
//! checks::request).

use super::{checks, config, input, reads, seeds};
use proptest::prelude::*;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_metrics_request_reader(bytes in input(seeds::requests()), reads in reads()) {
        checks::request(&bytes, &reads);
    }
}
