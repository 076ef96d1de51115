//! Config loading on arbitrary text: never a panic, errors shaped `file:line:col: ...`.
#![no_main]

use hookrunner_fuzz::oracles::check_config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // `${file:...}` and `${credential:...}` read files the operator names
    // (a trusted config); a fuzzer naming /dev/zero would only test the disk.
    if text.contains("file:") || text.contains("credential:") {
        return;
    }
    check_config(text);
});
