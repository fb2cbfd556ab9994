//! The listening socket and the acceptor thread: admission control in front of the pool.
//!
//! One thread blocks in `accept`. Each accepted socket goes to a worker if one is free; otherwise the
//! client is told `503 Service Unavailable` with `Retry-After` by a small refuser thread and closed, so a
//! flood can neither queue without bound nor block the acceptor. Shutdown wakes `accept` by shutting the
//! listening socket down.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hydrogen_ws_protocol::handshake;
use log::{debug, error, warn};
use socket2::Socket;

use super::pool::{Pool, Refused};
use super::shutdown::ShutdownState;
use crate::stats::Stats;

/// An accepted socket on its way to a worker.
pub(crate) struct Job {
    pub socket: Socket,
    pub peer: SocketAddr,
}

/// What the acceptor works with.
pub(crate) struct AcceptContext {
    pub listener: Arc<Socket>,
    pub pool: Arc<Pool<Job>>,
    pub stats: Arc<Stats>,
    pub shutdown: Arc<ShutdownState>,
    /// Seconds a refused client is told to wait (`Retry-After`).
    pub retry_after_secs: u32,
}

/// Refusals waiting for the refuser thread; beyond this the socket is closed without a word.
const REFUSE_QUEUE: usize = 1024;
/// How long the refuser waits for a refused client's request before answering anyway.
const REFUSE_READ: Duration = Duration::from_millis(100);

/// The acceptor's loop; returns when the listening socket is shut down.
pub(crate) fn accept_loop(ctx: &AcceptContext, jobs: Sender<Job>) {
    let (refuse_tx, refuse_rx) = crossbeam_channel::bounded::<Socket>(REFUSE_QUEUE);
    let retry_after = ctx.retry_after_secs.to_string();
    let refuser = std::thread::Builder::new()
        .name("hydrogen-ws-refuser".into())
        .stack_size(64 * 1024)
        .spawn(move || refuse_loop(&refuse_rx, &retry_after));
    if let Err(e) = &refuser {
        error!("could not start the refuser thread: {e}; full-server refusals will be bare closes");
    }
    loop {
        let (socket, addr) = match ctx.listener.accept() {
            Ok(pair) => pair,
            Err(e) if ctx.shutdown.started() => {
                debug!("acceptor: stopping ({e})");
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and friends: the listener is fine, the process is short of something. Back off a
                // little instead of spinning.
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if ctx.shutdown.started() {
            // Accepted in the instant before the listener was shut; it gets a plain close.
            drop(socket);
            break;
        }
        Stats::bump(&ctx.stats.connections_total);
        let Some(peer) = addr.as_socket() else {
            continue;
        };
        match Pool::submit(&ctx.pool, &jobs, Job { socket, peer }) {
            Ok(()) => {}
            Err(Refused::Full(job)) => refuse_full(ctx, &refuse_tx, job.socket, peer),
            Err(Refused::Spawn(job, e)) => {
                error!("connection from {peer}: cannot start a worker thread: {e}");
                refuse_full(ctx, &refuse_tx, job.socket, peer);
            }
        }
    }
}

fn refuse_full(ctx: &AcceptContext, queue: &Sender<Socket>, socket: Socket, peer: SocketAddr) {
    Stats::bump(&ctx.stats.refused_full);
    ctx.stats.refused(503);
    warn!(
        "connection from {peer}: refused 503, all {} workers are busy",
        ctx.pool.capacity()
    );
    // A full queue means a flood; dropping the socket closes it without the courtesy of a 503.
    let _ = queue.try_send(socket);
}

/// Answers refused clients: read what request they sent (briefly), write the 503, then close without a
/// reset so the response is not lost.
fn refuse_loop(queue: &Receiver<Socket>, retry_after: &str) {
    let response = handshake::refusal(
        503,
        "the server is at its connection capacity; try again later",
        &[("Retry-After", retry_after)],
    );
    let mut scratch = [0u8; 4096];
    for socket in queue.iter() {
        let until = Instant::now() + REFUSE_READ;
        let _ = socket.set_write_timeout(Some(REFUSE_READ));
        // With more refusals waiting (a flood), nobody may hold the refuser: take what this client has
        // already sent and answer at once, so a crowd of silent sockets cannot delay everyone's 503.
        let hurry = !queue.is_empty();
        let _ = socket.set_nonblocking(hurry);
        // Wait for the end of the request head (or the time limit), so that closing does not reset.
        let mut tail = [0u8; 4];
        loop {
            let now = Instant::now();
            if !hurry {
                if now >= until {
                    break;
                }
                let _ = socket.set_read_timeout(Some(until - now));
            }
            match (&socket).read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for &b in &scratch[..n] {
                        tail.rotate_left(1);
                        tail[3] = b;
                    }
                    if &tail == b"\r\n\r\n" || tail[2..] == *b"\n\n" {
                        break;
                    }
                }
            }
        }
        let _ = socket.send(&response);
        let _ = socket.shutdown(Shutdown::Write);
        // Anything else the client sends before our FIN reaches it is read and dropped.
        if !hurry {
            let _ = socket.set_read_timeout(Some(Duration::from_millis(10)));
        }
        let _ = (&socket).read(&mut scratch);
    }
}
