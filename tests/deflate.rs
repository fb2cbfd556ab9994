//! permessage-deflate over real sockets: what the 101 agrees to, compressed echoes both ways (with
//! and without context takeover), the size threshold, control frames never compressed, the switch
//! that turns it off, and the counters.

mod support;

use std::time::Duration;

use hydrogen_ws::{Config, Deflate, Echo};
use hydrogen_ws_protocol::deflate::{DeflateParams, Deflater, Inflater, CLIENT_OFFER};
use hydrogen_ws_protocol::{encode_masked_frame, FrameHeader, OpCode, RSV1};
use support::{config, server_with, upgrade_request, RawClient, ServerFrame};

const MASK: [u8; 4] = [1, 2, 3, 4];

/// A client that offers `offer` and returns the agreed parameters (`None`: declined).
fn open(addr: std::net::SocketAddr, offer: &str) -> (RawClient, Option<DeflateParams>) {
    let mut c = RawClient::connect(addr);
    c.send_raw(upgrade_request(&format!("Sec-WebSocket-Extensions: {offer}\r\n")).as_bytes());
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 101, "{r:?}");
    let agreed = r
        .header("Sec-WebSocket-Extensions")
        .map(|v| DeflateParams::parse_response(v).expect("a valid response"));
    (c, agreed)
}

fn send_compressed(c: &mut RawClient, deflater: &mut Deflater, opcode: OpCode, payload: &[u8]) {
    let mut wire = Vec::new();
    deflater.compress(payload, &mut wire).expect("compress");
    let mut header = FrameHeader::new(true, opcode, Some(MASK), wire.len() as u64);
    header.rsv = RSV1;
    let mut frame = header.encode().to_vec();
    let start = frame.len();
    frame.extend_from_slice(&wire);
    hydrogen_ws_protocol::apply_mask(&mut frame[start..], MASK, 0);
    c.send_raw(&frame);
}

fn inflate(inflater: &mut Inflater, f: &ServerFrame) -> Vec<u8> {
    assert_eq!(f.rsv, 0b100, "not compressed: {f:?}");
    let mut out = Vec::new();
    inflater
        .decompress(&f.payload, &mut out, 1 << 24)
        .expect("inflates");
    out
}

fn json(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"state\":\"printing\",\"temp\":{}.5}},",
            200 + i % 7
        ));
        i += 1;
    }
    s.truncate(n - 1);
    s.push(']');
    s
}

#[test]
fn the_default_agrees_without_context_takeover_and_echoes_compressed() {
    let server = server_with(config(), Echo);
    let (mut c, agreed) = open(server.local_addr(), CLIENT_OFFER);
    let agreed = agreed.expect("deflate agreed");
    assert_eq!(
        agreed.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    let mut deflater = Deflater::new(15, true, 6);
    let mut inflater = Inflater::new(15, true);
    for size in [300, 1024, 16 * 1024, 200_000] {
        let text = json(size);
        send_compressed(&mut c, &mut deflater, OpCode::Text, text.as_bytes());
        let f = c.read_frame().expect("echo");
        assert_eq!(f.opcode, 1);
        let back = inflate(&mut inflater, &f);
        assert_eq!(back, text.as_bytes());
        assert!(f.payload.len() < size / 3, "{size} -> {}", f.payload.len());
    }
    // Below the threshold (256 bytes), an echo goes out as it is, compressed or not when it came.
    send_compressed(&mut c, &mut deflater, OpCode::Binary, b"short");
    let f = c.read_frame().expect("echo");
    assert_eq!((f.rsv, f.opcode, &f.payload[..]), (0, 2, &b"short"[..]));
    c.send_frame(true, OpCode::Text, b"plain");
    let f = c.read_frame().expect("echo");
    assert_eq!((f.rsv, &f.payload[..]), (0, &b"plain"[..]));
    // Control frames are never compressed.
    c.send_frame(true, OpCode::Ping, &[b'p'; 120]);
    let f = c.read_frame().expect("pong");
    assert_eq!((f.rsv, f.opcode, f.payload.len()), (0, 0xA, 120));
    let s = server.handle().stats();
    assert_eq!(s.deflate_connections, 1);
    assert_eq!(s.deflated_messages, 4);
    assert!(s.deflated_bytes_wire * 3 < s.deflated_bytes_raw, "{s:?}");
    c.send_frame(true, OpCode::Close, &1000u16.to_be_bytes());
    let f = c.read_frame().expect("close echo");
    assert_eq!((f.rsv, f.close_code()), (0, Some(1000)));
    server.shutdown();
}

#[test]
fn context_takeover_when_configured_carries_the_context_across_messages() {
    let mut cfg = config();
    cfg.deflate = Deflate {
        context_takeover: true,
        window_bits: 10,
        min_size: 0,
        ..Deflate::default()
    };
    let server = server_with(cfg, Echo);
    let (mut c, agreed) = open(server.local_addr(), CLIENT_OFFER);
    let agreed = agreed.expect("deflate agreed");
    assert_eq!(
        agreed.to_string(),
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
    );
    let mut deflater = Deflater::new(10, false, 6);
    let mut inflater = Inflater::new(10, false);
    let text = json(600);
    let mut sizes = Vec::new();
    for _ in 0..5 {
        send_compressed(&mut c, &mut deflater, OpCode::Text, text.as_bytes());
        let f = c.read_frame().expect("echo");
        assert_eq!(inflate(&mut inflater, &f), text.as_bytes());
        sizes.push(f.payload.len());
    }
    // The same message again refers back to the last one: a handful of bytes.
    assert!(sizes[4] < sizes[0] / 4, "{sizes:?}");
    // Even an empty message goes out compressed at min size 0.
    c.send_frame(true, OpCode::Binary, b"");
    let f = c.read_frame().expect("echo");
    assert_eq!(inflate(&mut inflater, &f), b"");
    server.shutdown();
}

#[test]
fn offers_are_read_in_order_and_bad_ones_declined() {
    let server = server_with(config(), Echo);
    let addr = server.local_addr();
    for (offer, expected) in [
        ("x-webkit-deflate-frame", None),
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8"),
        ),
        (
            "permessage-deflate; server_max_window_bits=\"x\", permessage-deflate; client_max_window_bits=\"9\"",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9"),
        ),
    ] {
        let (mut c, agreed) = open(addr, offer);
        assert_eq!(agreed.map(|a| a.to_string()).as_deref(), expected, "{offer}");
        // The connection works either way.
        c.send_frame(true, OpCode::Text, b"hi");
        assert_eq!(c.read_frame().expect("echo").payload, b"hi");
    }
    // An 8-bit window is served (compressed with 9 bits, which never refers back past 250 bytes).
    let (mut c, agreed) = open(addr, "permessage-deflate; server_max_window_bits=8");
    assert!(agreed.is_some());
    let text = json(5000);
    c.send_raw(&encode_masked_frame(
        true,
        OpCode::Text,
        MASK,
        text.as_bytes(),
    ));
    let f = c.read_frame().expect("echo");
    assert_eq!(inflate(&mut Inflater::new(8, true), &f), text.as_bytes());
    server.shutdown();
}

