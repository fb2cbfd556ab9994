//! Comma- and semicolon-separated header lists whose elements may hold quoted strings (RFC 9110
//! section 5.6.1, as `Sec-WebSocket-Extensions` uses them): separators inside quotes do not count.

/// The elements of a comma-separated header value, commas inside quoted strings left alone.
pub(crate) fn split_elements(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = value;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let end = list_separator(rest.as_bytes(), b',').unwrap_or(rest.len());
        let element = rest[..end].trim_matches([' ', '\t']);
        rest = rest.get(end + 1..).unwrap_or_default();
        if !element.is_empty() {
            return Some(element);
        }
    })
}

/// The first `sep` outside a quoted string.
pub(crate) fn list_separator(bytes: &[u8], sep: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if !quoted && b == sep {
            return Some(i);
        }
    }
    None
}
