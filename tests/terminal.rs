//! The terminal application over real sockets: a shell on a PTY per connection, its output, resizes,
//! whole characters, exits, limits, keys, and the end of its processes (issue 21).

mod support;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hydrogen_ws::{routes_for_mode, Config, Mode, Server, TerminalConfig};
use serde_json::{json, Value};
use support::{config, wait_until};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

const MAIN_KEY: &str = "main-key-1234";
const TERMINAL_KEY: &str = "terminal-key-0123456789-abcdefghijkl";

fn terminal_config(tweak: impl FnOnce(&mut TerminalConfig)) -> Config {
    let mut t = TerminalConfig::new(TERMINAL_KEY);
    t.command = "/bin/sh".into();
    tweak(&mut t);
    Config {
        mode: Mode::Hydrogen,
        key: Some(MAIN_KEY.into()),
        terminal: Some(t),
        ..config()
    }
}

/// The metrics, as `GET /metrics` serves them.
trait Metrics {
    fn handle_metrics(&self) -> String;
}

impl Metrics for Server {
    fn handle_metrics(&self) -> String {
        let mut s = TcpStream::connect(self.local_addr()).expect("connect");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Key {MAIN_KEY}\r\n\r\n"
        )
        .expect("write");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    }
}

fn start(config: Config) -> Server {
    let routes = routes_for_mode(&config);
    Server::with_routes(config, routes).expect("server starts")
}

/// A terminal client: the socket, the output so far, how the session ended.
struct Term {
    ws: WebSocket<TcpStream>,
    output: String,
    messages: Vec<Value>,
    closed: Option<(u16, String)>,
}

/// Upgrades to `path` with `key` and `protocol`; the HTTP status of a refusal.
fn connect(server: &Server, path: &str, key: &str, protocol: &str) -> Result<Term, u16> {
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    connect_on(stream, path, key, protocol)
}

/// [`connect`] on a stream of the caller's.
fn connect_on(stream: TcpStream, path: &str, key: &str, protocol: &str) -> Result<Term, u16> {
    let addr = stream.peer_addr().expect("peer");
    let mut request = format!("ws://{addr}{path}?key={key}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).expect("header"),
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    match tungstenite::client(request, stream) {
        Ok((ws, _)) => {
            ws.get_ref()
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            Ok(Term {
                ws,
                output: String::new(),
                messages: Vec::new(),
                closed: None,
            })
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

fn open_terminal(server: &Server) -> Term {
    connect(server, "/terminal/ws", TERMINAL_KEY, "terminal").expect("terminal opens")
}

impl Term {
    fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .expect("send");
    }

    fn input(&mut self, text: &str) {
        self.send(json!({"type": "input", "data": text}));
    }

    /// Reads until `done` holds or `within` passes; whether it held.
    fn until(&mut self, within: Duration, mut done: impl FnMut(&Term) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !done(self) {
            if Instant::now() >= deadline || self.closed.is_some() {
                return done(self);
            }
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if value["type"] == "output" {
                        self.output
                            .push_str(value["data"].as_str().expect("output data"));
                    } else {
                        self.messages.push(value);
                    }
                }
                Ok(Message::Close(frame)) => {
                    self.closed = Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    self.closed.get_or_insert((1006, String::new()));
                }
            }
        }
        true
    }

    fn expect_output(&mut self, needle: &str) {
        let found = self.until(Duration::from_secs(10), |t| t.output.contains(needle));
        assert!(found, "{needle:?} not in {:?}", self.output);
    }

    /// The first message of `kind` (other than output), waiting for it.
    fn message(&mut self, kind: &str) -> Value {
        let found = self.until(Duration::from_secs(10), |t| {
            t.messages.iter().any(|m| m["type"] == kind)
        });
        assert!(found, "no {kind} message: {:?}", self.messages);
        self.messages
            .iter()
            .find(|m| m["type"] == kind)
            .cloned()
            .unwrap_or_default()
    }

    fn wait_closed(&mut self) -> (u16, String) {
        self.until(Duration::from_secs(10), |t| t.closed.is_some());
        self.closed.clone().expect("closed")
    }

    /// Runs `prefix` (ending in `;` or `&`), then prints the shell's pid and its last job's.
    fn pids(&mut self, prefix: &str) -> Vec<i32> {
        self.input(&format!("{prefix} echo pids $$ $! end\n"));
        let printed = |l: &&str| l.contains("pids ") && l.contains(" end") && !l.contains("echo");
        let found = self.until(Duration::from_secs(10), |t| {
            t.output.lines().any(|l| printed(&l))
        });
        assert!(found, "{:?}", self.output);
        let line = self.output.lines().find(printed).unwrap_or_default();
        line.split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    }
}

/// Whether process `pid` is gone (or a zombie that is not ours to reap: an orphan of the session,
/// handed to the system's reaper).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let parent: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            state == Some("Z") && parent != std::process::id() as i32
        }
    }
}

