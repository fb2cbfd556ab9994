//! Negotiation (RFC 7692 section 7.1): parsing `permessage-deflate` offers and responses, choosing
//! the first offer we can honour, and writing the response.
//!
//! Every offer is parsed in full before it is used: an unknown parameter, a repeated one, a value
//! where none is allowed (or none where one is required), or a window size outside 8..=15 declines
//! that offer (section 5: the server declines an offer it cannot honour by leaving it out of its
//! response); the next one is looked at. Values may be tokens or quoted strings (`"10"`).

use std::fmt;

use crate::handshake::list::{list_separator, split_elements};

/// The extension's token.
pub const NAME: &str = "permessage-deflate";

/// The most offers looked at, and the most parameters read in one offer: a header with thousands
/// of them is declined after this many, in time linear in its length.
const MAX_OFFERS: usize = 16;
const MAX_PARAMS: usize = 8;

/// What the server is willing to agree to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Largest LZ77 window (log2, 8..=15) for both directions: our compressor's, and the one we ask the
    /// client to keep to when it lets us (`client_max_window_bits`). Smaller saves memory (see
    /// [`Deflater`](super::Deflater)).
    pub window_bits: u8,
    /// Keep the compression context from one message to the next in both directions. Off, the
    /// response carries `server_no_context_takeover` and `client_no_context_takeover`, so that no
    /// (de)compressor state has to outlive a message.
    pub context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            window_bits: 15,
            context_takeover: true,
        }
    }
}

/// The parameters of one `permessage-deflate` offer or response.
///
/// In an offer, `client_max_window_bits` without a value (the client supports the parameter) is
/// read as 15: both leave the server free to answer any value up to 15. In a response the value is
/// required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server does not keep its compression context between messages.
    pub server_no_context_takeover: bool,
    /// The client does not keep its compression context between messages.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window is at most this (log2); `None`: 15.
    pub server_max_window_bits: Option<u8>,
    /// The client's LZ77 window is at most this (log2); `None`: 15 (and, in an offer, the client
    /// does not support the parameter: the response may not carry it).
    pub client_max_window_bits: Option<u8>,
}

/// Why an offer or a response was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsError {
    /// Not `permessage-deflate`.
    OtherExtension,
    /// Not the `token *( ";" token [ "=" (token / quoted-string) ] )` syntax.
    Syntax,
    /// A parameter RFC 7692 does not define.
    UnknownParameter,
    /// A parameter given twice.
    DuplicateParameter,
    /// A value where none is allowed, none where one is required, or a window size outside 8..=15
    /// (or not in its plain decimal form).
    BadValue,
    /// More parameters than any valid offer has.
    TooManyParameters,
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamsError::OtherExtension => "not permessage-deflate",
            ParamsError::Syntax => "malformed extension parameters",
            ParamsError::UnknownParameter => "unknown permessage-deflate parameter",
            ParamsError::DuplicateParameter => "repeated permessage-deflate parameter",
            ParamsError::BadValue => "bad permessage-deflate parameter value",
            ParamsError::TooManyParameters => "too many permessage-deflate parameters",
        })
    }
}

impl std::error::Error for ParamsError {}

/// Which side wrote the parameters (a response must give `client_max_window_bits` a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Offer,
    Response,
}

impl DeflateParams {
    /// Parses one element of a `Sec-WebSocket-Extensions` list sent by a client (an offer).
    pub fn parse_offer(element: &str) -> Result<DeflateParams, ParamsError> {
        parse(element, Side::Offer)
    }

    /// Parses a server's `Sec-WebSocket-Extensions` value (a client checks the response to its offer).
    /// The response must hold exactly one element, `permessage-deflate` with valid parameters.
    pub fn parse_response(value: &str) -> Result<DeflateParams, ParamsError> {
        let mut elements = split_elements(value);
        let first = elements.next().ok_or(ParamsError::Syntax)?;
        if elements.next().is_some() {
            return Err(ParamsError::Syntax);
        }
        parse(first, Side::Response)
    }

    /// The LZ77 window (log2) the server compresses with at most.
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(15)
    }

    /// The LZ77 window (log2) the client compresses with at most.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits.unwrap_or(15)
    }

    /// The response to this offer under `config`: the parameters agreed. Every valid offer can be
    /// honoured: a window smaller than ours is used as it is (8 included: see
    /// [`Deflater`](super::Deflater)), `server_no_context_takeover` is granted, and a client that
    /// supports `client_max_window_bits` is held to our window.
    pub fn accept(&self, config: &DeflateConfig) -> DeflateParams {
        let ours = config.window_bits.clamp(8, 15);
        let server = self.server_max_window_bits.map_or(ours, |n| n.min(ours));
        let client = self.client_max_window_bits.map(|n| n.min(ours));
        DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover || !config.context_takeover,
            client_no_context_takeover: self.client_no_context_takeover || !config.context_takeover,
            // Said when it limits the client's decompressor, or when the offer asked for it.
            server_max_window_bits: (server < 15 || self.server_max_window_bits.is_some())
                .then_some(server),
            client_max_window_bits: client.filter(|&n| n < 15),
        }
    }
}

