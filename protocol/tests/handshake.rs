//! The upgrade handshake: parsing, validation, every refusal, and the 101 response.

use hydrogen_ws_protocol::{
    accept_key, parse_request, HandshakeError, HandshakeLimits, Parsed, Request, RequestParser,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid upgrade request head with `extra` header lines inserted before the end.
fn upgrade_with(extra: &str) -> Vec<u8> {
    format!(
        "GET /chat?key=abc HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A request built from raw header lines (no defaults).
fn raw(first_line: &str, lines: &[&str]) -> Vec<u8> {
    let mut s = format!("{first_line}\r\n");
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Parse whole, byte by byte, and via parse_request; all must agree. Then validate.
fn outcome(bytes: &[u8]) -> Result<hydrogen_ws_protocol::Upgrade, HandshakeError> {
    let limits = HandshakeLimits::default();
    let whole = RequestParser::new(limits).push(bytes);
    let mut p = RequestParser::new(limits);
    let mut bytewise = Ok(None);
    for b in bytes {
        bytewise = p.push(std::slice::from_ref(b));
        if !matches!(bytewise, Ok(None)) {
            break;
        }
    }
    assert_eq!(whole, bytewise, "whole vs byte-by-byte");
    let stateless = match parse_request(bytes, &limits) {
        Ok(Parsed::Complete { request, .. }) => Ok(Some(request)),
        Ok(Parsed::Partial) => Ok(None),
        Err(e) => Err(e),
    };
    assert_eq!(whole, stateless, "parser vs parse_request");
    match whole? {
        Some(req) => req.websocket(),
        None => panic!("head incomplete"),
    }
}

#[test]
fn valid_request_whole_bytewise_and_stateless() {
    let up = outcome(&upgrade_with("Origin: http://example.com\r\n")).unwrap();
    assert_eq!(up.key, KEY);
    assert_eq!(up.host, "server.example.com");
    assert_eq!(up.origin.as_deref(), Some("http://example.com"));
    assert!(up.protocols.is_empty());
    assert_eq!(up.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn accept_key_rfc_example() {
    assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn response_101_exact() {
    let up = outcome(&upgrade_with("Sec-WebSocket-Protocol: chat, superchat\r\n")).unwrap();
    assert_eq!(up.protocols, ["chat", "superchat"]);
    assert_eq!(
        up.response(Some("chat")),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    );
    assert_eq!(
        up.response(None),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    // A non-token protocol is never written (no header injection).
    assert!(!String::from_utf8(up.response(Some("x\r\nEvil: 1")))
        .unwrap()
        .contains("Evil"));
}

#[test]
fn token_lists_span_lines_and_ignore_case() {
    let req = raw(
        "GET / HTTP/1.1",
        &[
            "host: a",
            "upgrade: foo/1",
            "UPGRADE: WebSocket",
            "connection: keep-alive",
            "Connection: , UpGrade ,",
            &format!("sec-websocket-key:   {KEY}  "),
            "sec-websocket-version: 13",
            "Sec-WebSocket-Protocol: b",
            "Sec-WebSocket-Protocol: a,  c",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo",
            "Content-Length: 0",
        ],
    );
    let up = outcome(&req).unwrap();
    assert_eq!(up.key, KEY);
    assert_eq!(up.protocols, ["b", "a", "c"]);
    assert_eq!(
        up.extensions,
        ["permessage-deflate; client_max_window_bits", "x-foo"]
    );
    assert_eq!(up.origin, None);
}

#[test]
fn request_accessors() {
    let Ok(Parsed::Complete { request, consumed }) =
        parse_request(&upgrade_with(""), &HandshakeLimits::default())
    else {
        panic!()
    };
    assert_eq!(consumed, upgrade_with("").len());
    assert_eq!(request.method, "GET");
    assert_eq!(request.version, 1);
    assert_eq!(request.path(), "/chat");
    assert_eq!(request.query(), Some("key=abc"));
    assert_eq!(request.header("HOST"), Some(&b"server.example.com"[..]));
    assert_eq!(request.headers_named("upgrade").count(), 1);
    assert!(request.wants_upgrade());
}

#[test]
fn an_upgrade_to_another_protocol_is_plain_http() {
    for value in ["h2c", "h2c, foo/2", "websocketx"] {
        let req = raw(
            "GET /health HTTP/1.1",
            &[
                "Host: a",
                "Connection: Upgrade, HTTP2-Settings",
                &format!("Upgrade: {value}"),
            ],
        );
        let Ok(Parsed::Complete { request, .. }) = parse_request(&req, &HandshakeLimits::default())
        else {
            panic!()
        };
        assert!(!request.wants_upgrade(), "{value}");
        assert_eq!(request.websocket().err(), Some(HandshakeError::BadUpgrade));
    }
    let req = raw("GET / HTTP/1.1", &["Host: a", "Upgrade: h2c, WebSocket"]);
    let Ok(Parsed::Complete { request, .. }) = parse_request(&req, &HandshakeLimits::default())
    else {
        panic!()
    };
    assert!(request.wants_upgrade());
}

#[test]
fn absolute_form_targets_give_their_path_and_query() {
    let cases = [
        ("/chat?key=abc", "/chat", Some("key=abc")),
        (
            "http://example.com/status?key=a%20b",
            "/status",
            Some("key=a%20b"),
        ),
        ("HTTPS://example.com:8443/x/y", "/x/y", None),
        ("ws://example.com", "/", None),
        ("wss://example.com?key=k", "/", Some("key=k")),
        ("*", "*", None),
    ];
    for (target, path, query) in cases {
        let req = raw(&format!("GET {target} HTTP/1.1"), &["Host: a"]);
        let Ok(Parsed::Complete { request, .. }) = parse_request(&req, &HandshakeLimits::default())
        else {
            panic!("{target}")
        };
        assert_eq!(request.path(), path, "{target}");
        assert_eq!(request.query(), query, "{target}");
    }
}

#[test]
fn plain_http_request_is_not_an_upgrade() {
    let req = raw("GET /status HTTP/1.1", &["Host: a"]);
    let Ok(Parsed::Complete { request, .. }) = parse_request(&req, &HandshakeLimits::default())
    else {
        panic!()
    };
    assert!(!request.wants_upgrade());
    assert_eq!(request.websocket(), Err(HandshakeError::MissingUpgrade));
}

#[test]
fn trailing_bytes_are_kept() {
    let mut input = upgrade_with("");
    let head_len = input.len();
    input.extend_from_slice(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    // In one push.
    let mut p = RequestParser::new(HandshakeLimits::default());
    assert!(p.push(&input).unwrap().is_some());
    assert_eq!(p.trailing(), &input[head_len..]);
    assert_eq!(p.buffered(), input.len());
    // Byte by byte: the request comes exactly once, then later bytes are appended.
    let mut p = RequestParser::new(HandshakeLimits::default());
    let mut got = 0;
    for (i, b) in input.iter().enumerate() {
        if p.push(std::slice::from_ref(b)).unwrap().is_some() {
            got += 1;
            assert_eq!(i + 1, head_len);
            assert!(p.trailing().is_empty());
        }
    }
    assert_eq!(got, 1);
    assert_eq!(p.trailing(), &input[head_len..]);
    // Stateless: consumed marks where frames begin.
    match parse_request(&input, &HandshakeLimits::default()) {
        Ok(Parsed::Complete { consumed, .. }) => assert_eq!(consumed, head_len),
        other => panic!("{other:?}"),
    }
}

#[test]
fn partial_until_complete() {
    let req = upgrade_with("");
    for cut in 0..req.len() {
        assert_eq!(
            parse_request(&req[..cut], &HandshakeLimits::default()),
            Ok(Parsed::Partial),
            "cut {cut}"
        );
    }
}

fn status_of(bytes: &[u8]) -> (HandshakeError, u16) {
    let e = outcome(bytes).unwrap_err();
    (e, e.status())
}

#[test]
fn every_handshake_error() {
    use HandshakeError::*;
    let key_line = format!("Sec-WebSocket-Key: {KEY}");
    let ok_lines = [
        "Host: a",
        "Upgrade: websocket",
        "Connection: Upgrade",
        key_line.as_str(),
        "Sec-WebSocket-Version: 13",
    ];
    let without = |skip: &str, add: &[&str]| {
        let mut lines: Vec<&str> = ok_lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with(skip))
            .collect();
        lines.extend_from_slice(add);
        raw("GET / HTTP/1.1", &lines)
    };
    let many_headers: Vec<String> = (0..65).map(|i| format!("X-H{i}: v")).collect();
    let many_refs: Vec<&str> = many_headers.iter().map(String::as_str).collect();
    let long_value = format!("X-Long: {}", "a".repeat(9000));
    let long_target = format!("GET /{} HTTP/1.1", "a".repeat(3000));
    let protocols33 = format!(
        "Sec-WebSocket-Protocol: {}",
        (0..33)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cases: Vec<(Vec<u8>, HandshakeError, u16)> = vec![
        (b"GET / HTTP/1.1\nHost: a\n\n".to_vec(), Malformed, 400),
        (
            b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n".to_vec(),
            Malformed,
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n".to_vec(),
            Malformed,
            400,
        ),
        (
            raw("GET / HTTP/1.1", &["Host: a", " folded"]),
            Malformed,
            400,
        ),
        (raw("GET / HTTP/1.1", &["Bad Name: a"]), Malformed, 400),
        (raw("G(T / HTTP/1.1", &["Host: a"]), Malformed, 400),
        (raw("GET  / HTTP/1.1", &["Host: a"]), Malformed, 400),
        (
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            Malformed,
            400,
        ),
        (raw("GET / HTTP/1.1", &[&long_value]), HeadersTooLarge, 431),
        (raw("GET / HTTP/1.1", &many_refs), TooManyHeaders, 431),
        (raw(&long_target, &["Host: a"]), UriTooLong, 414),
        (raw("POST / HTTP/1.1", &ok_lines), MethodNotAllowed, 405),
        (raw("GET * HTTP/1.1", &ok_lines), BadTarget, 400),
        (
            raw("GET example.com:80 HTTP/1.1", &ok_lines),
            BadTarget,
            400,
        ),
        (raw("GET / HTTP/1.0", &ok_lines), HttpVersion, 400),
        (
            raw("GET / HTTP/2.0", &ok_lines),
            HttpVersionNotSupported,
            505,
        ),
        (raw("GET / HTTP/3", &ok_lines), HttpVersionNotSupported, 505),
        (raw("GET / HTTP/1.2", &ok_lines), HttpVersion, 400),
        (raw("GET / HTTX/2.0", &ok_lines), HttpVersion, 400),
        (without("Host", &[]), MissingHost, 400),
        (without("Host", &["Host: "]), MissingHost, 400),
        (without("Upgrade", &[]), MissingUpgrade, 426),
        (without("Upgrade", &["Upgrade: h2c"]), BadUpgrade, 400),
        (
            without("Connection", &["Connection: keep-alive"]),
            BadConnection,
            400,
        ),
        (without("Connection", &[]), BadConnection, 400),
        (without("Sec-WebSocket-Key", &[]), BadKey, 400),
        (
            without("Sec-WebSocket-Key", &["Sec-WebSocket-Key: abc"]),
            BadKey,
            400,
        ),
        (
            // base64 of 15 bytes
            without(
                "Sec-WebSocket-Key",
                &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"],
            ),
            BadKey,
            400,
        ),
        (
            without(
                "Sec-WebSocket-Key",
                &["Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="],
            ),
            BadKey,
            400,
        ),
        (
            without("-", &[&key_line]),
            DuplicateHeader("Sec-WebSocket-Key"),
            400,
        ),
        (
            without("-", &["Sec-WebSocket-Version: 13"]),
            DuplicateHeader("Sec-WebSocket-Version"),
            400,
        ),
        (without("-", &["host: b"]), DuplicateHeader("Host"), 400),
        (
            without("Sec-WebSocket-Version", &[]),
            UnsupportedVersion,
            426,
        ),
        (
            without("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]),
            UnsupportedVersion,
            426,
        ),
        (
            without("-", &["Sec-WebSocket-Protocol: chat, a b"]),
            BadProtocolList,
            400,
        ),
        (
            without("-", &["Sec-WebSocket-Protocol: chat, a/b"]),
            BadProtocolList,
            400,
        ),
        (without("-", &[&protocols33]), BadProtocolList, 400),
        (without("-", &["Content-Length: 5"]), UnexpectedBody, 400),
        (
            without("-", &["Transfer-Encoding: chunked"]),
            UnexpectedBody,
            400,
        ),
    ];
    for (bytes, want, status) in cases {
        assert_eq!(
            status_of(&bytes),
            (want, status),
            "{}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        );
        let response = want.response();
        let head = format!("HTTP/1.1 {status} ");
        assert!(response.starts_with(head.as_bytes()));
    }
}

#[test]
fn limits_apply_while_partial() {
    let limits = HandshakeLimits::default();
    // A first line that never ends: 414 as soon as it is longer than max_target_len + 16.
    let mut p = RequestParser::new(limits);
    let chunk = [b'a'; 100];
    p.push(b"GET /").unwrap();
    let mut pushed = 5;
    let err = loop {
        match p.push(&chunk) {
            Ok(None) => pushed += chunk.len(),
            Ok(Some(_)) => panic!("no head"),
            Err(e) => break e,
        }
    };
    assert_eq!(err, HandshakeError::UriTooLong);
    assert!(pushed <= limits.max_target_len + 16);
    // The error sticks.
    assert_eq!(p.push(b"\r\n\r\n"), Err(HandshakeError::UriTooLong));

    // Headers that never end: 431 once past max_head_bytes.
    let mut p = RequestParser::new(limits);
    p.push(b"GET / HTTP/1.1\r\n").unwrap();
    let mut total = 16;
    let err = loop {
        match p.push(b"X-A: 0123456789\r\n") {
            Ok(None) => total += 17,
            Ok(Some(_)) => panic!("no head"),
            Err(e) => break e,
        }
    };
    assert_eq!(err, HandshakeError::HeadersTooLarge);
    assert!(total <= limits.max_head_bytes);

    // Custom limits.
    let small = HandshakeLimits {
        max_head_bytes: 64,
        max_headers: 1,
        max_target_len: 4,
    };
    assert_eq!(
        parse_request(b"GET /abcde HTTP/1.1\r\n\r\n", &small),
        Err(HandshakeError::UriTooLong)
    );
    assert_eq!(
        parse_request(b"GET /a HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &small),
        Err(HandshakeError::TooManyHeaders)
    );
    assert!(matches!(
        parse_request(b"GET /a HTTP/1.1\r\nA: 1\r\n\r\n", &small),
        Ok(Parsed::Complete { .. })
    ));
}

#[test]
fn byte_by_byte_is_linear() {
    // 8 KiB fed one byte at a time must not rescan: this would take seconds if quadratic
    // in debug builds with many repetitions; here it is just a smoke check of the API.
    let limits = HandshakeLimits {
        max_head_bytes: 1 << 20,
        max_headers: 10_000,
        max_target_len: 2048,
    };
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..5000 {
        req.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(150)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let mut p = RequestParser::new(limits);
    let start = std::time::Instant::now();
    let mut done = None;
    for b in &req {
        if let Some(r) = p.push(std::slice::from_ref(b)).unwrap() {
            done = Some(r);
        }
    }
    let r: Request = done.unwrap();
    assert_eq!(r.headers.len(), 5000);
    // ~800 KB: a quadratic rescan would be ~3e11 byte visits.
    assert!(start.elapsed().as_secs() < 20);
}
