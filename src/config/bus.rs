//! The bus's settings: in-process by default, NATS when servers are given.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use crate::topic::{validate_topic, Permissions};

/// How the bus authenticates to NATS.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// A user and a password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A credentials file (JWT and NKey seed), read at start.
    Creds(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, <password>)"),
            NatsAuth::Token(_) => f.write_str("Token(<set>)"),
            NatsAuth::Creds(path) => write!(f, "Creds({})", path.display()),
        }
    }
}

/// The bus: where broadcasts, publishes and requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// NATS servers (`nats://host:port`); empty: the in-process bus (one instance).
    pub nats: Vec<String>,
    /// Credentials for NATS.
    pub auth: NatsAuth,
    /// Topic `T` is the NATS subject `<prefix>.T`.
    pub prefix: String,
    /// `/health` answers 503 while NATS is not connected.
    pub require_nats: bool,
    /// The cap on a request's `timeout_ms`.
    pub request_timeout_max: Duration,
}

/// The default prefix of subjects.
pub const DEFAULT_PREFIX: &str = "hydrogen";

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            nats: Vec::new(),
            auth: NatsAuth::None,
            prefix: DEFAULT_PREFIX.to_string(),
            require_nats: false,
            request_timeout_max: Duration::from_secs(30),
        }
    }
}

impl BusConfig {
    /// Whether NATS is configured.
    pub fn uses_nats(&self) -> bool {
        !self.nats.is_empty()
    }

    /// Checks the rules; the error names the option.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for url in &self.nats {
            if url.is_empty() || url.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(ConfigError::new(
                    "--nats",
                    format!("'{url}' is not a server URL such as nats://127.0.0.1:4222"),
                ));
            }
        }
        validate_topic(&self.prefix).map_err(|e| {
            ConfigError::new(
                "--nats-prefix",
                format!(
                    "'{}': {e} (such as hydrogen or cluster.philement)",
                    self.prefix
                ),
            )
        })?;
        if self.request_timeout_max.is_zero() {
            return Err(ConfigError::new(
                "--request-timeout-max",
                "must be more than 0",
            ));
        }
        if self.require_nats && !self.uses_nats() {
            return Err(ConfigError::new(
                "--require-nats",
                "needs --nats (there is no NATS to require)",
            ));
        }
        match &self.auth {
            NatsAuth::UserPassword { user, .. } if user.is_empty() => Err(ConfigError::new(
                "--nats-user",
                "must not be empty when a password is given",
            )),
            NatsAuth::Token(t) if t.is_empty() => {
                Err(ConfigError::new("--nats-token", "must not be empty"))
            }
            NatsAuth::None => Ok(()),
            _ if !self.uses_nats() => Err(ConfigError::new(
                "--nats",
                "NATS credentials are given but no --nats server",
            )),
            _ => Ok(()),
        }
    }
}

/// Checks every pattern of the main route's permissions; the error names the option that set it.
pub(super) fn validate_permissions(permissions: &Permissions) -> Result<(), ConfigError> {
    permissions.validate().map_err(|(list, pattern, e)| {
        let option = match list {
            "subscribe" => "--allow-subscribe",
            "publish" => "--allow-publish",
            _ => "--allow-request",
        };
        ConfigError::new(option, format!("'{pattern}': {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_in_process_and_valid() {
        let c = BusConfig::default();
        assert!(!c.uses_nats());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_option() {
        let nats = || BusConfig {
            nats: vec!["nats://127.0.0.1:4222".into()],
            ..BusConfig::default()
        };
        let option = |c: BusConfig| c.validate().err().map(|e| e.option);
        assert_eq!(option(nats()), None);
        let mut c = nats();
        c.nats.push("nats://a b".into());
        assert_eq!(option(c), Some("--nats"));
        for prefix in ["", "a..b", "a.>", "a b"] {
            let mut c = nats();
            c.prefix = prefix.into();
            assert_eq!(option(c), Some("--nats-prefix"), "{prefix:?}");
        }
        let mut c = nats();
        c.request_timeout_max = Duration::ZERO;
        assert_eq!(option(c), Some("--request-timeout-max"));
        let c = BusConfig {
            require_nats: true,
            ..BusConfig::default()
        };
        assert_eq!(option(c), Some("--require-nats"));
        let c = BusConfig {
            auth: NatsAuth::Token("t".into()),
            ..BusConfig::default()
        };
        assert_eq!(option(c), Some("--nats"));
        let mut c = nats();
        c.auth = NatsAuth::Token(String::new());
        assert_eq!(option(c), Some("--nats-token"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let auth = NatsAuth::UserPassword {
            user: "ws".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", NatsAuth::Token("tok3n".into())).contains("tok3n"));
    }
}
