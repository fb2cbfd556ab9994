//! The bench clients' frame codec, on the protocol crate's client role: frames are written with
//! `encode_masked_frame` and read with a `FrameDecoder` for `Role::Client`, so a frame a server may
//! not send (masked, a reserved opcode or bit, a bad control frame) is an error here as it is for
//! any client.

use std::ops::Range;

use hydrogen_ws_protocol::{FrameDecoder, FrameHeader, OpCode, ProtocolError, Role};

/// No size limit on what the server sends (the bench checks sizes itself where it cares).
const NO_LIMIT: u64 = u64::MAX >> 1;

/// The longest frame header (2 bytes, 8 of length, 4 of mask).
const MAX_HEADER: usize = 14;

/// A whole server frame at the start of a buffer.
#[derive(Debug, Clone)]
pub struct ServerFrame {
    /// Its opcode.
    pub opcode: OpCode,
    /// Where its payload lies in the buffer.
    pub payload: Range<usize>,
    /// Its length on the wire (header and payload): where the next frame starts.
    pub len: usize,
}

/// The server frame at the start of `buf`, once all of it is there (`Ok(None)` until then).
pub fn server_frame(buf: &mut [u8]) -> Result<Option<ServerFrame>, ProtocolError> {
    let mut decoder = FrameDecoder::new(Role::Client, NO_LIMIT);
    let (used, chunk) = decoder.decode(buf)?;
    Ok(match chunk {
        Some(c) if c.last => Some(ServerFrame {
            opcode: c.header.opcode,
            payload: used - c.data.len()..used,
            len: used,
        }),
        _ => None,
    })
}

/// The status code of a close frame's payload (1005, "no status", when it has none).
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 1005,
    }
}

/// Counts server frames as they stream in, without keeping their payloads. Headers are read with
/// `FrameHeader::parse` and held to the client role's rules (unmasked, no RSV bits), as the decoder
/// would; payloads, never masked from a server, are skipped without being touched (the echo bench's
/// client is the bottleneck on small frames, and the decoder's per-chunk work showed in its figures).
/// A frame of another opcode than the one expected, or a refused header, marks the stream as bad;
/// counting stops at a refused header.
#[derive(Debug, Clone)]
pub struct FrameCounter {
    expect: OpCode,
    /// A header cut by the end of a read, kept for the next one.
    head: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
    bad: bool,
}

impl FrameCounter {
    /// A counter expecting frames of `expect`.
    pub fn new(expect: OpCode) -> FrameCounter {
        FrameCounter {
            expect,
            head: [0; MAX_HEADER],
            have: 0,
            left: 0,
            bad: false,
        }
    }

    /// Whether an unexpected or refused frame came.
    pub fn bad(&self) -> bool {
        self.bad
    }

    /// Feeds the bytes of one read; returns how many frames they completed.
    pub fn feed(&mut self, mut data: &[u8]) -> usize {
        let mut done = 0;
        if self.have > 0 {
            // Complete the header kept from the last read with the first bytes of this one.
            let old = self.have;
            let take = (MAX_HEADER - old).min(data.len());
            self.head[old..old + take].copy_from_slice(&data[..take]);
            let head = self.head;
            match self.header(&head[..old + take]) {
                Some(0) => {
                    self.have = old + take;
                    return 0;
                }
                // Bytes `old..used` of the header came from this read.
                Some(used) => data = &data[used - old..],
                None => return 0,
            }
            self.have = 0;
            done += usize::from(self.left == 0);
        }
        loop {
            if self.left > 0 {
                let k = usize::try_from(self.left).map_or(data.len(), |l| l.min(data.len()));
                self.left -= k as u64;
                data = &data[k..];
                if self.left > 0 {
                    break;
                }
                done += 1;
            }
            if data.is_empty() {
                break;
            }
            match self.header(data) {
                Some(0) => {
                    // A header cut short: keep it for the next read.
                    self.head[..data.len()].copy_from_slice(data);
                    self.have = data.len();
                    break;
                }
                Some(used) => {
                    data = &data[used..];
                    done += usize::from(self.left == 0);
                }
                None => break,
            }
        }
        done
    }

    /// Reads the header at the start of `buf` and sets `left` to its payload length: the header's
    /// length, 0 while it is incomplete, `None` (and `bad`) when a client must refuse it.
    fn header(&mut self, buf: &[u8]) -> Option<usize> {
        match FrameHeader::parse(buf) {
            Ok(Some((h, len))) if h.mask.is_none() && h.rsv == 0 => {
                self.bad |= h.opcode != self.expect; // a close, or anything else unexpected
                self.left = h.len;
                Some(len)
            }
            Ok(None) => Some(0),
            Ok(Some(_)) | Err(_) => {
                self.bad = true;
                None
            }
        }
    }
}
