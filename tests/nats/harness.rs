//! What the NATS tests share: a real `nats-server` on a free loopback port (skipped, with the way to
//! install it, when the binary is missing; a failure instead with `HYDROGEN_REQUIRE_NATS=1`), servers
//! of ours on it, WebSocket clients speaking the Hydrogen messages, and a raw NATS client (the text
//! protocol: CONNECT, SUB, PUB, MSG) to publish from outside and answer requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use hydrogen_ws::{Config, Hydrogen, Mode, Permissions, Server};
use hydrogen_ws_protocol::OpCode;
use serde_json::Value;

use crate::support::{self, upgrade_request, RawClient};

pub const KEY: &str = "s3cret-key";

/// A `nats-server` child process on 127.0.0.1.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
}

impl Nats {
    /// Starts `nats-server` on a free port, or says how to install it and returns `None` (a panic
    /// under `HYDROGEN_REQUIRE_NATS=1`).
    pub fn start() -> Option<Nats> {
        let found = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            let how =
                "nats-server is not installed: `apt-get install nats-server` (Debian), or put a \
                       nats-server binary on the PATH";
            if std::env::var("HYDROGEN_REQUIRE_NATS").is_ok_and(|v| v == "1") {
                panic!("HYDROGEN_REQUIRE_NATS=1 and {how}");
            }
            // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests,
            // and this must be seen.
            let _ = writeln!(std::io::stderr(), "skipped: {how}");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Nats { child: None, port };
        nats.spawn();
        Some(nats)
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let ready = support::wait_until(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(ready, "nats-server listens on {} within 5 s", self.port);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args([format!("-{signal}"), c.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill -{signal}");
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// A Hydrogen-mode configuration on NATS at `url` with `permissions`.
pub fn config(url: &str, permissions: Permissions) -> Config {
    let mut c = Config {
        mode: Mode::Hydrogen,
        key: Some(KEY.to_string()),
        permissions,
        ..support::config()
    };
    c.bus.nats = vec![url.to_string()];
    c.bus.request_timeout_max = Duration::from_secs(5);
    c
}

/// Starts a server and waits (5 s at most) until its bus is connected.
pub fn start(config: Config) -> Server {
    let server = Server::start(config, Hydrogen).expect("server starts");
    let handle = server.handle();
    assert!(
        support::wait_until(Duration::from_secs(5), || handle.bus_state()
            == hydrogen_ws::BusState::Connected),
        "the bus connects within 5 s"
    );
    server
}

/// A WebSocket client of the Hydrogen application.
pub struct Client {
    raw: RawClient,
}

impl Client {
    pub fn open(addr: SocketAddr) -> Client {
        let mut raw = RawClient::connect(addr);
        raw.send_raw(upgrade_request(&format!("Authorization: Key {KEY}\r\n")).as_bytes());
        assert_eq!(raw.read_response().expect("101").status, 101);
        Client { raw }
    }

    pub fn send(&mut self, json: &Value) {
        self.raw
            .send_frame(true, OpCode::Text, json.to_string().as_bytes());
    }

    /// The next JSON text message (5 s at most).
    pub fn next(&mut self) -> Value {
        loop {
            let f = self.raw.read_frame().expect("a frame within 5 s");
            if f.opcode == 1 {
                return serde_json::from_slice(&f.payload).expect("JSON text");
            }
        }
    }

    /// The next JSON text message, or the code of the close frame that came first (5 s at most).
    pub fn next_or_close(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let f = self.raw.read_frame().expect("a frame within 5 s");
            match f.opcode {
                1 => return Ok(serde_json::from_slice(&f.payload).expect("JSON text")),
                8 => return Err(f.payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
                _ => {}
            }
        }
    }

    /// Sends `json` and returns the next message.
    pub fn ask(&mut self, json: &Value) -> Value {
        self.send(json);
        self.next()
    }

    /// Whether nothing arrives within `wait`.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        self.raw
            .stream
            .set_read_timeout(Some(wait))
            .expect("timeout");
        let got = self.raw.read_frame();
        self.raw
            .stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        got.is_err()
    }

    /// Reads until a close frame; its code.
    pub fn close_code(&mut self) -> Option<u16> {
        self.raw.read_close().ok().flatten()
    }
}

/// A raw NATS connection (the text protocol), for publishing from outside and answering requests.
pub struct RawNats {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// A message the raw connection received.
#[derive(Debug)]
pub struct Msg {
    pub reply: Option<String>,
    pub payload: Vec<u8>,
}

impl RawNats {
    pub fn connect(port: u16) -> RawNats {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to NATS");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut info = String::new();
        reader.read_line(&mut info).expect("INFO");
        assert!(info.starts_with("INFO"), "{info}");
        let mut nats = RawNats { stream, reader };
        nats.write(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n",
        );
        nats.sync();
        nats
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to NATS");
    }

    /// PING and wait for the PONG: the server has everything sent before.
    pub fn sync(&mut self) {
        self.write(b"PING\r\n");
        loop {
            let line = self.line();
            if line == "PONG" {
                return;
            }
            assert!(!line.starts_with("-ERR"), "{line}");
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line from NATS");
        line.trim_end().to_string()
    }

    pub fn subscribe(&mut self, subject: &str, sid: u32) {
        self.write(format!("SUB {subject} {sid}\r\n").as_bytes());
        self.sync();
    }

    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        self.write(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
        self.write(payload);
        self.write(b"\r\n");
    }

    /// The next message (answering the server's PINGs meanwhile).
    pub fn next_msg(&mut self) -> std::io::Result<Msg> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line == "PING" {
                self.write(b"PONG\r\n");
                continue;
            }
            let Some(rest) = line.strip_prefix("MSG ") else {
                continue;
            };
            let parts: Vec<&str> = rest.split(' ').collect();
            let (reply, len) = match parts.as_slice() {
                [_subject, _sid, len] => (None, len),
                [_subject, _sid, r, len] => (Some(r.to_string()), len),
                _ => panic!("odd MSG line {line}"),
            };
            let len: usize = len.parse().expect("a length");
            let mut payload = vec![0u8; len + 2];
            self.reader.read_exact(&mut payload)?;
            payload.truncate(len);
            return Ok(Msg { reply, payload });
        }
    }
}

/// A responder on `subject` in a thread: answers each request with `answer(payload)`, until dropped
/// (which shuts its socket: the blocked read returns and the thread ends).
pub struct Responder {
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn start(port: u16, subject: &str, answer: fn(&[u8]) -> Vec<u8>) -> Responder {
        let mut nats = RawNats::connect(port);
        nats.subscribe(subject, 1);
        nats.stream.set_read_timeout(None).expect("no timeout");
        let stream = nats.stream.try_clone().expect("clone");
        let thread = std::thread::spawn(move || {
            while let Ok(msg) = nats.next_msg() {
                if let Some(reply) = msg.reply {
                    let out = answer(&msg.payload);
                    nats.publish(&reply, &out);
                }
            }
        });
        Responder {
            stream,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client that subscribes to `topic` and then never reads (a small receive buffer, so it fills fast).
pub fn non_reader(addr: SocketAddr, topic: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let mut raw = RawClient::from_stream(socket.into());
    raw.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    raw.send_raw(upgrade_request(&format!("Authorization: Key {KEY}\r\n")).as_bytes());
    assert_eq!(raw.read_response().expect("101").status, 101);
    let subscribe = serde_json::json!({"type": "subscribe", "topic": topic}).to_string();
    raw.send_frame(true, OpCode::Text, subscribe.as_bytes());
    raw.stream
}
