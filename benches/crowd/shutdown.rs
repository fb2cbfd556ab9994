//! Shutdown with pending handshakes: open idle WebSocket connections, optionally pending handshakes
//! (a partial request head, held open), SIGTERM, and the time until the server process has exited.
//! Every open client answers the server's close frame and records its code.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};

use crate::probe;
use crate::support::{client, frames, server::ServerProcess};

/// A server that has not exited this long after the signal is killed (and the run reported).
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the watcher waits for every open client's end after the signal.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the pending handshakes have to show in `/metrics`.
const PENDING_TIMEOUT: Duration = Duration::from_secs(3);
/// Source addresses for each group (connections per address = n / this, under the 256 default).
const SPREAD: usize = 8;
/// Threads that open the WebSocket connections.
const OPENERS: usize = 4;
/// Lines of the server's stderr kept for the report.
const TAIL: usize = 8;
/// A partial upgrade request: the head never ends.
const PARTIAL: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Run {
    /// SIGTERM -> the process was reaped.
    pub exit: Duration,
    pub killed: bool,
    /// Open clients that received a close frame with 1001.
    pub going_away: usize,
    /// Open clients, and how the others ended: (outcome, count).
    pub open: usize,
    pub others: Vec<(String, usize)>,
    /// Pending handshakes in `/metrics` just before the signal.
    pub pending_seen: u64,
    /// The server's own shutdown report line.
    pub report: Option<String>,
    /// Its exit status (`None`: killed, or waiting failed).
    pub status: Option<ExitStatus>,
    /// The last lines of its stderr.
    pub tail: Vec<String>,
}

/// The source address `i` of group `group` (127.0.<group>.<1 + i % SPREAD>).
fn source(group: u8, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, group, 1 + (i % SPREAD) as u8))
}

