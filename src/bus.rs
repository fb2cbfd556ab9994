//! The bus: where broadcasts and publishes go. In-process by default ([`InProcess`]: straight to the
//! connections of this server); a bus that spans several instances (NATS) delivers what it receives
//! through the same [`Delivery`].

use std::sync::Arc;

use hydrogen_ws_protocol::Message;

use crate::conn::Conn;
use crate::registry::Registry;
use crate::report::BroadcastReport;

/// Carries a broadcast (`topic: None`) or a publish on `topic` to the connections that want it.
pub(crate) trait Bus: Send + Sync {
    /// Sends `message`; never waits for a client.
    fn publish(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport;
}

/// Hands a message to this server's own connections: every open one, or those subscribed to a topic.
pub(crate) struct Delivery {
    registry: Arc<Registry>,
}

impl Delivery {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Delivery { registry }
    }

    /// Sends `message` to every open connection that `topic` selects. What a socket does not take at
    /// once is queued for it (bounded); a client that lets its queue fill is evicted, and the others are
    /// not delayed.
    pub(crate) fn deliver(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport {
        let wanted = |c: &Conn| topic.is_none_or(|t| c.is_subscribed(t));
        let mut report = BroadcastReport::default();
        for conn in self.registry.snapshot() {
            if conn.is_open() && wanted(&conn) {
                match conn.send(message) {
                    Ok(()) => report.sent += 1,
                    Err(_) => report.failed += 1,
                }
            }
        }
        report
    }
}

/// The bus of a single instance: a publish is delivered here and nowhere else.
pub(crate) struct InProcess {
    delivery: Delivery,
}

impl InProcess {
    pub(crate) fn new(delivery: Delivery) -> Self {
        InProcess { delivery }
    }
}

impl Bus for InProcess {
    fn publish(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport {
        self.delivery.deliver(topic, message)
    }
}
