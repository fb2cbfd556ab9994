//! SIGINT and SIGTERM, and the watchdog that bounds the process's exit: the binary's concerns, not the
//! library's (an embedder handles its own signals and calls `ServerHandle::shutdown`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// SIGINT and SIGTERM, caught from the moment [`Signals::install`] returns.
///
/// The thread that calls [`Signals::wait`] is the one the first signal wakes (no hop through another
/// thread), and a second signal is handled inside the signal handler itself, so it ends the process even
/// while every thread is busy with the shutdown.
pub struct Signals {
    signals: signal_hook::iterator::Signals,
}

/// SIGINT and SIGTERM received so far (counted by the signal handler).
static SIGNALS_SEEN: AtomicUsize = AtomicUsize::new(0);

/// What the handler writes before it ends the process on a second signal (a log line of its own).
const SECOND_SIGNAL_LINE: &[u8] = b"hydrogen-ws ERROR second signal during shutdown: exiting now\n";

/// Runs inside the signal handler, so only async-signal-safe calls: an atomic add, write(2), _exit(2).
fn on_signal() {
    if SIGNALS_SEEN.fetch_add(1, Ordering::SeqCst) >= 1 {
        if log::log_enabled!(log::Level::Error) {
            // SAFETY: write(2) on the stderr descriptor from a static buffer with its exact length; it is
            // async-signal-safe and a failed or short write is harmless here.
            let _ = unsafe {
                libc::write(
                    libc::STDERR_FILENO,
                    SECOND_SIGNAL_LINE.as_ptr().cast(),
                    SECOND_SIGNAL_LINE.len(),
                )
            };
        }
        signal_hook::low_level::exit(130);
    }
}

impl Signals {
    /// Starts catching SIGINT and SIGTERM. The first one is handed to [`Signals::wait`]; a second one ends
    /// the process at once with status 130, for an operator who does not want to wait.
    pub fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for signal in [SIGINT, SIGTERM] {
            // SAFETY: `on_signal` only does async-signal-safe things (an atomic add, write(2), _exit(2)):
            // no allocation, no lock, no panic path.
            unsafe { signal_hook::low_level::register(signal, on_signal) }?;
        }
        let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        Ok(Signals { signals })
    }

    /// Blocks until the first signal and returns its number.
    pub fn wait(&mut self) -> std::io::Result<i32> {
        self.signals
            .forever()
            .next()
            .ok_or_else(|| std::io::Error::other("signal delivery ended"))
    }
}

/// The process's last resort: ends it with status 1 if it is still running a given time after
/// [`Watchdog::arm`]. Its thread starts with the server, so arming it costs no thread start while the
/// clock of a shutdown is running.
pub struct Watchdog {
    arm: crossbeam_channel::Sender<Instant>,
}

impl Watchdog {
    /// Starts the (sleeping) watchdog thread.
    pub fn start() -> std::io::Result<Watchdog> {
        let (arm, armed) = crossbeam_channel::bounded::<Instant>(1);
        std::thread::Builder::new()
            .name("hydrogen-ws-deadline".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let Ok(deadline) = armed.recv() else {
                    return;
                };
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                log::error!("shutdown did not finish within its deadline: exiting now");
                std::process::exit(1);
            })?;
        Ok(Watchdog { arm })
    }

    /// The process ends with status 1 `after` from now unless it has exited by then.
    pub fn arm(&self, after: Duration) {
        let _ = self.arm.try_send(Instant::now() + after);
    }
}