/// The response value for these parameters: `permessage-deflate` and each one set.
impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(n) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={n}")?;
        }
        if let Some(n) = self.client_max_window_bits {
            write!(f, "; client_max_window_bits={n}")?;
        }
        Ok(())
    }
}

/// The server's side of negotiation: the first `permessage-deflate` offer in `offers` (the elements
/// of every `Sec-WebSocket-Extensions` header, in order, as in
/// [`Upgrade::extensions`](crate::Upgrade)) that is valid, and the parameters agreed for it. `None`:
/// no usable offer, the extension is declined (no response header).
pub fn negotiate<S: AsRef<str>>(offers: &[S], config: &DeflateConfig) -> Option<DeflateParams> {
    offers
        .iter()
        .map(AsRef::as_ref)
        .filter(|o| is_deflate(o))
        .take(MAX_OFFERS)
        .find_map(|o| DeflateParams::parse_offer(o).ok())
        .map(|offer| offer.accept(config))
}

/// Whether an element names `permessage-deflate` (before any parameter).
fn is_deflate(element: &str) -> bool {
    let name = element.split(';').next().unwrap_or_default();
    name.trim_matches([' ', '\t']).eq_ignore_ascii_case(NAME)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A parameter's value: a token, or a quoted string whose content (unescaped) must be a token
/// (RFC 6455 section 9.1).
fn value(raw: &str) -> Result<String, ParamsError> {
    let Some(inner) = raw.strip_prefix('"') else {
        return if is_token(raw) {
            Ok(raw.to_string())
        } else {
            Err(ParamsError::Syntax)
        };
    };
    let inner = inner.strip_suffix('"').ok_or(ParamsError::Syntax)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or(ParamsError::Syntax)?),
            '"' => return Err(ParamsError::Syntax),
            c => out.push(c),
        }
    }
    if is_token(&out) {
        Ok(out)
    } else {
        Err(ParamsError::Syntax)
    }
}

/// A window size: 8..=15 in plain decimal (no sign, no leading zero).
fn window_bits(v: Option<String>) -> Result<u8, ParamsError> {
    match v.as_deref() {
        Some(s @ ("8" | "9" | "10" | "11" | "12" | "13" | "14" | "15")) => {
            s.parse().map_err(|_| ParamsError::BadValue)
        }
        _ => Err(ParamsError::BadValue),
    }
}

