//! One WebSocket connection of the bench (a subscriber or a publisher): the upgrade with the key,
//! JSON text frames out, server frames in as [`Incoming`] values.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};
use serde_json::Value;

use crate::support::{client, frames, rng::Rng};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What came from the server.
pub enum Incoming {
    /// A text message, parsed.
    Json(Value),
    /// A close frame, with its code; the connection is over.
    Close(u16),
    /// The connection ended without a close frame (`what` says how).
    Ended(String),
    /// Nothing within the read timeout.
    Idle,
}

/// An upgraded connection.
pub struct Wire {
    stream: TcpStream,
    input: Vec<u8>,
    masks: Rng,
}

impl Wire {
    /// TCP connect to `addr`, upgrade on `/?key=KEY`, and a read timeout of `poll` (how often a
    /// reader gets [`Incoming::Idle`] to look at its stop flag).
    pub fn open(addr: SocketAddr, key: &str, poll: Duration, seed: u64) -> Result<Wire, String> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (stream, input) =
            client::upgrade_path(stream, &addr.to_string(), &format!("/?key={key}"))?;
        stream
            .set_read_timeout(Some(poll))
            .map_err(|e| format!("set_read_timeout: {e}"))?;
        Ok(Wire {
            stream,
            input,
            masks: Rng::new(seed),
        })
    }

    /// A clone of the socket (for a reader thread, or to shut it down from elsewhere).
    pub fn try_clone(&self, seed: u64) -> Result<Wire, String> {
        Ok(Wire {
            stream: self
                .stream
                .try_clone()
                .map_err(|e| format!("try_clone: {e}"))?,
            input: Vec::new(),
            masks: Rng::new(seed),
        })
    }

    /// Sends one JSON text message.
    pub fn send(&mut self, message: &Value) -> Result<(), String> {
        self.send_frame(OpCode::Text, message.to_string().as_bytes())
    }

    fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), String> {
        let frame = encode_masked_frame(true, opcode, self.masks.mask(), payload);
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("send: {e}"))
    }

    /// Answers a close frame with code `code` (best effort: the server or nginx may be gone).
    pub fn answer_close(&mut self, code: u16) {
        let _ = self.send_frame(OpCode::Close, &code.to_be_bytes());
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Shuts the socket both ways (wakes a reader blocked on it).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// The next message: frames already buffered first, then one read. Pings are answered and
    /// skipped; a text frame that is not JSON is an [`Incoming::Ended`] (the bench cannot go on).
    pub fn next(&mut self) -> Incoming {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match frames::server_frame(&mut self.input) {
                Ok(Some(f)) => {
                    let payload = self.input[f.payload.clone()].to_vec();
                    self.input.drain(..f.len);
                    match f.opcode {
                        OpCode::Text => {
                            return match serde_json::from_slice(&payload) {
                                Ok(v) => Incoming::Json(v),
                                Err(e) => Incoming::Ended(format!("a text message not JSON: {e}")),
                            }
                        }
                        OpCode::Close => return Incoming::Close(frames::close_code(&payload)),
                        OpCode::Ping => {
                            if let Err(e) = self.send_frame(OpCode::Pong, &payload) {
                                return Incoming::Ended(e);
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Incoming::Ended(format!("bad frame: {e:?}")),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Incoming::Ended("eof".into()),
                Ok(k) => self.input.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Incoming::Idle
                }
                Err(e) => return Incoming::Ended(e.to_string()),
            }
        }
    }
}
