//! Shutdown latency of the `hydrogen-ws` binary, against a libwebsockets baseline when one is installed.
//!
//! For each point (variant `idle` or `busy`, N open WebSocket connections) the bench starts the server
//! in echo mode, opens N client connections over loopback, sends SIGTERM and measures:
//!
//! - **exit**: signal -> the server process has exited (reaped);
//! - **last close**: signal -> the last client saw the end of its connection (the close frame, or the
//!   EOF / reset when no close frame came);
//! - **outcomes**: per client, close frame with 1001 / close frame with another code / bare EOF /
//!   reset / other error / nothing before the timeout.
//!
//! Clients behave like browsers: they answer the server's close frame with their own, wait for the
//! server to close the TCP connection, then close their socket at once.
//!
//! hydrogen-ws runs as `hydrogen-ws --listen 127.0.0.1:0 --mode echo --threads N+16 --log-level info
//! --shutdown-timeout 2s` (`info` so that its own shutdown report line is printed and shown here).
//!
//! In `busy` mode every client (at most 1000 of them) keeps a few small masked text messages in flight
//! and reads the echoes while the signal lands. Each point runs `HYDROGEN_BENCH_RUNS` times (default 5).
//!
//! A `floor` row shows a bare thread-per-connection process (this bench re-run with
//! `HYDROGEN_BENCH_ROLE=floor`) that answers the upgrade and, on SIGTERM, just exits: no close frames,
//! no join. Its exit time is what the kernel needs to tear N threads and sockets down, the floor under
//! any blocking thread-per-connection server; `HYDROGEN_BENCH_FLOOR=0` leaves it out.
//!
//! The baseline is `benches/lws/echo.c`, a minimal libwebsockets echo server, in two rows: with the
//! usual teardown (`libwebsockets`: `lws_context_destroy` after the service loop, which tells no client
//! anything) and with the polite one (`lws polite`: 1001 to every client from its writeable callback,
//! the service loop run until every connection has closed, then `lws_context_destroy`: the same work
//! hydrogen-ws does). It is built with `cc` when `pkg-config --exists libwebsockets` succeeds
//! (`apt-get install libwebsockets-dev pkg-config`); `HYDROGEN_BENCH_LWS=0` leaves both rows out.
//!
//! `HYDROGEN_BENCH_VARIANTS=idle` (or `busy`) measures one variant; `HYDROGEN_BENCH_COMPARE_BIN=PATH`
//! adds a `compare` row for another hydrogen-ws binary (an A/B run of a change, alternating with ours);
//! `HYDROGEN_BENCH_PAUSE_MS=N` pauses N ms before each signal and says so on stderr (time to attach a
//! profiler).
//!
//! ```text
//! cargo bench --bench shutdown
//! HYDROGEN_BENCH_CONNS=1,100 HYDROGEN_BENCH_RUNS=3 cargo bench --bench shutdown
//! ```
//!
//! Every wait is bounded: a server that has not exited 10 s after the signal is killed (and reported).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

mod common;

/// Connection counts measured unless `HYDROGEN_BENCH_CONNS` says otherwise.
const DEFAULT_CONNS: &[usize] = &[0, 1, 100, 1000, 10_000];
/// Repetitions of every point unless `HYDROGEN_BENCH_RUNS` says otherwise.
const DEFAULT_RUNS: usize = 5;
/// In `busy` mode at most this many clients send messages.
const BUSY_MAX: usize = 1000;
/// Messages each busy client keeps in flight.
const IN_FLIGHT: usize = 4;
/// The payload of every busy message (32 bytes of text).
const MESSAGE: &[u8] = b"hydrogen-ws shutdown bench ping!";
/// Threads opening the client connections.
const CONNECT_THREADS: usize = 4;
/// Threads watching the open connections with epoll (and driving the busy ones).
const WATCHERS: usize = 2;

