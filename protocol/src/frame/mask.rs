//! Masking (RFC 6455 section 5.3): the hot path of every client-to-server byte.

/// Bytes handled per block by the fast loop. A fixed-size block lets the compiler turn the
/// inner XOR into vector instructions without any `unsafe`.
const BLOCK: usize = 32;

/// XOR `data` with `mask`, where `data[0]` is byte number `offset` of the payload (so a payload
/// can be unmasked in pieces as it arrives). Masking is its own inverse.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    // Rotate the key so that it lines up with data[0].
    let mut rotated = mask;
    rotated.rotate_left((offset % 4) as usize);
    let mut pattern = [0u8; BLOCK];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = rotated[i % 4];
    }
    let mut blocks = data.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for (d, m) in block.iter_mut().zip(pattern.iter()) {
            *d ^= *m;
        }
    }
    // BLOCK is a multiple of 4, so the remainder starts at key byte 0 of `rotated`.
    for (d, m) in blocks.into_remainder().iter_mut().zip(pattern.iter()) {
        *d ^= *m;
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
