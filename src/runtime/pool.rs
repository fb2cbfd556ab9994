//! The worker pool: at most `threads` workers fed through a crossbeam channel, never more. Generic over
//! the job: the pool starts, feeds, retires and releases threads, and knows nothing of connections.
//!
//! Each worker owns one connection at a time, so `threads` is the connection capacity. The acceptor
//! reserves a worker before handing a socket over ([`Pool::submit`]); when none is free it refuses the
//! client itself, so sockets never queue without bound.
//!
//! Workers are started on demand, up to the capacity, and a few are kept ready from the start
//! ([`SPARES`]); a worker that has had nothing to do for [`RETIRE_AFTER`] leaves (down to the spares).
//! Every live thread costs the kernel several microseconds to tear down when the process exits, so a
//! server that keeps only the threads it needs stops faster: 256 idle threads alone added 4-5 ms to the exit
//! on the machines the benchmarks ran on.
//!
//! At shutdown, idle workers are not woken: they stay parked in the channel and die with the process,
//! which is cheaper for the kernel than threads that leave one by one. A library user's
//! `Server::shutdown` releases them ([`Pool::release_workers`]) and joins them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Workers started with the server and never retired (at most the capacity).
pub(crate) const SPARES: usize = 4;
/// An idle worker beyond the spares leaves after this long without a connection.
pub(crate) const RETIRE_AFTER: Duration = Duration::from_secs(10);

/// `busy` (reserved workers: serving, or with a job on its way) in the low half of one word and `spawned`
/// (live worker threads) in the high half, so that a reservation and a retirement can never both
/// conclude that the other left a worker for a queued job.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Counts {
    busy: u32,
    spawned: u32,
}

impl Counts {
    fn unpack(word: u64) -> Counts {
        Counts {
            busy: word as u32,
            spawned: (word >> 32) as u32,
        }
    }

    fn pack(self) -> u64 {
        u64::from(self.busy) | (u64::from(self.spawned) << 32)
    }

    /// One more reserved worker, and one more thread if every live one is reserved; `None` at capacity.
    fn reserve(self, capacity: u32) -> Option<Counts> {
        (self.busy < capacity).then(|| Counts {
            busy: self.busy + 1,
            spawned: self.spawned.max(self.busy + 1),
        })
    }

    /// One thread fewer, if without it every reserved job still has a thread and the spares remain.
    fn retire(self, spares: u32) -> Option<Counts> {
        (self.spawned > self.busy && self.spawned > spares).then(|| Counts {
            spawned: self.spawned - 1,
            ..self
        })
    }
}

/// What a worker does once its job is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterJob {
    /// Wait for the next job.
    Continue,
    /// Park until the pool is released (the server is shutting down).
    Park,
}

/// The work every worker does with a job, on the worker's registry slot.
pub(crate) type Work<J> = dyn Fn(J, usize) -> AfterJob + Send + Sync;

/// What [`Pool::submit`] did with a job it could not hand over.
pub(crate) enum Refused<Job> {
    /// Every worker is busy.
    Full(Job),
    /// A new worker was needed and the thread could not be started.
    Spawn(Job, std::io::Error),
}

/// The pool: its counts, the job channel, the registry slots free for new workers, and the join handles.
/// It knows nothing of what a job is: `work` does it.
pub(crate) struct Pool<Job: Send + 'static> {
    counts: AtomicU64,
    capacity: u32,
    stack_size: usize,
    work: Box<Work<Job>>,
    jobs_rx: Receiver<Job>,
    /// Taken (dropped) by [`Pool::release_workers`]; idle workers then leave.
    jobs_tx: Mutex<Option<Sender<Job>>>,
    free_slots: Mutex<Vec<usize>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// Set by [`Pool::release_workers`]: parked workers may leave.
    released: AtomicBool,
}

