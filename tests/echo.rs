//! The echo server over real sockets: interop with a client library, and every close code a raw client
//! can provoke.

mod support;

use std::io::Write;
use std::time::Duration;

use hydrogen_ws::{Conn, Handler};
use hydrogen_ws_protocol::{Message, OpCode};
use support::{config, echo_server, server_with, RawClient};

#[test]
fn tungstenite_client_gets_text_and_binary_back() {
    let server = echo_server();
    let (mut ws, response) =
        tungstenite::connect(format!("ws://{}/", server.local_addr())).expect("connect");
    assert_eq!(response.status(), 101);
    ws.send(tungstenite::Message::text("héllo")).expect("send");
    assert_eq!(
        ws.read().expect("read"),
        tungstenite::Message::text("héllo")
    );
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(tungstenite::Message::binary(blob.clone()))
        .expect("send");
    assert_eq!(ws.read().expect("read"), tungstenite::Message::binary(blob));
    ws.close(None).expect("close");
    // The server answers the close and then closes TCP.
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    server.shutdown();
}

#[test]
fn fragmented_message_with_ping_in_between() {
    let server = echo_server();
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(false, OpCode::Text, b"Hel");
    c.send_frame(true, OpCode::Ping, b"are you there");
    c.send_frame(true, OpCode::Continuation, b"lo");
    let pong = c.read_frame().expect("pong");
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (0xA, &b"are you there"[..])
    );
    let msg = c.read_frame().expect("echo");
    assert_eq!(
        (msg.fin, msg.opcode, msg.payload.as_slice()),
        (true, 1, &b"Hello"[..])
    );
    server.shutdown();
}

#[test]
fn close_handshake_echoes_the_code_and_server_closes_tcp() {
    let server = echo_server();
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Close, &[0x0b, 0xb8, b'b', b'y', b'e']); // 3000
    assert_eq!(c.read_close().expect("close"), Some(3000));
    assert_eq!(c.read_to_eof().expect("eof"), 0);
    server.shutdown();
}

#[test]
fn frame_pipelined_behind_the_upgrade_request_is_not_lost() {
    let server = echo_server();
    let mut c = RawClient::connect(server.local_addr());
    let mut bytes = support::upgrade_request("").into_bytes();
    bytes.extend(hydrogen_ws_protocol::encode_masked_frame(
        true,
        OpCode::Text,
        [1, 2, 3, 4],
        b"early",
    ));
    c.send_raw(&bytes);
    assert_eq!(c.read_response().expect("101").status, 101);
    assert_eq!(c.read_frame().expect("echo").payload, b"early");
    server.shutdown();
}

fn expect_close(raw_frame: &[u8], code: u16) {
    let server = echo_server();
    let mut c = RawClient::open(server.local_addr());
    c.send_raw(raw_frame);
    assert_eq!(
        c.read_close().expect("close frame"),
        Some(code),
        "for {raw_frame:02x?}"
    );
    server.shutdown();
}

#[test]
fn unmasked_frame_is_closed_with_1002() {
    expect_close(&[0x81, 0x02, b'h', b'i'], 1002);
}

#[test]
fn reserved_bits_and_opcodes_are_closed_with_1002() {
    expect_close(&[0xC1, 0x80, 0, 0, 0, 0], 1002);
    expect_close(&[0x83, 0x80, 0, 0, 0, 0], 1002);
    expect_close(&[0x8B, 0x80, 0, 0, 0, 0], 1002);
}

#[test]
fn fragmented_or_long_control_frames_are_closed_with_1002() {
    expect_close(&[0x09, 0x80, 0, 0, 0, 0], 1002);
    let mut long_ping = vec![0x89, 0xFE, 0x00, 0x7E, 0, 0, 0, 0];
    long_ping.extend([0u8; 126]);
    expect_close(&long_ping, 1002);
}

#[test]
fn orphan_continuation_is_closed_with_1002() {
    expect_close(&[0x80, 0x80, 0, 0, 0, 0], 1002);
}

