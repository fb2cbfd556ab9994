//! The shutdown sequence and the bookkeeping it shares with the workers. (Its report is
//! [`crate::ShutdownReport`]; the signals that start it are the binary's.)
//!
//! ```text
//! signal or ServerHandle::shutdown()
//!   1. stop accepting      shut the listening socket down: the acceptor's accept() returns at once
//!   2. close frames        for every connection: take its write lock only if free and write 1001 with
//!                          a non-blocking send, its FIN in the same segment (a worker awake anyway
//!                          writes its own client's frame the same way, in parallel)
//!   3. answers             clients answer with their close frame; their workers see it, close once
//!                          everything is acknowledged, and park (in the binary: end their thread);
//!                          the wait lasts while answers keep coming (bounded)
//!   4. wake                shutdown(Both) on every socket still open: every worker still blocked in
//!                          read() wakes, waits (bounded) for its frame to be acknowledged, and closes
//!   5. join                until the registry is empty or the deadline
//!   -> ShutdownReport      counts and per-phase times; a hard deadline bounds the whole sequence
//! ```
//!
//! Nothing here waits on a client: the frame is written with `MSG_DONTWAIT`, a busy write lock is given a
//! short grace and then skipped (the connection is counted as forced), and the join stops at the deadline.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use log::info;
use socket2::Socket;

use crate::conn::{self, ShutdownClose};
use crate::registry::Registry;
use crate::report::ShutdownReport;
use crate::stats::Stats;

/// What the sequence works on: the listening socket, the live connections, the counters.
pub(crate) struct ShutdownContext {
    pub state: Arc<ShutdownState>,
    pub listener: Arc<Socket>,
    pub registry: Arc<Registry>,
    pub stats: Arc<Stats>,
    /// The hard bound on the whole sequence.
    pub timeout: Duration,
    /// Wakes the admission stage, which then closes every pending handshake.
    pub admission: Arc<mio::Waker>,
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
        self.frame.get_or_init(conn::going_away_frame)
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

/// How long the sequence waits for the next client to answer before it shuts the remaining sockets down
/// (after the last close frame, then after each answer): a tenth of the shutdown timeout, at most 50 ms.
/// A client on loopback or a LAN answers within a millisecond; a slower one still gets its frame (the
/// worker waits for the ACK).
fn answer_grace(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_millis(50))
}

/// Runs the shutdown sequence once; later and concurrent callers get the same report. `started` is when
/// the shutdown began (the bus may have drained since): the deadline counts from there.
pub(crate) fn run(ctx: &ShutdownContext, started: Instant) -> ShutdownReport {
    let state = &ctx.state;
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
    let t0 = started;
    let t_run = Instant::now();
    // Called from a handler, the caller's own connection stays registered until the handler returns:
    // the waits below leave it out (it has its 1001 like everyone else).
    let own = usize::from(conn::serving_here());
    let timeout = ctx.timeout;
    let deadline = t0 + timeout;
    // Workers stop waiting for their close frame to leave with a quarter of the budget to spare.
    let _ = state.linger_until.set(t0 + timeout * 3 / 4);

    // Handshakes still in the admission stage, read before the stage is woken (it closes them, and
    // its gauge goes to 0): they are closed there without a frame, and no worker holds them.
    let pending =
        usize::try_from(ctx.stats.pending_handshakes.load(Ordering::Relaxed)).unwrap_or(0);
    let terminals = ctx.stats.terminals_open.load(Ordering::Relaxed);

    // 1. Stop accepting.
    // No new connection from here; the admission stage wakes and closes every pending handshake at
    // once (they are counted, not waited for).
    let _ = ctx.listener.shutdown(Shutdown::Both);
    let _ = ctx.admission.wake();
    let t1 = Instant::now();

    // 2. A close frame to everyone first (clients learn why as early as possible, and no worker wakes to
    //    compete for the CPU yet), then shutdown(Both) on every socket, which wakes every worker.
    let frame = state.going_away_frame();
    let mut report = ShutdownReport::default();
    let conns = ctx.registry.snapshot();
    report.connections = conns.len() + pending;
    report.handshaking = pending;
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
    //    The wait goes on while answers keep coming, up to the workers' linger bound: shutting a socket
    //    down below wakes a worker that its client's answer, on its way, would have woken anyway, and
    //    thousands of those wake-ups at once compete with the answers for the CPU (at 10,000 idle
    //    connections on a busy machine, a wake step that began with 6,800 answers still to come took
    //    730 ms).
    let grace = answer_grace(timeout);
    let bound = state.linger_until();
    let mut until = (t_frames + grace).min(bound);
    loop {
        let before = ctx.registry.live();
        if ctx.registry.wait_until(own, until) {
            break;
        }
        let now = Instant::now();
        if now >= bound || ctx.registry.live() >= before {
            break;
        }
        until = (now + grace).min(bound);
    }
    let t_answers = Instant::now();

    // 4. Everyone else: shutdown(Both), so every worker still blocked in read() wakes at once.
    for conn in ctx.registry.snapshot() {
        conn.shut_down();
    }
    let t2 = Instant::now();

    // 3. Wait for the workers to let go of their connections.
    if !ctx.registry.wait_until(own, deadline) {
        report.unfinished = ctx.registry.live().saturating_sub(own);
    }
    let t3 = Instant::now();
    report.answered = state.answered.load(Ordering::SeqCst);
    report.terminals = terminals;
    report.terminals_left = ctx.stats.terminals_open.load(Ordering::Relaxed);
    report.bus_drain_us = micros(t_run - t0);
    report.stop_accept_us = micros(t1 - t_run);
    report.close_frames_us = micros(t_frames - t1);
    report.answers_us = micros(t_answers - t_frames);
    report.wake_us = micros(t2 - t_answers);
    report.join_us = micros(t3 - t2);
    report.total_us = micros(t3 - t0);
    ctx.stats
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