/// Locks `m`, going on with its data if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<Job: Send + 'static> Pool<Job> {
    /// A pool of at most `capacity` workers with stacks of `stack_size` bytes, each doing `work` with
    /// the jobs it is handed. No thread starts before [`Pool::start`].
    pub(crate) fn new(capacity: usize, stack_size: usize, work: Box<Work<Job>>) -> Self {
        // Room for every worker, so `send` after a successful reservation never blocks.
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Pool {
            counts: AtomicU64::new(0),
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            stack_size,
            work,
            jobs_rx: rx,
            jobs_tx: Mutex::new(Some(tx)),
            // Popped from the end: slot 0 first.
            free_slots: Mutex::new((0..capacity).rev().collect()),
            handles: Mutex::new(Vec::new()),
            released: AtomicBool::new(false),
        }
    }

    /// The most workers (the connection capacity).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Live worker threads.
    pub(crate) fn spawned(&self) -> usize {
        Counts::unpack(self.counts.load(Ordering::Acquire)).spawned as usize
    }

    /// A sender for the acceptor (`None` once the workers were released).
    pub(crate) fn sender(&self) -> Option<Sender<Job>> {
        lock(&self.jobs_tx).clone()
    }

    /// Starts the spare workers.
    pub(crate) fn start(pool: &Arc<Self>) -> std::io::Result<()> {
        for _ in 0..SPARES.min(pool.capacity as usize) {
            pool.update(|c| {
                Some(Counts {
                    spawned: c.spawned + 1,
                    ..c
                })
            });
            if let Err(e) = Self::spawn(pool) {
                pool.update(|c| {
                    Some(Counts {
                        spawned: c.spawned - 1,
                        ..c
                    })
                });
                return Err(e);
            }
        }
        Ok(())
    }

    /// Hands `job` to a worker, starting one when every live worker is busy and the capacity allows.
    pub(crate) fn submit(
        pool: &Arc<Self>,
        jobs: &Sender<Job>,
        job: Job,
    ) -> Result<(), Refused<Job>> {
        let Some(before) = pool.update(|c| c.reserve(pool.capacity)) else {
            return Err(Refused::Full(job));
        };
        if before.spawned < before.busy + 1 {
            if let Err(e) = Self::spawn(pool) {
                pool.update(|c| {
                    Some(Counts {
                        busy: c.busy - 1,
                        spawned: c.spawned - 1,
                    })
                });
                return Err(Refused::Spawn(job, e));
            }
        }
        // Cannot fail while reservations bound the queue and a receiver lives in the pool itself.
        jobs.try_send(job).map_err(|e| {
            pool.release();
            Refused::Full(e.into_inner())
        })
    }

    /// Lets idle workers leave (they are parked in the channel until now) and waits, until `deadline`,
    /// for every worker thread to end.
    pub(crate) fn release_workers(&self, deadline: Instant) {
        self.released.store(true, Ordering::SeqCst);
        drop(lock(&self.jobs_tx).take());
        let handles = std::mem::take(&mut *lock(&self.handles));
        for t in &handles {
            t.thread().unpark();
        }
        join_until(handles, deadline);
    }

    /// Applies `f` to the counts atomically; returns the counts before, or `None` when `f` declined.
    fn update(&self, f: impl Fn(Counts) -> Option<Counts>) -> Option<Counts> {
        self.counts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                f(Counts::unpack(w)).map(Counts::pack)
            })
            .ok()
            .map(Counts::unpack)
    }

    /// A worker finished its connection.
    fn release(&self) {
        self.update(|c| {
            Some(Counts {
                busy: c.busy.saturating_sub(1),
                ..c
            })
        });
    }

    /// An idle worker asks to leave: yes while, without it, every reserved job still has a worker and the
    /// spares remain.
    fn try_retire(&self) -> bool {
        let spares = (SPARES as u32).min(self.capacity);
        self.update(|c| c.retire(spares)).is_some()
    }

    /// Starts one worker thread (already counted in `spawned`) on a free registry slot.
    fn spawn(pool: &Arc<Self>) -> std::io::Result<()> {
        let Some(slot) = lock(&pool.free_slots).pop() else {
            return Err(std::io::Error::other("no free worker slot"));
        };
        let for_thread = Arc::clone(pool);
        let spawned = std::thread::Builder::new()
            .name(format!("hydrogen-ws-worker-{slot}"))
            .stack_size(pool.stack_size)
            .spawn(move || worker(&for_thread, slot));
        match spawned {
            Ok(handle) => {
                let mut handles = lock(&pool.handles);
                handles.retain(|h| !h.is_finished());
                handles.push(handle);
                Ok(())
            }
            Err(e) => {
                lock(&pool.free_slots).push(slot);
                Err(e)
            }
        }
    }
}

