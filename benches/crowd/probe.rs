//! The well-behaved side: a fresh client that upgrades, echoes one message and closes; plain HTTP
//! requests (`/health`, `/metrics`) and what `/metrics` says about the admission stage.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};

use crate::support::{client, frames, rng::Rng};

/// Every read and write of a probe is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh client's times.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// From the connect call to the 101 (the TCP handshake included).
    pub upgrade: Duration,
    /// Of which the TCP connect alone.
    pub connect: Duration,
    /// The echo's round trip.
    pub echo: Duration,
}

/// One fresh client from 127.0.0.1: connect, upgrade, one echo, close.
pub fn probe_once(addr: SocketAddr, n: u64, rng: &mut Rng) -> Result<Times, String> {
    let started = Instant::now();
    let stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let connect = started.elapsed();
    let (mut stream, mut input) = client::upgrade(stream, addr)?;
    let upgrade = started.elapsed();
    let io = |what: &'static str| move |e: io::Error| format!("{what}: {e}");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(io("timeout"))?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(io("timeout"))?;
    let message = format!("crowd bench probe {n}");
    let frame = encode_masked_frame(true, OpCode::Text, rng.mask(), message.as_bytes());
    let sent = Instant::now();
    stream
        .write_all(&frame)
        .map_err(io("sending the message"))?;
    let (opcode, payload) = read_frame(&mut stream, &mut input)?;
    let echo = sent.elapsed();
    if opcode != OpCode::Text || payload != message.as_bytes() {
        return Err(format!(
            "wrong echo: {opcode:?} {:?}",
            String::from_utf8_lossy(&payload)
        ));
    }
    // Close as a client should, and wait (bounded) for the server's answer.
    let close = encode_masked_frame(true, OpCode::Close, rng.mask(), &1000u16.to_be_bytes());
    stream.write_all(&close).map_err(io("sending the close"))?;
    match read_frame(&mut stream, &mut input) {
        Ok((OpCode::Close, _)) => Ok(Times {
            upgrade,
            connect,
            echo,
        }),
        Ok((op, _)) => Err(format!("{op:?} instead of the close answer")),
        Err(e) => Err(format!("no close answer: {e}")),
    }
}

/// The next whole server frame; `input` holds what was read behind it.
fn read_frame(stream: &mut TcpStream, input: &mut Vec<u8>) -> Result<(OpCode, Vec<u8>), String> {
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match frames::server_frame(input) {
            Ok(Some(f)) => {
                let payload = input[f.payload.clone()].to_vec();
                input.drain(..f.len);
                return Ok((f.opcode, payload));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("bad frame from the server: {e:?}")),
        }
        if Instant::now() > deadline {
            return Err("no frame in time".into());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(k) => input.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

/// `GET path` over a fresh connection from 127.0.0.1: the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("GET {path}: connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = Vec::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut chunk = [0u8; 16 * 1024];
    // The server closes its side after the response; a reset after the whole of it is no error.
    while Instant::now() < deadline && response.len() < 1 << 22 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => response.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if response.is_empty() => return Err(format!("GET {path}: {e}")),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status line in {:?}", head(&text)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

fn head(text: &str) -> &str {
    &text[..text.len().min(80)]
}

/// What `/metrics` says about the admission stage.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// `hydrogen_ws_pending_handshakes`.
    pub pending: u64,
    /// `hydrogen_ws_admission_refusals_total{reason=...}`, in the order given.
    pub refusals: Vec<(String, u64)>,
}

/// Reads `/metrics`.
pub fn admission(addr: SocketAddr) -> Result<Admission, String> {
    let (status, body) = http_get(addr, "/metrics")?;
    if status != 200 {
        return Err(format!("GET /metrics answered {status}"));
    }
    let mut out = Admission::default();
    for line in body.lines() {
        if let Some(v) = line.strip_prefix("hydrogen_ws_pending_handshakes ") {
            out.pending = v.trim().parse::<f64>().unwrap_or(0.0) as u64;
        } else if let Some(rest) = line.strip_prefix("hydrogen_ws_admission_refusals_total{") {
            let Some((labels, value)) = rest.split_once('}') else {
                continue;
            };
            let reason = labels
                .strip_prefix("reason=\"")
                .and_then(|r| r.strip_suffix('"'))
                .unwrap_or(labels);
            let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            out.refusals.push((reason.to_string(), value));
        }
    }
    Ok(out)
}
