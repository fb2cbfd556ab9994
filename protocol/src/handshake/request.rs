//! Parsing the request head ([`parse_request`], [`RequestParser`]) and validating it as a
//! WebSocket opening handshake ([`Request::websocket`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::accept_key::accept_key;
use super::list::split_elements;
use crate::error::HandshakeError;

/// Most `Sec-WebSocket-Protocol` entries we accept in one request.
const MAX_PROTOCOLS: usize = 32;

/// How much of a first line (with no LF yet) beyond `max_target_len` we allow for the method and
/// version before answering 414: "GET " + " HTTP/1.1\r" is 14 bytes.
const FIRST_LINE_SLACK: usize = 16;

/// Size limits applied while the request head is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Most bytes in the head, request line and final empty line included (431 beyond).
    pub max_head_bytes: usize,
    /// Most header lines (431 beyond).
    pub max_headers: usize,
    /// Longest request target (414 beyond).
    pub max_target_len: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_head_bytes: 8192,
            max_headers: 64,
            max_target_len: 2048,
        }
    }
}

/// The outcome of [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete.
    Complete {
        /// The parsed request.
        request: Request,
        /// Bytes of the head, final empty line included; whatever follows belongs to the
        /// upgraded connection.
        consumed: usize,
    },
    /// The head is not complete yet; call again with more bytes.
    Partial,
}

