//! One client connection: the only place that reads from and writes to a client socket.
//!
//! A worker thread runs [`serve`] for the life of a connection: the upgrade handshake under a deadline,
//! then a blocking read loop that feeds the protocol [`Session`] and hands messages to the [`Handler`].
//! Other threads (shutdown, broadcast) write through the same [`Conn`] handle and its write lock.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{
    close_payload, handshake, parse_close, CloseCode, CloseFrame, Event, FrameHeader,
    HandshakeError, Message, OpCode, ProtocolError, Request, RequestParser, Role, Session,
    SessionConfig, SessionState,
};
use socket2::Socket;

use crate::auth;
use crate::http;
use crate::server::{ServerHandle, Shared};
use crate::status::Stats;
use log::{debug, error, info, warn};

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

const STATE_HANDSHAKE: u8 = 0;
const STATE_OPEN: u8 = 1;
const STATE_CLOSING: u8 = 2;

/// Flags for every send: never raise SIGPIPE, whatever the embedding program does with that signal.
const SEND: libc::c_int = libc::MSG_NOSIGNAL;
/// The same, and never block.
const SEND_NOW: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;

thread_local! {
    /// The id of the connection this worker thread is serving (0: none). A send from a connection's own
    /// worker waits for the client to take the data (back-pressure); a send from any other thread never
    /// waits.
    static SERVING: Cell<u64> = const { Cell::new(0) };
    /// While the worker hands out the events of one read, its own small replies are gathered and go out
    /// together before the next read: one send for many pipelined messages instead of one each.
    static BATCH: Cell<Batch> = const { Cell::new(Batch::Off) };
    /// The frames held back during the batch (all for the connection this worker serves), in order. Kept
    /// between batches while the connection is busy; freed when it goes quiet ([`release_batch_buffer`]).
    static BATCH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread is a worker serving a connection now (its handler is running, or its read loop).
pub(crate) fn serving_here() -> bool {
    SERVING.with(Cell::get) != 0
}

/// Gives the batch buffer's memory back (the connection went quiet or ended).
fn release_batch_buffer() {
    BATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.capacity() > 0 {
            *b = Vec::new();
        }
    });
}

/// Runs `f` on the frames this worker has held back so far.
fn with_batch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BATCH_BUF.with(|b| f(&mut b.borrow_mut()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    Off,
    /// Gathering; `true` once something is held back.
    On(bool),
}

/// Most bytes the worker holds back before sending them anyway. As large as a full read buffer: the
/// echoes of one read's messages are smaller than the messages (they carry no mask), so they leave in one
/// send.
const BATCH_LIMIT: usize = MAX_READ_BUF;

/// Ends a batch when dropped (the read loop left by any path), and adds its traffic to the counters.
struct BatchGuard<'a> {
    stats: &'a Stats,
}

impl<'a> BatchGuard<'a> {
    fn start(stats: &'a Stats) -> BatchGuard<'a> {
        BATCH.with(|b| b.set(Batch::On(false)));
        stats.count_locally();
        BatchGuard { stats }
    }

    /// Ends the batch; whether the worker held anything back that must now go out.
    fn finish(&self) -> bool {
        self.stats.flush_local_counts();
        BATCH.with(|b| b.replace(Batch::Off)) == Batch::On(true)
    }
}

impl Drop for BatchGuard<'_> {
    fn drop(&mut self) {
        self.stats.flush_local_counts();
        BATCH.with(|b| b.set(Batch::Off));
        // Left without `finish` (the connection is ending): what was held back is not for anyone else.
        // Unless a handler panicked: the replies it was told went out still go, ahead of the 1011.
        if !std::thread::panicking() {
            with_batch(Vec::clear);
        }
    }
}

#[derive(Default)]
struct WriteState {
    /// A write failed part-way through a frame, or the client was evicted: the stream is finished.
    broken: bool,
    /// The client was evicted (it stopped reading), as opposed to a write failing (it went away).
    evicted: bool,
    /// Frame bytes accepted but not yet taken by the kernel, in order; `pending[done..]` is still due.
    pending: Vec<u8>,
    done: usize,
    /// When the socket last refused to take everything at once (cleared when `pending` empties).
    stalled_since: Option<Instant>,
}

impl WriteState {
    fn queued(&self) -> usize {
        self.pending.len() - self.done
    }

    /// Queues what the kernel has not taken of `parts` (one after the other): all but the first
    /// `taken` bytes.
    fn hold(&mut self, parts: [&[u8]; 3], mut taken: usize) {
        if self.queued() == 0 {
            self.pending.clear();
            self.done = 0;
        }
        for part in parts {
            let skip = taken.min(part.len());
            taken -= skip;
            self.pending.extend_from_slice(&part[skip..]);
        }
    }
}

/// A topic a connection receives pushes for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscription {
    topic: String,
    /// For periodic topics: how often, and when next.
    every: Option<(Duration, Instant)>,
}

/// How a connection ended, as [`crate::Handler::on_close`] is told.
///
/// # Example
///
/// A handler that notes every ending; the client closes with 1000:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use hydrogen_ws::protocol::{CloseCode, Message};
/// use hydrogen_ws::{Config, Conn, Ending, Handler, Mode, Server};
///
/// #[derive(Clone, Default)]
/// struct Endings(Arc<Mutex<Vec<Ending>>>);
///
/// impl Handler for Endings {
///     fn on_message(&self, conn: &Conn, message: Message<'_>) {
///         let _ = conn.send(message);
///     }
///     fn on_close(&self, _conn: &Conn, ending: &Ending) {
///         self.0.lock().unwrap().push(ending.clone());
///     }
/// }
///
/// let config = Config {
///     mode: Mode::Echo,
///     listen: "127.0.0.1:0".parse().unwrap(),
///     ..Config::default()
/// };
/// let endings = Endings::default();
/// let server = Server::start(config, endings.clone()).unwrap();
/// let (mut client, _) = tungstenite::connect(format!("ws://{}/", server.local_addr())).unwrap();
/// client
///     .close(Some(tungstenite::protocol::CloseFrame {
///         code: 1000.into(),
///         reason: "done".into(),
///     }))
///     .unwrap();
/// while client.read().is_ok() {} // until the server's answer and its end of the stream
/// server.shutdown(); // returns once every connection's worker is done with it
/// assert_eq!(
///     *endings.0.lock().unwrap(),
///     [Ending::ByClient { code: Some(CloseCode(1000)), reason: "done".to_string() }]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The client started the closing handshake: its close frame came in before the server had sent
    /// one (the server answers it with the same code, unless its own close crossed it). `code` is `None`
    /// when the client's close frame carried no status code.
    ByClient {
        /// The client's close code.
        code: Option<CloseCode>,
        /// The client's reason (possibly empty).
        reason: String,
    },
    /// The server started it: a protocol error (1002, 1007, 1009, ...), the idle timeout (1001), an
    /// overdue pong (1011), the handler's [`Conn::close`], a panic in a handler callback (1011), or
    /// the server's shutdown (1001).
    ByServer {
        /// The code of the server's close frame.
        code: CloseCode,
        /// Its reason (possibly empty).
        reason: String,
    },
    /// The server gave up on a client that stopped reading (the send timeout or the pending limit): it
    /// was sent 1008 if there was room for it, and its connection was shut down.
    Evicted,
    /// No close frame went either way: the client went away (end of stream, or a reset, also one that
    /// made a reply fail), or the server's shutdown could not write its 1001 to a client that was not
    /// reading.
    Dropped,
}

