//! Command-line arguments and their environment-variable twins -> [`Config`].
//!
//! Every option `--some-option VALUE` can also be given as `HYDROGEN_WS_SOME_OPTION=VALUE`; the command
//! line wins. Errors name the option and the rule, and the binary exits with status 2 on them.

use std::fmt::Write as _;

use crate::logger::Level;
use hydrogen_ws::config::{
    format_duration, format_size, parse_duration, parse_size, Config, ConfigError, Mode,
};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the server with this configuration and log level.
    Run(Box<Config>, Level),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

struct Opt {
    flag: &'static str,
    value: &'static str,
    help: &'static str,
}

const OPTIONS: &[Opt] = &[
    Opt {
        flag: "--listen",
        value: "ADDR:PORT",
        help: "address to listen on; port 0 picks a free port",
    },
    Opt {
        flag: "--mode",
        value: "MODE",
        help: "hydrogen (JSON status application) or echo (every message sent back)",
    },
    Opt {
        flag: "--key",
        value: "KEY",
        help: "key clients must present (Authorization: Key KEY, or ?key=KEY); also WEBSOCKET_KEY",
    },
    Opt {
        flag: "--no-auth",
        value: "",
        help: "run hydrogen mode without a key: any client may connect",
    },
    Opt {
        flag: "--protocol",
        value: "NAME",
        help: "the subprotocol of hydrogen mode",
    },
    Opt {
        flag: "--allowed-origins",
        value: "LIST",
        help: "comma-separated browser origins allowed to connect; empty or * = any",
    },
    Opt {
        flag: "--threads",
        value: "N",
        help: "worker threads = connection capacity; more clients get 503",
    },
    Opt {
        flag: "--stack-size",
        value: "SIZE",
        help: "stack of each worker thread",
    },
    Opt {
        flag: "--backlog",
        value: "N",
        help: "listen backlog",
    },
    Opt {
        flag: "--max-message-size",
        value: "SIZE",
        help: "largest message, all fragments together (1009 beyond)",
    },
    Opt {
        flag: "--max-frame-size",
        value: "SIZE",
        help: "largest frame payload (1009 beyond)",
    },
    Opt {
        flag: "--max-header-size",
        value: "SIZE",
        help: "largest upgrade request head (431 beyond)",
    },
    Opt {
        flag: "--max-headers",
        value: "N",
        help: "most header lines in the upgrade request (431 beyond)",
    },
    Opt {
        flag: "--handshake-timeout",
        value: "TIME",
        help: "time for the upgrade request to arrive (408 after)",
    },
    Opt {
        flag: "--send-timeout",
        value: "TIME",
        help: "time a write may wait on a client that does not read; it is then evicted",
    },
    Opt {
        flag: "--idle-timeout",
        value: "TIME",
        help: "close (1001) a connection silent this long; 0 = never",
    },
    Opt {
        flag: "--ping-interval",
        value: "TIME",
        help: "send a protocol ping this often; 0 = never",
    },
    Opt {
        flag: "--pong-timeout",
        value: "TIME",
        help: "close (1011) a connection whose pong is this late",
    },
    Opt {
        flag: "--shutdown-timeout",
        value: "TIME",
        help: "hard deadline of the shutdown sequence",
    },
    Opt {
        flag: "--log-level",
        value: "LEVEL",
        help: "off, error, warn, info or debug",
    },
];

