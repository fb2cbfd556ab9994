//! [`ServerHandle`]: what applications and embedders may ask of a running server.
//!
//! The handle sits below the connections (a [`crate::Conn`] hands one out) and reaches the server
//! through the narrow [`Control`] trait, which the server implements: nothing here knows the server's
//! threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hydrogen_ws_protocol::Message;

use crate::config::Config;
use crate::report::{BroadcastReport, ShutdownReport};
use crate::stats::{BusState, StatsSnapshot};
use crate::status::StatusDocument;

/// What a handle may ask of the server (implemented by the server).
pub(crate) trait Control: Send + Sync {
    /// Sends `message` through the bus to every open connection (`topic: None`) or to those
    /// subscribed to `topic`.
    fn publish(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport;
    /// Sends a request on `topic` through the bus; `reply` is called (on the bus's thread, never
    /// waiting) with the answer or the error (at once, on the caller's thread, when the bus cannot take
    /// the request).
    fn request(&self, topic: &str, payload: Vec<u8>, timeout: Duration, reply: ReplyFn);
    /// A connection's bus subscriptions changed (or it left): the bus recomputes what it subscribes to.
    /// `then` runs once the new subscriptions are in force on NATS (at once on the in-process bus).
    fn subscriptions_changed(&self, then: Option<Box<dyn FnOnce() + Send>>);
    /// Where the bus's link to NATS stands.
    fn bus_state(&self) -> BusState;
    fn status_document(&self) -> StatusDocument;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    fn shutdown(&self) -> ShutdownReport;
    fn is_shutting_down(&self) -> bool;
    fn local_addr(&self) -> SocketAddr;
    fn connections(&self) -> usize;
    fn stats(&self) -> StatsSnapshot;
    fn uptime(&self) -> Duration;
    fn config(&self) -> &Config;
}

/// What a bus request's answer is handed to: the reply's payload, or why there is none.
pub(crate) type ReplyFn = Box<dyn FnOnce(Result<Vec<u8>, BusError>) + Send>;

/// Why the bus could not carry a request (or a publish) through.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusError {
    /// No reply came within the timeout.
    Timeout,
    /// Nobody listens on the subject (NATS said so at once).
    NoResponders,
    /// No NATS is configured, or it is not connected.
    Unavailable(String),
    /// The bus's queue is full.
    Busy,
    /// Anything else NATS said.
    Failed(String),
}

impl BusError {
    /// The code clients see in `"error"`.
    pub fn code(&self) -> &'static str {
        match self {
            BusError::Timeout => "timeout",
            BusError::NoResponders => "no_responders",
            BusError::Unavailable(_) => "unavailable",
            BusError::Busy => "busy",
            BusError::Failed(_) => "unavailable",
        }
    }
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Timeout => f.write_str("no reply within the timeout"),
            BusError::NoResponders => f.write_str("nobody listens on this subject"),
            BusError::Unavailable(why) => write!(f, "the bus is unavailable: {why}"),
            BusError::Busy => f.write_str("the bus's queue is full; try again"),
            BusError::Failed(why) => write!(f, "NATS failed: {why}"),
        }
    }
}

impl std::error::Error for BusError {}

/// A cheap, cloneable handle to a running server: broadcast, publish, status, shutdown.
#[derive(Clone)]
pub struct ServerHandle {
    control: Arc<dyn Control>,
}

impl ServerHandle {
    pub(crate) fn new(control: Arc<dyn Control>) -> Self {
        ServerHandle { control }
    }

    /// Sends `message` to every open connection. Never waits for a client: what a socket does not take
    /// at once is queued for it (bounded); a client that lets its queue fill or stalls past the send
    /// timeout is evicted, and the others are not delayed.
    pub fn broadcast(&self, message: Message<'_>) -> BroadcastReport {
        self.control.publish(None, message)
    }

    /// Sends `message` to every open connection subscribed to `topic` (see [`crate::Conn::subscribe`]),
    /// on this instance at once and, with NATS configured, on every other instance of the bus (as the
    /// subject `<prefix>.<topic>`). `topic` is a plain topic (no wildcard); an invalid one is logged and
    /// sent nowhere.
    pub fn publish(&self, topic: &str, message: Message<'_>) -> BroadcastReport {
        if let Err(e) = crate::topic::validate_topic(topic) {
            log::warn!("publish on '{topic}' refused: {e}");
            return BroadcastReport::default();
        }
        self.control.publish(Some(topic), message)
    }

    /// Sends a request with `payload` on `topic` through NATS and calls `reply` with the answer (or
    /// why there is none) from the bus's thread, which must not be blocked: hand the answer on, do not
    /// wait in it. Without NATS, or with the bus's queue full, `reply` is called at once with the error.
    pub fn request(
        &self,
        topic: &str,
        payload: Vec<u8>,
        timeout: Duration,
        reply: impl FnOnce(Result<Vec<u8>, BusError>) + Send + 'static,
    ) {
        let reply: ReplyFn = Box::new(reply);
        if let Err(e) = crate::topic::validate_topic(topic) {
            reply(Err(BusError::Failed(format!(
                "invalid topic '{topic}': {e}"
            ))));
            return;
        }
        self.control.request(topic, payload, timeout, reply);
    }

    /// Where the bus's link to NATS stands.
    pub fn bus_state(&self) -> BusState {
        self.control.bus_state()
    }

    /// Tells the bus that subscriptions changed; `then` runs once they are in force on NATS.
    pub(crate) fn subscriptions_changed(&self, then: Option<Box<dyn FnOnce() + Send>>) {
        self.control.subscriptions_changed(then);
    }

    /// The status document (the reply to `{"type":"status"}` and the body of `GET /status`).
    pub fn status_document(&self) -> StatusDocument {
        self.control.status_document()
    }

    /// Runs the shutdown sequence (stop accepting, 1001 to every client, shutdown(Both), bounded join)
    /// and returns its report. Safe to call from several threads: one runs it, the others get the same
    /// report.
    pub fn shutdown(&self) -> ShutdownReport {
        self.control.shutdown()
    }

    /// Whether a shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.control.is_shutting_down()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.control.local_addr()
    }

    /// Connections registered now (open or in the handshake).
    pub fn connections(&self) -> usize {
        self.control.connections()
    }

    /// The server's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.control.stats()
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.control.uptime()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.control.config()
    }
}
