//! What a delivery record keeps of the request's headers
//! (`delivery::record::mask_headers`), and `logging::escape` of each name
//! and value. Input: `Name: value` lines (values are raw bytes).
#![no_main]

use hookrunner_fuzz::oracles::{check_record_headers, split_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (headers, _) = split_request(data);
    check_record_headers(&headers, &["X-Custom-Key"]);
});
