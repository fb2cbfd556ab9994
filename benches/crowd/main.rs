//! A hostile crowd against the admission stage (issue 18's targets): silent and trickling
//! connections held by the thousand, while a fresh client must still upgrade quickly.
//!
//! (About 750 lines with this header, which documents every knob; the crowd, the probe and the
//! shutdown scenario are in their own files.)
//!
//! ```sh
//! cargo bench --bench crowd
//! HYDROGEN_BENCH_SILENT=500 HYDROGEN_BENCH_TRICKLE=500 HYDROGEN_BENCH_SECS=5 cargo bench --bench crowd
//! ```
//!
//! The server is the release binary (`cargo build --release --bin hydrogen-ws`, see
//! `support::server`) with its default flags but `--mode echo --listen 127.0.0.1:0`. RLIMIT_NOFILE is
//! raised to its hard limit first (the server inherits it).
//!
//! 1. **Quiet reference**: a few fresh clients upgrade and echo with nothing else going on; then the
//!    server's RSS is read (`idle`).
//! 2. **The crowd**: `SILENT` connections that send nothing and `TRICKLE` connections that send one
//!    byte of a request head per second, from `ADDRS` source addresses (127.0.0.2 and up, so that the
//!    per-address limit, 256 by default, is not what stops them: 10,000 over 40 addresses is 250
//!    each). Each is reopened as soon as the server closes it. Two client threads, each an epoll loop
//!    over its share. Once every one has connected (the ramp), the crowd is **held** for `SECS`.
//! 3. **While it is held**: from a quarter of the hold on, a fresh client from 127.0.0.1 connects,
//!    upgrades, echoes one message and closes, `PROBES` times, one every `PROBE_MS`: the upgrade time
//!    (connect to 101) and the echo's round trip go into histograms; any failure is an error. `GET
//!    /health` every second must answer 200. Every second the server's RSS (`/proc/PID/status`) and
//!    `hydrogen_ws_pending_handshakes` (`/metrics`) are read: RSS per pending handshake is
//!    (RSS - idle RSS) / pending, the median over the samples from a quarter of the hold on. The CPU
//!    time (utime + stime) of the `hydrogen-ws-admission` thread over the whole hold, as a share of
//!    one core. At the end, `hydrogen_ws_admission_refusals_total` by reason, and the kernel's
//!    counters of dropped or cookie-answered SYNs over the hold (`/proc/net/netstat`: the whole
//!    network namespace, so other work on the machine counts too).
//! 4. **Shutdown with pending handshakes**: a server with `--threads OPEN+16` (the one departure from
//!    the defaults: one worker per open connection, as in the shutdown bench), `OPEN` idle WebSocket
//!    connections (from 127.0.1.1-8) and either `PENDING` handshakes (a partial request head each,
//!    held open, from 127.0.2.1-8; the run waits until `/metrics` shows them) or none. SIGTERM; the
//!    time until the process is reaped (`support::server`), `RUNS` runs of each alternating, and the
//!    ratio of the medians. Every open client answers the server's close frame; each must have
//!    received 1001.
//!
//! One table: target, measured, pass or fail. The exit status is 1 when a target is missed.
//!
//! | env | default | |
//! |---|---|---|
//! | `HYDROGEN_BENCH_SILENT` | 5000 | silent connections |
//! | `HYDROGEN_BENCH_TRICKLE` | 5000 | trickling connections |
//! | `HYDROGEN_BENCH_SECS` | 20 | the hold, seconds (after the ramp) |
//! | `HYDROGEN_BENCH_ADDRS` | 40 | source addresses of the crowd (1 ..= 250) |
//! | `HYDROGEN_BENCH_CROWD_THREADS` | 2 | client threads of the crowd (1 ..= 8) |
//! | `HYDROGEN_BENCH_PROBES` | 200 | fresh clients during the hold (fewer if the hold ends first) |
//! | `HYDROGEN_BENCH_PROBE_MS` | 50 | time between two fresh clients |
//! | `HYDROGEN_BENCH_SHUTDOWN_OPEN` | 1000 | open connections in the shutdown runs |
//! | `HYDROGEN_BENCH_SHUTDOWN_PENDING` | 1000 | pending handshakes in the shutdown runs (0: skip step 4) |
//! | `HYDROGEN_BENCH_RUNS` | 5 | shutdown runs of each kind |
//!
//! Loopback only. Every wait is bounded: the ramp by 15 s, each probe by 5 s per step, a shutdown by
//! 10 s (then SIGKILL, reported).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[path = "../support/mod.rs"]
mod support;

