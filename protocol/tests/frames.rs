//! Frame encoding and decoding: RFC 6455 section 5.7 examples, every header error, and
//! round trips under arbitrary splits.

mod common;

use hydrogen_ws_protocol::{
    encode_frame, encode_masked_frame, CloseCode, FrameDecoder, FrameHeader, OpCode, ProtocolError,
    Role,
};
use proptest::prelude::*;

/// A decoded frame: header and its whole payload.
type Frame = (FrameHeader, Vec<u8>);

/// Decode `input` delivered in pieces cut at `cuts`, the way a server with a growing buffer
/// would. Returns the frames and the first error.
fn decode_all(
    role: Role,
    max: u64,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<Frame>, Option<ProtocolError>) {
    let mut dec = FrameDecoder::new(role, max);
    let mut frames: Vec<Frame> = Vec::new();
    let mut buf = Vec::new();
    for (piece, _) in common::pieces(input, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok((n, chunk)) => {
                    let Some(chunk) = chunk else {
                        buf.drain(..n);
                        break;
                    };
                    if chunk.first {
                        assert_eq!(chunk.offset, 0);
                        frames.push((chunk.header, Vec::new()));
                    }
                    let (h, data) = frames.last_mut().unwrap();
                    assert_eq!(*h, chunk.header);
                    assert_eq!(chunk.offset, data.len() as u64);
                    data.extend_from_slice(chunk.data);
                    assert_eq!(chunk.last, data.len() as u64 == h.len);
                    assert_eq!(dec.in_frame(), !chunk.last);
                    buf.drain(..n);
                }
                Err(e) => {
                    // Poisoned: the same error again.
                    assert_eq!(dec.decode(&mut buf).map(|(n, _)| n), Err(e));
                    return (frames, Some(e));
                }
            }
        }
    }
    (frames, None)
}

/// Whole, byte by byte, and with a frame's worth of trailing garbage: all agree.
fn decode_every_way(role: Role, input: &[u8]) -> (Vec<Frame>, Option<ProtocolError>) {
    let whole = decode_all(role, 1 << 20, input, &[]);
    let bytewise = decode_all(role, 1 << 20, input, &common::every_byte(input.len()));
    assert_eq!(whole, bytewise);
    whole
}

fn payload_of(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|(_, d)| d.clone()).collect()
}

#[test]
fn rfc_unmasked_hello() {
    let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (frames, err) = decode_every_way(Role::Client, &wire);
    assert_eq!(err, None);
    assert_eq!(
        frames,
        vec![(
            FrameHeader::new(true, OpCode::Text, None, 5),
            b"Hello".to_vec()
        )]
    );
    assert_eq!(encode_frame(true, OpCode::Text, b"Hello"), wire);
    // The server refuses it: client frames must be masked.
    assert_eq!(
        decode_every_way(Role::Server, &wire).1,
        Some(ProtocolError::Unmasked)
    );
}

#[test]
fn rfc_masked_hello() {
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let (frames, err) = decode_every_way(Role::Server, &wire);
    assert_eq!(err, None);
    assert_eq!(
        frames,
        vec![(
            FrameHeader::new(true, OpCode::Text, Some(mask), 5),
            b"Hello".to_vec()
        )]
    );
    assert_eq!(
        encode_masked_frame(true, OpCode::Text, mask, b"Hello"),
        wire
    );
    assert_eq!(
        decode_every_way(Role::Client, &wire).1,
        Some(ProtocolError::Masked)
    );
}

#[test]
fn rfc_fragmented_hello() {
    let wire = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let (frames, err) = decode_every_way(Role::Client, &wire);
    assert_eq!(err, None);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].0, FrameHeader::new(false, OpCode::Text, None, 3));
    assert_eq!(
        frames[1].0,
        FrameHeader::new(true, OpCode::Continuation, None, 2)
    );
    assert_eq!(payload_of(&frames), b"Hello");
    let mut enc = encode_frame(false, OpCode::Text, b"Hel");
    enc.extend(encode_frame(true, OpCode::Continuation, b"lo"));
    assert_eq!(enc, wire);
}

