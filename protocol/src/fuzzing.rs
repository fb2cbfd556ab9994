//! Entry points for fuzz targets (`fuzz/fuzz_targets/*.rs` call these in one line each), kept in
//! the crate so that crash replays and tests share them. Each panics on a broken invariant.

use crate::frame::{FrameDecoder, FrameHeader, Role};
use crate::handshake::{parse_request, HandshakeLimits, Parsed, RequestParser};
use crate::session::{Event, Session, SessionConfig};

/// Split points derived from the input itself, so the fuzzer explores them too.
fn cuts(data: &[u8]) -> Vec<usize> {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    (step..data.len()).step_by(step).collect()
}

/// `data` in the pieces given by `cuts`.
fn pieces<'d>(data: &'d [u8], cuts: &[usize]) -> impl Iterator<Item = &'d [u8]> + 'd {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < data.len()).collect();
    bounds.push(data.len());
    let mut start = 0;
    bounds.into_iter().filter_map(move |end| {
        let piece = data.get(start..end)?;
        start = end;
        Some(piece)
    })
}

/// The handshake parser: stateless vs incremental (whole and split) must agree, and a valid
/// upgrade must produce a well-formed 101.
pub fn handshake(data: &[u8]) {
    let limits = HandshakeLimits::default();
    let stateless = match parse_request(data, &limits) {
        Ok(Parsed::Complete { request, consumed }) => Ok(Some((request, consumed))),
        Ok(Parsed::Partial) => Ok(None),
        Err(e) => Err(e),
    };
    let mut parser = RequestParser::new(limits);
    let mut incremental = Ok(None);
    for piece in pieces(data, &cuts(data)) {
        match parser.push(piece) {
            Ok(Some(request)) => {
                let consumed = parser.buffered() - parser.trailing().len();
                incremental = Ok(Some((request, consumed)));
            }
            Ok(None) => {}
            Err(e) => {
                incremental = Err(e);
                break;
            }
        }
    }
    if let Ok(Some((_, consumed))) = &incremental {
        assert_eq!(parser.trailing(), data.get(*consumed..).unwrap_or_default());
    }
    assert_eq!(stateless, incremental);
    if let Ok(Some((request, _))) = stateless {
        match request.websocket() {
            Ok(upgrade) => {
                let protocol = upgrade.protocols.first().map(String::as_str);
                assert!(upgrade
                    .response(protocol)
                    .starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            }
            Err(e) => assert!(e.response().starts_with(b"HTTP/1.1 4")),
        }
    }
}

/// Decode frames from `data` in `cuts` pieces; returns (header, payload) list and the error.
type Frames = (Vec<(FrameHeader, Vec<u8>)>, Option<crate::ProtocolError>);

fn decode_frames(role: Role, data: &[u8], cuts: &[usize]) -> Frames {
    let mut dec = FrameDecoder::new(role, 1 << 16);
    let mut frames: Vec<(FrameHeader, Vec<u8>)> = Vec::new();
    let mut buf = Vec::new();
    for piece in pieces(data, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok((n, Some(chunk))) => {
                    if chunk.first {
                        frames.push((chunk.header, Vec::new()));
                    }
                    if let Some((_, payload)) = frames.last_mut() {
                        payload.extend_from_slice(chunk.data);
                    }
                    buf.drain(..n);
                }
                Ok((n, None)) => {
                    buf.drain(..n);
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// The frame decoder: whole, split and byte by byte must give the same frames and error.
pub fn frames(data: &[u8]) {
    for role in [Role::Server, Role::Client] {
        let whole = decode_frames(role, data, &[]);
        assert_eq!(whole, decode_frames(role, data, &cuts(data)));
        if data.len() <= 4096 {
            let every: Vec<usize> = (1..data.len()).collect();
            assert_eq!(whole, decode_frames(role, data, &every));
        }
    }
}

/// An event with owned data.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Message(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn run_session(data: &[u8], cuts: &[usize]) -> (Vec<Owned>, Option<crate::ProtocolError>) {
    let mut session = Session::new(SessionConfig {
        max_frame_size: 1 << 16,
        max_message_size: 1 << 17,
        ..SessionConfig::default()
    });
    let mut events = Vec::new();
    let mut buf = Vec::new();
    for piece in pieces(data, cuts) {
        buf.extend_from_slice(piece);
        loop {
            let (n, owned) = match session.read(&mut buf) {
                Ok((n, ev)) => (
                    n,
                    match ev {
                        Event::None => None,
                        Event::Message(m) => Some(Owned::Message(m.as_bytes().to_vec())),
                        Event::Ping(p) => Some(Owned::Ping(p.to_vec())),
                        Event::Pong(p) => Some(Owned::Pong(p.to_vec())),
                        Event::Close(c) => {
                            Some(Owned::Close(c.map(|c| (c.code.0, c.reason.to_owned()))))
                        }
                    },
                ),
                Err(e) => return (events, Some(e)),
            };
            let progress = n > 0 || owned.is_some();
            events.extend(owned);
            buf.drain(..n);
            if !progress {
                break;
            }
        }
    }
    (events, None)
}

/// The session: whole and split input must give the same events and error.
pub fn session(data: &[u8]) {
    let whole = run_session(data, &[]);
    assert_eq!(whole, run_session(data, &cuts(data)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke() {
        let req = b"\x03GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81";
        handshake(&req[1..]);
        handshake(req);
        let frames_in = b"\x02\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\x89\x80\0\0\0\0\x88\x82\0\0\0\0\x03\xe8";
        frames(frames_in);
        session(frames_in);
        session(&frames_in[1..]);
        frames(b"");
        session(b"");
        handshake(b"");
    }
}
