//! The admission stage: one event-driven thread that accepts connections and reads their request
//! heads on non-blocking sockets, so that silent or slow peers never hold a worker.
//!
//! ```text
//!  listener ──accept──> pending (non-blocking, epoll via mio, under the handshake deadline)
//!                          │ plain HTTP: answered here (/health, /status, /metrics, /, 404)
//!                          │ a refusal: 400/401/403/404/408/414/429/431/503 with a reason, here
//!                          └ a complete, valid upgrade ──> a worker (blocking socket, the parsed
//!                            request and every byte read behind the head), or 503 + Retry-After
//! ```
//!
//! Bounds on what waits: at most `max_pending_handshakes` sockets are pending; when a newcomer finds
//! the table full, the one that has waited longest is closed (408), so a crowd can never lock newcomers
//! out. Each client address may hold at most `max_connections_per_ip` connections, pending and open
//! together (429 beyond). A pending handshake holds no buffer until its first byte arrives. With
//! `TCP_DEFER_ACCEPT` (Linux) a connection that sends nothing does not even wake this thread until the
//! kernel gives up waiting for its data.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use hydrogen_ws_protocol::deflate::{self, DeflateConfig, DeflateParams};
use hydrogen_ws_protocol::{handshake, HandshakeError, Request, RequestParser};
use log::{debug, error, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::Socket;

mod per_ip;
mod summary;
mod table;

pub(crate) use per_ip::{IpSlot, PerIp};
use summary::Summary;
use table::{Pending, Phase, Table};

use super::pool::{Pool, Refused};
use super::shutdown::ShutdownState;
use crate::auth;
use crate::config::{format_duration, Limits};
use crate::conn::LINGER;
use crate::handle::Control;
use crate::http;
use crate::routes::Routes;
use crate::stats::{Admission, Stats};
use crate::sys::SEND_NOW;

/// Most events taken from the poll at once, and most accepts and expired deadlines handled in one turn
/// of the loop: a crowd's burst (thousands of deadlines that fall together, a reconnect storm after
/// them) is worked through in slices, with every other socket's events in between, so a well-behaved
/// client's request waits behind a slice, never behind the whole burst.
const EVENTS: usize = 256;
const BATCH: usize = 64;

/// The listening socket's token; the waker's; pending sockets are `FIRST + slot`.
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST: usize = 2;
/// Most bytes read from a pending socket in one go (the stack buffer; the parser keeps what it needs).
const READ_CHUNK: usize = 2048;
/// How long an answered or refused client is given to take the response and close its side.
const ANSWERED_LINGER: Duration = LINGER;

/// A complete, valid upgrade, on its way to a worker.
pub(crate) struct Job {
    /// The client's socket, blocking again.
    pub socket: Socket,
    pub peer: SocketAddr,
    /// The 101 to write (the worker writes it once the connection is registered).
    pub response: Vec<u8>,
    /// The subprotocol agreed.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters agreed, if any.
    pub deflate: Option<DeflateParams>,
    /// The request target (path and query).
    pub target: String,
    /// The index of the route that serves it.
    pub route: usize,
    /// Bytes the client sent behind the request head (frames pipelined behind the upgrade).
    pub leftover: Vec<u8>,
    /// When the handshake was complete (for the time an upgrade waited for a worker).
    pub admitted_at: Instant,
    /// The client address's share of the per-address limit, given back when the connection ends.
    pub ip: IpSlot,
}

/// What the admission thread works with.
pub(crate) struct AdmissionContext {
    /// The listening socket (non-blocking).
    pub listener: Arc<Socket>,
    pub pool: Arc<Pool<Job>>,
    /// The pool's job channel.
    pub jobs: Sender<Job>,
    pub stats: Arc<Stats>,
    pub shutdown: Arc<ShutdownState>,
    pub routes: Arc<Routes>,
    /// For plain HTTP (status, metrics).
    pub server: Weak<dyn Control>,
    pub limits: Limits,
    /// What permessage-deflate may be agreed to (`None`: it is declined).
    pub deflate: Option<DeflateConfig>,
    /// Seconds a refused client is told to wait (`Retry-After`) when every worker is busy.
    pub retry_after_secs: u32,
    /// Connections per client address.
    pub per_ip: Arc<PerIp>,
}

/// A waker for the admission thread (the shutdown sequence uses it).
pub(crate) type AdmissionWaker = Arc<Waker>;

/// Prepares the stage: the poll with the listening socket registered, and its waker.
pub(crate) fn prepare(listener: &Socket) -> io::Result<(Poll, AdmissionWaker)> {
    listener.set_nonblocking(true)?;
    let poll = Poll::new()?;
    poll.registry().register(
        &mut SourceFd(&listener.as_raw_fd()),
        LISTENER,
        Interest::READABLE,
    )?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}

/// The admission thread's loop; returns when a shutdown has started, after closing every pending
/// socket.
pub(crate) fn run(ctx: &AdmissionContext, mut poll: Poll) {
    let mut events = Events::with_capacity(EVENTS);
    let mut table = Table::new();
    let retry_after = ctx.retry_after_secs.to_string();
    let mut accepting = true;
    let mut summary = Summary::new(&ctx.stats);
    // Set when the backlog was left with connections in it (accept failed for want of descriptors, or
    // a batch was taken): it is tried again then (epoll reports a readiness only once, so nothing else
    // would).
    let mut retry_accept: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut timeout = table.next_timeout(now);
        if let Some(at) = retry_accept {
            let wait = at.saturating_duration_since(now);
            timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                error!("admission: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if ctx.shutdown.started() {
            // Every pending socket is closed at once: the poll first (one close takes every
            // registration with it), then the sockets, one close each.
            drop(poll);
            table.reset_all();
            ctx.stats.set_pending(0);
            return;
        }
        let retry_due = retry_accept.is_some_and(|at| at <= Instant::now());
        let mut listener_ready = false;
        for event in events.iter() {
            match event.token() {
                LISTENER => listener_ready = true,
                WAKER => {}
                Token(t) => {
                    let slot = t - FIRST;
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        on_readable(ctx, &poll, &mut table, slot, &retry_after);
                    }
                    if event.is_writable() {
                        on_writable(&poll, &mut table, slot);
                    }
                }
            }
        }
        // The backlog after the sockets' events: a reconnect storm waits its turn behind them.
        if accepting && (retry_due || listener_ready) {
            retry_accept = match accept_all(ctx, &poll, &mut table, &retry_after) {
                Backlog::Drained => None,
                Backlog::More => Some(Instant::now()),
                Backlog::Retry => Some(Instant::now() + ACCEPT_RETRY),
                Backlog::Closed => {
                    accepting = false;
                    None
                }
            };
        }
        let now = Instant::now();
        for slot in table.expired(now, BATCH) {
            on_deadline(ctx, &mut table, slot);
        }
        ctx.stats.set_pending(table.handshaking);
        summary.tick(ctx, now);
    }
}