/// From spawn to the server's readiness line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP connect, and the upgrade response after it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Busy mode: until every busy client has had an echo.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Busy mode: traffic flowing before the signal.
const WARMUP: Duration = Duration::from_millis(100);
/// Signal -> exit, after which the server gets SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Signal -> a client's connection has ended, after which it counts as `none`.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGKILL -> reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The RFC 6455 sample key and its accept value.
const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const EXPECTED_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const GOING_AWAY: u16 = 1001;

fn main() {
    if std::env::var("HYDROGEN_BENCH_ROLE").as_deref() == Ok("floor") {
        floor_server();
    }
    let conns = env_list("HYDROGEN_BENCH_CONNS").unwrap_or_else(|| DEFAULT_CONNS.to_vec());
    let runs = env_list("HYDROGEN_BENCH_RUNS")
        .and_then(|v| v.first().copied())
        .filter(|&r| r > 0)
        .unwrap_or(DEFAULT_RUNS);

    let nofile = raise_nofile_limit();
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = target_dir(&manifest_dir);

    let mut servers = Vec::new();
    match build_hydrogen(&manifest_dir, &target_dir) {
        Ok(bin) => servers.push(Server {
            kind: Kind::Hydrogen,
            bin,
        }),
        Err(e) => eprintln!("shutdown bench: hydrogen-ws is not measured: {e}"),
    }
    if std::env::var("HYDROGEN_BENCH_FLOOR").as_deref() != Ok("0") {
        match std::env::current_exe() {
            Ok(bin) => servers.push(Server {
                kind: Kind::Floor,
                bin,
            }),
            Err(e) => eprintln!("shutdown bench: no floor row: {e}"),
        }
    }
    if let Some(bin) = std::env::var_os("HYDROGEN_BENCH_COMPARE_BIN") {
        servers.push(Server {
            kind: Kind::Compare,
            bin: PathBuf::from(bin),
        });
    }
    let mut baseline_note = None;
    let lws = if std::env::var("HYDROGEN_BENCH_LWS").as_deref() == Ok("0") {
        Ok(None)
    } else {
        build_lws(&manifest_dir, &target_dir)
    };
    match lws {
        Ok(Some(bin)) => {
            servers.push(Server {
                kind: Kind::Lws,
                bin: bin.clone(),
            });
            servers.push(Server {
                kind: Kind::LwsPolite,
                bin,
            });
        }
        Ok(None) => {
            baseline_note = Some(
                "libwebsockets baseline skipped: `pkg-config --exists libwebsockets` failed \
                 (install it with `apt-get install libwebsockets-dev pkg-config`)"
                    .to_string(),
            )
        }
        Err(e) => baseline_note = Some(format!("libwebsockets baseline skipped: {e}")),
    }
    if let Some(note) = &baseline_note {
        eprintln!("shutdown bench: {note}");
    }
    if servers.is_empty() {
        eprintln!("shutdown bench: no server to measure");
        std::process::exit(1);
    }
    if let Some(&max) = conns.iter().max() {
        if (max as libc::rlim_t) + 100 > nofile {
            eprintln!(
                "shutdown bench: warning: RLIMIT_NOFILE is {nofile}, {max} connections may not fit"
            );
        }
    }

    let variants: Vec<Variant> = match std::env::var("HYDROGEN_BENCH_VARIANTS") {
        Ok(list) => [Variant::Idle, Variant::Busy]
            .into_iter()
            .filter(|v| list.split(',').any(|w| w.trim() == v.name()))
            .collect(),
        Err(_) => vec![Variant::Idle, Variant::Busy],
    };
    let mut points = Vec::new();
    for &variant in &variants {
        for &n in &conns {
            // Runs alternate between the servers, so a noisy spell on the machine hits them all alike.
            let mut outcomes: Vec<(Vec<RunResult>, Vec<String>)> =
                servers.iter().map(|_| (Vec::new(), Vec::new())).collect();
            for run in 1..=runs {
                for (server, (results, errors)) in servers.iter().zip(outcomes.iter_mut()) {
                    match run_once(server, variant, n) {
                        Ok(r) => {
                            eprintln!(
                                "{:<5} {:<13} {:>6} conns  run {run}/{runs}: exit {} ms, last close {} ms, \
                                 1001 {}/{n}{}",
                                variant.name(),
                                server.kind.name(),
                                n,
                                fmt_ms(r.exit),
                                r.last_end.map_or("-".into(), fmt_ms),
                                r.counts.going_away,
                                if r.echoes > 0 {
                                    format!(", {} echoes before the signal", r.echoes)
                                } else {
                                    String::new()
                                }
                            );
                            results.push(r);
                        }
                        Err(e) => {
                            eprintln!(
                                "{:<5} {:<13} {:>6} conns  run {run}/{runs}: FAILED: {e}",
                                variant.name(),
                                server.kind.name(),
                                n
                            );
                            errors.push(e);
                        }
                    }
                }
            }
            for (server, (results, errors)) in servers.iter().zip(outcomes) {
                points.push(Point {
                    variant,
                    kind: server.kind,
                    conns: n,
                    results,
                    errors,
                });
            }
        }
    }

    print_table(&points, runs, baseline_note.as_deref());
}

