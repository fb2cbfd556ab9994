//! Codec micro-benchmarks: unmasking beside memcpy, frame decode and encode, the upgrade parse and
//! the accept key, each with tungstenite's public codec as the peer row where it has one.
//!
//! `cargo bench --bench codec` (about three minutes on a 2-core machine). Criterion prints time and
//! throughput per row; compare rows of the same group.
//!
//! Peer rows and what they cover:
//! - unmasking: tungstenite's `apply_mask` lives in a private module (`protocol::frame::mask`), so
//!   there is no direct row; its masking shows up inside `Frame::format` of a masked frame (the
//!   `encode_masked` group), beside our `encode_masked_frame`.
//! - decode: `FrameHeader::parse` (header only) is public and compared directly. For whole frames
//!   the only public path is `WebSocket::read` over a stream; it is fed from an in-memory stream, so
//!   its row includes the copy into its read buffer and into the message `Vec` it returns (ours
//!   unmasks in place and borrows: that difference is the design, not a measurement artefact).
//! - handshake: `<handshake::server::Request as TryParse>::try_parse` + `create_response`, and
//!   `derive_accept_key`.

use std::hint::black_box;
use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hydrogen_ws_protocol::{
    accept_key, apply_mask, encode_frame, encode_masked_frame, parse_request, Event, FrameDecoder,
    FrameHeader, HandshakeLimits, OpCode, Parsed, RequestParser, Role, Session, SessionConfig,
};
use tungstenite::handshake::machine::TryParse;
use tungstenite::protocol::frame::coding::{Data, OpCode as TOpCode};
use tungstenite::protocol::frame::{Frame as TFrame, FrameHeader as TFrameHeader};
use tungstenite::protocol::{Role as TRole, WebSocket, WebSocketConfig};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KIB: usize = 1024;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(20)
        .configure_from_args()
}

fn size_name(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{}MiB", n >> 20),
        n if n >= KIB => format!("{}KiB", n / KIB),
        n => format!("{n}B"),
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8 & 0x7f).collect()
}

/// Unmasking at every alignment beside `copy_from_slice` of the same size.
fn mask(c: &mut Criterion) {
    for size in [16, KIB, 64 * KIB, 1 << 20] {
        let mut g = c.benchmark_group(format!("mask/{}", size_name(size)));
        g.throughput(Throughput::Bytes(size as u64));
        let src = payload(size + 8);
        let mut dst = vec![0u8; size + 8];
        g.bench_function("memcpy", |b| {
            b.iter(|| {
                dst[..size].copy_from_slice(black_box(&src[..size]));
                black_box(&mut dst);
            })
        });
        // `offset` is the payload position of data[0] (the key rotation); the slice stays aligned.
        let mut data = payload(size + 8);
        for offset in 0..4u64 {
            g.bench_with_input(
                BenchmarkId::new("apply_mask/offset", offset),
                &offset,
                |b, &o| b.iter(|| apply_mask(black_box(&mut data[..size]), MASK, o)),
            );
        }
        // A slice starting 1..3 bytes past an aligned address (as after a 2-byte or 6-byte header).
        for shift in 1..4usize {
            g.bench_with_input(
                BenchmarkId::new("apply_mask/misaligned", shift),
                &shift,
                |b, &s| b.iter(|| apply_mask(black_box(&mut data[s..s + size]), MASK, 0)),
            );
        }
        g.finish();
    }
}

/// A masked client frame as it arrives on the wire.
fn masked_frame(opcode: OpCode, mask: [u8; 4], len: usize) -> Vec<u8> {
    encode_masked_frame(true, opcode, mask, &payload(len))
}

/// An endless in-memory stream repeating one frame, for tungstenite's `WebSocket::read`.
struct Repeat {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let take = (self.data.len() - self.pos).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&self.data[self.pos..self.pos + take]);
            n += take;
            self.pos = (self.pos + take) % self.data.len();
        }
        Ok(n)
    }
}

