//! The server under load: hydrogen-ws in echo mode, its stderr tallied by kind of line.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::proc::Sample;
use crate::support::server::ServerProcess;

/// The server's stderr, tallied by kind of line.
#[derive(Default)]
pub struct LogTally {
    pub kinds: Mutex<BTreeMap<String, u64>>,
    pub last_errors: Mutex<VecDeque<String>>,
}

impl LogTally {
    fn add(&self, line: &str) {
        let kind = if line.contains(" ERROR ") {
            let mut last = self.last_errors.lock().unwrap();
            if last.len() == 5 {
                last.pop_front();
            }
            last.push_back(line.to_string());
            "ERROR".to_string()
        } else if let Some(i) = line.find("refused ") {
            line[i..].chars().take(11).collect()
        } else if line.contains("evicted") {
            "evicted".to_string()
        } else if line.contains(" WARN ") {
            let mut last = self.last_errors.lock().unwrap();
            if last.len() == 5 {
                last.pop_front();
            }
            last.push_back(line.to_string());
            "WARN (other)".to_string()
        } else {
            "other".to_string()
        };
        *self.kinds.lock().unwrap().entry(kind).or_default() += 1;
    }
}

/// The server process, started with `--threads` sized for the load.
pub struct ServerProc {
    process: ServerProcess,
    pub log: Arc<LogTally>,
    pub threads_flag: usize,
}

impl ServerProc {
    pub fn start(bin: &Path, threads: usize, extra: &[String]) -> Result<ServerProc, String> {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--mode",
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .args(["--threads", &threads.to_string()])
        .args(extra);
        let log = Arc::new(LogTally::default());
        let tally = Arc::clone(&log);
        let process =
            ServerProcess::start(&mut cmd, Duration::from_secs(60), move |line, ready| {
                // Before the readiness line, anything the server says is worth seeing at once.
                if !ready {
                    eprintln!("server: {line}");
                }
                tally.add(line);
            })?;
        Ok(ServerProc {
            process,
            log,
            threads_flag: threads,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    pub fn sample(&self) -> Sample {
        Sample::of(self.pid())
    }

    /// SIGTERM, then SIGKILL after 5 s; always reaps.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.process.stop()
    }
}

/// Waits (up to `within`) until the server's descriptors and threads are at most `baseline`'s.
pub fn settle(server: &ServerProc, baseline: Sample, within: Duration) -> Sample {
    let until = Instant::now() + within;
    loop {
        let s = server.sample();
        if (s.fds <= baseline.fds && s.threads <= baseline.threads) || Instant::now() >= until {
            // Let memory settle a moment too (freed buffers, exited lingers).
            std::thread::sleep(Duration::from_millis(500));
            return server.sample();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
