//! Server-wide counters. Every connection updates them with relaxed atomics; status and metrics read them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every connection of one server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted by the listener (including ones later refused).
    pub connections_total: AtomicU64,
    /// Handshakes completed (101 sent).
    pub upgrades: AtomicU64,
    /// Connections refused with 503 because every worker was busy.
    pub refused_full: AtomicU64,
    /// Upgrade requests refused with a 4xx status.
    pub refused_handshake: AtomicU64,
    /// Connections closed because the peer broke the protocol (close code 1002, 1007, 1009).
    pub protocol_errors: AtomicU64,
    /// Connections evicted because a write to them timed out.
    pub evicted: AtomicU64,
    /// Data messages received.
    pub messages_in: AtomicU64,
    /// Data messages sent.
    pub messages_out: AtomicU64,
    /// Payload bytes of data messages received.
    pub bytes_in: AtomicU64,
    /// Payload bytes of data messages sent.
    pub bytes_out: AtomicU64,
    /// Handler panics caught (the connection is closed with 1011; the worker lives on).
    pub handler_panics: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A consistent-enough copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections_total: get(&self.connections_total),
            upgrades: get(&self.upgrades),
            refused_full: get(&self.refused_full),
            refused_handshake: get(&self.refused_handshake),
            protocol_errors: get(&self.protocol_errors),
            evicted: get(&self.evicted),
            messages_in: get(&self.messages_in),
            messages_out: get(&self.messages_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            handler_panics: get(&self.handler_panics),
        }
    }
}

/// Plain copy of [`Stats`].
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections_total: u64,
    pub upgrades: u64,
    pub refused_full: u64,
    pub refused_handshake: u64,
    pub protocol_errors: u64,
    pub evicted: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub handler_panics: u64,
}
