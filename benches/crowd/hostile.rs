//! The hostile crowd: connections that send nothing and connections that trickle one byte of a
//! request head per second, spread over many loopback source addresses, each reopened as soon as the
//! server closes it. A few threads, each an epoll loop over its share of the sockets.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// What a trickling connection sends, one byte a second (then `a` for ever).
const TRICKLE: &[u8] =
    b"GET /crowd HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Trickle: ";
/// Time between two bytes of a trickling connection.
const TRICKLE_EVERY: Duration = Duration::from_secs(1);
/// Connects in progress per thread at most (the ramp and every reopen wave go through it).
const MAX_CONNECTING: usize = 256;
/// A connect that failed is tried again after this.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// The longest epoll wait (the stop flag and the trickle timers are looked at between waits).
const TICK_MS: i32 = 10;
/// Bytes of a response kept to read its status line.
const KEEP: usize = 16;

/// The crowd's shape.
#[derive(Debug, Clone, Copy)]
pub struct Crowd {
    pub silent: usize,
    pub trickle: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1 + addrs).
    pub addrs: usize,
    pub threads: usize,
}

impl Crowd {
    pub fn total(&self) -> usize {
        self.silent + self.trickle
    }

    /// The source address of slot `i`.
    fn source(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % self.addrs) as u8))
    }
}

/// What the crowd threads and the main thread share.
#[derive(Default)]
pub struct Live {
    pub stop: AtomicBool,
    /// Slots that have been connected at least once (the ramp is over when all have).
    pub ever: AtomicUsize,
    /// Sockets connected now (from the client's side).
    pub held: AtomicUsize,
}

/// What the crowd saw, summed over its threads.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Connects that completed.
    pub connects: u64,
    /// Connects that failed, by error.
    pub connect_errors: BTreeMap<String, u64>,
    /// Connections the server ended with a response, by status.
    pub answered: BTreeMap<u16, u64>,
    /// Connections the server ended without a response (FIN).
    pub eof: u64,
    /// Connections reset (RST) or failed otherwise.
    pub reset: u64,
    /// Bytes the trickling connections sent.
    pub trickled: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.connects += o.connects;
        for (k, v) in &o.connect_errors {
            *self.connect_errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.answered {
            *self.answered.entry(*k).or_default() += v;
        }
        self.eof += o.eof;
        self.reset += o.reset;
        self.trickled += o.trickled;
    }

    /// Connections the server ended, however.
    pub fn ended(&self) -> u64 {
        self.answered.values().sum::<u64>() + self.eof + self.reset
    }
}

/// The running crowd.
pub struct Running {
    pub live: Arc<Live>,
    threads: Vec<thread::JoinHandle<Result<Totals, String>>>,
}

impl Running {
    /// Starts the crowd's threads against `server`.
    pub fn start(crowd: Crowd, server: SocketAddr) -> Result<Running, String> {
        let live = Arc::new(Live::default());
        let mut threads = Vec::new();
        for t in 0..crowd.threads {
            let slots: Vec<Slot> = (0..crowd.total())
                .filter(|i| i % crowd.threads == t)
                .map(|i| Slot::new(crowd.source(i), i >= crowd.silent))
                .collect();
            let live = Arc::clone(&live);
            let handle = thread::Builder::new()
                .name(format!("crowd-{t}"))
                .spawn(move || run(slots, server, &live))
                .map_err(|e| format!("spawn: {e}"))?;
            threads.push(handle);
        }
        Ok(Running { live, threads })
    }

