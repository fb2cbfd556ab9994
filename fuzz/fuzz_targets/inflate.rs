#![no_main]
// Checks: hydrogen_ws_fuzzing::inflate.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hydrogen_ws_fuzzing::inflate(data));
