#![no_main]
// Checks: hydrogen_ws_protocol::fuzzing::roundtrip.
use hydrogen_ws_protocol::fuzzing::{roundtrip, RoundtripInput};

libfuzzer_sys::fuzz_target!(|input: RoundtripInput| roundtrip(&input));
