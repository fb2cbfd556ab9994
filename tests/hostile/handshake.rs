//! Handshake abuse: every request that is slow, huge, long, odd, malformed or pathological gets its
//! exact answer, and a client that upgraded before the attack keeps its echoes.

use std::io::Write;
use std::time::{Duration, Instant};

use hydrogen_ws::Echo;

use crate::common::*;
use crate::support::{config, echo_server, server_with, upgrade_request, RawClient};

/// A request trickled one byte per write that never ends gets 408 at the handshake timeout, and its
/// worker is free again: with two workers and a bystander holding one, the server is a one-worker server
/// for the attacker, and a new client gets in after the 408.
#[test]
fn trickled_request_that_never_ends_gets_408_and_frees_its_worker() {
    let _g = shared();
    let mut cfg = config();
    cfg.threads = 2;
    cfg.limits.handshake_timeout = Duration::from_millis(400);
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);

    let mut slow = RawClient::connect(addr);
    slow.stream.set_nodelay(true).expect("nodelay");
    let request = upgrade_request("");
    // Everything but the final CRLF, one byte per write, 20 ms apart.
    let body = &request.as_bytes()[..request.len() - 2];
    let started = Instant::now();
    let mut sent = 0;
    while !readable(&slow.stream, Duration::from_millis(20)) {
        if sent < body.len() && slow.stream.write_all(&body[sent..=sent]).is_ok() {
            sent += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no 408");
    }
    let r = slow.read_response().expect("408");
    let took = started.elapsed();
    assert_refused(
        &r,
        408,
        "the request did not arrive within 400ms",
        "trickled request",
    );
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(3000),
        "408 after {took:?}"
    );
    assert!(sent < body.len(), "the request was never finished");
    assert_eq!(slow.read_to_eof().expect("clean close"), 0);
    drop(slow);

    // The worker is back: a new client upgrades next to the bystander.
    let mut next = open_when_free(addr, Duration::from_secs(3));
    still_served(&mut next);
    still_served(&mut bystander);
    // The 408, and nothing else but the 503s `open_when_free` may have met while the worker came back.
    let stats = server.handle().stats();
    assert_eq!(stats.refused_handshake - stats.refused_full, 1, "{stats:?}");
    server.shutdown();
}

