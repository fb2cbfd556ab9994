//! The bus in the status document and the metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::config::BusConfig;
use crate::stats::{BusSnapshot, BusState, RequestOutcome};

/// The bus in the [`super::StatusDocument`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusStatus {
    /// `in_process` or `nats`.
    pub kind: String,
    /// `local` (in-process), `connecting`, `connected` or `disconnected`.
    pub state: String,
    /// The NATS servers configured.
    pub servers: Vec<String>,
    /// Topic `T` is the subject `<prefix>.T`.
    pub prefix: String,
    /// Patterns subscribed on NATS now (broadcasts included).
    pub subscriptions: u64,
    /// Messages from NATS (`in`) and handed to NATS (`out`).
    pub messages: super::InOut,
    /// Messages not handed to NATS (queue full, refused), and messages NATS dropped for a slow
    /// subscription.
    pub dropped: u64,
    /// Connections to NATS after the first.
    pub reconnects: u64,
    /// Requests sent and how they ended.
    pub requests: BusRequests,
}

/// Requests in the [`BusStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct BusRequests {
    pub sent: u64,
    pub replies: u64,
    pub timeouts: u64,
    pub no_responders: u64,
    pub errors: u64,
}

/// The bus's part of the status document.
pub(super) fn status(bus: &BusSnapshot, config: &BusConfig) -> BusStatus {
    let [replies, timeouts, no_responders, errors] = bus.outcomes;
    BusStatus {
        kind: if config.uses_nats() {
            "nats"
        } else {
            "in_process"
        }
        .into(),
        state: bus.state.as_str().into(),
        servers: config.nats.clone(),
        prefix: config.prefix.clone(),
        subscriptions: bus.subscriptions,
        messages: super::InOut {
            received: bus.messages_in,
            sent: bus.messages_out,
        },
        dropped: bus.dropped,
        reconnects: bus.reconnects,
        requests: BusRequests {
            sent: bus.requests_sent,
            replies,
            timeouts,
            no_responders,
            errors,
        },
    }
}

/// The bus's metrics.
pub(super) fn metrics(registry: &mut Registry, bus: &BusSnapshot) {
    let connected = Gauge::<i64>::default();
    connected.set(i64::from(bus.state == BusState::Connected));
    registry.register(
        "bus_connected",
        "1 while connected to NATS, else 0 (always 0 without NATS)",
        connected,
    );
    for (name, help, value) in [
        ("bus_messages_in", "Messages received from NATS", bus.messages_in),
        ("bus_messages_out", "Messages handed to NATS", bus.messages_out),
        (
            "bus_dropped",
            "Messages not handed to NATS (bus queue full or refused) or dropped by NATS for a slow subscription",
            bus.dropped,
        ),
        ("bus_reconnects", "Connections to NATS after the first", bus.reconnects),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        registry.register(name, help, c);
    }
    let family = Family::<Vec<(String, String)>, Counter>::default();
    for (outcome, n) in RequestOutcome::ALL.iter().zip(bus.outcomes) {
        family
            .get_or_create(&vec![("outcome".to_string(), outcome.label().to_string())])
            .inc_by(n);
    }
    registry.register("bus_requests", "Bus requests by outcome", family);
}
