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

use std::time::Duration;

#[path = "../support/mod.rs"]
mod support;

mod client;
mod drive;
mod options;
mod server;
mod totals;

use drive::drive;
use options::Options;
use server::ServerProc;
use support::proc;
use totals::{fmt_mib, fmt_us};

const MAX_CONNS: usize = 10_000;
const MAX_SECS: u64 = 3_600;
/// Handshakes in flight per client thread while connections open.
const MAX_CONNECTING: usize = 64;
/// A well-behaved client whose echo takes longer than this records an error.
const ECHO_TIMEOUT: Duration = Duration::from_secs(30);
/// A hostile attack that has not seen its expected end by then records "no refusal".
const ATTACK_TIMEOUT: Duration = Duration::from_secs(60);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

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

fn run(opts: &Options) -> Result<bool, String> {
    let nofile = support::limits::raise_nofile("load");
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
        None => support::server::release_binary("load")?,
    };
    let threads = opts.conns + opts.conns / 10 + 64;
    let mut server = ServerProc::start(&bin, threads, &opts.server_args)?;
    eprintln!(
        "load: server pid {} on {} (--threads {}), {} connections ({good} well-behaved, {hostile} hostile slots), {} s, sizes {}-{} B, think {} ms mean, {} client threads; load average {}",
        server.pid(),
        server.addr(),
        server.threads_flag,
        opts.conns,
        opts.secs,
        opts.min_size,
        opts.max_size,
        opts.think_ms,
        opts.threads,
        proc::load_average()
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
        let mut base = server::settle(&server, cold, Duration::from_secs(30));
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
            base = server::settle(&server, base, Duration::from_secs(30));
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
    let after = server::settle(&server, baseline, Duration::from_secs(30));
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
            opts.pause_after,
            server.pid()
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
        fmt_us(t.hist.max())
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
