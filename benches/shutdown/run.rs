//! One run: start a server, open the clients, warm the busy ones up, send SIGTERM, and watch every
//! connection end.
//!
//! Clients behave like browsers: they answer the server's close frame with their own, wait for the
//! server to close the TCP connection, then close their socket at once.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};

use crate::servers::Running;
use crate::support::{client, frames, opts, rng::Rng};
use crate::{Counts, RunResult, Server, Variant, BUSY_MAX, EXIT_TIMEOUT, IN_FLIGHT, MESSAGE, WHO};

/// Threads that watch the connections (each an epoll loop over its share).
const WATCHERS: usize = 2;
/// How long the busy clients have to see their first echo.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Traffic before the signal, once every busy client has had an echo.
const WARMUP: Duration = Duration::from_millis(100);
/// Watchers give up this long after the signal.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);
const GOING_AWAY: u16 = 1001;

pub fn run_once(server: &Server, variant: Variant, n: usize) -> Result<RunResult, String> {
    let mut running = Running::start(server, n)?;
    let streams = client::open_many(running.process.addr(), n)?;

    let busy = match variant {
        Variant::Idle => 0,
        Variant::Busy => n.min(BUSY_MAX),
    };
    let shared = Arc::new(WatchShared {
        signal_at: OnceLock::new(),
        warmed: AtomicUsize::new(0),
        echoes_before: AtomicUsize::new(0),
    });
    let mut groups: Vec<Vec<Client>> = (0..WATCHERS).map(|_| Vec::new()).collect();
    for (i, (stream, leftover)) in streams.into_iter().enumerate() {
        groups[i % WATCHERS].push(Client::new(stream, leftover, i < busy)?);
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let watchers: Vec<_> = groups
        .into_iter()
        .map(|clients| {
            let shared = Arc::clone(&shared);
            let ready_tx = ready_tx.clone();
            thread::spawn(move || watch(clients, &shared, ready_tx))
        })
        .collect();
    drop(ready_tx);
    for _ in 0..WATCHERS {
        let started = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "a watcher thread did not start".to_string())
            .and_then(|r| r);
        if let Err(e) = started {
            // Bound the other watchers; killing the server (on drop) ends their connections.
            let _ = shared.signal_at.set(Instant::now());
            return Err(e);
        }
    }
    if busy > 0 {
        let until = Instant::now() + WARMUP_TIMEOUT;
        while shared.warmed.load(Ordering::SeqCst) < busy && Instant::now() < until {
            thread::sleep(Duration::from_millis(1));
        }
        let warmed = shared.warmed.load(Ordering::SeqCst);
        if warmed < busy {
            eprintln!(
                "{WHO}: warning: only {warmed} of {busy} busy clients had an echo after {WARMUP_TIMEOUT:?}"
            );
        }
        thread::sleep(WARMUP);
    }

    // For profiling the shutdown alone: a pause announced on stderr, in which to start a profiler.
    if let Some(ms) = opts::var("HYDROGEN_BENCH_PAUSE_MS").and_then(|v| v.parse::<u64>().ok()) {
        eprintln!("{WHO}: SIGTERM in {ms} ms");
        thread::sleep(Duration::from_millis(ms));
    }
    // The server's CPU time so far, to tell what the shutdown itself costs it.
    let cpu_before = running.process.cpu_now();
    // The signal.
    let signal_at = Instant::now();
    let _ = shared.signal_at.set(signal_at);
    running
        .process
        .signal(libc::SIGTERM)
        .map_err(|e| format!("SIGTERM: {e}"))?;

    let (exit_at, killed, status) = match running.process.wait_exit(EXIT_TIMEOUT) {
        Some((at, status)) => (at, false, status),
        None => {
            let at = running.process.kill().unwrap_or_else(Instant::now);
            (at, true, None)
        }
    };

    let mut counts = Counts::default();
    let mut last_end = Some(Duration::ZERO);
    let mut early = 0;
    let mut other_codes = Vec::new();
    for w in watchers {
        let clients = w
            .join()
            .map_err(|_| "a watcher thread panicked".to_string())?;
        for c in &clients {
            match c.end {
                Some((at, outcome)) => {
                    if at < signal_at {
                        early += 1;
                        counts.error += 1;
                        continue;
                    }
                    last_end = last_end.map(|d| d.max(at - signal_at));
                    match outcome {
                        Outcome::Close(GOING_AWAY) => counts.going_away += 1,
                        Outcome::Close(code) => {
                            counts.other_code += 1;
                            if other_codes.len() < 8 {
                                other_codes.push(code);
                            }
                        }
                        Outcome::Eof => counts.eof += 1,
                        Outcome::Reset => counts.reset += 1,
                        Outcome::Error => counts.error += 1,
                    }
                }
                None => {
                    counts.none += 1;
                    last_end = None;
                }
            }
        }
        // The client sockets close here, at the end of the point.
    }
    let (report, report_at) = running.report().unzip();
    // From the report line (the sequence was over) to the process reaped: the process's own exit.
    let after_report = report_at.map(|at| exit_at.saturating_duration_since(at));
    let cpu = match (cpu_before, running.process.cpu_total()) {
        (Some(before), Some(total)) => Some(total.saturating_sub(before)),
        _ => None,
    };
    Ok(RunResult {
        cpu,
        after_report,
        exit: exit_at.saturating_duration_since(signal_at),
        killed,
        status,
        last_end,
        counts,
        echoes: shared.echoes_before.load(Ordering::SeqCst) as u64,
        early,
        other_codes,
        report,
    })
}

