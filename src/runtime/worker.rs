//! A worker's life with one connection: the upgrade handshake under a deadline, then a blocking read
//! loop that feeds the protocol [`Session`] and hands messages to the route's [`Handler`], and the
//! close that ends it (FIN first, so that our last bytes are never lost to a reset).

use std::io;
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::deflate::DeflateParams;
use hydrogen_ws_protocol::{
    handshake, CloseCode, Event, OpCode, ProtocolError, Role, Session, SessionConfig, SessionState,
    Transmit,
};
use log::{debug, error, info};
use socket2::Socket;

use super::admission::Job;
use super::pool::AfterJob;
use super::read_buffer::{Quiet, ReadBuffer, ReadTimeout, SHRINK_IDLE};
use super::shutdown::ShutdownState;
use crate::config::Limits;
use crate::conn::{
    self, BatchGuard, Conn, ConnContext, ConnDeflate, End, SendError, SessionInflate,
};
use crate::handler::Handler;
use crate::registry::Registry;
use crate::routes::Routes;
use crate::stats::Stats;
use crate::sys::{self, SEND, SEND_NOW};

/// What every worker works with.
pub(crate) struct WorkerContext {
    /// What each connection is made with.
    pub conns: ConnContext,
    pub registry: Arc<Registry>,
    pub routes: Arc<Routes>,
    pub stats: Arc<Stats>,
    pub shutdown: Arc<ShutdownState>,
    pub limits: Limits,
    /// Messages shorter than this are sent uncompressed on a permessage-deflate connection.
    pub deflate_min_size: usize,
    /// The next connection id.
    pub next_id: AtomicU64,
}

/// The pool's work: serves one admitted connection on registry slot `slot`; a panic that escapes it
/// is counted and logged, and the worker carries on (or parks, once the server is shutting down).
pub(crate) fn work(ctx: &WorkerContext, job: Job, slot: usize) -> AfterJob {
    let peer = job.peer;
    if catch_unwind(AssertUnwindSafe(|| serve(ctx, slot, job))).is_err() {
        Stats::bump(&ctx.stats.handler_panics);
        error!("connection from {peer}: a panic ended it; the worker carries on");
    }
    if ctx.shutdown.started() {
        // Park rather than go back to the channel, whose receive spins (yielding) before it sleeps: a
        // thousand workers doing that at once would steal the CPU the shutdown needs. Parked workers
        // die with the process (in the binary, they end their thread at once: see the pool), or leave
        // when a library user's Server::shutdown releases them.
        AfterJob::Park
    } else {
        AfterJob::Continue
    }
}

