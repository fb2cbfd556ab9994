//! The servers of the shutdown bench: starting each kind, its stderr (hydrogen-ws's shutdown report
//! line), the libwebsockets baseline's build, and the `floor` server.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::floor;
use crate::support::server::{self, ServerProcess};
use crate::{Kind, Server};

/// How long a server has to print its readiness line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of stderr kept for error messages.
const STDERR_TAIL: usize = 32;

/// The `floor` row's server (this bench binary re-run with `HYDROGEN_BENCH_ROLE=floor THREADS`): one
/// blocked thread per connection like hydrogen-ws, answering the upgrade with a bare 101 and then only
/// reading; SIGTERM ends the process with `exit(0)` at once, no close frames, no join.
pub fn floor_server() -> ! {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("floor: {what}: {e}");
        std::process::exit(1)
    };
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT])
        .unwrap_or_else(|e| fail("signals", &e));
    let (tx, rx) = crossbeam_channel::bounded::<std::net::TcpStream>(threads);
    for _ in 0..threads {
        let rx = rx.clone();
        let spawned = thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                for mut stream in rx.iter() {
                    if floor::bare_upgrade(&mut stream).is_err() {
                        continue;
                    }
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                }
            });
        if let Err(e) = spawned {
            fail("spawn", &e);
        }
    }
    let listener = floor::listen().unwrap_or_else(|e| fail("bind", &e));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = tx.send(stream);
        }
    });
    let _ = signals.forever().next();
    std::process::exit(0);
}

/// Compiles `benches/lws/echo.c` when pkg-config knows libwebsockets; `Ok(None)` when it does not.
pub fn build_lws() -> Result<Option<PathBuf>, String> {
    let exists = Command::new("pkg-config")
        .args(["--exists", "libwebsockets"])
        .stdin(Stdio::null())
        .status();
    if !matches!(exists, Ok(s) if s.success()) {
        return Ok(None);
    }
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libwebsockets"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("pkg-config: {e}"))?;
    if !flags.status.success() {
        return Err("pkg-config --cflags --libs libwebsockets failed".into());
    }
    let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("lws")
        .join("echo.c");
    let out_dir = server::target_dir().join("lws-echo");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let bin = out_dir.join("echo");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let output = Command::new(&cc)
        .args(["-O2", "-Wall", "-o"])
        .arg(&bin)
        .arg(&source)
        .args(flags.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cc.to_string_lossy()))?;
    if !output.status.success() {
        return Err(format!(
            "compiling {} failed: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Some(bin))
}

/// The server's stderr, drained for the whole life of the process.
#[derive(Default)]
struct StderrLog {
    tail: VecDeque<String>,
    /// hydrogen-ws's own shutdown report line, and when it was read (the sequence was over).
    report: Option<(String, Instant)>,
}

impl StderrLog {
    fn push(&mut self, line: &str) {
        if line.contains("INFO  shutdown: connections=") {
            self.report = Some((line.to_string(), Instant::now()));
        }
        if self.tail.len() == STDERR_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }
}

/// A started server of any kind, with its stderr.
pub struct Running {
    pub process: ServerProcess,
    log: Arc<Mutex<StderrLog>>,
}

impl Running {
    /// Starts `server` sized for `conns` connections and waits until it listens.
    pub fn start(server: &Server, conns: usize) -> Result<Running, String> {
        let mut cmd = Command::new(&server.bin);
        match server.kind {
            Kind::Hydrogen | Kind::Compare => {
                cmd.args([
                    "--listen",
                    "127.0.0.1:0",
                    "--mode",
                    "echo",
                    "--threads",
                    // Never below the default capacity, so the 0-connection row is the default server.
                    &(conns + 16).max(256).to_string(),
                    // `info`, not `warn`: the shutdown report is logged at info level.
                    "--log-level",
                    "info",
                    "--shutdown-timeout",
                    "2s",
                ]);
            }
            Kind::Lws | Kind::LwsPolite => {
                cmd.arg(server::free_port()?.to_string());
                if server.kind == Kind::LwsPolite {
                    cmd.arg("polite");
                }
            }
            Kind::Floor => {
                cmd = server::this_bench_as("floor")?;
                cmd.arg((conns + 16).to_string());
            }
        }
        let log = Arc::new(Mutex::new(StderrLog::default()));
        let sink = Arc::clone(&log);
        let started = ServerProcess::start(&mut cmd, START_TIMEOUT, move |line, _| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line)
        });
        match started {
            Ok(process) => Ok(Running { process, log }),
            Err(e) => Err(format!("{e}; stderr: {}", tail(&log))),
        }
    }

    /// The shutdown report line and when it was read, once the process has exited and its stderr is
    /// drained.
    pub fn report(&mut self) -> Option<(String, Instant)> {
        self.process.drain_stderr();
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.report.clone()
    }
}

fn tail(log: &Mutex<StderrLog>) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.tail.iter().cloned().collect::<Vec<_>>().join(" | ")
}