// ---------------------------------------------------------------------------------------------------
// Servers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hydrogen,
    /// Another build of hydrogen-ws (`HYDROGEN_BENCH_COMPARE_BIN`), measured in the same run for an A/B
    /// comparison of a change.
    Compare,
    Lws,
    /// libwebsockets telling every client first (1001 from the writeable callback, then waiting for the
    /// closes), then `lws_context_destroy`: the same work hydrogen-ws does.
    LwsPolite,
    /// A bare thread-per-connection process that exits on SIGTERM without a word to anyone: what the
    /// kernel alone needs to tear down N threads and sockets, the floor under any blocking design.
    Floor,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hydrogen => "hydrogen-ws",
            Kind::Compare => "compare",
            Kind::Lws => "libwebsockets",
            Kind::LwsPolite => "lws polite",
            Kind::Floor => "floor",
        }
    }
}

/// The `floor` row's server (this bench binary re-run with `HYDROGEN_BENCH_ROLE=floor THREADS`): one
/// blocked thread per connection like hydrogen-ws, answering the upgrade with a bare 101 and then only
/// reading; SIGTERM ends the process with `exit(0)` at once, no close frames, no join.
fn floor_server() -> ! {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    let mut signals = match signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("floor: signals: {e}");
            std::process::exit(1);
        }
    };
    let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("floor: bind: {e}");
            std::process::exit(1);
        }
    };
    let (tx, rx) = crossbeam_channel::bounded::<std::net::TcpStream>(threads);
    for _ in 0..threads {
        let rx = rx.clone();
        let spawned = thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                for mut stream in rx.iter() {
                    if common::bare_upgrade(&mut stream).is_err() {
                        continue;
                    }
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                }
            });
        if let Err(e) = spawned {
            eprintln!("floor: spawn: {e}");
            std::process::exit(1);
        }
    }
    let port = listener.local_addr().map_or(0, |a| a.port());
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = tx.send(stream);
        }
    });
    eprintln!("listening on ws://127.0.0.1:{port}");
    let _ = signals.forever().next();
    std::process::exit(0);
}

struct Server {
    kind: Kind,
    bin: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Idle,
    Busy,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Idle => "idle",
            Variant::Busy => "busy",
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (the servers inherit it) and returns it.
fn raise_nofile_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            } else {
                eprintln!(
                    "shutdown bench: cannot raise RLIMIT_NOFILE: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
    lim.rlim_cur
}

fn target_dir(manifest_dir: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir()
                    .unwrap_or_else(|_| manifest_dir.to_path_buf())
                    .join(dir)
            }
        }
        None => manifest_dir.join("target"),
    }
}

