//! One terminal session: the command on a PTY (its own session, the PTY its controlling terminal, a
//! clean environment), and its end: SIGHUP to every process of the session, SIGKILL after a grace, and
//! the command reaped.
//!
//! The command is the leader of a session of its own, so its session id is its pid; a shell with job
//! control puts each job in a process group of its own, so the ending signals every process of the
//! session (found in `/proc`), not only the leader's group. The leader is reaped only once no process
//! of its session is left alive: until then its pid (the session id) cannot be reused, and no signal
//! can reach a stranger.

use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pty_process::blocking::{Command, Pty};
use pty_process::Size;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use crate::config::TerminalConfig;

/// The environment variables a session's command gets (besides `TERM`), read from the server's own
/// environment; nothing else is passed on (the server's keys least of all).
const PASSED_ON: [&str; 4] = ["HOME", "USER", "PATH", "LANG"];

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It could not be reaped (it did not die within the grace after SIGKILL).
    Unknown,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Unknown,
        }
    }
}

/// The command's process, until it is reaped.
enum Leader {
    Running(Child),
    Reaped(Exit),
}

/// A running command on a PTY.
pub(super) struct Session {
    pty: Pty,
    pid: i32,
    leader: Mutex<Leader>,
    ending: AtomicBool,
    last_input: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// Starts `config.command` on a new PTY of 24 rows and 80 columns.
    pub(super) fn start(config: &TerminalConfig) -> io::Result<Session> {
        let (pty, pts) = pty_process::blocking::open().map_err(io::Error::other)?;
        pty.resize(Size::new(24, 80)).map_err(io::Error::other)?;
        let env = clean_env(&config.command);
        let home = env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| v.clone())
            .filter(|h| std::path::Path::new(h).is_dir())
            .unwrap_or_else(|| "/".to_string());
        let child = Command::new(&config.command)
            .env_clear()
            .envs(env)
            .current_dir(home)
            .spawn(pts)
            .map_err(io::Error::other)?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        // Reads wait in poll() (with a tick, to see the session end); writes must never block a worker on
        // a command that does not read its input.
        let flags = rustix::fs::fcntl_getfl(&pty)?;
        rustix::fs::fcntl_setfl(&pty, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(Session {
            pty,
            pid,
            leader: Mutex::new(Leader::Running(child)),
            ending: AtomicBool::new(false),
            last_input: Mutex::new(Instant::now()),
        })
    }

    /// The command's pid (also its session and process group id).
    pub(super) fn pid(&self) -> i32 {
        self.pid
    }

    /// The PTY's master side.
    pub(super) fn pty(&self) -> &Pty {
        &self.pty
    }

    /// Marks the session as ending: the output pump stops at its next look.
    pub(super) fn begin_end(&self) {
        self.ending.store(true, Ordering::SeqCst);
    }

