//! The bus on NATS: one thread (`hydrogen-ws-bus`) runs a single-threaded tokio runtime and is the only
//! contact with NATS (through `async-nats`). Workers never wait on it: they deliver to this instance's
//! own connections themselves, then hand the message over a bounded queue; when the queue is full the
//! message is counted as dropped and the caller told, never blocked.
//!
//! ```text
//!  worker: publish ─> Delivery (local subscribers, at once) ─> try_send ─┐ bounded queue (4,096)
//!  worker: request ─────────────────────────────────────────── try_send ─┤
//!                                                                        v
//!  bus thread (tokio, current thread):  publisher task ── NATS PUB (no_echo: never comes back here)
//!                                       request tasks  ── NATS request, timeout -> reply callback
//!                                       sync task      ── SUB/UNSUB to match the live subscriptions
//!                                       one task per subscribed pattern ── Delivery (Via::Pattern)
//! ```
//!
//! **Subscriptions: one NATS subscription per distinct pattern**, reference-counted by recounting. The
//! instance subscribes to `<prefix>.<pattern>` for every pattern some live connection holds (plus
//! `<prefix>` itself, for broadcasts), and unsubscribes the patterns nobody holds any more. The other
//! design, one subscription to `<prefix>.>` filtered here, was rejected for two reasons: every instance
//! would receive every message under the prefix (all of a Hydrogen cluster's events), wanted or not;
//! and every instance would be a NATS subscriber of every subject, which makes NATS answer every
//! request as if someone listened, so `no_responders` could never be told. The counting is a recount
//! (the union of the registry's subscriptions, computed by the sync task whenever a subscription
//! changes or a connection with subscriptions ends, coalesced through one `Notify`) rather than
//! counters updated in many places: a count cannot drift, and a stale extra subscription only costs
//! traffic, which the delivery filters.
//!
//! **Exactly once**: a message that came through the subscription to pattern `P` is delivered to the
//! connections' subscriptions to exactly `P` ([`super::Via::Pattern`]). Two overlapping patterns are two
//! NATS subscriptions, two copies, and two subscriptions on the client's side: one copy each. This
//! instance's own publishes are delivered by the publisher's thread and never come back from NATS
//! (`no_echo`). Messages with a reply subject are requests, never relayed as events.
//!
//! **Order**: per pattern, NATS keeps the order of each publisher's messages; this instance publishes
//! through one queue and one connection, and each pattern's messages are delivered by one task in
//! arrival order: per topic and publisher, clients see messages in publish order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use hydrogen_ws_protocol::Message;
use log::{debug, error, info, warn};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

mod forward;

use super::{Bus, Delivery, Via};
use crate::config::{BusConfig, NatsAuth};
use crate::handle::{BusError, ReplyFn};
use crate::report::BroadcastReport;
use crate::stats::{BusState, RequestOutcome, Stats};
use forward::{forward, DrainSignal};

/// Messages and requests waiting for the bus thread.
const QUEUE: usize = 4096;
/// Requests in flight at once; one more is answered `busy`.
const MAX_REQUESTS: usize = 1024;
/// Longest wait for a round trip through the NATS server ([`round_trip`]): after new subscriptions,
/// before the clients are told they hold, and at a drain.
const SYNC_FLUSH: Duration = Duration::from_secs(1);
/// The subject of that round trip (outside any prefix; nobody answers there).
const SYNC_SUBJECT: &str = "_HYDROGEN_WS.sync";

/// What a worker hands the bus thread.
enum Command {
    Publish {
        subject: String,
        payload: Vec<u8>,
    },
    Request {
        subject: String,
        payload: Vec<u8>,
        timeout: Duration,
        reply: ReplyFn,
    },
}

/// Why the NATS bus could not start.
#[derive(Debug)]
pub(crate) enum NatsStartError {
    /// A `--nats` URL is not valid.
    Url(String, String),
    /// The credentials file could not be read or parsed.
    Creds(String, std::io::Error),
    /// The thread could not be started.
    Spawn(std::io::Error),
}

