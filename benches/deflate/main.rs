//! permessage-deflate benchmark: what compression costs the server and saves on the wire, and what
//! it costs an idle connection.
//!
//! `cargo bench --bench deflate` builds `hydrogen-ws` (release), starts it in echo mode, and:
//!
//! - **CPU and wire**: for JSON-like messages of 1 KiB and 16 KiB, `HYDROGEN_BENCH_CONNS` (4)
//!   connections each keep one message in flight for `HYDROGEN_BENCH_SECS` (2) seconds, once with
//!   connections that offer permessage-deflate (both directions compressed) and once with connections
//!   that do not (the server as with `--deflate off`), in turn, `HYDROGEN_BENCH_RUNS` (3) times,
//!   mirrored (off, on, on, off, ...). Reported: the median over runs of the server's CPU time per
//!   echoed message (utime + stime from `/proc/PID/stat` over the window, divided by the echoes), and
//!   the bytes each echo took on the wire from the server (header and payload) against the message.
//!   Each message differs from the last (a counter and a timestamp in it), as live status would.
//! - **Memory**: RSS per idle connection (each opened, one 1 KiB JSON echo, then idle 1 s) at
//!   `HYDROGEN_BENCH_RSS_CONNS` (1000) connections, on a fresh server each: without deflate, with
//!   deflate (the default: no context takeover), and with `--deflate-context-takeover on`.
//!
//! The client compresses and inflates on the protocol crate's client role ([`PerMessageDeflate`] on
//! a client [`Session`]). `HYDROGEN_BENCH_SERVER_BIN` skips the build and uses that binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::deflate::{DeflateParams, PerMessageDeflate, CLIENT_OFFER};
use hydrogen_ws_protocol::{apply_mask, Event, OpCode, Role, Session, SessionConfig};

#[path = "../support/mod.rs"]
mod support;

use support::server::ServerProcess;
use support::{client, opts, proc, stats};

const WHO: &str = "deflate bench";

