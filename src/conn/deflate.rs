//! The server's side of permessage-deflate for what it sends: compressors, shared or per connection.
//!
//! Without context takeover (the default) every message is compressed on its own, so no connection
//! needs a compressor of its own: they come from a small pool shared by the server, taken for one
//! message and put back (reset). The pool keeps at most four per CPU (and at least 8) for each window
//! size; memory then grows with the number of messages being compressed at once, not with connections.
//! (A compressor made afresh costs about 6 us more than a pooled one: its tables are new memory.) With context
//! takeover each connection keeps its own compressor for its life, allocated by its first compressed
//! message; it is used under the connection's write lock (see the writer), so that the order of the
//! messages on the wire is the order they were compressed in.

use std::sync::{Arc, Mutex};

use hydrogen_ws_protocol::deflate::{DeflateParams, Deflater};
use hydrogen_ws_protocol::ExtensionError;

use super::lock;
use crate::stats::Stats;

/// The compression level: zlib's fastest. JSON shrinks nearly as much as at the default level 6 (a
/// 1 KiB status message: 88 bytes against 86) for a third of the CPU.
pub(crate) const LEVEL: u32 = 1;

/// Compressors kept for messages without context takeover, by window size (8..=15).
pub(crate) struct DeflatePool {
    free: [Mutex<Vec<Deflater>>; 8],
    keep: usize,
}

impl DeflatePool {
    pub(crate) fn new() -> DeflatePool {
        DeflatePool {
            free: Default::default(),
            keep: std::thread::available_parallelism().map_or(8, |n| (4 * n.get()).max(8)),
        }
    }

    fn slot(&self, window_bits: u8) -> &Mutex<Vec<Deflater>> {
        &self.free[usize::from(window_bits.clamp(8, 15) - 8)]
    }
}

/// One connection's outgoing compression, as agreed in its handshake.
pub(crate) struct ConnDeflate {
    window_bits: u8,
    min_size: usize,
    /// The connection's own compressor (context takeover), allocated by its first message.
    own: Option<Mutex<Deflater>>,
    pool: Arc<DeflatePool>,
    stats: Arc<Stats>,
}

impl ConnDeflate {
    pub(crate) fn new(
        params: &DeflateParams,
        min_size: usize,
        pool: Arc<DeflatePool>,
        stats: Arc<Stats>,
    ) -> ConnDeflate {
        let window_bits = params.server_window_bits();
        ConnDeflate {
            window_bits,
            min_size,
            own: (!params.server_no_context_takeover)
                .then(|| Mutex::new(Deflater::new(window_bits, false, LEVEL))),
            pool,
            stats,
        }
    }

    /// Whether a data message of `len` bytes is sent compressed.
    pub(crate) fn applies(&self, len: usize) -> bool {
        len >= self.min_size
    }

    /// Whether the context is kept between messages: compression order must then be wire order.
    pub(crate) fn takes_over(&self) -> bool {
        self.own.is_some()
    }

    /// Compresses one message into `out` (cleared first).
    pub(crate) fn compress(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ExtensionError> {
        out.clear();
        match &self.own {
            Some(own) => lock(own).compress(payload, out)?,
            None => {
                let slot = self.pool.slot(self.window_bits);
                let taken = lock(slot).pop();
                let mut d = taken.unwrap_or_else(|| Deflater::new(self.window_bits, true, LEVEL));
                let result = d.compress(payload, out);
                let mut free = lock(slot);
                if result.is_ok() && free.len() < self.pool.keep {
                    free.push(d);
                }
                result?
            }
        }
        Stats::bump(&self.stats.deflated_messages);
        Stats::add(&self.stats.deflated_bytes_raw, payload.len());
        Stats::add(&self.stats.deflated_bytes_wire, out.len());
        Ok(())
    }
}
