//! Shutdown latency of the `hydrogen-ws` binary, against a libwebsockets baseline when one is installed.
//!
//! For each point (variant `idle` or `busy`, N open WebSocket connections) the bench starts the server
//! in echo mode, opens N client connections over loopback, sends SIGTERM and measures:
//!
//! - **exit**: signal -> the server process has exited (reaped);
//! - **last close**: signal -> the last client saw the end of its connection (the close frame, or the
//!   EOF / reset when no close frame came);
//! - **server CPU**: the server's CPU time (all threads, user + system) from just before the signal
//!   to its exit (`wait4`), which other load on the machine disturbs less than the two times above;
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

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

#[path = "../support/mod.rs"]
mod support;

mod report;
mod run;
mod servers;

use support::opts;

/// Connection counts measured by default.
const DEFAULT_CONNS: &str = "0,1,100,1000,10000";
/// Runs per point by default.
const DEFAULT_RUNS: usize = 5;
/// At most this many busy clients (the rest of a busy point stays idle).
const BUSY_MAX: usize = 1000;
/// Messages each busy client keeps in flight.
const IN_FLIGHT: usize = 4;
/// What a busy client sends.
const MESSAGE: &[u8] = b"hydrogen-ws shutdown bench ping!";
/// Every wait is bounded: a server that has not exited this long after the signal is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const WHO: &str = "shutdown bench";

fn main() {
    if support::server::role().as_deref() == Some("floor") {
        servers::floor_server();
    }
    let conns: Vec<usize> = opts::or_exit(WHO, opts::list("HYDROGEN_BENCH_CONNS", DEFAULT_CONNS));
    let runs = opts::or_exit(WHO, opts::one("HYDROGEN_BENCH_RUNS", DEFAULT_RUNS));
    let runs = if runs > 0 { runs } else { DEFAULT_RUNS };

    let nofile = support::limits::raise_nofile(WHO);
    let mut servers = Vec::new();
    match support::server::release_binary(WHO) {
        Ok(bin) => servers.push(Server {
            kind: Kind::Hydrogen,
            bin,
        }),
        Err(e) => eprintln!("{WHO}: hydrogen-ws is not measured: {e}"),
    }
    if opts::switch("HYDROGEN_BENCH_FLOOR", true) {
        match std::env::current_exe() {
            Ok(bin) => servers.push(Server {
                kind: Kind::Floor,
                bin,
            }),
            Err(e) => eprintln!("{WHO}: no floor row: {e}"),
        }
    }
    if let Some(bin) = opts::path("HYDROGEN_BENCH_COMPARE_BIN") {
        servers.push(Server {
            kind: Kind::Compare,
            bin,
        });
    }
    let mut baseline_note = None;
    let lws = if opts::switch("HYDROGEN_BENCH_LWS", true) {
        servers::build_lws()
    } else {
        Ok(None)
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
        eprintln!("{WHO}: {note}");
    }
    if servers.is_empty() {
        eprintln!("{WHO}: no server to measure");
        std::process::exit(1);
    }
    if let Some(&max) = conns.iter().max() {
        if (max as u64) + 100 > nofile {
            eprintln!("{WHO}: warning: RLIMIT_NOFILE is {nofile}, {max} connections may not fit");
        }
    }

    let variants: Vec<Variant> = match opts::var("HYDROGEN_BENCH_VARIANTS") {
        Some(list) => [Variant::Idle, Variant::Busy]
            .into_iter()
            .filter(|v| list.split(',').any(|w| w.trim() == v.name()))
            .collect(),
        None => vec![Variant::Idle, Variant::Busy],
    };
    let mut points = Vec::new();
    for &variant in &variants {
        for &n in &conns {
            points.extend(measure_point(&servers, variant, n, runs));
        }
    }

    report::print_table(&points, runs, baseline_note.as_deref());
}

/// Every server at one point, `runs` times. Runs alternate between the servers, so a noisy spell
/// on the machine hits them all alike.
fn measure_point(servers: &[Server], variant: Variant, n: usize, runs: usize) -> Vec<Point> {
    let mut outcomes: Vec<(Vec<RunResult>, Vec<String>)> =
        servers.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for run in 1..=runs {
        for (server, (results, errors)) in servers.iter().zip(outcomes.iter_mut()) {
            match run::run_once(server, variant, n) {
                Ok(r) => {
                    eprintln!(
                        "{:<5} {:<13} {:>6} conns  run {run}/{runs}: exit {} ms, last close {} ms, \
                         1001 {}/{n}, server CPU {} ms{}{}",
                        variant.name(),
                        server.kind.name(),
                        n,
                        report::fmt_ms(r.exit),
                        r.last_end.map_or("-".into(), report::fmt_ms),
                        r.counts.going_away,
                        r.cpu.map_or("-".into(), report::fmt_ms),
                        r.after_report.map_or(String::new(), |d| format!(
                            ", report -> exit {} ms",
                            report::fmt_ms(d)
                        )),
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
    servers
        .iter()
        .zip(outcomes)
        .map(|(server, (results, errors))| Point {
            variant,
            kind: server.kind,
            conns: n,
            results,
            errors,
        })
        .collect()
}

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

/// How the clients saw their connections end, counted.
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
    /// The server's CPU time (user + system, all threads) from just before the signal to its exit:
    /// less sensitive than the wall-clock times to other load on the machine.
    cpu: Option<Duration>,
    /// hydrogen-ws: from its report line (the sequence over) to the process reaped.
    after_report: Option<Duration>,
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

/// One server at one point, over all its runs.
struct Point {
    variant: Variant,
    kind: Kind,
    conns: usize,
    results: Vec<RunResult>,
    errors: Vec<String>,
}
