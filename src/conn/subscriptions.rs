//! A connection's subscriptions: topic patterns, each with the form its pushes take, and for periodic
//! topics (the status push) the interval.
//!
//! Each subscription is its own stream, as in NATS: a connection subscribed to `printer.*` and to
//! `printer.temp` gets a message on `printer.temp` once for each.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::topic;

/// The most subscriptions one connection holds (every form together).
pub(crate) const MAX_SUBSCRIPTIONS: usize = 256;

/// How a message reaches a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Form {
    /// The message as it was published ([`crate::Conn::subscribe`], the library's own subscriptions).
    Raw,
    /// `{"type":"event","topic":...,"data":...}` (the Hydrogen application's `subscribe`).
    Event,
    /// `{"type":"nats_event","event":...,"subject":...,"data":...}` (Hydrogen's `nats_subscribe`).
    NatsEvent,
}

/// The connection already holds [`MAX_SUBSCRIPTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooMany;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscription {
    pattern: String,
    form: Form,
    /// For periodic topics: how often, and when next.
    every: Option<(Duration, Instant)>,
}

/// Every subscription of one connection.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    list: Vec<Subscription>,
}

impl Subscriptions {
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds (or, for the same pattern and form, replaces) a subscription; returns whether it is new.
    pub(crate) fn add(
        &mut self,
        pattern: &str,
        form: Form,
        every: Option<Duration>,
    ) -> Result<bool, TooMany> {
        let before = self.list.len();
        self.list
            .retain(|s| !(s.pattern == pattern && s.form == form));
        let new = self.list.len() == before;
        if new && self.list.len() >= MAX_SUBSCRIPTIONS {
            return Err(TooMany);
        }
        self.list.push(Subscription {
            pattern: pattern.to_string(),
            form,
            every: every.map(|d| (d, Instant::now() + d)),
        });
        Ok(new)
    }

    /// Removes a subscription; returns whether there was one.
    pub(crate) fn remove(&mut self, pattern: &str, form: Form) -> bool {
        let before = self.list.len();
        self.list
            .retain(|s| !(s.pattern == pattern && s.form == form));
        self.list.len() != before
    }

    /// Replaces every subscription of `form` with `patterns` (all or nothing).
    pub(crate) fn replace(&mut self, form: Form, patterns: &[String]) -> Result<(), TooMany> {
        let others = self.list.iter().filter(|s| s.form != form).count();
        let distinct: BTreeSet<&String> = patterns.iter().collect();
        if others + distinct.len() > MAX_SUBSCRIPTIONS {
            return Err(TooMany);
        }
        self.list.retain(|s| s.form != form);
        for pattern in distinct {
            self.list.push(Subscription {
                pattern: pattern.clone(),
                form,
                every: None,
            });
        }
        Ok(())
    }

    /// The forms of every subscription whose pattern selects `topic` (one entry per subscription).
    pub(crate) fn matching(&self, topic: &str) -> Vec<Form> {
        self.list
            .iter()
            .filter(|s| topic::matches(&s.pattern, topic))
            .map(|s| s.form)
            .collect()
    }

    /// The forms of the subscriptions to exactly `pattern` that travel on the bus (a message that came
    /// from NATS through this instance's subscription to `pattern` is for them, and only them).
    pub(crate) fn on_pattern(&self, pattern: &str) -> Vec<Form> {
        self.list
            .iter()
            .filter(|s| s.every.is_none() && s.pattern == pattern)
            .map(|s| s.form)
            .collect()
    }

    /// Adds the patterns that travel on the bus (every one but the periodic ones) to `out`.
    pub(crate) fn bus_patterns(&self, out: &mut BTreeSet<String>) {
        for s in self.list.iter().filter(|s| s.every.is_none()) {
            if !out.contains(&s.pattern) {
                out.insert(s.pattern.clone());
            }
        }
    }

    /// Whether any subscription travels on the bus.
    pub(crate) fn has_bus_patterns(&self) -> bool {
        self.list.iter().any(|s| s.every.is_none())
    }

    /// Periodic subscriptions whose time has come; their next time is set.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for s in self.list.iter_mut() {
            if let Some((every, next)) = &mut s.every {
                if now >= *next {
                    due.push(s.pattern.clone());
                    // Skip missed beats rather than bursting to catch up.
                    *next = (*next + *every).max(now + *every / 2);
                }
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subscription_is_its_own_stream() {
        let mut s = Subscriptions::default();
        assert_eq!(s.add("printer.*", Form::Event, None), Ok(true));
        assert_eq!(s.add("printer.temp", Form::Event, None), Ok(true));
        assert_eq!(s.add("printer.temp", Form::Event, None), Ok(false));
        assert_eq!(s.add("printer.>", Form::NatsEvent, None), Ok(true));
        assert_eq!(
            s.matching("printer.temp"),
            vec![Form::Event, Form::Event, Form::NatsEvent]
        );
        assert_eq!(s.matching("printer.bed.temp"), vec![Form::NatsEvent]);
        assert_eq!(s.on_pattern("printer.*"), vec![Form::Event]);
        assert!(s.remove("printer.*", Form::Event));
        assert!(!s.remove("printer.*", Form::Event));
        assert_eq!(s.on_pattern("printer.*"), Vec::<Form>::new());
    }

    #[test]
    fn replacing_one_form_leaves_the_others_and_periodic_topics_stay_local() {
        let mut s = Subscriptions::default();
        s.add("status", Form::Raw, Some(Duration::from_secs(1)))
            .unwrap_or_default();
        s.add("a", Form::Event, None).unwrap_or_default();
        s.add("old", Form::NatsEvent, None).unwrap_or_default();
        let new = vec!["x".to_string(), "y.>".to_string(), "x".to_string()];
        assert_eq!(s.replace(Form::NatsEvent, &new), Ok(()));
        let mut patterns = BTreeSet::new();
        s.bus_patterns(&mut patterns);
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        assert_eq!(patterns, ["a", "x", "y.>"]);
        assert_eq!(s.on_pattern("status"), Vec::<Form>::new());
        assert_eq!(s.replace(Form::NatsEvent, &[]), Ok(()));
        assert_eq!(s.matching("x"), Vec::<Form>::new());
        assert!(s.has_bus_patterns());
    }

    #[test]
    fn a_connection_holds_a_bounded_number() {
        let mut s = Subscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            assert_eq!(s.add(&format!("t{i}"), Form::Event, None), Ok(true));
        }
        assert_eq!(s.add("one.more", Form::Event, None), Err(TooMany));
        // Replacing an existing one is not one more.
        assert_eq!(s.add("t0", Form::Event, None), Ok(false));
        let many: Vec<String> = (0..2).map(|i| format!("n{i}")).collect();
        assert_eq!(s.replace(Form::NatsEvent, &many), Err(TooMany));
    }
}
