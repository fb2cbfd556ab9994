//! The warning that sums up a crowd's refusals: each one is logged at debug only.

use std::time::{Duration, Instant};

use log::warn;

use super::AdmissionContext;
use crate::stats::{Admission, Stats};

/// How often the refusals a crowd causes (each logged at debug only) are summed up in one warning.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The warning that sums up the admission refusals of the last [`SUMMARY_EVERY`]: under a crowd, one
/// line per refused socket would flood the log (and cost the stage more than the refusals themselves).
pub(super) struct Summary {
    last: Instant,
    counts: Vec<(Admission, u64)>,
}

impl Summary {
    pub(super) fn new(stats: &Stats) -> Self {
        Summary {
            last: Instant::now(),
            counts: stats.admission_refusals(),
        }
    }

    pub(super) fn tick(&mut self, ctx: &AdmissionContext, now: Instant) {
        if now.duration_since(self.last) < SUMMARY_EVERY {
            return;
        }
        let counts = ctx.stats.admission_refusals();
        let parts: Vec<String> = counts
            .iter()
            .zip(&self.counts)
            .filter(|((_, now), (_, before))| now > before)
            .map(|((reason, now), (_, before))| {
                let what = match reason {
                    Admission::PendingFull => "closed to make room (408, the table was full)",
                    Admission::PerIp => "refused for their address (429)",
                    Admission::Timeout => "timed out (408)",
                    Admission::PoolFull => "refused for a full pool (503)",
                };
                format!("{} {what}", now - before)
            })
            .collect();
        if !parts.is_empty() {
            warn!(
                "admission, last {} s: {}; {} handshakes pending",
                now.duration_since(self.last).as_secs(),
                parts.join(", "),
                ctx.stats
                    .pending_handshakes
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        self.last = now;
        self.counts = counts;
    }
}
