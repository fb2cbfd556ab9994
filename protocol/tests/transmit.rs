//! The replies the session owes (`Session::poll_transmit`): pongs, the close echo, the close
//! after an error, and what our own close cancels.

use hydrogen_ws_protocol::{
    encode_masked_frame, CloseCode, Event, OpCode, ProtocolError, Session, SessionConfig,
    SessionState, Transmit,
};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_masked_frame(fin, op, MASK, payload)
}

fn server() -> Session {
    Session::new(SessionConfig::default())
}

/// Read all of `input`; returns the error, if any.
fn read_all(s: &mut Session, input: &[u8]) -> Option<ProtocolError> {
    let mut buf = input.to_vec();
    let mut pos = 0;
    loop {
        match s.read(&mut buf[pos..]) {
            Ok((0, Event::None)) => return None,
            Ok((n, _)) => pos += n,
            Err(e) => return Some(e),
        }
    }
}

fn drain(s: &mut Session) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn pong(payload: &[u8]) -> Transmit {
    Transmit::Pong(hydrogen_ws_protocol::ControlPayload::new(payload).unwrap_or_default())
}

fn close(code: Option<u16>, reason: &'static str) -> Transmit {
    Transmit::Close {
        code: code.map(CloseCode),
        reason,
    }
}

#[test]
fn a_ping_owes_a_pong_with_its_payload() {
    let mut s = server();
    assert_eq!(read_all(&mut s, &frame(true, OpCode::Ping, b"abc")), None);
    assert_eq!(drain(&mut s), [pong(b"abc")]);
    assert_eq!(s.state(), SessionState::Open);
    let mut max = [0u8; 125];
    max.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    assert_eq!(read_all(&mut s, &frame(true, OpCode::Ping, &max)), None);
    assert_eq!(drain(&mut s), [pong(&max)]);
    assert_eq!(read_all(&mut s, &frame(true, OpCode::Ping, b"")), None);
    assert_eq!(drain(&mut s), [pong(b"")]);
}

#[test]
fn a_pong_owes_nothing() {
    let mut s = server();
    assert_eq!(read_all(&mut s, &frame(true, OpCode::Pong, b"abc")), None);
    assert_eq!(drain(&mut s), []);
}

#[test]
fn pings_not_yet_answered_owe_only_the_latest_pong() {
    let mut s = server();
    let mut input = frame(true, OpCode::Ping, b"1");
    input.extend(frame(true, OpCode::Ping, b"2"));
    assert_eq!(read_all(&mut s, &input), None);
    assert_eq!(drain(&mut s), [pong(b"2")]);
}

#[test]
fn a_ping_between_fragments_is_answered() {
    let mut s = server();
    let mut input = frame(false, OpCode::Text, b"a");
    input.extend(frame(true, OpCode::Ping, b"p"));
    input.extend(frame(true, OpCode::Continuation, b"b"));
    assert_eq!(read_all(&mut s, &input), None);
    assert_eq!(drain(&mut s), [pong(b"p")]);
}

#[test]
fn no_pong_after_our_close() {
    let mut s = server();
    assert!(s.close_sent());
    assert_eq!(read_all(&mut s, &frame(true, OpCode::Ping, b"late")), None);
    assert_eq!(drain(&mut s), []);
    // A pong still owed when our own close goes out is dropped.
    let mut s = server();
    assert_eq!(read_all(&mut s, &frame(true, OpCode::Ping, b"x")), None);
    assert!(s.close_sent());
    assert_eq!(drain(&mut s), []);
}

#[test]
fn the_peers_close_is_echoed_and_completes_the_handshake() {
    let mut s = server();
    let payload = hydrogen_ws_protocol::close_payload(CloseCode(4000), "bye");
    assert_eq!(
        read_all(&mut s, &frame(true, OpCode::Close, &payload)),
        None
    );
    assert_eq!(s.state(), SessionState::CloseReceived);
    assert_eq!(s.poll_transmit(), Some(close(Some(4000), "")));
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(s.poll_transmit(), None);
    assert!(!s.close_sent());
}

#[test]
fn an_empty_close_is_answered_with_an_empty_close() {
    let mut s = server();
    assert_eq!(read_all(&mut s, &frame(true, OpCode::Close, b"")), None);
    let answer = s.poll_transmit();
    assert_eq!(answer, Some(close(None, "")));
    let mut wire = Vec::new();
    if let Some(t) = answer {
        t.append_frame(None, &mut wire);
    }
    assert_eq!(wire, b"\x88\x00");
}

#[test]
fn a_close_answering_ours_owes_nothing() {
    let mut s = server();
    assert!(s.close_sent());
    assert_eq!(
        read_all(&mut s, &frame(true, OpCode::Close, b"\x03\xe8")),
        None
    );
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(drain(&mut s), []);
}

#[test]
fn our_own_close_replaces_the_echo() {
    let mut s = server();
    assert_eq!(
        read_all(&mut s, &frame(true, OpCode::Close, b"\x03\xe8")),
        None
    );
    assert!(s.close_sent());
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(drain(&mut s), []);
}

#[test]
fn a_ping_then_a_close_owe_the_pong_first() {
    let mut s = server();
    let mut input = frame(true, OpCode::Ping, b"p");
    input.extend(frame(true, OpCode::Close, b"\x03\xe9"));
    assert_eq!(read_all(&mut s, &input), None);
    assert_eq!(drain(&mut s), [pong(b"p"), close(Some(1001), "")]);
}

#[test]
fn an_error_owes_the_close_it_maps_to() {
    let bad_utf8 = frame(true, OpCode::Text, b"\xff");
    let mut reserved = frame(true, OpCode::Binary, b"x");
    reserved[0] |= 0x20;
    let too_big = frame(true, OpCode::Binary, &vec![0u8; (1 << 20) + 1]);
    let bad_code = frame(true, OpCode::Close, b"\x03\xed");
    let mut fragmented_text = frame(false, OpCode::Text, b"ok");
    fragmented_text.extend(frame(true, OpCode::Continuation, b"\xc3"));
    let cases = [
        (bad_utf8, ProtocolError::InvalidUtf8, 1007),
        (reserved, ProtocolError::ReservedBits, 1002),
        (too_big, ProtocolError::FrameTooLarge, 1009),
        (bad_code, ProtocolError::InvalidCloseCode(1005), 1002),
        (fragmented_text, ProtocolError::InvalidUtf8, 1007),
    ];
    for (input, error, code) in cases {
        let mut s = server();
        assert_eq!(read_all(&mut s, &input), Some(error));
        assert_eq!(s.state(), SessionState::Closed);
        assert_eq!(
            drain(&mut s),
            [close(Some(code), error.reason())],
            "{error:?}"
        );
        assert!(!s.close_sent());
    }
}

#[test]
fn an_error_after_our_close_owes_nothing() {
    let mut s = server();
    assert!(s.close_sent());
    assert_eq!(
        read_all(&mut s, &frame(true, OpCode::Close, b"\x03")),
        Some(ProtocolError::CloseTooShort)
    );
    assert_eq!(drain(&mut s), []);
}

#[test]
fn an_error_drops_a_pong_not_yet_sent() {
    let mut s = server();
    let mut input = frame(true, OpCode::Ping, b"p");
    input.extend(frame(true, OpCode::Continuation, b"x"));
    assert_eq!(
        read_all(&mut s, &input),
        Some(ProtocolError::UnexpectedContinuation)
    );
    assert_eq!(
        drain(&mut s),
        [close(
            Some(1002),
            ProtocolError::UnexpectedContinuation.reason()
        )]
    );
}
