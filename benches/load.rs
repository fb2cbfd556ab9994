//! Load and soak tool: many connections, mixed traffic, hostile clients mixed in, and the server's
//! resources before, during and after.
//!
//! ```sh
//! cargo bench --bench load                                   # 1,000 connections, 20 s, 5% hostile
//! cargo bench --bench load -- --conns 10000 --secs 600 --hostile 0.05 --think-ms 1000
//! HYDROGEN_LOAD_CONNS=10000 HYDROGEN_LOAD_SECS=600 cargo bench --bench load
//! ```
//!
//! What it does:
//!
//! 1. `cargo build --release --bin hydrogen-ws` (skipped with `--bin PATH`), raises `RLIMIT_NOFILE` to
//!    its hard limit, and starts `hydrogen-ws --mode echo --listen 127.0.0.1:0 --threads <conns + margin>
//!    --log-level warn` (plus any `--server-arg`). It reads `listening on ws://ADDR` from the server's
//!    stderr and keeps draining it, counting warnings and errors by kind.
//! 2. **Warm-up** (skip with `--no-warmup`): every connection opens, echoes one largest message, and
//!    closes, so that each worker's stack is touched once; then the soak's own mix runs for
//!    `--warmup-secs` (default a tenth of `--secs`, 5 to 60 s), so that the allocator has met every kind
//!    of traffic. The server's RSS, threads and descriptors after it are the **baseline**, against which
//!    "after" is compared: growth beyond it over a long soak would be a leak (the fresh server's figures
//!    are shown too, as "cold").
//! 3. **Soak**: `conns` connections, of which a fraction `hostile` are hostile slots. Well-behaved
//!    clients open (at most 64 handshakes in flight per client thread), then each sends a text or binary
//!    message of a size drawn log-uniformly from `--sizes` (default 16 B .. 16 KiB), waits for the echo,
//!    checks every byte, waits a random think time (mean `--think-ms`), and sends the next; they answer
//!    the server's pings. Each hostile slot runs one attack after another, rotating through: slowloris
//!    (the request one byte every 250 ms; expects 408), never-reading (small receive buffer, sends 16 KiB
//!    messages and never reads; expects eviction), garbage frames (unmasked or reserved opcode; expects
//!    1002), oversize declared length (2^40; expects 1009), reset mid-frame and reset mid-handshake
//!    (`SO_LINGER` 0). A progress line is printed every `--report-secs`, with the server's RSS, threads
//!    and descriptors from `/proc/PID`.
//! 4. **After**: every well-behaved client closes (1000, and expects the server's close answer); the
//!    tool waits (up to 30 s) for the server's descriptors and threads to return to the baseline.
//! 5. **Report**: throughput, latency percentiles (p50/p90/p99/max, from the moment a message was written
//!    to its echo), errors by kind for the well-behaved clients, outcomes per hostile kind, the server's
//!    log lines by kind, and RSS/threads/descriptors cold, baseline, peak during the soak and after. The
//!    run passes when the well-behaved clients saw no error and descriptors and threads are back at the
//!    baseline; otherwise it exits with status 1. The server is always stopped (SIGTERM, then SIGKILL
//!    after 5 s) and reaped.
//!
//! Options (flag, or environment variable; the flag wins):
//!
//! | flag | env | default | bound |
//! |---|---|---|---|
//! | `--conns N` | `HYDROGEN_LOAD_CONNS` | 1000 | 1 ..= 10,000 |
//! | `--secs N` | `HYDROGEN_LOAD_SECS` | 20 | 1 ..= 3600 |
//! | `--hostile F` | `HYDROGEN_LOAD_HOSTILE` | 0.05 | 0 ..= 0.5 |
//! | `--think-ms N` | `HYDROGEN_LOAD_THINK_MS` | 250 (0: back to back) | ..= 60,000 |
//! | `--sizes MIN-MAX` | `HYDROGEN_LOAD_SIZES` | 16-16384 | 1 ..= 1 MiB |
//! | `--threads N` (client threads) | `HYDROGEN_LOAD_THREADS` | 2 | 1 ..= 16 |
//! | `--report-secs N` | `HYDROGEN_LOAD_REPORT_SECS` | 10 | |
//! | `--bin PATH` | `HYDROGEN_LOAD_SERVER_BIN` | build it | |
//! | `--server-arg ARG` (repeatable) | `HYDROGEN_LOAD_SERVER_ARGS` (space-separated) | none | |
//! | `--no-warmup` | `HYDROGEN_LOAD_WARMUP=0` | warm-up on | |
//! | `--warmup-secs N` | `HYDROGEN_LOAD_WARMUP_SECS` | secs / 10, 5 ..= 60 | |
//! | `--pause-after N` | `HYDROGEN_LOAD_PAUSE_AFTER` | 0 | keep the idle server N s after the run (to attach a debugger or profiler), then sample it again |
//!
//! Loopback only: the server listens on 127.0.0.1 and every client connects there.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};
use socket2::{Domain, Socket, Type};

mod common;

const MAX_CONNS: usize = 10_000;
const MAX_SECS: u64 = 3_600;
/// Handshakes in flight per client thread while connections open.
const MAX_CONNECTING: usize = 64;
/// A well-behaved client whose echo takes longer than this records an error.
const ECHO_TIMEOUT: Duration = Duration::from_secs(30);
/// A hostile attack that has not seen its expected end by then records "no refusal".
const ATTACK_TIMEOUT: Duration = Duration::from_secs(60);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST: &str = "GET /load HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n\r\n";

