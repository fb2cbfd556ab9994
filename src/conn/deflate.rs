//! The server's side of permessage-deflate: compressors for what it sends and decompressors for what it
//! receives, shared by all connections or kept by each.
//!
//! Without context takeover (the default) every message is (de)compressed on its own, so no connection
//! needs a (de)compressor of its own: they come from small pools shared by the server, taken for one
//! message and put back (reset). A pool keeps at most four per CPU (and at least 8) for each window
//! size; memory then grows with the number of messages being handled at once, not with connections,
//! and an idle connection holds none. (A compressor made afresh costs about 6 us more than a pooled
//! one, its tables being new memory; and (de)compressors allocated and freed per connection were
//! measured to leave 17 KiB of fragmented heap per idle connection.) With context takeover each
//! connection keeps its own, allocated by its first compressed message. The compressor is used under
//! the connection's write lock (see the writer), so that the order of the messages on the wire is the
//! order they were compressed in.

use std::sync::{Arc, Mutex};

use hydrogen_ws_protocol::deflate::{DeflateParams, Deflater, Inflater, NAME};
use hydrogen_ws_protocol::{Extension, ExtensionError, OpCode, RSV1};

use super::lock;
use crate::stats::Stats;

/// The compression level: zlib's fastest. JSON shrinks nearly as much as at the default level 6 (a
/// 1 KiB status message: 88 bytes against 86) for a third of the CPU.
pub(crate) const LEVEL: u32 = 1;

/// Spare (de)compressors of one kind, by window size (8..=15).
struct Shelf<T> {
    free: [Mutex<Vec<T>>; 8],
    keep: usize,
}

impl<T> Shelf<T> {
    fn new(keep: usize) -> Shelf<T> {
        Shelf {
            free: Default::default(),
            keep,
        }
    }

    fn slot(&self, window_bits: u8) -> &Mutex<Vec<T>> {
        &self.free[usize::from(window_bits.clamp(8, 15) - 8)]
    }

    fn take(&self, window_bits: u8) -> Option<T> {
        lock(self.slot(window_bits)).pop()
    }

    fn put(&self, window_bits: u8, spare: T) {
        let mut free = lock(self.slot(window_bits));
        if free.len() < self.keep {
            free.push(spare);
        }
    }
}

/// The (de)compressors shared by the connections that agreed permessage-deflate without context
/// takeover.
pub(crate) struct DeflatePool {
    deflaters: Shelf<Deflater>,
    inflaters: Shelf<Inflater>,
}

impl DeflatePool {
    pub(crate) fn new() -> DeflatePool {
        let keep = std::thread::available_parallelism().map_or(8, |n| (4 * n.get()).max(8));
        DeflatePool {
            deflaters: Shelf::new(keep),
            inflaters: Shelf::new(keep),
        }
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
                let shelf = &self.pool.deflaters;
                let mut d = shelf
                    .take(self.window_bits)
                    .unwrap_or_else(|| Deflater::new(self.window_bits, true, LEVEL));
                let result = d.compress(payload, out);
                if result.is_ok() {
                    shelf.put(self.window_bits, d);
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

/// The session's side: inflates what the client sends (compressing is the writer's job, see
/// [`ConnDeflate`]).
pub(crate) struct SessionInflate {
    window_bits: u8,
    /// The connection's own decompressor (the client keeps its context), allocated by its first
    /// compressed message.
    own: Option<Inflater>,
    pool: Arc<DeflatePool>,
}

impl SessionInflate {
    pub(crate) fn new(params: &DeflateParams, pool: Arc<DeflatePool>) -> SessionInflate {
        let window_bits = params.client_window_bits();
        SessionInflate {
            window_bits,
            own: (!params.client_no_context_takeover).then(|| Inflater::new(window_bits, false)),
            pool,
        }
    }
}

impl Extension for SessionInflate {
    fn name(&self) -> &str {
        NAME
    }

    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn decode(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ExtensionError> {
        if let Some(own) = &mut self.own {
            return own.decompress(payload, out, max);
        }
        let shelf = &self.pool.inflaters;
        let mut i = shelf
            .take(self.window_bits)
            .unwrap_or_else(|| Inflater::new(self.window_bits, true));
        let result = i.decompress(payload, out, max);
        // Reset after any outcome (an error included): fit for the next message.
        shelf.put(self.window_bits, i);
        result
    }

    /// Not used: the writer compresses (`Conn::send_frame`). Passes the payload through unchanged.
    fn encode(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, ExtensionError> {
        out.extend_from_slice(payload);
        Ok(0)
    }
}
