//! Server-wide counters: every connection updates them with relaxed atomics; the status document, the
//! metrics and the shutdown report read them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use hydrogen_ws_protocol::CloseCode;

mod bus;
pub use bus::{BusSnapshot, BusState, BusStats, RequestOutcome};

/// Close codes counted one by one; any other code is counted as "other".
const CODES: [u16; 12] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012,
];
/// HTTP statuses counted one by one as refusals; any other as "other".
const STATUSES: [u16; 14] = [
    400, 401, 403, 404, 405, 408, 413, 414, 426, 429, 431, 500, 503, 505,
];

/// Counters shared by every connection of one server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted by the listener (including ones later refused).
    pub connections_total: AtomicU64,
    /// Handshakes completed (101 sent).
    pub upgrades: AtomicU64,
    /// Plain HTTP requests answered (status, metrics, health, page), whatever the status.
    pub http_requests: AtomicU64,
    /// Connections refused with 503 because every worker was busy.
    pub refused_full: AtomicU64,
    /// Upgrade requests (and requests too broken or too slow to tell) refused with an HTTP error status,
    /// 503 for a full server included. Plain HTTP requests are counted in `http_requests` instead.
    pub refused_handshake: AtomicU64,
    /// Connections closed because the peer broke the protocol (close code 1002, 1007, 1009).
    pub protocol_errors: AtomicU64,
    /// Connections evicted because they stopped reading.
    pub evicted: AtomicU64,
    /// Connections closed after the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Connections closed because a pong was overdue.
    pub heartbeat_timeouts: AtomicU64,
    /// Data messages received.
    pub messages_in: AtomicU64,
    /// Data messages sent.
    pub messages_out: AtomicU64,
    /// Payload bytes of data messages received.
    pub bytes_in: AtomicU64,
    /// Payload bytes of data messages sent.
    pub bytes_out: AtomicU64,
    /// Handler panics caught (the connection is closed; the worker lives on).
    pub handler_panics: AtomicU64,
    /// The bus's counters and state.
    pub bus: BusStats,
    /// Upgrades that agreed permessage-deflate.
    pub deflate_connections: AtomicU64,
    /// Messages sent compressed.
    pub deflated_messages: AtomicU64,
    /// Payload bytes of the messages sent compressed, before compression.
    pub deflated_bytes_raw: AtomicU64,
    /// Payload bytes of the messages sent compressed, as they went on the wire.
    pub deflated_bytes_wire: AtomicU64,
    refusals: [AtomicU64; STATUSES.len() + 1],
    close_sent: [AtomicU64; CODES.len() + 1],
    close_received: [AtomicU64; CODES.len() + 1],
    /// Microseconds the last shutdown took (0: none yet).
    pub last_shutdown_us: AtomicU64,
    /// Handshakes in progress in the admission stage now (a gauge).
    pub pending_handshakes: AtomicU64,
    /// The admission stage's refusals and closes, by [`Admission`] reason.
    admission: [AtomicU64; Admission::ALL.len()],
    /// Upgrades handed to a worker, and the microseconds they waited for it in all.
    pub admitted: AtomicU64,
    /// See [`Stats::admitted`].
    pub admission_wait_us: AtomicU64,
    /// Terminal sessions running now (a gauge).
    pub terminals_open: AtomicU64,
    /// Terminal sessions started since the server started.
    pub terminals_total: AtomicU64,
    /// Terminal sessions refused because --terminal-max-sessions were running.
    pub terminals_refused_full: AtomicU64,
    /// Terminal sessions whose command could not be started.
    pub terminals_refused_spawn: AtomicU64,
}

/// Why the admission stage refused or closed a connection before its upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The pending table was full: the handshake that had waited longest was closed (408).
    PendingFull,
    /// The client's address was at its connection limit (429).
    PerIp,
    /// The request head did not arrive within the handshake timeout (408).
    Timeout,
    /// Every worker was busy (503).
    PoolFull,
}

impl Admission {
    /// Every reason, in the order the counters and the metrics list them.
    pub const ALL: [Admission; 4] = [
        Admission::PendingFull,
        Admission::PerIp,
        Admission::Timeout,
        Admission::PoolFull,
    ];

    /// The reason's label in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Admission::PendingFull => "pending_full",
            Admission::PerIp => "per_ip",
            Admission::Timeout => "timeout",
            Admission::PoolFull => "pool_full",
        }
    }
}

fn bucket<const N: usize>(table: &[u16; N], value: u16) -> usize {
    table.iter().position(|&v| v == value).unwrap_or(N)
}

