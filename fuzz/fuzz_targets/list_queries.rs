//! The query strings of `GET /tasks` and `GET /deliveries`.
#![no_main]

use hookrunner_fuzz::oracles::check_list_queries;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A query string reaches the handler as text.
    if let Ok(text) = std::str::from_utf8(data) {
        check_list_queries(text, true);
    }
});
