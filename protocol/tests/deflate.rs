//! permessage-deflate on a session: compressed messages whole and fragmented, RSV1 misuse (1002),
//! corrupt data (1007), bombs (1009 with bounded memory), negotiation from a parsed request, and
//! deflate then inflate as a property across window sizes, with and without context takeover.

mod common;

use common::{frame_rsv, run, Owned};
use hydrogen_ws_protocol::deflate::{
    negotiate, DeflateConfig, DeflateParams, Deflater, Inflater, PerMessageDeflate,
};
use hydrogen_ws_protocol::{
    CloseCode, Extension, ExtensionError, HandshakeLimits, OpCode, ProtocolError, RequestParser,
    Role, Session, SessionConfig, RSV1,
};
use proptest::prelude::*;

fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Deflater::new(15, false, 6)
        .compress(data, &mut out)
        .unwrap();
    out
}

fn server(params: DeflateParams, max: usize) -> Session {
    Session::with_extension(
        SessionConfig {
            max_message_size: max,
            max_frame_size: max as u64,
            ..SessionConfig::default()
        },
        Box::new(PerMessageDeflate::new(Role::Server, params, 6, 0)),
    )
}

fn default_server() -> Session {
    server(DeflateParams::default(), 1 << 20)
}

#[test]
fn a_compressed_message_is_inflated_whole_and_fragmented() {
    let text = "héllo wörld ".repeat(50);
    let wire = compress(text.as_bytes());
    let mut input = frame_rsv(true, RSV1, OpCode::Text, &wire);
    // The same message in three fragments: RSV1 on the first only.
    let (a, rest) = wire.split_at(wire.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    input.extend(frame_rsv(false, RSV1, OpCode::Text, a));
    input.extend(frame_rsv(false, 0, OpCode::Continuation, b));
    input.extend(frame_rsv(true, 0, OpCode::Continuation, c));
    // And one sent uncompressed (no RSV1) in between is delivered as it came.
    input.extend(frame_rsv(true, 0, OpCode::Binary, b"plain"));
    let (events, err) = run(default_server, &input);
    assert_eq!(err, None);
    assert_eq!(
        events,
        [
            Owned::Text(text.clone()),
            Owned::Text(text),
            Owned::Binary(b"plain".to_vec())
        ]
    );
}

#[test]
fn context_takeover_carries_over_messages() {
    // RFC 7692 section 7.2.3.2: the second "Hello" refers back into the first message.
    let mut input = frame_rsv(
        true,
        RSV1,
        OpCode::Text,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    );
    input.extend(frame_rsv(
        true,
        RSV1,
        OpCode::Text,
        &[0xf2, 0x00, 0x11, 0x00, 0x00],
    ));
    let (events, err) = run(default_server, &input);
    assert_eq!(err, None);
    assert_eq!(
        events,
        [Owned::Text("Hello".into()), Owned::Text("Hello".into())]
    );
}

#[test]
fn rsv1_misuse_fails_with_1002() {
    let wire = compress(b"hello");
    for (what, input) in [
        (
            "continuation",
            [
                frame_rsv(false, 0, OpCode::Text, b"a"),
                frame_rsv(true, RSV1, OpCode::Continuation, b"b"),
            ]
            .concat(),
        ),
        ("ping", frame_rsv(true, RSV1, OpCode::Ping, b"")),
        ("close", frame_rsv(true, RSV1, OpCode::Close, &[3, 232])),
        ("rsv2", frame_rsv(true, RSV1 >> 1, OpCode::Text, &wire)),
    ] {
        let (_, err) = run(default_server, &input);
        let err = err.unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(
            err.close_code(),
            CloseCode::PROTOCOL_ERROR,
            "{what}: {err:?}"
        );
    }
    // RSV1 without the extension.
    let mut plain = Session::new(SessionConfig::default());
    let mut input = frame_rsv(true, RSV1, OpCode::Text, &wire);
    assert_eq!(
        plain.read(&mut input).err(),
        Some(ProtocolError::ReservedBits)
    );
}

#[test]
fn corrupt_data_fails_with_1007_and_invalid_text_too() {
    let input = frame_rsv(true, RSV1, OpCode::Binary, &[0xff; 20]);
    let (_, err) = run(default_server, &input);
    assert_eq!(err, Some(ProtocolError::ExtensionPayload));
    assert_eq!(err.unwrap().close_code(), CloseCode::INVALID_PAYLOAD);
    let input = frame_rsv(true, RSV1, OpCode::Text, &compress(&[0xc3, 0x28]));
    let (_, err) = run(default_server, &input);
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
}

#[test]
fn a_bomb_fails_with_1009_without_growing_past_the_limit() {
    // 1 MiB of zeros in about 1 KiB (DEFLATE's ratio tops out near 1032:1), against a 64 KiB limit.
    let bomb = compress(&vec![0u8; 1 << 20]);
    assert!(bomb.len() <= 1100, "{}", bomb.len());
    let mut s = server(DeflateParams::default(), 64 << 10);
    let mut input = frame_rsv(true, RSV1, OpCode::Binary, &bomb);
    let mut consumed = 0;
    let err = loop {
        match s.read(&mut input[consumed..]) {
            Ok((0, _)) => panic!("the bomb was accepted"),
            Ok((n, _)) => consumed += n,
            Err(e) => break e,
        }
    };
    assert_eq!(err, ProtocolError::MessageTooLarge);
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // The inflater alone: its output never has room past the limit.
    let mut out = Vec::new();
    let r = Inflater::new(15, false).decompress(&bomb, &mut out, 64 << 10);
    assert_eq!(r, Err(ExtensionError::TooLarge));
    assert!(out.capacity() <= (64 << 10) + 1, "{}", out.capacity());
}

#[test]
fn negotiation_reads_the_offers_of_every_header() {
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Extensions: x-foo; v=\"a,b\", permessage-deflate; bad\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=\"9\"\r\n\r\n";
    let mut parser = RequestParser::new(HandshakeLimits::default());
    let upgrade = parser.push(request).unwrap().unwrap().websocket().unwrap();
    assert_eq!(upgrade.extensions.len(), 3, "{:?}", upgrade.extensions);
    let config = DeflateConfig {
        window_bits: 12,
        context_takeover: true,
    };
    let agreed = negotiate(&upgrade.extensions, &config).unwrap();
    assert_eq!(
        agreed.to_string(),
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12"
    );
    let response =
        String::from_utf8(upgrade.response_with(None, Some(&agreed.to_string()))).unwrap();
    assert!(response.contains(
        "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9; client_max_window_bits=12\r\n"
    ));
}

/// Messages from one end to the other: deflate on one side, inflate on the other.
fn exchange(params: DeflateParams, messages: &[Vec<u8>]) {
    let mut client = PerMessageDeflate::new(Role::Client, params, 6, 0);
    let mut server = PerMessageDeflate::new(Role::Server, params, 1, 0);
    let pass = |from: &mut PerMessageDeflate, to: &mut PerMessageDeflate, m: &[u8]| {
        let mut wire = Vec::new();
        assert_eq!(from.encode(OpCode::Binary, m, &mut wire), Ok(RSV1));
        let mut back = Vec::new();
        to.decode(RSV1, &wire, &mut back, m.len()).unwrap();
        assert_eq!(back, m);
    };
    for m in messages {
        pass(&mut client, &mut server, m);
        pass(&mut server, &mut client, m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn inflate_undoes_deflate(
        server_bits in 8u8..=15,
        client_bits in 8u8..=15,
        server_no_takeover: bool,
        client_no_takeover: bool,
        messages in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..2000),
                prop::collection::vec(prop::sample::select(b"{}\":,abc0123".to_vec()), 0..5000),
            ],
            1..6,
        ),
    ) {
        let params = DeflateParams {
            server_no_context_takeover: server_no_takeover,
            client_no_context_takeover: client_no_takeover,
            server_max_window_bits: Some(server_bits),
            client_max_window_bits: Some(client_bits),
        };
        exchange(params, &messages);
    }

    #[test]
    fn any_offer_is_parsed_without_panic(offer in "[a-z_=;, \"0-9-]{0,200}") {
        let _ = DeflateParams::parse_offer(&offer);
        let _ = negotiate(&[offer.as_str()], &DeflateConfig::default());
    }
}
