//! What the benches' own bare servers (the `floor` rows, the tungstenite peer) share: a loopback
//! listener announced the way hydrogen-ws announces its own, and the least work a server can do to
//! open a WebSocket.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Binds 127.0.0.1 on a free port and prints the readiness line (`listening on ws://ADDR`) that
/// [`ServerProcess::start`](super::server::ServerProcess::start) waits for.
pub fn listen() -> io::Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    eprintln!("listening on ws://{}", listener.local_addr()?);
    Ok(listener)
}

/// Reads the request head and answers `101` with the accept key of its `Sec-WebSocket-Key`,
/// validating nothing else. Returns the bytes that followed the head in the same reads (the start
/// of the first frame, if the client sent one already).
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
