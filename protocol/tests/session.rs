//! The session: reassembly, control frames between fragments, UTF-8 failing fast, the closing
//! handshake, and every session-level error.

mod common;

use common::{drive, every_byte, Lcg, Owned};
use hydrogen_ws_protocol::{
    close_payload, encode_masked_frame, CloseCode, Event, Message, OpCode, ProtocolError, Role,
    Session, SessionConfig, SessionState,
};
use proptest::prelude::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_masked_frame(fin, op, MASK, payload)
}

fn server() -> Session {
    Session::new(SessionConfig::default())
}

/// Run the input whole, byte by byte, and in pseudo-random pieces; all must agree.
fn run(input: &[u8]) -> (Vec<Owned>, Option<ProtocolError>) {
    let (whole, err) = drive(&mut server(), input, &[]);
    let (bytes, err_b) = drive(&mut server(), input, &every_byte(input.len()));
    assert_eq!(whole, bytes);
    assert_eq!(err.map(|e| e.0), err_b.map(|e| e.0));
    let mut rng = Lcg(input.len() as u64);
    let cuts: Vec<usize> = (0..8)
        .map(|_| rng.next() as usize % (input.len() + 1))
        .collect();
    let (random, err_r) = drive(&mut server(), input, &cuts);
    assert_eq!(whole, random);
    assert_eq!(err.map(|e| e.0), err_r.map(|e| e.0));
    (whole, err.map(|e| e.0))
}

#[test]
fn single_messages() {
    let mut input = frame(true, OpCode::Text, b"Hello");
    input.extend(frame(true, OpCode::Binary, &[0, 1, 2, 255]));
    input.extend(frame(true, OpCode::Text, b""));
    input.extend(frame(true, OpCode::Text, "κόσμε".as_bytes()));
    let (events, err) = run(&input);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Owned::Text("Hello".into()),
            Owned::Binary(vec![0, 1, 2, 255]),
            Owned::Text(String::new()),
            Owned::Text("κόσμε".into()),
        ]
    );
}

#[test]
fn fragmented_with_control_frames_between() {
    let mut input = frame(false, OpCode::Text, b"Hel");
    input.extend(frame(true, OpCode::Ping, b"p1"));
    input.extend(frame(false, OpCode::Continuation, b""));
    input.extend(frame(true, OpCode::Pong, b""));
    input.extend(frame(true, OpCode::Continuation, b"lo"));
    input.extend(frame(false, OpCode::Binary, &[1]));
    input.extend(frame(true, OpCode::Continuation, &[2]));
    let (events, err) = run(&input);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Owned::Ping(b"p1".to_vec()),
            Owned::Pong(vec![]),
            Owned::Text("Hello".into()),
            Owned::Binary(vec![1, 2]),
        ]
    );
}

#[test]
fn utf8_split_across_fragments() {
    let text = "€uro 😀";
    let bytes = text.as_bytes();
    let mut input = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        input.extend(frame(i + 1 == bytes.len(), op, std::slice::from_ref(b)));
    }
    let (events, err) = run(&input);
    assert_eq!(err, None);
    assert_eq!(events, vec![Owned::Text(text.into())]);
}

#[test]
fn invalid_utf8_fails_fast_inside_a_frame() {
    // Autobahn 6.4.x style: one frame sent in pieces; the close must follow the bad piece.
    let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
    let input = frame(true, OpCode::Text, payload);
    let header = input.len() - payload.len();
    let bad_at = header + 11 + 2; // ED A0 is already impossible
    let mut s = server();
    let (_, err) = drive(&mut s, &input, &every_byte(input.len()));
    assert_eq!(err, Some((ProtocolError::InvalidUtf8, bad_at)));
    assert_eq!(s.state(), SessionState::Closed);
    // Also within a fragmented message, and with F4 90 at the end of a piece.
    let mut input = frame(false, OpCode::Text, b"ok\xf4");
    input.extend(frame(true, OpCode::Continuation, b"\x90\x80\x80"));
    let (_, err) = drive(&mut server(), &input, &[]);
    assert_eq!(err.map(|e| e.0), Some(ProtocolError::InvalidUtf8));
    // Truncated at the end of the message.
    let mut input = frame(false, OpCode::Text, b"ok");
    input.extend(frame(true, OpCode::Continuation, b"\xe2\x82"));
    assert_eq!(run(&input).1, Some(ProtocolError::InvalidUtf8));
    // Invalid in a single complete frame (the zero-copy path).
    assert_eq!(
        run(&frame(true, OpCode::Text, b"\xc0\x80")).1,
        Some(ProtocolError::InvalidUtf8)
    );
    // Binary is not validated.
    assert_eq!(run(&frame(true, OpCode::Binary, b"\xc0\x80")).1, None);
}

