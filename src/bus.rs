//! The bus: where broadcasts, publishes and requests go. In-process by default ([`InProcess`]: straight
//! to the connections of this server); with NATS configured ([`nats::NatsBus`]) it also spans every
//! instance on the same NATS, and what it receives from them is handed out through the same
//! [`Delivery`].

mod nats;
mod render;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::Message;

use crate::conn::Form;
use crate::handle::{BusError, ReplyFn};
use crate::registry::Registry;
use crate::report::BroadcastReport;
use crate::stats::BusState;

pub(crate) use nats::{NatsBus, NatsStartError};
pub(crate) use render::payload_data;
use render::Rendered;

/// Carries a broadcast (`topic: None`) or a publish on `topic` to the connections that want it, here
/// and (for a bus that spans instances) everywhere else.
pub(crate) trait Bus: Send + Sync {
    /// Sends `message`; never waits for a client, nor for NATS.
    fn publish(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport;

    /// Sends a request; `reply` gets the answer or the error (never waits for it here).
    fn request(&self, topic: &str, payload: Vec<u8>, timeout: Duration, reply: ReplyFn);

    /// A connection's bus subscriptions changed; `then` runs once they are in force.
    fn subscriptions_changed(&self, then: Option<Box<dyn FnOnce() + Send>>);

    /// Where the link to other instances stands.
    fn state(&self) -> BusState;

    /// At the start of a shutdown, before the close frames: waits, at most until `until`, for what other
    /// instances sent before it to reach this instance's clients (nothing to wait for in-process).
    fn drain(&self, _until: Instant) {}

    /// Asks the bus to stop (never waits).
    fn begin_stop(&self) {}

    /// Waits, at most until `deadline`, for the bus to have stopped.
    fn finish_stop(&self, _deadline: Instant) {}
}

/// Which of a connection's subscriptions a message is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Via<'a> {
    /// Published on this instance: every subscription whose pattern selects the topic.
    Local,
    /// Came from NATS through this instance's subscription to this pattern: the subscriptions to exactly
    /// this pattern (each subscription is its own stream, so a message is delivered once per
    /// subscription, whichever pattern it came through).
    Pattern(&'a str),
}

/// Hands a message to this server's own connections: every open one, or those subscribed to a topic,
/// in the form each subscription asked for.
pub(crate) struct Delivery {
    registry: Arc<Registry>,
    /// The subject prefix (for `nats_event`'s `subject`).
    prefix: String,
}

impl Delivery {
    pub(crate) fn new(registry: Arc<Registry>, prefix: String) -> Self {
        Delivery { registry, prefix }
    }

    /// The live connections.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sends `message` to every open connection that `topic` selects, once per subscription. What a
    /// socket does not take at once is queued for it (bounded); a client that lets its queue fill is
    /// evicted, and the others are not delayed.
    pub(crate) fn deliver(
        &self,
        topic: Option<&str>,
        message: Message<'_>,
        via: Via<'_>,
    ) -> BroadcastReport {
        let mut rendered = Rendered::new(topic, message, &self.prefix);
        let mut report = BroadcastReport::default();
        for conn in self.registry.snapshot() {
            if !conn.is_open() {
                continue;
            }
            let forms = match (topic, via) {
                (None, _) => vec![Form::Raw],
                (Some(t), Via::Local) => conn.subscribed_forms(t),
                (Some(_), Via::Pattern(p)) => conn.forms_on_pattern(p),
            };
            for form in forms {
                match conn.send(rendered.get(form)) {
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
        self.delivery.deliver(topic, message, Via::Local)
    }

    fn request(&self, _topic: &str, _payload: Vec<u8>, _timeout: Duration, reply: ReplyFn) {
        reply(Err(BusError::Unavailable(
            "no NATS is configured (--nats): requests need one".to_string(),
        )));
    }

    fn subscriptions_changed(&self, then: Option<Box<dyn FnOnce() + Send>>) {
        if let Some(then) = then {
            then();
        }
    }

    fn state(&self) -> BusState {
        BusState::Local
    }
}