/// `cargo build --release --bin hydrogen-ws` (a no-op when it is fresh); returns the binary.
fn build_hydrogen(manifest_dir: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let bin = target_dir.join("release").join("hydrogen-ws");
    let status = Command::new(&cargo)
        .args(["build", "--quiet", "--release", "--bin", "hydrogen-ws"])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(bin),
        Ok(s) if bin.exists() => {
            eprintln!(
                "shutdown bench: warning: cargo build failed ({s}); using the existing {}",
                bin.display()
            );
            Ok(bin)
        }
        Ok(s) => Err(format!(
            "cargo build --release --bin hydrogen-ws failed ({s})"
        )),
        Err(e) if bin.exists() => {
            eprintln!(
                "shutdown bench: warning: cannot run cargo ({e}); using the existing {}",
                bin.display()
            );
            Ok(bin)
        }
        Err(e) => Err(format!("cannot run cargo: {e}")),
    }
}

/// Compiles `benches/lws/echo.c` when pkg-config knows libwebsockets; `Ok(None)` when it does not.
fn build_lws(manifest_dir: &Path, target_dir: &Path) -> Result<Option<PathBuf>, String> {
    let exists = Command::new("pkg-config")
        .args(["--exists", "libwebsockets"])
        .stdin(Stdio::null())
        .status();
    if !matches!(exists, Ok(s) if s.success()) {
        return Ok(None);
    }
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libwebsockets"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("pkg-config: {e}"))?;
    if !flags.status.success() {
        return Err("pkg-config --cflags --libs libwebsockets failed".into());
    }
    let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
    let source = manifest_dir.join("benches").join("lws").join("echo.c");
    let out_dir = target_dir.join("lws-echo");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let bin = out_dir.join("echo");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let output = Command::new(&cc)
        .args(["-O2", "-Wall", "-o"])
        .arg(&bin)
        .arg(&source)
        .args(flags.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cc.to_string_lossy()))?;
    if !output.status.success() {
        return Err(format!(
            "compiling {} failed: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Some(bin))
}

/// The server's stderr, drained by a thread for the whole life of the process.
#[derive(Default)]
struct StderrLog {
    tail: VecDeque<String>,
    /// hydrogen-ws's own shutdown report line.
    report: Option<String>,
}

const STDERR_TAIL: usize = 32;

/// A started server process. Dropping it kills and reaps the process unless it was already reaped.
struct Running {
    pid: libc::pid_t,
    port: u16,
    exited: Receiver<(Instant, io::Result<ExitStatus>)>,
    reaped: bool,
    log: Arc<Mutex<StderrLog>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
}

impl Running {
    fn start(server: &Server, conns: usize) -> Result<Running, String> {
        let mut cmd = Command::new(&server.bin);
        let lws_port = match server.kind {
            Kind::Hydrogen | Kind::Compare => {
                cmd.args([
                    "--listen",
                    "127.0.0.1:0",
                    "--mode",
                    "echo",
                    "--threads",
                    // Never below the default capacity, so the 0-connection row is the default server.
                    &(conns + 16).max(256).to_string(),
                    // `info`, not `warn`: the shutdown report is logged at info level.
                    "--log-level",
                    "info",
                    "--shutdown-timeout",
                    "2s",
                ]);
                None
            }
            Kind::Lws | Kind::LwsPolite => {
                let port = free_port()?;
                cmd.arg(port.to_string());
                if server.kind == Kind::LwsPolite {
                    cmd.arg("polite");
                }
                Some(port)
            }
            Kind::Floor => {
                cmd.env("HYDROGEN_BENCH_ROLE", "floor")
                    .arg((conns + 16).to_string());
                None
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server.bin.display()))?;
        let pid = child.id() as libc::pid_t;
        let stderr = child.stderr.take();

        let (exit_tx, exited) = mpsc::channel();
        thread::spawn(move || {
            let status = child.wait();
            let _ = exit_tx.send((Instant::now(), status));
        });

        let log = Arc::new(Mutex::new(StderrLog::default()));
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let stderr_thread = stderr.map(|stderr| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut ready_tx = Some(ready_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("listening") {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(line.clone());
                        }
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if line.contains("INFO  shutdown: connections=") {
                        log.report = Some(line.clone());
                    }
                    if log.tail.len() == STDERR_TAIL {
                        log.tail.pop_front();
                    }
                    log.tail.push_back(line);
                }
            })
        });

        let mut running = Running {
            pid,
            port: 0,
            exited,
            reaped: false,
            log,
            stderr_thread,
        };
        let line = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no readiness line within {START_TIMEOUT:?}; stderr: {}",
                    running.tail()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = running.kill();
                return Err(format!(
                    "the server exited before it was ready; stderr: {}",
                    running.tail()
                ));
            }
        };
        running.port = match lws_port {
            Some(port) => port,
            None => line
                .rsplit(':')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| format!("cannot read the port from {line:?}"))?,
        };
        Ok(running)
    }

    /// SIGKILL, then wait (bounded) for the reaper.
    fn kill(&mut self) -> Option<Instant> {
        if self.reaped {
            return None;
        }
        // SAFETY: plain kill(2) on our own child, which is not reaped yet (its reaper has not reported).
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
        let at = self
            .exited
            .recv_timeout(REAP_TIMEOUT)
            .ok()
            .map(|(at, _)| at);
        self.reaped = true;
        at
    }

    fn tail(&mut self) -> String {
        if self.reaped {
            if let Some(t) = self.stderr_thread.take() {
                let _ = t.join();
            }
        }
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.tail.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago (for the lws server, which takes its port on the command line).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// One run

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// A close frame with 1001 Going Away.
    going_away: usize,
    /// A close frame with another code.
    other_code: usize,
    /// The connection ended (FIN) without a close frame.
    eof: usize,
    /// ECONNRESET without a close frame.
    reset: usize,
    /// Another error, a malformed frame, or an end before the signal.
    error: usize,
    /// Nothing within the watch timeout.
    none: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.going_away += o.going_away;
        self.other_code += o.other_code;
        self.eof += o.eof;
        self.reset += o.reset;
        self.error += o.error;
        self.none += o.none;
    }
}

