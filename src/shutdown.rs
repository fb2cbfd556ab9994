//! The shutdown sequence, its report, and the signals that start it.
//!
//! ```text
//! signal or ServerHandle::shutdown()
//!   1. stop accepting      shut the listening socket down: the acceptor's accept() returns at once
//!   2. close frames        for every connection: take its write lock only if free and write 1001 with
//!                          a non-blocking send, its FIN in the same segment (a worker awake anyway
//!                          writes its own client's frame the same way, in parallel)
//!   3. answers             clients answer with their close frame; their workers see it, close once
//!                          everything is acknowledged, and park (a short, bounded wait)
//!   4. wake                shutdown(Both) on every socket still open: every worker still blocked in
//!                          read() wakes, waits (bounded) for its frame to be acknowledged, and closes
//!   5. join                until the registry is empty or the deadline
//!   -> ShutdownReport      counts and per-phase times; a hard deadline bounds the whole sequence
//! ```
//!
//! Nothing here waits on a client: the frame is written with `MSG_DONTWAIT`, a busy write lock is given a
//! short grace and then skipped (the connection is counted as forced), and the join stops at the deadline.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{close_payload, CloseCode, FrameHeader, OpCode};

use crate::connection::ShutdownClose;
use crate::listener;
use crate::server::Shared;
use log::info;

/// What a shutdown did, returned by [`crate::ServerHandle::shutdown`] and logged as one line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections registered when the shutdown began (open or in the handshake).
    pub connections: usize,
    /// Of those, connections still in the upgrade handshake: closed without a frame.
    pub handshaking: usize,
    /// Close frames (1001 Going Away) written whole.
    pub close_frames: usize,
    /// Connections already in their own closing handshake (their close frame had gone out).
    pub already_closing: usize,
    /// Clients whose answering close frame had arrived when their connection was closed.
    pub answered: usize,
    /// Open connections closed without a close frame (write lock held past the grace, send buffer full,
    /// or stream already broken).
    pub forced: usize,
    /// The ids of the forced connections (see [`crate::Conn::id`]).
    pub forced_ids: Vec<u64>,
    /// Connections whose worker had not finished when the deadline passed.
    pub unfinished: usize,
    /// Phase 1, stop accepting, in microseconds.
    pub stop_accept_us: u64,
    /// Phase 2a, writing the close frames, in microseconds.
    pub close_frames_us: u64,
    /// Phase 3, waiting (briefly) for clients to answer the close frame, in microseconds.
    pub answers_us: u64,
    /// Phase 4, `shutdown(Both)` on every socket still open (which wakes its worker), in microseconds.
    pub wake_us: u64,
    /// Phase 5, until every connection's worker let go of it, in microseconds.
    pub join_us: u64,
    /// The whole sequence, in microseconds.
    pub total_us: u64,
}

impl ShutdownReport {
    /// Every connection was closed before the deadline.
    pub fn completed(&self) -> bool {
        self.unfinished == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown: connections={} handshaking={} close_frames={} already_closing={} answered={} \
             forced={} unfinished={} stop_accept_us={} close_frames_us={} answers_us={} wake_us={} \
             join_us={} total_us={}",
            self.connections,
            self.handshaking,
            self.close_frames,
            self.already_closing,
            self.answered,
            self.forced,
            self.unfinished,
            self.stop_accept_us,
            self.close_frames_us,
            self.answers_us,
            self.wake_us,
            self.join_us,
            self.total_us
        )
    }
}

/// Shutdown bookkeeping shared with the workers.
#[derive(Default)]
pub(crate) struct ShutdownState {
    started: AtomicBool,
    /// Clients that answered our close, counted by their workers.
    pub(crate) answered: AtomicUsize,
    /// Close frames written by a worker that was awake anyway (its client was sending) before the
    /// sequence reached its connection.
    pub(crate) frames_by_workers: AtomicUsize,
    frame: OnceLock<Vec<u8>>,
    linger_until: OnceLock<Instant>,
    report: Mutex<Option<ShutdownReport>>,
    done: Condvar,
}

impl ShutdownState {
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// The whole 1001 frame every client gets.
    pub(crate) fn going_away_frame(&self) -> &[u8] {
        self.frame.get_or_init(going_away_frame)
    }

    /// Until when a worker may wait for its close frame to leave.
    pub(crate) fn linger_until(&self) -> Instant {
        self.linger_until
            .get()
            .copied()
            .unwrap_or_else(Instant::now)
    }
}

/// How long a connection whose write lock is held gets before it is forced.
const BUSY_GRACE: Duration = Duration::from_millis(2);

/// How long after the last close frame the sequence waits for clients to answer before it shuts the
/// remaining sockets down: a tenth of the shutdown timeout, at most 50 ms. A client on loopback or a LAN
/// answers within a millisecond; a slower one still gets its frame (the worker waits for the ACK).
fn answer_grace(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_millis(50))
}