#[test]
fn close_handshake_initiated_by_peer() {
    let mut input = frame(true, OpCode::Text, b"hi");
    input.extend(frame(
        true,
        OpCode::Close,
        close_payload(CloseCode::NORMAL, "bye").as_bytes(),
    ));
    input.extend(frame(true, OpCode::Text, b"ignored"));
    let mut s = server();
    let (events, err) = drive(&mut s, &input, &[]);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Owned::Text("hi".into()),
            Owned::Close(Some((1000, "bye".into())))
        ]
    );
    assert_eq!(s.state(), SessionState::CloseReceived);
    // Everything after the close is consumed and ignored.
    let mut more = frame(true, OpCode::Ping, b"x");
    let len = more.len();
    assert_eq!(s.read(&mut more).unwrap(), (len, Event::None));
    assert!(s.close_sent());
    assert_eq!(s.state(), SessionState::Closed);
    assert!(!s.close_sent());
}

#[test]
fn close_handshake_initiated_by_us() {
    let mut s = server();
    assert!(s.close_sent());
    assert!(!s.close_sent());
    assert_eq!(s.state(), SessionState::CloseSent);
    let mut input = frame(false, OpCode::Text, b"dis");
    input.extend(frame(true, OpCode::Continuation, b"carded"));
    input.extend(frame(true, OpCode::Binary, b"discarded"));
    input.extend(frame(true, OpCode::Ping, b"still"));
    input.extend(frame(true, OpCode::Close, b""));
    let (events, err) = drive(&mut s, &input, &[]);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![Owned::Ping(b"still".to_vec()), Owned::Close(None)]
    );
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(s.buffered_message_bytes(), 0);
}

#[test]
fn pipelined_frames_then_need_more() {
    let mut input = frame(true, OpCode::Text, b"a");
    input.extend(frame(true, OpCode::Text, b"b"));
    let partial = frame(true, OpCode::Text, b"c");
    input.extend_from_slice(&partial[..3]);
    let mut s = server();
    let mut buf = input.clone();
    let mut pos = 0;
    let mut got = Vec::new();
    loop {
        let (n, ev) = s.read(&mut buf[pos..]).unwrap();
        pos += n;
        match ev {
            Event::Message(Message::Text(t)) => got.push(t.to_owned()),
            Event::None if n == 0 => break,
            _ => {}
        }
    }
    assert_eq!(got, ["a", "b"]);
    assert_eq!(input.len() - pos, 3);
}