/// Serves one connection whose upgrade the admission stage accepted: 101, the session, the close.
fn serve(ctx: &WorkerContext, slot: usize, job: Job) {
    let Job {
        socket,
        peer,
        response,
        protocol,
        deflate,
        target,
        route,
        leftover,
        admitted_at,
        ip: _ip,
    } = job;
    ctx.stats.waited_for_worker(admitted_at.elapsed());
    let limits = ctx.limits;
    let _ = socket.set_nodelay(true);
    let _ = socket.set_write_timeout(Some(limits.send_timeout));
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new_cyclic(|me| Conn::new(id, peer, socket, &ctx.conns, me.clone()));
    ctx.registry.insert(slot, Arc::clone(&conn));
    // Leave the registry however this function exits (a handler panic included).
    struct Leave<'a>(&'a Registry, usize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            conn::set_serving(0);
            self.0.remove(self.1);
        }
    }
    let _leave = Leave(&ctx.registry, slot);
    conn::set_serving(id);

    // Registered before this check, so a shutdown that started meanwhile either sees us or we see it.
    if ctx.shutdown.started() {
        ctx.stats.refused(503);
        let _ = conn.socket.send_with_flags(
            &handshake::refusal(503, "server is shutting down", &[]),
            SEND_NOW,
        );
        return;
    }
    let Some(handler) = ctx.routes.get(route).map(|r| r.handler()) else {
        return;
    };
    if let Some(params) = &deflate {
        conn.set_deflate(ConnDeflate::new(
            params,
            ctx.deflate_min_size,
            Arc::clone(&ctx.conns.deflate_pool),
            Arc::clone(&ctx.stats),
        ));
        Stats::bump(&ctx.stats.deflate_connections);
        debug!("connection {id} from {peer}: permessage-deflate agreed ({params})");
    }
    let end = match open(ctx, &conn, route, protocol, target, &response) {
        Ok(()) => {
            // A panic in on_open or on_message ends the session, not the connection's goodbye: the client
            // gets 1011 and the handler its on_close.
            let end = catch_unwind(AssertUnwindSafe(|| {
                handler.on_open(&conn);
                run_session(ctx, handler, &conn, leftover, deflate)
            }))
            .unwrap_or_else(|_| handler_panicked(ctx, &conn));
            conn::release_batch_buffer();
            conn.state.store(conn::STATE_CLOSING, Ordering::SeqCst);
            handler.on_close(&conn, &conn.ending(end));
            end
        }
        Err(end) => end,
    };
    conn.state.store(conn::STATE_CLOSING, Ordering::SeqCst);
    debug!("connection {id} from {peer}: ended ({end:?})");
    if end == End::Closing {
        // Our close frame must reach the client: send FIN first, then read until the client closes
        // too, so the close below never turns into a reset that drops it.
        let _ = conn.wait_drained();
        // (Not again after the shutdown's 1001, whose writer shut the write side already: on a
        // socket the client has closed too, that call only fails, once per connection.)
        if !conn.write_shut.load(Ordering::SeqCst) {
            let _ = conn.socket.shutdown(Shutdown::Write);
        }
        let until = if ctx.shutdown.started() {
            // During a shutdown, once the client has acknowledged everything we sent (our FIN counts
            // 1) nothing of ours can be lost any more: close now rather than wait for its FIN.
            if matches!(sys::send_queue_len(&conn.socket), Ok(0 | 1)) {
                return;
            }
            ctx.shutdown.linger_until()
        } else {
            Instant::now() + conn::LINGER
        };
        drain(&conn, until);
    }
}

/// Writes the 101: the connection is open from the moment it can reach the client (under the write
/// lock, so a shutdown that sees "open" writes its close frame after the 101, never before it).
fn open(
    ctx: &WorkerContext,
    conn: &Conn,
    route: usize,
    protocol: Option<String>,
    target: String,
    response: &[u8],
) -> Result<(), End> {
    debug!(
        "connection {} from {}: upgraded {target}",
        conn.id, conn.peer
    );
    *conn::lock(&conn.protocol) = protocol;
    *conn::lock(&conn.target) = target;
    conn.set_route(route);
    if let Some(r) = ctx.routes.get(route) {
        conn.set_permissions(r.shared_permissions());
    }
    let mut w = conn.lock_writer();
    conn.last_ping_ms.store(conn.now_ms(), Ordering::Relaxed);
    conn.state.store(conn::STATE_OPEN, Ordering::SeqCst);
    Stats::bump(&ctx.stats.upgrades);
    if write_all(&conn.socket, response).is_err() {
        w.broken = true;
        drop(w);
        return Err(end_without_close(ctx, conn));
    }
    Ok(())
}

/// A panic in on_open or on_message (or the read loop around them) ended the session.
fn handler_panicked(ctx: &WorkerContext, conn: &Conn) -> End {
    match conn.close_after_panic("on_open or on_message") {
        Ok(()) => End::Closing,
        Err(_) => end_without_close(ctx, conn),
    }
}

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

fn end_without_close(ctx: &WorkerContext, conn: &Conn) -> End {
    if ctx.shutdown.started() {
        End::Shutdown
    } else if conn.was_evicted() {
        End::Evicted
    } else {
        End::PeerGone
    }
}

/// Writes the whole 101 (blocking, bounded by the socket's send timeout).
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

