//! The status document and the Prometheus metrics, both built from a [`Sample`]: plain values the server
//! gathers in one place (counters, gauges, the configuration in force). Nothing here reaches into the
//! server's threads.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{format_duration, Config, Mode};
use crate::stats::StatsSnapshot;

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
        },
    }
}

/// The Prometheus text exposition served at `GET /metrics`.
pub fn metrics(sample: &Sample, config: &Config) -> String {
    let s = &sample.stats;
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP hydrogen_ws_{name} {help}");
        let _ = writeln!(out, "# TYPE hydrogen_ws_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "hydrogen_ws_{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    let labelled = |counts: &[(Option<u16>, u64)], label: &str| -> Vec<(String, f64)> {
        counts
            .iter()
            .map(|(name, v)| {
                let name = name.map_or_else(|| "other".to_string(), |n| n.to_string());
                (format!("{{{label}=\"{name}\"}}"), *v as f64)
            })
            .collect()
    };
    let plain: [(&str, &str, &str, u64); 15] = [
        (
            "up",
            "gauge",
            "1 while serving, 0 during shutdown.",
            u64::from(!sample.shutting_down),
        ),
        (
            "connections_active",
            "gauge",
            "Connections open or in the handshake.",
            sample.active as u64,
        ),
        (
            "connections_capacity",
            "gauge",
            "Worker threads, the connection capacity.",
            config.threads as u64,
        ),
        (
            "workers",
            "gauge",
            "Worker threads started (on demand, at most the capacity).",
            sample.workers as u64,
        ),
        (
            "connections_total",
            "counter",
            "Connections accepted.",
            s.connections_total,
        ),
        (
            "upgrades_total",
            "counter",
            "WebSocket handshakes completed.",
            s.upgrades,
        ),
        (
            "http_requests_total",
            "counter",
            "Plain HTTP requests answered.",
            s.http_requests,
        ),
        (
            "messages_received_total",
            "counter",
            "Data messages received.",
            s.messages_in,
        ),
        (
            "messages_sent_total",
            "counter",
            "Data messages sent.",
            s.messages_out,
        ),
        (
            "bytes_received_total",
            "counter",
            "Payload bytes received.",
            s.bytes_in,
        ),
        (
            "bytes_sent_total",
            "counter",
            "Payload bytes sent.",
            s.bytes_out,
        ),
        (
            "protocol_errors_total",
            "counter",
            "Connections closed for breaking the protocol.",
            s.protocol_errors,
        ),
        (
            "evictions_total",
            "counter",
            "Clients evicted for not reading.",
            s.evicted,
        ),
        (
            "idle_timeouts_total",
            "counter",
            "Connections closed after the idle timeout.",
            s.idle_timeouts,
        ),
        (
            "heartbeat_timeouts_total",
            "counter",
            "Connections closed because a pong was overdue.",
            s.heartbeat_timeouts,
        ),
    ];
    let (first, rest) = plain.split_at(1);
    for (name, kind, help, v) in first {
        metric(name, kind, help, &one(*v));
    }
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &[(String::new(), sample.uptime.as_secs_f64())],
    );
    for (name, kind, help, v) in rest {
        metric(name, kind, help, &one(*v));
    }
    metric(
        "refusals_total",
        "counter",
        "Requests refused, by HTTP status.",
        &labelled(&sample.refusals, "status"),
    );
    metric(
        "close_codes_sent_total",
        "counter",
        "Close frames sent, by code.",
        &labelled(&sample.close_sent, "code"),
    );
    metric(
        "close_codes_received_total",
        "counter",
        "Close frames received, by code (1005: no code).",
        &labelled(&sample.close_received, "code"),
    );
    if let Some(rss) = sample.rss_bytes {
        metric(
            "resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            &one(rss),
        );
    }
    if let Some(threads) = sample.threads {
        metric("threads", "gauge", "Threads of the process.", &one(threads));
    }
    if sample.last_shutdown_us > 0 {
        metric(
            "last_shutdown_seconds",
            "gauge",
            "Duration of the last shutdown sequence.",
            &[(String::new(), sample.last_shutdown_us as f64 / 1e6)],
        );
    }
    out
}