/// A header line that never ends, and thousands of small header lines, sent in small pieces: 431 as soon
/// as the head passes its limit, and the server stops taking bytes there (a few KiB of slack for the
/// server's 2 KiB read size and scheduling, not megabytes).
#[test]
fn huge_header_line_and_thousands_of_headers_get_431_near_the_limit() {
    let _g = shared();
    let server = echo_server();
    let addr = server.local_addr();
    let limit = server.handle().config().limits.max_header_bytes;
    let mut bystander = RawClient::open(addr);

    let mut huge_line = b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    huge_line.resize(4 << 20, b'a');
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200_000 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    for (what, bytes) in [("one huge line", huge_line), ("thousands of headers", many)] {
        let mut c = RawClient::connect(addr);
        let started = Instant::now();
        let written = write_in_pieces(&mut c.stream, &bytes, 256, Duration::from_millis(1))
            .unwrap_or_else(|| panic!("{what}: no answer after {} bytes", bytes.len()));
        let r = c.read_response().expect("431");
        assert_refused(&r, 431, "request header section too large", what);
        assert!(
            written >= limit && written < limit + 32 * 1024,
            "{what}: {written} bytes written before the 431 (limit {limit})"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{what}: 431 after {took:?}");
    }
    still_served(&mut bystander);
    server.shutdown();
}

/// Feeding a head in small pieces costs time linear in its size: a 1 MiB head (limit raised to allow it)
/// in 64-byte writes is refused in well under the time a rescan-per-piece parser would need.
#[test]
fn a_megabyte_head_in_small_pieces_is_parsed_in_linear_time() {
    let _g = shared();
    let mut cfg = config();
    cfg.limits.max_header_bytes = 1 << 20;
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let mut c = RawClient::connect(addr);
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.resize((1 << 20) + 4096, b'b');
    let started = Instant::now();
    let _ = c.stream.set_nodelay(true);
    for piece in head.chunks(64) {
        if c.stream.write_all(piece).is_err() {
            break;
        }
    }
    let r = c.read_response().expect("431");
    assert_refused(&r, 431, "request header section too large", "1 MiB head");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    still_served(&mut bystander);
    server.shutdown();
}

/// A request target over the limit gets 414, whether the line is complete or streams on forever.
#[test]
fn very_long_request_target_gets_414() {
    let _g = shared();
    let server = echo_server();
    let addr = server.local_addr();
    let max = server.handle().config().limits.max_target_len;
    let mut bystander = RawClient::open(addr);

    let target = format!("/{}", "t".repeat(max));
    let r = refusal(
        addr,
        upgrade_request("").replacen("/chat", &target, 1).as_bytes(),
    );
    assert_refused(&r, 414, "request target too long", "complete line");

    // Just at the limit is fine.
    let target = format!("/{}", "t".repeat(max - 1));
    let mut c = RawClient::connect(addr);
    c.send_raw(upgrade_request("").replacen("/chat", &target, 1).as_bytes());
    assert_eq!(c.read_response().expect("101").status, 101);
    still_served(&mut c);

    let mut endless = b"GET /".to_vec();
    endless.resize(4 << 20, b'x');
    let mut c = RawClient::connect(addr);
    let written = write_in_pieces(&mut c.stream, &endless, 256, Duration::from_millis(1))
        .expect("an answer before 4 MiB");
    assert_refused(
        &c.read_response().expect("414"),
        414,
        "request target too long",
        "endless line",
    );
    assert!(written < max + 32 * 1024, "{written} bytes before the 414");
    still_served(&mut bystander);
    server.shutdown();
}

/// Unusual but legal requests are accepted and the connection works.
#[test]
fn odd_but_legal_requests_are_accepted() {
    let _g = shared();
    let server = echo_server();
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "lower-case names and values",
            "GET /chat HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
                .to_string(),
        ),
        (
            "upper-case names, mixed-case tokens",
            format!(
                "GET /chat HTTP/1.1\r\nHOST: localhost\r\nUPGRADE: WebSocket\r\nCONNECTION: UPGRADE\r\n\
                 {}SEC-WEBSOCKET-VERSION: 13\r\n\r\n",
                key.replace("Sec-WebSocket-Key", "SEC-WEBSOCKET-KEY")
            ),
        ),
        (
            "Connection: keep-alive, Upgrade",
            upgrade_request("").replace("Connection: Upgrade", "Connection: keep-alive, Upgrade"),
        ),
        (
            "two Connection headers",
            upgrade_request("").replace(
                "Connection: Upgrade",
                "Connection: keep-alive\r\nConnection: Upgrade",
            ),
        ),
        (
            "extra spaces and tabs around values",
            upgrade_request("")
                .replace("Upgrade: websocket", "Upgrade:   \twebsocket \t ")
                .replace("Connection: Upgrade", "Connection:\t  Upgrade  ")
                .replace("Version: 13", "Version:   13   "),
        ),
        (
            "no space after the colons",
            upgrade_request("")
                .replace("Upgrade: websocket", "Upgrade:websocket")
                .replace("Version: 13", "Version:13"),
        ),
        (
            "several Upgrade tokens",
            upgrade_request("").replace("Upgrade: websocket", "Upgrade: h2c, websocket"),
        ),
        (
            "headers in reverse order",
            format!(
                "GET /chat HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n{key}Connection: Upgrade\r\n\
                 Upgrade: websocket\r\nHost: localhost\r\n\r\n"
            ),
        ),
        (
            "query string, Origin, Content-Length: 0 and unknown headers",
            upgrade_request(
                "Origin: http://example.com\r\nContent-Length: 0\r\nX-Unknown: ;;;\r\n\
                 User-Agent: \"quoted\" (comment)\r\n",
            )
            .replacen("/chat", "/a/b?x=1&y=%20&z", 1),
        ),
        (
            "subprotocol and extension offers with odd spacing",
            upgrade_request(
                "Sec-WebSocket-Protocol:  chat ,superchat\t\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n",
            ),
        ),
    ];
    for (what, request) in cases {
        let mut c = RawClient::connect(addr);
        c.send_raw(request.as_bytes());
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, 101, "{what}: {r:?}");
        assert_eq!(
            r.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{what}"
        );
        // permessage-deflate is agreed (on by default) when offered; the echo below is too short to be
        // compressed (256 bytes at least), so it comes back as it was sent either way.
        let deflate = request.contains("permessage-deflate").then_some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        assert_eq!(r.header("sec-websocket-extensions"), deflate, "{what}");
        assert_eq!(r.header("sec-websocket-protocol"), None, "{what}");
        let rtt = echo(&mut c, what.as_bytes());
        assert!(rtt < Duration::from_secs(2), "{what}");
    }
    still_served(&mut bystander);
    server.shutdown();
}