/// The open connection's read loop: bytes -> session -> events -> handler.
fn run_session(
    ctx: &WorkerContext,
    handler: &dyn Handler,
    conn: &Conn,
    leftover: Vec<u8>,
    deflate: Option<DeflateParams>,
) -> End {
    let limits = ctx.limits;
    let config = SessionConfig {
        role: Role::Server,
        max_frame_size: limits.max_frame_size as u64,
        max_message_size: limits.max_message_size,
    };
    let mut session = match deflate {
        // The session inflates what the client sends; what we send is compressed by the writer
        // (`Conn::send_frame`).
        Some(params) => Session::with_extension(
            config,
            Box::new(SessionInflate::new(
                &params,
                Arc::clone(&ctx.conns.deflate_pool),
            )),
        ),
        None => Session::new(config),
    };
    let _ = conn.socket.set_read_timeout(limits.idle_timeout);
    let mut buf = ReadBuffer::new(leftover, limits.idle_timeout);
    // Whether our close frame had gone out before the last read began: a client's close that read brought
    // in may answer ours; one read before it went out was the client's own.
    let mut ours_before_read = false;
    loop {
        if session.state() == SessionState::Open && ctx.shutdown.started() {
            if !conn.close_was_sent() {
                // Awake anyway (the client sent something) before the sequence got to this connection:
                // write the 1001 now, in parallel with the sequence, rather than answer the client first.
                let state = &*ctx.shutdown;
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
        let batch = BatchGuard::start(&ctx.stats);
        // Hand every complete event in the buffer to its consumer.
        let mut consumed = 0;
        loop {
            let (used, event) = match session.read(&mut buf.unread()[consumed..]) {
                Ok(step) => step,
                Err(e) => return fail(ctx, &mut session, conn, e),
            };
            consumed += used;
            let close_code = match event {
                Event::None if used == 0 => break,
                Event::None => continue,
                Event::Pong(_) => {
                    conn.ping_out_ms.store(0, Ordering::Relaxed);
                    continue;
                }
                Event::Message(message) => {
                    ctx.stats.count_in(message.as_bytes().len());
                    handler.on_message(conn, message);
                    // The handler closed the connection.
                    if session.state() == SessionState::Open && conn.close_was_sent() {
                        session.close_sent();
                    }
                    continue;
                }
                Event::Ping(_) => {
                    // The session queued its pong (unless our close went out: the close answers it).
                    match send_transmits(&mut session, conn) {
                        Ok(()) => continue,
                        Err(()) => return end_without_close(ctx, conn),
                    }
                }
                Event::Close(frame) => {
                    conn.close_received(frame, ours_before_read);
                    frame.map(|f| f.code)
                }
            };
            ctx.stats
                .close_received(close_code.unwrap_or(CloseCode::NO_STATUS));
            if ctx.shutdown.started() && conn.close_was_sent() {
                // The client answered the shutdown's 1001: the closing handshake is complete.
                ctx.shutdown.answered.fetch_add(1, Ordering::Relaxed);
            }
            // The peer's close: the session queued its answer (echoing the code), which is dropped if
            // ours already went out behind the session's back (the shutdown's 1001: a lock-free look,
            // as the sequence may still hold the write lock).
            if session.state() == SessionState::CloseReceived && conn.close_was_sent() {
                session.close_sent();
            }
            if send_transmits(&mut session, conn).is_err() {
                return end_without_close(ctx, conn);
            }
            return End::Closing;
        }
        // Replies held back while handling this read go out now, before we block in the next read.
        if batch.finish() && conn.flush_batch().is_err() {
            return end_without_close(ctx, conn);
        }
        buf.consume(consumed);
        let (timeout, burst_over) = buf.prepare();
        if burst_over {
            conn::release_batch_buffer();
        }
        if let Some(timeout) = timeout {
            set_read_timeout(conn, timeout, limits.idle_timeout);
        }
        ours_before_read = conn.close_was_sent();
        match conn.read(buf.room()) {
            Ok(0) => return end_of_input(ctx, conn, &mut session, buf.scratch()),
            Ok(n) => {
                if let Some(timeout) = buf.filled_by(n) {
                    set_read_timeout(conn, timeout, limits.idle_timeout);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if ctx.shutdown.started() || conn.is_broken() || conn.close_was_sent() {
                    return end_of_input(ctx, conn, &mut session, buf.scratch());
                }
                if let Quiet::Shrunk(timeout) = buf.quiet() {
                    // Quiet for SHRINK_IDLE with a grown buffer: back to the small one.
                    conn::release_batch_buffer();
                    set_read_timeout(conn, timeout, limits.idle_timeout);
                    continue;
                }
                Stats::bump(&ctx.stats.idle_timeouts);
                info!(
                    "connection {} from {}: closing with 1001 after the idle timeout",
                    conn.id, conn.peer
                );
                let _ = conn.close(CloseCode::GOING_AWAY, "idle timeout");
                return End::Closing;
            }
            Err(_) => return end_of_input(ctx, conn, &mut session, buf.scratch()),
        }
    }
}

/// Sets the read timeout the read buffer's policy asks for.
fn set_read_timeout(conn: &Conn, timeout: ReadTimeout, idle: Option<Duration>) {
    let value = match timeout {
        ReadTimeout::Idle => idle,
        ReadTimeout::Quiet => Some(SHRINK_IDLE),
        ReadTimeout::Rest(rest) => Some(rest),
    };
    let _ = conn.socket.set_read_timeout(value);
}

/// The read side ended without a close frame. When that is the server's shutdown waking us, wait
/// (bounded) until our close frame has left, and read what the client already sent to see whether it
/// answered the close; then the caller closes the descriptor.
fn end_of_input(ctx: &WorkerContext, conn: &Conn, session: &mut Session, buf: &mut [u8]) -> End {
    let end = end_without_close(ctx, conn);
    if end != End::Shutdown || !conn.close_was_sent() {
        return end;
    }
    session.close_sent();
    let until = ctx.shutdown.linger_until();
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
                    ctx.shutdown.answered.fetch_add(1, Ordering::Relaxed);
                    return end;
                }
                Ok((0, _)) | Err(_) => break,
                Ok((used, _)) => pos += used,
            }
        }
    }
    end
}

