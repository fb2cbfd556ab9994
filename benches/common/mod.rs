//! Pieces shared by the benches that drive a `hydrogen-ws` process (`echo`, `load`, `shutdown`).
//! Each bench uses only some of them.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ChildStderr;
use std::sync::mpsc::{self, Receiver};

/// Drains a server's stderr on a thread of its own, so the server never blocks on it. The address of
/// its readiness line (`listening on ws://ADDR`) is sent on the returned channel; every other line is
/// handed to `other`, with whether the address had been seen by then.
pub fn watch_stderr(
    stderr: ChildStderr,
    mut other: impl FnMut(&str, bool) + Send + 'static,
) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            match line.strip_prefix("listening on ws://") {
                Some(addr) if tx.is_some() => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
                _ => other(&line, tx.is_none()),
            }
        }
    });
    rx
}

/// The least a `floor` server does to open a WebSocket: reads the request head and answers `101` with
/// the accept key of its `Sec-WebSocket-Key`, validating nothing else. Returns the bytes that followed
/// the head in the same reads (the start of the first frame, if the client sent one already).
pub fn bare_upgrade(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => head.extend_from_slice(&buf[..n]),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let key = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let accept = hydrogen_ws_protocol::accept_key(key.as_bytes());
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    Ok(head.split_off(end))
}
