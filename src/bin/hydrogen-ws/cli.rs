//! Command-line arguments and their environment-variable twins -> [`Config`].
//!
//! clap reads the syntax, the `HYDROGEN_WS_*` twins (the command line wins) and writes `--help`; the
//! values are read by the library's own rules (`parse_size`, `parse_duration`) and checked at the end by
//! `Config::validate`. Three things clap does not do are added here: `WEBSOCKET_KEY` as a second name
//! for `--key`, refusing a value that starts with `--` unless written `--option=VALUE`, and errors as a
//! [`ConfigError`] that names the option and the rule (the binary prints it and exits with status 2).

use std::net::SocketAddr;
use std::sync::OnceLock;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::logger::Level;
use hydrogen_ws::config::{Config, ConfigError, Mode};

mod bus;
mod deflate;
mod terminal;
mod values;
use bus::BusArgs;
use deflate::DeflateArgs;
use terminal::{TerminalArgs, WEBSOCKET_TERMINAL_KEY};
use values::{backlog, level, listen, mode, switch, whole_number, Origins, Size, Time};

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

/// A WebSocket server (RFC 6455) over blocking sockets on a fixed thread pool, built to stop in milliseconds.
#[derive(Debug, Parser)]
#[command(
    name = "hydrogen-ws",
    version,
    // The last of a repeated option wins, as with the environment twin it overrides.
    args_override_self = true,
    // `--key -s3cret-key` and `--threads -1` are values (checked by their rule); a value that starts
    // with `--` is refused before clap sees it, see `check_values`.
    allow_hyphen_values = true,
    next_line_help = true,
    help_template = "{name} {version}\n{about}\n\n{usage-heading} {usage}\n\n{all-args}{after-help}",
    after_help = AFTER_HELP
)]
struct Args {
    /// address to listen on; port 0 picks a free port
    #[arg(long, env = "HYDROGEN_WS_LISTEN", value_name = "ADDR:PORT", value_parser = listen,
          default_value_t = Config::default().listen)]
    listen: SocketAddr,
    /// hydrogen (JSON status application) or echo (every message sent back)
    #[arg(long, env = "HYDROGEN_WS_MODE", value_name = "MODE", value_parser = mode,
          default_value = Config::default().mode.as_str())]
    mode: Mode,
    /// key clients must present (Authorization: Key KEY, or ?key=KEY); also WEBSOCKET_KEY
    #[arg(long, env = "HYDROGEN_WS_KEY", value_name = "KEY")]
    key: Option<String>,
    /// run hydrogen mode without a key: any client may connect
    #[arg(long, env = "HYDROGEN_WS_NO_AUTH", value_name = "BOOL", value_parser = switch,
          num_args = 0..=1, require_equals = true, default_missing_value = "on", default_value = "off")]
    no_auth: bool,
    /// the subprotocol of hydrogen mode
    #[arg(long, env = "HYDROGEN_WS_PROTOCOL", value_name = "NAME",
          default_value_t = Config::default().protocol)]
    protocol: String,
    /// comma-separated browser origins allowed to connect; empty or * = any
    #[arg(
        long,
        env = "HYDROGEN_WS_ALLOWED_ORIGINS",
        value_name = "LIST",
        default_value = "*"
    )]
    allowed_origins: Origins,
    /// worker threads = connection capacity; more clients get 503
    #[arg(long, env = "HYDROGEN_WS_THREADS", value_name = "N", value_parser = whole_number,
          default_value_t = Config::default().threads)]
    threads: usize,
    /// stack of each worker thread
    #[arg(long, env = "HYDROGEN_WS_STACK_SIZE", value_name = "SIZE",
          default_value_t = Size(Config::default().stack_size))]
    stack_size: Size,
    /// listen backlog
    #[arg(long, env = "HYDROGEN_WS_BACKLOG", value_name = "N", value_parser = backlog,
          default_value_t = Config::default().backlog)]
    backlog: i32,
    /// largest message, all fragments together (1009 beyond)
    #[arg(long, env = "HYDROGEN_WS_MAX_MESSAGE_SIZE", value_name = "SIZE",
          default_value_t = Size(Config::default().limits.max_message_size))]
    max_message_size: Size,
    /// largest frame payload (1009 beyond); by default the --max-message-size
    #[arg(long, env = "HYDROGEN_WS_MAX_FRAME_SIZE", value_name = "SIZE")]
    max_frame_size: Option<Size>,
    /// largest upgrade request head (431 beyond)
    #[arg(long, env = "HYDROGEN_WS_MAX_HEADER_SIZE", value_name = "SIZE",
          default_value_t = Size(Config::default().limits.max_header_bytes))]
    max_header_size: Size,
    /// most header lines in the upgrade request (431 beyond)
    #[arg(long, env = "HYDROGEN_WS_MAX_HEADERS", value_name = "N", value_parser = whole_number,
          default_value_t = Config::default().limits.max_headers)]
    max_headers: usize,
    /// most handshakes in progress at once; when full, the oldest is closed (408) to make room
    #[arg(long, env = "HYDROGEN_WS_MAX_PENDING", value_name = "N", value_parser = whole_number,
          default_value_t = Config::default().limits.max_pending_handshakes)]
    max_pending: usize,
    /// most connections (open and pending) from one client address (429 beyond); 0 = no limit
    /// [default: 256 or --threads, whichever is larger]
    #[arg(long, env = "HYDROGEN_WS_MAX_CONNECTIONS_PER_IP", value_name = "N",
          value_parser = whole_number)]
    max_connections_per_ip: Option<usize>,
    /// time for the upgrade request to arrive (408 after)
    #[arg(long, env = "HYDROGEN_WS_HANDSHAKE_TIMEOUT", value_name = "TIME",
          default_value_t = Time(Config::default().limits.handshake_timeout))]
    handshake_timeout: Time,
    /// time a write may wait on a client that does not read; it is then evicted
    #[arg(long, env = "HYDROGEN_WS_SEND_TIMEOUT", value_name = "TIME",
          default_value_t = Time(Config::default().limits.send_timeout))]
    send_timeout: Time,
    /// close (1001) a connection silent this long; 0 = never
    #[arg(long, env = "HYDROGEN_WS_IDLE_TIMEOUT", value_name = "TIME",
          default_value_t = Time::never_or(Config::default().limits.idle_timeout))]
    idle_timeout: Time,
    /// send a protocol ping this often; 0 = never
    #[arg(long, env = "HYDROGEN_WS_PING_INTERVAL", value_name = "TIME",
          default_value_t = Time::never_or(Config::default().heartbeat.ping_interval))]
    ping_interval: Time,
    /// close (1011) a connection whose pong is this late
    #[arg(long, env = "HYDROGEN_WS_PONG_TIMEOUT", value_name = "TIME",
          default_value_t = Time(Config::default().heartbeat.pong_timeout))]
    pong_timeout: Time,
    /// hard deadline of the shutdown sequence
    #[arg(long, env = "HYDROGEN_WS_SHUTDOWN_TIMEOUT", value_name = "TIME",
          default_value_t = Time(Config::default().shutdown_timeout))]
    shutdown_timeout: Time,
    #[command(flatten)]
    deflate: DeflateArgs,
    #[command(flatten)]
    terminal: TerminalArgs,
    #[command(flatten)]
    bus: BusArgs,
    /// off, error, warn, info or debug
    #[arg(long, env = "HYDROGEN_WS_LOG_LEVEL", value_name = "LEVEL", value_parser = level,
          default_value = Level::Info.as_str())]
    log_level: Level,
}

