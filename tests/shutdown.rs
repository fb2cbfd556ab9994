//! The shutdown sequence over real sockets: every client told with 1001, nothing waits on a client,
//! and the binary's signal path.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::OpCode;
use support::{config, server_with, upgrade_request, wait_until, RawClient};

#[test]
fn every_open_client_receives_1001() {
    let mut cfg = config();
    cfg.threads = 40;
    let server = server_with(cfg, hydrogen_ws::Echo);
    let mut clients: Vec<RawClient> = (0..32)
        .map(|_| RawClient::open(server.local_addr()))
        .collect();
    // One of them is mid-conversation.
    clients[0].send_frame(true, OpCode::Text, b"ping");
    assert_eq!(clients[0].read_frame().expect("echo").payload, b"ping");

    let report = server.handle().shutdown();
    assert_eq!(report.connections, 32);
    assert_eq!(report.close_frames, 32, "{report}");
    assert_eq!(report.forced, 0);
    assert!(report.completed());
    for c in &mut clients {
        assert_eq!(c.read_close().expect("close frame"), Some(1001));
    }
    server.shutdown();
}

#[test]
fn the_report_counts_the_clients_that_answered_the_1001() {
    let mut cfg = config();
    cfg.threads = 16;
    let server = server_with(cfg, hydrogen_ws::Echo);
    // Eight clients answer the close frame at once, as browsers do; four never answer.
    let answering: Vec<_> = (0..8)
        .map(|_| {
            let mut c = RawClient::open(server.local_addr());
            std::thread::spawn(move || {
                assert_eq!(c.read_close().expect("close frame"), Some(1001));
                c.send_frame(true, OpCode::Close, &1001u16.to_be_bytes());
                let _ = c.read_to_eof();
            })
        })
        .collect();
    let mut silent: Vec<RawClient> = (0..4)
        .map(|_| RawClient::open(server.local_addr()))
        .collect();
    let report = server.handle().shutdown();
    assert_eq!(report.close_frames, 12, "{report}");
    // Answers count only from the clients that sent one (all eight, unless the machine was too slow
    // for some of them to answer within the sequence's short wait).
    assert!((1..=8).contains(&report.answered), "{report}");
    for t in answering {
        t.join().expect("client thread");
    }
    for c in &mut silent {
        assert_eq!(c.read_close().expect("close frame"), Some(1001));
    }
    server.shutdown();
}

#[test]
fn clients_sending_during_shutdown_each_get_1001_and_the_report_counts_every_frame() {
    let mut cfg = config();
    cfg.threads = 24;
    let server = server_with(cfg, hydrogen_ws::Echo);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut writers = Vec::new();
    for i in 0..16u8 {
        let c = RawClient::open(server.local_addr());
        let mut out = c.stream.try_clone().expect("clone");
        let stop = std::sync::Arc::clone(&stop);
        // Keeps the worker busy: a message every few hundred microseconds until told to stop (writes
        // after the server closed fail, which is fine).
        writers.push(std::thread::spawn(move || {
            let frame = hydrogen_ws_protocol::encode_masked_frame(
                true,
                OpCode::Text,
                [i, 1, 2, 3],
                b"busy client",
            );
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if out.write_all(&frame).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
        }));
        clients.push(c);
    }
    std::thread::sleep(Duration::from_millis(100));
    let report = server.handle().shutdown();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Whether the sequence or a busy worker wrote it, every client's 1001 is counted once.
    assert_eq!(report.connections, 16, "{report}");
    assert_eq!(report.close_frames, 16, "{report}");
    assert_eq!((report.already_closing, report.forced), (0, 0), "{report}");
    for c in &mut clients {
        assert_eq!(c.read_close().expect("close frame"), Some(1001));
    }
    for w in writers {
        w.join().expect("writer");
    }
    server.shutdown();
}

