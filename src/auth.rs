//! Admission checks made during the handshake: the key, the browser origin, the subprotocol.

use hydrogen_ws_protocol::Request;

/// Why a request's key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No key in the `Authorization` header nor in the `key` query parameter.
    Missing,
    /// A key was given and it is not the server's.
    Wrong,
    /// The `Authorization` header is not of the form `Key <key>`.
    BadScheme,
    /// The `key` query parameter is not valid percent-encoding, or decodes to a NUL.
    BadEncoding,
}

impl AuthError {
    /// The HTTP status this refusal is answered with.
    pub fn status(self) -> u16 {
        match self {
            AuthError::BadEncoding => 400,
            AuthError::Missing | AuthError::Wrong | AuthError::BadScheme => 401,
        }
    }

    /// Headers the refusal must carry: a 401 names the scheme that would be accepted (RFC 9110
    /// section 15.5.2).
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self.status() {
            401 => &[("WWW-Authenticate", "Key realm=\"hydrogen-ws\"")],
            _ => &[],
        }
    }

    /// A short reason, sent as the response body and logged.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => {
                "a key is required: send 'Authorization: Key <key>' or ?key=<key>"
            }
            AuthError::Wrong => "the key is not valid",
            AuthError::BadScheme => "the Authorization header must be 'Key <key>'",
            AuthError::BadEncoding => "the key parameter is not valid percent-encoding",
        }
    }
}

/// Checks the request's key against `expected` (in constant time). Without an expected key, every
/// request passes.
pub fn check_key(expected: Option<&str>, request: &Request) -> Result<(), AuthError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    // An `Authorization` header of another scheme is not ours: a browser sends the Basic credentials of
    // a proxy in front of us by itself, and its `?key=` must still be heard.
    let header = request.header("authorization");
    let offered = match header.and_then(key_from_header) {
        Some(key) => key.to_vec(),
        None => match query_param(request.query().unwrap_or(""), "key")? {
            Some(key) => key,
            None if header.is_some() => return Err(AuthError::BadScheme),
            None => return Err(AuthError::Missing),
        },
    };
    if constant_time_eq(&offered, expected.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// The key of an `Authorization: Key <key>` header (scheme case-insensitive); `None` for any other.
fn key_from_header(value: &[u8]) -> Option<&[u8]> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("key")
        .then(|| key.trim().as_bytes())
}

/// Compares in constant time (the `subtle` crate), so the time taken does not say how much of a guess
/// was right. (Only a difference in length is told apart early; the length of a key is not its secret.)
pub fn constant_time_eq(offered: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(offered.ct_eq(expected))
}

/// The percent-decoded value of query parameter `name` (`+` is a space), if present.
fn query_param(query: &str, name: &str) -> Result<Option<Vec<u8>>, AuthError> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_decode(v).map(Some);
        }
    }
    Ok(None)
}

fn percent_decode(text: &str) -> Result<Vec<u8>, AuthError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                // Exactly two hex digits (from_str_radix alone would take a sign: "%+f").
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .ok_or(AuthError::BadEncoding)?;
                i += 2;
                u8::from_str_radix(hex, 16).map_err(|_| AuthError::BadEncoding)?
            }
            b'+' => b' ',
            b => b,
        };
        if b == 0 {
            return Err(AuthError::BadEncoding);
        }
        out.push(b);
        i += 1;
    }
    Ok(out)
}

/// Checks the browser's `Origin` against the allow-list (no list: any origin, and clients that send none).
pub fn check_origin(allowed: &[String], origin: Option<&str>) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    match origin {
        Some(o) if allowed.iter().any(|a| a.eq_ignore_ascii_case(o)) => Ok(()),
        Some(o) => Err(format!("origin '{o}' is not allowed")),
        None => Err("an Origin header is required".to_string()),
    }
}

/// Picks the subprotocol: `ours` if the client offers it; a client that offers only others is refused
/// (it would not understand our messages); a client that offers none is served without one. Without
/// `ours` (echo), no subprotocol is ever selected.
pub fn negotiate_protocol(
    ours: Option<&str>,
    offered: &[String],
) -> Result<Option<String>, String> {
    let Some(ours) = ours else {
        return Ok(None);
    };
    if offered.is_empty() {
        return Ok(None);
    }
    if offered.iter().any(|p| p == ours) {
        Ok(Some(ours.to_string()))
    } else {
        Err(format!(
            "this server speaks the '{ours}' subprotocol; offered: {}",
            offered.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), Ok(b"a/b c".to_vec()));
        assert_eq!(percent_decode("%00"), Err(AuthError::BadEncoding));
        assert_eq!(percent_decode("%4"), Err(AuthError::BadEncoding));
        assert_eq!(percent_decode("%zz"), Err(AuthError::BadEncoding));
        assert_eq!(percent_decode("%+f"), Err(AuthError::BadEncoding));
        assert_eq!(percent_decode("%-1"), Err(AuthError::BadEncoding));
        assert_eq!(
            query_param("a=1&key=s%33cret", "key"),
            Ok(Some(b"s3cret".to_vec()))
        );
        assert_eq!(query_param("a=1", "key"), Ok(None));
    }

    fn request(target: &str, authorization: Option<&str>) -> Request {
        let mut head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n");
        if let Some(a) = authorization {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        match hydrogen_ws_protocol::parse_request(head.as_bytes(), &Default::default()) {
            Ok(hydrogen_ws_protocol::Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let check = |target: &str, auth: Option<&str>| {
            check_key(Some("s3cret-key"), &request(target, auth))
        };
        assert_eq!(check("/", Some("Key s3cret-key")), Ok(()));
        assert_eq!(check("/", Some("key  s3cret-key ")), Ok(()));
        assert_eq!(check("/?key=s3cret-key", None), Ok(()));
        assert_eq!(check("/", Some("Key nope-nope")), Err(AuthError::Wrong));
        assert_eq!(check("/?key=nope", None), Err(AuthError::Wrong));
        assert_eq!(check("/", None), Err(AuthError::Missing));
        // The header wins over the query when it is ours...
        assert_eq!(
            check("/?key=s3cret-key", Some("Key nope-nope")),
            Err(AuthError::Wrong)
        );
        // ...and is passed over when it is a proxy's (a browser sends those by itself).
        assert_eq!(
            check("/?key=s3cret-key", Some("Basic dXNlcjpwYXNz")),
            Ok(())
        );
        assert_eq!(
            check("/", Some("Basic dXNlcjpwYXNz")),
            Err(AuthError::BadScheme)
        );
        assert_eq!(check("/", Some("Key")), Err(AuthError::BadScheme));
    }

    #[test]
    fn a_401_names_the_scheme() {
        for e in [AuthError::Missing, AuthError::Wrong, AuthError::BadScheme] {
            assert_eq!(e.status(), 401);
            assert_eq!(e.headers()[0].0, "WWW-Authenticate");
            assert!(e.headers()[0].1.starts_with("Key "));
        }
        assert!(AuthError::BadEncoding.headers().is_empty());
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-kez", b"secret-key"));
        assert!(!constant_time_eq(b"secret-key-longer", b"secret-key"));
        assert!(!constant_time_eq(b"secret", b"secret-key"));
        assert!(!constant_time_eq(b"", b"secret-key"));
    }
}
