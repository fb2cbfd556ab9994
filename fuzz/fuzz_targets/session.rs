#![no_main]
// Checks: hydrogen_ws_protocol::fuzzing::session.
use hydrogen_ws_protocol::fuzzing::{session, SessionInput};

libfuzzer_sys::fuzz_target!(|input: SessionInput| session(&input));