#[test]
fn off_declines_every_offer() {
    let mut cfg: Config = config();
    cfg.deflate.enabled = false;
    let server = server_with(cfg, Echo);
    let (mut c, agreed) = open(server.local_addr(), CLIENT_OFFER);
    assert_eq!(agreed, None);
    // RSV1 is then a protocol error.
    let mut frame = encode_masked_frame(true, OpCode::Text, MASK, b"x");
    frame[0] |= 0x40;
    c.send_raw(&frame);
    assert_eq!(c.read_close().expect("close"), Some(1002));
    assert_eq!(server.handle().stats().deflate_connections, 0);
    server.shutdown();
}

#[test]
fn corrupt_and_oversized_compressed_messages_are_refused() {
    let mut cfg = config();
    cfg.limits.max_message_size = 64 * 1024;
    cfg.limits.max_frame_size = 64 * 1024;
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let (mut c, _) = open(addr, CLIENT_OFFER);
    let mut header = FrameHeader::new(true, OpCode::Binary, Some(MASK), 8);
    header.rsv = RSV1;
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(&[0xff; 8]);
    c.send_raw(&frame);
    assert_eq!(c.read_close().expect("close"), Some(1007));
    // 1 MiB of zeros in about 1 KiB: over the 64 KiB limit once inflated.
    let (mut c, _) = open(addr, CLIENT_OFFER);
    let mut deflater = Deflater::new(15, true, 9);
    send_compressed(&mut c, &mut deflater, OpCode::Binary, &vec![0u8; 1 << 20]);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(c.read_close().expect("close"), Some(1009));
    server.shutdown();
}

/// With context takeover, messages compressed on different threads (the worker's echoes, another
/// thread's broadcasts) reach the client in the order they were compressed: every one inflates.
#[test]
fn with_context_takeover_echoes_and_broadcasts_interleave_in_compression_order() {
    let mut cfg = config();
    cfg.deflate.context_takeover = true;
    cfg.deflate.min_size = 0;
    let server = server_with(cfg, Echo);
    let (mut c, agreed) = open(server.local_addr(), CLIENT_OFFER);
    assert!(!agreed.expect("agreed").server_no_context_takeover);
    let handle = server.handle();
    let broadcaster = std::thread::spawn(move || {
        for i in 0..200 {
            let text = format!("broadcast {i}: {}", json(300));
            handle.broadcast(hydrogen_ws_protocol::Message::Text(&text));
        }
    });
    let mut deflater = Deflater::new(15, false, 6);
    let mut inflater = Inflater::new(15, false);
    for i in 0..200 {
        let text = format!("echo {i}: {}", json(300));
        send_compressed(&mut c, &mut deflater, OpCode::Text, text.as_bytes());
    }
    broadcaster.join().expect("broadcaster");
    let (mut echoes, mut broadcasts) = (0, 0);
    while echoes < 200 || broadcasts < 200 {
        let f = c.read_frame().expect("a frame");
        let text = String::from_utf8(inflate(&mut inflater, &f)).expect("text");
        if text.starts_with("echo ") {
            assert!(
                text.starts_with(&format!("echo {echoes}:")),
                "{}",
                &text[..20]
            );
            echoes += 1;
        } else {
            assert!(
                text.starts_with(&format!("broadcast {broadcasts}:")),
                "{}",
                &text[..20]
            );
            broadcasts += 1;
        }
    }
    server.shutdown();
}