/// Opens `n` WebSocket connections from a few threads; every one has its 101.
/// An upgraded client connection and the bytes that came in behind the 101.

// ---------------------------------------------------------------------------------------------------
// Watching the connections

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Close(u16),
    Eof,
    Reset,
    Error,
}

struct WatchShared {
    /// Set just before SIGTERM; watchers stop WATCH_TIMEOUT after it.
    signal_at: OnceLock<Instant>,
    /// Busy clients that have had their first echo.
    warmed: AtomicUsize,
    /// Echoes read before the signal.
    echoes_before: AtomicUsize,
}

struct Client {
    /// Closed (dropped) as soon as the connection has ended, as a real client does.
    stream: Option<TcpStream>,
    input: Vec<u8>,
    /// Frames to write; the first may be partly written already (`written` bytes of it).
    output: VecDeque<Vec<u8>>,
    written: usize,
    /// On the watcher's list of clients with output to retry.
    retry: bool,
    busy: bool,
    echoes: u64,
    masks: Rng,
    /// A close frame was read (the outcome is final; we keep reading to the EOF).
    closed: bool,
    /// When and how the connection ended, from the client's view.
    end: Option<(Instant, Outcome)>,
    /// Reading is over (EOF or error after the outcome).
    done: bool,
}

impl Client {
    fn new(stream: TcpStream, leftover: Vec<u8>, busy: bool) -> Result<Client, String> {
        stream
            .set_nonblocking(true)
            .map_err(|e| format!("set_nonblocking: {e}"))?;
        let seed = stream.as_raw_fd() as u64;
        Ok(Client {
            stream: Some(stream),
            input: leftover,
            output: VecDeque::new(),
            written: 0,
            retry: false,
            busy,
            echoes: 0,
            masks: Rng::new(seed.wrapping_mul(0x9e37_79b9)),
            closed: false,
            end: None,
            done: false,
        })
    }

