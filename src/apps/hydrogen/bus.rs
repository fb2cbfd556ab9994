//! The Hydrogen application's bus messages: `subscribe`/`unsubscribe` to topics, Hydrogen's own
//! `nats_subscribe`, `publish` and `request`. Each checks the connection's permissions (its route's);
//! a refusal is an error reply naming a code (`forbidden`, `bad_request`, ...) and the connection stays
//! open.
//!
//! Replies that depend on NATS are sent later, from the bus's thread, through the connection's
//! non-blocking send: `subscribed` and `nats_subscribe_ok` once the subscription holds on NATS, and a
//! request's `reply` or error when it comes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::bus::payload_data;
use crate::conn::{Conn, Form, TooMany, MAX_SUBSCRIPTIONS};
use crate::handle::BusError;
use crate::topic::{validate_pattern, validate_topic};

/// A request's timeout when it names none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(5000);

/// An error reply of the bus messages: a code in `"error"`, the reason in `"reason"`.
pub(super) fn failure(kind: &str, id: Option<&Value>, code: &str, reason: &str) -> Value {
    log::debug!("{kind} {code}: {reason}");
    let mut reply = json!({"type": kind, "error": code, "reason": reason});
    if let (Some(id), Value::Object(map)) = (id, &mut reply) {
        map.insert("id".to_string(), id.clone());
    }
    reply
}

fn error(id: Option<&Value>, code: &str, reason: &str) -> Value {
    failure("error", id, code, reason)
}

fn with_id(mut reply: Value, id: Option<&Value>) -> Value {
    if let (Some(id), Value::Object(map)) = (id, &mut reply) {
        map.insert("id".to_string(), id.clone());
    }
    reply
}

/// Sends `reply` once the bus's subscriptions hold (at once without NATS).
fn when_subscribed(conn: &Conn, reply: Value) -> Option<Value> {
    let (Some(server), Some(me)) = (conn.server(), conn.shared()) else {
        return Some(reply);
    };
    server.subscriptions_changed(Some(Box::new(move || {
        let _ = me.send_text(&reply.to_string());
    })));
    None
}

fn topic_text<'a>(topic: Option<&'a Value>, what: &str) -> Result<&'a str, String> {
    match topic {
        Some(Value::String(t)) => Ok(t),
        Some(_) => Err(format!("\"{what}\" must be a string")),
        None => Err(format!("missing \"{what}\"")),
    }
}

/// `subscribe` to a topic pattern other than `status`.
pub(super) fn subscribe(conn: &Conn, pattern: &str, id: Option<&Value>) -> Option<Value> {
    if let Err(e) = validate_pattern(pattern) {
        return Some(error(id, "bad_request", &format!("topic '{pattern}': {e}")));
    }
    if !conn.permissions().may_subscribe(pattern) {
        return Some(error(
            id,
            "forbidden",
            &format!("this key may not subscribe to '{pattern}'"),
        ));
    }
    if conn.subscribe_as(pattern, Form::Event, None) == Err(TooMany) {
        return Some(error(
            id,
            "too_many",
            &format!("a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions"),
        ));
    }
    let reply = with_id(json!({"type": "subscribed", "topic": pattern}), id);
    when_subscribed(conn, reply)
}

/// `unsubscribe` from a topic pattern other than `status`.
pub(super) fn unsubscribe(conn: &Conn, pattern: &str, id: Option<&Value>) -> Value {
    if let Err(e) = validate_pattern(pattern) {
        return error(id, "bad_request", &format!("topic '{pattern}': {e}"));
    }
    let was = conn.unsubscribe_as(pattern, Form::Event);
    with_id(
        json!({"type": "unsubscribed", "topic": pattern, "was_subscribed": was}),
        id,
    )
}

