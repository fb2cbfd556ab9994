//! Hostile clients, floods and faults over real sockets on 127.0.0.1: every attack gets its exact refusal
//! (HTTP status or close code, with its reason), and a well-behaved client connected at the same time keeps
//! getting its echoes.
//!
//! The cases are split by layer:
//!
//! - `hostile/handshake.rs`: slow, huge, long, odd, malformed and pathological upgrade requests;
//! - `hostile/frames.rs`: frame and message abuse after the upgrade;
//! - `hostile/crowds.rs`: crowds in front of the admission stage (silent, trickling, half-sent, per-address,
//!   a full pending table, a full pool, a shutdown) next to a well-behaved client, and bytes pipelined
//!   behind a request head that arrived in pieces;
//! - `hostile/deflate.rs`: compression bombs and offers with thousands of parameters;
//! - `hostile/floods.rs`: floods, resets, vanished and non-reading clients, all of it during a shutdown,
//!   and the descriptor, thread and memory accounting.
//!
//! Tests that measure the process (RSS, open descriptors, threads) take [`exclusive`]; every other test
//! takes [`shared`], so a measurement never overlaps another test's sockets and threads. The server runs
//! in this process, so `/proc/self` is the server plus the test's own clients.

mod support;

#[path = "hostile/common.rs"]
mod common;
#[path = "hostile/crowds.rs"]
mod crowds;
#[path = "hostile/deflate.rs"]
mod deflate;
#[path = "hostile/floods.rs"]
mod floods;
#[path = "hostile/frames.rs"]
mod frames;
#[path = "hostile/handshake.rs"]
mod handshake;