mod hostile;
mod probe;
mod shutdown;

use support::{opts, proc, rng::Rng, server::ServerProcess, stats};

const WHO: &str = "crowd bench";
/// The ramp (every crowd socket connected once) must end within this.
const RAMP_TIMEOUT: Duration = Duration::from_secs(15);
/// Fresh clients before the crowd (the quiet reference).
const QUIET_PROBES: u64 = 20;
/// Time between two `/health` requests, and between two samples of the server.
const EVERY: Duration = Duration::from_secs(1);

const UPGRADE_P99_MS: f64 = 20.0;
const RSS_PER_PENDING_KIB: f64 = 4.0;
const ADMISSION_CPU_PCT: f64 = 5.0;
const SHUTDOWN_RATIO: f64 = 1.1;
/// Kernel counters (`/proc/net/netstat`) that tell a dropped or cookie-answered SYN.
const NETSTAT: &[&str] = &[
    "ListenOverflows",
    "ListenDrops",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
    "SyncookiesSent",
    "TCPSynRetrans",
];

struct Knobs {
    crowd: hostile::Crowd,
    secs: u64,
    probes: u64,
    probe_every: Duration,
    open: usize,
    pending: usize,
    runs: usize,
}

impl Knobs {
    fn read() -> Result<Knobs, String> {
        let silent = opts::one("HYDROGEN_BENCH_SILENT", 5000usize)?;
        let trickle = opts::one("HYDROGEN_BENCH_TRICKLE", 5000usize)?;
        let addrs = opts::one("HYDROGEN_BENCH_ADDRS", 40usize)?;
        let threads = opts::one("HYDROGEN_BENCH_CROWD_THREADS", 2usize)?;
        if !(1..=250).contains(&addrs) {
            return Err("HYDROGEN_BENCH_ADDRS: 1 ..= 250".into());
        }
        if !(1..=8).contains(&threads) {
            return Err("HYDROGEN_BENCH_CROWD_THREADS: 1 ..= 8".into());
        }
        let secs = opts::one("HYDROGEN_BENCH_SECS", 20u64)?;
        if !(1..=3600).contains(&secs) {
            return Err("HYDROGEN_BENCH_SECS: 1 ..= 3600".into());
        }
        let runs = opts::one("HYDROGEN_BENCH_RUNS", 5usize)?.max(1);
        Ok(Knobs {
            crowd: hostile::Crowd {
                silent,
                trickle,
                addrs,
                threads,
            },
            secs,
            probes: opts::one("HYDROGEN_BENCH_PROBES", 200u64)?,
            probe_every: Duration::from_millis(opts::one("HYDROGEN_BENCH_PROBE_MS", 50u64)?),
            open: opts::one("HYDROGEN_BENCH_SHUTDOWN_OPEN", 1000usize)?,
            pending: opts::one("HYDROGEN_BENCH_SHUTDOWN_PENDING", 1000usize)?,
            runs,
        })
    }
}