/// Malformed requests each get their status and reason, and a clean close.
#[test]
fn malformed_requests_get_their_exact_refusal() {
    let _g = shared();
    let server = echo_server();
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let ok = upgrade_request("");
    let malformed = "malformed HTTP request";
    let repeated = "a header that must appear once was repeated";
    let bad_key = "Sec-WebSocket-Key must be base64 of 16 bytes";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "bare LF line endings",
            ok.replace("\r\n", "\n").into_bytes(),
            400,
            malformed,
        ),
        (
            "one bare LF among CRLFs",
            ok.replacen("Host: localhost\r\n", "Host: localhost\n", 1)
                .into_bytes(),
            400,
            malformed,
        ),
        (
            "NUL in a header value",
            upgrade_request("X-A: a\0b\r\n").into_bytes(),
            400,
            malformed,
        ),
        (
            "NUL in the request line",
            ok.replacen("/chat", "/ch\0at", 1).into_bytes(),
            400,
            malformed,
        ),
        (
            "obs-fold continuation line",
            upgrade_request("X-Folded: first\r\n second\r\n").into_bytes(),
            400,
            malformed,
        ),
        (
            "space before the colon",
            upgrade_request("X-A : b\r\n").into_bytes(),
            400,
            malformed,
        ),
        (
            "empty line before the request",
            format!("\r\n{ok}").into_bytes(),
            400,
            malformed,
        ),
        (
            "binary garbage",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            400,
            malformed,
        ),
        (
            "duplicate Sec-WebSocket-Key",
            upgrade_request("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n").into_bytes(),
            400,
            repeated,
        ),
        (
            "duplicate Sec-WebSocket-Version",
            upgrade_request("Sec-WebSocket-Version: 13\r\n").into_bytes(),
            400,
            repeated,
        ),
        (
            "duplicate Host",
            upgrade_request("Host: elsewhere\r\n").into_bytes(),
            400,
            repeated,
        ),
        (
            "HTTP/1.0",
            ok.replacen("HTTP/1.1", "HTTP/1.0", 1).into_bytes(),
            400,
            "HTTP/1.1 is required",
        ),
        (
            "POST",
            ok.replacen("GET", "POST", 1).into_bytes(),
            405,
            "only GET is allowed",
        ),
        (
            "key of 8 bytes",
            ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")
                .into_bytes(),
            400,
            bad_key,
        ),
        (
            "key of 24 characters that is not base64",
            ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!!!")
                .into_bytes(),
            400,
            bad_key,
        ),
        (
            "key of 32 bytes",
            ok.replace(
                "dGhlIHNhbXBsZSBub25jZQ==",
                "dGhlIHNhbXBsZSBub25jZXRoZSBzYW1wbGUgbm9uY2U=",
            )
            .into_bytes(),
            400,
            bad_key,
        ),
        (
            "empty key",
            ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "").into_bytes(),
            400,
            bad_key,
        ),
        (
            "version 8",
            ok.replace("Version: 13", "Version: 8").into_bytes(),
            426,
            "Sec-WebSocket-Version must be 13",
        ),
        (
            "version 13 twice in one value",
            ok.replace("Version: 13", "Version: 13, 13").into_bytes(),
            426,
            "Sec-WebSocket-Version must be 13",
        ),
        (
            "no Host",
            ok.replace("Host: localhost\r\n", "").into_bytes(),
            400,
            "Host header is required",
        ),
        (
            "Upgrade without websocket",
            ok.replace("Upgrade: websocket", "Upgrade: h2c")
                .into_bytes(),
            400,
            "Upgrade header must contain the websocket token",
        ),
        (
            "Connection without upgrade",
            ok.replace("Connection: Upgrade", "Connection: keep-alive")
                .into_bytes(),
            400,
            "Connection header must contain the upgrade token",
        ),
        (
            "a body announced",
            upgrade_request("Transfer-Encoding: chunked\r\n").into_bytes(),
            400,
            "an upgrade request must not have a body",
        ),
    ];
    for (what, request, status, reason) in cases {
        let r = refusal(addr, &request);
        assert_refused(&r, status, reason, what);
        if status == 405 {
            assert_eq!(r.header("allow"), Some("GET"), "{what}");
        }
        if status == 426 {
            assert_eq!(r.header("sec-websocket-version"), Some("13"), "{what}");
        }
    }
    still_served(&mut bystander);
    assert_eq!(server.handle().stats().upgrades, 1, "only the bystander");
    server.shutdown();
}

