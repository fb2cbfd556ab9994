//! The `deflate_offer` and `inflate` targets (permessage-deflate, RFC 7692).

use hydrogen_ws_protocol::deflate::{
    negotiate, DeflateConfig, DeflateParams, Deflater, Inflater, PerMessageDeflate, NAME,
};
use hydrogen_ws_protocol::{
    apply_mask, CloseCode, Event, FrameHeader, HandshakeLimits, OpCode, ProtocolError,
    RequestParser, Role, Session, SessionConfig, RSV1,
};

/// Negotiation: each line of `data` is one `Sec-WebSocket-Extensions` header of an otherwise valid
/// upgrade request. Whatever the offers, parsing and negotiation do not panic; under several server
/// configurations the result is the first `permessage-deflate` offer (of the first 16) that parses,
/// accepted; what is agreed stays within the configuration (window sizes 8..=15, no larger than
/// ours or than the offer's, `server_no_context_takeover` granted when asked); and the response
/// value written for it parses back, as a client reads it, to the same parameters.
pub fn deflate_offer(data: &[u8]) {
    let mut request = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        .to_vec();
    for line in data.split(|&b| b == b'\n') {
        request.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let limits = HandshakeLimits {
        max_head_bytes: 1 << 20,
        max_headers: 10_000,
        ..HandshakeLimits::default()
    };
    let mut parser = RequestParser::new(limits);
    let Ok(Some(parsed)) = parser.push(&request) else {
        return;
    };
    let Ok(upgrade) = parsed.websocket() else {
        return;
    };
    for config in [
        DeflateConfig::default(),
        DeflateConfig {
            window_bits: 8,
            context_takeover: false,
        },
        DeflateConfig {
            window_bits: 12,
            context_takeover: true,
        },
    ] {
        let agreed = negotiate(&upgrade.extensions, &config);
        let offer = upgrade
            .extensions
            .iter()
            .filter(|e| {
                let name = e.split(';').next().unwrap_or_default();
                name.trim_matches([' ', '\t']).eq_ignore_ascii_case(NAME)
            })
            .take(16)
            .find_map(|e| DeflateParams::parse_offer(e).ok());
        assert_eq!(
            agreed,
            offer.map(|o| o.accept(&config)),
            "{:?}",
            upgrade.extensions
        );
        let (Some(agreed), Some(offer)) = (agreed, offer) else {
            continue;
        };
        for bits in [agreed.server_max_window_bits, agreed.client_max_window_bits]
            .into_iter()
            .flatten()
        {
            assert!((8..=15).contains(&bits), "{agreed:?}");
        }
        assert!(agreed.server_window_bits() <= config.window_bits.max(offer.server_window_bits()));
        assert!(agreed.server_window_bits() <= offer.server_window_bits());
        assert!(!offer.server_no_context_takeover || agreed.server_no_context_takeover);
        if offer.client_max_window_bits.is_none() {
            assert_eq!(agreed.client_max_window_bits, None, "{agreed:?}");
        }
        let written = agreed.to_string();
        assert_eq!(
            DeflateParams::parse_response(&written),
            Ok(agreed),
            "{written}"
        );
        let response = upgrade.response_with(None, Some(&written));
        let text = String::from_utf8(response).expect("ASCII");
        assert!(text.contains(&format!("\r\nSec-WebSocket-Extensions: {written}\r\n")));
    }
}

/// Inflating peer data: the first byte picks the window (bits 0-2: 8 + n), context takeover (bit 3)
/// and the size limit (bits 4-5: 64 B, 1 KiB, 64 KiB, 1 MiB); the rest is a list of messages, each a
/// 2-byte length then its bytes, taken as compressed payloads. For each: the inflater never holds
/// more than the limit plus one byte, whatever it returns; it fails only with `Invalid` or `TooLarge`,
/// and `TooLarge` only when the output would pass the limit. The same messages framed with RSV1 (the
/// length's top bit moves RSV1 to a continuation frame, the next bit to a ping) through a server
/// session with the extension: errors map to 1002, 1007 or 1009 and no message exceeds the limit.
/// And the raw bytes, compressed by our deflater with the same parameters, inflate back to
/// themselves.
pub fn inflate(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let bits = 8 + (first & 0x7);
    let no_takeover = first & 0x8 != 0;
    let max = [64, 1024, 64 << 10, 1 << 20][usize::from((first >> 4) & 0x3)];
    let mut messages = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = rest.get(2..2 + (len & 0x3fff)).unwrap_or(&rest[2..]);
        messages.push((len >> 14, body));
        rest = &rest[2 + body.len()..];
    }

    let mut inflater = Inflater::new(bits, no_takeover);
    for (_, body) in &messages {
        let mut out = Vec::new();
        let result = inflater.decompress(body, &mut out, max);
        assert!(
            out.len() <= max + 1 && out.capacity() <= max + 1,
            "{}",
            out.capacity()
        );
        if result.is_ok() {
            assert!(out.len() <= max);
        }
    }

    let params = DeflateParams {
        server_no_context_takeover: no_takeover,
        client_no_context_takeover: no_takeover,
        server_max_window_bits: Some(bits),
        client_max_window_bits: Some(bits),
    };
    let mut session = Session::with_extension(
        SessionConfig {
            role: Role::Server,
            max_frame_size: max as u64,
            max_message_size: max,
        },
        Box::new(PerMessageDeflate::new(Role::Server, params, 1, 0)),
    );
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut wire = Vec::new();
    for (flags, body) in &messages {
        let mut frame = |fin: bool, rsv: u8, op: OpCode, payload: &[u8]| {
            let mut header = FrameHeader::new(fin, op, Some(mask), payload.len() as u64);
            header.rsv = rsv;
            header.encode().append_to(&mut wire);
            let at = wire.len();
            wire.extend_from_slice(payload);
            apply_mask(&mut wire[at..], mask, 0);
        };
        match flags {
            2 | 3 => {
                let (a, b) = body.split_at(body.len() / 2);
                frame(false, RSV1, OpCode::Binary, a);
                frame(true, RSV1, OpCode::Continuation, b);
            }
            1 => frame(true, RSV1, OpCode::Ping, b""),
            _ => frame(true, RSV1, OpCode::Binary, body),
        }
    }
    let mut pos = 0;
    while pos < wire.len() {
        match session.read(&mut wire[pos..]) {
            Ok((0, _)) => break,
            Ok((n, event)) => {
                if let Event::Message(m) = event {
                    assert!(m.as_bytes().len() <= max);
                }
                pos += n;
            }
            Err(e) => {
                let code = e.close_code();
                assert!(
                    [
                        CloseCode::PROTOCOL_ERROR,
                        CloseCode::INVALID_PAYLOAD,
                        CloseCode::MESSAGE_TOO_BIG
                    ]
                    .contains(&code),
                    "{e:?}"
                );
                if matches!(e, ProtocolError::ExtensionBitsMisplaced) {
                    assert_eq!(code, CloseCode::PROTOCOL_ERROR);
                }
                break;
            }
        }
    }

    let mut deflater = Deflater::new(bits, no_takeover, u32::from(first >> 6) * 3);
    let mut inflater = Inflater::new(bits, no_takeover);
    for (_, body) in &messages {
        let mut compressed = Vec::new();
        deflater
            .compress(body, &mut compressed)
            .expect("compresses");
        let mut back = Vec::new();
        inflater
            .decompress(&compressed, &mut back, body.len())
            .expect("inflates");
        assert_eq!(&back, body);
    }
}