/// The first close frame each side sent, for [`Ending`].
#[derive(Default)]
struct Closes {
    /// Ours, when it went out through [`Conn::send_frame`]: code (`None`: an empty close, which only
    /// ever answers an empty one) and reason. (The shutdown's 1001 is not kept here: every connection
    /// gets the same one, so a close that went out without a record here was that one.)
    ours: Option<(Option<CloseCode>, String)>,
    /// The client's: code, reason, and whether ours had gone out before it arrived (before the read that
    /// brought it in).
    theirs: Option<(Option<CloseCode>, String, bool)>,
}

/// A close frame's code and reason as [`Closes`] keeps them (`None`: no status code).
fn close_parts(frame: Option<CloseFrame<'_>>) -> (Option<CloseCode>, String) {
    frame.map_or((None, String::new()), |f| {
        (Some(f.code), f.reason.to_string())
    })
}

/// A live connection as other threads see it: identity, the socket, and the write lock.
///
/// Handlers receive `&Conn` and reply through it; the server keeps one in the registry for shutdown,
/// broadcast and the heartbeat. Writes never block while holding the lock: what the kernel does not take
/// at once waits in a bounded per-connection queue, flushed by the connection's own worker (which waits
/// for it, up to the send timeout) or by the server's ticker. A client that lets it fill, or stalls past
/// the send timeout, is evicted; nobody else waits for it.
pub struct Conn {
    id: u64,
    peer: SocketAddr,
    socket: Socket,
    writer: Mutex<WriteState>,
    state: AtomicU8,
    shared: Weak<Shared>,
    stats: Arc<Stats>,
    send_timeout: Duration,
    max_pending: usize,
    epoch: Instant,
    /// Milliseconds since `epoch`: outstanding ping (0 = none); last ping sent; when our close frame
    /// went out (0 = not yet).
    ping_out_ms: AtomicU64,
    last_ping_ms: AtomicU64,
    close_sent_ms: AtomicU64,
    protocol: Mutex<Option<String>>,
    target: Mutex<String>,
    has_subscriptions: AtomicBool,
    subscriptions: Mutex<Vec<Subscription>>,
    closes: Mutex<Closes>,
}

/// What the shutdown sequence managed to do for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownClose {
    /// The whole close frame was written and the socket shut down.
    Written,
    /// Another thread holds the write lock; try again (or force).
    Busy,
    /// No close frame could be written (send buffer full, stream broken); the socket was shut down.
    Forced,
    /// The connection was still in the handshake; the socket was shut down.
    Handshake,
    /// The connection had already sent its close; the socket was shut down.
    AlreadyClosing,
}

