//! The extension seam, with a toy extension that XORs payloads and claims RSV1: which frames
//! may carry the bits, decoding before UTF-8 validation, its errors, and encoding.

mod common;

use common::{drive, frame_rsv, run, Owned, MASK};
use hydrogen_ws_protocol::{
    encode_masked_frame, Event, Extension, ExtensionError, FrameHeader, OpCode, ProtocolError,
    Role, Session, SessionConfig, Transmit, RSV1, RSV2,
};

const KEY: u8 = 0x5a;

/// XORs every payload byte with `KEY`. So that the error paths can be reached, a received payload
/// whose first byte is 0 is corrupt, and one whose first byte is 1 decodes to twice its length.
#[derive(Debug, Default)]
struct Xor {
    decoded: usize,
}

impl Extension for Xor {
    fn name(&self) -> &str {
        "x-xor"
    }
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ExtensionError> {
        assert_eq!(rsv, RSV1);
        assert!(out.is_empty());
        let copies = match payload.first() {
            Some(0) => return Err(ExtensionError::Invalid),
            Some(1) => 2,
            _ => 1,
        };
        if payload.len() * copies > max {
            return Err(ExtensionError::TooLarge);
        }
        for _ in 0..copies {
            out.extend(payload.iter().map(|b| b ^ KEY));
        }
        self.decoded += 1;
        Ok(())
    }
    fn encode(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, ExtensionError> {
        out.extend(payload.iter().map(|b| b ^ KEY));
        Ok(RSV1)
    }
}

fn xored(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| b ^ KEY).collect()
}

fn with_xor() -> Session {
    Session::with_extension(SessionConfig::default(), Box::new(Xor::default()))
}

#[test]
fn a_message_with_rsv1_is_decoded_by_the_extension() {
    let input = frame_rsv(true, RSV1, OpCode::Text, &xored("héllo".as_bytes()));
    let (events, err) = run(with_xor, &input);
    assert_eq!(err, None);
    assert_eq!(events, [Owned::Text("héllo".into())]);
}

#[test]
fn a_fragmented_message_is_decoded_whole_and_then_checked_as_text() {
    // "é" is split across the fragments, and the raw bytes are not UTF-8 at all.
    let raw = xored("aé b".as_bytes());
    let mut input = frame_rsv(false, RSV1, OpCode::Text, &raw[..2]);
    input.extend(encode_masked_frame(true, OpCode::Ping, MASK, b"p"));
    input.extend(frame_rsv(false, 0, OpCode::Continuation, &raw[2..4]));
    input.extend(frame_rsv(true, 0, OpCode::Continuation, &raw[4..]));
    let (events, err) = run(with_xor, &input);
    assert_eq!(err, None);
    assert_eq!(
        events,
        [Owned::Ping(b"p".to_vec()), Owned::Text("aé b".into())]
    );
}

#[test]
fn a_message_without_rsv1_is_delivered_as_it_came() {
    let mut input = encode_masked_frame(true, OpCode::Binary, MASK, b"plain");
    input.extend(frame_rsv(true, RSV1, OpCode::Binary, &xored(b"xor")));
    input.extend(encode_masked_frame(false, OpCode::Text, MASK, b"pl"));
    input.extend(encode_masked_frame(
        true,
        OpCode::Continuation,
        MASK,
        b"ain",
    ));
    let (events, err) = run(with_xor, &input);
    assert_eq!(err, None);
    assert_eq!(
        events,
        [
            Owned::Binary(b"plain".to_vec()),
            Owned::Binary(b"xor".to_vec()),
            Owned::Text("plain".into()),
        ]
    );
}

#[test]
fn rsv1_without_an_extension_fails_with_1002() {
    let input = frame_rsv(true, RSV1, OpCode::Text, b"x");
    let (events, err) = run(|| Session::new(SessionConfig::default()), &input);
    assert!(events.is_empty());
    assert_eq!(err, Some(ProtocolError::ReservedBits));
    assert_eq!(ProtocolError::ReservedBits.close_code().0, 1002);
}

#[test]
fn rsv2_not_claimed_by_the_extension_fails_with_1002() {
    for make in [with_xor, || Session::new(SessionConfig::default())] {
        let input = frame_rsv(true, RSV2, OpCode::Binary, b"x");
        let (events, err) = run(make, &input);
        assert!(events.is_empty());
        assert_eq!(err, Some(ProtocolError::ReservedBits));
    }
    let input = frame_rsv(true, RSV1 | RSV2, OpCode::Binary, b"x");
    assert_eq!(run(with_xor, &input).1, Some(ProtocolError::ReservedBits));
}

#[test]
fn rsv1_on_a_continuation_frame_fails_with_1002() {
    let mut input = frame_rsv(false, RSV1, OpCode::Binary, &xored(b"a"));
    input.extend(frame_rsv(true, RSV1, OpCode::Continuation, &xored(b"b")));
    let (events, err) = run(with_xor, &input);
    assert!(events.is_empty());
    assert_eq!(err, Some(ProtocolError::ExtensionBitsMisplaced));
    assert_eq!(ProtocolError::ExtensionBitsMisplaced.close_code().0, 1002);
    // Also when the message itself was not transformed.
    let mut input = encode_masked_frame(false, OpCode::Binary, MASK, b"a");
    input.extend(frame_rsv(true, RSV1, OpCode::Continuation, b"b"));
    assert_eq!(
        run(with_xor, &input).1,
        Some(ProtocolError::ExtensionBitsMisplaced)
    );
}