fn main() {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Options {
    conns: usize,
    secs: u64,
    hostile: f64,
    think_ms: u64,
    min_size: usize,
    max_size: usize,
    threads: usize,
    report_secs: u64,
    bin: Option<PathBuf>,
    server_args: Vec<String>,
    warmup: bool,
    warmup_secs: Option<u64>,
    pause_after: u64,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut o = Options {
            conns: 1000,
            secs: 20,
            hostile: 0.05,
            think_ms: 250,
            min_size: 16,
            max_size: 16 * 1024,
            threads: 2,
            report_secs: 10,
            bin: None,
            server_args: Vec::new(),
            warmup: true,
            warmup_secs: None,
            pause_after: 0,
        };
        let set = |o: &mut Options, key: &str, v: &str| -> Result<(), String> {
            let num = |v: &str| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{key}: '{v}' is not a whole number"))
            };
            match key {
                "conns" => o.conns = num(v)? as usize,
                "secs" => o.secs = num(v)?,
                "hostile" => {
                    o.hostile = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("hostile: '{v}' is not a fraction"))?
                }
                "think-ms" => o.think_ms = num(v)?,
                "sizes" => {
                    let (a, b) = v
                        .split_once('-')
                        .ok_or_else(|| format!("sizes: '{v}' is not MIN-MAX"))?;
                    o.min_size = num(a)? as usize;
                    o.max_size = num(b)? as usize;
                }
                "threads" => o.threads = num(v)? as usize,
                "report-secs" => o.report_secs = num(v)?.max(1),
                "bin" => o.bin = Some(PathBuf::from(v)),
                "server-arg" => o.server_args.push(v.to_string()),
                "warmup-secs" => o.warmup_secs = Some(num(v)?.min(MAX_SECS)),
                "pause-after" => o.pause_after = num(v)?.min(MAX_SECS),
                _ => {
                    return Err(format!(
                        "unknown option --{key} (see the doc comment of benches/load.rs)"
                    ))
                }
            }
            Ok(())
        };
        for (var, key) in [
            ("HYDROGEN_LOAD_CONNS", "conns"),
            ("HYDROGEN_LOAD_SECS", "secs"),
            ("HYDROGEN_LOAD_HOSTILE", "hostile"),
            ("HYDROGEN_LOAD_THINK_MS", "think-ms"),
            ("HYDROGEN_LOAD_SIZES", "sizes"),
            ("HYDROGEN_LOAD_THREADS", "threads"),
            ("HYDROGEN_LOAD_REPORT_SECS", "report-secs"),
            ("HYDROGEN_LOAD_SERVER_BIN", "bin"),
            ("HYDROGEN_LOAD_WARMUP_SECS", "warmup-secs"),
            ("HYDROGEN_LOAD_PAUSE_AFTER", "pause-after"),
        ] {
            if let Some(v) = env(var) {
                set(&mut o, key, &v)?;
            }
        }
        if let Some(v) = env("HYDROGEN_LOAD_SERVER_ARGS") {
            o.server_args
                .extend(v.split_whitespace().map(str::to_string));
        }
        if env("HYDROGEN_LOAD_WARMUP").as_deref() == Some("0") {
            o.warmup = false;
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {} // added by `cargo bench`
                "--no-warmup" => o.warmup = false,
                flag if flag.starts_with("--") => {
                    let key = &flag[2..];
                    let (key, value) = match key.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (
                            key.to_string(),
                            args.next().ok_or_else(|| format!("{flag} needs a value"))?,
                        ),
                    };
                    set(&mut o, &key, &value)?;
                }
                // A bench-name filter from `cargo bench load`: nothing to filter.
                _ => {}
            }
        }
        if !(1..=MAX_CONNS).contains(&o.conns) {
            return Err(format!("conns must be 1 ..= {MAX_CONNS}"));
        }
        if !(1..=MAX_SECS).contains(&o.secs) {
            return Err(format!("secs must be 1 ..= {MAX_SECS}"));
        }
        if !(0.0..=0.5).contains(&o.hostile) {
            return Err("hostile must be between 0 and 0.5".into());
        }
        if o.think_ms > 60_000 {
            return Err("think-ms must be at most 60000".into());
        }
        if o.min_size == 0 || o.min_size > o.max_size || o.max_size > 1 << 20 {
            return Err("sizes must be MIN-MAX with 1 <= MIN <= MAX <= 1048576".into());
        }
        if !(1..=16).contains(&o.threads) {
            return Err("threads must be 1 ..= 16".into());
        }
        Ok(o)
    }

    fn hostile_slots(&self) -> usize {
        ((self.conns as f64) * self.hostile).round() as usize
    }
}

// ---------------------------------------------------------------------------------------------------
// The server process

/// A sample of the server process from /proc/PID.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Sample {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
    }
}

/// The server's stderr, tallied by kind of line.
#[derive(Default)]
struct LogTally {
    kinds: Mutex<BTreeMap<String, u64>>,
    last_errors: Mutex<VecDeque<String>>,
}

