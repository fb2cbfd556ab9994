//! Fuzzing, replayed by `cargo test`.
//!
//! - Every input a fuzz target ever failed on is kept in `tests/fuzz-regressions/<target>/`,
//!   named after the bug, and replayed here through the same `hydrogen_ws_fuzzing`
//!   function the target calls; the bug's root cause is written next to its test below.
//! - The seeds in `fuzz/seeds/<target>/` are written from the scenarios in this file (so they
//!   stay meaningful when an input format changes) and replayed too. After changing a scenario
//!   or a format, rewrite them with
//!   `HYDROGEN_WRITE_SEEDS=1 cargo test -p hydrogen-ws-fuzzing --test fuzz_regressions`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hydrogen_ws_fuzzing as fuzzing;
use hydrogen_ws_fuzzing::{CloseBody, Op, RoundtripInput, SessionInput};
use hydrogen_ws_protocol::{encode_frame, encode_masked_frame, parse_request, OpCode, Parsed};

const TARGETS: [&str; 7] = [
    "handshake",
    "frame_decoder",
    "session",
    "utf8",
    "roundtrip",
    "deflate_offer",
    "inflate",
];

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The files of `root/<target>/`, sorted by name (none if the folder does not exist).
fn files(root: &Path, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(root.join(target)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let path = e.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).expect("readable file"))
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    out.sort();
    out
}

#[test]
fn crash_inputs_replay() {
    let root = dir("tests/fuzz-regressions");
    // A folder per target appears with its first crash input; the root must exist (a misnamed root
    // would otherwise replay nothing and pass).
    assert!(
        root.join("README.md").is_file(),
        "{} is missing",
        root.display()
    );
    for target in TARGETS {
        for (name, data) in files(&root, target) {
            eprintln!("replaying {target}/{name}");
            assert!(fuzzing::replay(target, &data), "unknown target {target}");
        }
    }
}

#[test]
fn seeds_replay() {
    let root = dir("../../fuzz/seeds");
    for target in TARGETS {
        for (name, data) in files(&root, target) {
            assert!(fuzzing::replay(target, &data), "{target}/{name}");
        }
    }
}

