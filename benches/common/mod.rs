//! Pieces shared by the benches that drive a `hydrogen-ws` process (`echo`, `load`).

use std::io::{BufRead, BufReader};
use std::process::ChildStderr;
use std::sync::mpsc::{self, Receiver};

/// Drains a server's stderr on a thread of its own, so the server never blocks on it. The address of
/// its readiness line (`listening on ws://ADDR`) is sent on the returned channel; every other line is
/// handed to `other`, with whether the address had been seen by then.
pub fn watch_stderr(
    stderr: ChildStderr,
    mut other: impl FnMut(&str, bool) + Send + 'static,
) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            match line.strip_prefix("listening on ws://") {
                Some(addr) if tx.is_some() => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
                _ => other(&line, tx.is_none()),
            }
        }
    });
    rx
}
