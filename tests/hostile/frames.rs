//! Frame abuse after the upgrade: each violation is closed with its exact code and reason, nothing is
//! allocated for lengths that were only declared, and a client upgraded before the attack keeps its echoes.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hydrogen_ws::Echo;
use hydrogen_ws_protocol::OpCode;

use crate::common::*;
use crate::support::{config, echo_server, server_with, RawClient};

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Every framing rule, one connection each, on one server; the bystander echoes at the end.
#[test]
fn each_frame_violation_gets_its_close_code_and_reason() {
    use OpCode::{Binary, Close, Continuation, Ping, Pong, Text};
    let _g = shared();
    let server = echo_server();
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let masked = "client frames must be masked";
    let reserved_bits = "reserved bits set without an extension";
    let reserved_op = "reserved opcode";
    let overflow = "payload length has its top bit set";
    let non_minimal = "payload length not minimally encoded";
    let too_large = "frame too large";
    let bad_close = "invalid close code";
    let utf8 = "invalid UTF-8";

    let mut cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (
            "unmasked text".into(),
            vec![0x81, 0x02, b'h', b'i'],
            1002,
            masked,
        ),
        (
            "unmasked close".into(),
            vec![0x88, 0x02, 0x03, 0xe8],
            1002,
            masked,
        ),
        ("RSV1".into(), raw_header(0xC1, &[0]), 1002, reserved_bits),
        ("RSV2".into(), raw_header(0xA1, &[0]), 1002, reserved_bits),
        (
            "RSV3 on a ping".into(),
            raw_header(0x99, &[0]),
            1002,
            reserved_bits,
        ),
        (
            "64-bit length with its top bit set".into(),
            raw_header(0x82, &[127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            1002,
            overflow,
        ),
        (
            "64-bit length of all ones".into(),
            raw_header(0x82, &[127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            1002,
            overflow,
        ),
        (
            "5 in the 16-bit form".into(),
            cat(&[raw_header(0x82, &[126, 0, 5]), b"abcde".to_vec()]),
            1002,
            non_minimal,
        ),
        (
            "125 in the 16-bit form".into(),
            raw_header(0x82, &[126, 0, 125]),
            1002,
            non_minimal,
        ),
        (
            "256 in the 64-bit form".into(),
            raw_header(0x82, &[127, 0, 0, 0, 0, 0, 0, 1, 0]),
            1002,
            non_minimal,
        ),
        (
            "65535 in the 64-bit form".into(),
            raw_header(0x82, &[127, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            1002,
            non_minimal,
        ),
        (
            "zero in the 64-bit form".into(),
            raw_header(0x81, &[127, 0, 0, 0, 0, 0, 0, 0, 0]),
            1002,
            non_minimal,
        ),
        (
            "4 GiB declared, nothing sent".into(),
            raw_header(0x82, &[127, 0, 0, 0, 1, 0, 0, 0, 0]),
            1009,
            too_large,
        ),
        (
            "2^62 declared, nothing sent".into(),
            raw_header(0x82, &[127, 0x40, 0, 0, 0, 0, 0, 0, 0]),
            1009,
            too_large,
        ),
        (
            "fragmented ping".into(),
            frame(false, Ping, b"x"),
            1002,
            "fragmented control frame",
        ),
        (
            "fragmented close".into(),
            frame(false, Close, &close_payload(1000, b"")),
            1002,
            "fragmented control frame",
        ),
        (
            "126-byte ping".into(),
            frame(true, Ping, &[b'p'; 126]),
            1002,
            "control frame payload over 125 bytes",
        ),
        (
            "64 KiB pong".into(),
            frame(true, Pong, &[b'p'; 65536]),
            1002,
            "control frame payload over 125 bytes",
        ),
        (
            "126-byte close".into(),
            frame(true, Close, &close_payload(1000, &[b'r'; 124])),
            1002,
            "control frame payload over 125 bytes",
        ),
        (
            "orphan continuation".into(),
            frame(true, Continuation, b"x"),
            1002,
            "continuation frame without a message",
        ),
        (
            "orphan continuation after a whole message".into(),
            cat(&[frame(true, Text, b"ok"), frame(false, Continuation, b"x")]),
            1002,
            "continuation frame without a message",
        ),
        (
            "text inside a fragmented text".into(),
            cat(&[frame(false, Text, b"a"), frame(true, Text, b"b")]),
            1002,
            "expected a continuation frame",
        ),
        (
            "binary inside a fragmented text, with a ping between".into(),
            cat(&[
                frame(false, Text, b"a"),
                frame(true, Ping, b""),
                frame(false, Binary, b"b"),
            ]),
            1002,
            "expected a continuation frame",
        ),
        (
            "invalid UTF-8 split across fragments".into(),
            cat(&[
                frame(false, Text, b"ok \xe2\x82"),
                frame(true, Continuation, b"\x28"),
            ]),
            1007,
            utf8,
        ),
        (
            "a surrogate split across fragments".into(),
            cat(&[
                frame(false, Text, b"\xed"),
                frame(false, Continuation, b"\xa0"),
                frame(true, Continuation, b"\x80"),
            ]),
            1007,
            utf8,
        ),
        (
            "a sequence cut off by the final fragment".into(),
            cat(&[
                frame(false, Text, b"abc"),
                frame(true, Continuation, b"\xf0\x9f\x98"),
            ]),
            1007,
            utf8,
        ),
        (
            "invalid UTF-8 in one frame".into(),
            frame(true, Text, b"\xc0\x80"),
            1007,
            utf8,
        ),
        (
            "a one-byte close payload".into(),
            frame(true, Close, &[0x03]),
            1002,
            "close payload of one byte",
        ),
        (
            "a close reason that is not UTF-8".into(),
            frame(true, Close, &close_payload(1000, b"bye \xff")),
            1007,
            utf8,
        ),
    ];
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        cases.push((
            format!("reserved opcode {op:#x}"),
            raw_header(0x80 | op, &[0]),
            1002,
            reserved_op,
        ));
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        cases.push((
            format!("close code {code}"),
            frame(true, Close, &close_payload(code, b"")),
            1002,
            bad_close,
        ));
    }
    for (what, bytes, code, reason) in &cases {
        let mut c = RawClient::open(addr);
        c.send_raw(bytes);
        let (got, why) = read_close(&mut c, what);
        assert_eq!((got, why.as_str()), (*code, *reason), "{what}");
        assert_eq!(c.read_to_eof().expect("the server closes"), 0, "{what}");
    }
    // Legal counterparts: codes a client may send are echoed; valid UTF-8 split anywhere is a message.
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
        let mut c = RawClient::open(addr);
        c.send_frame(true, Close, &close_payload(code, "reason ✓".as_bytes()));
        assert_eq!(read_close(&mut c, "legal close").0, code);
    }
    let mut c = RawClient::open(addr);
    let euro = "€ and 😀".as_bytes();
    c.send_raw(&cat(&[
        frame(false, Text, &euro[..1]),
        frame(false, Continuation, &euro[1..6]),
        frame(true, Continuation, &euro[6..]),
    ]));
    let f = c.read_frame().expect("echo");
    assert_eq!((f.opcode, f.payload.as_slice()), (1, euro));

    still_served(&mut bystander);
    let stats = server.handle().stats();
    assert_eq!(stats.protocol_errors, cases.len() as u64);
    server.shutdown();
}

/// Gigabytes declared and then a stall: with the default limits, 1009 at once from the header alone;
/// with limits raised above the declared size, the server holds only what actually arrived (nothing is
/// reserved for the declared length) and the idle timeout closes the stalled connections with 1001.
#[test]
fn gigabyte_declared_lengths_allocate_nothing() {
    let _g = exclusive();
    let mut cfg = config();
    cfg.threads = 64;
    let server = server_with(cfg, Echo);
    let mut bystander = RawClient::open(server.local_addr());
    let before = rss_kib();
    let mut attackers = Vec::new();
    for _ in 0..50 {
        let mut c = RawClient::open(server.local_addr());
        let started = Instant::now();
        c.send_raw(&raw_header(0x82, &[127, 0, 0, 0, 0x40, 0, 0, 0, 0])); // 256 GiB
        let (code, reason) = read_close(&mut c, "256 GiB declared");
        assert_eq!((code, reason.as_str()), (1009, "frame too large"));
        assert!(started.elapsed() < Duration::from_secs(2));
        attackers.push(c);
    }
    let after = rss_kib();
    assert!(
        after < before + 4 * 1024,
        "RSS went from {before} KiB to {after} KiB"
    );
    drop(attackers);
    still_served(&mut bystander);
    server.shutdown();

    let mut cfg = config();
    cfg.limits.max_message_size = 3 << 30;
    cfg.limits.max_frame_size = 3 << 30;
    cfg.limits.idle_timeout = Some(Duration::from_millis(500));
    cfg.threads = 24;
    let server = server_with(cfg, Echo);
    let mut bystander = RawClient::open(server.local_addr());
    let before = rss_kib();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut c = RawClient::open(server.local_addr());
        // 2 GiB declared, 64 KiB sent, then nothing.
        c.send_raw(&raw_header(0x82, &[127, 0, 0, 0, 0, 0x80, 0, 0, 0]));
        c.send_raw(&[0x5a; 64 * 1024]);
        stalled.push(c);
    }
    std::thread::sleep(Duration::from_millis(200));
    let during = rss_kib();
    // 20 x 64 KiB arrived (and 20 read buffers of up to 128 KiB); 40 GiB were declared.
    assert!(
        during < before + 8 * 1024,
        "RSS went from {before} KiB to {during} KiB while stalled"
    );
    still_served(&mut bystander);
    for c in &mut stalled {
        let (code, reason) = read_close(c, "stalled giant frame");
        assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    }
    server.shutdown();
}

/// A fragmented message whose final fragment never comes, from a client that then goes quiet, is closed
/// with 1001 at the idle timeout; the bystander, which keeps talking, is not.
#[test]
fn unfinished_fragmented_message_then_silence_is_closed_at_the_idle_timeout() {
    let _g = shared();
    let mut cfg = config();
    cfg.limits.idle_timeout = Some(Duration::from_millis(400));
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let mut c = RawClient::open(addr);
    let started = Instant::now();
    c.send_frame(false, OpCode::Text, b"the beginning of");
    c.send_frame(false, OpCode::Continuation, b" something that never ends");
    // The bystander stays active meanwhile, so the idle timeout never catches it.
    while !readable(&c.stream, Duration::from_millis(50)) {
        echo(&mut bystander, b"tick");
        assert!(started.elapsed() < Duration::from_secs(5), "never closed");
    }
    let (code, reason) = read_close(&mut c, "unfinished message");
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(2),
        "closed after {took:?}"
    );
    still_served(&mut bystander);
    assert_eq!(server.handle().stats().idle_timeouts, 1);
    server.shutdown();
}

/// A million empty continuation frames inside one message, then the final fragment: the message
/// arrives whole, in bounded time and memory.
#[test]
fn a_million_empty_continuations_cost_bounded_time_and_memory() {
    let _g = exclusive();
    let server = echo_server();
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let mut c = RawClient::open(addr);
    let empty = frame(false, OpCode::Continuation, b"");
    let mut bytes = frame(false, OpCode::Text, b"He");
    bytes.reserve(empty.len() * 1_000_000 + 16);
    for _ in 0..1_000_000 {
        bytes.extend_from_slice(&empty);
    }
    bytes.extend(frame(true, OpCode::Continuation, b"llo"));
    let before = rss_kib();
    let started = Instant::now();
    let mut stream: TcpStream = c.stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        stream.write_all(&bytes).expect("write");
    });
    // The bystander is served while the connection grinds through the frames.
    let rtt = echo(&mut bystander, b"meanwhile");
    assert!(rtt < Duration::from_secs(2), "bystander waited {rtt:?}");
    // Generous: a debug build on a shared 2-core machine; the work is linear (about a microsecond per
    // frame when the machine is idle).
    let _ = c.stream.set_read_timeout(Some(Duration::from_secs(60)));
    let f = c.read_frame().expect("the assembled message");
    writer.join().expect("writer");
    let took = started.elapsed();
    assert_eq!(
        (f.fin, f.opcode, f.payload.as_slice()),
        (true, 1, &b"Hello"[..])
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!("a million empty continuations: {took:?}");
    let after = rss_kib();
    // The 6 MB of frames belong to the test's buffer, freed by now; the server holds a read buffer.
    assert!(
        after < before + 4 * 1024,
        "RSS went from {before} KiB to {after} KiB"
    );
    still_served(&mut bystander);
    server.shutdown();
}