#[test]
fn invalid_utf8_is_closed_with_1007() {
    expect_close(&[0x81, 0x82, 0, 0, 0, 0, 0xC0, 0x80], 1007);
}

#[test]
fn declared_length_over_the_limit_is_closed_with_1009_before_the_payload() {
    // 2^40 bytes declared, none sent: the close must come from the header alone.
    expect_close(&[0x82, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1009);
}

#[test]
fn message_over_the_limit_across_fragments_is_closed_with_1009() {
    let mut cfg = config();
    cfg.limits.max_message_size = 1000;
    cfg.limits.max_frame_size = 1000;
    let server = server_with(cfg, hydrogen_ws::Echo);
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(false, OpCode::Binary, &[7u8; 600]);
    c.send_frame(true, OpCode::Continuation, &[7u8; 600]);
    assert_eq!(c.read_close().expect("close"), Some(1009));
    server.shutdown();
}

#[test]
fn invalid_close_code_is_closed_with_1002() {
    expect_close(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xED], 1002); // 1005 may not be sent
}

struct Panics;
impl Handler for Panics {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        if message.as_bytes() == b"boom" {
            panic!("handler bug");
        }
        let _ = conn.send(message);
    }
}

#[test]
fn a_panicking_handler_ends_only_its_connection() {
    let mut cfg = config();
    cfg.threads = 1;
    let server = server_with(cfg, Panics);
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"boom");
    assert_eq!(c.read_close().expect("the close"), Some(1011));
    c.send_frame(true, OpCode::Close, &1011u16.to_be_bytes());
    let _ = c.read_to_eof();
    drop(c);
    // The single worker survived and serves the next client.
    assert!(support::wait_until(Duration::from_secs(3), || {
        server.handle().connections() == 0
    }));
    std::thread::sleep(Duration::from_millis(50));
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"fine");
    assert_eq!(c.read_frame().expect("echo").payload, b"fine");
    assert_eq!(server.handle().stats().handler_panics, 1);
    server.shutdown();
}

#[test]
fn workers_start_on_demand_up_to_the_capacity() {
    let mut cfg = config();
    cfg.threads = 12;
    let server = server_with(cfg, hydrogen_ws::Echo);
    let workers = || {
        // The status document is cached for 50 ms.
        std::thread::sleep(Duration::from_millis(60));
        Some(server.handle().status_document().pool.workers as u64)
    };
    // A few spare workers are ready from the start, not the whole capacity.
    assert_eq!(workers(), Some(4));
    let mut clients: Vec<RawClient> = (0..9)
        .map(|_| RawClient::open(server.local_addr()))
        .collect();
    for c in &mut clients {
        c.send_frame(true, OpCode::Text, b"ping");
        assert_eq!(c.read_frame().expect("echo").payload, b"ping");
    }
    // One worker per open connection, started as they came.
    assert_eq!(workers(), Some(9));
    // Past the capacity, clients are refused; no thread beyond it is started.
    let more: Vec<RawClient> = (0..3)
        .map(|_| RawClient::open(server.local_addr()))
        .collect();
    let mut extra = std::net::TcpStream::connect(server.local_addr()).expect("connect");
    extra
        .write_all(support::upgrade_request("").as_bytes())
        .expect("request");
    let mut response = String::new();
    let _ = std::io::Read::read_to_string(&mut extra, &mut response);
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert_eq!(workers(), Some(12));
    let stats = server.handle().stats();
    assert_eq!((stats.refused_full, stats.refused_handshake), (1, 1));
    drop(more);
    server.shutdown();
}