    /// Whether the session is ending (the client went, or the server is stopping).
    pub(super) fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }

    /// Records a message from the client (for the idle timeout).
    pub(super) fn touch(&self) {
        *lock(&self.last_input) = Instant::now();
    }

    /// Time since the client's last message.
    pub(super) fn idle_for(&self) -> Duration {
        lock(&self.last_input).elapsed()
    }

    /// Sets the window size (TIOCSWINSZ); the command gets SIGWINCH.
    pub(super) fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        self.pty
            .resize(Size::new(rows, cols))
            .map_err(io::Error::other)
    }

    /// Writes `bytes` to the command's input, waiting (at most `limit`) while the PTY's input buffer is
    /// full.
    pub(super) fn write_input(&self, mut bytes: &[u8], limit: Duration) -> io::Result<()> {
        let until = Instant::now() + limit;
        while !bytes.is_empty() {
            match (&self.pty).write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if now >= until || self.is_ending() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    wait_for(&self.pty, PollFlags::OUT, (until - now).min(TICK))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether the command itself has exited (a zombie, or gone), though processes it started may still
    /// hold the PTY open.
    pub(super) fn leader_exited(&self) -> bool {
        !matches!(process_state(self.pid), Some(state) if state != 'Z')
    }

    /// Ends the session (once; later callers get the same outcome): SIGHUP to every process of the
    /// session, SIGKILL to those left after `grace`, and the command reaped. What the processes still
    /// print meanwhile is read and dropped, so none of them is held up writing to a full PTY. Takes at
    /// most about three times `grace` (or `grace` + 2 s for a grace of 1 s or more).
    pub(super) fn end(&self, grace: Duration) -> Exit {
        let mut leader = lock(&self.leader);
        let child = match &mut *leader {
            Leader::Reaped(exit) => return *exit,
            Leader::Running(child) => child,
        };
        let kill_wait = KILL_WAIT.min(grace.max(Duration::from_millis(50)));
        signal_session(self.pid, Signal::HUP);
        // A stopped job would not act on the hangup until continued.
        signal_session(self.pid, Signal::CONT);
        if !self.wait_until_dead(grace) {
            signal_session(self.pid, Signal::KILL);
            self.wait_until_dead(kill_wait);
        }
        let exit = reap(child, kill_wait);
        *leader = Leader::Reaped(exit);
        exit
    }

    /// Waits (at most `limit`) until no process of the session is alive (zombies are dead), dropping
    /// what they print; whether none is.
    fn wait_until_dead(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        let mut scratch = [0u8; 4096];
        loop {
            if session_members(self.pid)
                .iter()
                .all(|(_, state)| *state == 'Z')
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            let mut pty = &self.pty;
            for _ in 0..64 {
                if !matches!(std::io::Read::read(&mut pty, &mut scratch), Ok(n) if n > 0) {
                    break;
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// How often the waits look again.
pub(super) const TICK: Duration = Duration::from_millis(100);

/// How long processes get to die after SIGKILL (they only fail to when stuck in the kernel).
const KILL_WAIT: Duration = Duration::from_secs(1);

/// The environment of a session's command: `TERM=xterm-256color`, `SHELL` (the command), and
/// [`PASSED_ON`] from the server's environment, with defaults for `PATH` and `LANG`.
pub(super) fn clean_env(command: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("TERM".to_string(), "xterm-256color".to_string()),
        ("SHELL".to_string(), command.to_string()),
    ];
    for name in PASSED_ON {
        let value = std::env::var(name).ok().or_else(|| match name {
            "PATH" => Some("/usr/local/bin:/usr/bin:/bin".to_string()),
            "LANG" => Some("C.UTF-8".to_string()),
            _ => None,
        });
        if let Some(value) = value {
            env.push((name.to_string(), value));
        }
    }
    env
}

/// Waits until `fd` is ready for `events` or `timeout` passes; whether it is ready (a hang-up counts).
pub(super) fn wait_for(fd: &Pty, events: PollFlags, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(fd, events)];
    let timeout = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to the process group `sid` and to every process of the session `sid` (jobs of a
/// shell with job control have process groups of their own).
fn signal_session(sid: i32, signal: Signal) {
    let Some(group) = Pid::from_raw(sid) else {
        return;
    };
    // Errors only say that nobody is left to signal.
    let _ = kill_process_group(group, signal);
    for (pid, _) in session_members(sid) {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = kill_process(pid, signal);
        }
    }
}

/// Reaps `child`, waiting at most `limit`.
fn reap(child: &mut Child, limit: Duration) -> Exit {
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.into(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                log::error!(
                    "terminal: process {} survived SIGKILL; not reaped",
                    child.id()
                );
                return Exit::Unknown;
            }
            Err(e) => {
                log::error!("terminal: cannot reap process {}: {e}", child.id());
                return Exit::Unknown;
            }
        }
    }
}

/// The processes of session `sid`, with their state letter (`R`, `S`, `Z`, ...), from `/proc`.
pub(super) fn session_members(sid: i32) -> Vec<(i32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let (state, session) = stat_fields(pid)?;
        (session == sid).then_some((pid, state))
    })
    .collect()
}

/// The state letter of process `pid` (`None`: no such process).
fn process_state(pid: i32) -> Option<char> {
    stat_fields(pid).map(|(state, _)| state)
}

/// The state and the session id of process `pid`, from `/proc/<pid>/stat`.
fn stat_fields(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// State and session of a `/proc/<pid>/stat` line: `pid (comm) state ppid pgrp session ...`, where
/// `comm` may hold spaces and parentheses (so the fields start after the last `)`).
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let session = fields.nth(2)?.parse().ok()?;
    Some((state, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        let line = "4242 (a (weird) name) S 1 4242 4240 34816 4242 4194560 0 0";
        assert_eq!(parse_stat(line), Some(('S', 4240)));
        assert_eq!(parse_stat("garbage"), None);
        let own = std::process::id() as i32;
        assert!(process_state(own).is_some());
    }

    #[test]
    fn the_environment_holds_no_key() {
        let env = clean_env("/bin/sh");
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            names.contains(&"TERM") && names.contains(&"PATH"),
            "{names:?}"
        );
        assert!(names
            .iter()
            .all(|n| ["TERM", "SHELL", "HOME", "USER", "PATH", "LANG"].contains(n)));
    }

    #[test]
    fn a_session_is_ended_whole_and_reaped() {
        let mut config = TerminalConfig::new("k".repeat(32));
        config.command = "/bin/sh".into();
        let session = Session::start(&config).expect("starts");
        // A job of its own that ignores the hangup: only SIGKILL ends it.
        session
            .write_input(b"trap '' HUP; sleep 30 & echo started\n", TICK)
            .expect("input");
        let until = Instant::now() + Duration::from_secs(5);
        while session_members(session.pid()).len() < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let members = session_members(session.pid());
        assert!(members.len() >= 2, "{members:?}");
        let started = Instant::now();
        let exit = session.end(Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(exit, Exit::Signal(_) | Exit::Code(_)), "{exit:?}");
        assert_eq!(session.end(Duration::ZERO), exit, "ends once");
        for (pid, _) in members {
            let state = process_state(pid);
            assert!(matches!(state, None | Some('Z')), "{pid}: {state:?}");
        }
        assert_eq!(process_state(session.pid()), None, "the leader is reaped");
    }
}
