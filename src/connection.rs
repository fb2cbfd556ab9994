//! One client connection: the only place that reads from and writes to a client socket.
//!
//! A worker thread runs [`serve`] for the life of a connection: the upgrade handshake under a deadline,
//! then a blocking read loop that feeds the protocol [`Session`] and hands messages to the [`Handler`].
//! Other threads (shutdown, broadcast) write through the same [`Conn`] handle and its write lock.

use std::io::{self, IoSlice, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{
    close_payload, handshake, CloseCode, Event, FrameHeader, HandshakeError, Message, OpCode,
    ProtocolError, RequestParser, Role, Session, SessionConfig, SessionState,
};
use socket2::Socket;

use crate::log::{debug, info, warning};
use crate::server::Shared;
use crate::status::Stats;

/// Why a send to a client failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent, or the connection broke: nothing more may be written.
    Closed,
    /// The client did not take the data within the send timeout; it has been evicted.
    Timeout,
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Closed => f.write_str("connection is closing"),
            SendError::Timeout => f.write_str("send timed out; client evicted"),
            SendError::Io(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

const STATE_HANDSHAKE: u8 = 0;
const STATE_OPEN: u8 = 1;
const STATE_CLOSING: u8 = 2;

#[derive(Default)]
struct WriteState {
    /// A close frame has gone out: nothing else may follow it.
    close_sent: bool,
    /// A write failed or stopped part-way through a frame: the stream cannot carry another frame.
    broken: bool,
}

/// A live connection as other threads see it: identity, the socket, and the write lock.
///
/// Handlers receive `&Conn` and reply through it; the server keeps one in the registry for shutdown.
pub struct Conn {
    id: u64,
    peer: SocketAddr,
    socket: Socket,
    writer: Mutex<WriteState>,
    state: AtomicU8,
    stats: Arc<Stats>,
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

impl Conn {
    fn new(id: u64, peer: SocketAddr, socket: Socket, stats: Arc<Stats>) -> Self {
        Conn {
            id,
            peer,
            socket,
            writer: Mutex::new(WriteState::default()),
            state: AtomicU8::new(STATE_HANDSHAKE),
            stats,
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

    /// Sends one whole message (a single frame). Blocks at most the send timeout; a client that does not
    /// read within it is evicted.
    pub fn send(&self, message: Message<'_>) -> Result<(), SendError> {
        let payload = message.as_bytes();
        self.send_frame(message.opcode(), payload)?;
        Stats::bump(&self.stats.messages_out);
        Stats::add(&self.stats.bytes_out, payload.len());
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
    /// connection ends when the client answers, or when the server's linger runs out.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let payload = close_payload(code, reason);
        let mut w = self.lock_writer();
        self.write_frame(&mut w, OpCode::Close, payload.as_bytes())?;
        w.close_sent = true;
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriteState> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn close_was_sent(&self) -> bool {
        self.lock_writer().close_sent
    }

    fn is_broken(&self) -> bool {
        self.lock_writer().broken
    }

    fn send_frame(&self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        let mut w = self.lock_writer();
        self.write_frame(&mut w, opcode, payload)
    }

    /// Writes one frame whole, header and payload in one vectored write where the kernel takes it.
    fn write_frame(
        &self,
        w: &mut WriteState,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if w.close_sent || w.broken {
            return Err(SendError::Closed);
        }
        let header = FrameHeader::new(true, opcode, None, payload.len() as u64).encode();
        let header = header.as_bytes();
        let total = header.len() + payload.len();
        let mut done = 0;
        while done < total {
            let result = if done < header.len() {
                self.socket
                    .send_vectored(&[IoSlice::new(&header[done..]), IoSlice::new(payload)])
            } else {
                self.socket.send(&payload[done - header.len()..])
            };
            match result {
                Ok(0) => {
                    w.broken = true;
                    return Err(SendError::Closed);
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    w.broken = true;
                    let _ = self.socket.shutdown(Shutdown::Both);
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) {
                        Stats::bump(&self.stats.evicted);
                        warning!(
                            "connection {} from {}: evicted, a write waited past the send timeout",
                            self.id,
                            self.peer
                        );
                        return Err(SendError::Timeout);
                    }
                    return Err(SendError::Io(e));
                }
            }
        }
        Ok(())
    }

    /// The shutdown sequence's step for this connection: never blocks. Takes the write lock only if it is
    /// free, writes the close frame with a non-blocking send, and shuts the socket down both ways so that a
    /// worker blocked in `read` (or a writer blocked in `send`) wakes at once.
    pub(crate) fn shutdown_close(&self, frame: &[u8], force: bool) -> ShutdownClose {
        let outcome = match self.state.load(Ordering::SeqCst) {
            STATE_HANDSHAKE => ShutdownClose::Handshake,
            _ => match self.writer.try_lock() {
                Ok(mut w) => self.write_close_now(&mut w, frame),
                Err(TryLockError::Poisoned(p)) => self.write_close_now(&mut p.into_inner(), frame),
                Err(TryLockError::WouldBlock) if !force => return ShutdownClose::Busy,
                Err(TryLockError::WouldBlock) => ShutdownClose::Forced,
            },
        };
        let _ = self.socket.shutdown(Shutdown::Both);
        outcome
    }

    fn write_close_now(&self, w: &mut WriteState, frame: &[u8]) -> ShutdownClose {
        if w.close_sent {
            return ShutdownClose::AlreadyClosing;
        }
        if w.broken {
            return ShutdownClose::Forced;
        }
        match self.socket.send_with_flags(frame, libc::MSG_DONTWAIT) {
            Ok(n) if n == frame.len() => {
                w.close_sent = true;
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

/// Waits (bounded) until everything written to `socket` has been acknowledged by the peer, so that
/// closing the descriptor cannot throw away a close frame still in flight.
fn wait_sent(socket: &Socket, until: Instant) {
    let mut pause = Duration::from_micros(50);
    while let Ok(n) = send_queue_len(socket) {
        if n == 0 || Instant::now() >= until {
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
pub(crate) fn serve(shared: &Shared, slot: usize, socket: Socket, peer: SocketAddr) {
    let limits = shared.config.limits;
    let _ = socket.set_nodelay(true);
    let _ = socket.set_write_timeout(Some(limits.send_timeout));
    let id = shared.next_id();
    let conn = Arc::new(Conn::new(id, peer, socket, Arc::clone(&shared.stats)));
    shared.registry.insert(slot, Arc::clone(&conn));
    // Leave the registry however this function exits (a handler panic included).
    struct Leave<'a>(&'a Shared, usize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.registry.remove(self.1);
        }
    }
    let _leave = Leave(shared, slot);

    // Registered before this check, so a shutdown that started meanwhile either sees us or we see it.
    if shared.is_shutting_down() {
        let _ = conn.socket.send_with_flags(
            &handshake::refusal(503, "server is shutting down", &[]),
            libc::MSG_DONTWAIT,
        );
        return;
    }
    debug!("connection {id} from {peer}: accepted");
    let end = match run_handshake(shared, &conn) {
        Ok(leftover) => {
            conn.state.store(STATE_OPEN, Ordering::SeqCst);
            Stats::bump(&shared.stats.upgrades);
            shared.handler.on_open(&conn);
            let end = run_session(shared, &conn, leftover);
            shared.handler.on_close(&conn);
            end
        }
        Err(end) => end,
    };
    conn.state.store(STATE_CLOSING, Ordering::SeqCst);
    debug!("connection {id} from {peer}: ended ({end:?})");
    match end {
        End::Refused | End::Closing => {
            // Our last bytes (a refusal or a close frame) must reach the client: send FIN first, then read
            // until the client closes too, so the close below never turns into a reset that drops them.
            let _ = conn.socket.shutdown(Shutdown::Write);
            drain(&conn, Instant::now() + LINGER);
        }
        End::Shutdown | End::PeerGone | End::Evicted => {}
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

/// Reads and answers the upgrade request. On success returns the bytes that followed the request.
fn run_handshake(shared: &Shared, conn: &Conn) -> Result<Vec<u8>, End> {
    let limits = shared.config.limits;
    let deadline = Instant::now() + limits.handshake_timeout;
    let mut parser = RequestParser::new(limits.handshake());
    let mut buf = [0u8; 2048];
    let request = loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(refuse_status(
                shared,
                conn,
                408,
                "the upgrade request did not arrive in time",
            ));
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
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(e) => return Err(refuse(shared, conn, e)),
        }
    };
    let upgrade = match request.websocket() {
        Ok(u) => u,
        Err(e) => return Err(refuse(shared, conn, e)),
    };
    let response = upgrade.response(None);
    {
        let mut w = conn.lock_writer();
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
    } else if conn.is_broken() {
        End::Evicted
    } else {
        End::PeerGone
    }
}

fn refuse(shared: &Shared, conn: &Conn, error: HandshakeError) -> End {
    Stats::bump(&shared.stats.refused_handshake);
    warning!(
        "connection {} from {}: refused {} ({})",
        conn.id,
        conn.peer,
        error.status(),
        error.reason()
    );
    let _ = write_all(&conn.socket, &error.response());
    End::Refused
}

fn refuse_status(shared: &Shared, conn: &Conn, status: u16, reason: &str) -> End {
    Stats::bump(&shared.stats.refused_handshake);
    warning!(
        "connection {} from {}: refused {status} ({reason})",
        conn.id,
        conn.peer
    );
    let _ = write_all(&conn.socket, &handshake::refusal(status, reason, &[]));
    End::Refused
}

fn write_all(socket: &Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.send(bytes) {
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
/// The read buffer grows up to this while reads keep filling it.
const MAX_READ_BUF: usize = 64 * 1024;

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
    loop {
        // Hand every complete event in the buffer to its consumer.
        loop {
            let step = session.read(&mut buf[start..end]);
            let (used, event) = match step {
                Ok(s) => s,
                Err(e) => return fail(shared, conn, e),
            };
            start += used;
            let close_code = match event {
                Event::None if used == 0 => break,
                Event::None | Event::Pong(_) => continue,
                Event::Message(message) => {
                    Stats::bump(&shared.stats.messages_in);
                    Stats::add(&shared.stats.bytes_in, message.as_bytes().len());
                    shared.handler.on_message(conn, message);
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
                Event::Close(frame) => frame.map(|f| f.code),
            };
            // The peer's close: answer it (echoing its code) unless ours already went out.
            if session.state() == SessionState::CloseReceived {
                let reply = match close_code {
                    Some(code) => close_payload(code, ""),
                    None => close_payload(CloseCode::NORMAL, ""),
                };
                let reply: &[u8] = if close_code.is_some() {
                    reply.as_bytes()
                } else {
                    &[]
                };
                let _ = conn.send_frame(OpCode::Close, reply).map(|()| {
                    conn.lock_writer().close_sent = true;
                });
                session.close_sent();
            }
            return End::Closing;
        }
        // Make room: move the unread tail to the front, or grow while reads keep filling the buffer.
        if start == end {
            start = 0;
            end = 0;
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            let grown = (buf.len() * 2).min(MAX_READ_BUF.max(buf.len()));
            buf.resize(grown.max(buf.len() + MIN_READ_BUF), 0);
        }
        match conn.read(&mut buf[end..]) {
            Ok(0) => return end_of_input(shared, conn, &mut session, &mut buf),
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.is_shutting_down() || conn.is_broken() {
                    return end_of_input(shared, conn, &mut session, &mut buf);
                }
                info!(
                    "connection {} from {}: closed after the idle timeout",
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
                Ok((_, Event::Close(_))) => {
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
