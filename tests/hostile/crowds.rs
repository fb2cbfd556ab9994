//! Crowds in front of the admission stage (issue 18): silent, trickling and half-sent connections, a
//! per-address flood, a full pending table, a full pool and a shutdown, each held while a well-behaved
//! client from 127.0.0.1 upgrades at once and gets its echo. The crowds connect from 127.0.0.2 and up
//! (Linux routes all of 127.0.0.0/8 to lo), so the per-address limit alone is never what saves the
//! well-behaved client. Also the bytes pipelined behind a request head that arrived in pieces.
//!
//! (About 800 lines, over the usual 700: ten scenarios of one family that share the crowd helpers at
//! the top; each test reads on its own.)
//!
//! The crowd tests take [`one_crowd_at_a_time`] on top of [`shared`]: two crowds of hundreds of
//! sockets at once on a 2-core machine would measure each other, not the server.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hydrogen_ws::{Echo, Server};
use hydrogen_ws_protocol::OpCode;
use socket2::{Domain, Socket, Type};

use crate::common::*;
use crate::support::{config, server_with, upgrade_request, HttpResponse, RawClient};

const FULL: &str = "the server is at its connection capacity; try again later";
const EVICTED: &str = "the server is busy with other handshakes and closed the oldest";

/// The test configuration, with the per-address limit that a default server of 256 workers has: the
/// crowds here run against small pools, whose default limit (the pool's size) would refuse them first.
fn crowd_config() -> hydrogen_ws::Config {
    let mut cfg = config();
    cfg.limits.max_connections_per_ip = Some(256);
    cfg
}

/// What a member of a half-sent crowd sends before it falls silent.
const PARTIAL_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
/// How long a well-behaved client may take to upgrade (or to be answered) while a crowd is held.
const AT_ONCE: Duration = Duration::from_millis(500);

static CROWD: Mutex<()> = Mutex::new(());

/// Taken (after [`shared`]) by every test that holds a crowd.
fn one_crowd_at_a_time() -> MutexGuard<'static, ()> {
    CROWD.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client connected from `ip` (a loopback address other than 127.0.0.1).
fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> RawClient {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((ip, 0)).into())
        .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    RawClient::from_stream(stream)
}

/// `n` connections from 127.0.0.2 and up, `per_address` from each, each sending `first` (nothing if
/// empty).
fn crowd(addr: SocketAddr, n: usize, per_address: usize, first: &[u8]) -> Vec<RawClient> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i / per_address).expect("few"));
            let mut c = connect_from(ip, addr);
            if !first.is_empty() {
                c.send_raw(first);
            }
            c
        })
        .collect()
}

/// Handshakes in progress in the admission stage (the status document's `connections.pending`).
fn pending(server: &Server) -> u64 {
    server.handle().status_document().connections.pending
}

/// Waits (bounded) until the stage holds `n` handshakes or more; panics with what it holds otherwise.
fn wait_pending(server: &Server, n: u64, within: Duration) {
    assert!(
        wait_until(within, || pending(server) >= n),
        "the admission stage holds {} handshakes after {within:?}, not {n}",
        pending(server)
    );
}

/// A well-behaved client from 127.0.0.1: upgrades within [`AT_ONCE`] and gets its echo.
fn open_at_once(addr: SocketAddr, what: &str) -> RawClient {
    let started = Instant::now();
    let mut c = RawClient::connect(addr);
    c.send_raw(upgrade_request("").as_bytes());
    let r = c.read_response().expect("a response to the upgrade");
    let took = started.elapsed();
    assert_eq!(r.status, 101, "{what}: {r:?}");
    assert!(took < AT_ONCE, "{what}: the upgrade took {took:?}");
    still_served(&mut c);
    c
}

/// Sends a full upgrade request and returns the response and how long it took.
fn timed_request(addr: SocketAddr) -> (HttpResponse, Duration) {
    let started = Instant::now();
    let mut c = RawClient::connect(addr);
    c.send_raw(upgrade_request("").as_bytes());
    let r = c.read_response().expect("a response");
    (r, started.elapsed())
}