/// One client connection: its socket and the session that frames (and compresses) for it.
struct Conn {
    stream: TcpStream,
    session: Session,
    buf: Vec<u8>,
    filled: usize,
    scratch: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr, deflate: bool) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        let extra = if deflate {
            format!("Sec-WebSocket-Extensions: {CLIENT_OFFER}\r\n")
        } else {
            String::new()
        };
        let ((stream, leftover), head) = client::upgrade_with(stream, addr, &extra)?;
        let agreed = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| DeflateParams::parse_response(v.trim()))
        });
        let config = SessionConfig {
            role: Role::Client,
            max_frame_size: 1 << 24,
            max_message_size: 1 << 24,
        };
        let session = match agreed {
            Some(Ok(params)) => Session::with_extension(
                config,
                Box::new(PerMessageDeflate::new(Role::Client, params, 6, 0)),
            ),
            Some(Err(e)) => return Err(format!("bad extension response: {e}")),
            None if deflate => return Err("the server declined permessage-deflate".into()),
            None => Session::new(config),
        };
        let mut buf = leftover;
        let filled = buf.len();
        buf.resize(filled.max(1 << 18), 0);
        Ok(Conn {
            stream,
            session,
            buf,
            filled,
            scratch: Vec::new(),
        })
    }

    fn send(&mut self, text: &str) -> Result<(), String> {
        let mask = [0x5a, 0x17, 0xc3, 0x9e];
        let (mut header, payload) = self
            .session
            .encode_message(OpCode::Text, text.as_bytes(), &mut self.scratch)
            .map_err(|e| e.to_string())?;
        header.mask = Some(mask);
        let mut frame = header.encode().as_bytes().to_vec();
        let start = frame.len();
        frame.extend_from_slice(payload);
        apply_mask(&mut frame[start..], mask, 0);
        self.stream.write_all(&frame).map_err(|e| e.to_string())
    }

    /// Reads until one message is complete; returns its length and the bytes read for it.
    fn receive(&mut self) -> Result<(usize, usize), String> {
        let mut wire = 0;
        loop {
            let (used, len) = match self.session.read(&mut self.buf[..self.filled]) {
                Ok((used, Event::Message(m))) => (used, Some(m.as_bytes().len())),
                Ok((used, _)) => (used, None),
                Err(e) => return Err(format!("protocol error: {e}")),
            };
            self.buf.copy_within(used..self.filled, 0);
            self.filled -= used;
            wire += used;
            if let Some(len) = len {
                return Ok((len, wire));
            }
            if used > 0 {
                continue;
            }
            if self.filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.filled += n,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// A JSON-like status message of about `size` bytes; `seq` makes each one different.
fn json(size: usize, seq: u64) -> String {
    let mut s = format!("{{\"type\":\"status\",\"seq\":{seq},\"printers\":[");
    let mut i = 0u64;
    while s.len() + 120 < size {
        let x = seq.wrapping_mul(2654435761).wrapping_add(i * 7919);
        s.push_str(&format!(
            "{{\"id\":{i},\"state\":\"{}\",\"progress\":{},\"nozzle\":{}.{},\"bed\":{}.{}}},",
            ["printing", "idle", "paused", "heating"][(x % 4) as usize],
            x % 101,
            180 + x % 60,
            x % 10,
            55 + x % 10,
            (x / 10) % 10
        ));
        i += 1;
    }
    s.push_str("{}]}");
    while s.len() < size {
        s.insert(s.len() - 2, ' ');
    }
    s
}

struct Point {
    cpu_us: f64,
    wire_per_msg: f64,
    msgs: u64,
}

/// `conns` connections, one message in flight each, for `secs`; the server's CPU per echo.
fn run_point(
    server: &ServerProcess,
    deflate: bool,
    size: usize,
    conns: usize,
    secs: f64,
) -> Result<Point, String> {
    let addr = server.addr();
    let clients: Vec<Conn> = (0..conns)
        .map(|_| Conn::open(addr, deflate))
        .collect::<Result<_, _>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let msgs = Arc::new(AtomicU64::new(0));
    let wire = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            let (stop, counting, msgs, wire) = (
                Arc::clone(&stop),
                Arc::clone(&counting),
                Arc::clone(&msgs),
                Arc::clone(&wire),
            );
            thread::spawn(move || -> Result<(), String> {
                let mut seq = k as u64 * 1_000_000;
                // Messages are made ahead, so the client's own formatting stays out of the loop.
                let texts: Vec<String> = (0..64).map(|i| json(size, seq + i)).collect();
                while !stop.load(Ordering::Relaxed) {
                    let text = &texts[(seq % 64) as usize];
                    c.send(text)?;
                    let (len, bytes) = c.receive()?;
                    if len != text.len() {
                        return Err(format!("echo of {} bytes for {}", len, text.len()));
                    }
                    if counting.load(Ordering::Relaxed) {
                        msgs.fetch_add(1, Ordering::Relaxed);
                        wire.fetch_add(bytes as u64, Ordering::Relaxed);
                    }
                    seq += 1;
                }
                Ok(())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let cpu0 = proc::cpu_seconds(server.pid());
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    counting.store(false, Ordering::Relaxed);
    let cpu1 = proc::cpu_seconds(server.pid());
    let _elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "client thread panicked")??;
    }
    let n = msgs.load(Ordering::Relaxed).max(1);
    Ok(Point {
        cpu_us: (cpu1 - cpu0) * 1e6 / n as f64,
        wire_per_msg: wire.load(Ordering::Relaxed) as f64 / n as f64,
        msgs: n,
    })
}

fn start(bin: &std::path::Path, extra: &[&str]) -> Result<ServerProcess, String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--mode",
        "echo",
        "--log-level",
        "warn",
        "--threads",
        "2048",
        "--max-connections-per-ip",
        "0",
    ])
    .args(extra);
    ServerProcess::start(&mut cmd, Duration::from_secs(10), |_, _| {})
}

/// RSS per idle connection: `n` connections, one 1 KiB JSON echo each, then idle.
fn rss_point(server: &ServerProcess, n: usize, deflate: bool) -> Result<(f64, f64, f64), String> {
    let pid = server.pid();
    thread::sleep(Duration::from_millis(300));
    let before = proc::status_field(pid, "VmRSS:");
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = Conn::open(server.addr(), deflate)?;
        c.send(&json(1024, i as u64))?;
        c.receive()?;
        c.buf = Vec::new();
        conns.push(c);
    }
    thread::sleep(Duration::from_secs(1));
    let after = proc::status_field(pid, "VmRSS:");
    drop(conns);
    Ok((
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / n as f64,
    ))
}

