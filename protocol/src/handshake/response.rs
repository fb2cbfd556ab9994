//! Building responses: the reason phrases and complete refusals. Every HTTP refusal the crate
//! produces is rendered here, by [`refusal`]; [`HandshakeError`] only says which status, reason
//! and headers it maps to.

use crate::error::HandshakeError;

/// The standard reason phrase for an HTTP status code (`"Unknown"` for codes not listed).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Push `s` with CR and LF removed, so a caller's value can never start a new header line.
fn push_field(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
}

/// A complete refusal response, to be written before closing the connection:
///
/// ```text
/// HTTP/1.1 {status} {phrase}\r\n
/// Connection: close\r\n
/// Content-Type: text/plain; charset=utf-8\r\n
/// Content-Length: {n}\r\n
/// {extra headers, each "Name: value\r\n"}
/// \r\n
/// {body}\n
/// ```
///
/// CR and LF are stripped from the extra headers' names and values (no header injection).
pub fn refusal(status: u16, body: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            reason_phrase(status),
            body.len() + 1
        )
        .as_bytes(),
    );
    for (name, value) in extra_headers {
        push_field(&mut out, name);
        out.extend_from_slice(b": ");
        push_field(&mut out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
    out
}

impl HandshakeError {
    /// The complete HTTP refusal response (status line, headers, body), ready to write:
    /// [`refusal`] of [`status`](HandshakeError::status), [`reason`](HandshakeError::reason) and
    /// [`extra_headers`](HandshakeError::extra_headers).
    pub fn response(&self) -> Vec<u8> {
        refusal(self.status(), self.reason(), self.extra_headers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_exact() {
        let r = refusal(503, "busy", &[("Retry-After", "1")]);
        assert_eq!(
            r,
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nRetry-After: 1\r\n\r\nbusy\n"
        );
    }

    #[test]
    fn refusal_strips_header_injection() {
        let r = refusal(400, "x", &[("X-A", "1\r\nSet-Cookie: a=b")]);
        let s = String::from_utf8(r).unwrap();
        assert!(s.contains("X-A: 1Set-Cookie: a=b\r\n"));
    }

    #[test]
    fn phrases() {
        for code in [
            101, 200, 400, 401, 403, 404, 405, 408, 413, 414, 426, 429, 431, 500, 503,
        ] {
            assert_ne!(reason_phrase(code), "Unknown", "{code}");
        }
        assert_eq!(reason_phrase(299), "Unknown");
    }

    #[test]
    fn refusals_carry_required_headers() {
        let r = String::from_utf8(HandshakeError::MethodNotAllowed.response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(r.contains("\r\nAllow: GET\r\n"));
        let r = String::from_utf8(HandshakeError::MissingUpgrade.response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("\r\nUpgrade: websocket\r\n"));
        let r = String::from_utf8(HandshakeError::UnsupportedVersion.response()).unwrap();
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let r = String::from_utf8(HandshakeError::BadKey.response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(r.ends_with("\r\n\r\nSec-WebSocket-Key must be base64 of 16 bytes\n"));
    }
}
