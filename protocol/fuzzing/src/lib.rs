//! Entry points for the fuzz targets of [`hydrogen_ws_protocol`], in their own `publish = false`
//! crate so that the protocol crate does not compile them into every build, and so that
//! libFuzzer, `cargo test` and a debugger all replay a crash through the same code. Each
//! `fuzz/fuzz_targets/<name>.rs` is one line calling the function of the same name;
//! `tests/fuzz_regressions.rs` (in this crate) calls [`replay`]. Every function panics on a
//! broken invariant, and on nothing else. They use only the protocol crate's public API.
//!
//! | target          | input                                  | what must hold                         |
//! |-----------------|----------------------------------------|----------------------------------------|
//! | [`handshake`]   | raw request bytes                      | whole, split and byte-by-byte parses agree; accepted -> a well-formed 101 with the right accept key; refused -> a well-formed response with the error's status |
//! | [`frame_decoder`] | [`split_spec`] + frame bytes         | split and byte-by-byte decoding give the same frames and error as whole; every frame obeys the header rules and re-encodes to its exact bytes |
//! | [`session`]     | [`SessionInput`] (structured)          | no panic; events match an independent model of RFC 6455; the assembly buffer stays within the message limit; every error maps to its close code; `poll_transmit` hands out exactly the replies the RFC requires (a pong per ping, the echo of the peer's close, the error's close, none after ours); nothing is delivered after a close |
//! | [`utf8`]        | [`split_spec`] + text bytes            | [`Utf8Validator`](hydrogen_ws_protocol::Utf8Validator) fails at exactly the piece where `std::str::from_utf8` says the prefix can no longer be UTF-8 |
//! | [`roundtrip`]   | [`RoundtripInput`] (structured)        | header -> encode -> parse, and frame -> encode -> decode, give it back in both roles, or the error the RFC asks for |
//! | [`deflate_offer`] | `Sec-WebSocket-Extensions` lines     | permessage-deflate negotiation picks the first valid offer, agrees within the configuration, and writes a response that parses back to the same parameters |
//! | [`inflate`]     | parameters + compressed messages       | inflating never holds more than the limit plus a byte; errors are 1002, 1007 or 1009 through a session (RSV1 misuse included); our deflater's output inflates back to its input |
//!
//! The structured inputs are decoded by a small hand-written reader with an exact inverse
//! (`from_bytes` / `to_bytes`): seeds are written from real scenarios, and crash files replay
//! without the `arbitrary` crate. With the `arbitrary` feature that reader is also their
//! `arbitrary::Arbitrary` implementation, which is what the fuzz targets take.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod checks;
mod deflate;
mod frames;
mod http;
mod input;
mod model;
mod scenario;
mod session_input;
mod text;
mod wire;

pub use deflate::{deflate_offer, inflate};
pub use frames::{frame_decoder, roundtrip, RoundtripInput};
pub use http::handshake;
pub use model::Owned;
pub use scenario::session;
pub use session_input::{CloseBody, Op, SessionInput};
pub use text::utf8;