/// What [`accept_all`] left behind.
enum Backlog {
    /// Empty: the next connection is announced by epoll.
    Drained,
    /// A batch was taken and more may wait: the loop comes back for them after the other events.
    More,
    /// Connections wait, but accept failed (out of descriptors, memory): try again shortly.
    Retry,
    /// The listener is gone (the shutdown shut it).
    Closed,
}

/// How long the stage waits before it tries the backlog again after accept failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Accepts until the backlog is empty.
fn accept_all(
    ctx: &AdmissionContext,
    poll: &Poll,
    table: &mut Table,
    retry_after: &str,
) -> Backlog {
    for _ in 0..BATCH {
        let (socket, addr) = match ctx.listener.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Backlog::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if ctx.shutdown.started() => {
                debug!("admission: stopping ({e})");
                return Backlog::Closed;
            }
            Err(e) => {
                // EMFILE and friends: the listener is fine, the process is short of something. The
                // connection stays in the backlog until descriptors are free again. Said once a second
                // at most: the retries come every 10 ms.
                thread_local! {
                    static LAST_WARNING: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
                }
                let now = Instant::now();
                if LAST_WARNING.with(|w| w.get().is_none_or(|t| now - t >= Duration::from_secs(1)))
                {
                    LAST_WARNING.with(|w| w.set(Some(now)));
                    warn!("accept failed: {e} (connections wait in the backlog; retrying)");
                }
                return Backlog::Retry;
            }
        };
        Stats::bump(&ctx.stats.connections_total);
        let Some(peer) = addr.as_socket() else {
            continue;
        };
        if socket.set_nonblocking(true).is_err() {
            continue;
        }
        let now = Instant::now();
        let ip = PerIp::take(&ctx.per_ip, peer.ip());
        if ip.is_none() {
            ctx.stats.admission(Admission::PerIp);
            ctx.stats.refused(429);
            debug!(
                "connection from {peer}: refused 429, the address holds {} connections already",
                ctx.per_ip.limit
            );
            let reason = format!(
                "too many connections from {}: at most {} (open and pending together)",
                peer.ip(),
                ctx.per_ip.limit
            );
            let response = handshake::refusal(429, &reason, &[]);
            let pending = Pending {
                socket,
                peer,
                phase: Phase::Writing {
                    out: response,
                    done: 0,
                },
                deadline: now + ANSWERED_LINGER,
                generation: 0,
                handshaking: false,
                _ip: None,
            };
            let slot = table.insert(pending);
            if register(poll, table, slot, Interest::READABLE | Interest::WRITABLE).is_ok() {
                on_writable(poll, table, slot);
            }
            continue;
        }
        if table.handshaking >= ctx.limits.max_pending_handshakes.max(1) {
            // Full: make room by closing the handshake that has waited longest. Refusing the
            // newcomer instead would hand a crowd the lock-out again.
            if let Some(oldest) = table.oldest_handshake() {
                ctx.stats.admission(Admission::PendingFull);
                if let Some(p) = table.get(oldest) {
                    debug!(
                        "connection from {}: closed (408) to make room for a newer handshake",
                        p.peer
                    );
                }
                let reason = "the server is busy with other handshakes and closed the oldest";
                refuse_and_close(ctx, table, oldest, 408, reason);
            }
        }
        let pending = Pending {
            socket,
            peer,
            phase: Phase::Reading(RequestParser::new(ctx.limits.handshake())),
            deadline: now + ctx.limits.handshake_timeout,
            generation: 0,
            handshaking: true,
            _ip: ip,
        };
        let slot = table.insert(pending);
        if register(poll, table, slot, Interest::READABLE).is_err() {
            close(table, slot);
            continue;
        }
        // With TCP_DEFER_ACCEPT the head has usually arrived already: read it now.
        on_readable(ctx, poll, table, slot, retry_after);
    }
    Backlog::More
}

