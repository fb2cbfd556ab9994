//! The Hydrogen application mode over real sockets: authentication, subprotocol, the JSON messages,
//! subscriptions, broadcast with a stalled client, heartbeat, and the plain HTTP endpoints.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use hydrogen_ws::{Config, Hydrogen, Mode, Server};
use hydrogen_ws_protocol::{Message, OpCode};
use serde_json::Value;
use support::{upgrade_request, RawClient};

const KEY: &str = "s3cret-key";

fn hydrogen_config() -> Config {
    Config {
        mode: Mode::Hydrogen,
        key: Some(KEY.to_string()),
        ..support::config()
    }
}

fn start(config: Config) -> Server {
    Server::start(config, Hydrogen).expect("server starts")
}

fn upgrade_status(server: &Server, target: &str, extra: &str) -> (u16, support::HttpResponse) {
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(
        upgrade_request(extra)
            .replacen("/chat", target, 1)
            .as_bytes(),
    );
    let r = c.read_response().expect("response");
    (r.status, r)
}

fn open(server: &Server) -> RawClient {
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(upgrade_request(&format!("Authorization: Key {KEY}\r\n")).as_bytes());
    assert_eq!(c.read_response().expect("101").status, 101);
    c
}

fn request(c: &mut RawClient, json: &str) -> Value {
    c.send_frame(true, OpCode::Text, json.as_bytes());
    next_json(c)
}

fn next_json(c: &mut RawClient) -> Value {
    loop {
        let f = c.read_frame().expect("a frame");
        if f.opcode == 1 {
            return serde_json::from_slice(&f.payload).expect("JSON text");
        }
    }
}

#[test]
fn key_by_header_and_by_query_is_accepted() {
    let server = start(hydrogen_config());
    assert_eq!(
        upgrade_status(&server, "/", &format!("Authorization: Key {KEY}\r\n")).0,
        101
    );
    assert_eq!(upgrade_status(&server, "/?key=s3cret%2Dkey", "").0, 101);
    server.shutdown();
}

#[test]
fn wrong_or_missing_key_gets_401_with_a_reason() {
    let server = start(hydrogen_config());
    let (status, r) = upgrade_status(&server, "/", "Authorization: Key wrong-key-1\r\n");
    assert_eq!(status, 401);
    assert!(r.body.contains("not valid"), "{}", r.body);
    assert_eq!(upgrade_status(&server, "/?key=nope-nope", "").0, 401);
    let (status, r) = upgrade_status(&server, "/", "");
    assert_eq!(status, 401);
    assert!(r.body.contains("key is required"), "{}", r.body);
    assert_eq!(
        upgrade_status(&server, "/", "Authorization: Bearer s3cret-key\r\n").0,
        401
    );
    // A NUL smuggled in through percent-encoding is refused outright.
    assert_eq!(upgrade_status(&server, "/?key=s3cret%00key", "").0, 400);
    assert_eq!(server.handle().stats().refused_handshake, 4 + 1);
    server.shutdown();
}

#[test]
fn subprotocol_is_negotiated_or_refused() {
    let server = start(hydrogen_config());
    let auth = format!("Authorization: Key {KEY}\r\n");
    let (status, r) = upgrade_status(
        &server,
        "/",
        &format!("{auth}Sec-WebSocket-Protocol: chat, hydrogen\r\n"),
    );
    assert_eq!(status, 101);
    assert_eq!(r.header("sec-websocket-protocol"), Some("hydrogen"));
    let (status, r) = upgrade_status(
        &server,
        "/",
        &format!("{auth}Sec-WebSocket-Protocol: chat\r\n"),
    );
    assert_eq!(status, 400);
    assert!(r.body.contains("hydrogen"), "{}", r.body);
    let (status, r) = upgrade_status(&server, "/", &auth);
    assert_eq!(status, 101);
    assert_eq!(r.header("sec-websocket-protocol"), None);
    server.shutdown();
}

