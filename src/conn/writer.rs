//! The connection's writer: a bounded per-connection queue that never blocks the lock holder, the
//! batching of a worker's own replies (one send for many pipelined messages), eviction of clients that
//! stop reading, and the shutdown's non-blocking 1001.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{close_payload, parse_close, CloseCode, FrameHeader, OpCode, RSV1};
use log::warn;

use super::deflate::ConnDeflate;
use super::ending::close_parts;
use super::{lock, Conn, SendError, STATE_CLOSING, STATE_HANDSHAKE};
use crate::stats::Stats;
use crate::sys::{self, SEND_NOW, SEND_NOW_MORE};

thread_local! {
    /// The id of the connection this worker thread is serving (0: none). A send from a connection's own
    /// worker waits for the client to take the data (back-pressure); a send from any other thread never
    /// waits.
    static SERVING: Cell<u64> = const { Cell::new(0) };
    /// While the worker hands out the events of one read, its own small replies are gathered and go out
    /// together before the next read: one send for many pipelined messages instead of one each.
    static BATCH: Cell<Batch> = const { Cell::new(Batch::Off) };
    /// The frames held back during the batch (all for the connection this worker serves), in order. Kept
    /// between batches while the connection is busy; freed when it goes quiet ([`release_batch_buffer`]).
    static BATCH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The compressed payload of the message being sent (kept between messages up to
    /// [`DEFLATED_KEEP`]).
    static DEFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest compressed-payload buffer a thread keeps for its next message.
const DEFLATED_KEEP: usize = 64 * 1024;

/// Whether this thread is a worker serving a connection now (its handler is running, or its read loop).
pub(crate) fn serving_here() -> bool {
    SERVING.with(Cell::get) != 0
}

/// Marks this thread as the worker serving connection `id` (0: none).
pub(crate) fn set_serving(id: u64) {
    SERVING.with(|c| c.set(id));
}

/// Gives the batch buffer's memory back (the connection went quiet or ended).
pub(crate) fn release_batch_buffer() {
    BATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.capacity() > 0 {
            *b = Vec::new();
        }
    });
}

/// Runs `f` on the frames this worker has held back so far.
fn with_batch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BATCH_BUF.with(|b| f(&mut b.borrow_mut()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    Off,
    /// Gathering; `true` once something is held back.
    On(bool),
}

/// How often the ticker visits every connection (to flush what slow clients left queued, among
/// other things); a worker waiting for its queue to drain looks again at least this often.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Most bytes the worker holds back before sending them anyway. As large as the worker's largest read
/// buffer (which is set to this): the echoes of one read's messages are smaller than the messages (they
/// carry no mask), so they leave in one send.
pub(crate) const BATCH_LIMIT: usize = 128 * 1024;

/// Ends a batch when dropped (the read loop left by any path), and adds its traffic to the counters.
pub(crate) struct BatchGuard<'a> {
    stats: &'a Stats,
}

impl<'a> BatchGuard<'a> {
    pub(crate) fn start(stats: &'a Stats) -> BatchGuard<'a> {
        BATCH.with(|b| b.set(Batch::On(false)));
        stats.count_locally();
        BatchGuard { stats }
    }

    /// Ends the batch; whether the worker held anything back that must now go out.
    pub(crate) fn finish(&self) -> bool {
        self.stats.flush_local_counts();
        BATCH.with(|b| b.replace(Batch::Off)) == Batch::On(true)
    }
}

impl Drop for BatchGuard<'_> {
    fn drop(&mut self) {
        self.stats.flush_local_counts();
        BATCH.with(|b| b.set(Batch::Off));
        // Left without `finish` (the connection is ending): what was held back is not for anyone else.
        // Unless a handler panicked: the replies it was told went out still go, ahead of the 1011.
        if !std::thread::panicking() {
            with_batch(Vec::clear);
        }
    }
}

