//! The load tool's client threads: each an epoll loop over its share of the slots, well-behaved
//! clients and hostile ones, with timers. How each connection reacts to the server lives in
//! `client/events.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};
use socket2::{Domain, Socket, Type};

use crate::support::rng::Rng;
use crate::totals::Totals;
use crate::{ATTACK_TIMEOUT, CLOSE_TIMEOUT, MAX_CONNECTING};

mod events;

pub const RAMP: u8 = 0;
pub const RUN: u8 = 1;
pub const STOP: u8 = 2;

pub struct Ctx {
    pub addr: SocketAddr,
    /// The upgrade request of every connection.
    pub request: String,
    pub think_ms: u64,
    pub min_size: usize,
    pub max_size: usize,
    /// Send only the first message (at the largest size): the warm-up.
    pub warmup: bool,
    pub phase: AtomicU8,
    /// Well-behaved clients that have had their first echo.
    pub ready: AtomicUsize,
    /// Connections open now (well-behaved, hostile).
    pub good_open: AtomicUsize,
    pub hostile_open: AtomicUsize,
    /// Client threads still running.
    pub running: AtomicUsize,
    pub totals: Mutex<Totals>,
    pub sent_total: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Good,
    /// A hostile slot (its `attack` rotates through the kinds below).
    Hostile,
    Slowloris,
    NeverReads,
    Garbage,
    Oversize,
    ResetMidFrame,
    ResetMidHandshake,
}

const HOSTILE_KINDS: [Kind; 6] = [
    Kind::Slowloris,
    Kind::NeverReads,
    Kind::Garbage,
    Kind::Oversize,
    Kind::ResetMidFrame,
    Kind::ResetMidHandshake,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Good => "well-behaved",
            Kind::Hostile => "hostile",
            Kind::Slowloris => "slowloris handshake (expects 408)",
            Kind::NeverReads => "never reads (expects eviction)",
            Kind::Garbage => "garbage frames (expects 1002)",
            Kind::Oversize => "2^40 declared length (expects 1009)",
            Kind::ResetMidFrame => "reset mid-frame",
            Kind::ResetMidHandshake => "reset mid-handshake",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    /// Not connected (hostile: pausing between attacks; well-behaved: not started or finished).
    Idle,
    Connecting,
    Handshake,
    Open,
    Closing,
    Done,
}

struct Conn {
    kind: Kind,
    /// For hostile slots, the kind of the current attack.
    attack: Kind,
    attacks: u64,
    sock: Option<Socket>,
    gen: u32,
    st: St,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    events: u32,
    wake_at: Option<Instant>,
    started: Instant,
    /// Well-behaved: the message in flight (sent at, sequence number, length, opcode).
    in_flight: Option<(Instant, u64, usize, u8)>,
    seq: u64,
    first_echo: bool,
    /// Slowloris: request bytes sent so far.
    trickled: usize,
}

impl Conn {
    fn new(kind: Kind) -> Conn {
        Conn {
            kind,
            attack: kind,
            attacks: 0,
            sock: None,
            gen: 0,
            st: St::Idle,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            events: 0,
            wake_at: None,
            started: Instant::now(),
            in_flight: None,
            seq: 0,
            first_echo: false,
            trickled: 0,
        }
    }
}

/// xorshift64*: cheap randomness for sizes, masks and pauses.
/// Byte `i` of message `seq`: text messages are ASCII letters, binary ones any byte.
fn payload_byte(seq: u64, i: usize, opcode: u8) -> u8 {
    if opcode == 1 {
        b'a' + ((seq as usize + i) % 26) as u8
    } else {
        (seq as usize)
            .wrapping_mul(131)
            .wrapping_add(i.wrapping_mul(7)) as u8
    }
}

/// One server frame at the start of `buf`: (fin, opcode, payload range, total length).
pub struct Client<'a> {
    ctx: &'a Ctx,
    ep: RawFd,
    conns: Vec<Conn>,
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    rng: Rng,
    local: Totals,
    scratch: Vec<u8>,
    connecting: usize,
    to_start: VecDeque<usize>,
    hostile_started: bool,
    stop_started: bool,
}

enum Flow {
    Keep,
    /// End this connection: (reset instead of FIN).
    End(bool),
}