const AFTER_HELP: &str = "\
SIZE is bytes, or a number with KiB, MiB, GiB (also K, M, G) or KB, MB, GB: 65536, 64KiB, 16MiB.
TIME is a number with ms, s, m or h: 500ms, 5s, 2m (a bare number is seconds).
SIGINT or SIGTERM starts a graceful shutdown (every client gets close code 1001); a second one exits at once.";

/// The variable the original Hydrogen server reads its key from; `--key` and `HYDROGEN_WS_KEY` win.
const WEBSOCKET_KEY: &str = "WEBSOCKET_KEY";

/// The clap command: the derived one, with the environment values hidden from `--help` (one of them is
/// the key).
fn command() -> clap::Command {
    Args::command().mut_args(|a| a.hide_env_values(true))
}

/// The help text, with every option's default and environment variable.
pub fn help() -> String {
    command().render_help().to_string()
}

/// Every environment variable the command line reads.
pub fn env_names() -> Vec<String> {
    let mut names: Vec<String> = command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.push(WEBSOCKET_KEY.to_string());
    names.push(WEBSOCKET_TERMINAL_KEY.to_string());
    names
}

/// Parses the arguments (without the program name) and the `HYDROGEN_WS_*` and `WEBSOCKET_KEY`
/// environment variables.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, ConfigError> {
    let args: Vec<String> = args.into_iter().collect();
    let mut cmd = command();
    check_values(&cmd, &args)?;
    let program = std::iter::once("hydrogen-ws".to_string());
    let parsed = cmd
        .try_get_matches_from_mut(program.chain(args))
        .and_then(|matches| Args::from_arg_matches(&matches));
    let args = match parsed {
        Ok(args) => args,
        Err(e) => return refusal(&e),
    };
    let (config, level) = args.into_config()?;
    config.validate()?;
    Ok(Command::Run(Box::new(config), level))
}