/// Hydrogen's `nats_subscribe`: the list replaces the connection's (empty clears it), all or nothing.
pub(super) fn nats_subscribe(
    conn: &Conn,
    events: Option<&Value>,
    id: Option<&Value>,
) -> Option<Value> {
    let refuse = |code: &str, reason: &str| Some(failure("nats_subscribe_error", id, code, reason));
    let Some(Value::Array(events)) = events else {
        return refuse("bad_events", "\"events\" must be a list of event names");
    };
    let mut list: Vec<String> = Vec::with_capacity(events.len());
    for event in events {
        let Value::String(name) = event else {
            return refuse("bad_events", &format!("{event} is not an event name"));
        };
        if let Err(e) = validate_pattern(name) {
            return refuse("bad_events", &format!("'{name}': {e}"));
        }
        if !conn.permissions().may_subscribe(name) {
            return refuse(
                "forbidden",
                &format!("this key may not subscribe to '{name}'"),
            );
        }
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
    if conn.replace_subscriptions(Form::NatsEvent, &list) == Err(TooMany) {
        return refuse(
            "too_many",
            &format!("a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions"),
        );
    }
    let reply = with_id(json!({"type": "nats_subscribe_ok", "events": list}), id);
    when_subscribed(conn, reply)
}

/// `publish` `data` (as JSON) on a topic.
pub(super) fn publish(conn: &Conn, request: &serde_json::Map<String, Value>) -> Value {
    let id = request.get("id");
    let topic = match topic_text(request.get("topic"), "topic") {
        Ok(t) => t,
        Err(why) => return error(id, "bad_request", &why),
    };
    if let Err(e) = validate_topic(topic) {
        return error(id, "bad_request", &format!("topic '{topic}': {e}"));
    }
    if !conn.permissions().may_publish(topic) {
        return error(
            id,
            "forbidden",
            &format!("this key may not publish to '{topic}'"),
        );
    }
    let Some(server) = conn.server() else {
        return error(id, "unavailable", "the server is stopping");
    };
    let payload = request.get("data").unwrap_or(&Value::Null).to_string();
    let report = server.publish(topic, hydrogen_ws_protocol::Message::Text(&payload));
    if report.bus_dropped {
        return error(
            id,
            "busy",
            "the bus's queue is full: this instance's subscribers got it, the other instances did not",
        );
    }
    with_id(json!({"type": "published", "topic": topic}), id)
}

/// `request`: NATS request/reply; the answer (or error) is sent when it comes.
pub(super) fn request(
    conn: &Conn,
    request: &serde_json::Map<String, Value>,
    max_timeout: Duration,
    prefix: &str,
) -> Option<Value> {
    let id = request.get("id");
    let topic = match topic_text(request.get("topic"), "topic") {
        Ok(t) => t,
        Err(why) => return Some(error(id, "bad_request", &why)),
    };
    if let Err(e) = validate_topic(topic) {
        return Some(error(id, "bad_request", &format!("topic '{topic}': {e}")));
    }
    if !conn.permissions().may_request(topic) {
        return Some(error(
            id,
            "forbidden",
            &format!("this key may not send requests to '{topic}'"),
        ));
    }
    let timeout = match request.get("timeout_ms") {
        None | Some(Value::Null) => DEFAULT_REQUEST_TIMEOUT,
        Some(v) => match v.as_u64() {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Some(error(
                    id,
                    "bad_request",
                    "\"timeout_ms\" must be a whole number of milliseconds, at least 1",
                ))
            }
        },
    }
    .min(max_timeout);
    let (Some(server), Some(me)) = (conn.server(), conn.shared()) else {
        return Some(error(id, "unavailable", "the server is stopping"));
    };
    let payload = request.get("data").unwrap_or(&Value::Null).to_string();
    let id = id.cloned();
    let subject = format!("{prefix}.{topic}");
    server.request(topic, payload.into_bytes(), timeout, move |answer| {
        let reply = match answer {
            Ok(data) => with_id(
                json!({"type": "reply", "data": payload_data(&data)}),
                id.as_ref(),
            ),
            Err(e) => {
                let reason = match &e {
                    BusError::Timeout => {
                        format!("no reply on {subject} within {} ms", timeout.as_millis())
                    }
                    BusError::NoResponders => format!("nobody listens on {subject}"),
                    other => other.to_string(),
                };
                error(id.as_ref(), e.code(), &reason)
            }
        };
        let _ = me.send_text(&reply.to_string());
    });
    None
}
