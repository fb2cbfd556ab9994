//! The `hydrogen-ws` binary: arguments -> Config -> Server -> wait for a signal -> shutdown -> exit.

use std::process::ExitCode;

mod cli;
mod logger;
mod signals;

use cli::Command;
use hydrogen_ws::{routes_for_mode, Mode, Server};
use signals::{Signals, Watchdog};

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let args = match args {
        Ok(args) => args,
        Err(bad) => {
            eprintln!("hydrogen-ws: the argument {bad:?} is not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    // clap would refuse such a value without naming the variable.
    let not_unicode = cli::env_names()
        .into_iter()
        .find(|k| matches!(std::env::var(k), Err(std::env::VarError::NotUnicode(_))));
    if let Some(name) = not_unicode {
        eprintln!("hydrogen-ws: the environment variable {name} is not valid UTF-8");
        return ExitCode::from(2);
    }
    let command = cli::parse(args);
    let (config, level) = match command {
        Ok(Command::Run(config, level)) => (*config, level),
        Ok(Command::Help) => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("hydrogen-ws {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hydrogen-ws: {e}");
            eprintln!("hydrogen-ws: see --help for every option and its rules");
            return ExitCode::from(2);
        }
    };
    logger::install(level);

    // Signals are caught before the server says it is ready, so a SIGTERM right after start-up is
    // already a graceful shutdown.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hydrogen-ws: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let watchdog = match Watchdog::start() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("hydrogen-ws: cannot start the shutdown watchdog: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown_timeout = config.shutdown_timeout;
    let open = config.key.is_none();
    let mode = config.mode;
    let threads = config.threads;
    // Every connection, pending or open, is a descriptor: the default soft limit (often 1,024) would
    // refuse connections long before the pool and the pending table are full.
    match hydrogen_ws::raise_open_file_limit() {
        Ok(n) if (n as usize) < threads + config.limits.max_pending_handshakes + 64 => log::warn!(
            "the open-file limit is {n}: fewer than --threads plus --max-pending need; raise it (ulimit -n)"
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    if let Some(t) = &config.terminal {
        log::warn!(
            "terminal ON at {} (page /terminal){}: whoever holds the terminal key runs {} as this user; \
             there is no TLS",
            t.path,
            if t.readonly { ", read-only" } else { "" },
            t.command
        );
    }
    let bus = if config.bus.uses_nats() {
        format!(
            "bus: NATS at {} (subjects {}.*), connecting in the background",
            config.bus.nats.join(","),
            config.bus.prefix
        )
    } else {
        "bus: in-process (one instance; --nats to share live updates across instances)".to_string()
    };
    let routes = routes_for_mode(&config);
    let server = match Server::with_routes(config, routes) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hydrogen-ws: {e}");
            return ExitCode::FAILURE;
        }
    };
    // This line is the readiness signal scripts wait for; it always prints, whatever the log level.
    eprintln!("listening on ws://{}", server.local_addr());
    log::info!(
        "mode {}, up to {threads} connections (a worker thread each, started on demand), shutdown deadline {}",
        mode.as_str(),
        hydrogen_ws::config::format_duration(shutdown_timeout)
    );

    log::info!("{bus}");
    if open {
        log::warn!(
            "no key configured: ANY client may connect ({}). Set --key or WEBSOCKET_KEY to require one.",
            if mode == Mode::Echo { "echo mode" } else { "--no-auth" }
        );
    }
    if let Err(e) = signals.wait() {
        eprintln!("hydrogen-ws: {e}");
    }
    // Whatever happens from here, the process is gone shortly after the deadline.
    watchdog.arm(shutdown_timeout + std::time::Duration::from_millis(100));
    let report = server.handle().shutdown();
    // Exit without joining idle workers or running destructors: every connection is already closed.
    std::process::exit(if report.completed() { 0 } else { 1 });
}
