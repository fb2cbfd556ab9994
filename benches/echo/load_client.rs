//! The echo bench's load client: client threads, each an edge-triggered epoll loop over its
//! connections, keeping one message (`lat`) or a window of them (`pipe`) in flight.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};

use crate::support::client;
use crate::support::frames::FrameCounter;
use crate::support::stats::Latencies;

const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x81];

/// Opens `n` upgraded connections (in parallel from a few threads), non-blocking, with TCP_NODELAY.
pub fn open_conns(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, String> {
    client::open_many(addr, n)?
        .into_iter()
        .map(|(stream, behind)| {
            // The echo server speaks only when spoken to.
            if !behind.is_empty() {
                return Err(format!("{} bytes behind the 101", behind.len()));
            }
            stream.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(stream)
        })
        .collect()
}

/// A masked binary client frame.
pub fn client_frame(size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| i as u8 & 0x3f).collect();
    encode_masked_frame(true, OpCode::Binary, MASK, &payload)
}

struct ClientConn {
    stream: TcpStream,
    rx: FrameCounter,
    /// Messages written or queued, not yet echoed back.
    inflight: usize,
    /// Bytes of queued messages not yet written, and the stream position within a frame.
    pending: usize,
    phase: usize,
    sent_at: Instant,
}

impl ClientConn {
    fn queue(&mut self, msgs: usize, frame_len: usize) {
        self.inflight += msgs;
        self.pending += msgs * frame_len;
    }

    /// Writes queued bytes until done or the socket is full. Err means the connection died.
    fn flush(&mut self, batch: &[u8], frame_len: usize) -> io::Result<()> {
        while self.pending > 0 {
            let n = self.pending.min(batch.len() - self.phase);
            match self.stream.write(&batch[self.phase..self.phase + n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    self.pending -= k;
                    self.phase = (self.phase + k) % frame_len;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Shared between the coordinator and the client threads of one point.
pub struct Control {
    pub stop: AtomicBool,
    pub measuring: AtomicBool,
    pub received: AtomicU64,
}

/// What a client thread hands back: its connections, the round trips it timed, and whether all
/// went well.
pub struct ThreadResult {
    pub conns: Vec<TcpStream>,
    pub rtts: Latencies,
    pub ok: bool,
}

/// Messages in flight per connection in the pipelined mode.
pub fn window(size: usize) -> usize {
    match size {
        0..=256 => 128,
        257..=4096 => 64,
        _ => 4,
    }
}

/// One client thread: an edge-triggered epoll loop over its connections.
pub fn client_thread(
    streams: Vec<TcpStream>,
    size: usize,
    pipelined: bool,
    ctl: Arc<Control>,
) -> ThreadResult {
    let frame = client_frame(size);
    let frame_len = frame.len();
    // Whole frames, at least 256 KiB (or two frames), so one write can carry many messages.
    let copies = (256 * 1024 / frame_len).max(2);
    let batch: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(copies * frame_len)
        .collect();
    let win = if pipelined { window(size) } else { 1 };

    // SAFETY: epoll_create1 has no preconditions; the fd is closed below.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    let mut conns: Vec<ClientConn> = streams
        .into_iter()
        .map(|stream| ClientConn {
            stream,
            rx: FrameCounter::new(OpCode::Binary),
            inflight: 0,
            pending: 0,
            phase: 0,
            sent_at: Instant::now(),
        })
        .collect();
    for (i, c) in conns.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
            u64: i as u64,
        };
        // SAFETY: valid epoll fd, valid socket fd and a valid event pointer.
        let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), &mut ev) };
        assert_eq!(rc, 0, "epoll_ctl");
    }
    let mut ok = true;
    let mut rtts = Latencies::new();
    for c in conns.iter_mut() {
        c.queue(win, frame_len);
        c.sent_at = Instant::now();
        if c.flush(&batch, frame_len).is_err() {
            ok = false;
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut stopping_since: Option<Instant> = None;
    let mut refill: Vec<usize> = Vec::with_capacity(conns.len());
    while ok {
        let stopping = ctl.stop.load(Ordering::Relaxed);
        if stopping {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if conns.iter().all(|c| c.inflight == 0) {
                break;
            }
            if since.elapsed() > Duration::from_secs(10) {
                ok = false;
                break;
            }
        }
        // SAFETY: `events` has room for events.len() entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 20) };
        if n < 0 {
            continue;
        }
        let measuring = ctl.measuring.load(Ordering::Relaxed);
        let mut got = 0u64;
        for ev in &events[..n as usize] {
            let c = &mut conns[ev.u64 as usize];
            if ev.events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            ok = false;
                            break;
                        }
                        Ok(k) => {
                            let done = c.rx.feed(&buf[..k]);
                            if done == 0 {
                                continue;
                            }
                            got += done as u64;
                            c.inflight = c.inflight.saturating_sub(done);
                            if !pipelined && measuring {
                                rtts.record(c.sent_at.elapsed());
                            }
                            if !stopping && c.inflight < win && pipelined {
                                // Pipelined: top the window up at once, so it never runs dry.
                                c.queue(win - c.inflight, frame_len);
                                if c.flush(&batch, frame_len).is_err() {
                                    ok = false;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                ok &= !c.rx.bad();
                // One in flight: its echo is in, the next message goes out after this round's reads
                // (an fd is listed once per epoll_wait, so once here).
                if !pipelined && !stopping && c.inflight < win {
                    refill.push(ev.u64 as usize);
                }
            }
            if ev.events & libc::EPOLLOUT as u32 != 0 && c.flush(&batch, frame_len).is_err() {
                ok = false;
            }
        }
        // One in flight: sends come after every ready reply has been read (and timed). A send on
        // loopback runs the server's receive path and wake-up in this thread, so sending between
        // reads would charge the next connection's round trip with this one's send.
        for i in refill.drain(..) {
            let c = &mut conns[i];
            c.queue(win - c.inflight, frame_len);
            c.sent_at = Instant::now();
            if c.flush(&batch, frame_len).is_err() {
                ok = false;
            }
        }
        if got > 0 {
            ctl.received.fetch_add(got, Ordering::Relaxed);
        }
    }
    // SAFETY: closing the epoll fd created above.
    unsafe { libc::close(ep) };
    ThreadResult {
        conns: conns.into_iter().map(|c| c.stream).collect(),
        rtts,
        ok,
    }
}
