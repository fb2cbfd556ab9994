//! Topics, patterns and permissions: which messages a subscription selects and what a key may do.
//!
//! A topic is dot-separated tokens (`printer.temp`), each non-empty, without whitespace; on NATS it is the
//! subject `<prefix>.<topic>`. A pattern is a topic whose tokens may also be NATS wildcards: `*` matches
//! exactly one token, `>` (last token only) matches one or more. Everything here is a pure function of
//! strings, tested without sockets.

use std::fmt;

/// The longest topic or pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a topic or pattern is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// Empty, or an empty token (`a..b`, a leading or trailing dot).
    EmptyToken,
    /// Longer than [`MAX_TOPIC_LEN`].
    TooLong,
    /// A space, a control character, or another character NATS does not allow in a subject.
    BadCharacter,
    /// A wildcard where only a plain topic may stand (publish, request).
    Wildcard,
    /// `>` before the last token, or a wildcard glued to other characters (`a*`).
    MisplacedWildcard,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicError::EmptyToken => "a topic is dot-separated tokens, none of them empty",
            TopicError::TooLong => "a topic is at most 256 bytes",
            TopicError::BadCharacter => "a topic may not contain spaces or control characters",
            TopicError::Wildcard => "wildcards (* and >) are only for subscriptions",
            TopicError::MisplacedWildcard => "* must be a whole token and > the whole last token",
        })
    }
}

impl std::error::Error for TopicError {}

/// Checks a pattern (wildcards allowed).
pub fn validate_pattern(pattern: &str) -> Result<(), TopicError> {
    if pattern.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(TopicError::EmptyToken);
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TopicError::BadCharacter);
        }
        let wild = token.contains(['*', '>']);
        if wild && *token != "*" && *token != ">" {
            return Err(TopicError::MisplacedWildcard);
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

/// Checks a plain topic (what is published or requested: no wildcard).
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    validate_pattern(topic)?;
    if topic.split('.').any(|t| t == "*" || t == ">") {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// Whether `pattern` selects `topic` (`*` one token, `>` one or more at the end). Both are assumed valid.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic `inner` can select is also selected by `outer` (pattern containment).
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            (Some(">"), Some(_)) => return true,
            // `*` covers one token of any kind but `>` (which may stand for several).
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What the clients of one route (one key) may do on the bus: each list holds patterns, and an action
/// on a topic is allowed when one of them matches it (for a subscription: covers its pattern).
///
/// The default is safe: subscribe to anything under the prefix (`>`), publish and request nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Patterns clients may subscribe to (and within them, any narrower pattern).
    pub subscribe: Vec<String>,
    /// Topics clients may publish to.
    pub publish: Vec<String>,
    /// Topics clients may send requests to.
    pub request: Vec<String>,
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions {
            subscribe: vec![">".to_string()],
            publish: Vec::new(),
            request: Vec::new(),
        }
    }
}

impl Permissions {
    /// Nothing at all: no subscription, publish or request.
    pub fn none() -> Permissions {
        Permissions {
            subscribe: Vec::new(),
            publish: Vec::new(),
            request: Vec::new(),
        }
    }

    /// Everything (for trusted clients and tests).
    pub fn all() -> Permissions {
        Permissions {
            subscribe: vec![">".to_string()],
            publish: vec![">".to_string()],
            request: vec![">".to_string()],
        }
    }

    /// Whether a subscription to `pattern` is allowed.
    pub fn may_subscribe(&self, pattern: &str) -> bool {
        self.subscribe.iter().any(|a| covers(a, pattern))
    }

    /// Whether publishing on `topic` is allowed.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|a| matches(a, topic))
    }

    /// Whether a request on `topic` is allowed.
    pub fn may_request(&self, topic: &str) -> bool {
        self.request.iter().any(|a| matches(a, topic))
    }

    /// Checks every pattern; `Err` names the list (`subscribe`, `publish`, `request`), the pattern and why.
    pub fn validate(&self) -> Result<(), (&'static str, String, TopicError)> {
        for (list, patterns) in [
            ("subscribe", &self.subscribe),
            ("publish", &self.publish),
            ("request", &self.request),
        ] {
            for p in patterns {
                validate_pattern(p).map_err(|e| (list, p.clone(), e))?;
            }
        }
        Ok(())
    }
}

