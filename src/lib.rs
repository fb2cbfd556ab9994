//! hydrogen-ws: a WebSocket server (RFC 6455) over blocking sockets on a thread pool of fixed capacity
//! (workers start on demand, one per connection), built to stop in milliseconds.
//!
//! ```text
//!  acceptor thread ──accept──> pool (N workers, crossbeam channel) ──> connection (one per worker)
//!       │ all busy: 503 + Retry-After                                   │ handshake (deadline) -> 101
//!       │                                                               │ read loop: bytes -> Session
//!       └── shutdown(): listener shut, 1001 to every registered ──┐     │   -> messages -> Handler
//!                       connection, shutdown(Both) -> workers wake └──> registry (slot per worker)
//! ```
//!
//! The protocol itself (handshake parsing, frames, messages, the close handshake) lives in the sans-IO
//! crate [`hydrogen_ws_protocol`]; this crate owns sockets, threads and policy.
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

mod app;
pub mod auth;
pub mod config;
mod connection;
mod handler;
mod http;
mod listener;

mod pool;
mod registry;
mod server;
pub mod shutdown;
pub mod status;
mod ticker;

pub use app::Hydrogen;
pub use config::{Config, ConfigError, Heartbeat, Limits, Mode};
pub use connection::{Conn, Ending, SendError};
pub use handler::{Echo, Handler};
pub use hydrogen_ws_protocol as protocol;
pub use server::{BroadcastReport, Server, ServerError, ServerHandle};
pub use shutdown::ShutdownReport;
pub use status::{Stats, StatsSnapshot};
