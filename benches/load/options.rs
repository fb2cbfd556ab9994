//! The load tool's options: flags, or their `HYDROGEN_LOAD_*` twins (the flag wins).

use std::path::PathBuf;

use crate::support::opts;
use crate::{MAX_CONNS, MAX_SECS};

#[derive(Debug, Clone)]
pub struct Options {
    pub conns: usize,
    pub secs: u64,
    pub hostile: f64,
    pub think_ms: u64,
    pub min_size: usize,
    pub max_size: usize,
    pub threads: usize,
    pub report_secs: u64,
    pub bin: Option<PathBuf>,
    pub server_args: Vec<String>,
    pub warmup: bool,
    pub warmup_secs: Option<u64>,
    pub pause_after: u64,
}

impl Options {
    pub fn parse() -> Result<Options, String> {
        let env = opts::var;
        let mut o = Options {
            conns: 1000,
            secs: 20,
            hostile: 0.05,
            think_ms: 250,
            min_size: 16,
            max_size: 16 * 1024,
            threads: 2,
            report_secs: 10,
            bin: None,
            server_args: Vec::new(),
            warmup: true,
            warmup_secs: None,
            pause_after: 0,
        };
        let set = |o: &mut Options, key: &str, v: &str| -> Result<(), String> {
            let num = |v: &str| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{key}: '{v}' is not a whole number"))
            };
            match key {
                "conns" => o.conns = num(v)? as usize,
                "secs" => o.secs = num(v)?,
                "hostile" => {
                    o.hostile = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("hostile: '{v}' is not a fraction"))?
                }
                "think-ms" => o.think_ms = num(v)?,
                "sizes" => {
                    let (a, b) = v
                        .split_once('-')
                        .ok_or_else(|| format!("sizes: '{v}' is not MIN-MAX"))?;
                    o.min_size = num(a)? as usize;
                    o.max_size = num(b)? as usize;
                }
                "threads" => o.threads = num(v)? as usize,
                "report-secs" => o.report_secs = num(v)?.max(1),
                "bin" => o.bin = Some(PathBuf::from(v)),
                "server-arg" => o.server_args.push(v.to_string()),
                "warmup-secs" => o.warmup_secs = Some(num(v)?.min(MAX_SECS)),
                "pause-after" => o.pause_after = num(v)?.min(MAX_SECS),
                _ => {
                    return Err(format!(
                        "unknown option --{key} (see the doc comment of benches/load/main.rs)"
                    ))
                }
            }
            Ok(())
        };
        for (var, key) in [
            ("HYDROGEN_LOAD_CONNS", "conns"),
            ("HYDROGEN_LOAD_SECS", "secs"),
            ("HYDROGEN_LOAD_HOSTILE", "hostile"),
            ("HYDROGEN_LOAD_THINK_MS", "think-ms"),
            ("HYDROGEN_LOAD_SIZES", "sizes"),
            ("HYDROGEN_LOAD_THREADS", "threads"),
            ("HYDROGEN_LOAD_REPORT_SECS", "report-secs"),
            ("HYDROGEN_LOAD_SERVER_BIN", "bin"),
            ("HYDROGEN_LOAD_WARMUP_SECS", "warmup-secs"),
            ("HYDROGEN_LOAD_PAUSE_AFTER", "pause-after"),
        ] {
            if let Some(v) = env(var) {
                set(&mut o, key, &v)?;
            }
        }
        if let Some(v) = env("HYDROGEN_LOAD_SERVER_ARGS") {
            o.server_args
                .extend(v.split_whitespace().map(str::to_string));
        }
        if env("HYDROGEN_LOAD_WARMUP").as_deref() == Some("0") {
            o.warmup = false;
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {} // added by `cargo bench`
                "--no-warmup" => o.warmup = false,
                flag if flag.starts_with("--") => {
                    let key = &flag[2..];
                    let (key, value) = match key.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (
                            key.to_string(),
                            args.next().ok_or_else(|| format!("{flag} needs a value"))?,
                        ),
                    };
                    set(&mut o, &key, &value)?;
                }
                // A bench-name filter from `cargo bench load`: nothing to filter.
                _ => {}
            }
        }
        if !(1..=MAX_CONNS).contains(&o.conns) {
            return Err(format!("conns must be 1 ..= {MAX_CONNS}"));
        }
        if !(1..=MAX_SECS).contains(&o.secs) {
            return Err(format!("secs must be 1 ..= {MAX_SECS}"));
        }
        if !(0.0..=0.5).contains(&o.hostile) {
            return Err("hostile must be between 0 and 0.5".into());
        }
        if o.think_ms > 60_000 {
            return Err("think-ms must be at most 60000".into());
        }
        if o.min_size == 0 || o.min_size > o.max_size || o.max_size > 1 << 20 {
            return Err("sizes must be MIN-MAX with 1 <= MIN <= MAX <= 1048576".into());
        }
        if !(1..=16).contains(&o.threads) {
            return Err("threads must be 1 ..= 16".into());
        }
        Ok(o)
    }

    pub fn hostile_slots(&self) -> usize {
        ((self.conns as f64) * self.hostile).round() as usize
    }
}