/// A plain GET on a new connection.
fn get(addr: SocketAddr, target: &str) -> HttpResponse {
    let mut c = RawClient::connect(addr);
    c.send_raw(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    c.read_response().expect("a response")
}

/// `/health` answers 200 within [`AT_ONCE`].
fn healthy_at_once(addr: SocketAddr, what: &str) {
    let started = Instant::now();
    let r = get(addr, "/health");
    let took = started.elapsed();
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{what}: {r:?}");
    assert!(took < AT_ONCE, "{what}: /health took {took:?}");
}

/// The exposition at `/metrics`.
fn metrics(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// The value of the sample named exactly `sample` (`name{labels}`), 0 if absent.
fn metric(text: &str, sample: &str) -> u64 {
    text.lines()
        .find(|l| l.split(' ').next() == Some(sample))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap_or_else(|_| panic!("{sample}: {v}")))
}

fn admission_refusals(text: &str, reason: &str) -> u64 {
    metric(
        text,
        &format!("hydrogen_ws_admission_refusals_total{{reason=\"{reason}\"}}"),
    )
}

/// Every refusal counted by HTTP status, whatever the status.
fn refusals_by_status_total(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("hydrogen_ws_refusals_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Nothing has arrived on any of `clients` (no answer, no close) within `wait`.
fn none_answered(clients: &[RawClient], wait: Duration) -> bool {
    std::thread::sleep(wait);
    clients
        .iter()
        .all(|c| !readable(&c.stream, Duration::from_millis(1)))
}

/// The refusal a crowd member got, and a clean close behind it.
fn refused_with(c: &mut RawClient, status: u16, reason: &str, what: &str) {
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("{what}: no response ({e})"));
    assert_refused(&r, status, reason, what);
}

/// 500 silent connections, far more than the 8 workers: while the kernel holds them
/// (`TCP_DEFER_ACCEPT`) and then while the admission stage does, well-behaved clients upgrade at once,
/// fill the pool and get their echoes, `/health` answers 200, the next upgrade gets its 503 at once; the
/// silent ones get their 408 at the handshake timeout.
#[test]
fn a_silent_crowd_larger_than_the_pool_locks_no_one_out() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    let mut cfg = crowd_config();
    cfg.threads = 8;
    cfg.limits.handshake_timeout = Duration::from_secs(3);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let started = Instant::now();
    let mut silent = crowd(addr, 500, 200, b"");

    // In the kernel first.
    let mut real: Vec<RawClient> = (0..4)
        .map(|i| open_at_once(addr, &format!("client {i}, crowd in the kernel")))
        .collect();
    healthy_at_once(addr, "crowd in the kernel");

    // The defer period ends (about 3 s for a 3 s timeout) and the kernel hands the crowd to the stage,
    // which holds it until its own deadline.
    wait_pending(&server, 450, Duration::from_secs(8));
    for i in 4..8 {
        real.push(open_at_once(
            addr,
            &format!("client {i}, crowd in the admission stage"),
        ));
    }
    healthy_at_once(addr, "crowd in the admission stage");
    assert_eq!(
        server.handle().connections(),
        8,
        "only the real clients hold workers"
    );
    let (r, took) = timed_request(addr);
    assert_refused(&r, 503, FULL, "ninth client behind a silent crowd");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(took < AT_ONCE, "503 took {took:?}");
    for c in &mut real {
        still_served(c);
    }
    // All of that while the crowd was still held.
    assert!(
        pending(&server) >= 450,
        "the crowd was let go early: {} pending",
        pending(&server)
    );

    for (i, c) in silent.iter_mut().enumerate() {
        refused_with(
            c,
            408,
            "the request did not arrive within 3s",
            &format!("silent connection {i}"),
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(14),
        "408s after {took:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || pending(&server) == 0));
    let text = metrics(addr);
    assert!(admission_refusals(&text, "timeout") >= 500, "{text}");
    assert_eq!(metric(&text, "hydrogen_ws_pending_handshakes"), 0);
    for c in &mut real {
        still_served(c);
    }
    server.shutdown();
}

/// 200 connections that each trickle one byte of a valid request head every 100 ms: they hold no worker;
/// a real client upgrades at once and `/health` answers meanwhile; each trickler gets 408 at the 1 s
/// handshake timeout, after several bytes, however far its head got.
#[test]
fn a_trickling_crowd_locks_no_one_out_and_gets_408() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    let mut cfg = crowd_config();
    cfg.threads = 4;
    cfg.limits.handshake_timeout = Duration::from_secs(1);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let request = upgrade_request("").into_bytes();
    let head_len = request.len();
    let started = Instant::now();
    // The first byte goes with the connection; the rest one byte per round, 100 ms apart, never the
    // whole head.
    let tricklers = crowd(addr, 200, 100, &request[..1]);
    for c in &tricklers {
        c.stream.set_nodelay(true).expect("nodelay");
        c.stream.set_nonblocking(true).expect("nonblocking");
    }
    let trickle = std::thread::spawn(move || {
        // (client, bytes sent, when its answer was first seen)
        let mut state: Vec<(RawClient, usize, Option<Duration>)> =
            tricklers.into_iter().map(|c| (c, 1, None)).collect();
        while started.elapsed() < Duration::from_secs(4) && state.iter().any(|s| s.2.is_none()) {
            for (c, sent, answered) in state.iter_mut().filter(|s| s.2.is_none()) {
                match c.stream.peek(&mut [0u8; 1]) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    _ => {
                        *answered = Some(started.elapsed());
                        continue;
                    }
                }
                if *sent < request.len() - 2 {
                    match c.stream.write(&request[*sent..=*sent]) {
                        Ok(1) => *sent += 1,
                        Ok(_) | Err(_) => *answered = Some(started.elapsed()),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        state
    });

    wait_pending(&server, 180, Duration::from_secs(2));
    let mut real = open_at_once(addr, "next to a trickling crowd");
    healthy_at_once(addr, "next to a trickling crowd");
    assert_eq!(
        server.handle().connections(),
        1,
        "only the real client holds a worker"
    );
    let still_held = pending(&server);

    let state = trickle.join().expect("trickler");
    assert!(
        still_held >= 150,
        "the crowd was not held while the real client upgraded: {still_held} pending"
    );
    for (i, (mut c, sent, answered)) in state.into_iter().enumerate() {
        let answered = answered.unwrap_or_else(|| panic!("trickler {i}: no answer after 4 s"));
        assert!(
            answered >= Duration::from_millis(900) && answered < Duration::from_millis(3000),
            "trickler {i}: answered after {answered:?}"
        );
        assert!(
            (4..head_len - 2).contains(&sent),
            "trickler {i}: {sent} bytes sent before the answer"
        );
        c.stream.set_nonblocking(false).expect("blocking");
        refused_with(
            &mut c,
            408,
            "the request did not arrive within 1s",
            &format!("trickler {i}"),
        );
    }
    assert!(wait_until(Duration::from_secs(2), || pending(&server) == 0));
    let text = metrics(addr);
    assert_eq!(admission_refusals(&text, "timeout"), 200, "{text}");
    still_served(&mut real);
    server.shutdown();
}

/// 50 connections that send the start of a request head and fall silent: they get 408 at the 1 s
/// handshake timeout, not before; a real client upgrades at once meanwhile, and another after.
#[test]
fn an_incomplete_head_then_silence_gets_408_at_the_timeout() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    let mut cfg = crowd_config();
    cfg.threads = 4;
    cfg.limits.handshake_timeout = Duration::from_secs(1);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let started = Instant::now();
    let mut halves = crowd(addr, 50, 50, PARTIAL_HEAD);
    wait_pending(&server, 50, Duration::from_secs(1));
    let mut real = open_at_once(addr, "next to half-sent heads");
    healthy_at_once(addr, "next to half-sent heads");
    assert_eq!(server.handle().connections(), 1);
    assert_eq!(pending(&server), 50, "the half-sent heads are held");
    for (i, c) in halves.iter_mut().enumerate() {
        refused_with(
            c,
            408,
            "the request did not arrive within 1s",
            &format!("half-sent head {i}"),
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(3),
            "half-sent head {i}: 408 after {took:?}"
        );
    }
    assert!(wait_until(Duration::from_secs(2), || pending(&server) == 0));
    let text = metrics(addr);
    assert_eq!(admission_refusals(&text, "timeout"), 50, "{text}");
    assert_eq!(server.handle().stats().refused_handshake, 50);
    still_served(&mut real);
    let mut after = open_at_once(addr, "after the 408s");
    still_served(&mut after);
    server.shutdown();
}

/// With `max_connections_per_ip = 20`, 30 half-sent heads from 127.0.0.2: the first 20 are held, the
/// other 10 get 429 at once with the reason, and so does a real upgrade from 127.0.0.2; a client from
/// 127.0.0.1 upgrades at once. The refusals are counted (by reason and by status). Once 127.0.0.2 lets
/// go of some connections it may upgrade again.
#[test]
fn a_per_address_flood_gets_429_and_other_addresses_are_served() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    let mut cfg = crowd_config();
    cfg.threads = 8;
    cfg.limits.max_connections_per_ip = Some(20);
    cfg.limits.handshake_timeout = Duration::from_secs(10);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    const TOO_MANY: &str =
        "too many connections from 127.0.0.2: at most 20 (open and pending together)";

    let mut held = crowd(addr, 20, 20, PARTIAL_HEAD);
    wait_pending(&server, 20, Duration::from_secs(2));
    for i in 20..30 {
        let started = Instant::now();
        let mut c = connect_from(flooder, addr);
        c.send_raw(PARTIAL_HEAD);
        refused_with(
            &mut c,
            429,
            TOO_MANY,
            &format!("connection {i} from {flooder}"),
        );
        assert!(
            started.elapsed() < AT_ONCE,
            "429 took {:?}",
            started.elapsed()
        );
        assert_eq!(c.read_to_eof().expect("a clean close after the 429"), 0);
    }
    // A complete upgrade from the same address is refused just the same.
    let mut c = connect_from(flooder, addr);
    c.send_raw(upgrade_request("").as_bytes());
    refused_with(
        &mut c,
        429,
        TOO_MANY,
        "an upgrade from the flooding address",
    );
    drop(c);
    assert!(
        none_answered(&held, Duration::from_millis(100)),
        "the first 20 are held"
    );
    assert_eq!(pending(&server), 20);

    let mut real = open_at_once(addr, "from 127.0.0.1 during the flood");
    healthy_at_once(addr, "during the flood");
    let text = metrics(addr);
    assert_eq!(admission_refusals(&text, "per_ip"), 11, "{text}");
    assert_eq!(refusals_by_status_total(&text), 11, "{text}");
    assert_eq!(server.handle().stats().refused_handshake, 11);

    // 127.0.0.2 closes 5 of its held connections: its shares come back, and it may upgrade again.
    drop(held.drain(..5));
    assert!(
        wait_until(Duration::from_secs(2), || pending(&server) == 15),
        "{} pending",
        pending(&server)
    );
    let started = Instant::now();
    let mut again = connect_from(flooder, addr);
    again.send_raw(upgrade_request("").as_bytes());
    let r = again.read_response().expect("101");
    assert_eq!(r.status, 101, "{r:?}");
    assert!(started.elapsed() < AT_ONCE);
    still_served(&mut again);
    still_served(&mut real);
    assert_eq!(server.handle().stats().refused_handshake, 11);
    server.shutdown();
}

/// The refusal of a per-address flood appears in the refusals by status as 429.
#[test]
fn per_address_refusals_are_counted_under_status_429() {
    let _g = shared();
    let mut cfg = crowd_config();
    cfg.limits.max_connections_per_ip = Some(1);
    cfg.limits.handshake_timeout = Duration::from_secs(10);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = connect_from(flooder, addr);
    held.send_raw(PARTIAL_HEAD);
    wait_pending(&server, 1, Duration::from_secs(2));
    let mut c = connect_from(flooder, addr);
    c.send_raw(PARTIAL_HEAD);
    refused_with(
        &mut c,
        429,
        "too many connections from 127.0.0.2: at most 1 (open and pending together)",
        "second connection",
    );
    let text = metrics(addr);
    assert_eq!(
        metric(&text, "hydrogen_ws_refusals_total{status=\"429\"}"),
        1,
        "{text}"
    );
    drop(held);
    server.shutdown();
}

/// `max_pending_handshakes = 50`, 50 half-sent heads held, then 10 more: each newcomer makes room by
/// closing the handshake that has waited longest (408 with the reason), so the 10 oldest are closed and
/// the 50 newest stay held. Every later newcomer does the same, a `GET /metrics` and real clients
/// included: each is served (the metrics answered, the upgrades completed at once) and closes the next
/// oldest; a newcomer's own handshake, the newest, is never the one closed.
#[test]
fn a_full_pending_table_closes_the_oldest_and_never_the_newcomer() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    let mut cfg = crowd_config();
    cfg.threads = 4;
    cfg.limits.max_pending_handshakes = 50;
    cfg.limits.handshake_timeout = Duration::from_secs(10);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let accepted = || server.handle().stats().connections_total;
    // One at a time, each accepted before the next, so that their ages are their order here.
    let mut held: Vec<RawClient> = Vec::new();
    for i in 0..60 {
        held.extend(crowd(addr, 1, 1, PARTIAL_HEAD));
        assert!(
            wait_until(Duration::from_secs(2), || accepted() == i + 1),
            "connection {i} not accepted"
        );
    }
    assert!(wait_until(Duration::from_secs(1), || pending(&server) == 50));
    for (i, c) in held.iter_mut().enumerate().take(10) {
        refused_with(c, 408, EVICTED, &format!("old handshake {i}"));
    }
    assert!(
        none_answered(&held[10..], Duration::from_millis(100)),
        "the 50 newest are held"
    );
    assert_eq!(pending(&server), 50);

    // The metrics request is a newcomer too: it is answered, and closes handshake 10. Once answered it
    // no longer counts: 49 are pending.
    let text = metrics(addr);
    assert_eq!(admission_refusals(&text, "pending_full"), 11, "{text}");
    refused_with(&mut held[10], 408, EVICTED, "old handshake 10");
    assert!(wait_until(Duration::from_secs(1), || pending(&server) == 49));
    // Real clients at a full table (one more half-sent head fills it each time): each closes the next
    // oldest handshake (11, 12, 13), and completes its own at once.
    let mut real = Vec::new();
    for (round, oldest) in (11..14).enumerate() {
        let before = accepted();
        held.extend(crowd(addr, 1, 1, PARTIAL_HEAD));
        assert!(
            wait_until(Duration::from_secs(2), || accepted() == before + 1
                && pending(&server) == 50),
            "round {round}: the table is not full"
        );
        real.push(open_at_once(
            addr,
            &format!("real client {round} at a full table"),
        ));
        assert_eq!(accepted(), before + 2);
        refused_with(
            &mut held[oldest],
            408,
            EVICTED,
            &format!("old handshake {oldest}"),
        );
        // The gauge is the stage's, set once per turn of its loop: it follows a moment later.
        assert!(wait_until(Duration::from_secs(1), || pending(&server) == 49));
    }
    assert!(
        none_answered(&held[14..], Duration::from_millis(100)),
        "the 49 newest are held"
    );
    assert_eq!(pending(&server), 49);
    assert_eq!(server.handle().connections(), 3);
    assert_eq!(server.handle().stats().upgrades, 3);
    // A real client whose head arrives in two parts, 50 ms apart, at a full table: the first part
    // closes handshake 14; it is the newest while it waits, and completes.
    let before = accepted();
    held.extend(crowd(addr, 1, 1, PARTIAL_HEAD));
    assert!(wait_until(Duration::from_secs(2), || accepted()
        == before + 1
        && pending(&server) == 50));
    let mut split = RawClient::connect(addr);
    split.stream.set_nodelay(true).expect("nodelay");
    let request = upgrade_request("");
    split.send_raw(&request.as_bytes()[..20]);
    std::thread::sleep(Duration::from_millis(50));
    split.send_raw(&request.as_bytes()[20..]);
    let r = split.read_response().expect("101");
    assert_eq!(r.status, 101, "{r:?}");
    still_served(&mut split);
    refused_with(&mut held[14], 408, EVICTED, "old handshake 14");
    assert!(
        none_answered(&held[15..], Duration::from_millis(100)),
        "the 49 newest are held"
    );
    assert!(wait_until(Duration::from_secs(1), || pending(&server) == 49));
    let text = metrics(addr);
    assert_eq!(admission_refusals(&text, "pending_full"), 15, "{text}");
    for c in &mut real {
        still_served(c);
    }
    assert_eq!(server.handle().stats().refused_handshake, 15);
    server.shutdown();
}

/// Two workers, both taken, and 1,000 half-sent heads held by the stage: a third real client gets its
/// 503 with `Retry-After` at once, `/health` answers at once, and once a worker is free the next real
/// client gets it.
#[test]
fn the_pool_full_503_comes_at_once_while_a_thousand_handshakes_wait() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    let mut cfg = crowd_config();
    cfg.threads = 2;
    cfg.limits.handshake_timeout = Duration::from_secs(10);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut real: Vec<RawClient> = (0..2)
        .map(|i| open_at_once(addr, &format!("real client {i}")))
        .collect();
    let _crowd = crowd(addr, 1000, 200, PARTIAL_HEAD);
    wait_pending(&server, 1000, Duration::from_secs(5));

    let (r, took) = timed_request(addr);
    assert_refused(&r, 503, FULL, "third client, pool full, 1,000 pending");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(took < AT_ONCE, "503 took {took:?}");
    healthy_at_once(addr, "pool full, 1,000 pending");
    for c in &mut real {
        still_served(c);
    }
    assert_eq!(pending(&server), 1000, "the crowd is still held");
    let text = metrics(addr);
    assert_eq!(admission_refusals(&text, "pool_full"), 1, "{text}");
    assert_eq!(server.handle().stats().refused_full, 1);

    drop(real.pop());
    let mut next = open_when_free(addr, Duration::from_secs(3));
    still_served(&mut next);
    still_served(&mut real[0]);
    server.shutdown();
}

/// A shutdown with 300 handshakes pending and 5 open clients returns promptly: the pending sockets are
/// closed at once (a FIN or a reset, never a response), the open clients get 1001. (That the report
/// counts the pending handshakes is [`a_shutdown_report_counts_the_pending_handshakes`].)
#[test]
fn a_shutdown_during_a_crowd_closes_the_pending_handshakes_at_once() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    let mut cfg = crowd_config();
    cfg.threads = 8;
    cfg.shutdown_timeout = Duration::from_secs(2);
    cfg.limits.handshake_timeout = Duration::from_secs(30);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut open: Vec<RawClient> = (0..5)
        .map(|i| open_at_once(addr, &format!("open client {i}")))
        .collect();
    let mut waiting = crowd(addr, 300, 150, PARTIAL_HEAD);
    wait_pending(&server, 300, Duration::from_secs(3));

    let started = Instant::now();
    let report = server.shutdown();
    let took = started.elapsed();
    assert!(report.completed(), "{report}");
    assert!(
        took < Duration::from_secs(1) && report.total_us < 1_000_000,
        "{report} (returned after {took:?})"
    );
    assert_eq!(report.close_frames, 5, "{report}");
    assert_eq!(report.connections, 5 + report.handshaking, "{report}");
    for c in &mut open {
        let (code, reason) = read_close(c, "open client at shutdown");
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    }
    let mut byte = [0u8; 1];
    for (i, c) in waiting.iter_mut().enumerate() {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        match c.stream.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("pending socket {i}: got data at shutdown"),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "pending socket {i} still open after the shutdown"
            ),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closing the pending sockets took {:?}",
        started.elapsed()
    );
}

