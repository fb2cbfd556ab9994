//! The client side of the opening handshake: one connection, or many from a few threads.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// The `Sec-WebSocket-Key` every bench client sends (the sample nonce of RFC 6455).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` that answers [`KEY`].
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Threads that open connections in parallel.
const CONNECT_THREADS: usize = 4;

/// The upgrade request for `path` on `host`.
pub fn request(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// An upgraded, blocking connection (TCP_NODELAY, no timeouts) and the bytes that came in behind
/// the 101.
pub type Opened = (TcpStream, Vec<u8>);

/// TCP connect, the upgrade request for `/`, and a 101 with the right accept value.
pub fn connect(addr: SocketAddr) -> Result<Opened, String> {
    let stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    upgrade(stream, addr)
}

/// Like [`connect`], from the local address `from` (a loopback alias such as 127.0.0.2, so that a
/// server's per-address limit counts this connection apart from the others).
pub fn connect_from(addr: SocketAddr, from: IpAddr) -> Result<Opened, String> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .map_err(|e| format!("bind {from}: {e}"))?;
    socket
        .connect_timeout(&addr.into(), CONNECT_TIMEOUT)
        .map_err(|e| format!("connect from {from}: {e}"))?;
    upgrade(socket.into(), addr)
}

/// The upgrade request for `/` on a connected `stream` (to `addr`), and a 101 with the right accept
/// value.
pub fn upgrade(stream: TcpStream, addr: SocketAddr) -> Result<Opened, String> {
    upgrade_with(stream, addr, "").map(|(opened, _)| opened)
}

/// Like [`upgrade`], for `path` (which may carry a query, such as `/?key=...`) on `host`.
pub fn upgrade_path(stream: TcpStream, host: &str, path: &str) -> Result<Opened, String> {
    upgrade_request(stream, host, path, "").map(|(opened, _)| opened)
}

/// [`upgrade`] with `extra` header lines (each ending in CRLF) in the request; also returns the
/// response head.
pub fn upgrade_with(
    stream: TcpStream,
    addr: SocketAddr,
    extra: &str,
) -> Result<(Opened, String), String> {
    upgrade_request(stream, &addr.to_string(), "/", extra)
}

/// The upgrade for `path` on `host` with `extra` header lines; the opened connection and the
/// response head.
fn upgrade_request(
    mut stream: TcpStream,
    host: &str,
    path: &str,
    extra: &str,
) -> Result<(Opened, String), String> {
    let io = |e: io::Error| e.to_string();
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(io)?;
    let mut req = request(host, path);
    req.insert_str(req.len() - 2, extra);
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("sending the upgrade request: {e}"))?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 8192 || Instant::now() > deadline {
            return Err("no complete response head".into());
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "connection closed during the handshake after {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the upgrade response: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.1 101") {
        return Err(format!("expected 101, got {status_line:?}"));
    }
    let accept_ok = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == ACCEPT
        })
    });
    if !accept_ok {
        return Err(format!("wrong or missing Sec-WebSocket-Accept in {head:?}"));
    }
    stream.set_read_timeout(None).map_err(io)?;
    stream.set_write_timeout(None).map_err(io)?;
    let head = head.into_owned();
    Ok(((stream, buf[head_end..].to_vec()), head))
}

/// Opens `n` connections with [`connect`] from a few threads; in order, every one upgraded.
pub fn open_many(addr: SocketAddr, n: usize) -> Result<Vec<Opened>, String> {
    let threads = CONNECT_THREADS.min(n).max(1);
    let mut slots: Vec<Option<Opened>> = (0..n).map(|_| None).collect();
    let results: Vec<Result<Vec<(usize, Opened)>, String>> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in (t..n).step_by(threads) {
                        let opened = connect(addr).map_err(|e| format!("connection {i}: {e}"))?;
                        mine.push((i, opened));
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("connect thread panicked".into()))
            })
            .collect()
    });
    for r in results {
        for (i, opened) in r? {
            slots[i] = Some(opened);
        }
    }
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| "a connection is missing".to_string()))
        .collect()
}
