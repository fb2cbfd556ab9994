//! The ticker: one thread that visits every open connection a few times a second to flush what slow
//! clients left queued (evicting those stalled past the send timeout), send heartbeat pings, close
//! connections whose pong is overdue, and fire periodic subscriptions. It never blocks on a client.
//!
//! What to do with a connection is decided by [`beat`], a function of the connection's clocks and the
//! heartbeat settings alone (time is passed in), so the policy is tested without sockets or sleeps.

use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{CloseCode, OpCode};
use log::{debug, info};

use super::shutdown::ShutdownState;
use crate::config::Heartbeat;
use crate::conn::{self, Conn, LINGER, TICK};
use crate::registry::Registry;
use crate::routes::Routes;
use crate::stats::Stats;
use crate::sys;

/// How often freed heap memory is handed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// What the ticker works with.
pub(crate) struct TickerContext {
    pub registry: Arc<Registry>,
    pub routes: Arc<Routes>,
    pub shutdown: Arc<ShutdownState>,
    pub stats: Arc<Stats>,
    pub heartbeat: Heartbeat,
}

/// The ticker's loop; returns once a shutdown has started.
pub(crate) fn run(ctx: &TickerContext) {
    let mut last_trim = Instant::now();
    while !ctx.shutdown.started() {
        let now = Instant::now();
        for conn in ctx.registry.snapshot() {
            // A handler's on_subscription_due runs here: its panic ends its own connection, not the
            // ticker (which every connection's heartbeat, queue and subscriptions depend on).
            if catch_unwind(AssertUnwindSafe(|| visit(ctx, &conn, now))).is_err() {
                let _ = conn.close_after_panic("on_subscription_due");
            }
        }
        if now.duration_since(last_trim) >= TRIM_EVERY {
            last_trim = now;
            sys::release_free_memory();
        }
        let spent = now.elapsed();
        std::thread::sleep(TICK.saturating_sub(spent).max(Duration::from_millis(5)));
    }
}

/// What the heartbeat asks for one open connection at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    /// Nothing to do now.
    Nothing,
    /// Our close went out and the client has not answered within the linger: close TCP.
    CloseTcp,
    /// Our close went out; the client still has time to answer. Nothing else may be sent.
    Closing,
    /// The pong to our ping is overdue: close with 1011.
    PongOverdue,
    /// Time for a ping.
    Ping,
}

/// A connection's clocks, in milliseconds since the server started (0: never).
#[derive(Debug, Clone, Copy, Default)]
struct Clocks {
    now: u64,
    /// When our close frame went out.
    close_sent: u64,
    /// When the ping still awaiting its pong went out.
    ping_out: u64,
    /// When the last ping went out (or the connection opened).
    last_ping: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The heartbeat's decision for a connection with `clocks` under `heartbeat`.
fn beat(clocks: Clocks, heartbeat: &Heartbeat) -> Beat {
    if clocks.close_sent != 0 {
        return if clocks.now.saturating_sub(clocks.close_sent) >= millis(LINGER) {
            Beat::CloseTcp
        } else {
            Beat::Closing
        };
    }
    let Some(interval) = heartbeat.ping_interval else {
        return Beat::Nothing;
    };
    if clocks.ping_out != 0 {
        return if clocks.now.saturating_sub(clocks.ping_out) >= millis(heartbeat.pong_timeout) {
            Beat::PongOverdue
        } else {
            Beat::Nothing
        };
    }
    if clocks.now.saturating_sub(clocks.last_ping) >= millis(interval) {
        Beat::Ping
    } else {
        Beat::Nothing
    }
}

/// The ticker's visit: queued data, heartbeat, subscriptions, and closes the client never answered.
fn visit(ctx: &TickerContext, conn: &Conn, now: Instant) {
    if !conn.is_open() {
        return;
    }
    conn.flush_or_evict();
    let clocks = Clocks {
        now: conn.now_ms(),
        close_sent: conn.close_sent_ms.load(Ordering::Relaxed),
        ping_out: conn.ping_out_ms.load(Ordering::Relaxed),
        last_ping: conn.last_ping_ms.load(Ordering::Relaxed),
    };
    match beat(clocks, &ctx.heartbeat) {
        Beat::Closing => return,
        Beat::CloseTcp => {
            debug!(
                "connection {} from {}: no answer to our close; closing TCP",
                conn.id, conn.peer
            );
            let _ = conn.socket.shutdown(Shutdown::Both);
            return;
        }
        Beat::PongOverdue => {
            Stats::bump(&ctx.stats.heartbeat_timeouts);
            info!(
                "connection {} from {}: closing with 1011, pong overdue",
                conn.id, conn.peer
            );
            let _ = conn.close(CloseCode::INTERNAL_ERROR, "pong overdue");
            return;
        }
        Beat::Ping => {
            conn.last_ping_ms.store(clocks.now, Ordering::Relaxed);
            conn.ping_out_ms.store(clocks.now, Ordering::Relaxed);
            let _ = conn.send_frame(OpCode::Ping, conn::PING_PAYLOAD);
        }
        Beat::Nothing => {}
    }
    let due = conn.due_subscriptions(now);
    if due.is_empty() {
        return;
    }
    if let Some(route) = conn.route().and_then(|i| ctx.routes.get(i)) {
        for topic in due {
            route.handler().on_subscription_due(conn, &topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(ping_s: Option<u64>, pong_s: u64) -> Heartbeat {
        Heartbeat {
            ping_interval: ping_s.map(Duration::from_secs),
            pong_timeout: Duration::from_secs(pong_s),
        }
    }

    #[test]
    fn a_ping_goes_out_each_interval_and_only_one_at_a_time() {
        let hb = hb(Some(30), 60);
        let at = |now, last_ping, ping_out| Clocks {
            now,
            last_ping,
            ping_out,
            close_sent: 0,
        };
        assert_eq!(beat(at(29_999, 1, 0), &hb), Beat::Nothing);
        assert_eq!(beat(at(30_001, 1, 0), &hb), Beat::Ping);
        // One outstanding: no second ping, however long it has been.
        assert_eq!(beat(at(59_000, 30_001, 30_001), &hb), Beat::Nothing);
        // The pong is overdue a pong timeout after the ping.
        assert_eq!(beat(at(90_001, 30_001, 30_001), &hb), Beat::PongOverdue);
        // Without an interval, no ping and no deadline.
        assert_eq!(
            beat(at(1_000_000, 1, 0), &super::tests::hb(None, 60)),
            Beat::Nothing
        );
    }

    #[test]
    fn after_our_close_only_the_linger_counts() {
        let hb = hb(Some(1), 1);
        let linger = millis(LINGER);
        let closed = |now| Clocks {
            now,
            close_sent: 1_000,
            ping_out: 1,
            last_ping: 1,
        };
        // Nothing else goes out after a close, not even an overdue pong's 1011.
        assert_eq!(beat(closed(1_000 + linger - 1), &hb), Beat::Closing);
        assert_eq!(beat(closed(1_000 + linger), &hb), Beat::CloseTcp);
    }
}