/// The shutdown report counts the handshakes pending in the admission stage (`handshaking`, and in
/// `connections`): five rounds of 100 pending and one open client.
#[test]
fn a_shutdown_report_counts_the_pending_handshakes() {
    let _g = shared();
    let _c = one_crowd_at_a_time();
    for round in 0..5 {
        let mut cfg = crowd_config();
        cfg.limits.handshake_timeout = Duration::from_secs(30);
        let server = server_with(cfg, Echo);
        let addr = server.local_addr();
        let _open = open_at_once(addr, "open client");
        let _waiting = crowd(addr, 100, 100, PARTIAL_HEAD);
        wait_pending(&server, 100, Duration::from_secs(3));
        let report = server.shutdown();
        assert_eq!(
            (report.handshaking, report.connections, report.close_frames),
            (100, 101, 1),
            "round {round}: {report}"
        );
    }
}

/// Completes an upgrade whose head arrives as `pieces` (the last one may carry bytes behind the head),
/// and returns the client past its 101.
fn upgrade_in_pieces(addr: SocketAddr, pieces: &[&[u8]], pause: Duration) -> RawClient {
    let mut c = RawClient::connect(addr);
    c.stream.set_nodelay(true).expect("nodelay");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        c.send_raw(piece);
    }
    let r = c.read_response().expect("101");
    assert_eq!(r.status, 101, "{r:?}");
    c
}

