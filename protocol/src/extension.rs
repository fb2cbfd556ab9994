//! The seam for a negotiated extension (RFC 6455 section 9): it claims RSV bits and transforms
//! message payloads in both directions. permessage-deflate (RFC 7692, [`deflate`](crate::deflate))
//! plugs into it.
//!
//! Received messages: a [`Session`](crate::Session) with an extension accepts the bits the
//! extension claims on the first frame of a data message (and refuses them on continuation and
//! control frames, [`ProtocolError::ExtensionBitsMisplaced`](crate::ProtocolError)); when that
//! first frame carries any of them, the whole reassembled payload goes through
//! [`Extension::decode`] before the message is delivered (and before a text message's UTF-8 is
//! checked). A message whose first frame carries none is delivered as it came, as without an
//! extension. Bits no extension claims remain a protocol error (1002).
//!
//! Sent messages: [`encode_message`] (or [`Session::encode_message`](crate::Session::encode_message),
//! with the session's extension) passes a payload through [`Extension::encode`] and returns the
//! header (with the RSV bits it chose) and the payload to write. The two directions are
//! independent (RFC 7692 keeps one compression context per direction), so a server whose
//! sends do not go through the thread that reads may give its writer an instance of its own
//! and call [`encode_message`] with it.

use crate::error::ExtensionError;
use crate::frame::{FrameHeader, OpCode};

/// RSV1 in [`FrameHeader::rsv`](crate::FrameHeader)'s layout (the bit permessage-deflate uses).
pub const RSV1: u8 = 0b100;
/// RSV2 in [`FrameHeader::rsv`](crate::FrameHeader)'s layout.
pub const RSV2: u8 = 0b010;
/// RSV3 in [`FrameHeader::rsv`](crate::FrameHeader)'s layout.
pub const RSV3: u8 = 0b001;

/// A negotiated extension that transforms whole message payloads.
///
/// It works on whole messages: a received message is decoded once reassembled, and a sent one
/// is encoded before it is framed. It keeps whatever state it needs between messages (a
/// compression context). It must not panic on any input: `decode` sees peer-controlled bytes.
///
/// ```
/// use hydrogen_ws_protocol::{Extension, ExtensionError, OpCode, RSV1};
///
/// /// Flips every bit of a message that carries RSV1 (a toy, for tests).
/// struct Invert;
///
/// impl Extension for Invert {
///     fn name(&self) -> &str {
///         "x-invert"
///     }
///     fn rsv_bits(&self) -> u8 {
///         RSV1
///     }
///     fn decode(
///         &mut self,
///         _rsv: u8,
///         payload: &[u8],
///         out: &mut Vec<u8>,
///         max: usize,
///     ) -> Result<(), ExtensionError> {
///         if payload.len() > max {
///             return Err(ExtensionError::TooLarge);
///         }
///         out.extend(payload.iter().map(|b| !b));
///         Ok(())
///     }
///     fn encode(
///         &mut self,
///         _opcode: OpCode,
///         payload: &[u8],
///         out: &mut Vec<u8>,
///     ) -> Result<u8, ExtensionError> {
///         out.extend(payload.iter().map(|b| !b));
///         Ok(RSV1)
///     }
/// }
/// # let mut out = Vec::new();
/// # assert_eq!(Invert.encode(OpCode::Text, b"a", &mut out), Ok(RSV1));
/// # assert_eq!(out, [!b'a']);
/// ```
pub trait Extension: Send {
    /// The extension's token, as negotiated in `Sec-WebSocket-Extensions`
    /// (`permessage-deflate`).
    fn name(&self) -> &str;

    /// The RSV bits the extension claims, in [`FrameHeader::rsv`](crate::FrameHeader)'s
    /// layout ([`RSV1`] is `0b100`). Only the low three bits count.
    fn rsv_bits(&self) -> u8;

    /// Decode a received message's whole payload, appending the result to `out` (which is empty).
    ///
    /// Called once per data message whose first frame carried any of the claimed bits; `rsv` is
    /// that frame's RSV bits (only claimed ones). `payload` is the reassembled payload as it came
    /// off the wire (unmasked). The result may not be longer than `max` bytes (the session's
    /// message size limit): return [`ExtensionError::TooLarge`] rather than grow past it. An
    /// [`ExtensionError`] fails the connection (1007 for `Invalid`, 1009 for `TooLarge`).
    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ExtensionError>;

    /// Encode a message to send, appending the payload to put on the wire to `out` (which is
    /// empty), and return the RSV bits its first frame must carry (a subset of
    /// [`rsv_bits`](Extension::rsv_bits); `0` if the payload was copied unchanged).
    fn encode(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, ExtensionError>;
}

/// Frame an outgoing data message: pass `payload` through `extension` (if any) and return the
/// header of a single final frame (unmasked; a client sets [`FrameHeader::mask`] and masks the
/// payload) with the payload to write after it.
///
/// Without an extension (or for a control opcode) the payload is `payload` itself, with no
/// copy. With one, it is written into `scratch` (cleared first) and the header carries the RSV
/// bits the extension chose (only bits it claims).
pub fn encode_message<'p>(
    extension: Option<&mut dyn Extension>,
    opcode: OpCode,
    payload: &'p [u8],
    scratch: &'p mut Vec<u8>,
) -> Result<(FrameHeader, &'p [u8]), ExtensionError> {
    let ext = match extension {
        Some(ext) if !opcode.is_control() => ext,
        _ => {
            let header = FrameHeader::new(true, opcode, None, payload.len() as u64);
            return Ok((header, payload));
        }
    };
    scratch.clear();
    let rsv = ext.encode(opcode, payload, scratch)? & ext.rsv_bits() & 0x7;
    let mut header = FrameHeader::new(true, opcode, None, scratch.len() as u64);
    header.rsv = rsv;
    Ok((header, scratch.as_slice()))
}