#[test]
fn rfc_ping_and_masked_pong() {
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (frames, _) = decode_every_way(Role::Client, &ping);
    assert_eq!(
        frames,
        vec![(
            FrameHeader::new(true, OpCode::Ping, None, 5),
            b"Hello".to_vec()
        )]
    );
    assert_eq!(encode_frame(true, OpCode::Ping, b"Hello"), ping);

    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (frames, _) = decode_every_way(Role::Server, &pong);
    assert_eq!(frames[0].0.opcode, OpCode::Pong);
    assert_eq!(frames[0].1, b"Hello");
    assert_eq!(
        encode_masked_frame(true, OpCode::Pong, [0x37, 0xfa, 0x21, 0x3d], b"Hello"),
        pong
    );
}

#[test]
fn rfc_256_bytes_and_64k_binary() {
    let payload: Vec<u8> = (0..256).map(|i| i as u8).collect();
    let wire = encode_frame(true, OpCode::Binary, &payload);
    assert_eq!(&wire[..4], &[0x82, 0x7E, 0x01, 0x00]);
    let (frames, _) = decode_every_way(Role::Client, &wire);
    assert_eq!(frames[0].1, payload);

    let payload: Vec<u8> = (0..65536).map(|i| (i % 251) as u8).collect();
    let wire = encode_frame(true, OpCode::Binary, &payload);
    assert_eq!(
        &wire[..10],
        &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
    );
    let (frames, _) = decode_all(
        Role::Client,
        1 << 20,
        &wire,
        &[1, 3, 9, 10, 11, 5000, 65000],
    );
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1, payload);

    let masked = encode_masked_frame(true, OpCode::Binary, [9, 8, 7, 6], &payload);
    assert_eq!(&masked[..2], &[0x82, 0xFF]);
    let (frames, _) = decode_all(Role::Server, 1 << 20, &masked, &[2, 7, 13, 14, 15, 333]);
    assert_eq!(frames[0].1, payload);
}

#[test]
fn chunks_arrive_as_payload_arrives() {
    let wire = encode_masked_frame(true, OpCode::Binary, [1, 2, 3, 4], b"abcdef");
    let mut dec = FrameDecoder::new(Role::Server, 100);
    let mut buf = wire[..1].to_vec();
    assert_eq!(dec.decode(&mut buf).unwrap().0, 0);
    let mut buf = wire[..6].to_vec(); // header only
    let (n, chunk) = dec.decode(&mut buf).unwrap();
    let chunk = chunk.unwrap();
    assert_eq!(
        (n, chunk.first, chunk.last, chunk.data.len()),
        (6, true, false, 0)
    );
    assert!(dec.in_frame());
    let mut buf = wire[6..8].to_vec();
    let (n, chunk) = dec.decode(&mut buf).unwrap();
    let chunk = chunk.unwrap();
    assert_eq!(
        (n, chunk.first, chunk.last, chunk.offset, chunk.data),
        (2, false, false, 0, &b"ab"[..])
    );
    let mut buf = wire[8..].to_vec();
    buf.extend_from_slice(b"\x82"); // start of the next frame stays unconsumed
    let (n, chunk) = dec.decode(&mut buf).unwrap();
    let chunk = chunk.unwrap();
    assert_eq!(
        (n, chunk.last, chunk.offset, chunk.data),
        (4, true, 2, &b"cdef"[..])
    );
    assert!(!dec.in_frame());
    let mut empty: [u8; 0] = [];
    assert_eq!(dec.decode(&mut empty).unwrap().0, 0);
}

#[test]
fn zero_length_frame_is_one_chunk() {
    let mut wire = encode_masked_frame(true, OpCode::Text, [1, 2, 3, 4], b"");
    let mut dec = FrameDecoder::new(Role::Server, 100);
    let (n, chunk) = dec.decode(&mut wire).unwrap();
    let chunk = chunk.unwrap();
    assert_eq!(
        (n, chunk.first, chunk.last, chunk.data.len()),
        (6, true, true, 0)
    );
}