/// The head's start, a pause (the stage has read it and waits), then the rest of the head with a frame
/// and half of another behind it in one write: the stage parses across its reads, the worker gets the
/// bytes behind the head, and both echoes come back. Then the same with a head bigger than the stage's
/// read chunk and a 10,000-byte frame behind it in one write.
#[test]
fn bytes_behind_a_head_completed_across_reads_reach_the_worker() {
    let _g = shared();
    let server = server_with(config(), Echo);
    let addr = server.local_addr();

    let request = upgrade_request("").into_bytes();
    let (start, rest) = request.split_at(30);
    let second = frame(true, OpCode::Binary, b"the second, cut in two");
    let mut tail = rest.to_vec();
    tail.extend(frame(true, OpCode::Text, b"behind the head"));
    tail.extend(&second[..10]);
    let mut c = RawClient::connect(addr);
    c.stream.set_nodelay(true).expect("nodelay");
    c.send_raw(start);
    wait_pending(&server, 1, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(50));
    c.send_raw(&tail);
    let r = c.read_response().expect("101");
    assert_eq!(r.status, 101, "{r:?}");
    let f = c
        .read_frame()
        .expect("the echo of the frame behind the head");
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (1, &b"behind the head"[..])
    );
    c.send_raw(&second[10..]);
    let f = c.read_frame().expect("the echo of the frame cut in two");
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (2, &b"the second, cut in two"[..])
    );
    still_served(&mut c);

    // A 3,000-byte header (the head spans two of the stage's reads) and a 10,000-byte frame behind it,
    // all in one write after the head's first 30 bytes.
    let big = upgrade_request(&format!("X-Padding: {}\r\n", "p".repeat(3000))).into_bytes();
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut tail = big[30..].to_vec();
    tail.extend(frame(true, OpCode::Binary, &payload));
    let mut c = upgrade_in_pieces(addr, &[&big[..30], &tail], Duration::from_millis(50));
    let f = c.read_frame().expect("the echo of the big frame");
    assert_eq!((f.opcode, f.payload.len()), (2, payload.len()));
    assert!(f.payload == payload, "the big frame came back altered");
    still_served(&mut c);
    server.shutdown();
}

/// The head in one-byte writes (each its own segment), the last byte in the same write as a frame: the
/// echo of the frame comes back.
#[test]
fn bytes_behind_a_head_sent_one_byte_at_a_time_reach_the_worker() {
    let _g = shared();
    let server = server_with(config(), Echo);
    let addr = server.local_addr();
    let request = upgrade_request("").into_bytes();
    let (bytes, last) = request.split_at(request.len() - 1);
    let mut pieces: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
    let mut final_write = last.to_vec();
    final_write.extend(frame(true, OpCode::Text, b"after a trickled head"));
    pieces.push(final_write);
    let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let mut c = upgrade_in_pieces(addr, &pieces, Duration::from_millis(2));
    let f = c
        .read_frame()
        .expect("the echo of the frame behind the head");
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (1, &b"after a trickled head"[..])
    );
    still_served(&mut c);
    server.shutdown();
}
