//! One client connection as every thread sees it: the public [`Conn`] handle (identity, send, close,
//! subscriptions), its writer ([`writer`]: the queue, batching, eviction and the shutdown's 1001) and how
//! it ended ([`Ending`]).
//!
//! The worker that owns the connection reads from it (see the runtime's worker); every other thread
//! (shutdown, broadcast, the ticker) only writes, through the write lock.

mod deflate;
mod ending;
mod subscriptions;
mod writer;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{close_payload, CloseCode, CloseFrame, Message, OpCode};
use socket2::Socket;

use crate::handle::{Control, ServerHandle};
use crate::stats::Stats;
use crate::topic::Permissions;
use log::error;

pub(crate) use deflate::{ConnDeflate, DeflatePool, SessionInflate};
pub(crate) use ending::End;
pub use ending::Ending;
use ending::{close_parts, Closes};
use subscriptions::Subscriptions;
pub(crate) use subscriptions::{Form, TooMany, MAX_SUBSCRIPTIONS};
use writer::WriteState;
pub(crate) use writer::{
    going_away_frame, release_batch_buffer, serving_here, set_serving, BatchGuard, ShutdownClose,
    BATCH_LIMIT, GOING_AWAY_REASON, TICK,
};

/// Why a send to a client failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent, or the connection broke: nothing more may be written.
    Closed,
    /// The client took nothing for the send timeout while data waited for it, or had more than the
    /// pending limit still queued when more came; it has been evicted.
    Evicted,
    /// [`Conn::close`] was given a code that must not be sent (1005, 1006, 1015, or one outside the
    /// ranges of RFC 6455 section 7.4); nothing was sent.
    BadCloseCode(u16),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Closed => f.write_str("connection is closing"),
            SendError::Evicted => f.write_str("client is not reading; evicted"),
            SendError::BadCloseCode(code) => write!(f, "close code {code} may not be sent"),
            SendError::Io(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// The payload of the heartbeat's pings.
pub(crate) const PING_PAYLOAD: &[u8] = b"hydrogen-ws";

/// Longest a closing connection waits for the client's side of the close.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// The connection's life, in [`Conn::state`]: reading the upgrade request.
pub(crate) const STATE_HANDSHAKE: u8 = 0;
/// The 101 went out: messages flow.
pub(crate) const STATE_OPEN: u8 = 1;
/// The session is over (the handler has been or is being told): nothing more is sent.
pub(crate) const STATE_CLOSING: u8 = 2;

/// A live connection as other threads see it: identity, the socket, and the write lock.
///
/// Handlers receive `&Conn` and reply through it; the server keeps one in the registry for shutdown,
/// broadcast and the heartbeat. Writes never block while holding the lock: what the kernel does not take
/// at once waits in a bounded per-connection queue, flushed by the connection's own worker (which waits
/// for it, up to the send timeout) or by the server's ticker. A client that lets it fill, or stalls past
/// the send timeout, is evicted; nobody else waits for it.
pub struct Conn {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) socket: Socket,
    writer: Mutex<WriteState>,
    pub(crate) state: AtomicU8,
    server: Weak<dyn Control>,
    stats: Arc<Stats>,
    route: OnceLock<usize>,
    send_timeout: Duration,
    max_pending: usize,
    epoch: Instant,
    /// Milliseconds since `epoch`: outstanding ping (0 = none); last ping sent; when our close frame
    /// went out (0 = not yet).
    pub(crate) ping_out_ms: AtomicU64,
    pub(crate) last_ping_ms: AtomicU64,
    pub(crate) close_sent_ms: AtomicU64,
    pub(crate) protocol: Mutex<Option<String>>,
    pub(crate) target: Mutex<String>,
    has_subscriptions: AtomicBool,
    subscriptions: Mutex<Subscriptions>,
    /// What this connection's clients may do on the bus (set from its route in the handshake).
    permissions: OnceLock<Arc<Permissions>>,
    closes: Mutex<Closes>,
    /// The shutdown's writer has shut the write side (its FIN follows the 1001): the worker's own
    /// `shutdown(Write)` at the end would only fail.
    pub(crate) write_shut: AtomicBool,
    /// This connection's own `Arc` (for an application's threads: see [`Conn::shared`]).
    me: Weak<Conn>,
    /// Compression of what we send, when the handshake agreed permessage-deflate (set before the 101).
    /// Boxed: a connection without it carries one pointer more, not the whole struct.
    deflate: OnceLock<Box<ConnDeflate>>,
}

