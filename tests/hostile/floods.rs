//! Floods, faults and resources: more clients than workers, silent connections, reconnect storms,
//! resets, clients that vanish or stop reading, all of it during a shutdown; and the server's
//! descriptors, threads and memory afterwards.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hydrogen_ws::{Echo, Heartbeat, Server};
use hydrogen_ws_protocol::OpCode;

use crate::common::*;
use crate::support::{config, server_with, upgrade_request, RawClient};

const FULL: &str = "the server is at its connection capacity; try again later";

/// Sends a full upgrade request and returns the response and how long it took.
fn timed_request(addr: SocketAddr) -> (crate::support::HttpResponse, Duration) {
    let started = Instant::now();
    let mut c = RawClient::connect(addr);
    c.send_raw(upgrade_request("").as_bytes());
    let r = c.read_response().expect("a response");
    (r, started.elapsed())
}

/// More clients than workers: every one beyond capacity gets 503 with `Retry-After` at once, the
/// established clients keep their echoes, and a freed worker takes the next client.
#[test]
fn clients_beyond_capacity_get_503_at_once() {
    let _g = shared();
    let mut cfg = config();
    cfg.threads = 4;
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut established: Vec<RawClient> = (0..4).map(|_| RawClient::open(addr)).collect();
    for i in 0..40 {
        let (r, took) = timed_request(addr);
        assert_refused(&r, 503, FULL, "beyond capacity");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(took < Duration::from_millis(1000), "503 #{i} took {took:?}");
        if i % 10 == 0 {
            for c in &mut established {
                still_served(c);
            }
        }
    }
    for c in &mut established {
        still_served(c);
    }
    assert_eq!(server.handle().stats().refused_full, 40);
    established.pop();
    let mut next = open_when_free(addr, Duration::from_secs(3));
    still_served(&mut next);
    server.shutdown();
}

/// Connections that never send a byte hold no worker (the admission stage reads request heads, and
/// `TCP_DEFER_ACCEPT` keeps them in the kernel at first): with a crowd of them open, real clients upgrade
/// at once up to the capacity, the next one gets its 503 at once, and the silent ones get 408 once the
/// handshake timeout has run out.
#[test]
fn silent_connections_hold_no_worker_and_get_408() {
    let _g = shared();
    let mut cfg = config();
    cfg.threads = 4;
    cfg.limits.handshake_timeout = Duration::from_millis(800);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let started = Instant::now();
    let mut silent: Vec<RawClient> = (0..100).map(|_| RawClient::connect(addr)).collect();
    // The silent crowd holds no worker: three more clients upgrade at once.
    let mut real: Vec<RawClient> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let c = RawClient::open(addr);
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "upgrade took {:?}",
                t.elapsed()
            );
            c
        })
        .collect();
    assert_eq!(server.handle().connections(), 4);
    // Beyond capacity: the 503 comes at once, whatever waits in front of it.
    let (r, took) = timed_request(addr);
    assert_refused(&r, 503, FULL, "behind a silent crowd");
    assert!(took < Duration::from_millis(500), "503 took {took:?}");
    still_served(&mut bystander);
    for c in &mut real {
        still_served(c);
    }
    for c in &mut silent {
        let r = c.read_response().expect("408");
        assert_refused(
            &r,
            408,
            "the request did not arrive within 800ms",
            "silent connection",
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(790) && took < Duration::from_secs(6),
        "408s after {took:?}"
    );
    assert!(server.handle().stats().refused_handshake >= 101);
    still_served(&mut bystander);
    server.shutdown();
}

