#![no_main]
// Checks: hydrogen_ws_fuzzing::utf8.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hydrogen_ws_fuzzing::utf8(data));