/// The peer broke the protocol: send the close the session queued for the error (its close code and
/// reason), unless ours already went out.
fn fail(ctx: &WorkerContext, session: &mut Session, conn: &Conn, error: ProtocolError) -> End {
    if ctx.shutdown.started() {
        return End::Shutdown;
    }
    Stats::bump(&ctx.stats.protocol_errors);
    info!(
        "connection {} from {}: closing with {} ({})",
        conn.id,
        conn.peer,
        error.close_code().0,
        error.reason()
    );
    if conn.close_was_sent() {
        session.close_sent();
    }
    match send_transmits(session, conn) {
        Ok(()) if conn.close_was_sent() => End::Closing,
        _ => end_without_close(ctx, conn),
    }
}

/// Sends what the session says must go out now, in order: a pong, the answer to a close, the close
/// after an error. `Err`: the connection broke (a pong refused because our close went out is not an
/// error: the close answers the ping).
fn send_transmits(session: &mut Session, conn: &Conn) -> Result<(), ()> {
    while let Some(transmit) = session.poll_transmit() {
        let sent = match &transmit {
            Transmit::Close {
                code: Some(code),
                reason,
            } => conn.close(*code, reason),
            other => conn.send_frame(other.opcode(), &other.payload()),
        };
        match sent {
            Ok(()) => {}
            Err(SendError::Closed) if conn.close_was_sent() => {}
            Err(SendError::Closed) if transmit.opcode() == OpCode::Pong => {}
            Err(_) => return Err(()),
        }
    }
    Ok(())
}

/// Waits (bounded) until every data byte written to `socket` (already shut down for writing) has been
/// acknowledged by the peer, so that closing the descriptor cannot throw away a close frame in flight.
fn wait_sent(socket: &Socket, until: Instant) {
    // Few, growing pauses: with thousands of workers waiting at once, short ones would flood the
    // scheduler (a client that delays its ACK keeps us here ~40 ms).
    let mut pause = Duration::from_micros(250);
    while let Ok(n) = sys::send_queue_len(socket) {
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