fn register(poll: &Poll, table: &mut Table, slot: usize, interest: Interest) -> io::Result<()> {
    let Some(p) = table.get(slot) else {
        return Ok(());
    };
    let fd = p.socket.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), Token(FIRST + slot), interest)
}

fn reregister(poll: &Poll, table: &mut Table, slot: usize, interest: Interest) {
    if let Some(p) = table.get(slot) {
        let fd = p.socket.as_raw_fd();
        let _ = poll
            .registry()
            .reregister(&mut SourceFd(&fd), Token(FIRST + slot), interest);
    }
}

/// Takes `slot` out of the table and out of the poll; the socket is the caller's.
fn take(poll: &Poll, table: &mut Table, slot: usize) -> Option<Pending> {
    let p = table.remove(slot)?;
    let _ = poll
        .registry()
        .deregister(&mut SourceFd(&p.socket.as_raw_fd()));
    Some(p)
}

/// Closes `slot` at once. (Closing the descriptor also takes it out of the poll: it is the only one.)
fn close(table: &mut Table, slot: usize) {
    drop(table.remove(slot));
}

fn on_readable(
    ctx: &AdmissionContext,
    poll: &Poll,
    table: &mut Table,
    slot: usize,
    retry_after: &str,
) {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let Some(p) = table.get(slot) else {
            return;
        };
        let n = match (&p.socket).read(&mut chunk) {
            Ok(0) => {
                // The client closed its side: a handshake that will never complete, or a client that
                // has taken our response.
                close(table, slot);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                close(table, slot);
                return;
            }
        };
        let parsed = match &mut p.phase {
            Phase::Reading(parser) => parser.push(&chunk[..n]),
            // Bytes behind a response we sent: discarded.
            Phase::Writing { .. } | Phase::Draining => continue,
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(request)) => {
                table.done_handshaking(slot);
                on_request(ctx, poll, table, slot, request, retry_after);
                return;
            }
            Err(e) => {
                table.done_handshaking(slot);
                refuse_error(ctx, poll, table, slot, e);
                return;
            }
        }
    }
}