#[derive(Default)]
pub(crate) struct WriteState {
    /// A write failed part-way through a frame, or the client was evicted: the stream is finished.
    pub(crate) broken: bool,
    /// The client was evicted (it stopped reading), as opposed to a write failing (it went away).
    pub(crate) evicted: bool,
    /// Frame bytes accepted but not yet taken by the kernel, in order; `pending[done..]` is still due.
    pending: Vec<u8>,
    done: usize,
    /// When the socket last refused to take everything at once (cleared when `pending` empties).
    stalled_since: Option<Instant>,
}

impl WriteState {
    pub(crate) fn queued(&self) -> usize {
        self.pending.len() - self.done
    }

    /// Queues what the kernel has not taken of `parts` (one after the other): all but the first
    /// `taken` bytes.
    fn hold(&mut self, parts: [&[u8]; 3], mut taken: usize) {
        if self.queued() == 0 {
            self.pending.clear();
            self.done = 0;
        }
        for part in parts {
            let skip = taken.min(part.len());
            taken -= skip;
            self.pending.extend_from_slice(&part[skip..]);
        }
    }
}

/// What the shutdown sequence managed to do for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownClose {
    /// The whole close frame was written and the socket shut down.
    Written,
    /// Another thread holds the write lock; try again (or force).
    Busy,
    /// No close frame could be written (send buffer full, stream broken); the socket was shut down.
    Forced,
    /// The connection was still in the handshake; the socket was shut down.
    Handshake,
    /// The connection had already sent its close; the socket was shut down.
    AlreadyClosing,
}

impl Conn {
    /// Queues one frame and writes as much as the socket takes now. On the connection's own worker,
    /// then waits (bounded by the send timeout) until the queue has drained. A data message goes out
    /// compressed when the connection agreed permessage-deflate and it is long enough.
    pub(crate) fn send_frame(&self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.state.load(Ordering::SeqCst) == STATE_CLOSING {
            // The session is over (on_close, or later): nothing more goes to this client.
            return Err(SendError::Closed);
        }
        if let Some(deflate) = self.deflate.get() {
            if !opcode.is_control() && deflate.applies(payload.len()) {
                return self.send_deflated(deflate, opcode, payload);
            }
        }
        let header = FrameHeader::new(true, opcode, None, payload.len() as u64);
        self.send_encoded(opcode, header, payload)
    }

    /// [`Conn::send_frame`] for a frame whose header is made: held back in the batch, or written.
    /// Inlined: holding a reply back, once per message under load, stays one short call.
    #[inline]
    fn send_encoded(
        &self,
        opcode: OpCode,
        header: FrameHeader,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let header = header.encode();
        let own = SERVING.with(Cell::get) == self.id;
        if own && opcode != OpCode::Close && BATCH.with(Cell::get) != Batch::Off {
            // Held back (in this worker's own buffer, no lock taken) until the read loop ends the batch.
            if self.close_was_sent() {
                return Err(SendError::Closed);
            }
            let held = with_batch(|b| {
                if b.len() + header.as_bytes().len() + payload.len() > BATCH_LIMIT {
                    return false;
                }
                header.append_to(b);
                b.extend_from_slice(payload);
                true
            });
            if held {
                BATCH.with(|b| b.set(Batch::On(true)));
                return Ok(());
            }
        }
        self.write_frame(own, opcode, header.as_bytes(), payload)
    }

    /// A data message compressed (RSV1 on its frame). Without context takeover each message stands
    /// alone, so it then takes the usual path (batching included); with it, the message is compressed
    /// and written (or queued) under the write lock and never held back, so that the wire carries the
    /// messages in the order the compression context saw them.
    #[inline(never)]
    fn send_deflated(
        &self,
        deflate: &ConnDeflate,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let mut out = DEFLATED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        let header = |out: &[u8]| {
            let mut header = FrameHeader::new(true, opcode, None, out.len() as u64);
            header.rsv = RSV1;
            header
        };
        let result = if deflate.takes_over() {
            let own = SERVING.with(Cell::get) == self.id;
            let w = self.lock_writer();
            match deflate.compress(payload, &mut out) {
                Ok(()) => {
                    let head = header(&out).encode();
                    self.write_locked(w, own, opcode, head.as_bytes(), &out)
                }
                Err(_) => Err(SendError::Closed),
            }
        } else {
            match deflate.compress(payload, &mut out) {
                Ok(()) => self.send_encoded(opcode, header(&out), &out),
                Err(_) => Err(SendError::Closed),
            }
        };
        if out.capacity() <= DEFLATED_KEEP {
            out.clear();
            DEFLATED.with(|d| *d.borrow_mut() = out);
        }
        result
    }