/// Runs the shutdown sequence once; later and concurrent callers get the same report.
pub(crate) fn run(shared: &Shared) -> ShutdownReport {
    let state = &shared.shutdown_state;
    if state.started.swap(true, Ordering::SeqCst) {
        let mut report = state.report.lock().unwrap_or_else(PoisonError::into_inner);
        while report.is_none() {
            report = state
                .done
                .wait(report)
                .unwrap_or_else(PoisonError::into_inner);
        }
        return report.clone().unwrap_or_default();
    }
    let t0 = Instant::now();
    // Called from a handler, the caller's own connection stays registered until the handler returns:
    // the waits below leave it out (it has its 1001 like everyone else).
    let own = usize::from(crate::connection::serving_here());
    let timeout = shared.config.shutdown_timeout;
    let deadline = t0 + timeout;
    // Workers stop waiting for their close frame to leave with a quarter of the budget to spare.
    let _ = state.linger_until.set(t0 + timeout * 3 / 4);

    // 1. Stop accepting.
    listener::stop(&shared.listener);
    let t1 = Instant::now();

    // 2. A close frame to everyone first (clients learn why as early as possible, and no worker wakes to
    //    compete for the CPU yet), then shutdown(Both) on every socket, which wakes every worker.
    let frame = state.going_away_frame();
    let mut report = ShutdownReport::default();
    let conns = shared.registry.snapshot();
    report.connections = conns.len();
    let mut busy = Vec::new();
    for conn in &conns {
        match conn.write_going_away(frame, false, None) {
            ShutdownClose::Busy => busy.push(conn),
            outcome => tally(&mut report, outcome, conn.id()),
        }
    }
    let grace = (Instant::now() + BUSY_GRACE).min(deadline);
    while !busy.is_empty() {
        let force = Instant::now() >= grace;
        busy.retain(|conn| match conn.write_going_away(frame, force, None) {
            ShutdownClose::Busy => true,
            outcome => {
                tally(&mut report, outcome, conn.id());
                false
            }
        });
        std::thread::yield_now();
    }
    // Frames that busy workers wrote themselves were found "already closing" above.
    let by_workers = state
        .frames_by_workers
        .load(Ordering::SeqCst)
        .min(report.already_closing);
    report.close_frames += by_workers;
    report.already_closing -= by_workers;
    let t_frames = Instant::now();
    // Our handles must not keep a socket open once its worker is done with it.
    drop(conns);

    // 3. Clients answer: a client that replies with its own close frame (and closes, as browsers do)
    //    completes the closing handshake; its worker sees that, closes cleanly and leaves.
    let answer_deadline = (t_frames + answer_grace(timeout)).min(state.linger_until());
    shared.registry.wait_until(own, answer_deadline);
    let t_answers = Instant::now();

    // 4. Everyone else: shutdown(Both), so every worker still blocked in read() wakes at once.
    for conn in shared.registry.snapshot() {
        conn.shut_down();
    }
    let t2 = Instant::now();

    // 3. Wait for the workers to let go of their connections.
    if !shared.registry.wait_until(own, deadline) {
        report.unfinished = shared.registry.live().saturating_sub(own);
    }
    let t3 = Instant::now();
    report.answered = state.answered.load(Ordering::SeqCst);
    report.stop_accept_us = micros(t1 - t0);
    report.close_frames_us = micros(t_frames - t1);
    report.answers_us = micros(t_answers - t_frames);
    report.wake_us = micros(t2 - t_answers);
    report.join_us = micros(t3 - t2);
    report.total_us = micros(t3 - t0);
    shared
        .stats
        .last_shutdown_us
        .store(report.total_us.max(1), Ordering::Relaxed);
    info!("{report}");
    if !report.forced_ids.is_empty() {
        info!("shutdown: forced connection ids {:?}", report.forced_ids);
    }

    *state.report.lock().unwrap_or_else(PoisonError::into_inner) = Some(report.clone());
    state.done.notify_all();
    report
}

fn tally(report: &mut ShutdownReport, outcome: ShutdownClose, id: u64) {
    match outcome {
        ShutdownClose::Written => report.close_frames += 1,
        ShutdownClose::Handshake => report.handshaking += 1,
        ShutdownClose::AlreadyClosing => report.already_closing += 1,
        ShutdownClose::Forced | ShutdownClose::Busy => {
            report.forced += 1;
            report.forced_ids.push(id);
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The reason of the shutdown's 1001.
pub(crate) const GOING_AWAY_REASON: &str = "server shutting down";

/// The whole 1001 frame the shutdown writes to every client.
fn going_away_frame() -> Vec<u8> {
    let payload = close_payload(CloseCode::GOING_AWAY, GOING_AWAY_REASON);
    let payload = payload.as_bytes();
    let header = FrameHeader::new(true, OpCode::Close, None, payload.len() as u64).encode();
    let mut frame = header.as_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}
