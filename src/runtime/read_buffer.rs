//! A worker's read buffer and the policy that sizes it: small (4 KiB) while a connection is idle, grown
//! (up to 128 KiB) while reads keep filling it, back to small once the burst is over. The policy decides;
//! the worker does the reads and sets the socket's read timeout it is told to. No socket here, so every
//! decision is tested on its own.

use std::time::Duration;

/// Smallest read buffer; idle connections hold this much.
pub(crate) const MIN_READ_BUF: usize = 4 * 1024;
/// The read buffer grows up to this while reads keep filling it. Large enough that a read takes in
/// everything a client pipelining 64 messages of 1 KiB has in flight (at 64 KiB it took two reads, and
/// two replies' worth of sends and wake-ups). As large as a worker's reply batch.
pub(crate) const MAX_READ_BUF: usize = crate::conn::BATCH_LIMIT;
/// Small reads in a row after which a grown read buffer goes back to the small one.
const SHRINK_AFTER: u32 = 4;
/// A grown read buffer goes back to the small one after the client has been quiet this long.
pub(crate) const SHRINK_IDLE: Duration = Duration::from_millis(500);

/// The read timeout the worker must set on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadTimeout {
    /// The idle timeout (or none, when there is no idle timeout).
    Idle,
    /// At most [`SHRINK_IDLE`]: a quiet check of a grown buffer.
    Quiet,
    /// What is left of the idle timeout after a quiet check.
    Rest(Duration),
}

/// What [`ReadBuffer::quiet`] found after a read timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// It was a quiet check: the buffer is small again; read on with this timeout.
    Shrunk(ReadTimeout),
    /// The idle timeout itself passed.
    Idle,
}

/// The bytes read and not yet consumed (`buf[start..end]`), the room behind them, and the policy's
/// state.
pub(crate) struct ReadBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The connection's idle timeout.
    idle: Option<Duration>,
    /// Whether the last read filled all the room it was given (more is probably waiting).
    filled: bool,
    /// Reads in a row that returned less than the small buffer holds: the burst is over.
    small_reads: u32,
    /// Whether reads wait at most SHRINK_IDLE (the buffer is grown) instead of the idle timeout.
    quiet_check: bool,
    /// Whether the read timeout is what remained of the idle timeout after a quiet check (restored
    /// to the whole idle timeout once the client sends again).
    idle_shortened: bool,
}

impl ReadBuffer {
    /// A buffer holding `leftover` (bytes that came behind the upgrade request) for a connection with
    /// the idle timeout `idle`.
    pub(crate) fn new(leftover: Vec<u8>, idle: Option<Duration>) -> Self {
        let mut buf = leftover;
        let end = buf.len();
        buf.resize(end.max(MIN_READ_BUF), 0);
        ReadBuffer {
            buf,
            start: 0,
            end,
            idle,
            filled: false,
            small_reads: 0,
            quiet_check: false,
            idle_shortened: false,
        }
    }

