//! Helpers shared by the integration tests.
#![allow(dead_code)]

use hydrogen_ws_protocol::{
    apply_mask, Event, FrameHeader, Message, OpCode, ProtocolError, Session,
};

/// The masking key of the frames the tests build as a client would.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An event with owned data, so results from different feeding patterns can be compared. (The
/// fuzzing crate has its own for its session model: a dev-dependency on it would build a second
/// copy of this crate, whose types would not match ours.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Owned {
    /// The event's data, owned; `None` for [`Event::None`].
    pub fn from_event(ev: &Event<'_>) -> Option<Owned> {
        Some(match ev {
            Event::None => return None,
            Event::Message(Message::Text(t)) => Owned::Text((*t).to_owned()),
            Event::Message(Message::Binary(b)) => Owned::Binary(b.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong(p) => Owned::Pong(p.to_vec()),
            Event::Close(c) => Owned::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
        })
    }
}

/// `input` cut at `cuts` (offsets into it; out of range or repeated ones ignored), in order, each piece
/// with the offset where it ends.
pub fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> impl Iterator<Item = (&'a [u8], usize)> {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    bounds.dedup();
    let mut start = 0;
    bounds.into_iter().map(move |end| {
        let piece = &input[start..end];
        start = end;
        (piece, end)
    })
}

/// Drive a session the way a server does: bytes arrive in pieces (cut at `cuts`, which are
/// offsets into `input`), each appended to a buffer that is read until no progress.
/// Returns the events, the error (if any), and how many input bytes had arrived when it hit.
pub fn drive(
    session: &mut Session,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<Owned>, Option<(ProtocolError, usize)>) {
    let mut events = Vec::new();
    let mut buf = Vec::new();
    for (piece, end) in pieces(input, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match session.read(&mut buf) {
                Ok((n, ev)) => {
                    let owned = Owned::from_event(&ev);
                    let progress = n > 0 || owned.is_some();
                    events.extend(owned);
                    buf.drain(..n);
                    if !progress {
                        break;
                    }
                }
                Err(e) => return (events, Some((e, end))),
            }
        }
    }
    (events, None)
}

/// Every cut: byte by byte.
pub fn every_byte(len: usize) -> Vec<usize> {
    (1..len).collect()
}

/// A tiny deterministic generator for masks and cut points in non-proptest tests.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A masked frame with RSV bits `rsv` (`FrameHeader::rsv`'s layout).
pub fn frame_rsv(fin: bool, rsv: u8, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut header = FrameHeader::new(fin, op, Some(MASK), payload.len() as u64);
    header.rsv = rsv;
    let mut out = header.encode().to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], MASK, 0);
    out
}

/// Whole and byte by byte must agree; returns the events and the error.
pub fn run(make: fn() -> Session, input: &[u8]) -> (Vec<Owned>, Option<ProtocolError>) {
    let (whole, err) = drive(&mut make(), input, &[]);
    let (bytes, err_b) = drive(&mut make(), input, &every_byte(input.len()));
    assert_eq!(whole, bytes);
    assert_eq!(err.map(|e| e.0), err_b.map(|e| e.0));
    (whole, err.map(|e| e.0))
}
