//! permessage-deflate's settings.

use super::ConfigError;

/// permessage-deflate (RFC 7692): whether it is agreed when a client offers it, and how.
///
/// The defaults are chosen from what a connection costs (README, Memory): a compressor holds about
/// 370 KiB at a 15-bit window (250 KiB at 9 bits, its hash table and buffers do not shrink with the
/// window) and a decompressor 46 KiB, against 19 KiB for a whole idle connection. So by default no
/// context is kept between messages (`context_takeover: false`): compressors are pooled by the
/// server and a decompressor lives only while a message is inflated, and an idle connection with
/// deflate costs what one without it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// Agree to permessage-deflate when a client offers it (every browser does). Default on.
    pub enabled: bool,
    /// Largest LZ77 window (log2, 8 to 15) of both directions. Default 15.
    pub window_bits: u8,
    /// Keep the compression context between messages (better ratio for streams of similar messages,
    /// about 360 KiB per connection that has used it). Default off.
    pub context_takeover: bool,
    /// Messages shorter than this go out uncompressed. Default 256 bytes.
    pub min_size: usize,
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate {
            enabled: true,
            window_bits: 15,
            context_takeover: false,
            min_size: 256,
        }
    }
}

impl Deflate {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(8..=15).contains(&self.window_bits) {
            return Err(ConfigError::new(
                "--deflate-window-bits",
                "must be between 8 and 15",
            ));
        }
        Ok(())
    }
}