/// A comma-separated list of patterns (surrounding spaces ignored; empty: none).
pub fn parse_patterns(list: &str) -> Result<Vec<String>, (String, TopicError)> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            validate_pattern(p)
                .map(|()| p.to_string())
                .map_err(|e| (p.to_string(), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_token_or_the_rest() {
        let table = [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.b", "a.b.c", false),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("*.b", "a.b", true),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            (">", "a", true),
            (">", "a.b.c", true),
            ("*", "a.b", false),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.b.d", false),
        ];
        for (pattern, topic, want) in table {
            assert_eq!(matches(pattern, topic), want, "{pattern} vs {topic}");
        }
    }

    #[test]
    fn a_pattern_covers_the_narrower_ones_only() {
        let table = [
            (">", "a.*", true),
            (">", ">", true),
            ("a.>", "a.*", true),
            ("a.>", "a.b.>", true),
            ("a.>", "a.>", true),
            ("a.>", ">", false),
            ("a.>", "b.*", false),
            ("a.*", "a.b", true),
            ("a.*", "a.*", true),
            ("a.*", "a.>", false),
            ("a.b", "a.*", false),
            ("a.b", "a.b", true),
            ("*.*", "a.b", true),
            ("*", "a.b", false),
        ];
        for (outer, inner, want) in table {
            assert_eq!(covers(outer, inner), want, "{outer} covers {inner}");
        }
    }

    #[test]
    fn topics_and_patterns_are_validated() {
        assert_eq!(validate_pattern("printer.temp"), Ok(()));
        assert_eq!(validate_pattern("printer.*.x"), Ok(()));
        assert_eq!(validate_pattern("printer.>"), Ok(()));
        assert_eq!(validate_pattern(""), Err(TopicError::EmptyToken));
        assert_eq!(validate_pattern("a..b"), Err(TopicError::EmptyToken));
        assert_eq!(validate_pattern(".a"), Err(TopicError::EmptyToken));
        assert_eq!(validate_pattern("a b"), Err(TopicError::BadCharacter));
        assert_eq!(validate_pattern("a\tb"), Err(TopicError::BadCharacter));
        assert_eq!(validate_pattern("a*"), Err(TopicError::MisplacedWildcard));
        assert_eq!(validate_pattern(">.a"), Err(TopicError::MisplacedWildcard));
        assert_eq!(
            validate_pattern(&"a".repeat(MAX_TOPIC_LEN + 1)),
            Err(TopicError::TooLong)
        );
        assert_eq!(validate_topic("a.b"), Ok(()));
        assert_eq!(validate_topic("a.*"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic(">"), Err(TopicError::Wildcard));
    }

    #[test]
    fn the_default_permissions_subscribe_to_anything_and_nothing_else() {
        let p = Permissions::default();
        assert!(p.may_subscribe(">"));
        assert!(p.may_subscribe("a.*"));
        assert!(!p.may_publish("a"));
        assert!(!p.may_request("a"));
        let p = Permissions {
            subscribe: vec!["printer.>".into()],
            publish: vec!["printer.cmd".into()],
            request: vec!["control.*".into()],
        };
        assert!(p.may_subscribe("printer.*"));
        assert!(!p.may_subscribe(">"));
        assert!(!p.may_subscribe("order.updated"));
        assert!(p.may_publish("printer.cmd"));
        assert!(!p.may_publish("printer.temp"));
        assert!(p.may_request("control.home"));
        assert!(!p.may_request("control.home.x"));
        assert!(!Permissions::none().may_subscribe("a"));
    }

    #[test]
    fn pattern_lists_are_comma_separated_and_checked() {
        assert_eq!(
            parse_patterns(" a.> , b.*,,"),
            Ok(vec!["a.>".to_string(), "b.*".to_string()])
        );
        assert_eq!(parse_patterns(""), Ok(Vec::new()));
        assert_eq!(
            parse_patterns("a, b c"),
            Err(("b c".to_string(), TopicError::BadCharacter))
        );
    }
}
