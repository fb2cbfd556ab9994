//! One population of clients driven through ramp, traffic and closing, with progress lines.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::{Client, Ctx, Kind, RAMP, RUN, STOP};
use crate::options::Options;
use crate::server::ServerProc;
use crate::support::client;
use crate::support::proc::Sample;
use crate::totals::{fmt_mib, fmt_us, Totals};

pub struct Phase {
    pub totals: Totals,
    pub secs: f64,
    pub peak: Sample,
    pub good: usize,
}

/// Runs one population of clients through ramp, `run_for` of traffic, and the closing phase.
pub fn drive(
    opts: &Options,
    server: &ServerProc,
    good: usize,
    hostile: usize,
    run_for: Duration,
    warmup: bool,
    label: &str,
) -> Phase {
    let ctx = Ctx {
        addr: server.addr(),
        request: client::request("127.0.0.1", "/load"),
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
        peak = peak.max(s);
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
                peak = peak.max(s);
                let mut t = ctx.totals.lock().unwrap();
                let window = std::mem::take(&mut t.window);
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
                    fmt_us(window.max()),
                    fmt_mib(s.rss_kib),
                    s.threads,
                    s.fds,
                    errors
                );
                last_report = Instant::now();
            }
        }
        secs = started.elapsed().as_secs_f64();
        peak = peak.max(server.sample());
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
