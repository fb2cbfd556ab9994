//! The bus's options (`--nats` and its family, the permissions), flattened into the command line.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use hydrogen_ws::config::{BusConfig, ConfigError, NatsAuth, DEFAULT_PREFIX};
use hydrogen_ws::topic::{parse_patterns, Permissions};

use super::values::{switch, Time};

/// A comma-separated list of topic patterns (`*` one token, `>` the rest); empty: none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns(pub Vec<String>);

impl FromStr for Patterns {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_patterns(text)
            .map(Patterns)
            .map_err(|(pattern, e)| format!("'{pattern}': {e}"))
    }
}

impl std::fmt::Display for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// The bus's options.
#[derive(Debug, Args)]
pub struct BusArgs {
    /// connect the bus to NATS: comma-separated server URLs (nats://127.0.0.1:4222); none = in-process
    #[arg(long, env = "HYDROGEN_WS_NATS", value_name = "URL[,URL...]")]
    pub nats: Option<String>,
    /// NATS user (with --nats-password)
    #[arg(long, env = "HYDROGEN_WS_NATS_USER", value_name = "USER")]
    pub nats_user: Option<String>,
    /// NATS password (with --nats-user)
    #[arg(long, env = "HYDROGEN_WS_NATS_PASSWORD", value_name = "PASSWORD")]
    pub nats_password: Option<String>,
    /// NATS token
    #[arg(long, env = "HYDROGEN_WS_NATS_TOKEN", value_name = "TOKEN")]
    pub nats_token: Option<String>,
    /// NATS credentials file (JWT and NKey seed)
    #[arg(long, env = "HYDROGEN_WS_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// topic T is the NATS subject PREFIX.T (Hydrogen: cluster.philement)
    #[arg(long, env = "HYDROGEN_WS_NATS_PREFIX", value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub nats_prefix: String,
    /// /health answers 503 while NATS is not connected
    #[arg(long, env = "HYDROGEN_WS_REQUIRE_NATS", value_name = "BOOL", value_parser = switch,
          num_args = 0..=1, require_equals = true, default_missing_value = "on", default_value = "off")]
    pub require_nats: bool,
    /// topic patterns the key's clients may subscribe to (comma-separated; * one token, > the rest)
    #[arg(
        long,
        env = "HYDROGEN_WS_ALLOW_SUBSCRIBE",
        value_name = "LIST",
        default_value = ">"
    )]
    pub allow_subscribe: Patterns,
    /// topic patterns the key's clients may publish to; none by default
    #[arg(
        long,
        env = "HYDROGEN_WS_ALLOW_PUBLISH",
        value_name = "LIST",
        default_value = ""
    )]
    pub allow_publish: Patterns,
    /// topic patterns the key's clients may send requests to; none by default
    #[arg(
        long,
        env = "HYDROGEN_WS_ALLOW_REQUEST",
        value_name = "LIST",
        default_value = ""
    )]
    pub allow_request: Patterns,
    /// cap on a request's timeout_ms
    #[arg(long, env = "HYDROGEN_WS_REQUEST_TIMEOUT_MAX", value_name = "TIME",
          default_value_t = Time(BusConfig::default().request_timeout_max))]
    pub request_timeout_max: Time,
}