/// A parsed HTTP/1.x request head. Only syntax and size limits have been checked; see
/// [`Request::websocket`] for the WebSocket rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/chat?key=abc`.
    pub target: String,
    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The header fields in order; names as sent, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A validated WebSocket upgrade request: what the server needs to accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key`, trimmed, as sent.
    pub key: String,
    /// The `Host` header.
    pub host: String,
    /// `Sec-WebSocket-Protocol` entries in the client's order of preference.
    pub protocols: Vec<String>,
    /// `Sec-WebSocket-Extensions` entries (with their parameters), in order.
    pub extensions: Vec<String>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
}

/// Finds the end of a request head, one byte at a time, remembering where it stopped so that
/// feeding a head in many small pieces costs time linear in its length.
#[derive(Debug, Clone, Copy, Default)]
struct HeadScanner {
    /// Bytes already scanned.
    pos: usize,
    /// The last four bytes seen, most recent in the low byte.
    tail: u32,
    /// Whether the first line's LF has been seen.
    first_line_done: bool,
}

impl HeadScanner {
    /// Scan `buf` (which extends what was scanned before) and return the head's length once its
    /// final CRLF CRLF is seen. Each check depends only on the bytes up to the one being looked
    /// at, so the outcome does not depend on how the input was split.
    fn scan(
        &mut self,
        buf: &[u8],
        limits: &HandshakeLimits,
    ) -> Result<Option<usize>, HandshakeError> {
        let start = self.pos;
        let new = buf.get(start..).unwrap_or_default();
        for (i, &b) in new.iter().enumerate() {
            let at = start + i;
            match b {
                0 => return Err(HandshakeError::Malformed),
                // A bare LF line ending: httparse tolerates it, RFC 9112 lets us refuse it and
                // tolerating it invites request smuggling between differing parsers.
                b'\n' if self.tail & 0xFF != u32::from(b'\r') => {
                    return Err(HandshakeError::Malformed)
                }
                b'\n' => self.first_line_done = true,
                // Leading empty lines are not accepted.
                b'\r' if at == 0 => return Err(HandshakeError::Malformed),
                _ => {}
            }
            if !self.first_line_done && at >= limits.max_target_len.saturating_add(FIRST_LINE_SLACK)
            {
                return Err(HandshakeError::UriTooLong);
            }
            if at >= limits.max_head_bytes {
                return Err(HandshakeError::HeadersTooLarge);
            }
            self.tail = (self.tail << 8) | u32::from(b);
            if self.tail == 0x0D0A_0D0A {
                self.pos = at + 1;
                return Ok(Some(at + 1));
            }
        }
        self.pos = buf.len();
        Ok(None)
    }
}

/// Parse an HTTP/1.1 request head from the start of `buf`.
///
/// Stateless: returns [`Parsed::Partial`] until the final `\r\n\r\n` is in `buf`. Size limits are
/// enforced while partial too, so a caller that keeps a growing buffer can stop reading early.
/// For input that arrives in pieces, [`RequestParser`] avoids rescanning the buffer.
pub fn parse_request(buf: &[u8], limits: &HandshakeLimits) -> Result<Parsed, HandshakeError> {
    let mut scanner = HeadScanner::default();
    match scanner.scan(buf, limits)? {
        None => Ok(Parsed::Partial),
        Some(end) => {
            let head = buf.get(..end).ok_or(HandshakeError::Malformed)?;
            let request = parse_head(head, limits)?;
            Ok(Parsed::Complete {
                request,
                consumed: end,
            })
        }
    }
}

/// Parse a complete head (ending in CRLF CRLF, already scanned for bare LF and NUL).
fn parse_head(head: &[u8], limits: &HandshakeLimits) -> Result<Request, HandshakeError> {
    // The target is checked before httparse runs so that the answer is 414, not a syntax error.
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = first_line.split(|&b| b == b' ');
    let _method = parts.next();
    if parts.next().map_or(0, <[u8]>::len) > limits.max_target_len {
        return Err(HandshakeError::UriTooLong);
    }
    // Lines other than the request line and the final empty line are header lines.
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    let header_lines = lines.saturating_sub(2);
    if header_lines > limits.max_headers {
        return Err(HandshakeError::TooManyHeaders);
    }
    let mut storage = vec![httparse::EMPTY_HEADER; header_lines];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HandshakeError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_error(first_line)),
        Err(_) => return Err(HandshakeError::Malformed),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed);
    };
    let headers = req
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers,
    })
}

/// The error for a request line whose version httparse refused: 505 for another major version
/// (`HTTP/2.0`, `HTTP/3`), 400 for anything else (`HTTP/1.2`, a malformed token).
fn version_error(request_line: &[u8]) -> HandshakeError {
    let line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version.strip_prefix(b"HTTP/") {
        Some([major, ..]) if major.is_ascii_digit() && *major != b'1' => {
            HandshakeError::HttpVersionNotSupported
        }
        _ => HandshakeError::HttpVersion,
    }
}

/// Incremental request-head reader: push bytes as they arrive until it yields the [`Request`].
///
/// It scans only the new bytes on each push (linear time even when fed one byte at a time),
/// enforces the size limits while the head is still partial, and keeps every byte received after
/// the head in [`RequestParser::trailing`] (frames a client pipelines behind its request are
/// never lost). After an error it keeps returning that error.
#[derive(Debug, Clone)]
pub struct RequestParser {
    limits: HandshakeLimits,
    buf: Vec<u8>,
    scanner: HeadScanner,
    head_len: Option<usize>,
    error: Option<HandshakeError>,
}

impl RequestParser {
    /// A parser with the given limits.
    pub fn new(limits: HandshakeLimits) -> Self {
        RequestParser {
            limits,
            buf: Vec::new(),
            scanner: HeadScanner::default(),
            head_len: None,
            error: None,
        }
    }

    /// Add received bytes. Returns `Ok(Some(request))` exactly once, when the head completes;
    /// `Ok(None)` while more bytes are needed. Bytes pushed after completion are appended to
    /// [`RequestParser::trailing`].
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.buf.extend_from_slice(data);
        if self.head_len.is_some() {
            return Ok(None);
        }
        let result = match self.scanner.scan(&self.buf, &self.limits) {
            Ok(None) => return Ok(None),
            Ok(Some(end)) => {
                self.head_len = Some(end);
                match self.buf.get(..end) {
                    Some(head) => parse_head(head, &self.limits),
                    None => Err(HandshakeError::Malformed),
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(request) => Ok(Some(request)),
            Err(e) => {
                self.error = Some(e);
                Err(e)
            }
        }
    }

    /// Bytes received after the end of the head (empty until the head is complete).
    pub fn trailing(&self) -> &[u8] {
        match self.head_len {
            Some(end) => self.buf.get(end..).unwrap_or_default(),
            None => &[],
        }
    }

    /// Total bytes held: the head so far, plus any trailing bytes.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Optional whitespace (RFC 9110 section 5.6.3).
fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// A `token` (RFC 9110 section 5.6.2).
fn is_token(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl Request {
    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every header with this name (ASCII case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The elements of a comma-separated list header, over all its lines, trimmed, empty
    /// elements skipped.
    fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers_named(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|v| !v.is_empty())
    }

    /// The value of a header that may appear at most once.
    fn single(&self, name: &'static str) -> Result<Option<&[u8]>, HandshakeError> {
        let mut values = self.headers_named(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(HandshakeError::DuplicateHeader(name));
        }
        Ok(first.map(trim_ows))
    }

    /// The `Host` header, which an HTTP/1.1 request must carry exactly once (RFC 9112 section 3.2):
    /// `DuplicateHeader("Host")` for two, `MissingHost` for none or an empty one.
    pub fn host(&self) -> Result<&[u8], HandshakeError> {
        match self.single("Host")? {
            Some(h) if !h.is_empty() => Ok(h),
            _ => Err(HandshakeError::MissingHost),
        }
    }

    /// The target's path: everything before the first `?`. An absolute-form target
    /// (`http://host/path?query`, which RFC 9112 section 3.2.2 says a server must accept) gives the
    /// path after its authority, `/` if it has none.
    pub fn path(&self) -> &str {
        let target = self.origin_form();
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        if path.is_empty() {
            "/"
        } else {
            path
        }
    }

    /// The target's query: everything after the first `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.origin_form().split_once('?').map(|(_, q)| q)
    }

    /// The target without the scheme and authority of an absolute-form target.
    fn origin_form(&self) -> &str {
        let target = self.target.as_str();
        for scheme in ["http://", "https://", "ws://", "wss://"] {
            let named = target
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme));
            if let (true, Some(rest)) = (named, target.get(scheme.len()..)) {
                return rest
                    .find(['/', '?'])
                    .map_or("", |at| rest.get(at..).unwrap_or(""));
            }
        }
        target
    }

    /// Whether the request asks for a WebSocket: an `Upgrade` header that names `websocket`, or a
    /// `Sec-WebSocket-Key` (a WebSocket client with a wrong `Upgrade` is told what is wrong by
    /// [`Request::websocket`]). Any other request is plain HTTP, one that asks to upgrade to another
    /// protocol (`Upgrade: h2c` from an HTTP/2 client) included: RFC 9110 section 7.8 lets a server
    /// ignore an upgrade it does not offer and answer the request as it is.
    pub fn wants_upgrade(&self) -> bool {
        self.upgrade_names_websocket() || self.header("sec-websocket-key").is_some()
    }

    /// Whether the `Upgrade` header's list has the `websocket` token.
    fn upgrade_names_websocket(&self) -> bool {
        self.list("upgrade")
            .any(|t| t.eq_ignore_ascii_case(b"websocket"))
    }

    /// Validate the request as a WebSocket opening handshake (RFC 6455 section 4.2.1).
    ///
    /// Checks, in order: method, HTTP version, `Host`, `Upgrade`, the target (a path), `Connection`,
    /// `Sec-WebSocket-Version`, `Sec-WebSocket-Key`, `Sec-WebSocket-Protocol`, and finally that
    /// no body is announced. The first failure is returned.
    pub fn websocket(&self) -> Result<Upgrade, HandshakeError> {
        if self.method != "GET" {
            return Err(HandshakeError::MethodNotAllowed);
        }
        if self.version != 1 {
            return Err(HandshakeError::HttpVersion);
        }
        let host = lossy(self.host()?);
        if self.header("upgrade").is_none() {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !self.path().starts_with('/') {
            return Err(HandshakeError::BadTarget);
        }
        if !self.upgrade_names_websocket() {
            return Err(HandshakeError::BadUpgrade);
        }
        if !self
            .list("connection")
            .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        {
            return Err(HandshakeError::BadConnection);
        }
        if self.single("Sec-WebSocket-Version")? != Some(b"13".as_slice()) {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = self
            .single("Sec-WebSocket-Key")?
            .ok_or(HandshakeError::BadKey)?;
        if key.len() != 24 || STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
            return Err(HandshakeError::BadKey);
        }
        let mut protocols = Vec::new();
        for p in self.list("sec-websocket-protocol") {
            if !is_token(p) || protocols.len() == MAX_PROTOCOLS {
                return Err(HandshakeError::BadProtocolList);
            }
            protocols.push(lossy(p));
        }
        // Split with quotes in mind: a quoted parameter value may hold a comma.
        let extensions = self
            .headers_named("sec-websocket-extensions")
            .flat_map(|v| {
                split_elements(&lossy(v))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        if self
            .headers_named("content-length")
            .any(|v| trim_ows(v) != b"0")
            || self.header("transfer-encoding").is_some()
        {
            return Err(HandshakeError::UnexpectedBody);
        }
        Ok(Upgrade {
            key: lossy(key),
            host,
            protocols,
            extensions,
            origin: self.header("origin").map(|o| lossy(trim_ows(o))),
        })
    }
}

impl Upgrade {
    /// The `Sec-WebSocket-Accept` value for this request's key.
    pub fn accept_key(&self) -> String {
        accept_key(self.key.as_bytes())
    }

    /// Whether the client offered this subprotocol.
    pub fn offers_protocol(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p == protocol)
    }

    /// The `101 Switching Protocols` response, with `Sec-WebSocket-Protocol` when `protocol` is
    /// given. `protocol` should be one of [`Upgrade::protocols`]; a value that is not a token is
    /// left out rather than written (no header injection).
    pub fn response(&self, protocol: Option<&str>) -> Vec<u8> {
        self.response_with(protocol, None)
    }

    /// [`Upgrade::response`] with a `Sec-WebSocket-Extensions` header carrying `extensions` (the
    /// agreed extensions' response value, such as a
    /// [`DeflateParams`](crate::deflate::DeflateParams) written out). CR and LF in it are dropped.
    pub fn response_with(&self, protocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            self.accept_key()
        );
        if let Some(p) = protocol.filter(|p| is_token(p.as_bytes())) {
            out.push_str("Sec-WebSocket-Protocol: ");
            out.push_str(p);
            out.push_str("\r\n");
        }
        if let Some(e) = extensions {
            out.push_str("Sec-WebSocket-Extensions: ");
            out.extend(e.chars().filter(|&c| c != '\r' && c != '\n'));
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_and_token() {
        assert_eq!(trim_ows(b"  a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert!(is_token(b"chat.v2"));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a/b"));
    }

    #[test]
    fn scanner_is_linear_and_resumable() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nxyz";
        let limits = HandshakeLimits::default();
        let mut s = HeadScanner::default();
        let mut found = None;
        for n in 1..=head.len() {
            if let Some(end) = s.scan(&head[..n], &limits).unwrap() {
                found = Some(end);
                break;
            }
        }
        assert_eq!(found, Some(head.len() - 3));
    }

    #[test]
    fn path_and_query() {
        let r = Request {
            method: "GET".into(),
            target: "/a/b?key=1&x=2".into(),
            version: 1,
            headers: vec![],
        };
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), Some("key=1&x=2"));
        let r = Request {
            target: "/".into(),
            ..r
        };
        assert_eq!(r.path(), "/");
        assert_eq!(r.query(), None);
    }
}