#[test]
fn every_session_error_with_its_close_code() {
    let small = SessionConfig {
        role: Role::Server,
        max_frame_size: 100,
        max_message_size: 150,
    };
    let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
        (
            frame(true, OpCode::Continuation, b"x"),
            ProtocolError::UnexpectedContinuation,
            1002,
        ),
        (
            [
                frame(false, OpCode::Text, b"x"),
                frame(true, OpCode::Binary, b"y"),
            ]
            .concat(),
            ProtocolError::ExpectedContinuation,
            1002,
        ),
        (
            [
                frame(false, OpCode::Binary, &[0; 100]),
                frame(true, OpCode::Continuation, &[0; 51]),
            ]
            .concat(),
            ProtocolError::MessageTooLarge,
            1009,
        ),
        (
            frame(true, OpCode::Binary, &[0; 101]),
            ProtocolError::FrameTooLarge,
            1009,
        ),
        (
            frame(true, OpCode::Text, b"\xff"),
            ProtocolError::InvalidUtf8,
            1007,
        ),
        (
            frame(true, OpCode::Close, b"\x03\xe8\xff"),
            ProtocolError::InvalidUtf8,
            1007,
        ),
        (
            frame(true, OpCode::Close, b"\x03\xed"),
            ProtocolError::InvalidCloseCode(1005),
            1002,
        ),
        (
            frame(true, OpCode::Close, b"\x03\xe7"),
            ProtocolError::InvalidCloseCode(999),
            1002,
        ),
        (
            frame(true, OpCode::Close, b"\x13\x88"),
            ProtocolError::InvalidCloseCode(5000),
            1002,
        ),
        (
            frame(true, OpCode::Close, b"\x03"),
            ProtocolError::CloseTooShort,
            1002,
        ),
        (
            frame(false, OpCode::Ping, b""),
            ProtocolError::ControlFragmented,
            1002,
        ),
        (
            frame(true, OpCode::Ping, &[0; 126]),
            ProtocolError::ControlTooLong,
            1002,
        ),
        (
            encode_masked_frame(true, OpCode::from_u8(2).unwrap(), MASK, b"")
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 0 { b | 0x40 } else { b })
                .collect(),
            ProtocolError::ReservedBits,
            1002,
        ),
        (
            vec![0x85, 0x80, 0, 0, 0, 0],
            ProtocolError::ReservedOpcode(5),
            1002,
        ),
        (
            hydrogen_ws_protocol::encode_frame(true, OpCode::Text, b"x"),
            ProtocolError::Unmasked,
            1002,
        ),
    ];
    for (input, want, code) in cases {
        for cuts in [vec![], every_byte(input.len())] {
            let mut s = Session::new(small);
            let (_, err) = drive(&mut s, &input, &cuts);
            assert_eq!(err.map(|e| e.0), Some(want), "{input:02x?}");
            assert_eq!(s.state(), SessionState::Closed);
            // After an error, input is ignored.
            let mut more = frame(true, OpCode::Text, b"x");
            assert_eq!(s.read(&mut more).unwrap().1, Event::None);
        }
        assert_eq!(want.close_code(), CloseCode(code));
    }
    // A client session refuses masked frames.
    let mut c = Session::new(SessionConfig {
        role: Role::Client,
        ..SessionConfig::default()
    });
    let (_, err) = drive(&mut c, &frame(true, OpCode::Text, b"x"), &[]);
    assert_eq!(err.map(|e| e.0), Some(ProtocolError::Masked));
    assert_eq!(
        ProtocolError::Masked.close_code(),
        CloseCode::PROTOCOL_ERROR
    );
    assert_eq!(
        ProtocolError::LengthOverflow.close_code(),
        CloseCode::PROTOCOL_ERROR
    );
    assert_eq!(
        ProtocolError::NonMinimalLength.close_code(),
        CloseCode::PROTOCOL_ERROR
    );
}

#[test]
fn message_too_large_is_detected_at_the_header() {
    let config = SessionConfig {
        max_message_size: 10,
        ..SessionConfig::default()
    };
    let input = frame(true, OpCode::Binary, &[0; 11]);
    let mut s = Session::new(config);
    let (_, err) = drive(&mut s, &input, &every_byte(input.len()));
    // Header is 2 + 4 bytes; no payload byte needed.
    assert_eq!(err, Some((ProtocolError::MessageTooLarge, 6)));
}

