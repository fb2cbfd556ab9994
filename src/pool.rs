//! The fixed worker pool: `threads` workers fed through a crossbeam channel, never more.
//!
//! Each worker owns one connection at a time, so the pool size is the connection capacity. The acceptor
//! reserves a worker before handing a socket over ([`Pool::try_reserve`]); when none is free it refuses the
//! client itself, so sockets never queue without bound.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use socket2::Socket;

use crate::connection;
use crate::log::error;
use crate::server::Shared;
use crate::status::Stats;

/// An accepted socket on its way to a worker.
pub(crate) struct Job {
    pub socket: Socket,
    pub peer: SocketAddr,
}

/// Counts the workers that are busy or about to be.
pub(crate) struct Pool {
    busy: AtomicUsize,
    capacity: usize,
}

impl Pool {
    pub(crate) fn new(capacity: usize) -> Self {
        Pool {
            busy: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Claims a worker for one connection; `false` when every worker is taken.
    pub(crate) fn try_reserve(&self) -> bool {
        self.busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b < self.capacity).then_some(b + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts `threads` workers reading from `jobs`. Worker `i` registers its connections in registry slot `i`.
pub(crate) fn spawn_workers(
    shared: &Arc<Shared>,
    jobs: &Receiver<Job>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let config = &shared.config;
    (0..config.threads)
        .map(|slot| {
            let shared = Arc::clone(shared);
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("hydrogen-ws-worker-{slot}"))
                .stack_size(config.stack_size)
                .spawn(move || worker(&shared, slot, &jobs))
        })
        .collect()
}

fn worker(shared: &Arc<Shared>, slot: usize, jobs: &Receiver<Job>) {
    for job in jobs.iter() {
        let peer = job.peer;
        let result = catch_unwind(AssertUnwindSafe(|| {
            connection::serve(shared, slot, job.socket, job.peer)
        }));
        if result.is_err() {
            Stats::bump(&shared.stats.handler_panics);
            error!("connection from {peer}: a panic ended it; the worker carries on");
        }
        shared.pool.release();
    }
}

/// A channel with room for every worker, so the acceptor's `send` after a successful reservation never
/// blocks.
pub(crate) fn channel(capacity: usize) -> (Sender<Job>, Receiver<Job>) {
    crossbeam_channel::bounded(capacity)
}
