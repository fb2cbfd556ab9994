//! The compressor and decompressor of one direction: raw DEFLATE (no zlib header) with a custom
//! window, the `00 00 ff ff` tail stripped on the way out and put back on the way in (RFC 7692
//! section 7.2), and a decompressed size limit that is enforced while inflating.
//!
//! Both allocate their zlib state on first use and, when no context is kept between messages, can
//! give it back ([`Deflater::release`], [`Inflater::release`]) or be shared: a server keeps a few
//! for all its connections, so that an idle connection holds none.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::ExtensionError;

/// What a sync flush ends with; stripped from every compressed message and appended before
/// inflating one.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output room at first, at least (doubling from there, never past the limit).
const INFLATE_STEP: usize = 4 * 1024;

/// The window zlib can work with: 9..=15. An 8-bit window is served by 9 bits: a zlib-family
/// compressor at 9 bits never refers back more than 250 bytes (`w_size - MIN_LOOKAHEAD`), so its
/// output is valid for a peer that keeps 256 bytes; and a 9-bit decompressor reads anything
/// compressed with an 8-bit window.
fn zlib_bits(window_bits: u8) -> u8 {
    window_bits.clamp(9, 15)
}

/// Compresses the messages of one direction.
pub struct Deflater {
    level: Compression,
    window_bits: u8,
    no_context_takeover: bool,
    state: Option<Box<Compress>>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("level", &self.level.level())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

impl Deflater {
    /// A compressor for a window of `window_bits` (8..=15, the agreed `*_max_window_bits`) at
    /// `level` (0..=9), resetting its context after every message if `no_context_takeover`.
    pub fn new(window_bits: u8, no_context_takeover: bool, level: u32) -> Deflater {
        Deflater {
            level: Compression::new(level.min(9)),
            window_bits: zlib_bits(window_bits),
            no_context_takeover,
            state: None,
        }
    }

    /// Compresses one whole message, appending the payload to send (tail stripped) to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ExtensionError> {
        let (level, bits) = (self.level, self.window_bits);
        let c = self
            .state
            .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(level, false, bits)));
        let start = out.len();
        let base = c.total_in();
        loop {
            let consumed = usize::try_from(c.total_in() - base).unwrap_or(usize::MAX);
            let rest = payload.get(consumed..).unwrap_or_default();
            // Room for about what is left (JSON shrinks; random data grows a little), at least enough
            // for the flush's few bytes.
            out.reserve(rest.len() / 2 + 64);
            c.compress_vec(rest, out, FlushCompress::Sync)
                .map_err(|_| ExtensionError::Invalid)?;
            let done = usize::try_from(c.total_in() - base).unwrap_or(usize::MAX) >= payload.len();
            // The flush is complete once a call ends with room to spare.
            if done && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            // Nothing came out: an empty message right after a flush (zlib has nothing to add). An
            // empty payload would not inflate (the receiver's tail alone is no block), so send what
            // RFC 7692 section 7.2.3.6 gives for an empty message: one empty block, 0x00.
            out.push(0x00);
        }
        if self.no_context_takeover {
            c.reset();
        }
        Ok(())
    }

    /// Gives the compressor's memory back if no context is kept between messages (it is allocated
    /// again by the next message). Returns whether it did.
    pub fn release(&mut self) -> bool {
        self.no_context_takeover && self.state.take().is_some()
    }

    /// Whether the compressor's state is allocated now.
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }
}

/// Decompresses the messages of one direction.
pub struct Inflater {
    window_bits: u8,
    no_context_takeover: bool,
    state: Option<Box<Decompress>>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

impl Inflater {
    /// A decompressor for a peer whose window is at most `window_bits` (8..=15), starting each
    /// message afresh if `no_context_takeover`.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Inflater {
        Inflater {
            window_bits: zlib_bits(window_bits),
            no_context_takeover,
            state: None,
        }
    }

    /// Decompresses one whole message (`payload` as received, without the tail), appending the
    /// result to `out`. More than `max` bytes of output is [`ExtensionError::TooLarge`], found as
    /// soon as the output passes `max`: `out` never grows past `max + 1` bytes, whatever the ratio.
    /// Corrupt data is [`ExtensionError::Invalid`]. After an error the context is gone (the
    /// connection is failed anyway).
    pub fn decompress(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ExtensionError> {
        if payload.is_empty() {
            // Not a DEFLATE block (an empty message compresses to 0x00), but some senders strip a
            // flush that produced only the tail: an empty message, and the context is untouched.
            return Ok(());
        }
        // Room for a typical ratio before the state is allocated: the output usually outlives the
        // state (the caller keeps its buffer), and allocated after it, it would leave a hole in the
        // allocator's arena when the state is freed (measured: 17 KiB of RSS per idle connection).
        let guess = payload.len().saturating_mul(4).max(INFLATE_STEP);
        out.reserve_exact(guess.min(max.saturating_add(1)));
        let bits = self.window_bits;
        let d = self
            .state
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let result = inflate(d, payload, out, max);
        if result.is_err() || self.no_context_takeover {
            d.reset(false);
        }
        result
    }

    /// Gives the decompressor's memory back if no context is kept between messages (it is allocated
    /// again by the next message). Returns whether it did.
    pub fn release(&mut self) -> bool {
        self.no_context_takeover && self.state.take().is_some()
    }

    /// Whether the decompressor's state is allocated now.
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }
}

