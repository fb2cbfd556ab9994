//! The fast path's frame: a whole single-frame message at the start of the buffer.

/// A whole data message in one frame at the start of a buffer, as a server receives it: FIN set,
/// no RSV bits, text or binary, masked, a payload under 64 KiB in the minimal length encoding,
/// within the limits, and all of it in the buffer. Anything else takes the general path.
#[derive(Debug, Clone, Copy)]
pub(super) struct WholeFrame {
    pub(super) text: bool,
    pub(super) mask: [u8; 4],
    /// Header length (mask included).
    pub(super) head: usize,
    /// Payload length.
    pub(super) len: usize,
}

impl WholeFrame {
    pub(super) fn at(buf: &[u8], limit: u64) -> Option<WholeFrame> {
        let text = match *buf.first()? {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let b1 = *buf.get(1)?;
        if b1 & 0x80 == 0 {
            return None;
        }
        let (head, len) = match b1 & 0x7F {
            127 => return None,
            126 => {
                let len = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
                // A short length in the long form is a protocol error: the general path says so.
                if len < 126 {
                    return None;
                }
                (8, len)
            }
            len => (6, usize::from(len)),
        };
        if len as u64 > limit || buf.len().checked_sub(head)? < len {
            return None;
        }
        let mask = buf.get(head - 4..head)?.try_into().ok()?;
        Some(WholeFrame {
            text,
            mask,
            head,
            len,
        })
    }
}