fn http_get(server: &Server, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(server.local_addr()).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn a_session_runs_the_command_and_reads_its_output() {
    let server = start(terminal_config(|_| {}));
    let mut t = open_terminal(&server);
    t.input("echo $((6 * 7))x\n");
    t.expect_output("42x");
    t.send(json!({"type": "ping"}));
    assert_eq!(t.message("pong"), json!({"type": "pong"}));
    t.send(json!({"type": "launch"}));
    assert!(t.message("error")["error"].is_string());
    // The environment is scrubbed: TERM is set, the server's keys are not there.
    t.input("env | sort; echo env-$((1 + 1))-done\n");
    t.expect_output("env-2-done");
    assert!(t.output.contains("TERM=xterm-256color"), "{}", t.output);
    assert!(!t.output.contains("HYDROGEN_WS"), "{}", t.output);
    let stats = server.handle().stats();
    assert_eq!((stats.terminals_open, stats.terminals_total), (1, 1));
    let doc = server.handle().status_document();
    assert_eq!(doc.terminal.map(|t| t.open), Some(1));
    let metrics = server.handle_metrics();
    assert!(
        metrics.contains("hydrogen_ws_terminal_sessions_open 1"),
        "{metrics}"
    );
    server.shutdown();
}

#[test]
fn a_command_that_cannot_start_is_refused_with_1011_and_counted() {
    let server = start(terminal_config(|t| t.command = "/nonexistent/shell".into()));
    let mut t = open_terminal(&server);
    let (code, reason) = t.wait_closed();
    assert_eq!(code, 1011);
    assert!(reason.contains("cannot start"), "{reason}");
    let stats = server.handle().stats();
    assert_eq!(
        (stats.terminals_refused_spawn, stats.terminals_open),
        (1, 0)
    );
    server.shutdown();
}

#[test]
fn stty_size_after_a_resize() {
    let server = start(terminal_config(|_| {}));
    let mut t = open_terminal(&server);
    t.send(json!({"type": "resize", "rows": 33, "cols": 101}));
    t.input("stty size\n");
    t.expect_output("33 101");
    t.send(json!({"type": "resize", "rows": 0, "cols": 10}));
    assert!(t.message("error")["error"].is_string());
    server.shutdown();
}

#[test]
fn a_character_split_across_reads_arrives_whole() {
    let server = start(terminal_config(|_| {}));
    let mut t = open_terminal(&server);
    // 4096 times "xé" (12 KiB) in one write: the PTY hands it over in pieces whose edges fall inside
    // characters.
    t.input("s=xé; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do s=$s$s; done; printf '%s\\n' \"$s\"\n");
    let whole = "xé".repeat(4096);
    t.expect_output(&whole);
    assert!(!t.output.contains('\u{FFFD}'), "a character was cut");
    server.shutdown();
}

#[test]
fn the_exit_code_and_the_signal_reach_the_client_then_a_normal_close() {
    let server = start(terminal_config(|_| {}));
    let mut t = open_terminal(&server);
    t.input("exit 3\n");
    assert_eq!(t.message("exit"), json!({"type": "exit", "code": 3}));
    assert_eq!(t.wait_closed().0, 1000);

    let mut t = open_terminal(&server);
    t.input("kill -9 $$\n");
    assert_eq!(t.message("exit"), json!({"type": "exit", "signal": 9}));
    assert_eq!(t.wait_closed().0, 1000);
    assert!(wait_until(Duration::from_secs(5), || server
        .handle()
        .stats()
        .terminals_open
        == 0));
    server.shutdown();
}

#[test]
fn one_session_more_than_the_most_is_refused_with_1013() {
    let server = start(terminal_config(|t| t.max_sessions = 2));
    let mut a = open_terminal(&server);
    let mut b = open_terminal(&server);
    a.input("echo a-ok\n");
    a.expect_output("a-ok");
    b.input("echo b-ok\n");
    b.expect_output("b-ok");
    let mut c = open_terminal(&server);
    let (code, reason) = c.wait_closed();
    assert_eq!(code, 1013);
    assert!(reason.contains("try again later"), "{reason}");
    assert_eq!(server.handle().stats().terminals_refused_full, 1);
    // A place freed is a place taken.
    a.input("exit\n");
    a.wait_closed();
    assert!(wait_until(Duration::from_secs(5), || server
        .handle()
        .stats()
        .terminals_open
        == 1));
    let mut d = open_terminal(&server);
    d.input("echo d-ok\n");
    d.expect_output("d-ok");
    server.shutdown();
}

#[test]
fn read_only_refuses_input_and_still_shows_output() {
    let mut config = terminal_config(|t| t.readonly = true);
    if let Some(t) = config.terminal.as_mut() {
        // A command that prints on its own.
        t.command = "/bin/date".into();
    }
    let server = start(config);
    let mut t = open_terminal(&server);
    t.input("echo nope\n");
    let error = t.message("error");
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("read-only"),
        "{error}"
    );
    t.until(Duration::from_secs(5), |t| t.closed.is_some());
    assert!(!t.output.is_empty(), "date printed nothing");
    assert!(!t.output.contains("nope"));
    server.shutdown();
}

