//! Figures over runs (medians and ranges) and over messages (latency percentiles).

use std::time::Duration;

use hdrhistogram::Histogram;

/// The median of the finite values, if any.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The median and the range of a set of values (one per run).
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// The median.
    pub med: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// Over the finite values; `None` when there is none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread {
            med: median(finite)?,
            min,
            max,
        })
    }

    /// `median (min-max)` with `digits` decimals.
    pub fn text(&self, digits: usize) -> String {
        let Spread { med, min, max } = self;
        format!("{med:.digits$} ({min:.digits$}-{max:.digits$})")
    }
}

/// A latency histogram (nanosecond resolution, three significant digits: 0.1 % precision).
#[derive(Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    /// Empty.
    pub fn new() -> Latencies {
        Latencies(Histogram::new(3).expect("3 significant digits is a valid precision"))
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        // `record` grows the histogram as needed; only a value beyond any range is clamped.
        if self.0.record(ns).is_err() {
            self.0.saturating_record(ns);
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Latencies) {
        // Both histograms resize as needed, so adding cannot fail for want of range.
        let _ = self.0.add(&other.0);
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latency at quantile `q` (0.5 for the median); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.0.value_at_quantile(q))
    }

    /// The quantile in microseconds, or `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        (!self.is_empty()).then(|| self.0.value_at_quantile(q) as f64 / 1000.0)
    }

    /// The largest latency recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.0.max())
    }
}
