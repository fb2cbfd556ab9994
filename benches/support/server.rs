//! The server under test as a process: build or locate the binary, start it, wait for its
//! readiness line, signal it, stop it and reap it.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// The variable that re-runs a bench binary as one of its own servers (see [`this_bench_as`]).
pub const ROLE_ENV: &str = "HYDROGEN_BENCH_ROLE";

/// How long a stopped server has after SIGTERM before SIGKILL, and a killed one to be reaped.
const GRACE: Duration = Duration::from_secs(5);

/// The role this process was started in (`HYDROGEN_BENCH_ROLE`), if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// This bench binary again, to serve as `role`: a server built into the bench runs as a process
/// of its own, so that its CPU time and its exit are measured apart from the client's.
pub fn this_bench_as(role: &str) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.env(ROLE_ENV, role);
    Ok(cmd)
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => std::env::current_dir()
            .unwrap_or_else(|_| manifest_dir.clone())
            .join(dir),
        None => manifest_dir.join("target"),
    }
}

/// `cargo build --release --bin hydrogen-ws` (a no-op when it is fresh); returns the binary. When
/// the build fails but a binary is there, that one is used with a warning on stderr (`who:`).
pub fn release_binary(who: &str) -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let bin = target_dir.join("release").join("hydrogen-ws");
    eprintln!("{who}: cargo build --release --bin hydrogen-ws");
    let status = Command::new(&cargo)
        .args(["build", "--quiet", "--release", "--bin", "hydrogen-ws"])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdin(Stdio::null())
        .status();
    let failure = match status {
        Ok(s) if s.success() && bin.exists() => return Ok(bin),
        Ok(s) if s.success() => return Err(format!("{} not found after the build", bin.display())),
        Ok(s) => format!("cargo build --release --bin hydrogen-ws failed ({s})"),
        Err(e) => format!("cannot run cargo: {e}"),
    };
    if bin.exists() {
        eprintln!(
            "{who}: warning: {failure}; using the existing {}",
            bin.display()
        );
        Ok(bin)
    } else {
        Err(failure)
    }
}

/// A loopback port that was free a moment ago (for a server that takes its port as an argument).
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// The address in a readiness line: `listening on ws://ADDR` (hydrogen-ws and the benches' own
/// servers) or `listening on ADDR` (the libwebsockets baseline).
fn ready_addr(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("listening on ")?;
    Some(rest.strip_prefix("ws://").unwrap_or(rest).trim())
}

/// When and how a server process ended (`None`: waiting for it failed).
pub type Exit = (Instant, Option<ExitStatus>);

/// A started server. A thread reaps it (and records the moment it did) and another drains its
/// stderr for its whole life, so it never blocks on a full pipe. Dropping it kills and reaps the
/// process unless it has exited already.
pub struct ServerProcess {
    pid: u32,
    addr: SocketAddr,
    exited: Receiver<Exit>,
    exit: Option<Exit>,
    /// The CPU time (user + system) of all its threads over its whole life, sent by the reaper.
    cpu: Receiver<Option<Duration>>,
    stderr: Option<thread::JoinHandle<()>>,
}

/// Waits for `child` with `wait4`, which also returns the CPU time of all its threads.
fn reap(child: &mut std::process::Child) -> (Option<ExitStatus>, Option<Duration>) {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, with pointers to a live c_int and a live rusage.
        let rc = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        if rc >= 0 {
            let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
            let cpu = Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime));
            return (Some(ExitStatus::from_raw(status)), Some(cpu));
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return (child.wait().ok(), None);
        }
    }
}

impl ServerProcess {
    /// Starts `cmd` (stdin and stdout null, stderr piped) and waits up to `ready_within` for its
    /// readiness line. Every other line of its stderr is handed to `on_line`, with whether the
    /// readiness line had come by then.
    pub fn start(
        cmd: &mut Command,
        ready_within: Duration,
        mut on_line: impl FnMut(&str, bool) + Send + 'static,
    ) -> Result<ServerProcess, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        let pid = child.id();
        let stderr = child.stderr.take();
        let (exit_tx, exited) = mpsc::channel();
        let (cpu_tx, cpu_rx) = mpsc::channel();
        thread::spawn(move || {
            let (status, cpu) = reap(&mut child);
            let _ = exit_tx.send((Instant::now(), status));
            let _ = cpu_tx.send(cpu);
        });
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let stderr = stderr.map(|stderr| {
            thread::spawn(move || {
                let mut ready_tx = Some(ready_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    match ready_addr(&line) {
                        Some(addr) if ready_tx.is_some() => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(addr.to_string());
                            }
                        }
                        _ => on_line(&line, ready_tx.is_none()),
                    }
                }
            })
        });
        let mut server = ServerProcess {
            pid,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            exited,
            exit: None,
            cpu: cpu_rx,
            stderr,
        };
        let addr = match ready_rx.recv_timeout(ready_within) {
            Ok(addr) => addr,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no readiness line within {ready_within:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                server.kill();
                return Err("the server exited before it was ready".into());
            }
        };
        server.addr = addr
            .parse()
            .map_err(|e| format!("bad address {addr:?} in the readiness line: {e}"))?;
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where it listens, from its readiness line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the reaper has reported the exit (recording it if it just has).
    fn has_exited(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.exited.try_recv().ok();
        }
        self.exit.is_some()
    }

    /// Sends `signal`, unless the process has been reaped already (its pid may be reused).
    pub fn signal(&mut self, signal: libc::c_int) -> Result<(), String> {
        if self.has_exited() {
            return Err("the server has exited already".into());
        }
        // SAFETY: kill(2) on our own child, not reaped yet (its reaper has not reported).
        if unsafe { libc::kill(self.pid as libc::pid_t, signal) } != 0 {
            return Err(format!("kill: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The CPU time its threads have used so far, from the process's CPU clock (nanoseconds; reading
    /// `/proc/PID/task/*` instead would leave a dentry per thread that its exit must then drop).
    pub fn cpu_now(&self) -> Option<Duration> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: clock_getcpuclockid only writes the clock id through the pointer to a live local.
        if unsafe { libc::clock_getcpuclockid(self.pid as libc::pid_t, &mut clock) } != 0 {
            return None;
        }
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec through the pointer to a live local.
        if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
            return None;
        }
        Some(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
    }

    /// After the exit: the CPU time of its whole life (`None`: not known).
    pub fn cpu_total(&mut self) -> Option<Duration> {
        if !self.has_exited() {
            return None;
        }
        self.cpu.recv_timeout(GRACE).ok().flatten()
    }

    /// Waits up to `within` for the process to exit; the moment it was reaped and its status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = self.exited.recv_timeout(within).ok();
        }
        self.exit
    }

    /// SIGKILL, then waits (bounded) for the reaper; the moment it reaped the process.
    pub fn kill(&mut self) -> Option<Instant> {
        if !self.has_exited() {
            let _ = self.signal(libc::SIGKILL);
        }
        self.wait_exit(GRACE).map(|(at, _)| at)
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s; its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let _ = self.signal(libc::SIGTERM);
        if self.wait_exit(GRACE).is_none() {
            self.kill();
        }
        self.exit.and_then(|(_, status)| status)
    }

    /// After the exit: waits until every line of stderr has been handed over.
    pub fn drain_stderr(&mut self) {
        if self.has_exited() {
            if let Some(t) = self.stderr.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
