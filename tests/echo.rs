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
    let _ = c.read_to_eof();
    // The single worker survived and serves the next client.
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
        server.handle().status_document()["pool"]["workers"].as_u64()
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