fn inflate(
    d: &mut Decompress,
    payload: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), ExtensionError> {
    let start = out.len();
    // One byte past the limit is room enough to tell that the limit was passed.
    let ceiling = start.saturating_add(max).saturating_add(1);
    for input in [payload, &TAIL[..]] {
        let base = d.total_in();
        loop {
            let consumed = usize::try_from(d.total_in() - base).unwrap_or(usize::MAX);
            let rest = input.get(consumed..).unwrap_or_default();
            if out.len() == out.capacity() {
                if out.len() >= ceiling {
                    return Err(ExtensionError::TooLarge);
                }
                let grown = (out.capacity() - start)
                    .max(INFLATE_STEP)
                    .saturating_mul(2)
                    .saturating_add(start)
                    .min(ceiling);
                out.reserve_exact(grown - out.len());
            }
            let before_out = out.len();
            let status = d
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|_| ExtensionError::Invalid)?;
            if out.len() - start > max {
                return Err(ExtensionError::TooLarge);
            }
            let now_consumed = usize::try_from(d.total_in() - base).unwrap_or(usize::MAX);
            if status == Status::StreamEnd {
                // A final block (BFINAL, RFC 7692 section 7.2.3.4): the message ends there; what
                // follows it (padding, the tail we added) is ignored, as zlib-based peers do, and the
                // next message starts a new stream.
                d.reset(false);
                return Ok(());
            }
            let all_in = now_consumed >= input.len();
            let room_left = out.len() < out.capacity();
            if all_in && room_left {
                break;
            }
            if now_consumed == consumed && out.len() == before_out && room_left {
                // No progress with input and room: the stream is stuck (cannot happen with valid data).
                return Err(ExtensionError::Invalid);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(bits: u8, no_takeover: bool, messages: &[&[u8]]) {
        let mut d = Deflater::new(bits, no_takeover, 6);
        let mut i = Inflater::new(bits, no_takeover);
        for m in messages {
            let mut wire = Vec::new();
            d.compress(m, &mut wire).unwrap();
            let mut back = Vec::new();
            i.decompress(&wire, &mut back, m.len()).unwrap();
            assert_eq!(&back, m);
        }
    }

    #[test]
    fn roundtrips() {
        let json = br#"{"type":"status","printer":{"state":"printing","progress":42}}"#.repeat(40);
        for bits in 8..=15 {
            for no_takeover in [false, true] {
                roundtrip(bits, no_takeover, &[b"", b"a", &json, &json, b"x"]);
            }
        }
    }

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 7692 section 7.2.3.1 ("Hello", one block) and 7.2.3.2 (shared context).
        let mut i = Inflater::new(15, false);
        for wire in [
            &[0xf2u8, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        ] {
            let mut out = Vec::new();
            i.decompress(wire, &mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
        }
        // 7.2.3.3: a stored block; 7.2.3.4: BFINAL set.
        for wire in [
            &[
                0x00u8, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ][..],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        ] {
            let mut out = Vec::new();
            Inflater::new(15, false)
                .decompress(wire, &mut out, 100)
                .unwrap();
            assert_eq!(out, b"Hello");
        }
        // An empty message compresses to a single 0x00.
        let mut wire = Vec::new();
        Deflater::new(15, false, 6)
            .compress(b"", &mut wire)
            .unwrap();
        assert_eq!(wire, [0x00]);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        let mut wire = Vec::new();
        Deflater::new(15, false, 9)
            .compress(&zeros, &mut wire)
            .unwrap();
        assert!(wire.len() < 8 * 1024, "{}", wire.len());
        let mut out = Vec::new();
        let r = Inflater::new(15, false).decompress(&wire, &mut out, 100_000);
        assert_eq!(r, Err(ExtensionError::TooLarge));
        assert!(out.capacity() <= 100_001, "{}", out.capacity());
        // A buffer that already had room (a session reuses its own) does not grow past the limit.
        let mut out = Vec::with_capacity(60_000);
        let r = Inflater::new(15, false).decompress(&wire, &mut out, 100_000);
        assert_eq!(r, Err(ExtensionError::TooLarge));
        assert!(out.capacity() <= 100_001, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        Inflater::new(15, false)
            .decompress(&wire, &mut out, zeros.len())
            .unwrap();
        assert_eq!(out.len(), zeros.len());
    }

    #[test]
    fn an_empty_message_after_another_is_one_empty_block() {
        // Found by the inflate fuzz target: with context takeover, "" right after a message made no
        // output at all, and the receiver's tail alone left its inflater inside a block.
        let mut d = Deflater::new(15, false, 6);
        let mut i = Inflater::new(15, false);
        for m in [&b"hello"[..], b"", b"", b"again hello"] {
            let mut wire = Vec::new();
            d.compress(m, &mut wire).unwrap();
            assert!(!wire.is_empty());
            let mut back = Vec::new();
            i.decompress(&wire, &mut back, 100).unwrap();
            assert_eq!(back, m);
        }
        let mut back = Vec::new();
        i.decompress(b"", &mut back, 100).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn corrupt_data_is_invalid() {
        let mut out = Vec::new();
        let r = Inflater::new(15, false).decompress(&[0xff; 16], &mut out, 1000);
        assert_eq!(r, Err(ExtensionError::Invalid));
    }

    #[test]
    fn release_drops_only_what_need_not_be_kept() {
        let mut d = Deflater::new(15, true, 6);
        let mut i = Inflater::new(15, true);
        let mut wire = Vec::new();
        d.compress(b"hello", &mut wire).unwrap();
        i.decompress(&wire, &mut Vec::new(), 10).unwrap();
        assert!(d.release() && i.release());
        assert!(!d.is_allocated() && !i.is_allocated());
        let mut d = Deflater::new(15, false, 6);
        d.compress(b"hello", &mut Vec::new()).unwrap();
        assert!(!d.release() && d.is_allocated());
    }
}