impl BusArgs {
    /// The bus's settings and the main route's permissions.
    pub fn into_config(self) -> Result<(BusConfig, Permissions), ConfigError> {
        let nats: Vec<String> = self
            .nats
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        let given = [
            self.nats_user.is_some() || self.nats_password.is_some(),
            self.nats_token.is_some(),
            self.nats_creds.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ConfigError::new(
                "--nats-token",
                "give one of --nats-user/--nats-password, --nats-token or --nats-creds",
            ));
        }
        let auth = match (
            self.nats_user,
            self.nats_password,
            self.nats_token,
            self.nats_creds,
        ) {
            (Some(user), Some(password), _, _) => NatsAuth::UserPassword { user, password },
            (Some(_), None, _, _) => {
                return Err(ConfigError::new(
                    "--nats-password",
                    "is needed with --nats-user",
                ))
            }
            (None, Some(_), _, _) => {
                return Err(ConfigError::new(
                    "--nats-user",
                    "is needed with --nats-password",
                ))
            }
            (None, None, Some(token), _) => NatsAuth::Token(token),
            (None, None, None, Some(path)) => NatsAuth::Creds(path),
            (None, None, None, None) => NatsAuth::None,
        };
        let bus = BusConfig {
            nats,
            auth,
            prefix: self.nats_prefix.trim().to_string(),
            require_nats: self.require_nats,
            request_timeout_max: self.request_timeout_max.0,
        };
        let permissions = Permissions {
            subscribe: self.allow_subscribe.0,
            publish: self.allow_publish.0,
            request: self.allow_request.0,
        };
        Ok((bus, permissions))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse_in;
    use super::super::Command;
    use hydrogen_ws::config::{Config, NatsAuth};
    use hydrogen_ws::topic::Permissions;

    fn run(args: &[&str]) -> Result<Config, &'static str> {
        let mut all = vec!["--no-auth"];
        all.extend_from_slice(args);
        // Through the command line's own test entry, which holds the environment still meanwhile.
        match parse_in(&[], all.iter().map(|a| a.to_string()).collect()) {
            Ok(Command::Run(config, _)) => Ok(*config),
            Ok(_) => Err("not a run"),
            Err(e) => Err(e.option),
        }
    }

    #[test]
    fn without_nats_the_bus_is_in_process_with_safe_permissions() {
        let c = run(&[]).expect("defaults");
        assert!(!c.bus.uses_nats());
        assert_eq!(c.bus.prefix, "hydrogen");
        assert_eq!(c.permissions, Permissions::default());
    }

    #[test]
    fn the_nats_flags_make_the_bus_and_the_permissions() {
        let c = run(&[
            "--nats",
            "nats://127.0.0.1:4222, nats://127.0.0.1:4223",
            "--nats-prefix",
            "cluster.philement",
            "--nats-user",
            "ws",
            "--nats-password",
            "pw",
            "--allow-publish",
            "printer.>,order.*",
            "--allow-request",
            "control.home",
            "--allow-subscribe",
            "printer.>",
            "--request-timeout-max",
            "2s",
            "--require-nats",
        ])
        .expect("valid");
        assert_eq!(
            c.bus.nats,
            ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
        );
        assert_eq!(c.bus.prefix, "cluster.philement");
        assert_eq!(
            c.bus.auth,
            NatsAuth::UserPassword {
                user: "ws".into(),
                password: "pw".into()
            }
        );
        assert!(c.bus.require_nats);
        assert_eq!(c.bus.request_timeout_max.as_secs(), 2);
        assert_eq!(c.permissions.publish, ["printer.>", "order.*"]);
        assert_eq!(c.permissions.request, ["control.home"]);
        assert_eq!(c.permissions.subscribe, ["printer.>"]);
    }

    #[test]
    fn bad_bus_options_name_themselves() {
        let nats = ["--nats", "nats://127.0.0.1:4222"];
        let with = |extra: &[&'static str]| {
            let mut v = nats.to_vec();
            v.extend_from_slice(extra);
            run(&v)
        };
        assert_eq!(run(&["--require-nats"]).err(), Some("--require-nats"));
        assert_eq!(with(&["--nats-user", "u"]).err(), Some("--nats-password"));
        assert_eq!(with(&["--nats-password", "p"]).err(), Some("--nats-user"));
        assert_eq!(
            with(&["--nats-token", "t", "--nats-creds", "/x"]).err(),
            Some("--nats-token")
        );
        assert_eq!(with(&["--nats-prefix", "a.*"]).err(), Some("--nats-prefix"));
        assert_eq!(with(&["--nats-prefix", ""]).err(), Some("--nats-prefix"));
        assert_eq!(
            with(&["--allow-publish", "a b"]).err(),
            Some("--allow-publish")
        );
        assert_eq!(
            with(&["--request-timeout-max", "0"]).err(),
            Some("--request-timeout-max")
        );
        assert_eq!(run(&["--nats-token", "t"]).err(), Some("--nats"));
    }
}
