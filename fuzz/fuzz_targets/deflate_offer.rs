#![no_main]
// Checks: hydrogen_ws_fuzzing::deflate_offer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hydrogen_ws_fuzzing::deflate_offer(data));