struct RunResult {
    /// Signal -> reaped.
    exit: Duration,
    /// SIGKILL was needed.
    killed: bool,
    status: Option<ExitStatus>,
    /// Signal -> the last client saw its connection end (`None`: some client saw nothing).
    last_end: Option<Duration>,
    counts: Counts,
    /// Echoes the busy clients read before the signal.
    echoes: u64,
    /// Connections that ended before the signal.
    early: usize,
    other_codes: Vec<u16>,
    report: Option<String>,
}

fn run_once(server: &Server, variant: Variant, n: usize) -> Result<RunResult, String> {
    let mut running = Running::start(server, n)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, running.port));
    let streams = open_clients(addr, n)?;

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
                "shutdown bench: warning: only {warmed} of {busy} busy clients had an echo after {WARMUP_TIMEOUT:?}"
            );
        }
        thread::sleep(WARMUP);
    }

    // For profiling the shutdown alone: a pause announced on stderr, in which to start a profiler.
    if let Some(ms) = std::env::var("HYDROGEN_BENCH_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        eprintln!("shutdown bench: SIGTERM in {ms} ms");
        thread::sleep(Duration::from_millis(ms));
    }
    // The signal.
    let signal_at = Instant::now();
    let _ = shared.signal_at.set(signal_at);
    // SAFETY: kill(2) on our own child, still unreaped (the reaper has not reported).
    if unsafe { libc::kill(running.pid, libc::SIGTERM) } != 0 {
        return Err(format!("kill(SIGTERM): {}", io::Error::last_os_error()));
    }

    let (exit_at, killed, status) = match running.exited.recv_timeout(EXIT_TIMEOUT) {
        Ok((at, status)) => {
            running.reaped = true;
            (at, false, status.ok())
        }
        Err(_) => {
            let at = running.kill().unwrap_or_else(Instant::now);
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
    let report = {
        running.tail();
        let log = running.log.lock().unwrap_or_else(|e| e.into_inner());
        log.report.clone()
    };
    Ok(RunResult {
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
type Opened = (TcpStream, Vec<u8>);

fn open_clients(addr: SocketAddr, n: usize) -> Result<Vec<Opened>, String> {
    let threads = CONNECT_THREADS.min(n).max(1);
    let mut slots: Vec<Option<Opened>> = (0..n).map(|_| None).collect();
    let results: Vec<Result<Vec<(usize, Opened)>, String>> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in (t..n).step_by(threads) {
                        let opened = connect(addr).map_err(|e| format!("connection {i}: {e}"))?;
                        mine.push((i, opened));
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("connect thread panicked".into()))
            })
            .collect()
    });
    for r in results {
        for (i, opened) in r? {
            slots[i] = Some(opened);
        }
    }
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| "a connection is missing".to_string()))
        .collect()
}

