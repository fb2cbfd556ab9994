//! The pending sockets of the admission stage: their phase, their deadlines (a heap) and their ages
//! (the oldest handshake is the one closed when the table is full). No I/O here beyond holding the
//! sockets, so the bookkeeping is tested on its own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::RequestParser;
use socket2::Socket;

use super::per_ip::IpSlot;

/// Where a pending socket is in its short life.
pub(super) enum Phase {
    /// Reading the request head.
    Reading(RequestParser),
    /// Writing a response (`out[done..]` still to go); then the write side is shut.
    Writing { out: Vec<u8>, done: usize },
    /// The response went out and the write side is shut: reading (and discarding) until the client
    /// closes too, so that closing never turns into a reset that would destroy the response.
    Draining,
}

pub(super) struct Pending {
    pub(super) socket: Socket,
    pub(super) peer: SocketAddr,
    pub(super) phase: Phase,
    pub(super) deadline: Instant,
    /// Told apart from an earlier occupant of the same slot (the timer and age queues keep tokens).
    pub(super) generation: u64,
    /// Whether the handshake is still in progress (counted in the pending gauge).
    pub(super) handshaking: bool,
    pub(super) _ip: Option<IpSlot>,
}

/// The pending sockets, their deadlines and their ages.
pub(super) struct Table {
    pub(super) slots: Vec<Option<Pending>>,
    pub(super) free: Vec<usize>,
    /// (deadline, slot, generation), earliest first.
    pub(super) timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// (slot, generation) in the order the handshakes began: the oldest first.
    pub(super) ages: VecDeque<(usize, u64)>,
    pub(super) next_generation: u64,
    /// Handshakes in progress (entries still reading their request).
    pub(super) handshaking: usize,
}

