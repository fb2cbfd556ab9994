//! The forms a published message takes on its way to a subscriber: as it was published, as an
//! `event`, or as Hydrogen's `nats_event`. Each form is built at most once per message, whatever the
//! number of subscribers.

use hydrogen_ws_protocol::Message;
use serde_json::{json, Value};

use crate::conn::Form;

/// A message and the forms built from it so far.
pub(super) struct Rendered<'a> {
    topic: Option<&'a str>,
    message: Message<'a>,
    prefix: &'a str,
    data: Option<Value>,
    event: Option<String>,
    nats_event: Option<String>,
}

impl<'a> Rendered<'a> {
    pub(super) fn new(topic: Option<&'a str>, message: Message<'a>, prefix: &'a str) -> Self {
        Rendered {
            topic,
            message,
            prefix,
            data: None,
            event: None,
            nats_event: None,
        }
    }

    /// The message in `form`.
    pub(super) fn get(&mut self, form: Form) -> Message<'_> {
        let topic = self.topic.unwrap_or_default();
        match form {
            Form::Raw => self.message,
            Form::Event => {
                if self.event.is_none() {
                    let data = self.data();
                    self.event =
                        Some(json!({"type": "event", "topic": topic, "data": data}).to_string());
                }
                Message::Text(self.event.as_deref().unwrap_or_default())
            }
            Form::NatsEvent => {
                if self.nats_event.is_none() {
                    let data = self.data();
                    let subject = format!("{}.{topic}", self.prefix);
                    self.nats_event = Some(
                        json!({"type": "nats_event", "event": topic, "subject": subject, "data": data})
                            .to_string(),
                    );
                }
                Message::Text(self.nats_event.as_deref().unwrap_or_default())
            }
        }
    }

    fn data(&mut self) -> Value {
        self.data
            .get_or_insert_with(|| payload_data(self.message.as_bytes()))
            .clone()
    }
}

/// A payload as the `data` of a push: its JSON value when it is JSON, else the payload as a string
/// (invalid UTF-8 replaced).
pub(crate) fn payload_data(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: Message<'_>) -> String {
        String::from_utf8_lossy(m.as_bytes()).into_owned()
    }

    #[test]
    fn each_form_says_the_topic_and_carries_the_data() {
        let mut r = Rendered::new(
            Some("printer.temp"),
            Message::Text(r#"{"c":210}"#),
            "cluster.philement",
        );
        assert_eq!(text(r.get(Form::Raw)), r#"{"c":210}"#);
        assert_eq!(
            text(r.get(Form::Event)),
            r#"{"type":"event","topic":"printer.temp","data":{"c":210}}"#
        );
        assert_eq!(
            text(r.get(Form::NatsEvent)),
            r#"{"type":"nats_event","event":"printer.temp","subject":"cluster.philement.printer.temp","data":{"c":210}}"#
        );
    }

    #[test]
    fn a_payload_that_is_not_json_is_a_string() {
        assert_eq!(payload_data(b"42"), json!(42));
        assert_eq!(payload_data(b"hot today"), json!("hot today"));
        assert_eq!(payload_data(b""), json!(""));
        assert_eq!(payload_data(b"a\xffb"), json!("a\u{fffd}b"));
    }
}
