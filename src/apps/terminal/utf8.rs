//! PTY output -> text: a character split across two reads is carried to the next read, never cut (the
//! fault of Hydrogen's terminal, which dropped it); bytes that can never be UTF-8 become U+FFFD.

/// Turns a stream of byte chunks into text, carrying an incomplete last character to the next chunk.
#[derive(Debug, Default)]
pub(super) struct Utf8Stream {
    /// The start of a character whose last bytes have not arrived yet (at most 3 bytes).
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// The text of `chunk` (after what was carried), minus an incomplete character at its end, which is
    /// kept for the next call.
    pub(super) fn push(&mut self, chunk: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(chunk);
        let keep = incomplete_tail(&bytes);
        self.carry = bytes.split_off(bytes.len() - keep);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// What is left at the end of the stream (an incomplete character: U+FFFD).
    pub(super) fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.carry);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// How many bytes at the end of `bytes` begin a character that is valid so far but incomplete.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let start = bytes.len() - back;
        let lead = bytes[start];
        if lead & 0xC0 == 0x80 {
            continue; // a continuation byte: the start is further back
        }
        let needed = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        // A prefix that can still become a character fails only for want of bytes (no error length).
        let valid_prefix = std::str::from_utf8(&bytes[start..])
            .err()
            .is_some_and(|e| e.error_len().is_none());
        return if back < needed && valid_prefix {
            back
        } else {
            0
        };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_anywhere_arrives_whole() {
        let text = "aé€😀z".repeat(3);
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut s = Utf8Stream::default();
            let mut out = s.push(&bytes[..cut]);
            out += &s.push(&bytes[cut..]);
            out += &s.finish();
            assert_eq!(out, text, "cut at {cut}");
        }
        // One byte at a time.
        let mut s = Utf8Stream::default();
        let out: String = bytes.iter().map(|b| s.push(&[*b])).collect();
        assert_eq!(out + &s.finish(), text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"a\xffb"), "a\u{FFFD}b");
        // A lead byte followed by a non-continuation is invalid at once, not carried.
        assert_eq!(s.push(b"\xe2x"), "\u{FFFD}x");
        // An incomplete character at the end of the stream.
        assert_eq!(s.push(b"ok\xe2\x82"), "ok");
        assert_eq!(s.finish(), "\u{FFFD}");
        // A prefix that can never complete (a surrogate) is not carried.
        assert_eq!(s.push(b"\xed\xa0"), "\u{FFFD}\u{FFFD}");
    }
}
