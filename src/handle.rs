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
use crate::stats::StatsSnapshot;
use crate::status::StatusDocument;

/// What a handle may ask of the server (implemented by the server).
pub(crate) trait Control: Send + Sync {
    /// Sends `message` through the bus to every open connection (`topic: None`) or to those
    /// subscribed to `topic`.
    fn publish(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport;
    fn status_document(&self) -> StatusDocument;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    fn shutdown(&self) -> ShutdownReport;
    /// [`Control::shutdown`] in a process that exits right after it.
    fn shutdown_before_exit(&self) -> ShutdownReport;
    fn is_shutting_down(&self) -> bool;
    fn local_addr(&self) -> SocketAddr;
    fn connections(&self) -> usize;
    fn stats(&self) -> StatsSnapshot;
    fn uptime(&self) -> Duration;
    fn config(&self) -> &Config;
}

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

    /// Sends `message` to every open connection subscribed to `topic` (see [`crate::Conn::subscribe`]).
    pub fn publish(&self, topic: &str, message: Message<'_>) -> BroadcastReport {
        self.control.publish(Some(topic), message)
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

    /// [`ServerHandle::shutdown`] for a process that exits as soon as it returns (the binary does, on
    /// a signal): each worker ends its thread as soon as its connection is closed, without the usual
    /// clean-up of an ending thread (its stack and what it owns are left to the process's exit). The
    /// threads are then gone while the sequence still writes to other clients, instead of being torn
    /// down by the exit afterwards: about a fifth less CPU time for the shutdown at 1,000 and 10,000
    /// connections (README, Shutdown).
    ///
    /// After it, exit the process: the server cannot wait for those threads, and a later
    /// [`crate::Server::shutdown`] does not join its workers.
    pub fn shutdown_before_exit(&self) -> ShutdownReport {
        self.control.shutdown_before_exit()
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
