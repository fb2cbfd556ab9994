//! The server: binds, builds each thread's narrow context, starts the acceptor, the ticker and the worker
//! pool, and hands out [`ServerHandle`]s.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::deflate::DeflateConfig;
use hydrogen_ws_protocol::Message;
use socket2::{Domain, Protocol, Socket, Type};

use crate::bus::{Bus, Delivery, InProcess, NatsBus, NatsStartError};
use crate::config::{Config, ConfigError};
use crate::conn::{ConnContext, DeflatePool};
use crate::handle::{Control, ReplyFn, ServerHandle};
use crate::handler::Handler;
use crate::registry::Registry;
use crate::report::{BroadcastReport, ShutdownReport};
use crate::routes::Routes;
use crate::runtime::admission::{self, AdmissionContext, Job, PerIp};
use crate::runtime::pool::{self, Pool};
use crate::runtime::shutdown::{self, ShutdownContext, ShutdownState};
use crate::runtime::ticker::{self, TickerContext};
use crate::runtime::worker::{self, WorkerContext};
use crate::stats::{BusState, Stats, StatsSnapshot};
use crate::status::{self, Sample, StatusDocument};
use crate::sys;

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
    /// The route table has no route at all: every upgrade would be refused.
    NoRoutes,
    /// The NATS bus could not start (a bad URL or credentials file, or its thread).
    Bus(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(e) => write!(f, "invalid configuration: {e}"),
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Spawn(e) => write!(f, "cannot start threads: {e}"),
            ServerError::NoRoutes => f.write_str("the route table is empty"),
            ServerError::Bus(e) => write!(f, "cannot start the bus: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Config(e) => Some(e),
            ServerError::Bind { source, .. } => Some(source),
            ServerError::Spawn(e) => Some(e),
            ServerError::NoRoutes | ServerError::Bus(_) => None,
        }
    }
}

impl From<NatsStartError> for ServerError {
    fn from(e: NatsStartError) -> Self {
        ServerError::Bus(e.to_string())
    }
}

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        ServerError::Config(e)
    }
}

/// How long a status document is reused: pushes to many subscribers in the same tick share one
/// document (and one read of `/proc`).
const STATUS_FRESH: Duration = Duration::from_millis(50);

/// The server's own state. Only the server and its handles see it whole; each thread gets a context
/// with the parts it uses.
struct Inner {
    config: Config,
    local_addr: SocketAddr,
    started_at: Instant,
    stats: Arc<Stats>,
    registry: Arc<Registry>,
    pool: Arc<Pool<Job>>,
    bus: Box<dyn Bus>,
    shutdown: ShutdownContext,
    status_cache: Mutex<Option<(Instant, StatusDocument)>>,
    /// The `Server` value was dropped (only handles remain).
    server_dropped: AtomicBool,
}

impl Inner {
    fn sample(&self) -> Sample {
        let (rss_bytes, threads) = sys::process_usage();
        Sample {
            stats: self.stats.snapshot(),
            refusals: self.stats.refusals_by_status(),
            close_sent: self.stats.close_codes_sent(),
            close_received: self.stats.close_codes_received(),
            last_shutdown_us: self.stats.last_shutdown_us.load(Ordering::Relaxed),
            pending: self.stats.pending_handshakes.load(Ordering::Relaxed),
            admission: self.stats.admission_refusals(),
            admitted: self.stats.admitted.load(Ordering::Relaxed),
            admission_wait_us: self.stats.admission_wait_us.load(Ordering::Relaxed),
            uptime: self.started_at.elapsed(),
            listen: self.local_addr,
            shutting_down: self.shutdown.state.started(),
            active: self.registry.live(),
            workers: self.pool.spawned(),
            rss_bytes,
            threads,
            bus: self.stats.bus.snapshot(),
        }
    }

    /// The shutdown with the bus around it: first what other instances already sent reaches the clients
    /// (bounded by a tenth of the shutdown timeout, at most 100 ms: a hung NATS costs no more), then the
    /// bus is told to stop, in parallel with the sequence, and waited for until the deadline.
    fn run_shutdown(&self) -> ShutdownReport {
        let start = Instant::now();
        let timeout = self.config.shutdown_timeout;
        self.bus
            .drain(start + (timeout / 10).min(Duration::from_millis(100)));
        self.bus.begin_stop();
        let report = shutdown::run(&self.shutdown, start);
        self.bus.finish_stop(start + timeout);
        report
    }
}