impl Table {
    pub(super) fn new() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            ages: VecDeque::new(),
            next_generation: 1,
            handshaking: 0,
        }
    }

    pub(super) fn get(&mut self, slot: usize) -> Option<&mut Pending> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Whether `(slot, generation)` still names a live entry.
    pub(super) fn is_live(&self, slot: usize, generation: u64) -> bool {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.generation == generation)
    }

    /// Drops the timer and age records of entries that are gone, so that neither queue outgrows the
    /// table (they are otherwise emptied only as deadlines pass and evictions happen).
    pub(super) fn compact(&mut self) {
        let live = self.slots.len() - self.free.len();
        let bound = 4 * live + 1024;
        while let Some(&(slot, generation)) = self.ages.front() {
            if self.is_live(slot, generation) {
                break;
            }
            self.ages.pop_front();
        }
        if self.ages.len() > bound {
            let ages = std::mem::take(&mut self.ages);
            self.ages = ages
                .into_iter()
                .filter(|&(slot, generation)| self.is_live(slot, generation))
                .collect();
        }
        if self.timers.len() > bound {
            let timers = std::mem::take(&mut self.timers);
            self.timers = timers
                .into_iter()
                .filter(|Reverse((deadline, slot, generation))| {
                    self.slots
                        .get(*slot)
                        .and_then(Option::as_ref)
                        .is_some_and(|p| p.generation == *generation && p.deadline == *deadline)
                })
                .collect();
        }
    }

    pub(super) fn insert(&mut self, mut pending: Pending) -> usize {
        self.compact();
        pending.generation = self.next_generation;
        self.next_generation += 1;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.timers
            .push(Reverse((pending.deadline, slot, pending.generation)));
        if pending.handshaking {
            self.ages.push_back((slot, pending.generation));
            self.handshaking += 1;
        }
        self.slots[slot] = Some(pending);
        slot
    }

    pub(super) fn remove(&mut self, slot: usize) -> Option<Pending> {
        let pending = self.slots.get_mut(slot)?.take()?;
        if pending.handshaking {
            self.handshaking -= 1;
        }
        self.free.push(slot);
        Some(pending)
    }

    /// The handshake has ended (answered, refused or handed over): it no longer counts as pending.
    pub(super) fn done_handshaking(&mut self, slot: usize) {
        if let Some(p) = self.slots.get_mut(slot).and_then(Option::as_mut) {
            if std::mem::take(&mut p.handshaking) {
                self.handshaking -= 1;
            }
        }
    }

    /// Sets a new deadline for `slot`.
    pub(super) fn reschedule(&mut self, slot: usize, deadline: Instant) {
        if let Some(p) = self.slots.get_mut(slot).and_then(Option::as_mut) {
            p.deadline = deadline;
            self.timers.push(Reverse((deadline, slot, p.generation)));
        }
    }

    /// The slot of the handshake that has waited longest.
    pub(super) fn oldest_handshake(&mut self) -> Option<usize> {
        while let Some(&(slot, generation)) = self.ages.front() {
            self.ages.pop_front();
            if let Some(p) = self.slots.get(slot).and_then(Option::as_ref) {
                if p.generation == generation && p.handshaking {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// The slots whose deadline has passed at `now`, at most `at_most` of them (the earliest first).
    pub(super) fn expired(&mut self, now: Instant, at_most: usize) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(&Reverse((deadline, slot, generation))) = self.timers.peek() {
            if due.len() >= at_most {
                break;
            }
            if deadline > now {
                break;
            }
            self.timers.pop();
            if let Some(p) = self.slots.get(slot).and_then(Option::as_ref) {
                if p.generation == generation && p.deadline <= now {
                    due.push(slot);
                }
            }
        }
        due
    }

    /// Time until the earliest deadline.
    pub(super) fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.timers
            .peek()
            .map(|Reverse((deadline, _, _))| deadline.saturating_duration_since(now))
    }

    /// Closes every entry with a reset (the server is shutting down: no response is owed to a pending
    /// handshake, and a reset frees the socket at once, where a FIN would leave the kernel work to do
    /// while the shutdown writes its close frames).
    pub(super) fn reset_all(&mut self) {
        for p in self.slots.iter().flatten() {
            let _ = p.socket.set_linger(Some(Duration::ZERO));
        }
        self.clear();
    }

    /// Removes (and so closes) every entry.
    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.timers.clear();
        self.ages.clear();
        self.handshaking = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(socket: Socket, handshaking: bool, deadline: Instant) -> Pending {
        Pending {
            socket,
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            phase: Phase::Draining,
            deadline,
            generation: 0,
            handshaking,
            _ip: None,
        }
    }

    fn socket() -> Socket {
        Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket")
    }

    #[test]
    fn the_oldest_live_handshake_is_the_one_evicted_and_deadlines_come_in_order() {
        let mut t = Table::new();
        let now = Instant::now();
        let a = t.insert(pending(socket(), true, now + Duration::from_secs(3)));
        let b = t.insert(pending(socket(), true, now + Duration::from_secs(1)));
        let answered = t.insert(pending(socket(), false, now + Duration::from_secs(2)));
        assert_eq!(t.handshaking, 2);
        // The oldest handshake is `a`; once it is gone, `b`; an answered entry never counts.
        assert_eq!(t.oldest_handshake(), Some(a));
        t.remove(a);
        assert_eq!(t.handshaking, 1);
        // A slot reused by a newer entry is not mistaken for the old one.
        let c = t.insert(pending(socket(), true, now + Duration::from_secs(5)));
        assert_eq!(c, a);
        assert_eq!(t.oldest_handshake(), Some(b));
        assert_eq!(t.expired(now + Duration::from_millis(1500), 8), vec![b]);
        assert_eq!(
            t.expired(now + Duration::from_millis(2500), 8),
            vec![answered]
        );
        // `a`'s old deadline (3 s) belongs to a generation that is gone.
        assert!(t.expired(now + Duration::from_millis(4000), 8).is_empty());
        assert_eq!(t.expired(now + Duration::from_secs(6), 8), vec![c]);
    }

    #[test]
    fn the_queues_stay_bounded_however_many_handshakes_come_and_go() {
        let mut t = Table::new();
        let far = Instant::now() + Duration::from_secs(3600);
        // One long-lived handshake in front, then many that come and go behind it.
        let _stuck = t.insert(pending(socket(), true, far));
        for _ in 0..3_000 {
            let slot = t.insert(pending(socket(), true, far));
            t.remove(slot);
        }
        assert!(t.ages.len() <= 4 * 2 + 1024 + 1, "{}", t.ages.len());
        assert!(t.timers.len() <= 4 * 2 + 1024 + 1, "{}", t.timers.len());
    }
}
