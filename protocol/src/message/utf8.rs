//! Incremental UTF-8 validation that fails at the first impossible byte.

use std::str;

use crate::error::ProtocolError;

/// An incremental UTF-8 validator.
///
/// Feed a text message in pieces as they arrive; [`feed`](Utf8Validator::feed) fails as soon as
/// a byte makes the input impossible to complete as UTF-8, even if that byte ends a piece in the
/// middle of a sequence (e.g. `F4 90` fails at `90`, as it would encode a code point above
/// U+10FFFF). [`finish`](Utf8Validator::finish) fails if a sequence is left incomplete.
///
/// The bulk of each piece is checked by `std::str::from_utf8`; only a sequence split across
/// pieces (at most 3 bytes) is carried over.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// Total length of a sequence from its (valid) lead byte.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate the next piece of input.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ProtocolError> {
        if self.carry_len > 0 {
            bytes = self.complete_carry(bytes)?;
            if self.carry_len > 0 {
                return Ok(()); // input exhausted, sequence still incomplete
            }
        }
        match str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // error_len() is None only when the input ends inside a sequence that is valid so
            // far (std checks each byte, including the restricted second-byte ranges).
            Err(e) if e.error_len().is_none() => {
                let tail = bytes.get(e.valid_up_to()..).unwrap_or_default();
                self.set_carry(tail);
                Ok(())
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Extend the carried partial sequence from `bytes`; returns the bytes left after it.
    fn complete_carry<'b>(&mut self, bytes: &'b [u8]) -> Result<&'b [u8], ProtocolError> {
        let have = usize::from(self.carry_len);
        let need = sequence_len(self.carry[0]).saturating_sub(have);
        let take = need.min(bytes.len());
        let (more, rest) = bytes.split_at(take);
        let mut seq = self.carry;
        for (d, s) in seq.iter_mut().skip(have).zip(more) {
            *d = *s;
        }
        let seq = seq.get(..have + take).unwrap_or_default();
        match str::from_utf8(seq) {
            Ok(_) => {
                self.carry_len = 0;
                Ok(rest)
            }
            Err(e) if e.error_len().is_none() => {
                self.set_carry(seq);
                Ok(rest)
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    fn set_carry(&mut self, tail: &[u8]) {
        let mut carry = [0u8; 4];
        for (d, s) in carry.iter_mut().zip(tail) {
            *d = *s;
        }
        self.carry = carry;
        self.carry_len = tail.len().min(4) as u8;
    }

    /// End of input: fails if a sequence is incomplete. Either way the validator is reset.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let incomplete = self.carry_len > 0;
        self.reset();
        if incomplete {
            Err(ProtocolError::InvalidUtf8)
        } else {
            Ok(())
        }
    }

    /// Forget any pending partial sequence.
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }

    /// Whether a partial sequence is pending (the input so far ends mid-character).
    pub fn is_incomplete(&self) -> bool {
        self.carry_len > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole_vs_std(bytes: &[u8]) {
        let std_ok = str::from_utf8(bytes).is_ok();
        // Every single split point, and byte by byte.
        for cut in 0..=bytes.len() {
            let mut v = Utf8Validator::new();
            let (a, b) = bytes.split_at(cut);
            let ok = v.feed(a).and_then(|_| v.feed(b)).and_then(|_| v.finish());
            assert_eq!(ok.is_ok(), std_ok, "{bytes:02x?} cut {cut}");
        }
        let mut v = Utf8Validator::new();
        let ok = bytes
            .iter()
            .try_for_each(|b| v.feed(std::slice::from_ref(b)))
            .and_then(|_| v.finish());
        assert_eq!(ok.is_ok(), std_ok, "{bytes:02x?} byte by byte");
    }

    #[test]
    fn agrees_with_std() {
        let cases: &[&[u8]] = &[
            b"",
            b"hello",
            "κόσμε".as_bytes(),
            "\u{10FFFF}\u{FFFF}\u{80}\u{7FF}\u{800}".as_bytes(),
            "😀 mixed ascii".as_bytes(),
            b"\xed\xa0\x80",
            b"\xed\x9f\xbf",
            b"\xc0\x80",
            b"\xc1\xbf",
            b"\xe0\x80\x80",
            b"\xe0\x9f\xbf",
            b"\xf0\x80\x80\x80",
            b"\xf0\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xf5\x80\x80\x80",
            b"\xff",
            b"\x80",
            b"abc\xce",
            b"abc\xe2\x82",
            b"abc\xf0\x9f\x98",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            b"\xe2\x82\xac\xe2\x82",
        ];
        for c in cases {
            whole_vs_std(c);
        }
    }

    #[test]
    fn fails_at_first_impossible_byte() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok \xf4").is_ok());
        assert_eq!(v.feed(b"\x90"), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ok \xf4\x90"), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xed\xa0"), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xe0\x80"), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xc0"), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf0\x9f").is_ok());
        assert!(v.is_incomplete());
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
        assert!(!v.is_incomplete());
    }
}
