//! Masking (RFC 6455 section 5.3): the hot path of every client-to-server byte.

/// Bytes handled per block by the fast loop, as eight 8-byte words: the compiler turns the
/// block into vector XORs without any `unsafe`.
const BLOCK: usize = 64;

/// XOR `data` with `mask`, where `data[0]` is byte number `offset` of the payload (so a payload
/// can be unmasked in pieces as it arrives). Masking is its own inverse.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    // The key lined up with data[0], repeated to one 8-byte word.
    let r = (offset % 4) as usize;
    let key = |i: usize| mask[(r + i) & 3];
    let word = u64::from_ne_bytes([
        key(0),
        key(1),
        key(2),
        key(3),
        key(0),
        key(1),
        key(2),
        key(3),
    ]);
    let mut blocks = data.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        xor_words(block, word);
    }
    // BLOCK and 8 are multiples of 4: every piece below starts at key byte 0 of `word`.
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for w in &mut words {
        xor_word(w, word);
    }
    for (d, m) in words.into_remainder().iter_mut().zip(word.to_ne_bytes()) {
        *d ^= m;
    }
}

/// XOR every 8-byte word of `block` (a multiple of 8 long) with `word`.
#[inline(always)]
fn xor_words(block: &mut [u8], word: u64) {
    for w in block.chunks_exact_mut(8) {
        xor_word(w, word);
    }
}

/// XOR one 8-byte piece with `word` (native byte order both ways, so byte i meets key byte i).
#[inline(always)]
fn xor_word(w: &mut [u8], word: u64) {
    if let Ok(bytes) = <[u8; 8]>::try_from(&*w) {
        w.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
}

/// A plain byte-at-a-time reference, for tests.
#[cfg(test)]
pub(crate) fn apply_mask_naive(data: &mut [u8], mask: [u8; 4], offset: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[((offset % 4) as usize + i % 4) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(len: usize, offset: u64) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let mut fast = data.clone();
        let mut naive = data.clone();
        apply_mask(&mut fast, mask, offset);
        apply_mask_naive(&mut naive, mask, offset);
        assert_eq!(fast, naive, "len {len} offset {offset}");
        apply_mask(&mut fast, mask, offset);
        assert_eq!(fast, data);
    }

    #[test]
    fn matches_naive_everywhere() {
        for offset in 0..8u64 {
            for len in 0..300 {
                check(len, offset);
            }
            for len in [1023, 1024, 1025, 4096 + 3, 65_536, 100_001] {
                check(len, offset);
            }
        }
        check(77, u64::MAX - 3);
    }

    #[test]
    fn split_anywhere_equals_whole() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..200u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for cut in 0..data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, cut as u64);
            assert_eq!(parts, whole);
        }
    }
}