#[test]
fn after_a_large_message_the_connection_still_echoes_and_idles_out_on_time() {
    let mut cfg = config();
    cfg.limits.idle_timeout = Some(Duration::from_millis(1500));
    let server = server_with(cfg, hydrogen_ws::Echo);
    let mut c = RawClient::open(server.local_addr());
    // A large message grows the worker's read buffer ...
    let big = vec![7u8; 300_000];
    c.send_frame(true, OpCode::Binary, &big);
    assert_eq!(c.read_frame().expect("echo").payload, big);
    // ... which goes back to the small one after a quiet moment (the read that waits for it times out
    // early); the connection carries on as before ...
    std::thread::sleep(Duration::from_millis(800));
    c.send_frame(true, OpCode::Text, b"still here");
    assert_eq!(c.read_frame().expect("echo").payload, b"still here");
    // ... and silence is ended by the idle timeout, not by that early wake-up.
    let started = std::time::Instant::now();
    assert_eq!(c.read_close().expect("close"), Some(1001));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}"
    );
    server.shutdown();
}

#[test]
fn after_a_large_message_silence_is_closed_at_the_idle_timeout_not_later() {
    let mut cfg = config();
    cfg.limits.idle_timeout = Some(Duration::from_millis(1000));
    let server = server_with(cfg, hydrogen_ws::Echo);
    let mut c = RawClient::open(server.local_addr());
    let big = vec![7u8; 300_000];
    c.send_frame(true, OpCode::Binary, &big);
    assert_eq!(c.read_frame().expect("echo").payload, big);
    // The grown buffer's quiet check (after 500 ms) must not restart the idle clock.
    let started = std::time::Instant::now();
    assert_eq!(c.read_close().expect("close"), Some(1001));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1400),
        "closed after {waited:?}"
    );
    server.shutdown();
}

/// Replies three times, then closes, all from one message; counts the messages it saw and the sends
/// after its close that were (wrongly) accepted.
#[derive(Default)]
struct Counts {
    messages: std::sync::atomic::AtomicUsize,
    accepted_after_close: std::sync::atomic::AtomicUsize,
}
struct ThreeThenClose(std::sync::Arc<Counts>);
impl Handler for ThreeThenClose {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.messages.fetch_add(1, SeqCst);
        for i in 0..3u8 {
            let _ = conn.send_binary(&[i, message.as_bytes().len() as u8]);
        }
        let _ = conn.close(hydrogen_ws_protocol::CloseCode::NORMAL, "done");
        if conn.send_text("too late").is_ok() {
            self.0.accepted_after_close.fetch_add(1, SeqCst);
        }
    }
}

#[test]
fn replies_held_back_in_a_batch_leave_before_a_close_sent_after_them() {
    let handler = std::sync::Arc::new(Counts::default());
    let server = server_with(config(), ThreeThenClose(std::sync::Arc::clone(&handler)));
    let mut c = RawClient::open(server.local_addr());
    // Two messages in one write: both are read in one batch; the second comes after our close.
    let mut bytes =
        hydrogen_ws_protocol::encode_masked_frame(true, OpCode::Text, [1, 2, 3, 4], b"a");
    bytes.extend(hydrogen_ws_protocol::encode_masked_frame(
        true,
        OpCode::Text,
        [5, 6, 7, 8],
        b"bb",
    ));
    c.send_raw(&bytes);
    for i in 0..3u8 {
        let f = c.read_frame().expect("reply");
        assert_eq!((f.opcode, f.payload), (2, vec![i, 1]));
    }
    assert_eq!(c.read_close().expect("close"), Some(1000));
    server.shutdown();
    use std::sync::atomic::Ordering::SeqCst;
    // The message after our close was not handed to the handler, and nothing was sent after the close.
    assert_eq!(handler.messages.load(SeqCst), 1);
    assert_eq!(handler.accepted_after_close.load(SeqCst), 0);
}

/// Answers a text message "TAG LEN" with LEN bytes of TAG (a byte).
struct Sized;
impl Handler for Sized {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        let text = String::from_utf8_lossy(message.as_bytes()).into_owned();
        let (tag, len) = text.split_once(' ').expect("TAG LEN");
        let reply = vec![tag.parse::<u8>().expect("tag"); len.parse().expect("len")];
        conn.send_binary(&reply).expect("the reply goes out");
    }
}