fn main() {
    let knobs = opts::or_exit(WHO, Knobs::read());
    let nofile = support::limits::raise_nofile(WHO);
    let need = knobs.crowd.total().max(knobs.open + knobs.pending) as u64 + 256;
    if nofile < need {
        eprintln!("{WHO}: RLIMIT_NOFILE is {nofile}; {need} descriptors are needed");
        std::process::exit(2);
    }
    let bin = opts::or_exit(WHO, support::server::release_binary(WHO));
    let crowd = match crowd_phase(&bin, &knobs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{WHO}: crowd: {e}");
            std::process::exit(1);
        }
    };
    let shut = if knobs.pending > 0 {
        Some(shutdown_phase(&bin, &knobs))
    } else {
        None
    };
    let pass = report(&knobs, &crowd, shut.as_ref());
    if !pass {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------
// The crowd

/// The server's stderr, counted.
#[derive(Default)]
struct Log {
    lines: AtomicU64,
    warn: AtomicU64,
    error: AtomicU64,
    /// "refused NNN" lines, by status.
    refused: Mutex<BTreeMap<u16, u64>>,
    /// The first error lines.
    errors: Mutex<Vec<String>>,
}

impl Log {
    fn line(&self, line: &str) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        if line.contains(" WARN ") {
            self.warn.fetch_add(1, Ordering::Relaxed);
        }
        if line.contains(" ERROR ") {
            self.error.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut e) = self.errors.lock() {
                if e.len() < 5 {
                    e.push(line.to_string());
                }
            }
        }
        if let Some((_, rest)) = line.split_once("refused ") {
            if let Some(status) = rest.get(..3).and_then(|s| s.parse::<u16>().ok()) {
                if let Ok(mut r) = self.refused.lock() {
                    *r.entry(status).or_default() += 1;
                }
            }
        }
    }
}

#[derive(Default)]
struct Probes {
    upgrade: stats::Latencies,
    connect: stats::Latencies,
    echo: stats::Latencies,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// Upgrades over the target: (probe number, time, of which the TCP connect).
    slow: Vec<(u64, Duration, Duration)>,
}

impl Probes {
    fn run(&mut self, addr: std::net::SocketAddr, n: u64, rng: &mut Rng) {
        match probe::probe_once(addr, n, rng) {
            Ok(probe::Times {
                upgrade,
                connect,
                echo,
            }) => {
                self.upgrade.record(upgrade);
                self.connect.record(connect);
                if upgrade.as_secs_f64() * 1e3 > UPGRADE_P99_MS {
                    self.slow.push((n, upgrade, connect));
                }
                self.echo.record(echo);
                self.ok += 1;
            }
            Err(e) => *self.errors.entry(e).or_default() += 1,
        }
    }

    fn attempts(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }
}

/// One reading of the server while the crowd is held.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    pending: u64,
    held: usize,
}

struct CrowdResult {
    quiet: Probes,
    held: Probes,
    health_ok: u64,
    health_bad: BTreeMap<String, u64>,
    health_max: Duration,
    idle_rss_kib: u64,
    samples: Vec<Sample>,
    /// Where the samples used for RSS per pending start.
    settle: Duration,
    ramp: Duration,
    hold: Duration,
    admission_cpu: f64,
    process_cpu: f64,
    refusals: Vec<(String, u64)>,
    refusals_at_start: Vec<(String, u64)>,
    /// Kernel TCP counters over the hold (every process in the namespace).
    netstat: Vec<(String, u64)>,
    totals: hostile::Totals,
    log: Arc<Log>,
}