/// The committed seeds are exactly what [`seeds`] writes (or, with `HYDROGEN_WRITE_SEEDS` set,
/// write them).
#[test]
fn seeds_are_up_to_date() {
    let root = dir("../../fuzz/seeds");
    let want = seeds();
    if std::env::var_os("HYDROGEN_WRITE_SEEDS").is_some() {
        for target in TARGETS {
            let d = root.join(target);
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
        }
        for ((target, name), data) in &want {
            fs::write(root.join(target).join(name), data).unwrap();
        }
        return;
    }
    if !root.exists() {
        return; // the crate on its own, outside the repository
    }
    let mut have = BTreeMap::new();
    for target in TARGETS {
        for (name, data) in files(&root, target) {
            have.insert((target.to_owned(), name), data);
        }
    }
    let names = |m: &BTreeMap<(String, String), Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&have),
        names(&want),
        "seed files; see the module docs to rewrite"
    );
    for (key, data) in &want {
        assert!(have.get(key) == Some(data), "{key:?} is stale");
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// RFC 6455 section 1.2, the client's opening handshake.
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// What Chrome sends for `new WebSocket("ws://localhost:8080/ws")`.
const CHROME_REQUEST: &str = "GET /ws HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
Chrome/120.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// What Firefox sends for `new WebSocket("ws://localhost:8080/ws?key=k1", ["hydrogen.v1"])`.
const FIREFOX_REQUEST: &str = "GET /ws?key=k1 HTTP/1.1\r\n\
Host: localhost:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Protocol: hydrogen.v1\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: 2PTfUl6XpFdqI0xeRtcH7g==\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: same-origin\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\r\n";

fn handshake_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut pipelined = RFC_REQUEST.as_bytes().to_vec();
    pipelined.extend(encode_masked_frame(true, OpCode::Text, MASK, b"Hello"));
    let swap = |from: &str, to: &str| RFC_REQUEST.replacen(from, to, 1).into_bytes();
    let many_headers: String = (0..8).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    vec![
        ("rfc6455-1.2", RFC_REQUEST.as_bytes().to_vec()),
        ("chrome", CHROME_REQUEST.as_bytes().to_vec()),
        ("firefox", FIREFOX_REQUEST.as_bytes().to_vec()),
        ("pipelined-frame", pipelined),
        (
            "plain-get",
            b"GET /status HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n".to_vec(),
        ),
        ("post", swap("GET ", "POST ")),
        ("http10", swap("HTTP/1.1", "HTTP/1.0")),
        (
            "absolute-form-target",
            swap("GET /chat", "GET http://server.example.com/chat"),
        ),
        (
            "h2c-upgrade",
            b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
                .to_vec(),
        ),
        (
            "http2-preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("version-8", swap("Version: 13", "Version: 8")),
        (
            "bad-key",
            swap("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
        ),
        (
            "duplicate-key",
            swap(
                "Origin",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin",
            ),
        ),
        ("body", swap("Origin", "Content-Length: 5\r\nOrigin")),
        (
            "long-target",
            swap("/chat", &format!("/{}", "a".repeat(40))),
        ),
        (
            "many-headers",
            swap("Origin", &format!("{many_headers}Origin")),
        ),
        ("bare-lf", RFC_REQUEST.replace("\r\n", "\n").into_bytes()),
        ("partial", RFC_REQUEST.as_bytes()[..60].to_vec()),
    ]
}

/// The frames of a normal session as the server receives them (masked), as the client does
/// (unmasked), and some broken ones.
fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let whole = |bytes: &[u8]| [&[0u8][..], bytes].concat();
    let session_masked: Vec<u8> = [
        encode_masked_frame(true, OpCode::Text, MASK, b"Hello"),
        encode_masked_frame(false, OpCode::Text, MASK, "κό".as_bytes()),
        encode_masked_frame(true, OpCode::Ping, MASK, b"ping"),
        encode_masked_frame(true, OpCode::Continuation, MASK, "σμε".as_bytes()),
        encode_masked_frame(true, OpCode::Binary, MASK, &[0xAB; 300]),
        encode_masked_frame(true, OpCode::Close, MASK, b"\x03\xe8bye"),
    ]
    .concat();
    let session_unmasked: Vec<u8> = [
        encode_frame(true, OpCode::Text, b"Hello"),
        encode_frame(true, OpCode::Pong, b""),
        encode_frame(true, OpCode::Close, b"\x03\xe9"),
    ]
    .concat();
    let mut big_header = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
    big_header.extend(MASK);
    big_header.extend([1, 2, 3, 4]);
    vec![
        // RFC 6455 section 5.7.
        ("rfc-text-unmasked", whole(b"\x81\x05Hello")),
        (
            "rfc-text-masked",
            whole(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
        ),
        ("rfc-fragmented", whole(b"\x01\x03Hel\x80\x02lo")),
        ("rfc-ping", whole(b"\x89\x05Hello")),
        (
            "rfc-pong-masked",
            whole(b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
        ),
        (
            "rfc-256-binary",
            whole(&encode_frame(true, OpCode::Binary, &[7; 256])),
        ),
        ("rfc-64k-header", whole(&big_header)),
        ("session-masked", whole(&session_masked)),
        // The same, read in pieces of 1, 3 and 7 bytes, with the frame limit at 125 bytes.
        (
            "session-masked-pieces",
            [&[0x33, 0, 2, 6][..], &session_masked].concat(),
        ),
        ("session-unmasked", whole(&session_unmasked)),
        ("reserved-opcode", whole(b"\x83\x80\0\0\0\0")),
        ("reserved-bits", whole(b"\xc1\x80\0\0\0\0")),
        (
            "non-minimal-length",
            whole(b"\x82\xfe\x00\x05\0\0\0\0hello"),
        ),
        ("length-top-bit", whole(b"\x82\xff\x80\0\0\0\0\0\0\0")),
        ("control-fragmented", whole(b"\x09\x80\0\0\0\0")),
    ]
}

fn utf8_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let whole = |bytes: &[u8]| [&[0u8][..], bytes].concat();
    vec![
        ("ascii", whole(b"Hello, world")),
        ("autobahn-6.2", whole("Hello-µ@ßöäüàá-UTF-8!!".as_bytes())),
        // "κόσμε" in pieces of 1, 2 and 3 bytes: every character split somewhere.
        (
            "kosme-pieces",
            [&[0x03, 0, 1, 2][..], "κόσμε".as_bytes()].concat(),
        ),
        ("four-byte", whole("😀 \u{10FFFF} \u{FFFF}".as_bytes())),
        (
            "surrogate",
            whole(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
        ),
        (
            "above-max",
            [&[0x01, 3][..], b"ok \xf4\x90\x80\x80"].concat(),
        ),
        ("overlong", whole(b"\xc0\xaf \xe0\x80\xaf")),
        ("truncated", whole(b"abc\xf0\x9f\x98")),
    ]
}

fn text(s: &str, fragments: &[u8]) -> Op {
    Op::Text {
        text: s.into(),
        fragments: fragments.to_vec(),
        corrupt: None,
    }
}

fn close(code: u16, reason: &str) -> Op {
    Op::Close(CloseBody::Code {
        code,
        reason: reason.into(),
    })
}

fn session_seeds() -> Vec<(&'static str, SessionInput)> {
    let base = SessionInput {
        client: false,
        max_frame_size: 1024,
        max_message_size: 4096,
        mask: MASK,
        truncate: 0,
        reads: Vec::new(),
        ops: vec![
            text("Hello", &[]),
            text("κόσμε", &[1, 2, 3]),
            Op::Message {
                text: false,
                payload: (0..=255).collect(),
                fragments: vec![100, 100],
                ping_after: 1,
            },
            Op::Ping(b"ping".to_vec()),
            Op::Pong(Vec::new()),
            close(1000, "bye"),
            Op::LocalClose,
        ],
    };
    let with = |ops: Vec<Op>| SessionInput {
        ops,
        ..base.clone()
    };
    vec![
        ("normal", base.clone()),
        (
            "normal-in-pieces",
            SessionInput {
                reads: vec![0, 2, 6, 40],
                ..base.clone()
            },
        ),
        (
            "client",
            SessionInput {
                client: true,
                truncate: 3,
                ..base.clone()
            },
        ),
        (
            "we-close-first",
            with(vec![
                text("a", &[]),
                Op::LocalClose,
                text("discarded", &[3]),
                Op::Ping(b"still answered".to_vec()),
                close(1001, ""),
            ]),
        ),
        (
            "bad-utf8-across-fragments",
            with(vec![
                text("ok", &[]),
                Op::Message {
                    text: true,
                    payload: b"\xce\xba\xed\xa0\x80".to_vec(),
                    fragments: vec![1, 2],
                    ping_after: 2,
                },
            ]),
        ),
        (
            "corrupt-text",
            with(vec![Op::Text {
                text: "naïve café".into(),
                fragments: vec![3, 4],
                corrupt: Some((3, 0xff)),
            }]),
        ),
        (
            "close-codes",
            with(vec![
                close(4000, "app"),
                Op::Close(CloseBody::OneByte(3)),
                close(1005, ""),
            ]),
        ),
        ("close-1005", with(vec![close(1005, "")])),
        (
            "close-one-byte",
            with(vec![Op::Close(CloseBody::OneByte(3))]),
        ),
        (
            "close-bad-reason",
            with(vec![Op::Close(CloseBody::Raw(b"\x03\xe8\xff".to_vec()))]),
        ),
        (
            "close-empty",
            with(vec![Op::Close(CloseBody::Empty), text("x", &[])]),
        ),
        (
            "oversize-frame",
            SessionInput {
                max_frame_size: 125,
                max_message_size: 200,
                ops: vec![
                    text("fits", &[]),
                    Op::Oversize {
                        opcode: 2,
                        fin: true,
                        len: 1 << 40,
                    },
                ],
                ..base.clone()
            },
        ),
        (
            "oversize-message",
            SessionInput {
                max_frame_size: 125,
                max_message_size: 200,
                ops: vec![Op::Message {
                    text: false,
                    payload: vec![1; 250],
                    fragments: vec![100, 100],
                    ping_after: 0,
                }],
                ..base.clone()
            },
        ),
        (
            "bad-frames",
            with(vec![
                Op::Frame {
                    fin: true,
                    rsv: 0,
                    opcode: 0,
                    wrong_mask: false,
                    payload: b"orphan".to_vec(),
                },
                Op::Frame {
                    fin: true,
                    rsv: 4,
                    opcode: 1,
                    wrong_mask: false,
                    payload: b"rsv".to_vec(),
                },
            ]),
        ),
        (
            "interleaved-start",
            with(vec![
                Op::Frame {
                    fin: false,
                    rsv: 0,
                    opcode: 1,
                    wrong_mask: false,
                    payload: b"a".to_vec(),
                },
                Op::Frame {
                    fin: true,
                    rsv: 0,
                    opcode: 2,
                    wrong_mask: false,
                    payload: b"b".to_vec(),
                },
            ]),
        ),
        (
            "unmasked",
            with(vec![Op::Frame {
                fin: true,
                rsv: 0,
                opcode: 1,
                wrong_mask: true,
                payload: b"x".to_vec(),
            }]),
        ),
        ("long-ping", with(vec![Op::Ping(vec![b'p'; 126])])),
        (
            "raw-tail",
            with(vec![
                text("Hello", &[]),
                Op::Raw(b"\x81\x85\x00\x00\x00\x00abc".to_vec()),
            ]),
        ),
    ]
}

fn roundtrip_seeds() -> Vec<(&'static str, RoundtripInput)> {
    let frame = |fin: bool, opcode: u8, payload: &[u8]| RoundtripInput {
        fin,
        rsv: 0,
        opcode,
        masked: true,
        mask: MASK,
        len: payload.len() as u64,
        cut: 3,
        grow: 0,
        payload: payload.to_vec(),
    };
    vec![
        ("text", frame(true, 1, b"Hello")),
        ("fragment", frame(false, 1, b"Hel")),
        ("continuation", frame(true, 0, b"lo")),
        ("ping", frame(true, 4, b"Hello")),
        ("close", frame(true, 3, b"\x03\xe8bye")),
        (
            "binary-256",
            RoundtripInput {
                grow: 256,
                ..frame(true, 2, &[1, 2, 3])
            },
        ),
        (
            "binary-64k",
            RoundtripInput {
                grow: 65_536,
                len: 1 << 33,
                ..frame(true, 2, b"abcdefg")
            },
        ),
        (
            "rsv",
            RoundtripInput {
                rsv: 4,
                ..frame(true, 1, b"deflated?")
            },
        ),
        ("control-fragmented", frame(false, 4, b"")),
        ("control-too-long", frame(true, 5, &[9; 126])),
    ]
}

/// Every seed file: (target, name) -> bytes.
fn seeds() -> BTreeMap<(String, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut add = |target: &str, name: &str, data: Vec<u8>| {
        out.insert((target.to_owned(), name.to_owned()), data);
    };
    for (name, data) in handshake_seeds() {
        add("handshake", name, data);
    }
    for (name, data) in frame_seeds() {
        add("frame_decoder", name, data);
    }
    for (name, data) in utf8_seeds() {
        add("utf8", name, data);
    }
    for (name, input) in session_seeds() {
        let bytes = input.to_bytes();
        assert_eq!(SessionInput::from_bytes(&bytes), input, "session/{name}");
        add("session", name, bytes);
    }
    for (name, input) in roundtrip_seeds() {
        let bytes = input.to_bytes();
        assert_eq!(
            RoundtripInput::from_bytes(&bytes),
            input,
            "roundtrip/{name}"
        );
        add("roundtrip", name, bytes);
    }
    for (name, data) in deflate_offer_seeds() {
        add("deflate_offer", name, data);
    }
    for (name, data) in inflate_seeds() {
        add("inflate", name, data);
    }
    out
}

fn deflate_offer_seeds() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("chrome", "permessage-deflate; client_max_window_bits"),
        ("firefox", "permessage-deflate"),
        (
            "autobahn-13",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9, \
             permessage-deflate; server_max_window_bits=9\npermessage-deflate",
        ),
        (
            "every-parameter",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=\"8\"; client_max_window_bits=15",
        ),
        (
            "declined-then-accepted",
            "x-webkit-deflate-frame, permessage-deflate; foo=\"a,b\", \
             permessage-deflate; server_max_window_bits=16\npermessage-deflate; server_max_window_bits=10",
        ),
        ("duplicate", "permessage-deflate; client_max_window_bits; client_max_window_bits=9"),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.as_bytes().to_vec()))
    .collect()
}