/// What every connection of one server shares, handed to [`Conn::new`].
pub(crate) struct ConnContext {
    /// The server, for [`Conn::server`] (dangling once it is gone).
    pub server: Weak<dyn Control>,
    /// The server's counters.
    pub stats: Arc<Stats>,
    /// How long a write may wait on a client that does not read.
    pub send_timeout: Duration,
    /// Most bytes queued for a slow client before it is evicted.
    pub max_pending: usize,
    /// The server's start: connection clocks count milliseconds from it.
    pub epoch: Instant,
    /// Compressors shared by the connections that agreed permessage-deflate without context takeover.
    pub deflate_pool: Arc<DeflatePool>,
}

/// Locks `m`, going on with its data if a thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    /// A connection in the handshake, on the socket a worker was handed.
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        socket: Socket,
        context: &ConnContext,
        me: Weak<Conn>,
    ) -> Self {
        Conn {
            id,
            peer,
            socket,
            writer: Mutex::new(WriteState::default()),
            state: AtomicU8::new(STATE_HANDSHAKE),
            server: Weak::clone(&context.server),
            stats: Arc::clone(&context.stats),
            route: OnceLock::new(),
            send_timeout: context.send_timeout,
            max_pending: context.max_pending,
            epoch: context.epoch,
            ping_out_ms: AtomicU64::new(0),
            last_ping_ms: AtomicU64::new(0),
            close_sent_ms: AtomicU64::new(0),
            protocol: Mutex::new(None),
            target: Mutex::new(String::new()),
            has_subscriptions: AtomicBool::new(false),
            subscriptions: Mutex::new(Subscriptions::default()),
            permissions: OnceLock::new(),
            closes: Mutex::new(Closes::default()),
            write_shut: AtomicBool::new(false),
            me,
            deflate: OnceLock::new(),
        }
    }

    /// Sends data messages compressed from now on (the handshake agreed permessage-deflate).
    pub(crate) fn set_deflate(&self, deflate: ConnDeflate) {
        let _ = self.deflate.set(Box::new(deflate));
    }

    /// Whether the connection agreed permessage-deflate.
    pub fn deflate(&self) -> bool {
        self.deflate.get().is_some()
    }

    /// A number unique to this connection within the server's life (used in log lines).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<String> {
        lock(&self.protocol).clone()
    }

    /// The request target of the upgrade request (path and query).
    pub fn target(&self) -> String {
        lock(&self.target).clone()
    }

    /// A handle to the server this connection belongs to (`None` once the server is gone).
    pub fn server(&self) -> Option<ServerHandle> {
        self.server.upgrade().map(ServerHandle::new)
    }

    /// A shared handle to this connection, for a thread of the application's own that sends to it (such a
    /// thread must let it go when [`crate::Handler::on_close`] is called: a handle keeps the socket open).
    pub(crate) fn shared(&self) -> Option<Arc<Conn>> {
        self.me.upgrade()
    }

    /// Bytes accepted for this client that the kernel has not taken yet: an application that sends from
    /// a thread of its own (which never waits) reads it to pause its source rather than pile up data.
    pub(crate) fn queued(&self) -> usize {
        self.lock_writer().queued()
    }

    /// Whether nothing more can be sent (our close went out, the session is over, or the stream broke).
    pub(crate) fn is_finished(&self) -> bool {
        self.close_was_sent() || !self.is_open() || self.is_broken()
    }

    /// The server's counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The index of the route that serves this connection (set once, in the handshake).
    pub(crate) fn route(&self) -> Option<usize> {
        self.route.get().copied()
    }

    /// Binds the connection to the route that serves it.
    pub(crate) fn set_route(&self, route: usize) {
        let _ = self.route.set(route);
    }

    /// Sends one whole message (a single frame).
    ///
    /// From the connection's own handler callbacks this waits until the client has taken the data (at most
    /// the send timeout), so a client that sends faster than it reads is slowed down, not buffered for. From
    /// any other thread it never waits: what the socket does not take at once is queued (bounded) and sent
    /// as the client reads.
    pub fn send(&self, message: Message<'_>) -> Result<(), SendError> {
        let payload = message.as_bytes();
        self.send_frame(message.opcode(), payload)?;
        self.stats.count_out(payload.len());
        Ok(())
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send(Message::Text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), SendError> {
        self.send(Message::Binary(data))
    }

    /// Starts the closing handshake with `code` and `reason` (truncated to fit a control frame). The
    /// connection ends when the client answers, or at the latest a short linger later.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if !code.is_sendable() {
            return Err(SendError::BadCloseCode(code.0));
        }
        let payload = close_payload(code, reason);
        self.send_frame(OpCode::Close, payload.as_bytes())?;
        self.stats.close_sent(code);
        Ok(())
    }

    /// Subscribes this connection to `topic` (a pattern: `*` matches one token, `>` the rest; see
    /// [`crate::topic`]): what [`crate::ServerHandle::publish`] sends on a topic it selects, here or on
    /// another instance of the bus, reaches it as it was published. With `every`, the handler's
    /// [`crate::Handler::on_subscription_due`] is called for it at that interval instead (first after one
    /// interval), and the topic stays local. Subscribing again to the same topic replaces the interval. A
    /// connection holds at most 256 subscriptions; more are ignored (and logged).
    pub fn subscribe(&self, topic: &str, every: Option<Duration>) {
        if self.subscribe_as(topic, Form::Raw, every).is_err() {
            log::warn!(
                "connection {}: subscription to {topic} ignored: it holds {MAX_SUBSCRIPTIONS} already",
                self.id
            );
        }
    }

    /// Ends a subscription made with [`Conn::subscribe`]; returns whether there was one.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        self.unsubscribe_as(topic, Form::Raw)
    }

    /// Whether a message published on `topic` reaches this connection (through any of its
    /// subscriptions).
    pub fn is_subscribed(&self, topic: &str) -> bool {
        !self.subscribed_forms(topic).is_empty()
    }

    /// Adds a subscription of `form`; returns whether it is new. The bus is told (a new pattern is
    /// subscribed on NATS soon after; see [`crate::ServerHandle`]).
    pub(crate) fn subscribe_as(
        &self,
        pattern: &str,
        form: Form,
        every: Option<Duration>,
    ) -> Result<bool, TooMany> {
        let new = lock(&self.subscriptions).add(pattern, form, every)?;
        self.has_subscriptions.store(true, Ordering::Release);
        if new && every.is_none() {
            self.tell_bus();
        }
        Ok(new)
    }

    /// Ends a subscription of `form`; returns whether there was one.
    pub(crate) fn unsubscribe_as(&self, pattern: &str, form: Form) -> bool {
        let mut subs = lock(&self.subscriptions);
        let had = subs.remove(pattern, form);
        self.has_subscriptions
            .store(!subs.is_empty(), Ordering::Release);
        drop(subs);
        if had {
            self.tell_bus();
        }
        had
    }

    /// Replaces every subscription of `form` with `patterns` (all or nothing).
    pub(crate) fn replace_subscriptions(
        &self,
        form: Form,
        patterns: &[String],
    ) -> Result<(), TooMany> {
        let mut subs = lock(&self.subscriptions);
        subs.replace(form, patterns)?;
        self.has_subscriptions
            .store(!subs.is_empty(), Ordering::Release);
        drop(subs);
        self.tell_bus();
        Ok(())
    }

    /// The form of each subscription whose pattern selects `topic`.
    pub(crate) fn subscribed_forms(&self, topic: &str) -> Vec<Form> {
        if !self.has_subscriptions.load(Ordering::Acquire) {
            return Vec::new();
        }
        lock(&self.subscriptions).matching(topic)
    }

    /// The form of each bus subscription to exactly `pattern`.
    pub(crate) fn forms_on_pattern(&self, pattern: &str) -> Vec<Form> {
        if !self.has_subscriptions.load(Ordering::Acquire) {
            return Vec::new();
        }
        lock(&self.subscriptions).on_pattern(pattern)
    }

    /// Adds the patterns of this connection's bus subscriptions to `out`.
    pub(crate) fn bus_patterns(&self, out: &mut std::collections::BTreeSet<String>) {
        if self.has_subscriptions.load(Ordering::Acquire) {
            lock(&self.subscriptions).bus_patterns(out);
        }
    }

    /// The subscriptions changed: the bus recomputes what it subscribes to on NATS.
    fn tell_bus(&self) {
        if let Some(server) = self.server.upgrade() {
            server.subscriptions_changed(None);
        }
    }

    /// What this connection's client may do on the bus (its route's permissions; the default ones
    /// before the handshake chose a route).
    pub(crate) fn permissions(&self) -> Arc<Permissions> {
        self.permissions
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(Permissions::default()))
    }

    /// Binds the connection to its route's permissions (in the handshake).
    pub(crate) fn set_permissions(&self, permissions: Arc<Permissions>) {
        let _ = self.permissions.set(permissions);
    }

    /// Periodic subscriptions whose time has come; their next time is set.
    pub(crate) fn due_subscriptions(&self, now: Instant) -> Vec<String> {
        if !self.has_subscriptions.load(Ordering::Acquire) {
            return Vec::new();
        }
        lock(&self.subscriptions).due(now)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::SeqCst) == STATE_OPEN
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, WriteState> {
        lock(&self.writer)
    }

    /// Whether our close frame has gone out (or is queued): nothing else may follow it. Set under the
    /// write lock ([`Conn::mark_close_sent`]), readable without it.
    pub(crate) fn close_was_sent(&self) -> bool {
        self.close_sent_ms.load(Ordering::Relaxed) != 0
    }

    /// Records that our close frame went out; called with the write lock held.
    pub(crate) fn mark_close_sent(&self) {
        self.close_sent_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Records the client's close frame (`None`: it carried no status code); `after_ours`: ours had gone
    /// out before the read that brought it in began.
    pub(crate) fn close_received(&self, frame: Option<CloseFrame<'_>>, after_ours: bool) {
        lock(&self.closes).theirs.get_or_insert_with(|| {
            let (code, reason) = close_parts(frame);
            (code, reason, after_ours)
        });
    }

    /// How the connection ended, from the close frames both sides sent and how the read loop ended.
    pub(crate) fn ending(&self, end: End) -> Ending {
        ending::decide(&lock(&self.closes), end, self.close_was_sent())
    }

    /// A handler callback of this connection (`callback`) panicked: count it, log it, and close with
    /// 1011, unless a close went out already (then the closing handshake is under way: `Ok`).
    pub(crate) fn close_after_panic(&self, callback: &str) -> Result<(), SendError> {
        Stats::bump(&self.stats.handler_panics);
        error!(
            "connection {} from {}: a panic in the handler's {callback}; closing with 1011",
            self.id, self.peer
        );
        if self.close_was_sent() {
            return Ok(());
        }
        self.close(CloseCode::INTERNAL_ERROR, "internal error")
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.lock_writer().broken
    }

    pub(crate) fn was_evicted(&self) -> bool {
        self.lock_writer().evicted
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl Drop for Conn {
    /// A connection that leaves with bus subscriptions tells the bus, which drops the NATS subscriptions
    /// nobody holds any more. (It is out of the registry by now: the bus's recount no longer sees it.)
    fn drop(&mut self) {
        let subs = self
            .subscriptions
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if subs.has_bus_patterns() {
            self.tell_bus();
        }
    }
}