impl std::fmt::Display for NatsStartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsStartError::Url(url, why) => write!(f, "--nats: '{url}' is not valid: {why}"),
            NatsStartError::Creds(path, e) => write!(f, "--nats-creds: {path}: {e}"),
            NatsStartError::Spawn(e) => write!(f, "cannot start the bus thread: {e}"),
        }
    }
}

/// Subscriptions changed (or the shutdown asks for a drain): the sync task wakes, and runs these once
/// NATS has them.
#[derive(Default)]
struct Sync {
    wake: Notify,
    then: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    /// Shutdowns waiting for what NATS has sent to reach the clients ([`NatsBus::drain`]).
    drains: Mutex<Vec<std::sync::mpsc::SyncSender<()>>>,
}

/// The NATS bus as the rest of the server sees it.
pub(crate) struct NatsBus {
    delivery: Arc<Delivery>,
    stats: Arc<Stats>,
    prefix: String,
    commands: mpsc::Sender<Command>,
    sync: Arc<Sync>,
    stop: Arc<Notify>,
    stopping: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl NatsBus {
    /// Checks the configuration and starts the bus thread, which connects in the background (the
    /// server serves its own clients meanwhile, and whenever NATS is away).
    pub(crate) fn start(
        config: &BusConfig,
        delivery: Delivery,
        stats: Arc<Stats>,
    ) -> Result<NatsBus, NatsStartError> {
        let servers = config
            .nats
            .iter()
            .map(|u| {
                u.parse::<ServerAddr>()
                    .map_err(|e| NatsStartError::Url(u.clone(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = options(&config.auth, Arc::clone(&stats))?;
        stats.bus.set_state(BusState::Connecting);
        let delivery = Arc::new(delivery);
        let (commands, queue) = mpsc::channel(QUEUE);
        let sync = Arc::new(Sync::default());
        let stop = Arc::new(Notify::new());
        let link = Link {
            delivery: Arc::clone(&delivery),
            stats: Arc::clone(&stats),
            prefix: config.prefix.clone(),
            sync: Arc::clone(&sync),
            drain: watch::Sender::new(None),
        };
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("hydrogen-ws-bus".into())
            .spawn(move || link.run(options, servers, queue, &thread_stop))
            .map_err(NatsStartError::Spawn)?;
        Ok(NatsBus {
            delivery,
            stats,
            prefix: config.prefix.clone(),
            commands,
            sync,
            stop,
            stopping: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn subject(&self, topic: Option<&str>) -> String {
        match topic {
            Some(t) => format!("{}.{t}", self.prefix),
            None => self.prefix.clone(),
        }
    }
}

/// The connection options: credentials, no echo, unlimited reconnects with a short backoff, and the
/// link's state in the counters.
fn options(auth: &NatsAuth, stats: Arc<Stats>) -> Result<ConnectOptions, NatsStartError> {
    let mut options = match auth {
        NatsAuth::None => ConnectOptions::new(),
        NatsAuth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Token(token) => ConnectOptions::with_token(token.clone()),
        NatsAuth::Creds(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| NatsStartError::Creds(shown.clone(), e))?;
            ConnectOptions::with_credentials(&text).map_err(|e| NatsStartError::Creds(shown, e))?
        }
    };
    let ever = Arc::new(AtomicBool::new(false));
    // While NATS stays away each retry fails the same way: said once, then at debug level.
    let said = Arc::new(AtomicBool::new(false));
    options = options
        .name("hydrogen-ws")
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(10))
        .reconnect_delay_callback(backoff)
        .event_callback(move |event| {
            let stats = Arc::clone(&stats);
            let ever = Arc::clone(&ever);
            let said = Arc::clone(&said);
            async move {
                match event {
                    Event::Connected => {
                        if ever.swap(true, Ordering::SeqCst) {
                            stats.bus.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.bus.set_state(BusState::Connected);
                        said.store(false, Ordering::SeqCst);
                        info!("bus: connected to NATS");
                    }
                    Event::Disconnected => {
                        stats.bus.set_state(BusState::Disconnected);
                        warn!("bus: disconnected from NATS; reconnecting (local traffic goes on)");
                    }
                    Event::SlowConsumer(sid) => {
                        stats.bus.dropped.fetch_add(1, Ordering::Relaxed);
                        warn!("bus: NATS subscription {sid} is too slow: messages dropped");
                    }
                    Event::ClientError(e) if said.swap(true, Ordering::SeqCst) => {
                        debug!("bus: NATS client error: {e}");
                    }
                    Event::ClientError(e) => {
                        warn!("bus: NATS client error: {e} (retrying with backoff; said once)");
                    }
                    other => warn!("bus: NATS {other}"),
                }
            }
        });
    Ok(options)
}

/// The reconnect backoff: at once, then 100 ms doubling up to 2 s.
fn backoff(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(5);
    Duration::from_millis(100u64.saturating_mul(1 << exp)).min(Duration::from_secs(2))
}

impl Bus for NatsBus {
    fn publish(&self, topic: Option<&str>, message: Message<'_>) -> BroadcastReport {
        let mut report = self.delivery.deliver(topic, message, Via::Local);
        if self.stopping.load(Ordering::SeqCst) {
            return report;
        }
        let command = Command::Publish {
            subject: self.subject(topic),
            payload: message.as_bytes().to_vec(),
        };
        if self.commands.try_send(command).is_err() {
            self.stats.bus.dropped.fetch_add(1, Ordering::Relaxed);
            report.bus_dropped = true;
            debug!("bus: queue full; a message on {topic:?} reached this instance only");
        }
        report
    }

    fn request(&self, topic: &str, payload: Vec<u8>, timeout: Duration, reply: ReplyFn) {
        let fail = |reply: ReplyFn, e: BusError| {
            self.stats.bus.request_ended(RequestOutcome::Error);
            reply(Err(e));
        };
        match self.stats.bus.state() {
            BusState::Connected => {}
            state => {
                let why = format!("NATS is {}", state.as_str());
                return fail(reply, BusError::Unavailable(why));
            }
        }
        let command = Command::Request {
            subject: self.subject(Some(topic)),
            payload,
            timeout,
            reply,
        };
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.stats.bus.dropped.fetch_add(1, Ordering::Relaxed);
                if let Command::Request { reply, .. } = command {
                    fail(reply, BusError::Busy);
                }
            }
            Err(mpsc::error::TrySendError::Closed(command)) => {
                if let Command::Request { reply, .. } = command {
                    fail(reply, BusError::Unavailable("the bus has stopped".into()));
                }
            }
        }
    }

    fn subscriptions_changed(&self, then: Option<Box<dyn FnOnce() + Send>>) {
        if let Some(then) = then {
            if self.stopping.load(Ordering::SeqCst) {
                then();
                return;
            }
            self.sync
                .then
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(then);
        }
        self.sync.wake.notify_one();
    }

    fn state(&self) -> BusState {
        self.stats.bus.state()
    }

    fn drain(&self, until: Instant) {
        if self.stopping.load(Ordering::SeqCst) || self.stats.bus.state() != BusState::Connected {
            return;
        }
        let started = Instant::now();
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.sync
            .drains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(done);
        self.sync.wake.notify_one();
        match wait.recv_timeout(until.saturating_duration_since(started)) {
            Ok(()) => debug!("bus: drained in {} us", started.elapsed().as_micros()),
            Err(_) => warn!(
                "bus: NATS did not answer the drain within {} ms: messages still on their way \
                 from other instances do not reach this instance's clients",
                until.saturating_duration_since(started).as_millis()
            ),
        }
    }

    fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }

    fn finish_stop(&self, deadline: Instant) {
        let started = Instant::now();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(thread) = thread else { return };
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if thread.is_finished() {
            let _ = thread.join();
            info!("bus: stopped in {} us", started.elapsed().as_micros());
        } else {
            warn!("bus: thread left running at the deadline (it ends with the process)");
        }
    }
}

/// The bus thread's side.
struct Link {
    delivery: Arc<Delivery>,
    stats: Arc<Stats>,
    prefix: String,
    sync: Arc<Sync>,
    drain: DrainSignal,
}

impl Link {
    /// The thread: a current-thread runtime until the stop signal, then dropped without waiting on the
    /// network (a hung NATS server cannot hold the exit).
    fn run(
        self,
        options: ConnectOptions,
        servers: Vec<ServerAddr>,
        queue: mpsc::Receiver<Command>,
        stop: &Notify,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                error!("bus: cannot start its runtime: {e}; NATS is not used");
                return;
            }
        };
        runtime.block_on(async {
            tokio::select! {
                () = self.serve(options, servers, queue) => {}
                () = stop.notified() => {}
            }
        });
        runtime.shutdown_background();
    }

    async fn serve(
        &self,
        options: ConnectOptions,
        servers: Vec<ServerAddr>,
        queue: mpsc::Receiver<Command>,
    ) {
        // With `retry_on_initial_connect` this returns at once and connects in the background.
        let client = match options.connect(servers).await {
            Ok(c) => c,
            Err(e) => {
                error!("bus: cannot use NATS: {e}");
                std::future::pending::<()>().await;
                return;
            }
        };
        tokio::join!(self.publisher(&client, queue), self.syncer(&client));
    }

    /// Hands publishes to NATS in queue order, and starts requests.
    async fn publisher(&self, client: &Client, mut queue: mpsc::Receiver<Command>) {
        let requests = Arc::new(Semaphore::new(MAX_REQUESTS));
        while let Some(command) = queue.recv().await {
            match command {
                Command::Publish { subject, payload } => {
                    match client.publish(subject, payload.into()).await {
                        Ok(()) => {
                            self.stats.bus.messages_out.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.stats.bus.dropped.fetch_add(1, Ordering::Relaxed);
                            warn!("bus: publish refused: {e}");
                        }
                    }
                }
                Command::Request {
                    subject,
                    payload,
                    timeout,
                    reply,
                } => {
                    let Ok(permit) = Arc::clone(&requests).try_acquire_owned() else {
                        self.stats.bus.request_ended(RequestOutcome::Error);
                        reply(Err(BusError::Busy));
                        continue;
                    };
                    self.stats.bus.requests_sent.fetch_add(1, Ordering::Relaxed);
                    let client = client.clone();
                    let stats = Arc::clone(&self.stats);
                    tokio::spawn(async move {
                        let (outcome, answer) = request(&client, subject, payload, timeout).await;
                        stats.bus.request_ended(outcome);
                        reply(answer);
                        drop(permit);
                    });
                }
            }
        }
    }

    /// Keeps one NATS subscription per distinct pattern the live connections hold.
    async fn syncer(&self, client: &Client) {
        let mut active: std::collections::BTreeMap<String, tokio::task::JoinHandle<()>> =
            std::collections::BTreeMap::new();
        // Broadcasts travel on the prefix itself.
        match client.subscribe(self.prefix.clone()).await {
            Ok(sub) => {
                let handle = tokio::spawn(forward(
                    Arc::clone(&self.delivery),
                    self.stats_and_prefix(),
                    None,
                    sub,
                    self.drain.subscribe(),
                ));
                active.insert(String::new(), handle);
            }
            Err(e) => error!(
                "bus: cannot subscribe to broadcasts on {}: {e}",
                self.prefix
            ),
        }
        self.stats.bus.subscriptions.store(
            u64::try_from(active.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        loop {
            self.sync.wake.notified().await;
            let then: Vec<Box<dyn FnOnce() + Send>> = std::mem::take(
                &mut *self
                    .sync
                    .then
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            let mut wanted = std::collections::BTreeSet::new();
            for conn in self.delivery.registry().snapshot() {
                conn.bus_patterns(&mut wanted);
            }
            let gone: Vec<String> = active
                .keys()
                .filter(|p| !p.is_empty() && !wanted.contains(*p))
                .cloned()
                .collect();
            for pattern in gone {
                if let Some(task) = active.remove(&pattern) {
                    // Dropping the subscriber (with its task) unsubscribes on NATS.
                    task.abort();
                    debug!("bus: unsubscribed {}.{pattern}", self.prefix);
                }
            }
            let mut added = false;
            for pattern in wanted {
                if active.contains_key(&pattern) {
                    continue;
                }
                let subject = format!("{}.{pattern}", self.prefix);
                match client.subscribe(subject.clone()).await {
                    Ok(sub) => {
                        let task = tokio::spawn(forward(
                            Arc::clone(&self.delivery),
                            self.stats_and_prefix(),
                            Some(pattern.clone()),
                            sub,
                            self.drain.subscribe(),
                        ));
                        active.insert(pattern, task);
                        added = true;
                        debug!("bus: subscribed {subject}");
                    }
                    Err(e) => warn!("bus: cannot subscribe to {subject}: {e}"),
                }
            }
            self.stats.bus.subscriptions.store(
                u64::try_from(active.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            if added && self.stats.bus.state() == BusState::Connected {
                // Once the server has answered a request sent after the SUBs, it has them, and from
                // here on a message published anywhere reaches the new subscribers. (A flush would only
                // say that the SUBs left this socket.)
                round_trip(client).await;
            }
            for then in then {
                then();
            }
            let drains = std::mem::take(
                &mut *self
                    .sync
                    .drains
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if !drains.is_empty() {
                self.drain(client, &active).await;
                for done in drains {
                    let _ = done.try_send(());
                }
            }
        }
    }

    /// Hands the clients every message NATS sent before the shutdown began: a round trip through the
    /// server (which answers it behind every message it sent us before), then each forwarding task
    /// delivers what its subscription holds and says so. The caller bounds the wait.
    async fn drain(
        &self,
        client: &Client,
        active: &std::collections::BTreeMap<String, tokio::task::JoinHandle<()>>,
    ) {
        if self.stats.bus.state() != BusState::Connected {
            return;
        }
        round_trip(client).await;
        let live = active.values().filter(|task| !task.is_finished()).count();
        let (ack, mut acks) = mpsc::channel(live.max(1));
        self.drain.send_replace(Some(ack));
        for _ in 0..live {
            if acks.recv().await.is_none() {
                break;
            }
        }
    }

    fn stats_and_prefix(&self) -> (Arc<Stats>, usize) {
        (Arc::clone(&self.stats), self.prefix.len() + 1)
    }
}

/// A round trip through the NATS server, bounded by [`SYNC_FLUSH`]: the server reads a connection's
/// operations in order and writes to it in order, so once it has answered, it has everything this
/// connection sent before, and this connection has everything it sent us before the answer. Nobody
/// listens on the subject: the answer is NATS's own "no responders", at once; any answer, or the bound,
/// ends the wait.
async fn round_trip(client: &Client) {
    let _ = tokio::time::timeout(SYNC_FLUSH, client.request(SYNC_SUBJECT, Vec::new().into())).await;
}

/// One request, bounded by `timeout` (even if NATS never answers).
async fn request(
    client: &Client,
    subject: String,
    payload: Vec<u8>,
    timeout: Duration,
) -> (RequestOutcome, Result<Vec<u8>, BusError>) {
    use async_nats::RequestErrorKind;
    let request = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(timeout));
    let answer = tokio::time::timeout(
        timeout + Duration::from_millis(50),
        client.send_request(subject, request),
    )
    .await;
    match answer {
        Ok(Ok(message)) => (RequestOutcome::Reply, Ok(message.payload.to_vec())),
        Err(_) => (RequestOutcome::Timeout, Err(BusError::Timeout)),
        Ok(Err(e)) => match e.kind() {
            RequestErrorKind::TimedOut => (RequestOutcome::Timeout, Err(BusError::Timeout)),
            RequestErrorKind::NoResponders => {
                (RequestOutcome::NoResponders, Err(BusError::NoResponders))
            }
            _ => (RequestOutcome::Error, Err(BusError::Failed(e.to_string()))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_starts_at_once_and_doubles_to_two_seconds() {
        let delays: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(usize::MAX), Duration::from_secs(2));
    }
}
