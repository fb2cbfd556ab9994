//! The bench clients' frame codec, on the protocol crate's client role: frames are written with
//! `encode_masked_frame` and read with a `FrameDecoder` for `Role::Client`, so a frame a server may
//! not send (masked, a reserved opcode or bit, a bad control frame) is an error here as it is for
//! any client.

use std::ops::Range;

use hydrogen_ws_protocol::{FrameDecoder, OpCode, ProtocolError, Role};

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

/// Counts server frames as they stream in, without keeping their payloads (which are not masked,
/// so the decoder only skips over them). A frame of another opcode than the one expected, or one
/// the decoder refuses, marks the stream as bad; counting stops at a refused frame.
#[derive(Debug, Clone)]
pub struct FrameCounter {
    decoder: FrameDecoder,
    expect: OpCode,
    /// A header cut by the end of a read, kept for the next one.
    head: [u8; MAX_HEADER],
    have: usize,
    bad: bool,
}

impl FrameCounter {
    /// A counter expecting frames of `expect`.
    pub fn new(expect: OpCode) -> FrameCounter {
        FrameCounter {
            decoder: FrameDecoder::new(Role::Client, NO_LIMIT),
            expect,
            head: [0; MAX_HEADER],
            have: 0,
            bad: false,
        }
    }

    /// Whether an unexpected or refused frame came.
    pub fn bad(&self) -> bool {
        self.bad
    }

    /// Feeds the bytes of one read; returns how many frames they completed.
    pub fn feed(&mut self, mut data: &mut [u8]) -> usize {
        let mut done = 0;
        if self.have > 0 {
            // Complete the header kept from the last read with the first bytes of this one.
            let old = self.have;
            let take = (MAX_HEADER - old).min(data.len());
            self.head[old..old + take].copy_from_slice(&data[..take]);
            let mut head = self.head;
            match self.decoder.decode(&mut head[..old + take]) {
                Ok((0, _)) => {
                    self.head = head;
                    self.have = old + take;
                    return 0;
                }
                Ok((used, chunk)) => {
                    done += self.count(chunk.map(|c| (c.header.opcode, c.first, c.last)));
                    self.have = 0;
                    // Bytes `old..used` of the header buffer came from this read.
                    data = &mut std::mem::take(&mut data)[used - old..];
                }
                Err(_) => {
                    self.bad = true;
                    self.have = 0;
                    return done;
                }
            }
        }
        while !data.is_empty() && !self.bad {
            match self.decoder.decode(data) {
                Ok((0, _)) => {
                    // A header cut short: keep it for the next read.
                    self.head[..data.len()].copy_from_slice(data);
                    self.have = data.len();
                    break;
                }
                Ok((used, chunk)) => {
                    done += self.count(chunk.map(|c| (c.header.opcode, c.first, c.last)));
                    data = &mut std::mem::take(&mut data)[used..];
                }
                Err(_) => self.bad = true,
            }
        }
        done
    }

    /// 1 if the chunk ends a frame; checks the opcode of a frame's first chunk.
    fn count(&mut self, chunk: Option<(OpCode, bool, bool)>) -> usize {
        let Some((opcode, first, last)) = chunk else {
            return 0;
        };
        if first && opcode != self.expect {
            self.bad = true; // a close, or anything else unexpected
        }
        usize::from(last)
    }
}
