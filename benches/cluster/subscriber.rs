//! The subscribed clients: one thread each, connected through nginx, subscribed to their topics,
//! recording every event they receive; on a close (1001 in a rolling restart) or a lost connection
//! they reconnect through nginx at once and subscribe again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::wire::{Incoming, Wire};

/// How often a blocked reader looks at the stop flag.
const POLL: Duration = Duration::from_millis(250);
/// Time between two attempts to reconnect.
const RETRY: Duration = Duration::from_millis(20);
/// A client that cannot reconnect (and subscribe) within this gives up.
const RECONNECT_WITHIN: Duration = Duration::from_secs(10);
/// The subscribe answers must come within this.
const ACK_WITHIN: Duration = Duration::from_secs(10);

/// The topic of index `k`: `bench.t<k>` (the NATS subject `<prefix>.bench.t<k>`).
pub fn topic_name(k: u16) -> String {
    format!("bench.t{k}")
}

/// The topics of client `c`: `per_client` of the `count`, spread evenly.
pub fn topics_of(c: usize, count: usize, per_client: usize) -> Vec<u16> {
    let stride = (count / per_client.max(1)).max(1);
    let mut topics: Vec<u16> = (0..per_client)
        .map(|j| ((c + j * stride) % count) as u16)
        .collect();
    topics.dedup();
    topics
}

/// What the clients and the bench's main thread share.
pub struct Shared {
    pub epoch: Instant,
    pub entry: SocketAddr,
    pub key: String,
    pub instances: usize,
    pub stop: AtomicBool,
    /// Clients subscribed right now (their current connection's answers all came).
    pub ready: AtomicUsize,
    /// Events received (probes not counted).
    pub delivered: AtomicU64,
    /// Probe events received.
    pub probe_receipts: AtomicU64,
    /// Connections that ended (a close frame or not) while the bench was running.
    pub ends: AtomicU64,
    /// Per client, a bit per (topic slot, publishing instance) of which a probe came.
    pub probes: Vec<AtomicU64>,
    /// The first fatal error (a refused subscribe, a client that could not reconnect).
    pub failure: Mutex<Option<String>>,
}

impl Shared {
    /// Nanoseconds since the bench's epoch (the clock of every timestamp, events' included).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fail(&self, message: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(message);
    }
}

/// One event received.
#[derive(Clone, Copy)]
pub struct Rx {
    pub topic: u16,
    pub seq: u32,
    /// The instance it was published through.
    pub via: u8,
    /// The client's connection it came on (0 for the first, 1 after the first reconnect, ...).
    pub conn: u16,
    /// When it was published and when it arrived (ns since the epoch).
    pub sent_ns: u64,
    pub at_ns: u64,
}

/// One connection's life: subscribed at `acked_ns`, ended at `end` (`None`: still open at the end).
pub struct Session {
    pub upgraded_ns: u64,
    pub acked_ns: u64,
    pub end: Option<End>,
}

/// How a connection ended.
pub struct End {
    pub at_ns: u64,
    /// The close code, or `None` when the connection ended without a close frame.
    pub code: Option<u16>,
    pub how: String,
}

/// Everything one client saw.
pub struct ClientLog {
    pub topics: Vec<u16>,
    /// Connections opened so far.
    pub conns: u16,
    pub rx: Vec<Rx>,
    pub sessions: Vec<Session>,
    pub error: Option<String>,
}

/// Starts client `id` (subscribed to `topics`) on its own thread.
pub fn spawn(
    id: usize,
    topics: Vec<u16>,
    shared: &'static Shared,
) -> std::io::Result<thread::JoinHandle<ClientLog>> {
    thread::Builder::new()
        .name(format!("client-{id}"))
        .stack_size(256 * 1024)
        .spawn(move || run(id, topics, shared))
}

fn run(id: usize, topics: Vec<u16>, shared: &Shared) -> ClientLog {
    let mut log = ClientLog {
        topics,
        conns: 0,
        rx: Vec::new(),
        sessions: Vec::new(),
        error: None,
    };
    let mut attempt = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let since = Instant::now();
        let mut wire = loop {
            attempt += 1;
            match Wire::open(shared.entry, &shared.key, POLL, (id as u64) << 20 | attempt) {
                Ok(w) => break Some(w),
                Err(e)
                    if since.elapsed() > RECONNECT_WITHIN
                        || shared.stop.load(Ordering::Relaxed) =>
                {
                    if !shared.stop.load(Ordering::Relaxed) {
                        log.error = Some(format!("client {id}: cannot reconnect: {e}"));
                    }
                    break None;
                }
                Err(_) => thread::sleep(RETRY),
            }
        };
        let Some(wire) = wire.as_mut() else { break };
        log.conns += 1;
        let upgraded_ns = shared.now_ns();
        let ended = match subscribe(wire, &mut log, id, shared) {
            Ok(()) => {
                log.sessions.push(Session {
                    upgraded_ns,
                    acked_ns: shared.now_ns(),
                    end: None,
                });
                shared.ready.fetch_add(1, Ordering::Relaxed);
                let end = listen(wire, &mut log, id, shared);
                shared.ready.fetch_sub(1, Ordering::Relaxed);
                end
            }
            Err(end) => end,
        };
        match ended {
            None => break, // stopped
            Some(end) => {
                shared.ends.fetch_add(1, Ordering::Relaxed);
                if let Some(code) = end.code {
                    wire.answer_close(code);
                }
                match log.sessions.last_mut() {
                    Some(s) if s.end.is_none() && s.acked_ns <= end.at_ns => s.end = Some(end),
                    _ => {}
                }
            }
        }
        if log.error.is_some() {
            break;
        }
    }
    if let Some(e) = &log.error {
        shared.fail(e.clone());
    }
    log
}