/// A whole request head arrived: answer it here, or hand the upgrade to a worker.
fn on_request(
    ctx: &AdmissionContext,
    poll: &Poll,
    table: &mut Table,
    slot: usize,
    request: Request,
    retry_after: &str,
) {
    let Some(p) = table.get(slot) else {
        return;
    };
    let peer = p.peer;
    if !request.wants_upgrade() {
        let response = match ctx.server.upgrade() {
            Some(server) => {
                let pages = http::Pages {
                    status: ctx.routes.serves_status_page(),
                    other: ctx.routes.page_at(request.path()),
                };
                http::respond(&*server, pages, &request, peer)
            }
            None => http::HttpResponse::refusal(503, "server is shutting down", &[]),
        };
        // Counted before the client can see the answer, so that what it sees is always in the counters.
        ctx.stats.answered_http(response.status);
        debug!(
            "connection from {peer}: {} {} -> {}",
            request.method, request.target, response.status
        );
        respond(poll, table, slot, response.bytes);
        return;
    }
    let upgrade = match request.websocket() {
        Ok(u) => u,
        Err(e) => return refuse_error(ctx, poll, table, slot, e),
    };
    let Some((route_index, route)) = ctx.routes.find(request.path()) else {
        let reason = format!("no WebSocket service at {}", request.path());
        return refuse(ctx, poll, table, slot, 404, &reason, &[]);
    };
    if let Err(reason) = auth::check_origin(route.origins(), upgrade.origin.as_deref()) {
        return refuse(ctx, poll, table, slot, 403, &reason, &[]);
    }
    if let Err(e) = auth::check_key(route.required_key(), &request) {
        return refuse(ctx, poll, table, slot, e.status(), e.reason(), e.headers());
    }
    if route
        .refused_key()
        .is_some_and(|k| auth::check_key(Some(k), &request).is_ok())
    {
        let e = auth::AuthError::Wrong;
        return refuse(ctx, poll, table, slot, e.status(), e.reason(), e.headers());
    }
    let protocol = match auth::negotiate_protocol(route.subprotocol(), &upgrade.protocols) {
        Ok(p) => p,
        Err(reason) => return refuse(ctx, poll, table, slot, 400, &reason, &[]),
    };
    let deflate = ctx
        .deflate
        .and_then(|config| deflate::negotiate(&upgrade.extensions, &config));
    let Some(Pending {
        socket,
        peer,
        phase,
        _ip: Some(ip),
        ..
    }) = take(poll, table, slot)
    else {
        return;
    };
    let leftover = match &phase {
        Phase::Reading(parser) => parser.trailing().to_vec(),
        _ => Vec::new(),
    };
    if socket.set_nonblocking(false).is_err() {
        return;
    }
    let job = Job {
        socket,
        peer,
        response: upgrade.response_with(
            protocol.as_deref(),
            deflate.map(|d| d.to_string()).as_deref(),
        ),
        protocol,
        deflate,
        target: request.target.clone(),
        route: route_index,
        leftover,
        admitted_at: Instant::now(),
        ip,
    };
    let refused = match Pool::submit(&ctx.pool, &ctx.jobs, job) {
        Ok(()) => return,
        Err(Refused::Full(job)) => job,
        Err(Refused::Spawn(job, e)) => {
            error!("connection from {peer}: cannot start a worker thread: {e}");
            job
        }
    };
    // Every worker is busy: 503 at once, from here.
    Stats::bump(&ctx.stats.refused_full);
    ctx.stats.refused(503);
    ctx.stats.admission(Admission::PoolFull);
    debug!(
        "connection from {peer}: refused 503, all {} workers are busy",
        ctx.pool.capacity()
    );
    let Job { socket, ip, .. } = refused;
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let response = handshake::refusal(
        503,
        "the server is at its connection capacity; try again later",
        &[("Retry-After", retry_after)],
    );
    let pending = Pending {
        socket,
        peer,
        phase: Phase::Writing {
            out: response,
            done: 0,
        },
        deadline: Instant::now() + ANSWERED_LINGER,
        generation: 0,
        handshaking: false,
        _ip: Some(ip),
    };
    let slot = table.insert(pending);
    if register(poll, table, slot, Interest::READABLE | Interest::WRITABLE).is_ok() {
        on_writable(poll, table, slot);
    }
}