pub fn run_once(bin: &Path, open: usize, pending: usize) -> Result<Run, String> {
    let report = Arc::new(Mutex::new(None::<String>));
    let report_w = Arc::clone(&report);
    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let tail_w = Arc::clone(&tail);
    let mut cmd = Command::new(bin);
    // Default flags but for the workers: one per open connection (plus a margin), as in the
    // shutdown bench; the default 256 would answer the rest 503.
    cmd.args(["--mode", "echo", "--listen", "127.0.0.1:0", "--threads"])
        .arg((open + 16).to_string());
    let mut server = ServerProcess::start(&mut cmd, Duration::from_secs(30), move |line, _| {
        if line.contains("shutdown: connections=") {
            if let Ok(mut r) = report_w.lock() {
                *r = Some(line.to_string());
            }
        }
        if let Ok(mut t) = tail_w.lock() {
            if t.len() == TAIL {
                t.pop_front();
            }
            t.push_back(line.to_string());
        }
    })?;
    let addr = server.addr();

    // The open connections, from 127.0.1.x.
    let opened: Vec<client::Opened> = thread::scope(|s| {
        let handles: Vec<_> = (0..OPENERS)
            .map(|t| {
                s.spawn(move || {
                    (t..open)
                        .step_by(OPENERS)
                        .map(|i| client::connect_from(addr, source(1, i)))
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(open);
        for h in handles {
            all.extend(h.join().map_err(|_| "an opener panicked".to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    let watcher = Watcher::start(opened)?;

    // The pending handshakes, from 127.0.2.x: a partial head each, then nothing.
    let mut held = Vec::with_capacity(pending);
    for i in 0..pending {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(&SocketAddr::new(source(2, i), 0).into())
            .map_err(|e| format!("bind: {e}"))?;
        socket
            .connect_timeout(&addr.into(), Duration::from_secs(5))
            .map_err(|e| format!("pending connection {i}: {e}"))?;
        let mut stream: TcpStream = socket.into();
        stream
            .write_all(PARTIAL)
            .map_err(|e| format!("pending connection {i}: {e}"))?;
        held.push(stream);
    }
    let mut pending_seen = 0;
    let until = Instant::now() + PENDING_TIMEOUT;
    loop {
        pending_seen = probe::admission(addr).map_or(pending_seen, |a| a.pending);
        if pending_seen >= pending as u64 || Instant::now() > until {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if pending_seen < pending as u64 {
        return Err(format!(
            "only {pending_seen} of {pending} pending handshakes in /metrics after {PENDING_TIMEOUT:?}"
        ));
    }

    let signal_at = Instant::now();
    server
        .signal(libc::SIGTERM)
        .map_err(|e| format!("SIGTERM: {e}"))?;
    let (exit_at, killed, status) = match server.wait_exit(EXIT_TIMEOUT) {
        Some((at, status)) => (at, false, status),
        None => (server.kill().unwrap_or_else(Instant::now), true, None),
    };
    let ends = watcher.finish(signal_at + WATCH_TIMEOUT)?;
    drop(held);
    server.drain_stderr();
    let mut going_away = 0;
    let mut others: Vec<(String, usize)> = Vec::new();
    for end in ends {
        if end == "1001" {
            going_away += 1;
        } else if let Some(o) = others.iter_mut().find(|(k, _)| *k == end) {
            o.1 += 1;
        } else {
            others.push((end, 1));
        }
    }
    let report = report.lock().ok().and_then(|r| r.clone());
    let tail = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    Ok(Run {
        status,
        tail,
        exit: exit_at.saturating_duration_since(signal_at),
        killed,
        going_away,
        open,
        others,
        pending_seen,
        report,
    })
}

/// One thread watching the open connections: it answers the close frame and records each end.
struct Watcher {
    handle: thread::JoinHandle<Result<Vec<String>, String>>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Watcher {
    fn start(opened: Vec<client::Opened>) -> Result<Watcher, String> {
        let deadline = Arc::new(Mutex::new(None));
        let d = Arc::clone(&deadline);
        for (s, _) in &opened {
            s.set_nonblocking(true)
                .map_err(|e| format!("set_nonblocking: {e}"))?;
        }
        let handle = thread::spawn(move || watch(opened, &d));
        Ok(Watcher { handle, deadline })
    }

    /// Waits (until `deadline` at most) for every connection's end: "1001", another code, "eof",
    /// "reset", "error" or "nothing".
    fn finish(self, deadline: Instant) -> Result<Vec<String>, String> {
        if let Ok(mut d) = self.deadline.lock() {
            *d = Some(deadline);
        }
        self.handle
            .join()
            .map_err(|_| "the watcher panicked".to_string())?
    }
}

fn watch(
    opened: Vec<client::Opened>,
    deadline: &Mutex<Option<Instant>>,
) -> Result<Vec<String>, String> {
    // SAFETY: epoll_create1 takes no pointers.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(format!("epoll_create1: {}", io::Error::last_os_error()));
    }
    let n = opened.len();
    let mut streams: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    let mut inputs: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut ends: Vec<Option<String>> = vec![None; n];
    let mut done = vec![false; n];
    for (i, (stream, leftover)) in opened.into_iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` is a valid epoll_event; the fd is open while the stream is held.
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut ev) };
        streams.push(Some(stream));
        inputs.push(leftover);
    }
    let mut open = n;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut chunk = [0u8; 4096];
    let mut masks = crate::support::rng::Rng::new(0x5eed);
    while open > 0 {
        if deadline
            .lock()
            .ok()
            .and_then(|d| *d)
            .is_some_and(|d| Instant::now() > d)
        {
            break;
        }
        // SAFETY: `events` has room for `events.len()` entries.
        let k =
            unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as libc::c_int, 20) };
        for ev in &events[..k.max(0) as usize] {
            let i = ev.u64 as usize;
            if done[i] {
                continue;
            }
            let Some(stream) = streams[i].as_mut() else {
                continue;
            };
            let over = loop {
                match stream.read(&mut chunk) {
                    Ok(0) => {
                        ends[i].get_or_insert_with(|| "eof".into());
                        break true;
                    }
                    Ok(k) => {
                        inputs[i].extend_from_slice(&chunk[..k]);
                        while let Ok(Some(f)) = frames::server_frame(&mut inputs[i]) {
                            if f.opcode == OpCode::Close && ends[i].is_none() {
                                let code = frames::close_code(&inputs[i][f.payload.clone()]);
                                ends[i] = Some(code.to_string());
                                let reply = encode_masked_frame(
                                    true,
                                    OpCode::Close,
                                    masks.mask(),
                                    &code.to_be_bytes(),
                                );
                                let _ = stream.write_all(&reply);
                            }
                            inputs[i].drain(..f.len);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        ends[i].get_or_insert_with(|| "reset".into());
                        break true;
                    }
                    Err(_) => {
                        ends[i].get_or_insert_with(|| "error".into());
                        break true;
                    }
                }
            };
            if over {
                done[i] = true;
                open -= 1;
                // Closed at once, as a browser does once the server has closed its side.
                streams[i] = None;
            }
        }
    }
    // SAFETY: closing the epoll fd we created.
    unsafe { libc::close(epfd) };
    Ok(ends
        .into_iter()
        .map(|e| e.unwrap_or_else(|| "nothing".into()))
        .collect())
}
