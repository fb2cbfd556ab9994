//! What a shutdown and a broadcast did, as values a caller can inspect.

use std::fmt;

/// What a shutdown did, returned by [`crate::ServerHandle::shutdown`] and logged as one line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections registered when the shutdown began (open or in the handshake).
    pub connections: usize,
    /// Of those, connections still in the upgrade handshake: closed without a frame.
    pub handshaking: usize,
    /// Close frames (1001 Going Away) written whole.
    pub close_frames: usize,
    /// Connections already in their own closing handshake (their close frame had gone out).
    pub already_closing: usize,
    /// Clients whose answering close frame had arrived when their connection was closed.
    pub answered: usize,
    /// Open connections closed without a close frame (write lock held past the grace, send buffer full,
    /// or stream already broken).
    pub forced: usize,
    /// The ids of the forced connections (see [`crate::Conn::id`]).
    pub forced_ids: Vec<u64>,
    /// Connections whose worker had not finished when the deadline passed.
    pub unfinished: usize,
    /// Before the sequence, the bus's drain (with NATS: what other instances sent reaches the clients
    /// first), in microseconds; 0 on the in-process bus.
    pub bus_drain_us: u64,
    /// Phase 1, stop accepting, in microseconds.
    pub stop_accept_us: u64,
    /// Phase 2a, writing the close frames, in microseconds.
    pub close_frames_us: u64,
    /// Phase 3, waiting (briefly) for clients to answer the close frame, in microseconds.
    pub answers_us: u64,
    /// Phase 4, `shutdown(Both)` on every socket still open (which wakes its worker), in microseconds.
    pub wake_us: u64,
    /// Phase 5, until every connection's worker let go of it, in microseconds.
    pub join_us: u64,
    /// The whole sequence, in microseconds.
    pub total_us: u64,
    /// Terminal sessions running when the shutdown began (each is ended by its connection's close).
    pub terminals: u64,
    /// Of those, sessions still running when the sequence ended (their connection unfinished).
    pub terminals_left: u64,
}

impl ShutdownReport {
    /// Every connection was closed before the deadline.
    pub fn completed(&self) -> bool {
        self.unfinished == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown: connections={} handshaking={} close_frames={} already_closing={} answered={} \
             forced={} unfinished={} stop_accept_us={} close_frames_us={} answers_us={} wake_us={} \
             join_us={} total_us={} terminals={} terminals_left={} bus_drain_us={}",
            self.connections,
            self.handshaking,
            self.close_frames,
            self.already_closing,
            self.answered,
            self.forced,
            self.unfinished,
            self.stop_accept_us,
            self.close_frames_us,
            self.answers_us,
            self.wake_us,
            self.join_us,
            self.total_us,
            self.terminals,
            self.terminals_left,
            self.bus_drain_us
        )
    }
}

/// What a broadcast or a publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Connections the message was written to or queued for.
    pub sent: usize,
    /// Connections that could not take it (closing, or evicted for not reading).
    pub failed: usize,
    /// The message could not be handed to NATS (the bus's queue was full): this instance's connections
    /// got it, the other instances did not. Always `false` on the in-process bus.
    pub bus_dropped: bool,
}
