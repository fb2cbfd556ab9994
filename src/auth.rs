//! Admission checks made during the handshake: the key, the browser origin, the subprotocol.

use hydrogen_ws_protocol::Request;

use crate::config::{Config, Mode};

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

/// Checks the request's key against the configured one (in constant time). Without a configured key,
/// every request passes.
pub fn check_key(config: &Config, request: &Request) -> Result<(), AuthError> {
    let Some(expected) = &config.key else {
        return Ok(());
    };
    let offered = match request.header("authorization") {
        Some(value) => {
            let value = std::str::from_utf8(value)
                .map_err(|_| AuthError::BadScheme)?
                .trim();
            let (scheme, key) = value.split_once(' ').ok_or(AuthError::BadScheme)?;
            if !scheme.eq_ignore_ascii_case("key") {
                return Err(AuthError::BadScheme);
            }
            key.trim().as_bytes().to_vec()
        }
        None => match query_param(request.query().unwrap_or(""), "key")? {
            Some(key) => key,
            None => return Err(AuthError::Missing),
        },
    };
    if constant_time_eq(&offered, expected.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// Compares without an early exit, so the time taken does not say how much of a guess was right.
pub fn constant_time_eq(offered: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(offered.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= offered.get(i).copied().unwrap_or(0) ^ e;
    }
    diff == 0
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
                let hex = bytes.get(i + 1..i + 3).ok_or(AuthError::BadEncoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| AuthError::BadEncoding)?;
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
pub fn check_origin(config: &Config, origin: Option<&str>) -> Result<(), String> {
    if config.allowed_origins.is_empty() {
        return Ok(());
    }
    match origin {
        Some(o)
            if config
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o)) =>
        {
            Ok(())
        }
        Some(o) => Err(format!("origin '{o}' is not allowed")),
        None => Err("an Origin header is required".to_string()),
    }
}

/// Picks the subprotocol: in hydrogen mode ours if the client offers it; a client that offers only others
/// is refused (it would not understand our messages); a client that offers none is served without one.
/// Echo mode never selects a subprotocol.
pub fn negotiate_protocol(config: &Config, offered: &[String]) -> Result<Option<String>, String> {
    if config.mode != Mode::Hydrogen || offered.is_empty() {
        return Ok(None);
    }
    if offered.iter().any(|p| p == &config.protocol) {
        Ok(Some(config.protocol.clone()))
    } else {
        Err(format!(
            "this server speaks the '{}' subprotocol; offered: {}",
            config.protocol,
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
        assert_eq!(
            query_param("a=1&key=s%33cret", "key"),
            Ok(Some(b"s3cret".to_vec()))
        );
        assert_eq!(query_param("a=1", "key"), Ok(None));
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
