//! Echo benchmark: our release binary in echo mode against a thread-per-connection tungstenite echo
//! server, in the same run, driven by a load client of our own.
//!
//! `cargo bench --bench echo` builds `hydrogen-ws` (release), starts it with `--mode echo`, starts
//! the tungstenite server as a child process (this binary re-executed with
//! `HYDROGEN_BENCH_ROLE=tungstenite-server`, so its CPU time is measured on its own), starts a
//! `floor` server the same way (the least work a thread-per-connection echo server can do: a bare
//! 101, then unmask and echo, validating nothing; it shows what this machine and this client allow
//! at all, so a target below it is a target no blocking server can meet here), and runs:
//!
//! - `lat`: one message in flight per connection; round-trip p50/p99 as the client sees it;
//! - `pipe`: many messages in flight per connection (see `window`);
//!
//! for 1, 10, 100 and 1,000 connections at 64 B, 1 KiB and 64 KiB. For every point it reports
//! messages per second and the **server's CPU time per echoed message** (utime + stime from
//! `/proc/PID/stat` over the measured window, divided by the messages echoed in it): on a small
//! machine the load client is the bottleneck, so messages per second alone cannot rank servers.
//! Each point gives every server the same time in two halves, in the order ours, tungstenite, floor,
//! floor, tungstenite, ours: a server that runs later in a row does measurably better here, and the
//! mirrored order cancels that out.
//!
//! Then RSS per idle connection at 1,000 and 10,000 connections for both servers.
//!
//! Environment (all optional):
//! - `HYDROGEN_BENCH_QUICK=1`: 0.5 s points, 1/10/100 connections, 64 B and 1 KiB, RSS at 1,000;
//! - `HYDROGEN_BENCH_SECS` (default 2), `HYDROGEN_BENCH_WARMUP_MS` (default 300);
//! - `HYDROGEN_BENCH_CONNS` (`1,10,100,1000`), `HYDROGEN_BENCH_SIZES` (`64,1024,65536`),
//!   `HYDROGEN_BENCH_MODES` (`lat,pipe`), `HYDROGEN_BENCH_SERVERS` (`ours,tungstenite,floor`);
//! - `HYDROGEN_BENCH_RSS_CONNS` (`1000,10000`; empty to skip), `HYDROGEN_BENCH_STACK_SIZE` (passed
//!   to our `--stack-size` in the RSS test);
//! - `HYDROGEN_BENCH_CLIENT_THREADS` (default 2), `HYDROGEN_BENCH_SERVER_BIN` (skip the build and
//!   use this binary), `HYDROGEN_BENCH_ONLY=ours:pipe:1:1024` with `HYDROGEN_BENCH_SECS=N` to hold
//!   one point for N seconds (for a profiler attached to the server; its PID is printed);
//! - `HYDROGEN_BENCH_RUNS=N` (default 1): measure every point N times, one whole pass after another,
//!   and print one table of medians and ranges over the runs instead of the single-run table: each
//!   server's cost relative to the floor's in the same run, and how many runs met the targets of
//!   issue 7 (this machine's timings move by 10-30 % between runs and hours, so one run ranks servers
//!   only loosely);
//! - `HYDROGEN_BENCH_BASELINE_BIN=path`: also run another build of hydrogen-ws, as server `base`, in
//!   the same rotation (an A/B of two builds; its rows appear in the table of runs).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod common;