impl LogTally {
    fn add(&self, line: &str) {
        let kind = if line.contains(" ERROR ") {
            let mut last = self.last_errors.lock().unwrap();
            if last.len() == 5 {
                last.pop_front();
            }
            last.push_back(line.to_string());
            "ERROR".to_string()
        } else if let Some(i) = line.find("refused ") {
            line[i..].chars().take(11).collect()
        } else if line.contains("evicted") {
            "evicted".to_string()
        } else if line.contains(" WARN ") {
            let mut last = self.last_errors.lock().unwrap();
            if last.len() == 5 {
                last.pop_front();
            }
            last.push_back(line.to_string());
            "WARN (other)".to_string()
        } else {
            "other".to_string()
        };
        *self.kinds.lock().unwrap().entry(kind).or_default() += 1;
    }
}

struct ServerProc {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    log: Arc<LogTally>,
    threads_flag: usize,
}

impl ServerProc {
    fn start(bin: &PathBuf, threads: usize, extra: &[String]) -> Result<ServerProc, String> {
        let mut child = Command::new(bin)
            .args([
                "--mode",
                "echo",
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "warn",
            ])
            .args(["--threads", &threads.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(LogTally::default());
        let tally = Arc::clone(&log);
        let rx = common::watch_stderr(stderr, move |line, ready| {
            // Before the readiness line, anything the server says is worth seeing at once.
            if !ready {
                eprintln!("server: {line}");
            }
            tally.add(line);
        });
        let mut server = ServerProc {
            child,
            pid,
            addr: "127.0.0.1:0".parse().expect("literal"),
            log,
            threads_flag: threads,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the server did not print its address within 60 s".to_string())?;
        server.addr = addr
            .parse()
            .map_err(|e| format!("bad address '{addr}': {e}"))?;
        Ok(server)
    }

    fn sample(&self) -> Sample {
        sample(self.pid)
    }

    /// SIGTERM, then SIGKILL after 5 s; always reaps.
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: kill(2) with our own child's pid, which has not been reaped yet (try_wait above).
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn build_server() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("load: cargo build --release --bin hydrogen-ws");
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "hydrogen-ws"])
        .current_dir(&manifest)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let bin = target.join("release").join("hydrogen-ws");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} not found after the build", bin.display()))
    }
}

/// Raises RLIMIT_NOFILE to its hard limit (inherited by the server); returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a live, initialised rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

// ---------------------------------------------------------------------------------------------------
// Figures

/// A latency histogram in microseconds: 32 linear sub-buckets per power of two (about 3% precision).
#[derive(Clone)]
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            counts: vec![0; 60 * 32],
            n: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 32 {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros());
        let sub = (v >> (e - 5)) & 31;
        (((e - 4) * 32) + sub) as usize
    }

    fn lower(i: usize) -> u64 {
        if i < 32 {
            return i as u64;
        }
        let e = (i / 32 + 4) as u32;
        (32 + (i % 32) as u64) << (e - 5)
    }

    fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX)
            .min(1 << 50);
        self.counts[Self::index(us)] += 1;
        self.n += 1;
        self.max = self.max.max(us);
    }

    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.max = self.max.max(o.max);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let want = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::lower(i).min(self.max);
            }
        }
        self.max
    }
}

fn fmt_us(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Outcomes of one hostile kind.
#[derive(Default, Clone)]
struct HostileTally {
    attempts: u64,
    expected: u64,
    other: BTreeMap<String, u64>,
}

/// What a client thread has counted (merged into the shared totals every 200 ms).
#[derive(Clone)]
struct Totals {
    messages: u64,
    bytes: u64,
    hist: Hist,
    window: Hist,
    errors: BTreeMap<String, u64>,
    hostile: BTreeMap<&'static str, HostileTally>,
    closed_clean: u64,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            messages: 0,
            bytes: 0,
            hist: Hist::new(),
            window: Hist::new(),
            errors: BTreeMap::new(),
            hostile: BTreeMap::new(),
            closed_clean: 0,
        }
    }

    fn merge(&mut self, o: &Totals) {
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.hist.merge(&o.hist);
        self.window.merge(&o.window);
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.hostile {
            let t = self.hostile.entry(k).or_default();
            t.attempts += v.attempts;
            t.expected += v.expected;
            for (r, n) in &v.other {
                *t.other.entry(r.clone()).or_default() += n;
            }
        }
        self.closed_clean += o.closed_clean;
    }
}

// ---------------------------------------------------------------------------------------------------
// The client threads

const RAMP: u8 = 0;
const RUN: u8 = 1;
const STOP: u8 = 2;

struct Ctx {
    addr: SocketAddr,
    think_ms: u64,
    min_size: usize,
    max_size: usize,
    /// Send only the first message (at the largest size): the warm-up.
    warmup: bool,
    phase: AtomicU8,
    /// Well-behaved clients that have had their first echo.
    ready: AtomicUsize,
    /// Connections open now (well-behaved, hostile).
    good_open: AtomicUsize,
    hostile_open: AtomicUsize,
    /// Client threads still running.
    running: AtomicUsize,
    totals: Mutex<Totals>,
    sent_total: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
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
    fn name(self) -> &'static str {
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
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
fn parse_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, start) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if buf.len() < start + len {
        return None;
    }
    Some((buf[0] & 0x0f, start..start + len, start + len))
}

