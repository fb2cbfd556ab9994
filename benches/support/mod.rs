//! What the benches that drive processes share: `echo`, `load`, `shutdown` and `crowd` each include
//! this module (`#[path = "../support/mod.rs"] mod support;`) and hold only their scenario.
//!
//! - [`limits`]: raise `RLIMIT_NOFILE` for the bench and the servers it starts;
//! - [`server`]: build or locate the release binary, start a server process, wait for its
//!   `listening on ...` line, signal it, stop and reap it;
//! - [`floor`]: what the benches' own bare servers share (bind, the readiness line, a bare 101);
//! - [`client`]: the client side of the upgrade, one connection or many;
//! - [`frames`]: the client's frame codec, on the protocol crate's client role;
//! - [`proc`]: readings from `/proc` (CPU time of a process or one thread, RSS, threads,
//!   descriptors, the kernel's TCP counters);
//! - [`stats`]: medians and ranges over runs, latency percentiles (`hdrhistogram`);
//! - [`opts`]: the `HYDROGEN_BENCH_*` environment knobs;
//! - [`rng`]: cheap randomness for masks, sizes and pauses.
//!
//! Each bench uses only some of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod client;
pub mod floor;
pub mod frames;
pub mod limits;
pub mod opts;
pub mod proc;
pub mod rng;
pub mod server;
pub mod stats;
