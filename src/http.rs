//! Plain HTTP on the WebSocket port: `/status`, `/metrics`, `/health` and the live status page at `/`.
//!
//! Every response closes the connection (`Connection: close`): these are occasional requests from
//! people, health checkers and scrapers, and a worker is not kept for them.

use std::net::SocketAddr;

use hydrogen_ws_protocol::{handshake, HandshakeError, Request};

use crate::auth;
use crate::handle::Control;
use log::warn;

/// A complete response and its status.
pub(crate) struct HttpResponse {
    pub status: u16,
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    fn new(status: u16, content_type: &str, body: &[u8]) -> HttpResponse {
        let mut bytes = format!(
            "HTTP/1.1 {status} {}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\n\r\n",
            handshake::reason_phrase(status),
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        HttpResponse { status, bytes }
    }

    /// A refusal: plain text naming the reason.
    pub(crate) fn refusal(status: u16, reason: &str, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            bytes: handshake::refusal(status, reason, headers),
        }
    }

    /// The refusal a protocol-level error carries (its status, headers and reason).
    fn from_error(e: HandshakeError) -> HttpResponse {
        HttpResponse {
            status: e.status(),
            bytes: e.response(),
        }
    }

    /// The answer to a `HEAD`: the same head (its `Content-Length` included), no body.
    fn without_body(mut self) -> HttpResponse {
        if let Some(end) = self.bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            self.bytes.truncate(end + 4);
        }
        self
    }
}

/// The pages a request may ask for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pages {
    /// Whether `GET /` serves the live status page.
    pub status: bool,
    /// The page of the request's path, if the route table has one (the terminal's console).
    pub other: Option<&'static str>,
}

/// Answers a request that did not ask for a WebSocket upgrade.
pub(crate) fn respond(
    server: &dyn Control,
    pages: Pages,
    request: &Request,
    peer: SocketAddr,
) -> HttpResponse {
    let response = route(server, pages, request, peer);
    if request.method == "HEAD" {
        response.without_body()
    } else {
        response
    }
}

fn route(server: &dyn Control, pages: Pages, request: &Request, peer: SocketAddr) -> HttpResponse {
    if request.method != "GET" && request.method != "HEAD" {
        return HttpResponse::refusal(405, "only GET is served here", &[("Allow", "GET, HEAD")]);
    }
    // RFC 9112 section 3.2: an HTTP/1.1 request without exactly one Host is answered with 400.
    match request.host() {
        Ok(_) => {}
        Err(HandshakeError::MissingHost) if request.version == 0 => {}
        Err(e) => return HttpResponse::from_error(e),
    }
    if let Some(page) = pages.other {
        return HttpResponse::new(200, "text/html; charset=utf-8", page.as_bytes());
    }
    let protected = matches!(request.path(), "/status" | "/metrics");
    if protected {
        if let Err(e) = auth::check_key(server.config().key.as_deref(), request) {
            warn!(
                "{peer}: refused {} {} with {} ({})",
                request.method,
                request.path(),
                e.status(),
                e.reason()
            );
            return HttpResponse::refusal(e.status(), e.reason(), e.headers());
        }
    }
    match request.path() {
        "/status" => match serde_json::to_string(&server.status_document()) {
            Ok(body) => HttpResponse::new(200, "application/json", body.as_bytes()),
            Err(_) => HttpResponse::refusal(500, "the status could not be written", &[]),
        },
        "/metrics" => {
            let body = server.metrics();
            HttpResponse::new(200, crate::status::METRICS_CONTENT_TYPE, body.as_bytes())
        }
        "/health" if server.is_shutting_down() => HttpResponse::refusal(503, "shutting down", &[]),
        "/health" => HttpResponse::new(200, "text/plain; charset=utf-8", b"ok\n"),
        "/" if pages.status => {
            HttpResponse::new(200, "text/html; charset=utf-8", STATUS_PAGE.as_bytes())
        }
        "/" => HttpResponse::from_error(HandshakeError::MissingUpgrade),
        _ => HttpResponse::refusal(404, "not found: try /, /status, /metrics or /health", &[]),
    }
}

/// The live status page: connects back over WebSocket (with the key from its own URL), subscribes to
/// status pushes and shows them.
const STATUS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hydrogen-ws status</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 44rem; color: #222; }
  h1 { font-size: 1.4rem; } #state { font-weight: 600; }
  table { border-collapse: collapse; width: 100%; } td { padding: .25rem .5rem; border-bottom: 1px solid #ddd; }
  td:first-child { color: #555; width: 40%; } .bad { color: #b00; } .good { color: #070; }
</style>
</head>
<body>
<h1>hydrogen-ws</h1>
<p>Connection: <span id="state">connecting…</span></p>
<table id="fields"></table>
<script>
"use strict";
const key = new URLSearchParams(location.search).get("key");
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const url = scheme + location.host + "/" + (key ? "?key=" + encodeURIComponent(key) : "");
const state = document.getElementById("state");
const table = document.getElementById("fields");
function flatten(prefix, value, rows) {
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) flatten(prefix ? prefix + "." + k : k, v, rows);
  } else if (prefix !== "type") {
    rows.push([prefix, value]);
  }
  return rows;
}
function show(doc) {
  table.replaceChildren(...flatten("", doc, []).map(([k, v]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = k;
    const b = document.createElement("td"); b.textContent = v === null ? "–" : String(v);
    tr.append(a, b);
    return tr;
  }));
}
function connect() {
  const ws = new WebSocket(url, "hydrogen");
  ws.onopen = () => {
    state.textContent = "live"; state.className = "good";
    ws.send(JSON.stringify({ type: "status" }));
    ws.send(JSON.stringify({ type: "subscribe", topic: "status", interval_ms: 1000 }));
  };
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "status") show(msg);
    else if (msg.type === "error") { state.textContent = "error: " + msg.error; state.className = "bad"; }
  };
  ws.onclose = (e) => {
    state.textContent = "closed (" + e.code + (e.reason ? " " + e.reason : "") + "), retrying…";
    state.className = "bad";
    setTimeout(connect, 2000);
  };
}
connect();
</script>
</body>
</html>
"#;