struct Client<'a> {
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
    fn new(ctx: &'a Ctx, kinds: Vec<Kind>, seed: u64) -> io::Result<Client<'a>> {
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
            rng: Rng(seed | 1),
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
        let mask = (self.rng.next() as u32).to_be_bytes();
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
    fn send_message(&mut self, i: usize) {
        let size = {
            let (lo, hi) = (self.ctx.min_size as f64, self.ctx.max_size as f64);
            if self.ctx.warmup {
                self.ctx.max_size
            } else {
                (lo * (hi / lo).powf(self.rng.unit())).round() as usize
            }
        };
        let c = &mut self.conns[i];
        c.seq += 1;
        let seq = c.seq.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let opcode = if c.seq % 2 == 0 { 1u8 } else { 2 };
        let payload: Vec<u8> = (0..size).map(|k| payload_byte(seq, k, opcode)).collect();
        let op = if opcode == 1 {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        self.queue(i, op, &payload);
        let now = Instant::now();
        self.conns[i].in_flight = Some((now, seq, size, opcode));
        self.ctx.sent_total.fetch_add(1, Ordering::Relaxed);
        self.set_wake(i, now + ECHO_TIMEOUT);
    }

    fn start_close(&mut self, i: usize) {
        self.queue(i, OpCode::Close, &1000u16.to_be_bytes());
        self.conns[i].st = St::Closing;
        self.set_wake(i, Instant::now() + CLOSE_TIMEOUT);
    }

    /// After an echo: close, wait for the soak to start, or think and then send the next message.
    fn after_echo(&mut self, i: usize) {
        match self.ctx.phase.load(Ordering::Relaxed) {
            STOP => self.start_close(i),
            // Ramp (or the warm-up): look again within a second, so the soak starts spread out.
            RAMP => {
                let at = Instant::now() + Duration::from_millis(1 + self.rng.next() % 1000);
                self.set_wake(i, at);
            }
            _ if self.ctx.warmup => {
                let at = Instant::now() + Duration::from_secs(1);
                self.set_wake(i, at);
            }
            _ if self.ctx.think_ms == 0 => self.send_message(i),
            _ => {
                let ms = self.rng.next() % (2 * self.ctx.think_ms + 1);
                let at = Instant::now() + Duration::from_millis(ms);
                self.set_wake(i, at);
            }
        }
    }

    /// A well-behaved client's timer with nothing in flight: the think time is over.
    fn on_idle_timer(&mut self, i: usize) {
        match self.ctx.phase.load(Ordering::Relaxed) {
            STOP => self.start_close(i),
            RUN if !self.ctx.warmup => self.send_message(i),
            _ => {
                let at = Instant::now() + Duration::from_secs(1);
                self.set_wake(i, at);
            }
        }
    }

    /// The connection is established: send what the role sends first.
    fn on_connected(&mut self, i: usize) -> Flow {
        let attack = self.conns[i].attack;
        match attack {
            Kind::Slowloris => {
                self.conns[i].st = St::Handshake;
                return self.trickle(i);
            }
            Kind::ResetMidHandshake => {
                let half = &REQUEST.as_bytes()[..REQUEST.len() / 2];
                let c = &mut self.conns[i];
                c.wbuf.extend_from_slice(half);
                c.st = St::Handshake;
                let at = Instant::now() + Duration::from_millis(20);
                self.set_wake(i, at);
            }
            _ => {
                let c = &mut self.conns[i];
                c.wbuf.extend_from_slice(REQUEST.as_bytes());
                c.st = St::Handshake;
            }
        }
        Flow::Keep
    }

    fn trickle(&mut self, i: usize) -> Flow {
        const SLOW: &[u8] =
            b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: ";
        let c = &mut self.conns[i];
        let byte = SLOW.get(c.trickled).copied().unwrap_or(b'z');
        c.trickled += 1;
        c.wbuf.push(byte);
        let at = Instant::now() + Duration::from_millis(250);
        self.set_wake(i, at);
        Flow::Keep
    }

    /// The server's 101 (or refusal) arrived for slot `i`.
    fn on_response(&mut self, i: usize, status: u16) -> Flow {
        let c = &mut self.conns[i];
        c.st = St::Open;
        self.connecting = self.connecting.saturating_sub(1);
        if c.kind == Kind::Good {
            if status != 101 {
                self.error(format!("handshake answered {status}"));
                return Flow::End(false);
            }
            self.ctx.good_open.fetch_add(1, Ordering::Relaxed);
            self.send_message(i);
            return Flow::Keep;
        }
        self.ctx.hostile_open.fetch_add(1, Ordering::Relaxed);
        let attack = c.attack;
        if attack == Kind::Slowloris {
            let ok = status == 408;
            self.hostile_outcome(i, ok, &format!("answered {status}"));
            return Flow::End(false);
        }
        if status != 101 {
            self.hostile_outcome(i, false, &format!("handshake answered {status}"));
            return Flow::End(false);
        }
        match attack {
            Kind::Garbage => {
                let unmasked = [0x81, 0x03, b'b', b'a', b'd'];
                let reserved = [0x83, 0x80, 1, 2, 3, 4];
                let bytes: &[u8] = if self.conns[i].attacks % 2 == 0 {
                    &unmasked
                } else {
                    &reserved
                };
                self.conns[i].wbuf.extend_from_slice(bytes);
            }
            Kind::Oversize => {
                let header = [0x82, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 9, 8, 7, 6];
                self.conns[i].wbuf.extend_from_slice(&header);
            }
            Kind::ResetMidFrame => {
                let mask = [1, 2, 3, 4];
                let frame = encode_masked_frame(true, OpCode::Binary, mask, &[0x42; 1000]);
                self.conns[i].wbuf.extend_from_slice(&frame[..500]);
                let at = Instant::now() + Duration::from_millis(20);
                self.set_wake(i, at);
            }
            Kind::NeverReads => {
                let frame =
                    encode_masked_frame(true, OpCode::Binary, [9, 9, 9, 9], &[0x33; 16 * 1024]);
                self.conns[i].wbuf.extend_from_slice(&frame);
            }
            _ => {}
        }
        Flow::Keep
    }

    fn on_readable(&mut self, i: usize) -> Flow {
        loop {
            let Some(sock) = self.conns[i].sock.as_ref() else {
                return Flow::Keep;
            };
            match (&*sock).read(&mut self.scratch) {
                Ok(0) => return self.on_eof(i),
                Ok(n) => {
                    let c = &mut self.conns[i];
                    c.rbuf.extend_from_slice(&self.scratch[..n]);
                    if n < self.scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.on_io_error(i, &e),
            }
        }
        if self.conns[i].st == St::Handshake {
            let Some(end) = self.conns[i].rbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Flow::Keep;
            };
            let head = String::from_utf8_lossy(&self.conns[i].rbuf[..end]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            self.conns[i].rbuf.drain(..end + 4);
            if let Flow::End(r) = self.on_response(i, status) {
                return Flow::End(r);
            }
        }
        self.on_frames(i)
    }

    fn on_frames(&mut self, i: usize) -> Flow {
        let mut used = 0;
        let mut flow = Flow::Keep;
        while let Some((opcode, range, len)) = parse_frame(&self.conns[i].rbuf[used..]) {
            let start = used;
            used += len;
            let payload = start + range.start..start + range.end;
            let c = &self.conns[i];
            if c.kind != Kind::Good {
                if opcode == 8 {
                    let buf = &c.rbuf[payload];
                    let code = if buf.len() >= 2 {
                        u16::from_be_bytes([buf[0], buf[1]])
                    } else {
                        1005
                    };
                    let want = match c.attack {
                        Kind::Garbage => 1002,
                        Kind::Oversize => 1009,
                        _ => 0,
                    };
                    self.hostile_outcome(i, code == want, &format!("closed with {code}"));
                    flow = Flow::End(false);
                    break;
                }
                continue;
            }
            match opcode {
                1 | 2 => {
                    let Some((sent, seq, size, op)) = c.in_flight else {
                        self.error("a message nobody asked for");
                        flow = Flow::End(false);
                        break;
                    };
                    let data = &c.rbuf[payload];
                    let good = op == opcode
                        && data.len() == size
                        && data
                            .iter()
                            .enumerate()
                            .all(|(k, &b)| b == payload_byte(seq, k, op));
                    if !good {
                        self.error("echo differs from the message");
                        flow = Flow::End(false);
                        break;
                    }
                    let rtt = sent.elapsed();
                    self.local.hist.record(rtt);
                    self.local.window.record(rtt);
                    self.local.messages += 1;
                    self.local.bytes += size as u64;
                    let c = &mut self.conns[i];
                    c.in_flight = None;
                    if !c.first_echo {
                        c.first_echo = true;
                        self.ctx.ready.fetch_add(1, Ordering::Relaxed);
                    }
                    if c.st == St::Open {
                        self.after_echo(i);
                    }
                }
                9 => {
                    let ping = self.conns[i].rbuf[payload].to_vec();
                    if self.conns[i].st == St::Open {
                        self.queue(i, OpCode::Pong, &ping);
                    }
                }
                10 => {}
                8 => {
                    if c.st == St::Closing {
                        self.local.closed_clean += 1;
                    } else {
                        let buf = &c.rbuf[payload];
                        let code = if buf.len() >= 2 {
                            u16::from_be_bytes([buf[0], buf[1]])
                        } else {
                            1005
                        };
                        self.error(format!("server closed with {code}"));
                    }
                    flow = Flow::End(false);
                    break;
                }
                other => {
                    self.error(format!("unexpected opcode {other}"));
                    flow = Flow::End(false);
                    break;
                }
            }
        }
        let c = &mut self.conns[i];
        c.rbuf.drain(..used.min(c.rbuf.len()));
        flow
    }

    fn on_eof(&mut self, i: usize) -> Flow {
        let c = &self.conns[i];
        match (c.kind, c.st) {
            (Kind::Good, _) => self.error(format!("EOF while {:?}", c.st)),
            _ => {
                let expected = c.attack == Kind::NeverReads && c.st == St::Open;
                self.hostile_outcome(i, expected, "EOF");
            }
        }
        Flow::End(false)
    }

    fn on_io_error(&mut self, i: usize, e: &io::Error) -> Flow {
        let c = &self.conns[i];
        if c.kind == Kind::Good {
            self.error(format!("{:?} while {:?}", e.kind(), c.st));
        } else {
            let expected = c.attack == Kind::NeverReads && c.st == St::Open;
            self.hostile_outcome(i, expected, &format!("{:?}", e.kind()));
        }
        Flow::End(true)
    }

    fn on_event(&mut self, i: usize, events: u32) {
        let flow = self.handle_event(i, events);
        self.finish_flow(i, flow);
    }

    /// After an event or a timer: a connection that carries on gets its pending output written, one that
    /// is over is ended (with a reset if `End(true)`).
    fn finish_flow(&mut self, i: usize, flow: Flow) {
        let flow = match flow {
            Flow::Keep => match self.flush(i) {
                Ok(()) => Flow::Keep,
                Err(e) => self.on_io_error(i, &e),
            },
            end => end,
        };
        if let Flow::End(reset) = flow {
            self.end(i, reset);
        }
    }

    fn handle_event(&mut self, i: usize, events: u32) -> Flow {
        let err = events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        let c = &self.conns[i];
        if c.st == St::Connecting {
            let sock = c.sock.as_ref().expect("connecting socket");
            match sock.take_error() {
                Ok(None) if !err => {}
                Ok(Some(e)) | Err(e) => return self.on_connect_failed(i, &e),
                Ok(None) => {
                    let e = io::Error::from(io::ErrorKind::ConnectionRefused);
                    return self.on_connect_failed(i, &e);
                }
            }
            if events & libc::EPOLLOUT as u32 == 0 {
                return Flow::Keep;
            }
            if let Flow::End(r) = self.on_connected(i) {
                return Flow::End(r);
            }
        }
        let c = &self.conns[i];
        if c.attack == Kind::NeverReads && c.st == St::Open {
            if err || events & libc::EPOLLRDHUP as u32 != 0 {
                self.hostile_outcome(i, true, "");
                return Flow::End(true);
            }
            // Keep the socket full: one more 16 KiB message whenever there is room.
            if c.wpos == c.wbuf.len() {
                let frame =
                    encode_masked_frame(true, OpCode::Binary, [9, 9, 9, 9], &[0x33; 16 * 1024]);
                let c = &mut self.conns[i];
                c.wbuf.clear();
                c.wpos = 0;
                c.wbuf.extend_from_slice(&frame);
            }
            return Flow::Keep;
        }
        if events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0
        {
            return self.on_readable(i);
        }
        Flow::Keep
    }

    fn on_connect_failed(&mut self, i: usize, e: &io::Error) -> Flow {
        if self.conns[i].kind == Kind::Good {
            self.error(format!("connect: {:?}", e.kind()));
        } else {
            self.hostile_outcome(i, false, &format!("connect: {:?}", e.kind()));
        }
        Flow::End(true)
    }

    fn on_timer(&mut self, i: usize) {
        let c = &self.conns[i];
        let flow = match (c.kind, c.st) {
            (_, St::Done) => Flow::Keep,
            (Kind::Good, St::Open) => {
                if c.in_flight.is_some() {
                    self.error("no echo within 30 s");
                    Flow::End(false)
                } else {
                    self.on_idle_timer(i);
                    Flow::Keep
                }
            }
            (Kind::Good, St::Closing) => {
                self.error("no close answer within 15 s");
                Flow::End(false)
            }
            (Kind::Good, _) => {
                self.error(format!("stuck {:?} for 60 s", c.st));
                Flow::End(true)
            }
            (_, St::Idle) => {
                if self.ctx.phase.load(Ordering::Relaxed) == RUN {
                    self.connect(i);
                }
                Flow::Keep
            }
            (_, st) => {
                let attack = c.attack;
                let late = c.started.elapsed() >= ATTACK_TIMEOUT;
                if late {
                    self.hostile_outcome(i, false, &format!("no refusal within 60 s ({st:?})"));
                    Flow::End(true)
                } else if attack == Kind::Slowloris && st == St::Handshake {
                    self.trickle(i)
                } else if matches!(attack, Kind::ResetMidFrame | Kind::ResetMidHandshake)
                    && matches!(st, St::Open | St::Handshake)
                    && c.wpos == c.wbuf.len()
                {
                    self.hostile_outcome(i, true, "");
                    Flow::End(true)
                } else {
                    let at = c.started + ATTACK_TIMEOUT;
                    self.set_wake(i, at);
                    Flow::Keep
                }
            }
        };
        self.finish_flow(i, flow);
    }

    fn publish(&mut self) {
        let mut t = self.ctx.totals.lock().unwrap();
        t.merge(&self.local);
        self.local = Totals::new();
    }

    fn run(mut self) {
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

// ---------------------------------------------------------------------------------------------------
// A run

struct Phase {
    totals: Totals,
    secs: f64,
    peak: Sample,
    good: usize,
}

/// Runs one population of clients through ramp, `run_for` of traffic, and the closing phase.
fn drive(
    opts: &Options,
    server: &ServerProc,
    good: usize,
    hostile: usize,
    run_for: Duration,
    warmup: bool,
    label: &str,
) -> Phase {
    let ctx = Ctx {
        addr: server.addr,
        think_ms: opts.think_ms,
        min_size: opts.min_size,
        max_size: opts.max_size,
        warmup,
        phase: AtomicU8::new(RAMP),
        ready: AtomicUsize::new(0),
        good_open: AtomicUsize::new(0),
        hostile_open: AtomicUsize::new(0),
        running: AtomicUsize::new(opts.threads),
        totals: Mutex::new(Totals::new()),
        sent_total: AtomicU64::new(0),
    };
    // Deal the slots round-robin over the client threads.
    let mut kinds: Vec<Vec<Kind>> = vec![Vec::new(); opts.threads];
    for n in 0..good + hostile {
        let kind = if n < good { Kind::Good } else { Kind::Hostile };
        kinds[n % opts.threads].push(kind);
    }
    let mut peak = server.sample();
    let mut secs = 0.0;
    std::thread::scope(|scope| {
        for (t, k) in kinds.into_iter().enumerate() {
            let ctx = &ctx;
            scope.spawn(move || {
                match Client::new(ctx, k, 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1)) {
                    Ok(client) => client.run(),
                    Err(e) => eprintln!("load: client thread {t}: {e}"),
                }
                ctx.running.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Ramp: every well-behaved client open and echoed once.
        let ramp_started = Instant::now();
        let mut last_line = Instant::now();
        loop {
            let ready = ctx.ready.load(Ordering::Relaxed);
            let failed: u64 = ctx.totals.lock().unwrap().errors.values().sum();
            if ready + failed as usize >= good {
                break;
            }
            if ctx.running.load(Ordering::Relaxed) == 0 {
                break;
            }
            if last_line.elapsed() >= Duration::from_secs(5) {
                eprintln!(
                    "load: {label}: {ready}/{good} connections open and echoed ({:.0} s)",
                    ramp_started.elapsed().as_secs_f64()
                );
                last_line = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = server.sample();
        eprintln!(
            "load: {label}: {good} well-behaved connections open in {:.1} s; server RSS {}, {} threads, {} fds",
            ramp_started.elapsed().as_secs_f64(),
            fmt_mib(s.rss_kib),
            s.threads,
            s.fds
        );
        peak = max_sample(peak, s);
        // Run.
        ctx.phase.store(RUN, Ordering::Relaxed);
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut last_messages = 0u64;
        while started.elapsed() < run_for {
            std::thread::sleep(
                Duration::from_millis(100).min(run_for.saturating_sub(started.elapsed())),
            );
            if last_report.elapsed() >= Duration::from_secs(opts.report_secs) {
                let s = server.sample();
                peak = max_sample(peak, s);
                let mut t = ctx.totals.lock().unwrap();
                let window = std::mem::replace(&mut t.window, Hist::new());
                let rate =
                    (t.messages - last_messages) as f64 / last_report.elapsed().as_secs_f64();
                last_messages = t.messages;
                let errors: u64 = t.errors.values().sum();
                drop(t);
                eprintln!(
                    "load: t={:>4.0}s  open {} + {} hostile  {:>8.0} msg/s  p50 {}  p99 {}  max {}  | server RSS {}  threads {}  fds {}  | errors {}",
                    started.elapsed().as_secs_f64(),
                    ctx.good_open.load(Ordering::Relaxed),
                    ctx.hostile_open.load(Ordering::Relaxed),
                    rate,
                    fmt_us(window.quantile(0.5)),
                    fmt_us(window.quantile(0.99)),
                    fmt_us(window.max),
                    fmt_mib(s.rss_kib),
                    s.threads,
                    s.fds,
                    errors
                );
                last_report = Instant::now();
            }
        }
        secs = started.elapsed().as_secs_f64();
        peak = max_sample(peak, server.sample());
        ctx.phase.store(STOP, Ordering::Relaxed);
    });
    let totals = ctx.totals.into_inner().unwrap();
    Phase {
        totals,
        secs,
        peak,
        good,
    }
}

fn max_sample(a: Sample, b: Sample) -> Sample {
    Sample {
        rss_kib: a.rss_kib.max(b.rss_kib),
        threads: a.threads.max(b.threads),
        fds: a.fds.max(b.fds),
    }
}

/// Waits (up to `within`) until the server's descriptors and threads are at most `baseline`'s.
fn settle(server: &ServerProc, baseline: Sample, within: Duration) -> Sample {
    let until = Instant::now() + within;
    loop {
        let s = server.sample();
        if (s.fds <= baseline.fds && s.threads <= baseline.threads) || Instant::now() >= until {
            // Let memory settle a moment too (freed buffers, exited lingers).
            std::thread::sleep(Duration::from_millis(500));
            return server.sample();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(opts: &Options) -> Result<bool, String> {
    let nofile = raise_nofile();
    let hostile = opts.hostile_slots();
    let good = opts.conns - hostile;
    let need = opts.conns as u64 + 256;
    if nofile < need {
        return Err(format!(
            "RLIMIT_NOFILE is {nofile}; {need} descriptors are needed for {} connections",
            opts.conns
        ));
    }
    let bin = match &opts.bin {
        Some(b) => b.clone(),
        None => build_server()?,
    };
    let threads = opts.conns + opts.conns / 10 + 64;
    let mut server = ServerProc::start(&bin, threads, &opts.server_args)?;
    let machine = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "load: server pid {} on {} (--threads {}), {} connections ({good} well-behaved, {hostile} hostile slots), {} s, sizes {}-{} B, think {} ms mean, {} client threads; load average {}",
        server.pid,
        server.addr,
        server.threads_flag,
        opts.conns,
        opts.secs,
        opts.min_size,
        opts.max_size,
        opts.think_ms,
        opts.threads,
        machine.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    std::thread::sleep(Duration::from_millis(300));
    let cold = server.sample();
    let mut warm_errors = 0;
    let baseline = if opts.warmup {
        let w = drive(
            opts,
            &server,
            opts.conns,
            0,
            Duration::ZERO,
            true,
            "warm-up",
        );
        warm_errors = w.totals.errors.values().sum::<u64>();
        let mut base = settle(&server, cold, Duration::from_secs(30));
        let warm_secs = opts
            .warmup_secs
            .unwrap_or((opts.secs / 10).clamp(5, 60))
            .min(opts.secs);
        if warm_secs > 0 {
            eprintln!("load: warm-up soak: the same mix for {warm_secs} s");
            let w2 = drive(
                opts,
                &server,
                good,
                hostile,
                Duration::from_secs(warm_secs),
                false,
                "warm-up soak",
            );
            warm_errors += w2.totals.errors.values().sum::<u64>();
            base = settle(&server, base, Duration::from_secs(30));
        }
        if warm_errors > 0 {
            eprintln!("load: {warm_errors} well-behaved errors during the warm-up");
        }
        base
    } else {
        cold
    };
    eprintln!(
        "load: baseline RSS {}, {} threads, {} fds (cold: {}, {}, {})",
        fmt_mib(baseline.rss_kib),
        baseline.threads,
        baseline.fds,
        fmt_mib(cold.rss_kib),
        cold.threads,
        cold.fds
    );
    let soak = drive(
        opts,
        &server,
        good,
        hostile,
        Duration::from_secs(opts.secs),
        false,
        "soak",
    );
    let after = settle(&server, baseline, Duration::from_secs(30));
    let log = server
        .log
        .kinds
        .lock()
        .map(|k| k.clone())
        .unwrap_or_default();
    let last_errors: Vec<String> = server
        .log
        .last_errors
        .lock()
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    let mut paused = None;
    if opts.pause_after > 0 {
        eprintln!(
            "load: pausing {} s before stopping server pid {} (attach a debugger or profiler now)",
            opts.pause_after, server.pid
        );
        std::thread::sleep(Duration::from_secs(opts.pause_after));
        paused = Some(server.sample());
    }
    let exit = server.stop();

    // Report.
    let t = &soak.totals;
    let errors: u64 = t.errors.values().sum();
    println!();
    println!(
        "hydrogen-ws load: {} connections ({} well-behaved, {hostile} hostile slots), {:.0} s, sizes {}-{} B, think {} ms",
        opts.conns, soak.good, soak.secs, opts.min_size, opts.max_size, opts.think_ms
    );
    println!(
        "well-behaved: {} messages echoed and checked ({:.0}/s), {:.1} MiB each way, {} clean closes",
        t.messages,
        t.messages as f64 / soak.secs.max(0.001),
        t.bytes as f64 / (1 << 20) as f64,
        t.closed_clean
    );
    println!(
        "latency (write -> echo): p50 {}  p90 {}  p99 {}  max {}",
        fmt_us(t.hist.quantile(0.5)),
        fmt_us(t.hist.quantile(0.9)),
        fmt_us(t.hist.quantile(0.99)),
        fmt_us(t.hist.max)
    );
    if errors == 0 {
        println!("errors (well-behaved): none");
    } else {
        println!("errors (well-behaved): {errors}");
        for (k, v) in &t.errors {
            println!("  {v:>8}  {k}");
        }
    }
    if !t.hostile.is_empty() {
        println!(
            "hostile attacks: attempts / expected end / cut short by the end of the run / other"
        );
        for (k, v) in &t.hostile {
            let other: Vec<String> = v.other.iter().map(|(r, n)| format!("{n} {r}")).collect();
            let others: u64 = v.other.values().sum();
            let other = if other.is_empty() {
                "-".to_string()
            } else {
                other.join(", ")
            };
            println!(
                "  {:<40} {:>7} {:>7} {:>5}  {other}",
                k,
                v.attempts,
                v.expected,
                v.attempts.saturating_sub(v.expected + others),
            );
        }
    }
    println!("server log lines: {log:?}");
    for l in &last_errors {
        println!("  {l}");
    }
    println!();
    println!("| server | cold | baseline (after warm-up) | peak during soak | after soak |");
    println!("|---|---|---|---|---|");
    println!(
        "| RSS | {} | {} | {} | {} |",
        fmt_mib(cold.rss_kib),
        fmt_mib(baseline.rss_kib),
        fmt_mib(soak.peak.rss_kib),
        fmt_mib(after.rss_kib)
    );
    println!(
        "| threads | {} | {} | {} | {} |",
        cold.threads, baseline.threads, soak.peak.threads, after.threads
    );
    println!(
        "| descriptors | {} | {} | {} | {} |",
        cold.fds, baseline.fds, soak.peak.fds, after.fds
    );
    println!(
        "RSS after the soak - baseline: {:+.1} MiB",
        (after.rss_kib as f64 - baseline.rss_kib as f64) / 1024.0
    );
    if let Some(p) = paused {
        println!(
            "after the {} s pause: RSS {}, {} threads, {} fds",
            opts.pause_after,
            fmt_mib(p.rss_kib),
            p.threads,
            p.fds
        );
    }
    println!("server exit: {exit:?}");
    let back = after.fds <= baseline.fds && after.threads <= baseline.threads;
    let pass = errors == 0 && warm_errors == 0 && back;
    println!(
        "RESULT: {} (well-behaved errors {errors}, descriptors and threads {} baseline)",
        if pass { "PASS" } else { "FAIL" },
        if back { "back at" } else { "NOT back at" }
    );
    Ok(pass)
}
