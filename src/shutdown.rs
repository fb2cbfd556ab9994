//! The shutdown sequence, its report, and the signals that start it.
//!
//! ```text
//! signal or ServerHandle::shutdown()
//!   1. stop accepting      shut the listening socket down: the acceptor's accept() returns at once
//!   2. close frames        for every connection: take its write lock only if free and write 1001 with
//!                          a non-blocking send; then shutdown(Both) on every socket: every worker
//!                          blocked in read() wakes
//!   3. join                workers wait (bounded) until the close frame has left the send queue, read
//!                          what the client already sent, close the descriptor and leave the registry
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
use crate::log::info;
use crate::server::Shared;

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
    /// Phase 2b, `shutdown(Both)` on every socket (which wakes its worker), in microseconds.
    pub wake_us: u64,
    /// Phase 3, until every connection's worker let go of it, in microseconds.
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
             forced={} unfinished={} stop_accept_us={} close_frames_us={} wake_us={} join_us={} \
             total_us={}",
            self.connections,
            self.handshaking,
            self.close_frames,
            self.already_closing,
            self.answered,
            self.forced,
            self.unfinished,
            self.stop_accept_us,
            self.close_frames_us,
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
    linger_until: OnceLock<Instant>,
    report: Mutex<Option<ShutdownReport>>,
    done: Condvar,
}

impl ShutdownState {
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
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
    let timeout = shared.config.shutdown_timeout;
    let deadline = t0 + timeout;
    // Workers stop waiting for their close frame to leave with a quarter of the budget to spare.
    let _ = state.linger_until.set(t0 + timeout * 3 / 4);

    // 1. Stop accepting.
    listener::stop(&shared.listener);
    let t1 = Instant::now();

    // 2. A close frame to everyone first (clients learn why as early as possible, and no worker wakes to
    //    compete for the CPU yet), then shutdown(Both) on every socket, which wakes every worker.
    let frame = going_away_frame();
    let mut report = ShutdownReport::default();
    let conns = shared.registry.snapshot();
    report.connections = conns.len();
    let mut busy = Vec::new();
    for conn in &conns {
        match conn.write_going_away(&frame, false) {
            ShutdownClose::Busy => busy.push(conn),
            outcome => tally(&mut report, outcome, conn.id()),
        }
    }
    let grace = (Instant::now() + BUSY_GRACE).min(deadline);
    while !busy.is_empty() {
        let force = Instant::now() >= grace;
        busy.retain(|conn| match conn.write_going_away(&frame, force) {
            ShutdownClose::Busy => true,
            outcome => {
                tally(&mut report, outcome, conn.id());
                false
            }
        });
        std::thread::yield_now();
    }
    let t_frames = Instant::now();
    for conn in &conns {
        conn.shut_down();
    }
    drop(conns);
    let t2 = Instant::now();

    // 3. Wait for the workers to let go of their connections.
    if !shared.registry.wait_empty(deadline) {
        report.unfinished = shared.registry.live();
    }
    let t3 = Instant::now();
    report.answered = state.answered.load(Ordering::SeqCst);
    report.stop_accept_us = micros(t1 - t0);
    report.close_frames_us = micros(t_frames - t1);
    report.wake_us = micros(t2 - t_frames);
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

/// The whole 1001 frame the shutdown writes to every client.
fn going_away_frame() -> Vec<u8> {
    let payload = close_payload(CloseCode::GOING_AWAY, "server shutting down");
    let payload = payload.as_bytes();
    let header = FrameHeader::new(true, OpCode::Close, None, payload.len() as u64).encode();
    let mut frame = header.as_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// SIGINT and SIGTERM, caught from the moment [`Signals::install`] returns.
pub struct Signals {
    first: crossbeam_channel::Receiver<i32>,
}

impl Signals {
    /// Starts catching SIGINT and SIGTERM. The first one is handed to [`Signals::wait`]; a second one ends
    /// the process at once with status 130, for an operator who does not want to wait.
    pub fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let (tx, first) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("hydrogen-ws-signals".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        let _ = tx.send(signal);
                    } else {
                        crate::log::error!("second signal ({signal}) during shutdown: exiting now");
                        std::process::exit(130);
                    }
                }
            })?;
        Ok(Signals { first })
    }

    /// Blocks until the first signal and returns its number.
    pub fn wait(&self) -> std::io::Result<i32> {
        self.first
            .recv()
            .map_err(|_| std::io::Error::other("signal thread ended"))
    }
}

/// Ends the process with status 1 if it is still running `after` from now: the hard deadline of the
/// binary's shutdown, whatever happens inside the sequence.
pub fn exit_after(after: Duration) {
    let _ = std::thread::Builder::new()
        .name("hydrogen-ws-deadline".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            std::thread::sleep(after);
            crate::log::error!("shutdown did not finish within its deadline: exiting now");
            std::process::exit(1);
        });
}