#[test]
fn a_reply_that_overflows_the_batch_leaves_after_the_held_ones_even_when_the_socket_takes_part() {
    let server = server_with(config(), Sized);
    // A small receive buffer: the client reads nothing until all four are sent, so the socket takes
    // only part of the write that carries the held replies and the large one.
    let mut c = RawClient::from_stream(support::open_small_rcvbuf(server.local_addr()));
    // One write, so one read: three 20 KB replies are held back, the 4 MiB one overflows the batch and
    // leaves with them, and the last is held again and follows once the client has taken the rest.
    let requests = [
        (1u8, 20_000usize),
        (2, 20_000),
        (3, 20_000),
        (4, 4 << 20),
        (5, 10),
    ];
    let mut bytes = Vec::new();
    for (tag, len) in requests {
        let text = format!("{tag} {len}");
        bytes.extend(hydrogen_ws_protocol::encode_masked_frame(
            true,
            OpCode::Text,
            [9, 8, 7, 6],
            text.as_bytes(),
        ));
    }
    c.send_raw(&bytes);
    std::thread::sleep(Duration::from_millis(100));
    for (tag, len) in requests {
        let f = c.read_frame().expect("reply");
        assert_eq!((f.opcode, f.payload.len()), (2, len), "reply {tag}");
        assert!(f.payload.iter().all(|&b| b == tag), "reply {tag}");
    }
    assert_eq!(server.handle().stats().evicted, 0);
    server.shutdown();
}

/// Answers every message with `self.0` bytes (a reply far larger than anything it would accept).
struct BigReply(usize);
impl Handler for BigReply {
    fn on_message(&self, conn: &Conn, _message: Message<'_>) {
        let reply: Vec<u8> = (0..self.0).map(|i| (i % 251) as u8).collect();
        conn.send_binary(&reply).expect("the reply goes out");
    }
}

/// Reads one binary message of `len` bytes, `chunk` bytes at a time with `pause` after each read.
fn read_slowly(stream: &mut std::net::TcpStream, len: usize, chunk: usize, pause: Duration) {
    use std::io::Read;
    let header = if len > 0xFFFF { 10 } else { 4 };
    let mut got = Vec::with_capacity(len + header);
    let mut buf = vec![0u8; chunk];
    while got.len() < len + header {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "EOF after {} of {} bytes", got.len(), len + header);
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(pause);
    }
    assert_eq!(got[0], 0x82, "a binary frame, not a close");
    assert!(got[header..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
}

#[test]
fn a_reply_larger_than_the_pending_limit_reaches_a_reading_client() {
    // The pending limit is 1 MiB here; the reply is 8.
    let server = server_with(config(), BigReply(8 << 20));
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"big one, please");
    read_slowly(&mut c.stream, 8 << 20, 256 * 1024, Duration::ZERO);
    c.send_frame(true, OpCode::Text, b"again");
    read_slowly(&mut c.stream, 8 << 20, 256 * 1024, Duration::ZERO);
    assert_eq!(server.handle().stats().evicted, 0);
    server.shutdown();
}

#[test]
fn a_client_that_reads_slowly_is_not_evicted_as_one_that_stopped() {
    let mut cfg = config();
    cfg.limits.max_message_size = 32 << 20;
    cfg.limits.max_frame_size = 32 << 20;
    cfg.limits.send_timeout = Duration::from_millis(800);
    let server = server_with(cfg, BigReply(16 << 20));
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"big one, please");
    // 64 KiB every 10 ms: the 16 MiB take over 2.5 s, three times the send timeout, but the client
    // never stops taking them (and never pauses for anything near the timeout itself, even when this
    // thread is descheduled for a while on a loaded machine).
    read_slowly(
        &mut c.stream,
        16 << 20,
        64 * 1024,
        Duration::from_millis(10),
    );
    assert_eq!(server.handle().stats().evicted, 0);
    server.shutdown();
}