impl Args {
    fn into_config(self) -> Result<(Config, Level), ConfigError> {
        let key = self.key.or_else(|| std::env::var(WEBSOCKET_KEY).ok());
        let terminal = self.terminal.into_config();
        let (bus, permissions) = self.bus.into_config()?;
        let mut config = Config {
            listen: self.listen,
            mode: self.mode,
            key: key.map(|k| k.trim().to_string()).filter(|k| !k.is_empty()),
            no_auth: self.no_auth,
            protocol: self.protocol.trim().to_string(),
            allowed_origins: self.allowed_origins.0,
            threads: self.threads,
            stack_size: self.stack_size.0,
            backlog: self.backlog,
            shutdown_timeout: self.shutdown_timeout.0,
            terminal,
            bus,
            permissions,
            deflate: self.deflate.into_config(),
            ..Config::default()
        };
        let l = &mut config.limits;
        l.max_message_size = self.max_message_size.0;
        l.max_frame_size = self.max_frame_size.map_or(l.max_message_size, |s| s.0);
        l.max_header_bytes = self.max_header_size.0;
        l.max_headers = self.max_headers;
        l.max_pending_handshakes = self.max_pending;
        l.max_connections_per_ip = self.max_connections_per_ip;
        l.handshake_timeout = self.handshake_timeout.0;
        l.send_timeout = self.send_timeout.0;
        l.idle_timeout = self.idle_timeout.or_never();
        config.heartbeat.ping_interval = self.ping_interval.or_never();
        config.heartbeat.pong_timeout = self.pong_timeout.0;
        Ok((config, self.log_level))
    }
}

/// clap would read `--key --no-auth` as a `--key` without a value followed by `--no-auth`; say what
/// happened instead, and how to give a value that starts with `--`.
fn check_values(cmd: &clap::Command, args: &[String]) -> Result<(), ConfigError> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" | "-V" | "--version" => return Ok(()),
            // clap reads `--` as the end of the options; there are no positional arguments to follow.
            "--" => return Err(unknown("--")),
            _ => {}
        }
        let Some(name) = arg.strip_prefix("--") else {
            continue;
        };
        let Some(opt) = cmd.get_arguments().find(|a| {
            a.get_long() == Some(name)
                && a.get_action().takes_values()
                && !a.is_require_equals_set()
        }) else {
            continue;
        };
        if let Some(value) = args.next().filter(|v| v.starts_with("--")) {
            let flag = option_named(name);
            return Err(ConfigError::new(
                flag,
                format!(
                    "needs a value ({}), not the option '{value}' (write {flag}=VALUE for a value \
                     that starts with --)",
                    value_name(opt)
                ),
            ));
        }
    }
    Ok(())
}

