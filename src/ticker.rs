//! The ticker: one thread that visits every open connection a few times a second to flush what slow
//! clients left queued (evicting those stalled past the send timeout), send heartbeat pings, close
//! connections whose pong is overdue, and fire periodic subscriptions. It never blocks on a client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::Shared;

/// How often the ticker runs.
pub(crate) const TICK: Duration = Duration::from_millis(50);

pub(crate) fn run(shared: &Arc<Shared>) {
    while !shared.is_shutting_down() {
        let now = Instant::now();
        for conn in shared.registry.snapshot() {
            if conn.is_open() {
                conn.tick(shared, now);
            }
        }
        let spent = now.elapsed();
        std::thread::sleep(TICK.saturating_sub(spent).max(Duration::from_millis(5)));
    }
}
