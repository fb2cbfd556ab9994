//! The streaming frame decoder.

use super::{apply_mask, FrameHeader, Role};
use crate::error::ProtocolError;

/// A piece of one frame's payload, unmasked, as returned by [`FrameDecoder::decode`].
#[derive(Debug)]
pub struct Chunk<'a> {
    /// The frame's header.
    pub header: FrameHeader,
    /// Unmasked payload bytes (borrowed from the caller's buffer).
    pub data: &'a [u8],
    /// Position of `data[0]` within the frame's payload.
    pub offset: u64,
    /// The header was decoded in this call (this is the frame's first chunk).
    pub first: bool,
    /// This chunk ends the frame's payload.
    pub last: bool,
}

/// The header being decoded and how much of its payload has been returned.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    header: FrameHeader,
    offset: u64,
}

/// A streaming frame decoder over a buffer the caller owns.
///
/// It never allocates and never copies: payload bytes are unmasked in place and returned as
/// slices of the caller's buffer. It holds only the current header and a position, so the
/// caller may drop consumed bytes and refill its buffer between calls.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    role: Role,
    max_frame_size: u64,
    /// RSV bits a negotiated extension claims (in `FrameHeader::rsv`'s layout); others are errors.
    allowed_rsv: u8,
    current: Option<InFrame>,
    error: Option<ProtocolError>,
}

impl FrameDecoder {
    /// A decoder for frames received by `role`, refusing frames longer than `max_frame_size`.
    pub fn new(role: Role, max_frame_size: u64) -> Self {
        FrameDecoder {
            role,
            max_frame_size,
            allowed_rsv: 0,
            current: None,
            error: None,
        }
    }

    /// Decode from the start of `buf`; returns the bytes consumed and at most one chunk.
    ///
    /// As soon as a header is complete a chunk is returned (`first == true`) with whatever
    /// payload is already in `buf`, possibly none; later calls return the rest of the payload as
    /// it arrives (`first == false`), the final piece with `last == true`. A zero-length frame
    /// gives one chunk with `first` and `last` both set. With no complete header and no payload
    /// due, returns `(0, None)`: more input is needed.
    ///
    /// The header is checked as its bytes arrive, in this order: the checks of
    /// [`FrameHeader::parse`] on the first two bytes, RSV bits other than the allowed ones
    /// ([`set_allowed_rsv`](FrameDecoder::set_allowed_rsv); none by default) (`ReservedBits`), masking for our
    /// role (`Unmasked` / `Masked`), then the length rules, then `FrameTooLarge`, all before any
    /// payload byte is consumed. The outcome does not depend on how the input is split. After an
    /// error the decoder keeps returning it.
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<(usize, Option<Chunk<'a>>), ProtocolError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.current {
            Some(frame) => Ok(self.payload(frame, buf)),
            None => self.header(buf).inspect_err(|e| self.error = Some(*e)),
        }
    }

    /// Continue the payload of the current frame.
    fn payload<'a>(&mut self, frame: InFrame, buf: &'a mut [u8]) -> (usize, Option<Chunk<'a>>) {
        let remaining = frame.header.len.saturating_sub(frame.offset);
        let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        if n == 0 {
            return (0, None);
        }
        // n <= buf.len() by construction.
        let (data, _) = buf.split_at_mut(n);
        if let Some(mask) = frame.header.mask {
            apply_mask(data, mask, frame.offset);
        }
        let last = n as u64 == remaining;
        self.current = if last {
            None
        } else {
            Some(InFrame {
                header: frame.header,
                offset: frame.offset + n as u64,
            })
        };
        let chunk = Chunk {
            header: frame.header,
            data,
            offset: frame.offset,
            first: false,
            last,
        };
        (n, Some(chunk))
    }

    /// Decode and validate a header, and return the first chunk of its payload.
    fn header<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<(usize, Option<Chunk<'a>>), ProtocolError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok((0, None));
        };
        FrameHeader::check_prefix(b0, b1)?;
        if (b0 >> 4) & 0x7 & !self.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.role, b1 & 0x80 != 0) {
            (Role::Server, false) => return Err(ProtocolError::Unmasked),
            (Role::Client, true) => return Err(ProtocolError::Masked),
            _ => {}
        }
        let Some((header, header_len)) = FrameHeader::parse(buf)? else {
            return Ok((0, None));
        };
        if header.len > self.max_frame_size {
            return Err(ProtocolError::FrameTooLarge);
        }
        // parse() returned header_len <= buf.len(), and avail <= rest.len().
        let (_, rest) = buf.split_at_mut(header_len);
        let avail = usize::try_from(header.len).map_or(rest.len(), |l| l.min(rest.len()));
        let (data, _) = rest.split_at_mut(avail);
        if let Some(mask) = header.mask {
            apply_mask(data, mask, 0);
        }
        let last = avail as u64 == header.len;
        if !last {
            self.current = Some(InFrame {
                header,
                offset: avail as u64,
            });
        }
        let chunk = Chunk {
            header,
            data,
            offset: 0,
            first: true,
            last,
        };
        Ok((header_len + avail, Some(chunk)))
    }

    /// Whether a header was consumed and part of its payload is still due.
    pub fn in_frame(&self) -> bool {
        self.current.is_some()
    }

    /// Change the frame size limit (applies from the next header).
    pub fn set_max_frame_size(&mut self, max: u64) {
        self.max_frame_size = max;
    }

    /// Let frames carry these RSV bits (in [`FrameHeader::rsv`]'s layout: RSV1 is `0b100`), the
    /// ones a negotiated extension claims. Which frames may carry them is the caller's rule
    /// (RFC 7692: only the first frame of a data message), not the decoder's.
    pub fn set_allowed_rsv(&mut self, bits: u8) {
        self.allowed_rsv = bits & 0x7;
    }

    /// The RSV bits frames may carry (none unless [`set_allowed_rsv`](Self::set_allowed_rsv)).
    pub fn allowed_rsv(&self) -> u8 {
        self.allowed_rsv
    }

    /// The frame size limit.
    pub fn max_frame_size(&self) -> u64 {
        self.max_frame_size
    }

    /// The role this decoder was built for.
    pub fn role(&self) -> Role {
        self.role
    }
}