/// One client: TCP connect, upgrade request, 101 with the right accept value.
fn connect(addr: SocketAddr) -> Result<Opened, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {CLIENT_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the upgrade request: {e}"))?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 8192 || Instant::now() > deadline {
            return Err("no complete response head".into());
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "connection closed during the handshake after {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the upgrade response: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.1 101") {
        return Err(format!("expected 101, got {status_line:?}"));
    }
    let accept_ok = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == EXPECTED_ACCEPT
        })
    });
    if !accept_ok {
        return Err(format!("wrong or missing Sec-WebSocket-Accept in {head:?}"));
    }
    Ok((stream, buf[head_end..].to_vec()))
}

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
    mask_seed: u32,
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
        let seed = stream.as_raw_fd() as u32;
        Ok(Client {
            stream: Some(stream),
            input: leftover,
            output: VecDeque::new(),
            written: 0,
            retry: false,
            busy,
            echoes: 0,
            mask_seed: seed.wrapping_mul(0x9e37_79b9) | 1,
            closed: false,
            end: None,
            done: false,
        })
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks only need to vary, not to be secret, here.
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_le_bytes()
    }

    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.next_mask();
        let mut frame = Vec::with_capacity(6 + payload.len());
        push_masked_frame(&mut frame, opcode, mask, payload);
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
            let frame = match parse_server_frame(&self.input[pos..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(()) => {
                    // Not a frame a server may send: the outcome is an error, whatever follows.
                    self.finish(Outcome::Error);
                    return;
                }
            };
            let payload = pos + frame.payload_start..pos + frame.end;
            match frame.opcode {
                0x0..=0x2 if !self.closed && self.busy => {
                    self.echoes += 1;
                    if self.echoes == 1 {
                        shared.warmed.fetch_add(1, Ordering::Relaxed);
                    }
                    if shared.signal_at.get().is_none() {
                        shared.echoes_before.fetch_add(1, Ordering::Relaxed);
                    }
                    // Keep IN_FLIGHT messages outstanding.
                    self.queue_frame(0x1, MESSAGE);
                }
                0x8 if !self.closed => {
                    let body = &self.input[payload];
                    let code = if body.len() >= 2 {
                        u16::from_be_bytes([body[0], body[1]])
                    } else {
                        1005
                    };
                    self.closed = true;
                    self.end = Some((Instant::now(), Outcome::Close(code)));
                    // Answer the close as a client should, echoing the code, and send nothing more.
                    let reply = if body.len() >= 2 {
                        [body[0], body[1]]
                    } else {
                        [0x03, 0xe8]
                    };
                    // Keep only a frame already partly written (it must be finished first).
                    self.output.truncate(usize::from(self.written > 0));
                    self.queue_frame(0x8, &reply);
                }
                0x9 if !self.closed => {
                    let body = self.input[payload].to_vec();
                    self.queue_frame(0xA, &body);
                }
                _ => {}
            }
            pos += frame.end;
        }
        self.input.drain(..pos);
    }
}

struct ServerFrame {
    opcode: u8,
    payload_start: usize,
    end: usize,
}

/// Parses the server frame at the start of `buf`: `Ok(None)` until it is complete, `Err` for a masked
/// frame or an unknown opcode.
fn parse_server_frame(buf: &[u8]) -> Result<Option<ServerFrame>, ()> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    if !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) || buf[1] & 0x80 != 0 {
        return Err(());
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return Ok(None),
        l => (u64::from(l), 2),
    };
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(header))
        .ok_or(())?;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(ServerFrame {
        opcode,
        payload_start: header,
        end,
    }))
}