/// Replay one input of `target` (a fuzz target's name). Returns false for an unknown target, or
/// for a structured target whose file does not decode (never the case with this reader).
pub fn replay(target: &str, data: &[u8]) -> bool {
    match target {
        "handshake" => handshake(data),
        "frame_decoder" => frame_decoder(data),
        "utf8" => utf8(data),
        "session" => session(&SessionInput::from_bytes(data)),
        "roundtrip" => roundtrip(&RoundtripInput::from_bytes(data)),
        "deflate_offer" => deflate_offer(data),
        "inflate" => inflate(data),
        _ => return false,
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Cutting input into pieces

/// `data` cut into pieces whose lengths are taken from `lens` in turn (cycled); all of `data` as
/// one piece if `lens` is empty.
fn pieces<'d>(data: &'d [u8], lens: &[usize]) -> Vec<&'d [u8]> {
    if lens.is_empty() {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    for &len in lens.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(len.clamp(1, rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// How the byte-oriented targets (`frame_decoder`, `utf8`) read their input: the first byte's
/// low nibble `k` says how many piece-length bytes follow (each byte `b` is a piece of `b + 1`
/// bytes, used in turn), its bits 4-6 select a size limit where the target has one, and the rest
/// is the data. An input starting with `0x00` is plain data, fed whole.
pub fn split_spec(input: &[u8]) -> (Vec<usize>, u8, &[u8]) {
    let Some((&first, rest)) = input.split_first() else {
        return (Vec::new(), 0, input);
    };
    let k = usize::from(first & 0x0F).min(rest.len());
    let (lens, data) = rest.split_at(k);
    let lens = lens.iter().map(|&b| usize::from(b) + 1).collect();
    (lens, (first >> 4) & 0x7, data)
}

/// XOR `data` with `key` from key byte 0: the plain definition of masking (RFC 6455 section
/// 5.3), independent of the crate's `apply_mask`. Eight bytes a step, as every loop iteration is
/// instrumented and byte-wise loops would dominate the targets' time.
fn xor_key(data: &mut [u8], key: [u8; 4]) {
    let [a, b, c, d] = key;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = data.chunks_exact_mut(8);
    for w in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (x, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *x ^= k;
    }
}

/// Whether `v` is an HTTP token (RFC 9110 section 5.6.2).
fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_session() -> SessionInput {
        SessionInput {
            client: false,
            max_frame_size: 1024,
            max_message_size: 2048,
            mask: [0x37, 0xfa, 0x21, 0x3d],
            truncate: 0,
            reads: vec![2, 0, 6],
            ops: vec![
                Op::Text {
                    text: "Hello".into(),
                    fragments: vec![],
                    corrupt: None,
                },
                Op::Text {
                    text: "κόσμε".into(),
                    fragments: vec![1, 2, 3],
                    corrupt: None,
                },
                Op::Message {
                    text: false,
                    payload: vec![1, 2, 3, 4, 5],
                    fragments: vec![2],
                    ping_after: 1,
                },
                Op::Ping(b"hi".to_vec()),
                Op::Pong(vec![]),
                Op::Close(CloseBody::Code {
                    code: 1000,
                    reason: "bye".into(),
                }),
                Op::LocalClose,
            ],
        }
    }

    #[test]
    fn reader_and_writer_are_inverse() {
        let s = normal_session();
        assert_eq!(SessionInput::from_bytes(&s.to_bytes()), s);
        let r = RoundtripInput {
            fin: true,
            rsv: 5,
            opcode: 4,
            masked: true,
            mask: [1, 2, 3, 4],
            len: 70_000,
            cut: 3,
            grow: 300,
            payload: b"abc".to_vec(),
        };
        assert_eq!(RoundtripInput::from_bytes(&r.to_bytes()), r);
    }

    #[test]
    fn normal_session_matches_the_model() {
        let s = normal_session();
        session(&s);
        let mut failing = s.clone();
        failing.ops.insert(
            1,
            Op::Text {
                text: "aé".into(),
                fragments: vec![2],
                corrupt: Some((2, 0x41)),
            },
        );
        session(&failing);
        failing.truncate = 9;
        failing.client = true;
        session(&failing);
    }

    #[test]
    fn smoke() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81";
        handshake(req);
        handshake(&req[..40]);
        handshake(b"POST / HTTP/1.1\r\n\r\n");
        let frames = b"\x02\x01\x00\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\x88\x80\0\0\0\0";
        frame_decoder(frames);
        utf8(b"\x03\x00\x01\x02\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
        utf8(b"\x00\xf4\x90\x80\x80");
        roundtrip(&RoundtripInput::from_bytes(b"\x01\x01\x37\xfa\x21\x3d"));
        for f in [handshake, frame_decoder, utf8] {
            f(b"");
        }
        session(&SessionInput::from_bytes(b""));
        roundtrip(&RoundtripInput::from_bytes(b""));
    }
}