    /// Stops the threads (every socket is closed) and sums what they saw.
    pub fn stop(self) -> Result<Totals, String> {
        self.live.stop.store(true, Ordering::SeqCst);
        let mut totals = Totals::default();
        for t in self.threads {
            let mine = t
                .join()
                .map_err(|_| "a crowd thread panicked".to_string())??;
            totals.add(&mine);
        }
        Ok(totals)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Waiting to be (re)opened.
    Closed,
    Connecting,
    Open,
}

struct Slot {
    source: IpAddr,
    trickle: bool,
    socket: Option<Socket>,
    /// Bumped at every (re)open: events and timers of an older socket are recognised and ignored.
    generation: u32,
    st: St,
    /// Bytes of the request sent (trickling connections).
    sent: usize,
    /// The first bytes of the server's response.
    response: Vec<u8>,
    ever: bool,
}

impl Slot {
    fn new(source: IpAddr, trickle: bool) -> Slot {
        Slot {
            source,
            trickle,
            socket: None,
            generation: 0,
            st: St::Closed,
            sent: 0,
            response: Vec::new(),
            ever: false,
        }
    }
}

fn token(slot: usize, generation: u32) -> u64 {
    ((slot as u64) << 32) | u64::from(generation)
}

/// One crowd thread: its own epoll set over its slots, until the stop flag.
fn run(mut slots: Vec<Slot>, server: SocketAddr, live: &Live) -> Result<Totals, String> {
    // SAFETY: epoll_create1 takes no pointers.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(format!("epoll_create1: {}", io::Error::last_os_error()));
    }
    let mut totals = Totals::default();
    let mut to_open: VecDeque<(Instant, usize)> =
        (0..slots.len()).map(|i| (Instant::now(), i)).collect();
    // Trickle timers, in time order (every one is pushed `TRICKLE_EVERY` after now).
    let mut timers: VecDeque<(Instant, usize, u32)> = VecDeque::new();
    let mut connecting = 0usize;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut chunk = [0u8; 4096];
    while !live.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // (Re)open what is due, a bounded number at a time.
        let mut retry = Vec::new();
        while connecting < MAX_CONNECTING {
            match to_open.front() {
                Some(&(at, i)) if at <= now => {
                    to_open.pop_front();
                    match open(epfd, &mut slots[i], i, server) {
                        Ok(()) => connecting += 1,
                        Err(e) => {
                            *totals.connect_errors.entry(e).or_default() += 1;
                            retry.push((now + RETRY_AFTER, i));
                        }
                    }
                }
                _ => break,
            }
        }
        to_open.extend(retry);

        // SAFETY: `events` has room for `events.len()` entries.
        let k = unsafe {
            libc::epoll_wait(
                epfd,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                TICK_MS,
            )
        };
        if k < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // SAFETY: closing the epoll fd we created.
            unsafe { libc::close(epfd) };
            return Err(format!("epoll_wait: {e}"));
        }
        let now = Instant::now();
        for ev in &events[..k as usize] {
            let (i, generation) = ((ev.u64 >> 32) as usize, ev.u64 as u32);
            let slot = &mut slots[i];
            if slot.generation != generation || slot.socket.is_none() {
                continue;
            }
            match slot.st {
                St::Connecting => {
                    connecting -= 1;
                    let failed = match slot.socket.as_ref().map(Socket::take_error) {
                        Some(Ok(None)) => None,
                        Some(Ok(Some(e))) | Some(Err(e)) => Some(e.to_string()),
                        None => Some("no socket".into()),
                    };
                    if let Some(e) = failed {
                        *totals.connect_errors.entry(e).or_default() += 1;
                        close(slot);
                        to_open.push_back((now + RETRY_AFTER, i));
                        continue;
                    }
                    totals.connects += 1;
                    slot.st = St::Open;
                    live.held.fetch_add(1, Ordering::Relaxed);
                    if !slot.ever {
                        slot.ever = true;
                        live.ever.fetch_add(1, Ordering::Relaxed);
                    }
                    let fd = slot.socket.as_ref().map_or(-1, |s| s.as_raw_fd());
                    let mut ev = libc::epoll_event {
                        events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                        u64: token(i, generation),
                    };
                    // SAFETY: `ev` is a valid epoll_event; the fd is open (owned by the slot).
                    unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, fd, &mut ev) };
                    if slot.trickle {
                        totals.trickled += send_byte(slot) as u64;
                        timers.push_back((now + TRICKLE_EVERY, i, generation));
                    }
                }
                St::Open => {
                    if let Some(end) = read_all(slot, &mut chunk) {
                        match end {
                            End::Answered(status) => {
                                *totals.answered.entry(status).or_default() += 1
                            }
                            End::Eof => totals.eof += 1,
                            End::Reset => totals.reset += 1,
                        }
                        live.held.fetch_sub(1, Ordering::Relaxed);
                        close(slot);
                        // Reopened as soon as the server has closed it.
                        to_open.push_back((now, i));
                    }
                }
                St::Closed => {}
            }
        }
        // Trickle: one more byte from every connection whose second is up.
        let now = Instant::now();
        while let Some(&(at, i, generation)) = timers.front() {
            if at > now {
                break;
            }
            timers.pop_front();
            let slot = &mut slots[i];
            if slot.generation == generation && slot.st == St::Open {
                totals.trickled += send_byte(slot) as u64;
                timers.push_back((now + TRICKLE_EVERY, i, generation));
            }
        }
    }
    for slot in &mut slots {
        close(slot);
    }
    // SAFETY: closing the epoll fd we created.
    unsafe { libc::close(epfd) };
    Ok(totals)
}