fn main() {
    support::limits::raise_nofile(WHO);
    let bin = match opts::path("HYDROGEN_BENCH_SERVER_BIN") {
        Some(bin) => bin,
        None => opts::or_exit(WHO, support::server::release_binary(WHO)),
    };
    let secs: f64 = opts::or_exit(WHO, opts::one("HYDROGEN_BENCH_SECS", 2.0));
    let runs: usize = opts::or_exit(WHO, opts::one("HYDROGEN_BENCH_RUNS", 3));
    let conns: usize = opts::or_exit(WHO, opts::one("HYDROGEN_BENCH_CONNS", 4));
    let sizes: Vec<usize> = opts::or_exit(WHO, opts::list("HYDROGEN_BENCH_SIZES", "1024,16384"));
    let rss_conns: Vec<usize> =
        opts::or_exit(WHO, opts::list_or_empty("HYDROGEN_BENCH_RSS_CONNS", "1000"));
    println!("load average: {}", proc::load_average());

    let mut server = opts::or_exit(WHO, start(&bin, &[]));
    println!(
        "\nServer CPU per echoed message and bytes on the wire per echo (server -> client), \
         {conns} connections, one message in flight each, {secs} s per point, median of {runs} runs"
    );
    println!(
        "| message | deflate | CPU per echo (range) | wire bytes per echo | saved | echoes/s |"
    );
    println!("|--:|---|--:|--:|--:|--:|");
    for &size in &sizes {
        let mut cpu = [Vec::new(), Vec::new()];
        let mut wire = [Vec::new(), Vec::new()];
        let mut rate = [Vec::new(), Vec::new()];
        for run in 0..runs {
            let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let p = opts::or_exit(WHO, run_point(&server, which == 1, size, conns, secs));
                eprintln!(
                    "{WHO}: run {run} size {size} deflate {}: {:.2} us/echo, {:.0} B/echo, {} echoes",
                    which == 1,
                    p.cpu_us,
                    p.wire_per_msg,
                    p.msgs
                );
                cpu[which].push(p.cpu_us);
                wire[which].push(p.wire_per_msg);
                rate[which].push(p.msgs as f64 / secs);
            }
        }
        for which in [0, 1] {
            let spread = stats::Spread::of(cpu[which].clone());
            let w = stats::median(wire[which].clone()).unwrap_or(0.0);
            let off = stats::median(wire[0].clone()).unwrap_or(1.0);
            println!(
                "| {size} B | {} | {} us | {w:.0} | {} | {:.0} |",
                if which == 1 { "on" } else { "off" },
                spread.map_or("-".into(), |s| s.text(2)),
                if which == 1 {
                    format!("{:.1} %", 100.0 * (1.0 - w / off))
                } else {
                    "-".into()
                },
                stats::median(rate[which].clone()).unwrap_or(0.0)
            );
        }
    }
    server.stop();

    if rss_conns.is_empty() {
        return;
    }
    println!("\nIdle connections: RSS of the server (VmRSS), each connection: one 1 KiB JSON echo, then idle 1 s");
    println!("| deflate | conns | RSS before | RSS after | RSS added per connection |");
    println!("|---|--:|--:|--:|--:|");
    for &n in &rss_conns {
        for (name, offer, extra) in [
            ("off (not offered)", false, &[][..]),
            ("on, no context takeover (default)", true, &[][..]),
            (
                "on, context takeover",
                true,
                &["--deflate-context-takeover", "on"][..],
            ),
        ] {
            let mut server = opts::or_exit(WHO, start(&bin, extra));
            let (before, after, per) = opts::or_exit(WHO, rss_point(&server, n, offer));
            println!("| {name} | {n} | {before:.1} MiB | {after:.1} MiB | {per:.1} KiB |");
            server.stop();
        }
    }
}
