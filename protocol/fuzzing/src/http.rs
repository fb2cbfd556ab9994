//! The `handshake` target.

use std::str;

use super::{is_token, pieces};
use hydrogen_ws_protocol::HandshakeError;
use hydrogen_ws_protocol::{
    accept_key, parse_request, reason_phrase, HandshakeLimits, Parsed, Request, RequestParser,
    Upgrade,
};

/// The handshake: the stateless parser, and the incremental one fed in pieces (lengths taken
/// from the input's own bytes) and byte by byte, must agree on the outcome and the trailing
/// bytes; an accepted upgrade must yield a well-formed 101, a refused one a well-formed response
/// with the status its error maps to. Runs with the default limits and with small ones, so the
/// 414 / 431 paths are reached by short inputs too.
pub fn handshake(data: &[u8]) {
    let small = HandshakeLimits {
        max_head_bytes: 256,
        max_headers: 6,
        max_target_len: 32,
    };
    for limits in [HandshakeLimits::default(), small] {
        handshake_with(data, &limits);
    }
}

type HeadOutcome = Result<Option<(Request, usize)>, HandshakeError>;

fn handshake_with(data: &[u8], limits: &HandshakeLimits) {
    let stateless: HeadOutcome = match parse_request(data, limits) {
        Ok(Parsed::Complete { request, consumed }) => Ok(Some((request, consumed))),
        Ok(Parsed::Partial) => Ok(None),
        Err(e) => Err(e),
    };
    let own: Vec<usize> = data
        .iter()
        .take(64)
        .map(|&b| usize::from(b % 32) + 1)
        .collect();
    for lens in [&own[..], &[1][..]] {
        assert_eq!(
            stateless,
            push_in_pieces(data, limits, lens),
            "pieces {lens:?}"
        );
    }
    match stateless {
        Err(e) => check_refusal(e),
        Ok(None) => {
            // Partial: no end of head yet, and within the size limit.
            assert!(!data.windows(4).any(|w| w == b"\r\n\r\n"));
            assert!(data.len() <= limits.max_head_bytes);
        }
        Ok(Some((request, consumed))) => {
            let head = data.get(..consumed).unwrap_or_default();
            assert!(head.ends_with(b"\r\n\r\n"));
            assert!(!head[..consumed - 1].windows(4).any(|w| w == b"\r\n\r\n"));
            assert!(consumed <= limits.max_head_bytes);
            // The target's parts are pieces of it (an absolute-form one loses only its scheme and
            // authority), and the path is never empty.
            let path = request.path();
            assert!(!path.is_empty());
            assert!(path == "/" || request.target.contains(path));
            if let Some(query) = request.query() {
                assert!(request.target.ends_with(query));
            }
            match request.websocket() {
                Ok(upgrade) => {
                    assert!(request.wants_upgrade());
                    assert!(path.starts_with('/'));
                    check_accept(&request, &upgrade)
                }
                Err(e) => check_refusal(e),
            }
        }
    }
}

/// Feed `data` to a [`RequestParser`] in pieces; checks the trailing bytes after completion.
fn push_in_pieces(data: &[u8], limits: &HandshakeLimits, lens: &[usize]) -> HeadOutcome {
    let mut parser = RequestParser::new(*limits);
    let mut outcome = Ok(None);
    for piece in pieces(data, lens) {
        match parser.push(piece) {
            Ok(Some(request)) => {
                assert!(
                    matches!(outcome, Ok(None)),
                    "a second request from one head"
                );
                outcome = Ok(Some((request, parser.buffered() - parser.trailing().len())));
            }
            Ok(None) => {}
            Err(e) => {
                assert_eq!(parser.push(b"x"), Err(e), "errors are sticky");
                return Err(e);
            }
        }
    }
    if let Ok(Some((_, consumed))) = &outcome {
        assert_eq!(parser.trailing(), data.get(*consumed..).unwrap_or_default());
    }
    outcome
}

