//! Upgrade refusals over real sockets: each gets the right status, a reason, and a closed connection.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::{config, echo_server, server_with, upgrade_request, RawClient};

fn status_for(request: &str) -> support::HttpResponse {
    status_for_bytes(request.as_bytes())
}

fn status_for_bytes(request: &[u8]) -> support::HttpResponse {
    let server = echo_server();
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(request);
    let r = c.read_response().expect("a response");
    // The refusal is followed by a clean close, not a reset.
    assert_eq!(c.read_to_eof().expect("eof"), 0);
    server.shutdown();
    r
}

#[test]
fn valid_request_gets_101_with_the_rfc_accept_key() {
    let server = echo_server();
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(upgrade_request("").as_bytes());
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    server.shutdown();
}

#[test]
fn post_gets_405() {
    let r = status_for(&upgrade_request("").replacen("GET", "POST", 1));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

#[test]
fn other_version_gets_426_naming_13() {
    let r = status_for(&upgrade_request("").replace("Version: 13", "Version: 8"));
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
}

#[test]
fn bad_key_gets_400() {
    let r = status_for(&upgrade_request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="));
    assert_eq!(r.status, 400);
    assert!(!r.body.is_empty(), "a refusal says why");
}

#[test]
fn http_1_0_gets_400() {
    assert_eq!(
        status_for(&upgrade_request("").replace("HTTP/1.1", "HTTP/1.0")).status,
        400
    );
}

#[test]
fn another_http_major_version_gets_505() {
    let r = status_for(&upgrade_request("").replace("HTTP/1.1", "HTTP/2.0"));
    assert_eq!(r.status, 505);
    assert!(
        r.head
            .starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"),
        "{r:?}"
    );
    // The HTTP/2 connection preface of a client that assumed HTTP/2 (prior knowledge).
    assert_eq!(status_for("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").status, 505);
    // A plain request too.
    assert_eq!(
        status_for("GET /health HTTP/3\r\nHost: a\r\n\r\n").status,
        505
    );
}

#[test]
fn plain_get_gets_426() {
    let r = status_for("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 426);
}

#[test]
fn garbage_gets_400() {
    assert_eq!(
        status_for_bytes(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").status,
        400
    );
}

#[test]
fn too_many_headers_get_431() {
    let extra: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(status_for(&upgrade_request(&extra)).status, 431);
}

#[test]
fn oversized_head_gets_431() {
    let extra = format!("X-Big: {}\r\n", "a".repeat(10_000));
    assert_eq!(status_for(&upgrade_request(&extra)).status, 431);
}

#[test]
fn slow_request_gets_408_at_the_handshake_timeout() {
    let mut cfg = config();
    cfg.limits.handshake_timeout = Duration::from_millis(300);
    let server = server_with(cfg, hydrogen_ws::Echo);
    let mut c = RawClient::connect(server.local_addr());
    let started = Instant::now();
    c.send_raw(b"GET / HTTP/1.1\r\nHost:");
    let r = c.read_response().expect("408");
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
    server.shutdown();
}

#[test]
fn full_server_answers_503_with_retry_after() {
    let mut cfg = config();
    cfg.threads = 1;
    let server = server_with(cfg, hydrogen_ws::Echo);
    let mut first = RawClient::open(server.local_addr());
    let mut second = RawClient::connect(server.local_addr());
    second.send_raw(upgrade_request("").as_bytes());
    let r = second.read_response().expect("503");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    // The established client is unaffected.
    first.send_frame(true, hydrogen_ws_protocol::OpCode::Text, b"still here");
    assert_eq!(first.read_frame().expect("echo").payload, b"still here");
    assert_eq!(server.handle().stats().refused_full, 1);
    server.shutdown();
}

#[test]
fn request_trickled_byte_by_byte_is_accepted() {
    let server = echo_server();
    let mut c = RawClient::connect(server.local_addr());
    c.stream.set_nodelay(true).expect("nodelay");
    for b in upgrade_request("").bytes() {
        c.stream.write_all(&[b]).expect("write");
    }
    assert_eq!(c.read_response().expect("101").status, 101);
    server.shutdown();
}

#[test]
fn a_plain_request_with_another_method_gets_405_allowing_get_and_head() {
    let r = status_for("POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(!r.body.is_empty(), "a refusal says why");
}

#[test]
fn the_origin_allow_list_admits_listed_origins_only() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://app.example".to_string()];
    let server = server_with(cfg, hydrogen_ws::Echo);
    let answer = |origin: Option<&str>| {
        let mut c = RawClient::connect(server.local_addr());
        let extra = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
        c.send_raw(upgrade_request(&extra).as_bytes());
        c.read_response().expect("a response")
    };
    assert_eq!(answer(Some("https://app.example")).status, 101);
    // Origins compare without regard to case (RFC 6454 serialises them in lower case).
    assert_eq!(answer(Some("HTTPS://APP.EXAMPLE")).status, 101);
    let other = answer(Some("https://evil.example"));
    assert_eq!(other.status, 403);
    assert!(other.body.contains("https://evil.example"), "{other:?}");
    // With a list, a client that names no origin is refused too.
    assert_eq!(answer(None).status, 403);
    assert_eq!(server.handle().stats().refused_handshake, 2);
    server.shutdown();
}
