//! Routes: several applications on one server, each on its own path with its own key, subprotocol and
//! origin policy; an upgrade to a path no route serves is refused with 404.

mod support;

use std::io;

use hydrogen_ws::protocol::{Message, OpCode};
use hydrogen_ws::{Conn, Echo, Handler, Route, Routes, Server};
use support::{config, RawClient};

/// Answers every message with its own name, so a test can tell which route served it.
struct Named(&'static str);

impl Handler for Named {
    fn on_message(&self, conn: &Conn, _message: Message<'_>) {
        let _ = conn.send_text(self.0);
    }
}

const KEY: &str = "route-key-123";

fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn status_of(server: &Server, path: &str, extra: &str) -> (u16, RawClient) {
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(upgrade(path, extra).as_bytes());
    let r = c.read_response().expect("response");
    (r.status, c)
}

fn answer(c: &mut RawClient) -> io::Result<String> {
    c.send_frame(true, OpCode::Text, b"who?");
    let frame = c.read_frame()?;
    Ok(String::from_utf8_lossy(&frame.payload).into_owned())
}

#[test]
fn each_path_is_served_by_its_own_application_with_its_own_policy() {
    let routes = Routes::new().route("/a", Route::new(Named("a"))).route(
        "/b",
        Route::new(Named("b"))
            .key(Some(KEY.into()))
            .protocol(Some("bee".into())),
    );
    let server = Server::with_routes(config(), routes).expect("server starts");

    let (status, mut a) = status_of(&server, "/a", "");
    assert_eq!(status, 101);
    assert_eq!(answer(&mut a).expect("reply"), "a");
    // The query is not part of the path.
    let (status, mut a) = status_of(&server, "/a?x=1", "");
    assert_eq!(status, 101);
    assert_eq!(answer(&mut a).expect("reply"), "a");

    // /b wants its key, and speaks its own subprotocol.
    assert_eq!(status_of(&server, "/b", "").0, 401);
    let auth = format!("Authorization: Key {KEY}\r\n");
    assert_eq!(
        status_of(
            &server,
            "/b",
            &format!("{auth}Sec-WebSocket-Protocol: other\r\n")
        )
        .0,
        400
    );
    let (status, mut b) = status_of(
        &server,
        "/b",
        &format!("{auth}Sec-WebSocket-Protocol: bee\r\n"),
    );
    assert_eq!(status, 101);
    assert_eq!(answer(&mut b).expect("reply"), "b");

    // No route, no fallback: 404 with a reason, counted as a refusal.
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(upgrade("/c", "").as_bytes());
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("/c"), "{}", r.body);
    assert_eq!(server.handle().stats().refused_handshake, 3);
    server.shutdown();
}

#[test]
fn the_fallback_serves_every_other_path() {
    let routes = Routes::new()
        .route("/named", Route::new(Named("named")))
        .fallback(Route::new(Echo));
    let server = Server::with_routes(config(), routes).expect("server starts");
    let (status, mut c) = status_of(&server, "/anything/else", "");
    assert_eq!(status, 101);
    assert_eq!(answer(&mut c).expect("reply"), "who?");
    let (_, mut c) = status_of(&server, "/named", "");
    assert_eq!(answer(&mut c).expect("reply"), "named");
    server.shutdown();
}

#[test]
fn hydrogen_clients_connect_on_wss() {
    let mut cfg = config();
    cfg.mode = hydrogen_ws::Mode::Hydrogen;
    cfg.key = Some(KEY.into());
    let server = Server::with_routes(cfg.clone(), hydrogen_ws::routes_for_mode(&cfg))
        .expect("server starts");
    let (status, mut c) = status_of(
        &server,
        "/wss",
        &format!("Authorization: Key {KEY}\r\nSec-WebSocket-Protocol: hydrogen\r\n"),
    );
    assert_eq!(status, 101);
    c.send_frame(true, OpCode::Text, br#"{"type":"ping"}"#);
    let reply = c.read_frame().expect("reply");
    assert_eq!(reply.payload, br#"{"type":"pong"}"#);
    server.shutdown();
}

#[test]
fn an_empty_route_table_is_refused_at_start() {
    match Server::with_routes(config(), Routes::new()) {
        Err(hydrogen_ws::ServerError::NoRoutes) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a server without routes started"),
    }
}