impl Control for Inner {
    fn publish(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport {
        self.bus.publish(topic, message)
    }

    fn request(&self, topic: &str, payload: Vec<u8>, timeout: Duration, reply: ReplyFn) {
        self.bus.request(topic, payload, timeout, reply);
    }

    fn subscriptions_changed(&self, then: Option<Box<dyn FnOnce() + Send>>) {
        self.bus.subscriptions_changed(then);
    }

    fn bus_state(&self) -> BusState {
        self.bus.state()
    }

    fn status_document(&self) -> StatusDocument {
        let mut cache = self
            .status_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, doc)) = cache.as_ref() {
            if at.elapsed() < STATUS_FRESH {
                return doc.clone();
            }
        }
        let doc = status::document(&self.sample(), &self.config);
        *cache = Some((Instant::now(), doc.clone()));
        doc
    }

    fn metrics(&self) -> String {
        status::metrics(&self.sample(), &self.config)
    }

    fn shutdown(&self) -> ShutdownReport {
        let report = self.run_shutdown();
        // With the `Server` gone, no drop is left to release the parked workers: do it here, without
        // waiting for them.
        if self.server_dropped.load(Ordering::SeqCst) {
            self.pool.release_workers(Instant::now());
        }
        report
    }

    fn is_shutting_down(&self) -> bool {
        self.shutdown.state.started()
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn connections(&self) -> usize {
        self.registry.live()
    }

    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    fn config(&self) -> &Config {
        &self.config
    }
}

/// A running server. Dropping it does not stop it: call [`Server::shutdown`] (or keep a
/// [`ServerHandle`] and call its `shutdown`).
pub struct Server {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts a server that serves `handler` on every path, with the key, subprotocol and origin policy
    /// of `config` (see [`Routes::for_config`]). Returns once the server accepts connections.
    pub fn start(config: Config, handler: impl Handler) -> Result<Server, ServerError> {
        let routes = Routes::for_config(&config, handler);
        Server::with_routes(config, routes)
    }

