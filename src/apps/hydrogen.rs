//! The Hydrogen application: JSON text messages routed on `"type"`.
//!
//! | request | reply |
//! |---|---|
//! | `{"type":"status"}` | `{"type":"status", ...}` the status document |
//! | `{"type":"subscribe","topic":"status","interval_ms":N}` | `{"type":"subscribed",...}`, then a status push every N ms (at least 250) |
//! | `{"type":"unsubscribe","topic":"status"}` | `{"type":"unsubscribed",...}` |
//! | `{"type":"ping"}` | `{"type":"pong"}` |
//! | anything else | `{"type":"error","error":"..."}`; the connection stays open |
//!
//! Every request may carry an `"id"` (any JSON value); its reply carries the same `"id"`.

use std::time::Duration;

use hydrogen_ws_protocol::Message;
use serde_json::{json, Map, Value};

use crate::conn::Conn;
use crate::handler::Handler;

/// The topic of periodic status pushes.
pub const STATUS_TOPIC: &str = "status";
/// The shortest interval a client may ask for.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// The interval when a subscribe request names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
/// The longest interval a client may ask for.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// The Hydrogen message handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hydrogen;

impl Hydrogen {
    /// The reply to one text message.
    fn reply(&self, conn: &Conn, text: &str) -> Value {
        let request = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return error(None, "a request must be a JSON object with a \"type\""),
            Err(e) => return error(None, &format!("invalid JSON: {e}")),
        };
        let id = request.get("id").cloned();
        let kind = match request.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return error(id, "\"type\" must be a string"),
            None => return error(id, "missing \"type\""),
        };
        let mut reply = match kind {
            "status" => match conn.server() {
                Some(server) => match serde_json::to_value(server.status_document()) {
                    Ok(doc) => doc,
                    Err(e) => return error(id, &format!("the status could not be written: {e}")),
                },
                None => return error(id, "the server is stopping"),
            },
            "ping" => json!({ "type": "pong" }),
            "subscribe" => match subscribe(conn, &request) {
                Ok(v) => v,
                Err(e) => return error(id, &e),
            },
            "unsubscribe" => match topic(&request) {
                Ok(t) => {
                    let was = conn.unsubscribe(t);
                    json!({ "type": "unsubscribed", "topic": t, "was_subscribed": was })
                }
                Err(e) => return error(id, &e),
            },
            other => {
                return error(
                    id,
                    &format!(
                        "unknown type '{other}' (known: status, subscribe, unsubscribe, ping)"
                    ),
                )
            }
        };
        with_id(&mut reply, id);
        reply
    }
}

fn topic(request: &Map<String, Value>) -> Result<&str, String> {
    match request.get("topic") {
        None => Ok(STATUS_TOPIC),
        Some(Value::String(t)) if t == STATUS_TOPIC => Ok(STATUS_TOPIC),
        Some(other) => Err(format!("unknown topic {other} (known: \"status\")")),
    }
}

fn subscribe(conn: &Conn, request: &Map<String, Value>) -> Result<Value, String> {
    let topic = topic(request)?;
    let interval = match request.get("interval_ms") {
        None => DEFAULT_INTERVAL,
        Some(v) => {
            let ms = v.as_u64().ok_or_else(|| {
                "\"interval_ms\" must be a whole number of milliseconds".to_string()
            })?;
            Duration::from_millis(ms).clamp(MIN_INTERVAL, MAX_INTERVAL)
        }
    };
    conn.subscribe(topic, Some(interval));
    Ok(json!({
        "type": "subscribed",
        "topic": topic,
        "interval_ms": interval.as_millis() as u64,
    }))
}

fn with_id(reply: &mut Value, id: Option<Value>) {
    if let (Some(id), Value::Object(map)) = (id, reply) {
        map.insert("id".to_string(), id);
    }
}

fn error(id: Option<Value>, message: &str) -> Value {
    let mut reply = json!({ "type": "error", "error": message });
    with_id(&mut reply, id);
    reply
}

impl Handler for Hydrogen {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        let reply = match message {
            Message::Text(text) => self.reply(conn, text),
            Message::Binary(_) => error(None, "binary messages are not understood; send JSON text"),
        };
        // A failed send has been logged and has ended the connection.
        let _ = conn.send_text(&reply.to_string());
    }

    fn on_subscription_due(&self, conn: &Conn, topic: &str) {
        if topic == STATUS_TOPIC {
            if let Some(server) = conn.server() {
                if let Ok(doc) = serde_json::to_string(&server.status_document()) {
                    let _ = conn.send_text(&doc);
                }
            }
        }
    }
}
