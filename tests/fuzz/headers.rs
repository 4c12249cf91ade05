//! The PROXY header reader's proptest target (the property:
//! checks::header).

use super::{checks, config, input, reads, seeds};
use proptest::prelude::*;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_proxy_header_reader(bytes in input(seeds::headers()), reads in reads()) {
        checks::header(&bytes, &reads);
    }
}