/// A response split into its parts, after checking its syntax.
struct Response<'r> {
    status: u16,
    headers: Vec<(&'r str, &'r str)>,
    body: &'r [u8],
}

impl<'r> Response<'r> {
    /// Parse and check a response we produced: status line with the standard phrase, header
    /// lines `Name: value` with token names, no control characters and no repeated names, CRLF
    /// line ends, and a body of exactly `Content-Length` bytes (none without it).
    fn parse(bytes: &'r [u8]) -> Response<'r> {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head ends with CRLF CRLF");
        let (head, body) = bytes.split_at(end + 4);
        let head = str::from_utf8(&head[..end]).expect("response head is UTF-8");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let rest = status_line
            .strip_prefix("HTTP/1.1 ")
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let (code, phrase) = rest.split_at(3.min(rest.len()));
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{status_line:?}");
        let status: u16 = code.parse().expect("three digits");
        assert_eq!(phrase, format!(" {}", reason_phrase(status)));
        assert_ne!(reason_phrase(status), "Unknown");
        let mut headers: Vec<(&str, &str)> = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            assert!(is_token(name), "header name {name:?}");
            assert!(
                value
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..0x7F).contains(&b)),
                "header value {value:?}"
            );
            assert_eq!(value.trim(), value, "header value {value:?}");
            assert!(
                !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)),
                "repeated header {name}"
            );
            headers.push((name, value));
        }
        let response = Response {
            status,
            headers,
            body,
        };
        match response.header("Content-Length") {
            Some(len) => assert_eq!(len.parse::<usize>().ok(), Some(body.len())),
            None => assert!(body.is_empty()),
        }
        response
    }

    fn header(&self, name: &str) -> Option<&'r str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// An accepted upgrade: the request really is one, and the 101 is well-formed, for every way
/// the server may pick a subprotocol (including a bad one, which must be left out).
fn check_accept(request: &Request, upgrade: &Upgrade) {
    use base64::Engine as _;
    assert_eq!(request.method, "GET");
    assert_eq!(request.version, 1);
    assert!(!upgrade.host.is_empty());
    let key = base64::engine::general_purpose::STANDARD.decode(&upgrade.key);
    assert_eq!(key.map(|k| k.len()).ok(), Some(16), "key {:?}", upgrade.key);
    assert_eq!(request.headers_named("sec-websocket-key").count(), 1);
    assert!(upgrade.protocols.len() <= 32);
    assert!(upgrade.protocols.iter().all(|p| is_token(p)));
    let first = upgrade.protocols.first().map(String::as_str);
    for choice in [None, first, Some("not a token\r\nX-Injected: 1")] {
        let bytes = upgrade.response(choice);
        let r = Response::parse(&bytes);
        assert_eq!(r.status, 101);
        assert!(r.body.is_empty());
        assert_eq!(r.header("Upgrade"), Some("websocket"));
        assert_eq!(r.header("Connection"), Some("Upgrade"));
        let accept = r.header("Sec-WebSocket-Accept").unwrap_or_default();
        assert_eq!(accept, accept_key(upgrade.key.as_bytes()));
        assert_eq!(accept.len(), 28);
        let offered = choice.filter(|p| is_token(p));
        assert_eq!(r.header("Sec-WebSocket-Protocol"), offered);
        assert_eq!(r.headers.len(), 3 + usize::from(offered.is_some()));
    }
}

/// A refusal: well-formed, with the status the error maps to and the headers that status needs.
fn check_refusal(e: HandshakeError) {
    let bytes = e.response();
    let r = Response::parse(&bytes);
    assert_eq!(r.status, e.status());
    assert!(
        matches!(r.status, 400 | 405 | 414 | 426 | 431 | 505),
        "{e:?}"
    );
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.body, format!("{}\n", e.reason()).as_bytes());
    match r.status {
        405 => assert_eq!(r.header("Allow"), Some("GET")),
        426 => assert!(
            r.header("Upgrade") == Some("websocket")
                || r.header("Sec-WebSocket-Version") == Some("13")
        ),
        _ => {}
    }
}