#[test]
fn rsv1_on_a_control_frame_fails_with_1002() {
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let input = frame_rsv(true, RSV1, op, b"");
        assert_eq!(
            run(with_xor, &input).1,
            Some(ProtocolError::ExtensionBitsMisplaced),
            "{op:?}"
        );
    }
}

#[test]
fn decoded_text_must_be_utf8() {
    let input = frame_rsv(true, RSV1, OpCode::Text, &xored(b"\xff"));
    assert_eq!(run(with_xor, &input).1, Some(ProtocolError::InvalidUtf8));
}

#[test]
fn the_extensions_errors_fail_the_connection() {
    // A payload starting with 0: the toy calls that corrupt (1007).
    let input = frame_rsv(true, RSV1, OpCode::Binary, b"\0x");
    let mut s = with_xor();
    let (_, err) = drive(&mut s, &input, &[]);
    let err = err.map(|e| e.0);
    assert_eq!(err, Some(ProtocolError::ExtensionPayload));
    assert_eq!(ProtocolError::ExtensionPayload.close_code().0, 1007);
    assert_eq!(
        s.poll_transmit(),
        Some(Transmit::Close {
            code: Some(ProtocolError::ExtensionPayload.close_code()),
            reason: ProtocolError::ExtensionPayload.reason(),
        })
    );
    // Within the message size limit as received, over it once decoded (1009).
    let make = || {
        let config = SessionConfig {
            max_message_size: 4,
            ..Default::default()
        };
        Session::with_extension(config, Box::new(Xor::default()))
    };
    let mut input = frame_rsv(false, RSV1, OpCode::Binary, &xored(b"ab"));
    input.extend(frame_rsv(true, 0, OpCode::Continuation, &xored(b"cd")));
    assert_eq!(
        run(make, &input),
        (vec![Owned::Binary(b"abcd".to_vec())], None)
    );
    let mut input = frame_rsv(false, RSV1, OpCode::Binary, b"\x01a");
    input.extend(frame_rsv(true, 0, OpCode::Continuation, b"bc"));
    assert_eq!(run(make, &input).1, Some(ProtocolError::MessageTooLarge));
    assert_eq!(
        ProtocolError::from(ExtensionError::TooLarge),
        ProtocolError::MessageTooLarge
    );
}

#[test]
fn messages_after_our_close_are_not_decoded() {
    let mut s = with_xor();
    assert!(s.close_sent());
    let input = frame_rsv(true, RSV1, OpCode::Binary, b"\0x");
    let (events, err) = drive(&mut s, &input, &[]);
    assert!(events.is_empty());
    assert!(err.is_none());
}

#[test]
fn without_an_extension_encode_message_returns_the_payload_itself() {
    let mut s = Session::new(SessionConfig::default());
    let payload = b"hello".to_vec();
    let mut scratch = Vec::new();
    let (header, wire) = s
        .encode_message(OpCode::Text, &payload, &mut scratch)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header, FrameHeader::new(true, OpCode::Text, None, 5));
    assert_eq!(wire.as_ptr(), payload.as_ptr());
    assert_eq!(scratch.capacity(), 0);
}

#[test]
fn encode_message_goes_through_the_extension_and_back() {
    let mut server = with_xor();
    let mut scratch = vec![1, 2, 3];
    let (header, wire) = server
        .encode_message(OpCode::Binary, b"round trip", &mut scratch)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header.rsv, RSV1);
    assert_eq!(header.len, 10);
    assert_eq!(wire, xored(b"round trip"));
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(wire);
    // The free function does the same with any instance (a server's writer may hold its own).
    let mut writer_side = Xor::default();
    let mut scratch2 = Vec::new();
    let (header2, wire2) = hydrogen_ws_protocol::encode_message(
        Some(&mut writer_side),
        OpCode::Binary,
        b"round trip",
        &mut scratch2,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((header2, wire2), (header, wire));
    // Control frames are never transformed.
    let mut control = Vec::new();
    let (ping, ping_payload) = server
        .encode_message(OpCode::Ping, b"p", &mut control)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((ping.rsv, ping_payload), (0, &b"p"[..]));

    let config = SessionConfig {
        role: Role::Client,
        ..Default::default()
    };
    let mut client = Session::with_extension(config, Box::new(Xor::default()));
    assert_eq!(client.extension().map(|e| e.name()), Some("x-xor"));
    let len = bytes.len();
    match client.read(&mut bytes) {
        Ok((n, Event::Message(m))) => {
            assert_eq!(n, len);
            assert_eq!(m.as_bytes(), b"round trip");
        }
        other => panic!("{other:?}"),
    }
}