#[test]
fn every_header_error_with_its_close_code() {
    let m = [0u8; 4];
    let masked = |b0: u8, len_bytes: &[u8]| {
        let mut v = vec![b0, 0x80 | len_bytes[0]];
        v.extend_from_slice(&len_bytes[1..]);
        v.extend_from_slice(&m);
        v
    };
    let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
        (masked(0xC1, &[0]), ProtocolError::ReservedBits, 1002),
        (masked(0x91, &[0]), ProtocolError::ReservedBits, 1002),
        (masked(0x83, &[0]), ProtocolError::ReservedOpcode(3), 1002),
        (masked(0x8B, &[0]), ProtocolError::ReservedOpcode(0xB), 1002),
        (masked(0x09, &[0]), ProtocolError::ControlFragmented, 1002),
        (
            masked(0x89, &[126, 0, 126]),
            ProtocolError::ControlTooLong,
            1002,
        ),
        (vec![0x81, 0x00], ProtocolError::Unmasked, 1002),
        (
            masked(0x82, &[127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            ProtocolError::LengthOverflow,
            1002,
        ),
        (
            masked(0x82, &[126, 0, 5]),
            ProtocolError::NonMinimalLength,
            1002,
        ),
        (
            masked(0x82, &[127, 0, 0, 0, 0, 0, 0, 1, 0]),
            ProtocolError::NonMinimalLength,
            1002,
        ),
        (
            masked(0x82, &[127, 0, 0, 0, 0, 0, 0x10, 0, 1]),
            ProtocolError::FrameTooLarge,
            1009,
        ),
    ];
    for (wire, want, code) in cases {
        let whole = decode_all(Role::Server, 1 << 20, &wire, &[]).1;
        let bytewise = decode_all(
            Role::Server,
            1 << 20,
            &wire,
            &common::every_byte(wire.len()),
        )
        .1;
        assert_eq!(whole, Some(want), "{wire:02x?}");
        assert_eq!(bytewise, Some(want), "{wire:02x?}");
        assert_eq!(want.close_code(), CloseCode(code));
    }
    let wire = encode_frame(true, OpCode::Text, b"x");
    assert_eq!(
        decode_all(Role::Server, 10, &wire, &[]).1,
        Some(ProtocolError::Unmasked)
    );
    let wire = encode_masked_frame(true, OpCode::Text, [1, 2, 3, 4], b"x");
    assert_eq!(
        decode_all(Role::Client, 10, &wire, &[]).1,
        Some(ProtocolError::Masked)
    );
}

#[test]
fn frame_too_large_before_any_payload() {
    let mut dec = FrameDecoder::new(Role::Server, 1000);
    // Header of a 1001-byte frame, no payload yet.
    let mut header = FrameHeader::new(true, OpCode::Binary, Some([1, 2, 3, 4]), 1001)
        .encode()
        .to_vec();
    assert_eq!(
        dec.decode(&mut header).map(|r| r.0),
        Err(ProtocolError::FrameTooLarge)
    );
    dec.set_max_frame_size(2000);
    // Still poisoned.
    assert_eq!(
        dec.decode(&mut header).map(|r| r.0),
        Err(ProtocolError::FrameTooLarge)
    );
    let mut dec = FrameDecoder::new(Role::Server, 1000);
    dec.set_max_frame_size(2000);
    assert!(dec.decode(&mut header).unwrap().1.unwrap().first);
}

#[test]
fn errors_are_reported_from_the_first_two_bytes() {
    // A reserved opcode with a huge declared length: refused before the length bytes arrive.
    let mut dec = FrameDecoder::new(Role::Server, 100);
    let mut two = [0x83, 0xFF];
    assert_eq!(
        dec.decode(&mut two).map(|r| r.0),
        Err(ProtocolError::ReservedOpcode(3))
    );
    let mut dec = FrameDecoder::new(Role::Server, 100);
    let mut two = [0x81, 0x7F];
    assert_eq!(
        dec.decode(&mut two).map(|r| r.0),
        Err(ProtocolError::Unmasked)
    );
}

fn header_strategy(role: Role) -> impl Strategy<Value = (FrameHeader, Vec<u8>)> {
    (
        any::<bool>(),
        prop::sample::select(OpCode::ALL.to_vec()),
        any::<[u8; 4]>(),
        prop::collection::vec(any::<u8>(), 0..4096),
    )
        .prop_map(move |(fin, opcode, mask, mut payload)| {
            let fin = fin || opcode.is_control();
            if opcode.is_control() {
                payload.truncate(125);
            }
            let mask = (role == Role::Server).then_some(mask);
            (
                FrameHeader::new(fin, opcode, mask, payload.len() as u64),
                payload,
            )
        })
}

fn encode(h: &FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut wire = h.encode().to_vec();
    let start = wire.len();
    wire.extend_from_slice(payload);
    if let Some(mask) = h.mask {
        hydrogen_ws_protocol::apply_mask(&mut wire[start..], mask, 0);
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_any_split(
        frames in prop::collection::vec(prop_oneof![header_strategy(Role::Server), header_strategy(Role::Client)], 1..4),
        role_is_server in any::<bool>(),
        cuts in prop::collection::vec(0usize..13_000, 0..24),
    ) {
        let role = if role_is_server { Role::Server } else { Role::Client };
        let frames: Vec<Frame> = frames
            .into_iter()
            .map(|(mut h, p)| {
                h.mask = match (role, h.mask) {
                    (Role::Server, None) => Some([7, 7, 7, 7]),
                    (Role::Client, Some(_)) => None,
                    (_, m) => m,
                };
                (h, p)
            })
            .collect();
        let wire: Vec<u8> = frames.iter().flat_map(|(h, p)| encode(h, p)).collect();
        let (got, err) = decode_all(role, 1 << 20, &wire, &cuts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&got, &frames);
        let (whole, _) = decode_all(role, 1 << 20, &wire, &[]);
        prop_assert_eq!(&whole, &frames);
        if role == Role::Client {
            let direct: Vec<u8> = frames
                .iter()
                .flat_map(|(h, p)| encode_frame(h.fin, h.opcode, p))
                .collect();
            prop_assert_eq!(direct, wire);
        }
    }

    #[test]
    fn arbitrary_bytes_whole_equals_split(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(0usize..300, 0..10),
    ) {
        let whole = decode_all(Role::Server, 200, &bytes, &[]);
        let split = decode_all(Role::Server, 200, &bytes, &cuts);
        prop_assert_eq!(whole, split);
    }
}

#[test]
fn allowed_rsv_bits_pass_and_others_still_fail() {
    let frame = |b0: u8| vec![b0, 0x81, 0, 0, 0, 0, b'x'];
    let mut dec = FrameDecoder::new(Role::Server, 1 << 20);
    assert_eq!(dec.allowed_rsv(), 0);
    dec.set_allowed_rsv(0b100);
    assert_eq!(dec.allowed_rsv(), 0b100);
    let mut rsv1 = frame(0xC1);
    match dec.decode(&mut rsv1) {
        Ok((7, Some(chunk))) => {
            assert_eq!(chunk.header.rsv, 0b100);
            assert_eq!(chunk.data, b"x");
        }
        other => panic!("{other:?}"),
    }
    for b0 in [0xA1, 0x91, 0xE1] {
        let mut dec = FrameDecoder::new(Role::Server, 1 << 20);
        dec.set_allowed_rsv(0b100);
        let mut bytes = frame(b0);
        assert_eq!(
            dec.decode(&mut bytes).map(|(n, _)| n),
            Err(ProtocolError::ReservedBits),
            "{b0:#x}"
        );
    }
}