    /// Validates `config`, binds the listening socket and starts the acceptor, the ticker and a few
    /// spare workers (the others start with their connections, up to `config.threads`), serving
    /// `routes`. Returns once the server accepts connections.
    pub fn with_routes(config: Config, routes: Routes) -> Result<Server, ServerError> {
        config.validate()?;
        if routes.is_empty() {
            return Err(ServerError::NoRoutes);
        }
        let listener = bind(config.listen, config.backlog).map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(config.listen);
        // Connections that send nothing stay in the kernel until their first byte (or the handshake
        // timeout): they never wake the admission stage.
        let defer = config
            .limits
            .handshake_timeout
            .as_millis()
            .div_ceil(1000)
            .max(1);
        let defer = u32::try_from(defer).unwrap_or(u32::MAX);
        if let Err(e) = sys::set_defer_accept(&listener, defer) {
            log::warn!(
                "TCP_DEFER_ACCEPT not set ({e}): silent connections wake the admission stage"
            );
        }
        let (poll, waker) = admission::prepare(&listener).map_err(ServerError::Spawn)?;
        let listener = Arc::new(listener);
        let stats = Arc::new(Stats::default());
        let registry = Arc::new(Registry::new(config.threads));
        let state = Arc::new(ShutdownState::default());
        let routes = Arc::new(routes);
        let started_at = Instant::now();
        let delivery = Delivery::new(Arc::clone(&registry), config.bus.prefix.clone());
        let bus: Box<dyn Bus> = if config.bus.uses_nats() {
            Box::new(NatsBus::start(&config.bus, delivery, Arc::clone(&stats))?)
        } else {
            Box::new(InProcess::new(delivery))
        };
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| {
            let server: Weak<dyn Control> = me.clone();
            let workers = WorkerContext {
                conns: ConnContext {
                    server,
                    stats: Arc::clone(&stats),
                    send_timeout: config.limits.send_timeout,
                    max_pending: config.limits.max_pending(),
                    epoch: started_at,
                    deflate_pool: Arc::new(DeflatePool::new()),
                },
                registry: Arc::clone(&registry),
                routes: Arc::clone(&routes),
                stats: Arc::clone(&stats),
                shutdown: Arc::clone(&state),
                limits: config.limits,
                deflate_min_size: config.deflate.min_size,
                next_id: AtomicU64::new(1),
            };
            let pool = Pool::new(
                config.threads,
                config.stack_size,
                Box::new(move |job, slot| worker::work(&workers, job, slot)),
            );
            Inner {
                local_addr,
                started_at,
                stats: Arc::clone(&stats),
                registry: Arc::clone(&registry),
                pool: Arc::new(pool),
                bus,
                shutdown: ShutdownContext {
                    state: Arc::clone(&state),
                    listener: Arc::clone(&listener),
                    registry: Arc::clone(&registry),
                    stats: Arc::clone(&stats),
                    timeout: config.shutdown_timeout,
                    admission: waker,
                },
                status_cache: Mutex::new(None),
                server_dropped: AtomicBool::new(false),
                config: config.clone(),
            }
        });
        Pool::start(&inner.pool).map_err(ServerError::Spawn)?;
        let jobs_tx = inner
            .pool
            .sender()
            .ok_or_else(|| ServerError::Spawn(io::Error::other("worker pool released")))?;
        let mut threads = Vec::new();
        let admission = AdmissionContext {
            listener,
            pool: Arc::clone(&inner.pool),
            jobs: jobs_tx,
            stats: Arc::clone(&stats),
            shutdown: Arc::clone(&state),
            routes: Arc::clone(&routes),
            server: Arc::downgrade(&inner) as Weak<dyn Control>,
            limits: config.limits,
            deflate: config.deflate.enabled.then_some(DeflateConfig {
                window_bits: config.deflate.window_bits,
                context_takeover: config.deflate.context_takeover,
            }),
            retry_after_secs: config.retry_after_secs,
            per_ip: Arc::new(PerIp::new(config.connections_per_ip())),
        };
        threads.push(
            std::thread::Builder::new()
                .name("hydrogen-ws-admission".into())
                .stack_size(256 * 1024)
                .spawn(move || admission::run(&admission, poll))
                .map_err(ServerError::Spawn)?,
        );
        let ticker = TickerContext {
            registry,
            routes,
            shutdown: state,
            stats,
            heartbeat: config.heartbeat,
        };
        threads.push(
            std::thread::Builder::new()
                .name("hydrogen-ws-ticker".into())
                .stack_size(256 * 1024)
                .spawn(move || ticker::run(&ticker))
                .map_err(ServerError::Spawn)?,
        );
        Ok(Server { inner, threads })
    }

    /// The address the server listens on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// A cloneable handle for other threads: broadcast, status, shutdown, counters.
    pub fn handle(&self) -> ServerHandle {
        let control: Arc<dyn Control> = Arc::clone(&self.inner) as Arc<dyn Control>;
        ServerHandle::new(control)
    }

    /// Runs the shutdown sequence, then lets the idle workers go and waits (bounded by the shutdown
    /// timeout) for the server's threads to end.
    ///
    /// ([`ServerHandle::shutdown`] leaves idle workers parked, to die with the process, which is what a
    /// binary about to exit wants; dropping the `Server` afterwards lets them go.)
    pub fn shutdown(mut self) -> ShutdownReport {
        let report = self.inner.run_shutdown();
        let deadline = Instant::now() + self.inner.config.shutdown_timeout;
        self.inner.pool.release_workers(deadline);
        pool::join_until(std::mem::take(&mut self.threads), deadline);
        report
    }
}

impl Drop for Server {
    /// A running server keeps running; after a shutdown, the parked idle workers are let go. (Before
    /// one, a [`ServerHandle::shutdown`] to come lets them go itself: nobody else is left to.)
    fn drop(&mut self) {
        self.inner.server_dropped.store(true, Ordering::SeqCst);
        if self.inner.shutdown.state.started() {
            self.inner.pool.release_workers(Instant::now());
        }
    }
}

/// Binds a TCP listener with `SO_REUSEADDR` and the given backlog.
fn bind(addr: SocketAddr, backlog: i32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}