/// Locks `m`, going on with its data if a thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    fn new(id: u64, peer: SocketAddr, socket: Socket, shared: &Arc<Shared>) -> Self {
        let limits = shared.config.limits;
        Conn {
            id,
            peer,
            socket,
            writer: Mutex::new(WriteState::default()),
            state: AtomicU8::new(STATE_HANDSHAKE),
            shared: Arc::downgrade(shared),
            stats: Arc::clone(&shared.stats),
            send_timeout: limits.send_timeout,
            max_pending: limits.max_pending(),
            epoch: shared.started_at,
            ping_out_ms: AtomicU64::new(0),
            last_ping_ms: AtomicU64::new(0),
            close_sent_ms: AtomicU64::new(0),
            protocol: Mutex::new(None),
            target: Mutex::new(String::new()),
            has_subscriptions: AtomicBool::new(false),
            subscriptions: Mutex::new(Vec::new()),
            closes: Mutex::new(Closes::default()),
        }
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
        self.shared.upgrade().map(ServerHandle::from_shared)
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

    /// Subscribes this connection to `topic`; with `every`, the handler's
    /// [`crate::Handler::on_subscription_due`] is called for it at that interval (first after one interval).
    /// Subscribing again to the same topic replaces the interval.
    pub fn subscribe(&self, topic: &str, every: Option<Duration>) {
        let mut subs = lock(&self.subscriptions);
        subs.retain(|s| s.topic != topic);
        subs.push(Subscription {
            topic: topic.to_string(),
            every: every.map(|d| (d, Instant::now() + d)),
        });
        self.has_subscriptions.store(true, Ordering::Release);
    }

    /// Ends a subscription; returns whether there was one.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        let mut subs = lock(&self.subscriptions);
        let before = subs.len();
        subs.retain(|s| s.topic != topic);
        self.has_subscriptions
            .store(!subs.is_empty(), Ordering::Release);
        subs.len() != before
    }

    /// Whether this connection is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.has_subscriptions.load(Ordering::Acquire)
            && lock(&self.subscriptions).iter().any(|s| s.topic == topic)
    }

    /// Periodic subscriptions whose time has come; their next time is set.
    fn due_subscriptions(&self, now: Instant) -> Vec<String> {
        if !self.has_subscriptions.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut due = Vec::new();
        for s in lock(&self.subscriptions).iter_mut() {
            if let Some((every, next)) = &mut s.every {
                if now >= *next {
                    due.push(s.topic.clone());
                    // Skip missed beats rather than bursting to catch up.
                    *next = (*next + *every).max(now + *every / 2);
                }
            }
        }
        due
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::SeqCst) == STATE_OPEN
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriteState> {
        lock(&self.writer)
    }

    /// Whether our close frame has gone out (or is queued): nothing else may follow it. Set under the
    /// write lock ([`Conn::mark_close_sent`]), readable without it.
    pub(crate) fn close_was_sent(&self) -> bool {
        self.close_sent_ms.load(Ordering::Relaxed) != 0
    }

    /// Records that our close frame went out; called with the write lock held.
    fn mark_close_sent(&self) {
        self.close_sent_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Records the client's close frame (`None`: it carried no status code); `after_ours`: ours had gone
    /// out before the read that brought it in began.
    fn close_received(&self, frame: Option<CloseFrame<'_>>, after_ours: bool) {
        lock(&self.closes).theirs.get_or_insert_with(|| {
            let (code, reason) = close_parts(frame);
            (code, reason, after_ours)
        });
    }

    /// How the connection ended, from the close frames both sides sent and how the read loop ended.
    fn ending(&self, end: End) -> Ending {
        let closes = lock(&self.closes);
        let by_client = |(code, reason, _): &(Option<CloseCode>, String, bool)| Ending::ByClient {
            code: *code,
            reason: reason.clone(),
        };
        match (&closes.theirs, &closes.ours) {
            (Some(theirs @ (_, _, false)), _) => by_client(theirs),
            _ if end == End::Evicted => Ending::Evicted,
            (_, Some((code, reason))) => Ending::ByServer {
                code: code.unwrap_or(CloseCode::NO_STATUS),
                reason: reason.clone(),
            },
            // Ours went out with no record of its own: the shutdown's 1001.
            (_, None) if self.close_was_sent() => Ending::ByServer {
                code: CloseCode::GOING_AWAY,
                reason: crate::shutdown::GOING_AWAY_REASON.to_string(),
            },
            // (A client's close after ours implies that ours went out: not reached with `Some`.)
            (theirs, None) => theirs.as_ref().map_or(Ending::Dropped, by_client),
        }
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

    fn is_broken(&self) -> bool {
        self.lock_writer().broken
    }

    fn was_evicted(&self) -> bool {
        self.lock_writer().evicted
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Queues one frame and writes as much as the socket takes now. On the connection's own worker,
    /// then waits (bounded by the send timeout) until the queue has drained.
    fn send_frame(&self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.state.load(Ordering::SeqCst) == STATE_CLOSING {
            // The session is over (on_close, or later): nothing more goes to this client.
            return Err(SendError::Closed);
        }
        let header = FrameHeader::new(true, opcode, None, payload.len() as u64).encode();
        let own = SERVING.with(Cell::get) == self.id;
        if own && opcode != OpCode::Close && BATCH.with(Cell::get) != Batch::Off {
            // Held back (in this worker's own buffer, no lock taken) until the read loop ends the batch.
            if self.close_was_sent() {
                return Err(SendError::Closed);
            }
            let held = with_batch(|b| {
                if b.len() + header.as_bytes().len() + payload.len() > BATCH_LIMIT {
                    return false;
                }
                header.append_to(b);
                b.extend_from_slice(payload);
                true
            });
            if held {
                BATCH.with(|b| b.set(Batch::On(true)));
                return Ok(());
            }
        }
        self.write_frame(own, opcode, header.as_bytes(), payload)
    }

    /// [`Conn::send_frame`] for a frame that is not held back: it goes out now (after what this worker
    /// held, if `own`), or is queued. Kept out of line so that holding a reply back, once per message
    /// under load, stays a short call.
    #[inline(never)]
    fn write_frame(
        &self,
        own: bool,
        opcode: OpCode,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), SendError> {
        let mut w = self.lock_writer();
        if own {
            // Whatever this worker held back goes first, in the same write: frames leave in the order
            // they were sent, and a full batch costs no extra send.
            self.send_held(&mut w, header, payload)?;
        } else {
            self.enqueue(&mut w, [&[], header, payload])?;
        }
        if opcode == OpCode::Close {
            self.mark_close_sent();
            lock(&self.closes)
                .ours
                .get_or_insert_with(|| close_parts(parse_close(payload).ok().flatten()));
        }
        if !own || w.queued() == 0 {
            return Ok(());
        }
        drop(w);
        self.wait_drained()
    }

    /// Writes (or queues) the frames this worker held back for this connection, then the frame
    /// `header` + `payload` (none if `header` is empty), in one send. After a close frame has gone out
    /// (the shutdown's, from another thread) they are dropped: nothing may follow a close.
    fn send_held(
        &self,
        w: &mut WriteState,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), SendError> {
        with_batch(|held| {
            if held.is_empty() && header.is_empty() {
                return Ok(());
            }
            let result = self.enqueue(w, [held, header, payload]);
            held.clear();
            result
        })
    }

    /// The end of a batch on the connection's own worker: the frames held back go out, and the worker
    /// waits (bounded) until the client has taken them.
    fn flush_batch(&self) -> Result<(), SendError> {
        {
            let mut w = self.lock_writer();
            match self.send_held(&mut w, &[], &[]) {
                Ok(()) => {}
                Err(SendError::Closed) if self.close_was_sent() => return Ok(()),
                Err(e) => return Err(e),
            }
            if w.queued() == 0 {
                return Ok(());
            }
        }
        self.wait_drained()
    }

    /// Queues `parts` (written one after the other) and writes as much as the socket takes now.
    fn enqueue(&self, w: &mut WriteState, parts: [&[u8]; 3]) -> Result<(), SendError> {
        if self.close_was_sent() || w.broken {
            return Err(SendError::Closed);
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut taken = 0;
        if w.queued() == 0 {
            taken = self.send_now(parts).map_err(|e| self.fail_write(w, e))?;
            if taken == total {
                return Ok(());
            }
        } else {
            self.flush(w)?;
        }
        // The limit is on what the client left untaken: one frame is always accepted (the caller's
        // own worker then waits for it), so a message larger than the limit is not a reason to evict.
        if w.queued() > self.max_pending {
            return Err(self.evict(w, "it let more than the pending limit pile up"));
        }
        w.hold(parts, taken);
        w.stalled_since.get_or_insert_with(Instant::now);
        self.flush(w)
    }

    /// One non-blocking (vectored, unless only one part has bytes) send of `parts` in order; how much
    /// the kernel took.
    fn send_now(&self, parts: [&[u8]; 3]) -> io::Result<usize> {
        loop {
            let sent = match parts {
                [only, [], []] | [[], only, []] => self.socket.send_with_flags(only, SEND_NOW),
                [a, b, c] => self.socket.send_vectored_with_flags(
                    &[IoSlice::new(a), IoSlice::new(b), IoSlice::new(c)],
                    SEND_NOW,
                ),
            };
            match sent {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes queued bytes without blocking until the socket stops taking them.
    /// Any progress restarts the send-timeout clock: a client that reads slowly is not one that stopped.
    fn flush(&self, w: &mut WriteState) -> Result<(), SendError> {
        let mut took = false;
        while w.queued() > 0 {
            match self.socket.send_with_flags(&w.pending[w.done..], SEND_NOW) {
                Ok(0) => return Err(self.fail_write(w, io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    w.done += n;
                    took = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if took {
                        w.stalled_since = Some(Instant::now());
                    }
                    return Ok(());
                }
                Err(e) => return Err(self.fail_write(w, e)),
            }
        }
        w.pending.clear();
        w.done = 0;
        // Kept as large as a full batch, so that a client that takes each batch in parts does not cost
        // a reallocation per batch.
        if w.pending.capacity() > BATCH_LIMIT {
            w.pending.shrink_to(BATCH_LIMIT);
        }
        w.stalled_since = None;
        Ok(())
    }

    /// The connection's own worker waits for its queue to drain, up to the send timeout.
    fn wait_drained(&self) -> Result<(), SendError> {
        loop {
            let mut w = self.lock_writer();
            self.flush(&mut w)?;
            if w.queued() == 0 {
                return Ok(());
            }
            let since = *w.stalled_since.get_or_insert_with(Instant::now);
            let elapsed = since.elapsed();
            if elapsed >= self.send_timeout {
                return Err(self.evict(&mut w, "a write waited past the send timeout"));
            }
            drop(w);
            // Wait for room in the send buffer without holding the lock: others may queue meanwhile.
            // POLLOUT needs a third of the buffer free while a send takes any free byte, so the ticker
            // may drain the queue without this poll waking: look again at least every tick.
            let _ = wait_writable(
                &self.socket,
                (self.send_timeout - elapsed).min(crate::ticker::TICK),
            );
        }
    }

    /// The ticker's pass over this connection: flush what is queued, evict it if stalled too long.
    fn flush_or_evict(&self) {
        let Ok(mut w) = self.writer.try_lock() else {
            return; // someone is writing right now; next tick
        };
        if w.queued() == 0 || w.broken {
            return;
        }
        if self.flush(&mut w).is_err() || w.queued() == 0 {
            return;
        }
        if w.stalled_since
            .is_some_and(|since| since.elapsed() >= self.send_timeout)
        {
            let _ = self.evict(
                &mut w,
                "it stopped reading for longer than the send timeout",
            );
        }
    }

    fn fail_write(&self, w: &mut WriteState, error: io::Error) -> SendError {
        w.broken = true;
        let _ = self.socket.shutdown(Shutdown::Both);
        SendError::Io(error)
    }

    /// Drops a client that does not read: one last non-blocking try at a 1008 close frame (it only gets
    /// through if the queue had drained), then the socket is shut both ways so its worker wakes and leaves.
    fn evict(&self, w: &mut WriteState, why: &str) -> SendError {
        if !w.broken {
            Stats::bump(&self.stats.evicted);
            warn!(
                "connection {} from {}: evicted (1008) because {why}",
                self.id, self.peer
            );
            if w.queued() == 0 && !self.close_was_sent() {
                let payload = close_payload(CloseCode::POLICY_VIOLATION, "client is not reading");
                let header =
                    FrameHeader::new(true, OpCode::Close, None, payload.as_bytes().len() as u64)
                        .encode();
                if let Ok(n) = self.send_now([&[], header.as_bytes(), payload.as_bytes()]) {
                    if n == header.as_bytes().len() + payload.as_bytes().len() {
                        self.stats.close_sent(CloseCode::POLICY_VIOLATION);
                    }
                }
            }
        }
        w.broken = true;
        w.evicted = true;
        w.pending = Vec::new();
        w.done = 0;
        let _ = self.socket.shutdown(Shutdown::Both);
        SendError::Evicted
    }

    /// The shutdown sequence's first step for this connection, which never blocks: takes the write lock
    /// only if it is free and writes the close frame with a non-blocking send.
    ///
    /// A worker writing its own client's frame passes `count_written`: it is bumped under the write
    /// lock, before the close is marked sent, so the sequence, which finds that connection "already
    /// closing", always sees the count too.
    pub(crate) fn write_going_away(
        &self,
        frame: &[u8],
        force: bool,
        count_written: Option<&AtomicUsize>,
    ) -> ShutdownClose {
        match self.state.load(Ordering::SeqCst) {
            STATE_HANDSHAKE => ShutdownClose::Handshake,
            _ => {
                let outcome = match self.writer.try_lock() {
                    Ok(mut w) => self.write_close_now(&mut w, frame, count_written),
                    Err(TryLockError::Poisoned(p)) => {
                        self.write_close_now(&mut p.into_inner(), frame, count_written)
                    }
                    Err(TryLockError::WouldBlock) if !force => return ShutdownClose::Busy,
                    Err(TryLockError::WouldBlock) => return ShutdownClose::Forced,
                };
                // The lock is released before the FIN: the client answers the frame at once, and its
                // worker, woken by that answer, should not find the lock still held.
                if outcome == ShutdownClose::Written {
                    let _ = self.socket.shutdown(Shutdown::Write);
                    self.stats.close_sent(CloseCode::GOING_AWAY);
                }
                outcome
            }
        }
    }

    /// The shutdown sequence's second step: `shutdown(Both)`, so the worker blocked in `read` wakes at
    /// once (and a send blocked anywhere fails at once).
    pub(crate) fn shut_down(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    fn write_close_now(
        &self,
        w: &mut WriteState,
        frame: &[u8],
        count_written: Option<&AtomicUsize>,
    ) -> ShutdownClose {
        if self.close_was_sent() {
            return ShutdownClose::AlreadyClosing;
        }
        if w.broken || self.flush(w).is_err() || w.queued() > 0 {
            // The client has not taken what is already queued: a close frame cannot go out behind it.
            w.broken = true;
            return ShutdownClose::Forced;
        }
        // MSG_MORE holds the frame back for an instant so that the FIN of the write shutdown right after
        // it rides in the same segment: one packet, and one wake-up of the client, instead of two.
        match self
            .socket
            .send_with_flags(frame, SEND_NOW | libc::MSG_MORE)
        {
            Ok(n) if n == frame.len() => {
                if let Some(count) = count_written {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                // Seen by the worker without the lock: it stops handing the client's data to the handler,
                // and does not echo the client's close (ours answers it).
                self.mark_close_sent();
                ShutdownClose::Written
            }
            _ => {
                // Nothing, or part of the frame, went out: the stream is unusable either way.
                w.broken = true;
                ShutdownClose::Forced
            }
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.socket).read(buf)
    }

    /// The ticker's visit: queued data, heartbeat, subscriptions, and closes the client never answered.
    pub(crate) fn tick(&self, shared: &Shared, now: Instant) {
        if self.state.load(Ordering::SeqCst) != STATE_OPEN {
            return;
        }
        self.flush_or_evict();
        let now_ms = self.now_ms();
        let closed_at = self.close_sent_ms.load(Ordering::Relaxed);
        if closed_at != 0 {
            if now_ms.saturating_sub(closed_at) >= LINGER.as_millis() as u64 {
                debug!(
                    "connection {} from {}: no answer to our close; closing TCP",
                    self.id, self.peer
                );
                let _ = self.socket.shutdown(Shutdown::Both);
            }
            return;
        }
        let hb = shared.config.heartbeat;
        if let Some(interval) = hb.ping_interval {
            let out = self.ping_out_ms.load(Ordering::Relaxed);
            if out != 0 && now_ms.saturating_sub(out) >= hb.pong_timeout.as_millis() as u64 {
                Stats::bump(&self.stats.heartbeat_timeouts);
                info!(
                    "connection {} from {}: closing with 1011, pong overdue",
                    self.id, self.peer
                );
                let _ = self.close(CloseCode::INTERNAL_ERROR, "pong overdue");
                return;
            }
            let last = self.last_ping_ms.load(Ordering::Relaxed);
            if out == 0 && now_ms.saturating_sub(last) >= interval.as_millis() as u64 {
                self.last_ping_ms.store(now_ms, Ordering::Relaxed);
                self.ping_out_ms.store(now_ms, Ordering::Relaxed);
                let _ = self.send_frame(OpCode::Ping, b"hydrogen-ws");
            }
        }
        for topic in self.due_subscriptions(now) {
            shared.handler.on_subscription_due(self, &topic);
        }
    }
}

/// Waits until `socket` can take more data, or `timeout` passes.
#[cfg(unix)]
fn wait_writable(socket: &Socket, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is one valid, initialised pollfd that lives across the call, and we pass its count
    // (1); poll(2) only writes its `revents` field. The descriptor stays open: `socket` is borrowed.
    let rc = unsafe { libc::poll(&mut fds, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}

/// Bytes of unsent or unacknowledged data in the socket's send queue (Linux `SIOCOUTQ`).
#[cfg(target_os = "linux")]
pub(crate) fn send_queue_len(socket: &Socket) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: `socket` owns a valid open descriptor for the duration of the call, and TIOCOUTQ (SIOCOUTQ
    // on TCP sockets) writes exactly one c_int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn send_queue_len(_socket: &Socket) -> io::Result<usize> {
    Ok(0)
}

/// Waits (bounded) until every data byte written to `socket` (already shut down for writing) has been
/// acknowledged by the peer, so that closing the descriptor cannot throw away a close frame in flight.
fn wait_sent(socket: &Socket, until: Instant) {
    // Few, growing pauses: with thousands of workers waiting at once, short ones would flood the
    // scheduler (a client that delays its ACK keeps us here ~40 ms).
    let mut pause = Duration::from_micros(250);
    while let Ok(n) = send_queue_len(socket) {
        // The socket is shut down for writing, so the count includes our FIN's one sequence number:
        // 1 means every data byte (the close frame included) has been acknowledged. Waiting for the FIN's
        // own acknowledgement would wait on the client's delayed ACK, or forever after a reset.
        if n <= 1 || Instant::now() >= until {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// How a connection ended; decides how it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// An HTTP refusal was written.
    Refused,
    /// Close frames were exchanged, or we sent ours after a protocol error or timeout.
    Closing,
    /// The peer went away without a close frame (EOF or reset).
    PeerGone,
    /// Another thread evicted the connection (send timeout).
    Evicted,
    /// Woken by the server's shutdown.
    Shutdown,
}

/// The worker's entry point for one accepted socket.
pub(crate) fn serve(shared: &Arc<Shared>, slot: usize, socket: Socket, peer: SocketAddr) {
    let limits = shared.config.limits;
    let _ = socket.set_nodelay(true);
    let _ = socket.set_write_timeout(Some(limits.send_timeout));
    let id = shared.next_id();
    let conn = Arc::new(Conn::new(id, peer, socket, shared));
    shared.registry.insert(slot, Arc::clone(&conn));
    // Leave the registry however this function exits (a handler panic included).
    struct Leave<'a>(&'a Shared, usize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            SERVING.with(|c| c.set(0));
            self.0.registry.remove(self.1);
        }
    }
    let _leave = Leave(shared, slot);
    SERVING.with(|c| c.set(id));

    // Registered before this check, so a shutdown that started meanwhile either sees us or we see it.
    if shared.is_shutting_down() {
        let _ = conn.socket.send_with_flags(
            &handshake::refusal(503, "server is shutting down", &[]),
            SEND_NOW,
        );
        return;
    }
    debug!("connection {id} from {peer}: accepted");
    let end = match run_handshake(shared, &conn) {
        Ok(leftover) => {
            // A panic in on_open or on_message ends the session, not the connection's goodbye: the client
            // gets 1011 and the handler its on_close.
            let end = catch_unwind(AssertUnwindSafe(|| {
                shared.handler.on_open(&conn);
                run_session(shared, &conn, leftover)
            }))
            .unwrap_or_else(|_| handler_panicked(shared, &conn));
            release_batch_buffer();
            conn.state.store(STATE_CLOSING, Ordering::SeqCst);
            shared.handler.on_close(&conn, &conn.ending(end));
            end
        }
        Err(end) => end,
    };
    conn.state.store(STATE_CLOSING, Ordering::SeqCst);
    debug!("connection {id} from {peer}: ended ({end:?})");
    match end {
        End::Refused | End::Closing => {
            // Our last bytes (a response or a close frame) must reach the client: send FIN first, then
            // read until the client closes too, so the close below never turns into a reset that drops
            // them.
            let _ = conn.wait_drained();
            let _ = conn.socket.shutdown(Shutdown::Write);
            let until = if shared.is_shutting_down() {
                // During a shutdown, once the client has acknowledged everything we sent (our FIN
                // counts 1) nothing of ours can be lost any more: close now rather than wait for its FIN.
                if matches!(send_queue_len(&conn.socket), Ok(0 | 1)) {
                    return;
                }
                shared.linger_deadline()
            } else {
                Instant::now() + LINGER
            };
            drain(&conn, until);
        }
        End::Shutdown | End::PeerGone | End::Evicted => {}
    }
}

/// A panic in on_open or on_message (or the read loop around them) ended the session.
fn handler_panicked(shared: &Shared, conn: &Conn) -> End {
    match conn.close_after_panic("on_open or on_message") {
        Ok(()) => End::Closing,
        Err(_) => end_without_close(shared, conn),
    }
}

/// Longest a closing connection waits for the client's side of the close.
const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards input until EOF, an error or `until`.
fn drain(conn: &Conn, until: Instant) {
    let mut scratch = [0u8; 4096];
    let mut total = 0usize;
    loop {
        let now = Instant::now();
        if now >= until || total > 1 << 20 {
            return;
        }
        let _ = conn.socket.set_read_timeout(Some(until - now));
        match conn.read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Reads the request head under the handshake deadline.
fn read_request(shared: &Shared, conn: &Conn, parser: &mut RequestParser) -> Result<Request, End> {
    let limits = shared.config.limits;
    let deadline = Instant::now() + limits.handshake_timeout;
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= deadline {
            let reason = format!(
                "the request did not arrive within {}",
                crate::config::format_duration(limits.handshake_timeout)
            );
            return Err(refuse_status(shared, conn, 408, &reason, &[]));
        }
        let _ = conn.socket.set_read_timeout(Some(deadline - now));
        let n = match conn.read(&mut buf) {
            Ok(0) => return Err(end_without_close(shared, conn)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return Err(end_without_close(shared, conn)),
        };
        match parser.push(&buf[..n]) {
            Ok(Some(request)) => return Ok(request),
            Ok(None) => {}
            Err(e) => return Err(refuse(shared, conn, e)),
        }
    }
}

/// Reads and answers the request: a plain HTTP request gets its endpoint's response; an upgrade is
/// validated, checked against the origin allow-list and the key, and its subprotocol negotiated. On
/// success returns the bytes that followed the request.
fn run_handshake(shared: &Shared, conn: &Conn) -> Result<Vec<u8>, End> {
    let mut parser = RequestParser::new(shared.config.limits.handshake());
    let request = read_request(shared, conn, &mut parser)?;
    if !request.wants_upgrade() {
        let response = http::respond(shared, &request, conn.peer);
        // Counted before the client can see the answer, so that what it sees is always in the counters.
        shared.stats.answered_http(response.status);
        let _ = write_all(&conn.socket, &response.bytes);
        debug!(
            "connection {} from {}: {} {} -> {}",
            conn.id, conn.peer, request.method, request.target, response.status
        );
        return Err(End::Refused);
    }
    let upgrade = match request.websocket() {
        Ok(u) => u,
        Err(e) => return Err(refuse(shared, conn, e)),
    };
    if let Err(reason) = auth::check_origin(&shared.config, upgrade.origin.as_deref()) {
        return Err(refuse_status(shared, conn, 403, &reason, &[]));
    }
    if let Err(e) = auth::check_key(&shared.config, &request) {
        return Err(refuse_status(
            shared,
            conn,
            e.status(),
            e.reason(),
            e.headers(),
        ));
    }
    let protocol = match auth::negotiate_protocol(&shared.config, &upgrade.protocols) {
        Ok(p) => p,
        Err(reason) => return Err(refuse_status(shared, conn, 400, &reason, &[])),
    };
    let response = upgrade.response(protocol.as_deref());
    *lock(&conn.protocol) = protocol;
    *lock(&conn.target) = request.target.clone();
    {
        // Open from the moment the 101 can reach the client (under the write lock, so a shutdown that
        // sees "open" writes its close frame after the 101, never before it).
        let mut w = conn.lock_writer();
        conn.last_ping_ms.store(conn.now_ms(), Ordering::Relaxed);
        conn.state.store(STATE_OPEN, Ordering::SeqCst);
        Stats::bump(&shared.stats.upgrades);
        if write_all(&conn.socket, &response).is_err() {
            w.broken = true;
            return Err(end_without_close(shared, conn));
        }
    }
    debug!(
        "connection {} from {}: upgraded {}",
        conn.id, conn.peer, request.target
    );
    Ok(parser.trailing().to_vec())
}

fn end_without_close(shared: &Shared, conn: &Conn) -> End {
    if shared.is_shutting_down() {
        End::Shutdown
    } else if conn.was_evicted() {
        End::Evicted
    } else {
        End::PeerGone
    }
}

fn refuse(shared: &Shared, conn: &Conn, error: HandshakeError) -> End {
    shared.stats.refused(error.status());
    warn!(
        "connection {} from {}: refused {} ({})",
        conn.id,
        conn.peer,
        error.status(),
        error.reason()
    );
    let _ = write_all(&conn.socket, &error.response());
    End::Refused
}

fn refuse_status(
    shared: &Shared,
    conn: &Conn,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
) -> End {
    shared.stats.refused(status);
    warn!(
        "connection {} from {}: refused {status} ({reason})",
        conn.id, conn.peer
    );
    let _ = write_all(&conn.socket, &handshake::refusal(status, reason, headers));
    End::Refused
}

/// Writes a whole HTTP response (blocking, bounded by the socket's send timeout).
fn write_all(socket: &Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.send_with_flags(bytes, SEND) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Smallest read buffer; idle connections hold this much.
const MIN_READ_BUF: usize = 4 * 1024;
/// The read buffer grows up to this while reads keep filling it. Large enough that a read takes in
/// everything a client pipelining 64 messages of 1 KiB has in flight (at 64 KiB it took two reads, and
/// two replies' worth of sends and wake-ups).
const MAX_READ_BUF: usize = 128 * 1024;
/// Small reads in a row after which a grown read buffer goes back to the small one.
const SHRINK_AFTER: u32 = 4;
/// A grown read buffer goes back to the small one after the client has been quiet this long.
const SHRINK_IDLE: Duration = Duration::from_millis(500);

/// The open connection's read loop: bytes -> session -> events -> handler.
fn run_session(shared: &Shared, conn: &Conn, leftover: Vec<u8>) -> End {
    let limits = shared.config.limits;
    let mut session = Session::new(SessionConfig {
        role: Role::Server,
        max_frame_size: limits.max_frame_size as u64,
        max_message_size: limits.max_message_size,
    });
    let _ = conn.socket.set_read_timeout(limits.idle_timeout);
    let mut buf = leftover;
    let mut end = buf.len();
    buf.resize(end.max(MIN_READ_BUF), 0);
    let mut start = 0;
    // Whether the last read filled all the room it was given (more is probably waiting).
    let mut filled = false;
    // Reads in a row that returned less than the small buffer holds: the burst is over.
    let mut small_reads = 0u32;
    // Whether reads wait at most SHRINK_IDLE (the buffer is grown) instead of the idle timeout.
    let mut quiet_check = false;
    // Whether the read timeout is what remained of the idle timeout after a quiet check (restored to
    // the whole idle timeout once the client sends again).
    let mut idle_shortened = false;
    // Whether our close frame had gone out before the last read began: a client's close that read brought
    // in may answer ours; one read before it went out was the client's own.
    let mut ours_before_read = false;
    loop {
        if session.state() == SessionState::Open && shared.is_shutting_down() {
            if !conn.close_was_sent() {
                // Awake anyway (the client sent something) before the sequence got to this connection:
                // write the 1001 now, in parallel with the sequence, rather than answer the client first.
                let state = &shared.shutdown_state;
                let _ = conn.write_going_away(
                    state.going_away_frame(),
                    false,
                    Some(&state.frames_by_workers),
                );
            }
            if conn.close_was_sent() {
                // Our close frame went out: data that follows it is discarded by the session, not
                // handed to the handler.
                session.close_sent();
            }
        }
        let batch = BatchGuard::start(&shared.stats);
        // Hand every complete event in the buffer to its consumer.
        loop {
            let (used, event) = match session.read(&mut buf[start..end]) {
                Ok(step) => step,
                Err(e) => return fail(shared, conn, e),
            };
            start += used;
            let close_code = match event {
                Event::None if used == 0 => break,
                Event::None => continue,
                Event::Pong(_) => {
                    conn.ping_out_ms.store(0, Ordering::Relaxed);
                    continue;
                }
                Event::Message(message) => {
                    shared.stats.count_in(message.as_bytes().len());
                    shared.handler.on_message(conn, message);
                    // The handler closed the connection.
                    if session.state() == SessionState::Open && conn.close_was_sent() {
                        session.close_sent();
                    }
                    continue;
                }
                Event::Ping(payload) => {
                    // A pong after our close frame is not allowed; the close answers the ping.
                    match conn.send_frame(OpCode::Pong, payload) {
                        Ok(()) | Err(SendError::Closed) => continue,
                        Err(_) => return end_without_close(shared, conn),
                    }
                }
                Event::Close(frame) => {
                    conn.close_received(frame, ours_before_read);
                    frame.map(|f| f.code)
                }
            };
            shared
                .stats
                .close_received(close_code.unwrap_or(CloseCode::NO_STATUS));
            if shared.is_shutting_down() && conn.close_was_sent() {
                // The client answered the shutdown's 1001: the closing handshake is complete.
                shared
                    .shutdown_state
                    .answered
                    .fetch_add(1, Ordering::Relaxed);
            }
            // The peer's close: answer it (echoing its code) unless ours already went out. (The
            // lock-free look first: during a shutdown our 1001 has usually just gone out, and the
            // sequence may still hold the write lock.)
            if session.state() == SessionState::CloseReceived && conn.close_was_sent() {
                session.close_sent();
            }
            if session.state() == SessionState::CloseReceived {
                let sent = match close_code {
                    Some(code) => conn.close(code, ""),
                    None => conn.send_frame(OpCode::Close, &[]),
                };
                if sent.is_err() && !conn.close_was_sent() {
                    return end_without_close(shared, conn);
                }
                session.close_sent();
            }
            return End::Closing;
        }
        // Replies held back while handling this read go out now, before we block in the next read.
        if batch.finish() && conn.flush_batch().is_err() {
            return end_without_close(shared, conn);
        }
        // Make room: move the unread tail to the front; grow while reads keep filling the buffer, shrink
        // back once a burst is over so an idle connection holds only the small buffer.
        if start == end {
            start = 0;
            end = 0;
            // Only after a few small reads in a row: a pipelining client's reads come in all sizes, and
            // shrinking at the first small one would re-grow (and zero) the buffer over and over.
            if small_reads >= SHRINK_AFTER && buf.len() > MIN_READ_BUF {
                buf.truncate(MIN_READ_BUF);
                buf.shrink_to_fit();
                release_batch_buffer();
                if std::mem::take(&mut quiet_check) {
                    let _ = conn.socket.set_read_timeout(limits.idle_timeout);
                }
            }
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() || (filled && buf.len() < MAX_READ_BUF) {
            let grown = (buf.len() * 2).min(MAX_READ_BUF.max(buf.len()));
            buf.resize(grown.max(end + MIN_READ_BUF), 0);
        }
        if start == end && buf.len() > MIN_READ_BUF && !quiet_check {
            // A grown buffer goes back to the small one once the client has been quiet for a moment:
            // until then a read waits at most SHRINK_IDLE. (Under load reads return at once, so this costs
            // nothing; it only takes a setsockopt when the buffer grows.)
            if limits.idle_timeout.map_or(true, |t| t > SHRINK_IDLE) {
                let _ = conn.socket.set_read_timeout(Some(SHRINK_IDLE));
                quiet_check = true;
            }
        }
        ours_before_read = conn.close_was_sent();
        match conn.read(&mut buf[end..]) {
            Ok(0) => return end_of_input(shared, conn, &mut session, &mut buf),
            Ok(n) => {
                if std::mem::take(&mut idle_shortened) {
                    let _ = conn.socket.set_read_timeout(limits.idle_timeout);
                }
                filled = end + n == buf.len();
                small_reads = if n < MIN_READ_BUF { small_reads + 1 } else { 0 };
                end += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.is_shutting_down() || conn.is_broken() || conn.close_was_sent() {
                    return end_of_input(shared, conn, &mut session, &mut buf);
                }
                if std::mem::take(&mut quiet_check) {
                    // Quiet for SHRINK_IDLE with a grown buffer: back to the small one, and to the idle
                    // timeout.
                    if start == end {
                        buf.truncate(MIN_READ_BUF);
                        buf.shrink_to_fit();
                        small_reads = 0;
                    }
                    // The burst is over: a last read that happened to fill the buffer must not grow it
                    // again (and start another quiet check, and another, with the idle clock never
                    // running out).
                    filled = false;
                    release_batch_buffer();
                    // The client has been quiet for SHRINK_IDLE already: the idle timeout counts it.
                    // (A quiet check is only made when the idle timeout is longer than SHRINK_IDLE.)
                    let rest = limits
                        .idle_timeout
                        .map(|t| t.saturating_sub(SHRINK_IDLE).max(Duration::from_millis(1)));
                    idle_shortened = rest.is_some();
                    let _ = conn.socket.set_read_timeout(rest);
                    continue;
                }
                Stats::bump(&shared.stats.idle_timeouts);
                info!(
                    "connection {} from {}: closing with 1001 after the idle timeout",
                    conn.id, conn.peer
                );
                let _ = conn.close(CloseCode::GOING_AWAY, "idle timeout");
                return End::Closing;
            }
            Err(_) => return end_of_input(shared, conn, &mut session, &mut buf),
        }
    }
}

/// The read side ended without a close frame. When that is the server's shutdown waking us, wait
/// (bounded) until our close frame has left, and read what the client already sent to see whether it
/// answered the close; then the caller closes the descriptor.
fn end_of_input(shared: &Shared, conn: &Conn, session: &mut Session, buf: &mut [u8]) -> End {
    let end = end_without_close(shared, conn);
    if end != End::Shutdown || !conn.close_was_sent() {
        return end;
    }
    session.close_sent();
    let until = shared.linger_deadline();
    wait_sent(&conn.socket, until);
    // The read side is shut, so these reads return what is queued and then 0: they never wait.
    let mut budget = 256 * 1024usize;
    while budget > 0 && Instant::now() < until {
        let n = match conn.read(buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        budget = budget.saturating_sub(n);
        let mut pos = 0;
        while pos < n {
            match session.read(&mut buf[pos..n]) {
                Ok((_, Event::Close(frame))) => {
                    conn.close_received(frame, true);
                    shared
                        .shutdown_state
                        .answered
                        .fetch_add(1, Ordering::Relaxed);
                    return end;
                }
                Ok((0, _)) | Err(_) => break,
                Ok((used, _)) => pos += used,
            }
        }
    }
    end
}

/// The peer broke the protocol: send the close code the error maps to, with its reason.
fn fail(shared: &Shared, conn: &Conn, error: ProtocolError) -> End {
    if shared.is_shutting_down() {
        return End::Shutdown;
    }
    Stats::bump(&shared.stats.protocol_errors);
    let code = error.close_code();
    info!(
        "connection {} from {}: closing with {} ({})",
        conn.id,
        conn.peer,
        code.0,
        error.reason()
    );
    match conn.close(code, error.reason()) {
        Ok(()) => End::Closing,
        Err(_) => end_without_close(shared, conn),
    }
}

#[cfg(test)]
mod tests {
    use super::{send_queue_len, WriteState};

    #[test]
    fn hold_queues_what_the_kernel_did_not_take_of_the_parts_in_order() {
        let parts: [&[u8]; 3] = [b"held", b"head", b"payload"];
        let all = parts.concat();
        for taken in 0..=all.len() {
            let mut w = WriteState::default();
            w.hold(parts, taken);
            assert_eq!(w.pending, &all[taken..], "taken {taken}");
            // More held behind what is still queued goes after it.
            w.hold([b"", b"x", b""], 0);
            assert_eq!(w.queued(), all.len() - taken + 1);
            assert_eq!(w.pending.last(), Some(&b'x'));
        }
    }

    fn pair() -> (socket2::Socket, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (socket2::Socket::from(server), client)
    }

    #[test]
    fn send_queue_len_counts_unacknowledged_bytes_and_the_fin() {
        use std::io::Read;
        let (server, mut client) = pair();
        assert_eq!(send_queue_len(&server).expect("ioctl"), 0);
        // The client reads nothing yet: what it has not taken stays in our send queue.
        server.set_nonblocking(true).expect("non-blocking");
        let chunk = [7u8; 64 * 1024];
        let mut written = 0;
        while let Ok(n) = server.send(&chunk) {
            written += n;
        }
        let queued = send_queue_len(&server).expect("ioctl");
        assert!(queued > 0 && queued <= written, "{queued} of {written}");
        // Once the client has read it all, our side drains to nothing ...
        let mut sink = vec![0u8; 256 * 1024];
        let mut read = 0;
        while read < written {
            read += client.read(&mut sink).expect("read");
        }
        let drained = || send_queue_len(&server).expect("ioctl") == 0;
        assert!(
            wait_for(drained),
            "still {} queued",
            send_queue_len(&server).expect("ioctl")
        );
        // ... and after a write shutdown only the FIN's sequence number can be left, until it is acked.
        server
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        assert!(send_queue_len(&server).expect("ioctl") <= 1);
        assert!(wait_for(drained), "the FIN was never acknowledged");
    }

    /// Polls `cond` for up to 5 s.
    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < until {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        cond()
    }
}