    /// [`Conn::send_frame`] for a frame that is not held back: it goes out now (after what this worker
    /// held, if `own`), or is queued. Kept out of line so that holding a reply back, once per message
    /// under load, stays a short call.
    #[inline(never)]
    fn write_frame(
        &self,
        own: bool,
        opcode: OpCode,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), SendError> {
        let w = self.lock_writer();
        self.write_locked(w, own, opcode, header, payload)
    }

    /// [`Conn::write_frame`] with the write lock taken.
    fn write_locked(
        &self,
        mut w: MutexGuard<'_, WriteState>,
        own: bool,
        opcode: OpCode,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), SendError> {
        if own {
            // Whatever this worker held back goes first, in the same write: frames leave in the order
            // they were sent, and a full batch costs no extra send.
            self.send_held(&mut w, header, payload)?;
        } else {
            self.enqueue(&mut w, [&[], header, payload])?;
        }
        if opcode == OpCode::Close {
            self.mark_close_sent();
            lock(&self.closes)
                .ours
                .get_or_insert_with(|| close_parts(parse_close(payload).ok().flatten()));
        }
        if !own || w.queued() == 0 {
            return Ok(());
        }
        drop(w);
        self.wait_drained()
    }

    /// Writes (or queues) the frames this worker held back for this connection, then the frame
    /// `header` + `payload` (none if `header` is empty), in one send. After a close frame has gone out
    /// (the shutdown's, from another thread) they are dropped: nothing may follow a close.
    fn send_held(
        &self,
        w: &mut WriteState,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), SendError> {
        with_batch(|held| {
            if held.is_empty() && header.is_empty() {
                return Ok(());
            }
            let result = self.enqueue(w, [held, header, payload]);
            held.clear();
            result
        })
    }

    /// The end of a batch on the connection's own worker: the frames held back go out, and the worker
    /// waits (bounded) until the client has taken them.
    pub(crate) fn flush_batch(&self) -> Result<(), SendError> {
        {
            let mut w = self.lock_writer();
            match self.send_held(&mut w, &[], &[]) {
                Ok(()) => {}
                Err(SendError::Closed) if self.close_was_sent() => return Ok(()),
                Err(e) => return Err(e),
            }
            if w.queued() == 0 {
                return Ok(());
            }
        }
        self.wait_drained()
    }

