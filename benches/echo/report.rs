//! The echo bench's tables: one run, or medians and ranges over several.

use std::collections::BTreeMap;

use crate::load_client::window;
use crate::plan::Plan;
use crate::point::Point;
use crate::support::proc::clock_ticks;
use crate::support::stats::{median, Spread};

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

pub fn print_table(results: &[Point], plan: &Plan) {
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
    print_head(
        "| mode | conns |   size | ours msg/s | tung msg/s | ours us CPU/msg | tung us CPU/msg | tung/ours CPU | ours p50/p99 us | tung p50/p99 us | floor us CPU/msg | floor p50/p99 us | others |",
        "|------|------:|-------:|-----------:|-----------:|----------------:|----------------:|--------------:|----------------:|----------------:|-----------------:|-----------------:|-------:|",
    );
    for key in table_order(by_key.keys()) {
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

pub fn print_runs(results: &[Point], plan: &Plan) {
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
    print_head(
        "| mode | conns |   size | server      | runs | us CPU/msg, median (min-max) | / floor | / base | p50 us, median | p99 us, median (min-max) | client us CPU/msg | runs within the targets |",
        "|------|------:|-------:|-------------|-----:|-----------------------------:|--------:|-------:|---------------:|-------------------------:|------------------:|-------------------------|",
    );
    for key in table_order(by_key.keys()) {
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

/// "median (min-max)" of the finite values, with `digits` decimals.
fn spread(values: &[f64], digits: usize) -> String {
    Spread::of(values.iter().copied()).map_or("-".into(), |s| s.text(digits))
}

/// A blank line, then a Markdown table's head and rule.
fn print_head(head: &str, rule: &str) {
    println!();
    println!("{head}");
    println!("{rule}");
}
