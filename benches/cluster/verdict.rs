//! What the clients' logs say against the publisher's log: deliveries exactly once and in order,
//! latencies, and for the rolling restart the reconnect times and what happened to the events
//! published while each client was connected, and in its gaps.

use std::collections::HashMap;
use std::time::Duration;

use crate::publisher::Pub;
use crate::subscriber::ClientLog;
use crate::support::stats::Latencies;

/// The fan-out run (phase 0).
pub struct Fanout {
    pub events: u64,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Events that came after a later one of the same topic published through the same instance
    /// (the order the bus promises).
    pub out_of_order: u64,
    /// Events that came after a later one of the same topic published through another instance
    /// (no order is promised between publishers).
    pub crossed: u64,
    pub latency: Latencies,
    /// The latency per second of publishing (by send time), to tell a passing stall from a steady
    /// state.
    pub per_second: Vec<Latencies>,
}

/// The rolling restart (phase 1).
pub struct Restart {
    pub events: u64,
    /// Connections ended by a 1001, and ended otherwise (another code, or no close frame).
    pub closes_1001: u64,
    pub other_ends: Vec<String>,
    /// Ends not followed by a new subscribed connection.
    pub not_back: u64,
    /// 1001 (as the client read it) to subscribed again; SIGTERM of its instance to subscribed again.
    pub after_1001: Latencies,
    pub after_term: Latencies,
    /// 1001 to the new connection's 101.
    pub upgrade_after_1001: Latencies,
    /// Events of a client's topics published while it was subscribed (before its instance's SIGTERM).
    pub connected_expected: u64,
    /// Of those, lost: still in flight at the SIGTERM (another client received the event after that
    /// moment: its fan-out was not over when the instance stopped taking messages; or it was
    /// published less before the SIGTERM than this client's longest wait for an event in the second
    /// before it), and the others, which nothing explains.
    pub lost_in_flight: u64,
    pub lost_unexplained: u64,
    /// How long before the SIGTERM the lost ones were published (the longest), if any was lost.
    pub lost_before_term: Option<Duration>,
    /// Published between the SIGTERM of a client's instance and its new subscription.
    pub gap_events: u64,
    pub gap_received: u64,
    /// On one connection: duplicates and order against the bus's promise (must be none).
    pub duplicates: u64,
    pub out_of_order: u64,
    pub crossed: u64,
    /// After a reconnect: events received again (the old instance delivered them, and the new one,
    /// later, after the client had subscribed there), and events older than one received before.
    pub again_after_reconnect: u64,
    pub older_after_reconnect: u64,
    pub latency: Latencies,
}

/// Checks the order of one client's events of one topic as they come.
#[derive(Default)]
struct Order {
    /// The last sequence number from each instance, and from any.
    last_via: Vec<Option<u32>>,
    last: Option<u32>,
}

impl Order {
    /// Whether `seq` through `via` breaks the per-instance order, and whether it breaks the order of
    /// the topic across instances (and only that).
    fn check(&mut self, seq: u32, via: u8) -> (bool, bool) {
        let v = via as usize;
        if self.last_via.len() <= v {
            self.last_via.resize(v + 1, None);
        }
        let same = self.last_via[v].is_some_and(|l| seq <= l);
        let any = self.last.is_some_and(|l| seq <= l);
        self.last_via[v] = Some(seq);
        self.last = Some(seq);
        (same, any && !same)
    }
}

/// Events of each topic in phase 0 (their sequence numbers are `0..count`; phase 1's follow).
pub fn phase0_counts(pubs: &[Pub], topics: usize) -> Vec<u32> {
    let mut counts = vec![0u32; topics];
    for p in pubs.iter().filter(|p| p.phase == 0) {
        counts[p.topic as usize] += 1;
    }
    counts
}

pub fn fanout(logs: &[ClientLog], pubs: &[Pub], topics: usize) -> Fanout {
    let counts = phase0_counts(pubs, topics);
    let mut f = Fanout {
        events: pubs.iter().filter(|p| p.phase == 0).count() as u64,
        expected: 0,
        delivered: 0,
        missing: 0,
        duplicates: 0,
        out_of_order: 0,
        crossed: 0,
        latency: Latencies::new(),
        per_second: Vec::new(),
    };
    let first = pubs.iter().find(|p| p.phase == 0).map_or(0, |p| p.at_ns);
    for log in logs {
        for &k in &log.topics {
            let n = counts[k as usize] as usize;
            f.expected += n as u64;
            let mut seen = vec![false; n];
            let mut order = Order::default();
            for rx in log
                .rx
                .iter()
                .filter(|r| r.topic == k && (r.seq as usize) < n)
            {
                f.delivered += 1;
                let latency = Duration::from_nanos(rx.at_ns.saturating_sub(rx.sent_ns));
                f.latency.record(latency);
                let second = (rx.sent_ns.saturating_sub(first) / 1_000_000_000) as usize;
                if f.per_second.len() <= second {
                    f.per_second.resize_with(second + 1, Latencies::new);
                }
                f.per_second[second].record(latency);
                if std::mem::replace(&mut seen[rx.seq as usize], true) {
                    f.duplicates += 1;
                }
                let (same, crossed) = order.check(rx.seq, rx.via);
                f.out_of_order += u64::from(same);
                f.crossed += u64::from(crossed);
            }
            f.missing += seen.iter().filter(|s| !**s).count() as u64;
        }
    }
    f
}