fn env_name(flag: &str) -> String {
    let name = flag.trim_start_matches('-');
    format!(
        "HYDROGEN_WS_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The help text, with every option's default and environment variable.
pub fn help() -> String {
    let d = Config::default();
    let default_of = |flag: &str| -> String {
        match flag.trim_start_matches('-') {
            "listen" => d.listen.to_string(),
            "mode" => d.mode.as_str().to_string(),
            "key" => "none".to_string(),
            "no-auth" => "off".to_string(),
            "protocol" => d.protocol.clone(),
            "allowed-origins" => "any".to_string(),
            "ping-interval" => d
                .heartbeat
                .ping_interval
                .map_or("0".to_string(), format_duration),
            "pong-timeout" => format_duration(d.heartbeat.pong_timeout),
            "threads" => d.threads.to_string(),
            "stack-size" => format_size(d.stack_size),
            "backlog" => d.backlog.to_string(),
            "max-message-size" => format_size(d.limits.max_message_size),
            "max-frame-size" => "same as --max-message-size".to_string(),
            "max-header-size" => format_size(d.limits.max_header_bytes),
            "max-headers" => d.limits.max_headers.to_string(),
            "handshake-timeout" => format_duration(d.limits.handshake_timeout),
            "send-timeout" => format_duration(d.limits.send_timeout),
            "idle-timeout" => "0 (never)".to_string(),
            "shutdown-timeout" => format_duration(d.shutdown_timeout),
            "log-level" => Level::Info.as_str().to_string(),
            _ => String::new(),
        }
    };
    let mut out = format!(
        "hydrogen-ws {}\nA WebSocket server (RFC 6455) over blocking sockets on a fixed thread pool, built to stop in milliseconds.\n\n\
         USAGE:\n    hydrogen-ws [OPTIONS]\n\nOPTIONS:\n",
        env!("CARGO_PKG_VERSION")
    );
    for o in OPTIONS {
        let _ = writeln!(
            out,
            "    {}{}{}\n            {} [default: {}] [env: {}]",
            o.flag,
            if o.value.is_empty() { "" } else { " " },
            o.value,
            o.help,
            default_of(o.flag),
            env_name(o.flag)
        );
    }
    out.push_str(
        "    -h, --help       print this help\n    -V, --version    print the version\n\n\
         SIZE is bytes, or a number with KiB, MiB, GiB (also K, M, G) or KB, MB, GB: 65536, 64KiB, 16MiB.\n\
         TIME is a number with ms, s, m or h: 500ms, 5s, 2m (a bare number is seconds).\n\
         SIGINT or SIGTERM starts a graceful shutdown (every client gets close code 1001); a second one exits at once.\n",
    );
    out
}

/// Parses the arguments (without the program name) and the environment (`env` looks a variable up).
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    let mut given: Vec<(&'static Opt, String)> = Vec::new();
    for o in OPTIONS {
        if let Some(v) = env(&env_name(o.flag)) {
            given.push((o, v));
        } else if o.flag == "--key" {
            // The original Hydrogen server's variable.
            if let Some(v) = env("WEBSOCKET_KEY") {
                given.push((o, v));
            }
        }
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(ConfigError::new(
                "arguments",
                format!("unexpected argument '{arg}'; see --help"),
            ));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let Some(opt) = OPTIONS
            .iter()
            .find(|o| o.flag.trim_start_matches('-') == name)
        else {
            return Err(ConfigError::new(
                "arguments",
                format!("unknown option '--{name}'; see --help"),
            ));
        };
        if opt.value.is_empty() {
            given.push((opt, inline.unwrap_or_else(|| "true".to_string())));
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => match args.next() {
                Some(v) if v.starts_with("--") => {
                    return Err(ConfigError::new(
                        opt.flag,
                        format!(
                            "needs a value ({}), not the option '{v}' (write {}=VALUE for a value \
                             that starts with --)",
                            opt.value, opt.flag
                        ),
                    ))
                }
                Some(v) => v,
                None => {
                    return Err(ConfigError::new(
                        opt.flag,
                        format!("needs a value ({})", opt.value),
                    ))
                }
            },
        };
        given.push((opt, value));
    }

    let mut config = Config::default();
    let mut level = Level::Info;
    let mut frame_size = None;
    for (opt, value) in given {
        let option = opt.flag;
        let bad = |rule: String| ConfigError::new(option, rule);
        let number = |v: &str| -> Result<usize, ConfigError> {
            v.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("'{v}' is not a whole number")))
        };
        let size = |v: &str| parse_size(v).map_err(bad);
        let duration = |v: &str| parse_duration(v).map_err(bad);
        match opt.flag.trim_start_matches('-') {
            "listen" => {
                config.listen = value.trim().parse().map_err(|_| {
                    bad(format!(
                        "'{value}' is not an ADDR:PORT such as 127.0.0.1:5001 or [::1]:0"
                    ))
                })?;
            }
            "mode" => {
                config.mode = match value.trim() {
                    "echo" => Mode::Echo,
                    "hydrogen" => Mode::Hydrogen,
                    other => {
                        return Err(bad(format!(
                            "unknown mode '{other}' (known: hydrogen, echo)"
                        )))
                    }
                };
            }
            "key" => config.key = Some(value.trim().to_string()).filter(|k| !k.is_empty()),
            "no-auth" => {
                config.no_auth = match value.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" | "" => false,
                    other => return Err(bad(format!("'{other}' is not true or false"))),
                };
            }
            "protocol" => config.protocol = value.trim().to_string(),
            "allowed-origins" => {
                let origins: Vec<String> = value
                    .split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect();
                // `*` is what people write for "any origin", which is what no list means.
                config.allowed_origins = match origins.iter().any(|o| o == "*") {
                    false => origins,
                    true if origins.len() == 1 => Vec::new(),
                    true => {
                        return Err(bad(
                            "'*' allows any origin: give it alone, or list the origins".to_string(),
                        ))
                    }
                };
            }
            "ping-interval" => {
                let d = duration(&value)?;
                config.heartbeat.ping_interval = (!d.is_zero()).then_some(d);
            }
            "pong-timeout" => config.heartbeat.pong_timeout = duration(&value)?,
            "threads" => config.threads = number(&value)?,
            "stack-size" => config.stack_size = size(&value)?,
            "backlog" => {
                config.backlog =
                    i32::try_from(number(&value)?).map_err(|_| bad("is too large".to_string()))?;
            }
            "max-message-size" => config.limits.max_message_size = size(&value)?,
            "max-frame-size" => frame_size = Some(size(&value)?),
            "max-header-size" => config.limits.max_header_bytes = size(&value)?,
            "max-headers" => config.limits.max_headers = number(&value)?,
            "handshake-timeout" => config.limits.handshake_timeout = duration(&value)?,
            "send-timeout" => config.limits.send_timeout = duration(&value)?,
            "idle-timeout" => {
                let d = duration(&value)?;
                config.limits.idle_timeout = (!d.is_zero()).then_some(d);
            }
            "shutdown-timeout" => config.shutdown_timeout = duration(&value)?,
            "log-level" => {
                level = Level::parse(value.trim()).ok_or_else(|| {
                    bad(format!(
                        "unknown level '{value}' (off, error, warn, info, debug)"
                    ))
                })?;
            }
            _ => {}
        }
    }
    config.limits.max_frame_size = frame_size.unwrap_or(config.limits.max_message_size);
    config.validate()?;
    Ok(Command::Run(Box::new(config), level))
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(args: &[&str]) -> Result<Command, ConfigError> {
        let mut all = vec!["--mode".to_string(), "echo".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        parse(all, |_| None)
    }

    #[test]
    fn hydrogen_mode_needs_a_key_or_no_auth() {
        let none = |_: &str| None;
        assert_eq!(parse(Vec::new(), none).map_err(|e| e.option), Err("--key"));
        let Ok(Command::Run(c, _)) = parse(vec!["--no-auth".to_string()], none) else {
            panic!()
        };
        assert!(c.no_auth && c.key.is_none());
        let key = |k: &str| (k == "WEBSOCKET_KEY").then(|| "s3cret-key".to_string());
        let Ok(Command::Run(c, _)) = parse(Vec::new(), key) else {
            panic!()
        };
        assert_eq!(c.key.as_deref(), Some("s3cret-key"));
        assert_eq!(
            parse(vec!["--key".into(), "short".into()], none).map_err(|e| e.option),
            Err("--key")
        );
    }

    #[test]
    fn the_key_comes_from_the_command_line_then_hydrogen_ws_key_then_websocket_key() {
        let both = |k: &str| match k {
            "HYDROGEN_WS_KEY" => Some("ours-key-1".to_string()),
            "WEBSOCKET_KEY" => Some("theirs-key".to_string()),
            _ => None,
        };
        let key_of =
            |args: Vec<String>, env: &dyn Fn(&str) -> Option<String>| match parse(args, env) {
                Ok(Command::Run(c, _)) => c.key,
                _ => panic!("runs"),
            };
        assert_eq!(key_of(Vec::new(), &both).as_deref(), Some("ours-key-1"));
        let args = ["--key", "given-key1"].map(String::from).to_vec();
        assert_eq!(key_of(args, &both).as_deref(), Some("given-key1"));
        let theirs = |k: &str| (k == "WEBSOCKET_KEY").then(|| "theirs-key".to_string());
        assert_eq!(key_of(Vec::new(), &theirs).as_deref(), Some("theirs-key"));
    }

    #[test]
    fn a_key_and_no_auth_contradict_each_other() {
        let key = |k: &str| (k == "WEBSOCKET_KEY").then(|| "s3cret-key".to_string());
        let err = parse(vec!["--no-auth".to_string()], key).map(|_| ());
        assert_eq!(err.map_err(|e| e.option), Err("--no-auth"));
        let args = ["--key", "s3cret-key", "--no-auth"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            parse(args, |_| None).map(|_| ()).map_err(|e| e.option),
            Err("--no-auth")
        );
    }

    #[test]
    fn an_option_is_not_taken_for_a_value() {
        let Err(e) = run(&["--key", "--no-auth"]) else {
            panic!("--no-auth taken as the key")
        };
        assert_eq!(e.option, "--key");
        assert!(e.to_string().contains("--key=VALUE"), "{e}");
        let Ok(Command::Run(c, _)) = run(&["--key=--s3cret-key"]) else {
            panic!()
        };
        assert_eq!(c.key.as_deref(), Some("--s3cret-key"));
    }

    #[test]
    fn a_star_allows_any_origin() {
        let Ok(Command::Run(c, _)) = run(&["--allowed-origins", "*"]) else {
            panic!()
        };
        assert!(c.allowed_origins.is_empty());
        let Ok(Command::Run(c, _)) =
            run(&["--allowed-origins", "https://a.example, https://b.example/"])
        else {
            panic!()
        };
        assert_eq!(
            c.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(
            run(&["--allowed-origins", "*,https://a.example"]).map_err(|e| e.option),
            Err("--allowed-origins")
        );
    }

    #[test]
    fn the_pending_limit_cannot_overflow() {
        let Ok(Command::Run(c, _)) = run(&[
            "--max-message-size",
            "18446744073709551615",
            "--max-frame-size",
            "1MiB",
        ]) else {
            panic!()
        };
        assert_eq!(c.limits.max_pending(), usize::MAX);
    }

    #[test]
    fn defaults_work() {
        let mut expected = Config::default();
        expected.mode = Mode::Echo;
        assert_eq!(run(&[]), Ok(Command::Run(Box::new(expected), Level::Info)));
    }

    #[test]
    fn flags_and_suffixes() {
        let Ok(Command::Run(c, _)) = run(&[
            "--listen",
            "127.0.0.1:0",
            "--max-message-size",
            "16MiB",
            "--threads=8",
            "--shutdown-timeout",
            "250ms",
        ]) else {
            panic!("should parse");
        };
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.limits.max_message_size, 16 << 20);
        assert_eq!(
            c.limits.max_frame_size,
            16 << 20,
            "frame limit follows the message limit"
        );
        assert_eq!(c.threads, 8);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(250));
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            run(&["--threads", "many"]).map_err(|e| e.option),
            Err("--threads")
        );
        assert_eq!(
            run(&["--max-frame-size"]).map_err(|e| e.option),
            Err("--max-frame-size")
        );
        assert_eq!(
            run(&["--bogus", "1"]).map_err(|e| e.option),
            Err("arguments")
        );
        assert_eq!(
            run(&["--mode", "chat"]).map_err(|e| e.option),
            Err("--mode")
        );
        assert_eq!(
            run(&["--listen", "localhost"]).map_err(|e| e.option),
            Err("--listen")
        );
    }

    #[test]
    fn environment_twins_lose_to_flags() {
        let env = |k: &str| match k {
            "HYDROGEN_WS_THREADS" => Some("12".to_string()),
            "HYDROGEN_WS_MODE" => Some("echo".to_string()),
            _ => None,
        };
        let Ok(Command::Run(c, _)) = parse(Vec::new(), env) else {
            panic!()
        };
        assert_eq!(c.threads, 12);
        let Ok(Command::Run(c, _)) = parse(vec!["--threads".into(), "3".into()], env) else {
            panic!()
        };
        assert_eq!(c.threads, 3);
    }

    #[test]
    fn help_lists_every_option_with_its_env() {
        let h = help();
        for o in OPTIONS {
            assert!(h.contains(o.flag));
            assert!(h.contains(&env_name(o.flag)));
        }
    }
}