/// Data frames after a client's close are ignored: the close is answered, nothing is echoed, and the
/// connection ends.
#[test]
fn data_after_a_close_is_ignored() {
    let _g = shared();
    let server = echo_server();
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let mut c = RawClient::open(addr);
    c.send_raw(&cat(&[
        frame(true, OpCode::Close, &close_payload(1000, b"bye")),
        frame(true, OpCode::Text, b"after the close"),
        frame(true, OpCode::Binary, &[1, 2, 3]),
        frame(true, OpCode::Ping, b"still there?"),
    ]));
    let first = c.read_frame().expect("the close answer");
    assert_eq!((first.opcode, first.close_code()), (8, Some(1000)));
    // More junk after the close; the server is draining and drops it.
    let _ = c.stream.write_all(&frame(true, OpCode::Text, b"more"));
    assert_eq!(
        c.read_to_eof().expect("EOF"),
        0,
        "nothing after the close answer"
    );
    still_served(&mut bystander);
    assert_eq!(
        server.handle().stats().messages_in,
        1,
        "only the bystander's"
    );
    server.shutdown();
}

/// A client that floods pings and never reads the pongs: its worker stops reading once the pongs back
/// up (back-pressure), and the client is evicted at the send timeout; the bystander is answered
/// promptly throughout.
#[test]
fn a_ping_flood_that_never_reads_pongs_is_evicted() {
    let _g = shared();
    let sent = non_reader_is_evicted(
        frame(true, OpCode::Ping, &[b'p'; 125]),
        b"ping flood next door",
    );
    assert!(sent > 0);
}
