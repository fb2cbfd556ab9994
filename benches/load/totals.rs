//! What the client threads count, and how the report writes figures.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::stats::Latencies;

/// A latency as µs, ms or s.
pub fn fmt_us(d: Duration) -> String {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if us < 1000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Outcomes of one hostile kind.
#[derive(Default, Clone)]
pub struct HostileTally {
    pub attempts: u64,
    pub expected: u64,
    pub other: BTreeMap<String, u64>,
}

/// What a client thread has counted (merged into the shared totals every 200 ms).
#[derive(Clone)]
pub struct Totals {
    pub messages: u64,
    pub bytes: u64,
    pub hist: Latencies,
    pub window: Latencies,
    pub errors: BTreeMap<String, u64>,
    pub hostile: BTreeMap<&'static str, HostileTally>,
    pub closed_clean: u64,
}

impl Totals {
    pub fn new() -> Totals {
        Totals {
            messages: 0,
            bytes: 0,
            hist: Latencies::new(),
            window: Latencies::new(),
            errors: BTreeMap::new(),
            hostile: BTreeMap::new(),
            closed_clean: 0,
        }
    }

    pub fn merge(&mut self, o: &Totals) {
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.hist.merge(&o.hist);
        self.window.merge(&o.window);
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.hostile {
            let t = self.hostile.entry(k).or_default();
            t.attempts += v.attempts;
            t.expected += v.expected;
            for (r, n) in &v.other {
                *t.other.entry(r.clone()).or_default() += n;
            }
        }
        self.closed_clean += o.closed_clean;
    }
}