#[test]
fn a_client_that_never_reads_cannot_hold_shutdown_past_its_deadline() {
    let mut cfg = config();
    cfg.shutdown_timeout = Duration::from_millis(500);
    let server = server_with(cfg, hydrogen_ws::Echo);
    let stalled = RawClient::open(server.local_addr());
    // Keep sending echo requests and never read the echoes: the server's echo stalls on a full send
    // buffer with more queued behind it, for as long as this goes on.
    let mut writer = stalled.stream.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let chunk = hydrogen_ws_protocol::encode_masked_frame(
        true,
        OpCode::Binary,
        [9, 9, 9, 9],
        &[0u8; 65536],
    );
    let pusher = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(10);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
            if writer.write(&chunk).is_err() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    // Wait until the server has stopped taking the client's data.
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = server.handle().stats().bytes_in;
        if now == last {
            break;
        }
        last = now;
    }
    let mut polite = RawClient::open(server.local_addr());

    let started = Instant::now();
    let report = server.handle().shutdown();
    assert!(started.elapsed() < Duration::from_millis(1500), "{report}");
    assert_eq!(report.connections, 2);
    assert_eq!(report.forced, 1, "{report}");
    assert_eq!(report.close_frames, 1, "{report}");
    assert_eq!(polite.read_close().expect("close"), Some(1001));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = pusher.join();
    drop(stalled);
    server.shutdown();
}

#[test]
fn clients_mid_handshake_are_closed_not_left_hanging() {
    let server = server_with(config(), hydrogen_ws::Echo);
    let mut half: Vec<RawClient> = (0..3)
        .map(|_| {
            let mut c = RawClient::connect(server.local_addr());
            c.send_raw(b"GET / HTTP/1.1\r\nHost: loc");
            c
        })
        .collect();
    // Half-sent request heads wait in the admission stage (pending), not in a worker's registry slot.
    while server.handle().status_document().connections.pending < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = server.handle().shutdown();
    assert_eq!(report.handshaking, 3, "{report}");
    for c in &mut half {
        let mut buf = [0u8; 64];
        // EOF (or a reset): the point is that it ends, well before the 5 s read timeout.
        let started = Instant::now();
        let _ = c.stream.read(&mut buf);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    server.shutdown();
}

#[test]
fn a_flood_of_new_connections_during_shutdown_never_hangs() {
    let server = server_with(config(), hydrogen_ws::Echo);
    let addr = server.local_addr();
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = std::sync::Arc::clone(&stopping);
    let flood = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_millis(400);
        // Connection attempts made once the shutdown had begun (the flood must overlap it).
        let mut ended = 0;
        while Instant::now() < until {
            let counts = during.load(std::sync::atomic::Ordering::SeqCst);
            let Ok(mut s) = TcpStream::connect(addr) else {
                ended += usize::from(counts); // refused: the listener is gone
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            let _ = s.write_all(upgrade_request("").as_bytes());
            let mut buf = [0u8; 512];
            let started = Instant::now();
            // 101 then 1001, a 503, EOF or a reset: anything but a hang.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "a flood client hung"
            );
            ended += usize::from(counts);
        }
        ended
    });
    std::thread::sleep(Duration::from_millis(100));
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = server.handle().shutdown();
    assert!(report.completed(), "{report}");
    assert!(flood.join().expect("flood thread") > 0);
    server.shutdown();
}

#[test]
fn shutdown_is_idempotent_across_handles() {
    let server = server_with(config(), hydrogen_ws::Echo);
    let h1 = server.handle();
    let h2 = server.handle();
    let t = std::thread::spawn(move || h2.shutdown());
    let a = h1.shutdown();
    let b = t.join().expect("thread");
    assert_eq!(a, b);
    assert!(h1.is_shutting_down());
}

fn spawn_binary(extra: &[&str]) -> (std::process::Child, std::net::SocketAddr) {
    let (child, addr, _log) = spawn_binary_logged(extra);
    (child, addr)
}

