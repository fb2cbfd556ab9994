//! What a library handler is told: `on_close` names who closed the connection, with which code and
//! reason, or how it ended without a close frame. Every way a connection can end, over real sockets.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hydrogen_ws::{Conn, Ending, Handler, SendError, Server};
use hydrogen_ws_protocol::{encode_masked_frame, CloseCode, Message, OpCode};
use support::{config, open_small_rcvbuf, server_with, wait_until, RawClient};

/// Echoes, and records every `on_close` (where it also tries to say goodbye, which must not reach the
/// client). "close-me" makes it close with 4000; "boom" makes it panic; "slow" makes it wait 300 ms
/// before its echo; "flood" makes it send far more than a client that does not read can take.
#[derive(Clone, Default)]
struct Recorder {
    endings: Arc<Mutex<Vec<(u64, Ending)>>>,
    /// A send from on_close was not refused.
    late_send_taken: Arc<std::sync::atomic::AtomicBool>,
}

impl Handler for Recorder {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        match message.as_bytes() {
            b"close-me" => {
                let _ = conn.close(CloseCode(4000), "done");
            }
            b"boom" => panic!("handler bug"),
            b"slow" => {
                std::thread::sleep(Duration::from_millis(300));
                let _ = conn.send(message);
            }
            b"flood" => {
                let blob = vec![7u8; 64 * 1024];
                for _ in 0..1000 {
                    if conn.send_binary(&blob).is_err() {
                        return;
                    }
                }
            }
            _ => {
                let _ = conn.send(message);
            }
        }
    }

    fn on_close(&self, conn: &Conn, ending: &Ending) {
        if !matches!(conn.send_text("bye"), Err(SendError::Closed)) {
            self.late_send_taken
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let mut endings = self.endings.lock().unwrap_or_else(|p| p.into_inner());
        endings.push((conn.id(), ending.clone()));
    }
}

impl Recorder {
    /// The one ending recorded, once it is there (at most 5 s).
    fn only_ending(&self) -> Ending {
        let arrived = wait_until(Duration::from_secs(5), || {
            !self.endings.lock().expect("lock").is_empty()
        });
        assert!(arrived, "on_close was not called");
        assert!(
            !self
                .late_send_taken
                .load(std::sync::atomic::Ordering::SeqCst),
            "a send from on_close was not refused"
        );
        let endings = self.endings.lock().expect("lock");
        assert_eq!(endings.len(), 1, "{endings:?}");
        endings[0].1.clone()
    }
}

fn start(recorder: &Recorder) -> Server {
    server_with(config(), recorder.clone())
}

fn by_server(code: u16, reason: &str) -> Ending {
    Ending::ByServer {
        code: CloseCode(code),
        reason: reason.to_string(),
    }
}

#[test]
fn a_client_close_is_reported_with_its_code_and_reason() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    c.send_frame(true, OpCode::Close, &payload);
    assert_eq!(c.read_close().expect("the echoed close"), Some(1000));
    assert_eq!(
        recorder.only_ending(),
        Ending::ByClient {
            code: Some(CloseCode(1000)),
            reason: "bye".to_string()
        }
    );
    server.shutdown();
}

#[test]
fn a_client_close_without_a_code_is_reported_as_such() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Close, &[]);
    assert_eq!(c.read_close().expect("the answer"), None);
    assert_eq!(
        recorder.only_ending(),
        Ending::ByClient {
            code: None,
            reason: String::new()
        }
    );
    server.shutdown();
}

#[test]
fn a_protocol_error_is_reported_as_the_servers_close() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    // An unmasked text frame.
    c.send_raw(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(c.read_close().expect("the close"), Some(1002));
    match recorder.only_ending() {
        Ending::ByServer { code, reason } => {
            assert_eq!(code, CloseCode(1002));
            assert!(!reason.is_empty(), "a protocol error says which");
        }
        other => panic!("expected the server's 1002, got {other:?}"),
    }
    server.shutdown();
}

#[test]
fn the_handlers_own_close_is_reported() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"close-me");
    assert_eq!(c.read_close().expect("the close"), Some(4000));
    assert_eq!(recorder.only_ending(), by_server(4000, "done"));
    server.shutdown();
}

#[test]
fn a_panicking_handler_closes_with_1011_and_still_gets_on_close() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"boom");
    assert_eq!(c.read_close().expect("the close"), Some(1011));
    assert_eq!(recorder.only_ending(), by_server(1011, "internal error"));
    assert_eq!(server.handle().stats().handler_panics, 1);
    server.shutdown();
}

#[test]
fn a_client_that_leaves_without_a_close_frame_is_reported_as_dropped() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"hello");
    assert_eq!(c.read_frame().expect("echo").payload, b"hello");
    drop(c);
    assert_eq!(recorder.only_ending(), Ending::Dropped);
    server.shutdown();
}

#[test]
fn the_idle_timeout_is_reported_as_the_servers_1001() {
    let recorder = Recorder::default();
    let mut cfg = config();
    cfg.limits.idle_timeout = Some(Duration::from_millis(200));
    let server = server_with(cfg, recorder.clone());
    let mut c = RawClient::open(server.local_addr());
    assert_eq!(c.read_close().expect("the close"), Some(1001));
    assert_eq!(recorder.only_ending(), by_server(1001, "idle timeout"));
    server.shutdown();
}

