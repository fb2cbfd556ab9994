//! The runtime: the threads that move connections along. The admission stage ([`admission`]) reads
//! request heads on non-blocking sockets and hands complete upgrades to the fixed [`pool`], whose workers ([`worker`]) each serve one connection for its life; the
//! [`ticker`] keeps heartbeats and slow clients in check; [`shutdown`] stops it all.
//!
//! Each thread is handed a context with only what it uses (`AdmissionContext`, `WorkerContext`,
//! `TickerContext`, `ShutdownContext`); the server builds them.

pub(crate) mod admission;
pub(crate) mod pool;
pub(crate) mod read_buffer;
pub(crate) mod shutdown;
pub(crate) mod ticker;
pub(crate) mod worker;
