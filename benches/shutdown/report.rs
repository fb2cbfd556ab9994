//! The shutdown bench's tables: per point, medians and ranges over the runs, outcomes, ratios to
//! the baselines, the cost above the floor, and hydrogen-ws's own report lines.

use std::time::Duration;

use crate::support::stats::Spread;
use crate::{Counts, Kind, Point, RunResult, BUSY_MAX, EXIT_TIMEOUT, IN_FLIGHT, MESSAGE};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn fmt_ms(d: Duration) -> String {
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

fn fmt_stat(s: &Option<Spread>) -> String {
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

pub fn print_table(points: &[Point], runs: usize, baseline_note: Option<&str>) {
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
        let exit = Spread::of(p.results.iter().map(|r| ms(r.exit)));
        let last = Spread::of(p.results.iter().filter_map(|r| r.last_end.map(ms)));
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
        let med = |pt: &Point| Spread::of(pt.results.iter().map(|r| ms(r.exit))).map(|s| s.med);
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
    println!(
        "against the floor, medians (range) of the runs: exit, the last client's close, the server's CPU \
         time from the signal to its exit (it moves less with other load on the machine), and the process's \
         own exit (from its report line, the sequence over, to reaped):"
    );
    for p in points
        .iter()
        .filter(|p| matches!(p.kind, Kind::Hydrogen | Kind::Compare))
    {
        let Some(floor) = points
            .iter()
            .find(|b| b.kind == Kind::Floor && b.variant == p.variant && b.conns == p.conns)
        else {
            continue;
        };
        let spread = |pt: &Point, f: &dyn Fn(&RunResult) -> Option<f64>| {
            Spread::of(pt.results.iter().filter_map(f))
        };
        let exit = |r: &RunResult| Some(ms(r.exit));
        let last = |r: &RunResult| r.last_end.map(ms);
        let cpu = |r: &RunResult| r.cpu.map(ms);
        let show = |s: Option<Spread>| {
            s.map_or("-".into(), |s| {
                format!("{} ({}-{})", fmt_f(s.med), fmt_f(s.min), fmt_f(s.max))
            })
        };
        let ratio = |a: Option<Spread>, b: Option<Spread>| match (a, b) {
            (Some(a), Some(b)) if b.med > 0.0 => format!("{:.2}x", a.med / b.med),
            _ => "-".into(),
        };
        let floor_exit = spread(floor, &exit);
        println!(
            "  {:<5} {:>6} {:<11} exit {:>22} ms = {:>5} floor's; last close {:>22} ms = {:>5} floor's exit; \
             CPU {:>22} ms = {:>5} floor's; report line -> exit {} ms",
            p.variant.name(),
            p.conns,
            p.kind.name(),
            show(spread(p, &exit)),
            ratio(spread(p, &exit), floor_exit),
            show(spread(p, &last)),
            ratio(spread(p, &last), floor_exit),
            show(spread(p, &cpu)),
            ratio(spread(p, &cpu), spread(floor, &cpu)),
            show(spread(p, &|r: &RunResult| r.after_report.map(ms))),
        );
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
            Spread::of(pt.results.iter().filter_map(f)).map(|s| s.med)
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
