//! Frames (RFC 6455 section 5): opcodes, headers, masking, encoding, and a streaming decoder.

mod control;
mod decoder;
mod header;
mod mask;
mod opcode;

pub use control::{ControlPayload, MAX_CONTROL_PAYLOAD};
pub use decoder::{Chunk, FrameDecoder};
pub use header::{FrameHeader, HeaderBuf};
pub use mask::apply_mask;
pub use opcode::{OpCode, Role};

/// An unmasked frame (what a server sends): header followed by payload.
pub fn encode_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::new(fin, opcode, None, payload.len() as u64).encode();
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out
}

/// A masked frame (what a client sends): header followed by a masked copy of the payload.
pub fn encode_masked_frame(fin: bool, opcode: OpCode, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::new(fin, opcode, Some(mask), payload.len() as u64).encode();
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    if let Some(body) = out.get_mut(header.len()..) {
        apply_mask(body, mask, 0);
    }
    out
}
