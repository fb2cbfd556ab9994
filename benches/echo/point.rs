//! One point of the echo bench: one server, mode, connection count and size, measured in slices.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::load_client::{client_thread, Control};
use crate::peers::Server;
use crate::plan::Plan;
use crate::support::proc::{cpu_seconds, machine_busy_seconds};
use crate::support::stats::Latencies;

pub struct Point {
    pub server: &'static str,
    /// Which pass of `HYDROGEN_BENCH_RUNS` (from 1).
    pub run: usize,
    pub mode: String,
    pub conns: usize,
    pub size: usize,
    pub msgs_per_s: f64,
    pub cpu_us_per_msg: f64,
    pub cpu_util: f64,
    /// The load client's CPU per message: on two cores it competes with the server for them.
    pub client_us_per_msg: f64,
    /// CPU (in cores) used meanwhile by processes other than the server and this bench: a
    /// busy machine makes the point less trustworthy.
    pub other_cores: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub ok: bool,
}

/// One measured slice of a point: what the server did and what the clients saw.
pub struct Sample {
    msgs: u64,
    secs: f64,
    /// Server CPU seconds (utime + stime).
    cpu: f64,
    /// CPU seconds of processes other than the server and this bench.
    others: f64,
    /// CPU seconds of this bench (its load client).
    client: f64,
    rtts: Latencies,
    ok: bool,
}

impl Point {
    /// Sums the slices of one server at one point into its row.
    pub fn merge(
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
        let mut rtts = Latencies::new();
        for s in &samples {
            rtts.merge(&s.rtts);
        }
        let per_msg_us = |seconds: f64| {
            if msgs > 0 {
                seconds * 1e6 / msgs as f64
            } else {
                f64::NAN
            }
        };
        let pct = |q: f64| rtts.quantile_us(q);
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

    pub fn line(&self) -> String {
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
pub fn run_point(
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
    let start = Reading::take(&ctl, server.pid());
    ctl.measuring.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_secs_f64(secs));
    let end = Reading::take(&ctl, server.pid());
    ctl.measuring.store(false, Ordering::Relaxed);
    ctl.stop.store(true, Ordering::Relaxed);

    let mut back = Vec::with_capacity(n);
    let mut rtts = Latencies::new();
    let mut ok = true;
    for h in handles {
        let r = h.join().expect("client thread");
        ok &= r.ok;
        back.extend(r.conns);
        rtts.merge(&r.rtts);
    }
    let cpu = end.server_cpu - start.server_cpu;
    let client = end.client_cpu - start.client_cpu;
    let sample = Sample {
        msgs: end.msgs - start.msgs,
        secs: (end.at - start.at).as_secs_f64(),
        cpu,
        others: ((end.machine_busy - start.machine_busy) - cpu - client).max(0.0),
        client,
        // Pipelined round trips are not timed (they measure the window, not the server).
        rtts: if pipelined { Latencies::new() } else { rtts },
        ok,
    };
    (sample, ok.then_some(back))
}

/// The counters at one edge of a measured window.
struct Reading {
    /// Echoes the client threads have received.
    msgs: u64,
    /// The server's CPU seconds.
    server_cpu: f64,
    at: Instant,
    /// The whole machine's busy CPU seconds.
    machine_busy: f64,
    /// This bench's own CPU seconds (its load client).
    client_cpu: f64,
}

impl Reading {
    fn take(ctl: &Control, server_pid: u32) -> Reading {
        Reading {
            msgs: ctl.received.load(Ordering::Relaxed),
            server_cpu: cpu_seconds(server_pid),
            at: Instant::now(),
            machine_busy: machine_busy_seconds(),
            client_cpu: cpu_seconds(std::process::id()),
        }
    }
}