    /// The bytes read and not consumed yet.
    pub(crate) fn unread(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// `n` bytes of [`ReadBuffer::unread`] were consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// The whole buffer, as scratch space once the session is over.
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The buffer's size now.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Makes room for the next read: moves the unread tail to the front, grows while reads keep filling
    /// the buffer, shrinks back once a burst is over. Returns the read timeout to set, if it changes,
    /// and whether the burst ended (the worker then gives its reply batch's memory back too).
    pub(crate) fn prepare(&mut self) -> (Option<ReadTimeout>, bool) {
        let mut timeout = None;
        let mut burst_over = false;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // Only after a few small reads in a row: a pipelining client's reads come in all sizes, and
            // shrinking at the first small one would re-grow (and zero) the buffer over and over.
            if self.small_reads >= SHRINK_AFTER && self.buf.len() > MIN_READ_BUF {
                self.shrink();
                burst_over = true;
                if std::mem::take(&mut self.quiet_check) {
                    timeout = Some(ReadTimeout::Idle);
                }
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() || (self.filled && self.buf.len() < MAX_READ_BUF) {
            let grown = (self.buf.len() * 2).min(MAX_READ_BUF.max(self.buf.len()));
            self.buf.resize(grown.max(self.end + MIN_READ_BUF), 0);
        }
        if self.start == self.end && self.buf.len() > MIN_READ_BUF && !self.quiet_check {
            // A grown buffer goes back to the small one once the client has been quiet for a moment:
            // until then a read waits at most SHRINK_IDLE. (Under load reads return at once, so this
            // costs nothing; it only takes a setsockopt when the buffer grows.)
            if self.idle.is_none_or(|t| t > SHRINK_IDLE) {
                timeout = Some(ReadTimeout::Quiet);
                self.quiet_check = true;
            }
        }
        (timeout, burst_over)
    }

    /// The room for the next read (after [`ReadBuffer::prepare`]).
    pub(crate) fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// A read put `n` bytes into the room. Returns the read timeout to set, if it changes.
    pub(crate) fn filled_by(&mut self, n: usize) -> Option<ReadTimeout> {
        self.filled = self.end + n == self.buf.len();
        self.small_reads = if n < MIN_READ_BUF {
            self.small_reads + 1
        } else {
            0
        };
        self.end += n;
        std::mem::take(&mut self.idle_shortened).then_some(ReadTimeout::Idle)
    }

    /// A read timed out: a quiet check (the buffer shrinks, the burst is over) or the idle timeout.
    pub(crate) fn quiet(&mut self) -> Quiet {
        if !std::mem::take(&mut self.quiet_check) {
            return Quiet::Idle;
        }
        if self.start == self.end {
            self.shrink();
            self.small_reads = 0;
        }
        // The burst is over: a last read that happened to fill the buffer must not grow it again (and
        // start another quiet check, and another, with the idle clock never running out).
        self.filled = false;
        // The client has been quiet for SHRINK_IDLE already: the idle timeout counts it. (A quiet
        // check is only made when the idle timeout is longer than SHRINK_IDLE.)
        match self.idle {
            Some(t) => {
                self.idle_shortened = true;
                let rest = t.saturating_sub(SHRINK_IDLE).max(Duration::from_millis(1));
                Quiet::Shrunk(ReadTimeout::Rest(rest))
            }
            None => Quiet::Shrunk(ReadTimeout::Idle),
        }
    }

    fn shrink(&mut self) {
        self.buf.truncate(MIN_READ_BUF);
        self.buf.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read of `n` bytes into `b`, after its `prepare`.
    fn read(b: &mut ReadBuffer, n: usize) -> Option<ReadTimeout> {
        let n = n.min(b.room().len());
        b.filled_by(n)
    }

    /// One turn with a read that fills all the room, every byte of it consumed.
    fn fill_and_drain(b: &mut ReadBuffer) {
        b.prepare();
        let room = b.room().len();
        read(b, room);
        let all = b.unread().len();
        b.consume(all);
    }

    #[test]
    fn reads_that_fill_the_buffer_grow_it_to_the_maximum_and_no_further() {
        let mut b = ReadBuffer::new(Vec::new(), None);
        assert_eq!(b.capacity(), MIN_READ_BUF);
        let mut sizes = Vec::new();
        for _ in 0..8 {
            fill_and_drain(&mut b);
            sizes.push(b.capacity());
        }
        assert_eq!(sizes[0], MIN_READ_BUF);
        assert!(sizes.windows(2).all(|w| w[1] >= w[0]), "{sizes:?}");
        b.prepare();
        assert_eq!(b.capacity(), MAX_READ_BUF);
    }

    #[test]
    fn a_burst_ends_after_a_few_small_reads_and_the_buffer_shrinks() {
        let mut b = ReadBuffer::new(Vec::new(), None);
        for _ in 0..6 {
            fill_and_drain(&mut b);
        }
        b.prepare();
        // Grown (and, drained, waiting only for a quiet check).
        assert!(b.capacity() > MIN_READ_BUF);
        for i in 0..SHRINK_AFTER {
            read(&mut b, 10);
            b.consume(10);
            let (timeout, over) = b.prepare();
            if i + 1 < SHRINK_AFTER {
                assert!(!over && b.capacity() > MIN_READ_BUF, "read {i}");
            } else {
                // Back to small, and back to the idle timeout.
                assert!(over);
                assert_eq!(timeout, Some(ReadTimeout::Idle));
                assert_eq!(b.capacity(), MIN_READ_BUF);
            }
        }
    }

    #[test]
    fn a_quiet_check_shrinks_and_the_idle_clock_counts_the_quiet_time() {
        let idle = Duration::from_secs(30);
        let mut b = ReadBuffer::new(Vec::new(), Some(idle));
        fill_and_drain(&mut b);
        assert_eq!(b.prepare().0, Some(ReadTimeout::Quiet));
        assert_eq!(
            b.quiet(),
            Quiet::Shrunk(ReadTimeout::Rest(idle - SHRINK_IDLE))
        );
        assert_eq!(b.capacity(), MIN_READ_BUF);
        // No second quiet check: the next timeout is the idle timeout's.
        assert_eq!(b.prepare().0, None);
        assert_eq!(b.quiet(), Quiet::Idle);
        // Data after a shortened wait restores the whole idle timeout.
        let mut b = ReadBuffer::new(Vec::new(), Some(idle));
        fill_and_drain(&mut b);
        b.prepare();
        b.quiet();
        b.prepare();
        assert_eq!(read(&mut b, 5), Some(ReadTimeout::Idle));
    }

    #[test]
    fn no_quiet_check_when_the_idle_timeout_is_shorter() {
        let mut b = ReadBuffer::new(Vec::new(), Some(Duration::from_millis(200)));
        fill_and_drain(&mut b);
        assert_eq!(b.prepare().0, None);
        assert!(b.capacity() > MIN_READ_BUF);
    }

    #[test]
    fn bytes_behind_the_upgrade_request_are_read_first_and_an_unread_tail_moves_to_the_front() {
        let mut b = ReadBuffer::new(b"hello".to_vec(), None);
        assert_eq!(b.unread(), b"hello");
        b.consume(2);
        b.prepare();
        assert_eq!(b.unread(), b"llo");
        let room = b.room();
        room[..2].copy_from_slice(b"!!");
        b.filled_by(2);
        assert_eq!(b.unread(), b"llo!!");
    }
}
