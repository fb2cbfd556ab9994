//! The byte format of the structured inputs, and their `arbitrary` impls.

/// Reads the structured inputs; past the end every read gives zeros.
pub(super) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(super) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(super) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(super) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(super) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// `n` bytes, or what is left.
    pub(super) fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// A byte string with a 16-bit length.
    pub(super) fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.u16());
        self.take(n).to_vec()
    }

    /// A short byte string with an 8-bit length.
    pub(super) fn short(&mut self) -> Vec<u8> {
        let n = usize::from(self.u8());
        self.take(n).to_vec()
    }

    /// Text: the bytes of [`Reader::bytes`], with invalid sequences replaced by U+FFFD.
    pub(super) fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// The inverse of [`Reader`].
#[derive(Default)]
pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.0
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn bytes(&mut self, v: &[u8]) {
        let n = v.len().min(usize::from(u16::MAX));
        self.u16(n as u16);
        self.0.extend_from_slice(v.get(..n).unwrap_or_default());
    }

    pub(super) fn short(&mut self, v: &[u8]) {
        let n = v.len().min(usize::from(u8::MAX));
        self.u8(n as u8);
        self.0.extend_from_slice(v.get(..n).unwrap_or_default());
    }
}

#[cfg(feature = "arbitrary")]
mod arbitrary_impls {
    use arbitrary::{Arbitrary, Result, Unstructured};

    use crate::{RoundtripInput, SessionInput};

    impl<'a> Arbitrary<'a> for SessionInput {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let n = u.arbitrary_len::<u8>()?;
            Ok(SessionInput::from_bytes(u.bytes(n)?))
        }

        fn arbitrary_take_rest(u: Unstructured<'a>) -> Result<Self> {
            Ok(SessionInput::from_bytes(u.take_rest()))
        }
    }

    impl<'a> Arbitrary<'a> for RoundtripInput {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let n = u.arbitrary_len::<u8>()?;
            Ok(RoundtripInput::from_bytes(u.bytes(n)?))
        }

        fn arbitrary_take_rest(u: Unstructured<'a>) -> Result<Self> {
            Ok(RoundtripInput::from_bytes(u.take_rest()))
        }
    }
}
