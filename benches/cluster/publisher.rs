//! The publisher: one connection straight to each instance (not through nginx, so that the bench
//! chooses the instance), each event sent as a client `publish` through a randomly chosen one that is
//! up. Every publish is logged with its time; a reader thread per connection counts what the
//! instance answers and marks the connection down when it closes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::subscriber::{topic_name, Shared};
use crate::support::rng::Rng;
use crate::wire::{Incoming, Wire};

/// One event published.
#[derive(Clone, Copy)]
pub struct Pub {
    pub topic: u16,
    pub seq: u32,
    pub at_ns: u64,
    /// 0: the fan-out and latency run; 1: during the rolling restart.
    pub phase: u8,
}

struct Conn {
    wire: Option<Wire>,
    /// Whether the bench lets events go through this instance (cleared just before its SIGTERM).
    usable: bool,
}

/// What the instances answered to the publisher (by `"type"`), and the errors among it.
#[derive(Default)]
pub struct Answers {
    pub by_type: BTreeMap<String, u64>,
    pub errors: Vec<String>,
}

/// The publisher's connections, its log and its sequence numbers.
pub struct Publisher {
    shared: &'static Shared,
    addrs: Vec<SocketAddr>,
    conns: Vec<Mutex<Conn>>,
    answers: Arc<Mutex<Answers>>,
    state: Mutex<State>,
}

struct State {
    rng: Rng,
    /// The next sequence number of each topic.
    seqs: Vec<u32>,
    log: Vec<Pub>,
    /// Slots skipped because no instance was up.
    skipped: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Publisher {
    /// Connects to every instance.
    pub fn connect(
        shared: &'static Shared,
        addrs: Vec<SocketAddr>,
        topics: usize,
    ) -> Result<Publisher, String> {
        let p = Publisher {
            shared,
            conns: addrs
                .iter()
                .map(|_| {
                    Mutex::new(Conn {
                        wire: None,
                        usable: false,
                    })
                })
                .collect(),
            addrs,
            answers: Arc::default(),
            state: Mutex::new(State {
                rng: Rng::new(0x5eed),
                seqs: vec![0; topics],
                log: Vec::new(),
                skipped: 0,
            }),
        };
        for i in 0..p.addrs.len() {
            p.reconnect(i)?;
        }
        Ok(p)
    }

    /// (Re)opens the connection to instance `i` and lets events go through it.
    pub fn reconnect(&self, i: usize) -> Result<(), String> {
        let wire = Wire::open(
            self.addrs[i],
            &self.shared.key,
            Duration::from_millis(250),
            77 + i as u64,
        )
        .map_err(|e| format!("publisher to instance {}: {e}", i + 1))?;
        let mut reader = wire.try_clone(99 + i as u64)?;
        let answers = Arc::clone(&self.answers);
        let shared = self.shared;
        thread::Builder::new()
            .name(format!("publisher-reader-{i}"))
            .spawn(move || loop {
                match reader.next() {
                    Incoming::Json(v) => {
                        let kind = v
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string();
                        let mut a = lock(&answers);
                        if kind == "error" {
                            a.errors.push(v.to_string());
                        }
                        *a.by_type.entry(kind).or_default() += 1;
                    }
                    Incoming::Idle if shared.stop.load(Ordering::Relaxed) => break,
                    Incoming::Idle => {}
                    Incoming::Close(_) | Incoming::Ended(_) => break,
                }
            })
            .map_err(|e| format!("spawn: {e}"))?;
        let mut c = lock(&self.conns[i]);
        c.wire = Some(wire);
        c.usable = true;
        Ok(())
    }

    /// Stops sending through instance `i` (before it is stopped) and closes the connection.
    pub fn retire(&self, i: usize) {
        let mut c = lock(&self.conns[i]);
        c.usable = false;
        if let Some(w) = c.wire.take() {
            w.shutdown();
        }
    }

    /// Publishes the next event of `topic` through a random usable instance; `false` when none is.
    pub fn publish(&self, topic: u16, phase: u8) -> Result<bool, String> {
        let mut st = lock(&self.state);
        let n = self.conns.len();
        let start = (st.rng.next() % n as u64) as usize;
        for j in 0..n {
            let via = (start + j) % n;
            let mut c = lock(&self.conns[via]);
            if !c.usable {
                continue;
            }
            let Some(wire) = c.wire.as_mut() else {
                continue;
            };
            let seq = st.seqs[topic as usize];
            let at_ns = self.shared.now_ns();
            let message = json!({"type": "publish", "topic": topic_name(topic),
                "data": {"k": topic, "s": seq, "t": at_ns, "v": via}});
            match wire.send(&message) {
                Ok(()) => {
                    st.seqs[topic as usize] += 1;
                    st.log.push(Pub {
                        topic,
                        seq,
                        at_ns,
                        phase,
                    });
                    return Ok(true);
                }
                Err(e) => {
                    // The instance went away under us: not counted as published; try another.
                    c.usable = false;
                    c.wire = None;
                    lock(&self.answers)
                        .errors
                        .push(format!("publish through instance {}: {e}", via + 1));
                }
            }
        }
        st.skipped += 1;
        Ok(false)
    }

    /// A probe on every topic through every instance (not logged, no sequence number).
    pub fn probe(&self, topics: usize) -> Result<(), String> {
        for (via, conn) in self.conns.iter().enumerate() {
            let mut c = lock(conn);
            let Some(wire) = c.wire.as_mut() else {
                continue;
            };
            for k in 0..topics {
                let message = json!({"type": "publish", "topic": topic_name(k as u16),
                    "data": {"k": k, "t": self.shared.now_ns(), "v": via, "p": 1}});
                wire.send(&message)
                    .map_err(|e| format!("probe through instance {}: {e}", via + 1))?;
            }
        }
        Ok(())
    }

    /// Publishes `count` events (or until `stop`), `rate` a second, on random topics; returns how
    /// many were published.
    pub fn run_paced(
        &self,
        count: Option<u64>,
        rate: f64,
        topics: usize,
        phase: u8,
        stop: &AtomicBool,
    ) -> Result<u64, String> {
        let start = Instant::now();
        let mut sent = 0u64;
        let mut slot = 0u64;
        while count.is_none_or(|c| sent < c) && !stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_secs_f64(slot as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            slot += 1;
            let topic = (lock(&self.state).rng.next() % topics as u64) as u16;
            if self.publish(topic, phase)? {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// The log of every event published, in order.
    pub fn log(&self) -> Vec<Pub> {
        lock(&self.state).log.clone()
    }

    /// Slots skipped because no instance was usable.
    pub fn skipped(&self) -> u64 {
        lock(&self.state).skipped
    }

    /// The instances' answers so far.
    pub fn answers(&self) -> (BTreeMap<String, u64>, Vec<String>) {
        let a = lock(&self.answers);
        (a.by_type.clone(), a.errors.clone())
    }

    /// Closes every connection.
    pub fn close(&self) {
        for i in 0..self.conns.len() {
            self.retire(i);
        }
    }
}