const ROLE_ENV: &str = "HYDROGEN_BENCH_ROLE";
const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x81];
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("tungstenite-server") => return tungstenite_server(),
        Ok("floor-server") => return floor_server(),
        _ => {}
    }
    let plan = Plan::from_env();
    raise_nofile();
    let bin = server_binary();

    let max_conns = plan.conns.iter().copied().max().unwrap_or(1);
    let mut servers: Vec<Server> = Vec::new();
    for name in &plan.servers {
        servers.push(match name.as_str() {
            "ours" => Server::ours("ours", &bin, max_conns + 16, None),
            "base" => match &plan.baseline {
                Some(base) => Server::ours("base", base, max_conns + 16, None),
                None => panic!("server base needs HYDROGEN_BENCH_BASELINE_BIN"),
            },
            "tungstenite" => Server::peer("tungstenite", "tungstenite-server"),
            "floor" => Server::peer("floor", "floor-server"),
            other => panic!("unknown server {other}"),
        });
    }
    for s in &servers {
        eprintln!("{} server: pid {} on {}", s.name, s.pid(), s.addr);
    }

    let mut results: Vec<Point> = Vec::new();
    for run in 1..=plan.runs {
        if plan.runs > 1 {
            eprintln!("run {run} of {}", plan.runs);
        }
        measure(&plan, &servers, run, &mut results);
    }
    if plan.runs > 1 {
        print_runs(&results, &plan);
    } else {
        print_table(&results, &plan);
    }

    for s in servers {
        s.stop();
    }

    if !plan.rss_conns.is_empty() {
        println!();
        println!("Idle connections: RSS (VmRSS of the server process, from /proc/PID/status)");
        println!(
            "each connection: handshake + one 64 B echo, then idle 1 s; delta = (after - before) / N"
        );
        println!();
        println!(
            "| server      |  conns | before MiB | after MiB | KiB/conn (delta) | KiB/conn (total) | worker stacks: mappings, mean / max touched KiB |"
        );
        println!(
            "|-------------|-------:|-----------:|----------:|-----------------:|-----------------:|--------------------------------------------------|"
        );
        for &n in &plan.rss_conns {
            for name in &plan.servers {
                let stack = plan.stack_size;
                let server = match name.as_str() {
                    "ours" => Server::ours("ours", &bin, n + 16, stack),
                    "floor" | "base" => continue,
                    _ => Server::peer("tungstenite", "tungstenite-server"),
                };
                match rss_point(&server, n, stack) {
                    Ok(line) => println!("{line}"),
                    Err(e) => println!("| {:<11} | {n:>6} | failed: {e} |", server.name),
                }
                server.stop();
            }
        }
    }
}

/// One pass over every point of the plan, each server in turn; appends a row per server and point.
fn measure(plan: &Plan, servers: &[Server], run: usize, results: &mut Vec<Point>) {
    for &conns in &plan.conns {
        // One set of connections per server and connection count, reused across sizes and modes.
        let mut pools: Vec<Vec<TcpStream>> = servers
            .iter()
            .map(|s| open_conns(s.addr, conns).expect("open connections"))
            .collect();
        for &size in &plan.sizes {
            for mode in &plan.modes {
                // Each server gets two halves of the time, in the order A B C C B A: whichever runs
                // later in a row does measurably better on this machine (client threads and caches
                // settled), and the mirror order cancels that out.
                let n = servers.len();
                let order: Vec<usize> = (0..n).chain((0..n).rev()).collect();
                let slice = plan.secs * servers.len() as f64 / order.len() as f64;
                let mut samples: Vec<Vec<Sample>> = servers.iter().map(|_| Vec::new()).collect();
                for &i in &order {
                    let server = &servers[i];
                    if let Some(only) = &plan.only {
                        if only != &(server.name.to_string(), mode.clone(), conns, size) {
                            continue;
                        }
                    }
                    let conns_vec = std::mem::take(&mut pools[i]);
                    let (sample, back) = run_point(plan, server, conns_vec, mode, size, slice);
                    pools[i] = match back {
                        Some(back) => back,
                        None => open_conns(server.addr, conns).expect("reopen connections"),
                    };
                    samples[i].push(sample);
                }
                for (server, samples) in servers.iter().zip(samples) {
                    if samples.is_empty() {
                        continue;
                    }
                    let point = Point::merge(server.name, run, mode, conns, size, samples);
                    eprintln!("{}", point.line());
                    results.push(point);
                }
            }
        }
    }
}