fn crowd_phase(bin: &std::path::Path, k: &Knobs) -> Result<CrowdResult, String> {
    let log = Arc::new(Log::default());
    let log_w = Arc::clone(&log);
    let mut cmd = Command::new(bin);
    cmd.args(["--mode", "echo", "--listen", "127.0.0.1:0"]);
    let mut server = ServerProcess::start(&mut cmd, Duration::from_secs(30), move |line, _| {
        log_w.line(line)
    })?;
    let (pid, addr) = (server.pid(), server.addr());
    // The thread may be named a moment after the readiness line.
    let found = Instant::now();
    let tid = loop {
        match proc::threads_named(pid, "hydrogen-ws-admission").first() {
            Some(&tid) => break tid,
            None if found.elapsed() < Duration::from_secs(2) => {
                thread::sleep(Duration::from_millis(10))
            }
            None => return Err("no hydrogen-ws-admission thread in /proc".into()),
        }
    };
    eprintln!(
        "{WHO}: server pid {pid} on {addr}, admission thread {tid}; crowd {} silent + {} trickling \
         from {} addresses, {} client threads, hold {} s; load average {}",
        k.crowd.silent,
        k.crowd.trickle,
        k.crowd.addrs,
        k.crowd.threads,
        k.secs,
        proc::load_average()
    );

    let mut rng = Rng::new(0x00c0_ffee);
    let mut quiet = Probes::default();
    for n in 0..QUIET_PROBES {
        quiet.run(addr, n, &mut rng);
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(300));
    let idle_rss_kib = proc::Sample::of(pid).rss_kib;
    let refusals_at_start = probe::admission(addr)?.refusals;

    let crowd = hostile::Running::start(k.crowd, addr)?;
    let ramp_start = Instant::now();
    let total = k.crowd.total();
    while crowd.live.ever.load(Ordering::Relaxed) < total && ramp_start.elapsed() < RAMP_TIMEOUT {
        thread::sleep(Duration::from_millis(20));
    }
    let ramp = ramp_start.elapsed();
    let ever = crowd.live.ever.load(Ordering::Relaxed);
    if ever < total {
        eprintln!("{WHO}: warning: only {ever} of {total} crowd sockets connected within {RAMP_TIMEOUT:?}");
    }
    eprintln!(
        "{WHO}: ramp {:.1} s; holding for {} s",
        ramp.as_secs_f64(),
        k.secs
    );

    // The hold.
    let hold = Duration::from_secs(k.secs);
    let settle = hold / 4;
    let t0 = Instant::now();
    let end = t0 + hold;
    let cpu0 = (proc::thread_cpu_seconds(pid, tid), proc::cpu_seconds(pid));
    let netstat0 = proc::tcp_ext(NETSTAT);
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let (mut ok, mut bad, mut max) = (0u64, BTreeMap::<String, u64>::new(), Duration::ZERO);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let at = Instant::now();
                match probe::http_get(addr, "/health") {
                    Ok((200, _)) => ok += 1,
                    Ok((status, _)) => *bad.entry(format!("answered {status}")).or_default() += 1,
                    Err(e) => *bad.entry(e).or_default() += 1,
                }
                max = max.max(at.elapsed());
                next += EVERY;
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            (ok, bad, max)
        })
    };
    let (probes, every) = (k.probes, k.probe_every);
    let prober = thread::spawn(move || {
        let mut held = Probes::default();
        let mut rng = Rng::new(0x0bad_cafe);
        thread::sleep((t0 + settle).saturating_duration_since(Instant::now()));
        let start = Instant::now();
        for n in 0..probes {
            let at = start + every * n as u32;
            thread::sleep(at.saturating_duration_since(Instant::now()));
            if Instant::now() >= end {
                break;
            }
            held.run(addr, n, &mut rng);
        }
        held
    });
    let mut samples = Vec::new();
    let mut next = Instant::now();
    while Instant::now() < end {
        let rss_kib = proc::Sample::of(pid).rss_kib;
        let pending = probe::admission(addr).map_or(0, |a| a.pending);
        let held = crowd.live.held.load(Ordering::Relaxed);
        let at = t0.elapsed();
        samples.push(Sample {
            at,
            rss_kib,
            pending,
            held,
        });
        if samples.len() % 2 == 1 {
            let cpu = proc::thread_cpu_seconds(pid, tid) - cpu0.0;
            eprintln!(
                "{WHO}: t={:>4.1} s  crowd held {held:>5}  pending {pending:>5}  RSS {:>6.1} MiB  \
                 admission CPU {:>5.1}%",
                at.as_secs_f64(),
                rss_kib as f64 / 1024.0,
                100.0 * cpu / at.as_secs_f64().max(0.001)
            );
        }
        next += EVERY;
        thread::sleep(next.min(end).saturating_duration_since(Instant::now()));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = (proc::thread_cpu_seconds(pid, tid), proc::cpu_seconds(pid));
    let netstat: Vec<(String, u64)> = proc::tcp_ext(NETSTAT)
        .into_iter()
        .zip(netstat0)
        .map(|((k, v1), (_, v0))| (k, v1.saturating_sub(v0)))
        .collect();
    let refusals = probe::admission(addr).map_or_else(|_| Vec::new(), |a| a.refusals);
    stop.store(true, Ordering::SeqCst);
    let held = prober
        .join()
        .map_err(|_| "the probe thread panicked".to_string())?;
    let (health_ok, health_bad, health_max) = health
        .join()
        .map_err(|_| "the health thread panicked".to_string())?;
    let totals = crowd.stop()?;
    let status = server.stop();
    eprintln!("{WHO}: crowd server exit: {status:?}");
    Ok(CrowdResult {
        quiet,
        held,
        health_ok,
        health_bad,
        health_max,
        idle_rss_kib,
        samples,
        settle,
        ramp,
        hold: Duration::from_secs_f64(wall),
        admission_cpu: 100.0 * (cpu1.0 - cpu0.0) / wall,
        process_cpu: 100.0 * (cpu1.1 - cpu0.1) / wall,
        refusals,
        refusals_at_start,
        netstat,
        totals,
        log,
    })
}

