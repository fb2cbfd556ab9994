//! What one NATS subscription receives, handed to this instance's clients in arrival order; and the
//! drain signal that makes each subscription hand over what it already holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hydrogen_ws_protocol::Message;
use tokio::sync::{mpsc, watch};

use crate::bus::{Delivery, Via};
use crate::stats::Stats;

/// What the forwarding tasks watch: a drain's acknowledgement channel, replaced at each drain.
pub(super) type DrainSignal = watch::Sender<Option<mpsc::Sender<()>>>;

/// Delivers what one subscription receives, in arrival order. `pattern: None` is the broadcast
/// subscription (every open connection). On a drain signal it delivers what the subscription already
/// holds, without waiting for more, and acknowledges.
pub(super) async fn forward(
    delivery: Arc<Delivery>,
    (stats, skip): (Arc<Stats>, usize),
    pattern: Option<String>,
    mut sub: async_nats::Subscriber,
    mut drain: watch::Receiver<Option<mpsc::Sender<()>>>,
) {
    use futures_util::{FutureExt, StreamExt};
    let relay = |message: &async_nats::Message| {
        if message.reply.is_some() {
            // A request: for its responders, not an event.
            return;
        }
        stats.bus.messages_in.fetch_add(1, Ordering::Relaxed);
        let payload = &message.payload[..];
        match &pattern {
            None => {
                delivery.deliver(None, message_of(payload), Via::Local);
            }
            Some(pattern) => {
                if let Some(topic) = message.subject.get(skip..) {
                    delivery.deliver(Some(topic), message_of(payload), Via::Pattern(pattern));
                }
            }
        }
    };
    let mut signalled = true;
    loop {
        tokio::select! {
            message = sub.next() => match message {
                Some(message) => relay(&message),
                None => break,
            },
            changed = drain.changed(), if signalled => {
                if changed.is_err() {
                    signalled = false;
                    continue;
                }
                let ack = drain.borrow_and_update().clone();
                // Outside tokio's cooperative budget, which would otherwise make a ready channel look
                // empty after 128 messages.
                tokio::task::unconstrained(async {
                    while let Some(Some(message)) = sub.next().now_or_never() {
                        relay(&message);
                    }
                })
                .await;
                if let Some(ack) = ack {
                    let _ = ack.try_send(());
                }
            }
        }
    }
}

/// A payload from NATS as a message: text when it is UTF-8.
fn message_of(payload: &[u8]) -> Message<'_> {
    match std::str::from_utf8(payload) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(payload),
    }
}
