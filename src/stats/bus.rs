//! The bus's counters and state, written by the bus (and by the workers that hand it messages), read by
//! the status document and the metrics.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Where the bus's link to NATS stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusState {
    /// The in-process bus: no NATS configured.
    Local,
    /// NATS configured, never connected yet.
    Connecting,
    /// Connected to a NATS server.
    Connected,
    /// The connection was lost; the client is reconnecting.
    Disconnected,
}

impl BusState {
    /// The name in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            BusState::Local => "local",
            BusState::Connecting => "connecting",
            BusState::Connected => "connected",
            BusState::Disconnected => "disconnected",
        }
    }

    fn from_u8(v: u8) -> BusState {
        match v {
            1 => BusState::Connecting,
            2 => BusState::Connected,
            3 => BusState::Disconnected,
            _ => BusState::Local,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            BusState::Local => 0,
            BusState::Connecting => 1,
            BusState::Connected => 2,
            BusState::Disconnected => 3,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A reply came.
    Reply,
    /// No reply within the timeout.
    Timeout,
    /// NATS said at once that nobody listens.
    NoResponders,
    /// Anything else (not connected, the queue full, a client error).
    Error,
}

impl RequestOutcome {
    /// Every outcome, in the order of the metrics.
    pub const ALL: [RequestOutcome; 4] = [
        RequestOutcome::Reply,
        RequestOutcome::Timeout,
        RequestOutcome::NoResponders,
        RequestOutcome::Error,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            RequestOutcome::Reply => "reply",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::NoResponders => "no_responders",
            RequestOutcome::Error => "error",
        }
    }

    fn index(self) -> usize {
        match self {
            RequestOutcome::Reply => 0,
            RequestOutcome::Timeout => 1,
            RequestOutcome::NoResponders => 2,
            RequestOutcome::Error => 3,
        }
    }
}

/// The bus's counters.
#[derive(Debug, Default)]
pub struct BusStats {
    state: AtomicU8,
    /// Messages received from NATS (and delivered to this instance's subscribers).
    pub messages_in: AtomicU64,
    /// Messages handed to NATS (publishes and broadcasts of this instance).
    pub messages_out: AtomicU64,
    /// Messages not handed to NATS: the bus queue was full, or NATS refused them.
    pub dropped: AtomicU64,
    /// Connections to NATS made after the first.
    pub reconnects: AtomicU64,
    /// Patterns this instance is subscribed to on NATS now (a gauge).
    pub subscriptions: AtomicU64,
    /// Requests sent to NATS.
    pub requests_sent: AtomicU64,
    outcomes: [AtomicU64; 4],
}

/// A copy of the bus's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusSnapshot {
    /// Where the link stands.
    pub state: BusState,
    /// See [`BusStats::messages_in`].
    pub messages_in: u64,
    /// See [`BusStats::messages_out`].
    pub messages_out: u64,
    /// See [`BusStats::dropped`].
    pub dropped: u64,
    /// See [`BusStats::reconnects`].
    pub reconnects: u64,
    /// See [`BusStats::subscriptions`].
    pub subscriptions: u64,
    /// See [`BusStats::requests_sent`].
    pub requests_sent: u64,
    /// Requests by outcome, in the order of [`RequestOutcome::ALL`].
    pub outcomes: [u64; 4],
}

impl BusStats {
    /// The link's state.
    pub fn state(&self) -> BusState {
        BusState::from_u8(self.state.load(Ordering::SeqCst))
    }

    /// Records the link's state.
    pub fn set_state(&self, state: BusState) {
        self.state.store(state.to_u8(), Ordering::SeqCst);
    }

    /// Counts a request's end.
    pub fn request_ended(&self, outcome: RequestOutcome) {
        if let Some(c) = self.outcomes.get(outcome.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> BusSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BusSnapshot {
            state: self.state(),
            messages_in: get(&self.messages_in),
            messages_out: get(&self.messages_out),
            dropped: get(&self.dropped),
            reconnects: get(&self.reconnects),
            subscriptions: get(&self.subscriptions),
            requests_sent: get(&self.requests_sent),
            outcomes: self.outcomes.each_ref().map(get),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_outcomes_round_trip() {
        let s = BusStats::default();
        assert_eq!(s.state(), BusState::Local);
        for state in [
            BusState::Connecting,
            BusState::Connected,
            BusState::Disconnected,
            BusState::Local,
        ] {
            s.set_state(state);
            assert_eq!(s.snapshot().state, state);
        }
        s.request_ended(RequestOutcome::Timeout);
        s.request_ended(RequestOutcome::Timeout);
        s.request_ended(RequestOutcome::Reply);
        assert_eq!(s.snapshot().outcomes, [1, 2, 0, 0]);
    }
}