/// Thousands of entries, and empty entries, in `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions`:
/// at the default head limit they are 431; with the limit raised, more than 32 subprotocols are 400,
/// empty entries are skipped, and any number of extension offers is ignored (none is negotiated), all
/// in bounded time.
#[test]
fn pathological_token_lists() {
    let _g = shared();
    let mut cfg = config();
    cfg.limits.max_header_bytes = 256 * 1024;
    let big = server_with(cfg, Echo);
    let small = echo_server();
    let mut bystander = RawClient::open(big.local_addr());

    let thousands = |n: usize, f: &dyn Fn(usize) -> String| -> String {
        (0..n).map(f).collect::<Vec<_>>().join(",")
    };
    let protocols = thousands(5000, &|i| format!("p{i}"));
    let extensions = thousands(5000, &|i| format!("x-ext{i}; a={i}; b"));
    let empties = ",".repeat(20_000);

    // Default limits: thousands of entries do not fit in 8 KiB.
    let r = refusal(
        small.local_addr(),
        upgrade_request(&format!("Sec-WebSocket-Protocol: {protocols}\r\n")).as_bytes(),
    );
    assert_refused(&r, 431, "request header section too large", "default limit");

    let list_error = "Sec-WebSocket-Protocol must be a list of tokens";
    let started = Instant::now();
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "5000 subprotocols",
            format!("Sec-WebSocket-Protocol: {protocols}\r\n"),
            400,
        ),
        (
            "33 subprotocols",
            format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                thousands(33, &|i| format!("p{i}"))
            ),
            400,
        ),
        (
            "subprotocols over 2000 header lines",
            (0..2000)
                .map(|i| format!("Sec-WebSocket-Protocol: p{i}\r\n"))
                .collect(),
            431, // more header lines than --max-headers
        ),
        (
            "a subprotocol that is not a token",
            "Sec-WebSocket-Protocol: chat, a/b\r\n".into(),
            400,
        ),
        (
            "32 subprotocols",
            format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                thousands(32, &|i| format!("p{i}"))
            ),
            101,
        ),
        (
            "20000 empty subprotocol entries around one",
            format!("Sec-WebSocket-Protocol: {empties} chat {empties}\r\n"),
            101,
        ),
        (
            "only empty subprotocol entries",
            format!("Sec-WebSocket-Protocol: {empties}\r\n"),
            101,
        ),
        (
            "5000 extension offers",
            format!("Sec-WebSocket-Extensions: {extensions}\r\n"),
            101,
        ),
        (
            "20000 empty extension entries and stray separators",
            format!("Sec-WebSocket-Extensions: {empties};;;=;{empties}\r\n"),
            101,
        ),
    ];
    for (what, extra, status) in cases {
        let request = upgrade_request(&extra);
        if status == 101 {
            let mut c = RawClient::connect(big.local_addr());
            c.send_raw(request.as_bytes());
            let r = c.read_response().expect("101");
            assert_eq!(r.status, 101, "{what}: {r:?}");
            assert_eq!(r.header("sec-websocket-protocol"), None, "{what}");
            assert_eq!(r.header("sec-websocket-extensions"), None, "{what}");
            echo(&mut c, what.as_bytes());
        } else {
            let r = refusal(big.local_addr(), request.as_bytes());
            let reason = match status {
                400 => list_error,
                _ => "too many request headers",
            };
            assert_refused(&r, status, reason, what);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "token lists took {:?}",
        started.elapsed()
    );
    still_served(&mut bystander);
    big.shutdown();
    small.shutdown();
}