/// `terms`: when each SIGTERM was sent (ns since the epoch).
pub fn restart(logs: &[ClientLog], pubs: &[Pub], topics: usize, terms: &[u64]) -> Restart {
    let counts = phase0_counts(pubs, topics);
    let phase1: Vec<&Pub> = pubs.iter().filter(|p| p.phase == 1).collect();
    let mut r = Restart {
        events: phase1.len() as u64,
        closes_1001: 0,
        other_ends: Vec::new(),
        not_back: 0,
        after_1001: Latencies::new(),
        after_term: Latencies::new(),
        upgrade_after_1001: Latencies::new(),
        connected_expected: 0,
        lost_in_flight: 0,
        lost_unexplained: 0,
        lost_before_term: None,
        gap_events: 0,
        gap_received: 0,
        duplicates: 0,
        out_of_order: 0,
        crossed: 0,
        again_after_reconnect: 0,
        older_after_reconnect: 0,
        latency: Latencies::new(),
    };
    // When each event reached its last client.
    let mut last_delivery: HashMap<(u16, u32), u64> = HashMap::new();
    for rx in logs.iter().flat_map(|l| &l.rx) {
        let at = last_delivery.entry((rx.topic, rx.seq)).or_default();
        *at = (*at).max(rx.at_ns);
    }
    // The SIGTERM behind an end at `at`: the latest one sent before it.
    let term_before = |at: u64| terms.iter().copied().filter(|&t| t <= at).max();
    for log in logs {
        // The intervals in which this client was subscribed, each cut at its instance's SIGTERM.
        let mut intervals = Vec::new();
        for (i, s) in log.sessions.iter().enumerate() {
            let cut = match &s.end {
                None => u64::MAX,
                Some(end) => {
                    if end.code == Some(1001) {
                        r.closes_1001 += 1;
                    } else {
                        r.other_ends.push(end.how.clone());
                    }
                    let term = term_before(end.at_ns).filter(|&t| t >= s.acked_ns);
                    match log.sessions.get(i + 1) {
                        Some(next) => {
                            r.after_1001.record(Duration::from_nanos(
                                next.acked_ns.saturating_sub(end.at_ns),
                            ));
                            r.upgrade_after_1001.record(Duration::from_nanos(
                                next.upgraded_ns.saturating_sub(end.at_ns),
                            ));
                            if let Some(t) = term {
                                r.after_term
                                    .record(Duration::from_nanos(next.acked_ns.saturating_sub(t)));
                            }
                        }
                        None => r.not_back += 1,
                    }
                    term.unwrap_or(end.at_ns)
                }
            };
            intervals.push((s.acked_ns, cut));
        }
        for &k in &log.topics {
            let base = counts[k as usize];
            let of_k: Vec<&&Pub> = phase1.iter().filter(|p| p.topic == k).collect();
            // The connection each phase-1 event came on first, if it came.
            let mut seen: Vec<Option<u16>> = vec![None; of_k.len()];
            let mut order = Order::default();
            let mut conn = 0;
            let mut newest: Option<u32> = None;
            for rx in log.rx.iter().filter(|rx| rx.topic == k) {
                if rx.conn != conn {
                    // A new connection: the bus's order holds per connection.
                    conn = rx.conn;
                    order = Order::default();
                }
                let (same, crossed) = order.check(rx.seq, rx.via);
                r.out_of_order += u64::from(same);
                r.crossed += u64::from(crossed);
                let slot = rx
                    .seq
                    .checked_sub(base)
                    .and_then(|i| seen.get_mut(i as usize));
                let in_phase1 = slot.is_some();
                let again = match slot.and_then(|slot| slot.replace(rx.conn)) {
                    Some(c) if c == rx.conn => {
                        r.duplicates += 1;
                        false
                    }
                    Some(_) => true,
                    None => false,
                };
                r.again_after_reconnect += u64::from(again);
                let older = newest.is_some_and(|n| rx.seq <= n) && !same && !crossed && !again;
                r.older_after_reconnect += u64::from(older);
                newest = Some(newest.map_or(rx.seq, |n| n.max(rx.seq)));
                if in_phase1 {
                    r.latency
                        .record(Duration::from_nanos(rx.at_ns.saturating_sub(rx.sent_ns)));
                }
            }
            for p in &of_k {
                let got = seen
                    .get((p.seq - base) as usize)
                    .is_some_and(|c| c.is_some());
                let within = intervals
                    .iter()
                    .find(|(from, to)| *from <= p.at_ns && p.at_ns < *to);
                match within {
                    Some((_, to)) => {
                        r.connected_expected += 1;
                        if !got {
                            let before = Duration::from_nanos(to.saturating_sub(p.at_ns));
                            let last = last_delivery.get(&(p.topic, p.seq)).copied();
                            // The longest this client waited for an event in the second before
                            // the SIGTERM: its instance's delay then.
                            let recent = log
                                .rx
                                .iter()
                                .filter(|x| x.at_ns <= *to && x.at_ns + 1_000_000_000 > *to)
                                .map(|x| x.at_ns.saturating_sub(x.sent_ns))
                                .max()
                                .unwrap_or(0);
                            if last.is_some_and(|at| at >= *to)
                                || to.saturating_sub(p.at_ns) <= recent
                            {
                                r.lost_in_flight += 1;
                            } else {
                                r.lost_unexplained += 1;
                            }
                            if *to != u64::MAX {
                                r.lost_before_term =
                                    Some(r.lost_before_term.map_or(before, |b| b.max(before)));
                            }
                        }
                    }
                    None => {
                        r.gap_events += 1;
                        r.gap_received += u64::from(got);
                    }
                }
            }
        }
    }
    r
}

/// `p50 / p99 / max` in milliseconds.
pub fn ms3(l: &Latencies) -> String {
    if l.is_empty() {
        return "-".into();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:.2} / {:.2} / {:.2} ms",
        ms(l.quantile(0.5)),
        ms(l.quantile(0.99)),
        ms(l.max())
    )
}