fn parse(element: &str, side: Side) -> Result<DeflateParams, ParamsError> {
    let mut rest = element;
    let mut next = || -> Option<&str> {
        if rest.is_empty() {
            return None;
        }
        let end = list_separator(rest.as_bytes(), b';').unwrap_or(rest.len());
        let part = rest[..end].trim_matches([' ', '\t']);
        rest = rest.get(end + 1..).unwrap_or_default();
        Some(part)
    };
    let name = next().ok_or(ParamsError::Syntax)?;
    if !name.eq_ignore_ascii_case(NAME) {
        return Err(if is_token(name) {
            ParamsError::OtherExtension
        } else {
            ParamsError::Syntax
        });
    }
    let mut params = DeflateParams::default();
    let mut seen = 0u8;
    let mut count = 0;
    while let Some(part) = next() {
        count += 1;
        if count > MAX_PARAMS {
            return Err(ParamsError::TooManyParameters);
        }
        let (key, raw) = match part.split_once('=') {
            Some((k, v)) => (
                k.trim_matches([' ', '\t']),
                Some(v.trim_matches([' ', '\t'])),
            ),
            None => (part, None),
        };
        if !is_token(key) {
            return Err(ParamsError::Syntax);
        }
        let v = raw.map(value).transpose()?;
        let bit = match key {
            "server_no_context_takeover" => 1,
            "client_no_context_takeover" => 2,
            "server_max_window_bits" => 4,
            "client_max_window_bits" => 8,
            _ => return Err(ParamsError::UnknownParameter),
        };
        if seen & bit != 0 {
            return Err(ParamsError::DuplicateParameter);
        }
        seen |= bit;
        match bit {
            1 | 2 if v.is_some() => return Err(ParamsError::BadValue),
            1 => params.server_no_context_takeover = true,
            2 => params.client_no_context_takeover = true,
            4 => params.server_max_window_bits = Some(window_bits(v)?),
            _ => {
                params.client_max_window_bits = Some(match (v, side) {
                    (None, Side::Offer) => 15,
                    (v, _) => window_bits(v)?,
                })
            }
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(s: &str) -> Result<DeflateParams, ParamsError> {
        DeflateParams::parse_offer(s)
    }

    #[test]
    fn offers_parse() {
        assert_eq!(offer("permessage-deflate"), Ok(DeflateParams::default()));
        let p = offer("Permessage-Deflate ; client_max_window_bits; server_max_window_bits=\"10\"")
            .unwrap();
        assert_eq!(p.client_max_window_bits, Some(15));
        assert_eq!(p.server_max_window_bits, Some(10));
        let p = offer("permessage-deflate;server_no_context_takeover;client_no_context_takeover")
            .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits=\"1\\2\"")
                .unwrap()
                .server_max_window_bits,
            Some(12)
        );
    }

    #[test]
    fn bad_offers_are_declined() {
        for (s, e) in [
            ("x-webkit-deflate-frame", ParamsError::OtherExtension),
            ("permessage-deflate; foo", ParamsError::UnknownParameter),
            ("permessage-deflate; foo=1", ParamsError::UnknownParameter),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                ParamsError::DuplicateParameter,
            ),
            (
                "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
                ParamsError::DuplicateParameter,
            ),
            (
                "permessage-deflate; server_max_window_bits",
                ParamsError::BadValue,
            ),
            (
                "permessage-deflate; server_max_window_bits=7",
                ParamsError::BadValue,
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                ParamsError::BadValue,
            ),
            (
                "permessage-deflate; server_max_window_bits=08",
                ParamsError::BadValue,
            ),
            (
                "permessage-deflate; client_max_window_bits=+9",
                ParamsError::BadValue,
            ),
            (
                "permessage-deflate; server_no_context_takeover=1",
                ParamsError::BadValue,
            ),
            (
                "permessage-deflate; server_max_window_bits=\"10",
                ParamsError::Syntax,
            ),
            (
                "permessage-deflate; server_max_window_bits=\"1 0\"",
                ParamsError::Syntax,
            ),
            ("permessage-deflate; =10", ParamsError::Syntax),
            ("permessage-deflate;;", ParamsError::Syntax),
        ] {
            assert_eq!(offer(s), Err(e), "{s}");
        }
        let many = format!("{NAME}{}", "; server_no_context_takeover".repeat(5000));
        assert_eq!(offer(&many), Err(ParamsError::DuplicateParameter));
        let many = format!("{NAME}{}", "; x".repeat(5000));
        assert_eq!(offer(&many), Err(ParamsError::UnknownParameter));
    }

    #[test]
    fn the_first_usable_offer_wins() {
        let config = DeflateConfig::default();
        let offers = [
            "x-foo; a=\"b, permessage-deflate\"",
            "permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate",
        ];
        let elements: Vec<&str> = offers.iter().flat_map(|o| split_elements(o)).collect();
        assert_eq!(elements.len(), 4);
        let agreed = negotiate(&elements, &config).unwrap();
        assert_eq!(
            agreed.to_string(),
            "permessage-deflate; server_max_window_bits=10"
        );
        assert_eq!(negotiate(&["permessage-deflate; x"], &config), None);
        assert_eq!(negotiate::<&str>(&[], &config), None);
    }

    #[test]
    fn responses_follow_the_config() {
        let small = DeflateConfig {
            window_bits: 10,
            context_takeover: false,
        };
        let agreed = offer("permessage-deflate; client_max_window_bits")
            .unwrap()
            .accept(&small);
        assert_eq!(
            agreed.to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=10"
        );
        // A client that cannot limit its window is not told to.
        let agreed = offer("permessage-deflate").unwrap().accept(&small);
        assert_eq!(agreed.client_max_window_bits, None);
        // 8 is granted (compressed with 9, whose output is valid for an 8-bit window).
        let agreed = offer("permessage-deflate; server_max_window_bits=8")
            .unwrap()
            .accept(&DeflateConfig::default());
        assert_eq!(
            agreed.to_string(),
            "permessage-deflate; server_max_window_bits=8"
        );
        assert_eq!(
            DeflateParams::parse_response(&agreed.to_string()),
            Ok(agreed)
        );
    }

    #[test]
    fn responses_parse() {
        assert_eq!(
            DeflateParams::parse_response("permessage-deflate; client_max_window_bits"),
            Err(ParamsError::BadValue)
        );
        assert_eq!(
            DeflateParams::parse_response("permessage-deflate, permessage-deflate"),
            Err(ParamsError::Syntax)
        );
        assert!(
            DeflateParams::parse_response("permessage-deflate; client_max_window_bits=9").is_ok()
        );
    }
}