/// A non-blocking connect from the slot's source address, registered for its completion.
fn open(epfd: libc::c_int, slot: &mut Slot, i: usize, server: SocketAddr) -> Result<(), String> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None)
        .map_err(|e| format!("socket: {e}"))?;
    let one: libc::c_int = 1;
    // SAFETY: the fd is open; the value points at a live c_int and the length is its size. The
    // port is then chosen at connect time, per destination, not at bind time per source address.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    socket
        .bind(&SocketAddr::new(slot.source, 0).into())
        .map_err(|e| format!("bind: {e}"))?;
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(format!("connect: {e}")),
    }
    slot.generation = slot.generation.wrapping_add(1);
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLOUT | libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
        u64: token(i, slot.generation),
    };
    // SAFETY: `ev` is a valid epoll_event; the fd is open and stays so while registered.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut ev) } != 0 {
        return Err(format!("epoll_ctl: {}", io::Error::last_os_error()));
    }
    slot.socket = Some(socket);
    slot.st = St::Connecting;
    slot.sent = 0;
    slot.response.clear();
    Ok(())
}

/// Closing the socket also takes it out of the epoll set.
fn close(slot: &mut Slot) {
    slot.socket = None;
    slot.st = St::Closed;
}

/// Sends the next byte of the trickled request; 1 if it went out.
fn send_byte(slot: &mut Slot) -> usize {
    let byte = TRICKLE.get(slot.sent).copied().unwrap_or(b'a');
    let Some(socket) = slot.socket.as_ref() else {
        return 0;
    };
    match (&*socket).write(&[byte]) {
        Ok(1) => {
            slot.sent += 1;
            1
        }
        // A full send buffer or an error: the read side sees the end.
        _ => 0,
    }
}

enum End {
    Answered(u16),
    Eof,
    Reset,
}

/// Reads what is there; the end of the connection once it has come.
fn read_all(slot: &mut Slot, chunk: &mut [u8]) -> Option<End> {
    let socket = slot.socket.as_ref()?;
    loop {
        match (&*socket).read(chunk) {
            Ok(0) => {
                return Some(match status(&slot.response) {
                    Some(s) => End::Answered(s),
                    None => End::Eof,
                })
            }
            Ok(n) => {
                let keep = (KEEP - slot.response.len().min(KEEP)).min(n);
                slot.response.extend_from_slice(&chunk[..keep]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(_) => {
                return Some(match status(&slot.response) {
                    Some(s) => End::Answered(s),
                    None => End::Reset,
                })
            }
        }
    }
}

/// The status of an `HTTP/1.1 NNN` response start.
fn status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}