    /// Queues `parts` (written one after the other) and writes as much as the socket takes now.
    fn enqueue(&self, w: &mut WriteState, parts: [&[u8]; 3]) -> Result<(), SendError> {
        if self.close_was_sent() || w.broken {
            return Err(SendError::Closed);
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut taken = 0;
        if w.queued() == 0 {
            taken = self.send_now(parts).map_err(|e| self.fail_write(w, e))?;
            if taken == total {
                return Ok(());
            }
        } else {
            self.flush(w)?;
        }
        // The limit is on what the client left untaken: one frame is always accepted (the caller's
        // own worker then waits for it), so a message larger than the limit is not a reason to evict.
        if w.queued() > self.max_pending {
            return Err(self.evict(w, "it let more than the pending limit pile up"));
        }
        w.hold(parts, taken);
        w.stalled_since.get_or_insert_with(Instant::now);
        self.flush(w)
    }

    /// One non-blocking (vectored, unless only one part has bytes) send of `parts` in order; how much
    /// the kernel took.
    fn send_now(&self, parts: [&[u8]; 3]) -> io::Result<usize> {
        loop {
            let sent = match parts {
                [only, [], []] | [[], only, []] => self.socket.send_with_flags(only, SEND_NOW),
                [a, b, c] => self.socket.send_vectored_with_flags(
                    &[IoSlice::new(a), IoSlice::new(b), IoSlice::new(c)],
                    SEND_NOW,
                ),
            };
            match sent {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes queued bytes without blocking until the socket stops taking them.
    /// Any progress restarts the send-timeout clock: a client that reads slowly is not one that stopped.
    fn flush(&self, w: &mut WriteState) -> Result<(), SendError> {
        let mut took = false;
        while w.queued() > 0 {
            match self.socket.send_with_flags(&w.pending[w.done..], SEND_NOW) {
                Ok(0) => return Err(self.fail_write(w, io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    w.done += n;
                    took = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if took {
                        w.stalled_since = Some(Instant::now());
                    }
                    return Ok(());
                }
                Err(e) => return Err(self.fail_write(w, e)),
            }
        }
        w.pending.clear();
        w.done = 0;
        // Kept as large as a full batch, so that a client that takes each batch in parts does not cost
        // a reallocation per batch.
        if w.pending.capacity() > BATCH_LIMIT {
            w.pending.shrink_to(BATCH_LIMIT);
        }
        w.stalled_since = None;
        Ok(())
    }

    /// The connection's own worker waits for its queue to drain, up to the send timeout.
    pub(crate) fn wait_drained(&self) -> Result<(), SendError> {
        loop {
            let mut w = self.lock_writer();
            self.flush(&mut w)?;
            if w.queued() == 0 {
                return Ok(());
            }
            let since = *w.stalled_since.get_or_insert_with(Instant::now);
            let elapsed = since.elapsed();
            if elapsed >= self.send_timeout {
                return Err(self.evict(&mut w, "a write waited past the send timeout"));
            }
            drop(w);
            // Wait for room in the send buffer without holding the lock: others may queue meanwhile.
            // POLLOUT needs a third of the buffer free while a send takes any free byte, so the ticker
            // may drain the queue without this poll waking: look again at least every tick.
            let _ = sys::wait_writable(&self.socket, (self.send_timeout - elapsed).min(TICK));
        }
    }

    /// The ticker's pass over this connection: flush what is queued, evict it if stalled too long.
    pub(crate) fn flush_or_evict(&self) {
        let Ok(mut w) = self.writer.try_lock() else {
            return; // someone is writing right now; next tick
        };
        if w.queued() == 0 || w.broken {
            return;
        }
        if self.flush(&mut w).is_err() || w.queued() == 0 {
            return;
        }
        if w.stalled_since
            .is_some_and(|since| since.elapsed() >= self.send_timeout)
        {
            let _ = self.evict(
                &mut w,
                "it stopped reading for longer than the send timeout",
            );
        }
    }

    fn fail_write(&self, w: &mut WriteState, error: io::Error) -> SendError {
        w.broken = true;
        let _ = self.socket.shutdown(Shutdown::Both);
        SendError::Io(error)
    }

    /// Drops a client that does not read: one last non-blocking try at a 1008 close frame (it only gets
    /// through if the queue had drained), then the socket is shut both ways so its worker wakes and leaves.
    fn evict(&self, w: &mut WriteState, why: &str) -> SendError {
        if !w.broken {
            Stats::bump(&self.stats.evicted);
            warn!(
                "connection {} from {}: evicted (1008) because {why}",
                self.id, self.peer
            );
            if w.queued() == 0 && !self.close_was_sent() {
                let payload = close_payload(CloseCode::POLICY_VIOLATION, "client is not reading");
                let header =
                    FrameHeader::new(true, OpCode::Close, None, payload.as_bytes().len() as u64)
                        .encode();
                if let Ok(n) = self.send_now([&[], header.as_bytes(), payload.as_bytes()]) {
                    if n == header.as_bytes().len() + payload.as_bytes().len() {
                        self.stats.close_sent(CloseCode::POLICY_VIOLATION);
                    }
                }
            }
        }
        w.broken = true;
        w.evicted = true;
        w.pending = Vec::new();
        w.done = 0;
        let _ = self.socket.shutdown(Shutdown::Both);
        SendError::Evicted
    }

    /// The shutdown sequence's first step for this connection, which never blocks: takes the write lock
    /// only if it is free and writes the close frame with a non-blocking send.
    ///
    /// A worker writing its own client's frame passes `count_written`: it is bumped under the write
    /// lock, before the close is marked sent, so the sequence, which finds that connection "already
    /// closing", always sees the count too.
    pub(crate) fn write_going_away(
        &self,
        frame: &[u8],
        force: bool,
        count_written: Option<&AtomicUsize>,
    ) -> ShutdownClose {
        match self.state.load(Ordering::SeqCst) {
            STATE_HANDSHAKE => ShutdownClose::Handshake,
            _ => {
                let outcome = match self.writer.try_lock() {
                    Ok(mut w) => self.write_close_now(&mut w, frame, count_written),
                    Err(TryLockError::Poisoned(p)) => {
                        self.write_close_now(&mut p.into_inner(), frame, count_written)
                    }
                    Err(TryLockError::WouldBlock) if !force => return ShutdownClose::Busy,
                    Err(TryLockError::WouldBlock) => return ShutdownClose::Forced,
                };
                // The lock is released before the FIN: the client answers the frame at once, and its
                // worker, woken by that answer, should not find the lock still held.
                if outcome == ShutdownClose::Written {
                    self.write_shut.store(true, Ordering::SeqCst);
                    let _ = self.socket.shutdown(Shutdown::Write);
                    self.stats.close_sent(CloseCode::GOING_AWAY);
                }
                outcome
            }
        }
    }

    /// The shutdown sequence's second step: `shutdown(Both)`, so the worker blocked in `read` wakes at
    /// once (and a send blocked anywhere fails at once).
    pub(crate) fn shut_down(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    fn write_close_now(
        &self,
        w: &mut WriteState,
        frame: &[u8],
        count_written: Option<&AtomicUsize>,
    ) -> ShutdownClose {
        if self.close_was_sent() {
            return ShutdownClose::AlreadyClosing;
        }
        if w.broken || self.flush(w).is_err() || w.queued() > 0 {
            // The client has not taken what is already queued: a close frame cannot go out behind it.
            w.broken = true;
            return ShutdownClose::Forced;
        }
        // MSG_MORE holds the frame back for an instant so that the FIN of the write shutdown right after
        // it rides in the same segment: one packet, and one wake-up of the client, instead of two.
        match self.socket.send_with_flags(frame, SEND_NOW_MORE) {
            Ok(n) if n == frame.len() => {
                if let Some(count) = count_written {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                // Seen by the worker without the lock: it stops handing the client's data to the handler,
                // and does not echo the client's close (ours answers it).
                self.mark_close_sent();
                ShutdownClose::Written
            }
            _ => {
                // Nothing, or part of the frame, went out: the stream is unusable either way.
                w.broken = true;
                ShutdownClose::Forced
            }
        }
    }

    /// Reads from the client (only its own worker does).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        (&self.socket).read(buf)
    }
}

/// The reason of the shutdown's 1001.
pub(crate) const GOING_AWAY_REASON: &str = "server shutting down";

/// The whole 1001 frame the shutdown writes to every client.
pub(crate) fn going_away_frame() -> Vec<u8> {
    let payload = close_payload(CloseCode::GOING_AWAY, GOING_AWAY_REASON);
    let payload = payload.as_bytes();
    let header = FrameHeader::new(true, OpCode::Close, None, payload.len() as u64).encode();
    let mut frame = header.as_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::WriteState;

    #[test]
    fn hold_queues_what_the_kernel_did_not_take_of_the_parts_in_order() {
        let parts: [&[u8]; 3] = [b"held", b"head", b"payload"];
        let all = parts.concat();
        for taken in 0..=all.len() {
            let mut w = WriteState::default();
            w.hold(parts, taken);
            assert_eq!(w.pending, &all[taken..], "taken {taken}");
            // More held behind what is still queued goes after it.
            w.hold([b"", b"x", b""], 0);
            assert_eq!(w.queued(), all.len() - taken + 1);
            assert_eq!(w.pending.last(), Some(&b'x'));
        }
    }
}