#[test]
fn the_shutdown_is_reported_as_the_servers_1001() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    c.send_frame(true, OpCode::Text, b"hello");
    assert_eq!(c.read_frame().expect("echo").payload, b"hello");
    let report = server.shutdown();
    assert_eq!(report.close_frames, 1, "{report:?}");
    assert_eq!(c.read_close().expect("the close"), Some(1001));
    assert_eq!(
        recorder.only_ending(),
        by_server(1001, "server shutting down")
    );
}

#[test]
fn a_client_that_stops_reading_is_reported_as_evicted() {
    let recorder = Recorder::default();
    let mut cfg = config();
    cfg.limits.send_timeout = Duration::from_millis(300);
    let server = server_with(cfg, recorder.clone());
    let mut stream = open_small_rcvbuf(server.local_addr());
    let frame =
        hydrogen_ws_protocol::encode_masked_frame(true, OpCode::Text, [1, 2, 3, 4], b"flood");
    std::io::Write::write_all(&mut stream, &frame).expect("send");
    // The client never reads: the handler's sends stall, and the client is evicted.
    assert_eq!(recorder.only_ending(), Ending::Evicted);
    assert_eq!(server.handle().stats().evicted, 1);
    server.shutdown();
}

/// "sub:TOPIC" subscribes the connection to TOPIC (no periodic callback) and answers "ok".
struct Subscriber;
impl Handler for Subscriber {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        if let Some(topic) = message
            .as_bytes()
            .strip_prefix(b"sub:")
            .and_then(|t| std::str::from_utf8(t).ok())
        {
            conn.subscribe(topic, None);
            let _ = conn.send_text("ok");
        }
    }
}

#[test]
fn publish_reaches_the_subscribers_of_its_topic_only() {
    let server = server_with(config(), Subscriber);
    let mut news = RawClient::open(server.local_addr());
    let mut sports = RawClient::open(server.local_addr());
    let mut nothing = RawClient::open(server.local_addr());
    for (c, topic) in [(&mut news, "news"), (&mut sports, "sports")] {
        c.send_frame(true, OpCode::Text, format!("sub:{topic}").as_bytes());
        assert_eq!(c.read_frame().expect("ok").payload, b"ok");
    }
    let handle = server.handle();
    let report = handle.publish("news", Message::Text("extra"));
    assert_eq!((report.sent, report.failed), (1, 0));
    assert_eq!(news.read_frame().expect("the news").payload, b"extra");
    // The others get nothing: the next thing each sees is the broadcast that follows.
    assert_eq!(handle.broadcast(Message::Text("all")).sent, 3);
    for c in [&mut news, &mut sports, &mut nothing] {
        assert_eq!(c.read_frame().expect("the broadcast").payload, b"all");
    }
    server.shutdown();
}

#[test]
fn replies_sent_before_a_panic_go_out_ahead_of_the_1011() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    // Both in one write, so that the echo of the first is still held back when the second panics.
    let mut both = encode_masked_frame(true, OpCode::Text, [1, 2, 3, 4], b"first");
    both.extend(encode_masked_frame(
        true,
        OpCode::Text,
        [1, 2, 3, 4],
        b"boom",
    ));
    c.send_raw(&both);
    let f = c.read_frame().expect("the echo");
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"first"[..]));
    assert_eq!(c.read_close().expect("the close"), Some(1011));
    assert_eq!(recorder.only_ending(), by_server(1011, "internal error"));
    server.shutdown();
}

#[test]
fn a_client_that_resets_while_its_reply_is_due_is_dropped_not_evicted() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let c = RawClient::open(server.local_addr());
    let mut stream = c.stream;
    std::io::Write::write_all(
        &mut stream,
        &encode_masked_frame(true, OpCode::Text, [1, 2, 3, 4], b"slow"),
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(50));
    // A reset while the handler sleeps: its echo then fails.
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
    assert_eq!(recorder.only_ending(), Ending::Dropped);
    assert_eq!(server.handle().stats().evicted, 0);
    server.shutdown();
}

#[test]
fn a_client_close_read_before_the_shutdowns_1001_went_out_is_the_clients() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    // The close arrives with a message whose handler is still busy when the shutdown writes its 1001.
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    let mut both = encode_masked_frame(true, OpCode::Text, [1, 2, 3, 4], b"slow");
    both.extend(encode_masked_frame(
        true,
        OpCode::Close,
        [1, 2, 3, 4],
        &close,
    ));
    c.send_raw(&both);
    std::thread::sleep(Duration::from_millis(100));
    let _ = server.handle().shutdown();
    assert_eq!(
        recorder.only_ending(),
        Ending::ByClient {
            code: Some(CloseCode(1000)),
            reason: "bye".to_string()
        }
    );
}

#[test]
fn nothing_sent_from_on_close_reaches_the_client() {
    let recorder = Recorder::default();
    let server = start(&recorder);
    let mut c = RawClient::open(server.local_addr());
    // Half-closed: the client can still read whatever the server would send.
    c.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert_eq!(recorder.only_ending(), Ending::Dropped);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    assert_eq!(
        c.read_to_eof().expect("a clean end"),
        0,
        "something arrived"
    );
    server.shutdown();
}
