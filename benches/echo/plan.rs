//! What the echo bench runs, from the environment (the knobs are listed in `main.rs`).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::opts;
use crate::WHO;

/// What to run, from the environment.
pub struct Plan {
    pub secs: f64,
    pub warmup: Duration,
    pub conns: Vec<usize>,
    pub sizes: Vec<usize>,
    pub modes: Vec<String>,
    pub servers: Vec<String>,
    pub rss_conns: Vec<usize>,
    pub client_threads: usize,
    pub stack_size: Option<usize>,
    pub only: Option<(String, String, usize, usize)>,
    pub runs: usize,
    pub baseline: Option<PathBuf>,
}

impl Plan {
    /// The plan the knobs describe; a knob that does not parse ends the bench (status 2).
    pub fn from_env() -> Plan {
        opts::or_exit(WHO, Plan::read())
    }

    fn read() -> Result<Plan, String> {
        let quick = opts::switch("HYDROGEN_BENCH_QUICK", false);
        let (secs, conns, sizes, rss) = if quick {
            (0.5, "1,10,100", "64,1024", "1000")
        } else {
            (2.0, "1,10,100,1000", "64,1024,65536", "1000,10000")
        };
        let only = match opts::var("HYDROGEN_BENCH_ONLY") {
            Some(v) => Some(only(&v).ok_or_else(|| {
                format!("HYDROGEN_BENCH_ONLY: {v:?} is not server:mode:conns:size")
            })?),
            None => None,
        };
        let mut plan = Plan {
            secs: opts::one("HYDROGEN_BENCH_SECS", secs)?,
            warmup: Duration::from_millis(opts::one("HYDROGEN_BENCH_WARMUP_MS", 300)?),
            conns: opts::list("HYDROGEN_BENCH_CONNS", conns)?,
            sizes: opts::list("HYDROGEN_BENCH_SIZES", sizes)?,
            modes: opts::list("HYDROGEN_BENCH_MODES", "lat,pipe")?,
            servers: opts::list("HYDROGEN_BENCH_SERVERS", "ours,tungstenite,floor")?,
            rss_conns: opts::list_or_empty("HYDROGEN_BENCH_RSS_CONNS", rss)?,
            client_threads: opts::one("HYDROGEN_BENCH_CLIENT_THREADS", 2)?,
            stack_size: opts::var("HYDROGEN_BENCH_STACK_SIZE")
                .map(|_| opts::one("HYDROGEN_BENCH_STACK_SIZE", 0))
                .transpose()?,
            only,
            runs: opts::one("HYDROGEN_BENCH_RUNS", 1usize)?.max(1),
            baseline: opts::path("HYDROGEN_BENCH_BASELINE_BIN"),
        };
        if plan.baseline.is_some() && !plan.servers.iter().any(|s| s == "base") {
            plan.servers.push("base".into());
        }
        if let Some((server, mode, conns, size)) = &plan.only {
            plan.servers = vec![server.clone()];
            plan.modes = vec![mode.clone()];
            plan.conns = vec![*conns];
            plan.sizes = vec![*size];
            plan.rss_conns.clear();
        }
        Ok(plan)
    }
}

/// `server:mode:conns:size`.
fn only(v: &str) -> Option<(String, String, usize, usize)> {
    let p: Vec<&str> = v.split(':').collect();
    let [server, mode, conns, size] = p[..] else {
        return None;
    };
    Some((
        server.to_string(),
        mode.to_string(),
        conns.parse().ok()?,
        size.parse().ok()?,
    ))
}
