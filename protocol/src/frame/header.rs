//! The frame header: parsing with validation, and minimal encoding.

use std::ops::Deref;

use super::{OpCode, MAX_CONTROL_PAYLOAD};
use crate::error::ProtocolError;

/// A decoded (or to-be-encoded) frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of a message.
    pub fin: bool,
    /// RSV1-3 as a 3-bit value (RSV1 is 4, RSV3 is 1).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub len: u64,
}

/// An encoded header: at most 14 bytes on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBuf {
    /// The header in the first `len` bytes (at most 14).
    bytes: [u8; 16],
    len: u8,
}

impl HeaderBuf {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..usize::from(self.len))
            .unwrap_or(&self.bytes)
    }

    /// Appends the encoded bytes to `out`. (Copies the whole fixed-size buffer and cuts it back, which
    /// compiles to one 16-byte move instead of a call to copy a few bytes.)
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let end = out.len() + self.as_bytes().len();
        out.extend_from_slice(&self.bytes);
        out.truncate(end);
    }
}

impl Deref for HeaderBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for HeaderBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Big-endian bytes to an integer (at most 8 bytes).
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

impl FrameHeader {
    /// A header with RSV bits clear.
    pub fn new(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) -> Self {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            len,
        }
    }

    /// Encode with the minimal length encoding. Only the low 3 bits of `rsv` are used, and a
    /// length with its top bit set (not representable on the wire) has that bit dropped.
    pub fn encode(&self) -> HeaderBuf {
        // Built as one big-endian integer and stored whole: writing the bytes one by one and then
        // reading them back as a slice makes the CPU wait for each small store (this runs once per
        // frame sent).
        let b0 = (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.len & (u64::MAX >> 1);
        let (b1, ext, ext_len) = if len < 126 {
            (len as u8, 0, 0)
        } else if len <= 0xFFFF {
            (126, u128::from(len) << 96, 2)
        } else {
            (127, u128::from(len) << 48, 8)
        };
        let mut value = (u128::from(b0) << 120) | (u128::from(mask_bit | b1) << 112) | ext;
        let mut n = 2 + ext_len;
        if let Some(mask) = self.mask {
            value |= u128::from(u32::from_be_bytes(mask)) << (80 - 8 * ext_len);
            n += 4;
        }
        HeaderBuf {
            bytes: value.to_be_bytes(),
            len: n,
        }
    }

    /// The checks that need only the first two bytes: opcode, and the control frame rules.
    pub(crate) fn check_prefix(b0: u8, b1: u8) -> Result<OpCode, ProtocolError> {
        let raw = b0 & 0x0F;
        let opcode = OpCode::from_u8(raw).ok_or(ProtocolError::ReservedOpcode(raw))?;
        if opcode.is_control() {
            if b0 & 0x80 == 0 {
                return Err(ProtocolError::ControlFragmented);
            }
            if usize::from(b1 & 0x7F) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlTooLong);
            }
        }
        Ok(opcode)
    }

    /// Parse a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if more bytes are needed, else the header and its encoded length.
    /// Validates: reserved opcodes, control frames (FIN set, payload at most 125), the 64-bit
    /// length's top bit, and minimal length encoding. Each check runs as soon as the bytes it
    /// needs are present, so a bad header is reported before the rest of it arrives. RSV bits,
    /// masking and size limits are left to [`FrameDecoder`](super::FrameDecoder).
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        let opcode = Self::check_prefix(b0, b1)?;
        let len7 = b1 & 0x7F;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let Some(ext_bytes) = buf.get(2..2 + ext) else {
            return Ok(None);
        };
        let len = match ext {
            0 => u64::from(len7),
            2 => {
                let v = be(ext_bytes);
                if v < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                v
            }
            _ => {
                let v = be(ext_bytes);
                if v >> 63 != 0 {
                    return Err(ProtocolError::LengthOverflow);
                }
                if v <= 0xFFFF {
                    return Err(ProtocolError::NonMinimalLength);
                }
                v
            }
        };
        let mut header_len = 2 + ext;
        let mask = if b1 & 0x80 != 0 {
            let Some(key) = buf.get(header_len..header_len + 4) else {
                return Ok(None);
            };
            header_len += 4;
            let mut m = [0u8; 4];
            for (d, s) in m.iter_mut().zip(key) {
                *d = *s;
            }
            Some(m)
        } else {
            None
        };
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode,
            mask,
            len,
        };
        Ok(Some((header, header_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_to_adds_exactly_the_encoded_bytes() {
        for len in [0, 125, 126, 65535, 65536, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let header = FrameHeader::new(true, OpCode::Binary, mask, len).encode();
                let mut out = b"before".to_vec();
                header.append_to(&mut out);
                assert_eq!(&out[..6], b"before");
                assert_eq!(&out[6..], header.as_bytes(), "len {len}, mask {mask:?}");
            }
        }
    }

    #[test]
    fn minimal_encodings() {
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0x82, 0x00]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0x00, 126]),
            (256, &[0x82, 0x7E, 0x01, 0x00]),
            (65535, &[0x82, 126, 0xFF, 0xFF]),
            (
                65536,
                &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
            ),
        ];
        for (len, wire) in cases {
            let h = FrameHeader::new(true, OpCode::Binary, None, len);
            assert_eq!(h.encode().as_bytes(), wire, "len {len}");
            assert_eq!(FrameHeader::parse(wire), Ok(Some((h, wire.len()))));
            for cut in 0..wire.len() {
                assert_eq!(FrameHeader::parse(&wire[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn masked_header_round_trip() {
        let h = FrameHeader {
            fin: false,
            rsv: 5,
            opcode: OpCode::Text,
            mask: Some([1, 2, 3, 4]),
            len: 70_000,
        };
        let enc = h.encode();
        assert_eq!(enc.len(), 14);
        assert_eq!(FrameHeader::parse(&enc), Ok(Some((h, 14))));
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x00]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(ProtocolError::ControlFragmented)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 126]),
            Err(ProtocolError::ControlTooLong)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0, 125]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthOverflow)
        );
    }
}
