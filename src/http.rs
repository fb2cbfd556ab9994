//! Plain HTTP on the WebSocket port: `/status`, `/metrics`, `/health` and the live status page at `/`
//! (with its icon at `/favicon.ico`).
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
        HttpResponse::with_headers(status, content_type, body, &[("Cache-Control", "no-store")])
    }

    /// A response with `headers` (static fields of our own) after the content type and length.
    fn with_headers(
        status: u16,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n",
            handshake::reason_phrase(status),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
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
        "/health"
            if server.config().bus.require_nats
                && server.bus_state() != crate::stats::BusState::Connected =>
        {
            HttpResponse::refusal(503, "nats disconnected", &[])
        }
        "/health" => HttpResponse::new(200, "text/plain; charset=utf-8", b"ok\n"),
        "/" if pages.status => HttpResponse::with_headers(
            200,
            "text/html; charset=utf-8",
            STATUS_PAGE.as_bytes(),
            STATUS_PAGE_HEADERS,
        ),
        "/favicon.ico" if pages.status => HttpResponse::with_headers(
            200,
            "image/svg+xml",
            FAVICON.as_bytes(),
            &[
                ("Cache-Control", "max-age=86400"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        ),
        "/" => HttpResponse::from_error(HandshakeError::MissingUpgrade),
        _ => HttpResponse::refusal(404, "not found: try /, /status, /metrics or /health", &[]),
    }
}

/// The live status page (`src/status_page.html`): checks its key with `GET /status`, connects back
/// over WebSocket (with the key from its own URL), subscribes to status pushes, shows them in tables
/// and plots the last minutes from the history it keeps itself. Nothing is fetched from elsewhere.
const STATUS_PAGE: &str = include_str!("status_page.html");

/// The page's headers: never cached (its URL may carry the key), never sent as a referrer, never
/// framed, and nothing loaded or connected to but this server (inline script and style, the icon).
const STATUS_PAGE_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         img-src 'self'; connect-src 'self' ws: wss:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'",
    ),
];

/// The page's icon, served at `/favicon.ico` so that a browser's request for it is answered (no 404
/// in the console).
const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#1f63d6\"/>\
<path d=\"M4.5 3.5v9M11.5 3.5v9M4.5 8h7\" stroke=\"#fff\" stroke-width=\"2\"/></svg>\n";