/// A message for the `inflate` target: its 2-byte length (with `flags` in the top two bits) and bytes.
fn inflate_message(flags: u16, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("short") | (flags << 14);
    [&len.to_be_bytes()[..], body].concat()
}

fn inflate_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use hydrogen_ws_protocol::deflate::Deflater;
    let compress = |d: &mut Deflater, data: &[u8]| {
        let mut out = Vec::new();
        d.compress(data, &mut out).expect("compress");
        out
    };
    let json = br#"{"type":"status","printer":{"state":"printing","progress":42}}"#.repeat(8);
    let mut takeover = Deflater::new(15, false, 6);
    let first = compress(&mut takeover, &json);
    let second = compress(&mut takeover, &json);
    let bomb = compress(&mut Deflater::new(15, true, 9), &vec![0u8; 64 << 10]);
    vec![
        // RFC 7692 section 7.2.3: "Hello" twice with a shared context, a stored block, BFINAL.
        (
            "rfc-hello",
            [
                &[0x3f][..],
                &inflate_message(0, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
                &inflate_message(0, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
                &inflate_message(
                    0,
                    &[
                        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                    ],
                ),
                &inflate_message(0, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]),
            ]
            .concat(),
        ),
        (
            "json-takeover",
            [
                &[0x17][..],
                &inflate_message(0, &first),
                &inflate_message(2, &second),
            ]
            .concat(),
        ),
        ("bomb", [&[0x1f][..], &inflate_message(0, &bomb)].concat()),
        (
            "rsv1-on-ping",
            [&[0x2f][..], &inflate_message(1, b"")].concat(),
        ),
        (
            "corrupt",
            [&[0x2f][..], &inflate_message(0, &[0xff; 12])].concat(),
        ),
    ]
}

/// The browser and RFC requests really are accepted, so the seeds start on the 101 path.
#[test]
fn browser_seeds_are_accepted() {
    for request in [RFC_REQUEST, CHROME_REQUEST, FIREFOX_REQUEST] {
        let limits = Default::default();
        let Ok(Parsed::Complete { request, .. }) = parse_request(request.as_bytes(), &limits)
        else {
            panic!("incomplete: {request}");
        };
        assert!(request.websocket().is_ok(), "{request:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: one test per bug the fuzzers found, with its root cause.
