#![no_main]
// Checks: hydrogen_ws_fuzzing::session.
use hydrogen_ws_fuzzing::{session, SessionInput};

libfuzzer_sys::fuzz_target!(|input: SessionInput| session(&input));