/// Subscribes to every topic and waits for the answers (recording events that come before them).
fn subscribe(
    wire: &mut Wire,
    log: &mut ClientLog,
    id: usize,
    shared: &Shared,
) -> Result<(), Option<End>> {
    for (slot, &k) in log.topics.iter().enumerate() {
        let request = json!({"type": "subscribe", "topic": topic_name(k), "id": slot});
        if let Err(e) = wire.send(&request) {
            return Err(Some(End {
                at_ns: shared.now_ns(),
                code: None,
                how: e,
            }));
        }
    }
    let deadline = Instant::now() + ACK_WITHIN;
    let mut acked = 0;
    while acked < log.topics.len() {
        if Instant::now() > deadline {
            log.error = Some(format!(
                "client {id}: no answer to subscribe within {ACK_WITHIN:?}"
            ));
            return Err(None);
        }
        match wire.next() {
            Incoming::Json(v) => match v.get("type").and_then(Value::as_str) {
                Some("subscribed") => acked += 1,
                Some("event") => record(&v, log, id, shared),
                _ => {
                    log.error = Some(format!("client {id}: subscribe refused: {v}"));
                    return Err(None);
                }
            },
            Incoming::Idle if shared.stop.load(Ordering::Relaxed) => return Err(None),
            Incoming::Idle => {}
            Incoming::Close(code) => {
                return Err(Some(End {
                    at_ns: shared.now_ns(),
                    code: Some(code),
                    how: format!("close {code} before the subscribe answers"),
                }))
            }
            Incoming::Ended(how) => {
                return Err(Some(End {
                    at_ns: shared.now_ns(),
                    code: None,
                    how,
                }))
            }
        }
    }
    Ok(())
}

/// Records events until the connection ends (`Some`) or the bench stops (`None`).
fn listen(wire: &mut Wire, log: &mut ClientLog, id: usize, shared: &Shared) -> Option<End> {
    loop {
        match wire.next() {
            Incoming::Json(v) => match v.get("type").and_then(Value::as_str) {
                Some("event") => record(&v, log, id, shared),
                _ => {
                    log.error = Some(format!("client {id}: unexpected message {v}"));
                    return None;
                }
            },
            Incoming::Idle if shared.stop.load(Ordering::Relaxed) => return None,
            Incoming::Idle => {}
            Incoming::Close(code) => {
                return Some(End {
                    at_ns: shared.now_ns(),
                    code: Some(code),
                    how: format!("close {code}"),
                })
            }
            Incoming::Ended(how) => {
                return Some(End {
                    at_ns: shared.now_ns(),
                    code: None,
                    how,
                })
            }
        }
    }
}

/// One `{"type":"event","topic":...,"data":{"k":topic,"s":seq,"t":ns,"v":via[,"p":1]}}`.
fn record(v: &Value, log: &mut ClientLog, id: usize, shared: &Shared) {
    let at_ns = shared.now_ns();
    let data = &v["data"];
    let field = |name: &str| data.get(name).and_then(Value::as_u64);
    let (Some(k), Some(t), Some(via)) = (field("k"), field("t"), field("v")) else {
        log.error
            .get_or_insert(format!("client {id}: an event without k, t and v: {v}"));
        return;
    };
    let topic = k as u16;
    let Some(slot) = log.topics.iter().position(|&x| x == topic) else {
        log.error.get_or_insert(format!(
            "client {id}: an event of a topic it did not subscribe to: {v}"
        ));
        return;
    };
    if v.get("topic").and_then(Value::as_str) != Some(topic_name(topic).as_str()) {
        log.error.get_or_insert(format!(
            "client {id}: an event whose topic and data disagree: {v}"
        ));
        return;
    }
    if field("p").is_some() {
        shared.probe_receipts.fetch_add(1, Ordering::Relaxed);
        let bit = slot * shared.instances + via as usize;
        if bit < 64 {
            shared.probes[id].fetch_or(1 << bit, Ordering::Relaxed);
        }
        return;
    }
    let Some(seq) = field("s") else {
        log.error
            .get_or_insert(format!("client {id}: an event without a sequence: {v}"));
        return;
    };
    log.rx.push(Rx {
        topic,
        seq: seq as u32,
        via: via as u8,
        conn: log.conns.saturating_sub(1),
        sent_ns: t,
        at_ns,
    });
    shared.delivered.fetch_add(1, Ordering::Relaxed);
}