/// What the binary wrote to stderr so far.
type Log = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

fn log_text(log: &Log) -> String {
    String::from_utf8_lossy(&log.lock().expect("log")).into_owned()
}

fn spawn_binary_logged(extra: &[&str]) -> (std::process::Child, std::net::SocketAddr, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hydrogen-ws"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "echo",
            "--threads",
            "4",
            "--log-level",
            "info",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    let addr = loop {
        assert_eq!(
            stderr.read(&mut byte).expect("stderr"),
            1,
            "exited early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.push(byte[0]);
        if byte[0] == b'\n' {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some(a) = text
                .lines()
                .find_map(|l| l.strip_prefix("listening on ws://"))
            {
                break a.trim().parse().expect("address");
            }
        }
    };
    // Keep draining stderr (into the log) so the child never blocks on it.
    let log = Log::default();
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            sink.lock().expect("log").extend_from_slice(&chunk[..n]);
        }
    });
    (child, addr, log)
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the server did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &std::process::Child, sig: i32) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory-safety conditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    let (mut child, addr) = spawn_binary(&[]);
    let mut clients: Vec<RawClient> = (0..3).map(|_| RawClient::open(addr)).collect();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    for c in &mut clients {
        assert_eq!(c.read_close().expect("close"), Some(1001));
    }
}

#[test]
fn sigint_works_like_sigterm() {
    let (mut child, addr) = spawn_binary(&[]);
    let mut c = RawClient::open(addr);
    signal(&child, libc::SIGINT);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
    assert_eq!(c.read_close().expect("close"), Some(1001));
}

#[test]
fn bad_flag_exits_2_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_hydrogen-ws"))
        .args(["--threads", "lots"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--threads"), "{err}");
}

#[test]
fn a_second_signal_during_shutdown_exits_at_once_with_130() {
    // A client with a tiny receive window that never reads keeps its worker waiting for the close frame
    // to be acknowledged, so the graceful shutdown lasts until its deadline (4 s here) ...
    let (mut child, addr, log) = spawn_binary_logged(&["--shutdown-timeout", "4s"]);
    let mut stream = support::open_small_rcvbuf(addr);
    let frame =
        hydrogen_ws_protocol::encode_masked_frame(true, OpCode::Binary, [1, 2, 3, 4], &[0u8; 2000]);
    for _ in 0..20 {
        stream.write_all(&frame).expect("send");
    }
    std::thread::sleep(Duration::from_millis(300));

    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "still in its graceful shutdown"
    );
    // ... and a second signal ends it at once.
    let started = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(2));
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_millis(1000));
    // With one line that says why.
    let wanted = "hydrogen-ws ERROR second signal during shutdown: exiting now";
    assert!(
        wait_until(Duration::from_secs(1), || log_text(&log).contains(wanted)),
        "{}",
        log_text(&log)
    );
    drop(stream);
}

struct Slow;
impl hydrogen_ws::Handler for Slow {
    fn on_message(&self, _conn: &hydrogen_ws::Conn, _message: hydrogen_ws_protocol::Message<'_>) {
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[test]
fn the_deadline_bounds_shutdown_even_when_a_handler_is_stuck() {
    let mut cfg = config();
    cfg.shutdown_timeout = Duration::from_millis(300);
    let server = server_with(cfg, Slow);
    let mut stuck = RawClient::open(server.local_addr());
    let mut fine = RawClient::open(server.local_addr());
    stuck.send_frame(true, OpCode::Text, b"take your time");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let report = server.handle().shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(800), "{took:?} {report}");
    assert_eq!(report.unfinished, 1, "{report}");
    assert!(!report.completed());
    // The stuck worker's client still got its close frame: the write did not need the worker.
    assert_eq!(report.close_frames, 2, "{report}");
    assert_eq!(fine.read_close().expect("close"), Some(1001));
    assert_eq!(stuck.read_close().expect("close"), Some(1001));
}
