//! Test helpers: a server on 127.0.0.1:0 and a raw WebSocket client that speaks bytes.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use hydrogen_ws::{Config, Echo, Handler, Server};
use hydrogen_ws_protocol::{encode_masked_frame, OpCode};

/// A configuration for tests: a free port, a few workers, quiet logs.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        mode: hydrogen_ws::Mode::Echo,
        threads: 8,
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// An echo server with the test configuration.
pub fn echo_server() -> Server {
    Server::start(config(), Echo).expect("server starts")
}

/// A server with a given configuration and handler.
pub fn server_with(config: Config, handler: impl Handler) -> Server {
    Server::start(config, handler).expect("server starts")
}

/// A well-formed upgrade request.
pub fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A parsed HTTP response head and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    /// The RSV bits (RSV1 = 0b100).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A client that writes exactly the bytes it is told to.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// A client on a stream that has completed the upgrade already.
    pub fn from_stream(stream: TcpStream) -> RawClient {
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes the upgrade; panics unless the server answers 101.
    pub fn open(addr: SocketAddr) -> RawClient {
        let mut c = RawClient::connect(addr);
        c.send_raw(upgrade_request("").as_bytes());
        let r = c.read_response().expect("101 response");
        assert_eq!(r.status, 101, "{r:?}");
        c
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let frame = encode_masked_frame(fin, opcode, [0x37, 0xfa, 0x21, 0x3d], payload);
        self.send_raw(&frame);
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads an HTTP response head (and a Content-Length body).
    pub fn read_response(&mut self) -> io::Result<HttpResponse> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut r = HttpResponse {
            status,
            head,
            body: String::new(),
        };
        let len: usize = r
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < len {
            if self.fill()? == 0 {
                break;
            }
        }
        let take = len.min(self.buf.len());
        r.body = String::from_utf8_lossy(&self.buf[..take]).into_owned();
        self.buf.drain(..take);
        Ok(r)
    }

    /// Reads one frame from the server (which never masks).
    pub fn read_frame(&mut self) -> io::Result<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads frames until a close frame and returns its code (`None` for an empty close).
    pub fn read_close(&mut self) -> io::Result<Option<u16>> {
        loop {
            let f = self.read_frame()?;
            if f.opcode == 8 {
                return Ok(f.close_code());
            }
        }
    }

    /// After the close handshake: reads until EOF, returning the bytes seen.
    pub fn read_to_eof(&mut self) -> io::Result<usize> {
        let mut total = self.buf.len();
        self.buf.clear();
        loop {
            let n = self.fill()?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
            self.buf.clear();
        }
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, mut pos) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
    let payload = buf.get(pos..pos + len)?.to_vec();
    pos += len;
    Some((
        ServerFrame {
            fin: buf[0] & 0x80 != 0,
            rsv: (buf[0] >> 4) & 0x7,
            opcode: buf[0] & 0x0f,
            payload,
        },
        pos,
    ))
}

/// Completes an upgrade on a socket whose receive buffer is made small before connecting, so that a
/// client that stops reading fills it quickly. Returns the stream, past the 101.
pub fn open_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(upgrade_request("").as_bytes())
        .expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("101"), 1, "EOF in the 101");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    stream
}

/// Polls `cond` every 10 ms until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