#[test]
fn the_idle_timeout_ends_a_silent_session() {
    let server = start(terminal_config(|t| {
        t.idle_timeout = Some(Duration::from_millis(500))
    }));
    let mut t = open_terminal(&server);
    let started = Instant::now();
    let (code, reason) = t.wait_closed();
    assert_eq!(code, 1001, "{reason}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(wait_until(Duration::from_secs(5), || server
        .handle()
        .stats()
        .terminals_open
        == 0));
    server.shutdown();
}

#[test]
fn wrong_key_protocol_or_path_and_each_key_on_the_other_route_are_refused() {
    let server = start(terminal_config(|_| {}));
    let status = |path: &str, key: &str, protocol: &str| {
        connect(&server, path, key, protocol).err().unwrap_or(101)
    };
    assert_eq!(status("/terminal/ws", TERMINAL_KEY, "terminal"), 101);
    assert_eq!(
        status(
            "/terminal/ws",
            "wrong-key-wrong-key-wrong-key-wrong",
            "terminal"
        ),
        401
    );
    assert_eq!(status("/terminal/ws", TERMINAL_KEY, "hydrogen"), 400);
    // The main key on the terminal's route, the terminal's key on the Hydrogen routes.
    assert_eq!(status("/terminal/ws", MAIN_KEY, "terminal"), 401);
    assert_eq!(status("/wss", TERMINAL_KEY, "hydrogen"), 401);
    assert_eq!(status("/terminal/other", TERMINAL_KEY, "terminal"), 401);
    assert_eq!(status("/wss", MAIN_KEY, "hydrogen"), 101);
    server.shutdown();

    // An open Hydrogen route (--no-auth) still refuses the terminal's key.
    let mut open = terminal_config(|_| {});
    open.key = None;
    open.no_auth = true;
    let server = start(open);
    let status = |path: &str, key: &str, protocol: &str| {
        connect(&server, path, key, protocol).err().unwrap_or(101)
    };
    assert_eq!(status("/", TERMINAL_KEY, "hydrogen"), 401);
    assert_eq!(status("/", "anything", "hydrogen"), 101);
    server.shutdown();
}