/// Subscribes each connection to the topic its first message names, every 50 ms; panics when a "boom"
/// subscription is due, and pushes the topic's name otherwise.
struct Subscriptions;
impl Handler for Subscriptions {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        let topic = String::from_utf8_lossy(message.as_bytes()).into_owned();
        conn.subscribe(&topic, Some(Duration::from_millis(50)));
    }
    fn on_subscription_due(&self, conn: &Conn, topic: &str) {
        assert_ne!(topic, "boom", "a handler bug");
        let _ = conn.send_text(topic);
    }
}

#[test]
fn a_panic_in_on_subscription_due_closes_that_connection_and_the_ticker_carries_on() {
    let server = server_with(config(), Subscriptions);
    let mut calm = RawClient::open(server.local_addr());
    calm.send_frame(true, OpCode::Text, b"calm");
    assert_eq!(calm.read_frame().expect("push").payload, b"calm");
    let mut boom = RawClient::open(server.local_addr());
    boom.send_frame(true, OpCode::Text, b"boom");
    assert_eq!(boom.read_close().expect("close"), Some(1011));
    assert_eq!(server.handle().stats().handler_panics, 1);
    // The ticker lives on: the other connection's pushes keep coming.
    for _ in 0..5 {
        assert_eq!(calm.read_frame().expect("push").payload, b"calm");
    }
    server.shutdown();
}

/// Shuts the server down from inside a handler and keeps the report.
struct ShutdownFromHandler(std::sync::Arc<std::sync::Mutex<Option<hydrogen_ws::ShutdownReport>>>);
impl Handler for ShutdownFromHandler {
    fn on_message(&self, conn: &Conn, _message: Message<'_>) {
        let report = conn.server().expect("server is running").shutdown();
        *self.0.lock().expect("lock") = Some(report);
    }
}

#[test]
fn a_handler_can_shut_the_server_down_without_waiting_for_itself() {
    let kept = std::sync::Arc::default();
    let mut cfg = config();
    cfg.shutdown_timeout = Duration::from_secs(5);
    let server = server_with(cfg, ShutdownFromHandler(std::sync::Arc::clone(&kept)));
    let mut other = RawClient::open(server.local_addr());
    let mut caller = RawClient::open(server.local_addr());
    caller.send_frame(true, OpCode::Text, b"stop");
    assert_eq!(caller.read_close().expect("close"), Some(1001));
    assert_eq!(other.read_close().expect("close"), Some(1001));
    assert!(support::wait_until(Duration::from_secs(3), || kept
        .lock()
        .expect("lock")
        .is_some()));
    let report = kept.lock().expect("lock").take().expect("report");
    assert!(report.completed(), "{report}");
    assert_eq!(
        (report.connections, report.close_frames),
        (2, 2),
        "{report}"
    );
    // Not the 5 s deadline: the sequence did not wait for the caller's own connection.
    assert!(report.total_us < 2_000_000, "{report}");
}

/// Tries to close with a code that must never be sent.
struct CloseWith(u16, std::sync::Arc<std::sync::Mutex<Option<String>>>);
impl Handler for CloseWith {
    fn on_message(&self, conn: &Conn, _message: Message<'_>) {
        let result = conn.close(hydrogen_ws_protocol::CloseCode(self.0), "nope");
        *self.1.lock().expect("lock") = Some(format!("{result:?}"));
        let _ = conn.close(hydrogen_ws_protocol::CloseCode::NORMAL, "instead");
    }
}

#[test]
fn conn_close_refuses_codes_that_must_not_be_sent() {
    for code in [1005u16, 1006, 1015, 999, 5000] {
        let seen = std::sync::Arc::default();
        let server = server_with(config(), CloseWith(code, std::sync::Arc::clone(&seen)));
        let mut c = RawClient::open(server.local_addr());
        c.send_frame(true, OpCode::Text, b"close, please");
        assert_eq!(c.read_close().expect("close"), Some(1000), "code {code}");
        assert_eq!(
            seen.lock().expect("lock").as_deref(),
            Some(format!("Err(BadCloseCode({code}))").as_str())
        );
        server.shutdown();
    }
}

