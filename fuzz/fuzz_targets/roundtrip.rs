#![no_main]
// Checks: hydrogen_ws_fuzzing::roundtrip.
use hydrogen_ws_fuzzing::{roundtrip, RoundtripInput};

libfuzzer_sys::fuzz_target!(|input: RoundtripInput| roundtrip(&input));