fn value_name(arg: &clap::Arg) -> String {
    arg.get_value_names()
        .and_then(|n| n.first())
        .map_or_else(|| "VALUE".to_string(), |n| n.to_string())
}

fn unknown(arg: &str) -> ConfigError {
    let problem = match arg.strip_prefix("--") {
        Some(name) => {
            let name = name.split_once('=').map_or(name, |(n, _)| n);
            format!("unknown option '--{name}'; see --help")
        }
        None => format!("unexpected argument '{arg}'; see --help"),
    };
    ConfigError::new("arguments", problem)
}

/// `--name` for the option `name`, as a `&'static str` (what [`ConfigError`] holds); `arguments` if there
/// is no such option.
fn option_named(name: &str) -> &'static str {
    static FLAGS: OnceLock<Vec<String>> = OnceLock::new();
    let flags = FLAGS.get_or_init(|| {
        command()
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .collect()
    });
    let name = name.trim_start_matches('-');
    flags
        .iter()
        .find(|f| f.trim_start_matches('-') == name)
        .map_or("arguments", String::as_str)
}

/// clap's outcome other than matches: help and version are commands, the rest a [`ConfigError`] that
/// names the option.
fn refusal(e: &clap::Error) -> Result<Command, ConfigError> {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    // The option as clap shows it, `--threads <N>`; its name is what comes before the value.
    let arg = context(ContextKind::InvalidArg);
    let name: String = arg
        .trim_start_matches('-')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let option = option_named(&name);
    Err(match e.kind() {
        ErrorKind::DisplayHelp => return Ok(Command::Help),
        ErrorKind::DisplayVersion => return Ok(Command::Version),
        ErrorKind::UnknownArgument => unknown(&arg),
        ErrorKind::ValueValidation => {
            let rule =
                std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string());
            ConfigError::new(option, rule)
        }
        ErrorKind::InvalidValue if context(ContextKind::InvalidValue).is_empty() => {
            // `--threads <N>`: the value's name is between the angle brackets.
            let value = arg.split(['<', '>']).nth(1).unwrap_or("VALUE");
            ConfigError::new(option, format!("needs a value ({value})"))
        }
        _ => {
            // clap's own sentence, `error: unexpected value 'x' for '--help' found; ...`.
            let rendered = e.render().to_string();
            let line = rendered.lines().next().unwrap_or_default();
            ConfigError::new(option, line.trim_start_matches("error: ").to_string())
        }
    })
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use std::time::Duration;

    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// clap reads the process environment, so each test sets exactly the variables it names (and clears
    /// every other one the command line reads), one test at a time.
    pub(super) fn parse_in(
        env: &[(&str, &str)],
        args: Vec<String>,
    ) -> Result<Command, ConfigError> {
        let _one_at_a_time = ENV.lock().unwrap_or_else(|e| e.into_inner());
        // Only this module's tests, serialised by the lock, touch the environment in this test binary.
        for name in env_names() {
            std::env::remove_var(&name);
        }
        for (name, value) in env {
            std::env::set_var(name, value);
        }
        let result = parse(args);
        for (name, _) in env {
            std::env::remove_var(name);
        }
        result
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn run(args: &[&str]) -> Result<Command, ConfigError> {
        let mut all = strings(&["--mode", "echo"]);
        all.extend(strings(args));
        parse_in(&[], all)
    }

    #[test]
    fn hydrogen_mode_needs_a_key_or_no_auth() {
        let none = &[];
        assert_eq!(
            parse_in(none, Vec::new()).map_err(|e| e.option),
            Err("--key")
        );
        let Ok(Command::Run(c, _)) = parse_in(none, strings(&["--no-auth"])) else {
            panic!()
        };
        assert!(c.no_auth && c.key.is_none());
        let key = &[("WEBSOCKET_KEY", "s3cret-key")];
        let Ok(Command::Run(c, _)) = parse_in(key, Vec::new()) else {
            panic!()
        };
        assert_eq!(c.key.as_deref(), Some("s3cret-key"));
        assert_eq!(
            parse_in(none, strings(&["--key", "short"])).map_err(|e| e.option),
            Err("--key")
        );
    }

    #[test]
    fn the_key_comes_from_the_command_line_then_hydrogen_ws_key_then_websocket_key() {
        let both = &[
            ("HYDROGEN_WS_KEY", "ours-key-1"),
            ("WEBSOCKET_KEY", "theirs-key"),
        ];
        let key_of = |args: Vec<String>, env: &[(&str, &str)]| match parse_in(env, args) {
            Ok(Command::Run(c, _)) => c.key,
            _ => panic!("runs"),
        };
        assert_eq!(key_of(Vec::new(), both).as_deref(), Some("ours-key-1"));
        let args = strings(&["--key", "given-key1"]);
        assert_eq!(key_of(args, both).as_deref(), Some("given-key1"));
        let theirs = &[("WEBSOCKET_KEY", "theirs-key")];
        assert_eq!(key_of(Vec::new(), theirs).as_deref(), Some("theirs-key"));
    }

    #[test]
    fn a_key_and_no_auth_contradict_each_other() {
        let key = &[("WEBSOCKET_KEY", "s3cret-key")];
        let err = parse_in(key, strings(&["--no-auth"])).map(|_| ());
        assert_eq!(err.map_err(|e| e.option), Err("--no-auth"));
        let args = strings(&["--key", "s3cret-key", "--no-auth"]);
        assert_eq!(
            parse_in(&[], args).map(|_| ()).map_err(|e| e.option),
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
        let env = &[("HYDROGEN_WS_THREADS", "12"), ("HYDROGEN_WS_MODE", "echo")];
        let Ok(Command::Run(c, _)) = parse_in(env, Vec::new()) else {
            panic!()
        };
        assert_eq!(c.threads, 12);
        let Ok(Command::Run(c, _)) = parse_in(env, strings(&["--threads", "3"])) else {
            panic!()
        };
        assert_eq!(c.threads, 3);
    }

    #[test]
    fn help_lists_every_option_with_its_env() {
        let h = help();
        let cmd = command();
        let options: Vec<_> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        assert!(options.len() >= 20, "{options:?}");
        for long in options {
            assert!(h.contains(&format!("--{long}")), "{long}");
            // The twin is the option's name, so one can be guessed from the other.
            let env = format!(
                "HYDROGEN_WS_{}",
                long.to_ascii_uppercase().replace('-', "_")
            );
            assert!(h.contains(&format!("[env: {env}]")), "{env}");
        }
        assert!(h.contains("WEBSOCKET_KEY"));
    }

    #[test]
    fn no_auth_reads_yes_or_no_from_its_twin_and_after_an_equals_sign() {
        for (value, expected) in [
            ("yes", true),
            ("ON", true),
            ("1", true),
            ("off", false),
            ("", false),
        ] {
            let env = &[("HYDROGEN_WS_NO_AUTH", value)];
            let Ok(Command::Run(c, _)) = parse_in(env, strings(&["--mode", "echo"])) else {
                panic!("{value}")
            };
            assert_eq!(c.no_auth, expected, "{value}");
        }
        let Ok(Command::Run(c, _)) = run(&["--no-auth=false"]) else {
            panic!()
        };
        assert!(!c.no_auth);
        let env = &[("HYDROGEN_WS_NO_AUTH", "maybe")];
        let err = parse_in(env, strings(&["--mode", "echo"])).map_err(|e| e.option);
        assert_eq!(err, Err("--no-auth"));
    }

    #[test]
    fn an_empty_hydrogen_ws_key_means_no_key_and_hides_websocket_key() {
        let env = &[("HYDROGEN_WS_KEY", ""), ("WEBSOCKET_KEY", "theirs-key")];
        let Ok(Command::Run(c, _)) = parse_in(env, strings(&["--mode", "echo"])) else {
            panic!()
        };
        assert_eq!(c.key, None);
    }

    #[test]
    fn a_value_may_start_with_one_dash_but_not_two() {
        let Ok(Command::Run(c, _)) = run(&["--key", "-s3cret-key"]) else {
            panic!()
        };
        assert_eq!(c.key.as_deref(), Some("-s3cret-key"));
        let Err(e) = run(&["--threads", "-1"]) else {
            panic!()
        };
        assert_eq!(e.to_string(), "--threads: '-1' is not a whole number");
        assert_eq!(run(&["--"]).map_err(|e| e.option), Err("arguments"));
        assert_eq!(run(&["-x"]).map_err(|e| e.option), Err("arguments"));
    }

    #[test]
    fn the_last_of_a_repeated_option_wins() {
        let Ok(Command::Run(c, _)) =
            run(&["--threads", "3", "--threads=4", "--no-auth", "--no-auth"])
        else {
            panic!()
        };
        assert_eq!(c.threads, 4);
    }

    #[test]
    fn the_terminal_is_off_by_default_and_needs_its_own_key() {
        let Ok(Command::Run(c, _)) = run(&[]) else {
            panic!()
        };
        assert_eq!(c.terminal, None);
        assert_eq!(
            run(&["--terminal"]).map_err(|e| e.option),
            Err("--terminal-key")
        );
        let long = "k".repeat(32);
        let env = &[("WEBSOCKET_TERMINAL_KEY", long.as_str())];
        let args = strings(&[
            "--mode",
            "echo",
            "--terminal",
            "--terminal-command",
            "/bin/sh",
        ]);
        let Ok(Command::Run(c, _)) = parse_in(env, args) else {
            panic!()
        };
        let t = c.terminal.expect("on");
        assert_eq!(t.key, long);
        assert_eq!(
            (t.path.as_str(), t.protocol.as_str()),
            ("/terminal/ws", "terminal")
        );
        assert_eq!(t.command, "/bin/sh");
        assert_eq!(t.max_sessions, 4);
        assert_eq!(t.idle_timeout, Some(Duration::from_secs(300)));
        assert!(!t.readonly && !t.allow_remote);
        let mine = format!("--terminal-key={}", "m".repeat(32));
        let Ok(Command::Run(c, _)) = run(&["--terminal", &mine, "--terminal-readonly"]) else {
            panic!()
        };
        let t = c.terminal.expect("on");
        assert!(t.readonly);
        assert_eq!(t.key, "m".repeat(32));
        let remote = run(&["--terminal", &mine, "--listen", "0.0.0.0:0"]);
        assert_eq!(remote.map_err(|e| e.option), Err("--terminal-allow-remote"));
        let allowed = run(&[
            "--terminal",
            &mine,
            "--listen",
            "0.0.0.0:0",
            "--terminal-allow-remote",
        ]);
        assert!(allowed.is_ok());
        let same = format!("--key={}", "m".repeat(32));
        let err = run(&["--terminal", &mine, &same]).map_err(|e| e.option);
        assert_eq!(err, Err("--terminal-key"));
    }

    #[test]
    fn help_and_version_are_commands_and_help_shows_no_secret() {
        assert_eq!(run(&["--help"]), Ok(Command::Help));
        assert_eq!(run(&["-h"]), Ok(Command::Help));
        assert_eq!(run(&["-V"]), Ok(Command::Version));
        assert_eq!(run(&["--version"]), Ok(Command::Version));
        let _one_at_a_time = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("HYDROGEN_WS_KEY", "s3cret-key");
        let h = help();
        std::env::remove_var("HYDROGEN_WS_KEY");
        assert!(!h.contains("s3cret-key"), "{h}");
    }
}
