//! The status document and the Prometheus metrics, both built from a [`Sample`]: plain values the server
//! gathers in one place (counters, gauges, the configuration in force). Nothing here reaches into the
//! server's threads.

mod bus;
pub use bus::{BusRequests, BusStatus};

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{format_duration, Config, Mode};
use crate::stats::{Admission, StatsSnapshot};

/// Everything the status document and the metrics show, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The main counters.
    pub stats: StatsSnapshot,
    /// Refusals by HTTP status (`None`: any other status).
    pub refusals: Vec<(Option<u16>, u64)>,
    /// Close frames sent, by code (`None`: any other code).
    pub close_sent: Vec<(Option<u16>, u64)>,
    /// Close frames received, by code (`None`: any other code).
    pub close_received: Vec<(Option<u16>, u64)>,
    /// Microseconds the last shutdown took (0: none yet).
    pub last_shutdown_us: u64,
    /// Handshakes in progress in the admission stage.
    pub pending: u64,
    /// The admission stage's refusals and closes, by reason.
    pub admission: Vec<(Admission, u64)>,
    /// Upgrades handed to a worker.
    pub admitted: u64,
    /// Microseconds they waited for their worker, in all.
    pub admission_wait_us: u64,
    /// Time since the server started.
    pub uptime: Duration,
    /// The address the server listens on.
    pub listen: SocketAddr,
    /// Whether a shutdown has started.
    pub shutting_down: bool,
    /// Connections registered now (open or in the handshake).
    pub active: usize,
    /// Worker threads started.
    pub workers: usize,
    /// Resident memory of the process, in bytes.
    pub rss_bytes: Option<u64>,
    /// Threads of the process.
    pub threads: Option<u64>,
    /// The bus's counters and state.
    pub bus: crate::stats::BusSnapshot,
}

/// The status document: the reply to `{"type":"status"}` and the body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusDocument {
    /// Always `"status"` (the document doubles as a message of the Hydrogen application).
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `"hydrogen-ws"`.
    pub server: String,
    /// The server's version.
    pub version: String,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// The address it listens on.
    pub listen: String,
    /// `hydrogen` or `echo`.
    pub mode: String,
    /// The subprotocol of hydrogen mode (`None` in echo mode, which never negotiates one).
    pub protocol: Option<String>,
    /// Whether a shutdown has started.
    pub shutting_down: bool,
    /// Connections now, in all, and the capacity.
    pub connections: Connections,
    /// Requests by outcome.
    pub requests: Requests,
    /// Data messages in and out.
    pub messages: InOut,
    /// Payload bytes in and out.
    pub bytes: InOut,
    /// Memory of the process.
    pub memory: Memory,
    /// Threads of the process.
    pub threads: Option<u64>,
    /// The worker pool.
    pub pool: PoolStatus,
    /// The limits in force.
    pub limits: LimitsStatus,
    /// The terminal application, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<TerminalStatus>,
    /// The bus (in-process or NATS).
    pub bus: BusStatus,
}

/// The terminal sessions in the [`StatusDocument`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalStatus {
    /// Sessions running now.
    pub open: u64,
    /// Sessions started since the server started.
    pub total: u64,
    /// The most at once.
    pub max_sessions: usize,
    /// Sessions refused because the most were running.
    pub refused_full: u64,
    /// Sessions whose command could not be started.
    pub refused_spawn: u64,
}

/// Connection counts of the [`StatusDocument`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Open or in the handshake now.
    pub active: usize,
    /// Accepted since start.
    pub total: u64,
    /// The most at once (one per worker).
    pub capacity: usize,
    /// Handshakes in progress in the admission stage (no worker held).
    pub pending: u64,
}

/// Request counts of the [`StatusDocument`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Upgrades, plain HTTP requests and refusals together.
    pub total: u64,
    /// Handshakes completed.
    pub upgrades: u64,
    /// Plain HTTP requests answered.
    pub http: u64,
    /// Upgrade requests refused with an HTTP error status.
    pub refused: u64,
    /// Of those, refused with 503 because every worker was busy.
    pub refused_full: u64,
}

/// A count in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InOut {
    /// Received.
    #[serde(rename = "in")]
    pub received: u64,
    /// Sent.
    #[serde(rename = "out")]
    pub sent: u64,
}

/// Memory of the [`StatusDocument`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Resident memory in bytes.
    pub rss_bytes: Option<u64>,
}