impl<'a> Client<'a> {
    pub fn new(ctx: &'a Ctx, kinds: Vec<Kind>, seed: u64) -> io::Result<Client<'a>> {
        // SAFETY: plain syscall; the descriptor is closed in Drop.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        let to_start = kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == Kind::Good)
            .map(|(i, _)| i)
            .collect();
        Ok(Client {
            ctx,
            ep,
            conns: kinds.into_iter().map(Conn::new).collect(),
            timers: BinaryHeap::new(),
            rng: Rng::new(seed),
            local: Totals::new(),
            scratch: vec![0; 64 * 1024],
            connecting: 0,
            to_start,
            hostile_started: false,
            stop_started: false,
        })
    }

    fn epoll(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; `fd` is open.
        unsafe {
            libc::epoll_ctl(self.ep, op, fd, &mut ev);
        }
    }

    fn key(&self, i: usize) -> u64 {
        (u64::from(self.conns[i].gen) << 32) | i as u64
    }

    fn set_wake(&mut self, i: usize, at: Instant) {
        self.conns[i].wake_at = Some(at);
        self.timers.push(Reverse((at, i, self.conns[i].gen)));
    }

    fn error(&mut self, kind: impl Into<String>) {
        *self.local.errors.entry(kind.into()).or_default() += 1;
    }

    fn hostile_outcome(&mut self, i: usize, expected: bool, what: &str) {
        let name = self.conns[i].attack.name();
        let t = self.local.hostile.entry(name).or_default();
        if expected {
            t.expected += 1;
        } else {
            *t.other.entry(what.to_string()).or_default() += 1;
        }
    }

    /// Opens a non-blocking connection for slot `i`.
    fn connect(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.gen = c.gen.wrapping_add(1);
        c.rbuf.clear();
        c.wbuf.clear();
        c.wpos = 0;
        c.in_flight = None;
        c.trickled = 0;
        c.started = Instant::now();
        if c.kind != Kind::Good {
            c.attack =
                HOSTILE_KINDS[((i as u64 + c.attacks) % HOSTILE_KINDS.len() as u64) as usize];
            c.attacks += 1;
            let name = c.attack.name();
            self.local.hostile.entry(name).or_default().attempts += 1;
        }
        let c = &mut self.conns[i];
        let sock = match Socket::new(Domain::IPV4, Type::STREAM, None) {
            Ok(s) => s,
            Err(e) => {
                let kind = c.kind;
                c.st = if kind == Kind::Good {
                    St::Done
                } else {
                    St::Idle
                };
                if kind == Kind::Good {
                    self.error(format!("socket: {e}"));
                } else {
                    self.hostile_outcome(i, false, "socket() failed");
                    let at = Instant::now() + Duration::from_secs(1);
                    self.set_wake(i, at);
                }
                return;
            }
        };
        let _ = sock.set_nonblocking(true);
        let _ = sock.set_nodelay(true);
        if c.attack == Kind::NeverReads {
            let _ = sock.set_recv_buffer_size(4096);
        }
        let _ = sock.connect(&self.ctx.addr.into());
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32;
        c.events = events;
        c.st = St::Connecting;
        let fd = sock.as_raw_fd();
        c.sock = Some(sock);
        self.connecting += 1;
        let key = self.key(i);
        self.epoll(libc::EPOLL_CTL_ADD, fd, events, key);
        let deadline = Instant::now() + ATTACK_TIMEOUT;
        self.set_wake(i, deadline);
    }

    /// Closes slot `i`'s socket (with a reset if asked) and decides what comes next.
    fn end(&mut self, i: usize, reset: bool) {
        let c = &mut self.conns[i];
        let was = c.st;
        if let Some(sock) = c.sock.take() {
            self.epoll(libc::EPOLL_CTL_DEL, sock.as_raw_fd(), 0, 0);
            if reset {
                let _ = sock.set_linger(Some(Duration::ZERO));
            }
            drop(sock);
        }
        let c = &mut self.conns[i];
        c.gen = c.gen.wrapping_add(1);
        c.wake_at = None;
        if was == St::Connecting || was == St::Handshake {
            self.connecting = self.connecting.saturating_sub(1);
        }
        let open = if c.kind == Kind::Good {
            &self.ctx.good_open
        } else {
            &self.ctx.hostile_open
        };
        if matches!(was, St::Open | St::Closing) {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        if c.kind == Kind::Good {
            c.st = St::Done;
        } else {
            c.st = St::Idle;
            if self.ctx.phase.load(Ordering::Relaxed) == RUN {
                let pause = Duration::from_millis(100 + self.rng.next() % 400);
                self.set_wake(i, Instant::now() + pause);
            }
        }
    }

    fn queue(&mut self, i: usize, opcode: OpCode, payload: &[u8]) {
        let mask = self.rng.mask();
        let frame = encode_masked_frame(true, opcode, mask, payload);
        let c = &mut self.conns[i];
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
        }
        c.wbuf.extend_from_slice(&frame);
    }

    /// Writes what is queued; keeps EPOLLOUT registered only while something is left.
    fn flush(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        let Some(sock) = c.sock.as_ref() else {
            return Ok(());
        };
        while c.wpos < c.wbuf.len() {
            match (&*sock).write(&c.wbuf[c.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let want_out =
            c.wpos < c.wbuf.len() || c.attack == Kind::NeverReads || c.st == St::Connecting;
        let mut events = c.events;
        if want_out {
            events |= libc::EPOLLOUT as u32;
        } else {
            events &= !(libc::EPOLLOUT as u32);
        }
        if c.attack == Kind::NeverReads && c.st == St::Open {
            events &= !(libc::EPOLLIN as u32);
        }
        if events != c.events {
            c.events = events;
            let fd = sock.as_raw_fd();
            let key = self.key(i);
            self.epoll(libc::EPOLL_CTL_MOD, fd, events, key);
        }
        Ok(())
    }

    /// A well-behaved client's next message.
    fn publish(&mut self) {
        let mut t = self.ctx.totals.lock().unwrap();
        t.merge(&self.local);
        self.local = Totals::new();
    }

    pub fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut last_publish = Instant::now();
        let mut stop_deadline = None;
        loop {
            let phase = self.ctx.phase.load(Ordering::Relaxed);
            while self.connecting < MAX_CONNECTING && phase != STOP {
                let Some(i) = self.to_start.pop_front() else {
                    break;
                };
                self.connect(i);
            }
            if phase == RUN && !self.hostile_started {
                self.hostile_started = true;
                let hostile: Vec<usize> = (0..self.conns.len())
                    .filter(|&i| self.conns[i].kind != Kind::Good)
                    .collect();
                for (n, i) in hostile.into_iter().enumerate() {
                    // Spread the first attacks over the first second.
                    let at = Instant::now() + Duration::from_millis((n as u64 * 7) % 1000);
                    self.set_wake(i, at);
                }
            }
            if phase == STOP && !self.stop_started {
                self.stop_started = true;
                stop_deadline = Some(Instant::now() + CLOSE_TIMEOUT + Duration::from_secs(5));
                self.to_start.clear();
                for i in 0..self.conns.len() {
                    let c = &self.conns[i];
                    match (c.kind, c.st) {
                        (Kind::Good, St::Open) if c.in_flight.is_none() => {
                            self.start_close(i);
                            if let Err(e) = self.flush(i) {
                                let _ = self.on_io_error(i, &e);
                                self.end(i, true);
                            }
                        }
                        (Kind::Good, _) => {}
                        (_, St::Idle | St::Done) => self.conns[i].wake_at = None,
                        _ => self.end(i, true),
                    }
                }
            }
            if self.stop_started {
                let busy = self
                    .conns
                    .iter()
                    .any(|c| !matches!(c.st, St::Idle | St::Done));
                if !busy {
                    break;
                }
                if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                    for i in 0..self.conns.len() {
                        if !matches!(self.conns[i].st, St::Idle | St::Done) {
                            self.error("still open at the end");
                            self.end(i, true);
                        }
                    }
                    break;
                }
            }
            let now = Instant::now();
            let timeout = self
                .timers
                .peek()
                .map_or(Duration::from_millis(50), |Reverse((t, _, _))| {
                    t.saturating_duration_since(now)
                })
                .min(Duration::from_millis(50));
            // SAFETY: `events` is a live buffer of `events.len()` epoll_event entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.ep,
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    timeout.as_millis() as libc::c_int,
                )
            };
            for ev in events.iter().take(n.max(0) as usize) {
                let (key, bits) = (ev.u64, ev.events);
                let (i, gen) = ((key & 0xffff_ffff) as usize, (key >> 32) as u32);
                if i < self.conns.len() && self.conns[i].gen == gen && self.conns[i].sock.is_some()
                {
                    self.on_event(i, bits);
                }
            }
            let now = Instant::now();
            while let Some(Reverse((t, i, gen))) = self.timers.peek().copied() {
                if t > now {
                    break;
                }
                self.timers.pop();
                if self.conns[i].gen == gen && self.conns[i].wake_at == Some(t) {
                    self.conns[i].wake_at = None;
                    self.on_timer(i);
                }
            }
            if last_publish.elapsed() >= Duration::from_millis(200) {
                self.publish();
                last_publish = Instant::now();
            }
        }
        self.publish();
    }
}

impl Drop for Client<'_> {
    fn drop(&mut self) {
        // SAFETY: `ep` is the epoll descriptor this client created and still owns.
        unsafe {
            libc::close(self.ep);
        }
    }
}