/// A final client frame (payload under 126 bytes), masked.
fn push_masked_frame(out: &mut Vec<u8>, opcode: u8, mask: [u8; 4], payload: &[u8]) {
    debug_assert!(payload.len() < 126);
    out.push(0x80 | opcode);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
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
                c.queue_frame(0x1, MESSAGE);
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

// ---------------------------------------------------------------------------------------------------
// Report

struct Point {
    variant: Variant,
    kind: Kind,
    conns: usize,
    results: Vec<RunResult>,
    errors: Vec<String>,
}

struct Stat {
    med: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Option<Stat> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let med = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some(Stat {
        med,
        min: v[0],
        max: v[v.len() - 1],
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(d: Duration) -> String {
    fmt_f(ms(d))
}

fn fmt_f(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn fmt_stat(s: &Option<Stat>) -> String {
    match s {
        Some(s) => format!(
            "{:>8} {:>8} {:>8}",
            fmt_f(s.med),
            fmt_f(s.min),
            fmt_f(s.max)
        ),
        None => format!("{:>8} {:>8} {:>8}", "-", "-", "-"),
    }
}

fn print_table(points: &[Point], runs: usize, baseline_note: Option<&str>) {
    println!();
    println!(
        "shutdown latency: SIGTERM -> process exit, and SIGTERM -> the last client saw its connection end"
    );
    println!(
        "{runs} run(s) per point; busy = min(N, {BUSY_MAX}) clients each keep {IN_FLIGHT} messages of {} bytes in flight; \
         outcomes are totals over all runs",
        MESSAGE.len()
    );
    if let Some(note) = baseline_note {
        println!("{note}");
    }
    println!();
    println!(
        "{:<7} {:<13} {:>6}   {:^26}   {:^26}   {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  notes",
        "", "", "", "exit ms", "last close ms", "", "other", "", "", "", ""
    );
    println!(
        "{:<7} {:<13} {:>6}   {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}   {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "variant",
        "server",
        "conns",
        "med",
        "min",
        "max",
        "med",
        "min",
        "max",
        "1001",
        "code",
        "eof",
        "reset",
        "error",
        "none"
    );
    for p in points {
        let exit = stat(p.results.iter().map(|r| ms(r.exit)).collect());
        let last = stat(
            p.results
                .iter()
                .filter_map(|r| r.last_end.map(ms))
                .collect(),
        );
        let mut counts = Counts::default();
        let mut notes = Vec::new();
        let mut killed = 0;
        let mut bad_status = Vec::new();
        let mut early = 0;
        let mut no_last = 0;
        let mut codes = Vec::new();
        for r in &p.results {
            counts.add(&r.counts);
            killed += usize::from(r.killed);
            early += r.early;
            no_last += usize::from(r.last_end.is_none());
            if let Some(s) = r.status {
                if !s.success() {
                    bad_status.push(s.to_string());
                }
            }
            codes.extend(r.other_codes.iter().copied());
        }
        if !p.errors.is_empty() {
            notes.push(format!("{} run(s) failed", p.errors.len()));
        }
        if killed > 0 {
            notes.push(format!("SIGKILL after {EXIT_TIMEOUT:?} in {killed} run(s)"));
        }
        if !bad_status.is_empty() {
            bad_status.dedup();
            notes.push(format!("exit: {}", bad_status.join(", ")));
        }
        if early > 0 {
            notes.push(format!("{early} ended before the signal"));
        }
        if no_last > 0 {
            notes.push(format!("{no_last} run(s) with unended clients"));
        }
        if !codes.is_empty() {
            codes.sort_unstable();
            codes.dedup();
            notes.push(format!("codes {codes:?}"));
        }
        println!(
            "{:<7} {:<13} {:>6}   {}   {}   {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  {}",
            p.variant.name(),
            p.kind.name(),
            p.conns,
            fmt_stat(&exit),
            fmt_stat(&last),
            counts.going_away,
            counts.other_code,
            counts.eof,
            counts.reset,
            counts.error,
            counts.none,
            notes.join("; ")
        );
    }

    for baseline in [Kind::Lws, Kind::LwsPolite] {
        print_ratios(points, baseline);
    }

    println!();
    println!(
        "above the floor: hydrogen-ws exit median minus the floor's (a bare thread-per-connection process \
         that just exits), i.e. what the shutdown sequence itself costs:"
    );
    for p in points.iter().filter(|p| p.kind == Kind::Hydrogen) {
        let Some(floor) = points
            .iter()
            .find(|b| b.kind == Kind::Floor && b.variant == p.variant && b.conns == p.conns)
        else {
            continue;
        };
        let med = |pt: &Point| stat(pt.results.iter().map(|r| ms(r.exit)).collect()).map(|s| s.med);
        if let (Some(ours), Some(bare)) = (med(p), med(floor)) {
            println!(
                "  {:<5} {:>6} conns: floor {:>7} ms, hydrogen-ws {:>7} ms, sequence {:>7} ms",
                p.variant.name(),
                p.conns,
                fmt_f(bare),
                fmt_f(ours),
                fmt_f(ours - bare)
            );
        }
    }

    println!();
    println!("hydrogen-ws's own report, last run of each point (and its slowest run, if another):");
    let report = |r: &RunResult| {
        let line = r.report.as_deref().unwrap_or("(no report line)");
        line.strip_prefix("hydrogen-ws INFO  ")
            .unwrap_or(line)
            .to_string()
    };
    for p in points.iter().filter(|p| p.kind == Kind::Hydrogen) {
        let Some(last) = p.results.last() else {
            continue;
        };
        println!(
            "  {:<5} {:>6} last:    {}",
            p.variant.name(),
            p.conns,
            report(last)
        );
        let slowest = p
            .results
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.exit.cmp(&b.1.exit));
        if let Some((i, slow)) = slowest {
            if i + 1 != p.results.len() {
                println!(
                    "  {:<5} {:>6} slowest: {} (exit {} ms)",
                    p.variant.name(),
                    p.conns,
                    report(slow),
                    fmt_ms(slow.exit)
                );
            }
        }
    }

    let failed: Vec<_> = points.iter().filter(|p| !p.errors.is_empty()).collect();
    if !failed.is_empty() {
        println!();
        println!("failed runs:");
        for p in failed {
            for e in &p.errors {
                println!("  {} {} {}: {e}", p.variant.name(), p.kind.name(), p.conns);
            }
        }
    }
}

fn env_list(name: &str) -> Option<Vec<usize>> {
    let text = std::env::var(name).ok()?;
    let list: Vec<usize> = text
        .split(',')
        .filter_map(|s| {
            let s = s.trim().replace('_', "");
            match s.parse() {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    if !s.is_empty() {
                        eprintln!("shutdown bench: ignoring {s:?} in {name}");
                    }
                    None
                }
            }
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

/// One line per hydrogen-ws point: the `baseline` row's medians divided by ours.
fn print_ratios(points: &[Point], baseline: Kind) {
    println!();
    println!(
        "ratios of medians, {} / hydrogen-ws (above 1: hydrogen-ws is faster):",
        baseline.name()
    );
    let mut any = false;
    for p in points.iter().filter(|p| p.kind == Kind::Hydrogen) {
        let Some(base) = points
            .iter()
            .find(|b| b.kind == baseline && b.variant == p.variant && b.conns == p.conns)
        else {
            continue;
        };

        let med = |pt: &Point, f: &dyn Fn(&RunResult) -> Option<f64>| {
            stat(pt.results.iter().filter_map(f).collect()).map(|s| s.med)
        };
        let exit = |r: &RunResult| Some(ms(r.exit));
        let last = |r: &RunResult| r.last_end.map(ms);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("x{}", fmt_f(a / b)),
            _ => "-".into(),
        };
        any = true;
        println!(
            "  {:<5} {:>6} conns: exit {:>7}   last close {:>7}",
            p.variant.name(),
            p.conns,
            ratio(med(base, &exit), med(p, &exit)),
            ratio(med(base, &last), med(p, &last)),
        );
    }
    if !any {
        println!("  (no baseline)");
    }
}
