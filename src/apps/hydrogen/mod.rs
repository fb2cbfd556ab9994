//! The Hydrogen application: JSON text messages routed on `"type"`.
//!
//! | request | reply |
//! |---|---|
//! | `{"type":"status"}` | `{"type":"status", ...}` the status document |
//! | `{"type":"subscribe","topic":"status","interval_ms":N}` | `{"type":"subscribed",...}`, then a status push every N ms (at least 250) |
//! | `{"type":"unsubscribe","topic":"status"}` | `{"type":"unsubscribed",...}` |
//! | `{"type":"ping"}` | `{"type":"pong"}` |
//! | `{"type":"subscribe","topic":"printer.*"}` | `{"type":"subscribed",...}`, then `{"type":"event","topic":...,"data":...}` pushes |
//! | `{"type":"unsubscribe","topic":"printer.*"}` | `{"type":"unsubscribed",...}` |
//! | `{"type":"nats_subscribe","events":[...]}` | `{"type":"nats_subscribe_ok","events":[...]}` (or `nats_subscribe_error`), then `nats_event` pushes |
//! | `{"type":"publish","topic":"t","data":...}` | `{"type":"published","topic":"t"}` |
//! | `{"type":"request","topic":"t","data":...,"timeout_ms":N}` | `{"type":"reply","data":...}` or an error `timeout`, `no_responders`, ... |
//! | anything else | `{"type":"error","error":"..."}`; the connection stays open |
//!
//! Every request may carry an `"id"` (any JSON value); its reply carries the same `"id"`. The bus
//! messages (see [`bus`]) are checked against the connection's permissions.

mod bus;

use std::time::Duration;

use hydrogen_ws_protocol::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// A client's request, tagged by `"type"`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Request {
    Status,
    Ping,
    Subscribe {
        topic: Option<Value>,
        interval_ms: Option<Value>,
    },
    Unsubscribe {
        topic: Option<Value>,
    },
}

/// The names of the request types, for the error that lists them.
const KNOWN: &str = "status, subscribe, unsubscribe, ping, nats_subscribe, publish, request";

/// A reply, tagged by `"type"` (the status document is sent as it is).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply {
    Pong,
    Subscribed {
        topic: &'static str,
        interval_ms: u64,
    },
    Unsubscribed {
        topic: &'static str,
        was_subscribed: bool,
    },
    Error {
        error: String,
    },
}

impl Hydrogen {
    /// The reply to one text message, with the request's `"id"` (if it had one) attached; `None` when
    /// the reply is sent later (by the bus).
    fn reply(&self, conn: &Conn, text: &str) -> Option<Value> {
        let request = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Some(error(
                    None,
                    "a request must be a JSON object with a \"type\"",
                ))
            }
            Err(e) => return Some(error(None, &format!("invalid JSON: {e}"))),
        };
        let id = request.get("id").cloned();
        match request.get("type") {
            Some(Value::String(t)) if !KNOWN.split(", ").any(|k| k == t) => {
                let message = format!("unknown type '{t}' (known: {KNOWN})");
                return Some(error(id, &message));
            }
            Some(Value::String(t)) => match t.as_str() {
                "subscribe" | "unsubscribe" => match request.get("topic") {
                    Some(Value::String(topic)) if topic != STATUS_TOPIC => {
                        if request.get("interval_ms").is_some() {
                            return Some(bus::failure(
                                "error",
                                id.as_ref(),
                                "bad_request",
                                "\"interval_ms\" is only for the status topic",
                            ));
                        }
                        return if t == "subscribe" {
                            bus::subscribe(conn, topic, id.as_ref())
                        } else {
                            Some(bus::unsubscribe(conn, topic, id.as_ref()))
                        };
                    }
                    _ => {}
                },
                "nats_subscribe" => {
                    return bus::nats_subscribe(conn, request.get("events"), id.as_ref())
                }
                "publish" => return Some(bus::publish(conn, &request)),
                "request" => {
                    let Some(server) = conn.server() else {
                        return Some(error(id, "the server is stopping"));
                    };
                    let config = server.config();
                    return bus::request(
                        conn,
                        &request,
                        config.bus.request_timeout_max,
                        &config.bus.prefix,
                    );
                }
                _ => {}
            },
            Some(_) => return Some(error(id, "\"type\" must be a string")),
            None => return Some(error(id, "missing \"type\"")),
        }
        let reply = match serde_json::from_value::<Request>(Value::Object(request)) {
            Ok(Request::Status) => match conn.server() {
                Some(server) => serde_json::to_value(server.status_document()),
                None => return Some(error(id, "the server is stopping")),
            },
            Ok(request) => match self.answer(conn, request) {
                Ok(reply) => serde_json::to_value(reply),
                Err(message) => return Some(error(id, &message)),
            },
            Err(e) => return Some(error(id, &format!("malformed request: {e}"))),
        };
        Some(match reply.map_err(|e| e.to_string()) {
            Ok(reply) => with_id(reply, id),
            Err(message) => error(id, &message),
        })
    }

    /// The reply to every request but `status` (whose reply is the status document itself).
    fn answer(&self, conn: &Conn, request: Request) -> Result<Reply, String> {
        Ok(match request {
            // Answered by the caller with the status document.
            Request::Status => return Err("the status is not answered here".to_string()),
            Request::Ping => Reply::Pong,
            Request::Subscribe { topic, interval_ms } => {
                let topic = self::topic(topic.as_ref())?;
                let interval = match interval_ms {
                    None => DEFAULT_INTERVAL,
                    Some(v) => {
                        let ms = v.as_u64().ok_or_else(|| {
                            "\"interval_ms\" must be a whole number of milliseconds".to_string()
                        })?;
                        Duration::from_millis(ms).clamp(MIN_INTERVAL, MAX_INTERVAL)
                    }
                };
                conn.subscribe(topic, Some(interval));
                Reply::Subscribed {
                    topic,
                    interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                }
            }
            Request::Unsubscribe { topic } => {
                let topic = self::topic(topic.as_ref())?;
                Reply::Unsubscribed {
                    topic,
                    was_subscribed: conn.unsubscribe(topic),
                }
            }
        })
    }
}

fn topic(topic: Option<&Value>) -> Result<&'static str, String> {
    match topic {
        None => Ok(STATUS_TOPIC),
        Some(Value::String(t)) if t == STATUS_TOPIC => Ok(STATUS_TOPIC),
        Some(other) => Err(format!("\"topic\" must be a string, not {other}")),
    }
}

fn with_id(mut reply: Value, id: Option<Value>) -> Value {
    if let (Some(id), Value::Object(map)) = (id, &mut reply) {
        map.insert("id".to_string(), id);
    }
    reply
}

fn error(id: Option<Value>, message: &str) -> Value {
    let reply = Reply::Error {
        error: message.to_string(),
    };
    with_id(serde_json::to_value(reply).unwrap_or(Value::Null), id)
}

impl Handler for Hydrogen {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        let reply = match message {
            Message::Text(text) => self.reply(conn, text),
            Message::Binary(_) => Some(error(
                None,
                "binary messages are not understood; send JSON text",
            )),
        };
        // A failed send has been logged and has ended the connection.
        if let Some(reply) = reply {
            let _ = conn.send_text(&reply.to_string());
        }
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