#[test]
fn status_document_has_sane_fields_and_echoes_the_id() {
    let server = start(hydrogen_config());
    let mut c = open(&server);
    let doc = request(&mut c, r#"{"type":"status","id":42}"#);
    assert_eq!(doc["type"], "status");
    assert_eq!(doc["id"], 42);
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["protocol"], "hydrogen");
    assert_eq!(doc["listen"], server.local_addr().to_string());
    assert_eq!(doc["connections"]["active"], 1);
    assert!(doc["connections"]["total"].as_u64() >= Some(1));
    assert_eq!(doc["connections"]["capacity"], 8);
    assert_eq!(doc["messages"]["in"], 1);
    assert!(doc["memory"]["rss_bytes"].as_u64() > Some(1 << 20));
    assert!(doc["threads"].as_u64() >= Some(9));
    assert!(doc["uptime_s"].as_f64() >= Some(0.0));
    assert_eq!(doc["limits"]["max_message_size"], 1 << 20);
    server.shutdown();
}

#[test]
fn application_ping_gets_pong() {
    let server = start(hydrogen_config());
    let mut c = open(&server);
    let reply = request(&mut c, r#"{"type":"ping","id":"abc"}"#);
    assert_eq!(reply, serde_json::json!({"type":"pong","id":"abc"}));
    server.shutdown();
}

#[test]
fn bad_requests_get_error_replies_and_the_connection_stays_open() {
    let server = start(hydrogen_config());
    let mut c = open(&server);
    for (bad, needle) in [
        ("{not json", "invalid JSON"),
        ("[1,2]", "JSON object"),
        (r#"{"id":7}"#, "missing \"type\""),
        (r#"{"type":5}"#, "must be a string"),
        (r#"{"type":"dance","id":7}"#, "unknown type 'dance'"),
        (r#"{"type":"subscribe","topic":"a..b"}"#, "bad_request"),
        (r#"{"type":"subscribe","topic":7}"#, "must be a string"),
        (
            r#"{"type":"subscribe","interval_ms":"soon"}"#,
            "interval_ms",
        ),
    ] {
        let reply = request(&mut c, bad);
        assert_eq!(reply["type"], "error", "{bad}");
        let text = reply["error"].as_str().unwrap_or_default();
        assert!(text.contains(needle), "{bad}: {text}");
        if bad.contains("\"id\":7") {
            assert_eq!(reply["id"], 7);
        }
    }
    c.send_frame(true, OpCode::Binary, &[1, 2, 3]);
    let reply = next_json(&mut c);
    assert!(reply["error"]
        .as_str()
        .unwrap_or_default()
        .contains("binary"));
    // Still open and serving.
    assert_eq!(request(&mut c, r#"{"type":"ping"}"#)["type"], "pong");
    server.shutdown();
}

#[test]
fn a_subscription_interval_defaults_to_a_second_and_is_capped_at_an_hour() {
    let server = start(hydrogen_config());
    let mut c = open(&server);
    let ack = request(&mut c, r#"{"type":"subscribe","topic":"status"}"#);
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["interval_ms"], 1000, "the default interval");
    let ack = request(
        &mut c,
        r#"{"type":"subscribe","topic":"status","interval_ms":86400000}"#,
    );
    assert_eq!(ack["interval_ms"], 3_600_000, "the interval has a ceiling");
    server.shutdown();
}

#[test]
fn subscribe_pushes_until_unsubscribed() {
    let server = start(hydrogen_config());
    let mut c = open(&server);
    let ack = request(
        &mut c,
        r#"{"type":"subscribe","topic":"status","interval_ms":10,"id":1}"#,
    );
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["interval_ms"], 250, "the interval has a floor");
    let started = Instant::now();
    for _ in 0..2 {
        assert_eq!(next_json(&mut c)["type"], "status");
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    let ack = request(&mut c, r#"{"type":"unsubscribe","topic":"status"}"#);
    // A push may already have been on its way; skip it.
    let ack = if ack["type"] == "status" {
        next_json(&mut c)
    } else {
        ack
    };
    assert_eq!(ack["type"], "unsubscribed");
    assert_eq!(ack["was_subscribed"], true);
    c.stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    assert!(c.read_frame().is_err(), "no push after unsubscribe");
    server.shutdown();
}

#[test]
fn a_stalled_client_is_evicted_and_does_not_delay_the_others() {
    let mut config = hydrogen_config();
    config.threads = 110;
    config.limits.send_timeout = Duration::from_millis(500);
    let server = start(config);
    let mut clients: Vec<RawClient> = (0..99).map(|_| open(&server)).collect();
    let mut stalled = open(&server);
    let handle = server.handle();
    let blob = "x".repeat(60_000);
    let mut slowest = Duration::ZERO;
    // 100 broadcasts of 60 kB: far more than the stalled client's socket buffers hold.
    for round in 0..100 {
        let started = Instant::now();
        let report = handle.broadcast(Message::Text(&blob));
        slowest = slowest.max(started.elapsed());
        assert!(report.sent >= 99, "round {round}: {report:?}");
        for c in &mut clients {
            let f = c
                .read_frame()
                .expect("the others keep getting every update");
            assert_eq!(f.payload.len(), 60_000);
        }
    }
    assert!(
        slowest < Duration::from_millis(300),
        "a broadcast waited {slowest:?}"
    );
    // The stalled client is evicted once it has been stuck for the send timeout.
    let until = Instant::now() + Duration::from_secs(5);
    while handle.stats().evicted == 0 && Instant::now() < until {
        handle.broadcast(Message::Text("tick"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(handle.stats().evicted, 1);
    // Its connection ends (after whatever was already in its buffers).
    stalled
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut sink = [0u8; 65536];
    let mut ended = false;
    while let Ok(n) = stalled.stream.read(&mut sink) {
        if n == 0 {
            ended = true;
            break;
        }
    }
    assert!(ended || handle.connections() == 99);
    server.shutdown();
}

#[test]
fn heartbeat_closes_a_client_that_never_answers_pings() {
    let mut config = hydrogen_config();
    config.heartbeat.ping_interval = Some(Duration::from_millis(100));
    config.heartbeat.pong_timeout = Duration::from_millis(300);
    let server = start(config);
    let mut silent = open(&server);
    let mut polite = open(&server);
    let started = Instant::now();
    // The polite client answers pings; the silent one does not.
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(800) {
        let f = polite.read_frame().expect("ping");
        if f.opcode == 9 {
            pings += 1;
            polite.send_frame(true, OpCode::Pong, &f.payload);
        }
    }
    assert!(pings >= 3, "{pings} pings");
    let f = silent.read_frame().expect("ping");
    assert_eq!(f.opcode, 9);
    assert_eq!(silent.read_close().expect("close"), Some(1011));
    assert_eq!(server.handle().stats().heartbeat_timeouts, 1);
    assert_eq!(request(&mut polite, r#"{"type":"ping"}"#)["type"], "pong");
    server.shutdown();
}

fn http_get(server: &Server, target: &str, extra: &str) -> support::HttpResponse {
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes());
    let r = c.read_response().expect("response");
    assert_eq!(r.header("connection"), Some("close"));
    r
}

#[test]
fn http_endpoints() {
    let server = start(hydrogen_config());
    let auth = format!("Authorization: Key {KEY}\r\n");

    let r = http_get(&server, "/status", &auth);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(doc["type"], "status");
    assert_eq!(http_get(&server, "/status", "").status, 401);
    assert_eq!(http_get(&server, "/status?key=s3cret-key", "").status, 200);

    let r = http_get(&server, "/metrics", &auth);
    assert_eq!(r.status, 200);
    check_prometheus(&r.body);
    assert!(
        r.body
            .contains("hydrogen_ws_refusals_total{status=\"401\"} 1"),
        "{}",
        r.body
    );
    assert_eq!(http_get(&server, "/metrics", "").status, 401);

    let r = http_get(&server, "/health", "");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    let r = http_get(&server, "/", "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("new WebSocket(url, \"hydrogen\")"));

    assert_eq!(http_get(&server, "/nope", "").status, 404);
    server.shutdown();
}

fn http_raw(server: &Server, request: &str) -> support::HttpResponse {
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(request.as_bytes());
    c.read_response().expect("response")
}

#[test]
fn plain_http_follows_the_rfc_edges() {
    let server = start(hydrogen_config());

    // HEAD: the GET's head, Content-Length included, and no body, errors too.
    for (target, status) in [("/health", 200), ("/nope", 404), ("/status", 401)] {
        let r = http_raw(
            &server,
            &format!("HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        assert_eq!(r.status, status, "HEAD {target}");
        assert_ne!(r.header("content-length"), Some("0"), "HEAD {target}");
        assert_eq!(r.body, "", "HEAD {target}");
    }

    // A 401 names the scheme it wants.
    let r = http_get(&server, "/status", "");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Key realm=\"hydrogen-ws\"")
    );
    let (status, r) = upgrade_status(&server, "/", "");
    assert_eq!(status, 401);
    assert!(r.header("www-authenticate").is_some());

    // An upgrade to something other than WebSocket (an HTTP/2 client's h2c) is ignored.
    let r = http_get(
        &server,
        "/health",
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    // Absolute-form targets are served; the key in their query counts.
    assert_eq!(http_get(&server, "http://x/health", "").status, 200);
    assert_eq!(
        http_get(&server, "http://x/status?key=s3cret-key", "").status,
        200
    );

    // HTTP/1.1 needs exactly one Host; HTTP/1.0 may go without.
    let r = http_raw(&server, "GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Host"), "{}", r.body);
    let r = http_raw(
        &server,
        "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        http_raw(&server, "GET /health HTTP/1.0\r\n\r\n").status,
        200
    );

    // A browser behind a proxy with Basic auth still gets in with ?key=.
    let (status, _) = upgrade_status(
        &server,
        "/?key=s3cret-key",
        "Authorization: Basic dXNlcjpwYXNz\r\n",
    );
    assert_eq!(status, 101);

    // Counted once each: plain requests (any status) as http, refused upgrades as refused.
    let stats = server.handle().stats();
    assert_eq!(stats.http_requests, 10);
    assert_eq!(stats.refused_handshake, 1);
    assert_eq!(stats.upgrades, 1);
    server.shutdown();
}

#[test]
fn metrics_count_what_happened() {
    let server = start(hydrogen_config());
    let mut c = open(&server);
    let ping = r#"{"type":"ping"}"#;
    for _ in 0..3 {
        assert_eq!(request(&mut c, ping)["type"], "pong");
    }
    assert_eq!(http_get(&server, "/health", "").status, 200);
    // Plain HTTP never takes a worker.
    assert_eq!(server.handle().connections(), 1);
    let r = http_get(
        &server,
        "/metrics",
        &format!("Authorization: Key {KEY}\r\n"),
    );
    let value = |name: &str| -> u64 {
        let line = r
            .body
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {}", r.body));
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number")
    };
    assert_eq!(value("hydrogen_ws_upgrades_total"), 1);
    // The WebSocket; the connection asking is answered in the admission stage, without a worker.
    assert_eq!(value("hydrogen_ws_connections_active"), 1);
    assert_eq!(value("hydrogen_ws_pending_handshakes"), 0);
    assert_eq!(value("hydrogen_ws_messages_received_total"), 3);
    assert_eq!(value("hydrogen_ws_messages_sent_total"), 3);
    assert_eq!(
        value("hydrogen_ws_bytes_received_total"),
        3 * ping.len() as u64
    );
    // The /health request (this one is counted once answered).
    assert_eq!(value("hydrogen_ws_http_requests_total"), 1);
    server.shutdown();
}

/// Every line is a comment (`# HELP name text` / `# TYPE name kind`) or a sample `name{labels} value`,
/// every sample's metric was declared by a TYPE line (a counter's samples carry `_total` after its
/// name, as OpenMetrics has it), and the exposition ends with `# EOF`.
fn check_prometheus(text: &str) {
    let mut typed = std::collections::HashSet::new();
    let mut samples = 0;
    assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("name");
            let kind = parts.next().expect("kind");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            assert!(parts.next().is_none(), "{line}");
            typed.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.split_once(' ').is_some(), "{line}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample");
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let name = series.split('{').next().expect("name");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                    for pair in labels[1..labels.len() - 1].split(',') {
                        let (k, v) = pair.split_once('=').expect("label");
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                        assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                    }
                }
            }
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                typed.contains(name) || typed.contains(family),
                "sample before its TYPE: {line}"
            );
            samples += 1;
        }
    }
    assert!(samples > 20, "{samples} samples");
}

#[test]
fn hydrogen_mode_without_a_key_refuses_to_start_unless_no_auth() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hydrogen-ws"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("WEBSOCKET_KEY")
        .env_remove("HYDROGEN_WS_KEY")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-auth"));
    let config = Config {
        no_auth: true,
        key: None,
        ..hydrogen_config()
    };
    let server = start(config);
    assert_eq!(upgrade_status(&server, "/", "").0, 101);
    server.shutdown();
}