    fn queue_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let frame = encode_masked_frame(true, opcode, self.masks.mask(), payload);
        self.output.push_back(frame);
    }

    /// Writes what it can of the pending output; errors are left for the read side to report.
    fn flush(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        while let Some(frame) = self.output.front() {
            match stream.write(&frame[self.written..]) {
                Ok(0) => break,
                Ok(k) => {
                    self.written += k;
                    if self.written == frame.len() {
                        self.output.pop_front();
                        self.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.output.clear();
                    self.written = 0;
                    break;
                }
            }
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.end.is_none() {
            self.end = Some((Instant::now(), outcome));
        }
        self.done = true;
    }

    /// Reads everything available; handles the frames; returns whether the connection is over.
    fn on_readable(&mut self, shared: &WatchShared) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return true;
            };
            match stream.read(&mut chunk) {
                Ok(0) => {
                    // The server's FIN often rides with its close frame: answer the close first, as a
                    // browser does (its side of the connection is still open for writing).
                    self.flush();
                    self.finish(Outcome::Eof);
                    return true;
                }
                Ok(k) => {
                    self.input.extend_from_slice(&chunk[..k]);
                    self.handle_frames(shared);
                    if self.done {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.finish(Outcome::Reset);
                    return true;
                }
                Err(_) => {
                    self.finish(Outcome::Error);
                    return true;
                }
            }
        }
        self.flush();
        false
    }

    fn handle_frames(&mut self, shared: &WatchShared) {
        let mut pos = 0;
        loop {
            let frame = match frames::server_frame(&mut self.input[pos..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    // Not a frame a server may send: the outcome is an error, whatever follows.
                    self.finish(Outcome::Error);
                    return;
                }
            };
            let payload = pos + frame.payload.start..pos + frame.payload.end;
            match frame.opcode {
                OpCode::Continuation | OpCode::Text | OpCode::Binary
                    if !self.closed && self.busy =>
                {
                    self.echoes += 1;
                    if self.echoes == 1 {
                        shared.warmed.fetch_add(1, Ordering::Relaxed);
                    }
                    if shared.signal_at.get().is_none() {
                        shared.echoes_before.fetch_add(1, Ordering::Relaxed);
                    }
                    // Keep IN_FLIGHT messages outstanding.
                    self.queue_frame(OpCode::Text, MESSAGE);
                }
                OpCode::Close if !self.closed => {
                    let body = &self.input[payload];
                    let code = frames::close_code(body);
                    self.closed = true;
                    self.end = Some((Instant::now(), Outcome::Close(code)));
                    // Answer the close as a client should, echoing the code, and send nothing more.
                    let reply = if body.len() >= 2 { code } else { 1000 }.to_be_bytes();
                    // Keep only a frame already partly written (it must be finished first).
                    self.output.truncate(usize::from(self.written > 0));
                    self.queue_frame(OpCode::Close, &reply);
                }
                OpCode::Ping if !self.closed => {
                    let body = self.input[payload].to_vec();
                    self.queue_frame(OpCode::Pong, &body);
                }
                _ => {}
            }
            pos += frame.len;
        }
        self.input.drain(..pos);
    }
}

/// One watcher thread: epoll over its clients until each has ended or the watch timeout passes.
fn watch(
    mut clients: Vec<Client>,
    shared: &WatchShared,
    ready: mpsc::Sender<Result<(), String>>,
) -> Vec<Client> {
    // SAFETY: epoll_create1 takes no pointers.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        let _ = ready.send(Err(format!(
            "epoll_create1: {}",
            io::Error::last_os_error()
        )));
        return clients;
    }
    let mut open = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` is a valid epoll_event and the fd is open for the life of `c`.
        let fd = c.stream.as_ref().map_or(-1, |s| s.as_raw_fd());
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            let _ = ready.send(Err(format!("epoll_ctl: {}", io::Error::last_os_error())));
            // SAFETY: closing the epoll fd we created.
            unsafe { libc::close(epfd) };
            return clients;
        }
        open += 1;
        if c.busy {
            for _ in 0..IN_FLIGHT {
                c.queue_frame(OpCode::Text, MESSAGE);
            }
            c.flush();
        }
        // Bytes that came in with the 101.
        if !c.input.is_empty() {
            c.handle_frames(shared);
        }
    }
    let _ = ready.send(Ok(()));

    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut pending: Vec<usize> = Vec::new();
    while open > 0 {
        if let Some(&at) = shared.signal_at.get() {
            if at.elapsed() > WATCH_TIMEOUT {
                break;
            }
        }
        // SAFETY: `events` has room for `events.len()` entries.
        let k = unsafe {
            libc::epoll_wait(
                epfd,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                if pending.is_empty() { 20 } else { 1 },
            )
        };
        if k < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for ev in &events[..k as usize] {
            let i = ev.u64 as usize;
            let c = &mut clients[i];
            if c.done {
                continue;
            }
            if c.on_readable(shared) {
                open -= 1;
                // The connection is over: close the socket now, as a real client would (its FIN
                // acknowledges the server's at once). Closing also removes it from the epoll set.
                c.stream = None;
            } else if !c.output.is_empty() && !c.retry {
                c.retry = true;
                pending.push(i);
            }
        }
        // Output that did not fit in the send buffer: retry it.
        pending.retain(|&i| {
            let c = &mut clients[i];
            if !c.done {
                c.flush();
            }
            c.retry = !c.done && !c.output.is_empty();
            c.retry
        });
    }
    // SAFETY: closing the epoll fd we created.
    unsafe { libc::close(epfd) };
    clients
}