/// Connect/close loops from several threads for 1.5 s (plain closes, resets, half requests, complete
/// upgrades closed at once): the bystander is served throughout, and afterwards the server is back to
/// the bystander alone and a normal client works.
#[test]
fn a_reconnect_storm_leaves_the_server_serving() {
    let _g = shared();
    let mut cfg = config();
    cfg.threads = 16;
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let until = Instant::now() + Duration::from_millis(1500);
    let stormers: Vec<_> = (0..3)
        .map(|t| {
            std::thread::spawn(move || {
                let mut n = 0usize;
                while Instant::now() < until && n < 3000 {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    match (n + t) % 4 {
                        0 => reset(s),
                        1 => {
                            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
                            reset(s);
                        }
                        2 => {
                            let _ = s.write_all(upgrade_request("").as_bytes());
                            drop(s);
                        }
                        _ => drop(s),
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    while Instant::now() < until {
        worst = worst.max(echo(&mut bystander, b"storm outside"));
        std::thread::sleep(Duration::from_millis(10));
    }
    let total: usize = stormers
        .into_iter()
        .map(|t| t.join().expect("stormer"))
        .sum();
    assert!(total > 100, "only {total} connections in the storm");
    assert!(worst < Duration::from_secs(2), "bystander waited {worst:?}");
    assert!(
        wait_until(Duration::from_secs(3), || server.handle().connections()
            == 1),
        "{} connections left after the storm",
        server.handle().connections()
    );
    let mut after = RawClient::open(addr);
    still_served(&mut after);
    still_served(&mut bystander);
    server.shutdown();
}

/// Clients that reset in the middle of a frame or of the request free their workers at once.
#[test]
fn resets_mid_frame_and_mid_handshake_free_their_workers() {
    let _g = shared();
    let mut cfg = config();
    cfg.threads = 3;
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    for round in 0..20 {
        let mut mid_frame = RawClient::open(addr);
        // A 100-byte binary frame, cut off after 10 bytes of payload.
        let whole = frame(true, OpCode::Binary, &[7; 100]);
        mid_frame.send_raw(&whole[..whole.len() - 90]);
        let mut mid_request = TcpStream::connect(addr).expect("connect");
        let request = upgrade_request("");
        mid_request
            .write_all(&request.as_bytes()[..request.len() / 2])
            .expect("half a request");
        std::thread::sleep(Duration::from_millis(5));
        reset(mid_frame.stream);
        reset(mid_request);
        assert!(
            wait_until(Duration::from_secs(3), || server.handle().connections()
                == 1),
            "round {round}: workers not freed"
        );
    }
    still_served(&mut bystander);
    server.shutdown();
}

/// A client that vanishes (sends and reads nothing more, no FIN) is closed by the idle timeout (1001)
/// or by the heartbeat (1011, pong overdue), and its worker is freed within the close linger (2 s).
#[test]
fn vanished_clients_are_freed_by_the_idle_timeout_or_the_heartbeat() {
    let _g = shared();
    for (what, idle, heartbeat, code, reason) in [
        (
            "idle timeout",
            Some(Duration::from_millis(300)),
            Heartbeat {
                ping_interval: None,
                pong_timeout: Duration::from_secs(1),
            },
            1001,
            "idle timeout",
        ),
        (
            "heartbeat",
            None,
            Heartbeat {
                ping_interval: Some(Duration::from_millis(100)),
                pong_timeout: Duration::from_millis(300),
            },
            1011,
            "pong overdue",
        ),
    ] {
        let mut cfg = config();
        cfg.limits.idle_timeout = idle;
        cfg.heartbeat = heartbeat;
        let server = server_with(cfg, Echo);
        let addr = server.local_addr();
        let mut bystander = RawClient::open(addr);
        let mut gone = RawClient::open(addr);
        gone.send_frame(true, OpCode::Text, b"last words");
        let started = Instant::now();
        // The bystander talks (and answers pings) every 50 ms; the vanished client does nothing.
        while server.handle().connections() > 1 {
            echo(&mut bystander, b"alive");
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{what}: the vanished client still holds its worker"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let freed = started.elapsed();
        // The timeout, then at most the 2 s close linger, and slack for a busy machine.
        assert!(
            freed < Duration::from_secs(5),
            "{what}: freed after {freed:?}"
        );
        // What the vanished client would have read, had it still been there.
        assert_eq!(gone.read_frame().expect("echo").payload, b"last words");
        let (got, why) = read_close(&mut gone, what);
        assert_eq!((got, why.as_str()), (code, reason), "{what}");
        still_served(&mut bystander);
        server.shutdown();
    }
}

/// A client that sends and stops reading: its echoes back up, and it is evicted at the send timeout
/// while the bystander keeps its echoes.
#[test]
fn a_client_that_stops_reading_is_evicted_at_the_send_timeout() {
    let _g = shared();
    let sent = non_reader_is_evicted(
        frame(true, OpCode::Binary, &[0xab; 64 * 1024]),
        b"next door to a non-reader",
    );
    assert!(sent >= 64 * 1024);
}

/// Every kind of hostile client in flight when the shutdown starts: it still completes within its
/// deadline, and the well-behaved clients get 1001.
#[test]
fn shutdown_completes_within_its_deadline_with_hostile_clients_in_flight() {
    let _g = shared();
    let mut cfg = config();
    cfg.threads = 16;
    cfg.shutdown_timeout = Duration::from_millis(500);
    cfg.limits.handshake_timeout = Duration::from_secs(30);
    cfg.limits.send_timeout = Duration::from_secs(30);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut good: Vec<RawClient> = (0..3).map(|_| RawClient::open(addr)).collect();

    // A trickled request, a half request, a half frame, an unfinished fragmented message.
    let mut trickle = TcpStream::connect(addr).expect("connect");
    trickle.write_all(b"GET / HT").expect("trickle");
    let mut half_request = TcpStream::connect(addr).expect("connect");
    half_request
        .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\n")
        .expect("half");
    let mut half_frame = RawClient::open(addr);
    half_frame.send_raw(&frame(true, OpCode::Binary, &[1; 1000])[..500]);
    let mut unfinished = RawClient::open(addr);
    unfinished.send_frame(false, OpCode::Text, b"never finished");
    // A client that stopped reading with its buffers full, and a ping flooder that never reads.
    let non_reader = flood_until_cut_off(
        open_small_rcvbuf(addr),
        frame(true, OpCode::Binary, &[0xcd; 64 * 1024]),
    );
    let pinger = flood_until_cut_off(
        open_small_rcvbuf(addr),
        frame(true, OpCode::Ping, &[b'p'; 125]),
    );
    // Resets just before the shutdown.
    for _ in 0..3 {
        let mut c = RawClient::open(addr);
        c.send_raw(&frame(true, OpCode::Text, b"cut")[..4]);
        reset(c.stream);
    }
    for c in &mut good {
        still_served(c);
    }
    std::thread::sleep(Duration::from_millis(300)); // the floods fill their buffers

    let started = Instant::now();
    let report = server.shutdown();
    let took = started.elapsed();
    assert!(report.completed(), "{report}");
    assert!(
        report.total_us <= 550_000 && took < Duration::from_secs(2),
        "{report} (returned after {took:?})"
    );
    for c in &mut good {
        let (code, reason) = read_close(c, "good client at shutdown");
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    }
    for flood in [non_reader, pinger] {
        let (_, took) = flood.join().expect("flood thread");
        assert!(took < Duration::from_secs(10), "a flood was never cut off");
    }
    let _ = trickle.write_all(b"TP/1.1\r\n");
    drop((trickle, half_request, half_frame, unfinished));
}

/// After each scenario, the server's descriptors and threads are back at their baseline; after the
/// server is gone, so is every descriptor and thread it had; and resident memory grows by no more than
/// a few MiB over the whole run. Runs alone ([`exclusive`]), scenario after scenario.
#[test]
fn descriptors_threads_and_memory_return_to_baseline() {
    let _g = exclusive();
    let fds_before = fd_count();
    assert_eq!(
        server_threads(),
        0,
        "a server from another test is still running"
    );

    let mut cfg = config();
    cfg.threads = 8;
    cfg.limits.handshake_timeout = Duration::from_millis(300);
    cfg.limits.send_timeout = Duration::from_millis(300);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    // Warm-up: one of each kind of connection, so allocator and kernel caches are primed.
    run_scenarios(&server, &mut bystander, false);
    let fds = fd_count();
    let threads = server_threads();
    let rss = rss_kib();
    // Workers start on demand, so the count is what the warm-up needed, never above the capacity.
    assert!(
        threads <= SERVER_THREADS_MAX,
        "{threads} threads: at most 8 workers, acceptor, ticker, refuser"
    );
    run_scenarios(&server, &mut bystander, true);
    let rss_after = rss_kib();
    assert!(
        rss_after < rss + 8 * 1024,
        "RSS grew from {rss} KiB to {rss_after} KiB over the scenarios"
    );
    assert_eq!(fd_count(), fds);
    assert!(server_threads() <= SERVER_THREADS_MAX);
    drop(bystander);
    server.shutdown();
    assert!(
        wait_until(Duration::from_secs(2), || fd_count() == fds_before
            && server_threads() == 0),
        "after the server: {} descriptors (before: {fds_before}), {} server threads",
        fd_count(),
        server_threads()
    );
}

/// 8 workers (the capacity the resource test sets), the acceptor, the ticker and the refuser.
const SERVER_THREADS_MAX: usize = 8 + 3;

fn run_scenarios(server: &Server, bystander: &mut RawClient, check: bool) {
    let addr = server.local_addr();
    let fds = fd_count();
    let settle = |what: &str| {
        let back = wait_until(Duration::from_secs(4), || {
            server.handle().connections() == 1
                && fd_count() == fds
                && server_threads() <= SERVER_THREADS_MAX
        });
        if check {
            assert!(
                back,
                "{what}: {} connections, {} descriptors (baseline {fds}), {} threads (at most {SERVER_THREADS_MAX})",
                server.handle().connections(),
                fd_count(),
                server_threads()
            );
        }
    };
    // Slow requests: 408.
    let mut slow: Vec<RawClient> = (0..5).map(|_| RawClient::connect(addr)).collect();
    for c in &mut slow {
        c.send_raw(b"GET / HTTP/1.1\r\n");
    }
    for c in &mut slow {
        assert_eq!(c.read_response().expect("408").status, 408);
    }
    drop(slow);
    settle("slow requests");
    // Oversized and malformed requests.
    for request in [
        upgrade_request(&format!("X-Big: {}\r\n", "a".repeat(10_000))),
        upgrade_request("").replace("\r\n", "\n"),
        upgrade_request("").replacen("GET", "POST", 1),
        format!("GET /{} HTTP/1.1\r\n\r\n", "t".repeat(5000)),
    ] {
        let _ = refusal(addr, request.as_bytes());
    }
    settle("refused requests");
    // Protocol violations and a declared 4 GiB frame.
    for bytes in [
        vec![0x81, 0x02, b'h', b'i'],
        raw_header(0x82, &[127, 0, 0, 0, 1, 0, 0, 0, 0]),
        raw_header(0x83, &[0]),
        frame(true, OpCode::Continuation, b"x"),
    ] {
        let mut c = RawClient::open(addr);
        c.send_raw(&bytes);
        let _ = read_close(&mut c, "violation");
        let _ = c.read_to_eof();
    }
    settle("protocol violations");
    // Resets mid-frame and mid-request.
    for _ in 0..5 {
        let mut c = RawClient::open(addr);
        c.send_raw(&frame(true, OpCode::Binary, &[1; 100])[..20]);
        reset(c.stream);
        let mut s = TcpStream::connect(addr).expect("connect");
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHo");
        reset(s);
    }
    settle("resets");
    // Beyond capacity: 7 fill the server, 10 more get 503.
    let fillers: Vec<RawClient> = (0..7).map(|_| RawClient::open(addr)).collect();
    for _ in 0..10 {
        assert_eq!(timed_request(addr).0.status, 503);
    }
    drop(fillers);
    settle("503 flood");
    // A client that stops reading, evicted at the send timeout.
    let flood = flood_until_cut_off(
        open_small_rcvbuf(addr),
        frame(true, OpCode::Binary, &[9; 32 * 1024]),
    );
    while !flood.is_finished() {
        echo(bystander, b"keeping busy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = flood.join();
    settle("evicted client");
    still_served(bystander);
}
