//! The server: binds, starts the acceptor and the worker pool, and hands out a [`ServerHandle`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use socket2::Socket;

use crate::config::{Config, ConfigError};
use crate::handler::Handler;
use crate::listener;
use crate::pool::{self, Pool};
use crate::registry::Registry;
use crate::shutdown::{self, ShutdownReport, ShutdownState};
use crate::status::{Stats, StatsSnapshot};
use crate::ticker;
use hydrogen_ws_protocol::Message;

/// Why the server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration breaks a rule.
    Config(ConfigError),
    /// The listening socket could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// A thread could not be started (too many threads or too little memory for their stacks).
    Spawn(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(e) => write!(f, "invalid configuration: {e}"),
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Spawn(e) => write!(f, "cannot start threads: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Config(e) => Some(e),
            ServerError::Bind { source, .. } => Some(source),
            ServerError::Spawn(e) => Some(e),
        }
    }
}

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        ServerError::Config(e)
    }
}

/// State every thread of one server shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) registry: Registry,
    pub(crate) pool: Pool,
    pub(crate) stats: Arc<Stats>,
    pub(crate) listener: Arc<Socket>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) shutdown_state: ShutdownState,
    pub(crate) started_at: Instant,
    pub(crate) status_cache: Mutex<Option<(Instant, serde_json::Value)>>,
    next_id: AtomicU64,
    /// The `Server` value was dropped (only handles remain).
    server_dropped: AtomicBool,
}

impl Shared {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown_state.started()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn linger_deadline(&self) -> Instant {
        self.shutdown_state.linger_until()
    }
}

/// A running server. Dropping it does not stop it: call [`Server::shutdown`] (or keep a
/// [`ServerHandle`] and call its `shutdown`).
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Validates `config`, binds the listening socket and starts the acceptor, the ticker and a few
    /// spare workers (the others start with their connections, up to `config.threads`). Returns once
    /// the server accepts connections.
    pub fn start(config: Config, handler: impl Handler) -> Result<Server, ServerError> {
        config.validate()?;
        let listener =
            listener::bind(config.listen, config.backlog).map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(config.listen);
        let shared = Arc::new(Shared {
            registry: Registry::new(config.threads),
            pool: Pool::new(config.threads),
            handler: Arc::new(handler),
            stats: Arc::new(Stats::default()),
            listener: Arc::new(listener),
            local_addr,
            shutdown_state: ShutdownState::default(),
            started_at: Instant::now(),
            status_cache: Mutex::new(None),
            next_id: AtomicU64::new(1),
            server_dropped: AtomicBool::new(false),
            config,
        });
        Pool::start(&shared).map_err(ServerError::Spawn)?;
        let jobs_tx = shared
            .pool
            .sender()
            .ok_or_else(|| ServerError::Spawn(std::io::Error::other("worker pool released")))?;
        let mut threads = Vec::new();
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("hydrogen-ws-acceptor".into())
            .stack_size(128 * 1024)
            .spawn(move || listener::accept_loop(&acceptor_shared, jobs_tx))
            .map_err(ServerError::Spawn)?;
        threads.push(acceptor);
        let ticker_shared = Arc::clone(&shared);
        let ticker = std::thread::Builder::new()
            .name("hydrogen-ws-ticker".into())
            .stack_size(256 * 1024)
            .spawn(move || ticker::run(&ticker_shared))
            .map_err(ServerError::Spawn)?;
        threads.push(ticker);
        Ok(Server { shared, threads })
    }

    /// The address the server listens on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// A cloneable handle for other threads: shutdown, counters.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the shutdown sequence, then lets the idle workers go and waits (bounded by the shutdown
    /// timeout) for the server's threads to end.
    ///
    /// ([`ServerHandle::shutdown`] leaves idle workers parked, to die with the process, which is what a
    /// binary about to exit wants; dropping the `Server` afterwards lets them go.)
    pub fn shutdown(mut self) -> ShutdownReport {
        let report = shutdown::run(&self.shared);
        let deadline = Instant::now() + self.shared.config.shutdown_timeout;
        self.shared.pool.release_workers(deadline);
        pool::join_until(std::mem::take(&mut self.threads), deadline);
        report
    }
}

impl Drop for Server {
    /// A running server keeps running; after a shutdown, the parked idle workers are let go. (Before
    /// one, a [`ServerHandle::shutdown`] to come lets them go itself: nobody else is left to.)
    fn drop(&mut self) {
        self.shared.server_dropped.store(true, Ordering::SeqCst);
        if self.shared.is_shutting_down() {
            self.shared.pool.release_workers(Instant::now());
        }
    }
}

/// A cheap, cloneable handle to a running server.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

/// What a broadcast did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Connections the message was written to or queued for.
    pub sent: usize,
    /// Connections that could not take it (closing, or evicted for not reading).
    pub failed: usize,
}

impl ServerHandle {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        ServerHandle { shared }
    }

    /// Sends `message` to every open connection. Never waits for a client: what a socket does not take
    /// at once is queued for it (bounded); a client that lets its queue fill or stalls past the send
    /// timeout is evicted, and the others are not delayed.
    pub fn broadcast(&self, message: Message<'_>) -> BroadcastReport {
        self.send_where(message, |_| true)
    }

    /// Sends `message` to every open connection subscribed to `topic` (see [`crate::Conn::subscribe`]).
    pub fn publish(&self, topic: &str, message: Message<'_>) -> BroadcastReport {
        self.send_where(message, |c| c.is_subscribed(topic))
    }

    fn send_where(
        &self,
        message: Message<'_>,
        wanted: impl Fn(&crate::Conn) -> bool,
    ) -> BroadcastReport {
        let mut report = BroadcastReport::default();
        for conn in self.shared.registry.snapshot() {
            if conn.is_open() && wanted(&conn) {
                match conn.send(message) {
                    Ok(()) => report.sent += 1,
                    Err(_) => report.failed += 1,
                }
            }
        }
        report
    }

    /// The status document (the reply to `{"type":"status"}` and the body of `GET /status`).
    pub fn status_document(&self) -> serde_json::Value {
        crate::status::document(&self.shared)
    }

    /// Runs the shutdown sequence (stop accepting, 1001 to every client, shutdown(Both), bounded join)
    /// and returns its report. Safe to call from several threads: one runs it, the others get the same
    /// report.
    pub fn shutdown(&self) -> ShutdownReport {
        let report = shutdown::run(&self.shared);
        // With the `Server` gone, no drop is left to release the parked workers: do it here, without
        // waiting for them.
        if self.shared.server_dropped.load(Ordering::SeqCst) {
            self.shared.pool.release_workers(Instant::now());
        }
        report
    }

    /// Whether a shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Connections registered now (open or in the handshake).
    pub fn connections(&self) -> usize {
        self.shared.registry.live()
    }

    /// The server's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Time since the server started.
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.started_at.elapsed()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }
}