#[test]
fn client_role_reads_unmasked_frames() {
    let mut c = Session::new(SessionConfig {
        role: Role::Client,
        ..SessionConfig::default()
    });
    assert_eq!(c.config().role, Role::Client);
    let mut input = hydrogen_ws_protocol::encode_frame(true, OpCode::Text, b"Hello");
    let (n, ev) = c.read(&mut input).unwrap();
    assert_eq!((n, ev), (7, Event::Message(Message::Text("Hello"))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fragmented_messages_with_pings(
        text in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..2000),
        s in "\\PC{0,300}",
        frag_cuts in prop::collection::vec(0usize..2000, 0..6),
        ping_after in prop::collection::vec(any::<bool>(), 8),
        read_cuts in prop::collection::vec(0usize..3000, 0..20),
    ) {
        let payload: Vec<u8> = if text { s.clone().into_bytes() } else { body };
        let mut bounds: Vec<usize> = frag_cuts.into_iter().filter(|&c| c < payload.len()).collect();
        bounds.sort_unstable();
        bounds.dedup();
        bounds.push(payload.len());
        let mut input = Vec::new();
        let mut start = 0;
        let mut pings = Vec::new();
        for (i, &end) in bounds.iter().enumerate() {
            let op = match (i, text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            input.extend(frame(i + 1 == bounds.len(), op, &payload[start..end]));
            start = end;
            if ping_after.get(i).copied().unwrap_or(false) {
                let p = format!("ping{i}").into_bytes();
                input.extend(frame(true, OpCode::Ping, &p));
                pings.push(Owned::Ping(p));
            }
        }
        let (events, err) = drive(&mut server(), &input, &read_cuts);
        prop_assert_eq!(err, None);
        let message = if text { Owned::Text(s) } else { Owned::Binary(payload) };
        // Pings come in order; the message comes when its last fragment arrives.
        let mut expected = pings.clone();
        let last_ping_in_message = ping_after.iter().take(bounds.len() - 1).filter(|b| **b).count();
        expected.insert(last_ping_in_message, message);
        prop_assert_eq!(events, expected);
    }
}

#[test]
fn a_message_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
    let config = SessionConfig {
        role: Role::Server,
        max_frame_size: 100,
        max_message_size: 150,
    };
    let exactly = [
        frame(false, OpCode::Binary, &[1; 100]),
        frame(true, OpCode::Continuation, &[2; 50]),
    ]
    .concat();
    let (events, err) = drive(&mut Session::new(config), &exactly, &[]);
    assert_eq!(err, None);
    let mut whole = vec![1u8; 100];
    whole.extend([2u8; 50]);
    assert_eq!(events, vec![Owned::Binary(whole)]);
    // A single frame of exactly the frame limit too.
    let (events, err) = drive(
        &mut Session::new(config),
        &frame(true, OpCode::Text, &[b'a'; 100]),
        &[],
    );
    assert_eq!(err, None);
    assert_eq!(events, vec![Owned::Text("a".repeat(100))]);
    // One byte more, in the last fragment: refused at its header.
    let over = [
        frame(false, OpCode::Binary, &[1; 100]),
        frame(true, OpCode::Continuation, &[2; 51]),
    ]
    .concat();
    let (_, err) = drive(&mut Session::new(config), &over, &[]);
    assert_eq!(err.map(|e| e.0), Some(ProtocolError::MessageTooLarge));
}

/// One frame of the `whole_frame_path_agrees_with_byte_by_byte` input: a kind (0 text, 1 binary,
/// 2 text that is not UTF-8, 3 a ping), a payload length, and how the header is written (0 as
/// usual, 1 the length in the 16-bit form even when short, 2 an RSV bit set, 3 unmasked).
fn odd_frame(kind: u8, len: usize, form: u8) -> (Vec<u8>, usize) {
    let (op, mut payload) = match kind {
        0 => (OpCode::Text, "é".repeat(len / 2).into_bytes()),
        1 => (OpCode::Binary, (0..len).map(|i| i as u8).collect()),
        2 => (OpCode::Text, vec![0xff; len.max(1)]),
        _ => (OpCode::Ping, vec![7; len.min(125)]),
    };
    if kind == 0 && len % 2 == 1 {
        payload.push(b'!');
    }
    let mut out = frame(true, op, &payload);
    match form {
        1 if payload.len() < 126 => {
            // Rewrite as 126 + a 16-bit length: not the minimal encoding.
            let mut long = vec![out[0], 0x80 | 126];
            long.extend((payload.len() as u16).to_be_bytes());
            long.extend(&out[2..]);
            out = long;
        }
        2 => out[0] |= 0x40,
        3 => {
            let mut plain = vec![out[0], out[1] & 0x7f];
            let head = if payload.len() < 126 { 2 } else { 4 };
            plain.extend(&out[2..head]);
            plain.extend(&payload);
            out = plain;
        }
        _ => {}
    }
    (out, payload.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A whole single-frame message in the buffer takes `Session::read`'s fast path; fed a byte at a
    /// time the same bytes go through the frame decoder. Both must give the same messages and the same
    /// error, whatever the limits and however the frames are written.
    #[test]
    fn whole_frame_path_agrees_with_byte_by_byte(
        frames in prop::collection::vec((0u8..4, prop_oneof![0usize..4, 120usize..132, 0usize..400], 0u8..8), 1..12),
        max_frame in 0u64..400,
        max_message in 0usize..400,
        // Put one limit right at the first frame's payload length (minus one, equal, plus one).
        tie in 0u8..7,
    ) {
        // Forms 4..8 are the usual header: odd headers in a quarter of the frames.
        let built: Vec<(Vec<u8>, usize)> =
            frames.iter().map(|&(k, l, f)| odd_frame(k, l, f % 4 * u8::from(f < 4))).collect();
        let near = (built[0].1 + usize::from(tie % 3)).saturating_sub(1);
        let config = SessionConfig {
            role: Role::Server,
            max_frame_size: if tie < 3 { near as u64 } else { max_frame },
            max_message_size: if (3..6).contains(&tie) { near } else { max_message },
        };
        let input: Vec<u8> = built.into_iter().flat_map(|(bytes, _)| bytes).collect();
        let (whole, err) = drive(&mut Session::new(config), &input, &[]);
        let (bytes, err_b) = drive(&mut Session::new(config), &input, &every_byte(input.len()));
        prop_assert_eq!(whole, bytes);
        prop_assert_eq!(err.map(|e| e.0), err_b.map(|e| e.0));
    }
}
