//! Helpers shared by the hostile-client tests: the measurement lock, /proc readings, a bystander client
//! and raw connections with small buffers.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};
use socket2::SockRef;

pub use crate::support::{open_small_rcvbuf, wait_until};
use crate::support::{upgrade_request, HttpResponse, RawClient};

static MEASURE: RwLock<()> = RwLock::new(());

/// Taken by every test that does not measure the process.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    MEASURE.read().unwrap_or_else(|e| e.into_inner())
}

/// Taken by tests that read RSS, descriptors or threads: no other test runs meanwhile.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MEASURE.write().unwrap_or_else(|e| e.into_inner())
}

/// This process's resident set in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Threads of this process that belong to a hydrogen-ws server (workers, acceptor, ticker, refuser).
pub fn server_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("hydrogen-ws"))
        .count()
}

/// Whether a read would return something (data or EOF) within `timeout`, without consuming it.
pub fn readable(stream: &TcpStream, timeout: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(timeout));
    let ready = !matches!(
        stream.peek(&mut [0u8; 1]),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    );
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    ready
}

/// Sends `message` as one text frame and reads until its echo, answering pings on the way; returns the
/// round trip. Panics on anything else: this is the well-behaved client whose service must not degrade.
pub fn echo(c: &mut RawClient, message: &[u8]) -> Duration {
    let started = Instant::now();
    c.send_frame(true, OpCode::Text, message);
    loop {
        let f = c.read_frame().expect("the bystander's echo");
        match f.opcode {
            0x9 => c.send_frame(true, OpCode::Pong, &f.payload),
            0xA => {}
            _ => {
                assert_eq!(
                    (f.fin, f.opcode, f.payload.as_slice()),
                    (true, 1, message),
                    "the bystander got something other than its echo"
                );
                return started.elapsed();
            }
        }
    }
}

/// The bystander's check after an attack: an echo comes back, promptly.
pub fn still_served(c: &mut RawClient) {
    let rtt = echo(c, b"still here after the attack");
    assert!(rtt < Duration::from_secs(2), "echo took {rtt:?}");
}

/// Opens a client, retrying for a moment while the server answers 503 (a worker that just finished with
/// a connection is returned to the pool a moment after the client sees the end).
pub fn open_when_free(addr: SocketAddr, within: Duration) -> RawClient {
    let until = Instant::now() + within;
    loop {
        let mut c = RawClient::connect(addr);
        c.send_raw(upgrade_request("").as_bytes());
        let r = c.read_response().expect("a response");
        if r.status == 101 {
            return c;
        }
        assert_eq!(r.status, 503, "{r:?}");
        assert!(
            Instant::now() < until,
            "the server stayed full for {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `request` on a new connection and returns the response; asserts that the server then closes
/// cleanly (FIN, not a reset) with nothing more.
pub fn refusal(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut c = RawClient::connect(addr);
    c.send_raw(request);
    let r = c.read_response().expect("a response");
    assert_eq!(
        c.read_to_eof().expect("a clean close after the refusal"),
        0,
        "{r:?}"
    );
    r
}

/// Asserts a refusal's status and its one-line reason (the body).
pub fn assert_refused(r: &HttpResponse, status: u16, reason: &str, what: &str) {
    assert_eq!(
        (r.status, r.body.trim_end()),
        (status, reason),
        "{what}: {r:?}"
    );
    assert_eq!(r.header("connection"), Some("close"), "{what}");
}

/// Writes `bytes` in `piece`-sized writes, looking for an answer for `wait` after each; returns how
/// many bytes were written when the answer was first seen (`None`: all written, no answer).
pub fn write_in_pieces(
    stream: &mut TcpStream,
    bytes: &[u8],
    piece: usize,
    wait: Duration,
) -> Option<usize> {
    let _ = stream.set_nodelay(true);
    let mut written = 0;
    for chunk in bytes.chunks(piece) {
        if stream.write_all(chunk).is_err() {
            // The server closed: its answer is in our receive buffer (or it reset us).
            return Some(written);
        }
        written += chunk.len();
        if readable(stream, wait) {
            return Some(written);
        }
    }
    None
}

/// Drops a connection with a reset instead of a FIN (SO_LINGER 0).
pub fn reset(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_masked_frame(fin, opcode, [0x11, 0x22, 0x33, 0x44], payload)
}

/// A frame header as raw bytes, masked with a zero key (the payload then goes on the wire as is).
pub fn raw_header(b0: u8, len_bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    out.extend_from_slice(len_bytes);
    out[1] |= 0x80;
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// Reads frames until a close frame (skipping echoes of messages that came before the violation):
/// returns its code and reason. Panics if none arrives.
pub fn read_close(c: &mut RawClient, what: &str) -> (u16, String) {
    loop {
        let f = c
            .read_frame()
            .unwrap_or_else(|e| panic!("{what}: no close frame ({e})"));
        if f.opcode == 0x8 {
            let code = f.close_code().unwrap_or(1005);
            let reason = String::from_utf8_lossy(f.payload.get(2..).unwrap_or_default());
            return (code, reason.into_owned());
        }
    }
}

/// One client that keeps writing `unit` and never reads, next to a bystander, on an echo server with a
/// 500 ms send timeout: the bystander keeps getting its echoes (`note`) within 2 s each, the non-reader
/// is evicted within 5 s (counted once, its connection gone) and the bystander is still served after.
/// Returns the bytes the non-reader got out before it was cut off.
pub fn non_reader_is_evicted(unit: Vec<u8>, note: &[u8]) -> usize {
    let mut cfg = crate::support::config();
    cfg.limits.send_timeout = Duration::from_millis(500);
    let server = crate::support::server_with(cfg, hydrogen_ws::Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let flood = flood_until_cut_off(open_small_rcvbuf(addr), unit);
    let mut worst = Duration::ZERO;
    while !flood.is_finished() {
        worst = worst.max(echo(&mut bystander, note));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (sent, took) = flood.join().expect("flooder");
    assert!(worst < Duration::from_secs(2), "bystander waited {worst:?}");
    assert!(took < Duration::from_secs(5), "evicted after {took:?}");
    assert!(wait_until(Duration::from_secs(2), || server
        .handle()
        .stats()
        .evicted
        == 1));
    assert!(wait_until(Duration::from_secs(2), || server
        .handle()
        .connections()
        == 1));
    still_served(&mut bystander);
    server.shutdown();
    sent
}

/// Writes `unit` over and over until the server cuts the connection; returns the bytes written and how
/// long it took. Bounded: a write that blocks for 10 s, or 10 s in all, ends it.
pub fn flood_until_cut_off(
    mut stream: TcpStream,
    unit: Vec<u8>,
) -> std::thread::JoinHandle<(usize, Duration)> {
    std::thread::spawn(move || {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(10) {
            match stream.write_all(&unit) {
                Ok(()) => sent += unit.len(),
                Err(_) => break,
            }
        }
        (sent, started.elapsed())
    })
}
