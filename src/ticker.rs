//! The ticker: one thread that visits every open connection a few times a second to flush what slow
//! clients left queued (evicting those stalled past the send timeout), send heartbeat pings, close
//! connections whose pong is overdue, and fire periodic subscriptions. It never blocks on a client.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::Shared;

/// How often the ticker runs.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// How often freed heap memory is handed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(10);

pub(crate) fn run(shared: &Arc<Shared>) {
    let mut last_trim = Instant::now();
    while !shared.is_shutting_down() {
        let now = Instant::now();
        for conn in shared.registry.snapshot() {
            // A handler's on_subscription_due runs here: its panic ends its own connection, not the
            // ticker (which every connection's heartbeat, queue and subscriptions depend on).
            if catch_unwind(AssertUnwindSafe(|| conn.tick(shared, now))).is_err() {
                let _ = conn.close_after_panic("on_subscription_due");
            }
        }
        if now.duration_since(last_trim) >= TRIM_EVERY {
            last_trim = now;
            release_free_memory();
        }
        let spent = now.elapsed();
        std::thread::sleep(TICK.saturating_sub(spent).max(Duration::from_millis(5)));
    }
}

/// With one thread per connection, glibc spreads allocations over many arenas and keeps what was freed
/// in them: after a burst of large messages, RSS stays hundreds of MiB above what is live (measured in
/// the 10,000-connection soak). Trimming hands the free pages back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks and madvises glibc's own free lists under its own locks; it takes
    // no pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    /// The free memory glibc kept in holes of the heap (freed blocks between live ones, which it does
    /// not give back by itself) leaves the resident set when the ticker trims.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trimming_gives_freed_heap_memory_back() {
        const BLOCK: usize = 64 * 1024;
        let mut blocks: Vec<Option<Vec<u8>>> = (0..256u32)
            .map(|i| Some(vec![(i % 250) as u8 + 1; BLOCK]))
            .collect();
        // Every other block freed: 8 MiB of holes, none at the top of the heap.
        for block in blocks.iter_mut().step_by(2) {
            *block = None;
        }
        let resident = || crate::status::process_usage().0.expect("/proc/self/status");
        let before = resident();
        super::release_free_memory();
        let after = resident();
        assert!(
            before.saturating_sub(after) >= 4 << 20,
            "RSS {before} -> {after} bytes"
        );
        // The live blocks are untouched.
        assert!(blocks
            .iter()
            .flatten()
            .all(|b| b.len() == BLOCK && b[0] == b[BLOCK - 1]));
    }
}