/// What to run, from the environment.
struct Plan {
    secs: f64,
    warmup: Duration,
    conns: Vec<usize>,
    sizes: Vec<usize>,
    modes: Vec<String>,
    servers: Vec<String>,
    rss_conns: Vec<usize>,
    client_threads: usize,
    stack_size: Option<usize>,
    only: Option<(String, String, usize, usize)>,
    runs: usize,
    baseline: Option<String>,
}

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    let value = std::env::var(name).unwrap_or_else(|_| default.to_string());
    value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: bad item {s:?}"))
        })
        .collect()
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("HYDROGEN_BENCH_QUICK").is_ok_and(|v| v != "0");
        let (secs, conns, sizes, rss) = if quick {
            ("0.5", "1,10,100", "64,1024", "1000")
        } else {
            ("2", "1,10,100,1000", "64,1024,65536", "1000,10000")
        };
        let only = std::env::var("HYDROGEN_BENCH_ONLY").ok().map(|v| {
            let p: Vec<&str> = v.split(':').collect();
            assert_eq!(p.len(), 4, "HYDROGEN_BENCH_ONLY=server:mode:conns:size");
            (
                p[0].to_string(),
                p[1].to_string(),
                p[2].parse().expect("conns"),
                p[3].parse().expect("size"),
            )
        });
        let mut plan = Plan {
            secs: env_list::<f64>("HYDROGEN_BENCH_SECS", secs)[0],
            warmup: Duration::from_millis(env_list::<u64>("HYDROGEN_BENCH_WARMUP_MS", "300")[0]),
            conns: env_list("HYDROGEN_BENCH_CONNS", conns),
            sizes: env_list("HYDROGEN_BENCH_SIZES", sizes),
            modes: env_list("HYDROGEN_BENCH_MODES", "lat,pipe"),
            servers: env_list("HYDROGEN_BENCH_SERVERS", "ours,tungstenite,floor"),
            rss_conns: env_list("HYDROGEN_BENCH_RSS_CONNS", rss),
            client_threads: env_list("HYDROGEN_BENCH_CLIENT_THREADS", "2")[0],
            stack_size: std::env::var("HYDROGEN_BENCH_STACK_SIZE")
                .ok()
                .map(|v| v.parse().expect("HYDROGEN_BENCH_STACK_SIZE in bytes")),
            only,
            runs: env_list::<usize>("HYDROGEN_BENCH_RUNS", "1")[0].max(1),
            baseline: std::env::var("HYDROGEN_BENCH_BASELINE_BIN").ok(),
        };
        if plan.baseline.is_some() && !plan.servers.iter().any(|s| s == "base") {
            plan.servers.push("base".into());
        }
        if let Some((server, mode, conns, size)) = &plan.only {
            plan.servers = vec![server.clone()];
            plan.modes = vec![mode.clone()];
            plan.conns = vec![*conns];
            plan.sizes = vec![*size];
            plan.rss_conns.clear();
        }
        plan
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// A hydrogen-ws binary in echo mode (`name`: `ours`, or `base` for a baseline build).
    fn ours(name: &'static str, bin: &str, threads: usize, stack_size: Option<usize>) -> Server {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "echo",
            "--log-level",
            "warn",
            // No heartbeat: the peer sends no pings, and this load client counts every frame it
            // receives as an echo (a ping every 30 s landed in whichever point was running then).
            "--ping-interval",
            "0",
        ])
        .args(["--threads", &threads.to_string()]);
        if let Some(s) = stack_size {
            cmd.args(["--stack-size", &s.to_string()]);
        }
        Server::start(name, cmd)
    }

    /// A server built into this bench: the bench binary re-executed with `HYDROGEN_BENCH_ROLE=role`,
    /// so its CPU time is measured on its own.
    fn peer(name: &'static str, role: &str) -> Server {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE_ENV, role);
        Server::start(name, cmd)
    }

    /// Starts the server, waits for `listening on ws://ADDR` on stderr and keeps draining stderr
    /// (echoing its lines, which at log level warn are worth seeing).
    fn start(name: &'static str, mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} server: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let rx = common::watch_stderr(stderr, move |line, _| eprintln!("[{name} server] {line}"));
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{name} server did not report its address"));
        Server {
            name,
            child,
            addr: addr.parse().expect("server address"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    fn stop(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the release server unless `HYDROGEN_BENCH_SERVER_BIN` names one; returns its path.
fn server_binary() -> String {
    if let Ok(bin) = std::env::var("HYDROGEN_BENCH_SERVER_BIN") {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "hydrogen-ws"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --release --bin hydrogen-ws failed"
    );
    // This bench runs from <target>/release/deps/; the binary is in <target>/release/.
    let exe = std::env::current_exe().expect("current exe");
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release");
    release.join("hydrogen-ws").to_string_lossy().into_owned()
}

/// A built-in server's accept loop: reports its address the way ours does, then serves each
/// connection on a thread of its own (`stack_size`: the default when `None`).
fn accept_loop(stack_size: Option<usize>, serve: fn(TcpStream)) {
    raise_nofile();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    eprintln!(
        "listening on ws://{}",
        listener.local_addr().expect("local addr")
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let mut builder = thread::Builder::new();
        if let Some(size) = stack_size {
            builder = builder.stack_size(size);
        }
        let _ = builder.spawn(move || serve(stream));
    }
}

/// The peer: thread-per-connection tungstenite echo (read a message, send it back, which flushes).
fn tungstenite_server() {
    accept_loop(None, |stream| {
        let Ok(mut ws) = tungstenite::accept(stream) else {
            return;
        };
        loop {
            match ws.read() {
                Ok(msg) if msg.is_binary() || msg.is_text() => {
                    if ws.send(msg).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
}

/// The `floor` row: the least work a thread-per-connection echo server can do, to show what this
/// machine and this client allow at all. A thread per connection (128 KiB stacks, like ours), a bare
/// 101, then: read what is there, unmask every whole frame in place (with our codec's `apply_mask`),
/// send all their echoes in one write. It validates nothing (no UTF-8, no control frames, no limits)
/// and trusts the client to send well-formed masked frames, which this bench's client does.
fn floor_server() {
    accept_loop(Some(128 * 1024), |stream| {
        let _ = floor_echo(stream);
    });
}

fn floor_echo(mut stream: TcpStream) -> io::Result<()> {
    let mut input = common::bare_upgrade(&mut stream)?;
    let mut have = input.len();
    input.resize(have.max(64 * 1024 + 14), 0);
    let mut out = Vec::with_capacity(64 * 1024 + 10);
    loop {
        if have == input.len() {
            input.resize(input.len() * 2, 0);
        }
        match stream.read(&mut input[have..])? {
            0 => return Ok(()),
            n => have += n,
        }
        let mut at = 0;
        while let Some((head, len)) = masked_frame_at(&input[at..have]) {
            let end = at + head + len;
            if end > have {
                break;
            }
            let mask = [
                input[at + head - 4],
                input[at + head - 3],
                input[at + head - 2],
                input[at + head - 1],
            ];
            let payload = &mut input[at + head..end];
            hydrogen_ws_protocol::apply_mask(payload, mask, 0);
            out.push(input[at]);
            match len {
                0..=125 => out.push(len as u8),
                126..=0xFFFF => {
                    out.push(126);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    out.push(127);
                    out.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            out.extend_from_slice(&input[at + head..end]);
            let close = input[at] & 0x0f == 0x8;
            at = end;
            if close {
                return stream.write_all(&out);
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        input.copy_within(at..have, 0);
        have -= at;
    }
}

/// (header length, payload length) of the masked frame at the start of `buf`, once its header is
/// all there.
fn masked_frame_at(buf: &[u8]) -> Option<(usize, usize)> {
    let b1 = *buf.get(1)?;
    let (ext, len) = match b1 & 0x7f {
        126 => (2, u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (8, u64::from_be_bytes(bytes) as usize)
        }
        n => (0, n as usize),
    };
    let head = 2 + ext + 4;
    (buf.len() >= head).then_some((head, len))
}

// ---------------------------------------------------------------------------------------------
// /proc

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of the whole process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start at field 3 ("state").
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime 15: indexes 11 and 12 counting from field 3.
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

/// CPU seconds spent busy by the whole machine (all CPUs; everything but idle and iowait).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle) as f64 / clock_ticks()
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Anonymous read-write mappings about `stack` bytes long (the worker stacks): count, mean and max
/// Rss in KiB.
fn stack_rss(pid: u32, stack: usize) -> Option<(usize, f64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (lo, hi) = (stack.saturating_sub(16 * 1024), stack + 16 * 1024);
    let mut in_stack = false;
    let mut rss = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or("");
                let anon = line.split_whitespace().count() == 5;
                in_stack = perms == "rw-p" && anon && (lo..=hi).contains(&(b - a));
                continue;
            }
        }
        if in_stack {
            if let Some(v) = line.strip_prefix("Rss:") {
                rss.push(v.split_whitespace().next()?.parse::<u64>().ok()?);
                in_stack = false;
            }
        }
    }
    if rss.is_empty() {
        return None;
    }
    let mean = rss.iter().sum::<u64>() as f64 / rss.len() as f64;
    Some((rss.len(), mean, rss.iter().copied().max().unwrap_or(0)))
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client: connections

/// Opens `n` upgraded connections (in parallel from a few threads), non-blocking, with TCP_NODELAY.
fn open_conns(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    let threads = n.clamp(1, 4);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let count = n / threads + usize::from(t < n % threads);
            thread::spawn(move || -> io::Result<Vec<TcpStream>> {
                (0..count).map(|_| connect(addr)).collect()
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.join().expect("connect thread")?);
    }
    Ok(all)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other(format!(
            "refused: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    s.set_read_timeout(None)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A masked binary client frame.
fn client_frame(size: usize) -> Vec<u8> {
    let mut f = vec![0x82u8];
    match size {
        0..=125 => f.push(0x80 | size as u8),
        126..=0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&MASK);
    f.extend((0..size).map(|i| (i as u8 & 0x3f) ^ MASK[i % 4]));
    f
}

/// Server frames, counted as they stream in (headers parsed, payload skipped).
#[derive(Default)]
struct Rx {
    hdr: [u8; 10],
    have: usize,
    left: u64,
    bad: bool,
}

impl Rx {
    /// Feeds bytes; returns how many whole frames they completed.
    fn feed(&mut self, mut data: &[u8]) -> usize {
        let mut done = 0;
        while !data.is_empty() {
            if self.left > 0 {
                let k = (self.left.min(data.len() as u64)) as usize;
                self.left -= k as u64;
                data = &data[k..];
                if self.left == 0 {
                    done += 1;
                }
                continue;
            }
            self.hdr[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have < 2 {
                continue;
            }
            let need = match self.hdr[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if self.have < need {
                continue;
            }
            if self.hdr[0] & 0x0f != 0x2 {
                self.bad = true; // a close or anything unexpected
            }
            let len = match need {
                2 => u64::from(self.hdr[1] & 0x7f),
                4 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
                _ => self.hdr[2..10]
                    .iter()
                    .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
            };
            self.have = 0;
            if len == 0 {
                done += 1;
            } else {
                self.left = len;
            }
        }
        done
    }
}

struct ClientConn {
    stream: TcpStream,
    rx: Rx,
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
struct Control {
    stop: AtomicBool,
    measuring: AtomicBool,
    received: AtomicU64,
}

struct ThreadResult {
    conns: Vec<TcpStream>,
    rtts_ns: Vec<u64>,
    ok: bool,
}

/// Messages in flight per connection in the pipelined mode.
fn window(size: usize) -> usize {
    match size {
        0..=256 => 128,
        257..=4096 => 64,
        _ => 4,
    }
}

/// One client thread: an edge-triggered epoll loop over its connections.
fn client_thread(
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
            rx: Rx::default(),
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
    let mut rtts = Vec::new();
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
                                rtts.push(c.sent_at.elapsed().as_nanos() as u64);
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
                ok &= !c.rx.bad;
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
        rtts_ns: rtts,
        ok,
    }
}

// ---------------------------------------------------------------------------------------------
// Points

struct Point {
    server: &'static str,
    /// Which pass of `HYDROGEN_BENCH_RUNS` (from 1).
    run: usize,
    mode: String,
    conns: usize,
    size: usize,
    msgs_per_s: f64,
    cpu_us_per_msg: f64,
    cpu_util: f64,
    /// The load client's CPU per message: on two cores it competes with the server for them.
    client_us_per_msg: f64,
    /// CPU (in cores) used meanwhile by processes other than the server and this bench: a
    /// busy machine makes the point less trustworthy.
    other_cores: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    ok: bool,
}

/// One measured slice of a point: what the server did and what the clients saw.
struct Sample {
    msgs: u64,
    secs: f64,
    /// Server CPU seconds (utime + stime).
    cpu: f64,
    /// CPU seconds of processes other than the server and this bench.
    others: f64,
    /// CPU seconds of this bench (its load client).
    client: f64,
    rtts_ns: Vec<u64>,
    ok: bool,
}

impl Point {
    /// Sums the slices of one server at one point into its row.
    fn merge(
        server: &'static str,
        run: usize,
        mode: &str,
        conns: usize,
        size: usize,
        samples: Vec<Sample>,
    ) -> Point {
        let msgs: u64 = samples.iter().map(|s| s.msgs).sum();
        let secs: f64 = samples.iter().map(|s| s.secs).sum();
        let cpu: f64 = samples.iter().map(|s| s.cpu).sum();
        let others: f64 = samples.iter().map(|s| s.others).sum();
        let client: f64 = samples.iter().map(|s| s.client).sum();
        let ok = samples.iter().all(|s| s.ok);
        let mut rtts: Vec<u64> = samples.into_iter().flat_map(|s| s.rtts_ns).collect();
        rtts.sort_unstable();
        let per_msg_us = |seconds: f64| {
            if msgs > 0 {
                seconds * 1e6 / msgs as f64
            } else {
                f64::NAN
            }
        };
        let pct = |p: f64| -> Option<f64> {
            let i = ((rtts.len() as f64 * p) as usize).min(rtts.len().checked_sub(1)?);
            Some(rtts[i] as f64 / 1000.0)
        };
        Point {
            server,
            run,
            mode: mode.to_string(),
            conns,
            size,
            msgs_per_s: msgs as f64 / secs,
            cpu_us_per_msg: per_msg_us(cpu),
            cpu_util: cpu / secs,
            client_us_per_msg: per_msg_us(client),
            other_cores: others / secs,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            ok,
        }
    }

    fn line(&self) -> String {
        let lat = match (self.p50_us, self.p99_us) {
            (Some(a), Some(b)) => format!(" p50 {a:.1} us p99 {b:.1} us"),
            _ => String::new(),
        };
        format!(
            "{:<11} {:<4} {:>5} conns {:>6} B: {:>9.0} msg/s, server {:.3} us CPU/msg ({:.0}% of a core), client {:.3} us CPU/msg, others {:.2} cores{lat}{}",
            self.server,
            self.mode,
            self.conns,
            self.size,
            self.msgs_per_s,
            self.cpu_us_per_msg,
            self.cpu_util * 100.0,
            self.client_us_per_msg,
            self.other_cores,
            if self.ok { "" } else { "  [client errors]" }
        )
    }
}

/// Runs one point; returns the connections unless something broke (then they are dropped).
fn run_point(
    plan: &Plan,
    server: &Server,
    conns: Vec<TcpStream>,
    mode: &str,
    size: usize,
    secs: f64,
) -> (Sample, Option<Vec<TcpStream>>) {
    let pipelined = match mode {
        "pipe" => true,
        "lat" => false,
        other => panic!("unknown mode {other}"),
    };
    let n = conns.len();
    let threads = plan.client_threads.clamp(1, n.max(1));
    let ctl = Arc::new(Control {
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(false),
        received: AtomicU64::new(0),
    });
    let mut groups: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, c) in conns.into_iter().enumerate() {
        groups[i % threads].push(c);
    }
    let handles: Vec<_> = groups
        .into_iter()
        .map(|g| {
            let ctl = Arc::clone(&ctl);
            thread::spawn(move || client_thread(g, size, pipelined, ctl))
        })
        .collect();

    thread::sleep(plan.warmup);
    if plan.only.is_some() {
        eprintln!(
            "holding {} {mode} {n} conns {size} B for {} s: server pid {}",
            server.name,
            plan.secs,
            server.pid()
        );
    }
    let me = std::process::id();
    let (m0, c0, t0) = (
        ctl.received.load(Ordering::Relaxed),
        cpu_seconds(server.pid()),
        Instant::now(),
    );
    let (b0, s0) = (machine_busy_seconds(), cpu_seconds(me));
    ctl.measuring.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_secs_f64(secs));
    let (m1, c1, t1) = (
        ctl.received.load(Ordering::Relaxed),
        cpu_seconds(server.pid()),
        Instant::now(),
    );
    let (b1, s1) = (machine_busy_seconds(), cpu_seconds(me));
    ctl.measuring.store(false, Ordering::Relaxed);
    ctl.stop.store(true, Ordering::Relaxed);

    let mut back = Vec::with_capacity(n);
    let mut rtts = Vec::new();
    let mut ok = true;
    for h in handles {
        let r = h.join().expect("client thread");
        ok &= r.ok;
        back.extend(r.conns);
        rtts.extend(r.rtts_ns);
    }
    let sample = Sample {
        msgs: m1 - m0,
        secs: (t1 - t0).as_secs_f64(),
        cpu: c1 - c0,
        others: ((b1 - b0) - (c1 - c0) - (s1 - s0)).max(0.0),
        client: s1 - s0,
        // Pipelined round trips are not timed (they measure the window, not the server).
        rtts_ns: if pipelined { Vec::new() } else { rtts },
        ok,
    };
    (sample, ok.then_some(back))
}

fn size_name(n: usize) -> String {
    match n {
        n if n >= 1024 && n % 1024 == 0 => format!("{} KiB", n / 1024),
        n => format!("{n} B"),
    }
}

/// The points of a table in the order it prints them: one in flight first, then by size, then by
/// connections.
fn table_order<'a>(
    points: impl Iterator<Item = &'a (String, usize, usize)>,
) -> Vec<(String, usize, usize)> {
    let mut keys: Vec<_> = points.cloned().collect();
    keys.sort_by_key(|(mode, conns, size)| (mode != "lat", *size, *conns));
    keys
}

/// (mode, connections, size) -> [ours, tungstenite, floor].
type Rows<'a> = BTreeMap<(String, usize, usize), [Option<&'a Point>; 3]>;

fn print_table(results: &[Point], plan: &Plan) {
    let mut by_key: Rows<'_> = BTreeMap::new();
    for p in results {
        let e = by_key.entry((p.mode.clone(), p.conns, p.size)).or_default();
        match p.server {
            "ours" => e[0] = Some(p),
            "tungstenite" => e[1] = Some(p),
            "floor" => e[2] = Some(p),
            _ => {} // `base`: only in the table of runs
        }
    }
    let ticks = clock_ticks();
    println!();
    println!(
        "Echo: ours (hydrogen-ws --mode echo) vs tungstenite thread-per-connection; {} s per point, \
         {} client threads, CPU = server utime+stime ({ticks} ticks/s) / messages echoed",
        plan.secs, plan.client_threads
    );
    println!(
        "lat = one message in flight per connection (RTT as the client sees it); pipe = {}/{}/{} in flight per connection (<=256 B / <=4 KiB / larger)",
        window(64),
        window(1024),
        window(65536)
    );
    println!(
        "floor = the least work a thread-per-connection echo server can do (no validation), the same client: \
         what this machine allows at all"
    );
    println!(
        "others = cores used during the point by processes other than the servers and this bench (noise)"
    );
    println!();
    println!(
        "| mode | conns |   size | ours msg/s | tung msg/s | ours us CPU/msg | tung us CPU/msg | tung/ours CPU | ours p50/p99 us | tung p50/p99 us | floor us CPU/msg | floor p50/p99 us | others |"
    );
    println!(
        "|------|------:|-------:|-----------:|-----------:|----------------:|----------------:|--------------:|----------------:|----------------:|-----------------:|-----------------:|-------:|"
    );
    let keys = table_order(by_key.keys());
    for key in keys {
        let [ours, tung, floor] = by_key[&key];
        let rate = |p: Option<&Point>| p.map_or("-".into(), |p| format!("{:.0}", p.msgs_per_s));
        let cpu = |p: Option<&Point>| {
            p.map_or("-".into(), |p| {
                format!("{:.3}{}", p.cpu_us_per_msg, if p.ok { "" } else { "!" })
            })
        };
        let lat = |p: Option<&Point>| match p.and_then(|p| Some((p.p50_us?, p.p99_us?))) {
            Some((a, b)) => format!("{a:.1} / {b:.1}"),
            None => "-".into(),
        };
        let ratio = match (ours, tung) {
            (Some(o), Some(t)) if o.cpu_us_per_msg > 0.0 => {
                format!("{:.2}x", t.cpu_us_per_msg / o.cpu_us_per_msg)
            }
            _ => "-".into(),
        };
        let others = [ours, tung, floor]
            .iter()
            .flatten()
            .map(|p| p.other_cores)
            .fold(0.0f64, f64::max);
        println!(
            "| {:<4} | {:>5} | {:>6} | {:>10} | {:>10} | {:>15} | {:>15} | {:>13} | {:>15} | {:>15} | {:>16} | {:>16} | {:>6.2} |",
            key.0,
            key.1,
            size_name(key.2),
            rate(ours),
            rate(tung),
            cpu(ours),
            cpu(tung),
            ratio,
            lat(ours),
            lat(tung),
            cpu(floor),
            lat(floor),
            others
        );
    }
}

/// The targets of issue 7 that a point is held to: (what, whether this point met it).
fn targets(p: &Point) -> Vec<(&'static str, bool)> {
    match (p.mode.as_str(), p.conns, p.size) {
        ("pipe", _, 1024) => vec![("CPU <= 0.5 us", p.cpu_us_per_msg <= 0.5)],
        ("lat", 10, 64) => vec![
            ("CPU <= 6 us", p.cpu_us_per_msg <= 6.0),
            ("p50 < 40 us", p.p50_us.is_some_and(|v| v < 40.0)),
            ("p99 < 100 us", p.p99_us.is_some_and(|v| v < 100.0)),
        ],
        _ => Vec::new(),
    }
}

/// The median of the finite values, if any.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// "median (min-max)" of the finite values, with `digits` decimals.
fn spread(values: &[f64], digits: usize) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let Some(mid) = median(finite.clone()) else {
        return "-".into();
    };
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{mid:.digits$} ({lo:.digits$}-{hi:.digits$})")
}

/// With `HYDROGEN_BENCH_RUNS` above 1: for each point and server, medians and ranges over the runs.
fn print_runs(results: &[Point], plan: &Plan) {
    // (mode, connections, size) -> server -> run -> row.
    type ByRun<'a> = BTreeMap<usize, &'a Point>;
    let mut by_key: BTreeMap<(String, usize, usize), BTreeMap<&str, ByRun<'_>>> = BTreeMap::new();
    for p in results {
        by_key
            .entry((p.mode.clone(), p.conns, p.size))
            .or_default()
            .entry(p.server)
            .or_default()
            .insert(p.run, p);
    }
    println!();
    println!(
        "Echo, {} runs: median over the runs (min-max); {} s per point and run, {} client threads",
        plan.runs, plan.secs, plan.client_threads
    );
    println!(
        "/ floor, / base = median over the runs of (this row's CPU per message / that server's in the same run)"
    );
    println!(
        "targets (issue 7): pipelined 1 KiB: at most 0.5 us of CPU; one in flight, 10 conns, 64 B: at most 6 us \
         of CPU, p50 under 40 us, p99 under 100 us"
    );
    println!();
    println!(
        "| mode | conns |   size | server      | runs | us CPU/msg, median (min-max) | / floor | / base | p50 us, median | p99 us, median (min-max) | client us CPU/msg | runs within the targets |"
    );
    println!(
        "|------|------:|-------:|-------------|-----:|-----------------------------:|--------:|-------:|---------------:|-------------------------:|------------------:|-------------------------|"
    );
    let keys = table_order(by_key.keys());
    for key in keys {
        let servers = &by_key[&key];
        let relative = |runs: &ByRun<'_>, to: &str| -> String {
            let Some(other) = servers.get(to) else {
                return "-".into();
            };
            let ratios = runs
                .iter()
                .filter_map(|(run, p)| Some(p.cpu_us_per_msg / other.get(run)?.cpu_us_per_msg))
                .collect();
            median(ratios).map_or("-".into(), |m| format!("{m:.2}x"))
        };
        for name in &plan.servers {
            let Some(runs) = servers.get(name.as_str()) else {
                continue;
            };
            let cpu: Vec<f64> = runs.values().map(|p| p.cpu_us_per_msg).collect();
            let p50: Vec<f64> = runs.values().filter_map(|p| p.p50_us).collect();
            let p99: Vec<f64> = runs.values().filter_map(|p| p.p99_us).collect();
            let client: Vec<f64> = runs.values().map(|p| p.client_us_per_msg).collect();
            let mut met: Vec<(&str, usize)> = Vec::new();
            for p in runs.values() {
                for (i, (what, ok)) in targets(p).into_iter().enumerate() {
                    if met.len() <= i {
                        met.push((what, 0));
                    }
                    met[i].1 += usize::from(ok);
                }
            }
            let within = if met.is_empty() {
                "-".to_string()
            } else {
                met.iter()
                    .map(|(what, n)| format!("{what}: {n}/{}", runs.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let errors = if runs.values().all(|p| p.ok) {
                ""
            } else {
                " [client errors]"
            };
            println!(
                "| {:<4} | {:>5} | {:>6} | {:<11} | {:>4} | {:>28} | {:>7} | {:>6} | {:>14} | {:>24} | {:>17} | {within}{errors} |",
                key.0,
                key.1,
                size_name(key.2),
                name,
                runs.len(),
                spread(&cpu, 3),
                if name == "floor" { "-".into() } else { relative(runs, "floor") },
                if name == "base" { "-".into() } else { relative(runs, "base") },
                median(p50).map_or("-".into(), |m| format!("{m:.1}")),
                if p99.is_empty() { "-".into() } else { spread(&p99, 0) },
                median(client).map_or("-".into(), |m| format!("{m:.3}")),
            );
        }
    }
}

/// Opens `n` idle connections (each does one 64 B echo first) and reports the RSS they cost.
fn rss_point(server: &Server, n: usize, stack: Option<usize>) -> io::Result<String> {
    let pid = server.pid();
    thread::sleep(Duration::from_millis(300));
    let before = status_kib(pid, "VmRSS:");
    let mut conns = open_conns(server.addr, n)?;
    let frame = client_frame(64);
    for c in conns.iter_mut() {
        c.set_nonblocking(false)?;
        c.write_all(&frame)?;
    }
    let mut reply = [0u8; 66];
    for c in conns.iter_mut() {
        c.read_exact(&mut reply)?;
    }
    thread::sleep(Duration::from_secs(1));
    let after = status_kib(pid, "VmRSS:");
    let stacks = if server.name == "ours" {
        match stack_rss(pid, stack.unwrap_or(128 * 1024)) {
            Some((count, mean, max)) => format!("{count}, {mean:.1} / {max}"),
            None => "not found".into(),
        }
    } else {
        "(default 2 MiB stacks)".into()
    };
    drop(conns);
    Ok(format!(
        "| {:<11} | {n:>6} | {:>10.1} | {:>9.1} | {:>16.1} | {:>16.1} | {stacks:<48} |",
        server.name,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / n as f64,
        after as f64 / n as f64,
    ))
}
