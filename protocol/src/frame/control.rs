//! A control frame's payload on the stack.

use std::ops::Deref;

/// Longest control frame payload (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A control frame's payload (a ping's, a pong's, a close's): at most 125 bytes, held inline so
/// that answering a ping or building a close never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPayload {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl ControlPayload {
    /// An empty payload.
    pub const EMPTY: ControlPayload = ControlPayload {
        bytes: [0; MAX_CONTROL_PAYLOAD],
        len: 0,
    };

    /// A copy of `payload`, or `None` if it is longer than [`MAX_CONTROL_PAYLOAD`].
    pub fn new(payload: &[u8]) -> Option<ControlPayload> {
        let mut out = ControlPayload::EMPTY;
        out.bytes.get_mut(..payload.len())?.copy_from_slice(payload);
        out.len = payload.len() as u8;
        Some(out)
    }

    /// The first `len` bytes of `bytes` (`len` is capped at 125).
    pub(crate) fn from_parts(bytes: [u8; MAX_CONTROL_PAYLOAD], len: usize) -> ControlPayload {
        ControlPayload {
            bytes,
            len: len.min(MAX_CONTROL_PAYLOAD) as u8,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..usize::from(self.len))
            .unwrap_or(&self.bytes)
    }
}

impl Default for ControlPayload {
    fn default() -> Self {
        ControlPayload::EMPTY
    }
}

impl Deref for ControlPayload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for ControlPayload {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_125_bytes() {
        assert_eq!(ControlPayload::new(b"").map(|p| p.len()), Some(0));
        assert_eq!(ControlPayload::EMPTY.as_bytes(), b"");
        let max = [7u8; 125];
        assert_eq!(ControlPayload::new(&max).as_deref(), Some(&max[..]));
        assert_eq!(ControlPayload::new(&[0u8; 126]), None);
    }
}