#[test]
fn the_terminal_is_off_by_default_and_its_page_is_served_when_on() {
    let mut off = terminal_config(|_| {});
    off.terminal = None;
    let server = start(off);
    assert_eq!(http_get(&server, "/terminal").0, 404);
    assert_eq!(
        connect(&server, "/terminal/ws", TERMINAL_KEY, "terminal").err(),
        Some(401)
    );
    server.shutdown();

    let server = start(terminal_config(|_| {}));
    let (status, page) = http_get(&server, "/terminal");
    assert_eq!(status, 200);
    assert!(
        page.contains("new WebSocket(") && !page.contains("<script src"),
        "{page}"
    );
    server.shutdown();
}

#[test]
fn closing_the_socket_kills_and_reaps_the_whole_process_group() {
    let server = start(terminal_config(|_| {}));
    let mut t = open_terminal(&server);
    // A background job that ignores the hangup: only SIGKILL ends it.
    let pids = t.pids("(trap '' HUP; exec sleep 300) &");
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.iter().all(|&p| !gone(p)));
    // The client vanishes without a close frame.
    drop(t);
    assert!(
        wait_until(Duration::from_secs(5), || pids.iter().all(|&p| gone(p))),
        "{pids:?} still there"
    );
    // The shell was ours: reaped, not a zombie.
    assert!(std::fs::metadata(format!("/proc/{}", pids[0])).is_err());
    assert_eq!(server.handle().stats().terminals_open, 0);
    server.shutdown();
}

#[test]
fn a_shutdown_with_four_busy_terminals_ends_them_inside_the_deadline() {
    let config = terminal_config(|_| {});
    let deadline = config.shutdown_timeout;
    let server = start(config);
    let mut shells = Vec::new();
    let mut terms = Vec::new();
    for _ in 0..4 {
        let mut t = open_terminal(&server);
        shells.push(t.pids("true;")[0]);
        t.input("yes\n");
        t.expect_output("y\r\ny\r\n");
        terms.push(t);
    }
    let started = Instant::now();
    let report = server.shutdown();
    let took = started.elapsed();
    assert!(report.completed(), "{report:?}");
    assert_eq!(
        (report.terminals, report.terminals_left),
        (4, 0),
        "{report:?}"
    );
    assert!(took < deadline, "took {took:?}");
    assert!(shells.iter().all(|&p| gone(p)), "{shells:?}");
}

#[test]
fn a_client_that_stops_reading_pauses_the_command_without_growing_memory() {
    let server = start(terminal_config(|_| {}));
    // A small receive buffer (which also turns the kernel's autotuning off): the kernel's buffers fill
    // in a moment.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect(&server.local_addr().into())
        .expect("connect");
    let mut t = connect_on(socket.into(), "/terminal/ws", TERMINAL_KEY, "terminal").expect("opens");
    t.input("yes\n");
    t.expect_output("y\r\ny\r\n");
    // Nothing read while `yes` writes as fast as it can: the server holds at most 64 KiB for the client
    // (more would soon pass the 1 MiB pending limit: an eviction); the rest waits in the PTY, the
    // command blocked. (The other tests share this process: its memory is not the measure. What the
    // server accepted is, bounded by what the kernel's socket buffers can hold.)
    let before = server.handle().stats().bytes_out;
    std::thread::sleep(Duration::from_secs(3));
    let grown = server.handle().stats().bytes_out - before;
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    let wmem_max: u64 = wmem
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 << 20);
    assert!(
        grown < wmem_max + (1 << 20),
        "{grown} bytes accepted for a client that reads nothing"
    );
    assert_eq!(server.handle().stats().evicted, 0);
    // Paused, not lost: the output flows again once the client reads.
    let len = t.output.len();
    t.until(Duration::from_secs(2), |t| t.output.len() > len + (1 << 20));
    assert!(
        t.output.len() > len + (1 << 20),
        "the output did not resume"
    );
    assert!(t.closed.is_none());
    server.shutdown();
}