impl Write for Repeat {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decoding masked client frames. Decoding unmasks in place and leaves the header alone, so the
/// same buffer is decoded again each iteration (its payload flips between masked and clear: the
/// work is the same). Text rows use an all-zero key so the payload stays valid UTF-8.
fn decode(c: &mut Criterion) {
    for size in [64, 64 * KIB] {
        let mut g = c.benchmark_group(format!("decode/{}", size_name(size)));
        g.throughput(Throughput::Bytes(size as u64));

        let mut wire = masked_frame(OpCode::Binary, MASK, size);
        let mut decoder = FrameDecoder::new(Role::Server, 1 << 20);
        g.bench_function("ours FrameDecoder::decode", |b| {
            b.iter(|| {
                let (n, chunk) = decoder.decode(black_box(&mut wire)).expect("valid");
                black_box(chunk.map(|c| c.data.len()));
                n
            })
        });
        let mut session = Session::new(SessionConfig::default());
        g.bench_function("ours Session::read binary", |b| {
            b.iter(|| {
                let (n, event) = session.read(black_box(&mut wire)).expect("valid");
                assert!(matches!(event, Event::Message(_)));
                n
            })
        });
        let mut text = masked_frame(OpCode::Text, [0; 4], size);
        g.bench_function("ours Session::read text", |b| {
            b.iter(|| {
                let (n, event) = session.read(black_box(&mut text)).expect("valid");
                assert!(matches!(event, Event::Message(_)));
                n
            })
        });
        g.bench_function("ours FrameHeader::parse", |b| {
            b.iter(|| FrameHeader::parse(black_box(&wire)).expect("valid"))
        });

        g.bench_function("tungstenite FrameHeader::parse", |b| {
            let mut cursor = Cursor::new(&wire[..]);
            b.iter(|| {
                cursor.set_position(0);
                TFrameHeader::parse(black_box(&mut cursor)).expect("valid")
            })
        });
        let stream = Repeat {
            data: masked_frame(OpCode::Binary, MASK, size),
            pos: 0,
        };
        let mut ws = WebSocket::from_raw_socket(
            stream,
            TRole::Server,
            Some(WebSocketConfig {
                max_frame_size: Some(1 << 20),
                max_message_size: Some(1 << 20),
                ..WebSocketConfig::default()
            }),
        );
        g.bench_function("tungstenite WebSocket::read binary (+copies)", |b| {
            b.iter(|| black_box(ws.read().expect("valid")))
        });
        let stream = Repeat {
            data: masked_frame(OpCode::Text, [0; 4], size),
            pos: 0,
        };
        let mut ws = WebSocket::from_raw_socket(stream, TRole::Server, None);
        g.bench_function("tungstenite WebSocket::read text (+copies)", |b| {
            b.iter(|| black_box(ws.read().expect("valid")))
        });
        g.finish();
    }
}

/// Encoding a server frame (header + payload into one buffer), and a masked client frame.
fn encode(c: &mut Criterion) {
    for size in [64, 64 * KIB] {
        let data = payload(size);
        let mut g = c.benchmark_group(format!("encode/{}", size_name(size)));
        g.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(size + 16);
        g.bench_function("ours FrameHeader::encode + payload", |b| {
            b.iter(|| {
                out.clear();
                let h = FrameHeader::new(true, OpCode::Binary, None, size as u64).encode();
                out.extend_from_slice(&h);
                out.extend_from_slice(black_box(&data));
                black_box(&out);
            })
        });
        g.bench_function("ours FrameHeader::encode only", |b| {
            b.iter(|| FrameHeader::new(true, OpCode::Binary, None, black_box(size as u64)).encode())
        });
        g.bench_function("ours encode_frame (allocates)", |b| {
            b.iter(|| encode_frame(true, OpCode::Binary, black_box(&data)))
        });
        g.bench_function("tungstenite FrameHeader::format + payload", |b| {
            let header = TFrameHeader {
                opcode: TOpCode::Data(Data::Binary),
                ..TFrameHeader::default()
            };
            b.iter(|| {
                out.clear();
                header.format(size as u64, &mut out).expect("format");
                out.extend_from_slice(black_box(&data));
                black_box(&out);
            })
        });
        g.bench_function("tungstenite Frame::format (payload Vec clone)", |b| {
            b.iter(|| {
                out.clear();
                let frame =
                    TFrame::message(black_box(&data).clone(), TOpCode::Data(Data::Binary), true);
                frame.format(&mut out).expect("format");
                black_box(&out);
            })
        });
        g.finish();

        // Client side: header + masked copy of the payload.
        let mut g = c.benchmark_group(format!("encode_masked/{}", size_name(size)));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("ours encode_masked_frame", |b| {
            b.iter(|| encode_masked_frame(true, OpCode::Binary, MASK, black_box(&data)))
        });
        g.bench_function("tungstenite Frame::format masked", |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(size + 14);
                let mut frame =
                    TFrame::message(black_box(&data).clone(), TOpCode::Data(Data::Binary), true);
                frame.header_mut().mask = Some(MASK);
                frame.format(&mut out).expect("format");
                out
            })
        });
        g.finish();
    }
}

/// A browser-like upgrade request (Chrome's header set).
const REQUEST: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
Host: server.example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://server.example.com:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    let limits = HandshakeLimits::default();
    g.bench_function("ours parse_request + websocket()", |b| {
        b.iter(
            || match parse_request(black_box(REQUEST), &limits).expect("valid") {
                Parsed::Complete { request, .. } => request.websocket().expect("upgrade"),
                Parsed::Partial => unreachable!("complete request"),
            },
        )
    });
    g.bench_function("ours RequestParser::push + websocket() + response()", |b| {
        b.iter(|| {
            let mut parser = RequestParser::new(limits);
            let request = parser
                .push(black_box(REQUEST))
                .expect("valid")
                .expect("complete");
            request.websocket().expect("upgrade").response(None)
        })
    });
    g.bench_function("tungstenite Request::try_parse + create_response", |b| {
        b.iter(|| {
            let (_, request) =
                tungstenite::handshake::server::Request::try_parse(black_box(REQUEST))
                    .expect("valid")
                    .expect("complete");
            tungstenite::handshake::server::create_response(&request).expect("upgrade")
        })
    });
    g.bench_function("ours accept_key", |b| {
        b.iter(|| accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });
    g.bench_function("tungstenite derive_accept_key", |b| {
        b.iter(|| tungstenite::handshake::derive_accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = mask, decode, encode, handshake
}
criterion_main!(benches);