/// The worker pool in the [`StatusDocument`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Worker threads started (on demand, at most the capacity).
    pub workers: usize,
    /// The most workers.
    pub capacity: usize,
    /// Workers serving a connection now.
    pub busy: usize,
}

/// The limits in the [`StatusDocument`]; durations as the command line writes them (`5s`, `500ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct LimitsStatus {
    pub max_message_size: usize,
    pub max_frame_size: usize,
    pub max_header_size: usize,
    pub max_headers: usize,
    pub handshake_timeout: String,
    pub send_timeout: String,
    pub idle_timeout: Option<String>,
    pub ping_interval: Option<String>,
    pub pong_timeout: String,
    pub shutdown_timeout: String,
    pub max_pending: usize,
    pub max_connections_per_ip: usize,
}

/// The status document of `sample` under `config`.
pub fn document(sample: &Sample, config: &Config) -> StatusDocument {
    let s = &sample.stats;
    let l = &config.limits;
    StatusDocument {
        kind: "status".into(),
        server: "hydrogen-ws".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: sample.uptime.as_secs_f64(),
        listen: sample.listen.to_string(),
        mode: config.mode.as_str().into(),
        protocol: (config.mode == Mode::Hydrogen).then(|| config.protocol.clone()),
        shutting_down: sample.shutting_down,
        connections: Connections {
            active: sample.active,
            total: s.connections_total,
            capacity: config.threads,
            pending: sample.pending,
        },
        requests: Requests {
            total: s.upgrades + s.http_requests + s.refused_handshake,
            upgrades: s.upgrades,
            http: s.http_requests,
            refused: s.refused_handshake,
            refused_full: s.refused_full,
        },
        messages: InOut {
            received: s.messages_in,
            sent: s.messages_out,
        },
        bytes: InOut {
            received: s.bytes_in,
            sent: s.bytes_out,
        },
        memory: Memory {
            rss_bytes: sample.rss_bytes,
        },
        threads: sample.threads,
        pool: PoolStatus {
            workers: sample.workers,
            capacity: config.threads,
            busy: sample.active,
        },
        limits: LimitsStatus {
            max_message_size: l.max_message_size,
            max_frame_size: l.max_frame_size,
            max_header_size: l.max_header_bytes,
            max_headers: l.max_headers,
            handshake_timeout: format_duration(l.handshake_timeout),
            send_timeout: format_duration(l.send_timeout),
            idle_timeout: l.idle_timeout.map(format_duration),
            ping_interval: config.heartbeat.ping_interval.map(format_duration),
            pong_timeout: format_duration(config.heartbeat.pong_timeout),
            shutdown_timeout: format_duration(config.shutdown_timeout),
            max_pending: l.max_pending_handshakes,
            max_connections_per_ip: config.connections_per_ip(),
        },
        terminal: config.terminal.as_ref().map(|t| TerminalStatus {
            open: s.terminals_open,
            total: s.terminals_total,
            max_sessions: t.max_sessions,
            refused_full: s.terminals_refused_full,
            refused_spawn: s.terminals_refused_spawn,
        }),
        bus: bus::status(&sample.bus, &config.bus),
    }
}

