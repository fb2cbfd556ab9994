//! The table of live connections: one slot per worker.
//!
//! Pool size equals connection capacity and a worker owns one connection at a time, so slot `i` belongs to
//! worker `i`: registering and leaving never contend on a shared lock, and shutdown, status and broadcast
//! walk the slots. The count of occupied slots is kept beside them so "are we done?" is one atomic load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Thread;

use crate::conn::Conn;

/// Live connections, indexed by worker.
pub struct Registry {
    slots: Box<[Mutex<Option<Arc<Conn>>>]>,
    live: AtomicUsize,
    /// Woken when `live` drops to `wait_for` (the shutdown sequence waits on it).
    waiter: Mutex<Option<Thread>>,
    wait_for: AtomicUsize,
}

impl Registry {
    /// A registry with `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Registry {
            slots: (0..capacity).map(|_| Mutex::new(None)).collect(),
            live: AtomicUsize::new(0),
            waiter: Mutex::new(None),
            wait_for: AtomicUsize::new(0),
        }
    }

    /// Connections registered now (in the handshake or open).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub(crate) fn insert(&self, slot: usize, conn: Arc<Conn>) {
        if let Some(s) = self.slots.get(slot) {
            let mut guard = s.lock().unwrap_or_else(PoisonError::into_inner);
            if guard.replace(conn).is_none() {
                self.live.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    pub(crate) fn remove(&self, slot: usize) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        let old = s.lock().unwrap_or_else(PoisonError::into_inner).take();
        if old.is_some() {
            let now_live = self.live.fetch_sub(1, Ordering::SeqCst) - 1;
            if now_live <= self.wait_for.load(Ordering::SeqCst) {
                if let Some(t) = self
                    .waiter
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    t.unpark();
                }
            }
        }
        // `old` drops here, after the slot lock is released: closing the descriptor is not done under it.
        drop(old);
    }

    /// Every registered connection, in slot order.
    pub fn snapshot(&self) -> Vec<Arc<Conn>> {
        self.slots
            .iter()
            .filter_map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }

    /// Blocks the calling thread until at most `at_most` connections are registered (0: none; 1 when
    /// the caller is a worker whose own connection stays until it returns) or `deadline` passes;
    /// returns whether that many were left. One thread waits at a time (the shutdown sequence).
    pub(crate) fn wait_until(&self, at_most: usize, deadline: std::time::Instant) -> bool {
        self.wait_for.store(at_most, Ordering::SeqCst);
        *self.waiter.lock().unwrap_or_else(PoisonError::into_inner) = Some(std::thread::current());
        let emptied = loop {
            if self.live() <= at_most {
                break true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                break false;
            }
            // Unparked by the last `remove`; the timeout also covers a wake-up that raced the check above.
            std::thread::park_timeout((deadline - now).min(std::time::Duration::from_millis(5)));
        };
        *self.waiter.lock().unwrap_or_else(PoisonError::into_inner) = None;
        emptied
    }
}