// ---------------------------------------------------------------------------------------------------
// Shutdown

struct ShutResult {
    with: Vec<shutdown::Run>,
    without: Vec<shutdown::Run>,
    errors: Vec<String>,
}

fn shutdown_phase(bin: &std::path::Path, k: &Knobs) -> ShutResult {
    let mut out = ShutResult {
        with: Vec::new(),
        without: Vec::new(),
        errors: Vec::new(),
    };
    for run in 1..=k.runs {
        for pending in [0, k.pending] {
            match shutdown::run_once(bin, k.open, pending) {
                Ok(r) => {
                    eprintln!(
                        "{WHO}: shutdown run {run}/{}: {} open + {pending} pending: exit {:.1} ms, \
                         1001 {}/{}{}, {} pending in /metrics before the signal; {}",
                        k.runs,
                        k.open,
                        r.exit.as_secs_f64() * 1e3,
                        r.going_away,
                        r.open,
                        if r.killed { " (KILLED)" } else { "" },
                        r.pending_seen,
                        r.report.as_deref().unwrap_or("no shutdown report line")
                    );
                    if r.report.is_none() || r.going_away < r.open || r.killed {
                        eprintln!(
                            "{WHO}:   exit status {:?}; the server's last lines:",
                            r.status
                        );
                        for l in &r.tail {
                            eprintln!("{WHO}:     {l}");
                        }
                    }
                    if pending == 0 {
                        out.without.push(r);
                    } else {
                        out.with.push(r);
                    }
                }
                Err(e) => {
                    eprintln!("{WHO}: shutdown run {run} ({pending} pending) FAILED: {e}");
                    out.errors.push(format!("{pending} pending: {e}"));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// The report

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn report(k: &Knobs, c: &CrowdResult, shut: Option<&ShutResult>) -> bool {
    let mut rows: Vec<(String, String, bool)> = Vec::new();
    let h = &c.held;

    // Upgrade latency under the crowd.
    let p99 = h.upgrade.quantile(0.99);
    let upgrade_ok = !h.upgrade.is_empty() && p99.as_secs_f64() * 1e3 <= UPGRADE_P99_MS;
    rows.push((
        format!("fresh client upgrade (connect -> 101) p99 <= {UPGRADE_P99_MS} ms"),
        format!(
            "p50 {}  p99 {}  max {}  ({} upgrades; TCP connect alone p99 {}; before the crowd p99 {})",
            ms(h.upgrade.quantile(0.5)),
            ms(p99),
            ms(h.upgrade.max()),
            h.ok,
            ms(h.connect.quantile(0.99)),
            ms(c.quiet.upgrade.quantile(0.99)),
        ),
        upgrade_ok,
    ));
    let errors: u64 = h.errors.values().sum();
    rows.push((
        "fresh client echo works, no error".into(),
        format!(
            "{}/{} echoed, {errors} errors; echo RTT p50 {}  p99 {}  max {}",
            h.ok,
            h.attempts(),
            ms(h.echo.quantile(0.5)),
            ms(h.echo.quantile(0.99)),
            ms(h.echo.max())
        ),
        errors == 0 && h.ok > 0,
    ));
    let health_bad: u64 = c.health_bad.values().sum();
    rows.push((
        "GET /health every second answers 200".into(),
        format!(
            "{}/{} answered 200 (slowest {})",
            c.health_ok,
            c.health_ok + health_bad,
            ms(c.health_max)
        ),
        health_bad == 0 && c.health_ok > 0,
    ));

    // RSS per pending handshake.
    let late: Vec<&Sample> = c
        .samples
        .iter()
        .filter(|s| s.at >= c.settle && s.pending > 0)
        .collect();
    let per = stats::median(
        late.iter()
            .map(|s| (s.rss_kib as f64 - c.idle_rss_kib as f64) / s.pending as f64)
            .collect(),
    );
    let rss_held = stats::median(late.iter().map(|s| s.rss_kib as f64).collect());
    let pending = stats::median(late.iter().map(|s| s.pending as f64).collect());
    rows.push((
        format!("RSS per pending handshake <= {RSS_PER_PENDING_KIB} KiB"),
        match (per, rss_held, pending) {
            (Some(per), Some(rss), Some(pending)) => format!(
                "{per:.2} KiB  (RSS idle {:.1} MiB, held {:.1} MiB, pending {pending:.0}; medians of {} samples)",
                c.idle_rss_kib as f64 / 1024.0,
                rss / 1024.0,
                late.len()
            ),
            _ => "no sample with pending handshakes".into(),
        },
        per.is_some_and(|p| p <= RSS_PER_PENDING_KIB),
    ));
    rows.push((
        format!("admission thread CPU < {ADMISSION_CPU_PCT}% of a core"),
        format!(
            "{:.1}%  (whole server {:.1}%, over {:.1} s)",
            c.admission_cpu,
            c.process_cpu,
            c.hold.as_secs_f64()
        ),
        c.admission_cpu < ADMISSION_CPU_PCT,
    ));

    if let Some(s) = shut {
        let med = |runs: &[shutdown::Run]| {
            stats::Spread::of(runs.iter().map(|r| r.exit.as_secs_f64() * 1e3))
        };
        let (with, without) = (med(&s.with), med(&s.without));
        let ratio = match (with, without) {
            (Some(w), Some(wo)) if wo.med > 0.0 => Some(w.med / wo.med),
            _ => None,
        };
        let killed = s.with.iter().chain(&s.without).any(|r| r.killed);
        rows.push((
            format!(
                "shutdown, {} open + {} pending <= {SHUTDOWN_RATIO}x {} open alone",
                k.open, k.pending, k.open
            ),
            match (ratio, with, without) {
                (Some(r), Some(w), Some(wo)) => format!(
                    "{r:.2}x  ({} ms vs {} ms, median (range) of {}/{} runs{}{})",
                    w.text(1),
                    wo.text(1),
                    s.with.len(),
                    s.without.len(),
                    if killed { "; a server was KILLED" } else { "" },
                    if s.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; {} runs failed", s.errors.len())
                    }
                ),
                _ => format!("no figure ({} runs failed)", s.errors.len()),
            },
            ratio.is_some_and(|r| r <= SHUTDOWN_RATIO) && !killed && s.errors.is_empty(),
        ));
        let all: Vec<&shutdown::Run> = s.with.iter().chain(&s.without).collect();
        let got: usize = all.iter().map(|r| r.going_away).sum();
        let expected: usize = all.iter().map(|r| r.open).sum();
        let mut others: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &all {
            for (o, n) in &r.others {
                *others.entry(o.as_str()).or_default() += n;
            }
        }
        rows.push((
            "every open client received close code 1001".into(),
            format!(
                "{got}/{expected} over {} runs{}",
                all.len(),
                if others.is_empty() {
                    String::new()
                } else {
                    format!("; others: {others:?}")
                }
            ),
            got == expected && expected > 0,
        ));
    }

    let t = &c.totals;
    let held = stats::median(c.samples.iter().map(|s| s.held as f64).collect()).unwrap_or(0.0);
    println!();
    println!(
        "hydrogen-ws crowd: {} silent + {} trickling from {} addresses (127.0.0.2..), ramp {:.1} s, held {:.1} s",
        k.crowd.silent,
        k.crowd.trickle,
        k.crowd.addrs,
        c.ramp.as_secs_f64(),
        c.hold.as_secs_f64()
    );
    println!(
        "crowd: {held:.0} sockets connected (client side, median of the samples), {} connects, {} ended by the server: answered {:?}, {} closed without a response, {} reset; \
         {} bytes trickled; connect errors {:?}",
        t.connects,
        t.ended(),
        t.answered,
        t.eof,
        t.reset,
        t.trickled,
        t.connect_errors
    );
    let refused = c.log.refused.lock().map(|r| r.clone()).unwrap_or_default();
    println!(
        "server log: {} lines, {} WARN, {} ERROR; \"refused NNN\" lines {refused:?}",
        c.log.lines.load(Ordering::Relaxed),
        c.log.warn.load(Ordering::Relaxed),
        c.log.error.load(Ordering::Relaxed)
    );
    for e in c.log.errors.lock().map(|e| e.clone()).unwrap_or_default() {
        println!("  {e}");
    }
    let before: BTreeMap<&str, u64> = c
        .refusals_at_start
        .iter()
        .map(|(r, v)| (r.as_str(), *v))
        .collect();
    let refusals: Vec<String> = c
        .refusals
        .iter()
        .map(|(r, v)| {
            format!(
                "{r}={v} (+{} during the crowd)",
                v - before.get(r.as_str()).copied().unwrap_or(0)
            )
        })
        .collect();
    println!(
        "admission refusals at the end of the hold (/metrics): {}",
        refusals.join(", ")
    );
    let netstat: Vec<String> = c.netstat.iter().map(|(k, v)| format!("{k} +{v}")).collect();
    println!(
        "kernel TCP counters over the hold (/proc/net/netstat, the whole machine): {}",
        netstat.join(", ")
    );
    for (e, n) in c.held.errors.iter().chain(&c.quiet.errors) {
        println!("  probe error x{n}: {e}");
    }
    for (name, p) in [("quiet", &c.quiet), ("held", &c.held)] {
        if !p.slow.is_empty() {
            let list: Vec<String> = p
                .slow
                .iter()
                .take(12)
                .map(|(n, d, c)| format!("#{n} {} (connect {})", ms(*d), ms(*c)))
                .collect();
            println!(
                "upgrades over {UPGRADE_P99_MS} ms ({name}): {} of {}: {}",
                p.slow.len(),
                p.ok,
                list.join(", ")
            );
        }
    }
    for (e, n) in &c.health_bad {
        println!("  /health x{n}: {e}");
    }
    if let Some(s) = shut {
        for e in &s.errors {
            println!("  shutdown run failed: {e}");
        }
        if let Some(r) = s.with.last() {
            println!(
                "shutdown report with pending (last run): {}",
                r.report.as_deref().unwrap_or("-")
            );
        }
    }
    println!();
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    println!("| {:<w$} | measured | result |", "target");
    println!("|{}|---|---|", "-".repeat(w + 2));
    for (target, measured, ok) in &rows {
        println!("| {target:<w$} | {measured} | {} |", verdict(*ok));
    }
    let pass = rows.iter().all(|r| r.2);
    println!("RESULT: {}", verdict(pass));
    pass
}