/// Joins each of `threads` that has finished by `deadline` (checking every millisecond); the others are
/// left running, detached.
pub(crate) fn join_until(threads: Vec<JoinHandle<()>>, deadline: Instant) {
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

/// One worker: does its jobs on slot `slot` (of the registry), which is its own while it lives.
fn worker<Job: Send + 'static>(pool: &Pool<Job>, mut slot: usize) {
    loop {
        let job = match pool.jobs_rx.recv_timeout(RETIRE_AFTER) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                // The slot goes back before the worker leaves the count: a worker started the moment
                // the count drops must find one free, or its client would get a 503 with room to spare.
                lock(&pool.free_slots).push(slot);
                if pool.try_retire() {
                    return;
                }
                // Still needed. While it is counted and holds no slot, at least one slot is free.
                match lock(&pool.free_slots).pop() {
                    Some(free) => slot = free,
                    None => {
                        pool.update(|c| {
                            Some(Counts {
                                spawned: c.spawned.saturating_sub(1),
                                ..c
                            })
                        });
                        return;
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let after = (pool.work)(job, slot);
        pool.release();
        if after == AfterJob::Park {
            // Park rather than go back to the channel, whose receive spins (yielding) before it sleeps:
            // a thousand workers doing that at once would steal the CPU the shutdown needs. Parked
            // workers die with the process, or leave when a library user's Server::shutdown releases them.
            while !pool.released.load(Ordering::SeqCst) {
                std::thread::park();
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn counts_pack_both_halves() {
        let c = Counts {
            busy: 7,
            spawned: 0xdead_beef,
        };
        assert_eq!(Counts::unpack(c.pack()), c);
        assert_eq!(Counts::unpack(u64::MAX).busy, u32::MAX);
    }

    fn counts(busy: u32, spawned: u32) -> Counts {
        Counts { busy, spawned }
    }

    #[test]
    fn a_reservation_starts_a_thread_only_when_every_live_one_is_reserved() {
        // An idle thread is there: it takes the job.
        assert_eq!(counts(1, 4).reserve(8), Some(counts(2, 4)));
        // Every thread is reserved: one more is started.
        assert_eq!(counts(4, 4).reserve(8), Some(counts(5, 5)));
        // At capacity: refused (the client gets 503).
        assert_eq!(counts(8, 8).reserve(8), None);
    }

    #[test]
    fn a_thread_retires_only_if_every_reserved_job_keeps_a_thread_and_spares_remain() {
        assert_eq!(counts(2, 6).retire(4), Some(counts(2, 5)));
        // Every thread is reserved (a job may be queued for the one asking): it stays.
        assert_eq!(counts(6, 6).retire(4), None);
        // Down to the spares: they stay.
        assert_eq!(counts(0, 4).retire(4), None);
        // Interleaved with reservations, the threads never fall below the reserved jobs.
        let mut c = counts(0, 4);
        for step in 0..1000u32 {
            c = if step % 3 == 0 {
                c.retire(4).unwrap_or(c)
            } else if step % 7 == 0 && c.busy > 0 {
                counts(c.busy - 1, c.spawned)
            } else {
                c.reserve(64).unwrap_or(c)
            };
            assert!(c.spawned >= c.busy && c.spawned >= 4, "{c:?}");
        }
    }
}
