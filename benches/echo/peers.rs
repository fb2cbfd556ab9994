//! The servers of the echo bench: hydrogen-ws builds (`ours`, `base`) as child processes, and the
//! peers built into this bench (`tungstenite`, `floor`), re-executed as processes of their own.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::support::floor;
use crate::support::server::{self, ServerProcess};
use crate::WHO;

/// A server under measurement.
pub struct Server {
    pub name: &'static str,
    process: ServerProcess,
}

impl Server {
    /// A hydrogen-ws binary in echo mode (`name`: `ours`, or `base` for a baseline build).
    pub fn ours(
        name: &'static str,
        bin: &Path,
        threads: usize,
        stack_size: Option<usize>,
    ) -> Server {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "echo",
            "--log-level",
            "warn",
            // No heartbeat: the peer sends no pings, and this load client counts every frame it
            // receives as an echo (a ping every 30 s landed in whichever point was running then).
            "--ping-interval",
            "0",
        ])
        .args(["--threads", &threads.to_string()]);
        if let Some(s) = stack_size {
            cmd.args(["--stack-size", &s.to_string()]);
        }
        Server::start(name, cmd)
    }

    /// A server built into this bench: the bench binary re-executed with `HYDROGEN_BENCH_ROLE=role`,
    /// so its CPU time is measured on its own.
    pub fn peer(name: &'static str, role: &str) -> Server {
        let cmd = server::this_bench_as(role).unwrap_or_else(|e| panic!("{name} server: {e}"));
        Server::start(name, cmd)
    }

    /// Starts the server, waits for its address and keeps draining stderr (echoing its lines,
    /// which at log level warn are worth seeing).
    fn start(name: &'static str, mut cmd: Command) -> Server {
        let process = ServerProcess::start(&mut cmd, Duration::from_secs(20), move |line, _| {
            eprintln!("[{name} server] {line}")
        })
        .unwrap_or_else(|e| panic!("start {name} server: {e}"));
        Server { name, process }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    pub fn stop(mut self) {
        self.process.stop();
    }
}

/// A built-in server's accept loop: reports its address the way ours does, then serves each
/// connection on a thread of its own (`stack_size`: the default when `None`).
fn accept_loop(stack_size: Option<usize>, serve: fn(TcpStream)) {
    crate::support::limits::raise_nofile(WHO);
    let listener = floor::listen().expect("bind");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let mut builder = thread::Builder::new();
        if let Some(size) = stack_size {
            builder = builder.stack_size(size);
        }
        let _ = builder.spawn(move || serve(stream));
    }
}

/// The peer: thread-per-connection tungstenite echo (read a message, send it back, which flushes).
pub fn tungstenite_server() {
    accept_loop(None, |stream| {
        let Ok(mut ws) = tungstenite::accept(stream) else {
            return;
        };
        loop {
            match ws.read() {
                Ok(msg) if msg.is_binary() || msg.is_text() => {
                    if ws.send(msg).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
}

/// The `floor` row: the least work a thread-per-connection echo server can do, to show what this
/// machine and this client allow at all. A thread per connection (128 KiB stacks, like ours), a bare
/// 101, then: read what is there, unmask every whole frame in place (with our codec's `apply_mask`),
/// send all their echoes in one write. It validates nothing (no UTF-8, no control frames, no limits)
/// and trusts the client to send well-formed masked frames, which this bench's client does.
pub fn floor_server() {
    accept_loop(Some(128 * 1024), |stream| {
        let _ = floor_echo(stream);
    });
}

fn floor_echo(mut stream: TcpStream) -> io::Result<()> {
    let mut input = floor::bare_upgrade(&mut stream)?;
    let mut have = input.len();
    input.resize(have.max(64 * 1024 + 14), 0);
    let mut out = Vec::with_capacity(64 * 1024 + 10);
    loop {
        if have == input.len() {
            input.resize(input.len() * 2, 0);
        }
        match stream.read(&mut input[have..])? {
            0 => return Ok(()),
            n => have += n,
        }
        let mut at = 0;
        while let Some((head, len)) = masked_frame_at(&input[at..have]) {
            let end = at + head + len;
            if end > have {
                break;
            }
            let mask = [
                input[at + head - 4],
                input[at + head - 3],
                input[at + head - 2],
                input[at + head - 1],
            ];
            let payload = &mut input[at + head..end];
            hydrogen_ws_protocol::apply_mask(payload, mask, 0);
            out.push(input[at]);
            match len {
                0..=125 => out.push(len as u8),
                126..=0xFFFF => {
                    out.push(126);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    out.push(127);
                    out.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            out.extend_from_slice(&input[at + head..end]);
            let close = input[at] & 0x0f == 0x8;
            at = end;
            if close {
                return stream.write_all(&out);
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        input.copy_within(at..have, 0);
        have -= at;
    }
}

/// (header length, payload length) of the masked frame at the start of `buf`, once its header is
/// all there.
fn masked_frame_at(buf: &[u8]) -> Option<(usize, usize)> {
    let b1 = *buf.get(1)?;
    let (ext, len) = match b1 & 0x7f {
        126 => (2, u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (8, u64::from_be_bytes(bytes) as usize)
        }
        n => (0, n as usize),
    };
    let head = 2 + ext + 4;
    (buf.len() >= head).then_some((head, len))
}