/// The content type of [`metrics`]' exposition.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics served at `GET /metrics`, in the OpenMetrics text format (which Prometheus reads), built
/// with `prometheus-client` from one sample. Counters carry the `_total` suffix.
pub fn metrics(sample: &Sample, config: &Config) -> String {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    use std::sync::atomic::AtomicU64;

    let s = &sample.stats;
    let mut registry = Registry::with_prefix("hydrogen_ws");
    let seconds = |registry: &mut Registry, name: &str, help: &str, value: f64| {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(value);
        registry.register(name, help, g);
    };
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, g);
    };
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    let labelled = |registry: &mut Registry,
                    name: &str,
                    help: &str,
                    label: &str,
                    counts: &[(Option<u16>, u64)]| {
        let family = Family::<Vec<(String, String)>, Counter>::default();
        for (key, value) in counts {
            let key = key.map_or_else(|| "other".to_string(), |k| k.to_string());
            family
                .get_or_create(&vec![(label.to_string(), key)])
                .inc_by(*value);
        }
        registry.register(name, help, family);
    };
    let r = &mut registry;
    gauge(
        r,
        "up",
        "1 while serving, 0 during shutdown",
        u64::from(!sample.shutting_down),
    );
    seconds(
        r,
        "uptime_seconds",
        "Seconds since the server started",
        sample.uptime.as_secs_f64(),
    );
    gauge(
        r,
        "connections_active",
        "WebSocket connections open (one worker each)",
        sample.active as u64,
    );
    gauge(
        r,
        "connections_capacity",
        "Worker threads, the connection capacity",
        config.threads as u64,
    );
    gauge(
        r,
        "workers",
        "Worker threads started (on demand, at most the capacity)",
        sample.workers as u64,
    );
    gauge(
        r,
        "pending_handshakes",
        "Connections whose request head is still arriving (in the admission stage, no worker)",
        sample.pending,
    );
    counter(
        r,
        "connections",
        "Connections accepted",
        s.connections_total,
    );
    counter(r, "upgrades", "WebSocket handshakes completed", s.upgrades);
    counter(
        r,
        "http_requests",
        "Plain HTTP requests answered",
        s.http_requests,
    );
    counter(
        r,
        "messages_received",
        "Data messages received",
        s.messages_in,
    );
    counter(r, "messages_sent", "Data messages sent", s.messages_out);
    counter(r, "bytes_received", "Payload bytes received", s.bytes_in);
    counter(r, "bytes_sent", "Payload bytes sent", s.bytes_out);
    counter(
        r,
        "protocol_errors",
        "Connections closed for breaking the protocol",
        s.protocol_errors,
    );
    counter(r, "evictions", "Clients evicted for not reading", s.evicted);
    bus::metrics(r, &sample.bus);
    counter(
        r,
        "deflate_connections",
        "Connections that agreed permessage-deflate",
        s.deflate_connections,
    );
    counter(
        r,
        "deflated_messages",
        "Messages sent compressed (permessage-deflate)",
        s.deflated_messages,
    );
    counter(
        r,
        "deflated_bytes_raw",
        "Payload bytes of the messages sent compressed, before compression",
        s.deflated_bytes_raw,
    );
    counter(
        r,
        "deflated_bytes_wire",
        "Payload bytes of the messages sent compressed, as sent",
        s.deflated_bytes_wire,
    );
    if config.terminal.is_some() {
        gauge(
            r,
            "terminal_sessions_open",
            "Terminal sessions running now",
            s.terminals_open,
        );
        counter(
            r,
            "terminal_sessions",
            "Terminal sessions started",
            s.terminals_total,
        );
        let family = Family::<Vec<(String, String)>, Counter>::default();
        for (reason, n) in [
            ("max_sessions", s.terminals_refused_full),
            ("spawn_failed", s.terminals_refused_spawn),
        ] {
            family
                .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                .inc_by(n);
        }
        r.register(
            "terminal_refusals",
            "Terminal sessions refused, by reason",
            family,
        );
    }
    counter(
        r,
        "idle_timeouts",
        "Connections closed after the idle timeout",
        s.idle_timeouts,
    );
    counter(
        r,
        "heartbeat_timeouts",
        "Connections closed because a pong was overdue",
        s.heartbeat_timeouts,
    );
    labelled(
        r,
        "refusals",
        "Requests refused, by HTTP status",
        "status",
        &sample.refusals,
    );
    let family = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, value) in &sample.admission {
        family
            .get_or_create(&vec![("reason".to_string(), reason.label().to_string())])
            .inc_by(*value);
    }
    r.register(
        "admission_refusals",
        "Connections refused or closed before their upgrade, by reason",
        family,
    );
    counter(
        r,
        "admitted",
        "Upgrades handed to a worker",
        sample.admitted,
    );
    let waited = Counter::<f64, AtomicU64>::default();
    waited.inc_by(sample.admission_wait_us as f64 / 1e6);
    r.register(
        "admission_wait_seconds",
        "Time upgrades waited for their worker, in all (divided by admitted_total: the mean)",
        waited,
    );
    labelled(
        r,
        "close_codes_sent",
        "Close frames sent, by code",
        "code",
        &sample.close_sent,
    );
    labelled(
        r,
        "close_codes_received",
        "Close frames received, by code (1005: no code)",
        "code",
        &sample.close_received,
    );
    if let Some(rss) = sample.rss_bytes {
        gauge(
            r,
            "resident_memory_bytes",
            "Resident memory of the process",
            rss,
        );
    }
    if let Some(threads) = sample.threads {
        gauge(r, "threads", "Threads of the process", threads);
    }
    if sample.last_shutdown_us > 0 {
        let last = sample.last_shutdown_us as f64 / 1e6;
        seconds(
            r,
            "last_shutdown_seconds",
            "Duration of the last shutdown sequence",
            last,
        );
    }
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}