fn labelled(table: &[u16], counters: &[AtomicU64]) -> Vec<(Option<u16>, u64)> {
    counters
        .iter()
        .enumerate()
        .map(|(i, c)| (table.get(i).copied(), c.load(Ordering::Relaxed)))
        .collect()
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a refusal with HTTP `status` of a request that asked for a WebSocket (or of one that
    /// could not be read).
    pub(crate) fn refused(&self, status: u16) {
        Self::bump(&self.refused_handshake);
        self.count_status(status);
    }

    /// Counts a plain HTTP request answered with `status` (an error status among the refusals too).
    pub(crate) fn answered_http(&self, status: u16) {
        Self::bump(&self.http_requests);
        if status >= 400 {
            self.count_status(status);
        }
    }

    fn count_status(&self, status: u16) {
        if let Some(c) = self.refusals.get(bucket(&STATUSES, status)) {
            Self::bump(c);
        }
    }

    /// Counts a close frame we sent.
    pub(crate) fn close_sent(&self, code: CloseCode) {
        if let Some(c) = self.close_sent.get(bucket(&CODES, code.0)) {
            Self::bump(c);
        }
    }

    /// Counts a close frame we received (1005 for one without a code).
    pub(crate) fn close_received(&self, code: CloseCode) {
        if let Some(c) = self.close_received.get(bucket(&CODES, code.0)) {
            Self::bump(c);
        }
    }

    /// Counts an admission refusal or close.
    pub(crate) fn admission(&self, reason: Admission) {
        if let Some(c) = self.admission.get(reason as usize) {
            Self::bump(c);
        }
    }

    /// The admission stage's refusals and closes by reason.
    pub fn admission_refusals(&self) -> Vec<(Admission, u64)> {
        Admission::ALL
            .iter()
            .zip(&self.admission)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Sets the gauge of handshakes in progress.
    pub(crate) fn set_pending(&self, pending: usize) {
        self.pending_handshakes
            .store(pending as u64, Ordering::Relaxed);
    }

    /// An upgrade reached its worker `waited` after its handshake was complete.
    pub(crate) fn waited_for_worker(&self, waited: std::time::Duration) {
        Self::bump(&self.admitted);
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.admission_wait_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Refusals by HTTP status (`None`: any status not counted on its own), in a fixed order.
    pub fn refusals_by_status(&self) -> Vec<(Option<u16>, u64)> {
        labelled(&STATUSES, &self.refusals)
    }

    /// Close frames sent, by code (`None`: any other code), in a fixed order.
    pub fn close_codes_sent(&self) -> Vec<(Option<u16>, u64)> {
        labelled(&CODES, &self.close_sent)
    }

    /// Close frames received, by code (1005: none given; `None`: any other code), in a fixed order.
    pub fn close_codes_received(&self) -> Vec<(Option<u16>, u64)> {
        labelled(&CODES, &self.close_received)
    }

    /// From now until [`Stats::flush_local_counts`], this thread counts messages and bytes for these
    /// counters in a thread-local (a worker's batch: one read's worth of messages), so that a pipelined
    /// message costs no atomic add on cache lines every worker writes.
    pub(crate) fn count_locally(&self) {
        LOCAL.with(|l| {
            l.take();
            l.stats.set(self);
        });
    }

    /// Adds what this thread counted locally to the shared counters, and stops counting locally.
    pub(crate) fn flush_local_counts(&self) {
        let Some([messages_in, bytes_in, messages_out, bytes_out]) = LOCAL.with(|l| {
            let mine = l.counting_for(self);
            l.stats.set(std::ptr::null());
            mine.then(|| l.take())
        }) else {
            return;
        };
        for (counter, n) in [
            (&self.messages_in, messages_in),
            (&self.bytes_in, bytes_in),
            (&self.messages_out, messages_out),
            (&self.bytes_out, bytes_out),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Counts a message received.
    pub(crate) fn count_in(&self, bytes: usize) {
        if !self.count_local(|l| {
            l.messages_in.set(l.messages_in.get() + 1);
            l.bytes_in.set(l.bytes_in.get() + bytes as u64);
        }) {
            Stats::bump(&self.messages_in);
            Stats::add(&self.bytes_in, bytes);
        }
    }

    /// Counts a message sent.
    pub(crate) fn count_out(&self, bytes: usize) {
        if !self.count_local(|l| {
            l.messages_out.set(l.messages_out.get() + 1);
            l.bytes_out.set(l.bytes_out.get() + bytes as u64);
        }) {
            Stats::bump(&self.messages_out);
            Stats::add(&self.bytes_out, bytes);
        }
    }

    /// Applies `f` to this thread's local counts if they are counting for `self`.
    fn count_local(&self, f: impl FnOnce(&LocalCounts)) -> bool {
        LOCAL.with(|l| {
            if !l.counting_for(self) {
                return false;
            }
            f(l);
            true
        })
    }

    /// A consistent-enough copy of the main counters (with what the calling thread has counted locally).
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let [local_in, local_bytes_in, local_out, local_bytes_out] = LOCAL.with(|l| {
            if l.counting_for(self) {
                l.cells().map(Cell::get)
            } else {
                [0; 4]
            }
        });
        StatsSnapshot {
            connections_total: get(&self.connections_total),
            upgrades: get(&self.upgrades),
            http_requests: get(&self.http_requests),
            refused_full: get(&self.refused_full),
            refused_handshake: get(&self.refused_handshake),
            protocol_errors: get(&self.protocol_errors),
            evicted: get(&self.evicted),
            idle_timeouts: get(&self.idle_timeouts),
            heartbeat_timeouts: get(&self.heartbeat_timeouts),
            messages_in: get(&self.messages_in) + local_in,
            messages_out: get(&self.messages_out) + local_out,
            bytes_in: get(&self.bytes_in) + local_bytes_in,
            bytes_out: get(&self.bytes_out) + local_bytes_out,
            handler_panics: get(&self.handler_panics),
            deflate_connections: get(&self.deflate_connections),
            deflated_messages: get(&self.deflated_messages),
            deflated_bytes_raw: get(&self.deflated_bytes_raw),
            deflated_bytes_wire: get(&self.deflated_bytes_wire),
            terminals_open: get(&self.terminals_open),
            terminals_total: get(&self.terminals_total),
            terminals_refused_full: get(&self.terminals_refused_full),
            terminals_refused_spawn: get(&self.terminals_refused_spawn),
        }
    }
}

/// Messages and bytes a thread counts for one [`Stats`] before adding them to it in one go. One cell
/// each, so that counting a message touches only its two.
struct LocalCounts {
    /// The counters these belong to (compared, never dereferenced); null when not counting locally.
    stats: Cell<*const Stats>,
    messages_in: Cell<u64>,
    bytes_in: Cell<u64>,
    messages_out: Cell<u64>,
    bytes_out: Cell<u64>,
}

impl LocalCounts {
    fn counting_for(&self, stats: &Stats) -> bool {
        std::ptr::eq(self.stats.get(), stats)
    }

    /// Messages in, bytes in, messages out, bytes out.
    fn cells(&self) -> [&Cell<u64>; 4] {
        [
            &self.messages_in,
            &self.bytes_in,
            &self.messages_out,
            &self.bytes_out,
        ]
    }

    /// The counts (in the order of [`LocalCounts::cells`]), leaving zeros.
    fn take(&self) -> [u64; 4] {
        self.cells().map(Cell::take)
    }
}

thread_local! {
    static LOCAL: LocalCounts = const {
        LocalCounts {
            stats: Cell::new(std::ptr::null()),
            messages_in: Cell::new(0),
            bytes_in: Cell::new(0),
            messages_out: Cell::new(0),
            bytes_out: Cell::new(0),
        }
    };
}

/// Plain copy of the main [`Stats`] counters.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections_total: u64,
    pub upgrades: u64,
    pub http_requests: u64,
    pub refused_full: u64,
    pub refused_handshake: u64,
    pub protocol_errors: u64,
    pub evicted: u64,
    pub idle_timeouts: u64,
    pub heartbeat_timeouts: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub handler_panics: u64,
    /// Upgrades that agreed permessage-deflate.
    pub deflate_connections: u64,
    /// Messages sent compressed.
    pub deflated_messages: u64,
    /// Their payload bytes before compression.
    pub deflated_bytes_raw: u64,
    /// Their payload bytes on the wire.
    pub deflated_bytes_wire: u64,
    pub terminals_open: u64,
    pub terminals_total: u64,
    pub terminals_refused_full: u64,
    pub terminals_refused_spawn: u64,
}

#[cfg(test)]
mod tests {
    use super::Stats;
    use std::sync::atomic::Ordering;

    #[test]
    fn local_counts_reach_the_shared_counters_at_the_flush_and_only_their_own() {
        let stats = Stats::default();
        let other = Stats::default();
        stats.count_locally();
        stats.count_in(10);
        stats.count_in(20);
        stats.count_out(5);
        other.count_in(7);
        // Not on the shared counters yet, but the counting thread's own snapshot has them.
        assert_eq!(stats.messages_in.load(Ordering::Relaxed), 0);
        let s = stats.snapshot();
        assert_eq!(
            (s.messages_in, s.bytes_in, s.messages_out, s.bytes_out),
            (2, 30, 1, 5)
        );
        // Another server's counters were counted directly.
        assert_eq!(other.messages_in.load(Ordering::Relaxed), 1);
        stats.flush_local_counts();
        assert_eq!(stats.bytes_in.load(Ordering::Relaxed), 30);
        assert_eq!(stats.messages_out.load(Ordering::Relaxed), 1);
        // After the flush, counting is direct again.
        stats.count_in(1);
        assert_eq!(stats.messages_in.load(Ordering::Relaxed), 3);
    }
}
