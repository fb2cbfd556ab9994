//! hydrogen-ws: a WebSocket server (RFC 6455) over blocking sockets on a thread pool of fixed capacity
//! (workers start on demand, one per connection), built to stop in milliseconds.
//!
//! ```text
//!  admission thread: accept, read request heads (epoll, non-blocking, deadline), plain HTTP, refusals
//!       │ a complete, valid upgrade ──> pool (N workers, crossbeam channel) ──> worker (one each)
//!       │ all busy: 503 + Retry-After                                   │ 101
//!       │                                                               │ read loop: bytes -> Session
//!       └── shutdown(): listener shut, 1001 to every registered ──┐     │   -> messages -> route's Handler
//!                       connection, shutdown(Both) -> workers wake └──> registry (slot per worker)
//! ```
//!
//! # Layers
//!
//! Each module imports only modules below it (checked in CI):
//!
//! ```text
//!  apps (echo, hydrogen, terminal)            the applications, and the --mode route tables
//!  server                                     builds each thread's context, hands out ServerHandle
//!  runtime (admission, pool, worker, ticker, shutdown)
//!  http, routes, auth, handler                plain HTTP; path -> application, key, subprotocol, origins
//!  bus, registry                              broadcast, publish, request (in-process or NATS); the live connections
//!  conn (Conn, writer, deflate, ending)       one connection as every thread sees it
//!  handle, status, report                     ServerHandle over a narrow trait; status document, metrics
//!  config, stats, sys, topic                  leaves: settings, counters, every libc call, topic patterns
//! ```
//!
//! Several applications can share one server, each on its own path: see [`Routes`].
//!
//! The protocol itself (handshake parsing, frames, messages, the close handshake, permessage-deflate)
//! lives in the sans-IO crate [`hydrogen_ws_protocol`]; this crate owns sockets, threads and policy
//! (here: which (de)compressors are shared and which each connection keeps, see [`Deflate`]).
//!
//! # Example
//!
//! An echo server on a free port, one client, and a shutdown that tells the client why:
//!
//! ```
//! use hydrogen_ws::{Config, Echo, Server};
//!
//! let mut config = Config::default();
//! config.mode = hydrogen_ws::Mode::Echo;
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! config.threads = 4;
//! let server = Server::start(config, Echo).unwrap();
//!
//! let url = format!("ws://{}/", server.local_addr());
//! let (mut client, _) = tungstenite::connect(url).unwrap();
//! client.send(tungstenite::Message::text("hello")).unwrap();
//! assert_eq!(client.read().unwrap(), tungstenite::Message::text("hello"));
//!
//! let report = server.shutdown();
//! assert_eq!(report.close_frames, 1);
//! match client.read().unwrap() {
//!     tungstenite::Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
//!     other => panic!("expected a close frame, got {other:?}"),
//! }
//! ```
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

// Leaves.
pub mod config;
mod stats;
mod sys;
pub mod topic;
// Values and views over them.
mod handle;
mod report;
pub mod status;
// One connection.
mod conn;
// Many connections.
mod bus;
mod registry;
// What serves a connection.
pub mod auth;
mod handler;
mod http;
mod routes;
// Threads.
mod runtime;
// Wiring.
mod server;
// On top.
mod apps;

pub use apps::{routes_for_mode, Echo, Hydrogen, Terminal};
pub use config::{
    BusConfig, Config, ConfigError, Deflate, Heartbeat, Limits, Mode, NatsAuth, TerminalConfig,
};
pub use conn::{Conn, Ending, SendError};
pub use handle::{BusError, ServerHandle};
pub use handler::Handler;
pub use hydrogen_ws_protocol as protocol;
pub use report::{BroadcastReport, ShutdownReport};
pub use routes::{Route, Routes};
pub use server::{Server, ServerError};
pub use stats::{Admission, BusSnapshot, BusState, BusStats, RequestOutcome, Stats, StatsSnapshot};
pub use status::StatusDocument;
pub use topic::Permissions;

/// Raises the process's soft limit on open descriptors to its hard limit (as a server binary should at
/// start: every connection, pending or open, is a descriptor) and returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    sys::raise_open_file_limit()
}

/// The terminal application's constants.
pub mod terminal {
    pub use crate::apps::{TERMINAL_PAGE, TERMINAL_PAGE_PATH, TRY_AGAIN_LATER};
}

/// The Hydrogen application's constants (topics, intervals).
pub mod hydrogen {
    pub use crate::apps::{DEFAULT_INTERVAL, MAX_INTERVAL, MIN_INTERVAL, STATUS_TOPIC};
}