fn refuse_error(
    ctx: &AdmissionContext,
    poll: &Poll,
    table: &mut Table,
    slot: usize,
    error: HandshakeError,
) {
    ctx.stats.refused(error.status());
    if let Some(p) = table.get(slot) {
        warn!(
            "connection from {}: refused {} ({})",
            p.peer,
            error.status(),
            error.reason()
        );
    }
    respond(poll, table, slot, error.response());
}

fn refuse(
    ctx: &AdmissionContext,
    poll: &Poll,
    table: &mut Table,
    slot: usize,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
) {
    ctx.stats.refused(status);
    if let Some(p) = table.get(slot) {
        warn!("connection from {}: refused {status} ({reason})", p.peer);
    }
    respond(
        poll,
        table,
        slot,
        handshake::refusal(status, reason, headers),
    );
}

/// Refuses a pending handshake that is being closed to make room, or that ran out of time.
fn refuse_and_close(
    ctx: &AdmissionContext,
    table: &mut Table,
    slot: usize,
    status: u16,
    reason: &str,
) {
    ctx.stats.refused(status);
    table.done_handshaking(slot);
    if let Some(p) = table.remove(slot) {
        // One non-blocking try: a client that let the table fill gets no more of our time.
        let _ = p
            .socket
            .send_with_flags(&handshake::refusal(status, reason, &[]), SEND_NOW);
        let _ = p.socket.shutdown(Shutdown::Both);
    }
}

/// Starts writing `response` to `slot`; the rest goes as the socket takes it.
fn respond(poll: &Poll, table: &mut Table, slot: usize, response: Vec<u8>) {
    let Some(p) = table.get(slot) else {
        return;
    };
    p.phase = Phase::Writing {
        out: response,
        done: 0,
    };
    table.reschedule(slot, Instant::now() + ANSWERED_LINGER);
    reregister(poll, table, slot, Interest::READABLE | Interest::WRITABLE);
    on_writable(poll, table, slot);
}

fn on_writable(poll: &Poll, table: &mut Table, slot: usize) {
    let Some(p) = table.get(slot) else {
        return;
    };
    let Phase::Writing { out, done } = &mut p.phase else {
        return;
    };
    while *done < out.len() {
        match p.socket.send_with_flags(&out[*done..], SEND_NOW) {
            Ok(0) => {
                close(table, slot);
                return;
            }
            Ok(n) => *done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                close(table, slot);
                return;
            }
        }
    }
    // All out: FIN, then wait (bounded) for the client's side so that the close is not a reset.
    let _ = p.socket.shutdown(Shutdown::Write);
    p.phase = Phase::Draining;
    reregister(poll, table, slot, Interest::READABLE);
}

fn on_deadline(ctx: &AdmissionContext, table: &mut Table, slot: usize) {
    let Some(p) = table.get(slot) else {
        return;
    };
    match p.phase {
        Phase::Reading(_) => {
            ctx.stats.admission(Admission::Timeout);
            let reason = format!(
                "the request did not arrive within {}",
                format_duration(ctx.limits.handshake_timeout)
            );
            debug!("connection from {}: refused 408 ({reason})", p.peer);
            table.done_handshaking(slot);
            refuse_and_close(ctx, table, slot, 408, &reason);
        }
        // The client did not take the response, or did not close, in time.
        Phase::Writing { .. } | Phase::Draining => close(table, slot),
    }
}
