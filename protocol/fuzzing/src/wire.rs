//! The `session` target's wire: the peer's frames written by hand from RFC 6455 section 5.2, with
//! the steps (frames, our own close, unmodelled bytes) and where each lies in the stream.

use crate::session_input::{CloseBody, Op};
use crate::xor_key;

/// A frame as the peer put it on the wire.
#[derive(Debug, Clone)]
pub(crate) struct SentFrame {
    pub(crate) fin: bool,
    pub(crate) rsv: u8,
    /// The 4-bit opcode, reserved values included.
    pub(crate) opcode: u8,
    pub(crate) masked: bool,
    pub(crate) len: u64,
    /// Unmasked payload; `None` when only the header was sent.
    pub(crate) payload: Option<Vec<u8>>,
}

/// What the wire is made of, in order, with stream offsets.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Frame {
        start: usize,
        end: usize,
        frame: SentFrame,
    },
    LocalClose {
        at: usize,
    },
    /// Bytes the model does not interpret start here.
    Desync {
        at: usize,
    },
}

/// Builds the peer's bytes, writing headers by hand from RFC 6455 section 5.2 (independently of
/// the crate's encoder, so that reserved opcodes and bad flags can be written too).
pub(crate) struct WireBuilder {
    pub(crate) wire: Vec<u8>,
    pub(crate) steps: Vec<Step>,
    pub(crate) mask: [u8; 4],
    /// Frames must be masked (the session is a server).
    pub(crate) must_mask: bool,
    pub(crate) max_frame_size: u64,
}

impl WireBuilder {
    pub(crate) fn frame(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: u8,
        wrong_mask: bool,
        payload: &[u8],
    ) {
        self.header_and(
            fin,
            rsv,
            opcode,
            wrong_mask,
            payload.len() as u64,
            Some(payload),
        );
    }

    pub(crate) fn header_and(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: u8,
        wrong_mask: bool,
        len: u64,
        payload: Option<&[u8]>,
    ) {
        let start = self.wire.len();
        let masked = self.must_mask != wrong_mask;
        let opcode = opcode & 0x0F;
        let rsv = rsv & 0x7;
        self.wire.push((u8::from(fin) << 7) | (rsv << 4) | opcode);
        let mask_bit = u8::from(masked) << 7;
        if len < 126 {
            self.wire.push(mask_bit | len as u8);
        } else if len <= 0xFFFF {
            self.wire.push(mask_bit | 126);
            self.wire.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.wire.push(mask_bit | 127);
            self.wire.extend_from_slice(&len.to_be_bytes());
        }
        let key = self.mask;
        self.mask.rotate_left(1);
        if masked {
            self.wire.extend_from_slice(&key);
        }
        if let Some(p) = payload {
            let body = self.wire.len();
            self.wire.extend_from_slice(p);
            if let (true, Some(body)) = (masked, self.wire.get_mut(body..)) {
                xor_key(body, key);
            }
        }
        self.steps.push(Step::Frame {
            start,
            end: self.wire.len(),
            frame: SentFrame {
                fin,
                rsv,
                opcode,
                masked,
                len,
                payload: payload.map(<[u8]>::to_vec),
            },
        });
    }

    /// A data message in fragments, with a ping after fragment `ping_after - 1`.
    pub(crate) fn message(&mut self, text: bool, payload: &[u8], fragments: &[u8], ping_after: u8) {
        let mut rest = payload;
        let mut opcode = if text { 1 } else { 2 };
        let mut index = 0;
        let mut lens = fragments.iter();
        loop {
            let (piece, fin) = match lens.next() {
                Some(&n) => {
                    let (piece, tail) = rest.split_at(usize::from(n).min(rest.len()));
                    rest = tail;
                    (piece, false)
                }
                None => (rest, true),
            };
            self.frame(fin, 0, opcode, false, piece);
            index += 1;
            if usize::from(ping_after) == index {
                self.frame(true, 0, 0x9, false, b"ping");
            }
            if fin {
                break;
            }
            opcode = 0;
        }
    }

    pub(crate) fn op(&mut self, op: &Op) {
        match op {
            Op::Message {
                text,
                payload,
                fragments,
                ping_after,
            } => self.message(*text, payload, fragments, *ping_after),
            Op::Text {
                text,
                fragments,
                corrupt,
            } => {
                let mut bytes = text.as_bytes().to_vec();
                if let Some((at, b)) = corrupt {
                    let len = bytes.len();
                    if let Some(x) = bytes.get_mut(usize::from(*at) % len.max(1)) {
                        *x = *b;
                    }
                }
                self.message(true, &bytes, fragments, 0);
            }
            Op::Frame {
                fin,
                rsv,
                opcode,
                wrong_mask,
                payload,
            } => self.frame(*fin, *rsv, *opcode, *wrong_mask, payload),
            Op::Ping(p) => self.frame(true, 0, 0x9, false, p),
            Op::Pong(p) => self.frame(true, 0, 0xA, false, p),
            Op::Close(body) => {
                let payload = match body {
                    CloseBody::Empty => Vec::new(),
                    CloseBody::OneByte(b) => vec![*b],
                    CloseBody::Code { code, reason } => {
                        let mut p = code.to_be_bytes().to_vec();
                        p.extend_from_slice(reason.as_bytes());
                        p
                    }
                    CloseBody::Raw(p) => p.clone(),
                };
                self.frame(true, 0, 0x8, false, &payload);
            }
            Op::Oversize { opcode, fin, len } => {
                let len = len & (u64::MAX >> 1);
                if len <= self.max_frame_size {
                    let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
                    self.header_and(*fin, 0, *opcode, false, len, Some(&zeros));
                } else {
                    self.header_and(*fin, 0, *opcode, false, len, None);
                }
            }
            Op::LocalClose => self.steps.push(Step::LocalClose {
                at: self.wire.len(),
            }),
            Op::Raw(bytes) => {
                self.steps.push(Step::Desync {
                    at: self.wire.len(),
                });
                self.wire.extend_from_slice(bytes);
            }
        }
    }
}