/// Echoes, except that "wait" keeps the worker busy for a moment (so what the client sends next piles
/// up in the kernel, and the worker's next read takes as much of it as its buffer holds).
struct WaitThenEcho;
impl Handler for WaitThenEcho {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        if message.as_bytes() == b"wait" {
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        let _ = conn.send(message);
    }
}

#[test]
fn silence_is_closed_at_the_idle_timeout_even_after_a_read_that_filled_the_buffer() {
    // 61,432 bytes end exactly where the worker's grown read buffer does; 61,000 do not. Either way
    // silence afterwards must end with the idle timeout's 1001 (it once never came after the first).
    for payload in [61_432, 61_000] {
        let mut cfg = config();
        cfg.limits.idle_timeout = Some(Duration::from_millis(1000));
        let server = server_with(cfg, WaitThenEcho);
        let mut c = RawClient::open(server.local_addr());
        c.send_frame(true, OpCode::Text, b"wait");
        std::thread::sleep(Duration::from_millis(100));
        let big = vec![7u8; payload];
        c.send_frame(true, OpCode::Binary, &big);
        assert_eq!(c.read_frame().expect("echo").payload.len(), payload);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(6)))
            .expect("timeout");
        let started = std::time::Instant::now();
        assert_eq!(
            c.read_close().expect("the idle timeout's close"),
            Some(1001),
            "payload {payload}"
        );
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(3),
            "payload {payload}: closed after {waited:?}"
        );
        server.shutdown();
    }
}

#[test]
fn a_client_that_lets_more_than_the_pending_limit_pile_up_is_evicted_without_waiting() {
    let mut cfg = config();
    // A 64 KiB message limit makes the pending limit its floor, 1 MiB; the send timeout stays 10 s.
    cfg.limits.max_message_size = 64 * 1024;
    cfg.limits.max_frame_size = 64 * 1024;
    let server = server_with(cfg, hydrogen_ws::Echo);
    let _never_reads = support::open_small_rcvbuf(server.local_addr());
    let handle = server.handle();
    let blob = vec![7u8; 60_000];
    let started = std::time::Instant::now();
    // Far more than the socket buffers and the limit hold together.
    for _ in 0..200 {
        if handle.stats().evicted > 0 {
            break;
        }
        handle.broadcast(Message::Binary(&blob));
    }
    assert!(support::wait_until(Duration::from_secs(3), || handle
        .stats()
        .evicted
        == 1));
    // Evicted by the limit, long before the send timeout could have done it.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(support::wait_until(Duration::from_secs(3), || handle
        .connections()
        == 0));
    server.shutdown();
}

/// Says goodbye to every client when dropped.
struct ByeOnDrop(hydrogen_ws::ServerHandle);

impl Drop for ByeOnDrop {
    fn drop(&mut self) {
        self.0.broadcast(Message::Text("bye"));
    }
}

thread_local! {
    static BYE: std::cell::RefCell<Option<ByeOnDrop>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn a_broadcast_from_a_thread_local_destructor_is_delivered() {
    // The send path reads the server's own thread-locals; on a thread that is ending, some of them may
    // already be gone. It must still work (a panic there would abort the whole process).
    let server = echo_server();
    let mut client = RawClient::open(server.local_addr());
    let handle = server.handle();
    assert!(support::wait_until(Duration::from_secs(2), || handle
        .connections()
        == 1));
    std::thread::spawn(move || {
        BYE.with(|b| *b.borrow_mut() = Some(ByeOnDrop(handle.clone())));
        handle.broadcast(Message::Text("hi"));
    })
    .join()
    .expect("the thread ends normally");
    for expected in [&b"hi"[..], b"bye"] {
        let frame = client.read_frame().expect("a broadcast");
        assert_eq!(frame.payload, expected);
    }
    server.shutdown();
}
