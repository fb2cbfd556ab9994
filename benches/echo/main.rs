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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

#[path = "../support/mod.rs"]
mod support;

mod load_client;
mod peers;
mod plan;
mod point;
mod report;

use load_client::{client_frame, open_conns};
use peers::Server;
use plan::Plan;
use point::{run_point, Point, Sample};
use support::{opts, proc};

const WHO: &str = "echo bench";

fn main() {
    match support::server::role().as_deref() {
        Some("tungstenite-server") => return peers::tungstenite_server(),
        Some("floor-server") => return peers::floor_server(),
        _ => {}
    }
    let plan = Plan::from_env();
    support::limits::raise_nofile(WHO);
    let bin = match opts::path("HYDROGEN_BENCH_SERVER_BIN") {
        Some(bin) => bin,
        None => opts::or_exit(WHO, support::server::release_binary(WHO)),
    };

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
        eprintln!("{} server: pid {} on {}", s.name, s.pid(), s.addr());
    }

    let mut results: Vec<Point> = Vec::new();
    for run in 1..=plan.runs {
        if plan.runs > 1 {
            eprintln!("run {run} of {}", plan.runs);
        }
        measure(&plan, &servers, run, &mut results);
    }
    if plan.runs > 1 {
        report::print_runs(&results, &plan);
    } else {
        report::print_table(&results, &plan);
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
            .map(|s| open_conns(s.addr(), conns).expect("open connections"))
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
                        None => open_conns(server.addr(), conns).expect("reopen connections"),
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

/// Opens `n` idle connections (each does one 64 B echo first) and reports the RSS they cost.
fn rss_point(server: &Server, n: usize, stack: Option<usize>) -> Result<String, String> {
    let pid = server.pid();
    thread::sleep(Duration::from_millis(300));
    let before = proc::status_field(pid, "VmRSS:");
    let mut conns = open_conns(server.addr(), n)?;
    let frame = client_frame(64);
    let io = |e: std::io::Error| e.to_string();
    for c in conns.iter_mut() {
        c.set_nonblocking(false).map_err(io)?;
        c.write_all(&frame).map_err(io)?;
    }
    let mut reply = [0u8; 66];
    for c in conns.iter_mut() {
        c.read_exact(&mut reply).map_err(io)?;
    }
    thread::sleep(Duration::from_secs(1));
    let after = proc::status_field(pid, "VmRSS:");
    let stacks = if server.name == "ours" {
        match proc::stack_rss(pid, stack.unwrap_or(128 * 1024)) {
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
